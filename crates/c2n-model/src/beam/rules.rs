//! Non-reference decoding rules a [`Beam`](super::Beam) can apply. All off by default.
//!
//! With every rule off the beam is the reference state machine, bit for bit. Each rule is a
//! common extension (as in Hugging Face / rust-bert generation) and changes results, so
//! none of them is part of the reference-exact mode.

/// Extensions to the reference beam; `BeamRules::default()` is the reference.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BeamRules {
    /// EOS is forbidden at steps `t ≤ min_length`, so every finished hypothesis has at least
    /// `min_length` tokens before its EOS. 0 = off.
    pub min_length: usize,
    /// A row may not produce an n-gram (of generated tokens, `<s>` excluded) it already
    /// contains. 0 = off.
    pub no_repeat_ngram_size: usize,
    /// Rank hypotheses by `score / len^α` (len = tokens generated, EOS included) instead of
    /// the raw sum. 0.0 = off (the reference ranks by the raw sum, §6.8).
    pub length_penalty: f32,
    /// Stop as soon as K hypotheses have finished, without waiting for the top row to end.
    pub early_stopping: bool,
}

impl BeamRules {
    /// True when no rule is on: the beam behaves exactly like the reference.
    pub fn is_reference(&self) -> bool {
        *self == Self::default()
    }

    /// True when some rule may forbid tokens before candidates are ranked.
    pub(crate) fn masks_tokens(&self) -> bool {
        self.min_length > 0 || self.no_repeat_ngram_size > 0
    }

    /// The value hypotheses are ranked by in `get_final`.
    pub(crate) fn ranking_score(&self, score: f32, len: usize) -> f32 {
        if self.length_penalty == 0.0 {
            score
        } else {
            score / (len.max(1) as f32).powf(self.length_penalty)
        }
    }

    /// Tokens row `history` may not produce next at step `step` (1-based).
    pub(crate) fn banned_tokens(&self, history: &[u32], step: usize, eos: u32, out: &mut Vec<u32>) {
        out.clear();
        if step <= self.min_length {
            out.push(eos);
        }
        let n = self.no_repeat_ngram_size;
        if n > 0 && history.len() + 1 >= n {
            // The next token completes the n-gram `history[len-(n-1)..] + token`.
            let tail = &history[history.len() + 1 - n..];
            for start in 0..(history.len() + 1).saturating_sub(n) {
                if &history[start..start + n - 1] == tail {
                    out.push(history[start + n - 1]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_reference_and_ranks_by_raw_score() {
        let rules = BeamRules::default();
        assert!(rules.is_reference());
        assert!(!rules.masks_tokens());
        assert_eq!(rules.ranking_score(-3.5, 7), -3.5);
    }

    #[test]
    fn min_length_bans_eos_up_to_and_including_step_min_length() {
        let rules = BeamRules {
            min_length: 2,
            ..Default::default()
        };
        let mut banned = Vec::new();
        rules.banned_tokens(&[], 1, 2, &mut banned);
        assert_eq!(banned, vec![2]);
        rules.banned_tokens(&[5], 2, 2, &mut banned);
        assert_eq!(banned, vec![2]);
        rules.banned_tokens(&[5, 6], 3, 2, &mut banned);
        assert!(banned.is_empty());
    }

    #[test]
    fn no_repeat_ngram_bans_tokens_completing_a_seen_ngram() {
        let rules = BeamRules {
            no_repeat_ngram_size: 2,
            ..Default::default()
        };
        let mut banned = Vec::new();
        // history 4 5 4: bigram (4,5) seen, the next token after 4 may not be 5.
        rules.banned_tokens(&[4, 5, 4], 4, 2, &mut banned);
        assert_eq!(banned, vec![5]);
        rules.banned_tokens(&[4, 5, 6], 4, 2, &mut banned);
        assert!(banned.is_empty());
        let unigram = BeamRules {
            no_repeat_ngram_size: 1,
            ..Default::default()
        };
        unigram.banned_tokens(&[7, 8], 3, 2, &mut banned);
        assert_eq!(banned, vec![7, 8]);
    }

    #[test]
    fn length_penalty_divides_by_length_power() {
        let rules = BeamRules {
            length_penalty: 1.0,
            ..Default::default()
        };
        assert_eq!(rules.ranking_score(-6.0, 3), -2.0);
    }
}
