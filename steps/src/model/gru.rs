//! One-layer GRU (PyTorch `nn.GRU` parameters and gate order), batch first.
//!
//! The input projection of all time steps is one matmul; the recurrence runs in the fused
//! [`GruRecurrence`] op. The reconstruction decoder feeds every step from one vector, either
//! the vector itself ([`Gru::forward_constant`]: one projection) or ML4ITS's interleaved
//! layout of it ([`Gru::forward_interleaved`]: a few column sums per step).

use candle_core::{Device, Result, Tensor};
use candle_nn::VarBuilder;

use super::dense::Dense;
use super::gru_input::InterleavedProjection;
use super::gru_kernel::GruRecurrence;
use super::init::torch_default;

#[derive(Debug, Clone)]
pub struct Gru {
    weight_ih: Tensor,
    weight_hh: Tensor,
    bias_ih: Tensor,
    bias_hh: Tensor,
    hidden: usize,
}

impl Gru {
    /// Keys `weight_ih_l0` [3H, in], `weight_hh_l0` [3H, H], `bias_ih_l0`, `bias_hh_l0` [3H],
    /// as in a PyTorch state dict.
    pub fn new(in_dim: usize, hidden: usize, vb: VarBuilder) -> Result<Gru> {
        let init = torch_default(hidden);
        Ok(Gru {
            weight_ih: vb.get_with_hints((3 * hidden, in_dim), "weight_ih_l0", init)?,
            weight_hh: vb.get_with_hints((3 * hidden, hidden), "weight_hh_l0", init)?,
            bias_ih: vb.get_with_hints(3 * hidden, "bias_ih_l0", init)?,
            bias_hh: vb.get_with_hints(3 * hidden, "bias_hh_l0", init)?,
            hidden,
        })
    }

    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// [B, T, in] -> every hidden state [B, T, H] (h_0 = 0).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let steps = xs.dim(1)?;
        let gi = self.project(xs)?;
        GruRecurrence::apply(&gi, &self.weight_hh, &self.bias_hh, steps)
    }

    /// The same input [B, in] at each of `steps` steps -> [B, steps, H].
    pub fn forward_constant(&self, input: &Tensor, steps: usize) -> Result<Tensor> {
        let gi = self.project(&input.unsqueeze(1)?)?;
        GruRecurrence::apply(&gi, &self.weight_hh, &self.bias_hh, steps)
    }

    /// `input` [B, in] laid out as ML4ITS's decoder input,
    /// `h.repeat_interleave(steps, dim=1).view(B, steps, in)`: step t reads
    /// `h[(t*in + j) / steps]` at position j -> [B, steps, H].
    ///
    /// Each step's input is a few constant runs of h's entries, so its projection is
    /// `sum over runs of h[k] * (sum of W_ih's columns in the run)` ([`InterleavedProjection`])
    /// instead of a [B*steps, in] x [in, 3H] product.
    pub fn forward_interleaved(
        &self,
        input: &Tensor,
        layout: &InterleavedLayout,
    ) -> Result<Tensor> {
        let (_, in_dim) = input.dims2()?;
        if in_dim != layout.in_dim {
            candle_core::bail!(
                "gru: interleaved input has {in_dim} entries, the layout was built for {}",
                layout.in_dim
            );
        }
        let run_weights = layout
            .selector
            .to_dtype(input.dtype())?
            .matmul(&self.weight_ih.t()?)?;
        let gi = InterleavedProjection::apply(
            input,
            &run_weights,
            &self.bias_ih,
            layout.source.clone(),
            layout.steps,
        )?;
        GruRecurrence::apply(&gi, &self.weight_hh, &self.bias_hh, layout.steps)
    }

    /// x W_ih^T + b_ih: [B, T, in] -> [B, T, 3H], as one [B*T, in] x [in, 3H] product.
    fn project(&self, xs: &Tensor) -> Result<Tensor> {
        Dense::apply(xs, &self.weight_ih, &self.bias_ih, false)
    }

    /// The textbook recurrence in plain candle ops: the reference the fused op is tested against.
    #[cfg(test)]
    pub fn forward_reference(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, steps, _) = xs.dims3()?;
        let hid = self.hidden;
        let gi = self.project(xs)?;
        let mut h = Tensor::zeros((batch, hid), xs.dtype(), xs.device())?;
        let mut outputs = Vec::with_capacity(steps);
        for t in 0..steps {
            let gi_t = gi.narrow(1, t, 1)?.squeeze(1)?;
            let gh = h
                .matmul(&self.weight_hh.t()?)?
                .broadcast_add(&self.bias_hh)?;
            let r = candle_nn::ops::sigmoid(&(gi_t.narrow(1, 0, hid)? + gh.narrow(1, 0, hid)?)?)?;
            let z =
                candle_nn::ops::sigmoid(&(gi_t.narrow(1, hid, hid)? + gh.narrow(1, hid, hid)?)?)?;
            let n = (gi_t.narrow(1, 2 * hid, hid)? + (r * gh.narrow(1, 2 * hid, hid)?)?)?.tanh()?;
            h = ((z.ones_like()? - &z)? * n + (z * &h)?)?;
            outputs.push(h.unsqueeze(1)?);
        }
        Tensor::cat(&outputs, 1)
    }
}

