// A feed-forward layer's first half after its GEMM, one pass each way:
//
// forward:  pre = y + bias[column]; out = act(pre) · keep(seed, i)   (both written: the backward
//           pass needs `pre`, the next GEMM `out`)
// backward: d_pre = (g · keep(seed, i)) · [pre > 0]                  (ReLU only)
//
// instead of the bias add, the activation and the dropout (and, backward, the dropout, a
// scalar upload, a compare, a cast and a product). Every step is rounded to the dtype as the
// separate kernels round it (products op by op, no fused multiply-add), so for ReLU the
// values are theirs; GELU is x·Φ(x) with CUDA's normcdff, as Candle's `gelu_erf` (which in
// bf16 rounds Φ to bf16 first). p = 0: no dropout. `act`: 0 ReLU, 1 GELU. f32 or bf16
// throughout, the keep mask of dropout_rng.cuh.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include "dropout_rng.cuh"
#include "dtype_io.cuh"

// Candle's ReLU: fmaxf in f32 (a NaN becomes 0), __hmax_nan in bf16 (a NaN stays).
__device__ __forceinline__ float relu_as(const float*, const float x) { return fmaxf(x, 0.0f); }
__device__ __forceinline__ float relu_as(const __nv_bfloat16*, const float x) {
    return x != x ? x : fmaxf(x, 0.0f);
}

template <typename T>
__device__ void bias_activation_dropout(const T* __restrict__ y, const T* __restrict__ bias,
                                        T* __restrict__ out, const unsigned long long n,
                                        const int width, const int act,
                                        const unsigned long long seed, const float p,
                                        const float scale) {
    T* pre_out = out;
    T* act_out = out + n;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        const float pre = c2n_round_as(y, __fadd_rn(c2n_load(y, i), c2n_load(bias, i % width)));
        c2n_store(pre_out, i, pre);
        // Candle's activations, rounded as they round: in bf16 its GELU multiplies x by Φ(x)
        // rounded to bf16 (exact in f32, then rounded once more) and its ReLU keeps a NaN.
        float a = act == 0 ? relu_as(y, pre)
                           : c2n_round_as(y, __fmul_rn(pre, c2n_round_as(y, normcdff(pre))));
        if (p > 0.0f) a = __fmul_rn(a, c2n_keep_value(seed, i, p, scale));
        c2n_store(act_out, i, a);
    }
}

template <typename T>
__device__ void dropout_relu_backward(const T* __restrict__ g, const T* __restrict__ pre,
                                      T* __restrict__ d_pre, const unsigned long long n,
                                      const unsigned long long seed, const float p,
                                      const float scale) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        float d = c2n_load(g, i);
        if (p > 0.0f) d = c2n_round_as(g, __fmul_rn(d, c2n_keep_value(seed, i, p, scale)));
        c2n_store(d_pre, i, c2n_load(pre, i) > 0.0f ? d : 0.0f * d);
    }
}

#define C2N_BIAS_ACTIVATION(SUFFIX, T)                                                         \
    extern "C" __global__ void c2n_bias_activation_dropout_##SUFFIX(                           \
        const T* y, const T* bias, T* out, const unsigned long long n, const int width,        \
        const int act, const unsigned long long seed, const float p, const float scale) {      \
        bias_activation_dropout<T>(y, bias, out, n, width, act, seed, p, scale);               \
    }                                                                                          \
    extern "C" __global__ void c2n_dropout_relu_backward_##SUFFIX(                             \
        const T* g, const T* pre, T* d_pre, const unsigned long long n,                        \
        const unsigned long long seed, const float p, const float scale) {                     \
        dropout_relu_backward<T>(g, pre, d_pre, n, seed, p, scale);                            \
    }

C2N_BIAS_ACTIVATION(f32, float)
C2N_BIAS_ACTIVATION(bf16, __nv_bfloat16)
