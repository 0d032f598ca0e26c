//! # c2n-eval: the code2nl / CodeXGLUE BLEU, bit for bit
//!
//! **Which metric.** [`smoothed_bleu`] is the metric that CodeBERT `code2nl` and CodeXGLUE
//! code-to-text report: the reference `bleu.py` / `evaluator.py`. For every gold id that has a
//! prediction it computes a *sentence-level* BLEU-4 with add-one smoothing on orders 2–4,
//! `ε = 2.2250738585072014e-308` inside every logarithm and a brevity penalty with `+1` on both
//! lengths; the corpus score is the **arithmetic mean of those sentence scores × 100**, summed in
//! gold-file order. It is *not* corpus BLEU: an empty prediction still earns `exp(−reflen)`,
//! `snake_case` counts as three tokens, and the result is reproduced here to the last bit of the
//! f64 (same operations in the same order, same libm).
//!
//! [`sacrebleu_corpus`] / [`corpus_bleu_13a`] are a **different metric**, corpus BLEU-4 in the
//! sacreBLEU convention (13a tokenization, exponential smoothing, case-sensitive), offered for
//! comparison with machine-translation style numbers and checked against the `sacrebleu`
//! package. Do not report it as CodeXGLUE BLEU.
//!
//! ```
//! use c2n_eval::{smoothed_bleu, Gold, Predictions};
//!
//! // The public CodeXGLUE evaluator example (reference.txt = first 5 ruby test gold lines).
//! let gold = Gold::from_text(
//!     "0\tOutputs the deferred summary information saved via\n\
//!      1\tInspect the file referenced in the kubectl stderr to make it easier for developer to understand what s going on\n\
//!      2\tmake sure to never prune the ejson - keys secret\n\
//!      3\tDetermine the best compressor for the current system . This method returns the class not an instance of the class .\n\
//!      4\tCreate the bff file using + mkinstallp + .\n",
//!     "reference.txt",
//! )?;
//! let predictions = Predictions::from_rows([
//!     "0\tPrints a summary message",
//!     "1\tFinds the output from the output file",
//!     "2\tVerify that the given JSON element is present .",
//!     "3\tDetermines the specified compression compression .",
//!     "4\tCreates a new project .",
//! ]);
//! let score = smoothed_bleu(&gold, &predictions)?;
//! assert_eq!(score.matched, 5);
//! assert_eq!(score.to_string(), "9.554726113590661"); // Python repr, as the evaluator prints
//! assert_eq!(score.rounded(), 9.55);                  // Python round(x, 2), as run.py logs
//! # Ok::<(), c2n_eval::EvalError>(())
//! ```
//!
//! ## Exactness
//!
//! * **Text normalization** ([`BleuTokens`]): `lower(strip(text))` with Python semantics, then
//!   maximal runs of `str.isalnum()` characters are tokens and every other non-space character
//!   (`_` included) is a token of its own. This is the exact simplification of
//!   `normalize(splitPuncts(..))` (spec §9.3); the fixtures check it against the original
//!   mteval chain on random strings.
//! * **Unicode** ([`python_str`]): word characters, whitespace (with U+001C–U+001F) and
//!   lower-casing (`İ` → `i` + U+0307, final sigma) come from tables generated from CPython by
//!   `tools/bleu/gen_unicode_tables.py`, currently CPython 3.11 = **Unicode 14.0.0**
//!   ([`python_str::UNICODE_VERSION`]). Rust's own `char` predicates and `to_lowercase` follow a
//!   newer Unicode and differ from Python's (e.g. `Ⓐ` is alphanumeric for Rust only, `²` is a
//!   `\w` for Python only), so they are not used.
//! * **Reading** ([`Gold`], [`Predictions`]): prediction rows are stripped and cut at tabs (extra
//!   fields dropped), later duplicate ids overwrite earlier ones; gold lines need exactly one tab
//!   (error naming file and line otherwise), ids are compared unstripped, an id may have several
//!   references (max clipping, shortest reference length); gold ids without prediction are
//!   skipped, and no match at all is an error. Files are strict UTF-8; the gold file is read
//!   with Python's universal newlines, the predictions as `sys.stdin` reads them on Linux (rows
//!   end at `\n` only).
//! * **Printing**: [`python_repr`] and [`python_round`] reproduce `repr(float)` and
//!   `round(x, 2)`.

pub mod corpus;
pub mod error;
pub mod files;
pub mod maps;
pub mod ngram;
pub mod normalize;
pub mod pyfloat;
pub mod python_str;
pub mod report;
pub mod sacre;
pub mod sentence;
mod unicode_tables;

pub use corpus::{smoothed_bleu, SmoothedBleu};
pub use error::EvalError;
pub use files::{write_idx_lines, write_idx_text};
pub use maps::{Gold, GoldEntry, Predictions};
pub use normalize::{bleu_tokens, BleuTokens};
pub use pyfloat::{python_repr, python_round};
pub use report::{evaluate, EvaluatorOutput, Metric};
pub use sacre::{corpus_bleu_13a, sacrebleu_corpus, tokenize_13a, SacreBleu};
pub use sentence::{sentence_bleu, SentenceScorer, EPSILON};
