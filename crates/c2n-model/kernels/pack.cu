// Many tensors copied into one flat buffer in one launch, converted on the way: the training
// pass's bf16 weight copies (f32 → bf16), its packed f32 groups (f32 → f32) and the f32 weight
// gradients from bf16 ones (bf16 → f32). One kernel per tensor costs a launch and an
// allocation each; here the host lists chunks of at most a fixed number of elements, three
// u64 per chunk — source address, destination offset (elements), length — and each block
// copies one chunk. Conversions round to nearest even, as Candle's `to_dtype`.
//
// Built to PTX by crates/c2n-model/build.rs when the `cuda` feature is on.

#include "dtype_io.cuh"

template <typename In, typename Out>
__device__ void pack_chunk(const unsigned long long* __restrict__ chunks, Out* __restrict__ out) {
    const unsigned long long* chunk = chunks + 3ull * blockIdx.x;
    const In* src = reinterpret_cast<const In*>(chunk[0]);
    Out* dst = out + chunk[1];
    const unsigned long long n = chunk[2];
    for (unsigned long long i = threadIdx.x; i < n; i += blockDim.x) c2n_store(dst, i, c2n_load(src, i));
}

#define C2N_PACK(NAME, IN, OUT)                                                               \
    extern "C" __global__ void c2n_pack_##NAME(const unsigned long long* chunks, OUT* out) { \
        pack_chunk<IN, OUT>(chunks, out);                                                     \
    }

C2N_PACK(f32_bf16, float, __nv_bfloat16)
C2N_PACK(f32_f32, float, float)
C2N_PACK(bf16_f32, __nv_bfloat16, float)
