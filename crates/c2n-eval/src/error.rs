//! The one error type of this crate.

/// Everything that can go wrong while reading or scoring `idx<TAB>text` files.
///
/// `origin` fields name where the text came from: a file path, `<stdin>` or `<memory>`.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be opened, read or written.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The operating-system error (part of the message, deliberately not `source()`:
        /// a report that prints the chain would say it twice).
        error: std::io::Error,
    },
    /// The text is not UTF-8 (the reference opens files as strict UTF-8).
    #[error("{origin}:{line}: not valid UTF-8")]
    InvalidUtf8 {
        /// Where the text came from.
        origin: String,
        /// 1-based line number of the first invalid byte.
        line: usize,
    },
    /// A gold line without exactly one tab; the reference fails to unpack it.
    #[error(
        "{origin}:{line}: a gold line must be `idx<TAB>text` with exactly one tab, found {tabs}"
    )]
    GoldLine {
        /// Where the gold text came from.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// How many tabs the line has.
        tabs: usize,
    },
    /// No gold id has a prediction, so the mean over matched ids is undefined
    /// (the reference divides by zero).
    #[error(
        "no gold id has a prediction ({gold_ids} gold ids{}, {predictions} predictions{}): BLEU \
         is undefined{}",
        some_of(gold_sample),
        some_of(prediction_sample),
        bom_hint(prediction_sample)
    )]
    NoMatchedIds {
        /// Distinct ids in the gold text.
        gold_ids: usize,
        /// Distinct ids among the predictions.
        predictions: usize,
        /// The first few gold ids (file order), to show how the two files name them.
        gold_sample: Vec<String>,
        /// The first few prediction ids (sorted).
        prediction_sample: Vec<String>,
    },
    /// Corpus BLEU was given a different number of hypotheses than of reference lists.
    #[error("{hypotheses} hypotheses but {references} reference lists: they must be parallel")]
    NotParallel {
        /// How many hypotheses.
        hypotheses: usize,
        /// How many reference lists.
        references: usize,
    },
}

/// `, e.g. "0", "1"` for a non-empty sample.
fn some_of(ids: &[String]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = ids.iter().map(|id| format!("{id:?}")).collect();
    format!(", e.g. {}", shown.join(", "))
}

/// Why the ids may not match: a byte-order mark read as part of the first id.
fn bom_hint(prediction_ids: &[String]) -> &'static str {
    if prediction_ids.iter().any(|id| id.starts_with('\u{feff}')) {
        "; the predictions start with a byte-order mark (U+FEFF), read as part of the first \
         id: save them without one"
    } else {
        ""
    }
}
