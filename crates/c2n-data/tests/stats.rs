//! Statistics table on real data against the spec's §3 table and the reference fixture.

mod common;

use c2n_data::{
    features_in_memory, markdown_table, stats_row, FeatureConfig, LengthSummary, PipelineConfig,
    RobertaTokenizer, Stage,
};

#[test]
fn percentiles_are_nearest_rank() {
    let mut v = vec![5, 1, 4, 2, 3];
    let s = LengthSummary::from_values(&mut v);
    assert_eq!((s.count, s.p50, s.p90, s.p99, s.max), (5, 3, 5, 5, 5));
    assert_eq!(s.mean, 3.0);
    assert_eq!(
        LengthSummary::from_values(&mut []),
        LengthSummary::default()
    );
}

#[test]
fn ruby_table_matches_the_spec() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let tok = RobertaTokenizer::load(shared.join("data/roberta-base").to_str().unwrap()).unwrap();
    let features = FeatureConfig {
        stage: Stage::Dev,
        ..FeatureConfig::default()
    };
    let cfg = PipelineConfig::strict_unfiltered(features);
    // Spec §3: mean / median / max source length, max target length, truncated sources.
    let want = [
        ("test", 120.4, 78, 1113, 88, 120),
        ("valid", 111.8, 75, 1534, 104, 100),
    ];
    let mut rows = Vec::new();
    for (split, mean, median, max, tgt_max, truncated) in want {
        let path = shared.join(format!("data/codesearchnet/ruby/{split}.jsonl"));
        let (feats, report) = features_in_memory(&path, &tok, &cfg).unwrap();
        let row = stats_row("ruby", split, &feats, &features, &report);
        assert_eq!(format!("{:.1}", row.source.mean), format!("{mean:.1}"));
        assert_eq!(
            (row.source.p50, row.source.max, row.target.max),
            (median, max, tgt_max)
        );
        assert_eq!(
            (row.truncated_sources, row.truncated_targets),
            (truncated, 0)
        );
        rows.push(row);
    }
    let table = markdown_table(&rows);
    assert_eq!(table.lines().count(), 4);
    assert!(
        table.contains("| ruby | test | 1261 | 1261 | 0 | 120.4 / 78 /"),
        "{table}"
    );
}
