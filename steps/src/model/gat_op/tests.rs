//! The fused layer against ML4ITS's formulation in plain candle ops.

use super::*;
use crate::model::init::SeededDropout;
use crate::model::linalg::max_abs_diff;
use candle_core::{Device, Var, D};

/// ML4ITS's formulation in plain candle ops: every pair [v_i || v_j] through the linear
/// map, LeakyReLU, a; softmax with the bias; dropout; attention times the nodes; sigmoid.
fn reference(
    nodes: &Tensor,
    weight: &Tensor,
    lin_bias: &Tensor,
    a: &Tensor,
    bias: &Tensor,
    dropout: &SeededDropout,
) -> Tensor {
    let (b, n, d) = nodes.dims3().unwrap();
    let left = nodes
        .unsqueeze(2)
        .unwrap()
        .broadcast_as((b, n, n, d))
        .unwrap();
    let right = nodes
        .unsqueeze(1)
        .unwrap()
        .broadcast_as((b, n, n, d))
        .unwrap();
    let pairs = Tensor::cat(&[left, right], 3)
        .unwrap()
        .reshape((b * n * n, 2 * d))
        .unwrap();
    let lin = pairs
        .matmul(&weight.t().unwrap())
        .unwrap()
        .broadcast_add(lin_bias)
        .unwrap();
    let act = candle_nn::ops::leaky_relu(&lin, 0.2).unwrap();
    let e = act
        .matmul(&a.unsqueeze(1).unwrap())
        .unwrap()
        .reshape((b, n, n))
        .unwrap();
    let attention = candle_nn::ops::softmax(&e.broadcast_add(bias).unwrap(), D::Minus1).unwrap();
    let attention = dropout.apply(&attention, 0.3, true).unwrap();
    candle_nn::ops::sigmoid(&attention.matmul(nodes).unwrap()).unwrap()
}

/// Seeded values in [-1, 1) of the given shape.
fn seeded(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = crate::model::init::SplitMix64::new(seed);
    let n = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect();
    Tensor::from_vec(values, shape, &Device::Cpu).unwrap()
}

#[test]
fn fused_layer_matches_the_pairwise_reference_forward_and_backward() {
    let var = |shape: &[usize], seed: u64| Var::from_tensor(&seeded(shape, seed)).unwrap();
    // 11 graphs: one full task of 8 and a short one. [R, C] = [6, 5].
    for nodes_are_columns in [false, true] {
        let (n, d) = if nodes_are_columns { (5, 6) } else { (6, 5) };
        let e = 2 * d;
        let x = var(&[11, 6, 5], 1);
        let weight = var(&[e, 2 * d], 2);
        let lin_bias = var(&[e], 3);
        let a = var(&[e], 4);
        let bias = var(&[n, n], 5);
        let params = Tensor::cat(
            &[
                lin_bias.as_tensor(),
                a.as_tensor(),
                &bias.flatten_all().unwrap(),
            ],
            0,
        )
        .unwrap();
        let (mask_a, mask_b) = (SeededDropout::new(9), SeededDropout::new(9));
        let fused = Gatv2Attention::apply(
            &x,
            &weight,
            &params,
            nodes_are_columns,
            0.2,
            mask_a.next_mask(0.3, true).unwrap(),
        )
        .unwrap();
        let nodes = match nodes_are_columns {
            true => x.transpose(1, 2).unwrap().contiguous().unwrap(),
            false => x.as_tensor().clone(),
        };
        let plain = reference(&nodes, &weight, &lin_bias, &a, &bias, &mask_b);
        let plain = match nodes_are_columns {
            true => plain.transpose(1, 2).unwrap(),
            false => plain,
        };
        let diff = max_abs_diff(&fused, &plain);
        assert!(
            diff < 1e-5,
            "forward differs by {diff} (columns: {nodes_are_columns})"
        );

        let upstream = var(&[11, 6, 5], 6);
        let grads = |out: &Tensor| {
            (out * upstream.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap()
        };
        let (g_fused, g_plain) = (grads(&fused), grads(&plain));
        for v in [&x, &weight, &lin_bias, &a, &bias] {
            let diff = max_abs_diff(g_fused.get(v).unwrap(), g_plain.get(v).unwrap());
            assert!(
                diff < 1e-5,
                "gradient of {:?} differs by {diff} (columns: {nodes_are_columns})",
                v.shape()
            );
        }
    }
}

#[test]
fn scoring_on_plain_tensors_gives_the_training_forward_output() {
    let plain = seeded;
    // 11 graphs: one full task of 8 and a short one, each with its own scratch when scoring.
    for nodes_are_columns in [false, true] {
        let (n, d) = if nodes_are_columns { (5, 6) } else { (6, 5) };
        let x = plain(&[11, 6, 5], 1);
        let weight = plain(&[2 * d, 2 * d], 2);
        let params = plain(&[4 * d + n * n], 3);
        let scored =
            Gatv2Attention::apply(&x, &weight, &params, nodes_are_columns, 0.2, None).unwrap();
        let tracked_weight = Var::from_tensor(&weight).unwrap();
        let trained = Gatv2Attention::apply(
            &x,
            tracked_weight.as_tensor(),
            &params,
            nodes_are_columns,
            0.2,
            None,
        )
        .unwrap();
        assert!(trained.track_op() && !scored.track_op());
        assert_eq!(
            scored.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            trained.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            "columns: {nodes_are_columns}"
        );
    }
}
