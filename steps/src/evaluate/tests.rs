//! `evaluate` on fabricated upstream outputs: a tiny untrained bundle, a processed split
//! with an obvious injected anomaly, and a `meta.json` with interpretation labels.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::*;
use crate::data::meta::{Interpretation, Part};
use crate::data::preprocessor::{Preprocessor, ScalerKind};
use crate::model::Config;

pub(crate) const N_FEATURES: usize = 3;
pub(crate) const WINDOW: usize = 8;

/// A small untrained MTAD-GAT bundle over columns `c0..c2`, min-max scaled to [0, 1].
pub(crate) fn tiny_bundle() -> Bundle {
    let columns: Vec<String> = (0..N_FEATURES).map(|i| format!("c{i}")).collect();
    let train: Vec<f64> = (0..40 * N_FEATURES).map(|i| (i % 7) as f64).collect();
    let preprocessor =
        Preprocessor::fit(&train, columns, ScalerKind::Minmax, 0.0, Vec::new(), WINDOW);
    let cfg = Config {
        gru_hidden: 8,
        forecast_hidden: 6,
        recon_hidden: 7,
        kernel_size: 3,
        dropout: 0.0,
        ..Config::paper(N_FEATURES, WINDOW, N_FEATURES)
    };
    Bundle::untrained(preprocessor, cfg, 3).unwrap()
}

/// Smooth scaled rows in [0, 1]; `spike` rows get feature 1 set to 25.
fn series(n_rows: usize, phase: f64, spike: std::ops::Range<usize>) -> Vec<f32> {
    let mut values = Vec::with_capacity(n_rows * N_FEATURES);
    for row in 0..n_rows {
        for col in 0..N_FEATURES {
            let v = 0.5 + 0.4 * ((row as f64 + phase) / (4.0 + col as f64)).sin();
            values.push(if spike.contains(&row) && col == 1 {
                25.0
            } else {
                v as f32
            });
        }
    }
    values
}

const N_TRAIN: usize = 300;
const N_TEST: usize = 200;
const SPIKE: std::ops::Range<usize> = 120..126;

/// load/, process/ and train/ directories as the upstream steps would leave them.
fn upstream(root: &Path) -> StepContext {
    upstream_with_phase(root, 0.0)
}

