// Σ over the rows of a row-major `[rows, cols]` matrix, accumulated in f32: the bias gradient
// of a linear layer. Candle's `sum(0)` gives each output column one block whose threads read
// the column with a stride of `cols` (uncoalesced); here a block of 32 columns × 32 row lanes
// reads rows as contiguous 128-byte segments, each lane sums its rows in order, then the 32
// lane sums are added in a fixed tree (deterministic). f32 and bf16 input, f32 output.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include <cuda_bf16.h>

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ void column_sum(const T* __restrict__ m, float* __restrict__ out, const long rows,
                           const int cols) {
    __shared__ float partial[32][33];
    const int col = blockIdx.x * 32 + threadIdx.x;
    float s = 0.0f;
    if (col < cols)
        for (long r = threadIdx.y; r < rows; r += 32) s += to_f32(m[r * cols + col]);
    partial[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    for (int stride = 16; stride > 0; stride >>= 1) {
        if (threadIdx.y < stride)
            partial[threadIdx.y][threadIdx.x] += partial[threadIdx.y + stride][threadIdx.x];
        __syncthreads();
    }
    if (threadIdx.y == 0 && col < cols) out[col] = partial[0][threadIdx.x];
}

extern "C" __global__ void c2n_column_sum_f32(const float* m, float* out, const long rows,
                                              const int cols) {
    column_sum(m, out, rows, cols);
}

extern "C" __global__ void c2n_column_sum_bf16(const __nv_bfloat16* m, float* out, const long rows,
                                               const int cols) {
    column_sum(m, out, rows, cols);
}
