//! AdamW exactly as transformers 2.5.0 computes it (spec §7.2).
//!
//! Differences from `torch.optim.AdamW` / `candle_nn::AdamW`, all deliberate:
//! * `eps` is added to `sqrt(v)` of the *uncorrected* second moment;
//! * bias correction is folded into the step size, computed on the host in f64;
//! * weight decay is decoupled and applied *after* the Adam update, with the scheduled lr;
//! * a parameter without a gradient is skipped entirely: no state, no step count.
//!
//! Parameter groups follow the reference: names containing `bias` or `LayerNorm.weight` get
//! no weight decay; everything else (including the decoder's `norm*.weight`) does.
//!
//! ## Multi-tensor update
//!
//! The moments live in flat chunks (see `packed.rs`): parameters with the same dtype,
//! device, weight-decay group and step count share one 1-D buffer per moment. A step gathers
//! the chunk's gradients and parameters with one `Tensor::cat` each, runs the update's
//! elementwise ops once on the flat tensors and writes every parameter back with `Var::set`
//! of a view, about 20 dispatched ops per chunk plus three copies per parameter instead of
//! ~15 ops per parameter. The ops are elementwise and the same, in the same order, with the
//! same scalars as a per-tensor update, so every element gets a bit-identical result.
//! The chunks follow the set of parameters that step and their step counts: when a
//! parameter misses a gradient or a resumed state mixes step counts, they are repacked once;
//! steps over the same parameters reuse them. Checkpoints stay per parameter.
//!
//! On a CUDA device with f32 parameters and gradients, each parameter is instead updated by one
//! kernel (`kernels/adamw.cu`, see `adamw_cuda.rs`) in place, with its moments in the chunk:
//! no flat copies, the same op-by-op rounding, bit-identical results
//! (`C2N_CUDA_TRAIN_KERNELS=0` keeps the tensor ops).

use super::packed::{plan, ChunkBound, ChunkKey, PackedMoments};
use super::{Gradients, NamedParams};
use crate::{Result, TrainError};
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Hyper-parameters of [`AdamW`]. Defaults are the reference's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AdamWConfig {
    pub beta1: f64,
    pub beta2: f64,
    /// Added to `sqrt(v)` (not to the bias-corrected root).
    pub eps: f64,
    /// Decoupled weight decay of the decay group.
    pub weight_decay: f64,
    /// Fold `sqrt(1 - β2^t) / (1 - β1^t)` into the step size.
    pub correct_bias: bool,
    /// A parameter whose name contains one of these substrings gets no weight decay.
    pub no_decay: Vec<String>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            correct_bias: true,
            no_decay: vec!["bias".into(), "LayerNorm.weight".into()],
        }
    }
}

/// Which weight-decay group a parameter belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ParamGroup {
    Decay,
    NoDecay,
}

/// The optimizer over a fixed, name-sorted set of parameters.
pub struct AdamW {
    config: AdamWConfig,
    /// Parameter names, sorted (from [`NamedParams`]); indices below refer to this order.
    names: Vec<String>,
    vars: Vec<Var>,
    groups: Vec<ParamGroup>,
    /// Per-parameter step counters; 0 exactly when the parameter has no state.
    steps: Vec<u64>,
    moments: PackedMoments,
    chunk_bound: ChunkBound,
}

#[derive(Serialize, Deserialize)]
struct StateIndex {
    config: AdamWConfig,
    /// Per-parameter step counters; parameters never stepped are absent.
    steps: BTreeMap<String, u64>,
}

const MOMENTS_FILE: &str = "optimizer.safetensors";
const INDEX_FILE: &str = "optimizer.json";

impl AdamW {
    /// Creates the optimizer; no state exists until a parameter first gets a gradient.
    pub fn new(params: &NamedParams, config: AdamWConfig) -> Self {
        let (names, vars): (Vec<String>, Vec<Var>) = params
            .iter()
            .map(|(name, var)| (name.to_string(), var.clone()))
            .unzip();
        let groups = names
            .iter()
            .map(|name| group_of(name, &config.no_decay))
            .collect();
        Self {
            config,
            steps: vec![0; names.len()],
            moments: PackedMoments::new(names.len()),
            names,
            vars,
            groups,
            chunk_bound: ChunkBound(None),
        }
    }

