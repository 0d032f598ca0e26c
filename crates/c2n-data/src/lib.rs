//! c2n-data (crate docs are completed below).

pub mod batch;
pub mod cache;
pub mod clean;
pub mod error;
pub mod example;
pub mod features;
pub mod partition;
pub mod pipeline;
pub mod reader;
pub mod record;
pub mod shard;
pub mod stats;
pub mod tokenizer;
pub mod whitespace;

pub use batch::{make_batch, plan_epoch, rank_batches, Batch, BatchConfig, Padding};
pub use cache::{prepare, CacheStatus, Manifest, PrepareRequest, Prepared};
pub use clean::{CleanConfig, CleanReport, Cleaner, CommentStyle, DropReason};
pub use error::{DataError, Result};
pub use example::Example;
pub use features::{featurize, Feature, FeatureConfig, Stage};
pub use pipeline::{
    features_in_memory, read_examples, run_file, PipelineConfig, PipelineOptions, PipelineReport,
};
pub use reader::{read_records, BadLineReason, JsonlLines, ReadReport, Strictness};
pub use record::{Record, TokenRecord};
pub use shard::{FeatureRef, FeatureSet, FeatureStore};
pub use stats::{markdown_table, stats_row, LengthSummary, StatsRow};
pub use tokenizer::{RobertaTokenizer, TokenizerFiles, BOS_ID, EOS_ID, PAD_ID};
pub use whitespace::{normalize_tokens, python_whitespace, Newline};
