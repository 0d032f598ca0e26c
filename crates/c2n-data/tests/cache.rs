//! The shard cache: hit on the second run, invalidated by any change, corruption detected.

mod common;

use c2n_data::{prepare, CacheStatus, PrepareProgress, PrepareRequest, Stage};
use common::*;
use std::sync::mpsc;
use std::time::Duration;

fn setup() -> (tempfile::TempDir, PrepareRequest) {
    let dir = tempfile::tempdir().unwrap();
    let tok_dir = dir.path().join("tok");
    std::fs::create_dir(&tok_dir).unwrap();
    let files = write_tiny_tokenizer(&tok_dir, false);
    let data = dir.path().join("train.jsonl");
    synthetic_jsonl(&data, 300);
    let mut req = PrepareRequest::new(&data, files, dir.path().join("cache"));
    req.shard_examples = 64; // several shards
    req.options.chunk_lines = 50;
    req.pipeline.features.max_source_len = 20;
    req.pipeline.features.max_target_len = 10;
    (dir, req)
}

#[test]
fn second_run_hits_and_matches_the_build() {
    let (_dir, req) = setup();
    let first = prepare(&req, &mut |_| {}).unwrap();
    assert_eq!(first.status, CacheStatus::Built);
    assert_eq!(first.manifest.shards.len(), 5);
    let built = first.store.to_features();
    assert_eq!(built.len(), 300);
    let second = prepare(&req, &mut |_| panic!("must not re-tokenize")).unwrap();
    assert_eq!(second.status, CacheStatus::Hit);
    assert_eq!(second.store.to_features(), built);
    let tok = tiny_tokenizer();
    let (mem, _) = c2n_data::features_in_memory(&req.data, &tok, &req.pipeline).unwrap();
    assert_eq!(mem, built);
    assert_eq!(second.store.get(299).idx, 299);
}

#[test]
fn a_file_in_place_of_the_cache_folder_is_named() {
    let (dir, mut req) = setup();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    req.cache_dir = file.clone();
    let text = prepare(&req, &mut |_| {}).unwrap_err().to_string();
    assert!(
        text.contains(&file.display().to_string()) && text.contains("is a file, not a folder"),
        "{text}"
    );
    // What a program prints of a rebuilt cache: words, with the reason.
    let status = CacheStatus::Rebuilt {
        reason: "shard truncated".into(),
    };
    assert_eq!(
        status.to_string(),
        "rebuilt, the cache was unusable (shard truncated)"
    );
}

#[test]
fn any_change_invalidates() {
    let (dir, req) = setup();
    let base = prepare(&req, &mut |_| {}).unwrap().manifest.fingerprint;
    let mut variants = Vec::new();
    let mut r = req.clone();
    r.pipeline.features.max_source_len = 21;
    variants.push(r);
    let mut r = req.clone();
    r.pipeline.features.stage = Stage::Test;
    variants.push(r);
    let mut r = req.clone();
    r.pipeline.clean = c2n_data::CleanConfig::published();
    variants.push(r);
    let mut r = req.clone();
    r.pipeline.strictness = c2n_data::Strictness::Strict;
    variants.push(r);
    let mut r = req.clone();
    let tok2 = dir.path().join("tok2");
    std::fs::create_dir(&tok2).unwrap();
    r.tokenizer = write_tiny_tokenizer(&tok2, true);
    variants.push(r);
    for (i, r) in variants.iter().enumerate() {
        let p = prepare(r, &mut |_| {}).unwrap();
        assert_eq!(p.status, CacheStatus::Built, "variant {i}");
        assert_ne!(p.manifest.fingerprint, base, "variant {i}");
    }
    // Changing the input bytes changes the fingerprint too.
    synthetic_jsonl(&req.data, 301);
    let p = prepare(&req, &mut |_| {}).unwrap();
    assert_eq!((p.status, p.store.len()), (CacheStatus::Built, 301));
}

#[test]
fn corrupt_or_truncated_shards_are_rebuilt() {
    let (_dir, req) = setup();
    let first = prepare(&req, &mut |_| {}).unwrap();
    let expected = first.store.to_features();
    let folder = first.store.dir().to_path_buf();
    drop(first);
    let shard = folder.join("shard-00001.bin");

    // One flipped byte in the token area: same size, wrong sha256.
    let mut bytes = std::fs::read(&shard).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x5a;
    std::fs::write(&shard, &bytes).unwrap();
    let p = prepare(&req, &mut |_| {}).unwrap();
    assert!(
        matches!(&p.status, CacheStatus::Rebuilt { reason } if reason.contains("sha256")),
        "{:?}",
        p.status
    );
    assert_eq!(p.store.to_features(), expected);
    drop(p);

    // Truncated shard.
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    let p = prepare(&req, &mut |_| {}).unwrap();
    assert!(
        matches!(&p.status, CacheStatus::Rebuilt { reason } if reason.contains("size")),
        "{:?}",
        p.status
    );
    assert_eq!(p.store.to_features(), expected);
    drop(p);

    // Garbage manifest.
    std::fs::write(folder.join("manifest.json"), b"{").unwrap();
    let p = prepare(&req, &mut |_| {}).unwrap();
    assert!(matches!(p.status, CacheStatus::Rebuilt { .. }));
    assert_eq!(p.store.to_features(), expected);

    // Even without the checksum, a size change is caught.
    drop(p);
    let mut fast = req.clone();
    fast.verify_checksum = false;
    std::fs::write(&shard, b"C2NSHRD1").unwrap();
    let p = prepare(&fast, &mut |_| {}).unwrap();
    assert!(matches!(p.status, CacheStatus::Rebuilt { .. }));
    drop(p);

    // An edited shard list (the last shard dropped) is no hit either.
    let manifest_path = folder.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["shards"].as_array_mut().unwrap().pop();
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let p = prepare(&req, &mut |_| {}).unwrap();
    assert!(
        matches!(&p.status, CacheStatus::Rebuilt { reason } if reason.contains("shard list")),
        "{:?}",
        p.status
    );
    assert_eq!(p.store.to_features(), expected);
    drop(p);

    // A count edited past usize: a bad manifest, not an overflow.
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest["shards"][0]["examples"] = serde_json::Value::from(u64::MAX);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let p = prepare(&req, &mut |_| {}).unwrap();
    assert!(
        matches!(&p.status, CacheStatus::Rebuilt { reason } if reason.contains("more than usize")),
        "{:?}",
        p.status
    );
    assert_eq!(p.store.to_features(), expected);
}

