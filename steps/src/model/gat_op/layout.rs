//! The shapes of one GATv2 call and its parameters laid out for the kernels: which strides
//! make a graph's matrix a set of nodes, and the projections packed for the pass at hand.

use candle_core::{Result, Shape};

use crate::model::gat_kernel::padded;
use crate::model::linalg::{Mat, MatMut};
use crate::model::packed_gemm::PackedRhs;

/// The sizes of one call.
#[derive(Clone, Copy)]
pub(super) struct Dims {
    pub(super) batch: usize,
    /// R * C, the values of one graph's matrix.
    pub(super) matrix: usize,
    pub(super) nodes: usize,
    /// D, the length of a node vector.
    pub(super) dim: usize,
    /// E, the embedding.
    pub(super) embed: usize,
    /// E padded to whole vectors.
    pub(super) stride: usize,
    /// Strides of node i, element d in a graph's [R, C] matrix.
    pub(super) node_stride: usize,
    pub(super) elem_stride: usize,
}

impl Dims {
    pub(super) fn new(
        nodes_are_columns: bool,
        x: &Shape,
        weight: &Shape,
        params: &Shape,
    ) -> Result<Dims> {
        let (batch, rows, cols) = x.dims3()?;
        let (nodes, dim, node_stride, elem_stride) = match nodes_are_columns {
            true => (cols, rows, 1, cols),
            false => (rows, cols, cols, 1),
        };
        let (embed, lin_in) = weight.dims2()?;
        if lin_in != 2 * dim || params.dims() != [2 * embed + nodes * nodes] {
            candle_core::bail!(
                "gatv2-attention: {nodes} nodes of {dim} values need weight [E, {}] and params [2E + {}], got {weight:?} and {params:?}",
                2 * dim,
                nodes * nodes
            )
        }
        Ok(Dims {
            batch,
            matrix: rows * cols,
            nodes,
            dim,
            embed,
            stride: padded(embed),
            node_stride,
            elem_stride,
        })
    }

    /// Graph b's nodes as a [N, D] view of its matrix.
    pub(super) fn nodes_of<'a>(&self, matrix: &'a [f32]) -> Mat<'a> {
        Mat::new(
            matrix,
            self.nodes,
            self.dim,
            self.node_stride,
            self.elem_stride,
        )
    }

    pub(super) fn nodes_of_mut<'a>(&self, matrix: &'a mut [f32]) -> MatMut<'a> {
        MatMut::new(
            matrix,
            self.nodes,
            self.dim,
            self.node_stride,
            self.elem_stride,
        )
    }
}

/// Which products a [`Params`] serves.
#[derive(Clone, Copy)]
pub(super) enum Pass {
    Forward,
    Backward,
}

/// The layer's parameters, laid out for the kernels.
pub(super) struct Params {
    /// W1^T and W2^T, [D, stride] each (lanes past E are zero), packed as `Pass` multiplies
    /// by them: as they are forward, transposed backward.
    pub(super) projections: [PackedRhs; 2],
    pub(super) lin_bias: Vec<f32>,
    pub(super) a: Vec<f32>,
    pub(super) bias: Vec<f32>,
}

impl Params {
    pub(super) fn new(dims: &Dims, weight: &[f32], params: &[f32], pass: Pass) -> Params {
        let (d, e, s) = (dims.dim, dims.embed, dims.stride);
        let mut left = vec![0f32; d * s];
        let mut right = vec![0f32; d * s];
        for row in 0..e {
            for col in 0..d {
                left[col * s + row] = weight[row * 2 * d + col];
                right[col * s + row] = weight[row * 2 * d + d + col];
            }
        }
        let pad = |v: &[f32]| -> Vec<f32> {
            let mut out = vec![0f32; s];
            out[..v.len()].copy_from_slice(v);
            out
        };
        let pack = |m: &[f32]| match pass {
            Pass::Forward => PackedRhs::new(Mat::rows(m, d, s, s)),
            Pass::Backward => PackedRhs::new(Mat::rows(m, d, s, s).t()),
        };
        Params {
            projections: [pack(&left), pack(&right)],
            lin_bias: pad(&params[..e]),
            a: pad(&params[e..2 * e]),
            bias: params[2 * e..].to_vec(),
        }
    }
}

/// The task's node vectors, row after row: [graphs * N, D].
pub(super) fn gather_nodes(dims: &Dims, x: &[f32]) -> Vec<f32> {
    let graphs = x.len() / dims.matrix;
    let mut values = vec![0f32; graphs * dims.nodes * dims.dim];
    for g in 0..graphs {
        let src = dims.nodes_of(&x[g * dims.matrix..][..dims.matrix]);
        let dst = MatMut::rows(
            &mut values[g * dims.nodes * dims.dim..],
            dims.nodes,
            dims.dim,
            dims.dim,
        );
        dst.copy_from(src);
    }
    values
}
