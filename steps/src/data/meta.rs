//! `meta.json`, written by `load` beside the Parquet snapshot: where the rows came from
//! and which columns the model should score, so `process` needs no knowledge of formats.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Description of a loaded dataset (file `meta.json` of a `load` run).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub format_version: u32,
    /// The `dataset` parameter as given (`MSL`, `M-6`, `machine-2-1`, ...).
    pub dataset: String,
    /// `telemanom`, `smd`, `csv` or `parquet`.
    pub source_format: String,
    /// Feature column names, in order (the same in train and test).
    pub columns: Vec<String>,
    /// Columns the model forecasts and scores; `None` means all of them.
    pub target_dims: Option<Vec<usize>>,
    /// The channels or machines concatenated into the series, in order.
    pub parts: Vec<Part>,
    /// Features judged responsible for each anomaly segment (SMD); empty otherwise.
    #[serde(default)]
    pub interpretation: Vec<Interpretation>,
}

/// One concatenated source (a channel or a machine) and its share of the rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub name: String,
    pub train_rows: usize,
    pub test_rows: usize,
}

/// An anomaly segment of the test rows `start..end` (end exclusive, 0-based) and the
/// 0-based columns behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interpretation {
    pub start: usize,
    pub end: usize,
    pub dims: Vec<usize>,
}

impl Meta {
    pub const FORMAT_VERSION: u32 = 1;

    /// The scored columns with `None` resolved to every column.
    pub fn resolved_target_dims(&self) -> Vec<usize> {
        match &self.target_dims {
            Some(dims) => dims.clone(),
            None => (0..self.columns.len()).collect(),
        }
    }

    /// Indices of the parts whose training rows hold one value in every target column:
    /// the model can learn nothing there, and their scores need care when thresholds are
    /// fitted (`evaluate::parts`). `train` is row-major over `columns` (raw or scaled: a
    /// constant column stays constant under any scaler).
    pub fn constant_target_parts<T: Copy + PartialEq>(&self, train: &[T]) -> Vec<usize> {
        let n_cols = self.columns.len();
        let targets = self.resolved_target_dims();
        let mut out = Vec::new();
        let mut start = 0;
        for (index, part) in self.parts.iter().enumerate() {
            let end = start + part.train_rows;
            if part.train_rows > 0 && end * n_cols <= train.len() {
                let rows = &train[start * n_cols..end * n_cols];
                let constant = targets.iter().all(|&dim| {
                    let first = rows[dim];
                    rows.chunks_exact(n_cols).all(|row| row[dim] == first)
                });
                if constant {
                    out.push(index);
                }
            }
            start = end;
        }
        out
    }

    /// The names of [`Meta::constant_target_parts`], for log lines.
    pub fn constant_target_names<T: Copy + PartialEq>(&self, train: &[T]) -> Vec<&str> {
        self.constant_target_parts(train)
            .into_iter()
            .map(|i| self.parts[i].name.as_str())
            .collect()
    }

    pub fn read(path: &Path) -> Result<Meta> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{}`", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not a valid meta.json", path.display()))
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write `{}`", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_null_target_dims() {
        let meta = Meta {
            format_version: Meta::FORMAT_VERSION,
            dataset: "machine-2-1".into(),
            source_format: "smd".into(),
            columns: vec!["f0".into(), "f1".into()],
            target_dims: None,
            parts: vec![Part {
                name: "machine-2-1".into(),
                train_rows: 3,
                test_rows: 4,
            }],
            interpretation: vec![Interpretation {
                start: 1,
                end: 3,
                dims: vec![0, 1],
            }],
        };
        let text = serde_json::to_string(&meta).unwrap();
        assert!(text.contains("\"target_dims\":null"));
        let back: Meta = serde_json::from_str(&text).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.resolved_target_dims(), vec![0, 1]);
    }

    #[test]
    fn parts_with_a_constant_target_are_found() {
        let part = |name: &str, train_rows| Part {
            name: name.into(),
            train_rows,
            test_rows: 1,
        };
        let meta = Meta {
            format_version: Meta::FORMAT_VERSION,
            dataset: "MSL".into(),
            source_format: "telemanom".into(),
            columns: vec!["value".into(), "command".into()],
            target_dims: Some(vec![0]),
            parts: vec![part("C-1", 2), part("C-2", 3), part("D-1", 1)],
            interpretation: Vec::new(),
        };
        // C-1 varies in its target; C-2's target is constant while its command is not; a
        // one-row part is trivially constant.
        let train = [
            0.1, 0.0, 0.2, 0.0, -1.0, 1.0, -1.0, 0.0, -1.0, 1.0, 0.5, 0.0,
        ];
        assert_eq!(meta.constant_target_parts(&train), vec![1, 2]);
        assert_eq!(meta.constant_target_names(&train), vec!["C-2", "D-1"]);
        let all_columns = Meta {
            target_dims: None,
            ..meta
        };
        assert_eq!(all_columns.constant_target_parts(&train), vec![2]);
    }
}
