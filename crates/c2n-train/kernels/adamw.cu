// One AdamW update of parameters in one pass (f32), in place: the parameter, its first and
// second moments. The arithmetic is the tensor-op update's (`src/optim/adamw.rs`, spec §7.2),
// op for op, each op rounded on its own (`__f*_rn`: no fused multiply-adds), so both give
// bit-identical results:
//
//   m = m·β1 + g·(1−β1);  v = v·β2 + (g·g)·(1−β2)
//   p = p + (m / (√v + ε))·(−step_size);  with decay: p = p + p·(−lr·wd)
//
// The tensor ops take about 18 passes over the gradients, moments and parameters (and copy
// them into flat chunks and back); this reads each once and writes three.
//
// c2n_adamw_f32 updates one parameter tensor (grid-stride loop); c2n_adamw_multi_f32 updates
// all the parameters of a moment chunk in one launch, one block per row of a chunk table
// (parameter address, gradient address, moment offset, length; `kernel_launch::chunk_table`).
//
// Built to PTX by crates/c2n-train/build.rs when the `cuda` feature is on.

__device__ __forceinline__ void adamw_update(float* __restrict__ param,
                                             const float* __restrict__ grad,
                                             float* __restrict__ exp_avg,
                                             float* __restrict__ exp_avg_sq,
                                             const unsigned long long i,
                                             const unsigned long long mi, const float beta1,
                                             const float one_minus_beta1, const float beta2,
                                             const float one_minus_beta2, const float eps,
                                             const float neg_step_size, const int decay,
                                             const float neg_lr_decay) {
    const float g = grad[i];
    const float m = __fadd_rn(__fmul_rn(exp_avg[mi], beta1), __fmul_rn(g, one_minus_beta1));
    const float v = __fadd_rn(__fmul_rn(exp_avg_sq[mi], beta2),
                              __fmul_rn(__fmul_rn(g, g), one_minus_beta2));
    exp_avg[mi] = m;
    exp_avg_sq[mi] = v;
    const float denom = __fadd_rn(__fsqrt_rn(v), eps);
    float p = __fadd_rn(param[i], __fmul_rn(__fdiv_rn(m, denom), neg_step_size));
    if (decay) p = __fadd_rn(p, __fmul_rn(p, neg_lr_decay));
    param[i] = p;
}

extern "C" __global__ void c2n_adamw_f32(float* __restrict__ param, const float* __restrict__ grad,
                                         float* __restrict__ exp_avg,
                                         float* __restrict__ exp_avg_sq,
                                         const unsigned long long n, const float beta1,
                                         const float one_minus_beta1, const float beta2,
                                         const float one_minus_beta2, const float eps,
                                         const float neg_step_size, const int decay,
                                         const float neg_lr_decay) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)gridDim.x * blockDim.x) {
        adamw_update(param, grad, exp_avg, exp_avg_sq, i, i, beta1, one_minus_beta1, beta2,
                     one_minus_beta2, eps, neg_step_size, decay, neg_lr_decay);
    }
}

extern "C" __global__ void c2n_adamw_multi_f32(const unsigned long long* __restrict__ table,
                                               float* __restrict__ exp_avg,
                                               float* __restrict__ exp_avg_sq, const float beta1,
                                               const float one_minus_beta1, const float beta2,
                                               const float one_minus_beta2, const float eps,
                                               const float neg_step_size, const int decay,
                                               const float neg_lr_decay) {
    const unsigned long long* row = table + 4ull * blockIdx.x;
    float* param = reinterpret_cast<float*>(row[0]);
    const float* grad = reinterpret_cast<const float*>(row[1]);
    const unsigned long long offset = row[2], n = row[3];
    for (unsigned long long i = threadIdx.x; i < n; i += blockDim.x) {
        adamw_update(param, grad, exp_avg, exp_avg_sq, i, offset + i, beta1, one_minus_beta1,
                     beta2, one_minus_beta2, eps, neg_step_size, decay, neg_lr_decay);
    }
}
