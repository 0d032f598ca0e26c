//! Trainable parameters as a name-sorted list of Candle `Var`s.

use crate::{Result, TrainError};
use candle_core::Var;

/// Trainable variables sorted by name: the order of optimizer state, checkpoints and
/// all-reduce buffers. The tied word embedding appears once, under its encoder name.
#[derive(Debug, Clone, Default)]
pub struct NamedParams {
    entries: Vec<(String, Var)>,
}

impl NamedParams {
    /// Builds the list; fails on duplicate names.
    pub fn new(entries: impl IntoIterator<Item = (String, Var)>) -> Result<Self> {
        let mut entries: Vec<(String, Var)> = entries.into_iter().collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(TrainError::InvalidInput(format!(
                "parameter `{}` is listed twice",
                w[0].0
            )));
        }
        Ok(Self { entries })
    }

    /// Parameters in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v))
    }

    /// The variable called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.entries
            .binary_search_by(|(n, _)| n.as_str().cmp(name))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Number of parameters (tensors, not scalars).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is no parameter at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of scalars.
    pub fn numel(&self) -> usize {
        self.entries.iter().map(|(_, v)| v.elem_count()).sum()
    }
}