/// [`upstream`] with the series shifted by `phase` rows (a different member's data).
pub(crate) fn upstream_with_phase(root: &Path, phase: f64) -> StepContext {
    let (load, process, train) = (root.join("load"), root.join("process"), root.join("train"));
    for dir in [&load, &process, &train] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let meta = Meta {
        format_version: Meta::FORMAT_VERSION,
        dataset: "demo".into(),
        source_format: "csv".into(),
        columns: (0..N_FEATURES).map(|i| format!("c{i}")).collect(),
        target_dims: None,
        parts: vec![Part {
            name: "demo".into(),
            train_rows: N_TRAIN,
            test_rows: N_TEST,
        }],
        interpretation: vec![Interpretation {
            start: SPIKE.start,
            end: SPIKE.end,
            dims: vec![1],
        }],
    };
    meta.write(&load.join("meta.json")).unwrap();
    let mut labels = vec![0u8; N_TEST];
    labels[SPIKE].fill(1);
    let device = Device::Cpu;
    let tensors: HashMap<String, Tensor> = [
        (
            "train",
            Tensor::from_vec(series(N_TRAIN, phase, 0..0), (N_TRAIN, N_FEATURES), &device).unwrap(),
        ),
        (
            "test",
            Tensor::from_vec(
                series(N_TEST, 3.0 + phase, SPIKE),
                (N_TEST, N_FEATURES),
                &device,
            )
            .unwrap(),
        ),
        ("labels", Tensor::from_vec(labels, N_TEST, &device).unwrap()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    candle_core::safetensors::save(&tensors, process.join("data.safetensors")).unwrap();
    tiny_bundle().save(&train.join("model")).unwrap();
    std::fs::write(
        train.join("history.json"),
        r#"{"train_loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}"#,
    )
    .unwrap();
    chain_context(root, &load, &process, &train)
}

/// A context over `load`, `process` and `train` writing to `root/out`, its metrics to
/// `root/metrics.jsonl`.
pub(crate) fn chain_context(root: &Path, load: &Path, process: &Path, train: &Path) -> StepContext {
    let mut ctx = StepContext::for_dirs(
        root.join("out"),
        &[("load", load), ("process", process), ("train", train)],
    );
    ctx.metrics_path = Some(root.join("metrics.jsonl"));
    ctx
}

pub(crate) fn default_args() -> EvaluateArgs {
    EvaluateArgs {
        level: Auto::Auto,
        q: Auto::Auto,
        reg_level: Auto::Auto,
        gamma: Auto::Auto,
        scale_scores: false,
        normalize_parts: Auto::Auto,
        dynamic_pot: false,
        pot_roots: RootSearch::Siffer,
        choose: ThresholdMethod::Epsilon,
        bf_start: 0.01,
        bf_end: 2.0,
        bf_steps: 100,
        constant_parts: ConstantParts::Exclude,
        plots: true,
    }
}

fn logged_metrics(path: &Path) -> HashMap<String, f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                v["key"].as_str().unwrap().to_string(),
                v["value"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

#[test]
fn evaluate_writes_scores_metrics_bundle_and_plots() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = upstream(dir.path());
    run(&ctx, &default_args()).unwrap();
    let out = dir.path().join("out");

    let metrics = logged_metrics(&dir.path().join("metrics.jsonl"));
    for key in [
        "f1_pa_pot",
        "f1_pa_epsilon",
        "f1_pa_best",
        "f1_best",
        "threshold_pot",
        "precision_epsilon",
        "hitrate_100",
    ] {
        assert!(
            metrics.contains_key(key),
            "missing metric {key}: {metrics:?}"
        );
    }
    // The spike dwarfs every other error: a threshold separates it exactly.
    assert_eq!(metrics["f1_pa_best_exact"], 1.0);
    assert_eq!(metrics["f1_best"], 1.0);
    // The spiked feature has by far the largest per-feature score on the spike rows.
    assert_eq!(metrics["hitrate_100"], 1.0);

    let csv = std::fs::read_to_string(out.join("scores.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("row,score,label,pred_pot,pred_epsilon,pred_best")
    );
    assert_eq!(lines.clone().count(), N_TEST - WINDOW);
    assert!(lines.next().unwrap().starts_with(&format!("{WINDOW},")));

    // One true segment, the spike, found by every method (best F1 separates it exactly).
    let segments_csv = std::fs::read_to_string(out.join("segments.csv")).unwrap();
    let rows: Vec<Vec<&str>> = segments_csv
        .lines()
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "start",
            "end",
            "rows",
            "part",
            "peak_score",
            "detected_pot",
            "detected_epsilon",
            "detected_best"
        ]
    );
    assert_eq!(rows.len(), 2, "{segments_csv}");
    let (start, end) = (SPIKE.start.to_string(), SPIKE.end.to_string());
    assert_eq!(rows[1][..4], [start.as_str(), end.as_str(), "6", "demo"]);
    assert_eq!(rows[1][7], "1");
    let peak: f64 = rows[1][4].parse().unwrap();
    assert!(peak > metrics["threshold_best"]);
    assert_eq!(
        rows[1][5],
        if peak > metrics["threshold_pot"] {
            "1"
        } else {
            "0"
        }
    );

    // The training scores on file are the ones POT was fitted on: refitting gives its threshold.
    let train_csv = std::fs::read_to_string(out.join("train_scores.csv")).unwrap();
    let mut lines = train_csv.lines();
    assert_eq!(lines.next(), Some("row,score,fitted"));
    let train_scores: Vec<f64> = lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            assert_eq!(fields[2], "1", "one part, nothing degenerate: {line}");
            fields[1].parse().unwrap()
        })
        .collect();
    assert_eq!(train_scores.len(), N_TRAIN - WINDOW);
    let published = crate::evaluate::settings::published_settings("demo");
    let refit = crate::thresholds::pot::pot_eval(
        &train_scores,
        &[],
        crate::thresholds::pot::PotConfig {
            level: published.level,
            q: published.q,
            dynamic: false,
            roots: RootSearch::Siffer,
        },
    )
    .unwrap();
    assert_eq!(refit.threshold, metrics["threshold_pot"]);

    let saved = Bundle::load(&out.join("model")).unwrap();
    let thresholds = &saved.manifest.thresholds;
    assert_eq!(thresholds.chosen.as_deref(), Some("epsilon"));
    assert_eq!(thresholds.active(), thresholds.epsilon);
    assert_eq!(thresholds.epsilon, Some(metrics["threshold_epsilon"]));
    assert_eq!(thresholds.pot, Some(metrics["threshold_pot"]));

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["dataset"], "demo");
    assert_eq!(summary["metrics"]["f1_best"], 1.0);
    assert_eq!(summary["report"]["settings"]["level"], 0.99);
    for plot in ["scores.png", "features.png", "loss.png"] {
        assert!(out.join("plots").join(plot).exists(), "missing plot {plot}");
    }
}

