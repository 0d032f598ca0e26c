//! `y = x·Wᵀ + b` as one closed-form op (see [`super::closed_form`]).
//!
//! The primitive formulation is five graph nodes (reshape, weight cast, transpose, matmul,
//! broadcast add, reshape); this is one, whose backward is two matmuls and a row sum:
//! `dx = g·W`, `dW = gᵀ·x`, `db = Σ_rows g` (accumulated in f32).

use candle_core::{CustomOp2, CustomOp3, DType, Tensor};

use super::cast;
use super::closed_form::{forward_from_value, wants_grad, GradWants, Precomputed};

/// The op of a linear layer; the weight arrives in its master dtype and is cast inside.
pub(super) struct LinearOp {
    value: Precomputed,
}

/// `x [.., in]`, `weight [out, in]`, `bias [out]` → `[.., out]` in the dtype of `x`.
pub(super) fn linear_closed_form(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let op = LinearOp {
        value: Precomputed::new(linear_value(x, weight, bias)?),
    };
    match bias {
        Some(b) => x.apply_op3(weight, b, op),
        None => x.apply_op2(weight, op),
    }
}

/// The value `x·Wᵀ + b` from detached tensors (no graph), in the dtype of `x`.
pub(crate) fn linear_value(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> candle_core::Result<Tensor> {
    let (rows, in_dim) = rows_and_width(x)?;
    let w = cast(&weight.detach(), x.dtype())?;
    let mut y = x.detach().reshape((rows, in_dim))?.matmul(&w.t()?)?;
    if let Some(b) = bias {
        y = y.broadcast_add(&cast(&b.detach(), x.dtype())?)?;
    }
    let mut out_dims = x.dims()[..x.rank() - 1].to_vec();
    out_dims.push(weight.dim(0)?);
    y.reshape(out_dims)
}

/// Gradients of a linear layer for upstream `grad [.., out]`: `dx = g·W` (dtype of `x`),
/// `dW = gᵀ·x` (dtype of the weight), `db = Σ_rows g` (accumulated in f32, dtype of the
/// weight), each only when wanted.
pub(crate) fn linear_grads(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    wants: GradWants,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    linear_grads_in(x, weight, grad, wants, weight.dtype())
}

/// [`linear_grads`] with `dW` and `db` in `param_dtype` (the weight may be a copy already cast
/// to the compute dtype).
pub(crate) fn linear_grads_in(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    wants: GradWants,
    param_dtype: DType,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    linear_grads_typed(x, weight, grad, wants, [param_dtype, param_dtype])
}

/// [`linear_grads_in`] with `dW` in `dtypes[0]` and `db` in `dtypes[1]` (the explicit pass
/// keeps bf16 weight gradients in bf16 and casts them all together later; bias gradients
/// are accumulated in f32 and stay there).
pub(crate) fn linear_grads_typed(
    x: &Tensor,
    weight: &Tensor,
    grad: &Tensor,
    wants: GradWants,
    dtypes: [DType; 2],
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let [weight_dtype, bias_dtype] = dtypes;
    let (rows, in_dim) = rows_and_width(x)?;
    let out_dim = weight.dim(0)?;
    let g = grad.reshape((rows, out_dim))?;
    let dx = if wants.input {
        let w = cast(&weight.detach(), g.dtype())?;
        Some(g.matmul(&w)?.reshape(x.shape())?.to_dtype(x.dtype())?)
    } else {
        None
    };
    let dw = if wants.weight {
        let x2 = cast(&x.detach(), g.dtype())?.reshape((rows, in_dim))?;
        Some(g.t()?.matmul(&x2)?.to_dtype(weight_dtype)?)
    } else {
        None
    };
    let db = if wants.bias {
        Some(bias_grad(&g)?.to_dtype(bias_dtype)?)
    } else {
        None
    };
    Ok((dx, dw, db))
}

/// `Σ_rows g` of `g [rows, out]`, accumulated in f32.
fn bias_grad(g: &Tensor) -> candle_core::Result<Tensor> {
    #[cfg(feature = "cuda")]
    if super::column_sum_cuda::usable(g) {
        return super::column_sum_cuda::column_sum(g);
    }
    g.to_dtype(DType::F32)?.sum(0)
}

fn rows_and_width(x: &Tensor) -> candle_core::Result<(usize, usize)> {
    let width = *x
        .dims()
        .last()
        .ok_or_else(|| candle_core::Error::Msg("linear: scalar input".into()))?;
    Ok((x.elem_count() / width.max(1), width))
}

impl CustomOp2 for LinearOp {
    fn name(&self) -> &'static str {
        "c2n-linear"
    }

    forward_from_value!(2);

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let wants = GradWants {
            input: wants_grad(x),
            weight: wants_grad(weight),
            bias: false,
        };
        let (dx, dw, _) = linear_grads(x, weight, grad, wants)?;
        Ok((dx, dw))
    }
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "c2n-linear-bias"
    }

    forward_from_value!(3);

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let wants = GradWants {
            input: wants_grad(x),
            weight: wants_grad(weight),
            bias: wants_grad(bias),
        };
        linear_grads(x, weight, grad, wants)
    }
}
