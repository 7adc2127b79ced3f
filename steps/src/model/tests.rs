//! Whole-model tests: shapes, parameter names, gradient flow, parity with the reference.

use super::*;
use crate::model::init::seeded_var_builder;
use crate::model::linalg::max_abs_diff;
use candle_core::{DType, Device, Var};
use candle_nn::VarMap;

fn tiny(mode: Mode, gat: GatKind) -> Config {
    Config {
        gru_hidden: 8,
        forecast_hidden: 6,
        recon_hidden: 7,
        kernel_size: 3,
        gat,
        mode,
        ..Config::paper(4, 6, 2)
    }
}

#[test]
fn paper_config_is_valid_and_bad_values_are_named() {
    assert!(Config::paper(55, 100, 1).validate().is_ok());
    let err = Config {
        kernel_size: 6,
        ..Config::paper(5, 10, 1)
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("kernel-size"), "{err}");
    let err = Config {
        dropout: 1.0,
        ..Config::paper(5, 10, 1)
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(err.contains("dropout"), "{err}");
}

#[test]
fn output_shapes_and_reference_parameter_names() {
    let device = Device::Cpu;
    let varmap = VarMap::new();
    let cfg = tiny(Mode::Both, GatKind::Gatv2);
    let model = MtadGat::new(&cfg, seeded_var_builder(&varmap, 0, &device), 0).unwrap();
    let xs = Tensor::randn(0f32, 1.0, (3, 6, 4), &device).unwrap();
    let out = model.forward(&xs, true).unwrap();
    assert_eq!(out.forecast.unwrap().dims(), &[3, 2]);
    assert_eq!(out.reconstruction.unwrap().dims(), &[3, 6, 2]);
    // 3 hidden layers + the output layer, as ML4ITS builds for fc_n_layers = 3.
    assert_eq!(model.forecast.n_linear_layers(), 4);
    let names: Vec<String> = {
        let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
        names.sort();
        names
    };
    for expected in [
        "conv.conv.weight",
        "feature_gat.lin.weight",
        "feature_gat.a",
        "feature_gat.bias",
        "temporal_gat.lin.bias",
        "gru.gru.weight_hh_l0",
        "forecasting_model.layers.3.weight",
        "recon_model.decoder.rnn.bias_ih_l0",
        "recon_model.fc.weight",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "missing `{expected}` in {names:?}"
        );
    }
    let shape = |name: &str| varmap.data().lock().unwrap()[name].dims().to_vec();
    assert_eq!(shape("feature_gat.lin.weight"), vec![12, 12]); // 2W -> 2W
    assert_eq!(shape("temporal_gat.lin.weight"), vec![8, 8]); // 2K -> 2K
    assert_eq!(shape("feature_gat.bias"), vec![4, 4]);
    assert_eq!(shape("temporal_gat.bias"), vec![6, 6]);
    assert_eq!(shape("gru.gru.weight_ih_l0"), vec![24, 12]); // 3K -> 3H
}

#[test]
fn modes_skip_the_unused_head() {
    let device = Device::Cpu;
    let xs = Tensor::randn(0f32, 1.0, (2, 6, 4), &device).unwrap();
    for (mode, fc, rec) in [
        (Mode::Forecast, true, false),
        (Mode::Reconstruct, false, true),
    ] {
        let varmap = VarMap::new();
        let model = MtadGat::new(
            &tiny(mode, GatKind::Gat),
            seeded_var_builder(&varmap, 0, &device),
            0,
        )
        .unwrap();
        let out = model.forward(&xs, false).unwrap();
        assert_eq!(out.forecast.is_some(), fc);
        assert_eq!(out.reconstruction.is_some(), rec);
    }
}

