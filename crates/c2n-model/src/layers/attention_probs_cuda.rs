//! The attention probabilities and their gradient as CUDA kernels (`kernels/attention_probs.cu`):
//! `softmax(f32(scores) + mask)` in one pass instead of a cast, a mask add and a softmax, and
//! the softmax-and-dropout backward in one pass instead of seven tensor ops (the dropout mask
//! regenerated from its seed, see `dropout_rng`).

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::dropout_rng::keep_scale;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/attention_probs.ptx"));
const MODULE: &str = "c2n_attention_probs";

/// `softmax(f32(scores) + mask)` over the last dim of `scores [b, h, Lq, Lk]` (f32 or bf16),
/// f32. `None` when the mask is not `[mb, 1, mq, Lk]` with `mb ∈ {1, b}`, `mq ∈ {1, Lq}`.
pub fn probabilities(
    scores: &Tensor,
    mask: Option<&Tensor>,
) -> candle_core::Result<Option<Tensor>> {
    probabilities_scaled(scores, mask, 1.0)
}

/// [`probabilities`] of `scores · c` (`c` a power of two, so scaling the scores here equals
/// scaling `q` before the product).
pub fn probabilities_scaled(
    scores: &Tensor,
    mask: Option<&Tensor>,
    c: f32,
) -> candle_core::Result<Option<Tensor>> {
    let (b, heads, lq, lk) = scores.dims4()?;
    let (mask, mask_b, mask_q, has_mask) = match mask {
        Some(m) => {
            let (mb, one, mq, mk) = match m.dims() {
                &[mb, one, mq, mk] => (mb, one, mq, mk),
                _ => return Ok(None),
            };
            if one != 1 || mk != lk || !(mb == 1 || mb == b) || !(mq == 1 || mq == lq) {
                return Ok(None);
            }
            (m.to_dtype(DType::F32)?.contiguous()?, mb, mq, 1)
        }
        None => (Tensor::zeros(1, DType::F32, scores.device())?, 1, 1, 0),
    };
    let op = ProbsForward {
        c,
        has_mask,
        heads,
        lq,
        lk,
        mask_b,
        mask_q,
    };
    Ok(Some(scores.contiguous()?.apply_op2_no_bwd(&mask, &op)?))
}

/// `dS = (dP − Σ dP·P) · P` with `dP = f32(d_dropped) · keep(seed)`, in `d_dropped`'s dtype;
/// `d_dropped [.., Lk]` (f32 or bf16) and the f32 `probs` of the same shape.
pub fn probabilities_backward(
    d_dropped: &Tensor,
    probs: &Tensor,
    seed: u64,
    p: f32,
) -> candle_core::Result<Tensor> {
    probabilities_backward_scaled(d_dropped, probs, seed, p, 1.0)
}

/// [`probabilities_backward`] times `c` (the gradient with respect to the unscaled scores of
/// [`probabilities_scaled`]).
pub fn probabilities_backward_scaled(
    d_dropped: &Tensor,
    probs: &Tensor,
    seed: u64,
    p: f32,
    c: f32,
) -> candle_core::Result<Tensor> {
    let lk = d_dropped.dim(candle_core::D::Minus1)?;
    d_dropped
        .contiguous()?
        .apply_op2_no_bwd(&probs.contiguous()?, &ProbsBackward { lk, seed, p, c })
}

fn launch_config(rows: usize) -> LaunchConfig {
    crate::kernel_launch::attention_probs(rows).into()
}

struct ProbsForward {
    c: f32,
    has_mask: i32,
    heads: usize,
    lq: usize,
    lk: usize,
    mask_b: usize,
    mask_q: usize,
}

