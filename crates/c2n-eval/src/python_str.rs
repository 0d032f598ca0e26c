//! Python 3 `str` semantics that the reference BLEU relies on (spec §9.4).
//!
//! `bleu.py` runs on CPython `str` and `re`, so a word character is `str.isalnum()` or `_`,
//! whitespace is `str.isspace()` (which includes U+001C–U+001F, unlike Rust's `char::is_whitespace`),
//! and lower-casing is CPython's full mapping with the final-sigma rule. The predicates below read
//! tables generated from CPython by `tools/bleu/gen_unicode_tables.py`; see [`UNICODE_VERSION`].

use crate::unicode_tables::{ALNUM, CASED, CASE_IGNORABLE, LOWER_MULTI, LOWER_RUNS, SPACE};
pub use crate::unicode_tables::{PYTHON_VERSION, UNICODE_VERSION};

fn in_ranges(table: &[(u32, u32)], c: char) -> bool {
    let c = c as u32;
    // Index of the first range starting after `c`; the candidate is the one before it.
    let i = table.partition_point(|&(first, _)| first <= c);
    i > 0 && c <= table[i - 1].1
}

/// `c.isspace()` in Python: the `\s` of `re`, and what `strip()`/`split()` remove.
pub fn is_space(c: char) -> bool {
    if c.is_ascii() {
        return matches!(c, '\t'..='\r' | '\x1c'..='\x1f' | ' ');
    }
    in_ranges(SPACE, c)
}

/// `c.isalnum()` in Python: a letter (L*) or a character with a numeric type (`²`, `½`, `①` count).
pub fn is_alnum(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_alphanumeric();
    }
    in_ranges(ALNUM, c)
}

/// `\w` of Python's `re` on `str`: [`is_alnum`] or `_`.
pub fn is_word(c: char) -> bool {
    c == '_' || is_alnum(c)
}

/// `s.strip()` in Python.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `s.rstrip()` in Python.
pub fn rstrip(s: &str) -> &str {
    s.trim_end_matches(is_space)
}

/// `s.split()` in Python: runs of [`is_space`] separate, empty pieces are dropped.
pub fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|piece| !piece.is_empty())
}

const CAPITAL_SIGMA: char = '\u{3A3}';

/// `s.lower()` in Python: full lower-case mapping (`İ` → `i` + U+0307) and the final-sigma rule.
pub fn lower(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    lower_into(s, &mut out);
    out
}

/// [`lower`] appended to `out`, reusing its buffer.
pub fn lower_into(s: &str, out: &mut String) {
    if s.is_ascii() {
        out.push_str(s);
        let start = out.len() - s.len();
        out[start..].make_ascii_lowercase();
        return;
    }
    out.reserve(s.len() + s.len() / 8);
    for (at, c) in s.char_indices() {
        if c == CAPITAL_SIGMA {
            out.push(if is_final_sigma(s, at) {
                '\u{3C2}'
            } else {
                '\u{3C3}'
            });
        } else {
            push_lower(out, c);
        }
    }
}

fn push_lower(out: &mut String, c: char) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    let cp = c as u32;
    if let Ok(i) = LOWER_MULTI.binary_search_by_key(&cp, |&(from, _)| from) {
        out.push_str(LOWER_MULTI[i].1);
        return;
    }
    let i = LOWER_RUNS.partition_point(|&(first, ..)| first <= cp);
    if i > 0 {
        let (first, last, stride, delta) = LOWER_RUNS[i - 1];
        if cp <= last && (cp - first).is_multiple_of(stride) {
            if let Some(low) = cp.checked_add_signed(delta).and_then(char::from_u32) {
                out.push(low);
                return;
            }
        }
    }
    out.push(c);
}

/// CPython's rule: U+03A3 at byte `at` is final when a cased character precedes it and none
/// follows it, skipping case-ignorable characters on both sides.
fn is_final_sigma(s: &str, at: usize) -> bool {
    let is_ignorable = |c: char| in_ranges(CASE_IGNORABLE, c);
    let cased_before = s[..at]
        .chars()
        .rev()
        .find(|&c| !is_ignorable(c))
        .is_some_and(|c| in_ranges(CASED, c));
    if !cased_before {
        return false;
    }
    let after = &s[at + CAPITAL_SIGMA.len_utf8()..];
    !after
        .chars()
        .find(|&c| !is_ignorable(c))
        .is_some_and(|c| in_ranges(CASED, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_separators_are_python_whitespace_but_not_rust_whitespace() {
        for c in '\u{1c}'..='\u{1f}' {
            assert!(is_space(c), "{c:?}");
            assert!(!c.is_whitespace(), "{c:?}");
        }
        assert_eq!(strip("\u{1c} a b\u{1f}\u{a0}"), "a b");
        assert_eq!(
            split_whitespace("a\u{1d}b\u{3000}c").collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn numeric_no_category_counts_as_alnum_and_other_alphabetic_does_not() {
        for c in ['²', '½', '①', 'é', '中', '\u{661}'] {
            assert!(is_alnum(c), "{c:?}");
        }
        // Rust's is_alphanumeric accepts these, Python's isalnum does not.
        for c in ['Ⓐ', '\u{345}', '\u{5b0}', '\u{1f130}'] {
            assert!(c.is_alphanumeric() && !is_alnum(c), "{c:?}");
        }
        for c in ['\u{301}', '\u{307}', '‿', '\u{200d}', '_'] {
            assert!(!is_alnum(c), "{c:?}");
        }
        assert!(is_word('_'));
    }

    #[test]
    fn lower_expands_dotted_capital_i_and_handles_final_sigma() {
        assert_eq!(lower("İstanbul"), "i\u{307}stanbul");
        assert_eq!(lower("ΟΔΟΣ ΣΑΣ Σ"), "οδος σας σ");
        assert_eq!(lower("ΑΣ\u{301}"), "ας\u{301}");
        assert_eq!(lower("ΑΣΑ"), "ασα");
        assert_eq!(lower("ẞ ǅ Ⓐ K"), "ß ǆ ⓐ k");
    }

    /// Spec §9.4 says Rust's `to_lowercase` agrees with Python's `lower` on the Unicode 14
    /// repertoire. Rust follows a newer Unicode, so the crate uses the CPython table; this test
    /// records how the two relate: wherever CPython lower-cases a code point, Rust agrees, and
    /// every disagreement is a code point CPython 3.11 leaves alone (assigned after Unicode 14).
    #[test]
    fn rust_to_lowercase_agrees_wherever_python_lowercases() {
        let mut newer_only = 0;
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let ours = lower(c.encode_utf8(&mut [0; 4]));
            let rust: String = c.to_lowercase().collect();
            if ours != rust {
                assert_eq!(
                    ours,
                    c.to_string(),
                    "U+{:04X}: Python lowers it differently",
                    c as u32
                );
                newer_only += 1;
            }
        }
        eprintln!("{newer_only} code points lower-case in Rust only (newer Unicode)");
        // A newer Unicode adds a few dozen mappings (55 with Rust 1.95), far fewer than the ~1,430.
        assert!(newer_only < 200, "{newer_only} code points differ");
    }
}
