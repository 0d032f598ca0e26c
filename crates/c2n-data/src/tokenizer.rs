//! RoBERTa byte-level BPE that reproduces the reference's slow tokenizer (spec §2).
//!
//! The BPE itself comes from the `tokenizers` crate (ByteLevel pre-tokenizer without prefix
//! space, the GPT-2 regex, BPE merges). Around it this module adds what the slow tokenizer of
//! transformers 2.5.0 does and the fast one does not:
//!
//! - the special-token split of §2.2 step 3: the text is cut at every `<s>`, `</s>`,
//!   `<unk>`, `<pad>`, `<mask>`; every fragment is right-stripped (Python whitespace) and
//!   dropped when empty; special strings map straight to their ids;
//! - no special tokens are added by encoding; [`RobertaTokenizer::encode_with_specials`]
//!   adds `<s>`/`</s>` explicitly;
//! - [`RobertaTokenizer::decode`] keeps special tokens and replaces invalid UTF-8 with
//!   U+FFFD the way Python's `bytes.decode(errors="replace")` does (§2.4).
//!
//! Both `vocab.json` + `merges.txt` and `tokenizer.json` folders give the same tokenizer: only
//! the BPE model is taken from `tokenizer.json`; its added tokens, normalizer and processors
//! are ignored in favour of the rules above.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::word_cache::{self, WordCacheId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{
    Model, ModelWrapper, OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer,
};

use crate::error::{DataError, Result};
use crate::whitespace::python_rstrip;

/// `<s>`: beginning of sequence / cls.
pub const BOS_ID: u32 = 0;
/// `<pad>`.
pub const PAD_ID: u32 = 1;
/// `</s>`: end of sequence / sep.
pub const EOS_ID: u32 = 2;

/// The five special strings of RoBERTa, in the order the slow tokenizer lists them.
pub const SPECIAL_TOKENS: [&str; 5] = ["<s>", "</s>", "<unk>", "<pad>", "<mask>"];

/// The files a tokenizer is built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerFiles {
    /// The slow tokenizer's files.
    VocabMerges {
        /// `vocab.json`.
        vocab: PathBuf,
        /// `merges.txt`.
        merges: PathBuf,
    },
    /// A Hugging Face `tokenizer.json` (only its BPE model is used).
    TokenizerJson(PathBuf),
}

