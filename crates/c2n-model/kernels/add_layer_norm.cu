// A residual block's tail in one pass: `sum = dropout(a + a_bias) + b`, then
// `y = LayerNorm(sum)·w + bias` over each row, instead of the bias add, dropout, add, cast,
// layer-norm and cast kernels of the tensor ops (`a_bias`, the branch projection's bias of
// `a`'s dtype, may be null). `a`, `b`, `sum` and `y` are f32 or bf16; the dropout product and the sum are rounded to
// that dtype as the separate kernels round them (so `sum`, which the backward pass keeps, is
// the same), the statistics are f32, two passes (mean, then the variance of the centred row).
// The dropout mask is the counter-based one of `dropout_rng.cuh` (element index = row·width +
// column), so the backward pass regenerates it from the seed; p = 0 means no dropout.
//
// One block per row; the output holds `sum` ([rows, width]) then `y` ([rows, width]).
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include "block_reduce.cuh"
#include "dropout_rng.cuh"
#include "dtype_io.cuh"

template <typename T>
__device__ void dropout_add_layer_norm(const T* __restrict__ a, const T* __restrict__ a_bias,
                                       const T* __restrict__ b,
                                       const float* __restrict__ w,
                                       const float* __restrict__ bias, T* __restrict__ out,
                                       const int width, const float eps,
                                       const unsigned long long seed, const float p,
                                       const float scale) {
    __shared__ float shared[32];
    const long row = blockIdx.x;
    const long n = (long)gridDim.x * width;
    const long base = row * width;
    T* sum = out;
    T* y = out + n;
    float s = 0.0f;
    for (int j = threadIdx.x; j < width; j += blockDim.x) {
        const long i = base + j;
        float d = c2n_load(a, i);
        // Rounded op by op (no fused multiply-add), as the separate kernels compute them.
        if (a_bias) d = c2n_round_as(a, __fadd_rn(d, c2n_load(a_bias, j)));
        if (p > 0.0f)
            d = c2n_round_as(a, __fmul_rn(d, c2n_keep_value(seed, (unsigned long long)i, p, scale)));
        const float v = c2n_round_as(a, __fadd_rn(d, c2n_load(b, i)));
        c2n_store(sum, i, v);
        s += v;
    }
    const float mean = block_sum(s, shared) / width;
    float var = 0.0f;
    for (int j = threadIdx.x; j < width; j += blockDim.x) {
        const float c = c2n_load(sum, base + j) - mean;
        var += c * c;
    }
    const float rstd = 1.0f / sqrtf(block_sum(var, shared) / width + eps);
    for (int j = threadIdx.x; j < width; j += blockDim.x) {
        const long i = base + j;
        c2n_store(y, i, (c2n_load(sum, i) - mean) * rstd * w[j] + bias[j]);
    }
}

#define C2N_ADD_LN(SUFFIX, T)                                                                 \
    extern "C" __global__ void c2n_dropout_add_layer_norm_##SUFFIX(                           \
        const T* a, const T* a_bias, const T* b, const float* w, const float* bias, T* out,   \
        const int width, const float eps, const unsigned long long seed, const float p,       \
        const float scale) {                                                                  \
        dropout_add_layer_norm<T>(a, a_bias, b, w, bias, out, width, eps, seed, p, scale);    \
    }

C2N_ADD_LN(f32, float)
C2N_ADD_LN(bf16, __nv_bfloat16)
