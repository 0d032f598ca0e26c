//! Switches for our own CUDA kernels (`kernels/*.cu`), read once from the environment, so a
//! benchmark can compare each with the tensor ops it replaces on the same binary.
//!
//! - `C2N_CUDA_LN_BACKWARD=0`: the layer-norm backward pass as tensor ops
//!   ([`cuda_layer_norm_kernels_enabled`]).
//! - `C2N_CUDA_DECODE_KERNELS=0`: decoding ranks beam candidates with tensor ops and grows the
//!   self-attention cache with `index_select` + `cat` ([`cuda_decode_kernels_enabled`]).
//! - `C2N_CUDA_TRAIN_KERNELS=0`: the explicit training pass makes dropout masks, attention
//!   probabilities, the exact GELU's backward pass and the bias-gradient column sums with
//!   tensor ops ([`cuda_training_kernels_enabled`]; the last two joined in run 7, H200).
//! - `C2N_CUDA_SLOTTED_CACHE=0`: [`CacheLayout::Auto`](crate::CacheLayout::Auto) keeps the dense
//!   decoding cache instead of the slotted one ([`cuda_slotted_cache_enabled`]).
//! - `C2N_CUDA_CROSS_ATTENTION_KERNEL=1`: the decoding step's grouped cross-attention as one
//!   kernel ([`cuda_cross_attention_kernel_enabled`]). Off by default: correct on the GPU, but
//!   3× slower than the tensor ops it replaces (run 7, H200: 1.47 against 0.49 ms).
//! - `C2N_CUDA_FEWER_LAUNCHES=0`: the explicit training pass and the optimizer launch the
//!   kernels and tensor ops below instead of fewer, fused ones ([`cuda_fewer_launches_enabled`]).
//!   The fused ones, on by default: the weights cast (bf16) or stacked (f32, the encoder's
//!   query/key/value) into one buffer by one pack kernel, the bf16 weight gradients cast back
//!   the same way; the output projection's bias + dropout + residual add + layer norm as one
//!   kernel after the GEMM, and its backward with the residual gradient sum and the branch's
//!   dropout folded in; bias + activation + dropout after a feed-forward GEMM as one kernel
//!   (and the ReLU-dropout backward); packed projections split into heads with their bias, and
//!   heads merged, by one copy each; the attention's power-of-two scale applied inside the
//!   probability kernels; one AdamW launch per moment chunk. `C2N_CUDA_FEWER_LAUNCHES=pack,heads`
//!   turns on only the kernels named ([`FEWER_LAUNCH_KERNELS`]), `=-pack,-heads` all but those.
//!   Written in the ninth session without a device; on by default since GPU run 10 (H200,
//!   2026-11-28, with them opt-in) checked them: parity with PyTorch held, and the bf16
//!   bucketed setting ran 1.37× as many samples per second (34.9 against 46.4 ms median step);
//!   four repeats each in run 12: 1.47× (`docs/benchmarks.md`).
//!
//! - `C2N_CUDA_SYNC_CHECK=1`: every launch of our kernels is followed by a wait for the device,
//!   so that a kernel's fault is reported as its own error ([`cuda_sync_check_enabled`]).
//!
//! Every kernel except the cross-attention one is on by default where it
//! applies (a CUDA device, f32 or the dtypes the kernel takes); without the `cuda` feature
//! every switch reads false.

/// One switch's value, read from the environment once: a switch that is on by default is off
/// only with `VAR=0`, one that is off by default is on only with `VAR=1`; false without the
/// `cuda` feature.
macro_rules! switch {
    ($var:literal, $on_by_default:expr) => {{
        #[cfg(feature = "cuda")]
        {
            static ENABLED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            *ENABLED.get_or_init(|| match std::env::var($var) {
                Ok(v) if $on_by_default => v != "0",
                Ok(v) => v == "1",
                Err(_) => $on_by_default,
            })
        }
        #[cfg(not(feature = "cuda"))]
        false
    }};
}

