//! Shared pieces of the device binary: JSON-line output, device choice, feature files, stats.

use anyhow::{bail, Context, Result};
use candle_core::Device;
use code2nl::data::Feature;
use code2nl::model::ModelConfig;
use code2nl::train::device::select_device;
use serde_json::{json, Value};
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// `auto`, `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// Prints one result line; `tools/gpu/report.py` reads every stdout line that parses as JSON
/// with a `check` field.
pub fn emit(check: &str, mut fields: Value) {
    if let Value::Object(map) = &mut fields {
        map.insert("check".into(), json!(check));
        map.insert("impl".into(), json!("candle"));
    }
    let mut out = std::io::stdout().lock();
    // A closed stdout must not turn a finished measurement into a panic.
    let _ = writeln!(out, "{fields}");
    let _ = out.flush();
}

pub fn device(spec: &str) -> Result<Device> {
    select_device(spec).with_context(|| format!("device `{spec}`"))
}

/// A short name of the device for the result lines.
pub fn device_name(device: &Device) -> String {
    match device {
        Device::Cpu => "cpu".into(),
        _ if device.is_cuda() => "cuda".into(),
        _ => format!("{device:?}"),
    }
}

pub fn info(args: &DeviceArgs) -> Result<()> {
    let cuda_available = candle_core::utils::cuda_is_available();
    let selected = device(&args.device);
    let free_total = match &selected {
        Ok(d) => crate::memory::device_memory(d),
        Err(_) => None,
    };
    emit(
        "info",
        json!({
            "features": {"cuda": cfg!(feature = "cuda"), "nccl": cfg!(feature = "nccl")},
            "cuda_compiled": cuda_available,
            "device": selected.as_ref().map(device_name).unwrap_or_else(|e| format!("error: {e:#}")),
            "memory_free_total_bytes": free_total,
            // What `C2N_CUDA_FEWER_LAUNCHES=name,…` can select (gpu-check tries them one by one
            // when the fewer-launch parity fails).
            "fewer_launch_kernels": c2n_model::FEWER_LAUNCH_KERNELS,
            "ok": selected.is_ok(),
        }),
    );
    if let Err(e) = selected {
        bail!("{e:#}");
    }
    Ok(())
}

/// `codebert` (172.5 M parameters) or `small` (real vocabulary, hidden 16) for dry runs.
pub fn model_config(preset: &str) -> Result<ModelConfig> {
    match preset {
        "codebert" => Ok(ModelConfig::codebert()),
        "small" => Ok(ModelConfig::small()),
        // The mid-size model of benches/decode.rs (`C2N_DECODE_CONFIG=mid`): CPU-sized, but
        // the network rather than the vocabulary dominates.
        "mid" => Ok(ModelConfig {
            hidden_size: 256,
            num_attention_heads: 4,
            num_hidden_layers: 2,
            intermediate_size: 1024,
            decoder_ffn_dim: 1024,
            ..ModelConfig::codebert()
        }),
        other => bail!("unknown model preset `{other}` (expected codebert, mid or small)"),
    }
}

/// Reads unpadded features, one JSON object per line (`{"idx","source_ids","target_ids",..}`,
/// as `prepare-data` and the `prepare --dump-features` example write them).
pub fn read_features(path: &Path, limit: Option<usize>) -> Result<Vec<Feature>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let line = line.with_context(|| format!("{}:{}", path.display(), n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), n + 1))?;
        let ids = |key: &str| -> Result<Vec<u16>> {
            serde_json::from_value(value[key].clone())
                .with_context(|| format!("{}:{}: field `{key}`", path.display(), n + 1))
        };
        let (source_ids, target_ids) = (ids("source_ids")?, ids("target_ids")?);
        if source_ids.len() < 2 || target_ids.len() < 2 {
            bail!(
                "{}:{}: ids must hold at least <s> and </s>",
                path.display(),
                n + 1
            );
        }
        out.push(Feature {
            idx: value["idx"].as_u64().unwrap_or(n as u64),
            source_bpe_len: source_ids.len() as u32 - 2,
            target_bpe_len: target_ids.len() as u32 - 2,
            source_ids,
            target_ids,
        });
    }
    if out.is_empty() {
        bail!("{}: no features", path.display());
    }
    Ok(out)
}

/// Median of a non-empty list (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Seconds since `start` after waiting for the device's queued work.
pub fn synced_seconds(device: &Device, start: Instant) -> Result<f64> {
    device.synchronize()?;
    Ok(start.elapsed().as_secs_f64())
}