#[test]
fn builders_racing_for_one_cache_all_get_the_same_features() {
    // Several processes (here threads, each a separate build) preparing the same data at once:
    // each must succeed, none may delete a cache another one has published.
    let (dir, req) = setup();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    prepare(&req, &mut |_| {})
                        .map(|p| (p.status == CacheStatus::Built, p.store.to_features()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = results[0].as_ref().unwrap().1.clone();
    for r in &results {
        assert_eq!(r.as_ref().unwrap().1, first);
    }
    let builds = results.iter().filter(|r| r.as_ref().unwrap().0).count();
    assert_eq!(
        builds, 1,
        "one builder tokenized, the others mapped its cache"
    );
    // One build ran (the others waited on the lock, then mapped it): the published cache and
    // its lock file are left, no partial or stale folder.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock-build"))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn a_prepare_waiting_on_another_build_says_so_then_maps_its_cache() {
    let (_dir, req) = setup();
    let limit = Duration::from_secs(120);
    let (building_tx, building_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (waiting_tx, waiting_rx) = mpsc::channel();
    std::thread::scope(|scope| {
        // Owned here so that a failed assertion drops it and frees the paused builder.
        let release_tx = release_tx;
        // The first build pauses, holding the lock, after its first chunk.
        let builder = scope.spawn(|| {
            let mut paused = false;
            prepare(&req, &mut move |event| {
                if matches!(event, PrepareProgress::LinesRead(_)) && !paused {
                    paused = true;
                    building_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                }
            })
        });
        building_rx
            .recv_timeout(limit)
            .expect("the first build started");
        let waiter = scope.spawn(|| {
            prepare(&req, &mut move |event| match event {
                PrepareProgress::WaitingForOtherBuild { lock } => waiting_tx.send(lock).unwrap(),
                PrepareProgress::LinesRead(_) => panic!("the waiter must not tokenize"),
            })
        });
        let lock = waiting_rx
            .recv_timeout(limit)
            .expect("the second prepare reports that it waits");
        assert!(
            lock.to_string_lossy().ends_with(".lock-build"),
            "{}",
            lock.display()
        );
        release_tx.send(()).unwrap();
        let built = builder.join().unwrap().unwrap();
        let mapped = waiter.join().unwrap().unwrap();
        assert_eq!(built.status, CacheStatus::Built);
        assert_eq!(mapped.status, CacheStatus::Hit);
        assert_eq!(mapped.store.to_features(), built.store.to_features());
    });
}

#[test]
fn leftovers_of_killed_builds_are_removed_by_the_next_build() {
    let (dir, req) = setup();
    let first = prepare(&req, &mut |_| {}).unwrap();
    let folder = first.store.dir().to_path_buf();
    drop(first);
    // A build killed midway, and a stale folder whose deletion was interrupted.
    let name = folder.file_name().unwrap().to_string_lossy().into_owned();
    let cache = dir.path().join("cache");
    for leftover in [
        format!("{name}.partial-999999"),
        format!("{name}.stale-999999"),
    ] {
        std::fs::create_dir_all(cache.join(&leftover).join("x")).unwrap();
    }
    // Invalidate the cache so that the next prepare builds.
    std::fs::write(folder.join("manifest.json"), b"{").unwrap();
    let p = prepare(&req, &mut |_| {}).unwrap();
    assert!(matches!(p.status, CacheStatus::Rebuilt { .. }));
    let mut names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, [name.clone(), format!("{name}.lock-build")]);
}

#[test]
fn real_ruby_valid_cache_round_trip() {
    let Some(shared) = shared_dir() else { return };
    let dir = tempfile::tempdir().unwrap();
    let files = c2n_data::TokenizerFiles::from_dir(&shared.join("data/roberta-base")).unwrap();
    let mut req = PrepareRequest::new(
        shared.join("data/codesearchnet/ruby/valid.jsonl"),
        files,
        dir.path(),
    );
    req.pipeline.features.stage = Stage::Dev;
    let built = prepare(&req, &mut |_| {}).unwrap();
    let hit = prepare(&req, &mut |_| {}).unwrap();
    assert_eq!(
        (built.status, hit.status),
        (CacheStatus::Built, CacheStatus::Hit)
    );
    let fx = fixture();
    let valid: Vec<_> = fx["examples"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["split"] == "valid")
        .collect();
    assert_eq!(hit.store.len(), valid.len());
    for (i, want) in valid.iter().enumerate() {
        let f = hit.store.get(i);
        assert_eq!(
            f.source_bpe_len as u64,
            want["source_len"].as_u64().unwrap()
        );
        let inner: Vec<u16> = f.target_ids[1..f.target_ids.len() - 1].to_vec();
        assert_eq!(ids_sha(&inner), want["target_ids_sha"]);
    }
}
