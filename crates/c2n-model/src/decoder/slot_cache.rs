//! A self-attention cache that never moves: the slotted layout of incremental decoding.
//!
//! The dense [`KvCache`](super::KvCache) reorders every cached position of every row by the
//! beam at each step: a copy of the whole cache per layer and step, O(t²) over a decode. Here
//! position `p` of a row stays in the physical row that computed it; a small table
//! `slots [rows, t]` says, for every current row, which physical row holds each of its
//! positions. A reorder rewrites only that table (`slots_new[r] = slots_old[origin[r]]`), and
//! the newest position of row `r` goes to physical row `r` (position `t` is new, so no other
//! row references it).
//!
//! On a CUDA device with f32 activations one kernel per layer and step
//! (`kernels/slot_attention.cu`) appends the position, rewrites the table and attends. The
//! tensor-op path gathers the keys and values into the dense layout and attends as the dense
//! cache does, so on the CPU it gives bit-identical results to [`KvCache`](super::KvCache)
//! (the tests compare the two).

use candle_core::{DType, Device, Tensor};

use crate::Result;

/// Positions allocated at the start; the capacity doubles when full.
const INITIAL_CAPACITY: usize = 32;

/// Keys and values in fixed physical rows, `[physical rows, capacity, heads·d]`, and the slot
/// table of the current rows. Not `Clone`: appends write into the buffers in place.
#[derive(Debug)]
pub struct SlotCache {
    keys: Tensor,
    values: Tensor,
    /// u32 `[rows, len]`: the physical row holding each position of each current row, in the
    /// row order before any pending reorder. `None` before the first step.
    slots: Option<Tensor>,
    len: usize,
    heads: usize,
    /// Old row of every new row (u32), applied by the next append.
    pending_origin: Option<Tensor>,
}

/// What [`SlotCache::append`] leaves to the caller.
#[derive(Debug)]
pub enum SlotAttention {
    /// The current rows' keys and values in the dense layout `[rows, heads, t, d]`; the caller
    /// attends (the tensor-op path).
    Gathered { keys: Tensor, values: Tensor },
    /// The attention context `[rows, 1, heads·d]` (heads merged), computed by the kernel.
    Context(Tensor),
}

impl SlotCache {
    /// An empty cache for `rows` rows of `heads` heads of width `head_dim`.
    pub fn new(
        rows: usize,
        heads: usize,
        head_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let shape = (rows.max(1), INITIAL_CAPACITY, heads * head_dim);
        Ok(Self {
            keys: Tensor::zeros(shape, dtype, device)?,
            values: Tensor::zeros(shape, dtype, device)?,
            slots: None,
            len: 0,
            heads,
            pending_origin: None,
        })
    }

    /// Positions cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// New row `i` continues old row `origin[i]` (u32 `[rows']`); composes with a reorder
    /// already pending. Only the slot table will change.
    pub fn reorder(&mut self, origin: &Tensor) -> Result<()> {
        self.pending_origin = Some(match self.pending_origin.take() {
            Some(pending) => pending.index_select(origin, 0)?,
            None => origin.clone(),
        });
        Ok(())
    }

    /// Appends this step's keys and values and returns what attention needs. `q`, `k`, `v`
    /// are `[rows, heads, 1, d]` (`q` already scaled), in the new row order.
    pub fn append(&mut self, q: &Tensor, k: &Tensor, v: &Tensor) -> Result<SlotAttention> {
        let (rows, heads, one, head_dim) = k.dims4()?;
        if heads != self.heads || one != 1 || q.dims() != k.dims() || v.dims() != k.dims() {
            return Err(crate::ModelError::InvalidInput(format!(
                "slot cache append: q {:?}, k {:?}, v {:?} for {} heads",
                q.dims(),
                k.dims(),
                v.dims(),
                self.heads
            )));
        }
        self.make_room(rows)?;
        #[cfg(feature = "cuda")]
        if super::slot_attention_cuda::usable(q, head_dim, self.len) {
            let (ctx, slots) = super::slot_attention_cuda::step(
                q,
                k,
                v,
                &self.keys,
                &self.values,
                self.slots.as_ref(),
                self.pending_origin.as_ref(),
                self.len,
            )?;
            self.advance(slots);
            return Ok(SlotAttention::Context(ctx));
        }
        let width = heads * head_dim;
        let device = k.device().clone();
        let (physical, capacity, _) = self.keys.dims3()?;
        let padded = |x: &Tensor| -> Result<Tensor> {
            let x = x.contiguous()?.reshape((rows, 1, width))?;
            Ok(if rows < physical {
                let pad = Tensor::zeros((physical - rows, 1, width), x.dtype(), &device)?;
                Tensor::cat(&[&x, &pad], 0)?
            } else {
                x
            })
        };
        self.keys.slice_set(&padded(k)?, 1, self.len)?;
        self.values.slice_set(&padded(v)?, 1, self.len)?;
        let own = Tensor::arange(0u32, rows as u32, &device)?.reshape((rows, 1))?;
        let slots = match (&self.slots, &self.pending_origin) {
            (None, _) => own,
            (Some(old), Some(origin)) => Tensor::cat(&[&old.index_select(origin, 0)?, &own], 1)?,
            (Some(old), None) => Tensor::cat(&[old, &own], 1)?,
        };
        let t = self.len + 1;
        let flat = slots
            .broadcast_mul(&Tensor::new(&[[capacity as u32]], &device)?)?
            .broadcast_add(&Tensor::arange(0u32, t as u32, &device)?.reshape((1, t))?)?
            .flatten_all()?;
        let gather = |cache: &Tensor| -> Result<Tensor> {
            Ok(cache
                .reshape((physical * capacity, width))?
                .index_select(&flat, 0)?
                .reshape((rows, t, heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let (keys, values) = (gather(&self.keys)?, gather(&self.values)?);
        self.advance(slots);
        Ok(SlotAttention::Gathered { keys, values })
    }

    fn advance(&mut self, slots: Tensor) {
        self.slots = Some(slots);
        self.pending_origin = None;
        self.len += 1;
    }

    /// Grows the buffers so that `rows` physical rows and one more position fit.
    fn make_room(&mut self, rows: usize) -> Result<()> {
        let (physical, capacity, width) = self.keys.dims3()?;
        let grow = |cache: &Tensor, dim: usize, extra: usize| -> Result<Tensor> {
            let mut shape = [physical, capacity, width];
            shape[dim] = extra;
            let zeros = Tensor::zeros(&shape[..], cache.dtype(), cache.device())?;
            Ok(Tensor::cat(&[cache, &zeros], dim)?)
        };
        if self.len + 1 > capacity {
            self.keys = grow(&self.keys, 1, capacity)?;
            self.values = grow(&self.values, 1, capacity)?;
        }
        if rows > physical {
            let (physical, capacity, width) = self.keys.dims3()?;
            let zeros = Tensor::zeros(
                (rows - physical, capacity, width),
                self.keys.dtype(),
                self.keys.device(),
            )?;
            self.keys = Tensor::cat(&[&self.keys, &zeros], 0)?;
            self.values = Tensor::cat(&[&self.values, &zeros], 0)?;
        }
        Ok(())
    }
}
