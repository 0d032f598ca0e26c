//! A scoped "no gradients" mode, like PyTorch's `torch.no_grad()`.
//!
//! The weights are Candle `Var`s, so every op on them records its graph whether or not a
//! backward pass follows. The closed-form ops copy their output and keep tensors for their
//! backward pass; inference (decoding sessions, inference encoding) opts out of them with
//! [`no_grad`], and they fall back to plain ops. Primitive ops are unaffected.

use std::cell::Cell;

thread_local! {
    static NO_GRAD_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// While the returned guard lives, closed-form ops on this thread run as plain ops.
#[must_use = "gradients are disabled only while the guard lives"]
pub fn no_grad() -> NoGradGuard {
    NO_GRAD_DEPTH.with(|d| d.set(d.get() + 1));
    NoGradGuard {
        _not_send: std::marker::PhantomData,
    }
}

/// Restores the previous mode when dropped.
pub struct NoGradGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        NO_GRAD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Whether closed-form ops may record themselves (no [`no_grad`] guard alive on this thread).
pub fn gradients_enabled() -> bool {
    NO_GRAD_DEPTH.with(|d| d.get() == 0)
}

/// A parameter as an op should read it: the Var itself, or a detached view under [`no_grad`].
///
/// Every op on a Var records its inputs, so without this a forward pass under `no_grad` would
/// still keep all its activations alive through the op graph until its output is dropped (the
/// whole forward pass, for a dev loss).
pub fn param(t: &candle_core::Tensor) -> candle_core::Tensor {
    if gradients_enabled() {
        t.clone()
    } else {
        t.detach()
    }
}
