//! A GATv2 attention layer as one candle op, forward and backward:
//! sigmoid(dropout(softmax(e + bias)) V), e the GATv2 logits of the nodes V ([`gat_kernel`]).
//!
//! In plain candle ops that is a dozen ops each way, each writing a [B, N, N] or [B, N, E]
//! tensor, and candle multiplies the batched [N, N] x [N, D] products on one thread. Here
//! each rayon task takes a few graphs of the batch and runs every step on them while they
//! are in cache. Weight gradients are summed per task and then over tasks in a fixed order,
//! and the tasks do not depend on the thread count, so neither do the results.
//!
//! [`gat_kernel`]: super::gat_kernel

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::gat_kernel;
use super::init::DropoutMask;
use super::linalg::{gemm, Mat, MatMut};
use super::packed_gemm::{gemm_packed, PackedRhs};
use super::simd::{self, multiversion};
use super::softmax::{softmax_rows, softmax_rows_backward};

mod layout;
use layout::{gather_nodes, Dims, Params, Pass};

/// Graphs (batch entries) per rayon task.
const GRAPHS_PER_TASK: usize = 8;

/// Arguments: `x` [B, R, C] (one [R, C] matrix per graph), the linear map `weight` [E, 2D],
/// and `params` [2E + N*N]: the linear map's bias, the attention vector `a` and the learned
/// [N, N] attention bias, concatenated. Result [B, R, C].
pub struct Gatv2Attention {
    /// Nodes are the columns of each [R, C] matrix (feature-oriented attention: node i is
    /// feature i over the window, N = C, D = R), not its rows (time-oriented: N = R, D = C).
    nodes_are_columns: bool,
    alpha: f32,
    dropout: Option<DropoutMask>,
    /// Whether a backward pass can follow (an argument tracks gradients). When scoring, each
    /// task's intermediates live only while it runs, not for the whole batch.
    save: bool,
    saved: Mutex<Option<Saved>>,
}

/// What the backward pass needs from the forward pass.
struct Saved {
    /// L1 v_i + b per node, [B * N, stride].
    p: Vec<f32>,
    /// L2 v_j per node, [B * N, stride].
    q: Vec<f32>,
    /// softmax(e + bias), [B, N, N].
    attention: Vec<f32>,
    /// The attention after dropout, [B, N, N]; empty without dropout.
    dropped: Vec<f32>,
}

impl Gatv2Attention {
    /// Runs the layer with autograd. `dropout` is the mask of this call, if training.
    pub fn apply(
        x: &Tensor,
        weight: &Tensor,
        params: &Tensor,
        nodes_are_columns: bool,
        alpha: f64,
        dropout: Option<DropoutMask>,
    ) -> Result<Tensor> {
        let save = x.track_op() || weight.track_op() || params.track_op();
        x.contiguous()?.apply_op3(
            &weight.contiguous()?,
            &params.contiguous()?,
            Gatv2Attention {
                nodes_are_columns,
                alpha: alpha as f32,
                dropout,
                save,
                saved: Mutex::new(None),
            },
        )
    }
}

/// The f32 values of a contiguous argument of this op.
fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    super::linalg::contiguous_f32(storage, layout, "gatv2-attention", what)
}

/// `buf` cut into `n` consecutive pieces of `len` (all empty when `buf` is).
fn pieces(buf: &mut [f32], len: usize, n: usize) -> Vec<&mut [f32]> {
    match buf.is_empty() || len == 0 {
        true => (0..n).map(|_| Default::default()).collect(),
        false => buf.chunks_mut(len).collect(),
    }
}

