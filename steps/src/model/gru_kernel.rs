//! A fused GRU recurrence as one candle op, forward and backward (BPTT).
//!
//! candle's autograd would record ~15 small ops per time step (and as many again in the
//! backward pass); over 100 steps and two GRUs that is thousands of graph nodes, each with
//! its own allocation. Here the input projection `x W_ih^T + b_ih` stays one big product
//! outside, and this op runs the recurrence: per step one `h W_hh^T` GEMM and the gates,
//! with the batch split over rayon threads, each thread keeping its rows' state to itself
//! for all steps. Buffers are allocated once per call, none per step. The backward pass
//! walks time in reverse, and the weight gradient `dW_hh = sum_t dG_t^T h_{t-1}` is one
//! large GEMM per thread at the end.
//!
//! Gate layout and equations are PyTorch's `nn.GRU` (r, z, n):
//! r = σ(gi_r + W_hr h + b_hr), z = σ(gi_z + W_hz h + b_hz),
//! n = tanh(gi_n + r ⊙ (W_hn h + b_hn)), h' = (1 - z) ⊙ n + z ⊙ h, h_0 = 0.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::linalg::{values, Mat, MatMut};
use super::packed_gemm::{gemm_packed, PackedRhs};
use super::simd::{self, multiversion};

/// The recurrence over `steps` time steps. Arguments: `gi` [B, steps, 3H] (or [B, 1, 3H]
/// when the input is the same at every step), `w_hh` [3H, H], `b_hh` [3H]. Result: every
/// hidden state, [B, steps, H].
pub struct GruRecurrence {
    pub hidden: usize,
    pub steps: usize,
    /// Whether a backward pass can follow. Scoring runs on plain tensors (a loaded bundle),
    /// and then the gates are not kept: they would be [B, steps, 4H] written for nothing.
    pub save: bool,
    /// Gate activations saved by the forward pass for the backward pass.
    saved: Mutex<Option<Saved>>,
}

struct Saved {
    /// Per batch chunk, time-major [steps, rows, 4H]: r, z, n and W_hn h + b_hn.
    gates: Vec<f32>,
    chunk_rows: usize,
}

impl GruRecurrence {
    pub fn new(hidden: usize, steps: usize, save: bool) -> GruRecurrence {
        GruRecurrence {
            hidden,
            steps,
            save,
            saved: Mutex::new(None),
        }
    }

    /// Runs the op with autograd: `gi` [B, steps|1, 3H], `w_hh` [3H, H], `b_hh` [3H].
    /// candle records the op for a backward pass only when an argument tracks gradients,
    /// and only then are the gates saved.
    pub fn apply(gi: &Tensor, w_hh: &Tensor, b_hh: &Tensor, steps: usize) -> Result<Tensor> {
        let hidden = w_hh.dim(1)?;
        let save = gi.track_op() || w_hh.track_op() || b_hh.track_op();
        gi.contiguous()?.apply_op3(
            &w_hh.contiguous()?,
            &b_hh.contiguous()?,
            GruRecurrence::new(hidden, steps, save),
        )
    }
}

/// Rows of the batch each rayon task owns; the same split in forward and backward.
fn chunk_rows(batch: usize) -> usize {
    let tasks = rayon::current_num_threads().clamp(1, batch.max(1));
    batch.div_ceil(tasks).max(1)
}

/// The f32 values of a contiguous argument of this op.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    super::linalg::contiguous_f32(storage, layout, "gru-recurrence", what)
}

