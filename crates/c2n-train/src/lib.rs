//! # c2n-train
//!
//! Fine-tuning of the code2nl encoder-decoder with the exact semantics of the reference
//! PyTorch scripts (CodeBERT `code2nl`, variant A, and CodeXGLUE code-to-text, variant B):
//! the same optimizer arithmetic, learning rates, loop quirks, evaluation and checkpoint
//! rules, so that a run here and a run there take the same steps.
//!
//! | module | what it reproduces |
//! |---|---|
//! | [`optim`] | transformers-2.5 `AdamW` (ε outside the uncorrected root, bias correction in the step size, decoupled decay after the step, no-decay group by name, parameters without gradient skipped), gradient accumulation, optional clipping |
//! | [`schedule`] | `get_linear_schedule_with_warmup` for variant A (`W = warmup_steps`, `N = train_steps`) and B (`W = 10 %`, first update at lr 0) |
//! | [`loop_plan`] | the two loops as a pure state machine: cycled first pass (A), per-epoch reshuffle (B), gradient accumulation (every GA batches by default, run.py's off-by-one rule on request), the evaluation trigger, `stop_after` |
//! | [`pyrandom`] | CPython's `random.seed` / `random.sample`, for the seeded 1 000-example dev-BLEU subset |
//! | [`checkpoint_policy`] | `checkpoint-last` always, `checkpoint-best-ppl` strict unrounded, `checkpoint-best-bleu` strict on Python-rounded BLEU |
//! | [`evaluate`] | dev loss (f64 sums of `loss × N_act`), batched KV-cached beam search, `dev.output`/`dev.gold`, smoothed BLEU-4 |
//! | [`run_lock`] | (not in the reference) one process at a time in an output folder |
//! | [`train_memory`], [`decode_memory`] | (not in the reference) runs that cannot fit in memory refused up front on the CPU; a device's allocation failure said in words |
//! | [`trainer`] | the loop itself, with progress, JSONL [`metrics`], checkpoints and full resume ([`state`]) |
//! | [`dropout_seeds`] | (not in the reference) one dropout seed per micro-batch and rank from the run's `seed`: same configuration, same masks, on CPU and CUDA, across a resume |
//! | [`config`] | the serde [`config::TrainConfig`] (TOML/JSON, CLI overrides, reference defaults) |
//! | [`comm`] | communicators for data-parallel training |
//! | [`pipeline`] | prepare → train → evaluate dev/test → report for one language, resumable stages, presets, published numbers, curves PNG |
//! | [`sweep`] | TOML grids of pipeline configs run as N child processes, results ranked by dev BLEU |
//!
//! Features: `cuda` (c2n-model's CUDA backend and kernels), `nccl` (the NCCL communicator:
//! one process per GPU under torchrun or srun, else one thread per GPU in this process; the
//! CPU thread backend stays on one device), `mpi` (the MPI communicator for CPU ranks under `mpirun`;
//! needs Open MPI and libclang at build time). The default build is CPU-only, with the
//! single-rank and thread communicators ([`comm`], `docs/distributed.md`).
//!
//! The model must give PyTorch's `padding_idx` behaviour (no lookup gradient into the pad
//! rows of the word and position tables); `c2n-model`'s embeddings do, and
//! `tests/train_parity.rs` checks parameters against the PyTorch reference after every update.
//!
//! ## Example: one reference AdamW update at the scheduled learning rate
//!
//! ```
//! use c2n_train::optim::{AdamW, AdamWConfig, Gradients, NamedParams};
//! use c2n_train::schedule::LinearSchedule;
//! use c2n_train::candle_core::{Device, Tensor, Var}; // the Candle of c2n-model
//!
//! let w = Var::new(&[1.0f32, -1.0], &Device::Cpu)?;
//! let pooler = Var::new(&[0.5f32], &Device::Cpu)?; // never gets a gradient
//! let params = NamedParams::new([("dense.weight".to_string(), w.clone()), ("pooler".to_string(), pooler)])?;
//! let mut opt = AdamW::new(&params, AdamWConfig::default());
//! let schedule = LinearSchedule::variant_a(5e-5, 0, 100);
//! let mut grads = Gradients::new();
//! grads.insert("dense.weight", Tensor::new(&[0.1f32, -0.2], &Device::Cpu)?);
//! assert_eq!(opt.step(&grads, schedule.lr_at(0))?, 1); // only the parameter with a gradient
//! assert_eq!(opt.step_count("pooler"), 0);
//! // The first Adam step moves each coordinate by about lr against its gradient's sign.
//! let moved = w.as_tensor().to_vec1::<f32>()?;
//! assert!((moved[0] - (1.0 - 5e-5)).abs() < 1e-6 && (moved[1] - (-1.0 + 5e-5)).abs() < 1e-6);
//! # Ok::<(), c2n_train::TrainError>(())
//! ```

pub mod checkpoint_checksums;
pub mod checkpoint_dir;
pub mod checkpoint_policy;
pub mod comm;
pub mod config;
pub mod data;
pub mod decode_memory;
pub mod device;
pub mod dropout_seeds;
pub mod early_stopping;
mod error;
pub mod evaluate;
pub mod forward_pass;
pub mod interrupt;
pub mod loop_plan;
pub mod metrics;
pub mod model_setup;
pub mod optim;
pub mod output_dir;
pub mod output_file;
pub mod pipeline;
pub mod progress;
pub mod pyrandom;
pub mod run_lock;
pub mod schedule;
pub mod state;
pub mod sweep;
pub mod tensors;
pub mod train_memory;
pub mod trainer;

pub use error::{Result, TrainError};

// The crates this one's API speaks in (features, the model, BLEU) and the Candle they use,
// so that a project depending on c2n-train alone names them through it.
pub use c2n_data;
pub use c2n_eval;
pub use c2n_model;
pub use c2n_model::{candle_core, candle_nn};
