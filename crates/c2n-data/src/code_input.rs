//! Code to summarize, with no docstring: what batch prediction (`predict --jsonl`) reads.
//!
//! Each line of a `.jsonl` file (gzip recognised by its magic bytes) is a JSON object with
//! `code_tokens`, a list of strings as in CodeSearchNet, or, failing that, `code`, the
//! function's text. Other fields, a docstring included, are ignored, so a CodeSearchNet split
//! reads as it is. Either way the source is normalized as a `code_tokens` join (newlines become
//! spaces, whitespace runs collapse), as the reference does. An example's `idx` is its 0-based
//! line number, so predictions match back to the file; blank lines are skipped (they hold no
//! code) and every other line must parse: the first bad one is an error naming file and line.

use std::path::Path;

use rayon::prelude::*;
use serde::Deserialize;

use crate::error::{DataError, Result};
use crate::example::Example;
use crate::features::{featurize, Feature, FeatureConfig, Stage};
use crate::reader::{
    handle_read_failure, parse_json, BadLineReason, JsonlLines, LineProblem, ReadReport, Strictness,
};
use crate::tokenizer::RobertaTokenizer;
use crate::whitespace::python_strip;

#[derive(Deserialize)]
struct CodeFields {
    #[serde(default)]
    code_tokens: Option<Vec<String>>,
    #[serde(default)]
    code: Option<String>,
}

/// The examples of a code-only jsonl file, in file order, with empty targets.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("code.jsonl");
/// std::fs::write(
///     &path,
///     "{\"code_tokens\": [\"def\", \"add\", \"(\", \"a\", \")\"]}\n\n{\"code\": \"def f\\n  1\\nend\"}\n",
/// )
/// .unwrap();
/// let examples = c2n_data::read_code_examples(&path).unwrap();
/// assert_eq!(examples.len(), 2);
/// assert_eq!((examples[0].idx, examples[0].source.as_str()), (0, "def add ( a )"));
/// assert_eq!((examples[1].idx, examples[1].source.as_str()), (2, "def f 1 end"));
/// ```
pub fn read_code_examples(path: impl AsRef<Path>) -> Result<Vec<Example>> {
    read_code_lines(JsonlLines::open(path)?)
}

/// [`read_code_examples`] from any byte stream, standard input say; `name` stands for the file
/// in errors.
///
/// ```
/// let input = "{\"code\": \"def f\"}\n{\"code\": 3}\n";
/// let err = c2n_data::read_code_examples_from_reader("<stdin>", std::io::Cursor::new(input))
///     .unwrap_err();
/// assert!(err.to_string().starts_with("<stdin>:2"), "{err}");
/// ```
pub fn read_code_examples_from_reader(
    name: impl Into<std::path::PathBuf>,
    reader: impl std::io::Read + Send + 'static,
) -> Result<Vec<Example>> {
    read_code_lines(JsonlLines::from_reader(name, reader)?)
}

fn read_code_lines(mut lines: JsonlLines) -> Result<Vec<Example>> {
    let path = lines.path().to_path_buf();
    let path = path.as_path();
    let mut examples = Vec::new();
    loop {
        let line = match lines.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => break,
            Err(failure) => {
                handle_read_failure(
                    path,
                    failure,
                    Strictness::Strict,
                    &mut ReadReport::default(),
                )?;
                break;
            }
        };
        let text = std::str::from_utf8(&line.bytes).map_err(|e| {
            LineProblem {
                reason: BadLineReason::InvalidUtf8,
                detail: e.to_string(),
            }
            .into_error(path, line.index)
        })?;
        let text = python_strip(text);
        if text.is_empty() {
            continue;
        }
        let (fields, _) =
            parse_json::<CodeFields>(text).map_err(|p| p.into_error(path, line.index))?;
        let example = match (fields.code_tokens, fields.code) {
            (Some(tokens), _) => Example::from_tokens(line.index, &tokens, &[] as &[&str]),
            (None, Some(code)) => Example::from_tokens(line.index, &[code], &[] as &[&str]),
            (None, None) => {
                return Err(LineProblem {
                    reason: BadLineReason::MissingCodeTokens,
                    detail: "neither `code_tokens` nor `code` is given".to_string(),
                }
                .into_error(path, line.index))
            }
        };
        examples.push(example);
    }
    if examples.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(examples)
}

/// Test-stage features of `examples` (the target is the reference's `None` placeholder, which
/// decoding never reads), tokenized in parallel, in the order of `examples`.
pub fn code_features(
    tokenizer: &RobertaTokenizer,
    examples: &[Example],
    max_source_len: usize,
) -> Result<Vec<Feature>> {
    let cfg = FeatureConfig {
        max_source_len,
        stage: Stage::Test,
        ..FeatureConfig::default()
    };
    examples
        .par_iter()
        .map(|example| featurize(tokenizer, example, &cfg))
        .collect()
}