impl TokenizerFiles {
    /// Resolves a folder, a `tokenizer.json` file, or a hub id such as
    /// `microsoft/codebert-base`.
    ///
    /// A folder is preferred as `vocab.json` + `merges.txt` (the reference's files) and falls
    /// back to `tokenizer.json`. A hub id is looked up in the Hugging Face cache first
    /// (`HF_HOME` / `~/.cache/huggingface/hub`) and downloaded only when missing, unless
    /// `HF_HUB_OFFLINE=1` is set.
    pub fn resolve(spec: &str) -> Result<TokenizerFiles> {
        let path = Path::new(spec);
        if path.is_file() {
            // The slow tokenizer's files come in pairs: one of them names its folder.
            let name = path.file_name().and_then(|n| n.to_str());
            if let (Some("vocab.json" | "merges.txt"), Some(dir)) = (name, path.parent()) {
                let dir = if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                };
                return Self::from_dir(dir);
            }
            return Ok(TokenizerFiles::TokenizerJson(path.to_path_buf()));
        }
        if path.is_dir() {
            return Self::from_dir(path);
        }
        if spec.split('/').count() == 2 && !spec.starts_with('.') && !path.is_absolute() {
            // `data/roberta-base` may be a mistyped local path as much as a hub id: when its
            // first part is a local folder, the error says both.
            return Self::from_hub(spec).map_err(|hub_error| {
                match path
                    .parent()
                    .filter(|p| p.is_dir() && !p.as_os_str().is_empty())
                {
                    Some(parent) => DataError::Tokenizer {
                        location: spec.to_string(),
                        message: format!(
                            "no such folder in {} (as a hub id: {hub_error})",
                            parent.display()
                        ),
                    },
                    None => hub_error,
                }
            });
        }
        // A bare name is a legacy hub id (`roberta-base`, as the hub still resolves it).
        let bare_name = !spec.is_empty()
            && spec
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            && !spec.starts_with('-');
        if bare_name {
            return Self::from_hub(spec).map_err(|hub_error| {
                let why = match hub_error {
                    DataError::Tokenizer { message, .. } => message,
                    other => other.to_string(),
                };
                DataError::Tokenizer {
                    location: spec.to_string(),
                    message: format!("no such file or folder here, and as a hub id: {why}"),
                }
            });
        }
        Err(DataError::Tokenizer {
            location: spec.to_string(),
            message: "no such file or folder, and not a hub id (owner/name)".to_string(),
        })
    }

    /// A local folder with `vocab.json` + `merges.txt` or `tokenizer.json`.
    pub fn from_dir(dir: &Path) -> Result<TokenizerFiles> {
        let vocab = dir.join("vocab.json");
        let merges = dir.join("merges.txt");
        if vocab.is_file() && merges.is_file() {
            return Ok(TokenizerFiles::VocabMerges { vocab, merges });
        }
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Ok(TokenizerFiles::TokenizerJson(json));
        }
        Err(DataError::Tokenizer {
            location: dir.display().to_string(),
            message: "folder has neither vocab.json + merges.txt nor tokenizer.json".to_string(),
        })
    }

    /// A hub model id, cache first (feature `hub`; without it, an error saying so).
    pub fn from_hub(model_id: &str) -> Result<TokenizerFiles> {
        #[cfg(not(feature = "hub"))]
        return Err(DataError::Tokenizer {
            location: model_id.to_string(),
            message: "not a local folder or file, and this build of c2n-data has no hub \
                      access (feature `hub`)"
                .to_string(),
        });
        #[cfg(feature = "hub")]
        Self::from_hub_cache_or_download(model_id)
    }

    #[cfg(feature = "hub")]
    fn from_hub_cache_or_download(model_id: &str) -> Result<TokenizerFiles> {
        let hub_error = |message: String| DataError::Tokenizer {
            location: model_id.to_string(),
            message,
        };
        let cache = hf_hub::Cache::from_env();
        let cached = cache.model(model_id.to_string());
        if let (Some(vocab), Some(merges)) = (cached.get("vocab.json"), cached.get("merges.txt")) {
            return Ok(TokenizerFiles::VocabMerges { vocab, merges });
        }
        if let Some(json) = cached.get("tokenizer.json") {
            return Ok(TokenizerFiles::TokenizerJson(json));
        }
        let offline = crate::hub::hub_offline();
        if offline {
            return Err(hub_error(format!(
                "not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set",
                cache.path().display()
            )));
        }
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(false)
            .build()
            .map_err(|e| hub_error(e.to_string()))?;
        let repo = api.model(model_id.to_string());
        let vocab = repo
            .get("vocab.json")
            .map_err(|e| hub_error(format!("downloading vocab.json: {e}")))?;
        let merges = repo
            .get("merges.txt")
            .map_err(|e| hub_error(format!("downloading merges.txt: {e}")))?;
        Ok(TokenizerFiles::VocabMerges { vocab, merges })
    }

    /// The files, in a fixed order.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            TokenizerFiles::VocabMerges { vocab, merges } => vec![vocab, merges],
            TokenizerFiles::TokenizerJson(json) => vec![json],
        }
    }

    /// sha256 (hex) over the contents of the files; part of the cache fingerprint.
    pub fn content_sha256(&self) -> Result<String> {
        let mut hasher = Sha256::new();
        for path in self.paths() {
            let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        Ok(hex(&hasher.finalize()))
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The GPT-2 byte → printable character table (§2.2 step 4.2), as `table[byte]`.
pub fn bytes_to_unicode() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for (b, slot) in table.iter_mut().enumerate() {
        let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        let cp = if printable {
            b as u32
        } else {
            let cp = next;
            next += 1;
            cp
        };
        *slot = char::from_u32(cp).unwrap_or('\u{FFFD}');
    }
    table
}

/// RoBERTa tokenizer with the reference's slow-tokenizer semantics.
#[derive(Clone)]
pub struct RobertaTokenizer {
    bpe: BPE,
    pre_tokenizer: ByteLevel,
    special_ids: [u32; 5],
    id_to_token: Vec<Option<String>>,
    unk_id: u32,
    byte_of_char: HashMap<char, u8>,
    byte_chars: [char; 256],
    /// This instance's per-thread memo of ids by ASCII pre-token.
    word_cache: WordCacheId,
}

/// A vocabulary's id → token table and the five special tokens' ids.
struct VocabIndex {
    special_ids: [u32; 5],
    id_to_token: Vec<Option<String>>,
}

impl VocabIndex {
    fn new<'a>(
        entries: impl ExactSizeIterator<Item = (&'a str, u32)>,
        location: &str,
    ) -> Result<Self> {
        let mut special = [None; 5];
        let mut id_to_token: Vec<Option<String>> = vec![None; entries.len()];
        for (token, id) in entries {
            if let Some(k) = SPECIAL_TOKENS.iter().position(|&name| name == token) {
                special[k] = Some(id);
            }
            let slot = id as usize;
            // Features store ids as u16; a larger id (say a damaged file's 4 294 967 295)
            // would also make this table gigabytes long.
            if slot > usize::from(u16::MAX) {
                return Err(DataError::Tokenizer {
                    location: location.to_string(),
                    message: format!(
                        "token {token:?} has id {id}; ids must be below 65 536 (features store \
                         token ids as u16)"
                    ),
                });
            }
            if slot >= id_to_token.len() {
                id_to_token.resize(slot + 1, None);
            }
            id_to_token[slot] = Some(token.to_string());
        }
        let mut special_ids = [0u32; 5];
        for ((slot, found), name) in special_ids.iter_mut().zip(special).zip(SPECIAL_TOKENS) {
            *slot = found.ok_or_else(|| DataError::Tokenizer {
                location: location.to_string(),
                message: format!("vocabulary lacks the special token {name}"),
            })?;
        }
        // The table ends at the largest id (a sparse vocabulary leaves holes, never a tail).
        while id_to_token.last().is_some_and(Option::is_none) {
            id_to_token.pop();
        }
        Ok(Self {
            special_ids,
            id_to_token,
        })
    }
}

/// Reads `vocab.json` and `merges.txt` with the rules of `tokenizers`' `BPE::read_file` (a
/// `#version` line skipped, every other line two symbols split at single spaces), straight
/// into maps: its detour through a JSON tree sorted 50 000 keys and was half the load time.
/// One difference: an entry of `vocab.json` whose id is not an integer that fits in `u32` is
/// an error here, where `read_file` skipped an entry that is not a number and truncated an
/// id above `u32::MAX`.
fn read_vocab_merges(
    vocab: &Path,
    merges: &Path,
) -> std::result::Result<(Vocab, Vec<(String, String)>), String> {
    let bytes = std::fs::read(vocab).map_err(|e| format!("{}: {e}", vocab.display()))?;
    let map: HashMap<String, u32> = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a token-to-id JSON object: {e}", vocab.display()))?;
    let text = std::fs::read_to_string(merges).map_err(|e| format!("{}: {e}", merges.display()))?;
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.starts_with("#version") {
            continue;
        }
        match line.split_once(' ') {
            Some((a, b)) if !b.contains(' ') => pairs.push((a.to_string(), b.to_string())),
            _ => {
                return Err(format!(
                    "{}:{}: a merge is two symbols separated by one space, found {line:?}",
                    merges.display(),
                    number + 1
                ))
            }
        }
    }
    if pairs.is_empty() {
        // Every RoBERTa-style BPE has merges: without them every word splits into bytes.
        return Err(format!(
            "{}: no merge in the file (empty or truncated?)",
            merges.display()
        ));
    }
    Ok((map.into_iter().collect(), pairs))
}

