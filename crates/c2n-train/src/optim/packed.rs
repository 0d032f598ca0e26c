//! Adam moments of many parameters packed into flat 1-D chunks, so that one elementwise op
//! updates a whole chunk instead of one parameter tensor.
//!
//! On a GPU every Candle op costs a fixed ~10 µs of dispatch (allocation, launch,
//! bookkeeping); updating ~200 parameter tensors one by one costs ~15 such ops each. A chunk
//! holds parameters that can share every op of an update: the same dtype and device (one
//! tensor), the same weight-decay group (one decay factor) and the same step count (one
//! bias-corrected step size). Members lie back to back in name order.
//!
//! Chunks are bounded in size (a single larger parameter gets a chunk of its own) because an
//! update holds about five chunk-sized temporaries at once, and because of how each device
//! allocates them:
//! * on a GPU, [`GPU_MAX_CHUNK_ELEMS`] (32 Mi elements, 128 MiB in f32): ~6 chunks cover all
//!   172.5 M CodeBERT parameters, so the per-chunk dispatch cost is negligible, and the
//!   temporaries (~640 MiB) are about what the per-tensor update needed for the 38.6 M-element
//!   word embedding anyway;
//! * on the CPU, [`CPU_MAX_CHUNK_ELEMS`] (4 Mi elements, 16 MiB in f32): the allocator serves
//!   buffers below 32 MiB from memory it already has, while every larger temporary is a fresh
//!   `mmap` whose page faults dominate (measured on the full model: ~6.3 s per step with 32 Mi
//!   chunks against ~3.5 s with 4 Mi ones and ~3.9 s per tensor), and dispatch is cheap there.

use super::ParamGroup;
use crate::{Result, TrainError};
use candle_core::{DType, DeviceLocation, Tensor, Var};

/// Default bound on the elements of one chunk on a GPU; see the module docs.
pub const GPU_MAX_CHUNK_ELEMS: usize = 1 << 25;
/// Default bound on the elements of one chunk on the CPU; see the module docs.
pub const CPU_MAX_CHUNK_ELEMS: usize = 1 << 22;

/// The bound on a chunk's elements: a fixed one, or (`None`) the default of its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChunkBound(pub Option<usize>);

impl ChunkBound {
    fn of(self, key: &ChunkKey) -> usize {
        self.0.unwrap_or(match key.device {
            DeviceLocation::Cpu => CPU_MAX_CHUNK_ELEMS,
            _ => GPU_MAX_CHUNK_ELEMS,
        })
    }
}

/// What parameters must have in common to be updated by the same flat ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ChunkKey {
    pub dtype: DType,
    pub device: DeviceLocation,
    pub group: ParamGroup,
    pub step: u64,
}

/// Partitions `items` (`(parameter index, key, elements)`, in name order) into chunks of
/// equal keys, each within `bound` unless a single parameter is larger.
/// Only the equivalence of keys matters, so when every member's step advances by one the
/// plan stays the same and the chunks built for it can be reused.
pub(super) fn plan(
    items: impl IntoIterator<Item = (usize, ChunkKey, usize)>,
    bound: ChunkBound,
) -> Vec<Vec<usize>> {
    struct Open {
        key: ChunkKey,
        members: Vec<usize>,
        elems: usize,
    }
    let mut open: Vec<Open> = Vec::new();
    let mut closed = Vec::new();
    for (index, key, elems) in items {
        match open.iter_mut().find(|o| o.key == key) {
            Some(o) if o.elems.saturating_add(elems) > bound.of(&key) => {
                closed.push(std::mem::replace(&mut o.members, vec![index]));
                o.elems = elems;
            }
            Some(o) => {
                o.members.push(index);
                o.elems += elems;
            }
            None => open.push(Open {
                key,
                members: vec![index],
                elems,
            }),
        }
    }
    closed.extend(open.into_iter().map(|o| o.members));
    closed
}

/// One chunk: member parameter indices and their moments, flat and back to back.
struct Chunk {
    members: Vec<usize>,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// Where a parameter's moments live.
#[derive(Debug, Clone, Copy)]
struct Home {
    chunk: usize,
    offset: usize,
}

/// The moments of all parameters with state, in chunks; indices are those of the
/// optimizer's name-sorted parameter list, `vars[i]` gives shapes, dtypes and devices.
pub(super) struct PackedMoments {
    chunks: Vec<Chunk>,
    homes: Vec<Option<Home>>,
}

impl PackedMoments {
    /// No state for any of `n_params` parameters.
    pub fn new(n_params: usize) -> Self {
        Self {
            chunks: Vec::new(),
            homes: vec![None; n_params],
        }
    }