#[test]
fn every_parameter_receives_a_gradient() {
    let device = Device::Cpu;
    for gat in [GatKind::Gatv2, GatKind::Gat] {
        let varmap = VarMap::new();
        let model = MtadGat::new(
            &tiny(Mode::Both, gat),
            seeded_var_builder(&varmap, 1, &device),
            1,
        )
        .unwrap();
        let xs = Tensor::randn(0f32, 1.0, (3, 6, 4), &device).unwrap();
        let out = model.forward(&xs, true).unwrap();
        let loss = (out.forecast.unwrap().sqr().unwrap().mean_all().unwrap()
            + out
                .reconstruction
                .unwrap()
                .sqr()
                .unwrap()
                .mean_all()
                .unwrap())
        .unwrap();
        let grads = loss.backward().unwrap();
        let vars: Vec<(String, Var)> = varmap
            .data()
            .lock()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, var) in vars {
            let grad = grads
                .get(&var)
                .unwrap_or_else(|| panic!("no gradient for `{name}` ({gat:?})"));
            let norm: f32 = grad.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
            assert!(norm.is_finite(), "`{name}` gradient not finite");
            // The attention bias of a softmax row gets an exactly zero gradient only by accident.
            assert!(norm > 0.0, "zero gradient for `{name}` ({gat:?})");
        }
    }
}

/// Weights, inputs, PyTorch's outputs and training gradients of a tiny ML4ITS `MTAD_GAT`
/// (`steps/tests/fixtures/make_ml4its_tiny.py` writes it).
pub(super) const ML4ITS_TINY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ml4its_tiny.safetensors"
);

/// The fixture's `MTAD_GAT(4, 6, 2, kernel 3, gru 5, forecast 3 x 6, recon 7)`.
pub(super) fn ml4its_tiny_config() -> Config {
    Config {
        kernel_size: 3,
        gru_hidden: 5,
        forecast_layers: 3,
        forecast_hidden: 6,
        recon_hidden: 7,
        ..Config::paper(4, 6, 2)
    }
}

/// Numeric parity with the PyTorch reference: `tests/fixtures/ml4its_tiny.safetensors` holds
/// the weights of ML4ITS's `MTAD_GAT(4, 6, 2, kernel_size=3, gru_hid_dim=5,
/// forecast_n_layers=3, forecast_hid_dim=6, recon_hid_dim=7)` (random, eval mode), an input
/// batch and the forecast and reconstruction PyTorch computed for it.
#[test]
fn forward_matches_the_pytorch_reference() {
    let device = Device::Cpu;
    let tensors = candle_core::safetensors::load(ML4ITS_TINY, &device).unwrap();
    let input = tensors["input"].clone();
    let expected_forecast = tensors["expected.forecast"].clone();
    let expected_recon = tensors["expected.reconstruction"].clone();
    let cfg = ml4its_tiny_config();
    let vb = VarBuilder::from_tensors(tensors.clone(), DType::F32, &device);
    let out = MtadGat::new(&cfg, vb, 0)
        .unwrap()
        .forward(&input, false)
        .unwrap();
    let forecast_diff = max_abs_diff(&out.forecast.unwrap(), &expected_forecast);
    let recon_diff = max_abs_diff(&out.reconstruction.unwrap(), &expected_recon);
    assert!(forecast_diff < 1e-5, "forecast differs by {forecast_diff}");
    assert!(recon_diff < 1e-5, "reconstruction differs by {recon_diff}");

    // The decoder's input layout is what the fixture discriminates: feeding the state
    // itself at every step gives another reconstruction.
    let repeated = Config {
        decoder_input: DecoderInput::Repeated,
        ..cfg
    };
    let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
    let out = MtadGat::new(&repeated, vb, 0)
        .unwrap()
        .forward(&input, false)
        .unwrap();
    assert!(max_abs_diff(&out.reconstruction.unwrap(), &expected_recon) > 1e-3);
}

#[test]
fn manifests_without_decoder_input_keep_the_repeated_layout() {
    let mut json = serde_json::to_value(Config::paper(4, 6, 1)).unwrap();
    assert_eq!(json["decoder_input"], "interleaved");
    json.as_object_mut().unwrap().remove("decoder_input");
    let cfg: Config = serde_json::from_value(json).unwrap();
    assert_eq!(cfg.decoder_input, DecoderInput::Repeated);
}
