//! How evaluation batches are formed: size, padding and the length limits.

use c2n_data::{Feature, Padding};

/// How evaluation cuts features into batches and pads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalBatching {
    /// Examples per batch (0 counts as 1).
    pub batch_size: usize,
    /// Reference padding (every batch to the maximum lengths) or dynamic.
    pub padding: Padding,
    pub max_source_len: usize,
    /// Used by the dev loss only (decoding has no target side).
    pub max_target_len: usize,
}

impl EvalBatching {
    /// The batches of `features`, in order.
    pub(super) fn chunks<'a>(&self, features: &'a [Feature]) -> std::slice::Chunks<'a, Feature> {
        features.chunks(self.batch_size.max(1))
    }

    /// Source/target padding lengths of one batch.
    pub(super) fn lengths<'a>(
        &self,
        chunk: impl IntoIterator<Item = &'a Feature>,
    ) -> (usize, usize) {
        match self.padding {
            Padding::Reference => (self.max_source_len, self.max_target_len),
            Padding::Dynamic => chunk.into_iter().fold((1, 2), |(s, t), f| {
                (s.max(f.source_ids.len()), t.max(f.target_ids.len()))
            }),
        }
    }
}