/// Whether a layer-norm backward on a CUDA device runs our two kernels rather than the tensor
/// ops: yes unless `C2N_CUDA_LN_BACKWARD=0`; false without the `cuda` feature.
pub fn cuda_layer_norm_kernels_enabled() -> bool {
    switch!("C2N_CUDA_LN_BACKWARD", true)
}

/// Whether decoding on a CUDA device uses the row top-k kernel (log-softmax, row scores and
/// ranking in one launch) and the cache reorder-and-append kernel: yes unless
/// `C2N_CUDA_DECODE_KERNELS=0`; false without the `cuda` feature.
pub fn cuda_decode_kernels_enabled() -> bool {
    switch!("C2N_CUDA_DECODE_KERNELS", true)
}

/// Whether the explicit training pass on a CUDA device uses the counter-based dropout kernel
/// (no stored masks), the attention-probability kernels, the GELU backward kernel and the
/// column-sum kernel for bias gradients: yes unless
/// `C2N_CUDA_TRAIN_KERNELS=0`; false without the `cuda` feature.
pub fn cuda_training_kernels_enabled() -> bool {
    switch!("C2N_CUDA_TRAIN_KERNELS", true)
}

/// Whether [`CacheLayout::Auto`](crate::CacheLayout::Auto) picks the slotted decoding cache
/// where its kernel runs: yes unless `C2N_CUDA_SLOTTED_CACHE=0`; false without the `cuda`
/// feature.
pub fn cuda_slotted_cache_enabled() -> bool {
    switch!("C2N_CUDA_SLOTTED_CACHE", true)
}

/// Whether the decoding step's cross-attention runs as one grouped kernel: only with
/// `C2N_CUDA_CROSS_ATTENTION_KERNEL=1` (slower than the tensor ops on an H200); false without
/// the `cuda` feature.
pub fn cuda_cross_attention_kernel_enabled() -> bool {
    switch!("C2N_CUDA_CROSS_ATTENTION_KERNEL", false)
}

/// The names of the fewer-launch kernels, as [`cuda_fewer_launches_for`] and
/// `C2N_CUDA_FEWER_LAUNCHES=name,name` know them.
pub const FEWER_LAUNCH_KERNELS: [&str; 8] = [
    "pack",
    "add_layer_norm",
    "layer_norm_backward_fused",
    "bias_activation",
    "dropout_relu_backward",
    "heads",
    "attention_scale",
    "adamw_multi",
];

/// The fewer-launch kernels in use: all of them unless `C2N_CUDA_FEWER_LAUNCHES` says otherwise
/// (see [`parse_fewer_launch_selection`]); none without the `cuda` feature.
fn fewer_launch_selection() -> &'static [&'static str] {
    #[cfg(feature = "cuda")]
    {
        static SELECTED: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
        SELECTED.get_or_init(|| {
            parse_fewer_launch_selection(std::env::var("C2N_CUDA_FEWER_LAUNCHES").ok().as_deref())
        })
    }
    #[cfg(not(feature = "cuda"))]
    &[]
}

