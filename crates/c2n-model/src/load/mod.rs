//! Loading weights: code2nl checkpoints and pretrained Hugging Face RoBERTa encoders.
//!
//! Both `model.safetensors` and zip-format `pytorch_model.bin` (torch ≥ 1.6) are read; a legacy
//! torch file is rejected with a conversion command ([`LEGACY_TORCH_HINT`]). Every error names
//! the file and, where relevant, the key.

mod assign;
mod checkpoint;
mod pretrained;
mod tensor_file;

pub use checkpoint::{find_weights_file, load_checkpoint, load_state_dict, WEIGHTS_FILES};
pub use pretrained::{
    load_encoder_weights, load_pretrained_encoder, resolve_pretrained, PretrainedFiles,
};
pub use tensor_file::{detect_format, read_tensors, TensorFileFormat, LEGACY_TORCH_HINT};
