//! Reading what `evaluate` publishes, for the anomaly page: the true anomaly segments
//! (`segments.csv`), the test scores (`scores.csv`), the top features around each segment
//! (`segment_features.csv`), and the thresholds and per-method figures of `summary.json`.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::ui::artifacts::split_csv;
use crate::ui::error::UiError;

/// Methods of `summary.json`'s report, in the order the table shows them, with labels.
const METHODS: [(&str, &str); 5] = [
    ("pot_metrics", "POT"),
    ("epsilon_metrics", "epsilon"),
    ("best", "best F1 (grid)"),
    ("best_raw", "best raw F1"),
    ("best_adjusted_exact", "best point-adjusted F1 (exact)"),
];

/// One true anomaly segment of `segments.csv` (test rows, end exclusive).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segment {
    pub index: usize,
    pub start: i64,
    pub end: i64,
    pub part: String,
    pub peak_score: f64,
    /// Method -> whether it flagged any row of the segment.
    pub detected: BTreeMap<String, bool>,
}

/// One feature's series around a segment, from `segment_features.csv`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct FeatureSeries {
    pub feature: String,
    pub rows: Vec<i64>,
    pub actual: Vec<Option<f64>>,
    pub forecast: Vec<Option<f64>>,
    pub reconstruction: Vec<Option<f64>>,
}

/// `segments.csv`: `start,end,rows,part,peak_score,detected_<method>...`.
pub fn parse_segments(text: &str) -> Result<Vec<Segment>, UiError> {
    let mut lines = text.lines();
    let header = split_csv(lines.next().unwrap_or(""));
    let column = |name: &str| header.iter().position(|h| h == name);
    let (Some(start), Some(end)) = (column("start"), column("end")) else {
        return Err(UiError::internal(
            "`segments.csv` has no `start` and `end` columns",
        ));
    };
    let part = column("part");
    let peak = column("peak_score");
    let methods: Vec<(usize, String)> = header
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.strip_prefix("detected_").map(|m| (i, m.to_string())))
        .collect();
    let mut segments = Vec::new();
    for (index, line) in lines.filter(|line| !line.trim().is_empty()).enumerate() {
        let cells = split_csv(line);
        let int = |i: usize| cells.get(i).and_then(|c| c.trim().parse::<i64>().ok());
        let (Some(start), Some(end)) = (int(start), int(end)) else {
            return Err(UiError::internal(format!(
                "`segments.csv` line {}: start and end must be integers",
                index + 2
            )));
        };
        segments.push(Segment {
            index,
            start,
            end,
            part: part.and_then(|i| cells.get(i).cloned()).unwrap_or_default(),
            peak_score: peak
                .and_then(|i| cells.get(i))
                .and_then(|c| c.parse().ok())
                .unwrap_or(f64::NAN),
            detected: methods
                .iter()
                .map(|(i, name)| {
                    (
                        name.clone(),
                        cells.get(*i).map(|c| c == "1").unwrap_or(false),
                    )
                })
                .collect(),
        });
    }
    Ok(segments)
}

/// `scores.csv`'s `(row, score)` pairs.
pub fn parse_scores(text: &str) -> Result<Vec<(i64, f64)>, UiError> {
    let mut lines = text.lines();
    let header = split_csv(lines.next().unwrap_or(""));
    let (Some(row), Some(score)) = (
        header.iter().position(|h| h == "row"),
        header.iter().position(|h| h == "score"),
    ) else {
        return Err(UiError::internal(
            "`scores.csv` has no `row` and `score` columns",
        ));
    };
    let mut points = Vec::new();
    for line in lines.filter(|line| !line.is_empty()) {
        let cells: Vec<&str> = line.split(',').collect();
        let parsed = (
            cells.get(row).and_then(|c| c.parse::<i64>().ok()),
            cells.get(score).and_then(|c| c.parse::<f64>().ok()),
        );
        if let (Some(row), Some(score)) = parsed {
            points.push((row, score));
        }
    }
    Ok(points)
}

/// The thresholds drawn over the score: `(method, value)`.
pub fn thresholds(summary: &Value) -> Vec<(String, f64)> {
    let report = &summary["report"];
    [
        ("pot", "pot_metrics"),
        ("epsilon", "epsilon_metrics"),
        ("best", "best"),
    ]
    .iter()
    .filter_map(|(label, key)| {
        report[key]["threshold"]
            .as_f64()
            .map(|value| (label.to_string(), value))
    })
    .collect()
}