impl CustomOp3 for Gatv2Attention {
    fn name(&self) -> &'static str {
        "gatv2-attention"
    }

    fn cpu_fwd(
        &self,
        x_storage: &CpuStorage,
        x_layout: &Layout,
        w_storage: &CpuStorage,
        w_layout: &Layout,
        p_storage: &CpuStorage,
        p_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let dims = Dims::new(
            self.nodes_are_columns,
            x_layout.shape(),
            w_layout.shape(),
            p_layout.shape(),
        )?;
        let x = contiguous(x_storage, x_layout, "x")?;
        let params = Params::new(
            &dims,
            contiguous(w_storage, w_layout, "weight")?,
            contiguous(p_storage, p_layout, "params")?,
            Pass::Forward,
        );
        let Dims {
            batch,
            matrix,
            nodes,
            stride,
            ..
        } = dims;
        let mut out = vec![0f32; batch * matrix];
        // The intermediates of `graphs` graphs: for the whole batch when saved, else per task.
        let buffers = |graphs: usize| {
            let attention = graphs * nodes * nodes;
            (
                vec![0f32; graphs * nodes * stride],
                vec![0f32; graphs * nodes * stride],
                vec![0f32; attention],
                vec![0f32; if self.dropout.is_some() { attention } else { 0 }],
            )
        };
        let (mut p, mut q, mut attention, mut dropped) = buffers(if self.save { batch } else { 0 });
        let n_tasks = batch.div_ceil(GRAPHS_PER_TASK);
        let per = GRAPHS_PER_TASK;
        let tasks: Vec<_> = pieces(&mut out, per * matrix, n_tasks)
            .into_iter()
            .zip(pieces(&mut p, per * nodes * stride, n_tasks))
            .zip(pieces(&mut q, per * nodes * stride, n_tasks))
            .zip(pieces(&mut attention, per * nodes * nodes, n_tasks))
            .zip(pieces(&mut dropped, per * nodes * nodes, n_tasks))
            .enumerate()
            .collect();
        tasks
            .into_par_iter()
            .for_each(|(task, ((((out, p), q), attention), dropped))| {
                let first = task * per;
                let x = &x[first * matrix..][..out.len()];
                if self.save {
                    self.forward_task(&dims, &params, first, x, out, p, q, attention, dropped);
                } else {
                    let (mut p, mut q, mut attention, mut dropped) =
                        buffers(per.min(batch - first));
                    self.forward_task(
                        &dims,
                        &params,
                        first,
                        x,
                        out,
                        &mut p,
                        &mut q,
                        &mut attention,
                        &mut dropped,
                    );
                }
            });
        if self.save {
            if let Ok(mut saved) = self.saved.lock() {
                *saved = Some(Saved {
                    p,
                    q,
                    attention,
                    dropped,
                });
            }
        }
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        params: &Tensor,
        res: &Tensor,
        grad_res: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dims = Dims::new(
            self.nodes_are_columns,
            x.shape(),
            weight.shape(),
            params.shape(),
        )?;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("gatv2-attention: saved state poisoned".into()))?
            .take();
        let Some(saved) = saved else {
            candle_core::bail!("gatv2-attention: backward called twice or without a forward pass")
        };
        let flat = |t: &Tensor| -> Result<Vec<f32>> { t.contiguous()?.flatten_all()?.to_vec1() };
        let (x_vec, out, grad) = (flat(x)?, flat(res)?, flat(grad_res)?);
        let params_vec = Params::new(&dims, &flat(weight)?, &flat(params)?, Pass::Backward);
        let Dims {
            batch,
            matrix,
            nodes,
            dim,
            embed,
            stride,
            ..
        } = dims;
        let per = GRAPHS_PER_TASK;
        let n_tasks = batch.div_ceil(per);
        let mut dx = vec![0f32; batch * matrix];
        let tasks: Vec<_> = pieces(&mut dx, per * matrix, n_tasks)
            .into_iter()
            .enumerate()
            .collect();
        let partials: Vec<Partial> = tasks
            .into_par_iter()
            .map(|(task, dx)| {
                let first = task * per;
                let graphs = dx.len() / matrix;
                let span = |per_graph: usize| first * per_graph..(first + graphs) * per_graph;
                let saved = TaskSaved {
                    p: &saved.p[span(nodes * stride)],
                    q: &saved.q[span(nodes * stride)],
                    attention: &saved.attention[span(nodes * nodes)],
                    dropped: match saved.dropped.is_empty() {
                        true => &[],
                        false => &saved.dropped[span(nodes * nodes)],
                    },
                };
                let range = span(matrix);
                self.backward_task(
                    &dims,
                    &params_vec,
                    &x_vec[range.clone()],
                    &out[range.clone()],
                    &grad[range],
                    &saved,
                    dx,
                )
            })
            .collect();
        let mut total = Partial::zeros(&dims);
        for partial in &partials {
            total.add(partial);
        }
        let mut dweight = vec![0f32; embed * 2 * dim];
        for row in 0..embed {
            for col in 0..dim {
                dweight[row * 2 * dim + col] = total.left[col * stride + row];
                dweight[row * 2 * dim + dim + col] = total.right[col * stride + row];
            }
        }
        let mut dparams = Vec::with_capacity(2 * embed + nodes * nodes);
        dparams.extend_from_slice(&total.lin_bias[..embed]);
        dparams.extend_from_slice(&total.a[..embed]);
        dparams.extend_from_slice(&total.bias);
        let device = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), device)?),
            Some(Tensor::from_vec(dweight, weight.shape(), device)?),
            Some(Tensor::from_vec(dparams, params.shape(), device)?),
        ))
    }
}