impl std::fmt::Debug for RobertaTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RobertaTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special_ids", &self.special_ids)
            .finish()
    }
}

impl RobertaTokenizer {
    /// Loads from a folder, a `tokenizer.json` file or a hub id (see [`TokenizerFiles::resolve`]).
    pub fn load(spec: &str) -> Result<RobertaTokenizer> {
        Self::from_files(&TokenizerFiles::resolve(spec)?)
    }

    /// Builds the tokenizer from resolved files.
    pub fn from_files(files: &TokenizerFiles) -> Result<RobertaTokenizer> {
        match files {
            TokenizerFiles::VocabMerges { vocab, merges } => {
                let tok_error = |message: String| DataError::Tokenizer {
                    location: vocab.display().to_string(),
                    message,
                };
                let (vocab_map, merges_list) = read_vocab_merges(vocab, merges)
                    .map_err(|e| tok_error(format!("reading vocab/merges: {e}")))?;
                Self::build(vocab_map, merges_list, &vocab.display().to_string())
            }
            TokenizerFiles::TokenizerJson(path) => {
                let location = path.display().to_string();
                let tok =
                    tokenizers::Tokenizer::from_file(path).map_err(|e| DataError::Tokenizer {
                        location: location.clone(),
                        // A file given as the tokenizer is read as a tokenizer.json.
                        message: format!("not a readable tokenizer.json: {e}"),
                    })?;
                match tok.get_model() {
                    ModelWrapper::BPE(bpe) => Self::from_bpe(bpe.clone(), &location),
                    _ => Err(DataError::Tokenizer {
                        location,
                        message: "model is not BPE".to_string(),
                    }),
                }
            }
        }
    }

