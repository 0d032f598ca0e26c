//! Binary feature shards: written sequentially, read through `mmap` without copying.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! magic "C2NSHRD1" | n: u64 | source_tokens: u64 | target_tokens: u64
//! idx: u64 × n
//! source_offsets: u64 × (n + 1)      start of each source in the source token array
//! target_offsets: u64 × (n + 1)
//! source_bpe_len: u32 × n            pre-truncation BPE lengths (statistics)
//! target_bpe_len: u32 × n
//! zero padding to a multiple of 8
//! source tokens: u16 × source_tokens
//! target tokens: u16 × target_tokens
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};
use crate::features::Feature;
use crate::tokenizer::hex;

/// File magic and format version of a shard.
pub const SHARD_MAGIC: &[u8; 8] = b"C2NSHRD1";
const HEADER: usize = 32;

/// `(source_start, target_start, total size)` of a shard; `None` when the counts overflow
/// (only a corrupt header has such counts).
fn checked_layout(
    n: usize,
    source_tokens: usize,
    target_tokens: usize,
) -> Option<(usize, usize, usize)> {
    let meta_end = n.checked_mul(32)?.checked_add(HEADER + 16)?;
    let source_start = meta_end.div_ceil(8).checked_mul(8)?;
    let target_start = source_start.checked_add(source_tokens.checked_mul(2)?)?;
    let total = target_start.checked_add(target_tokens.checked_mul(2)?)?;
    Some((source_start, target_start, total))
}

fn layout(n: usize, source_tokens: usize, target_tokens: usize) -> (usize, usize, usize) {
    checked_layout(n, source_tokens, target_tokens).unwrap_or((usize::MAX, usize::MAX, usize::MAX))
}