/// Where the runs of [`Gru::forward_interleaved`]'s input come from: step t, run r reads
/// `h[source[t*per_step + r]]` at the positions where `selector` row `t*per_step + r` is 1.
/// Steps with fewer runs than `per_step` pad with all-zero selector rows. It depends only
/// on the shapes, so the decoder builds it once rather than on every forward pass.
#[derive(Debug, Clone)]
pub struct InterleavedLayout {
    in_dim: usize,
    steps: usize,
    /// [steps * per_step] indices into h.
    source: Vec<usize>,
    /// [steps * per_step, in_dim] of 0 and 1.
    selector: Tensor,
}

impl InterleavedLayout {
    pub fn new(in_dim: usize, steps: usize, device: &Device) -> Result<InterleavedLayout> {
        if in_dim == 0 || steps == 0 {
            candle_core::bail!(
                "gru: interleaved layout needs entries and steps, got {in_dim} and {steps}"
            );
        }
        let entry = |t: usize, j: usize| (t * in_dim + j) / steps;
        let per_step = (0..steps)
            .map(|t| entry(t, in_dim - 1) - entry(t, 0) + 1)
            .max()
            .unwrap_or(1);
        let mut source = vec![0usize; steps * per_step];
        let mut selector = vec![0f32; steps * per_step * in_dim];
        for t in 0..steps {
            let first = entry(t, 0);
            for r in 0..per_step {
                source[t * per_step + r] = (first + r).min(in_dim - 1);
            }
            for j in 0..in_dim {
                let row = t * per_step + entry(t, j) - first;
                selector[row * in_dim + j] = 1.0;
            }
        }
        Ok(InterleavedLayout {
            in_dim,
            steps,
            source,
            selector: Tensor::from_vec(selector, (steps * per_step, in_dim), device)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::seeded_var_builder;
    use crate::model::linalg::max_abs_diff;
    use candle_core::{Device, Var};
    use candle_nn::VarMap;

    fn grads_match(fused: &Tensor, reference: &Tensor, vars: &[Var], input: &Var) {
        assert!(max_abs_diff(fused, reference) < 1e-5, "forward differs");
        // A non-uniform upstream gradient exercises every output position.
        let weights = Tensor::arange(0f32, fused.elem_count() as f32, fused.device())
            .unwrap()
            .reshape(fused.shape())
            .unwrap()
            .sin()
            .unwrap();
        let g_fused = (fused * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g_ref = (reference * &weights)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        for var in vars.iter().chain([input]) {
            let a = g_fused.get(var).expect("fused gradient");
            let b = g_ref.get(var).expect("reference gradient");
            let scale = b
                .abs()
                .unwrap()
                .flatten_all()
                .unwrap()
                .max(0)
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
                .max(1.0);
            assert!(
                max_abs_diff(a, b) / scale < 1e-4,
                "gradient of {:?} differs by {}",
                var.shape(),
                max_abs_diff(a, b)
            );
        }
    }

    #[test]
    fn fused_recurrence_matches_plain_candle_forward_and_backward() {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let gru = Gru::new(5, 4, seeded_var_builder(&varmap, 3, &device)).unwrap();
        let input =
            Var::from_tensor(&Tensor::randn(0f32, 1.0, (3, 6, 5), &device).unwrap()).unwrap();
        let fused = gru.forward(input.as_tensor()).unwrap();
        assert_eq!(fused.dims(), &[3, 6, 4]);
        let reference = gru.forward_reference(input.as_tensor()).unwrap();
        grads_match(&fused, &reference, &varmap.all_vars(), &input);
    }

    #[test]
    fn scoring_on_plain_tensors_gives_the_training_forward_states() {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let trained = Gru::new(5, 4, seeded_var_builder(&varmap, 3, &device)).unwrap();
        // As a loaded bundle holds them: plain tensors, nothing tracked, no gates saved.
        let plain: std::collections::HashMap<String, Tensor> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(name, var)| (name.clone(), var.as_tensor().detach()))
            .collect();
        let vb = VarBuilder::from_tensors(plain, candle_core::DType::F32, &device);
        let scoring = Gru::new(5, 4, vb).unwrap();
        let xs = Tensor::randn(0f32, 1.0, (3, 6, 5), &device).unwrap();
        let tracked = trained.forward(&xs).unwrap();
        let untracked = scoring.forward(&xs).unwrap();
        assert!(tracked.track_op() && !untracked.track_op());
        assert_eq!(
            tracked.to_vec3::<f32>().unwrap(),
            untracked.to_vec3::<f32>().unwrap()
        );
    }

    #[test]
    fn constant_input_matches_repeated_input() {
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let gru = Gru::new(4, 3, seeded_var_builder(&varmap, 5, &device)).unwrap();
        let input = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4), &device).unwrap()).unwrap();
        let fused = gru.forward_constant(input.as_tensor(), 5).unwrap();
        let repeated = input
            .as_tensor()
            .unsqueeze(1)
            .unwrap()
            .repeat((1, 5, 1))
            .unwrap();
        let reference = gru.forward_reference(&repeated).unwrap();
        grads_match(&fused, &reference, &varmap.all_vars(), &input);
    }

