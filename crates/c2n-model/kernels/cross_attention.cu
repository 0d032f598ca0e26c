// One decoding step of cross-attention for groups of rows that share an example's memory, in
// one launch per layer, instead of the head split, two batched GEMMs, the mask add, the
// softmax and the head merge (seven ops and their copies).
//
// Rows come in groups of G consecutive rows of one entry (the K beams of an example); the
// entry's memory keys and values are read once per (entry, head) for all G queries.
// Per (entry e, head h), one block:
//   s[g, j] = q[e·G + g, h, :] · K[e, h, j, :] + mask[e, j]     (q already scaled)
//   P[g]    = softmax(s[g])       (max, exp(s − max), sum, P = e / sum: Candle's order)
//   ctx[e·G + g, h, :] = Σ_j P[g, j] · V[e, h, j, :]
//
// Layouts (f32): q, ctx [entries·G, heads·d]; K, V [entries, heads, S, d]; mask [entries, S]
// (0 or −inf). Limits: G ≤ C2N_CROSS_MAX_GROUP, G·d ≤ C2N_CROSS_MAX_QUERY,
// G·S ≤ C2N_CROSS_MAX_SCORES, d ≤ blockDim.x (the caller checks them).
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#define C2N_CROSS_MAX_GROUP 16
#define C2N_CROSS_MAX_QUERY 1024
#define C2N_CROSS_MAX_SCORES 8192

__device__ __forceinline__ float cross_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

__device__ __forceinline__ float cross_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

extern "C" __global__ void c2n_grouped_cross_attention_f32(
    const float* __restrict__ q, const float* __restrict__ keys, const float* __restrict__ values,
    const float* __restrict__ mask, float* __restrict__ ctx, const int heads, const int d,
    const int S, const int G) {
    __shared__ float queries[C2N_CROSS_MAX_QUERY];
    // Scores, then probabilities, then (reused) the partial contexts.
    __shared__ float probs[C2N_CROSS_MAX_SCORES];
    const long e = blockIdx.x / heads;
    const int h = blockIdx.x % heads;
    const long width = (long)heads * d;
    const float* kh = keys + (e * heads + h) * (long)S * d;
    const float* vh = values + (e * heads + h) * (long)S * d;
    const float* me = mask + e * (long)S;

    for (int idx = threadIdx.x; idx < G * d; idx += blockDim.x) {
        const int g = idx / d, i = idx % d;
        queries[idx] = q[(e * G + g) * width + h * d + i];
    }
    __syncthreads();

    // Scores: one warp per memory position, all G queries against its key.
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
    for (int j = warp; j < S; j += warps) {
        const float* kj = kh + (long)j * d;
        for (int g = 0; g < G; ++g) {
            float dot = 0.0f;
            for (int i = lane; i < d; i += 32) dot += queries[g * d + i] * kj[i];
            dot = cross_warp_sum(dot);
            if (lane == 0) probs[g * S + j] = dot + me[j];
        }
    }
    __syncthreads();

    // Softmax: one warp per query.
    for (int g = warp; g < G; g += warps) {
        float* row = probs + g * S;
        float m = -INFINITY;
        for (int j = lane; j < S; j += 32) m = fmaxf(m, row[j]);
        m = cross_warp_max(m);
        float s = 0.0f;
        for (int j = lane; j < S; j += 32) {
            const float x = expf(row[j] - m);
            row[j] = x;
            s += x;
        }
        s = cross_warp_sum(s);
        for (int j = lane; j < S; j += 32) row[j] = row[j] / s;
    }
    __syncthreads();

    // Context: `parts` groups of d threads split the positions; each thread reads V[j, i]
    // once for all G queries.
    const int parts = blockDim.x / d;
    const int i = threadIdx.x % d, part = threadIdx.x / d;
    float acc[C2N_CROSS_MAX_GROUP];
    for (int g = 0; g < G; ++g) acc[g] = 0.0f;
    if (part < parts)
        for (int j = part; j < S; j += parts) {
            const float v = vh[(long)j * d + i];
            for (int g = 0; g < G; ++g) acc[g] += probs[g * S + j] * v;
        }
    __syncthreads();  // probs is reused below
    if (part < parts)
        for (int g = 0; g < G; ++g) probs[(part * G + g) * d + i] = acc[g];
    __syncthreads();
    for (int idx = threadIdx.x; idx < G * d; idx += blockDim.x) {
        const int g = idx / d, c = idx % d;
        float total = 0.0f;
        for (int p = 0; p < parts; ++p) total += probs[(p * G + g) * d + c];
        ctx[(e * G + g) * width + h * d + c] = total;
    }
}