/// One task's share of the saved forward state.
struct TaskSaved<'a> {
    p: &'a [f32],
    q: &'a [f32],
    attention: &'a [f32],
    dropped: &'a [f32],
}

/// One task's parameter gradients, in [`Params`]'s layout.
struct Partial {
    left: Vec<f32>,
    right: Vec<f32>,
    lin_bias: Vec<f32>,
    a: Vec<f32>,
    bias: Vec<f32>,
}

impl Partial {
    fn zeros(dims: &Dims) -> Partial {
        Partial {
            left: vec![0f32; dims.dim * dims.stride],
            right: vec![0f32; dims.dim * dims.stride],
            lin_bias: vec![0f32; dims.stride],
            a: vec![0f32; dims.stride],
            bias: vec![0f32; dims.nodes * dims.nodes],
        }
    }

    fn add(&mut self, other: &Partial) {
        for (acc, part) in [
            (&mut self.left, &other.left),
            (&mut self.right, &other.right),
            (&mut self.lin_bias, &other.lin_bias),
            (&mut self.a, &other.a),
            (&mut self.bias, &other.bias),
        ] {
            acc.iter_mut().zip(part).for_each(|(a, v)| *a += v);
        }
    }
}

impl Gatv2Attention {
    /// Graphs `first..` of the batch: `x` and `out` hold their matrices.
    #[allow(clippy::too_many_arguments)]
    fn forward_task(
        &self,
        dims: &Dims,
        params: &Params,
        first: usize,
        x: &[f32],
        out: &mut [f32],
        p: &mut [f32],
        q: &mut [f32],
        attention: &mut [f32],
        dropped: &mut [f32],
    ) {
        let Dims {
            matrix,
            nodes,
            dim,
            stride,
            ..
        } = *dims;
        let graphs = x.len() / matrix;
        let node_values = gather_nodes(dims, x);
        let all_nodes = Mat::rows(&node_values, graphs * nodes, dim, dim);
        for row in p.chunks_exact_mut(stride) {
            row.copy_from_slice(&params.lin_bias);
        }
        let rows = graphs * nodes;
        q.fill(0.0);
        gemm_packed(
            all_nodes,
            &params.projections[0],
            MatMut::rows(p, rows, stride, stride),
        );
        gemm_packed(
            all_nodes,
            &params.projections[1],
            MatMut::rows(q, rows, stride, stride),
        );
        let mut logits = vec![0f32; nodes * nodes];
        for g in 0..graphs {
            let graph = nodes * nodes;
            let (p, q) = (
                &p[g * nodes * stride..][..nodes * stride],
                &q[g * nodes * stride..][..nodes * stride],
            );
            gat_kernel::logits(p, q, &params.a, self.alpha, nodes, stride, &mut logits);
            let attention = &mut attention[g * graph..][..graph];
            softmax_rows(&logits, &params.bias, nodes, attention);
            let weights = match self.dropout {
                Some(mask) => {
                    let dropped = &mut dropped[g * graph..][..graph];
                    let offset = ((first + g) * graph) as u64;
                    for (k, (out, a)) in dropped.iter_mut().zip(attention.iter()).enumerate() {
                        *out = a * mask.at(offset + k as u64);
                    }
                    &*dropped
                }
                None => &*attention,
            };
            let out = &mut out[g * matrix..][..matrix];
            gemm(
                Mat::rows(weights, nodes, nodes, nodes),
                Mat::rows(&node_values[g * nodes * dim..], nodes, dim, dim),
                dims.nodes_of_mut(out),
                false,
            );
            sigmoid_in_place(out);
        }
    }

