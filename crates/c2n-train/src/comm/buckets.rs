//! Gradient bucketing: named gradients, in sorted-name order, viewed as one virtual flat buffer that is
//! cut into buckets of at most `bucket_bytes`; one all-reduce per bucket.
//!
//! Sorting by name makes the layout identical on every rank whatever order the caller stores its
//! parameters in. A tensor larger than a bucket (the 50 265 × 768 word embedding is 154 MB) spans several
//! buckets, so the staging memory stays bounded by one bucket.

use std::collections::BTreeMap;
use std::ops::Range;

use super::{CommError, CommResult, Communicator, ReduceOp};

/// 25 MiB, PyTorch DDP's default bucket cap.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// The layout of named gradients in buckets; the same on every rank for the same parameter set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPlan {
    names: Vec<String>,
    lens: Vec<usize>,
    /// Start of each parameter in the virtual flat buffer.
    offsets: Vec<usize>,
    total: usize,
    bucket_elems: usize,
}

/// The piece of one parameter that lies in one bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Index of the parameter in [`BucketPlan::names`] order.
    pub param: usize,
    /// Element range inside the parameter.
    pub in_param: Range<usize>,
    /// Element range inside the bucket.
    pub in_bucket: Range<usize>,
}

impl BucketPlan {
    /// Plans buckets of at most `bucket_bytes` (≥ 4) for `(name, element count)` pairs in any order.
    pub fn new<I, S>(params: I, bucket_bytes: usize) -> CommResult<Self>
    where
        I: IntoIterator<Item = (S, usize)>,
        S: Into<String>,
    {
        let bucket_elems = bucket_bytes / std::mem::size_of::<f32>();
        if bucket_elems == 0 {
            return Err(CommError::InvalidInput(format!(
                "bucket size {bucket_bytes} bytes holds no f32"
            )));
        }
        let mut sorted: Vec<(String, usize)> =
            params.into_iter().map(|(n, l)| (n.into(), l)).collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        if let Some(pair) = sorted.windows(2).find(|w| w[0].0 == w[1].0) {
            return Err(CommError::InvalidInput(format!(
                "parameter name `{}` appears twice",
                pair[0].0
            )));
        }
        let mut offsets = Vec::with_capacity(sorted.len());
        let mut total = 0usize;
        for (_, len) in &sorted {
            offsets.push(total);
            total += len;
        }
        let (names, lens) = sorted.into_iter().unzip();
        Ok(Self {
            names,
            lens,
            offsets,
            total,
            bucket_elems,
        })
    }

    /// Parameter names in layout (sorted) order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Element count of each parameter, in layout order.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    /// Total number of elements over all parameters.
    pub fn total_len(&self) -> usize {
        self.total
    }

    /// Number of buckets (0 when there are no elements).
    pub fn num_buckets(&self) -> usize {
        self.total.div_ceil(self.bucket_elems)
    }

    /// Range of bucket `b` in the virtual flat buffer.
    pub fn bucket_range(&self, b: usize) -> Range<usize> {
        let start = (b * self.bucket_elems).min(self.total);
        start..(start + self.bucket_elems).min(self.total)
    }

    /// The parameter pieces that make up bucket `b`, in order.
    pub fn segments(&self, b: usize) -> Vec<Segment> {
        let range = self.bucket_range(b);
        // First parameter whose end lies past the bucket start.
        let first = self
            .offsets
            .partition_point(|&off| off <= range.start)
            .saturating_sub(1);
        let mut out = Vec::new();
        for param in first..self.names.len() {
            let (start, end) = (self.offsets[param], self.offsets[param] + self.lens[param]);
            if start >= range.end {
                break;
            }
            let lo = start.max(range.start);
            let hi = end.min(range.end);
            if lo < hi {
                out.push(Segment {
                    param,
                    in_param: lo - start..hi - start,
                    in_bucket: lo - range.start..hi - range.start,
                });
            }
        }
        out
    }

    /// Checks that `grads` (layout order) have the planned lengths.
    fn check_lengths(&self, lens: impl ExactSizeIterator<Item = usize>) -> CommResult<()> {
        if lens.len() != self.lens.len() {
            return Err(CommError::InvalidInput(format!(
                "{} gradients given, the plan has {}",
                lens.len(),
                self.lens.len()
            )));
        }
        for (i, len) in lens.enumerate() {
            if len != self.lens[i] {
                return Err(CommError::InvalidInput(format!(
                    "gradient `{}` has {len} elements, the plan says {}",
                    self.names[i], self.lens[i]
                )));
            }
        }
        Ok(())
    }

