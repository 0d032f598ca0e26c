// Inverted dropout with a counter-based mask (dropout_rng.cuh): y = x · keep(seed, i), in one
// pass. The forward pass and, with the same seed, the backward pass (g · keep) call it, so no
// mask is stored between them; the attention block also uses it to drop its f32
// probabilities straight into v's dtype. Computed in f32, rounded once.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include <cuda_bf16.h>
#include "dropout_rng.cuh"

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

template <typename In, typename Out>
__device__ void dropout(const In* __restrict__ x, Out* __restrict__ y, const unsigned long long n,
                        const unsigned long long seed, const float p, const float scale) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        store(y + i, to_f32(x[i]) * c2n_keep_value(seed, i, p, scale));
    }
}

#define C2N_DROPOUT(NAME, IN, OUT)                                                            \
    extern "C" __global__ void c2n_dropout_##NAME(const IN* x, OUT* y,                        \
                                                  const unsigned long long n,                 \
                                                  const unsigned long long seed,              \
                                                  const float p, const float scale) {         \
        dropout(x, y, n, seed, p, scale);                                                     \
    }

C2N_DROPOUT(f32_f32, float, float)
C2N_DROPOUT(bf16_bf16, __nv_bfloat16, __nv_bfloat16)
C2N_DROPOUT(f32_bf16, float, __nv_bfloat16)
