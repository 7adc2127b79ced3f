//! The half of `evaluate` that does not depend on how scores were computed, shared with
//! `ensemble`: fit the thresholds on the training scores of the parts that calibrate them,
//! judge them on the test scores, and write the metrics, tables, `summary.json` and plots.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{bail, Result};
use serde_json::json;

use super::parts::{self, degenerate_parts, fit_mask, DegeneratePart};
use super::{
    figures, files, interpretation_truths, segment_features, EvaluateArgs, Inputs, Scored,
    ThresholdMethod,
};
use crate::bundle::Thresholds;
use crate::context::StepContext;
use crate::thresholds::interpretation::hit_rate;
use crate::thresholds::metrics::ThresholdMetrics;
use crate::thresholds::report::{judge, Report};

/// The thresholds fitted and judged, and the metrics that report them.
pub(crate) struct Judged {
    pub report: Report,
    /// Thresholds refitted on the plain scores serving computes, when the reported scores
    /// are transformed (normalised per part or robust-scaled); `None` when they are plain.
    pub serving: Option<Report>,
    pub metrics: Vec<(String, f64)>,
    pub degenerate: Vec<DegeneratePart>,
    /// One per training score: did it enter the POT and epsilon fits?
    pub fitted: Vec<bool>,
}

/// Fits the thresholds on the training scores of every non-degenerate part, judges them on
/// the test scores and collects the metrics; with `serving`, also refits them on the plain
/// scores for the bundle.
pub(crate) fn judge_scored(
    inputs: &Inputs,
    args: &EvaluateArgs,
    scored: &Scored,
    serving: bool,
) -> Result<Judged> {
    let settings = inputs.settings;
    let degenerate = match &inputs.meta {
        Some(meta) if meta.parts.len() > 1 => degenerate_parts(
            meta,
            &inputs.data.train,
            &scored.train.plain_total,
            scored.window,
        ),
        _ => Vec::new(),
    };
    let fitted = match &inputs.meta {
        Some(meta) => fit_mask(
            &meta.parts,
            &degenerate,
            args.constant_parts,
            scored.window,
            scored.train.total.len(),
        ),
        None => vec![true; scored.train.total.len()],
    };
    let keep = |scores: &[f64]| -> Vec<f64> {
        scores
            .iter()
            .zip(&fitted)
            .filter_map(|(&s, &f)| f.then_some(s))
            .collect()
    };
    let fit_train = keep(&scored.train.total);
    if fit_train.is_empty() {
        bail!(
            "every part is degenerate ({}): there are no training scores to fit thresholds on; pass `--constant-parts keep` to fit on them anyway",
            degenerate
                .iter()
                .map(|d| format!("`{}`: {}", d.part, d.reason.as_str()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!(
        "fitting thresholds on {} of {} training scores: POT level {} q {}{}, epsilon reg_level {}",
        fit_train.len(),
        scored.train.total.len(),
        settings.level,
        settings.q,
        if settings.dynamic_pot {
            " (streaming)"
        } else {
            ""
        },
        settings.reg_level
    );
    let report = judge(&fit_train, &scored.test.total, &scored.labels, settings)?;
    let transformed = args.scale_scores || inputs.normalize;
    let serving = if serving && transformed {
        Some(judge(
            &keep(&scored.train.plain_total),
            &scored.test.plain_total,
            &scored.labels,
            settings,
        )?)
    } else {
        None
    };

    let mut metrics = report.metrics();
    let truths = inputs
        .meta
        .as_ref()
        .map(|m| interpretation_truths(m, &scored.target_dims, scored.window))
        .unwrap_or_default();
    for percent in [100.0, 150.0] {
        if let Some(rate) = hit_rate(
            &scored.test.per_feature,
            scored.test_scores.n_target,
            &truths,
            percent,
        ) {
            metrics.push((format!("hitrate_{percent:.0}"), rate));
        }
    }
    let labels = &scored.labels;
    metrics.push(("n_test_scored".into(), labels.len() as f64));
    metrics.push((
        "test_anomaly_ratio".into(),
        labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64,
    ));
    metrics.push(("n_degenerate_parts".into(), degenerate.len() as f64));
    metrics.push(("n_fit_train_scores".into(), fit_train.len() as f64));
    if fit_train.len() < scored.train.total.len() {
        // What the reference would report, fitting on every row: the fix's effect, in every run.
        let all = judge(
            &scored.train.total,
            &scored.test.total,
            &scored.labels,
            settings,
        )?;
        for (name, m) in [("pot", &all.pot_metrics), ("epsilon", &all.epsilon_metrics)] {
            metrics.push((format!("threshold_{name}_all_parts"), m.threshold));
            metrics.push((format!("f1_pa_{name}_all_parts"), m.adjusted.f1));
        }
        eprintln!(
            "fitted on every part instead (`--constant-parts keep`, the reference): POT threshold {:.5} F1(pa) {:.4}, epsilon threshold {:.5} F1(pa) {:.4}",
            all.pot_metrics.threshold,
            all.pot_metrics.adjusted.f1,
            all.epsilon_metrics.threshold,
            all.epsilon_metrics.adjusted.f1
        );
    }
    if let Some(serving) = &serving {
        let thresholds = bundle_thresholds(serving, args.choose);
        for (name, value) in [
            ("pot", thresholds.pot),
            ("epsilon", thresholds.epsilon),
            ("best", thresholds.best_f1),
        ] {
            if let Some(value) = value {
                metrics.push((format!("serve_threshold_{name}"), value));
            }
        }
    }
    Ok(Judged {
        report,
        serving,
        metrics,
        degenerate,
        fitted,
    })
}

/// Logs the metrics and writes the tables, `summary.json` (with `extra` fields) and the
/// plots; prints the figures.
pub(crate) fn write_outputs(
    ctx: &StepContext,
    args: &EvaluateArgs,
    inputs: &Inputs,
    scored: &Scored,
    judged: &Judged,
    extra: serde_json::Map<String, serde_json::Value>,
    history_dir: Option<&Path>,
) -> Result<()> {
    let (report, metrics, window) = (&judged.report, &judged.metrics, scored.window);
    for line in parts::describe(&judged.degenerate, args.constant_parts) {
        eprintln!("{line}");
    }
    let pairs: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ctx.log_metrics(&pairs, 0)?;

    files::write_scores_csv(
        &ctx.output_path("scores.csv")?,
        report,
        &scored.test.total,
        &scored.labels,
        window,
    )?;
    files::write_train_scores_csv(
        &ctx.output_path("train_scores.csv")?,
        &scored.train.total,
        &judged.fitted,
        window,
    )?;
    let test_parts = inputs
        .meta
        .as_ref()
        .map(|m| m.parts.as_slice())
        .unwrap_or_default();
    files::write_segments_csv(
        &ctx.output_path("segments.csv")?,
        report,
        &scored.test.total,
        &scored.labels,
        test_parts,
        window,
    )?;
    segment_features::write_segment_features_csv(
        &ctx.output_path("segment_features.csv")?,
        &scored.labels,
        &scored.test.per_feature,
        &scored.test_scores,
        &scored.columns,
        &scored.target_dims,
        window,
    )?;
    let mut summary = json!({
        "dataset": inputs.dataset,
        "window": window,
        "gamma": scored.gamma,
        "scale_scores": args.scale_scores,
        "normalize_parts": inputs.normalize,
        "constant_parts": args.constant_parts,
        "degenerate_parts": judged.degenerate,
        "chosen": args.choose.as_str(),
        "metrics": metrics.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
        "report": report,
    });
    if let Some(serving) = &judged.serving {
        summary["bundle_thresholds"] = json!(bundle_thresholds(serving, args.choose));
        summary["bundle_thresholds_note"] = json!(SERVING_NOTE);
    } else if extra.is_empty() {
        summary["bundle_thresholds"] = json!(bundle_thresholds(report, args.choose));
    }
    for (key, value) in extra {
        summary[key] = value;
    }
    ctx.write_json("summary.json", &summary)?;

    if args.plots {
        let figure_inputs = figures::FigureInputs {
            train: &scored.train,
            test: &scored.test,
            test_scores: &scored.test_scores,
            labels: &scored.labels,
            report,
            chosen: args.choose,
            columns: &scored.columns,
            target_dims: &scored.target_dims,
            window,
        };
        let written = figures::write_all(ctx, &figure_inputs, history_dir)?;
        eprintln!(
            "wrote {} plot(s) to `{}`",
            written,
            ctx.output_dir.join("plots").display()
        );
    }
    eprint!("{}", summary_table(report, metrics));
    Ok(())
}

/// Why the bundle's thresholds differ from the reported ones when scores are transformed.
const SERVING_NOTE: &str = "The reported thresholds apply to scores normalised per part (or robust-scaled), which need the statistics of a whole split. predict and `flow serve` score rows one window at a time, so the bundle holds the same methods refitted on the plain scores (mean absolute forecast + gamma * reconstruction error); `chosen` is the one they apply.";

/// The terminal's last words on which threshold the bundle applies when serving, and why.
pub(crate) fn serving_note(judged: &Judged, choose: ThresholdMethod) -> String {
    let method = choose.as_str();
    match &judged.serving {
        Some(serving) => {
            let value = bundle_thresholds(serving, choose)
                .active()
                .unwrap_or(f64::NAN);
            format!(
                "serving: predict and `flow serve` apply the `{method}` threshold {value:.5} (metric `serve_threshold_{}`), refitted on plain scores: the thresholds above are on per-part normalised scores, which need a whole split and cannot be computed for live rows (`--choose` picks the method)\n",
                if method == "best_f1" { "best" } else { method }
            )
        }
        None => {
            let value = bundle_thresholds(&judged.report, choose)
                .active()
                .unwrap_or(f64::NAN);
            format!(
                "serving: predict and `flow serve` apply the `{method}` threshold {value:.5} above (`--choose` picks the method)\n"
            )
        }
    }
}

/// The thresholds written into the bundle (fitted on the scores serving computes).
pub(crate) fn bundle_thresholds(report: &Report, choose: ThresholdMethod) -> Thresholds {
    Thresholds {
        pot: Some(report.pot.threshold),
        epsilon: Some(report.epsilon_metrics.threshold),
        best_f1: report.best.map(|b| b.threshold),
        chosen: Some(choose.as_str().to_string()),
    }
}

/// A fixed-width table of the figures, for the terminal.
fn summary_table(report: &Report, metrics: &[(String, f64)]) -> String {
    let mut text = String::from(
        "method      threshold   P        R        F1       P(pa)    R(pa)    F1(pa)\n",
    );
    let mut row = |name: &str, raw: &ThresholdMetrics, adjusted: &ThresholdMetrics| {
        let _ = writeln!(
            text,
            "{name:<11} {:<11.5} {:<8.4} {:<8.4} {:<8.4} {:<8.4} {:<8.4} {:.4}",
            adjusted.threshold,
            raw.raw.precision,
            raw.raw.recall,
            raw.raw.f1,
            adjusted.adjusted.precision,
            adjusted.adjusted.recall,
            adjusted.adjusted.f1
        );
    };
    row("pot", &report.pot_metrics, &report.pot_metrics);
    row("epsilon", &report.epsilon_metrics, &report.epsilon_metrics);
    if let Some(best) = &report.best {
        row("best(grid)", best, best);
    }
    if let Some(raw) = &report.best_raw {
        row("best(raw)", raw, raw);
    }
    if let Some(exact) = &report.best_adjusted_exact {
        row("best(pa)", exact, exact);
    }
    for (name, value) in metrics.iter().filter(|(k, _)| k.starts_with("hitrate")) {
        let _ = writeln!(text, "{name}: {value:.4}");
    }
    text
}
