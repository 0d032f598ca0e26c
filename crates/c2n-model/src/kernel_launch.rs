//! The launch shape (grid and block) of each CUDA kernel of ours, kept apart from the launch
//! itself so that the CUDA wrappers and the CPU emulation tests
//! (`tests/kernels_emulated.rs`, `tools/cuda-emulator/`) launch the kernels the same way.
//! Compiled without the `cuda` feature too; none of these functions touches a device.

/// Blocks in the grid and threads in a block, `[x, y, z]` each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchShape {
    pub grid: [u32; 3],
    pub block: [u32; 3],
}

impl LaunchShape {
    fn new(grid: [usize; 3], block: [u32; 3]) -> Self {
        let grid = grid.map(|g| u32::try_from(g.max(1)).unwrap_or(u32::MAX));
        Self { grid, block }
    }
}

/// 256-thread blocks for a grid-stride loop over `n` elements, at most 16 blocks per SM of an
/// H100 (more only add scheduling): dropout, GELU backward, AdamW.
pub fn grid_stride(n: usize) -> LaunchShape {
    LaunchShape::new([n.div_ceil(256).min(132 * 16), 1, 1], [256, 1, 1])
}

/// `c2n_layer_norm_bwd_rows`: one block per row.
pub fn layer_norm_backward_rows(rows: usize, width: usize) -> LaunchShape {
    LaunchShape::new([rows, 1, 1], [if width < 1024 { 128 } else { 1024 }, 1, 1])
}

/// Blocks of 32 columns × 32 row lanes: `c2n_layer_norm_bwd_params` and `c2n_column_sum_*`.
pub fn column_blocks(cols: usize) -> LaunchShape {
    LaunchShape::new([cols.div_ceil(32), 1, 1], [32, 32, 1])
}

/// `c2n_row_top_k`: one 512-thread block per row.
pub fn row_top_k(rows: usize) -> LaunchShape {
    LaunchShape::new([rows, 1, 1], [512, 1, 1])
}

/// `c2n_kv_reorder_append_*`: one block per (row, head).
pub fn kv_reorder_append(rows: usize, heads: usize) -> LaunchShape {
    LaunchShape::new([rows * heads, 1, 1], [256, 1, 1])
}

/// Rows (one warp each) in a block of `c2n_attention_probs_*`.
pub const ATTENTION_ROWS_PER_BLOCK: usize = 8;

/// `c2n_attention_probs_fwd_*` / `_bwd_*`: one warp per row.
pub fn attention_probs(rows: usize) -> LaunchShape {
    LaunchShape::new(
        [rows.div_ceil(ATTENTION_ROWS_PER_BLOCK), 1, 1],
        [32 * ATTENTION_ROWS_PER_BLOCK as u32, 1, 1],
    )
}

/// Threads of a `c2n_slot_attention_step_f32` block: the largest head width it takes.
pub const SLOT_ATTENTION_THREADS: u32 = 128;

/// `c2n_slot_attention_step_f32`: one block per (row, head).
pub fn slot_attention(rows: usize, heads: usize) -> LaunchShape {
    LaunchShape::new([rows * heads, 1, 1], [SLOT_ATTENTION_THREADS, 1, 1])
}

/// Threads of a `c2n_grouped_cross_attention_f32` block: the largest head width it takes.
pub const CROSS_ATTENTION_THREADS: u32 = 128;

/// `c2n_grouped_cross_attention_f32`: one block per (entry, head).
pub fn grouped_cross_attention(entries: usize, heads: usize) -> LaunchShape {
    LaunchShape::new([entries * heads, 1, 1], [CROSS_ATTENTION_THREADS, 1, 1])
}

/// `c2n_dropout_add_layer_norm_*`: one block per row, as the layer-norm backward rows.
pub fn add_layer_norm_rows(rows: usize, width: usize) -> LaunchShape {
    layer_norm_backward_rows(rows, width)
}

/// Elements one block of a multi-tensor kernel (`c2n_pack_*`, `c2n_adamw_multi_f32`) handles
/// at most: one row of a [`chunk_table`]. At 2¹⁷ CodeBERT's 307 parameters make 1 544 rows
/// (37 KB of table for the pack, 49 KB for AdamW), under the 64 KB up to which the driver is
/// said to queue a copy from pageable memory inline, without staging it (at 2¹⁶: 66 and 88
/// KB); 1 544 blocks of 256 threads still fill an H100's 132 SMs many times over.
pub const PACK_CHUNK_ELEMS: usize = 1 << 17;

