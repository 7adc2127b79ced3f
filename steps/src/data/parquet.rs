//! Parquet files (polars): the `load` step's snapshot and generic Parquet datasets.

use std::io::Cursor;
use std::path::Path;

use anyhow::{bail, Context, Result};
use polars::prelude::{Column, DataFrame, DataType, ParquetReader, ParquetWriter, SerReader};

use crate::data::source;
use crate::data::table::{label_value, Table, LABEL_COLUMN};

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
        assert!(same(
            &crate::data::formats::read_table(&path).unwrap(),
            &sample()
        ));
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
}
