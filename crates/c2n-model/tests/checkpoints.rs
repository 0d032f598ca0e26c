//! Checkpoint loading and saving: round trip, tolerated keys, and errors that name the key.

use crate::model_support;

use std::collections::HashMap;
use std::path::Path;

use c2n_model::keys::{state_dict_specs, LM_HEAD_KEY, WORD_EMBEDDINGS_KEY};
use c2n_model::load::{load_state_dict, read_tensors};
use c2n_model::save::state_dict;
use c2n_model::{
    load_checkpoint, load_pretrained_encoder, save_checkpoint, ModelConfig, ModelError, Seq2Seq,
};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use model_support::*;

fn fresh(cfg: &ModelConfig) -> Seq2Seq {
    Seq2Seq::new(cfg, &VarMap::new(), &Device::Cpu).unwrap()
}

fn write(tensors: &HashMap<String, Tensor>, path: &Path) {
    candle_core::safetensors::save(tensors, path).unwrap();
}

fn var_values(model: &Seq2Seq, name: &str) -> Vec<f32> {
    let data = model.varmap().data().lock().unwrap();
    data[name]
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

fn fixture_tensors() -> HashMap<String, Tensor> {
    read_tensors(&small_dir().join("pytorch_model.bin")).unwrap()
}

#[test]
fn state_dict_has_every_reference_key_and_shape() {
    // 311 keys / 309 parameters for the full model (spec §4.6), without allocating it.
    let full = ModelConfig::codebert();
    assert_eq!(state_dict_specs(&full).len(), 311);
    assert_eq!(c2n_model::keys::param_specs(&full).len(), 309);
    let count: usize = c2n_model::keys::param_specs(&full)
        .iter()
        .map(|p| p.shape.iter().product::<usize>())
        .sum();
    assert_eq!(count, 172_503_552);
    // The PyTorch file of the fixture holds exactly our key set with our shapes.
    let tensors = fixture_tensors();
    let cfg = ModelConfig::load(small_dir().join("config.json")).unwrap();
    let specs = state_dict_specs(&cfg);
    assert_eq!(tensors.len(), specs.len());
    for spec in specs {
        assert_eq!(
            tensors[&spec.name].dims(),
            spec.shape.as_slice(),
            "{}",
            spec.name
        );
    }
}

/// The weights get a new file's usual permissions, as `config.json` does (the safetensors
/// writer's temporary file alone would leave them owner-only).
#[cfg(unix)]
#[test]
fn weights_are_as_readable_as_the_config() {
    use std::os::unix::fs::PermissionsExt;
    let model = small_model();
    let dir = tempfile::tempdir().unwrap();
    save_checkpoint(&model, dir.path()).unwrap();
    let mode = |name: &str| {
        std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("model.safetensors"), mode("config.json"));
    // No probe file is left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_run_folder_given_as_checkpoint_names_the_checkpoints_inside() {
    let run = tempfile::tempdir().unwrap();
    save_checkpoint(&small_model(), run.path().join("checkpoint-last")).unwrap();
    let Err(err) = load_checkpoint(run.path(), &Device::Cpu) else {
        panic!("a run folder is no checkpoint");
    };
    let err = err.to_string();
    assert!(
        err.contains("it holds the checkpoints") && err.contains("checkpoint-last"),
        "{err}"
    );
    // A pipeline's output folder: the run's checkpoints are under `train`.
    let pipeline = tempfile::tempdir().unwrap();
    save_checkpoint(
        &small_model(),
        pipeline.path().join("train/checkpoint-last"),
    )
    .unwrap();
    let Err(err) = load_checkpoint(pipeline.path(), &Device::Cpu) else {
        panic!("a pipeline folder is no checkpoint");
    };
    let err = err.to_string();
    assert!(err.contains("train/checkpoint-last"), "{err}");
}

#[test]
fn weights_of_a_diverged_run_are_named_as_such() {
    let dir = tempfile::tempdir().unwrap();
    save_checkpoint(&small_model(), dir.path()).unwrap();
    let file = dir.path().join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&file, &Device::Cpu).unwrap();
    for key in [
        "encoder.embeddings.word_embeddings.weight",
        "lm_head.weight",
    ] {
        let nan = (tensors[key].ones_like().unwrap() * f64::NAN).unwrap();
        tensors.insert(key.to_string(), nan);
    }
    candle_core::safetensors::save(&tensors, &file).unwrap();
    let Err(err) = load_checkpoint(dir.path(), &Device::Cpu) else {
        panic!("NaN weights must be refused");
    };
    assert!(err.to_string().contains("NaN or infinite"), "{err}");
}