/// The chunk table of a multi-tensor kernel: each source `(columns, len)` cut into pieces of at
/// most `chunk` elements, one row per piece: every column advanced to the piece's start
/// (`strides[c]` per element: the element size in bytes for an address, 1 for an element
/// offset), then the piece's length. Sources without elements add no row. `c2n_pack_*` reads
/// rows of (source address, destination offset, length), `c2n_adamw_multi_f32` rows of
/// (parameter address, gradient address, moment offset, length).
pub fn chunk_table<const C: usize>(
    sources: &[([u64; C], usize)],
    strides: [u64; C],
    chunk: usize,
) -> Vec<u64> {
    let chunk = chunk.max(1);
    let mut table = Vec::new();
    for &(columns, len) in sources {
        for start in (0..len).step_by(chunk) {
            for (column, stride) in columns.iter().zip(strides) {
                table.push(column + start as u64 * stride);
            }
            table.push(chunk.min(len - start) as u64);
        }
    }
    table
}

/// The [`chunk_table`] of `c2n_pack_*` for sources `(address, elements)` packed back to back
/// from element 0, addresses advancing by `elem_size` bytes per element.
pub fn pack_chunks(sources: &[(u64, usize)], elem_size: usize, chunk: usize) -> Vec<u64> {
    let mut offset = 0u64;
    let rows: Vec<([u64; 2], usize)> = sources
        .iter()
        .map(|&(address, len)| {
            let row = ([address, offset], len);
            offset += len as u64;
            row
        })
        .collect();
    chunk_table(&rows, [elem_size as u64, 1], chunk)
}

/// A multi-tensor kernel: one 256-thread block per row of a [`chunk_table`].
pub fn multi_tensor(chunks: usize) -> LaunchShape {
    LaunchShape::new([chunks, 1, 1], [256, 1, 1])
}

#[cfg(feature = "cuda")]
impl From<LaunchShape> for candle_core::cuda_backend::cudarc::driver::LaunchConfig {
    fn from(shape: LaunchShape) -> Self {
        let [gx, gy, gz] = shape.grid;
        let [bx, by, bz] = shape.block;
        Self {
            grid_dim: (gx, gy, gz),
            block_dim: (bx, by, bz),
            shared_mem_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_never_empty_and_cover_the_work() {
        assert_eq!(grid_stride(0).grid, [1, 1, 1]);
        assert_eq!(grid_stride(257).grid, [2, 1, 1]);
        assert_eq!(grid_stride(1 << 30).grid, [132 * 16, 1, 1]);
        assert_eq!(column_blocks(768).grid, [24, 1, 1]);
        assert_eq!(column_blocks(33).grid, [2, 1, 1]);
        assert_eq!(attention_probs(9).grid, [2, 1, 1]);
        assert_eq!(kv_reorder_append(0, 12).grid, [1, 1, 1]);
        assert_eq!(layer_norm_backward_rows(5, 768).block, [128, 1, 1]);
        assert_eq!(layer_norm_backward_rows(5, 1024).block, [1024, 1, 1]);
        assert_eq!(multi_tensor(3).grid, [3, 1, 1]);
    }

    #[test]
    fn pack_chunks_cover_each_source_in_bounded_pieces() {
        // 5 f32 at 1000, none at 2000, 3 at 3000: chunks of at most 2.
        let table = pack_chunks(&[(1000, 5), (2000, 0), (3000, 3)], 4, 2);
        let rows: Vec<&[u64]> = table.chunks(3).collect();
        let want: [[u64; 3]; 5] = [
            [1000, 0, 2],
            [1008, 2, 2],
            [1016, 4, 1],
            [3000, 5, 2],
            [3008, 7, 1],
        ];
        assert_eq!(rows, want.iter().map(|r| &r[..]).collect::<Vec<_>>());
        // Two address columns (4-byte elements) and an element offset, chunks of 3.
        let table = chunk_table(&[([100, 200, 7], 4)], [4, 4, 1], 3);
        assert_eq!(table, [100, 200, 7, 3, 112, 212, 10, 1]);
    }
}