#[test]
fn transformed_scores_keep_serving_thresholds_on_plain_scores() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = upstream(dir.path());
    let args = EvaluateArgs {
        normalize_parts: Auto::Value(true),
        choose: ThresholdMethod::Pot,
        plots: false,
        ..default_args()
    };
    run(&ctx, &args).unwrap();
    let metrics = logged_metrics(&dir.path().join("metrics.jsonl"));
    let saved = Bundle::load(&dir.path().join("out/model")).unwrap();
    // Normalised scores live in [0, 1]; the bundle's threshold is on the plain scale.
    assert_eq!(
        saved.manifest.thresholds.pot,
        Some(metrics["serve_threshold_pot"])
    );
    assert_eq!(
        saved.manifest.thresholds.active(),
        saved.manifest.thresholds.pot
    );
    assert!(!dir.path().join("out/plots").exists());
}

#[test]
fn split_scores_recompute_gamma_and_normalise() {
    let scores = Scores {
        first_row: 2,
        n_target: 2,
        total: vec![0.0; 3],
        per_feature: vec![0.0; 6],
        forecast: vec![1.0, 1.0, 1.0, 1.0, 1.0, f32::NAN],
        reconstruction: vec![0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        actual: vec![0.5, 0.0, 0.5, 0.0, 3.0, 1.0],
    };
    let split = split_scores(&scores, 2.0, false, None, 2);
    // Row 0: |1-0.5| + 2|0-0.5| = 1.5 and |1-0| + 0 = 1; a NaN head contributes nothing.
    assert_eq!(split.per_feature, vec![1.5, 1.0, 1.5, 1.0, 8.0, 2.0]);
    assert_eq!(split.plain_total, vec![1.25, 1.25, 5.0]);
    assert_eq!(split.total, split.plain_total);
    let normalised = split_scores(&scores, 2.0, false, Some(&[5]), 2);
    assert_eq!(normalised.total, vec![0.0, 0.0, 1.0]);
    assert_eq!(normalised.plain_total, split.plain_total);
}

#[test]
fn interpretation_rows_map_to_scored_rows_and_target_positions() {
    let meta = Meta {
        format_version: 1,
        dataset: "machine-1-1".into(),
        source_format: "smd".into(),
        columns: vec!["a".into(), "b".into(), "c".into()],
        target_dims: Some(vec![0, 2]),
        parts: Vec::new(),
        interpretation: vec![Interpretation {
            start: 3,
            end: 6,
            dims: vec![2, 1],
        }],
    };
    let truths = interpretation_truths(&meta, &[0, 2], 4);
    // Rows 4 and 5 are scored (row 3 is inside the first window); column 2 is target 1,
    // column 1 is not scored.
    assert_eq!(
        truths,
        vec![
            RowTruth {
                score_index: 0,
                features: vec![1]
            },
            RowTruth {
                score_index: 1,
                features: vec![1]
            }
        ]
    );
}

#[test]
fn missing_upstream_data_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = upstream(dir.path());
    std::fs::remove_file(dir.path().join("process/data.safetensors")).unwrap();
    let err = format!("{:#}", run(&ctx, &default_args()).unwrap_err());
    assert!(err.contains("data.safetensors"), "{err}");
}

