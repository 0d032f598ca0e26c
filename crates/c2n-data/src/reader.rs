//! Streaming `.jsonl` / `.jsonl.gz` reading with strict or lenient handling of bad lines.
//!
//! Reading is split in two so that parsing can run in parallel:
//! [`JsonlLines`] yields raw lines in order (sequential I/O and gunzip), and
//! [`parse_line`] turns one line into a [`TokenRecord`] (pure, thread-safe).
//! [`ReadReport`] counts every line that was not turned into a record, by reason.
//!
//! Lines end at `\n`, `\r\n` or a lone `\r`, as Python's text mode (universal newlines)
//! splits run.py's input files; each line is then stripped as Python's `line.strip()` does.
//!
//! **Lone surrogates.** Python's JSON parser accepts `\uD800`–`\uDFFF` escapes that are not
//! part of a surrogate pair; serde_json rejects them. Policy: such an escape is replaced by
//! U+FFFD (`\uFFFD`) and the record is kept; the line is counted in
//! [`ReadReport::lone_surrogate_lines`]. The reference could not tokenize such text at all
//! (`str.encode("utf-8")` fails on a lone surrogate), so no parity is lost for the fields
//! the pipeline reads, and the other fields keep a visible marker.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::record::{Record, TokenFields, TokenRecord};
use crate::whitespace::python_strip;

/// Why a line was not turned into a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadLineReason {
    /// The line is not valid UTF-8.
    InvalidUtf8,
    /// The line is empty or only whitespace (the reference crashes on it).
    BlankLine,
    /// The line is not a JSON object of the expected shape.
    MalformedJson,
    /// `code_tokens` is absent or null.
    MissingCodeTokens,
    /// `docstring_tokens` is absent or null.
    MissingDocstringTokens,
    /// The gzip stream ended early or is corrupt; reading stopped at this line.
    CorruptGzip,
}

impl BadLineReason {
    /// Stable snake_case name, as used in reports.
    pub fn name(self) -> &'static str {
        match self {
            BadLineReason::InvalidUtf8 => "invalid_utf8",
            BadLineReason::BlankLine => "blank_line",
            BadLineReason::MalformedJson => "malformed_json",
            BadLineReason::MissingCodeTokens => "missing_code_tokens",
            BadLineReason::MissingDocstringTokens => "missing_docstring_tokens",
            BadLineReason::CorruptGzip => "corrupt_gzip",
        }
    }
}

impl fmt::Display for BadLineReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to treat bad lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strictness {
    /// The first bad line (or an empty file) is an error naming file and line.
    Strict,
    /// Bad lines are skipped and counted by reason in the [`ReadReport`].
    #[default]
    Lenient,
}

/// What happened to the lines of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadReport {
    /// Lines seen (including bad ones).
    pub lines: usize,
    /// Lines turned into records.
    pub records: usize,
    /// Lines skipped, by reason.
    pub bad_lines: BTreeMap<BadLineReason, usize>,
    /// Records kept whose line contained a lone surrogate escape (replaced by U+FFFD).
    pub lone_surrogate_lines: usize,
    /// Files that had no line at all.
    pub empty_files: usize,
}

impl ReadReport {
    /// Lines skipped for any reason.
    pub fn bad_total(&self) -> usize {
        self.bad_lines.values().sum()
    }

    /// Counts one skipped line.
    pub fn count_bad(&mut self, reason: BadLineReason) {
        *self.bad_lines.entry(reason).or_insert(0) += 1;
    }

    /// Adds another report's counts to this one.
    pub fn merge(&mut self, other: &ReadReport) {
        self.lines += other.lines;
        self.records += other.records;
        self.lone_surrogate_lines += other.lone_surrogate_lines;
        self.empty_files += other.empty_files;
        for (reason, n) in &other.bad_lines {
            *self.bad_lines.entry(*reason).or_insert(0) += n;
        }
    }
}

/// One raw line of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLine {
    /// 0-based line number; becomes the example `idx`.
    pub index: usize,
    /// The bytes, without the `\n`.
    pub bytes: Vec<u8>,
}

/// A bad line: where, why, and the parser's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineProblem {
    /// Why the line was rejected.
    pub reason: BadLineReason,
    /// Details for the error message.
    pub detail: String,
}

impl LineProblem {
    /// Turns the problem into an error naming the file and the 1-based line.
    pub fn into_error(self, path: &Path, index: usize) -> DataError {
        DataError::BadLine {
            path: path.to_path_buf(),
            line: index + 1,
            reason: self.reason,
            detail: self.detail,
        }
    }
}

