//! The reference's text normalization, in its simplified exact form (spec §9.2–9.3).
//!
//! The reference turns each text into tokens with `normalize(splitPuncts(lower(strip(text))))`,
//! where `splitPuncts` keeps Python-`re` matches of `\w+|[^\s\w]` and `normalize` is the mteval
//! (NIST) chain. On `splitPuncts` output that chain only splits word runs around `_`, so the
//! whole pipeline equals: lower-case with Python rules, then emit every maximal run of
//! [`python_str::is_alnum`](crate::python_str::is_alnum) characters as one token and every other
//! non-whitespace character (including `_`) as a token of its own. `tools/bleu/reference_bleu.py`
//! implements both forms and the fixtures check that they agree.

use crate::python_str::{is_alnum, is_space, lower_into, strip};

/// A text after normalization: the lower-cased string and the byte spans of its tokens.
///
/// Keeping spans into one string instead of a `Vec<String>` avoids an allocation per token,
/// which matters when scoring tens of thousands of sentences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BleuTokens {
    lowered: String,
    spans: Vec<(usize, usize)>,
}

impl BleuTokens {
    /// Normalizes `text` exactly as the reference does for a prediction or a reference.
    ///
    /// ```
    /// use c2n_eval::BleuTokens;
    /// let tokens = BleuTokens::new("  Returns the user_id &amp; x² ");
    /// let got: Vec<&str> = tokens.iter().collect();
    /// assert_eq!(got, ["returns", "the", "user", "_", "id", "&", "amp", ";", "x²"]);
    /// ```
    pub fn new(text: &str) -> Self {
        let mut tokens = Self::default();
        tokens.reset(text);
        tokens
    }

    /// Replaces the content with the tokens of `text`, reusing the buffers.
    pub fn reset(&mut self, text: &str) {
        self.lowered.clear();
        self.spans.clear();
        lower_into(strip(text), &mut self.lowered);
        let lowered = self.lowered.as_str();
        let mut run_start: Option<usize> = None;
        if lowered.is_ascii() {
            // Same rule on bytes: every ASCII char is one byte.
            for (at, &b) in lowered.as_bytes().iter().enumerate() {
                if b.is_ascii_alphanumeric() {
                    run_start.get_or_insert(at);
                    continue;
                }
                if let Some(start) = run_start.take() {
                    self.spans.push((start, at));
                }
                if !is_space(char::from(b)) {
                    self.spans.push((at, at + 1));
                }
            }
        } else {
            for (at, c) in lowered.char_indices() {
                if is_alnum(c) {
                    run_start.get_or_insert(at);
                    continue;
                }
                if let Some(start) = run_start.take() {
                    self.spans.push((start, at));
                }
                if !is_space(c) {
                    self.spans.push((at, at + c.len_utf8()));
                }
            }
        }
        if let Some(start) = run_start {
            self.spans.push((start, lowered.len()));
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there is no token at all (an empty or all-whitespace text).
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The tokens in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        self.spans.iter().map(|&(a, b)| &self.lowered[a..b])
    }

    /// The tokens as owned strings.
    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_owned).collect()
    }
}

/// Convenience: the normalized tokens of `text` as owned strings.
pub fn bleu_tokens(text: &str) -> Vec<String> {
    BleuTokens::new(text).to_vec()
}
