//! Adam (PyTorch's `torch.optim.Adam`, no weight decay), one pass per parameter.
//!
//! candle's `AdamW` spends about fourteen tensor ops per parameter and step, each a pass and
//! an allocation; here the moments are plain vectors updated in place, the gradient is
//! scaled by the clipping factor in the same pass, and each parameter is written once.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use rayon::prelude::*;

use super::linalg::values;

/// Values per rayon task.
const PER_TASK: usize = 1 << 14;

pub struct Adam {
    params: Vec<Param>,
    step: i32,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
}

struct Param {
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    /// PyTorch's defaults: betas (0.9, 0.999), eps 1e-8.
    pub fn new(vars: Vec<Var>, lr: f64) -> Adam {
        let params = vars
            .into_iter()
            .map(|var| {
                let n = var.elem_count();
                Param {
                    var,
                    m: vec![0f32; n],
                    v: vec![0f32; n],
                }
            })
            .collect();
        Adam {
            params,
            step: 0,
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }

    /// One update from `grads` multiplied by `scale` (1, or the clipping factor).
    /// Parameters without a gradient are left alone, their moments too.
    pub fn step(&mut self, grads: &GradStore, scale: f64) -> Result<()> {
        self.step += 1;
        let bias1 = 1.0 - self.beta1.powi(self.step);
        let bias2 = 1.0 - self.beta2.powi(self.step);
        let rule = Rule {
            scale: scale as f32,
            beta1: self.beta1 as f32,
            beta2: self.beta2 as f32,
            // theta -= lr/bias1 * m / (sqrt(v) / sqrt(bias2) + eps), as PyTorch computes it.
            step_size: (self.lr / bias1) as f32,
            inv_sqrt_bias2: (1.0 / bias2.sqrt()) as f32,
            eps: self.eps as f32,
        };
        for param in &mut self.params {
            let Some(grad) = grads.get(param.var.as_tensor()) else {
                continue;
            };
            let grad = grad.contiguous()?;
            let theta = param.var.as_tensor().contiguous()?;
            let updated = {
                let (g, t) = (
                    values(&grad, "adam", "gradient")?,
                    values(&theta, "adam", "parameter")?,
                );
                let mut updated = t.get().to_vec();
                updated
                    .par_chunks_mut(PER_TASK)
                    .zip(param.m.par_chunks_mut(PER_TASK))
                    .zip(param.v.par_chunks_mut(PER_TASK))
                    .zip(g.get().par_chunks(PER_TASK))
                    .for_each(|(((theta, m), v), g)| rule.apply(theta, m, v, g));
                updated
            };
            param
                .var
                .set(&Tensor::from_vec(updated, theta.shape(), theta.device())?)?;
        }
        Ok(())
    }

    pub fn learning_rate(&self) -> f64 {
        self.lr
    }
}

#[derive(Clone, Copy)]
struct Rule {
    scale: f32,
    beta1: f32,
    beta2: f32,
    step_size: f32,
    inv_sqrt_bias2: f32,
    eps: f32,
}

impl Rule {
    fn apply(&self, theta: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        for (((theta, m), v), g) in theta.iter_mut().zip(m).zip(v).zip(g) {
            let g = g * self.scale;
            *m = self.beta1 * *m + (1.0 - self.beta1) * g;
            *v = self.beta2 * *v + (1.0 - self.beta2) * g * g;
            *theta -= self.step_size * *m / (v.sqrt() * self.inv_sqrt_bias2 + self.eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};

    #[test]
    fn matches_candles_adam_without_weight_decay() {
        let device = Device::Cpu;
        let start = Tensor::randn(0f32, 1.0, (40_000,), &device).unwrap();
        let target = Tensor::randn(0f32, 1.0, (40_000,), &device).unwrap();
        let (ours, theirs) = (
            Var::from_tensor(&start).unwrap(),
            Var::from_tensor(&start).unwrap(),
        );
        let mut adam = Adam::new(vec![ours.clone()], 1e-2);
        let mut reference = AdamW::new(
            vec![theirs.clone()],
            ParamsAdamW {
                lr: 1e-2,
                weight_decay: 0.0,
                ..ParamsAdamW::default()
            },
        )
        .unwrap();
        let loss = |var: &Var| {
            (var.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
        };
        for _ in 0..5 {
            adam.step(&loss(&ours).backward().unwrap(), 1.0).unwrap();
            reference.backward_step(&loss(&theirs)).unwrap();
        }
        let diff = crate::model::linalg::max_abs_diff(ours.as_tensor(), theirs.as_tensor());
        // The inputs are random and the two sum in different orders: allow a few f32 ulps of
        // the largest parameter (1e-6 absolute failed once at 1.4e-6 on values near 5).
        let largest = theirs.as_tensor().abs().unwrap().max_all().unwrap();
        let largest = largest.to_scalar::<f32>().unwrap().max(1.0);
        let tolerance = 8.0 * f32::EPSILON * largest;
        assert!(
            diff < tolerance,
            "parameters differ by {diff} (tolerance {tolerance})"
        );

        // The clipping scale multiplies the gradient before it enters the moments.
        let var = Var::from_tensor(&start).unwrap();
        let mut scaled = Adam::new(vec![var.clone()], 1e-2);
        let grads = loss(&var).backward().unwrap();
        let grad: Vec<f32> = grads.get(var.as_tensor()).unwrap().to_vec1().unwrap();
        scaled.step(&grads, 0.5).unwrap();
        for (m, g) in scaled.params[0].m.iter().zip(&grad) {
            assert!(
                (m - 0.1 * 0.5 * g).abs() < 1e-6,
                "first moment {m} for gradient {g}"
            );
        }
    }
}
