// The layer-norm backward pass in two kernels, instead of the ~18 tensor ops of the
// closed-form gradient in `src/layers/layer_norm_op.rs`. `x`, `g` and `dx` are f32 or bf16
// (converted to f32 on load, `dx` rounded once on store), the weight and everything computed
// are f32:
//
// 1. c2n_layer_norm_bwd_rows*, one block per row: the row's mean and rstd (two passes, as the
//    tensor-op version), then dx = (g·w − mean(g·w) − n·mean(g·w·n))·rstd with
//    n = (x − mean)·rstd; writes mean and rstd of every row to `stats` ([rows] each).
// 2. c2n_layer_norm_bwd_params*, blocks of 32 columns × 32 row lanes: dw = Σ_rows g·n and
//    db = Σ_rows g, written to `dwdb` (dw then db, [width] each).
//
// The `_fused` variants (the explicit pass, unless C2N_CUDA_FEWER_LAUNCHES=0) also take a second
// upstream gradient `g2` (may be null), added to `g` on load and rounded to the dtype as a
// separate add would round it, and write, besides `dx`, `dx` times the dropout mask of `seed`
// (`dx_dropped`, may be null; rounded as the dropout kernel rounds): the gradient of the branch
// whose dropout fed the residual sum. That saves the add before and the dropout after.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include "block_reduce.cuh"
#include "dropout_rng.cuh"
#include "dtype_io.cuh"

// The upstream gradient at `i`: `g`, or `g + g2` rounded as a separate add rounds it.
template <typename T>
__device__ __forceinline__ float ln_grad(const T* g, const T* g2, long i) {
    const float v = c2n_load(g, i);
    return g2 ? c2n_round_as(g, __fadd_rn(v, c2n_load(g2, i))) : v;
}

// Rows kernel; the plain one is this with no `g2` and no `dx_dropped`.
template <typename T>
__device__ void layer_norm_bwd_rows(const T* __restrict__ x, const float* __restrict__ w,
                                    const T* __restrict__ g, const T* __restrict__ g2,
                                    T* __restrict__ dx, T* __restrict__ dx_dropped,
                                    float* __restrict__ stats, const int width, const float eps,
                                    const unsigned long long seed, const float p,
                                    const float scale) {
    __shared__ float shared[32];
    const long row = blockIdx.x;
    const long rows = gridDim.x;
    const long base = row * width;
    float s = 0.0f;
    for (int j = threadIdx.x; j < width; j += blockDim.x) s += c2n_load(x, base + j);
    const float mean = block_sum(s, shared) / width;
    float v = 0.0f;
    for (int j = threadIdx.x; j < width; j += blockDim.x) {
        const float c = c2n_load(x, base + j) - mean;
        v += c * c;
    }
    const float var = block_sum(v, shared) / width;
    const float rstd = 1.0f / sqrtf(var + eps);
    float a = 0.0f, b = 0.0f;
    for (int j = threadIdx.x; j < width; j += blockDim.x) {
        const float gw = ln_grad(g, g2, base + j) * w[j];
        a += gw;
        b += gw * ((c2n_load(x, base + j) - mean) * rstd);
    }
    const float a_mean = block_sum(a, shared) / width;
    const float b_mean = block_sum(b, shared) / width;
    for (int j = threadIdx.x; j < width; j += blockDim.x) {
        const long i = base + j;
        const float n = (c2n_load(x, i) - mean) * rstd;
        const float d = c2n_round_as(dx, (ln_grad(g, g2, i) * w[j] - a_mean - n * b_mean) * rstd);
        c2n_store(dx, i, d);
        if (dx_dropped)
            c2n_store(dx_dropped, i,
                      p > 0.0f ? __fmul_rn(d, c2n_keep_value(seed, (unsigned long long)i, p, scale))
                               : d);
    }
    if (threadIdx.x == 0) {
        stats[row] = mean;
        stats[rows + row] = rstd;
    }
}

// Parameters kernel; the plain one is this with no `g2`.
template <typename T>
__device__ void layer_norm_bwd_params(const T* __restrict__ x, const T* __restrict__ g,
                                      const T* __restrict__ g2, const float* __restrict__ stats,
                                      float* __restrict__ dwdb, const int rows, const int width) {
    __shared__ float sw[32][33];
    __shared__ float sb[32][33];
    const int j = blockIdx.x * 32 + threadIdx.x;
    float aw = 0.0f, ab = 0.0f;
    if (j < width) {
        for (int r = threadIdx.y; r < rows; r += blockDim.y) {
            const long at = (long)r * width + j;
            const float gv = ln_grad(g, g2, at);
            aw += gv * ((c2n_load(x, at) - stats[r]) * stats[rows + r]);
            ab += gv;
        }
    }
    sw[threadIdx.y][threadIdx.x] = aw;
    sb[threadIdx.y][threadIdx.x] = ab;
    __syncthreads();
    if (threadIdx.y == 0 && j < width) {
        float tw = 0.0f, tb = 0.0f;
        for (int k = 0; k < blockDim.y; ++k) {
            tw += sw[k][threadIdx.x];
            tb += sb[k][threadIdx.x];
        }
        dwdb[j] = tw;
        dwdb[width + j] = tb;
    }
}

#define C2N_LN_BWD(SUFFIX, FUSED_SUFFIX, T)                                                   \
    extern "C" __global__ void c2n_layer_norm_bwd_rows##SUFFIX(                               \
        const T* x, const float* w, const T* g, T* dx, float* stats, const int width,         \
        const float eps) {                                                                    \
        layer_norm_bwd_rows<T>(x, w, g, nullptr, dx, nullptr, stats, width, eps, 0, 0.0f,     \
                               1.0f);                                                         \
    }                                                                                         \
    extern "C" __global__ void c2n_layer_norm_bwd_params##SUFFIX(                             \
        const T* x, const T* g, const float* stats, float* dwdb, const int rows,              \
        const int width) {                                                                    \
        layer_norm_bwd_params<T>(x, g, nullptr, stats, dwdb, rows, width);                    \
    }                                                                                         \
    extern "C" __global__ void c2n_layer_norm_bwd_rows_fused_##FUSED_SUFFIX(                  \
        const T* x, const float* w, const T* g, const T* g2, T* dx, T* dx_dropped,            \
        float* stats, const int width, const float eps, const unsigned long long seed,        \
        const float p, const float scale) {                                                   \
        layer_norm_bwd_rows<T>(x, w, g, g2, dx, dx_dropped, stats, width, eps, seed, p,       \
                               scale);                                                        \
    }                                                                                         \
    extern "C" __global__ void c2n_layer_norm_bwd_params_fused_##FUSED_SUFFIX(                \
        const T* x, const T* g, const T* g2, const float* stats, float* dwdb, const int rows, \
        const int width) {                                                                    \
        layer_norm_bwd_params<T>(x, g, g2, stats, dwdb, rows, width);                         \
    }

C2N_LN_BWD(, f32, float)
C2N_LN_BWD(_bf16, bf16, __nv_bfloat16)