    /// PyTorch's `h.repeat_interleave(T, dim=1).view(B, T, in)`, spelled out.
    fn interleave(h: &Tensor, steps: usize) -> Tensor {
        let (batch, in_dim) = h.dims2().unwrap();
        h.unsqueeze(2)
            .unwrap()
            .broadcast_as((batch, in_dim, steps))
            .unwrap()
            .contiguous()
            .unwrap()
            .reshape((batch, steps, in_dim))
            .unwrap()
    }

    #[test]
    fn interleaved_layout_is_pytorchs_repeat_interleave_then_view() {
        let h = Tensor::new(&[[1f32, 2., 3.]], &Device::Cpu).unwrap();
        // [1,1,2,2,3,3] viewed as 2 steps of 3: the steps read different entries.
        let laid_out: Vec<Vec<f32>> = interleave(&h, 2).squeeze(0).unwrap().to_vec2().unwrap();
        assert_eq!(laid_out, vec![vec![1., 1., 2.], vec![2., 3., 3.]]);
    }

    #[test]
    fn interleaved_input_matches_the_materialised_layout() {
        let device = Device::Cpu;
        // More steps than inputs, fewer, and a ratio that leaves uneven runs.
        for (in_dim, steps) in [(4, 7), (7, 3), (6, 4), (5, 5)] {
            let varmap = VarMap::new();
            let gru = Gru::new(in_dim, 3, seeded_var_builder(&varmap, 9, &device)).unwrap();
            let input =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, in_dim), &device).unwrap()).unwrap();
            let layout = InterleavedLayout::new(in_dim, steps, &device).unwrap();
            let fast = gru.forward_interleaved(input.as_tensor(), &layout).unwrap();
            assert_eq!(fast.dims(), &[2, steps, 3]);
            let reference = gru
                .forward_reference(&interleave(input.as_tensor(), steps))
                .unwrap();
            grads_match(&fast, &reference, &varmap.all_vars(), &input);
        }
    }
}
