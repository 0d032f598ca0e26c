//! The per-layer self-attention cache of incremental decoding, in one of two layouts.

use candle_core::{DType, Device, Tensor};

use super::{KvCache, SlotCache};
use crate::Result;

/// How a [`KvCacheSession`](crate::KvCacheSession) keeps the decoder's self-attention keys
/// and values between steps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CacheLayout {
    /// [`Slotted`](Self::Slotted) where its kernel runs (a CUDA device, f32 activations,
    /// `C2N_CUDA_DECODE_KERNELS` not 0) unless `C2N_CUDA_SLOTTED_CACHE=0`;
    /// [`Dense`](Self::Dense) otherwise. Run 9 (H200): the whole ruby test set in 14.0 s
    /// against 17.6 s with the dense cache.
    #[default]
    Auto,
    /// `[rows, heads, t, d]`, reordered by the beam at every step ([`KvCache`]).
    Dense,
    /// Fixed physical rows and a slot table ([`SlotCache`]): a reorder moves no keys or
    /// values. On the CPU it gives the same results as `Dense` (no faster).
    Slotted,
}

impl CacheLayout {
    /// The layout used for activations of `dtype` on `device`.
    pub fn resolve(self, dtype: DType, device: &Device) -> Self {
        match self {
            Self::Auto => {
                let kernel = device.is_cuda()
                    && dtype == DType::F32
                    && crate::cuda_decode_kernels_enabled()
                    && crate::cuda_slotted_cache_enabled();
                if kernel {
                    Self::Slotted
                } else {
                    Self::Dense
                }
            }
            layout => layout,
        }
    }
}

/// One decoder layer's cache.
#[derive(Debug)]
pub enum SelfAttentionCache {
    /// Dense layout; `None` before the first step.
    Dense(Option<KvCache>),
    Slotted(SlotCache),
}

impl SelfAttentionCache {
    /// An empty cache in `layout` (resolved with [`CacheLayout::resolve`]) for `rows` rows.
    pub fn new(
        layout: CacheLayout,
        rows: usize,
        heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Ok(match layout.resolve(dtype, device) {
            CacheLayout::Slotted => {
                Self::Slotted(SlotCache::new(rows, heads, head_dim, dtype, device)?)
            }
            _ => Self::Dense(None),
        })
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        match self {
            Self::Dense(cache) => cache.as_ref().and_then(|c| c.keys.dim(2).ok()).unwrap_or(0),
            Self::Slotted(cache) => cache.len(),
        }
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// New row `i` continues old row `origin[i]` (u32 `[rows']`).
    pub fn reorder(&mut self, origin: &Tensor) -> Result<()> {
        match self {
            Self::Dense(Some(cache)) => cache.reorder(origin),
            Self::Dense(None) => Ok(()),
            Self::Slotted(cache) => cache.reorder(origin),
        }
    }
}
