//! Decoding benchmark: batched, KV-cached beam search against the plain reference algorithm.
//!
//! Both variants decode the same B examples with the same checkpoint, beam 10:
//!
//! - `kv_cached_batched`: one [`KvCacheSession`] over B × K rows, [`beam_search`] (streaming
//!   top-K, done examples frozen);
//! - `kv_cached_per_example`: the same session and search, one example at a time;
//! - `full_prefix_reference`: per example, a [`FullPrefixSession`] (whole prefix recomputed
//!   every step) and [`reference_search`] (full sort of the K × V candidates): §6.1 literally.
//!
//! Setup (all cached under `target/bench-data/decode/`, shared with
//! `tools/bench_reference_decode.py`, which times the PyTorch reference on the same files):
//!
//! - checkpoint: `$C2N_DECODE_CHECKPOINT`, else the parity-fixture model
//!   `crates/c2n-model/tests/data/small` (`ModelConfig::small()`: real vocabulary 50 265,
//!   hidden 16, 2 + 2 layers, random weights), else `checkpoint/` created on first run;
//! - `C2N_DECODE_CONFIG=mid`: a mid-size random model instead, where the network (not the
//!   vocabulary) dominates a step: vocabulary 50 265, hidden 256, 4 heads, 2 encoder layers,
//!   6 decoder layers (the reference depth), feed-forward 1024. Its files (checkpoint created
//!   on first run, inputs, n-best ids) live under `target/bench-data/decode-mid/`;
//! - inputs: `inputs.json` (created on first run from the first B ruby test records,
//!   tokenized with `c2n-data`; synthetic ids when the shared data is absent);
//! - `C2N_DECODE_EXAMPLES` (B for the batched variant, default 8),
//!   `C2N_DECODE_REFERENCE_EXAMPLES` (examples for the two one-at-a-time variants, default 1:
//!   the plain algorithm is slow), `C2N_DECODE_MAX_LENGTH` (default 128),
//!   `C2N_DECODE_SOURCE_LENGTH` (default 256). Compare the variants by their throughput
//!   (examples per second).
//!
//! Run: `cargo bench --bench decode -- --sample-size 10`. Before measuring it checks that
//! the three variants return identical n-best ids, and prints the peak heap growth per beam
//! row of the batched variant (a counting global allocator).

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use code2nl::data::RobertaTokenizer;
use code2nl::model::beam::{beam_search, reference_search, BeamOutput};
use code2nl::model::generation::GenerationConfig;
use code2nl::model::{
    load_checkpoint, save_checkpoint, FullPrefixSession, KvCacheSession, ModelConfig, Seq2Seq,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

/// Counts live heap bytes and their peak, to report memory per beam row.
struct CountingAllocator;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

fn record_growth(bytes: usize) {
    let live = LIVE_BYTES.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK_BYTES.fetch_max(live, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = System.alloc(layout);
        if !ptr.is_null() {
            record_growth(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout);
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_ptr = System.realloc(ptr, layout, new_size);
        if !new_ptr.is_null() {
            LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
            record_growth(new_size);
        }
        new_ptr
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Keep freed large buffers in the heap instead of unmapping them: every decoding step
/// allocates and frees several `rows × V` f32 buffers (16 MB for 80 rows), and with glibc's
/// defaults each one is a fresh `mmap` whose page faults cost more than the arithmetic
/// (measured: 2.7× on the batched variant). Same as `GLIBC_TUNABLES=glibc.malloc.
/// mmap_threshold=33554432:glibc.malloc.trim_threshold=4294967295`.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_buffers_in_heap() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only changes glibc allocator settings; called before any decoding.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 32 << 20);
        mallopt(M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_buffers_in_heap() {}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The mid-size model of `C2N_DECODE_CONFIG=mid` (see the crate docs), else `None`.
fn mid_config() -> Option<ModelConfig> {
    let name = std::env::var("C2N_DECODE_CONFIG").ok()?;
    (name == "mid").then(|| ModelConfig {
        hidden_size: 256,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 1024,
        decoder_layers: 6,
        decoder_ffn_dim: 1024,
        ..ModelConfig::small()
    })
}

fn bench_dir() -> PathBuf {
    let name = if mid_config().is_some() {
        "decode-mid"
    } else {
        "decode"
    };
    workspace_root().join("target/bench-data").join(name)
}

fn shared_dir() -> PathBuf {
    std::env::var_os("C2N_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("../shared"))
}

fn load_or_create_model(device: &Device) -> Result<(Seq2Seq, PathBuf)> {
    let fixture = workspace_root().join("crates/c2n-model/tests/data/small");
    let mid = mid_config();
    let dir = std::env::var_os("C2N_DECODE_CHECKPOINT")
        .map(PathBuf::from)
        .or_else(|| (mid.is_none() && fixture.join("config.json").exists()).then_some(fixture))
        .unwrap_or_else(|| bench_dir().join("checkpoint"));
    if !dir.join("config.json").exists() {
        let config = mid.unwrap_or_else(ModelConfig::small);
        let model = Seq2Seq::new(&config, &VarMap::new(), device)?;
        save_checkpoint(&model, &dir)?;
        eprintln!(
            "decode bench: wrote a random checkpoint (hidden {}, {} + {} layers) to {}",
            config.hidden_size,
            config.num_hidden_layers,
            config.decoder_layers,
            dir.display()
        );
    }
    let model = load_checkpoint(&dir, device)
        .with_context(|| format!("loading checkpoint {}", dir.display()))?;
    Ok((model, dir))
}

/// Source ids of the first `count` ruby test records: `<s>` + BPE ids (truncated) + `</s>`.
fn ruby_sources(count: usize, max_source_length: usize) -> Result<Option<Vec<Vec<u32>>>> {
    let shared = shared_dir();
    let data = shared.join("data/codesearchnet/ruby/test.jsonl");
    let vocab = shared.join("data/roberta-base");
    if !data.exists() || !vocab.exists() {
        return Ok(None);
    }
    let tokenizer = RobertaTokenizer::load(&vocab.display().to_string())?;
    let text = std::fs::read_to_string(&data)?;
    let mut sources = Vec::new();
    for (line_no, line) in text.lines().take(count).enumerate() {
        let record: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}:{}", data.display(), line_no + 1))?;
        let code: Vec<&str> = record["code_tokens"]
            .as_array()
            .map(|tokens| tokens.iter().filter_map(|t| t.as_str()).collect())
            .unwrap_or_default();
        let mut ids = tokenizer.encode(&code.join(" "))?;
        ids.truncate(max_source_length - 2);
        let mut source = vec![0];
        source.extend(ids);
        source.push(2);
        sources.push(source);
    }
    Ok(Some(sources))
}

/// Deterministic pseudo-random sources when the shared data is absent.
fn synthetic_sources(count: usize, max_source_length: usize) -> Vec<Vec<u32>> {
    let mut state: u64 = 42;
    (0..count)
        .map(|i| {
            let len = (max_source_length / 2 + i * 17) % (max_source_length - 2) + 1;
            let mut source = vec![0];
            source.extend((0..len).map(|_| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                3 + ((state >> 33) % 50_000) as u32
            }));
            source.push(2);
            source
        })
        .collect()
}

fn load_or_create_inputs(count: usize, max_source_length: usize) -> Result<Vec<Vec<u32>>> {
    let path = bench_dir().join("inputs.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let json: serde_json::Value = serde_json::from_str(&text)?;
        let sources: Vec<Vec<u32>> = serde_json::from_value(json["source_ids"].clone())?;
        if sources.len() >= count
            && json["max_source_length"].as_u64() == Some(max_source_length as u64)
        {
            return Ok(sources.into_iter().take(count).collect());
        }
    }
    let (sources, origin) = match ruby_sources(count, max_source_length)? {
        Some(sources) => (sources, "ruby test.jsonl"),
        None => (synthetic_sources(count, max_source_length), "synthetic"),
    };
    std::fs::create_dir_all(bench_dir())?;
    let json = serde_json::json!({
        "origin": origin,
        "max_source_length": max_source_length,
        "source_ids": sources,
    });
    std::fs::write(&path, serde_json::to_string(&json)?)?;
    eprintln!(
        "decode bench: wrote {count} {origin} inputs to {}",
        path.display()
    );
    Ok(sources)
}

/// `[B, S]` padded ids (pad 1) and 1/0 mask.
fn batch_tensors(sources: &[Vec<u32>], length: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let mut ids = Vec::with_capacity(sources.len() * length);
    let mut mask = Vec::with_capacity(sources.len() * length);
    for source in sources {
        ids.extend(
            source
                .iter()
                .copied()
                .chain(std::iter::repeat(1))
                .take(length),
        );
        mask.extend((0..length).map(|i| u32::from(i < source.len())));
    }
    let shape = (sources.len(), length);
    Ok((
        Tensor::from_vec(ids, shape, device)?,
        Tensor::from_vec(mask, shape, device)?,
    ))
}

struct Setup {
    model: Seq2Seq,
    ids: Tensor,
    mask: Tensor,
    /// Examples of the batched variant.
    examples: usize,
    /// Examples of the one-at-a-time variants (the first ones of the batch).
    reference_examples: usize,
    config: GenerationConfig,
}

impl Setup {
    fn kv_cached_batched(&self) -> Result<Vec<BeamOutput>> {
        let k = self.config.beam_size;
        let mut session = KvCacheSession::new(&self.model, &self.ids, &self.mask, k)?;
        Ok(beam_search(&mut session, self.examples, &self.config)?)
    }

    fn kv_cached_per_example(&self) -> Result<Vec<BeamOutput>> {
        let k = self.config.beam_size;
        let mut outputs = Vec::with_capacity(self.reference_examples);
        for i in 0..self.reference_examples {
            let ids = self.ids.narrow(0, i, 1)?;
            let mask = self.mask.narrow(0, i, 1)?;
            let mut session = KvCacheSession::new(&self.model, &ids, &mask, k)?;
            outputs.extend(beam_search(&mut session, 1, &self.config)?);
        }
        Ok(outputs)
    }

    fn full_prefix_reference(&self) -> Result<Vec<BeamOutput>> {
        let k = self.config.beam_size;
        let mut outputs = Vec::with_capacity(self.reference_examples);
        for i in 0..self.reference_examples {
            let ids = self.ids.narrow(0, i, 1)?;
            let mask = self.mask.narrow(0, i, 1)?;
            let mut session = FullPrefixSession::new(&self.model, &ids, &mask, k)?;
            outputs.push(reference_search(&mut session, &self.config)?);
        }
        Ok(outputs)
    }
}

fn setup() -> Result<Setup> {
    keep_large_buffers_in_heap();
    let device = Device::Cpu;
    let examples = env_usize("C2N_DECODE_EXAMPLES", 8).max(1);
    let reference_examples = env_usize("C2N_DECODE_REFERENCE_EXAMPLES", 1).clamp(1, examples);
    let max_source_length = env_usize("C2N_DECODE_SOURCE_LENGTH", 256);
    let config = GenerationConfig {
        beam_size: 10,
        max_length: env_usize("C2N_DECODE_MAX_LENGTH", 128),
        ..Default::default()
    };
    let (model, checkpoint) = load_or_create_model(&device)?;
    let sources = load_or_create_inputs(examples, max_source_length)?;
    let (ids, mask) = batch_tensors(&sources, max_source_length, &device)?;
    eprintln!(
        "decode bench: checkpoint {}, {examples} examples, beam {}, max length {}, source length {max_source_length}",
        checkpoint.display(),
        config.beam_size,
        config.max_length
    );
    Ok(Setup {
        model,
        ids,
        mask,
        examples,
        reference_examples,
        config,
    })
}

fn check_and_report(setup: &Setup) -> Result<()> {
    let before = LIVE_BYTES.load(Ordering::Relaxed);
    PEAK_BYTES.store(before, Ordering::Relaxed);
    let batched = setup.kv_cached_batched()?;
    let peak = PEAK_BYTES.load(Ordering::Relaxed) - before;
    let rows = setup.examples * setup.config.beam_size;
    eprintln!(
        "decode bench: kv_cached_batched peak heap growth {:.1} MiB = {:.1} KiB per beam row ({rows} rows)",
        peak as f64 / (1 << 20) as f64,
        peak as f64 / 1024.0 / rows as f64
    );
    let steps: Vec<usize> = batched.iter().map(|o| o.steps).collect();
    eprintln!("decode bench: steps per example {steps:?}");
    let per_example = setup.kv_cached_per_example()?;
    let reference = setup.full_prefix_reference()?;
    let ids = |o: &BeamOutput| {
        o.hypotheses
            .iter()
            .map(|h| h.ids.clone())
            .collect::<Vec<_>>()
    };
    let mut same = 0;
    for (i, ((b, p), r)) in batched.iter().zip(&per_example).zip(&reference).enumerate() {
        if ids(b) == ids(r) && ids(p) == ids(r) {
            same += 1;
        } else {
            eprintln!("decode bench: WARNING example {i}: n-best ids differ between variants");
        }
    }
    eprintln!("decode bench: n-best ids identical across the three variants on {same} examples");
    // For comparison with tools/bench_reference_decode.py (reference_nbest.json).
    let nbest: Vec<Vec<Vec<u32>>> = batched.iter().map(ids).collect();
    std::fs::write(
        bench_dir().join("rust_nbest.json"),
        serde_json::to_string(&nbest)?,
    )?;
    Ok(())
}

fn decode(c: &mut Criterion) {
    let setup = match setup() {
        Ok(setup) => setup,
        Err(error) => {
            eprintln!("decode bench: skipped: {error:#}");
            return;
        }
    };
    if let Err(error) = check_and_report(&setup) {
        eprintln!("decode bench: check failed: {error:#}");
        return;
    }
    // A separate group keeps criterion's saved baselines of the two models apart.
    let group_name = if mid_config().is_some() {
        "decode_mid"
    } else {
        "decode"
    };
    let mut group = c.benchmark_group(group_name);
    group.sample_size(10);
    group.throughput(Throughput::Elements(setup.examples as u64));
    group.bench_function("kv_cached_batched", |b| {
        b.iter(|| setup.kv_cached_batched().expect("decodes"))
    });
    group.throughput(Throughput::Elements(setup.reference_examples as u64));
    group.bench_function("kv_cached_per_example", |b| {
        b.iter(|| setup.kv_cached_per_example().expect("decodes"))
    });
    group.bench_function("full_prefix_reference", |b| {
        b.iter(|| setup.full_prefix_reference().expect("decodes"))
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
