//! Running out of memory during training: refused up front on the CPU when it is certain,
//! and said in words (with what to change) when a device reports it.
//!
//! On the CPU nothing can catch an allocation failure (the process aborts, or the kernel
//! kills it), so [`check_cpu_training_fits`] compares a *lower bound* of what a step needs
//! with the memory the OS says is available, before the first step. Being a lower bound, it
//! never refuses a run that fits; it catches the runs that cannot (a batch far too large
//! for the machine). On CUDA an allocation failure is an error Candle returns:
//! [`explain_out_of_memory`] turns it into [`TrainError::OutOfMemory`].

use crate::{Result, TrainError};

/// Bytes per trainable parameter a run adds to the loaded model whatever the batch: the f32
/// gradient and AdamW's two moments (the weights are in memory already when this is checked).
pub const BYTES_PER_PARAMETER: u64 = 12;

/// What lowers the CPU bound: the micro-batch's examples and their target tokens.
const CPU_ADVICE: &str = "Lower --batch-size (or raise --grad-accum: the same updates from \
                          smaller micro-batches), or --max-target-len";

/// What lowers a device's peak in training: the micro-batch, the lengths, the padding, the
/// precision.
const TRAINING_ADVICE: &str = "Lower --batch-size (or raise --grad-accum: the same updates from \
                               smaller micro-batches), shorten --max-source-len/--max-target-len, \
                               or use --padding dynamic or --precision bf16";

/// What lowers it in a dev evaluation: its own batch and the beam.
const EVALUATION_ADVICE: &str = "Lower --eval-batch-size or --beam-size, or shorten \
                                 --max-source-len/--max-target-len";

/// Which work ran out of memory, for the advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryUse {
    /// A training step or an optimizer update.
    Training,
    /// The dev loss or the dev BLEU decoding.
    Evaluation,
}

/// Bytes per active target token and vocabulary entry in a step: the f32 logits at the
/// active positions and their gradient, alive together in the backward pass (measured:
/// `device bench-train --model small` peaks at ≈ 17 MB per ruby example, whose ≈ 22 active
/// target tokens need 8.8 MB by this bound).
pub const BYTES_PER_TARGET_TOKEN_AND_WORD: u64 = 8;

/// What a training step needs at least beyond the loaded model: gradients and optimizer
/// state, and the LM head's logits for a typical micro-batch's active target tokens.
pub fn training_lower_bound(parameters: usize, target_tokens: usize, vocab: usize) -> u64 {
    (parameters as u64)
        .saturating_mul(BYTES_PER_PARAMETER)
        .saturating_add(
            (target_tokens as u64)
                .saturating_mul(vocab as u64)
                .saturating_mul(BYTES_PER_TARGET_TOKEN_AND_WORD),
        )
}

/// Refuses a CPU run whose step needs more than `available` bytes (`None`: unknown, nothing
/// is refused).
pub fn check_cpu_training_fits(
    parameters: usize,
    micro_batch: usize,
    target_tokens: usize,
    vocab: usize,
    available: Option<u64>,
) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    let needed = training_lower_bound(parameters, target_tokens, vocab);
    if needed <= available {
        return Ok(());
    }
    Err(TrainError::OutOfMemory {
        what: format!(
            "a training step needs at least {:.1} GB more than the loaded model (gradients and \
             AdamW state of {parameters} parameters, and the logits of {target_tokens} target \
             tokens in a micro-batch of {micro_batch} examples over {vocab} words), and {:.1} GB \
             are available",
            needed as f64 / 1e9,
            available as f64 / 1e9
        ),
        advice: CPU_ADVICE.into(),
    })
}

/// Whether a failure is the device running out of memory (CUDA's `CUDA_ERROR_OUT_OF_MEMORY`,
/// cuBLAS's `CUBLAS_STATUS_ALLOC_FAILED`, and "out of memory" as Candle words it).
pub fn is_out_of_memory(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    ["out of memory", "out_of_memory", "alloc_failed"]
        .iter()
        .any(|needle| lower.contains(needle))
}

/// `error` as [`TrainError::OutOfMemory`] when it is an allocation failure of the device,
/// saying during what; any other error unchanged.
pub fn explain_out_of_memory(error: TrainError, during: &str, work: MemoryUse) -> TrainError {
    match &error {
        TrainError::OutOfMemory { .. } => error,
        _ if is_out_of_memory(&error.to_string()) => TrainError::OutOfMemory {
            what: format!("the device ran out of memory during {during} ({error})"),
            advice: match work {
                MemoryUse::Training => TRAINING_ADVICE,
                MemoryUse::Evaluation => EVALUATION_ADVICE,
            }
            .into(),
        },
        _ => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_that_cannot_fit_is_refused_with_the_sizes() {
        let gb = 1_000_000_000u64;
        // The small preset on ruby: 3.5 M parameters, 32 examples of ≈ 22 target tokens.
        assert!(check_cpu_training_fits(3_491_840, 32, 704, 50_265, Some(gb)).is_ok());
        // 256 examples a micro-batch on a 1.5 GB machine: 2.3 GB of logits alone.
        let err = check_cpu_training_fits(3_491_840, 256, 5_632, 50_265, Some(3 * gb / 2))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("at least 2.3 GB") && err.contains("1.5 GB are available"),
            "{err}"
        );
        assert!(
            err.contains("--batch-size") && err.contains("--grad-accum"),
            "{err}"
        );
        assert!(
            !err.contains("bf16"),
            "bf16 does not shrink the f32 logits: {err}"
        );
        assert!(check_cpu_training_fits(3_491_840, 256, 5_632, 50_265, None).is_ok());
        assert_eq!(training_lower_bound(usize::MAX, 1, 1), u64::MAX);
        // Gradient and two moments per parameter: the weights are loaded already.
        assert_eq!(training_lower_bound(1_000_000, 0, 50_265), 12_000_000);
        assert_eq!(training_lower_bound(0, 10, 1_000), 80_000);
    }

    #[test]
    fn device_allocation_failures_are_told_apart() {
        let cuda = TrainError::Candle(candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")".into(),
        ));
        let told = explain_out_of_memory(cuda, "a training step", MemoryUse::Training).to_string();
        assert!(
            told.contains("ran out of memory during a training step"),
            "{told}"
        );
        assert!(told.contains("--precision bf16"), "{told}");
        let cublas = TrainError::Candle(candle_core::Error::Msg(
            "cublas error: CUBLAS_STATUS_ALLOC_FAILED".into(),
        ));
        let told = explain_out_of_memory(cublas, "the dev loss", MemoryUse::Evaluation);
        assert!(matches!(told, TrainError::OutOfMemory { .. }), "{told}");
        let told = told.to_string();
        assert!(
            told.contains("--eval-batch-size") && !told.contains("--grad-accum"),
            "evaluation has no accumulation: {told}"
        );
        let other = TrainError::InvalidInput("shape mismatch".into());
        assert!(matches!(
            explain_out_of_memory(other, "a training step", MemoryUse::Training),
            TrainError::InvalidInput(_)
        ));
    }
}
