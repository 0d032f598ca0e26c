//! The feature cache: memory-mapped shards plus a JSON manifest with a fingerprint.
//!
//! A prepared file lives in `CACHE_DIR/<file stem>-<first 16 hex of the fingerprint>/`:
//! `manifest.json` and `shard-00000.bin`, `shard-00001.bin`, … (see [`crate::shard`]).
//! The fingerprint is the sha256 of the format version, the input file's bytes, the tokenizer
//! files' bytes, the feature lengths and stage, the cleaning config and the strictness. A
//! second run with the same fingerprint maps the shards without loading the tokenizer. A
//! manifest that does not parse, has another fingerprint or version, a shard list that does
//! not add up to the examples the build kept, or a shard whose size or sha256 differs from
//! the manifest makes the folder be rebuilt: nothing is read unverified.
//!
//! Builds go to `<folder>.partial-<pid>` and are renamed into place only when complete. Each
//! build holds an exclusive lock on `<folder>.lock-build` (std's advisory file lock), so of
//! several processes or ranks preparing the same data at once one tokenizes and the others
//! wait (saying so through [`PrepareProgress::WaitingForOtherBuild`]), then map its cache.
//! Under the lock no other build of the folder runs, so partial or stale folders found then
//! were abandoned and are removed; an invalid cache in the way is moved aside before it is
//! deleted. A failure that says nothing about the cache (too many
//! open files, no memory) is returned as an error and the folder left alone.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::pipeline::{run_file, PipelineConfig, PipelineOptions, PipelineReport};
use crate::shard::{FeatureStore, ShardBuilder, ShardInfo};
use crate::tokenizer::{hex, RobertaTokenizer, TokenizerFiles};
use crate::{CleanConfig, FeatureConfig, Strictness};

/// Bumped whenever the shard layout or the meaning of a feature changes (2: test-stage
/// targets are no longer truncated below `max_target_len` 5).
pub const CACHE_FORMAT_VERSION: u32 = 2;

/// Everything `prepare` needs.
#[derive(Debug, Clone)]
pub struct PrepareRequest {
    /// The `.jsonl` or `.jsonl.gz` file.
    pub data: PathBuf,
    /// The tokenizer files (loaded only on a cache miss).
    pub tokenizer: TokenizerFiles,
    /// Lengths, stage, cleaning, strictness.
    pub pipeline: PipelineConfig,
    /// Root of the cache.
    pub cache_dir: PathBuf,
    /// Parallel chunk size.
    pub options: PipelineOptions,
    /// Features per shard file (bounds memory while building).
    pub shard_examples: usize,
    /// Check every shard's sha256 when loading (size and offsets are always checked).
    pub verify_checksum: bool,
}

impl PrepareRequest {
    /// A request with default lengths (256/128, train), no cleaning, lenient reading,
    /// 65 536 features per shard and checksum verification on.
    pub fn new(
        data: impl Into<PathBuf>,
        tokenizer: TokenizerFiles,
        cache_dir: impl Into<PathBuf>,
    ) -> Self {
        PrepareRequest {
            data: data.into(),
            tokenizer,
            pipeline: PipelineConfig {
                features: FeatureConfig::default(),
                clean: CleanConfig::default(),
                strictness: Strictness::Lenient,
            },
            cache_dir: cache_dir.into(),
            options: PipelineOptions::default(),
            shard_examples: 65_536,
            verify_checksum: true,
        }
    }
}

/// The input file as fingerprinted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputInfo {
    /// Path as given.
    pub path: PathBuf,
    /// Size in bytes.
    pub bytes: u64,
    /// sha256 (hex) of the bytes.
    pub sha256: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`CACHE_FORMAT_VERSION`] at build time.
    pub format_version: u32,
    /// sha256 (hex) over everything that determines the features.
    pub fingerprint: String,
    /// The input file.
    pub input: InputInfo,
    /// sha256 of the tokenizer files.
    pub tokenizer_sha256: String,
    /// Lengths and stage.
    pub features: FeatureConfig,
    /// Cleaning.
    pub clean: CleanConfig,
    /// Bad-line policy.
    pub strictness: Strictness,
    /// Total features.
    pub examples: usize,
    /// Shard files in order.
    pub shards: Vec<ShardInfo>,
    /// Read and clean counts of the build.
    pub report: PipelineReport,
}