/// A successfully parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedLine {
    /// The two token lists and the url.
    pub record: TokenRecord,
    /// Whether a lone surrogate escape was replaced.
    pub had_lone_surrogate: bool,
}

/// Sequential reader of raw lines from a `.jsonl` or gzip-compressed file.
///
/// Gzip is recognised by its magic bytes, not by the file name.
pub struct JsonlLines {
    path: PathBuf,
    reader: Box<dyn BufRead + Send>,
    gzip: bool,
    next_index: usize,
    finished: bool,
    /// The last line ended in `\r`: a `\n` right after it belongs to that line end.
    skip_lf: bool,
    /// The longest line read ([`MAX_LINE_BYTES`] unless set otherwise).
    max_line_bytes: usize,
}

/// The longest line [`JsonlLines`] reads: CodeSearchNet's longest records are a few hundred
/// KB, so a longer "line" is a file that is no jsonl (a binary, a file without line ends),
/// refused before it fills the memory.
pub const MAX_LINE_BYTES: usize = 256 << 20;

impl fmt::Debug for JsonlLines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlLines")
            .field("path", &self.path)
            .field("gzip", &self.gzip)
            .field("next_index", &self.next_index)
            .finish()
    }
}

/// A failure while pulling raw lines.
#[derive(Debug)]
pub enum LineReadError {
    /// The gzip stream is corrupt or truncated at this 0-based line.
    CorruptGzip {
        /// 0-based index of the line that could not be read.
        index: usize,
        /// The decoder's message.
        detail: String,
    },
    /// Any other I/O error (always fatal).
    Io(DataError),
}

impl JsonlLines {
    /// Opens a file for line reading.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
        Self::from_reader(path, file)
    }

    /// Reads lines from any byte stream (standard input, say); `name` stands for the file in
    /// errors (`<stdin>:3: …`). Gzip is recognised by its magic bytes, as for files.
    pub fn from_reader(
        name: impl Into<PathBuf>,
        reader: impl std::io::Read + Send + 'static,
    ) -> Result<Self> {
        let path = name.into();
        let mut reader = reader;
        // The magic bytes, read whole: a pipe may hand over one byte at a time.
        let mut head = Vec::with_capacity(2);
        while head.len() < 2 {
            let mut byte = [0u8; 1];
            match reader.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => head.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(DataError::io(&path, e)),
            }
        }
        let gzip = head == [0x1f, 0x8b];
        let buffered = BufReader::with_capacity(
            1 << 20,
            std::io::Read::chain(std::io::Cursor::new(head), reader),
        );
        let reader: Box<dyn BufRead + Send> = if gzip {
            let decoder = flate2::bufread::MultiGzDecoder::new(buffered);
            Box::new(BufReader::with_capacity(1 << 20, decoder))
        } else {
            Box::new(buffered)
        };
        Ok(JsonlLines {
            path,
            reader,
            gzip,
            next_index: 0,
            finished: false,
            skip_lf: false,
            max_line_bytes: MAX_LINE_BYTES,
        })
    }

    /// Reads lines of at most `max` bytes (default [`MAX_LINE_BYTES`]); a longer one is an
    /// error naming the line.
    pub fn with_max_line_bytes(mut self, max: usize) -> Self {
        self.max_line_bytes = max;
        self
    }

    /// The file being read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file is gzip-compressed.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }

    /// Reads the next line, or `None` at the end.
    ///
    /// Lines end at `\n`, `\r\n` or a lone `\r`, as Python's text mode reads them (the
    /// reference's `open(filename)`): a file saved with classic Mac line ends has as many
    /// lines there as here. The terminator is not part of the line.
    pub fn next_line(&mut self) -> std::result::Result<Option<RawLine>, LineReadError> {
        if self.finished {
            return Ok(None);
        }
        let mut bytes = Vec::new();
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.finished = true;
                    return Err(if self.gzip {
                        LineReadError::CorruptGzip {
                            index: self.next_index,
                            detail: e.to_string(),
                        }
                    } else {
                        LineReadError::Io(DataError::io(&self.path, e))
                    });
                }
            };
            if buf.is_empty() {
                // The end: a last line without a line end, or nothing (a line end was last).
                self.finished = true;
                return Ok((!bytes.is_empty()).then(|| self.numbered(bytes)));
            }
            if std::mem::take(&mut self.skip_lf) && buf[0] == b'\n' {
                self.reader.consume(1);
                continue;
            }
            let (taken, line_end) = match memchr::memchr2(b'\n', b'\r', buf) {
                Some(at) => (at, Some(buf[at])),
                None => (buf.len(), None),
            };
            if bytes.len() + taken > self.max_line_bytes {
                self.finished = true;
                return Err(LineReadError::Io(DataError::BadLine {
                    path: self.path.clone(),
                    line: self.next_index + 1,
                    reason: BadLineReason::MalformedJson,
                    detail: format!(
                        "longer than {} bytes: not a jsonl file?",
                        self.max_line_bytes
                    ),
                }));
            }
            bytes.extend_from_slice(&buf[..taken]);
            match line_end {
                Some(end) => {
                    self.reader.consume(taken + 1);
                    self.skip_lf = end == b'\r';
                    return Ok(Some(self.numbered(bytes)));
                }
                None => self.reader.consume(taken),
            }
        }
    }

    fn numbered(&mut self, bytes: Vec<u8>) -> RawLine {
        let index = self.next_index;
        self.next_index += 1;
        RawLine { index, bytes }
    }

    /// Reads up to `max` lines into `out` (cleared first). Returns `Ok(false)` at the end.
    pub fn next_chunk(
        &mut self,
        max: usize,
        out: &mut Vec<RawLine>,
    ) -> std::result::Result<bool, LineReadError> {
        out.clear();
        while out.len() < max {
            match self.next_line()? {
                Some(line) => out.push(line),
                None => return Ok(!out.is_empty()),
            }
        }
        Ok(true)
    }
}