    /// Bounds the elements of one flat moment chunk (default by device:
    /// [`GPU_MAX_CHUNK_ELEMS`](super::GPU_MAX_CHUNK_ELEMS),
    /// [`CPU_MAX_CHUNK_ELEMS`](super::CPU_MAX_CHUNK_ELEMS)); a larger single parameter still
    /// gets a chunk of its own. Results do not depend on it, speed and memory do.
    pub fn with_max_chunk_elems(mut self, max_chunk_elems: usize) -> Self {
        self.chunk_bound = ChunkBound(Some(max_chunk_elems.max(1)));
        self
    }

    /// The configuration in use.
    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The weight-decay group of `name`, if it is one of this optimizer's parameters.
    pub fn group(&self, name: &str) -> Option<ParamGroup> {
        self.index(name).map(|i| self.groups[i])
    }

    /// The step counter of `name` (0 when it never had a gradient).
    pub fn step_count(&self, name: &str) -> u64 {
        self.index(name).map_or(0, |i| self.steps[i])
    }

    /// The first and second moments of `name`, shaped like the parameter, if it has state:
    /// views into the optimizer's flat buffers (no copy), valid until the next step.
    pub fn moments(&self, name: &str) -> Option<(Tensor, Tensor)> {
        let i = self.index(name)?;
        // Views at offsets computed from the same parameters: narrowing and reshaping
        // cannot fail unless the packing itself is broken, which the tests check.
        self.moments.get(i, &self.vars[i]).ok().flatten()
    }

    /// One update with learning rate `lr` (already scheduled). Returns how many parameters
    /// were updated. Gradients for unknown names are an error, missing ones mean "skip".
    /// An unknown name or a wrong shape is found before anything changes.
    pub fn step(&mut self, grads: &Gradients, lr: f64) -> Result<usize> {
        if let Some((name, _)) = grads.iter().find(|(n, _)| self.index(n).is_none()) {
            return Err(TrainError::InvalidInput(format!(
                "gradient for unknown parameter `{name}`"
            )));
        }
        let mut stepping = Vec::with_capacity(grads.len());
        for (i, (name, var)) in self.names.iter().zip(&self.vars).enumerate() {
            let Some(grad) = grads.get(name) else {
                continue;
            };
            if grad.shape() != var.shape() {
                return Err(TrainError::InvalidInput(format!(
                    "gradient of `{name}` has shape {:?}, parameter {:?}",
                    grad.dims(),
                    var.dims()
                )));
            }
            stepping.push(i);
        }
        let layout = plan(
            stepping
                .iter()
                .map(|&i| (i, self.key(i), self.vars[i].elem_count())),
            self.chunk_bound,
        );
        if !self.moments.holds_exactly(&layout) {
            let (vars, groups, steps) = (&self.vars, &self.groups, &self.steps);
            let key_of = |i: usize| key(&vars[i], groups[i], steps[i]);
            self.moments
                .rearrange(&layout, vars, key_of, self.chunk_bound)?;
        }
        for members in &layout {
            self.step_chunk(members, grads, lr)?;
        }
        Ok(stepping.len())
    }

