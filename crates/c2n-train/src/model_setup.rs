//! Building the model a run starts from, and listing its trainable parameters.

use crate::config::TrainConfig;
use crate::optim::NamedParams;
use crate::{Result, TrainError};
use c2n_data::RobertaTokenizer;
use c2n_model::{load_checkpoint, load_pretrained_encoder, ModelConfig, Seq2Seq};
use candle_core::{DType, Device};
use candle_nn::VarMap;
use std::path::Path;

/// `init = small`: a randomly initialised small model (real vocabulary, hidden 16, init
/// scale [`SMALL_INITIALIZER_RANGE`](crate::pipeline::preset::SMALL_INITIALIZER_RANGE)).
pub const SMALL_INIT: &str = "small";
/// The RoBERTa position table, whose row 1 (`padding_idx`) never receives gradient.
pub const POSITION_EMBEDDINGS: &str = "encoder.embeddings.position_embeddings.weight";

/// The initial model of a run: `small`, a code2nl checkpoint directory, or a pretrained
/// RoBERTa (directory or hub id) with a freshly initialised decoder. Applies the dropout
/// override and the compute dtype.
pub fn build_model(
    init: &str,
    dropout: Option<f32>,
    dtype: DType,
    device: &Device,
) -> Result<Seq2Seq> {
    let model = if init == SMALL_INIT {
        // The preset's init scale: at the Hugging Face 0.02 this tiny model stalls at the
        // unigram distribution (docs/benchmarks.md, section Pipeline).
        let config = ModelConfig {
            initializer_range: crate::pipeline::preset::SMALL_INITIALIZER_RANGE,
            ..ModelConfig::small()
        };
        Seq2Seq::new(&config, &VarMap::new(), device)?
    } else if Path::new(init).is_dir() {
        // A code2nl checkpoint to start from must be as it was written.
        crate::checkpoint_checksums::verify(
            Path::new(init),
            crate::checkpoint_checksums::is_model_file,
        )?;
        match load_checkpoint(init, device) {
            Ok(model) => model,
            Err(as_checkpoint) => load_pretrained_encoder(init, device, |_| {}).map_err(|as_encoder| {
                TrainError::Config(format!(
                    "{init} is neither a code2nl checkpoint ({as_checkpoint}) nor a pretrained encoder ({as_encoder})"
                ))
            })?,
        }
    } else {
        load_pretrained_encoder(init, device, |_| {}).map_err(|e| {
            if init.contains('/') {
                TrainError::from(e)
            } else {
                // A bare name is a legacy hub id (`roberta-base`), or a typo of `small`.
                TrainError::Config(format!(
                    "init `{init}` is not a folder, nor `{SMALL_INIT}` (the built-in random \
                     model), and as a hub id: {e}"
                ))
            }
        })?
    };
    Ok(with_dropout(model, dropout, device)?.with_compute_dtype(dtype))
}

/// The same parameters (shared Vars) with every dropout probability set to `p`.
pub fn with_dropout(model: Seq2Seq, p: Option<f32>, device: &Device) -> Result<Seq2Seq> {
    let Some(p) = p else { return Ok(model) };
    let mut cfg = model.config().clone();
    cfg.hidden_dropout_prob = p;
    cfg.attention_probs_dropout_prob = p;
    cfg.decoder_dropout = p;
    let dtype = model.compute_dtype();
    Ok(Seq2Seq::new(&cfg, model.varmap(), device)?.with_compute_dtype(dtype))
}

/// Refuses a tokenizer whose ids do not all fit the model's embedding table: that pair would
/// otherwise fail later, at some batch, with an id out of range.
pub fn check_tokenizer_fits(tokenizer: &RobertaTokenizer, model: &Seq2Seq) -> Result<()> {
    let (tokens, rows) = (tokenizer.vocab_size(), model.config().vocab_size);
    if tokens > rows {
        // Not a training setting: evaluate and predict check the same.
        return Err(TrainError::InvalidInput(format!(
            "the tokenizer has {tokens} tokens but the model's vocabulary has {rows} \
             (vocab_size in its config.json): they do not belong together (check --tokenizer)"
        )));
    }
    Ok(())
}

/// The model's trainable parameters (the tied embedding once, the pooler included).
pub fn model_params(model: &Seq2Seq) -> Result<NamedParams> {
    let vars = model
        .varmap()
        .data()
        .lock()
        .map_err(|_| TrainError::InvalidInput("the model's VarMap lock is poisoned".into()))?
        .clone();
    let entries = model
        .trainable_var_names()
        .into_iter()
        .map(|name| match vars.get(&name) {
            Some(var) => Ok((name, var.clone())),
            None => Err(TrainError::InvalidInput(format!(
                "the model has no variable `{name}`"
            ))),
        })
        .collect::<Result<Vec<_>>>()?;
    NamedParams::new(entries)
}

/// Applies a training config's init/dropout/precision on `device`.
pub fn model_for(config: &TrainConfig, dtype: DType, device: &Device) -> Result<Seq2Seq> {
    build_model(&config.init, config.dropout, dtype, device)
}

#[cfg(test)]
mod tokenizer_fit_tests {
    use super::*;
    use std::collections::HashMap;

    /// A byte-level BPE of 4 specials + 256 bytes + `<mask>`: 261 tokens.
    fn tokenizer() -> RobertaTokenizer {
        let mut vocab: HashMap<String, u32> = HashMap::new();
        for s in ["<s>", "<pad>", "</s>", "<unk>"] {
            vocab.insert(s.into(), vocab.len() as u32);
        }
        for c in c2n_data::tokenizer::bytes_to_unicode() {
            vocab.insert(c.to_string(), vocab.len() as u32);
        }
        vocab.insert("<mask>".into(), vocab.len() as u32);
        RobertaTokenizer::from_vocab_merges(vocab, Vec::new()).unwrap()
    }

    fn model(vocab_size: usize) -> Seq2Seq {
        let cfg = ModelConfig {
            vocab_size,
            hidden_size: 8,
            num_hidden_layers: 1,
            num_attention_heads: 2,
            intermediate_size: 8,
            max_position_embeddings: 16,
            decoder_layers: 1,
            decoder_ffn_dim: 8,
            ..ModelConfig::small()
        };
        Seq2Seq::new(&cfg, &VarMap::new(), &Device::Cpu).unwrap()
    }

    #[test]
    fn a_tokenizer_larger_than_the_embedding_table_is_refused_by_size() {
        let tok = tokenizer();
        assert_eq!(tok.vocab_size(), 261);
        assert!(check_tokenizer_fits(&tok, &model(261)).is_ok());
        assert!(check_tokenizer_fits(&tok, &model(300)).is_ok());
        let err = check_tokenizer_fits(&tok, &model(100))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("261 tokens") && err.contains("vocabulary has 100"),
            "{err}"
        );
    }
}
