//! One call from source tensors to beam-search outputs.

use candle_core::Tensor;

use crate::beam::{beam_search, BeamOutput};
use crate::generation::GenerationConfig;
use crate::{KvCacheSession, Result, Seq2Seq};

impl Seq2Seq {
    /// Beam search (or greedy search) over every row of `source_ids`/`source_mask` `[E, S]`
    /// with `config`: a [`KvCacheSession`] laid out for `config`'s
    /// [`effective_beam_size`](GenerationConfig::effective_beam_size), then
    /// [`beam_search`]. One [`BeamOutput`] per row, in order.
    ///
    /// Build the session yourself for its options (cache layout, where candidates are
    /// ranked) or to time its steps.
    pub fn generate(
        &self,
        source_ids: &Tensor,
        source_mask: &Tensor,
        config: &GenerationConfig,
    ) -> Result<Vec<BeamOutput>> {
        // Before the session: its own checks speak of rows, not of the config's beam_size.
        config.validate()?;
        let examples = source_ids.dim(0)?;
        let mut session =
            KvCacheSession::new(self, source_ids, source_mask, config.effective_beam_size())?;
        beam_search(&mut session, examples, config)
    }
}