    /// The gradients of one task's graphs: `dx` receives theirs, the parameters' are
    /// returned.
    #[allow(clippy::too_many_arguments)]
    fn backward_task(
        &self,
        dims: &Dims,
        params: &Params,
        x: &[f32],
        out: &[f32],
        grad: &[f32],
        saved: &TaskSaved<'_>,
        dx: &mut [f32],
    ) -> Partial {
        let Dims {
            matrix,
            nodes,
            dim,
            stride,
            ..
        } = *dims;
        let graphs = x.len() / matrix;
        let rows = graphs * nodes;
        let node_values = gather_nodes(dims, x);
        let mut partial = Partial::zeros(dims);
        let mut d_nodes = vec![0f32; rows * dim];
        let mut dp = vec![0f32; rows * stride];
        let mut dq = vec![0f32; rows * stride];
        let mut d_pre = vec![0f32; matrix];
        let mut d_logits = vec![0f32; nodes * nodes];
        let graph = nodes * nodes;
        for g in 0..graphs {
            // Through the sigmoid: d(pre-activation) in the matrix layout.
            sigmoid_backward(
                &grad[g * matrix..][..matrix],
                &out[g * matrix..][..matrix],
                &mut d_pre,
            );
            let d_z = dims.nodes_of(&d_pre);
            let v = Mat::rows(&node_values[g * nodes * dim..], nodes, dim, dim);
            let attention = &saved.attention[g * graph..][..graph];
            let weights = match saved.dropped.is_empty() {
                true => attention,
                false => &saved.dropped[g * graph..][..graph],
            };
            // Z = A V: dA = dZ V^T, dV = A^T dZ.
            gemm(
                d_z,
                v.t(),
                MatMut::rows(&mut d_logits, nodes, nodes, nodes),
                false,
            );
            gemm(
                Mat::rows(weights, nodes, nodes, nodes).t(),
                d_z,
                MatMut::rows(&mut d_nodes[g * nodes * dim..], nodes, dim, dim),
                false,
            );
            if let Some(mask) = self.dropout {
                // A kept entry is attention * keep, a dropped one 0.
                for (d, w) in d_logits.iter_mut().zip(weights) {
                    *d *= if *w != 0.0 { mask.keep } else { 0.0 };
                }
            }
            softmax_rows_backward(attention, nodes, &mut d_logits);
            partial
                .bias
                .iter_mut()
                .zip(&d_logits)
                .for_each(|(acc, v)| *acc += v);
            let span = g * nodes * stride..(g + 1) * nodes * stride;
            gat_kernel::logits_backward(
                &saved.p[span.clone()],
                &saved.q[span.clone()],
                &params.a,
                &d_logits,
                self.alpha,
                nodes,
                stride,
                &mut dp[span.clone()],
                &mut dq[span],
                &mut partial.a,
            );
        }
        // P = V W1^T + b, Q = V W2^T for all of the task's nodes at once.
        let all_nodes = Mat::rows(&node_values, rows, dim, dim);
        let mut d_all = MatMut::rows(&mut d_nodes, rows, dim, dim);
        for (d_proj, packed_t, d_packed) in [
            (&dp, &params.projections[0], &mut partial.left),
            (&dq, &params.projections[1], &mut partial.right),
        ] {
            let d_proj = Mat::rows(d_proj, rows, stride, stride);
            gemm_packed(d_proj, packed_t, d_all.reborrow());
            gemm_packed(
                all_nodes.t(),
                &PackedRhs::new(d_proj),
                MatMut::rows(d_packed, dim, stride, stride),
            );
        }
        for row in dp.chunks_exact(stride) {
            partial
                .lin_bias
                .iter_mut()
                .zip(row)
                .for_each(|(acc, v)| *acc += v);
        }
        for g in 0..graphs {
            let src = Mat::rows(&d_nodes[g * nodes * dim..], nodes, dim, dim);
            let dst = dims.nodes_of_mut(&mut dx[g * matrix..][..matrix]);
            dst.copy_from(src);
        }
        partial
    }
}

multiversion! {
    fn sigmoid_in_place(values: &mut [f32]) {
        values.iter_mut().for_each(|v| *v = simd::sigmoid(*v));
    }
}

multiversion! {
    /// d(pre-activation) = grad * out * (1 - out).
    fn sigmoid_backward(grad: &[f32], out: &[f32], d_pre: &mut [f32]) {
        for ((d, g), o) in d_pre.iter_mut().zip(grad).zip(out) {
            *d = g * o * (1.0 - o);
        }
    }
}

#[cfg(test)]
mod tests;
