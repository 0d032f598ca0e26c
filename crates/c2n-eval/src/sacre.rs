//! A **different metric**: corpus BLEU-4 in the sacreBLEU convention (sacreBLEU 2.x defaults:
//! `13a` tokenization, case-sensitive, `exp` smoothing, closest reference length).
//!
//! It is *not* what code2nl/CodeXGLUE report (that is [`smoothed_bleu`](crate::smoothed_bleu),
//! a mean of smoothed sentence scores). It sums n-gram statistics over the corpus before taking
//! precisions, so it is useful for comparison with machine-translation style numbers. The
//! fixtures check it against the `sacrebleu` Python package (`BLEU().corpus_score`).

use crate::error::EvalError;
use crate::maps::{Gold, Predictions};
use crate::ngram::{NgramCounter, MAX_ORDER};
use crate::pyfloat::python_repr;
use crate::python_str::{rstrip, split_whitespace};

/// Corpus statistics and score, like sacreBLEU's `BLEUScore`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SacreBleu {
    /// BLEU in `[0, 100]`.
    pub score: f64,
    /// Clipped n-gram matches per order, summed over the corpus.
    pub correct: [u64; MAX_ORDER],
    /// Hypothesis n-grams per order, summed over the corpus.
    pub total: [u64; MAX_ORDER],
    /// Percent precisions per order (smoothed where a count is zero).
    pub precisions: [f64; MAX_ORDER],
    /// Brevity penalty.
    pub brevity_penalty: f64,
    /// Total hypothesis length in tokens.
    pub sys_len: u64,
    /// Total closest-reference length in tokens.
    pub ref_len: u64,
}

impl std::fmt::Display for SacreBleu {
    /// The score as Python prints it (`repr`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&python_repr(self.score))
    }
}

