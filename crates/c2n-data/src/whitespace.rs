//! Python's notion of whitespace and the reference's whitespace normalization (spec §1.5).

/// True for exactly the code points for which Python's `str.isspace()` is true.
///
/// This differs from [`char::is_whitespace`]: Python also counts the ASCII separators
/// U+001C–U+001F as whitespace.
///
/// ```
/// use c2n_data::python_whitespace;
/// assert!(python_whitespace('\u{1c}'));
/// assert!(!'\u{1c}'.is_whitespace());
/// assert!(!python_whitespace('x'));
/// ```
pub fn python_whitespace(c: char) -> bool {
    matches!(
        c,
        '\u{09}'..='\u{0D}'
            | '\u{1C}'..='\u{20}'
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

/// Python's `s.rstrip()`.
pub fn python_rstrip(s: &str) -> &str {
    s.trim_end_matches(python_whitespace)
}

/// Python's `s.strip()`.
pub fn python_strip(s: &str) -> &str {
    s.trim_matches(python_whitespace)
}

/// What to do with `\n` inside the joined tokens before whitespace is collapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Newline {
    /// Replace every `\n` with a space (sources).
    Space,
    /// Delete every `\n` (targets).
    Delete,
}

/// `" ".join(" ".join(tokens).replace("\n", X).strip().split())` in one pass.
///
/// Returns a string whose only whitespace is single ASCII spaces between words.
pub fn normalize_tokens<S: AsRef<str>>(tokens: &[S], newline: Newline) -> String {
    let capacity = tokens.iter().map(|t| t.as_ref().len() + 1).sum();
    let mut out = String::with_capacity(capacity);
    // `pending_space` is set after any whitespace once a word has started; it turns into one
    // space only when the next non-space character arrives, so nothing trails.
    let mut pending_space = false;
    for (i, token) in tokens.iter().enumerate() {
        if i > 0 {
            pending_space = true;
        }
        for c in token.as_ref().chars() {
            if c == '\n' {
                match newline {
                    Newline::Space => pending_space = true,
                    Newline::Delete => {}
                }
            } else if python_whitespace(c) {
                pending_space = true;
            } else {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_set_matches_cpython_list() {
        // The list of §1.5, written out independently of the match above.
        let listed: Vec<u32> = (0x09..=0x0D)
            .chain(0x1C..=0x1F)
            .chain([0x20, 0x85, 0xA0, 0x1680])
            .chain(0x2000..=0x200A)
            .chain([0x2028, 0x2029, 0x202F, 0x205F, 0x3000])
            .collect();
        for cp in 0..0x11000u32 {
            if let Some(c) = char::from_u32(cp) {
                assert_eq!(python_whitespace(c), listed.contains(&cp), "U+{cp:04X}");
            }
        }
    }

    #[test]
    fn newline_is_space_in_source_and_deleted_in_target() {
        let tokens = ["foo\nbar", "baz"];
        assert_eq!(normalize_tokens(&tokens, Newline::Space), "foo bar baz");
        assert_eq!(normalize_tokens(&tokens, Newline::Delete), "foobar baz");
    }

    #[test]
    fn runs_and_ends_collapse() {
        let tokens = [" \ta\u{1c}\u{1f}b ", "\u{a0}", "c\u{2028}\r\n", ""];
        assert_eq!(normalize_tokens(&tokens, Newline::Space), "a b c");
        assert_eq!(normalize_tokens(&tokens, Newline::Delete), "a b c");
        let empty: [&str; 0] = [];
        assert_eq!(normalize_tokens(&empty, Newline::Space), "");
    }
}