/// The kernels a value of `C2N_CUDA_FEWER_LAUNCHES` selects: unset, empty, `1` (or `true`,
/// `on`, `yes`, `all`) all; `0` (or `false`, `off`, `no`, `none`) none; a list the kernels it
/// names, and a list of `-name`s all but those (to time each kernel's share). Unknown names are
/// reported on stderr and ignored; a value naming no kernel at all keeps the default (all), so
/// a misspelt switch does not quietly turn the kernels off.
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn parse_fewer_launch_selection(value: Option<&str>) -> Vec<&'static str> {
    let value = value.map(|v| v.trim().to_ascii_lowercase());
    let names: Vec<&str> = match value.as_deref() {
        None | Some("" | "1" | "true" | "on" | "yes" | "all") => {
            return FEWER_LAUNCH_KERNELS.to_vec()
        }
        Some("0" | "false" | "off" | "no" | "none") => return Vec::new(),
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect(),
    };
    let names_a_kernel = |n: &&str| FEWER_LAUNCH_KERNELS.contains(&n.trim_start_matches('-'));
    if !names.iter().any(names_a_kernel) {
        eprintln!(
            "c2n-model: C2N_CUDA_FEWER_LAUNCHES={} names no kernel (known: {}; 0 turns them \
             all off): keeping all of them",
            value.as_deref().unwrap_or_default(),
            FEWER_LAUNCH_KERNELS.join(", ")
        );
        return FEWER_LAUNCH_KERNELS.to_vec();
    }
    let known = |name: &str| {
        let kernel = FEWER_LAUNCH_KERNELS.iter().copied().find(|k| *k == name);
        if kernel.is_none() {
            eprintln!(
                "c2n-model: C2N_CUDA_FEWER_LAUNCHES names no kernel `{name}` (known: {})",
                FEWER_LAUNCH_KERNELS.join(", ")
            );
        }
        kernel
    };
    let removed: Vec<&str> = names
        .iter()
        .filter_map(|n| n.strip_prefix('-'))
        .filter_map(known)
        .collect();
    let mut selected: Vec<&'static str> = if names.iter().all(|n| n.starts_with('-')) {
        FEWER_LAUNCH_KERNELS.to_vec()
    } else {
        names
            .iter()
            .filter(|n| !n.starts_with('-'))
            .filter_map(|n| known(n))
            .collect()
    };
    selected.retain(|k| !removed.contains(k));
    selected
}

/// Whether the explicit training pass and the optimizer use any of the fewer-launch kernels
/// (see the module docs): yes unless `C2N_CUDA_FEWER_LAUNCHES=0` (or a list that names none);
/// false without the `cuda` feature.
pub fn cuda_fewer_launches_enabled() -> bool {
    !fewer_launch_selection().is_empty()
}

/// The fewer-launch kernels `C2N_CUDA_FEWER_LAUNCHES` selects (all of them unless it says
/// otherwise; benchmarks label their runs with it); none without the `cuda` feature.
pub fn cuda_fewer_launch_selection() -> &'static [&'static str] {
    fewer_launch_selection()
}

/// Whether each of our kernels is waited for right after its launch, so that a fault in it
/// (an illegal address, say, which CUDA reports only at some later call) is returned as that
/// kernel's error: only with `C2N_CUDA_SYNC_CHECK=1`, for parity runs of new kernels (it
/// costs a synchronisation per launch); false without the `cuda` feature.
pub fn cuda_sync_check_enabled() -> bool {
    switch!("C2N_CUDA_SYNC_CHECK", false)
}

/// After a launch of our kernel `op` on `device`: with `C2N_CUDA_SYNC_CHECK=1`
/// ([`cuda_sync_check_enabled`]), waits for the device and returns its error as `op`'s.
#[cfg(feature = "cuda")]
pub fn cuda_sync_check(device: &candle_core::CudaDevice, op: &str) -> candle_core::Result<()> {
    if cuda_sync_check_enabled() {
        device.cuda_stream().synchronize().map_err(|e| {
            candle_core::Error::Msg(format!("{op}: the kernel failed on the device: {e}"))
        })?;
    }
    Ok(())
}

