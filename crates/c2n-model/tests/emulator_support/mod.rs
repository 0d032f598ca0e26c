//! Runs our CUDA kernels' own source on the CPU: compiles `crates/*/kernels/*.cu` as C++ with
//! `tools/cuda-emulator/cuda_emulation.h` (one fiber per CUDA thread, real barriers and warp
//! shuffles) into a shared library, loads it, and launches kernels with the crate's own
//! launch shapes (`c2n_model::kernel_launch`). Needs a C++ compiler (`$CXX`, else `c++`); the
//! tests skip with a printed reason where there is none.
//!
//! Shared by c2n-model's and c2n-train's emulation tests (`#[path]`).

#![allow(dead_code)]

use c2n_model::kernel_launch::LaunchShape;
use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The repository root (this file is compiled from `crates/<crate>/tests`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

type LaunchFn =
    unsafe extern "C" fn(*const u32, *const u32, extern "C" fn(*mut c_void), *mut c_void) -> i32;

/// A loaded library of emulated kernels. Launches are serialised: the emulator's scheduler
/// is global state.
pub struct Emulator {
    library: libloading::Library,
    launch_lock: Mutex<()>,
}

fn compiler() -> Option<String> {
    let candidates = std::env::var("CXX")
        .into_iter()
        .chain(["c++".into(), "g++".into()]);
    candidates.into_iter().find(|cxx| {
        Command::new(cxx)
            .arg("--version")
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

impl Emulator {
    /// Compiles `kernels` (paths relative to the repository root) with the emulator; `None`
    /// (and a printed reason) without a C++ compiler or off Linux/macOS. A compile error
    /// is a test failure.
    pub fn build(kernels: &[&str]) -> Option<Self> {
        if !cfg!(unix) {
            eprintln!("skipped: the CUDA emulator needs ucontext (Unix)");
            return None;
        }
        let Some(cxx) = compiler() else {
            eprintln!("skipped: no C++ compiler ($CXX, c++ or g++) to build the CUDA emulator");
            return None;
        };
        let root = repo_root();
        let emulator_dir = root.join("tools/cuda-emulator");
        let dir = tempfile::tempdir().expect("temporary directory");
        let library_path = dir.path().join("libc2n_emulated_kernels.so");
        let mut command = Command::new(&cxx);
        command
            .args([
                "-std=c++17",
                "-O2",
                "-ffp-contract=off",
                "-fPIC",
                "-shared",
                "-w",
            ])
            .arg("-I")
            .arg(&emulator_dir)
            .arg("-include")
            .arg("cuda_emulation.h");
        for kernel in kernels {
            let path = root.join(kernel);
            command.arg("-I").arg(path.parent().expect("kernel folder"));
        }
        command.args(["-x", "c++"]);
        for kernel in kernels {
            command.arg(root.join(kernel));
        }
        command.arg(emulator_dir.join("cuda_emulation.cpp"));
        command.arg("-o").arg(&library_path);
        let out = command.output().expect("run the C++ compiler");
        assert!(
            out.status.success(),
            "{cxx} could not build the emulated kernels {kernels:?}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SAFETY: the library is ours and has no initialisers with side effects.
        let library =
            unsafe { libloading::Library::new(&library_path) }.expect("load the emulated kernels");
        // A loaded library stays mapped without its file: the folder goes now, since the
        // emulator lives in a static that is never dropped.
        drop(dir);
        Some(Self {
            library,
            launch_lock: Mutex::new(()),
        })
    }

    /// The kernel `name` as a function of type `F`.
    ///
    /// # Safety
    /// `F` must be the kernel's C signature.
    pub unsafe fn kernel<F: Copy>(&self, name: &str) -> F {
        *self
            .library
            .get::<F>(name.as_bytes())
            .unwrap_or_else(|e| panic!("kernel {name}: {e}"))
    }

    /// The panic message of a launch that must fail (a deadlock, a partial-warp shuffle).
    pub fn launch_error(&self, shape: LaunchShape, body: impl Fn()) -> String {
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.launch(shape, body)));
        let message = result.expect_err("the emulated launch should have failed");
        message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default()
    }

    /// Runs `body` once per CUDA thread of every block of `shape` (`body` calls the kernel);
    /// panics when a block deadlocks or the shape is not launchable.
    pub fn launch(&self, shape: LaunchShape, body: impl Fn()) {
        extern "C" fn trampoline<F: Fn()>(context: *mut c_void) {
            // SAFETY: `context` is the `&F` passed below, alive for the whole launch.
            let body = unsafe { &*(context as *const F) };
            body();
        }
        fn context_of<F: Fn()>(body: &F) -> (extern "C" fn(*mut c_void), *mut c_void) {
            (trampoline::<F>, body as *const F as *mut c_void)
        }
        let _guard = self.launch_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `c2n_emu_launch` has this signature (tools/cuda-emulator/cuda_emulation.cpp).
        let launch: LaunchFn = unsafe { self.kernel("c2n_emu_launch") };
        let (function, context) = context_of(&body);
        // SAFETY: both arrays have three elements; `context` outlives the call.
        let status =
            unsafe { launch(shape.grid.as_ptr(), shape.block.as_ptr(), function, context) };
        match status {
            0 => {}
            1 => {
                panic!("emulated kernel deadlocked: threads wait at different barriers ({shape:?})")
            }
            3 => panic!(
                "emulated kernel shuffled in a warp with fewer than 32 live lanes, undefined on a \
                 GPU ({shape:?})"
            ),
            _ => panic!("launch shape not launchable: {shape:?}"),
        }
    }
}
