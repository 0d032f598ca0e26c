// One decoding step of self-attention over a slotted cache, in one launch per layer, instead
// of reordering the whole cache by the beam (a copy of every cached position per step) and
// attending with two batched GEMVs and a softmax.
//
// The cache never moves: position p of every row lives in a fixed physical row; `slots[r, p]`
// says which. A beam reorder only rewrites the small slot table: the new row r continues old
// row origin[r], so slots_new[r, p] = slots_old[origin[r], p] for p < len, and its newest
// position is written to physical row r (position `len` is new, so nothing references it).
//
// Per (row r, head h), one block:
//   1. K[r, len, h, :] = k_new[r, h, :], V likewise; slots_new[r, :] (head 0's block)
//   2. s[p] = q[r, h, :] · K[src(p), p, h, :] for p ≤ len      (q already scaled)
//   3. P = softmax(s) (max, exp(s − max), sum, P = e / sum: Candle's softmax order)
//   4. ctx[r, h, :] = Σ_p P[p] · V[src(p), p, h, :]
// with src(p) = slots_old[origin[r], p] for p < len and r for p = len.
//
// Layouts (f32): q, k_new, v_new, ctx [rows, heads·d]; K, V [phys, cap, heads·d];
// slots_old u32 [old_rows, len]; origin u32 [rows] (ignored when has_origin is 0: the
// identity); slots_new u32 [rows, len + 1]. len + 1 ≤ C2N_SLOT_MAX_POSITIONS, d ≤ blockDim.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include "block_reduce.cuh"

#define C2N_SLOT_MAX_POSITIONS 1024

__device__ __forceinline__ float slot_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

extern "C" __global__ void c2n_slot_attention_step_f32(
    const float* __restrict__ q, const float* __restrict__ k_new, const float* __restrict__ v_new,
    float* __restrict__ k_cache, float* __restrict__ v_cache, const unsigned* __restrict__ slots_old,
    const unsigned* __restrict__ origin, const int has_origin, unsigned* __restrict__ slots_new,
    float* __restrict__ ctx, const int heads, const int d, const int len, const int cap) {
    __shared__ float probs[C2N_SLOT_MAX_POSITIONS];
    __shared__ float shared[32];
    __shared__ float partial[1024];
    const long r = blockIdx.x / heads;
    const int h = blockIdx.x % heads;
    const long width = (long)heads * d;
    const long head_at = r * width + h * d;
    const unsigned* old_row =
        len > 0 ? slots_old + (long)(has_origin ? origin[r] : (unsigned)r) * len : nullptr;

    // 1. The newest position goes to physical row r; the slot table follows the beam.
    float* k_new_at = k_cache + (r * cap + len) * width + h * d;
    float* v_new_at = v_cache + (r * cap + len) * width + h * d;
    for (int i = threadIdx.x; i < d; i += blockDim.x) {
        k_new_at[i] = k_new[head_at + i];
        v_new_at[i] = v_new[head_at + i];
    }
    if (h == 0)
        for (int p = threadIdx.x; p <= len; p += blockDim.x)
            slots_new[r * (len + 1) + p] = p < len ? old_row[p] : (unsigned)r;
    __syncthreads();  // this block reads its own position `len` below

    // 2. Scores: one warp per position.
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    const float* qh = q + head_at;
    for (int p = warp; p <= len; p += warps) {
        const long src = p < len ? (long)old_row[p] : r;
        const float* kp = k_cache + (src * cap + p) * width + h * d;
        float dot = 0.0f;
        for (int i = lane; i < d; i += 32) dot += qh[i] * kp[i];
        dot = slot_warp_sum(dot);
        if (lane == 0) probs[p] = dot;
    }
    __syncthreads();

    // 3. Softmax over the len + 1 positions.
    float m = -INFINITY;
    for (int p = threadIdx.x; p <= len; p += blockDim.x) m = fmaxf(m, probs[p]);
    m = block_max(m, shared);
    float s = 0.0f;
    for (int p = threadIdx.x; p <= len; p += blockDim.x) {
        const float e = expf(probs[p] - m);
        probs[p] = e;
        s += e;
    }
    s = block_sum(s, shared);  // its barriers also publish probs[]
    for (int p = threadIdx.x; p <= len; p += blockDim.x) probs[p] = probs[p] / s;
    __syncthreads();

    // 4. Context: `parts` groups of d threads split the positions, then add in group order.
    const int parts = blockDim.x / d;
    const int i = threadIdx.x % d, part = threadIdx.x / d;
    float acc = 0.0f;
    if (part < parts)
        for (int p = part; p <= len; p += parts) {
            const long src = p < len ? (long)old_row[p] : r;
            acc += probs[p] * v_cache[(src * cap + p) * width + h * d + i];
        }
    partial[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x < d) {
        float total = 0.0f;
        for (int g = 0; g < parts; ++g) total += partial[g * d + threadIdx.x];
        ctx[head_at + threadIdx.x] = total;
    }
}
