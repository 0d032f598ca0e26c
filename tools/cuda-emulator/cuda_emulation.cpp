// The fiber scheduler behind cuda_emulation.h: one ucontext fiber per CUDA thread of a block,
// barriers that wait for every live (not yet returned) thread of the block or warp, and a
// deadlock check (a full round in which no fiber arrives anywhere or finishes).
//
// Entry point for the tests: c2n_emu_launch(grid, block, body, context) runs `body(context)`
// once per CUDA thread of every block; `body` calls the kernel with its arguments.

#include "cuda_emulation.h"

#include <memory>
#include <ucontext.h>
#include <vector>

namespace c2n_emu {
dim3 block_idx, block_dim, grid_dim;

namespace {

constexpr size_t kStackBytes = 256 * 1024;

struct Fiber {
    ucontext_t context;
    dim3 index;
    unsigned linear;
    bool finished;
};

struct Barrier {
    unsigned arrived = 0;
    unsigned generation = 0;
    unsigned live = 0;
};

struct Warp {
    Barrier barrier;
    uint64_t slots[32];
};

ucontext_t scheduler;
std::vector<Fiber> fibers;
std::unique_ptr<char[]> stacks;  // uninitialised: pages are touched only as the stacks grow
size_t stacks_capacity = 0;
size_t current = 0;
Barrier block_barrier;
std::vector<Warp> warps;
int or_accumulated = 0;
int or_result = 0;
bool progressed = false;
// A full-mask shuffle in a warp with fewer than 32 live lanes: undefined on a GPU.
bool partial_warp_shuffle = false;

void (*body)(void*) = nullptr;
void* body_context = nullptr;

void yield_to_scheduler() { swapcontext(&fibers[current].context, &scheduler); }

// Releases `b` when every live thread has arrived.
bool try_release(Barrier& b, bool is_block) {
    if (b.arrived == 0 || b.arrived < b.live) return false;
    b.arrived = 0;
    ++b.generation;
    if (is_block) {
        or_result = or_accumulated;
        or_accumulated = 0;
    }
    progressed = true;
    return true;
}

void wait_at(Barrier& b, bool is_block) {
    const unsigned generation = b.generation;
    ++b.arrived;
    progressed = true;
    if (try_release(b, is_block)) return;
    while (b.generation == generation) yield_to_scheduler();
}

void fiber_main() {
    body(body_context);
    Fiber& f = fibers[current];
    f.finished = true;
    progressed = true;
    --block_barrier.live;
    Warp& w = warps[f.linear / 32];
    --w.barrier.live;
    try_release(block_barrier, true);
    try_release(w.barrier, false);
    // Returning resumes uc_link: the scheduler.
}

}  // namespace

const dim3& thread_idx() { return fibers[current].index; }

unsigned lane_id() { return fibers[current].linear & 31u; }

void sync_block() { wait_at(block_barrier, true); }

int sync_block_or(int predicate) {
    or_accumulated |= predicate ? 1 : 0;
    wait_at(block_barrier, true);
    return or_result;
}

uint64_t warp_exchange(uint64_t bits, unsigned src) {
    Warp& w = warps[fibers[current].linear / 32];
    w.slots[fibers[current].linear & 31u] = bits;
    wait_at(w.barrier, false);  // every lane has published
    // Lanes that returned before the shuffle (or never existed) left the warp short.
    if (w.barrier.live != 32) partial_warp_shuffle = true;
    const uint64_t out = w.slots[src];
    wait_at(w.barrier, false);  // every lane has read before the slots are reused
    return out;
}

}  // namespace c2n_emu

using namespace c2n_emu;

// Runs one block to the end; false on a deadlock.
static bool run_block(unsigned threads) {
    fibers.assign(threads, Fiber{});
    warps.assign((threads + 31) / 32, Warp{});
    block_barrier = Barrier{};
    block_barrier.live = threads;
    for (unsigned t = 0; t < threads; ++t) warps[t / 32].barrier.live++;
    or_accumulated = or_result = 0;
    for (unsigned t = 0; t < threads; ++t) {
        Fiber& f = fibers[t];
        f.linear = t;
        f.index = dim3{t % block_dim.x, (t / block_dim.x) % block_dim.y,
                       t / (block_dim.x * block_dim.y)};
        f.finished = false;
        getcontext(&f.context);
        f.context.uc_stack.ss_sp = stacks.get() + (size_t)t * kStackBytes;
        f.context.uc_stack.ss_size = kStackBytes;
        f.context.uc_link = &scheduler;
        makecontext(&f.context, fiber_main, 0);
    }
    unsigned live = threads;
    while (live > 0) {
        progressed = false;
        for (size_t t = 0; t < threads; ++t) {
            if (fibers[t].finished) continue;
            current = t;
            swapcontext(&scheduler, &fibers[t].context);
        }
        live = block_barrier.live;
        if (!progressed && live > 0) return false;
    }
    return true;
}

// 0: done; 1: a block deadlocked (threads waiting at different barriers); 2: bad launch shape;
// 3: a warp shuffle ran with fewer than 32 live lanes (exited threads or a partial warp).
extern "C" int c2n_emu_launch(const unsigned grid[3], const unsigned block[3],
                              void (*kernel_body)(void*), void* context) {
    const unsigned long long threads = (unsigned long long)block[0] * block[1] * block[2];
    if (threads == 0 || threads > 1024 || grid[0] == 0 || grid[1] == 0 || grid[2] == 0) return 2;
    if (stacks_capacity < threads) {
        stacks.reset(new char[threads * kStackBytes]);
        stacks_capacity = threads;
    }
    body = kernel_body;
    body_context = context;
    partial_warp_shuffle = false;
    grid_dim = dim3{grid[0], grid[1], grid[2]};
    block_dim = dim3{block[0], block[1], block[2]};
    for (unsigned z = 0; z < grid[2]; ++z)
        for (unsigned y = 0; y < grid[1]; ++y)
            for (unsigned x = 0; x < grid[0]; ++x) {
                block_idx = dim3{x, y, z};
                if (!run_block((unsigned)threads)) return 1;
            }
    return partial_warp_shuffle ? 3 : 0;
}
