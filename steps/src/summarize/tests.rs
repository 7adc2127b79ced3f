//! `summarize` over member directories built by hand and by the real `evaluate` step.

use std::path::Path;

use super::*;
use crate::context::MEMBERS_FILE;

fn figures(threshold: f64, tp: u64, fp: u64, fn_: u64) -> MethodFigures {
    let d = Detection::from_counts(tp, fp, fn_, 0);
    MethodFigures {
        threshold,
        precision: d.precision,
        recall: d.recall,
        f1: d.f1,
        tp,
        fp,
        fn_,
    }
}

fn row(member: &str, pot: MethodFigures, best: Option<MethodFigures>) -> MemberRow {
    MemberRow {
        member: member.into(),
        run_id: String::new(),
        methods: vec![
            ("pot".into(), Some(pot)),
            ("epsilon".into(), Some(pot)),
            ("best".into(), best),
        ],
    }
}

#[test]
fn pooled_sums_counts_while_mean_averages_rates() {
    // Member a: 90 TP, 10 FP, 0 FN (F1 0.947); member b: 1 TP, 0 FP, 9 FN (F1 0.182).
    let rows = [
        row("a", figures(0.5, 90, 10, 0), Some(figures(0.4, 100, 0, 0))),
        row("b", figures(0.7, 1, 0, 9), None),
    ];
    let pot = aggregate(&rows, "pot").unwrap();
    assert_eq!(pot.n_members, 2);
    let (fa, fb) = (
        rows[0].methods[0].1.unwrap().f1,
        rows[1].methods[0].1.unwrap().f1,
    );
    assert!((pot.mean_f1 - (fa + fb) / 2.0).abs() < 1e-12);
    // Pooled: TP 91, FP 10, FN 9.
    assert_eq!((pot.pooled.tp, pot.pooled.fp, pot.pooled.fn_), (91, 10, 9));
    assert!((pot.pooled.precision - 91.0 / 101.0).abs() < 1e-12);
    assert!((pot.pooled.recall - 91.0 / 100.0).abs() < 1e-12);
    // A member without a best-F1 figure is left out of best's aggregates only.
    let best = aggregate(&rows, "best").unwrap();
    assert_eq!(best.n_members, 1);
    assert_eq!(best.pooled.f1, 1.0);
    assert!(aggregate(&rows[1..], "best").is_none());
}

/// Writes `members.json` over the given (label, directory) pairs under `root/evaluate`.
fn list_members(root: &Path, members: &[(&str, &str)]) {
    let listing: Vec<Value> = members
        .iter()
        .enumerate()
        .map(|(i, (member, dir))| {
            json!({"member": member, "dir": dir, "run_id": format!("{i:032x}"), "params": {"dataset": member}})
        })
        .collect();
    std::fs::write(
        root.join("evaluate").join(MEMBERS_FILE),
        serde_json::to_string(&listing).unwrap(),
    )
    .unwrap();
}

