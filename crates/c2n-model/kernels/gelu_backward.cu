// The exact (erf) GELU's backward pass in one pass: dx = g · (Φ(x) + x·φ(x)), computed in f32
// and rounded once, instead of the ten tensor ops of `activation_slope` in
// `src/layers/activation.rs` (each a full pass over `[rows, 3072]` per encoder layer).
// f32 and bf16.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include <cuda_bf16.h>

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

template <typename T>
__device__ void gelu_backward(const T* __restrict__ x, const T* __restrict__ g, T* __restrict__ dx,
                              const unsigned long long n) {
    const float inv_sqrt2 = 0.70710678118654752440f;
    const float inv_sqrt_2pi = 0.39894228040143267794f;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const float v = to_f32(x[i]);
        const float cdf = 0.5f + 0.5f * erff(v * inv_sqrt2);
        const float pdf = expf(-0.5f * v * v) * inv_sqrt_2pi;
        store(dx + i, to_f32(g[i]) * (cdf + v * pdf));
    }
}

extern "C" __global__ void c2n_gelu_backward_f32(const float* x, const float* g, float* dx,
                                                 const unsigned long long n) {
    gelu_backward(x, g, dx, n);
}

extern "C" __global__ void c2n_gelu_backward_bf16(const __nv_bfloat16* x, const __nv_bfloat16* g,
                                                  __nv_bfloat16* dx, const unsigned long long n) {
    gelu_backward(x, g, dx, n);
}
