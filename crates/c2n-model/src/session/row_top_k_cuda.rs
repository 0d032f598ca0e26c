//! [`super::row_top_k`]'s ranking as one CUDA kernel (`kernels/row_top_k.cu`): log-softmax,
//! the row-score addition and the K best of every row in one launch over the logits, instead
//! of a log-softmax and dozens of reductions over `rows × V`.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::WrapErr;
use candle_core::{CudaStorage, CustomOp2, DType, Layout, Shape, Tensor};

use crate::step::RowTopK;
use crate::Result;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/row_top_k.ptx"));
const MODULE: &str = "c2n_row_top_k";

/// The largest K the kernel keeps per thread (`C2N_TOP_K_MAX` in the kernel).
pub(crate) const MAX_K: usize = 32;

/// The K best candidates of every row of `x [rows, V]` (f32, on a CUDA device): of
/// `log_softmax(x) + row_score` when `log_softmax`, else of `x + row_score`. `None` when a
/// row holds a NaN or a picked value is not finite: the caller ranks with the tensor ops then,
/// which follow the tie rule for those too.
pub(crate) fn row_top_k(
    x: &Tensor,
    log_softmax: bool,
    row_scores: Option<&[f32]>,
    k: usize,
) -> Result<Option<RowTopK>> {
    let (rows, vocab) = x.dims2()?;
    let scores = match row_scores {
        Some(s) => Tensor::from_slice(s, rows, x.device())?,
        None => Tensor::zeros(1, DType::F32, x.device())?,
    };
    let packed = x.contiguous()?.apply_op2(
        &scores,
        RowTopKOp {
            k,
            vocab,
            log_softmax,
            has_scores: row_scores.is_some(),
        },
    )?;
    let words = packed.flatten_all()?.to_vec1::<f32>()?;
    let mut values = Vec::with_capacity(rows * k);
    let mut tokens = Vec::with_capacity(rows * k);
    for row in words.chunks_exact(2 * k + 1) {
        if row[2 * k] != 0.0 || row[..k].iter().any(|v| !v.is_finite()) {
            return Ok(None);
        }
        values.extend_from_slice(&row[..k]);
        tokens.extend(row[k..2 * k].iter().map(|t| t.to_bits()));
    }
    Ok(Some(RowTopK { k, values, tokens }))
}

/// Output `[rows, 2k + 1]` f32: K values, K token ids (u32 bits), a NaN flag.
struct RowTopKOp {
    k: usize,
    vocab: usize,
    log_softmax: bool,
    has_scores: bool,
}

impl CustomOp2 for RowTopKOp {
    fn name(&self) -> &'static str {
        "c2n-row-top-k"
    }

    crate::cuda_op::cpu_refused!(a, b);

    fn cuda_fwd(
        &self,
        x: &CudaStorage,
        x_layout: &Layout,
        scores: &CudaStorage,
        scores_layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        if x.dtype() != DType::F32 || scores.dtype() != DType::F32 {
            return Err(candle_core::Error::Msg("row top-k kernel takes f32".into()));
        }
        if self.k == 0 || self.k > MAX_K || self.k > self.vocab {
            return Err(candle_core::Error::Msg(format!(
                "row top-k kernel: k = {} is not in 1..={}",
                self.k,
                MAX_K.min(self.vocab)
            )));
        }
        let (xs, xe) = crate::cuda_op::contiguous(x_layout, self.name(), "logits")?;
        let (ss, se) = crate::cuda_op::contiguous(scores_layout, self.name(), "row scores")?;
        let rows = x_layout.shape().elem_count() / self.vocab.max(1);
        let device = x.device().clone();
        let x = x.as_cuda_slice::<f32>()?.slice(xs..xe);
        let scores = scores.as_cuda_slice::<f32>()?.slice(ss..se);
        let width = 2 * self.k + 1;
        let mut out = unsafe { device.alloc::<f32>(rows * width)? };
        let func = device.get_or_load_custom_func("c2n_row_top_k", MODULE, PTX)?;
        let (has_scores, vocab, k, log_softmax) = (
            i32::from(self.has_scores),
            self.vocab as i32,
            self.k as i32,
            i32::from(self.log_softmax),
        );
        let mut builder = func.builder();
        builder.arg(&x);
        builder.arg(&scores);
        builder.arg(&has_scores);
        builder.arg(&vocab);
        builder.arg(&k);
        builder.arg(&log_softmax);
        builder.arg(&mut out);
        let config: LaunchConfig = crate::kernel_launch::row_top_k(rows).into();
        if rows > 0 {
            unsafe { builder.launch(config) }.w()?;
            crate::cuda_sync_check(&device, self.name())?;
        }
        let storage = CudaStorage::wrap_cuda_slice(out, device);
        Ok((storage, Shape::from((rows, width))))
    }
}
