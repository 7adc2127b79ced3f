//! Training-loop tests on tiny synthetic series (seconds each).

use super::*;
use crate::model::linalg::max_abs_diff;
use crate::model::tests::{ml4its_tiny_config, ML4ITS_TINY};
use crate::model::{GatKind, Mode};

/// Two coupled sine waves and a sawtooth: learnable, deterministic.
fn synthetic(n_rows: usize) -> Vec<f32> {
    (0..n_rows)
        .flat_map(|t| {
            let t = t as f32;
            [
                0.5 + 0.4 * (t * 0.4).sin(),
                0.5 + 0.4 * (t * 0.4 + 1.0).cos(),
                (t % 7.0) / 7.0,
            ]
        })
        .collect()
}

fn tiny_config() -> Config {
    Config {
        kernel_size: 3,
        gru_hidden: 12,
        forecast_hidden: 12,
        recon_hidden: 12,
        forecast_layers: 2,
        ..Config::paper(3, 8, 2)
    }
}

fn options(epochs: usize) -> FitOptions {
    FitOptions {
        epochs,
        batch_size: 16,
        lr: 5e-3,
        val_split: 0.1,
        val_windows: ValWindows::Last,
        clip_norm: 5.0,
        seed: 0,
        max_windows: 0,
        inject_nan_at: Vec::new(),
    }
}

#[derive(Default)]
struct Recorder {
    epochs: Vec<EpochReport>,
    events: Vec<String>,
}

impl FitObserver for Recorder {
    fn epoch(&mut self, report: &EpochReport) -> Result<()> {
        self.epochs.push(report.clone());
        Ok(())
    }

    fn event(&mut self, message: &str) {
        self.events.push(message.to_string());
    }
}

