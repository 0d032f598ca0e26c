// Attention heads in and out of the projection layout, as single copies:
//
// split: x [b, L, N·h·d] (plus an optional bias [N·h·d], added and rounded as a separate add)
//        → out [N, b, h, L, d]: the N packed projections (q k v, k v, or one) split into heads;
// merge: N parts [b, h, L, d] → out [b, L, N·h·d]: heads merged and the parts packed side by
//        side (the layout of a packed projection's gradient; N = 1 is plain head merging).
//
// Candle does these as strided copies, each also uploading its dims and strides, and the bias
// add and the stacking of parts as more launches. One thread per output element, f32 or bf16.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include "dtype_io.cuh"

template <typename T>
__device__ void split_heads(const T* __restrict__ x, const T* __restrict__ bias,
                            T* __restrict__ out, const unsigned long long n, const int batch,
                            const int parts, const int heads, const int len, const int d) {
    for (unsigned long long o = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; o < n;
         o += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long t = o / d;
        const int di = o % d;
        const int l = t % len;
        t /= len;
        const int hi = t % heads;
        t /= heads;
        const int bi = t % batch;
        const int part = t / batch;
        const unsigned long long column = ((unsigned long long)part * heads + hi) * d + di;
        const unsigned long long src =
            ((unsigned long long)bi * len + l) * ((unsigned long long)parts * heads * d) + column;
        if (bias)
            c2n_store(out, o, __fadd_rn(c2n_load(x, src), c2n_load(bias, column)));
        else
            out[o] = x[src];
    }
}

template <typename T>
__device__ void merge_heads(const T* __restrict__ p0, const T* __restrict__ p1,
                            const T* __restrict__ p2, T* __restrict__ out,
                            const unsigned long long n, const int parts, const int heads,
                            const int len, const int d) {
    for (unsigned long long o = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; o < n;
         o += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long t = o / d;
        const int di = o % d;
        const int hi = t % heads;
        t /= heads;
        const int part = t % parts;
        t /= parts;
        const int l = t % len;
        const unsigned long long bi = t / len;
        const T* src = part == 0 ? p0 : (part == 1 ? p1 : p2);
        out[o] = src[((bi * heads + hi) * len + l) * d + di];
    }
}

#define C2N_HEADS(SUFFIX, T)                                                                   \
    extern "C" __global__ void c2n_split_heads_##SUFFIX(                                       \
        const T* x, const T* bias, T* out, const unsigned long long n, const int batch,        \
        const int parts, const int heads, const int len, const int d) {                        \
        split_heads<T>(x, bias, out, n, batch, parts, heads, len, d);                          \
    }                                                                                          \
    extern "C" __global__ void c2n_merge_heads_##SUFFIX(                                       \
        const T* p0, const T* p1, const T* p2, T* out, const unsigned long long n,             \
        const int parts, const int heads, const int len, const int d) {                        \
        merge_heads<T>(p0, p1, p2, out, n, parts, heads, len, d);                              \
    }

C2N_HEADS(f32, float)
C2N_HEADS(bf16, __nv_bfloat16)
