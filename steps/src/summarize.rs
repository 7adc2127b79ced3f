//! The `summarize` step: the dataset-level table over the members of a fanned-out
//! `evaluate` (one per SMD machine, one per seed, ...).
//!
//! For each threshold method (POT, epsilon, best-F1 on the reference's grid) it reports
//! every member's point-adjusted precision, recall, F1 and threshold, their mean, and the
//! *pooled* figure: TP, FP and FN summed over the members before precision, recall and F1
//! are computed, the convention OmniAnomaly (and MTAD-GAT after it) use to report SMD as
//! one number. The counts come from each member's `summary.json`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::{MemberInput, StepContext};
use crate::plot::{draw_bars, Bars, PALETTE};
use crate::thresholds::metrics::Detection;

/// The methods summarised, as named in evaluate's metrics (`f1_pa_<method>`).
pub const METHODS: [&str; 3] = ["pot", "epsilon", "best"];

/// Parameters of `summarize`.
#[derive(clap::Args, Debug, Clone)]
pub struct SummarizeArgs {
    /// Write `plots/summary.png` (F1 per member and method, mean and pooled).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub plots: bool,
}

/// One method's point-adjusted figures for one member.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MethodFigures {
    pub threshold: f64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

/// One member's row of the table; `None` where its evaluate run has no figure (no
/// anomalous test row, so no best-F1 threshold).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberRow {
    pub member: String,
    pub run_id: String,
    pub methods: Vec<(String, Option<MethodFigures>)>,
}

/// The mean and pooled figures of one method over the members that have it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Aggregate {
    pub n_members: usize,
    pub mean_precision: f64,
    pub mean_recall: f64,
    pub mean_f1: f64,
    pub pooled: Detection,
}

/// Runs the step over `FLOW_INPUT_EVALUATE`'s members.
pub fn run(ctx: &StepContext, args: &SummarizeArgs) -> Result<()> {
    let members = ctx.members("evaluate")?;
    let rows = members
        .iter()
        .map(read_member)
        .collect::<Result<Vec<MemberRow>>>()?;
    let aggregates: Vec<(&str, Option<Aggregate>)> = METHODS
        .iter()
        .map(|&method| (method, aggregate(&rows, method)))
        .collect();

    let mut metrics = vec![("n_members".to_string(), rows.len() as f64)];
    for (method, aggregate) in &aggregates {
        let Some(a) = aggregate else { continue };
        for (name, value) in [
            ("f1_pa", a.mean_f1),
            ("precision_pa", a.mean_precision),
            ("recall_pa", a.mean_recall),
        ] {
            metrics.push((format!("{name}_{method}_mean"), value));
        }
        for (name, value) in [
            ("f1_pa", a.pooled.f1),
            ("precision_pa", a.pooled.precision),
            ("recall_pa", a.pooled.recall),
        ] {
            metrics.push((format!("{name}_{method}_pooled"), value));
        }
    }
    let pairs: Vec<(&str, f64)> = metrics.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    ctx.log_metrics(&pairs, 0)?;

    write_csv(&ctx.output_path("summary.csv")?, &rows, &aggregates)?;
    let summary = json!({
        "members": rows,
        "aggregates": aggregates.iter().map(|(m, a)| (m.to_string(), json!(a))).collect::<serde_json::Map<_, _>>(),
        "metrics": metrics.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
    });
    ctx.write_json("summary.json", &summary)?;
    if args.plots {
        draw(&ctx.output_path("plots/summary.png")?, &rows, &aggregates)?;
    }
    eprint!("{}", table(&rows, &aggregates));
    Ok(())
}

