//! Cleaning filters over CodeSearchNet records (spec §1.1) and a report of what they dropped.
//!
//! No cleaning script was ever published, so these rules are our concrete reading of the
//! published ones. They cannot be checked for parity; they are checked to keep every
//! example of the (already cleaned) ruby CodeXGLUE files.
//!
//! Published rule 1, "drop examples whose code cannot be parsed into an AST", is **not**
//! implemented: it needs a parser per language (tree-sitter grammars for six languages), and
//! CodeSearchNet extracted every function from a tree-sitter parse in the first place, so
//! records read from it (or from the CodeXGLUE files) passed that rule already. Code from
//! elsewhere is not checked for it. Published rules 2–4 follow, plus a duplicate-url rule of
//! ours, in the order they are tried (an example is counted once, under the first rule that
//! drops it):
//!
//! 1. **Docstring length** ([`DropReason::DocstringTooShort`] / [`DropReason::DocstringTooLong`]):
//!    fewer than `min_docstring_tokens` (3) or more than `max_docstring_tokens` (256)
//!    entries in `docstring_tokens`.
//! 2. **Special tokens** ([`DropReason::SpecialTokens`]):
//!    - a URL: the docstring tokens concatenated *without* separators and ASCII-lowercased
//!      contain `http://`, `https://`, `ftp://` or `www.` (CodeSearchNet splits URLs into
//!      several tokens, so the check ignores the spaces between them);
//!    - an HTML tag: the tokens joined by spaces contain `<`, optional spaces, an optional `/`,
//!      optional spaces, then one of [`HTML_TAGS`] (case-insensitive) not followed by a letter
//!      or digit, **and** a `>` somewhere after it. The closing `>` is required so that a
//!      comparison such as `x < i` is not mistaken for a tag; `class << self` has no tag name.
//!      Known false positive: `a < b and c > d` reads as the tag `<b …>`.
//! 3. **Non-English** ([`DropReason::NonEnglish`]): among the alphabetic characters of the
//!    docstring tokens, the share outside the Latin script (ASCII letters, U+00C0–U+024F,
//!    U+1E00–U+1EFF) is above `max_non_latin_letter_share` (0.1). A docstring with no letter
//!    is kept. Latin-script languages other than English are not detected by this rule.
//! 4. **Duplicate URL** ([`DropReason::DuplicateUrl`]): a record whose `url` was already kept
//!    is dropped (first one wins; in the reference's build the winner depended on the
//!    file-system walk order). Records without a `url` are never duplicates.
//!
//! Optionally, whole-line comment tokens are removed from `code_tokens` (the CodeBERT README's
//! "remove comments in the code"): with [`CommentStyle::Hash`] any code token starting with
//! `#` (ruby, python), with [`CommentStyle::Slash`] any starting with `//` or `/*`. String
//! literals are single tokens starting with a quote, so they are not affected. This changes
//! sources, so it is off in every preset, including [`CleanConfig::published`].
//!
//! [`CleanConfig::default`] turns everything off: the reference pipeline does no cleaning.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::record::TokenRecord;

/// HTML tag names recognised by the special-token rule.
pub const HTML_TAGS: &[&str] = &[
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "dd",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "iframe",
    "img",
    "li",
    "ol",
    "p",
    "pre",
    "script",
    "span",
    "strong",
    "style",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "tt",
    "u",
    "ul",
];

/// Which comment tokens to strip from `code_tokens`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentStyle {
    /// Tokens starting with `#` (ruby, python).
    Hash,
    /// Tokens starting with `//` or `/*` (go, java, javascript, php).
    Slash,
}

/// Which filters run. Serialized into the cache fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CleanConfig {
    /// Drop docstrings with fewer tokens than this.
    pub min_docstring_tokens: Option<usize>,
    /// Drop docstrings with more tokens than this.
    pub max_docstring_tokens: Option<usize>,
    /// Drop docstrings containing URLs or HTML tags.
    pub drop_special_tokens: bool,
    /// Drop docstrings that are mostly non-Latin script.
    pub drop_non_english: bool,
    /// Threshold of the non-English rule.
    pub max_non_latin_letter_share: f64,
    /// Drop records whose url was already kept.
    pub dedup_url: bool,
    /// Remove whole-line comment tokens from the code.
    pub strip_code_comments: Option<CommentStyle>,
}