/// Parses one raw line into the fields the pipeline reads (spec §1.5 step 1).
pub fn parse_line(bytes: &[u8]) -> std::result::Result<ParsedLine, LineProblem> {
    let text = std::str::from_utf8(bytes).map_err(|e| LineProblem {
        reason: BadLineReason::InvalidUtf8,
        detail: e.to_string(),
    })?;
    let text = python_strip(text);
    if text.is_empty() {
        return Err(LineProblem {
            reason: BadLineReason::BlankLine,
            detail: "blank line".to_string(),
        });
    }
    let (fields, had_lone_surrogate) = parse_json::<TokenFields>(text)?;
    let code_tokens = fields.code_tokens.ok_or_else(|| LineProblem {
        reason: BadLineReason::MissingCodeTokens,
        detail: "field `code_tokens` is missing or null".to_string(),
    })?;
    let docstring_tokens = fields.docstring_tokens.ok_or_else(|| LineProblem {
        reason: BadLineReason::MissingDocstringTokens,
        detail: "field `docstring_tokens` is missing or null".to_string(),
    })?;
    Ok(ParsedLine {
        record: TokenRecord {
            code_tokens,
            docstring_tokens,
            url: fields.url,
        },
        had_lone_surrogate,
    })
}

/// Parses one raw line into a full [`Record`] (all fields), with the same rules as
/// [`parse_line`].
pub fn parse_full_record(bytes: &[u8]) -> std::result::Result<(Record, bool), LineProblem> {
    let parsed = parse_line(bytes)?;
    let text = python_strip(std::str::from_utf8(bytes).unwrap_or_default());
    let (record, _) = parse_json::<Record>(text)?;
    Ok((record, parsed.had_lone_surrogate))
}

pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(
    text: &str,
) -> std::result::Result<(T, bool), LineProblem> {
    match serde_json::from_str::<T>(text) {
        Ok(value) => Ok((value, false)),
        Err(first) => {
            // Only a line that fails is scanned for lone surrogates: the common path stays fast.
            let fixed = replace_lone_surrogates(text);
            let had_lone_surrogate = fixed.is_some();
            let text_now = fixed.as_deref().unwrap_or(text);
            if had_lone_surrogate {
                if let Ok(value) = serde_json::from_str::<T>(text_now) {
                    return Ok((value, true));
                }
            }
            // Python's json.loads keeps the last of a repeated key, where a struct refuses
            // it; a JSON tree keeps the last too.
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(text_now)
                .and_then(|tree| serde_json::from_value::<T>(tree))
            {
                return Ok((value, had_lone_surrogate));
            }
            // Python's json.loads refuses it too ("Unexpected UTF-8 BOM"); say what it is.
            let detail = if text.starts_with('\u{feff}') {
                "starts with a UTF-8 byte-order mark (save the file without it)".to_string()
            } else {
                // serde counts lines inside the text it parsed (always line 1 here); the file
                // line is reported beside this detail, so keep only the column.
                match (first.line(), first.column()) {
                    (1, column) if column > 0 => {
                        let full = first.to_string();
                        let message = full
                            .strip_suffix(&format!(" at line 1 column {column}"))
                            .unwrap_or(&full);
                        format!("{message} at column {column}")
                    }
                    _ => first.to_string(),
                }
            };
            Err(LineProblem {
                reason: BadLineReason::MalformedJson,
                detail,
            })
        }
    }
}