#[test]
fn save_then_reload_round_trips_and_writes_bias_and_lm_head() {
    let model = small_model();
    let dir = tempfile::tempdir().unwrap();
    save_checkpoint(&model, dir.path()).unwrap();
    let written = read_tensors(&dir.path().join("model.safetensors")).unwrap();
    let want = fixture_tensors();
    assert_eq!(written.len(), want.len());
    for (key, value) in &want {
        let got = &written[key];
        assert_eq!(got.dims(), value.dims(), "{key}");
        let a = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = value
            .to_dtype(DType::F32)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(a, b, "{key} differs from the PyTorch file");
    }
    let reloaded = load_checkpoint(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(reloaded.config(), model.config());
    for name in model.trainable_var_names() {
        assert_eq!(
            var_values(&model, &name),
            var_values(&reloaded, &name),
            "{name}"
        );
    }
}

#[test]
fn a_plain_hugging_face_config_takes_the_decoder_shape_from_the_weights() {
    // run.py's users copy the encoder's config.json beside its weights: no decoder keys.
    // The small fixture's decoder (2 layers, feed-forward 32) is not the default (6, 2048).
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        small_dir().join("pytorch_model.bin"),
        dir.path().join("pytorch_model.bin"),
    )
    .unwrap();
    let config = std::fs::read_to_string(small_dir().join("config.json")).unwrap();
    let plain: String = config
        .lines()
        .filter(|l| !l.contains("\"decoder_"))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.path().join("config.json"), plain).unwrap();
    let model = load_checkpoint(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(model.config(), small_model().config());
    // A config that names the decoder is taken at its word: a mismatch stays an error.
    let named = config.replace("\"decoder_layers\": 2", "\"decoder_layers\": 3");
    std::fs::write(dir.path().join("config.json"), named).unwrap();
    let err = load_checkpoint(dir.path(), &Device::Cpu)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("decoder.layers.2"), "{err}");
}

#[test]
fn position_ids_buffer_is_tolerated_and_missing_bias_and_lm_head_are_rebuilt() {
    let mut tensors = fixture_tensors();
    tensors.remove("bias");
    tensors.remove(LM_HEAD_KEY);
    tensors.insert(
        "encoder.embeddings.position_ids".into(),
        Tensor::arange(0i64, 514, &Device::Cpu)
            .unwrap()
            .reshape((1, 514))
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    write(&tensors, &path);
    let model = fresh(small_model().config());
    load_state_dict(&model, &path).unwrap();
    assert_eq!(
        var_values(&model, WORD_EMBEDDINGS_KEY),
        var_values(&small_model(), WORD_EMBEDDINGS_KEY)
    );
}

fn load_error(tensors: &HashMap<String, Tensor>) -> (ModelError, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    write(tensors, &path);
    let model = fresh(small_model().config());
    let err = load_state_dict(&model, &path).expect_err("load must fail");
    let text = err.to_string();
    assert!(
        text.contains("broken.safetensors"),
        "error names the file: {text}"
    );
    (err, text)
}

#[test]
fn missing_key_is_an_error_naming_the_key() {
    let mut tensors = fixture_tensors();
    tensors.remove("decoder.layers.1.norm2.bias");
    let (err, text) = load_error(&tensors);
    assert!(matches!(err, ModelError::MissingKey { .. }), "{err:?}");
    assert!(text.contains("decoder.layers.1.norm2.bias"), "{text}");
}

#[test]
fn misshapen_key_is_an_error_naming_the_key_and_shapes() {
    let mut tensors = fixture_tensors();
    tensors.insert(
        "dense.weight".into(),
        Tensor::zeros((16, 15), DType::F32, &Device::Cpu).unwrap(),
    );
    let (err, text) = load_error(&tensors);
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err:?}");
    assert!(
        text.contains("dense.weight") && text.contains("[16, 15]"),
        "{text}"
    );
}

#[test]
fn unexpected_key_is_an_error_naming_the_key() {
    let mut tensors = fixture_tensors();
    tensors.insert(
        "decoder.layers.7.norm1.weight".into(),
        Tensor::zeros(16, DType::F32, &Device::Cpu).unwrap(),
    );
    let (_, text) = load_error(&tensors);
    assert!(
        text.contains("unexpected key `decoder.layers.7.norm1.weight`"),
        "{text}"
    );
}