impl Default for CleanConfig {
    fn default() -> Self {
        CleanConfig::none()
    }
}

impl CleanConfig {
    /// No filter at all: what the reference pipeline does.
    pub fn none() -> Self {
        CleanConfig {
            min_docstring_tokens: None,
            max_docstring_tokens: None,
            drop_special_tokens: false,
            drop_non_english: false,
            max_non_latin_letter_share: 0.1,
            dedup_url: false,
            strip_code_comments: None,
        }
    }

    /// Published rules 2–4 (docstring length 3..=256, special tokens, non-English) plus url
    /// dedup; published rule 1 (the code parses) is not implemented (see the module docs).
    pub fn published() -> Self {
        CleanConfig {
            min_docstring_tokens: Some(3),
            max_docstring_tokens: Some(256),
            drop_special_tokens: true,
            drop_non_english: true,
            dedup_url: true,
            ..CleanConfig::none()
        }
    }

    /// Whether no filter or transformation is on (every record passes unchanged).
    pub fn is_noop(&self) -> bool {
        self.min_docstring_tokens.is_none()
            && self.max_docstring_tokens.is_none()
            && !self.drop_special_tokens
            && !self.drop_non_english
            && !self.dedup_url
            && self.strip_code_comments.is_none()
    }
}

/// Why a record was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Fewer docstring tokens than the minimum.
    DocstringTooShort,
    /// More docstring tokens than the maximum.
    DocstringTooLong,
    /// A URL or an HTML tag in the docstring.
    SpecialTokens,
    /// Mostly non-Latin letters in the docstring.
    NonEnglish,
    /// The url was already kept.
    DuplicateUrl,
}

impl DropReason {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::DocstringTooShort => "docstring_too_short",
            DropReason::DocstringTooLong => "docstring_too_long",
            DropReason::SpecialTokens => "special_tokens",
            DropReason::NonEnglish => "non_english",
            DropReason::DuplicateUrl => "duplicate_url",
        }
    }
}

/// Counts of what cleaning did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanReport {
    /// Records that entered cleaning.
    pub seen: usize,
    /// Records kept.
    pub kept: usize,
    /// Records dropped, by the first rule that dropped them.
    pub dropped: BTreeMap<DropReason, usize>,
    /// Comment tokens removed from code.
    pub comment_tokens_stripped: usize,
    /// Kept records that had at least one comment token removed.
    pub records_with_comments_stripped: usize,
}

impl CleanReport {
    /// Records dropped for any reason.
    pub fn dropped_total(&self) -> usize {
        self.dropped.values().sum()
    }

    /// Adds another report's counts to this one.
    pub fn merge(&mut self, other: &CleanReport) {
        self.seen += other.seen;
        self.kept += other.kept;
        self.comment_tokens_stripped += other.comment_tokens_stripped;
        self.records_with_comments_stripped += other.records_with_comments_stripped;
        for (reason, n) in &other.dropped {
            *self.dropped.entry(*reason).or_insert(0) += n;
        }
    }
}

/// Applies a [`CleanConfig`]. The per-record rules ([`Cleaner::check`]) are pure and can run
/// in parallel; the url dedup ([`Cleaner::admit`]) keeps state and must see records in order.
#[derive(Debug, Clone)]
pub struct Cleaner {
    config: CleanConfig,
    seen_urls: HashSet<[u8; 16]>,
}