impl CustomOp2 for ProbsForward {
    fn name(&self) -> &'static str {
        "c2n-attention-probs"
    }

    crate::cuda_op::cpu_refused!(a, b);

    fn cuda_fwd(
        &self,
        scores: &CudaStorage,
        scores_layout: &Layout,
        mask: &CudaStorage,
        mask_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (ss, se) = crate::cuda_op::contiguous(scores_layout, self.name(), "scores")?;
        let (ms, me) = crate::cuda_op::contiguous(mask_layout, self.name(), "mask")?;
        let n = se - ss;
        let rows = n / self.lk.max(1);
        let device = scores.device().clone();
        let mask = mask.as_cuda_slice::<f32>()?.slice(ms..me);
        let mut probs = unsafe { device.alloc::<f32>(n.max(1))? };
        let (rows_i, lk, heads, lq, mb, mq) = (
            rows as i64,
            self.lk as i32,
            self.heads as i32,
            self.lq as i32,
            self.mask_b as i32,
            self.mask_q as i32,
        );
        macro_rules! launch {
            ($t:ty, $kernel:literal) => {{
                let scores = scores.as_cuda_slice::<$t>()?.slice(ss..se);
                let func = device.get_or_load_custom_func($kernel, MODULE, PTX)?;
                let mut builder = func.builder();
                builder.arg(&scores);
                builder.arg(&mask);
                builder.arg(&self.has_mask);
                builder.arg(&mut probs);
                builder.arg(&rows_i);
                builder.arg(&lk);
                builder.arg(&heads);
                builder.arg(&lq);
                builder.arg(&mb);
                builder.arg(&mq);
                builder.arg(&self.c);
                if rows > 0 {
                    unsafe { builder.launch(launch_config(rows)) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
            }};
        }
        match scores.dtype() {
            DType::F32 => launch!(f32, "c2n_attention_probs_fwd_f32"),
            DType::BF16 => launch!(half::bf16, "c2n_attention_probs_fwd_bf16"),
            other => {
                return Err(candle_core::Error::Msg(format!(
                    "attention probability kernel: no {other:?} scores"
                )))
            }
        }
        Ok((
            CudaStorage::wrap_cuda_slice(probs, device),
            scores_layout.shape().clone(),
        ))
    }
}

struct ProbsBackward {
    lk: usize,
    seed: u64,
    p: f32,
    c: f32,
}

impl CustomOp2 for ProbsBackward {
    fn name(&self) -> &'static str {
        "c2n-attention-probs-backward"
    }

    crate::cuda_op::cpu_refused!(a, b);

    fn cuda_fwd(
        &self,
        d_dropped: &CudaStorage,
        d_layout: &Layout,
        probs: &CudaStorage,
        probs_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let (ds, de) = crate::cuda_op::contiguous(d_layout, self.name(), "gradient")?;
        let (ps, pe) = crate::cuda_op::contiguous(probs_layout, self.name(), "probabilities")?;
        if de - ds != pe - ps || probs.dtype() != DType::F32 {
            return Err(candle_core::Error::Msg(
                "attention probability backward: gradient and f32 probabilities must match".into(),
            ));
        }
        let n = de - ds;
        let rows = n / self.lk.max(1);
        let device = d_dropped.device().clone();
        let probs = probs.as_cuda_slice::<f32>()?.slice(ps..pe);
        let (rows_i, lk, scale) = (rows as i64, self.lk as i32, keep_scale(self.p));
        macro_rules! launch {
            ($t:ty, $kernel:literal) => {{
                let g = d_dropped.as_cuda_slice::<$t>()?.slice(ds..de);
                let mut out = unsafe { device.alloc::<$t>(n.max(1))? };
                let func = device.get_or_load_custom_func($kernel, MODULE, PTX)?;
                let mut builder = func.builder();
                builder.arg(&g);
                builder.arg(&probs);
                builder.arg(&mut out);
                builder.arg(&rows_i);
                builder.arg(&lk);
                builder.arg(&self.seed);
                builder.arg(&self.p);
                builder.arg(&scale);
                builder.arg(&self.c);
                if rows > 0 {
                    unsafe { builder.launch(launch_config(rows)) }.w()?;
                    crate::cuda_sync_check(&device, self.name())?;
                }
                CudaStorage::wrap_cuda_slice(out, device)
            }};
        }
        let storage = match d_dropped.dtype() {
            DType::F32 => launch!(f32, "c2n_attention_probs_bwd_f32"),
            DType::BF16 => launch!(half::bf16, "c2n_attention_probs_bwd_bf16"),
            other => {
                return Err(candle_core::Error::Msg(format!(
                    "attention probability backward kernel: no {other:?}"
                )))
            }
        };
        Ok((storage, d_layout.shape().clone()))
    }
}
