//! Loading weights: code2nl checkpoints and pretrained Hugging Face RoBERTa encoders.
//!
//! `model.safetensors` and `pytorch_model.bin` in both `torch.save` formats are read: the zip
//! format of torch ≥ 1.6 and the legacy format of torch < 1.6 (torch 1.4 is the reference's
//! version). A legacy file that cannot be read gets a conversion command
//! ([`LEGACY_TORCH_HINT`]). Every error names the file and, where relevant, the key.

mod assign;
mod checkpoint;
mod legacy_torch;
mod pretrained;
mod tensor_file;

pub use checkpoint::{
    config_from_weights, find_weights_file, load_checkpoint, load_state_dict, WEIGHTS_FILES,
};
pub use pretrained::{
    load_encoder_weights, load_pretrained_encoder, resolve_pretrained, PretrainedFiles,
};
pub use tensor_file::{detect_format, read_tensors, TensorFileFormat, LEGACY_TORCH_HINT};
