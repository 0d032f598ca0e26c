//! With the `cuda` feature, compiles `kernels/*.cu` to PTX with nvcc (the toolkit the CUDA build
//! of Candle uses too); the CPU build needs nothing.

use std::path::PathBuf;
use std::process::Command;

const KERNELS: &[&str] = &[
    "layer_norm_backward",
    "row_top_k",
    "kv_cache_append",
    "dropout",
    "attention_probs",
    "gelu_backward",
    "column_sum",
    "slot_attention",
    "cross_attention",
];
/// Headers the kernels include.
const HEADERS: &[&str] = &["dropout_rng.cuh", "block_reduce.cuh"];

fn main() {
    println!("cargo:rerun-if-env-changed=CUDA_COMPUTE_CAP");
    for kernel in KERNELS {
        println!("cargo:rerun-if-changed=kernels/{kernel}.cu");
    }
    for header in HEADERS {
        println!("cargo:rerun-if-changed=kernels/{header}");
    }
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let cap: String = std::env::var("CUDA_COMPUTE_CAP")
        .unwrap_or_else(|_| "90".into())
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let nvcc = ["CUDA_ROOT", "CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|root| PathBuf::from(root).join("bin/nvcc"))
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    for kernel in KERNELS {
        let out = out_dir.join(format!("{kernel}.ptx"));
        let status = Command::new(&nvcc)
            .arg("--ptx")
            .arg(format!("--gpu-architecture=compute_{cap}"))
            .arg("-O3")
            .arg("-o")
            .arg(&out)
            .arg(format!("kernels/{kernel}.cu"))
            .status();
        match status {
            Ok(s) if s.success() => {}
            other => panic!(
                "nvcc ({}) could not compile kernels/{kernel}.cu: {other:?}",
                nvcc.display()
            ),
        }
    }
}