/// Collects features in memory and writes one shard file.
#[derive(Debug, Default)]
pub struct ShardBuilder {
    idx: Vec<u64>,
    source_offsets: Vec<u64>,
    target_offsets: Vec<u64>,
    source_bpe_len: Vec<u32>,
    target_bpe_len: Vec<u32>,
    source: Vec<u16>,
    target: Vec<u16>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShardInfo {
    /// File name inside the cache folder.
    pub file: String,
    /// Number of features.
    pub examples: usize,
    /// File size in bytes.
    pub bytes: u64,
    /// sha256 (hex) of the whole file.
    pub sha256: String,
}

impl ShardBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        ShardBuilder {
            source_offsets: vec![0],
            target_offsets: vec![0],
            ..Default::default()
        }
    }

    /// Number of features collected.
    pub fn len(&self) -> usize {
        self.idx.len()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.idx.is_empty()
    }

    /// Appends a feature.
    pub fn push(&mut self, f: &Feature) {
        self.idx.push(f.idx);
        self.source.extend_from_slice(&f.source_ids);
        self.target.extend_from_slice(&f.target_ids);
        self.source_offsets.push(self.source.len() as u64);
        self.target_offsets.push(self.target.len() as u64);
        self.source_bpe_len.push(f.source_bpe_len);
        self.target_bpe_len.push(f.target_bpe_len);
    }

    /// Writes the shard to `dir/file` and resets the builder.
    pub fn write(&mut self, dir: &Path, file: &str) -> Result<ShardInfo> {
        let path = dir.join(file);
        let n = self.idx.len();
        let (source_start, _, total) = layout(n, self.source.len(), self.target.len());
        let mut bytes = Vec::with_capacity(total);
        bytes.extend_from_slice(SHARD_MAGIC);
        for v in [n as u64, self.source.len() as u64, self.target.len() as u64] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        for list in [&self.idx, &self.source_offsets, &self.target_offsets] {
            for v in list.iter() {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        for list in [&self.source_bpe_len, &self.target_bpe_len] {
            for v in list.iter() {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        bytes.resize(source_start, 0);
        for list in [&self.source, &self.target] {
            for v in list.iter() {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        debug_assert_eq!(bytes.len(), total);
        let sha256 = hex(&Sha256::digest(&bytes));
        let file_handle = File::create(&path).map_err(|e| DataError::io(&path, e))?;
        let mut writer = BufWriter::new(file_handle);
        writer
            .write_all(&bytes)
            .and_then(|_| writer.flush())
            .map_err(|e| DataError::io(&path, e))?;
        *self = ShardBuilder::new();
        Ok(ShardInfo {
            file: file.to_string(),
            examples: n,
            bytes: total as u64,
            sha256,
        })
    }
}

/// A memory-mapped shard.
#[derive(Debug)]
pub struct Shard {
    map: Mmap,
    n: usize,
    source_start: usize,
    target_start: usize,
}

/// One feature borrowed from a shard or from memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureRef<'a> {
    /// Example idx.
    pub idx: u64,
    /// `<s>` … `</s>` source ids, unpadded.
    pub source_ids: &'a [u16],
    /// `<s>` … `</s>` target ids, unpadded.
    pub target_ids: &'a [u16],
    /// Source BPE length before truncation.
    pub source_bpe_len: u32,
    /// Target BPE length before truncation.
    pub target_bpe_len: u32,
}

impl<'a> From<&'a Feature> for FeatureRef<'a> {
    fn from(f: &'a Feature) -> Self {
        FeatureRef {
            idx: f.idx,
            source_ids: &f.source_ids,
            target_ids: &f.target_ids,
            source_bpe_len: f.source_bpe_len,
            target_bpe_len: f.target_bpe_len,
        }
    }
}

impl Shard {
    /// Maps a shard and checks it against `info` (size and sha256 when `verify_checksum`).
    pub fn open(path: &Path, info: &ShardInfo, verify_checksum: bool) -> Result<Shard> {
        let corrupt = |message: String| DataError::Cache {
            path: path.to_path_buf(),
            message,
        };
        if !cfg!(target_endian = "little") {
            return Err(corrupt(
                "shards are little-endian; this machine is not".into(),
            ));
        }
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        // SAFETY: the cache folder is private to this program; a file changed while mapped would
        // be caught by the size/offset checks below only up to the moment of mapping, which is the
        // usual caveat of memory-mapped caches and is documented in docs/data.md.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        if map.len() as u64 != info.bytes {
            return Err(corrupt(format!(
                "size {} differs from the manifest's {} (truncated or overwritten)",
                map.len(),
                info.bytes
            )));
        }
        if map.len() < HEADER || &map[..8] != SHARD_MAGIC {
            return Err(corrupt("bad magic (not a shard of this format)".into()));
        }
        if verify_checksum {
            let sha = hex(&Sha256::digest(&map[..]));
            if sha != info.sha256 {
                return Err(corrupt("sha256 differs from the manifest (corrupt)".into()));
            }
        }
        let read = |at: usize| u64::from_le_bytes(map[at..at + 8].try_into().unwrap_or([0; 8]));
        let n = read(8) as usize;
        let (source_tokens, target_tokens) = (read(16) as usize, read(24) as usize);
        let layout = checked_layout(n, source_tokens, target_tokens);
        let Some((source_start, target_start, total)) = layout else {
            return Err(corrupt("header counts overflow".into()));
        };
        if n != info.examples || total != map.len() {
            return Err(corrupt("header does not match the file size".into()));
        }
        let shard = Shard {
            map,
            n,
            source_start,
            target_start,
        };
        // Offsets must be monotone and end at the token counts, so `get` can slice safely.
        for (which, tokens) in [(0, source_tokens), (1, target_tokens)] {
            let mut prev = 0;
            for i in 0..=n {
                let off = shard.offset(which, i);
                if off < prev || off > tokens {
                    return Err(corrupt(format!("offset table broken at entry {i}")));
                }
                prev = off;
            }
            if prev != tokens {
                return Err(corrupt(
                    "offset table does not end at the token count".into(),
                ));
            }
        }
        Ok(shard)
    }

    fn u64_at(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.map[at..at + 8].try_into().unwrap_or([0; 8]))
    }

    fn u32_at(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.map[at..at + 4].try_into().unwrap_or([0; 4]))
    }

    fn offset(&self, which: usize, i: usize) -> usize {
        let base = HEADER + 8 * self.n + which * 8 * (self.n + 1);
        self.u64_at(base + 8 * i) as usize
    }

    fn tokens(&self, start: usize, from: usize, to: usize) -> &[u16] {
        let bytes = &self.map[start + 2 * from..start + 2 * to];
        // SAFETY: any bit pattern is a valid u16; the slice start is 8-aligned within a
        // page-aligned map (checked by `align_to` leaving no prefix).
        let (prefix, ids, _) = unsafe { bytes.align_to::<u16>() };
        debug_assert!(prefix.is_empty());
        ids
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the shard is empty.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Feature `i` (panics if `i >= len()`, like slice indexing).
    pub fn get(&self, i: usize) -> FeatureRef<'_> {
        assert!(i < self.n, "feature {i} out of range ({})", self.n);
        let lens = HEADER + 8 * self.n + 16 * (self.n + 1);
        FeatureRef {
            idx: self.u64_at(HEADER + 8 * i),
            source_ids: self.tokens(self.source_start, self.offset(0, i), self.offset(0, i + 1)),
            target_ids: self.tokens(self.target_start, self.offset(1, i), self.offset(1, i + 1)),
            source_bpe_len: self.u32_at(lens + 4 * i),
            target_bpe_len: self.u32_at(lens + 4 * self.n + 4 * i),
        }
    }
}