/// The figures of one member's evaluate run, from its `summary.json`.
pub fn read_member(member: &MemberInput) -> Result<MemberRow> {
    let path = member.dir.join("summary.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "member `{}`: cannot read `{}` (is it an `evaluate` run?)",
            member.member,
            path.display()
        )
    })?;
    let summary: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "member `{}`: `{}` is not JSON",
            member.member,
            path.display()
        )
    })?;
    let report = summary.get("report").with_context(|| {
        format!(
            "member `{}`: `{}` has no `report`",
            member.member,
            path.display()
        )
    })?;
    let mut methods = Vec::new();
    for method in METHODS {
        let key = match method {
            "best" => "best".to_string(),
            _ => format!("{method}_metrics"),
        };
        let figures = match report.get(&key) {
            Some(Value::Null) if method == "best" => None,
            Some(value) => Some(method_figures(value).with_context(|| {
                format!(
                    "member `{}`: `{}` lacks the point-adjusted counts of `{method}` (report.{key}.adjusted.tp/fp/fn_); it was written by an older flow: re-run that evaluate (`flow run -e evaluate --force evaluate`)",
                    member.member,
                    path.display()
                )
            })?),
            None => bail!(
                "member `{}`: `{}` has no `report.{key}`; it was written by an older flow: re-run that evaluate (`flow run -e evaluate --force evaluate`)",
                member.member,
                path.display()
            ),
        };
        methods.push((method.to_string(), figures));
    }
    Ok(MemberRow {
        member: member.member.clone(),
        run_id: member.run_id.clone(),
        methods,
    })
}

/// Mean of the members' figures and the pooled figure of their summed counts, over the
/// members that have `method`; `None` when none has.
pub fn aggregate(rows: &[MemberRow], method: &str) -> Option<Aggregate> {
    let figures: Vec<&MethodFigures> = rows.iter().filter_map(|row| figure(row, method)).collect();
    if figures.is_empty() {
        return None;
    }
    let n = figures.len() as f64;
    let mean = |f: fn(&MethodFigures) -> f64| figures.iter().map(|m| f(m)).sum::<f64>() / n;
    let sum = |f: fn(&MethodFigures) -> u64| figures.iter().map(|m| f(m)).sum::<u64>();
    Some(Aggregate {
        n_members: figures.len(),
        mean_precision: mean(|m| m.precision),
        mean_recall: mean(|m| m.recall),
        mean_f1: mean(|m| m.f1),
        pooled: Detection::from_counts(sum(|m| m.tp), sum(|m| m.fp), sum(|m| m.fn_), 0),
    })
}

fn figure<'a>(row: &'a MemberRow, method: &str) -> Option<&'a MethodFigures> {
    row.methods
        .iter()
        .find(|(name, _)| name == method)
        .and_then(|(_, figures)| figures.as_ref())
}

/// The point-adjusted figures of one `ThresholdMetrics` object of evaluate's report.
fn method_figures(value: &Value) -> Result<MethodFigures> {
    let adjusted = value.get("adjusted").context("no `adjusted`")?;
    let number = |v: &Value, key: &str| -> Result<f64> {
        v.get(key)
            .and_then(Value::as_f64)
            .with_context(|| format!("no number `{key}`"))
    };
    let count = |key: &str| -> Result<u64> {
        adjusted
            .get(key)
            .and_then(Value::as_u64)
            .with_context(|| format!("no count `{key}`"))
    };
    Ok(MethodFigures {
        threshold: number(value, "threshold")?,
        precision: number(adjusted, "precision")?,
        recall: number(adjusted, "recall")?,
        f1: number(adjusted, "f1")?,
        tp: count("tp")?,
        fp: count("fp")?,
        fn_: count("fn_")?,
    })
}