impl CustomOp3 for GruRecurrence {
    fn name(&self) -> &'static str {
        "gru-recurrence"
    }

    fn cpu_fwd(
        &self,
        gi_storage: &CpuStorage,
        gi_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        b_storage: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let hid = self.hidden;
        let steps = self.steps;
        let (batch, gi_steps, gi_width) = gi_layout.shape().dims3()?;
        if gi_width != 3 * hid || (gi_steps != steps && gi_steps != 1) {
            candle_core::bail!(
                "gru-recurrence: input projection is [{batch}, {gi_steps}, {gi_width}], expected [B, {steps} or 1, {}]",
                3 * hid
            )
        }
        if w_layout.shape().dims() != [3 * hid, hid] || b_layout.shape().dims() != [3 * hid] {
            candle_core::bail!(
                "gru-recurrence: W_hh must be [{}, {hid}] and b_hh [{}]",
                3 * hid,
                3 * hid
            )
        }
        let gi = contiguous(gi_storage, gi_layout, "gi")?;
        let w_hh = contiguous(w_storage, w_layout, "w_hh")?;
        let b_hh = contiguous(b_storage, b_layout, "b_hh")?;
        // W_hh^T [H, 3H], packed once for the W steps' products.
        let w_t = PackedRhs::new(Mat::rows(w_hh, 3 * hid, hid, hid).t());
        let rows_per_chunk = chunk_rows(batch);
        let mut hs = vec![0f32; batch * steps * hid];
        // Saved: every step's gates, [steps, rows, 4H] per chunk. Not saved: one step's,
        // [rows, 4H] per chunk, overwritten each step.
        let gate_steps = if self.save { steps } else { 1 };
        let mut gates = vec![
            0f32;
            if self.save {
                batch * steps * 4 * hid
            } else {
                0
            }
        ];
        let mut gate_chunks: Vec<&mut [f32]> = match self.save {
            true => gates.chunks_mut(rows_per_chunk * steps * 4 * hid).collect(),
            false => (0..batch.div_ceil(rows_per_chunk))
                .map(|_| Default::default())
                .collect(),
        };
        hs.par_chunks_mut(rows_per_chunk * steps * hid)
            .zip(gate_chunks.par_iter_mut())
            .enumerate()
            .for_each(|(chunk, (hs, gates))| {
                let row0 = chunk * rows_per_chunk;
                let rows = hs.len() / (steps * hid);
                let mut step_gates = Vec::new();
                let gates: &mut [f32] = match self.save {
                    true => gates,
                    false => {
                        step_gates.resize(rows * 4 * hid, 0f32);
                        &mut step_gates
                    }
                };
                let mut h = vec![0f32; rows * hid];
                let mut gh = vec![0f32; rows * 3 * hid];
                for t in 0..steps {
                    for row in gh.chunks_exact_mut(3 * hid) {
                        row.copy_from_slice(b_hh);
                    }
                    if t > 0 {
                        // gh += h W_hh^T (h_0 = 0 adds nothing)
                        gemm_packed(
                            Mat::rows(&h, rows, hid, hid),
                            &w_t,
                            MatMut::rows(&mut gh, rows, 3 * hid, 3 * hid),
                        );
                    }
                    let gi_t = if gi_steps == 1 { 0 } else { t };
                    for r in 0..rows {
                        let gi_row = &gi[((row0 + r) * gi_steps + gi_t) * 3 * hid..][..3 * hid];
                        let gh_row = &gh[r * 3 * hid..][..3 * hid];
                        let slot = if gate_steps == 1 { r } else { t * rows + r };
                        let saved = &mut gates[slot * 4 * hid..][..4 * hid];
                        let h_row = &mut h[r * hid..][..hid];
                        forward_row(gi_row, gh_row, h_row, saved);
                        hs[(r * steps + t) * hid..][..hid].copy_from_slice(h_row);
                    }
                }
            });
        if self.save {
            if let Ok(mut saved) = self.saved.lock() {
                *saved = Some(Saved {
                    gates,
                    chunk_rows: rows_per_chunk,
                });
            }
        }
        Ok((CpuStorage::F32(hs), Shape::from((batch, steps, hid))))
    }

    fn bwd(
        &self,
        gi: &Tensor,
        w_hh: &Tensor,
        _b_hh: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let hid = self.hidden;
        let steps = self.steps;
        let (batch, gi_steps, _) = gi.dims3()?;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("gru-recurrence: saved state poisoned".into()))?
            .take();
        let Some(Saved {
            gates,
            chunk_rows: rows_per_chunk,
        }) = saved
        else {
            candle_core::bail!("gru-recurrence: backward called twice or without a forward pass")
        };
        let (w_hh, res, grad_res) = (
            w_hh.contiguous()?,
            res.contiguous()?,
            grad_res.contiguous()?,
        );
        let w = values(&w_hh, "gru-recurrence", "w_hh")?;
        let hs = values(&res, "gru-recurrence", "result")?;
        let grad = values(&grad_res, "gru-recurrence", "gradient")?;
        let (w, hs, grad) = (w.get(), hs.get(), grad.get());
        let w_packed = PackedRhs::new(Mat::rows(w, 3 * hid, hid, hid));
        let mut dgi = vec![0f32; batch * gi_steps * 3 * hid];
        let n_chunks = batch.div_ceil(rows_per_chunk);
        // Per chunk: (dW_hh [3H, H], db_hh [3H]); summed in chunk order for determinism.
        let partial: Vec<(Vec<f32>, Vec<f32>)> = dgi
            .par_chunks_mut(rows_per_chunk * gi_steps * 3 * hid)
            .zip(gates.par_chunks(rows_per_chunk * steps * 4 * hid))
            .enumerate()
            .map(|(chunk, (dgi, gates))| {
                let row0 = chunk * rows_per_chunk;
                let rows = gates.len() / (steps * 4 * hid);
                // Time-major [steps, rows, .] so each step's rows are contiguous for the GEMMs.
                let mut dgh = vec![0f32; steps * rows * 3 * hid];
                let mut h_prev = vec![0f32; steps * rows * hid];
                for t in 1..steps {
                    for r in 0..rows {
                        h_prev[(t * rows + r) * hid..][..hid]
                            .copy_from_slice(&hs[((row0 + r) * steps + t - 1) * hid..][..hid]);
                    }
                }
                let mut dh = vec![0f32; rows * hid];
                for t in (0..steps).rev() {
                    for r in 0..rows {
                        let gi_t = if gi_steps == 1 { 0 } else { t };
                        backward_row(
                            &grad[((row0 + r) * steps + t) * hid..][..hid],
                            &gates[(t * rows + r) * 4 * hid..][..4 * hid],
                            &h_prev[(t * rows + r) * hid..][..hid],
                            &mut dgh[(t * rows + r) * 3 * hid..][..3 * hid],
                            &mut dgi[(r * gi_steps + gi_t) * 3 * hid..][..3 * hid],
                            &mut dh[r * hid..][..hid],
                        );
                    }
                    if t > 0 {
                        // dh += dG_t W_hh
                        gemm_packed(
                            Mat::rows(&dgh[t * rows * 3 * hid..], rows, 3 * hid, 3 * hid),
                            &w_packed,
                            MatMut::rows(&mut dh, rows, hid, hid),
                        );
                    }
                }
                // dW_hh = sum over (t, row) of dG^T h_prev: [3H, T*rows] x [T*rows, H].
                let n = steps * rows;
                let mut dw = vec![0f32; 3 * hid * hid];
                gemm_packed(
                    Mat::rows(&dgh, n, 3 * hid, 3 * hid).t(),
                    &PackedRhs::new(Mat::rows(&h_prev, n, hid, hid)),
                    MatMut::rows(&mut dw, 3 * hid, hid, hid),
                );
                let mut db = vec![0f32; 3 * hid];
                for row in dgh.chunks_exact(3 * hid) {
                    add_assign(&mut db, row);
                }
                (dw, db)
            })
            .collect();
        debug_assert_eq!(partial.len(), n_chunks);
        let mut dw = vec![0f32; 3 * hid * hid];
        let mut db = vec![0f32; 3 * hid];
        for (pw, pb) in &partial {
            add_assign(&mut dw, pw);
            add_assign(&mut db, pb);
        }
        let device = gi.device();
        Ok((
            Some(Tensor::from_vec(dgi, gi.shape(), device)?),
            Some(Tensor::from_vec(dw, (3 * hid, hid), device)?),
            Some(Tensor::from_vec(db, 3 * hid, device)?),
        ))
    }
}