    /// Scales every gradient by `scale`, reduces bucket by bucket with `op`, and writes the result back.
    ///
    /// `grads` are in layout order ([`names`](Self::names)). With token weighting, pass the rank's
    /// `grad_scale` and [`ReduceOp::Sum`]; for plain DDP averaging pass `1.0` and [`ReduceOp::Avg`].
    pub fn all_reduce(
        &self,
        comm: &(impl Communicator + ?Sized),
        grads: &mut [&mut [f32]],
        scale: f32,
        op: ReduceOp,
    ) -> CommResult<()> {
        self.check_lengths(grads.iter().map(|g| g.len()))?;
        if comm.world_size() == 1 && scale == 1.0 {
            return Ok(()); // nothing to exchange, nothing to scale
        }
        let mut bucket = Vec::with_capacity(self.bucket_elems.min(self.total));
        for b in 0..self.num_buckets() {
            let segments = self.segments(b);
            bucket.clear();
            for s in &segments {
                let part = &grads[s.param][s.in_param.clone()];
                if scale == 0.0 {
                    // An empty shard contributes nothing, even if its gradient is 0/0 = NaN.
                    bucket.resize(bucket.len() + part.len(), 0.0);
                } else {
                    bucket.extend(part.iter().map(|g| g * scale));
                }
            }
            comm.all_reduce(&mut bucket, op)?;
            for s in &segments {
                grads[s.param][s.in_param.clone()].copy_from_slice(&bucket[s.in_bucket.clone()]);
            }
        }
        Ok(())
    }

    /// [`all_reduce`](Self::all_reduce) with [`ReduceOp::Sum`] on a name → gradient map, which must hold
    /// exactly the planned names.
    pub fn sync_named(
        &self,
        comm: &(impl Communicator + ?Sized),
        grads: &mut BTreeMap<String, Vec<f32>>,
        scale: f32,
    ) -> CommResult<()> {
        if grads.len() != self.names.len() || !self.names.iter().all(|n| grads.contains_key(n)) {
            let unknown: Vec<&String> = grads.keys().filter(|k| !self.names.contains(k)).collect();
            let missing: Vec<&String> = self
                .names
                .iter()
                .filter(|n| !grads.contains_key(*n))
                .collect();
            return Err(CommError::InvalidInput(format!(
                "gradient names differ from the plan: missing {missing:?}, unknown {unknown:?}"
            )));
        }
        // BTreeMap iterates in sorted order, which is the plan's layout order.
        let mut views: Vec<&mut [f32]> = grads.values_mut().map(Vec::as_mut_slice).collect();
        self.all_reduce(comm, &mut views, scale, ReduceOp::Sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::SingleComm;

    #[test]
    fn segments_cover_every_element_once_in_sorted_order() {
        // 3 + 5 + 0 + 2 = 10 elements, 4 per bucket (16 bytes): buckets [0,4) [4,8) [8,10).
        let plan = BucketPlan::new([("c", 2), ("a", 3), ("b", 5), ("bb", 0)], 16).unwrap();
        assert_eq!(plan.names(), ["a", "b", "bb", "c"]);
        assert_eq!(plan.num_buckets(), 3);
        let mut seen = vec![0usize; plan.total_len()];
        for b in 0..plan.num_buckets() {
            let range = plan.bucket_range(b);
            let mut filled = 0;
            for s in plan.segments(b) {
                assert_eq!(s.in_bucket.start, filled, "segments are contiguous");
                filled = s.in_bucket.end;
                for i in s.in_param.clone() {
                    seen[plan.offsets[s.param] + i] += 1;
                }
            }
            assert_eq!(filled, range.len());
        }
        assert!(seen.iter().all(|&n| n == 1), "{seen:?}");
        assert_eq!(
            plan.segments(1),
            vec![Segment {
                param: 1,
                in_param: 1..5,
                in_bucket: 0..4
            },]
        );
    }

    #[test]
    fn single_rank_scale_round_trips_through_buckets() {
        let plan = BucketPlan::new([("w", 7), ("b", 3)], 12).unwrap();
        let mut grads = BTreeMap::from([
            (
                "w".to_string(),
                (0..7).map(|i| i as f32).collect::<Vec<_>>(),
            ),
            ("b".to_string(), vec![10.0, 11.0, 12.0]),
        ]);
        plan.sync_named(&SingleComm, &mut grads, 0.5).unwrap();
        assert_eq!(grads["w"], vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]);
        assert_eq!(grads["b"], vec![5.0, 5.5, 6.0]);
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(BucketPlan::new([("a", 1), ("a", 2)], 16).is_err());
        assert!(BucketPlan::new([("a", 1)], 3).is_err());
        let plan = BucketPlan::new([("a", 2)], 16).unwrap();
        let mut wrong_len = BTreeMap::from([("a".to_string(), vec![1.0])]);
        let err = plan
            .sync_named(&SingleComm, &mut wrong_len, 1.0)
            .unwrap_err();
        assert!(err.to_string().contains("`a` has 1 elements"), "{err}");
        let mut wrong_name = BTreeMap::from([("z".to_string(), vec![1.0, 2.0])]);
        let err = plan
            .sync_named(&SingleComm, &mut wrong_name, 1.0)
            .unwrap_err();
        assert!(err.to_string().contains("missing [\"a\"]"), "{err}");
    }
}