/// Full SMAP's POT collapse (issue 19) in miniature: three concatenated channels, the middle
/// one constant in training, as D-13 is. Its rows get one training score, which normalisation
/// against the zeroed boundary rows makes 1.0; they fill POT's tail and the fitted threshold
/// lies above every test score. Left out of the fit, they no longer do.
#[test]
fn a_constant_part_no_longer_floods_the_pot_tail() {
    use crate::model::init::SplitMix64;
    use crate::thresholds::scores::normalize_parts;

    let window = 10;
    let part = |name: &str, train_rows, test_rows| Part {
        name: name.into(),
        train_rows,
        test_rows,
    };
    let parts = vec![
        part("A-1", 1500, 1500),
        part("B-1", 200, 1500),
        part("C-1", 1500, 1500),
    ];
    let (n_train, n_test) = (3200, 4500);
    // Two columns, the telemetry value (the target) and a command; B-1's value never changes.
    let mut rng = SplitMix64::new(19);
    let mut train = Vec::with_capacity(n_train * 2);
    for row in 0..n_train {
        let value = if (1500..1700).contains(&row) {
            -1.0
        } else {
            rng.next_f64() as f32
        };
        train.extend([value, (row % 3) as f32]);
    }
    // Plain scores: exponential-like errors, B-1's a constant offset once its window is
    // inside it; a test anomaly in A-1 (rows 700..760) scores far above the rest.
    let mut error = |scale: f64| -scale * (1.0 - rng.next_f64()).ln();
    let plain_train: Vec<f64> = (window..n_train)
        .map(|row| {
            if (1500 + window..1700).contains(&row) {
                0.08
            } else {
                error(0.05)
            }
        })
        .collect();
    let mut labels = vec![false; n_test - window];
    let plain_test: Vec<f64> = (window..n_test)
        .map(|row| {
            if (700..760).contains(&row) {
                labels[row - window] = true;
                1.0 + error(0.05)
            } else {
                error(0.05)
            }
        })
        .collect();
    let split = |plain: &[f64], rows: Vec<usize>| {
        let mut total = plain.to_vec();
        normalize_parts(&mut total, &rows, window);
        SplitScores {
            per_feature: plain.to_vec(),
            total,
            plain_total: plain.to_vec(),
        }
    };
    let scored = Scored {
        train: split(&plain_train, parts.iter().map(|p| p.train_rows).collect()),
        test: split(&plain_test, parts.iter().map(|p| p.test_rows).collect()),
        test_scores: Scores {
            first_row: window,
            n_target: 1,
            total: Vec::new(),
            per_feature: Vec::new(),
            forecast: Vec::new(),
            reconstruction: Vec::new(),
            actual: Vec::new(),
        },
        labels,
        columns: vec!["value".into(), "command".into()],
        target_dims: vec![0],
        window,
        gamma: 1.0,
    };
    let inputs = Inputs {
        data: Processed {
            path: "data.safetensors".into(),
            train,
            test: Vec::new(),
            labels: Vec::new(),
            n_train,
            n_test,
            n_features: 2,
        },
        meta: Some(Meta {
            format_version: Meta::FORMAT_VERSION,
            dataset: "SMAP".into(),
            source_format: "telemanom".into(),
            columns: vec!["value".into(), "command".into()],
            target_dims: Some(vec![0]),
            parts,
            interpretation: Vec::new(),
        }),
        dataset: "SMAP".into(),
        settings: Settings {
            level: 0.90,
            q: 0.005,
            reg_level: 0,
            dynamic_pot: false,
            pot_roots: RootSearch::Siffer,
            bf_start: 0.01,
            bf_end: 2.0,
            bf_steps: 100,
        },
        normalize: true,
        labels: Vec::new(),
    };
    let flooded = scored.train.total.iter().filter(|&&s| s == 1.0).count();
    assert!(
        flooded > 150,
        "B-1's training scores normalise to 1.0: {flooded}"
    );

    let judged = |constant_parts| {
        let args = EvaluateArgs {
            constant_parts,
            ..default_args()
        };
        judge_scored(&inputs, &args, &scored, false).unwrap()
    };
    let reference = judged(ConstantParts::Keep);
    let top = scored.test.total.iter().copied().fold(0.0, f64::max);
    assert!(
        reference.report.pot.threshold > top,
        "the collapse: POT threshold {} above every test score (max {top})",
        reference.report.pot.threshold
    );
    assert_eq!(reference.report.pot_metrics.adjusted.f1, 0.0);
    assert!(reference.fitted.iter().all(|&f| f));

    let fixed = judged(ConstantParts::Exclude);
    let named: Vec<(&str, parts::Degeneracy)> = fixed
        .degenerate
        .iter()
        .map(|d| (d.part.as_str(), d.reason))
        .collect();
    assert_eq!(named, [("B-1", parts::Degeneracy::ConstantScore)]);
    assert_eq!(fixed.fitted.iter().filter(|&&f| !f).count(), 200);
    assert!(
        fixed.report.pot.threshold < top,
        "{}",
        fixed.report.pot.threshold
    );
    assert!(
        fixed.report.pot_metrics.adjusted.f1 > 0.9,
        "{:?}",
        fixed.report.pot_metrics
    );
    let metric = |k: &str| fixed.metrics.iter().find(|(name, _)| name == k).unwrap().1;
    assert_eq!(metric("n_degenerate_parts"), 1.0);
    assert_eq!(metric("n_fit_train_scores"), 2990.0);
    // Every run that leaves rows out also reports what fitting on them would have given.
    assert_eq!(metric("f1_pa_pot_all_parts"), 0.0);
    assert_eq!(
        metric("threshold_pot_all_parts"),
        reference.report.pot.threshold
    );
    assert!(!reference
        .metrics
        .iter()
        .any(|(name, _)| name.ends_with("_all_parts")));
}
