//! Switches for our own CUDA kernels (`kernels/*.cu`), read once from the environment, so a
//! benchmark can compare each with the tensor ops it replaces on the same binary.
//!
//! - `C2N_CUDA_LN_BACKWARD=0`: the layer-norm backward pass as tensor ops
//!   ([`cuda_layer_norm_kernels_enabled`]).
//! - `C2N_CUDA_DECODE_KERNELS=0`: decoding ranks beam candidates with tensor ops and grows the
//!   self-attention cache with `index_select` + `cat` ([`cuda_decode_kernels_enabled`]).
//! - `C2N_CUDA_TRAIN_KERNELS=0`: the explicit training pass makes dropout masks and attention
//!   probabilities with tensor ops ([`cuda_training_kernels_enabled`]).
//!
//! - `C2N_CUDA_UNVERIFIED_KERNELS=1`: kernels that no GPU has run yet, off until a device run's
//!   `check-kernels` and A/B have checked them ([`cuda_unverified_kernels_enabled`]): the GELU
//!   backward pass, the bias-gradient column sums, the decoding step's grouped
//!   cross-attention, and the slotted decoding cache
//!   ([`CacheLayout::Auto`](crate::CacheLayout::Auto) picks it). The CPU emulation tests
//!   (`tests/kernels_emulated.rs`) run them on every build; a GPU has not.
//!
//! Each of the others is on by default where it applies (a CUDA device, f32 or the dtypes the kernel takes);
//! without the `cuda` feature every switch reads false.

/// Whether a layer-norm backward on a CUDA device runs our two kernels rather than the tensor
/// ops: yes unless `C2N_CUDA_LN_BACKWARD=0`; false without the `cuda` feature.
pub fn cuda_layer_norm_kernels_enabled() -> bool {
    #[cfg(feature = "cuda")]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| std::env::var("C2N_CUDA_LN_BACKWARD").map_or(true, |v| v != "0"))
    }
    #[cfg(not(feature = "cuda"))]
    false
}

/// Whether decoding on a CUDA device uses the row top-k kernel (log-softmax, row scores and
/// ranking in one launch) and the cache reorder-and-append kernel: yes unless
/// `C2N_CUDA_DECODE_KERNELS=0`; false without the `cuda` feature.
pub fn cuda_decode_kernels_enabled() -> bool {
    #[cfg(feature = "cuda")]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| std::env::var("C2N_CUDA_DECODE_KERNELS").map_or(true, |v| v != "0"))
    }
    #[cfg(not(feature = "cuda"))]
    false
}

/// Whether the explicit training pass on a CUDA device uses the counter-based dropout kernel
/// (no stored masks) and the attention-probability kernels: yes unless
/// `C2N_CUDA_TRAIN_KERNELS=0`; false without the `cuda` feature.
pub fn cuda_training_kernels_enabled() -> bool {
    #[cfg(feature = "cuda")]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED.get_or_init(|| std::env::var("C2N_CUDA_TRAIN_KERNELS").map_or(true, |v| v != "0"))
    }
    #[cfg(not(feature = "cuda"))]
    false
}

/// Whether kernels not yet checked on a GPU are used: only with
/// `C2N_CUDA_UNVERIFIED_KERNELS=1`; false without the `cuda` feature.
pub fn cuda_unverified_kernels_enabled() -> bool {
    #[cfg(feature = "cuda")]
    {
        static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *ENABLED
            .get_or_init(|| std::env::var("C2N_CUDA_UNVERIFIED_KERNELS").is_ok_and(|v| v == "1"))
    }
    #[cfg(not(feature = "cuda"))]
    false
}
