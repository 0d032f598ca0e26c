// One AdamW update of one parameter tensor in one pass (f32), in place: the parameter, its
// first and second moments. The arithmetic is the tensor-op update's (`src/optim/adamw.rs`,
// spec §7.2), op for op, each op rounded on its own (`__f*_rn`: no fused multiply-adds), so
// both give bit-identical results:
//
//   m = m·β1 + g·(1−β1);  v = v·β2 + (g·g)·(1−β2)
//   p = p + (m / (√v + ε))·(−step_size);  with decay: p = p + p·(−lr·wd)
//
// The tensor ops take about 18 passes over the gradients, moments and parameters (and copy
// them into flat chunks and back); this reads each once and writes three.
//
// Built to PTX by crates/c2n-train/build.rs when the `cuda` feature is on.

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
        const float g = grad[i];
        const float m = __fadd_rn(__fmul_rn(exp_avg[i], beta1), __fmul_rn(g, one_minus_beta1));
        const float v = __fadd_rn(__fmul_rn(exp_avg_sq[i], beta2),
                                  __fmul_rn(__fmul_rn(g, g), one_minus_beta2));
        exp_avg[i] = m;
        exp_avg_sq[i] = v;
        const float denom = __fadd_rn(__fsqrt_rn(v), eps);
        float p = __fadd_rn(param[i], __fmul_rn(__fdiv_rn(m, denom), neg_step_size));
        if (decay) p = __fadd_rn(p, __fmul_rn(p, neg_lr_decay));
        param[i] = p;
    }
}
