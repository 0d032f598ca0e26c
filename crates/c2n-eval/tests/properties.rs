//! Property tests: the score is a percentage, identity scores 100, and the order of
//! prediction rows does not matter (only later duplicates overwrite).

use c2n_eval::{python_repr, smoothed_bleu, Gold, Predictions};
use proptest::prelude::*;

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z]{1,6}",
        "[a-z]{1,3}_[a-z]{1,3}",
        Just(".".to_owned()),
        Just(",".to_owned()),
        Just("Σ".to_owned()),
        Just("İd".to_owned()),
        Just("x²".to_owned()),
        Just("&amp;".to_owned()),
    ]
}

fn sentence(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(word(), 0..max).prop_map(|w| w.join(" "))
}

fn corpus() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec((sentence(12), sentence(12)), 1..25)
}

fn gold_of(pairs: &[(String, String)]) -> Gold {
    // Gold texts must not be empty-only lines; an empty text after the tab is still valid.
    Gold::from_pairs(pairs.iter().enumerate().map(|(i, (r, _))| (i, r))).expect("gold")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn score_is_between_0_and_100(pairs in corpus()) {
        let gold = gold_of(&pairs);
        let predictions = Predictions::from_pairs(pairs.iter().enumerate().map(|(i, (_, h))| (i, h)));
        let score = smoothed_bleu(&gold, &predictions).expect("score");
        prop_assert!((0.0..=100.0).contains(&score.bleu), "{}", score.bleu);
        prop_assert_eq!(score.matched, pairs.len());
    }

    #[test]
    fn identity_scores_100(pairs in corpus()) {
        let gold = gold_of(&pairs);
        let predictions = Predictions::from_pairs(pairs.iter().enumerate().map(|(i, (r, _))| (i, r.to_uppercase())));
        let score = smoothed_bleu(&gold, &predictions).expect("score");
        prop_assert_eq!(python_repr(score.bleu), "100.0");
    }

    #[test]
    fn prediction_row_order_does_not_matter(pairs in corpus(), seed in any::<u64>()) {
        let gold = gold_of(&pairs);
        let mut rows: Vec<String> = pairs.iter().enumerate().map(|(i, (_, h))| format!("{i}\t{h}")).collect();
        let ordered = smoothed_bleu(&gold, &Predictions::from_rows(&rows)).expect("score");
        // Deterministic Fisher-Yates shuffle from the seed (an LCG is enough here).
        let mut state = seed;
        for i in (1..rows.len()).rev() {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            rows.swap(i, (state >> 33) as usize % (i + 1));
        }
        let shuffled = smoothed_bleu(&gold, &Predictions::from_rows(&rows)).expect("score");
        prop_assert_eq!(ordered.bleu.to_bits(), shuffled.bleu.to_bits());
        let sacre_a = c2n_eval::sacrebleu_corpus(&gold, &Predictions::from_rows(&rows)).expect("sacre");
        prop_assert!((0.0..=100.0 + 1e-9).contains(&sacre_a.score));
    }
}
