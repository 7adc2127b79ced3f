//! Bundles of tiny untrained models: save/load, scoring alignment, manifest versions.

use super::*;
use crate::data::preprocessor::ScalerKind;

const K: usize = 3;
const W: usize = 5;

fn raw_series(n_rows: usize) -> Vec<f64> {
    (0..n_rows * K)
        .map(|i| ((i as f64) * 0.37).sin() * 10.0 + 3.0)
        .collect()
}

fn bundle(target_dims: Vec<usize>) -> Bundle {
    let columns: Vec<String> = (0..K).map(|c| format!("c{c}")).collect();
    let preprocessor = Preprocessor::fit(
        &raw_series(40),
        columns,
        ScalerKind::Minmax,
        0.0,
        target_dims.clone(),
        W,
    );
    let n_target = if target_dims.is_empty() {
        K
    } else {
        target_dims.len()
    };
    let model = Config {
        gru_hidden: 6,
        forecast_hidden: 5,
        recon_hidden: 4,
        kernel_size: 3,
        ..Config::paper(K, W, n_target)
    };
    let mut bundle = Bundle::untrained(preprocessor, model, 9).unwrap();
    bundle.manifest.gamma = 0.5;
    bundle
}

#[test]
fn save_load_round_trip_gives_identical_scores() {
    let original = bundle(vec![0, 2]).with_thresholds(Thresholds {
        pot: Some(0.4),
        ..Thresholds::default()
    });
    let dir = tempfile::tempdir().unwrap();
    original.save(dir.path()).unwrap();
    let loaded = Bundle::load(dir.path()).unwrap();
    assert_eq!(loaded.manifest, original.manifest);
    let raw = raw_series(300);
    let a = original.score_raw(&raw, 300).unwrap();
    let b = loaded.score_raw(&raw, 300).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.n_scored(), 295);
    assert_eq!(a.first_row, W);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "temporary files left behind: {leftovers:?}"
    );
}

#[test]
fn row_t_uses_forecast_of_window_t_minus_w_and_recon_of_window_t_minus_w_plus_1() {
    let b = bundle(vec![]);
    let n_rows = 12;
    let series: Vec<f32> = b.manifest.preprocessor.transform(&raw_series(n_rows));
    let scores = b.score_scaled(&series, n_rows).unwrap();
    assert_eq!(scores.n_target, K);
    let window = |start: usize| {
        Tensor::from_vec(
            series[start * K..(start + W) * K].to_vec(),
            (1, W, K),
            &Device::Cpu,
        )
        .unwrap()
    };
    for t in [W, W + 3, n_rows - 1] {
        let s = t - W;
        let fc = b
            .model
            .forward(&window(t - W), false)
            .unwrap()
            .forecast
            .unwrap();
        let fc: Vec<f32> = fc.flatten_all().unwrap().to_vec1().unwrap();
        let rec = b
            .model
            .forward(&window(t - W + 1), false)
            .unwrap()
            .reconstruction
            .unwrap();
        let rec: Vec<f32> = rec
            .narrow(1, W - 1, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for f in 0..K {
            let i = s * K + f;
            assert!((scores.forecast[i] - fc[f]).abs() < 1e-6);
            assert!((scores.reconstruction[i] - rec[f]).abs() < 1e-6);
            assert_eq!(scores.actual[i], series[t * K + f]);
            let expected =
                (fc[f] - series[t * K + f]).abs() + 0.5 * (rec[f] - series[t * K + f]).abs();
            assert!((scores.per_feature[i] - expected).abs() < 1e-5);
        }
        let mean = scores.per_feature[s * K..(s + 1) * K].iter().sum::<f32>() / K as f32;
        assert!((scores.total[s] - mean).abs() < 1e-6);
    }
}

#[test]
fn clear_errors_for_bad_input_and_versions() {
    let b = bundle(vec![0]);
    let err = b
        .score_raw(&raw_series(10)[..29], 10)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("3 columns") && err.contains("c0, c1, c2"),
        "{err}"
    );
    let err = b.score_scaled(&[0.0; W * K], W).unwrap_err().to_string();
    assert!(
        err.contains("window (5)") && err.contains("at least 6"),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    b.save(dir.path()).unwrap();
    let path = dir.path().join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "\"format_version\": 1,\n  \"algorithm\"",
        "\"format_version\": 7,\n  \"algorithm\"",
    );
    std::fs::write(&path, text).unwrap();
    let err = Bundle::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("format_version 7"), "{err}");
    let err = format!(
        "{:#}",
        Bundle::load(&dir.path().join("missing")).unwrap_err()
    );
    assert!(err.contains("flow-model.json"), "{err}");
}

#[test]
fn manifests_without_a_dataset_read_as_unknown() {
    let b = bundle(vec![0]);
    let dir = tempfile::tempdir().unwrap();
    b.save(dir.path()).unwrap();
    let path = dir.path().join(MANIFEST_FILE);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(json["dataset"]["name"], "");
    json.as_object_mut().unwrap().remove("dataset");
    std::fs::write(&path, json.to_string()).unwrap();
    let loaded = Bundle::load(dir.path()).unwrap();
    assert!(!loaded.manifest.dataset.is_known());
}

#[test]
fn one_window_forward_gives_what_batch_scoring_uses() {
    let bundle = bundle(vec![0, 2]);
    let raw = raw_series(12);
    let scaled = bundle.manifest.preprocessor.transform(&raw);
    let scores = bundle.score_scaled(&scaled, 12).unwrap();
    // Window j = rows j..j+W forecasts row j+W (scored index j) and reconstructs row
    // j+W-1 (scored index j-1).
    for j in 1..12 - W {
        let out = bundle.forward_window(&scaled[j * K..(j + W) * K]).unwrap();
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() < 1e-5);
        assert!(close(
            &out.forecast.unwrap(),
            &scores.forecast[j * 2..][..2]
        ));
        assert!(close(
            &out.last_reconstruction.unwrap(),
            &scores.reconstruction[(j - 1) * 2..][..2]
        ));
    }
    let err = bundle.forward_window(&scaled[..K]).unwrap_err().to_string();
    assert!(err.contains("5 rows x 3 columns"), "{err}");
}

#[test]
fn active_threshold_prefers_chosen_then_epsilon_then_pot() {
    let mut t = Thresholds {
        pot: Some(1.0),
        epsilon: Some(2.0),
        best_f1: Some(3.0),
        chosen: None,
    };
    assert_eq!(t.active(), Some(2.0));
    t.chosen = Some("best_f1".into());
    assert_eq!(t.active(), Some(3.0));
    t.chosen = Some("pot".into());
    assert_eq!(t.active(), Some(1.0));
    assert_eq!(
        Thresholds {
            pot: Some(1.0),
            ..Thresholds::default()
        }
        .active(),
        Some(1.0)
    );
    assert_eq!(Thresholds::default().active(), None);
}

#[test]
fn a_bundle_scores_on_plain_tensors() {
    // Built from a training's variables, as `train` and `untrained` build it: scoring must
    // record no graph and keep nothing for a backward pass.
    let fresh = bundle(vec![0]);
    assert!(!fresh.weights().is_empty());
    assert!(fresh.weights().values().all(|w| !w.track_op()));
}
