//! From a record to an `(idx, source, target)` example (spec §1.5).

use serde::{Deserialize, Serialize};

use crate::record::TokenRecord;
use crate::whitespace::{normalize_tokens, Newline};

/// One example as the reference's `read_examples` builds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// 0-based line number in the file it came from.
    pub idx: usize,
    /// Normalized code: tokens joined by spaces, `\n` → space, whitespace runs collapsed.
    pub source: String,
    /// Normalized docstring: tokens joined by spaces, `\n` deleted, whitespace runs collapsed.
    pub target: String,
}

impl Example {
    /// Builds the example from the two token lists.
    ///
    /// ```
    /// use c2n_data::Example;
    /// let ex = Example::from_tokens(7, &["def", "f\n(x)"], &["Does\nthings", " ."]);
    /// assert_eq!(ex.source, "def f (x)");
    /// assert_eq!(ex.target, "Doesthings .");
    /// assert_eq!(ex.idx, 7);
    /// ```
    pub fn from_tokens<S: AsRef<str>, T: AsRef<str>>(
        idx: usize,
        code_tokens: &[S],
        docstring_tokens: &[T],
    ) -> Example {
        Example {
            idx,
            source: normalize_tokens(code_tokens, Newline::Space),
            target: normalize_tokens(docstring_tokens, Newline::Delete),
        }
    }

    /// Builds the example from a parsed record.
    pub fn from_record(idx: usize, record: &TokenRecord) -> Example {
        Example::from_tokens(idx, &record.code_tokens, &record.docstring_tokens)
    }
}