/// One row per method: `(label, threshold, raw {precision, recall, f1}, adjusted {...})`.
pub fn method_rows(summary: &Value) -> Vec<Value> {
    let report = &summary["report"];
    METHODS
        .iter()
        .filter(|(key, _)| report[key].is_object())
        .map(|(key, label)| {
            let entry = &report[key];
            let scores = |kind: &str| {
                json!({
                    "precision": entry[kind]["precision"],
                    "recall": entry[kind]["recall"],
                    "f1": entry[kind]["f1"],
                })
            };
            json!({
                "method": key.trim_end_matches("_metrics"),
                "label": label,
                "threshold": entry["threshold"],
                "raw": scores("raw"),
                "adjusted": scores("adjusted"),
            })
        })
        .collect()
}

/// `segment_features.csv`: `segment,feature,row,actual,forecast,reconstruction`; the
/// features of one segment, in the file's order (strongest first).
pub fn parse_segment_features(text: &str, segment: usize) -> Result<Vec<FeatureSeries>, UiError> {
    let mut lines = text.lines();
    let header = split_csv(lines.next().unwrap_or(""));
    let column = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            UiError::internal(format!("`segment_features.csv` has no `{name}` column"))
        })
    };
    let (seg, feature, row, actual, forecast, reconstruction) = (
        column("segment")?,
        column("feature")?,
        column("row")?,
        column("actual")?,
        column("forecast")?,
        column("reconstruction")?,
    );
    let wanted = segment.to_string();
    let mut series: Vec<FeatureSeries> = Vec::new();
    for line in lines {
        let cells = split_csv(line);
        if cells.get(seg) != Some(&wanted) {
            continue;
        }
        let name = cells.get(feature).cloned().unwrap_or_default();
        let value = |i: usize| {
            cells
                .get(i)
                .and_then(|c| c.parse::<f64>().ok())
                .filter(|v| v.is_finite())
        };
        let Some(row) = cells.get(row).and_then(|c| c.parse::<i64>().ok()) else {
            continue;
        };
        let position = match series.iter().position(|s| s.feature == name) {
            Some(position) => position,
            None => {
                series.push(FeatureSeries {
                    feature: name,
                    ..FeatureSeries::default()
                });
                series.len() - 1
            }
        };
        let entry = &mut series[position];
        entry.rows.push(row);
        entry.actual.push(value(actual));
        entry.forecast.push(value(forecast));
        entry.reconstruction.push(value(reconstruction));
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_features_parse() {
        let segments = parse_segments(
            "start,end,rows,part,peak_score,detected_pot,detected_epsilon\n2700,2771,71,F-4,0.65,0,1\n",
        )
        .unwrap();
        assert_eq!(segments.len(), 1);
        assert_eq!((segments[0].start, segments[0].end), (2700, 2771));
        assert!(segments[0].detected["epsilon"]);
        assert!(!segments[0].detected["pot"]);

        let features = parse_segment_features(
            "segment,feature,row,actual,forecast,reconstruction\n0,f1,10,0.5,0.4,0.6\n0,f1,11,0.7,0.6,NaN\n1,f2,90,1,1,1\n",
            0,
        )
        .unwrap();
        assert_eq!(features.len(), 1);
        assert_eq!(features[0].rows, [10, 11]);
        assert_eq!(features[0].reconstruction, [Some(0.6), None]);
    }

    #[test]
    fn methods_come_from_the_summary_report() {
        let summary = json!({"report": {
            "pot_metrics": {"threshold": 0.9, "raw": {"precision": 0.1, "recall": 0.2, "f1": 0.13}, "adjusted": {"precision": 0.8, "recall": 0.7, "f1": 0.75}},
            "epsilon_metrics": {"threshold": 0.5, "raw": {}, "adjusted": {}},
        }});
        let rows = method_rows(&summary);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["method"], "pot");
        assert_eq!(rows[0]["adjusted"]["f1"], 0.75);
        assert_eq!(
            thresholds(&summary),
            [("pot".to_string(), 0.9), ("epsilon".to_string(), 0.5)]
        );
    }
}
