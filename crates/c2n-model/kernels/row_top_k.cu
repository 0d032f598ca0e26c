// The K best beam candidates of every row, one block per row (f32), instead of the tensor-op
// ranking in `src/session/row_top_k.rs` (dozens of full passes over `rows × V`):
//
//   value[w] = logp[w] + row_score          (the reference's f32 addition)
//   logp[w]  = (x[w] − max) − log(Σ exp(x − max))   when `log_softmax` (x: logits; the same
//              formula as Candle's `log_softmax` and PyTorch's), else x itself
//
// ranked under the beam's tie rule: higher value first, equal values by lower token id. Each
// thread keeps its own K best of a strided slice of the row; K rounds of a block-wide
// arg-best then merge them. A row with a NaN value gets flag 1 and the caller ranks it again
// with the tensor ops (the tie rule ranks NaN; comparisons here cannot).
//
// Output per row (f32 words): K values, K token ids (u32 bits), 1 flag.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#define C2N_TOP_K_MAX 32
#define C2N_NO_ID 0xffffffffu

__device__ __forceinline__ bool better(float av, unsigned ai, float bv, unsigned bi) {
    return av > bv || (av == bv && ai < bi);
}

#include "block_reduce.cuh"

// The block's best (value, id) under `better`; result on every thread.
__device__ void block_best(float& v, unsigned& id, float* shared_v, unsigned* shared_i) {
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffff, v, o);
        const unsigned oi = __shfl_xor_sync(0xffffffff, id, o);
        if (better(ov, oi, v, id)) { v = ov; id = oi; }
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) { shared_v[warp] = v; shared_i[warp] = id; }
    __syncthreads();
    if (warp == 0) {
        const bool live = threadIdx.x < (blockDim.x >> 5);
        v = live ? shared_v[threadIdx.x] : -INFINITY;
        id = live ? shared_i[threadIdx.x] : C2N_NO_ID;
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffff, v, o);
            const unsigned oi = __shfl_xor_sync(0xffffffff, id, o);
            if (better(ov, oi, v, id)) { v = ov; id = oi; }
        }
        if (lane == 0) { shared_v[0] = v; shared_i[0] = id; }
    }
    __syncthreads();
    v = shared_v[0];
    id = shared_i[0];
    __syncthreads();
}

extern "C" __global__ void c2n_row_top_k(
    const float* __restrict__ x, const float* __restrict__ row_scores, const int has_scores,
    const int vocab, const int k, const int log_softmax, float* __restrict__ out) {
    __shared__ float shared_v[32];
    __shared__ unsigned shared_i[32];
    const long row = blockIdx.x;
    const float* xr = x + row * (long)vocab;
    const float score = has_scores ? row_scores[row] : 0.0f;

    float shift = 0.0f, log_sum = 0.0f;
    if (log_softmax) {
        float m = -INFINITY;
        for (int w = threadIdx.x; w < vocab; w += blockDim.x) m = fmaxf(m, xr[w]);
        shift = block_max(m, shared_v);
        float s = 0.0f;
        for (int w = threadIdx.x; w < vocab; w += blockDim.x) s += expf(xr[w] - shift);
        log_sum = logf(block_sum(s, shared_v));
    }

    float best_v[C2N_TOP_K_MAX];
    unsigned best_i[C2N_TOP_K_MAX];
    for (int j = 0; j < k; ++j) { best_v[j] = -INFINITY; best_i[j] = C2N_NO_ID; }
    float last_v = -INFINITY;
    unsigned last_i = C2N_NO_ID;
    int nan = 0;
    for (int w = threadIdx.x; w < vocab; w += blockDim.x) {
        const float logp = log_softmax ? (xr[w] - shift) - log_sum : xr[w];
        const float v = has_scores ? logp + score : logp;
        if (isnan(v)) { nan = 1; continue; }
        if (!better(v, (unsigned)w, last_v, last_i)) continue;
        int p = k - 1;
        while (p > 0 && better(v, (unsigned)w, best_v[p - 1], best_i[p - 1])) {
            best_v[p] = best_v[p - 1];
            best_i[p] = best_i[p - 1];
            --p;
        }
        best_v[p] = v;
        best_i[p] = (unsigned)w;
        last_v = best_v[k - 1];
        last_i = best_i[k - 1];
    }
    const int any_nan = __syncthreads_or(nan);

    float* out_row = out + row * (long)(2 * k + 1);
    int head = 0;
    for (int r = 0; r < k; ++r) {
        float v = head < k ? best_v[head] : -INFINITY;
        unsigned id = head < k ? best_i[head] : C2N_NO_ID;
        const unsigned mine = id;
        block_best(v, id, shared_v, shared_i);
        if (mine == id && id != C2N_NO_ID) ++head;
        if (threadIdx.x == 0) {
            out_row[r] = v;
            out_row[k + r] = __uint_as_float(id);
        }
    }
    if (threadIdx.x == 0) out_row[2 * k] = any_nan ? 1.0f : 0.0f;
}
