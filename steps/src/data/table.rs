//! The in-memory numeric table every step exchanges, and CSV text (with a header) read
//! into it. Parquet lives in [`crate::data::parquet`], the choice of reader by file name
//! in [`crate::data::formats`].

use std::path::Path;

use anyhow::{bail, Result};

use crate::data::{source, text};

/// Name of the optional ground-truth column in generic CSV/Parquet test files.
pub const LABEL_COLUMN: &str = "label";

/// A numeric table, row-major: `values[row * columns.len() + col]`. NaN marks a missing value.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub n_rows: usize,
    pub values: Vec<f64>,
}

impl Table {
    /// A table, checked to have `n_rows * columns.len()` values.
    pub fn new(columns: Vec<String>, n_rows: usize, values: Vec<f64>) -> Result<Table> {
        if values.len() != n_rows * columns.len() {
            bail!(
                "{} values do not fill {n_rows} rows of {} columns",
                values.len(),
                columns.len()
            );
        }
        Ok(Table {
            columns,
            n_rows,
            values,
        })
    }

    pub fn n_cols(&self) -> usize {
        self.columns.len()
    }

    /// Values of row `row` (panics when out of range, like slice indexing).
    pub fn row(&self, row: usize) -> &[f64] {
        let width = self.n_cols();
        &self.values[row * width..(row + 1) * width]
    }

    /// Values of column `col`, top to bottom.
    pub fn column(&self, col: usize) -> Vec<f64> {
        (0..self.n_rows)
            .map(|row| self.values[row * self.n_cols() + col])
            .collect()
    }

    /// Stacks tables with the same columns, in order.
    pub fn concat(tables: &[Table]) -> Result<Table> {
        let Some(first) = tables.first() else {
            bail!("nothing to concatenate");
        };
        let mut values = Vec::with_capacity(tables.iter().map(|t| t.values.len()).sum());
        for table in tables {
            if table.columns.len() != first.columns.len() {
                bail!(
                    "cannot stack tables of {} and {} columns",
                    first.columns.len(),
                    table.columns.len()
                );
            }
            values.extend_from_slice(&table.values);
        }
        Table::new(
            first.columns.clone(),
            tables.iter().map(|t| t.n_rows).sum(),
            values,
        )
    }

    /// Splits off the `label` column, if there is one, as 0/1 labels; `path` labels errors.
    pub fn split_labels(mut self, path: &Path) -> Result<(Table, Option<Vec<u8>>)> {
        let Some(label_col) = self.columns.iter().position(|c| c == LABEL_COLUMN) else {
            return Ok((self, None));
        };
        let width = self.n_cols();
        let mut labels = Vec::with_capacity(self.n_rows);
        let mut features = Vec::with_capacity(self.n_rows * (width - 1));
        for row in 0..self.n_rows {
            let values = &self.values[row * width..(row + 1) * width];
            labels.push(label_value(values[label_col], path, row)?);
            features.extend(
                values
                    .iter()
                    .enumerate()
                    .filter(|(c, _)| *c != label_col)
                    .map(|(_, v)| *v),
            );
        }
        self.columns.remove(label_col);
        Ok((
            Table::new(self.columns, self.n_rows, features)?,
            Some(labels),
        ))
    }
}

/// Column names `f0..f{n-1}` for formats without a header.
pub fn numbered_columns(n_cols: usize) -> Vec<String> {
    (0..n_cols).map(|i| format!("f{i}")).collect()
}

/// A CSV file with a header row; every column must be numeric (empty = NaN).
pub fn read_csv(path: &Path) -> Result<Table> {
    parse_csv(&source::read_text(path)?, path)
}

/// [`read_csv`] of text; `path` only labels errors.
pub fn parse_csv(content: &str, path: &Path) -> Result<Table> {
    let rows = text::parse_numeric(content, path, true)?;
    let columns = rows.header.unwrap_or_default();
    check_unique_columns(&columns, path)?;
    Table::new(columns, rows.n_rows, rows.values)
}

/// A label cell as 0/1; `row` is 0-based and reported 1-based.
pub(crate) fn label_value(value: f64, path: &Path, row: usize) -> Result<u8> {
    if value == 0.0 {
        Ok(0)
    } else if value == 1.0 {
        Ok(1)
    } else {
        bail!(
            "`{}` row {}: label `{value}` is not 0 or 1",
            path.display(),
            row + 1
        )
    }
}

fn check_unique_columns(columns: &[String], path: &Path) -> Result<()> {
    for (i, name) in columns.iter().enumerate() {
        if name.is_empty() {
            bail!("`{}` header: column {} has no name", path.display(), i + 1);
        }
        if columns[..i].contains(name) {
            bail!("`{}` header: column `{name}` appears twice", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_label_column_splits_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.csv");
        std::fs::write(&path, "a,label,b\n1,0,2\n3,1,4\n").unwrap();
        let (table, labels) = read_csv(&path).unwrap().split_labels(&path).unwrap();
        assert_eq!(table.columns, vec!["a", "b"]);
        assert_eq!(table.values, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(labels, Some(vec![0, 1]));
    }

    #[test]
    fn duplicate_header_is_an_error() {
        let message = parse_csv("a,a\n1,2\n", Path::new("d.csv"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("`a` appears twice"), "{message}");
    }
}
