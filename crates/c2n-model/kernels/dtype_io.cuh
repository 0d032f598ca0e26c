// Loads and stores of f32 or bf16 through f32, for the kernels that take either dtype: every
// value is computed in f32, converted once on load and rounded once (to nearest even) on store;
// `c2n_round_as` gives what storing and reloading a value in the dtype of its pointer gives.
#pragma once

#include <cuda_bf16.h>

__device__ __forceinline__ float c2n_load(const float* p, unsigned long long i) { return p[i]; }
__device__ __forceinline__ float c2n_load(const __nv_bfloat16* p, unsigned long long i) {
    return __bfloat162float(p[i]);
}
__device__ __forceinline__ void c2n_store(float* p, unsigned long long i, float v) { p[i] = v; }
__device__ __forceinline__ void c2n_store(__nv_bfloat16* p, unsigned long long i, float v) {
    p[i] = __float2bfloat16(v);
}
__device__ __forceinline__ float c2n_round_as(const float*, float v) { return v; }
__device__ __forceinline__ float c2n_round_as(const __nv_bfloat16*, float v) {
    return __bfloat162float(__float2bfloat16(v));
}
