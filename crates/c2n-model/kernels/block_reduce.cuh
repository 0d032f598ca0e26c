// Block-wide reductions shared by the kernels (blockDim.x a multiple of 32, at most 1024):
// warp shuffles, then one value per warp through `shared` (32 floats). The result is on every
// thread; `shared` may be reused by the next call.
#pragma once

// The sum of `v` over the block.
__device__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = (threadIdx.x < (blockDim.x >> 5)) ? shared[threadIdx.x] : 0.0f;
    if (warp == 0) {
        for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    const float total = shared[0];
    __syncthreads();  // `shared` is reused by the next call
    return total;
}

// The maximum of `v` over the block.
__device__ float block_max(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = (threadIdx.x < (blockDim.x >> 5)) ? shared[threadIdx.x] : -INFINITY;
    if (warp == 0) {
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    const float total = shared[0];
    __syncthreads();
    return total;
}