/// `summary.csv`: one line per member, then `mean` and `pooled`; per method its threshold,
/// precision, recall and F1 (point-adjusted) and the counts.
fn write_csv(
    path: &Path,
    rows: &[MemberRow],
    aggregates: &[(&str, Option<Aggregate>)],
) -> Result<()> {
    use std::fmt::Write as _;
    let mut text = String::from("member,run_id");
    for method in METHODS {
        for column in [
            "threshold",
            "precision_pa",
            "recall_pa",
            "f1_pa",
            "tp",
            "fp",
            "fn",
        ] {
            let _ = write!(text, ",{column}_{method}");
        }
    }
    text.push('\n');
    for row in rows {
        let _ = write!(text, "{},{}", csv_field(&row.member), row.run_id);
        for method in METHODS {
            match figure(row, method) {
                Some(m) => {
                    let _ = write!(
                        text,
                        ",{},{},{},{},{},{},{}",
                        m.threshold, m.precision, m.recall, m.f1, m.tp, m.fp, m.fn_
                    );
                }
                None => text.push_str(",,,,,,,"),
            }
        }
        text.push('\n');
    }
    for (label, pooled) in [("mean", false), ("pooled", true)] {
        let _ = write!(text, "{label},");
        for (_, aggregate) in aggregates {
            match aggregate {
                Some(a) if pooled => {
                    let p = a.pooled;
                    let _ = write!(
                        text,
                        ",,{},{},{},{},{},{}",
                        p.precision, p.recall, p.f1, p.tp, p.fp, p.fn_
                    );
                }
                Some(a) => {
                    let _ = write!(
                        text,
                        ",,{},{},{},,,",
                        a.mean_precision, a.mean_recall, a.mean_f1
                    );
                }
                None => text.push_str(",,,,,,,"),
            }
        }
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("cannot write `{}`", path.display()))
}

/// Quotes a CSV field when it needs it.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// F1 (point-adjusted) per member and method, then the mean and the pooled figure.
fn draw(path: &Path, rows: &[MemberRow], aggregates: &[(&str, Option<Aggregate>)]) -> Result<()> {
    let mut categories: Vec<String> = rows.iter().map(|r| r.member.clone()).collect();
    categories.extend(["mean".to_string(), "pooled".to_string()]);
    let values: Vec<Vec<f64>> = METHODS
        .iter()
        .zip(aggregates)
        .map(|(method, (_, aggregate))| {
            let mut values: Vec<f64> = rows
                .iter()
                .map(|row| figure(row, method).map_or(f64::NAN, |m| m.f1))
                .collect();
            values.push(aggregate.map_or(f64::NAN, |a| a.mean_f1));
            values.push(aggregate.map_or(f64::NAN, |a| a.pooled.f1));
            values
        })
        .collect();
    let colors = [PALETTE[3], PALETTE[2], PALETTE[4]];
    let series: Vec<Bars> = METHODS
        .iter()
        .zip(&values)
        .zip(colors)
        .map(|((method, values), color)| Bars {
            label: method.to_string(),
            values,
            color,
        })
        .collect();
    let width = (160 + 70 * categories.len() as u32).clamp(640, 2400);
    draw_bars(
        path,
        &format!("point-adjusted F1 over {} members", rows.len()),
        "F1 (point-adjusted)",
        &categories,
        &series,
        (width, 420),
    )
}

/// A fixed-width table for the terminal.
fn table(rows: &[MemberRow], aggregates: &[(&str, Option<Aggregate>)]) -> String {
    use std::fmt::Write as _;
    let width = rows
        .iter()
        .map(|r| r.member.len())
        .chain([6])
        .max()
        .unwrap_or(6);
    let mut text = format!("{:<width$}", "member");
    for method in METHODS {
        let _ = write!(text, "  {:<8}", format!("F1 {method}"));
    }
    text.push('\n');
    let cell = |f: Option<f64>| f.map_or("-".to_string(), |v| format!("{v:.4}"));
    for row in rows {
        let _ = write!(text, "{:<width$}", row.member);
        for method in METHODS {
            let _ = write!(text, "  {:<8}", cell(figure(row, method).map(|m| m.f1)));
        }
        text.push('\n');
    }
    for (label, pooled) in [("mean", false), ("pooled", true)] {
        let _ = write!(text, "{label:<width$}");
        for (_, aggregate) in aggregates {
            let value = aggregate.map(|a| if pooled { a.pooled.f1 } else { a.mean_f1 });
            let _ = write!(text, "  {:<8}", cell(value));
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests;