/// How the features were obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// Loaded from a valid cache.
    Hit,
    /// No cache existed; built.
    Built,
    /// A cache existed but was unusable; rebuilt.
    Rebuilt {
        /// Why the old one was rejected.
        reason: String,
    },
}

/// "loaded from the cache", "built", "rebuilt (why)": what a program tells its user.
impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hit => f.write_str("loaded from the cache"),
            Self::Built => f.write_str("built"),
            Self::Rebuilt { reason } => write!(f, "rebuilt, the cache was unusable ({reason})"),
        }
    }
}

/// Prepared features.
#[derive(Debug)]
pub struct Prepared {
    /// The features, memory-mapped.
    pub store: FeatureStore,
    /// The manifest.
    pub manifest: Manifest,
    /// Hit, built or rebuilt.
    pub status: CacheStatus,
}

/// The size and SHA-256 (lowercase hex) of a file's bytes, read in 1 MiB pieces.
pub fn sha256_file(path: &Path) -> Result<(u64, String)> {
    let mut file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((total, hex(&hasher.finalize())))
}

#[derive(Serialize)]
struct FingerprintInput<'a> {
    format_version: u32,
    input_sha256: &'a str,
    tokenizer_sha256: &'a str,
    features: &'a FeatureConfig,
    clean: &'a CleanConfig,
    strictness: Strictness,
}

/// Computes the manifest fields that identify a build, without reading the cache.
pub fn fingerprint(req: &PrepareRequest) -> Result<(InputInfo, String, String)> {
    let (bytes, sha256) = sha256_file(&req.data)?;
    let tokenizer_sha256 = req.tokenizer.content_sha256()?;
    let input = InputInfo {
        path: req.data.clone(),
        bytes,
        sha256,
    };
    let canonical = serde_json::to_vec(&FingerprintInput {
        format_version: CACHE_FORMAT_VERSION,
        input_sha256: &input.sha256,
        tokenizer_sha256: &tokenizer_sha256,
        features: &req.pipeline.features,
        clean: &req.pipeline.clean,
        strictness: req.pipeline.strictness,
    })
    .map_err(|e| DataError::Config(format!("serializing the fingerprint: {e}")))?;
    Ok((input, tokenizer_sha256, hex(&Sha256::digest(&canonical))))
}

/// The folder a request's cache lives in.
pub fn cache_folder(req: &PrepareRequest, fingerprint: &str) -> PathBuf {
    let stem = req
        .data
        .file_name()
        .and_then(|s| s.to_str())
        .map(|s| s.trim_end_matches(".gz").trim_end_matches(".jsonl"))
        .unwrap_or("data");
    req.cache_dir.join(format!("{stem}-{}", &fingerprint[..16]))
}

