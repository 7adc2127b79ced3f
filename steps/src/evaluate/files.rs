//! The tables `evaluate` writes beside its metrics: test scores with each method's
//! predictions, the training scores the thresholds were fitted on, and one line per true
//! anomaly segment saying which methods caught it.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::data::meta::Part;
use crate::thresholds::metrics::segments;
use crate::thresholds::report::Report;

/// The thresholds of each method in `report`, by name.
fn methods(report: &Report) -> Vec<(&'static str, f64)> {
    let mut methods = vec![
        ("pot", report.pot_metrics.threshold),
        ("epsilon", report.epsilon_metrics.threshold),
    ];
    if let Some(best) = &report.best {
        methods.push(("best", best.threshold));
    }
    methods
}

/// Creates `path`, writes `header` and then what `body` writes, naming the file in any error.
pub(super) fn write_table(
    path: &Path,
    header: &str,
    body: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create `{}`", path.display()))?;
    let mut out = BufWriter::new(file);
    writeln!(out, "{header}")
        .and_then(|()| body(&mut out))
        .and_then(|()| out.flush())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// `columns` followed by one `<prefix><method>` column per method.
fn header(columns: &str, prefix: &str, methods: &[(&str, f64)]) -> String {
    let mut header = columns.to_string();
    for (name, _) in methods {
        header.push_str(&format!(",{prefix}{name}"));
    }
    header
}

/// `row,score,label,pred_<method>...`: one line per scored test row (raw predictions).
pub fn write_scores_csv(
    path: &Path,
    report: &Report,
    scores: &[f64],
    labels: &[bool],
    window: usize,
) -> Result<()> {
    let methods = methods(report);
    write_table(path, &header("row,score,label", "pred_", &methods), |out| {
        for (i, (&score, &label)) in scores.iter().zip(labels).enumerate() {
            write!(out, "{},{score},{}", i + window, u8::from(label))?;
            for (_, threshold) in &methods {
                write!(out, ",{}", u8::from(score > *threshold))?;
            }
            writeln!(out)?;
        }
        Ok(())
    })
}

/// `row,score,fitted`: the training scores, and whether each entered the POT and epsilon
/// fits (rows of degenerate parts may not), so a threshold can be traced back to the tail
/// it came from.
pub fn write_train_scores_csv(
    path: &Path,
    scores: &[f64],
    fitted: &[bool],
    window: usize,
) -> Result<()> {
    write_table(path, "row,score,fitted", |out| {
        for (i, (score, &fit)) in scores.iter().zip(fitted).enumerate() {
            writeln!(out, "{},{score},{}", i + window, u8::from(fit))?;
        }
        Ok(())
    })
}

/// `start,end,rows,part,peak_score,detected_<method>...`: one line per true anomaly
/// segment (test rows, end exclusive), the part (channel or machine) it starts in, its
/// highest score, and whether each method flags any of its rows, which under point
/// adjustment decides whether all its rows count as found.
pub fn write_segments_csv(
    path: &Path,
    report: &Report,
    scores: &[f64],
    labels: &[bool],
    parts: &[Part],
    window: usize,
) -> Result<()> {
    let methods = methods(report);
    let columns = header("start,end,rows,part,peak_score", "detected_", &methods);
    write_table(path, &columns, |out| {
        for segment in segments(labels) {
            let peak = scores[segment.clone()]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max);
            let (start, end) = (segment.start + window, segment.end + window);
            let part = part_of(parts, start).unwrap_or("-");
            write!(out, "{start},{end},{},{part},{peak}", end - start)?;
            for (_, threshold) in &methods {
                write!(out, ",{}", u8::from(peak > *threshold))?;
            }
            writeln!(out)?;
        }
        Ok(())
    })
}

/// The name of the part holding test row `row` of the concatenated series.
fn part_of(parts: &[Part], row: usize) -> Option<&str> {
    let mut end = 0;
    parts.iter().find_map(|part| {
        end += part.test_rows;
        (row < end).then_some(part.name.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_belongs_to_the_part_whose_test_rows_hold_it() {
        let part = |name: &str, test_rows| Part {
            name: name.into(),
            train_rows: 0,
            test_rows,
        };
        let parts = [part("C-1", 10), part("C-2", 5)];
        let named: Vec<Option<&str>> = [0, 9, 10, 14, 15]
            .iter()
            .map(|&row| part_of(&parts, row))
            .collect();
        assert_eq!(
            named,
            [Some("C-1"), Some("C-1"), Some("C-2"), Some("C-2"), None]
        );
    }
}