multiversion! {
    fn add_assign(acc: &mut [f32], values: &[f32]) {
        acc.iter_mut().zip(values).for_each(|(a, v)| *a += v);
    }
}

multiversion! {
    /// One row's gates. gi, gh: [3H] (r, z, n); h: [H], updated in place; saved: [4H] gets
    /// r, z, n and W_hn h + b_hn.
    fn forward_row(gi: &[f32], gh: &[f32], h: &mut [f32], saved: &mut [f32]) {
        let hid = h.len();
        let (gi_r, gi_zn) = gi[..3 * hid].split_at(hid);
        let (gi_z, gi_n) = gi_zn.split_at(hid);
        let (gh_r, gh_zn) = gh[..3 * hid].split_at(hid);
        let (gh_z, gh_n) = gh_zn.split_at(hid);
        let (s_r, s_rest) = saved[..4 * hid].split_at_mut(hid);
        let (s_z, s_rest) = s_rest.split_at_mut(hid);
        let (s_n, s_hn) = s_rest.split_at_mut(hid);
        for j in 0..hid {
            let r = simd::sigmoid(gi_r[j] + gh_r[j]);
            let z = simd::sigmoid(gi_z[j] + gh_z[j]);
            let hn = gh_n[j];
            let n = simd::tanh(gi_n[j] + r * hn);
            h[j] = (1.0 - z) * n + z * h[j];
            s_r[j] = r;
            s_z[j] = z;
            s_n[j] = n;
            s_hn[j] = hn;
        }
    }
}

