//! Reading and writing CodeXGLUE `idx<TAB>text` files (spec §9.1).
//!
//! Files are strict UTF-8. Gold files split into lines the way Python's `open()` does
//! ("universal newlines": `\r\n`, `\r` and `\n` all end a line); prediction rows split the
//! way the evaluator's `for row in sys.stdin` does on Linux, at `\n` only.

use std::io::{BufWriter, Read, Write};
use std::path::Path;

use crate::error::EvalError;

/// Splits `text` into lines like Python's universal-newline text mode, without terminators.
///
/// A final line without a terminator is kept; a terminator at the very end adds no empty line.
pub fn python_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let bytes = text.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                lines.push(&text[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&text[start..i]);
                if bytes.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < bytes.len() {
        lines.push(&text[start..]);
    }
    lines
}

/// Splits `text` into rows like Python's `sys.stdin` on POSIX (`newline="\n"`): only `\n`
/// ends a row, and a `\r` stays in its row (where the evaluator's strip or tokenizer treats
/// it as whitespace). Same end-of-text rule as [`python_lines`].
pub fn stdin_rows(text: &str) -> Vec<&str> {
    let mut rows: Vec<&str> = text.split('\n').collect();
    if rows.last() == Some(&"") {
        rows.pop();
    }
    rows
}

/// How a text's lines end, for the line numbers of errors: as [`python_lines`] splits them
/// (gold files) or as [`stdin_rows`] does (predictions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnds {
    /// `\r\n`, `\r` and `\n` each end a line.
    Universal,
    /// Only `\n` ends a line.
    NewlineOnly,
}

impl LineEnds {
    /// How many lines end within `bytes`.
    fn count(self, bytes: &[u8]) -> usize {
        match self {
            Self::NewlineOnly => bytes.iter().filter(|&&b| b == b'\n').count(),
            Self::Universal => bytes
                .iter()
                .enumerate()
                .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')))
                .count(),
        }
    }
}

/// Decodes bytes as strict UTF-8; the error names `source` and the line of the first bad byte
/// (lines split at `\n`, as prediction rows are).
pub fn decode_utf8(bytes: Vec<u8>, source: &str) -> Result<String, EvalError> {
    decode_utf8_lines(bytes, source, LineEnds::NewlineOnly)
}

/// [`decode_utf8`] with the error's line counted by `line_ends`.
pub fn decode_utf8_lines(
    bytes: Vec<u8>,
    source: &str,
    line_ends: LineEnds,
) -> Result<String, EvalError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + line_ends.count(&e.as_bytes()[..valid]);
        EvalError::InvalidUtf8 {
            origin: source.to_owned(),
            line,
        }
    })
}

/// Reads a whole UTF-8 text file (an error's line counted at `\n`, as prediction rows are).
pub fn read_text(path: &Path) -> Result<String, EvalError> {
    read_text_lines(path, LineEnds::NewlineOnly)
}

/// [`read_text`] with the error's line counted by `line_ends` (gold files: universal).
pub fn read_text_lines(path: &Path, line_ends: LineEnds) -> Result<String, EvalError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| EvalError::Io {
        path: name.clone(),
        error,
    })?;
    decode_utf8_lines(bytes, &name, line_ends)
}

/// Reads all of `reader` (e.g. standard input) as UTF-8; `source` names it in errors.
pub fn read_text_from(mut reader: impl Read, source: &str) -> Result<String, EvalError> {
    let mut bytes = Vec::new();
    reader
        .read_to_end(&mut bytes)
        .map_err(|error| EvalError::Io {
            path: source.to_owned(),
            error,
        })?;
    decode_utf8(bytes, source)
}

/// Writes one `"<idx>\t<text>\n"` line per entry, as the reference writes `dev.gold`,
/// `test_<j>.output` and friends. Texts are written as given: like the reference, a text
/// containing a line break would split its line.
pub fn write_idx_text<I, D, T>(path: impl AsRef<Path>, entries: I) -> Result<(), EvalError>
where
    I: IntoIterator<Item = (D, T)>,
    D: std::fmt::Display,
    T: AsRef<str>,
{
    let path = path.as_ref();
    let io_error = |error| EvalError::Io {
        path: path.display().to_string(),
        error,
    };
    let file = std::fs::File::create(path).map_err(io_error)?;
    let mut out = BufWriter::new(file);
    write_idx_lines(&mut out, entries).map_err(io_error)?;
    out.flush().map_err(io_error)
}

/// The lines of [`write_idx_text`] into any writer (a file written aside and renamed, a
/// buffer); the caller flushes.
pub fn write_idx_lines<I, D, T>(mut out: impl Write, entries: I) -> std::io::Result<()>
where
    I: IntoIterator<Item = (D, T)>,
    D: std::fmt::Display,
    T: AsRef<str>,
{
    for (idx, text) in entries {
        writeln!(out, "{idx}\t{}", text.as_ref())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn universal_newlines() {
        assert_eq!(python_lines("a\r\nb\rc\nd"), ["a", "b", "c", "d"]);
        assert_eq!(python_lines("a\n\n"), ["a", ""]);
        assert_eq!(python_lines(""), Vec::<&str>::new());
        assert_eq!(python_lines("\r\r\n"), ["", ""]);
        assert_eq!(stdin_rows("a\r\nb\rc\nd"), ["a\r", "b\rc", "d"]);
        assert_eq!(stdin_rows("a\n\n"), ["a", ""]);
        assert_eq!(stdin_rows(""), Vec::<&str>::new());
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = decode_utf8(b"0\tok\n1\tbad \xff\n".to_vec(), "x.gold").unwrap_err();
        assert!(
            matches!(err, EvalError::InvalidUtf8 { line: 2, .. }),
            "{err}"
        );
        assert_eq!(err.to_string(), "x.gold:2: not valid UTF-8");
        // A gold file's lines end as Python's open() ends them, `\r` included.
        let cr = b"0\ta\r1\tb\r\n2\tc \xff\r".to_vec();
        let err = decode_utf8_lines(cr.clone(), "x.gold", LineEnds::Universal).unwrap_err();
        assert_eq!(err.to_string(), "x.gold:3: not valid UTF-8");
        let err = decode_utf8(cr, "x.output").unwrap_err();
        assert_eq!(err.to_string(), "x.output:2: not valid UTF-8");
    }
}
