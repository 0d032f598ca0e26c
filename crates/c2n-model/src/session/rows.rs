//! Row bookkeeping shared by the decoding sessions: which example each row belongs to.

use crate::{ModelError, Result};

/// Maps decoding rows to examples and validates each step's `origin`/`tokens`.
#[derive(Debug, Clone)]
pub(crate) struct Rows {
    /// `example[r]` = index of the example row `r` decodes.
    pub example: Vec<u32>,
    vocab_size: usize,
    /// `(examples, rows per example)` at the start.
    pub layout: (usize, usize),
}

impl Rows {
    /// `n_examples × rows_per_example` rows; row `r` belongs to example `r / rows_per_example`.
    pub fn new(n_examples: usize, rows_per_example: usize, vocab_size: usize) -> Result<Self> {
        if rows_per_example == 0 {
            return Err(ModelError::InvalidInput(
                "rows_per_example must be at least 1".into(),
            ));
        }
        // The first step ranks one row's tokens (torch.topk(K) over V in the reference).
        if rows_per_example > vocab_size {
            return Err(ModelError::InvalidInput(format!(
                "beam size {rows_per_example} exceeds the vocabulary ({vocab_size} tokens): \
                 the first step keeps that many distinct tokens"
            )));
        }
        let example = (0..n_examples * rows_per_example)
            .map(|r| (r / rows_per_example) as u32)
            .collect();
        Ok(Self {
            example,
            vocab_size,
            layout: (n_examples, rows_per_example),
        })
    }

    pub fn len(&self) -> usize {
        self.example.len()
    }

    /// Check a step's inputs against the current rows.
    pub fn check(&self, origin: &[u32], tokens: &[u32]) -> Result<()> {
        if origin.len() != tokens.len() {
            return Err(ModelError::InvalidInput(format!(
                "origin has {} rows but tokens has {}",
                origin.len(),
                tokens.len()
            )));
        }
        if let Some(&o) = origin.iter().find(|&&o| o as usize >= self.len()) {
            return Err(ModelError::InvalidInput(format!(
                "origin row {o} out of range: the previous step has {} rows",
                self.len()
            )));
        }
        if let Some(&t) = tokens.iter().find(|&&t| t as usize >= self.vocab_size) {
            return Err(ModelError::InvalidInput(format!(
                "token {t} out of range (vocab_size {})",
                self.vocab_size
            )));
        }
        Ok(())
    }

    /// The examples of the new rows.
    pub fn reorder(&mut self, origin: &[u32]) {
        self.example = origin.iter().map(|&o| self.example[o as usize]).collect();
    }
}

/// True when `origin` keeps every row in place (no reorder needed).
pub(crate) fn is_identity(origin: &[u32], previous_rows: usize) -> bool {
    origin.len() == previous_rows && origin.iter().enumerate().all(|(i, &o)| o as usize == i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_beam_wider_than_the_vocabulary_is_refused() {
        assert_eq!(Rows::new(2, 10, 10).unwrap().len(), 20);
        let err = Rows::new(1, 11, 10).unwrap_err().to_string();
        assert!(
            err.contains("beam size 11 exceeds the vocabulary (10"),
            "{err}"
        );
        assert!(Rows::new(1, 0, 10).is_err());
    }
}