fn try_load(dir: &Path, fingerprint: &str, verify: bool) -> Result<(FeatureStore, Manifest)> {
    let path = dir.join("manifest.json");
    let bytes = fs::read(&path).map_err(|e| DataError::io(&path, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| DataError::Cache {
        path: path.clone(),
        message: format!("manifest does not parse: {e}"),
    })?;
    if manifest.format_version != CACHE_FORMAT_VERSION || manifest.fingerprint != fingerprint {
        return Err(DataError::Cache {
            path,
            message: "fingerprint or format version differs".to_string(),
        });
    }
    // The shard list itself: in order, without gaps, adding up to what the build kept.
    // Checked: an edited count must read as a bad manifest, not overflow.
    let counted = manifest
        .shards
        .iter()
        .try_fold(0usize, |sum, s| sum.checked_add(s.examples));
    let in_order = manifest
        .shards
        .iter()
        .enumerate()
        .all(|(i, s)| s.file == shard_name(i));
    let consistent =
        counted == Some(manifest.examples) && counted == Some(manifest.report.clean.kept);
    if !in_order || !consistent {
        let counted = counted.map_or_else(|| "more than usize".to_string(), |n| n.to_string());
        return Err(DataError::Cache {
            path,
            message: format!(
                "shard list holds {counted} examples, the build kept {} (edited or incomplete)",
                manifest.report.clean.kept
            ),
        });
    }
    let store = FeatureStore::open(dir, &manifest.shards, verify)?;
    Ok((store, manifest))
}

fn shard_name(i: usize) -> String {
    format!("shard-{i:05}.bin")
}

/// `dir` with `.{kind}-{tag}` appended to its name (kept whole, dots included).
fn side_folder(dir: &Path, kind: &str, tag: &str) -> PathBuf {
    let mut name = dir.as_os_str().to_os_string();
    name.push(format!(".{kind}-{tag}"));
    PathBuf::from(name)
}

/// Removes the partial builds and stale folders of `dir` that earlier builders left behind
/// (killed while building or while deleting); only called under the build lock.
fn remove_leftovers(dir: &Path) {
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    let prefixes = [format!("{name}.partial-"), format!("{name}.stale-")];
    let Ok(entries) = fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if prefixes.iter().any(|p| file_name.starts_with(p)) && entry.path().is_dir() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// What [`prepare`] reports while it works, so that a caller can show why it is slow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrepareProgress {
    /// Another process (or thread) is building this cache folder: this call waits on its
    /// lock, then maps what that build publishes. Reported once, before the wait.
    WaitingForOtherBuild {
        /// The lock file the other build holds.
        lock: PathBuf,
    },
    /// Building: the number of input lines read so far (after each chunk).
    LinesRead(usize),
}

/// Loads the features from the cache, or builds (and caches) them.
///
/// `progress` hears of a wait on another build of the same folder and, while building, of
/// the number of lines read so far.
pub fn prepare(
    req: &PrepareRequest,
    progress: &mut dyn FnMut(PrepareProgress),
) -> Result<Prepared> {
    req.pipeline.features.validate()?;
    if req.shard_examples == 0 {
        return Err(DataError::Config("shard_examples must be positive".into()));
    }
    let (input, tokenizer_sha256, fp) = fingerprint(req)?;
    let dir = cache_folder(req, &fp);
    let hit = |store, manifest| Prepared {
        store,
        manifest,
        status: CacheStatus::Hit,
    };
    // Fast path, no lock: a published cache is never changed in place.
    if let Ok((store, manifest)) = try_load(&dir, &fp, req.verify_checksum) {
        return Ok(hit(store, manifest));
    }
    // One builder per cache folder at a time: the others wait here, then find its cache.
    crate::folder::create(&req.cache_dir, "cache folder")?;
    let _lock = BuildLock::acquire(&dir, progress)?;
    let status = if dir.exists() {
        match try_load(&dir, &fp, req.verify_checksum) {
            Ok((store, manifest)) => return Ok(hit(store, manifest)),
            Err(e) if is_invalid_cache(&e) => CacheStatus::Rebuilt {
                reason: e.to_string(),
            },
            // Not a verdict on the cache (too many open files, no memory): leave it alone.
            Err(e) => return Err(e),
        }
    } else {
        CacheStatus::Built
    };
    // Holding the lock, no other build of this folder runs: leftovers are abandoned.
    remove_leftovers(&dir);
    let tok = RobertaTokenizer::from_files(&req.tokenizer)?;
    let mut lines_read = |lines| progress(PrepareProgress::LinesRead(lines));
    let manifest = build(
        req,
        &tok,
        &dir,
        input,
        tokenizer_sha256,
        fp,
        &mut lines_read,
    )?;
    let store = FeatureStore::open(&dir, &manifest.shards, req.verify_checksum)?;
    Ok(Prepared {
        store,
        manifest,
        status,
    })
}

/// Whether a failed [`try_load`] means the folder is no valid cache (rebuild it), rather
/// than a passing failure of this process.
fn is_invalid_cache(e: &DataError) -> bool {
    match e {
        DataError::Cache { .. } => true,
        DataError::Io { error, .. } => error.kind() == std::io::ErrorKind::NotFound,
        _ => false,
    }
}

/// An exclusive advisory lock on `<folder>.lock` while a cache folder is built and published;
/// released (and the file left for the next builder) when dropped. On a file system without
/// locks the build goes on unlocked, as before locks existed.
struct BuildLock {
    _file: Option<fs::File>,
}

impl BuildLock {
    /// Takes the lock, first saying through `progress` when another build holds it.
    fn acquire(dir: &Path, progress: &mut dyn FnMut(PrepareProgress)) -> Result<Self> {
        let path = side_folder(dir, "lock", "build");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| DataError::io(&path, e))?;
        let locked = match file.try_lock() {
            Ok(()) => Ok(()),
            Err(fs::TryLockError::WouldBlock) => {
                progress(PrepareProgress::WaitingForOtherBuild { lock: path.clone() });
                file.lock()
            }
            Err(fs::TryLockError::Error(e)) => Err(e),
        };
        Ok(match locked {
            Ok(()) => Self { _file: Some(file) },
            Err(e) if e.kind() == std::io::ErrorKind::Unsupported => Self { _file: None },
            Err(e) => return Err(DataError::io(&path, e)),
        })
    }
}

