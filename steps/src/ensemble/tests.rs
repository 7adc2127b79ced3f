//! `ensemble` over hand-built member directories of tiny untrained models.

use std::path::Path;

use super::*;
use crate::context::MEMBERS_FILE;
use crate::evaluate::tests::{chain_context, default_args, tiny_bundle, upstream_with_phase};

/// load/ and process/ as one chain leaves them, and train/ as a member directory of
/// `seeds.len()` tiny models (seeded differently) over the same processed data.
fn members(root: &Path, seeds: &[u64]) -> StepContext {
    let single = upstream_with_phase(&root.join("chain"), 0.0);
    let process = single.input("process").unwrap().to_path_buf();
    let load = single.input("load").unwrap().to_path_buf();
    let preprocessor = tiny_bundle().manifest.preprocessor;
    std::fs::write(
        process.join("preprocessor.json"),
        serde_json::to_string(&preprocessor).unwrap(),
    )
    .unwrap();
    let train = root.join("train");
    let mut listing = Vec::new();
    for &seed in seeds {
        let label = format!("seed={seed}");
        let template = tiny_bundle().manifest;
        Bundle::untrained(template.preprocessor, template.model, seed)
            .unwrap()
            .save(&train.join(&label).join("model"))
            .unwrap();
        listing.push(json!({"member": label, "dir": label, "run_id": format!("{seed:032x}"), "params": {"seed": seed}}));
    }
    std::fs::write(
        train.join(MEMBERS_FILE),
        serde_json::to_string(&listing).unwrap(),
    )
    .unwrap();
    chain_context(root, &load, &process, &train)
}

fn args() -> EnsembleArgs {
    EnsembleArgs {
        evaluate: EvaluateArgs {
            plots: false,
            ..default_args()
        },
    }
}

/// The `score` column of a `scores.csv`.
fn scores(path: &Path) -> Vec<f64> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(1).unwrap().parse().unwrap())
        .collect()
}

#[test]
fn the_ensemble_judges_the_mean_of_its_members_scores() {
    let root = tempfile::tempdir().unwrap();
    let ctx = members(root.path(), &[1, 2]);
    run(&ctx, &args()).unwrap();
    let out = root.path().join("out");
    let combined = scores(&out.join("scores.csv"));

    // Each member alone, through evaluate.
    let mut member_scores = Vec::new();
    for seed in ["seed=1", "seed=2"] {
        let member_out = root.path().join("alone").join(seed);
        let train = root.path().join("train").join(seed);
        let alone = StepContext::for_dirs(
            &member_out,
            &[
                ("load", ctx.input("load").unwrap()),
                ("process", ctx.input("process").unwrap()),
                ("train", &train),
            ],
        );
        crate::evaluate::run(&alone, &args().evaluate).unwrap();
        member_scores.push(scores(&member_out.join("scores.csv")));
    }
    assert_ne!(member_scores[0], member_scores[1]);
    assert_eq!(combined.len(), member_scores[0].len());
    for (i, &score) in combined.iter().enumerate() {
        let mean = (member_scores[0][i] + member_scores[1][i]) / 2.0;
        assert!((score - mean).abs() < 1e-12, "row {i}: {score} vs {mean}");
    }

    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["members"][0]["member"], "seed=1");
    assert!(summary["members"][1]["f1_pa_best"].is_number());
    assert!(summary["report"]["pot_metrics"]["adjusted"]["tp"].is_number());
    assert!(out.join("segments.csv").exists() && out.join("train_scores.csv").exists());
    assert!(!out.join("model").exists(), "an ensemble writes no bundle");
    let metrics = std::fs::read_to_string(root.path().join("metrics.jsonl")).unwrap();
    assert!(metrics.contains(r#""key":"f1_pa_pot""#), "{metrics}");
}

#[test]
fn a_member_trained_on_other_data_or_a_plain_train_input_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let ctx = members(root.path(), &[1, 2]);
    // seed=2's model saw other scaler statistics.
    let path = root.path().join("train/seed=2/model");
    let mut other = Bundle::load(&path).unwrap();
    other.manifest.preprocessor.offset[0] += 1.0;
    other.save(&path).unwrap();
    let err = format!("{:#}", run(&ctx, &args()).unwrap_err());
    assert!(
        err.contains("member `seed=2`") && err.contains("other processed data"),
        "{err}"
    );

    let plain = StepContext::for_dirs(
        root.path().join("out"),
        &[
            ("process", ctx.input("process").unwrap()),
            ("train", &root.path().join("train/seed=1")),
        ],
    );
    let err = format!("{:#}", run(&plain, &args()).unwrap_err());
    assert!(
        err.contains("FLOW_INPUT_TRAIN") && err.contains("not a member directory"),
        "{err}"
    );
}
