//! The CodeSearchNet v2 record (spec §1.3).

use serde::{Deserialize, Serialize};

/// One line of a CodeSearchNet / CodeXGLUE `.jsonl` file.
///
/// Only `code_tokens` and `docstring_tokens` are read by the pipeline; they are required.
/// Every other field is optional so that stripped-down files still load, and one that is not
/// a string reads as absent. Unknown fields are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `owner/name` of the repository.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub repo: Option<String>,
    /// File path inside the repository.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub path: Option<String>,
    /// Qualified function name.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub func_name: Option<String>,
    /// Raw function text.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub original_string: Option<String>,
    /// Language name, e.g. `ruby`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub language: Option<String>,
    /// The code part of the function.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub code: Option<String>,
    /// CodeSearchNet tokenization of the code (required).
    #[serde(default)]
    pub code_tokens: Option<Vec<String>>,
    /// Raw docstring.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub docstring: Option<String>,
    /// First paragraph of the docstring, tokenized (required).
    #[serde(default)]
    pub docstring_tokens: Option<Vec<String>>,
    /// Commit sha.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub sha: Option<String>,
    /// GitHub blob URL with a line anchor; the dedup key.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub url: Option<String>,
    /// `train`, `valid` or `test`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_none"
    )]
    pub partition: Option<String>,
}

/// A record whose two required fields are known to be present.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenRecord {
    /// `code_tokens`.
    pub code_tokens: Vec<String>,
    /// `docstring_tokens`.
    pub docstring_tokens: Vec<String>,
    /// `url`, when present.
    pub url: Option<String>,
}

/// The fields the pipeline needs; parsing only these skips building the large strings.
#[derive(Deserialize)]
pub(crate) struct TokenFields {
    #[serde(default)]
    pub code_tokens: Option<Vec<String>>,
    #[serde(default)]
    pub docstring_tokens: Option<Vec<String>>,
    #[serde(default, deserialize_with = "string_or_none")]
    pub url: Option<String>,
}

/// An optional text field that the pipeline does not need: a string is kept, any other JSON
/// value (a number, a list, null) reads as absent. The reference reads `code_tokens` and
/// `docstring_tokens` only, so a record whose `url` is `5` is still an example there.
fn string_or_none<'de, D>(deserializer: D) -> Result<Option<String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(
        match Option::<serde_json::Value>::deserialize(deserializer)? {
            Some(serde_json::Value::String(text)) => Some(text),
            _ => None,
        },
    )
}