    /// Builds the tokenizer from an in-memory vocabulary and merge list (ranks = list order).
    ///
    /// The vocabulary must contain the five special tokens.
    pub fn from_vocab_merges(
        vocab: HashMap<String, u32>,
        merges: Vec<(String, String)>,
    ) -> Result<RobertaTokenizer> {
        let vocab: Vocab = vocab.into_iter().collect();
        Self::build(vocab, merges, "<memory>")
    }

    fn build(vocab: Vocab, merges: Vec<(String, String)>, location: &str) -> Result<Self> {
        // Indexed before the builder takes the vocabulary: no second copy of it.
        let index = VocabIndex::new(vocab.iter().map(|(t, &id)| (t.as_str(), id)), location)?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .unk_token("<unk>".to_string())
            .build()
            .map_err(|e| DataError::Tokenizer {
                location: location.to_string(),
                message: e.to_string(),
            })?;
        Ok(Self::assemble(bpe, index))
    }

    fn from_bpe(bpe: BPE, location: &str) -> Result<Self> {
        if let Some(p) = bpe.dropout.filter(|&p| p > 0.0) {
            // Random merges would make the features differ from run to run (and from the
            // cache, and from a resumed run's); the reference's tokenizer has no dropout.
            return Err(DataError::Tokenizer {
                location: location.to_string(),
                message: format!(
                    "the BPE model asks for dropout {p}: the reference tokenizes without it \
                     (set \"dropout\" to null in the tokenizer.json)"
                ),
            });
        }
        let vocab = bpe.get_vocab();
        let index = VocabIndex::new(vocab.iter().map(|(t, &id)| (t.as_str(), id)), location)?;
        Ok(Self::assemble(bpe, index))
    }

    fn assemble(bpe: BPE, index: VocabIndex) -> Self {
        let VocabIndex {
            special_ids,
            id_to_token,
        } = index;
        let byte_of_char = bytes_to_unicode()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        RobertaTokenizer {
            bpe,
            pre_tokenizer: ByteLevel::new(false, false, true),
            unk_id: special_ids[2],
            special_ids,
            id_to_token,
            byte_of_char,
            byte_chars: bytes_to_unicode(),
            word_cache: WordCacheId::new(),
        }
    }

    /// One more than the largest id.
    pub fn vocab_size(&self) -> usize {
        self.id_to_token.len()
    }

    /// The token string of an id, if the id exists.
    pub fn id_to_token(&self, id: u32) -> Option<&str> {
        self.id_to_token.get(id as usize).and_then(|t| t.as_deref())
    }