fn values(weights: &HashMap<String, Tensor>) -> Vec<(String, Vec<f32>)> {
    let mut out: Vec<(String, Vec<f32>)> = weights
        .iter()
        .map(|(k, v)| (k.clone(), v.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn loss_decreases_on_a_learnable_series() {
    let series = synthetic(240);
    let mut recorder = Recorder::default();
    let fitted = fit(
        &series,
        240,
        &[0, 2],
        &tiny_config(),
        &options(8),
        &mut recorder,
    )
    .unwrap();
    let first = &recorder.epochs[0];
    let last = recorder.epochs.last().unwrap();
    assert!(
        last.train_loss < 0.7 * first.train_loss,
        "{} -> {}",
        first.train_loss,
        last.train_loss
    );
    assert!(fitted.best_val_loss <= first.val_loss);
    assert_eq!(fitted.n_train_windows + fitted.n_val_windows, 240 - 8);
    assert_eq!(fitted.n_val_windows, 23);
    assert!(recorder.events.is_empty());
}

#[test]
fn same_seed_same_weights_other_seed_other_weights() {
    let series = synthetic(120);
    let run = |seed, gat| {
        let cfg = Config {
            gat,
            ..tiny_config()
        };
        let opts = FitOptions { seed, ..options(2) };
        values(
            &fit(&series, 120, &[0, 2], &cfg, &opts, &mut Recorder::default())
                .unwrap()
                .weights,
        )
    };
    assert_eq!(run(3, GatKind::Gatv2), run(3, GatKind::Gatv2));
    assert_ne!(run(3, GatKind::Gatv2), run(4, GatKind::Gatv2));
    assert_eq!(run(5, GatKind::Gat), run(5, GatKind::Gat));
}

#[test]
fn non_finite_loss_rolls_back_halves_lr_and_never_keeps_nan() {
    let series = synthetic(120);
    let mut recorder = Recorder::default();
    let opts = FitOptions {
        inject_nan_at: vec![2, 9],
        ..options(3)
    };
    let fitted = fit(&series, 120, &[0, 2], &tiny_config(), &opts, &mut recorder).unwrap();
    assert_eq!(fitted.rollbacks, 2);
    assert_eq!(recorder.events.len(), 2, "{:?}", recorder.events);
    assert!(
        recorder.events[0].contains("non-finite loss"),
        "{}",
        recorder.events[0]
    );
    let lrs: Vec<f64> = recorder.epochs.iter().map(|r| r.lr).collect();
    assert_eq!(lrs.last().copied(), Some(opts.lr / 4.0));
    for (name, v) in values(&fitted.weights) {
        assert!(
            v.iter().all(|x| x.is_finite()),
            "`{name}` has non-finite values"
        );
    }
    assert!(fitted.best_val_loss.is_finite());
}

#[test]
fn persistent_divergence_is_an_error_not_a_nan_model() {
    let series = synthetic(60);
    let opts = FitOptions {
        inject_nan_at: (1..100).collect(),
        ..options(8)
    };
    let err = fit(
        &series,
        60,
        &[0, 2],
        &tiny_config(),
        &opts,
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("diverged"), "{err}");
}

#[test]
fn forecast_only_mode_trains_and_max_windows_caps_the_data() {
    let series = synthetic(200);
    let cfg = Config {
        mode: Mode::Forecast,
        ..tiny_config()
    };
    let opts = FitOptions {
        max_windows: 50,
        ..options(1)
    };
    let mut recorder = Recorder::default();
    let fitted = fit(&series, 200, &[0, 2], &cfg, &opts, &mut recorder).unwrap();
    assert_eq!(fitted.n_train_windows + fitted.n_val_windows, 50);
    assert_eq!(recorder.epochs[0].recon_loss, 0.0);
    assert!(recorder.epochs[0].forecast_loss > 0.0);
}

#[test]
fn too_short_series_names_the_window() {
    let series = synthetic(9);
    let err = fit(
        &series,
        9,
        &[0, 2],
        &tiny_config(),
        &options(1),
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("window 8"), "{err}");
}

#[test]
fn validation_windows_are_the_tail_or_a_seeded_random_share() {
    let opts = |val_windows, seed| FitOptions {
        val_windows,
        seed,
        ..options(1)
    };
    let (train, val) = split_windows(100, &opts(ValWindows::Last, 0)).unwrap();
    assert_eq!(val, (90..100).collect::<Vec<_>>());
    assert_eq!(train, (0..90).collect::<Vec<_>>());

    let (train, val) = split_windows(100, &opts(ValWindows::Random, 0)).unwrap();
    assert_eq!((train.len(), val.len()), (90, 10));
    let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..100).collect::<Vec<_>>(),
        "a partition of the windows"
    );
    assert_ne!(val, (90..100).collect::<Vec<_>>(), "not the tail");
    assert!(
        val.iter().any(|&w| w < 50),
        "spread over the series: {val:?}"
    );
    assert_eq!(
        split_windows(100, &opts(ValWindows::Random, 0)).unwrap().1,
        val,
        "the same seed holds out the same windows"
    );
    assert_ne!(
        split_windows(100, &opts(ValWindows::Random, 1)).unwrap().1,
        val
    );
}

#[test]
fn clipping_is_counted_and_off_at_zero() {
    let series = synthetic(120);
    let run = |clip_norm| {
        let opts = FitOptions {
            clip_norm,
            ..options(2)
        };
        let mut recorder = Recorder::default();
        fit(&series, 120, &[0, 2], &tiny_config(), &opts, &mut recorder).unwrap();
        recorder.epochs
    };
    let batches = (120 - 8 - 11_usize).div_ceil(16);
    for epoch in run(1e-9) {
        assert_eq!(epoch.clipped_batches, batches);
        assert!(epoch.max_grad_norm > 1e-9);
    }
    for epoch in run(0.0) {
        assert_eq!(epoch.clipped_batches, 0);
        assert!(epoch.max_grad_norm > 0.0);
    }
}

/// The tiny ML4ITS model of the forward-parity fixture, loaded into trainable variables,
/// with dropout off; and the fixture's tensors.
fn ml4its_tiny() -> (MtadGat, Vec<(String, Var)>, HashMap<String, Tensor>) {
    let fixture = candle_core::safetensors::load(ML4ITS_TINY, &Device::Cpu).unwrap();
    let cfg = Config {
        dropout: 0.0,
        ..ml4its_tiny_config()
    };
    let varmap = VarMap::new();
    let model = MtadGat::new(&cfg, seeded_var_builder(&varmap, 0, &Device::Cpu), 0).unwrap();
    let vars = sorted_vars(&varmap).unwrap();
    restore(&vars, &fixture).unwrap();
    (model, vars, fixture)
}

/// ML4ITS's training inputs of the fixture: the batch, the next row of target dims 0 and 2
/// (the forecast target) and the batch's target dims (the reconstruction target).
fn ml4its_targets(fixture: &HashMap<String, Tensor>) -> (Tensor, Tensor, Tensor) {
    let dims = Tensor::new(&[0u32, 2], &Device::Cpu).unwrap();
    let xs = fixture["input"].clone();
    let ys = fixture["train.next"].squeeze(1).unwrap();
    let ys = ys.index_select(&dims, 1).unwrap();
    let xs_target = xs.index_select(&dims, 2).unwrap();
    (xs, ys, xs_target)
}

#[test]
fn training_gradients_match_the_pytorch_reference() {
    let (model, vars, fixture) = ml4its_tiny();
    let (xs, ys, xs_target) = ml4its_targets(&fixture);
    let out = model.forward(&xs, true).unwrap();
    let (loss, _, _) = losses(&out, &ys, &xs_target).unwrap();
    let expected_loss = fixture["train.loss"].to_vec1::<f32>().unwrap()[0];
    let loss_value = loss.to_scalar::<f32>().unwrap();
    assert!(
        (loss_value - expected_loss).abs() < 1e-5,
        "loss {loss_value} vs {expected_loss}"
    );
    let grads = loss.backward().unwrap();
    assert_eq!(vars.len(), 28, "every ML4ITS parameter is a flow variable");
    for (name, var) in &vars {
        let got = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let expected = &fixture[&format!("grad.{name}")];
        let scale = expected
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let diff = max_abs_diff(got, expected);
        assert!(
            diff <= 1e-5 + 1e-4 * scale,
            "gradient of {name} differs by {diff} (largest {scale})"
        );
    }
}

#[test]
fn adam_steps_match_the_pytorch_reference() {
    let (model, vars, fixture) = ml4its_tiny();
    let (xs, ys, xs_target) = ml4its_targets(&fixture);
    let mut optimizer =
        crate::model::adam::Adam::new(vars.iter().map(|(_, v)| v.clone()).collect(), 1e-2);
    for _ in 0..3 {
        let out = model.forward(&xs, true).unwrap();
        let (loss, _, _) = losses(&out, &ys, &xs_target).unwrap();
        optimizer.step(&loss.backward().unwrap(), 1.0).unwrap();
    }
    // Where a gradient is ~0 (below Adam's eps of 1e-8), its sign and size are rounding
    // noise that Adam scales up to a step of up to lr/2: those entries are not compared.
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut compared = 0;
    for (name, var) in &vars {
        let got = flat(var.as_tensor());
        let expected = flat(&fixture[&format!("adam3.{name}")]);
        let grad = flat(&fixture[&format!("grad.{name}")]);
        for (i, ((g, e), d)) in got.iter().zip(&expected).zip(&grad).enumerate() {
            if d.abs() > 1e-7 {
                compared += 1;
                assert!(
                    (g - e).abs() < 2e-5,
                    "{name}[{i}] after three Adam steps: {g} vs {e}"
                );
            }
        }
    }
    assert!(compared > 400, "only {compared} weights compared");
}