/// sacreBLEU's `13a` tokenizer (mteval-v13a): returns the tokens of one segment.
///
/// ```
/// assert_eq!(c2n_eval::tokenize_13a("Hello, world&amp;co 3.5-x."), ["Hello", ",", "world", "&", "co", "3.5", "-", "x", "."]);
/// ```
pub fn tokenize_13a(line: &str) -> Vec<String> {
    let mut s = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if s.contains('&') {
        s = s
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut chars: Vec<char> = Vec::with_capacity(s.len() + 2);
    chars.push(' ');
    chars.extend(s.chars());
    chars.push(' ');
    // r"([\{-\~\[-\` -\&\(-\+\:-\@\/])" -> r" \1 "
    let mut spaced = Vec::with_capacity(chars.len() * 2);
    for c in chars {
        if is_13a_punct(c) {
            spaced.extend([' ', c, ' ']);
        } else {
            spaced.push(c);
        }
    }
    let is_digit = |c: char| c.is_ascii_digit();
    let is_dot_comma = |c: char| c == '.' || c == ',';
    // r"([^0-9])([\.,])" -> r"\1 \2 "
    let s = substitute_pairs(
        &spaced,
        |a, b| !is_digit(a) && is_dot_comma(b),
        |a, b| [a, ' ', b, ' '],
    );
    // r"([\.,])([^0-9])" -> r" \1 \2"
    let s = substitute_pairs(
        &s,
        |a, b| is_dot_comma(a) && !is_digit(b),
        |a, b| [' ', a, ' ', b],
    );
    // r"([0-9])(-)" -> r"\1 \2 "
    let s = substitute_pairs(&s, |a, b| is_digit(a) && b == '-', |a, b| [a, ' ', b, ' ']);
    let joined: String = s.into_iter().collect();
    split_whitespace(&joined).map(str::to_owned).collect()
}

fn is_13a_punct(c: char) -> bool {
    matches!(c, '{'..='~' | '['..='`' | ' '..='&' | '('..='+' | ':'..='@' | '/')
}

/// One left-to-right, non-overlapping `re.sub` of a two-character pattern.
fn substitute_pairs(
    s: &[char],
    matches: impl Fn(char, char) -> bool,
    replace: impl Fn(char, char) -> [char; 4],
) -> Vec<char> {
    let mut out = Vec::with_capacity(s.len() + s.len() / 2);
    let mut i = 0;
    while i < s.len() {
        if i + 1 < s.len() && matches(s[i], s[i + 1]) {
            out.extend(replace(s[i], s[i + 1]));
            i += 2;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// sacreBLEU's `my_log`: log with 0 mapped to a very negative number.
fn floored_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

/// Corpus BLEU over parallel hypotheses and their references (any number per segment).
///
/// Segments are right-stripped and `13a`-tokenized; the reference length of a segment is the
/// one closest to the hypothesis length (ties to the shorter). The two slices must be
/// parallel: a hypothesis without references (or references without a hypothesis) is an
/// error, never silently left out.
pub fn corpus_bleu_13a<H, R>(
    hypotheses: &[H],
    references: &[Vec<R>],
) -> Result<SacreBleu, EvalError>
where
    H: AsRef<str>,
    R: AsRef<str>,
{
    if hypotheses.len() != references.len() {
        return Err(EvalError::NotParallel {
            hypotheses: hypotheses.len(),
            references: references.len(),
        });
    }
    let mut counter = NgramCounter::default();
    let mut correct = [0u64; MAX_ORDER];
    let mut total = [0u64; MAX_ORDER];
    let (mut sys_len, mut ref_len) = (0u64, 0u64);
    for (hypothesis, refs) in hypotheses.iter().zip(references) {
        let hyp = tokenize_13a(rstrip(hypothesis.as_ref()));
        let refs: Vec<Vec<String>> = refs
            .iter()
            .map(|r| tokenize_13a(rstrip(r.as_ref())))
            .collect();
        let stats = counter.count(
            hyp.iter().map(String::as_str),
            refs.iter().map(|r| r.iter().map(String::as_str)),
        );
        for k in 0..MAX_ORDER {
            correct[k] += stats.correct[k];
            total[k] += stats.total[k];
        }
        sys_len += hyp.len() as u64;
        ref_len += closest_ref_len(hyp.len(), refs.iter().map(Vec::len)) as u64;
    }
    Ok(compute(correct, total, sys_len, ref_len))
}

fn closest_ref_len(hyp_len: usize, ref_lens: impl Iterator<Item = usize>) -> usize {
    let mut best: Option<(usize, usize)> = None; // (difference, length)
    for len in ref_lens {
        let diff = hyp_len.abs_diff(len);
        best = match best {
            Some((d, l)) if d < diff || (d == diff && l <= len) => Some((d, l)),
            _ => Some((diff, len)),
        };
    }
    best.map_or(0, |(_, len)| len)
}

fn compute(
    correct: [u64; MAX_ORDER],
    total: [u64; MAX_ORDER],
    sys_len: u64,
    ref_len: u64,
) -> SacreBleu {
    let brevity_penalty = if sys_len < ref_len {
        if sys_len > 0 {
            (1.0 - ref_len as f64 / sys_len as f64).exp()
        } else {
            0.0
        }
    } else {
        1.0
    };
    let mut precisions = [0.0f64; MAX_ORDER];
    let mut result = SacreBleu {
        score: 0.0,
        correct,
        total,
        precisions,
        brevity_penalty,
        sys_len,
        ref_len,
    };
    if correct.iter().all(|&c| c == 0) {
        return result;
    }
    let mut smooth = 1.0f64;
    for k in 0..MAX_ORDER {
        if total[k] == 0 {
            break;
        }
        precisions[k] = if correct[k] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * total[k] as f64)
        } else {
            100.0 * correct[k] as f64 / total[k] as f64
        };
    }
    let log_sum = precisions.iter().fold(0.0, |sum, &p| sum + floored_log(p));
    result.precisions = precisions;
    result.score = brevity_penalty * (log_sum / MAX_ORDER as f64).exp();
    result
}

/// sacreBLEU corpus BLEU over the pairs the reference metric would score: gold ids with a
/// prediction, in gold order; hypothesis = the prediction text, references = all gold texts
/// of the id. Nothing is lower-cased.
pub fn sacrebleu_corpus(gold: &Gold, predictions: &Predictions) -> Result<SacreBleu, EvalError> {
    let matched = gold.matched(predictions)?;
    let hypotheses: Vec<&str> = matched.iter().map(|(_, text)| *text).collect();
    let references: Vec<Vec<&str>> = matched
        .iter()
        .map(|(entry, _)| entry.references.iter().map(String::as_str).collect())
        .collect();
    corpus_bleu_13a(&hypotheses, &references)
}
