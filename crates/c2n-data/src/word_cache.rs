//! A per-thread memo of BPE ids by pre-token, in front of the `tokenizers` BPE model.
//!
//! The model keeps its own word cache, but every hit still builds a `Vec<Token>` with one
//! `String` per sub-word; most pre-tokens of source code (`end`, `(`, `Ġself`, …) repeat
//! thousands of times in a file, so those allocations were most of the cold featurize time.
//! Here a hit is one hash lookup and a copy of a few `u32`s.
//!
//! Entries belong to one tokenizer instance: each instance (and each clone) gets an id, and a
//! thread that meets another id starts over. The memo is bounded per thread; when full it
//! stops growing (the model's own cache still works behind it).

use rustc_hash::FxHashMap;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Most pre-tokens remembered per thread (≈ 10 MB at the typical 4–8 bytes and 1–3 ids).
const CAPACITY: usize = 1 << 17;
/// Longer pre-tokens are not remembered (they rarely repeat).
const MAX_KEY_BYTES: usize = 64;

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// The memo's owner id, one per tokenizer instance.
#[derive(Debug)]
pub(crate) struct WordCacheId(u64);

impl WordCacheId {
    pub(crate) fn new() -> Self {
        Self(NEXT_OWNER.fetch_add(1, Ordering::Relaxed))
    }
}

impl Clone for WordCacheId {
    /// A clone starts with an empty memo of its own.
    fn clone(&self) -> Self {
        Self::new()
    }
}

#[derive(Default)]
struct Memo {
    owner: u64,
    ids: FxHashMap<Box<[u8]>, Box<[u32]>>,
}

thread_local! {
    static MEMO: RefCell<Memo> = RefCell::new(Memo::default());
}

/// Appends the ids of pre-token `key` to `out`: from this thread's memo when `owner` has seen
/// it here before, else from `compute` (which appends them), remembering the result.
pub(crate) fn extend_with<E>(
    owner: &WordCacheId,
    key: &[u8],
    out: &mut Vec<u32>,
    compute: impl FnOnce(&mut Vec<u32>) -> Result<(), E>,
) -> Result<(), E> {
    MEMO.with(|cell| {
        let mut memo = cell.borrow_mut();
        if memo.owner != owner.0 {
            // A new map, not `clear`: the last tokenizer's table gives its memory back.
            *memo = Memo {
                owner: owner.0,
                ids: FxHashMap::default(),
            };
        }
        if let Some(ids) = memo.ids.get(key) {
            out.extend_from_slice(ids);
            return Ok(());
        }
        let start = out.len();
        compute(out)?;
        if key.len() <= MAX_KEY_BYTES && memo.ids.len() < CAPACITY {
            memo.ids.insert(key.into(), out[start..].into());
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_once_per_key_and_owner() {
        let owner = WordCacheId::new();
        let mut calls = 0;
        let mut out = Vec::new();
        for _ in 0..3 {
            extend_with::<()>(&owner, b"end", &mut out, |o| {
                calls += 1;
                o.extend([7, 8]);
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(calls, 1);
        assert_eq!(out, [7, 8, 7, 8, 7, 8]);
        // Another instance (a clone included) does not see these entries.
        let other = owner.clone();
        extend_with::<()>(&other, b"end", &mut out, |o| {
            calls += 1;
            o.push(9);
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(out.last(), Some(&9));
    }

    #[test]
    fn an_error_is_passed_on_and_not_remembered() {
        let owner = WordCacheId::new();
        let mut out = vec![1];
        let err = extend_with(&owner, b"x", &mut out, |o| {
            o.push(5);
            Err("bad")
        });
        assert_eq!(err, Err("bad"));
        let mut calls = 0;
        extend_with::<()>(&owner, b"x", &mut out, |o| {
            calls += 1;
            o.push(6);
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 1);
    }
}
