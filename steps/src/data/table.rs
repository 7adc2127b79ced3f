//! The in-memory numeric table every step exchanges, and its file formats: CSV (with a
//! header), Parquet (polars), NumPy `.npy` and header-less comma-separated `.txt`, each
//! optionally gzipped.

use std::io::Cursor;
use std::path::Path;

use anyhow::{bail, Context, Result};
use polars::prelude::{Column, DataFrame, DataType, ParquetReader, ParquetWriter, SerReader};

use crate::data::{npy, source, text};

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

/// Reads `.csv` (header row), `.parquet`, `.npy` or `.txt` (no header, comma-separated),
/// each optionally `.gz`. A `label` column is kept as is; see [`Table::split_labels`].
pub fn read_table(path: &Path) -> Result<Table> {
    let name = source::format_name(path);
    if name.ends_with(".csv") {
        read_csv(path)
    } else if name.ends_with(".parquet") {
        read_parquet(path)
    } else if name.ends_with(".npy") {
        let array = npy::read_npy(path)?;
        Table::new(numbered_columns(array.n_cols), array.n_rows, array.values)
    } else if name.ends_with(".txt") {
        let rows = text::parse_numeric(&source::read_text(path)?, path, false)?;
        Table::new(numbered_columns(rows.n_cols), rows.n_rows, rows.values)
    } else {
        bail!(
            "cannot read `{}`: unknown format (expected .csv, .parquet, .npy or .txt, optionally .gz)",
            path.display()
        )
    }
}

/// A CSV file with a header row; every column must be numeric (empty = NaN).
pub fn read_csv(path: &Path) -> Result<Table> {
    let rows = text::parse_numeric(&source::read_text(path)?, path, true)?;
    let columns = rows.header.unwrap_or_default();
    check_unique_columns(&columns, path)?;
    Table::new(columns, rows.n_rows, rows.values)
}

/// A Parquet file (`.gz` transparently) of numeric columns; nulls become NaN.
pub fn read_parquet(path: &Path) -> Result<Table> {
    let bytes = source::read_bytes(path)?;
    let frame = ParquetReader::new(Cursor::new(bytes))
        .finish()
        .with_context(|| format!("`{}` is not a readable Parquet file", path.display()))?;
    let n_rows = frame.height();
    let columns: Vec<String> = frame
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let mut values = vec![0.0; n_rows * columns.len()];
    for (col, column) in frame.columns().iter().enumerate() {
        if !column.dtype().is_primitive_numeric() && !column.dtype().is_bool() {
            bail!(
                "`{}` column `{}` has type {}, expected numbers",
                path.display(),
                column.name(),
                column.dtype()
            );
        }
        let floats = column.cast(&DataType::Float64).with_context(|| {
            format!(
                "`{}` column `{}`: cannot convert to Float64",
                path.display(),
                column.name()
            )
        })?;
        let floats = floats
            .f64()
            .with_context(|| format!("`{}` column `{}`", path.display(), column.name()))?;
        for (row, value) in floats.iter().enumerate() {
            values[row * columns.len() + col] = value.unwrap_or(f64::NAN);
        }
    }
    Table::new(columns, n_rows, values)
}

/// Writes the table as Parquet with one Float64 column per feature (zstd).
pub fn write_parquet(path: &Path, table: &Table) -> Result<()> {
    let columns: Vec<Column> = (0..table.n_cols())
        .map(|col| Column::new(table.columns[col].as_str().into(), table.column(col)))
        .collect();
    write_frame(path, table.n_rows, columns)
}

/// Writes 0/1 labels as a Parquet file with one UInt8 column `label`.
pub fn write_labels(path: &Path, labels: &[u8]) -> Result<()> {
    write_frame(
        path,
        labels.len(),
        vec![Column::new(LABEL_COLUMN.into(), labels.to_vec())],
    )
}

/// Reads the `label` column of a labels Parquet file (as written by `load`).
pub fn read_labels(path: &Path) -> Result<Vec<u8>> {
    let table = read_parquet(path)?;
    let col = table
        .columns
        .iter()
        .position(|c| c == LABEL_COLUMN)
        .with_context(|| format!("`{}` has no `{LABEL_COLUMN}` column", path.display()))?;
    table
        .column(col)
        .into_iter()
        .enumerate()
        .map(|(row, v)| label_value(v, path, row))
        .collect()
}

