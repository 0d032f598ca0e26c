//! The AdamW CUDA kernel (`kernels/adamw.cu`), run from its source on the CPU through the
//! emulator (`tools/cuda-emulator`), against [`AdamW`]'s tensor-op update on the CPU: three
//! steps, both weight-decay groups, bit for bit (the kernel rounds op by op for exactly this).
//!
//! Skipped (with a printed reason) where no C++ compiler is found.

use crate::emulator_support;

use c2n_model::kernel_launch;
use c2n_train::optim::{AdamW, AdamWConfig, Gradients, NamedParams};
use candle_core::{Device, Tensor, Var};
use emulator_support::Emulator;

type AdamWKernel = unsafe extern "C" fn(
    *mut f32,
    *const f32,
    *mut f32,
    *mut f32,
    u64,
    f32,
    f32,
    f32,
    f32,
    f32,
    f32,
    i32,
    f32,
);

fn values(n: usize, salt: u64, scale: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (c2n_model::layers::dropout_uniform(salt, i) * 2.0 - 1.0) * scale)
        .collect()
}

#[test]
fn adamw_kernel_matches_the_tensor_ops_bit_for_bit() {
    let Some(emu) = Emulator::build(&["crates/c2n-train/kernels/adamw.cu"]) else {
        return;
    };
    let kernel: AdamWKernel = unsafe { emu.kernel("c2n_adamw_f32") };
    let config = AdamWConfig {
        weight_decay: 0.01,
        ..AdamWConfig::default()
    };
    let lr = 5e-5;
    // A 70 001-element weight (decays, ragged last block) and a bias (does not decay).
    let specs = [
        ("dense.weight", 70_001usize, true),
        ("dense.bias", 37, false),
    ];
    let dev = Device::Cpu;
    let vars: Vec<Var> = specs
        .iter()
        .enumerate()
        .map(|(i, &(_, n, _))| {
            Var::from_tensor(&Tensor::new(values(n, 20 + i as u64, 0.5), &dev).unwrap()).unwrap()
        })
        .collect();
    let params = NamedParams::new(
        specs
            .iter()
            .zip(&vars)
            .map(|(s, v)| (s.0.to_string(), v.clone())),
    )
    .unwrap();
    let mut optimizer = AdamW::new(&params, config.clone());

    let mut emulated: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = vars
        .iter()
        .map(|v| {
            let p: Vec<f32> = v.as_tensor().to_vec1().unwrap();
            let n = p.len();
            (p, vec![0f32; n], vec![0f32; n])
        })
        .collect();

    for step in 1..=3u64 {
        let mut grads = Gradients::new();
        let step_grads: Vec<Vec<f32>> = specs
            .iter()
            .enumerate()
            .map(|(i, &(_, n, _))| values(n, 100 * step + i as u64, 1e-2))
            .collect();
        for ((name, _, _), g) in specs.iter().zip(&step_grads) {
            grads.insert(*name, Tensor::new(g.as_slice(), &dev).unwrap());
        }
        optimizer.step(&grads, lr).unwrap();

        // The kernel's scalars, derived as the optimizer's CUDA path derives them.
        let bc1 = 1.0 - config.beta1.powf(step as f64);
        let bc2 = 1.0 - config.beta2.powf(step as f64);
        let step_size = lr * bc2.sqrt() / bc1;
        for ((&(_, n, decays), g), (p, m, v)) in specs.iter().zip(&step_grads).zip(&mut emulated) {
            let (pp, gp, mp, vp) = (p.as_mut_ptr(), g.as_ptr(), m.as_mut_ptr(), v.as_mut_ptr());
            let neg_lr_decay = if decays {
                (-(lr * config.weight_decay)) as f32
            } else {
                0.0
            };
            emu.launch(kernel_launch::grid_stride(n), || unsafe {
                kernel(
                    pp,
                    gp,
                    mp,
                    vp,
                    n as u64,
                    config.beta1 as f32,
                    (1.0 - config.beta1) as f32,
                    config.beta2 as f32,
                    (1.0 - config.beta2) as f32,
                    config.eps as f32,
                    (-step_size) as f32,
                    i32::from(decays),
                    neg_lr_decay,
                )
            });
        }
        for ((name, _, _), (var, (p, m, v))) in specs.iter().zip(vars.iter().zip(&emulated)) {
            let want: Vec<f32> = var.as_tensor().to_vec1().unwrap();
            let (want_m, want_v) = optimizer.moments(name).unwrap();
            let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(p), bits(&want), "{name} parameter after step {step}");
            assert_eq!(
                bits(m),
                bits(&want_m.to_vec1::<f32>().unwrap()),
                "{name} first moment"
            );
            assert_eq!(
                bits(v),
                bits(&want_v.to_vec1::<f32>().unwrap()),
                "{name} second moment"
            );
        }
    }
}