/// Replaces every `\uXXXX` escape that is a lone surrogate with `\uFFFD`.
/// Returns `None` when the text has none.
pub fn replace_lone_surrogates(text: &str) -> Option<String> {
    fn hex4(b: &[u8]) -> Option<u32> {
        if b.len() < 4 {
            return None;
        }
        let s = std::str::from_utf8(&b[..4]).ok()?;
        u32::from_str_radix(s, 16).ok()
    }
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut changed = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' || i + 1 >= bytes.len() {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        if bytes[i + 1] != b'u' {
            out.extend_from_slice(&bytes[i..i + 2]);
            i += 2;
            continue;
        }
        let Some(cp) = hex4(&bytes[i + 2..]) else {
            out.extend_from_slice(&bytes[i..i + 2]);
            i += 2;
            continue;
        };
        let is_high = (0xD800..0xDC00).contains(&cp);
        let is_low = (0xDC00..0xE000).contains(&cp);
        if is_high {
            let next = &bytes[i + 6..];
            let paired = next.len() >= 6
                && next[0] == b'\\'
                && next[1] == b'u'
                && hex4(&next[2..]).is_some_and(|lo| (0xDC00..0xE000).contains(&lo));
            if paired {
                out.extend_from_slice(&bytes[i..i + 12]);
                i += 12;
                continue;
            }
        }
        if is_high || is_low {
            out.extend_from_slice(b"\\uFFFD");
            changed = true;
        } else {
            out.extend_from_slice(&bytes[i..i + 6]);
        }
        i += 6;
    }
    // Only ASCII bytes were replaced by ASCII bytes, so the result is still UTF-8.
    changed.then(|| String::from_utf8(out).unwrap_or_default())
}

/// Reads a whole file into `(line index, record)` pairs.
///
/// Sequential convenience for small files; the parallel, bounded-memory path is
/// [`crate::pipeline`].
pub fn read_records(
    path: impl AsRef<Path>,
    strictness: Strictness,
) -> Result<(Vec<(usize, TokenRecord)>, ReadReport)> {
    read_first_records(path, strictness, None)
}

/// [`read_records`] of the first `max_lines` lines only (all with `None`): later lines are
/// not read, so they can neither fail the read nor cost time.
pub fn read_first_records(
    path: impl AsRef<Path>,
    strictness: Strictness,
    max_lines: Option<usize>,
) -> Result<(Vec<(usize, TokenRecord)>, ReadReport)> {
    let path = path.as_ref();
    let mut lines = JsonlLines::open(path)?;
    let mut report = ReadReport::default();
    let mut records = Vec::new();
    while max_lines.is_none_or(|max| report.lines < max) {
        let line = match lines.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(failure) => {
                handle_read_failure(path, failure, strictness, &mut report)?;
                break;
            }
        };
        report.lines += 1;
        match parse_line(&line.bytes) {
            Ok(parsed) => {
                report.records += 1;
                report.lone_surrogate_lines += usize::from(parsed.had_lone_surrogate);
                records.push((line.index, parsed.record));
            }
            Err(problem) => match strictness {
                Strictness::Strict => return Err(problem.into_error(path, line.index)),
                Strictness::Lenient => report.count_bad(problem.reason),
            },
        }
    }
    if max_lines != Some(0) {
        finish_file(path, strictness, &mut report)?;
    }
    Ok((records, report))
}

/// Applies the strictness policy to a failure of [`JsonlLines::next_line`].
pub fn handle_read_failure(
    path: &Path,
    failure: LineReadError,
    strictness: Strictness,
    report: &mut ReadReport,
) -> Result<()> {
    match failure {
        LineReadError::Io(e) => Err(e),
        LineReadError::CorruptGzip { index, detail } => match strictness {
            Strictness::Strict => Err(DataError::BadLine {
                path: path.to_path_buf(),
                line: index + 1,
                reason: BadLineReason::CorruptGzip,
                detail,
            }),
            Strictness::Lenient => {
                report.lines += 1;
                report.count_bad(BadLineReason::CorruptGzip);
                Ok(())
            }
        },
    }
}