#[test]
fn lm_head_that_is_not_tied_is_an_error() {
    let mut tensors = fixture_tensors();
    let w = tensors[LM_HEAD_KEY].affine(2.0, 0.0).unwrap();
    tensors.insert(LM_HEAD_KEY.into(), w);
    let (_, text) = load_error(&tensors);
    assert!(text.contains(LM_HEAD_KEY), "{text}");
}

#[test]
fn legacy_torch_file_loads_like_its_safetensors_copy() {
    // torch < 1.6 format (what torch 1.4 writes), lm_head sharing the embedding storage.
    let dir = data_dir().join("legacy");
    let tensors = read_tensors(&dir.join("pytorch_model.bin")).unwrap();
    assert!(tensors.contains_key(LM_HEAD_KEY));
    let from_legacy = load_checkpoint(dir.join("pytorch_model.bin"), &Device::Cpu).unwrap();
    let from_safetensors = load_checkpoint(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    let names = from_legacy.trainable_var_names();
    assert_eq!(
        names.len(),
        tensors.len() - 1,
        "every parameter + lm_head, no bias"
    );
    for name in names {
        assert_eq!(
            var_values(&from_legacy, &name),
            var_values(&from_safetensors, &name),
            "{name}"
        );
    }
}

#[test]
fn a_run_py_checkpoint_folder_without_config_json_loads_from_its_weight_shapes() {
    // run.py saves only pytorch_model.bin: the sizes come from the shapes, the heads from
    // the RoBERTa width (768: 12 heads, as CodeBERT).
    let cfg = ModelConfig {
        vocab_size: 70,
        hidden_size: 768,
        num_hidden_layers: 1,
        num_attention_heads: 12,
        intermediate_size: 48,
        max_position_embeddings: 40,
        decoder_layers: 2,
        decoder_ffn_dim: 24,
        ..ModelConfig::small()
    };
    let model = fresh(&cfg);
    let dir = tempfile::tempdir().unwrap();
    // A DataParallel-style `module.` prefix, as a multi-GPU run.py writes.
    let prefixed: HashMap<String, Tensor> = state_dict(&model)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (format!("module.{k}"), v))
        .collect();
    write(&prefixed, &dir.path().join("pytorch_model.bin"));
    let loaded = load_checkpoint(dir.path(), &Device::Cpu).unwrap();
    assert_eq!(loaded.config(), &cfg);
    for name in model.trainable_var_names() {
        assert_eq!(
            var_values(&model, &name),
            var_values(&loaded, &name),
            "{name}"
        );
    }

    // Hidden 16 (the small fixture) is no RoBERTa width: the error says what is missing
    // instead of guessing the heads.
    let small = tempfile::tempdir().unwrap();
    write(&fixture_tensors(), &small.path().join("model.safetensors"));
    let err = load_checkpoint(small.path(), &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attention heads") && err.contains("config.json"),
        "{err}"
    );
}

#[test]
fn truncated_legacy_torch_file_is_an_error_with_a_conversion_hint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pytorch_model.bin");
    // A pre-1.6 torch.save file starts with a raw pickle (protocol 2): 0x80 0x02.
    std::fs::write(
        &path,
        [0x80u8, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20],
    )
    .unwrap();
    let model = fresh(small_model().config());
    let text = load_state_dict(&model, &path).unwrap_err().to_string();
    assert!(
        text.contains("legacy") && text.contains("torch.save"),
        "{text}"
    );
    assert!(text.contains("pytorch_model.bin"), "{text}");
}

