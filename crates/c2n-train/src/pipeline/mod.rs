//! One command from data to a report: prepare → train → evaluate (dev and test) → report,
//! for one CodeSearchNet language (the `pipeline` example is a thin wrapper).
//!
//! * data: a folder in the reference layout (`{lang}/{train,valid,test}.jsonl`) or the
//!   Hugging Face dataset `google/code_x_glue_ct_code_to_text` (`c2n_data::hub`, feature `hub`); when
//!   the training split is also the dev split (offline training on `valid`), the last
//!   [`holdout`](PipelineConfig::holdout) examples are held out as dev ([`splits`]);
//! * presets ([`preset`]): `codebert` and `roberta` follow the CodeBERT README recipe for
//!   the language; `small` is a random small model with a CPU recipe (minutes on 2 cores);
//! * stages ([`stages`]): each finished stage leaves `OUTPUT/stages/<stage>.json`; a rerun
//!   skips it and says so; an interrupted training resumes from `checkpoint-last`; a rerun
//!   with another configuration or changed source files is refused ([`identity`]), unless
//!   only `dev_limit`, `test_limit` or `progress` changed: then the evaluation whose limit
//!   changed runs again; an earlier attempt that failed before any work binds nothing (its
//!   leftovers are discarded when the settings or data differ);
//! * report ([`report`]): BLEU dev/test (2 decimals and the full value), perplexity, time
//!   and throughput per stage, device, config, the published number next to ours, and a
//!   PNG of the training curves ([`plot`]), as `report.md` + `report.json`.
//!
//! ```
//! use c2n_train::pipeline::{PipelineConfig, Preset};
//! let cfg = PipelineConfig::from_toml_str(r#"
//!     lang = "ruby"
//!     data_dir = "../shared/data/codesearchnet"
//!     train_split = "valid"
//!     preset = "small"
//!     [train]
//!     train_steps = 200
//! "#).unwrap();
//! assert_eq!(cfg.preset, Some(Preset::Small));
//! assert!(cfg.validate().is_ok());
//! // Training on `valid` holds out its last 200 examples as the dev set.
//! assert_eq!(cfg.holdout, 200);
//! ```

pub mod config;
pub mod identity;
pub mod plot;
pub mod plot_text;
pub mod preset;
pub mod report;
pub mod run;
pub mod splits;
pub mod stages;

pub use config::{PipelineConfig, Preset, SmallModel, HUB_DATASET};
pub use report::{PipelineReport, SplitScore, StageTiming, TrainOutcome};
pub use run::{best_checkpoint, choose_preset, run_pipeline, run_pipeline_interruptible};