/// Read access to a list of features, in memory or in shards.
pub trait FeatureSet: Sync {
    /// Number of features.
    fn len(&self) -> usize;
    /// Whether there is none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Feature at position `i` (panics when out of range).
    fn get(&self, i: usize) -> FeatureRef<'_>;
}

impl FeatureSet for [Feature] {
    fn len(&self) -> usize {
        <[Feature]>::len(self)
    }
    fn get(&self, i: usize) -> FeatureRef<'_> {
        FeatureRef::from(&self[i])
    }
}

impl FeatureSet for Vec<Feature> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn get(&self, i: usize) -> FeatureRef<'_> {
        FeatureRef::from(&self[i])
    }
}

/// All shards of one prepared file, indexed as one list.
#[derive(Debug)]
pub struct FeatureStore {
    shards: Vec<Shard>,
    starts: Vec<usize>,
    dir: PathBuf,
}

impl FeatureStore {
    /// Opens the shards listed in a manifest.
    pub fn open(dir: &Path, shards: &[ShardInfo], verify_checksum: bool) -> Result<FeatureStore> {
        let mut opened = Vec::with_capacity(shards.len());
        let mut starts = Vec::with_capacity(shards.len() + 1);
        let mut total = 0;
        for info in shards {
            let shard = Shard::open(&dir.join(&info.file), info, verify_checksum)?;
            starts.push(total);
            total += shard.len();
            opened.push(shard);
        }
        starts.push(total);
        Ok(FeatureStore {
            shards: opened,
            starts,
            dir: dir.to_path_buf(),
        })
    }

    /// Number of features (also available through [`FeatureSet`]).
    pub fn len(&self) -> usize {
        self.starts.last().copied().unwrap_or(0)
    }

    /// Whether there is no feature.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Feature at position `i` (panics when out of range, like slice indexing).
    pub fn get(&self, i: usize) -> FeatureRef<'_> {
        let shard = self.starts.partition_point(|&s| s <= i) - 1;
        self.shards[shard].get(i - self.starts[shard])
    }

    /// The folder holding the shards.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Copies every feature into memory.
    pub fn to_features(&self) -> Vec<Feature> {
        (0..self.len())
            .map(|i| {
                let f = self.get(i);
                Feature {
                    idx: f.idx,
                    source_ids: f.source_ids.to_vec(),
                    target_ids: f.target_ids.to_vec(),
                    source_bpe_len: f.source_bpe_len,
                    target_bpe_len: f.target_bpe_len,
                }
            })
            .collect()
    }
}

impl FeatureSet for FeatureStore {
    fn len(&self) -> usize {
        FeatureStore::len(self)
    }

    fn get(&self, i: usize) -> FeatureRef<'_> {
        FeatureStore::get(self, i)
    }
}