multiversion! {
    /// One row of one step backwards: from the state's gradient (the loss's `grad` plus the
    /// carried `dh`) to the gates' pre-activations `dgh` (hidden side) and `dgi` (input side,
    /// accumulated: a constant input collects every step's); `dh` becomes the part carried
    /// through z (the caller adds dG W_hh).
    fn backward_row(
        grad: &[f32],
        saved: &[f32],
        h_prev: &[f32],
        dgh: &mut [f32],
        dgi: &mut [f32],
        dh: &mut [f32],
    ) {
        let hid = dh.len();
        let (s_r, s_rest) = saved[..4 * hid].split_at(hid);
        let (s_z, s_rest) = s_rest.split_at(hid);
        let (s_n, s_hn) = s_rest.split_at(hid);
        let (dgh_r, dgh_rest) = dgh[..3 * hid].split_at_mut(hid);
        let (dgh_z, dgh_n) = dgh_rest.split_at_mut(hid);
        let (dgi_r, dgi_rest) = dgi[..3 * hid].split_at_mut(hid);
        let (dgi_z, dgi_n) = dgi_rest.split_at_mut(hid);
        let (grad, h_prev) = (&grad[..hid], &h_prev[..hid]);
        for j in 0..hid {
            let (r, z, n, hn) = (s_r[j], s_z[j], s_n[j], s_hn[j]);
            let g = grad[j] + dh[j];
            let dn_pre = g * (1.0 - z) * (1.0 - n * n);
            let dz_pre = g * (h_prev[j] - n) * z * (1.0 - z);
            let dr_pre = dn_pre * hn * r * (1.0 - r);
            dgh_r[j] = dr_pre;
            dgh_z[j] = dz_pre;
            dgh_n[j] = dn_pre * r;
            dgi_r[j] += dr_pre;
            dgi_z[j] += dz_pre;
            dgi_n[j] += dn_pre;
            dh[j] = g * z;
        }
    }
}