    /// Builds chunks from per-parameter moments (any shape; flattened here), e.g. loaded
    /// from a checkpoint. `layout` must list exactly the parameters that have `pieces`.
    pub fn from_pieces(
        layout: &[Vec<usize>],
        pieces: &[Option<(Tensor, Tensor)>],
        vars: &[Var],
    ) -> Result<Self> {
        let chunks = layout
            .iter()
            .map(|members| {
                build_chunk(members, vars, |i| {
                    let (m, v) = pieces[i].as_ref().ok_or_else(|| {
                        TrainError::InvalidInput(format!("no moments for parameter {i}"))
                    })?;
                    Ok(Some((m.flatten_all()?, v.flatten_all()?)))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut packed = Self::new(vars.len());
        packed.set_chunks(chunks, vars);
        Ok(packed)
    }

    /// The index of the chunk holding parameter `i`, if it has state.
    pub fn chunk_of(&self, i: usize) -> Option<usize> {
        self.homes[i].map(|h| h.chunk)
    }

    /// Whether every list of `layout` is exactly one existing chunk (then no repacking).
    pub fn holds_exactly(&self, layout: &[Vec<usize>]) -> bool {
        layout.iter().all(|members| {
            self.chunk_of(members[0])
                .is_some_and(|c| self.chunks[c].members == *members)
        })
    }

    /// The moments of parameter `i` shaped like it (views into its chunk).
    pub fn get(&self, i: usize, var: &Var) -> Result<Option<(Tensor, Tensor)>> {
        let Some((m, v)) = self.flat(i, var)? else {
            return Ok(None);
        };
        Ok(Some((m.reshape(var.shape())?, v.reshape(var.shape())?)))
    }

    /// The flat moments of chunk `c`.
    pub fn chunk_moments(&self, c: usize) -> (&Tensor, &Tensor) {
        (&self.chunks[c].exp_avg, &self.chunks[c].exp_avg_sq)
    }

    /// Replaces the first moment of chunk `c` (same length).
    pub fn set_exp_avg(&mut self, c: usize, exp_avg: Tensor) {
        self.chunks[c].exp_avg = exp_avg;
    }

    /// Replaces the second moment of chunk `c` (same length).
    pub fn set_exp_avg_sq(&mut self, c: usize, exp_avg_sq: Tensor) {
        self.chunks[c].exp_avg_sq = exp_avg_sq;
    }

    /// Repacks so that every list of `layout` is one chunk. Fresh parameters (no state yet)
    /// start from zero moments. Parameters with state that are in no list keep it: those
    /// sharing an old chunk with a listed parameter move to new chunks planned with `key_of`,
    /// old chunks with no listed member stay as they are. Nothing changes on error.
    pub fn rearrange(
        &mut self,
        layout: &[Vec<usize>],
        vars: &[Var],
        key_of: impl Fn(usize) -> ChunkKey,
        bound: ChunkBound,
    ) -> Result<()> {
        let mut listed = vec![false; vars.len()];
        for &i in layout.iter().flatten() {
            listed[i] = true;
        }
        let affected: Vec<bool> = self
            .chunks
            .iter()
            .map(|c| c.members.iter().any(|&i| listed[i]))
            .collect();
        let left_behind = (0..vars.len())
            .filter(|&i| !listed[i] && self.chunk_of(i).is_some_and(|c| affected[c]))
            .map(|i| (i, key_of(i), vars[i].elem_count()));
        let mut lists = layout.to_vec();
        lists.extend(plan(left_behind, bound));

        let mut chunks = Vec::with_capacity(lists.len() + self.chunks.len());
        for members in &lists {
            let same = self
                .chunk_of(members[0])
                .filter(|&c| self.chunks[c].members == *members);
            chunks.push(match same {
                Some(c) => self.chunks[c].clone_handles(),
                None => build_chunk(members, vars, |i| self.flat(i, &vars[i]))?,
            });
        }
        for (chunk, affected) in self.chunks.iter().zip(affected) {
            if !affected {
                chunks.push(chunk.clone_handles());
            }
        }
        self.set_chunks(chunks, vars);
        Ok(())
    }

    /// 1-D views of parameter `i`'s moments.
    fn flat(&self, i: usize, var: &Var) -> Result<Option<(Tensor, Tensor)>> {
        let Some(home) = self.homes[i] else {
            return Ok(None);
        };
        let chunk = &self.chunks[home.chunk];
        let n = var.elem_count();
        Ok(Some((
            chunk.exp_avg.narrow(0, home.offset, n)?,
            chunk.exp_avg_sq.narrow(0, home.offset, n)?,
        )))
    }

    fn set_chunks(&mut self, chunks: Vec<Chunk>, vars: &[Var]) {
        self.homes = vec![None; vars.len()];
        for (c, chunk) in chunks.iter().enumerate() {
            let mut offset = 0;
            for &i in &chunk.members {
                self.homes[i] = Some(Home { chunk: c, offset });
                offset += vars[i].elem_count();
            }
        }
        self.chunks = chunks;
    }
}

impl Chunk {
    /// Another handle on the same tensors (Candle tensors are reference-counted).
    fn clone_handles(&self) -> Chunk {
        Chunk {
            members: self.members.clone(),
            exp_avg: self.exp_avg.clone(),
            exp_avg_sq: self.exp_avg_sq.clone(),
        }
    }
}

/// Concatenates the members' flat moments; `piece(i)` gives them, `None` meaning zeros.
fn build_chunk(
    members: &[usize],
    vars: &[Var],
    mut piece: impl FnMut(usize) -> Result<Option<(Tensor, Tensor)>>,
) -> Result<Chunk> {
    let first = vars[members[0]].as_tensor();
    let total: usize = members.iter().map(|&i| vars[i].elem_count()).sum();
    let mut pieces = Vec::with_capacity(members.len());
    for &i in members {
        pieces.push(piece(i)?);
    }
    let (exp_avg, exp_avg_sq) = if pieces.iter().all(Option::is_none) {
        let zeros = || Tensor::zeros(total, first.dtype(), first.device());
        (zeros()?, zeros()?)
    } else {
        let mut ms = Vec::with_capacity(members.len());
        let mut vs = Vec::with_capacity(members.len());
        for (&i, p) in members.iter().zip(pieces) {
            let (m, v) = match p {
                Some(p) => p,
                None => {
                    let var = &vars[i];
                    let z = Tensor::zeros(var.elem_count(), var.dtype(), var.device())?;
                    (z.clone(), z)
                }
            };
            ms.push(m);
            vs.push(v);
        }
        (concat_owned(&ms)?, concat_owned(&vs)?)
    };
    Ok(Chunk {
        members: members.to_vec(),
        exp_avg,
        exp_avg_sq,
    })
}

/// `Tensor::cat` into fresh storage; a single piece (which `cat` would hand back as is, still
/// a view keeping its whole old chunk alive) is copied into a buffer of its own size.
fn concat_owned(pieces: &[Tensor]) -> Result<Tensor> {
    if let [single] = pieces {
        let owned = Tensor::zeros(single.elem_count(), single.dtype(), single.device())?;
        owned.slice_set(&single.contiguous()?, 0, 0)?;
        return Ok(owned);
    }
    Ok(Tensor::cat(pieces, 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn key(group: ParamGroup, step: u64) -> ChunkKey {
        ChunkKey {
            dtype: DType::F32,
            device: DeviceLocation::Cpu,
            group,
            step,
        }
    }

    #[test]
    fn plan_groups_by_key_and_bounds_size() {
        let d = key(ParamGroup::Decay, 1);
        let n = key(ParamGroup::NoDecay, 1);
        let later = key(ParamGroup::Decay, 2);
        let items = [
            (0, d, 4),
            (1, n, 1),
            (2, d, 4),
            (3, later, 2),
            (4, d, 9),
            (5, d, 1),
        ];
        let mut got = plan(items, ChunkBound(Some(8)));
        got.sort();
        // 0 and 2 fill 8; 4 (9 > 8) gets its own chunk; 5 starts after 4.
        assert_eq!(got, vec![vec![0, 2], vec![1], vec![3], vec![4], vec![5]]);
        // Advancing every step by one keeps the plan.
        let advanced = items.map(|(i, mut k, e)| {
            k.step += 1;
            (i, k, e)
        });
        let mut again = plan(advanced, ChunkBound(Some(8)));
        again.sort();
        assert_eq!(again, got);
    }

    #[test]
    fn rearrange_keeps_moments_of_parameters_left_out() -> Result<()> {
        let dev = Device::Cpu;
        let vars: Vec<Var> = (0..3)
            .map(|i| Var::new(&[i as f32, 0.0], &dev))
            .collect::<candle_core::Result<_>>()?;
        let pieces: Vec<Option<(Tensor, Tensor)>> = (0..3)
            .map(|i| {
                let m = Tensor::new(&[i as f32, 10.0 + i as f32], &dev)?;
                Ok(Some((m.clone(), m.affine(2.0, 0.0)?)))
            })
            .collect::<Result<_>>()?;
        let mut packed = PackedMoments::from_pieces(&[vec![0, 1, 2]], &pieces, &vars)?;
        assert!(packed.holds_exactly(&[vec![0, 1, 2]]));
        packed.rearrange(
            &[vec![0, 2]],
            &vars,
            |_| key(ParamGroup::Decay, 1),
            ChunkBound(None),
        )?;
        assert!(packed.holds_exactly(&[vec![0, 2]]));
        assert!(packed.holds_exactly(&[vec![1]]));
        for (i, var) in vars.iter().enumerate() {
            let (m, v) = packed.get(i, var)?.expect("state kept");
            let want = pieces[i].as_ref().unwrap();
            assert_eq!(m.to_vec1::<f32>()?, want.0.to_vec1::<f32>()?);
            assert_eq!(v.to_vec1::<f32>()?, want.1.to_vec1::<f32>()?);
        }
        Ok(())
    }
}