fn write_frame(path: &Path, height: usize, columns: Vec<Column>) -> Result<()> {
    let mut frame = DataFrame::new(height, columns)
        .with_context(|| format!("cannot build a table for `{}`", path.display()))?;
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    ParquetWriter::new(file)
        .finish(&mut frame)
        .with_context(|| format!("cannot write Parquet file `{}`", path.display()))?;
    Ok(())
}

/// A label cell as 0/1; `row` is 0-based and reported 1-based.
fn label_value(value: f64, path: &Path, row: usize) -> Result<u8> {
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

    fn sample() -> Table {
        Table::new(
            vec!["a".into(), "b".into()],
            3,
            vec![1.0, 2.0, 3.5, f64::NAN, -1.0, 0.25],
        )
        .unwrap()
    }

    fn same(left: &Table, right: &Table) -> bool {
        left.columns == right.columns
            && left.n_rows == right.n_rows
            && left
                .values
                .iter()
                .zip(&right.values)
                .all(|(a, b)| a == b || (a.is_nan() && b.is_nan()))
    }

    #[test]
    fn parquet_round_trip_keeps_nan_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        write_parquet(&path, &sample()).unwrap();
        let back = read_parquet(&path).unwrap();
        assert!(same(&back, &sample()), "{back:?}");
        assert!(same(&read_table(&path).unwrap(), &sample()));
    }

    #[test]
    fn labels_round_trip_and_reject_non_binary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("labels.parquet");
        write_labels(&path, &[0, 1, 1, 0]).unwrap();
        assert_eq!(read_labels(&path).unwrap(), vec![0, 1, 1, 0]);
        let bad = dir.path().join("bad.parquet");
        write_parquet(
            &bad,
            &Table::new(vec!["label".into()], 2, vec![0.0, 2.0]).unwrap(),
        )
        .unwrap();
        let message = read_labels(&bad).unwrap_err().to_string();
        assert!(
            message.contains("bad.parquet` row 2") && message.contains("not 0 or 1"),
            "{message}"
        );
    }

    #[test]
    fn csv_with_label_column_splits_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("test.csv");
        std::fs::write(&path, "a,label,b\n1,0,2\n3,1,4\n").unwrap();
        let (table, labels) = read_table(&path).unwrap().split_labels(&path).unwrap();
        assert_eq!(table.columns, vec!["a", "b"]);
        assert_eq!(table.values, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(labels, Some(vec![0, 1]));
    }

    #[test]
    fn txt_and_npy_get_numbered_columns() {
        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("m.txt");
        std::fs::write(&txt, "0.5,1\n0.25,0\n").unwrap();
        let table = read_table(&txt).unwrap();
        assert_eq!(table.columns, vec!["f0", "f1"]);
        assert_eq!(table.row(1), &[0.25, 0.0]);
        let npy_path = dir.path().join("m.npy.gz");
        npy::write_npy(&npy_path, 2, 2, &table.values).unwrap();
        assert_eq!(read_table(&npy_path).unwrap(), table);
    }

    #[test]
    fn parquet_with_text_column_names_file_and_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.parquet");
        let mut frame = DataFrame::new(1, vec![Column::new("name".into(), ["x"])]).unwrap();
        ParquetWriter::new(std::fs::File::create(&path).unwrap())
            .finish(&mut frame)
            .unwrap();
        let message = read_parquet(&path).unwrap_err().to_string();
        assert!(
            message.contains("s.parquet") && message.contains("`name`"),
            "{message}"
        );
    }

    #[test]
    fn duplicate_header_and_unknown_format_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, "a,a\n1,2\n").unwrap();
        assert!(read_table(&path)
            .unwrap_err()
            .to_string()
            .contains("`a` appears twice"));
        let message = read_table(&dir.path().join("x.xlsx"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("x.xlsx") && message.contains("unknown format"),
            "{message}"
        );
    }
}