fn build(
    req: &PrepareRequest,
    tok: &RobertaTokenizer,
    dir: &Path,
    input: InputInfo,
    tokenizer_sha256: String,
    fingerprint: String,
    progress: &mut dyn FnMut(usize),
) -> Result<Manifest> {
    let tmp = side_folder(dir, "partial", &std::process::id().to_string());
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    }
    fs::create_dir_all(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let mut shards: Vec<ShardInfo> = Vec::new();
    let mut builder = ShardBuilder::new();
    let mut sink = |f: crate::features::Feature| -> Result<()> {
        builder.push(&f);
        if builder.len() >= req.shard_examples {
            let name = shard_name(shards.len());
            shards.push(builder.write(&tmp, &name)?);
        }
        Ok(())
    };
    let run = run_file(
        &req.data,
        tok,
        &req.pipeline,
        req.options,
        &mut sink,
        progress,
    );
    let report = match run {
        Ok(report) => report,
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if !builder.is_empty() {
        let name = shard_name(shards.len());
        shards.push(builder.write(&tmp, &name)?);
    }
    let manifest = Manifest {
        format_version: CACHE_FORMAT_VERSION,
        fingerprint,
        input,
        tokenizer_sha256,
        features: req.pipeline.features,
        clean: req.pipeline.clean.clone(),
        strictness: req.pipeline.strictness,
        examples: shards.iter().map(|s| s.examples).sum(),
        shards,
        report,
    };
    let manifest_path = tmp.join("manifest.json");
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| DataError::Config(format!("serializing the manifest: {e}")))?;
    fs::write(&manifest_path, json).map_err(|e| DataError::io(&manifest_path, e))?;
    publish(&tmp, dir).map(|()| manifest)
}

/// Moves the finished build `tmp` to `dir` (under the build lock). An invalid folder in the
/// way is moved aside first and then deleted.
fn publish(tmp: &Path, dir: &Path) -> Result<()> {
    if dir.exists() {
        let stale = side_folder(dir, "stale", &std::process::id().to_string());
        fs::rename(dir, &stale).map_err(|e| DataError::io(dir, e))?;
        let _ = fs::remove_dir_all(&stale);
    }
    fs::rename(tmp, dir).map_err(|e| {
        let _ = fs::remove_dir_all(tmp);
        DataError::io(dir, e)
    })
}