type AdamWMultiKernel =
    unsafe extern "C" fn(*const u64, *mut f32, *mut f32, f32, f32, f32, f32, f32, f32, i32, f32);

/// The one-launch update of a moment chunk (`c2n_adamw_multi_f32`, its chunk table) gives
/// every parameter and moment bit for bit what one `c2n_adamw_f32` launch per parameter gives.
#[test]
fn adamw_multi_tensor_kernel_equals_one_launch_per_parameter() {
    let Some(emu) = Emulator::build(&["crates/c2n-train/kernels/adamw.cu"]) else {
        return;
    };
    let single: AdamWKernel = unsafe { emu.kernel("c2n_adamw_f32") };
    let multi: AdamWMultiKernel = unsafe { emu.kernel("c2n_adamw_multi_f32") };
    // Ragged sizes, one over a chunk of the table, an empty one.
    let lens = [140_001usize, 37, 0, kernel_launch::PACK_CHUNK_ELEMS + 1, 5];
    let total: usize = lens.iter().sum();
    let scalars = (
        0.9f32, 0.1f32, 0.999f32, 0.001f32, 1e-8f32, -3e-5f32, 1i32, -5e-7f32,
    );
    let (b1, omb1, b2, omb2, eps, step, decay, lr_decay) = scalars;
    let grads: Vec<Vec<f32>> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| values(n, 300 + i as u64, 1e-2))
        .collect();
    let start: Vec<Vec<f32>> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| values(n, 400 + i as u64, 0.5))
        .collect();
    let moments = |salt: u64, scale: f32| -> Vec<f32> {
        values(total, salt, scale).iter().map(|v| v.abs()).collect()
    };
    let (m0, v0) = (moments(500, 1e-3), moments(501, 1e-5));

    // One launch per parameter, each on its slice of the moments.
    let mut params_a = start.clone();
    let (mut m_a, mut v_a) = (m0.clone(), v0.clone());
    let mut offset = 0;
    for (p, g) in params_a.iter_mut().zip(&grads) {
        let n = p.len();
        let (pp, gp) = (p.as_mut_ptr(), g.as_ptr());
        let (mp, vp) = unsafe { (m_a.as_mut_ptr().add(offset), v_a.as_mut_ptr().add(offset)) };
        emu.launch(kernel_launch::grid_stride(n), || unsafe {
            single(
                pp, gp, mp, vp, n as u64, b1, omb1, b2, omb2, eps, step, decay, lr_decay,
            )
        });
        offset += n;
    }

    // One launch for all of them.
    let mut params_b = start.clone();
    let (mut m_b, mut v_b) = (m0, v0);
    let mut moment_offset = 0u64;
    let rows: Vec<([u64; 3], usize)> = params_b
        .iter_mut()
        .zip(&grads)
        .map(|(p, g)| {
            let row = (
                [p.as_mut_ptr() as u64, g.as_ptr() as u64, moment_offset],
                p.len(),
            );
            moment_offset += p.len() as u64;
            row
        })
        .collect();
    let table = kernel_launch::chunk_table(&rows, [4, 4, 1], kernel_launch::PACK_CHUNK_ELEMS);
    let n_rows = table.len() / 4;
    assert_eq!(n_rows, 2 + 1 + 2 + 1, "chunks of the table");
    let (tp, mp, vp) = (table.as_ptr(), m_b.as_mut_ptr(), v_b.as_mut_ptr());
    emu.launch(kernel_launch::multi_tensor(n_rows), || unsafe {
        multi(tp, mp, vp, b1, omb1, b2, omb2, eps, step, decay, lr_decay)
    });

    let bits = |x: &[f32]| x.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    for (k, (a, b)) in params_a.iter().zip(&params_b).enumerate() {
        assert_eq!(bits(a), bits(b), "parameter {k}");
    }
    assert_eq!(bits(&m_a), bits(&m_b), "first moments");
    assert_eq!(bits(&v_a), bits(&v_b), "second moments");
    assert_ne!(
        bits(&params_a[0]),
        bits(&start[0]),
        "the update changed something"
    );
}
