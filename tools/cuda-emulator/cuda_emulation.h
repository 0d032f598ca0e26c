// CPU emulation of the CUDA features our kernels use (crates/*/kernels/*.cu), so the tests can
// run the kernels' own source on a machine without a GPU: compiled as C++ with this header
// force-included (`-include cuda_emulation.h`), each CUDA thread of a block becomes a fiber,
// and the fibers of one block run cooperatively until every one has finished. Blocks run one
// after another, so `__shared__` variables can be function statics.
//
// What it checks: index arithmetic, bounds, reductions, barriers and warp shuffles, the tie
// rules, bf16 rounding. What it cannot: timing, memory coalescing, races that need real
// parallelism, and the last ulps of CUDA's expf/erff/logf (glibc's are used instead).
//
// Used by crates/c2n-model/tests/kernel_emulation (see README.md next to this file).
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#define __global__
// Internal linkage: each kernel file is its own module, as its PTX is on the GPU.
#define __device__ static
#define __host__
#define __forceinline__ inline
#define __restrict__ __restrict
// One block at a time: a block's shared memory is a function static.
#define __shared__ static

struct dim3 {
    unsigned x, y, z;
};

namespace c2n_emu {
extern dim3 block_idx, block_dim, grid_dim;
// The running fiber's thread index.
const dim3& thread_idx();
// The running fiber's lane and warp (from its linear thread index, as on the GPU).
unsigned lane_id();
void sync_block();
int sync_block_or(int predicate);
// Publishes `bits` to the warp, waits for every live lane, and returns lane `src`'s bits.
uint64_t warp_exchange(uint64_t bits, unsigned src);
}  // namespace c2n_emu

#define threadIdx (c2n_emu::thread_idx())
#define blockIdx (c2n_emu::block_idx)
#define blockDim (c2n_emu::block_dim)
#define gridDim (c2n_emu::grid_dim)

inline void __syncthreads() { c2n_emu::sync_block(); }
inline int __syncthreads_or(int predicate) { return c2n_emu::sync_block_or(predicate); }

template <typename T>
inline T __shfl_xor_sync(unsigned /*mask*/, T value, int lane_mask) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof(T));
    bits = c2n_emu::warp_exchange(bits, (c2n_emu::lane_id() ^ (unsigned)lane_mask) & 31u);
    T out;
    memcpy(&out, &bits, sizeof(T));
    return out;
}

inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// Round-to-nearest single operations (compile with -ffp-contract=off so nothing is fused).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }

// The standard normal CDF (CUDA's is its own implementation; this is the same function, not
// the same last ulps).
inline float normcdff(float x) { return 0.5f * erfcf(-x * 0.70710678118654752f); }

// bf16 as the CUDA headers define it: the top 16 bits of an f32, rounded to nearest even.
struct __nv_bfloat16 {
    uint16_t bits;
};

inline float __bfloat162float(__nv_bfloat16 h) {
    const uint32_t u = (uint32_t)h.bits << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    __nv_bfloat16 h;
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        h.bits = (uint16_t)((u >> 16) | 0x40u);  // quiet NaN
    } else {
        h.bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    return h;
}
