//! Ops whose value comes from detached tensor ops and whose gradient is a closed form.
//!
//! Candle's backward pass visits every op of the graph and, for each, computes the gradient of
//! *every* argument, constants included (an attention mask, a dropout mask), starting each
//! accumulation from a freshly allocated zero tensor; gradients of constants then stay in the
//! gradient store until it is dropped. A block that is one op of this kind puts one node in the
//! graph instead of a dozen: its forward runs on detached inputs (intermediates are freed at
//! once), and its backward computes only the gradients that are needed, from the few tensors the
//! op keeps. The price is one device copy of the op's output (the custom-op interface must
//! return owned storage).

use std::sync::Mutex;

use candle_core::{CpuStorage, Layout, Shape, Storage, Tensor};

/// The value of an op, computed before the op is applied and handed over by its forward call.
pub(crate) struct Precomputed(Mutex<Option<Tensor>>);

impl Precomputed {
    pub(crate) fn new(value: Tensor) -> Self {
        Self(Mutex::new(Some(value)))
    }

    /// The value as a fresh tensor whose storage starts at offset 0 and holds exactly it.
    fn take(&self) -> candle_core::Result<Tensor> {
        let value = self
            .0
            .lock()
            .map_err(|_| candle_core::Error::Msg("closed-form op: poisoned value".into()))?
            .take()
            .ok_or_else(|| candle_core::Error::Msg("closed-form op: forward ran twice".into()))?;
        let (start, end) = {
            let (_, layout) = value.storage_and_layout();
            layout.contiguous_offsets().unwrap_or((1, 0))
        };
        if start == 0 && end == value.elem_count() {
            Ok(value)
        } else {
            value.copy()
        }
    }

    /// Copy of the value's storage, for `cpu_fwd`.
    pub(crate) fn cpu(&self) -> candle_core::Result<(CpuStorage, Shape)> {
        let value = self.take()?;
        let (storage, layout) = value.storage_and_layout();
        match &*storage {
            Storage::Cpu(s) => Ok((copy_cpu(s, layout)?, layout.shape().clone())),
            _ => Err(candle_core::Error::Msg(
                "closed-form op: the value is not on the CPU".into(),
            )),
        }
    }

    /// Copy of the value's storage, for `cuda_fwd`.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda(&self) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::backend::BackendStorage;
        let value = self.take()?;
        let (storage, layout) = value.storage_and_layout();
        match &*storage {
            Storage::Cuda(s) => Ok((s.try_clone(layout)?, layout.shape().clone())),
            _ => Err(candle_core::Error::Msg(
                "closed-form op: the value is not on the CUDA device".into(),
            )),
        }
    }
}

fn copy_cpu(storage: &CpuStorage, layout: &Layout) -> candle_core::Result<CpuStorage> {
    use candle_core::backend::BackendStorage;
    storage.try_clone(layout)
}

/// Which argument gradients a closed-form backward computes (input, weight, bias).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GradWants {
    pub(crate) input: bool,
    pub(crate) weight: bool,
    pub(crate) bias: bool,
}

/// The gradient of `arg` is wanted only when the graph tracks it (a Var or derived from one).
pub(crate) fn wants_grad(arg: &Tensor) -> bool {
    arg.track_op()
}

/// Whether a closed-form op should record itself for `args`: some argument is tracked and no
/// [`super::no_grad`] guard is alive.
pub(crate) fn records(args: &[&Tensor]) -> bool {
    super::gradients_enabled() && args.iter().any(|a| a.track_op())
}

/// The `cpu_fwd`/`cuda_fwd` of a closed-form custom op of 1, 2 or 3 arguments: hand over the
/// op's `value: Precomputed`.
macro_rules! forward_from_value {
    (1) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            self.value.cpu()
        }

        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            _: &candle_core::CudaStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            self.value.cuda()
        }
    };
    (2) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            self.value.cpu()
        }

        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            _: &candle_core::CudaStorage,
            _: &candle_core::Layout,
            _: &candle_core::CudaStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            self.value.cuda()
        }
    };
    (3) => {
        fn cpu_fwd(
            &self,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
            _: &candle_core::CpuStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
            self.value.cpu()
        }

        #[cfg(feature = "cuda")]
        fn cuda_fwd(
            &self,
            _: &candle_core::CudaStorage,
            _: &candle_core::Layout,
            _: &candle_core::CudaStorage,
            _: &candle_core::Layout,
            _: &candle_core::CudaStorage,
            _: &candle_core::Layout,
        ) -> candle_core::Result<(candle_core::CudaStorage, candle_core::Shape)> {
            self.value.cuda()
        }
    };
}
pub(crate) use forward_from_value;
