//! The whole chain in-process on a real channel of the bundled sample: load, process, a
//! small training run of a few seconds, evaluate. The trained model must separate the
//! labelled anomalies better than trivial detectors given the same rows.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Parser;
use flow_steps::context::StepContext;
use flow_steps::thresholds::search::{best_f1_adjusted, best_f1_raw};
use flow_steps::{run_step_in, StepCommand};

/// `flow step ...` as the binary parses it.
#[derive(Parser)]
struct Step {
    #[command(subcommand)]
    command: StepCommand,
}

fn step(ctx: &StepContext, line: &str) {
    let command = Step::parse_from(std::iter::once("step").chain(line.split_whitespace())).command;
    if let Err(err) = run_step_in(ctx, &command) {
        panic!("`flow step {line}` failed: {err:#}");
    }
}

fn sample_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/telemanom")
}

/// `scores.csv` of evaluate: (score, label) per scored test row.
fn read_scores(path: &Path) -> (Vec<f64>, Vec<bool>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let score = header.iter().position(|h| *h == "score").unwrap();
    let label = header.iter().position(|h| *h == "label").unwrap();
    lines
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[score].parse::<f64>().unwrap(), fields[label] == "1")
        })
        .unzip()
}

fn logged_metrics(path: &Path) -> HashMap<String, f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line).unwrap();
            (
                value["key"].as_str().unwrap().to_string(),
                value["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Channel 0 (the telemetry value telemanom predicts) of the processed splits.
fn target_channel(process_dir: &Path) -> (Vec<f32>, Vec<f32>) {
    let tensors = candle_core::safetensors::load(
        process_dir.join("data.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let column = |name: &str| {
        tensors[name]
            .narrow(1, 0, 1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    (column("train"), column("test"))
}

#[test]
fn a_few_seconds_of_training_beat_trivial_detectors_on_a_real_channel() {
    const WINDOW: usize = 20;
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| tmp.path().join(name);
    let data = sample_dir();

    step(
        &StepContext::for_dirs(dir("load"), &[]),
        &format!("load --dataset F-4 --data-dir {}", data.display()),
    );
    step(
        &StepContext::for_dirs(dir("process"), &[("load", &dir("load"))]),
        &format!("process --window {WINDOW}"),
    );
    step(
        &StepContext::for_dirs(dir("train"), &[("process", &dir("process"))]),
        "train --epochs 4 --gru-hidden 32 --forecast-hidden 32 --recon-hidden 32 --seed 0",
    );
    let mut ctx = StepContext::for_dirs(
        dir("evaluate"),
        &[("train", &dir("train")), ("process", &dir("process"))],
    );
    ctx.metrics_path = Some(dir("evaluate.jsonl"));
    step(&ctx, "evaluate --plots false");

    let (scores, labels) = read_scores(&dir("evaluate/scores.csv"));
    let metrics = logged_metrics(&dir("evaluate.jsonl"));
    let model_raw = best_f1_raw(&scores, &labels).unwrap().raw.f1;
    let model_adjusted = best_f1_adjusted(&scores, &labels).unwrap().adjusted.f1;
    assert!((metrics["f1_best"] - model_raw).abs() < 1e-9);
    assert!((metrics["f1_pa_best_exact"] - model_adjusted).abs() < 1e-9);

    // The same rows (from WINDOW on), scored without learning anything.
    let (train, test) = target_channel(&dir("process"));
    assert_eq!(test.len(), labels.len() + WINDOW);
    let mean = train.iter().map(|&v| f64::from(v)).sum::<f64>() / train.len() as f64;
    let distance_from_mean: Vec<f64> = test[WINDOW..]
        .iter()
        .map(|&v| (f64::from(v) - mean).abs())
        .collect();
    let jump: Vec<f64> = test
        .windows(2)
        .skip(WINDOW - 1)
        .map(|pair| f64::from(pair[1] - pair[0]).abs())
        .collect();
    let positives = labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64;
    let flag_everything = 2.0 * positives / (1.0 + positives);

    let model_auc = auc(&scores, &labels);
    eprintln!(
        "model: best F1 raw {model_raw:.3}, point-adjusted {model_adjusted:.3}, ROC AUC {model_auc:.3}"
    );
    eprintln!("flag everything: F1 {flag_everything:.3}, ROC AUC 0.5");
    for (name, trivial) in [
        ("distance from the training mean", &distance_from_mean),
        ("jump from the previous row", &jump),
    ] {
        eprintln!(
            "{name}: best F1 raw {:.3}, point-adjusted {:.3}, ROC AUC {:.3}",
            best_f1_raw(trivial, &labels).unwrap().raw.f1,
            best_f1_adjusted(trivial, &labels).unwrap().adjusted.f1,
            auc(trivial, &labels)
        );
    }
    // F-4's one labelled segment is 71 of ~3,300 scored rows: flagging everything gets
    // F1 0.04, guessing gets AUC 0.5, the jump detector 0.47 and the distance from the
    // mean 0.83 (printed above, not asserted: a few epochs only tie it).
    assert!(
        model_raw > 3.0 * flag_everything && model_adjusted > 3.0 * flag_everything,
        "best F1 raw {model_raw:.3} / adjusted {model_adjusted:.3} vs flagging everything {flag_everything:.3}"
    );
    assert!(
        model_auc > 0.75 && model_auc > auc(&jump, &labels),
        "ROC AUC {model_auc:.3}"
    );
}

/// Area under the ROC curve: the probability that a random anomalous row scores above a
/// random normal one (ties count half).
fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            if labels[k] {
                rank_sum += mid_rank;
            }
        }
        i = j + 1;
    }
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}
