//! Predictions and gold references keyed by id, read like the reference's `computeMaps`
//! (spec §9.2, §9.7).

use std::collections::HashMap;
use std::path::Path;

use crate::error::EvalError;
use crate::files::{
    python_lines, read_text, read_text_from, read_text_lines, stdin_rows, LineEnds,
};
use crate::python_str::strip;

/// Predictions by id, read like `computeMaps` reads its prediction rows.
///
/// For each row: strip it (Python whitespace), split on tabs, the id is field 0 and the text
/// field 1 (or `""`); fields from the third on are dropped. A later row with the same id
/// overwrites an earlier one.
#[derive(Debug, Clone, Default)]
pub struct Predictions {
    texts: HashMap<String, String>,
}

impl Predictions {
    /// Parses in-memory rows such as `"12\tReturns the value ."` (what run.py scores).
    pub fn from_rows<I, S>(rows: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut predictions = Self::default();
        for row in rows {
            predictions.insert_row(row.as_ref());
        }
        predictions
    }

    /// Builds the rows `"<idx>\t<text>"` that run.py builds from its decoded predictions,
    /// and parses them the same way (so a tab inside a text cuts it, as in the reference).
    pub fn from_pairs<I, D, T>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (D, T)>,
        D: std::fmt::Display,
        T: AsRef<str>,
    {
        Self::from_rows(
            pairs
                .into_iter()
                .map(|(idx, text)| format!("{idx}\t{}", text.as_ref())),
        )
    }

    /// Reads a prediction file (`*.output`), one row per line, split as
    /// [`Predictions::from_text`] does (the same rows as `evaluator.py GOLD < FILE`).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, EvalError> {
        Ok(Self::from_text(&read_text(path.as_ref())?))
    }

    /// Reads prediction rows from `reader`, e.g. standard input like the CodeXGLUE evaluator.
    pub fn read_from(reader: impl std::io::Read, source: &str) -> Result<Self, EvalError> {
        Ok(Self::from_text(&read_text_from(reader, source)?))
    }

    /// Parses the text of a prediction file, split into rows as the evaluator's standard
    /// input is: at `\n` only, so a `\r` inside a prediction does not start a row.
    pub fn from_text(text: &str) -> Self {
        Self::from_rows(stdin_rows(text))
    }

    fn insert_row(&mut self, row: &str) {
        let mut fields = strip(row).split('\t');
        let id = fields.next().unwrap_or_default();
        let text = fields.next().unwrap_or_default();
        self.texts.insert(id.to_owned(), text.to_owned());
    }

    /// The prediction text for `id` (field 1 of its last row, not yet stripped or lower-cased).
    pub fn get(&self, id: &str) -> Option<&str> {
        self.texts.get(id).map(String::as_str)
    }

    /// The distinct ids, in no particular order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.texts.keys().map(String::as_str)
    }

    /// Number of distinct ids.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there is no prediction.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

/// One gold id with all its reference texts, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldEntry {
    /// The id exactly as written before the tab (not stripped).
    pub id: String,
    /// Reference texts; an id may appear on several lines.
    pub references: Vec<String>,
}

/// Gold references in order of first appearance of each id, read like `computeMaps`.
#[derive(Debug, Clone, Default)]
pub struct Gold {
    entries: Vec<GoldEntry>,
    index: HashMap<String, usize>,
}

impl Gold {
    /// Reads a gold file (`dev.gold`, `test_1.gold`, CodeXGLUE `reference.txt`).
    ///
    /// Every line must be `idx<TAB>text` with exactly one tab; otherwise the error names the
    /// file and the line (the reference raises there too).
    pub fn read(path: impl AsRef<Path>) -> Result<Self, EvalError> {
        let path = path.as_ref();
        let text = read_text_lines(path, LineEnds::Universal)?;
        Self::from_text(&text, &path.display().to_string())
    }

    /// Parses gold text; `source` names it in errors.
    pub fn from_text(text: &str, source: &str) -> Result<Self, EvalError> {
        let mut gold = Self::default();
        for (number, line) in python_lines(text).into_iter().enumerate() {
            let tabs = line.matches('\t').count();
            let Some((id, reference)) = line.split_once('\t').filter(|_| tabs == 1) else {
                return Err(EvalError::GoldLine {
                    origin: source.to_owned(),
                    line: number + 1,
                    tabs,
                });
            };
            gold.push(id, reference);
        }
        Ok(gold)
    }

    /// Builds gold references from `(idx, text)` pairs, as if written to a gold file and read back.
    ///
    /// Fails like [`Gold::from_text`] when a text contains a tab or a line break.
    pub fn from_pairs<I, D, T>(pairs: I) -> Result<Self, EvalError>
    where
        I: IntoIterator<Item = (D, T)>,
        D: std::fmt::Display,
        T: AsRef<str>,
    {
        let mut text = String::new();
        for (idx, reference) in pairs {
            text.push_str(&format!("{idx}\t{}\n", reference.as_ref()));
        }
        Self::from_text(&text, "<memory>")
    }

    fn push(&mut self, id: &str, reference: &str) {
        match self.index.get(id) {
            Some(&i) => self.entries[i].references.push(reference.to_owned()),
            None => {
                self.index.insert(id.to_owned(), self.entries.len());
                self.entries.push(GoldEntry {
                    id: id.to_owned(),
                    references: vec![reference.to_owned()],
                });
            }
        }
    }

    /// Whether `id` has references.
    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Entries in order of first appearance.
    pub fn entries(&self) -> &[GoldEntry] {
        &self.entries
    }

    /// Number of distinct ids.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the gold text had no line.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries that have a prediction, each with that prediction, in gold order: the pairs
    /// `bleuFromMaps` scores. Fails when there is none (the reference divides by zero).
    pub fn matched<'a>(
        &'a self,
        predictions: &'a Predictions,
    ) -> Result<Vec<(&'a GoldEntry, &'a str)>, EvalError> {
        let matched: Vec<_> = self
            .entries
            .iter()
            .filter_map(|entry| predictions.get(&entry.id).map(|text| (entry, text)))
            .collect();
        if matched.is_empty() {
            const SHOWN: usize = 3;
            let mut prediction_ids: Vec<&str> = predictions.ids().collect();
            prediction_ids.sort_unstable();
            // A byte-order mark sorts last; keep it in view, it is the likely cause.
            if let Some(bom) = prediction_ids
                .iter()
                .position(|id| id.starts_with('\u{feff}'))
            {
                let id = prediction_ids.remove(bom);
                prediction_ids.insert(0, id);
            }
            return Err(EvalError::NoMatchedIds {
                gold_ids: self.len(),
                predictions: predictions.len(),
                gold_sample: self
                    .entries
                    .iter()
                    .take(SHOWN)
                    .map(|e| e.id.clone())
                    .collect(),
                prediction_sample: prediction_ids
                    .into_iter()
                    .take(SHOWN)
                    .map(str::to_string)
                    .collect(),
            });
        }
        Ok(matched)
    }
}