    /// The update of one chunk: the per-tensor arithmetic of the reference, on flat tensors.
    fn step_chunk(&mut self, members: &[usize], grads: &Gradients, lr: f64) -> Result<()> {
        let first = members[0];
        let chunk = self.moments.chunk_of(first).ok_or_else(|| {
            TrainError::InvalidInput(format!("no optimizer state for `{}`", self.names[first]))
        })?;
        #[cfg(feature = "cuda")]
        if self.step_chunk_kernel(members, grads, lr, chunk)? {
            return Ok(());
        }
        let c = &self.config;
        let dtype = self.vars[first].dtype();
        let mut grad_pieces = Vec::with_capacity(members.len());
        for &i in members {
            let grad = grads.get(&self.names[i]).ok_or_else(|| {
                TrainError::InvalidInput(format!("no gradient for `{}`", self.names[i]))
            })?;
            grad_pieces.push(grad.flatten_all()?);
        }
        // Detached: a gradient still carrying a graph would otherwise chain every step's
        // moments to the previous ones and keep them all alive.
        let grad = gather(&grad_pieces, dtype)?.detach();
        drop(grad_pieces);

        let step = self.steps[first] + 1;
        let (m, v) = self.moments.chunk_moments(chunk);
        let (m, v) = (m.clone(), v.clone());
        // Each old moment is released as soon as its successor exists.
        let exp_avg = (m.affine(c.beta1, 0.0)? + grad.affine(1.0 - c.beta1, 0.0)?)?;
        drop(m);
        self.moments.set_exp_avg(chunk, exp_avg.clone());
        let exp_avg_sq = (v.affine(c.beta2, 0.0)? + grad.sqr()?.affine(1.0 - c.beta2, 0.0)?)?;
        drop((v, grad));
        self.moments.set_exp_avg_sq(chunk, exp_avg_sq.clone());
        let denom = exp_avg_sq.sqrt()?.affine(1.0, c.eps)?;
        let mut step_size = lr;
        if c.correct_bias {
            let bc1 = 1.0 - c.beta1.powf(step as f64);
            let bc2 = 1.0 - c.beta2.powf(step as f64);
            step_size = step_size * bc2.sqrt() / bc1;
        }
        let update = exp_avg.div(&denom)?.affine(-step_size, 0.0)?;
        drop(denom);

        let param_pieces = members
            .iter()
            .map(|&i| self.vars[i].as_tensor().flatten_all())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let param = gather(&param_pieces, dtype)?;
        drop(param_pieces);
        let mut new_param = (param + update)?;
        if self.groups[first] == ParamGroup::Decay && c.weight_decay > 0.0 {
            new_param = (&new_param + new_param.affine(-lr * c.weight_decay, 0.0)?)?;
        }
        let mut offset = 0;
        for &i in members {
            let var = &self.vars[i];
            let n = var.elem_count();
            let mut piece = new_param.narrow(0, offset, n)?;
            if piece.dims() != var.dims() {
                piece = piece.reshape(var.shape())?;
            }
            var.set(&piece)?;
            self.steps[i] = step;
            offset += n;
        }
        Ok(())
    }