impl Cleaner {
    /// A cleaner with no urls seen yet.
    pub fn new(config: CleanConfig) -> Self {
        Cleaner {
            config,
            seen_urls: HashSet::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CleanConfig {
        &self.config
    }

    /// The stateless rules (1–3). Also strips comment tokens when configured; returns the
    /// number stripped.
    pub fn check(
        config: &CleanConfig,
        record: &mut TokenRecord,
    ) -> std::result::Result<usize, DropReason> {
        let n = record.docstring_tokens.len();
        if config.min_docstring_tokens.is_some_and(|min| n < min) {
            return Err(DropReason::DocstringTooShort);
        }
        if config.max_docstring_tokens.is_some_and(|max| n > max) {
            return Err(DropReason::DocstringTooLong);
        }
        if config.drop_special_tokens && has_special_tokens(&record.docstring_tokens) {
            return Err(DropReason::SpecialTokens);
        }
        if config.drop_non_english
            && non_latin_letter_share(&record.docstring_tokens) > config.max_non_latin_letter_share
        {
            return Err(DropReason::NonEnglish);
        }
        Ok(match config.strip_code_comments {
            Some(style) => strip_comment_tokens(&mut record.code_tokens, style),
            None => 0,
        })
    }

    /// The stateful rule (4): admits a record that passed [`Cleaner::check`] unless its url
    /// was already admitted.
    pub fn admit(&mut self, url: Option<&str>) -> std::result::Result<(), DropReason> {
        if !self.config.dedup_url {
            return Ok(());
        }
        let Some(url) = url else { return Ok(()) };
        // 128 bits of sha256 per url keeps a million urls in ~30 MB with no practical
        // collision risk.
        let digest = Sha256::digest(url.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        if self.seen_urls.insert(key) {
            Ok(())
        } else {
            Err(DropReason::DuplicateUrl)
        }
    }

    /// Runs all rules on records in order, updating `report`; returns the kept ones.
    pub fn clean_all(
        &mut self,
        records: Vec<(usize, TokenRecord)>,
        report: &mut CleanReport,
    ) -> Vec<(usize, TokenRecord)> {
        let mut kept = Vec::with_capacity(records.len());
        for (idx, mut record) in records {
            report.seen += 1;
            let outcome = Cleaner::check(&self.config, &mut record)
                .and_then(|stripped| self.admit(record.url.as_deref()).map(|_| stripped));
            match outcome {
                Ok(stripped) => {
                    report.kept += 1;
                    report.comment_tokens_stripped += stripped;
                    report.records_with_comments_stripped += usize::from(stripped > 0);
                    kept.push((idx, record));
                }
                Err(reason) => *report.dropped.entry(reason).or_insert(0) += 1,
            }
        }
        kept
    }
}

/// Rule 2: a URL or an HTML tag in the docstring tokens.
pub fn has_special_tokens<S: AsRef<str>>(tokens: &[S]) -> bool {
    let squeezed: String = tokens
        .iter()
        .map(|t| t.as_ref().to_ascii_lowercase())
        .collect();
    if ["http://", "https://", "ftp://", "www."]
        .iter()
        .any(|p| squeezed.contains(p))
    {
        return true;
    }
    let joined = tokens
        .iter()
        .map(|t| t.as_ref())
        .collect::<Vec<_>>()
        .join(" ");
    has_html_tag(&joined)
}

fn has_html_tag(text: &str) -> bool {
    let bytes = text.as_bytes();
    for (start, _) in text.match_indices('<') {
        let mut i = start + 1;
        let skip_spaces = |mut i: usize| {
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            i
        };
        i = skip_spaces(i);
        if i < bytes.len() && bytes[i] == b'/' {
            i = skip_spaces(i + 1);
        }
        let name_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
            i += 1;
        }
        if i == name_start {
            continue;
        }
        let name = text[name_start..i].to_ascii_lowercase();
        if HTML_TAGS.contains(&name.as_str()) && text[i..].contains('>') {
            return true;
        }
    }
    false
}

fn is_latin_letter(c: char) -> bool {
    c.is_ascii_alphabetic()
        || ('\u{C0}'..='\u{24F}').contains(&c)
        || ('\u{1E00}'..='\u{1EFF}').contains(&c)
}

/// Rule 3: the share of alphabetic characters outside the Latin script (0 when no letter).
pub fn non_latin_letter_share<S: AsRef<str>>(tokens: &[S]) -> f64 {
    let (mut letters, mut non_latin) = (0usize, 0usize);
    for c in tokens.iter().flat_map(|t| t.as_ref().chars()) {
        if c.is_alphabetic() {
            letters += 1;
            non_latin += usize::from(!is_latin_letter(c));
        }
    }
    if letters == 0 {
        0.0
    } else {
        non_latin as f64 / letters as f64
    }
}

/// Removes whole-line comment tokens; returns how many were removed.
pub fn strip_comment_tokens(code_tokens: &mut Vec<String>, style: CommentStyle) -> usize {
    let before = code_tokens.len();
    code_tokens.retain(|t| match style {
        CommentStyle::Hash => !t.starts_with('#'),
        CommentStyle::Slash => !(t.starts_with("//") || t.starts_with("/*")),
    });
    before - code_tokens.len()
}
