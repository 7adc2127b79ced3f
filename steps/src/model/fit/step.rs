//! One optimisation step: forward, loss, backward, gradient norm and clipping, Adam. The
//! training loop and the `mtad_gat` benchmark run this same step.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use candle_nn::VarMap;

use super::{losses, sorted_vars};
use crate::model::adam::Adam;
use crate::model::linalg::values;
use crate::model::MtadGat;

/// A model's variables (in name order) and their optimiser.
pub struct Trainer<'m> {
    model: &'m MtadGat,
    vars: Vec<(String, Var)>,
    optimizer: Adam,
    /// Maximum global gradient norm; 0 turns clipping off.
    clip_norm: f64,
}

/// What a step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StepOutcome {
    /// The weights moved.
    Updated {
        loss: f64,
        forecast_loss: f64,
        recon_loss: f64,
        /// The global gradient norm, before clipping.
        grad_norm: f64,
        clipped: bool,
    },
    /// The loss (or, when `loss_finite`, a gradient) was not finite; nothing changed.
    NonFinite { loss_finite: bool },
}

impl<'m> Trainer<'m> {
    /// Trains the variables of `varmap`, which `model` was built from.
    pub fn new(
        model: &'m MtadGat,
        varmap: &VarMap,
        lr: f64,
        clip_norm: f64,
    ) -> Result<Trainer<'m>> {
        let vars = sorted_vars(varmap)?;
        let optimizer = Adam::new(vars.iter().map(|(_, v)| v.clone()).collect(), lr);
        Ok(Trainer {
            model,
            vars,
            optimizer,
            clip_norm,
        })
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// Starts the optimiser afresh (moments zero) with learning rate `lr`.
    pub fn restart_optimizer(&mut self, lr: f64) {
        self.optimizer = Adam::new(self.vars.iter().map(|(_, v)| v.clone()).collect(), lr);
    }

    /// One step on a batch: x [B, W, K], the next rows `ys` [B, n_target] and x on the
    /// target dims [B, W, n_target]. `poison` replaces the loss by NaN (a testing hook).
    pub fn step(
        &mut self,
        xs: &Tensor,
        ys: &Tensor,
        xs_target: &Tensor,
        poison: bool,
    ) -> Result<StepOutcome> {
        let out = self.model.forward(xs, true)?;
        let (loss, forecast_loss, recon_loss) = losses(&out, ys, xs_target)?;
        let mut loss_value = loss.to_scalar::<f32>()? as f64;
        if poison {
            loss_value = f64::NAN;
        }
        if !loss_value.is_finite() {
            return Ok(StepOutcome::NonFinite { loss_finite: false });
        }
        let grads = loss.backward()?;
        let grad_norm = grad_norm(&self.vars, &grads)?;
        if !grad_norm.is_finite() {
            return Ok(StepOutcome::NonFinite { loss_finite: true });
        }
        let clipped = self.clip_norm > 0.0 && grad_norm > self.clip_norm;
        let scale = match clipped {
            true => self.clip_norm / (grad_norm + 1e-6),
            false => 1.0,
        };
        self.optimizer.step(&grads, scale)?;
        Ok(StepOutcome::Updated {
            loss: loss_value,
            forecast_loss,
            recon_loss,
            grad_norm,
            clipped,
        })
    }
}

/// The global L2 norm of the gradients, summed in variable order (in f64).
fn grad_norm(vars: &[(String, Var)], grads: &GradStore) -> Result<f64> {
    let mut sum = 0.0;
    for (_, var) in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            let g = g.contiguous()?;
            let g = values(&g, "grad-norm", "gradient")?;
            sum += g
                .get()
                .iter()
                .map(|v| (*v as f64) * (*v as f64))
                .sum::<f64>();
        }
    }
    Ok(sum.sqrt())
}
