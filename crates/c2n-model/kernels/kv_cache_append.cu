// One decoding step's self-attention cache update in one pass: reorder the cached rows by the
// beam's `origin` and append the newest position,
//
//   out[r, h, p, :] = cache[origin[r], h, p, :]   for p < len
//   out[r, h, len, :] = new[r, h, 0, :]
//
// instead of an index_select and a cat (two copies of the whole cache per layer and step).
// Works on 4-byte or 2-byte words (f32, or bf16/f16), so it is written once per word size.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

template <typename T>
__device__ void reorder_append(const T* __restrict__ cache, const T* __restrict__ fresh,
                               const unsigned* __restrict__ origin, T* __restrict__ out,
                               const int heads, const int len, const int width) {
    // One block per (row, head).
    const long r = blockIdx.x / heads;
    const long h = blockIdx.x % heads;
    const long src_row = origin[r];
    const long span = (long)len * width;
    const T* src = cache + (src_row * heads + h) * span;
    T* dst = out + (r * heads + h) * (span + width);
    for (long i = threadIdx.x; i < span; i += blockDim.x) dst[i] = src[i];
    const T* col = fresh + (r * heads + h) * (long)width;
    for (int i = threadIdx.x; i < width; i += blockDim.x) dst[span + i] = col[i];
}

extern "C" __global__ void c2n_kv_reorder_append_u32(
    const unsigned* cache, const unsigned* fresh, const unsigned* origin, unsigned* out,
    const int heads, const int len, const int width) {
    reorder_append(cache, fresh, origin, out, heads, len, width);
}

extern "C" __global__ void c2n_kv_reorder_append_u16(
    const unsigned short* cache, const unsigned short* fresh, const unsigned* origin,
    unsigned short* out, const int heads, const int len, const int width) {
    reorder_append(cache, fresh, origin, out, heads, len, width);
}