#[test]
fn summarizes_real_evaluate_runs_of_two_members() {
    let root = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for (member, phase) in [("machine-1-1", 0.0), ("machine-2-1", 1.5)] {
        let member_root = root.path().join("upstream").join(member);
        let ctx = crate::evaluate::tests::upstream_with_phase(&member_root, phase);
        let out = root.path().join("evaluate").join(member);
        let ctx = StepContext {
            output_dir: out.clone(),
            ..ctx
        };
        crate::evaluate::run(
            &ctx,
            &crate::evaluate::EvaluateArgs {
                plots: false,
                ..crate::evaluate::tests::default_args()
            },
        )
        .unwrap();
        let summary: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
                .unwrap();
        expected.push(summary["report"]["pot_metrics"]["adjusted"].clone());
    }
    list_members(
        root.path(),
        &[
            ("machine-1-1", "machine-1-1"),
            ("machine-2-1", "machine-2-1"),
        ],
    );
    let mut ctx = StepContext::for_dirs(
        root.path().join("out"),
        &[("evaluate", &root.path().join("evaluate"))],
    );
    ctx.metrics_path = Some(root.path().join("metrics.jsonl"));
    run(&ctx, &SummarizeArgs { plots: true }).unwrap();

    let metrics: std::collections::HashMap<String, f64> =
        std::fs::read_to_string(root.path().join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["key"].as_str().unwrap().to_string(),
                    v["value"].as_f64().unwrap(),
                )
            })
            .collect();
    assert_eq!(metrics["n_members"], 2.0);
    let sum = |key: &str| {
        expected
            .iter()
            .map(|e| e[key].as_u64().unwrap())
            .sum::<u64>()
    };
    let pooled = Detection::from_counts(sum("tp"), sum("fp"), sum("fn_"), 0);
    assert_eq!(metrics["f1_pa_pot_pooled"], pooled.f1);
    assert_eq!(metrics["recall_pa_pot_pooled"], pooled.recall);
    let mean_f1 = expected
        .iter()
        .map(|e| e["f1"].as_f64().unwrap())
        .sum::<f64>()
        / 2.0;
    assert!((metrics["f1_pa_pot_mean"] - mean_f1).abs() < 1e-12);
    for key in [
        "f1_pa_epsilon_mean",
        "f1_pa_best_pooled",
        "precision_pa_best_mean",
    ] {
        assert!(metrics.contains_key(key), "missing {key}");
    }

    let out = root.path().join("out");
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let lines: Vec<Vec<&str>> = csv.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines.len(), 5, "{csv}");
    assert!(lines.iter().all(|l| l.len() == lines[0].len()), "{csv}");
    assert_eq!(
        lines[0][..6],
        [
            "member",
            "run_id",
            "threshold_pot",
            "precision_pa_pot",
            "recall_pa_pot",
            "f1_pa_pot"
        ]
    );
    assert_eq!(lines[1][0], "machine-1-1");
    assert_eq!(lines[2][1], format!("{:032x}", 1));
    assert_eq!(lines[3][0], "mean");
    assert_eq!(lines[4][0], "pooled");
    assert_eq!(lines[4][5].parse::<f64>().unwrap(), pooled.f1);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["members"][1]["member"], "machine-2-1");
    assert_eq!(summary["aggregates"]["pot"]["pooled"]["tp"], sum("tp"));
    assert!(out.join("plots/summary.png").exists());
}

#[test]
fn errors_name_the_member_and_the_way_out() {
    let root = tempfile::tempdir().unwrap();
    let evaluate = root.path().join("evaluate");
    std::fs::create_dir_all(evaluate.join("a")).unwrap();
    std::fs::create_dir_all(evaluate.join("b")).unwrap();
    list_members(root.path(), &[("a", "a"), ("b", "b")]);
    let ctx = StepContext::for_dirs(root.path().join("out"), &[("evaluate", &evaluate)]);
    let summarize = || {
        format!(
            "{:#}",
            run(&ctx, &SummarizeArgs { plots: false }).unwrap_err()
        )
    };

    let err = summarize();
    assert!(
        err.contains("member `a`") && err.contains("summary.json"),
        "{err}"
    );

    // An evaluate run from before the counts were recorded.
    let old = json!({"report": {"pot_metrics": {"threshold": 0.5, "adjusted": {"precision": 1.0, "recall": 1.0, "f1": 1.0}}}});
    std::fs::write(evaluate.join("a/summary.json"), old.to_string()).unwrap();
    let err = summarize();
    assert!(
        err.contains("member `a`") && err.contains("counts") && err.contains("--force evaluate"),
        "{err}"
    );

    // A plain directory instead of members.
    let plain = StepContext::for_dirs(
        root.path().join("out"),
        &[("evaluate", &evaluate.join("a"))],
    );
    let err = format!(
        "{:#}",
        run(&plain, &SummarizeArgs { plots: false }).unwrap_err()
    );
    assert!(err.contains("not a member directory"), "{err}");
}
