//! Refusing, before it starts, a CPU decoding whose beam rows cannot fit in the host's memory.
//!
//! Every beam step holds a few `rows × vocabulary` f32 buffers (logits, log-probabilities,
//! candidate scores), where rows = examples decoded together × beam size. A beam of 50 000
//! over CodeBERT's 50 265 tokens needs tens of GB per step: it was found growing to 23.6 GB
//! before the OS killed it. The bound is checked against the memory the OS says is
//! available, so a run that fits is never refused.

use crate::{Result, TrainError};

/// Bytes a decoding step holds per beam row and vocabulary entry: 1.15 MiB per row at
/// 50 265 tokens, measured (docs/benchmarks.md, "Decoding (CPU)").
pub const BYTES_PER_ROW_AND_TOKEN: u64 = 24;

/// Refuses `rows` beam rows over `vocab` tokens when they need more than `available` bytes
/// (`None`: unknown, nothing is refused).
pub fn check_rows_fit(rows: usize, vocab: usize, available: Option<u64>) -> Result<()> {
    let Some(available) = available else {
        return Ok(());
    };
    // Saturating: an absurd beam size must be refused, not wrap to a small number.
    let needed = (rows as u64)
        .saturating_mul(vocab as u64)
        .saturating_mul(BYTES_PER_ROW_AND_TOKEN);
    if needed <= available {
        return Ok(());
    }
    Err(TrainError::InvalidInput(format!(
        "decoding {rows} beam rows at once (examples per batch × beam size) needs about \
         {:.1} GB for each step's scores over {vocab} tokens, and {:.1} GB are available: \
         lower the beam size or the batch size",
        needed as f64 / 1e9,
        available as f64 / 1e9
    )))
}

/// The memory the OS can give this process now (Linux: `MemAvailable`); `None` elsewhere.
pub fn available_host_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_that_cannot_fit_are_refused_with_the_sizes() {
        let gib = 1u64 << 30;
        // evaluate's default: 64 examples × beam 10 over RoBERTa's vocabulary, ≈ 0.77 GB.
        assert!(check_rows_fit(640, 50_265, Some(2 * gib)).is_ok());
        let err = check_rows_fit(50_000, 50_265, Some(22 * gib))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("50000 beam rows") && err.contains("60.3 GB"),
            "{err}"
        );
        assert!(check_rows_fit(50_000, 50_265, None).is_ok());
        // An absurd beam saturates instead of wrapping to a small number.
        assert!(check_rows_fit(usize::MAX, 50_265, Some(u64::MAX / 2)).is_err());
        if cfg!(target_os = "linux") {
            assert!(available_host_memory().is_some_and(|b| b > 0));
        }
    }
}