/// The fewer-launch kernels that failed in this process (see [`cuda_fewer_launches_failed`]).
#[cfg(feature = "cuda")]
static FEWER_LAUNCH_FAILURES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Whether the fewer-launch kernel `kernel` may run: `C2N_CUDA_FEWER_LAUNCHES` selects it (unset
/// selects all) and it has not failed in this process; false without the `cuda` feature.
pub fn cuda_fewer_launches_for(kernel: &str) -> bool {
    #[cfg(feature = "cuda")]
    {
        fewer_launch_selection().contains(&kernel)
            && !FEWER_LAUNCH_FAILURES
                .lock()
                .is_ok_and(|failed| failed.iter().any(|k| k == kernel))
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = kernel;
        false
    }
}

/// The fewer-launch kernels that have failed in this process (benchmarks report them).
pub fn cuda_fewer_launch_failures() -> Vec<String> {
    #[cfg(feature = "cuda")]
    {
        FEWER_LAUNCH_FAILURES
            .lock()
            .map(|failed| failed.clone())
            .unwrap_or_default()
    }
    #[cfg(not(feature = "cuda"))]
    Vec::new()
}

/// Records that the fewer-launch kernel `kernel` returned `error`: says so on stderr (once per
/// kernel) and makes [`cuda_fewer_launches_for`] false for it, so the caller's fallback (the
/// tensor ops or plain kernels it replaces) serves this and every later call: a kernel that
/// fails on some device or shape costs speed, not the run.
pub fn cuda_fewer_launches_failed(kernel: &str, error: &dyn std::fmt::Display) {
    #[cfg(feature = "cuda")]
    if let Ok(mut failed) = FEWER_LAUNCH_FAILURES.lock() {
        if !failed.iter().any(|k| k == kernel) {
            eprintln!(
                "c2n-model: the fewer-launch kernel `{kernel}` failed ({error}); \
                 using the tensor ops it replaces from now on"
            );
            failed.push(kernel.to_string());
        }
    }
    #[cfg(not(feature = "cuda"))]
    let _ = (kernel, error);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fewer_launch_selection_is_all_unless_zero_or_a_list() {
        for all in [None, Some("1"), Some(""), Some(" 1 ")] {
            assert_eq!(
                parse_fewer_launch_selection(all),
                FEWER_LAUNCH_KERNELS.to_vec()
            );
        }
        assert!(parse_fewer_launch_selection(Some("0")).is_empty());
        for off in ["off", "false", "No", "none"] {
            assert!(parse_fewer_launch_selection(Some(off)).is_empty(), "{off}");
        }
        for all in ["true", "ON", "yes", "all", "pakc", "-no_such_kernel"] {
            assert_eq!(
                parse_fewer_launch_selection(Some(all)),
                FEWER_LAUNCH_KERNELS.to_vec(),
                "{all}: a value naming no kernel keeps the default"
            );
        }
        assert_eq!(
            parse_fewer_launch_selection(Some("heads, pack,no_such_kernel")),
            vec!["heads", "pack"]
        );
        let all_but_two = parse_fewer_launch_selection(Some("-heads,-pack"));
        assert_eq!(all_but_two.len(), FEWER_LAUNCH_KERNELS.len() - 2);
        assert!(!all_but_two.contains(&"heads") && !all_but_two.contains(&"pack"));
        assert_eq!(
            parse_fewer_launch_selection(Some("heads,pack,-pack")),
            vec!["heads"]
        );
    }

    /// Every name the crates ask [`cuda_fewer_launches_for`] about is one a list can select.
    #[test]
    fn every_fewer_launch_kernel_asked_for_is_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut asked = std::collections::BTreeSet::new();
        let mut dirs = vec![root.join("src"), root.join("../c2n-train/src")];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let call = "cuda_fewer_launches_for(\"";
                    for piece in text.split(call).skip(1) {
                        asked.insert(piece.split('"').next().unwrap().to_string());
                    }
                }
            }
        }
        assert!(asked.len() >= 6, "found only {asked:?}");
        for name in &asked {
            assert!(
                FEWER_LAUNCH_KERNELS.contains(&name.as_str()),
                "`{name}` is not listed"
            );
        }
        for name in FEWER_LAUNCH_KERNELS {
            assert!(
                asked.contains(name),
                "`{name}` is listed but never asked for"
            );
        }
    }
}