#[test]
fn pretrained_roberta_folder_loads_encoder_and_initialises_decoder_like_the_reference() {
    let source = small_model();
    let cfg = source.config().clone();
    let dir = tempfile::tempdir().unwrap();
    // A RobertaForMaskedLM-style file: `roberta.` prefix, an MLM head, no pooler.
    let mut tensors = HashMap::new();
    for (key, value) in state_dict(&source).unwrap() {
        if let Some(rest) = key.strip_prefix("encoder.") {
            if !rest.starts_with("pooler.") {
                tensors.insert(format!("roberta.{rest}"), value);
            }
        }
    }
    tensors.insert(
        "lm_head.dense.weight".into(),
        Tensor::zeros((16, 16), DType::F32, &Device::Cpu).unwrap(),
    );
    write(&tensors, &dir.path().join("model.safetensors"));
    let mut hf_cfg = cfg.clone();
    hf_cfg.decoder_layers = 6;
    hf_cfg.decoder_ffn_dim = 2048;
    hf_cfg.save(dir.path().join("config.json")).unwrap();

    let model = load_pretrained_encoder(dir.path().to_str().unwrap(), &Device::Cpu, |c| {
        c.decoder_layers = 3;
        c.decoder_ffn_dim = 32;
    })
    .unwrap();
    assert_eq!(model.config().decoder_layers, 3);
    for name in source.trainable_var_names() {
        if name.starts_with("encoder.") && !name.starts_with("encoder.pooler.") {
            assert_eq!(
                var_values(&model, &name),
                var_values(&source, &name),
                "{name}"
            );
        }
    }
    // §4.5: all decoder layers start identical; biases of in_proj/out_proj are zero;
    // LayerNorms are 1/0; in_proj is xavier-uniform bounded.
    for spec in c2n_model::keys::decoder_layer_param_specs(model.config()) {
        let first = var_values(&model, &format!("decoder.layers.0.{}", spec.name));
        for l in 1..3 {
            assert_eq!(
                first,
                var_values(&model, &format!("decoder.layers.{l}.{}", spec.name))
            );
        }
        if spec.name.ends_with("in_proj_bias") || spec.name.ends_with("out_proj.bias") {
            assert!(first.iter().all(|&x| x == 0.0), "{}", spec.name);
        }
        if spec.name.ends_with("in_proj_weight") {
            let bound = (6.0f32 / (48.0 + 16.0)).sqrt();
            assert!(first.iter().all(|x| x.abs() <= bound) && first.iter().any(|&x| x != 0.0));
        }
        if spec.name.starts_with("norm") {
            let want = if spec.name.ends_with("weight") {
                1.0
            } else {
                0.0
            };
            assert!(first.iter().all(|&x| x == want), "{}", spec.name);
        }
    }
}

#[test]
fn pretrained_file_missing_an_encoder_key_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let source = small_model();
    let mut tensors = HashMap::new();
    for (key, value) in state_dict(&source).unwrap() {
        if let Some(rest) = key.strip_prefix("encoder.") {
            tensors.insert(rest.to_string(), value);
        }
    }
    tensors.remove("encoder.layer.1.output.dense.bias");
    write(&tensors, &dir.path().join("model.safetensors"));
    source
        .config()
        .save(dir.path().join("config.json"))
        .unwrap();
    let text = load_pretrained_encoder(dir.path().to_str().unwrap(), &Device::Cpu, |_| {})
        .unwrap_err()
        .to_string();
    assert!(text.contains("encoder.layer.1.output.dense.bias"), "{text}");
}

#[test]
fn codebert_config_json_from_shared_data_is_the_reference_encoder() {
    let shared = std::env::var("C2N_SHARED")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let path = shared.join("data/roberta-base/config.json");
    if !path.is_file() {
        eprintln!("skipping: {} not found (set C2N_SHARED)", path.display());
        return;
    }
    let cfg = ModelConfig::load(&path).unwrap();
    assert_eq!(cfg, ModelConfig::codebert());
}

#[test]
fn damaged_legacy_torch_files_are_errors_never_panics() {
    // Every storage's element count, tensor offset and pickle opcode comes from the file: put
    // a huge count at every offset, and flip each byte of the pickles (the first 6 400 bytes
    // of this fixture; storages follow), and the reader must answer every time. The values it
    // reads may be anything; a panic fails the test.
    let original = std::fs::read(data_dir().join("legacy").join("pytorch_model.bin")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pytorch_model.bin");
    let mut errors = 0;
    // Where our own arithmetic (not Candle's pickle reader) panicked: `read_tensors` reports a
    // caught panic as "(damaged?)".
    let mut caught_in_storages = Vec::new();
    let mut check = |bytes: &[u8], at: usize| {
        std::fs::write(&path, bytes).unwrap();
        if let Err(e) = read_tensors(&path) {
            errors += 1;
            if at >= 6_400 && e.to_string().contains("(damaged?)") {
                caught_in_storages.push(at);
            }
        }
    };
    let huge: u64 = (1 << 62) - 1; // × 4 bytes overflows a usize
    for at in 0..original.len() - 8 {
        let mut bytes = original.clone();
        bytes[at..at + 8].copy_from_slice(&huge.to_le_bytes());
        check(&bytes, at);
    }
    for at in 0..6_400.min(original.len()) {
        let mut bytes = original.clone();
        bytes[at] ^= 0xff;
        check(&bytes, at);
    }
    assert!(
        caught_in_storages.is_empty(),
        "the storage reader panicked at offsets {caught_in_storages:?}"
    );
    // Most of the damage is seen (a count inside a storage's data is just a value).
    assert!(errors > original.len() / 2, "{errors} errors");
}
