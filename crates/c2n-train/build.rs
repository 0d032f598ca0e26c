//! With the `cuda` feature, compiles every `kernels/*.cu` to `$OUT_DIR/<name>.ptx` with nvcc,
//! through the kernel builder Candle's own kernels use (toolkit from `CUDA_ROOT`/`CUDA_HOME`/
//! `CUDA_PATH` or `PATH`, architecture from `CUDA_COMPUTE_CAP` or `nvidia-smi`). The CPU build
//! needs nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "cuda")]
    compile_kernels();
}

#[cfg(feature = "cuda")]
fn compile_kernels() {
    let result = cudaforge::KernelBuilder::new()
        .source_dir("kernels")
        .watch(["kernels"])
        .arg("-O3")
        .build_ptx();
    if let Err(error) = result {
        panic!("could not compile the CUDA kernels in kernels/: {error}");
    }
}