/// End-of-file check: an empty file is an error in strict mode and counted otherwise.
pub fn finish_file(path: &Path, strictness: Strictness, report: &mut ReadReport) -> Result<()> {
    if report.lines == 0 {
        match strictness {
            Strictness::Strict => {
                return Err(DataError::EmptyFile {
                    path: path.to_path_buf(),
                })
            }
            Strictness::Lenient => report.empty_files += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lone_surrogates_are_replaced_and_pairs_kept() {
        let text = r#"{"a": "x\ud800y\udc00z\ud83d\ude00\\ud800"}"#;
        let fixed = replace_lone_surrogates(text).expect("has lone surrogates");
        assert_eq!(fixed, r#"{"a": "x\uFFFDy\uFFFDz\ud83d\ude00\\ud800"}"#);
        assert_eq!(replace_lone_surrogates(r#"{"a": "\ud83d\ude00"}"#), None);
    }

    #[test]
    fn lines_end_at_newline_crlf_or_a_lone_carriage_return_as_in_python() {
        // What `for line in open(path)` sees: universal newlines.
        let dir = tempfile::tempdir().unwrap();
        let read = |content: &[u8]| -> Vec<(usize, String)> {
            let path = dir.path().join("f.jsonl");
            std::fs::write(&path, content).unwrap();
            let mut lines = JsonlLines::open(&path).unwrap();
            let mut out = Vec::new();
            while let Some(line) = lines.next_line().unwrap() {
                out.push((line.index, String::from_utf8(line.bytes).unwrap()));
            }
            out
        };
        let owned = |v: &[(usize, &str)]| -> Vec<(usize, String)> {
            v.iter().map(|&(i, t)| (i, t.to_string())).collect()
        };
        assert_eq!(read(b"a\nb\r\nc"), owned(&[(0, "a"), (1, "b"), (2, "c")]));
        assert_eq!(read(b"a\rb\rc\r"), owned(&[(0, "a"), (1, "b"), (2, "c")]));
        assert_eq!(
            read(b"a\r\r\nb\rc\n\r"),
            owned(&[(0, "a"), (1, ""), (2, "b"), (3, "c"), (4, "")])
        );
        assert_eq!(read(b"\r\n"), owned(&[(0, "")]));
        assert!(read(b"").is_empty());
        // Cross-check the count with Python itself where it is installed.
        std::fs::write(dir.path().join("f.jsonl"), b"a\r\r\nb\rc\n\r").unwrap();
        let python = std::process::Command::new("python3")
            .args([
                "-c",
                "import sys; print(len(open(sys.argv[1]).readlines()))",
            ])
            .arg(dir.path().join("f.jsonl"))
            .output();
        if let Ok(out) = python {
            if out.status.success() {
                let n: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
                assert_eq!(n, 5);
            }
        }
    }

    #[test]
    fn parse_line_reasons() {
        let ok = br#"{"code_tokens": ["a"], "docstring_tokens": ["b"], "url": "u"}"#;
        assert_eq!(parse_line(ok).unwrap().record.url.as_deref(), Some("u"));
        let cases: [(&[u8], BadLineReason); 5] = [
            (b"  \t\r", BadLineReason::BlankLine),
            (b"{\"code_tokens\": [", BadLineReason::MalformedJson),
            (
                b"{\"docstring_tokens\": []}",
                BadLineReason::MissingCodeTokens,
            ),
            (
                b"{\"code_tokens\": []}",
                BadLineReason::MissingDocstringTokens,
            ),
            (b"{\"code_tokens\": [\"\xff\"]}", BadLineReason::InvalidUtf8),
        ];
        for (bytes, reason) in cases {
            assert_eq!(parse_line(bytes).unwrap_err().reason, reason);
        }
        // The file's line is reported beside the detail: serde's own "line 1" is left out.
        let detail = parse_line(b"{x}").unwrap_err().detail;
        assert_eq!(detail, "key must be a string at column 2");
        let bom = [&b"\xef\xbb\xbf"[..], ok].concat();
        let problem = parse_line(&bom).unwrap_err();
        assert_eq!(problem.reason, BadLineReason::MalformedJson);
        assert!(
            problem.detail.contains("byte-order mark"),
            "{}",
            problem.detail
        );
    }
}