    /// [`step_chunk`](Self::step_chunk) with the CUDA kernel, one launch per member, in
    /// place: no flat copies of gradients and parameters. `false` (nothing done) where the
    /// kernel does not apply.
    #[cfg(feature = "cuda")]
    fn step_chunk_kernel(
        &mut self,
        members: &[usize],
        grads: &Gradients,
        lr: f64,
        chunk: usize,
    ) -> Result<bool> {
        let first = members[0];
        let member_grads = members
            .iter()
            .map(|&i| {
                grads.get(&self.names[i]).ok_or_else(|| {
                    TrainError::InvalidInput(format!("no gradient for `{}`", self.names[i]))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let (var, dtype) = (&self.vars[first], self.vars[first].dtype());
        if !super::adamw_cuda::usable(dtype, var.device(), &member_grads) {
            return Ok(false);
        }
        let c = &self.config;
        let step = self.steps[first] + 1;
        let mut step_size = lr;
        if c.correct_bias {
            let bc1 = 1.0 - c.beta1.powf(step as f64);
            let bc2 = 1.0 - c.beta2.powf(step as f64);
            step_size = step_size * bc2.sqrt() / bc1;
        }
        let decays = self.groups[first] == ParamGroup::Decay && c.weight_decay > 0.0;
        let scalars = super::adamw_cuda::AdamWScalars {
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            step_size,
            lr_decay: decays.then_some(lr * c.weight_decay),
        };
        let (m, v) = self.moments.chunk_moments(chunk);
        let (m, v) = (m.clone(), v.clone());
        if c2n_model::cuda_fewer_launches_for("adamw_multi") {
            let vars: Vec<&Var> = members.iter().map(|&i| &self.vars[i]).collect();
            let grads: Vec<Tensor> = member_grads.iter().map(|g| g.detach()).collect();
            let grads: Vec<&Tensor> = grads.iter().collect();
            match super::adamw_cuda::step_many(&vars, &grads, &m, &v, scalars) {
                Ok(()) => {
                    for &i in members {
                        self.steps[i] = step;
                    }
                    return Ok(true);
                }
                // The errors it returns come before its launch (one launch per parameter
                // instead), or with C2N_CUDA_SYNC_CHECK=1 from a fault in the kernel, which
                // leaves the device unusable: the per-parameter launches then fail as well.
                Err(e) => c2n_model::cuda_fewer_launches_failed("adamw_multi", &e),
            }
        }
        let mut offset = 0;
        for (&i, grad) in members.iter().zip(member_grads) {
            // Detached: the kernel reads the values only.
            super::adamw_cuda::step_param(&self.vars[i], &grad.detach(), &m, &v, offset, scalars)?;
            self.steps[i] = step;
            offset += self.vars[i].elem_count();
        }
        Ok(true)
    }

    /// Writes `optimizer.safetensors` (moments) and `optimizer.json` (config, step counters)
    /// into `dir`.
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        let mut tensors: HashMap<String, Tensor> = HashMap::new();
        let mut steps = BTreeMap::new();
        for (i, name) in self.names.iter().enumerate() {
            if let Some((m, v)) = self.moments.get(i, &self.vars[i])? {
                tensors.insert(format!("{name}.exp_avg"), m);
                tensors.insert(format!("{name}.exp_avg_sq"), v);
                steps.insert(name.clone(), self.steps[i]);
            }
        }
        let path = dir.join(MOMENTS_FILE);
        c2n_model::save::write_safetensors(&tensors, &path)?;
        let index = StateIndex {
            config: self.config.clone(),
            steps,
        };
        let json = serde_json::to_string_pretty(&index)
            .map_err(|e| TrainError::parse(dir.join(INDEX_FILE), e))?;
        std::fs::write(dir.join(INDEX_FILE), json)
            .map_err(|e| TrainError::io(dir.join(INDEX_FILE), e))
    }

    /// Restores state written by [`AdamW::save_state`]; every stored parameter must exist
    /// with the same shape. The stored config replaces the current one. Nothing changes on
    /// error.
    pub fn load_state(&mut self, dir: &Path, device: &Device) -> Result<()> {
        let index_path = dir.join(INDEX_FILE);
        let text =
            std::fs::read_to_string(&index_path).map_err(|e| TrainError::io(&index_path, e))?;
        let index: StateIndex =
            serde_json::from_str(&text).map_err(|e| TrainError::parse(&index_path, e))?;
        let moments_path = dir.join(MOMENTS_FILE);
        let resume_err = |message: String| TrainError::Resume {
            path: moments_path.clone(),
            message,
        };
        let mut tensors = candle_core::safetensors::load(&moments_path, device)
            .map_err(|e| resume_err(format!("cannot read the optimizer state: {e}")))?;
        for name in index.steps.keys() {
            if self.index(name).is_none() {
                return Err(resume_err(format!("state for unknown parameter `{name}`")));
            }
        }
        let mut steps = vec![0; self.names.len()];
        let mut pieces = vec![None; self.names.len()];
        for (i, (name, var)) in self.names.iter().zip(&self.vars).enumerate() {
            let Some(&step) = index.steps.get(name) else {
                continue;
            };
            let mut take = |suffix: &str| {
                let key = format!("{name}.{suffix}");
                let t = tensors
                    .remove(&key)
                    .ok_or_else(|| resume_err(format!("missing tensor `{key}`")))?;
                if t.shape() != var.shape() {
                    return Err(resume_err(format!(
                        "`{key}` has shape {:?}, parameter {:?}",
                        t.dims(),
                        var.dims()
                    )));
                }
                Ok(t.to_dtype(var.dtype())?)
            };
            let exp_avg = take("exp_avg")?;
            let exp_avg_sq = take("exp_avg_sq")?;
            if step == 0 {
                return Err(resume_err(format!("step count 0 for `{name}` with state")));
            }
            steps[i] = step;
            pieces[i] = Some((exp_avg, exp_avg_sq));
        }
        let layout = plan(
            (0..self.names.len()).filter(|&i| steps[i] > 0).map(|i| {
                (
                    i,
                    key(&self.vars[i], self.groups[i], steps[i]),
                    self.vars[i].elem_count(),
                )
            }),
            self.chunk_bound,
        );
        self.moments = PackedMoments::from_pieces(&layout, &pieces, &self.vars)?;
        self.steps = steps;
        self.config = index.config;
        Ok(())
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    fn key(&self, i: usize) -> ChunkKey {
        key(&self.vars[i], self.groups[i], self.steps[i])
    }
}

fn key(var: &Var, group: ParamGroup, step: u64) -> ChunkKey {
    ChunkKey {
        dtype: var.dtype(),
        device: var.device().location(),
        group,
        step,
    }
}

/// One flat tensor of dtype `dtype` from 1-D pieces; the cast is elementwise, so casting
/// after the concatenation (one op) equals casting each piece.
fn gather(pieces: &[Tensor], dtype: DType) -> Result<Tensor> {
    let same_dtype = pieces.iter().all(|p| p.dtype() == pieces[0].dtype());
    if same_dtype {
        Ok(Tensor::cat(pieces, 0)?.to_dtype(dtype)?)
    } else {
        let cast = pieces
            .iter()
            .map(|p| p.to_dtype(dtype))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&cast, 0)?)
    }
}

fn group_of(name: &str, no_decay: &[String]) -> ParamGroup {
    if no_decay
        .iter()
        .any(|pattern| name.contains(pattern.as_str()))
    {
        ParamGroup::NoDecay
    } else {
        ParamGroup::Decay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_follow_the_reference_name_rule() {
        let c = AdamWConfig::default();
        assert_eq!(
            group_of(
                "encoder.encoder.layer.0.output.LayerNorm.weight",
                &c.no_decay
            ),
            ParamGroup::NoDecay
        );
        assert_eq!(group_of("dense.bias", &c.no_decay), ParamGroup::NoDecay);
        assert_eq!(
            group_of("decoder.layers.0.self_attn.in_proj_bias", &c.no_decay),
            ParamGroup::NoDecay
        );
        // The decoder's norms do not contain `LayerNorm.weight`: decay group (spec §11.13).
        assert_eq!(
            group_of("decoder.layers.0.norm1.weight", &c.no_decay),
            ParamGroup::Decay
        );
        assert_eq!(group_of("dense.weight", &c.no_decay), ParamGroup::Decay);
    }

    #[test]
    fn single_step_matches_the_hand_computed_formula() -> Result<()> {
        let dev = Device::Cpu;
        let var = Var::new(&[1.0f32], &dev)?;
        let params = NamedParams::new([("w".to_string(), var.clone())])?;
        let mut opt = AdamW::new(
            &params,
            AdamWConfig {
                weight_decay: 0.5,
                ..Default::default()
            },
        );
        let mut g = Gradients::new();
        g.insert("w", Tensor::new(&[2.0f32], &dev)?);
        opt.step(&g, 0.1)?;
        // m = 0.2, v = 0.004, denom = sqrt(0.004) + 1e-8, alpha = 0.1*sqrt(0.001)/0.1
        let m = 0.2f64;
        let denom = 0.004f64.sqrt() + 1e-8;
        let alpha = 0.1 * 0.001f64.sqrt() / (1.0 - 0.9);
        let p = 1.0 - alpha * m / denom;
        let p = p - 0.1 * 0.5 * p;
        let got = f64::from(var.as_tensor().to_vec1::<f32>()?[0]);
        assert!((got - p).abs() < 1e-6, "{got} vs {p}");
        assert_eq!(opt.step_count("w"), 1);
        Ok(())
    }
}