    /// Cuts `text` into pieces per §2.2 step 3: `Ok(id)` for a special string, `Err(fragment)`
    /// for right-stripped, non-empty text between them.
    pub fn split_special<'t>(&self, text: &'t str) -> Vec<std::result::Result<u32, &'t str>> {
        let mut pieces = Vec::new();
        let mut rest = text;
        loop {
            // Occurrences of the five strings cannot overlap (each is one `<…>` span with no
            // inner `<` or `>`), so taking the leftmost match equals the slow tokenizer's
            // one-string-at-a-time splitting.
            let found = SPECIAL_TOKENS
                .iter()
                .enumerate()
                .filter_map(|(k, tok)| rest.find(tok).map(|pos| (pos, k, tok.len())))
                .min();
            let end = found.map_or(rest.len(), |(pos, _, _)| pos);
            let fragment = python_rstrip(&rest[..end]);
            if !fragment.is_empty() {
                pieces.push(Err(fragment));
            }
            match found {
                Some((pos, k, len)) => {
                    pieces.push(Ok(self.special_ids[k]));
                    rest = &rest[pos + len..];
                }
                None => break,
            }
        }
        pieces
    }

    /// Appends the BPE ids of one fragment (no special-token handling, no stripping).
    pub fn bpe_fragment(&self, fragment: &str, out: &mut Vec<u32>) -> Result<()> {
        if fragment.is_ascii() {
            return self.bpe_ascii_fragment(fragment, out);
        }
        self.bpe_fragment_general(fragment, out)
    }

    /// Fast path for ASCII text: the GPT-2 split done by hand ([`split_ascii_gpt2`]) and the
    /// byte-to-symbol mapping through a table, then the same BPE model. Identical ids to
    /// [`Self::bpe_fragment_general`] (property-tested); several times faster because the
    /// general path runs a backtracking regex and builds offset-tracking strings.
    fn bpe_ascii_fragment(&self, fragment: &str, out: &mut Vec<u32>) -> Result<()> {
        let bytes = fragment.as_bytes();
        let mut word = String::with_capacity(32);
        for range in split_ascii_gpt2(bytes) {
            let key = &bytes[range];
            word_cache::extend_with(&self.word_cache, key, out, |out| {
                word.clear();
                word.extend(key.iter().map(|&b| self.byte_chars[b as usize]));
                let tokens = self.bpe.tokenize(&word).map_err(|e| DataError::Tokenizer {
                    location: "<bpe>".to_string(),
                    message: e.to_string(),
                })?;
                out.extend(tokens.into_iter().map(|t| t.id));
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Any text: the `tokenizers` ByteLevel pre-tokenizer (GPT-2 regex) and the BPE model.
    pub fn bpe_fragment_general(&self, fragment: &str, out: &mut Vec<u32>) -> Result<()> {
        let tok_error = |e: tokenizers::Error| DataError::Tokenizer {
            location: "<bpe>".to_string(),
            message: e.to_string(),
        };
        let mut pre = PreTokenizedString::from(fragment);
        self.pre_tokenizer
            .pre_tokenize(&mut pre)
            .map_err(tok_error)?;
        for (word, _, _) in pre.get_splits(OffsetReferential::Original, OffsetType::None) {
            for token in self.bpe.tokenize(word).map_err(tok_error)? {
                out.push(token.id);
            }
        }
        Ok(())
    }

    /// Token ids of `text` without `<s>`/`</s>`, exactly as the slow tokenizer's
    /// `convert_tokens_to_ids(tokenize(text))`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 1);
        for piece in self.split_special(text) {
            match piece {
                Ok(id) => ids.push(id),
                Err(fragment) => self.bpe_fragment(fragment, &mut ids)?,
            }
        }
        Ok(ids)
    }

    /// The token strings of `text` (byte-level symbols such as `Ġthe`).
    pub fn tokenize(&self, text: &str) -> Result<Vec<String>> {
        Ok(self
            .encode(text)?
            .into_iter()
            .map(|id| self.id_to_token(id).unwrap_or("<unk>").to_string())
            .collect())
    }

    /// `[0] + encode(text) + [2]`.
    pub fn encode_with_specials(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = vec![BOS_ID];
        ids.extend(self.encode(text)?);
        ids.push(EOS_ID);
        Ok(ids)
    }

    /// `decode(ids, clean_up_tokenization_spaces=False)` of the reference (§2.4).
    ///
    /// Special tokens are kept; an unknown id decodes as `<unk>` (Python's
    /// `decoder.get(id, unk_token)`); invalid UTF-8 becomes U+FFFD per maximal subpart, as
    /// Python's `errors="replace"`. Takes `u32` ids (decoding output) as well as the `u16`
    /// ids that [`Feature`](crate::Feature)s store. A feature's `target_ids` begin with `<s>`
    /// and end with `</s>`; its text alone is `decode(&f.target_ids[1..f.target_ids.len() - 1])`
    /// (beam-search hypotheses have neither).
    pub fn decode<Id: Copy + Into<u32>>(&self, ids: &[Id]) -> String {
        let unk = self.id_to_token(self.unk_id).unwrap_or("<unk>");
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let token = self.id_to_token(id.into()).unwrap_or(unk);
            for c in token.chars() {
                match self.byte_of_char.get(&c) {
                    Some(&b) => bytes.push(b),
                    // Not a byte-level symbol (impossible in a byte-level vocabulary): keep it.
                    None => bytes.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                }
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn ascii_class(b: u8) -> u8 {
    // 0 whitespace (Unicode White_Space within ASCII: \t \n \v \f \r and space),
    // 1 letter, 2 digit, 3 anything else.
    match b {
        b'\t'..=b'\r' | b' ' => 0,
        b'a'..=b'z' | b'A'..=b'Z' => 1,
        b'0'..=b'9' => 2,
        _ => 3,
    }
}

/// The pieces the GPT-2 pattern
/// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
/// cuts ASCII text into, as byte ranges (leftmost-first alternation, greedy runs, the
/// look-ahead resolved by giving the last whitespace of a run to the next piece).
pub fn split_ascii_gpt2(text: &[u8]) -> Vec<std::ops::Range<usize>> {
    let n = text.len();
    let run = |from: usize, class: u8| {
        let mut j = from;
        while j < n && ascii_class(text[j]) == class {
            j += 1;
        }
        j
    };
    let mut pieces = Vec::with_capacity(n / 4 + 1);
    let mut i = 0;
    while i < n {
        let b = text[i];
        if b == b'\'' && i + 1 < n {
            let rest = &text[i + 1..];
            let len =
                if rest.starts_with(b"re") || rest.starts_with(b"ve") || rest.starts_with(b"ll") {
                    3
                } else if matches!(rest[0], b's' | b't' | b'm' | b'd') {
                    2
                } else {
                    0
                };
            if len > 0 {
                pieces.push(i..i + len);
                i += len;
                continue;
            }
        }
        let class = ascii_class(b);
        if class != 0 {
            let end = run(i, class);
            pieces.push(i..end);
            i = end;
            continue;
        }
        // A single space followed by a letter, digit or other character joins that run.
        if b == b' ' && i + 1 < n && ascii_class(text[i + 1]) != 0 {
            let end = run(i + 1, ascii_class(text[i + 1]));
            pieces.push(i..end);
            i = end;
            continue;
        }
        let end = run(i, 0);
        if end == n || end - i == 1 {
            // `\s+(?!\S)` at the end of the text, or `\s+` for one whitespace before a
            // non-space that cannot take it.
            pieces.push(i..end);
            i = end;
        } else {
            // `\s+(?!\S)` backtracks one character: the last whitespace goes to the next piece.
            pieces.push(i..end - 1);
            i = end - 1;
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_matches_spec() {
        let table = bytes_to_unicode();
        assert_eq!(table[b' ' as usize], '\u{120}');
        assert_eq!(table[b'\n' as usize], '\u{10A}');
        assert_eq!(table[b'A' as usize], 'A');
        assert_eq!(table[173], '\u{143}');
        let mut distinct: Vec<char> = table.to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 256);
    }

    /// A vocabulary with the five special tokens and the pieces of one merge.
    fn write_files(dir: &Path, merges: &str) -> TokenizerFiles {
        let vocab = dir.join("vocab.json");
        let merges_path = dir.join("merges.txt");
        std::fs::write(
            &vocab,
            r#"{"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"<mask>":4,"a":5,"b":6,"ab":7}"#,
        )
        .unwrap();
        std::fs::write(&merges_path, merges).unwrap();
        TokenizerFiles::VocabMerges {
            vocab,
            merges: merges_path,
        }
    }

    #[test]
    fn vocab_and_merges_are_read_as_tokenizers_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let tok =
            RobertaTokenizer::from_files(&write_files(dir.path(), "#version: 0.2\na b\n")).unwrap();
        assert_eq!(tok.vocab_size(), 8);
        assert_eq!(tok.encode("ab").unwrap(), [7]);
        assert_eq!(tok.encode("ba").unwrap(), [6, 5]);
        assert_eq!(tok.id_to_token(7), Some("ab"));
    }

    #[test]
    fn a_merges_file_without_merges_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for empty in ["", "#version: 0.2\n"] {
            let err = RobertaTokenizer::from_files(&write_files(dir.path(), empty))
                .unwrap_err()
                .to_string();
            assert!(err.contains("merges.txt: no merge"), "{empty:?}: {err}");
        }
    }

    #[test]
    fn naming_vocab_json_or_merges_txt_means_their_folder() {
        let dir = tempfile::tempdir().unwrap();
        let folder = write_files(dir.path(), "a b\n");
        for file in ["vocab.json", "merges.txt"] {
            let spec = dir.path().join(file);
            let resolved = TokenizerFiles::resolve(spec.to_str().unwrap()).unwrap();
            assert_eq!(resolved, folder, "{file}");
        }
        std::fs::remove_file(dir.path().join("merges.txt")).unwrap();
        let spec = dir.path().join("vocab.json");
        assert!(TokenizerFiles::resolve(spec.to_str().unwrap()).is_err());
    }

    #[test]
    fn a_bad_merge_line_is_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "#version: 0.2\na b\na  b\n",
            "#version: 0.2\na b\n\n",
            "a\n",
        ] {
            let err = RobertaTokenizer::from_files(&write_files(dir.path(), bad))
                .unwrap_err()
                .to_string();
            let line = if bad.starts_with('a') { 1 } else { 3 };
            assert!(
                err.contains(&format!("merges.txt:{line}:")),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn a_tokenizer_json_with_bpe_dropout_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let vocab: Vocab = ["<s>", "<pad>", "</s>", "<unk>", "<mask>", "a", "b", "ab"]
            .iter()
            .enumerate()
            .map(|(id, t)| (t.to_string(), id as u32))
            .collect();
        let with_dropout = |p: Option<f32>| {
            let mut builder = BPE::builder()
                .vocab_and_merges(vocab.clone(), vec![("a".into(), "b".into())])
                .unk_token("<unk>".into());
            if let Some(p) = p {
                builder = builder.dropout(p);
            }
            let path = dir.path().join(format!("tokenizer-{p:?}.json"));
            tokenizers::Tokenizer::new(builder.build().unwrap())
                .save(&path, false)
                .unwrap();
            RobertaTokenizer::from_files(&TokenizerFiles::TokenizerJson(path))
        };
        let err = with_dropout(Some(0.1)).unwrap_err().to_string();
        assert!(err.contains("dropout 0.1"), "{err}");
        assert_eq!(with_dropout(None).unwrap().encode("ab").unwrap(), [7]);
    }

    #[test]
    fn a_vocabulary_without_a_special_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(dir.path(), "a b\n");
        let TokenizerFiles::VocabMerges { vocab, .. } = &files else {
            unreachable!()
        };
        std::fs::write(
            vocab,
            r#"{"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"a":5,"b":6,"ab":7}"#,
        )
        .unwrap();
        let err = RobertaTokenizer::from_files(&files)
            .unwrap_err()
            .to_string();
        assert!(err.contains("lacks the special token <mask>"), "{err}");
    }

    #[test]
    fn a_token_id_past_the_u16_range_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_files(dir.path(), "a b\n");
        let TokenizerFiles::VocabMerges { vocab, .. } = &files else {
            unreachable!()
        };
        for (id, refused) in [(65_535u64, false), (65_536, true), (4_294_967_295, true)] {
            std::fs::write(
                vocab,
                format!(
                    r#"{{"<s>":0,"<pad>":1,"</s>":2,"<unk>":3,"<mask>":4,"a":5,"b":6,"ab":{id}}}"#
                ),
            )
            .unwrap();
            match RobertaTokenizer::from_files(&files) {
                Ok(tok) => {
                    assert!(!refused, "id {id} accepted");
                    assert_eq!(tok.encode("ab").unwrap(), [id as u32]);
                }
                Err(err) => {
                    let err = err.to_string();
                    assert!(refused, "id {id}: {err}");
                    assert!(err.contains(&format!("\"ab\" has id {id}")), "{err}");
                    assert!(err.contains("vocab.json"), "{err}");
                }
            }
        }
    }
}
