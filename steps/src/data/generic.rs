//! The generic layout: `train.csv|parquet` and `test.csv|parquet` (optionally `.gz`) in
//! one directory, with a header; a `label` column in the test file holds the labels.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::data::dataset::Dataset;
use crate::data::formats::read_table;
use crate::data::meta::{Meta, Part};
use crate::data::source;
use crate::data::table::LABEL_COLUMN;

/// Loads `dir/train.<extension>` and `dir/test.<extension>` (`extension` = `csv` or `parquet`).
pub fn load(dir: &Path, dataset: &str, extension: &str) -> Result<Dataset> {
    let train_path = split_file(dir, "train", extension)?;
    let test_path = split_file(dir, "test", extension)?;
    // Labels in train are not used: training is unsupervised.
    let (train, _) = read_table(&train_path)?.split_labels(&train_path)?;
    let (test, labels) = read_table(&test_path)?.split_labels(&test_path)?;
    if train.columns != test.columns {
        let difference = train
            .columns
            .iter()
            .zip(&test.columns)
            .position(|(a, b)| a != b)
            .map(|i| {
                format!(
                    "column {} is `{}` in train but `{}` in test",
                    i + 1,
                    train.columns[i],
                    test.columns[i]
                )
            })
            .unwrap_or_else(|| {
                format!(
                    "{} columns in train, {} in test",
                    train.n_cols(),
                    test.n_cols()
                )
            });
        bail!(
            "`{}` and `{}` must have the same feature columns in the same order: {difference}",
            train_path.display(),
            test_path.display()
        );
    }
    if train.n_cols() == 0 {
        bail!("`{}` has no feature columns", train_path.display());
    }
    for (rows, path, use_) in [
        (train.n_rows, &train_path, "train on"),
        (test.n_rows, &test_path, "score"),
    ] {
        if rows == 0 {
            bail!(
                "`{}` has no rows: dataset `{dataset}` has nothing to {use_}",
                path.display()
            );
        }
    }
    let labels = labels.unwrap_or_else(|| {
        eprintln!(
            "note: `{}` has no `{LABEL_COLUMN}` column; labels are all 0",
            test_path.display()
        );
        vec![0; test.n_rows]
    });
    let meta = Meta {
        format_version: Meta::FORMAT_VERSION,
        dataset: dataset.to_string(),
        source_format: extension.to_string(),
        columns: train.columns.clone(),
        target_dims: None,
        parts: vec![Part {
            name: dataset.to_string(),
            train_rows: train.n_rows,
            test_rows: test.n_rows,
        }],
        interpretation: Vec::new(),
    };
    Dataset::new(train, test, labels, meta)
}

/// A generic dataset is one member, named as given; its split files must exist.
pub fn members(dir: &Path, dataset: &str, extension: &str) -> Result<Vec<String>> {
    split_file(dir, "train", extension)?;
    split_file(dir, "test", extension)?;
    Ok(vec![dataset.to_string()])
}

/// The files loading a generic dataset reads: its train and test files.
pub fn inputs(dir: &Path, extension: &str) -> Result<Vec<PathBuf>> {
    Ok(vec![
        split_file(dir, "train", extension)?,
        split_file(dir, "test", extension)?,
    ])
}

/// `dir/<split>.<extension>` or its `.gz`.
pub fn split_file(dir: &Path, split: &str, extension: &str) -> Result<PathBuf> {
    source::find_maybe_gz(dir, &format!("{split}.{extension}")).with_context(|| {
        format!(
            "missing `{split}.{extension}` (or `.gz`) in `{}`",
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::parquet::write_parquet;
    use crate::data::table::Table;

    #[test]
    fn csv_with_labels_loads() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.csv"), "cpu,mem\n1,2\n3,4\n").unwrap();
        std::fs::write(
            dir.path().join("test.csv"),
            "cpu,mem,label\n5,6,0\n7,8,1\n9,10,1\n",
        )
        .unwrap();
        let dataset = load(dir.path(), "servers", "csv").unwrap();
        assert_eq!(dataset.meta.columns, vec!["cpu", "mem"]);
        assert_eq!(dataset.test.values, vec![5.0, 6.0, 7.0, 8.0, 9.0, 10.0]);
        assert_eq!(dataset.labels, vec![0, 1, 1]);
        assert_eq!(dataset.meta.source_format, "csv");
        assert_eq!(dataset.meta.target_dims, None);
    }

    #[test]
    fn parquet_without_labels_gets_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let table = Table::new(vec!["a".into()], 2, vec![1.0, 2.0]).unwrap();
        write_parquet(&dir.path().join("train.parquet"), &table).unwrap();
        write_parquet(&dir.path().join("test.parquet"), &table).unwrap();
        let dataset = load(dir.path(), "p", "parquet").unwrap();
        assert_eq!(dataset.train, table);
        assert_eq!(dataset.labels, vec![0, 0]);
    }

    #[test]
    fn mismatched_columns_and_bad_labels_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.csv"), "a,b\n1,2\n").unwrap();
        std::fs::write(dir.path().join("test.csv"), "a,c\n1,2\n").unwrap();
        let message = load(dir.path(), "x", "csv").unwrap_err().to_string();
        assert!(
            message.contains("column 2 is `b` in train but `c` in test"),
            "{message}"
        );
        std::fs::write(dir.path().join("test.csv"), "a,b,label\n1,2,0\n1,2,5\n").unwrap();
        let message = load(dir.path(), "x", "csv").unwrap_err().to_string();
        assert!(message.contains("test.csv` row 2: label `5`"), "{message}");
        std::fs::remove_file(dir.path().join("test.csv")).unwrap();
        let message = load(dir.path(), "x", "csv").unwrap_err().to_string();
        assert!(message.contains("missing `test.csv`"), "{message}");
    }
}
