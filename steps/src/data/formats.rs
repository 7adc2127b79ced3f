//! Any table file, read by its name: `.csv`, `.parquet`, `.npy` or `.txt`, each
//! optionally `.gz`.

use std::path::Path;

use anyhow::{bail, Result};

use crate::data::table::{numbered_columns, read_csv, Table};
use crate::data::{npy, parquet, source, text};

/// Reads `.csv` (header row), `.parquet`, `.npy` or `.txt` (no header, comma-separated),
/// each optionally `.gz`. A `label` column is kept as is; see [`Table::split_labels`].
pub fn read_table(path: &Path) -> Result<Table> {
    let name = source::format_name(path);
    if name.ends_with(".csv") {
        read_csv(path)
    } else if name.ends_with(".parquet") {
        parquet::read_parquet(path)
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unknown_format_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let message = read_table(&dir.path().join("x.xlsx"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("x.xlsx") && message.contains("unknown format"),
            "{message}"
        );
    }
}
