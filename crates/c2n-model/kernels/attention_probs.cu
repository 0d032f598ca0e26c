// The attention probabilities and their gradient, one kernel each, instead of the tensor ops
// of `src/layers/attention_op.rs` (cast, mask add and softmax; mask product, reduction and
// products in the backward pass). Per row r = (b·heads + h)·Lq + i of the `[rows, Lk]` scores:
//
// forward:  P = softmax(f32(s)·c + mask[b, i])        (f32, kept for the backward pass)
// backward: dP = f32(dD) · keep(seed, r·Lk + j), dS = (dP − Σ_j dP·P) · P · c   (dD's dtype)
//
// c is 1, or (unless C2N_CUDA_FEWER_LAUNCHES=0) the power-of-two query scale moved here from `q`
// (exact either way, so the values do not change: that saves scaling `q` in the forward pass
// and `q` and `dS·k` in the backward pass).
//
// where D = P · keep is the dropped probability (made by dropout.cu's kernel with the same
// seed, so no mask is stored) and dD = g·vᵀ. The additive mask is f32 `[mb, 1, mq, Lk]` with
// mb ∈ {1, batch} and mq ∈ {1, Lq} (key padding or causal), or absent (`has_mask` 0).
// One warp per row; f32 and bf16 scores.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include <cuda_bf16.h>
#include "dropout_rng.cuh"

__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16* p, float v) { *p = __float2bfloat16(v); }

__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

template <typename T>
__device__ void probs_forward(const T* __restrict__ scores, const float* __restrict__ mask,
                              const int has_mask, float* __restrict__ probs, const long rows,
                              const int lk, const int heads, const int lq, const int mask_b,
                              const int mask_q, const float c) {
    const long row = blockIdx.x * (long)(blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const int lane = threadIdx.x & 31;
    const T* s = scores + row * lk;
    const float* m = nullptr;
    if (has_mask) {
        const long i = row % lq;
        const long b = row / ((long)lq * heads);
        m = mask + ((mask_b == 1 ? 0 : b) * mask_q + (mask_q == 1 ? 0 : i)) * (long)lk;
    }
    float mx = -INFINITY;
    for (int j = lane; j < lk; j += 32) {
        const float v = __fmul_rn(to_f32(s[j]), c);
        mx = fmaxf(mx, m ? v + m[j] : v);
    }
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int j = lane; j < lk; j += 32) {
        const float v = __fmul_rn(to_f32(s[j]), c);
        sum += expf((m ? v + m[j] : v) - mx);
    }
    sum = warp_sum(sum);
    float* pr = probs + row * lk;
    for (int j = lane; j < lk; j += 32) {
        const float v = __fmul_rn(to_f32(s[j]), c);
        pr[j] = expf((m ? v + m[j] : v) - mx) / sum;
    }
}

template <typename T>
__device__ void probs_backward(const T* __restrict__ d_dropped, const float* __restrict__ probs,
                               T* __restrict__ d_scores, const long rows, const int lk,
                               const unsigned long long seed, const float p, const float scale,
                               const float c) {
    const long row = blockIdx.x * (long)(blockDim.x >> 5) + (threadIdx.x >> 5);
    if (row >= rows) return;
    const int lane = threadIdx.x & 31;
    const T* g = d_dropped + row * lk;
    const float* pr = probs + row * lk;
    const unsigned long long base = (unsigned long long)row * lk;
    float dot = 0.0f;
    for (int j = lane; j < lk; j += 32)
        dot += (to_f32(g[j]) * c2n_keep_value(seed, base + j, p, scale)) * pr[j];
    dot = warp_sum(dot);
    T* ds = d_scores + row * lk;
    for (int j = lane; j < lk; j += 32) {
        const float dp = to_f32(g[j]) * c2n_keep_value(seed, base + j, p, scale);
        store(ds + j, __fmul_rn((dp - dot) * pr[j], c));
    }
}

#define C2N_ATTENTION_PROBS(NAME, T)                                                          \
    extern "C" __global__ void c2n_attention_probs_fwd_##NAME(                                \
        const T* scores, const float* mask, const int has_mask, float* probs,                 \
        const long rows, const int lk, const int heads, const int lq, const int mask_b,       \
        const int mask_q, const float c) {                                                    \
        probs_forward(scores, mask, has_mask, probs, rows, lk, heads, lq, mask_b, mask_q, c); \
    }                                                                                         \
    extern "C" __global__ void c2n_attention_probs_bwd_##NAME(                                \
        const T* d_dropped, const float* probs, T* d_scores, const long rows, const int lk,   \
        const unsigned long long seed, const float p, const float scale, const float c) {     \
        probs_backward(d_dropped, probs, d_scores, rows, lk, seed, p, scale, c);              \
    }

C2N_ATTENTION_PROBS(f32, float)
C2N_ATTENTION_PROBS(bf16, __nv_bfloat16)
