//! The launch shape (grid and block) of each CUDA kernel of ours, kept apart from the launch
//! itself so that the CUDA wrappers and the CPU emulation tests
//! (`tests/kernel_emulation.rs`, `tools/cuda-emulator/`) launch the kernels the same way.
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
    }
}
