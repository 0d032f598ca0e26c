// Kernels that test the emulator itself (crates/c2n-model/tests/kernels_emulated.rs).

#include "../../crates/c2n-model/kernels/block_reduce.cuh"

// out[block] = Σ x[block·n .. (block+1)·n] through block_sum (warp shuffles + barriers).
extern "C" __global__ void c2n_emu_self_test_block_sum(const float* x, float* out, int n) {
    __shared__ float shared[32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += x[blockIdx.x * (long)n + i];
    const float total = block_sum(s, shared);
    if (threadIdx.x == 0) out[blockIdx.x] = total;
}

// Half of a warp waits at a block barrier while the other half waits in a warp shuffle that
// needs the first half: a deadlock (on a GPU, undefined behaviour); the emulator must report it.
extern "C" __global__ void c2n_emu_self_test_deadlock(float* sink) {
    if (threadIdx.x < 16) {
        __syncthreads();
    } else {
        const float v = __shfl_xor_sync(0xffffffff, 1.0f, 1);
        if (v == 2.0f) *sink = v;
        __syncthreads();
    }
}

// Lanes 16..31 return before a full-mask shuffle: undefined on a GPU; the emulator must say so.
extern "C" __global__ void c2n_emu_self_test_partial_shuffle(float* sink) {
    if (threadIdx.x >= 16) return;
    const float v = __shfl_xor_sync(0xffffffff, 1.0f, 1);
    if (v == 2.0f) *sink = v;
}
