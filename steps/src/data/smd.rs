//! The Server Machine Dataset as OmniAnomaly publishes it: `train/`, `test/`,
//! `test_label/` and `interpretation_label/`, one `<machine>.txt` (optionally `.gz`) each.
//! A dataset is one machine; every feature is scored.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::data::dataset::Dataset;
use crate::data::meta::{Interpretation, Meta, Part};
use crate::data::table::{numbered_columns, Table};
use crate::data::{source, text};

/// The directory that marks an SMD layout.
pub const TEST_LABEL_DIR: &str = "test_label";

/// The value naming every machine present: SMD is modelled per machine.
pub const GROUP: &str = "SMD";

/// Loads machine `machine` (e.g. `machine-2-1`, in any case) from `dir`.
pub fn load(dir: &Path, machine: &str) -> Result<Dataset> {
    let available = source::stems_in(&dir.join("train"), ".txt")?;
    if machine.eq_ignore_ascii_case(GROUP) {
        bail!(
            "`{machine}` names {} machines, one dataset each (SMD is modelled per machine): load them one at a time (`--list-members` lists them; the pipeline fans out over them)",
            available.len()
        );
    }
    let machine = canonical_machine(&available, machine, dir)?.to_string();
    let machine = machine.as_str();
    let train_path = machine_file(dir, "train", machine)?;
    let train = read_metrics(&train_path)?;
    let test_path = machine_file(dir, "test", machine)?;
    let test = read_metrics(&test_path)?;
    for (table, path, use_) in [
        (&train, &train_path, "train on"),
        (&test, &test_path, "score"),
    ] {
        if table.n_rows == 0 {
            bail!(
                "`{}` has no rows: machine `{machine}` has nothing to {use_}",
                path.display()
            );
        }
    }
    if test.n_cols() != train.n_cols() {
        bail!(
            "`{}` has {} columns but the train file has {}",
            test_path.display(),
            test.n_cols(),
            train.n_cols()
        );
    }
    let labels_path = machine_file(dir, TEST_LABEL_DIR, machine)?;
    let labels = read_label_lines(&labels_path)?;
    if labels.len() != test.n_rows {
        bail!(
            "label length mismatch: `{}` has {} labels but `{}` has {} rows",
            labels_path.display(),
            labels.len(),
            test_path.display(),
            test.n_rows
        );
    }
    let interpretation =
        match source::find_maybe_gz(&dir.join("interpretation_label"), &format!("{machine}.txt")) {
            Some(path) => read_interpretation(&path, test.n_rows, test.n_cols())?,
            None => Vec::new(),
        };
    let meta = Meta {
        format_version: Meta::FORMAT_VERSION,
        dataset: machine.to_string(),
        source_format: "smd".to_string(),
        columns: train.columns.clone(),
        target_dims: None,
        parts: vec![Part {
            name: machine.to_string(),
            train_rows: train.n_rows,
            test_rows: test.n_rows,
        }],
        interpretation,
    };
    Dataset::new(train, test, labels, meta)
}

/// The members `dataset` stands for: every machine present for `SMD`, else the one
/// canonical machine name. Lists `train/` only.
pub fn members(dir: &Path, dataset: &str) -> Result<Vec<String>> {
    let available = source::stems_in(&dir.join("train"), ".txt")?;
    if dataset.eq_ignore_ascii_case(GROUP) {
        if available.is_empty() {
            bail!(
                "no machine in `{}` (expected `<machine>.txt` or `.txt.gz` files)",
                dir.join("train").display()
            );
        }
        return Ok(available);
    }
    Ok(vec![
        canonical_machine(&available, dataset, dir)?.to_string()
    ])
}

/// `machine` as it is spelled in `train/` (exactly, else ignoring case), or the error
/// that lists the machines there and suggests the closest.
fn canonical_machine<'a>(available: &'a [String], machine: &str, dir: &Path) -> Result<&'a str> {
    let found = available.iter().find(|name| *name == machine).or_else(|| {
        available
            .iter()
            .find(|name| name.eq_ignore_ascii_case(machine))
    });
    if let Some(name) = found {
        return Ok(name);
    }
    let mut message = format!(
        "unknown machine `{machine}`: no `{machine}.txt` in `{}`; available: SMD, {}",
        dir.join("train").display(),
        if available.is_empty() {
            "none".to_string()
        } else {
            available.join(", ")
        }
    );
    if let Some(suggestion) = source::closest(machine, available) {
        message.push_str(&format!("; did you mean `{suggestion}`?"));
    }
    bail!(message)
}

/// One `0`/`1` per line.
pub fn read_label_lines(path: &Path) -> Result<Vec<u8>> {
    parse_label_lines(&source::read_text(path)?, path)
}

/// The labels in `content`, one `0`/`1` per line; `path` only labels errors.
pub fn parse_label_lines(content: &str, path: &Path) -> Result<Vec<u8>> {
    let mut labels = Vec::new();
    for (line_idx, line) in content.lines().enumerate() {
        let value = line.trim();
        labels.push(match value {
            "" => continue,
            "0" | "0.0" => 0,
            "1" | "1.0" => 1,
            _ => bail!(
                "`{}` line {}: label `{value}` is not 0 or 1",
                path.display(),
                line_idx + 1
            ),
        });
    }
    Ok(labels)
}

/// Lines `start-end:d1,d2,...` (0-based start, exclusive end, 1-based dims), checked
/// against the test rows and columns; dims are stored 0-based.
pub fn read_interpretation(
    path: &Path,
    n_test_rows: usize,
    n_cols: usize,
) -> Result<Vec<Interpretation>> {
    parse_interpretation(&source::read_text(path)?, path, n_test_rows, n_cols)
}

/// [`read_interpretation`] of text; `path` only labels errors.
pub fn parse_interpretation(
    content: &str,
    path: &Path,
    n_test_rows: usize,
    n_cols: usize,
) -> Result<Vec<Interpretation>> {
    let mut segments = Vec::new();
    for (line_idx, line) in content.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("`{}` line {}", path.display(), line_idx + 1);
        let (range, dims) = line
            .split_once(':')
            .with_context(|| format!("{}: expected `start-end:d1,d2,...`, found `{line}`", at()))?;
        let (start, end) = range.split_once('-').with_context(|| {
            format!("{}: expected `start-end` before `:`, found `{range}`", at())
        })?;
        let parse = |token: &str| {
            token
                .trim()
                .parse::<usize>()
                .with_context(|| format!("{}: `{}` is not a whole number", at(), token.trim()))
        };
        let (start, end) = (parse(start)?, parse(end)?);
        if start >= end || end > n_test_rows {
            bail!(
                "{}: segment {start}-{end} is not within the {n_test_rows} test rows",
                at()
            );
        }
        let dims = dims
            .split(',')
            .map(|token| {
                let dim = parse(token)?;
                if dim == 0 || dim > n_cols {
                    bail!("{}: dimension {dim} is not between 1 and {n_cols}", at());
                }
                Ok(dim - 1)
            })
            .collect::<Result<Vec<_>>>()?;
        segments.push(Interpretation { start, end, dims });
    }
    Ok(segments)
}

/// The files loading `dataset` reads (`SMD`: every machine's): train, test, test labels
/// and, when present, the interpretation labels of each machine.
pub fn inputs(dir: &Path, dataset: &str) -> Result<Vec<PathBuf>> {
    let available = source::stems_in(&dir.join("train"), ".txt")?;
    let machines: Vec<String> = if dataset.eq_ignore_ascii_case(GROUP) {
        available.clone()
    } else {
        vec![canonical_machine(&available, dataset, dir)?.to_string()]
    };
    let mut files = Vec::new();
    for machine in &machines {
        for split in ["train", "test", TEST_LABEL_DIR] {
            files.push(machine_file(dir, split, machine)?);
        }
        if let Some(path) =
            source::find_maybe_gz(&dir.join("interpretation_label"), &format!("{machine}.txt"))
        {
            files.push(path);
        }
    }
    Ok(files)
}

fn read_metrics(path: &Path) -> Result<Table> {
    let rows = text::parse_numeric(&source::read_text(path)?, path, false)?;
    Table::new(numbered_columns(rows.n_cols), rows.n_rows, rows.values)
}

fn machine_file(dir: &Path, split: &str, machine: &str) -> Result<PathBuf> {
    let split_dir = dir.join(split);
    source::find_maybe_gz(&split_dir, &format!("{machine}.txt")).with_context(|| {
        format!(
            "missing `{machine}.txt` (or `.txt.gz`) in `{}`",
            split_dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_smd() -> PathBuf {
        // shared/ sits beside the repository (steps/ is one level down).
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/smd")
    }

    #[test]
    fn machine_2_1_has_the_published_shape() {
        let dir = shared_smd();
        if !dir.join("train/machine-2-1.txt.gz").is_file() {
            eprintln!("skipped: {} is not available", dir.display());
            return;
        }
        let dataset = load(&dir, "machine-2-1").unwrap();
        assert_eq!((dataset.train.n_rows, dataset.test.n_rows), (23693, 23694));
        assert_eq!(dataset.train.n_cols(), 38);
        assert_eq!(dataset.meta.columns.last().map(String::as_str), Some("f37"));
        assert_eq!(dataset.labels.iter().filter(|&&l| l == 1).count(), 1170);
        assert_eq!(dataset.meta.target_dims, None);
        // First line of interpretation_label/machine-2-1.txt: 6506-6528:23,25,32,35,36.
        let first = &dataset.meta.interpretation[0];
        assert_eq!((first.start, first.end), (6506, 6528));
        assert_eq!(first.dims, vec![22, 24, 31, 34, 35]);
        assert!(dataset
            .meta
            .interpretation
            .iter()
            .all(|s| s.dims.iter().all(|&d| d < 38)));
        assert_eq!(dataset.train.values[0], 0.202020);
    }

    /// An SMD directory for machine `m-1` with 3 train rows.
    fn tiny_dir(test: &str, labels: &str, interpretation: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "test", TEST_LABEL_DIR, "interpretation_label"] {
            std::fs::create_dir_all(dir.path().join(split)).unwrap();
        }
        std::fs::write(dir.path().join("train/m-1.txt"), "0,1\n0.5,1\n1,0\n").unwrap();
        std::fs::write(dir.path().join("test/m-1.txt"), test).unwrap();
        std::fs::write(dir.path().join("test_label/m-1.txt"), labels).unwrap();
        std::fs::write(
            dir.path().join("interpretation_label/m-1.txt"),
            interpretation,
        )
        .unwrap();
        dir
    }

    #[test]
    fn small_machine_loads_with_interpretation() {
        let dir = tiny_dir("0,0\n1,1\n2,2\n", "0\n1\n1\n", "1-3:2\n");
        let dataset = load(dir.path(), "m-1").unwrap();
        assert_eq!(dataset.labels, vec![0, 1, 1]);
        assert_eq!(
            dataset.meta.interpretation,
            vec![Interpretation {
                start: 1,
                end: 3,
                dims: vec![1]
            }]
        );
    }

    #[test]
    fn ragged_and_non_numeric_rows_name_file_and_line() {
        let dir = tiny_dir("0,0\n1\n2,2\n", "0\n0\n0\n", "");
        let message = format!("{:#}", load(dir.path(), "m-1").unwrap_err());
        assert!(
            message.contains("test/m-1.txt` line 2: ragged row"),
            "{message}"
        );
        let dir = tiny_dir("0,0\n1,1\n2,abc\n", "0\n0\n0\n", "");
        let message = format!("{:#}", load(dir.path(), "m-1").unwrap_err());
        assert!(
            message.contains("test/m-1.txt` line 3, column 2: `abc` is not a number"),
            "{message}"
        );
    }

    #[test]
    fn a_machine_without_test_rows_is_refused_by_name() {
        let dir = tiny_dir("", "", "");
        let message = format!("{:#}", load(dir.path(), "m-1").unwrap_err());
        assert!(
            message.contains("test/m-1.txt` has no rows: machine `m-1` has nothing to score"),
            "{message}"
        );
    }

    #[test]
    fn label_length_mismatch_names_both_files() {
        let dir = tiny_dir("0,0\n1,1\n2,2\n", "0\n1\n", "");
        let message = format!("{:#}", load(dir.path(), "m-1").unwrap_err());
        assert!(
            message.contains("test_label/m-1.txt` has 2 labels"),
            "{message}"
        );
        assert!(message.contains("test/m-1.txt` has 3 rows"), "{message}");
        let dir = tiny_dir("0,0\n1,1\n2,2\n", "0\n2\n0\n", "");
        let message = format!("{:#}", load(dir.path(), "m-1").unwrap_err());
        assert!(
            message.contains("test_label/m-1.txt` line 2: label `2`"),
            "{message}"
        );
    }

    #[test]
    fn bad_interpretation_lines_name_the_line() {
        for (line, expected) in [
            ("1-9:1", "not within the 3 test rows"),
            ("0-2:3", "dimension 3"),
            ("0-2", "start-end:"),
        ] {
            let dir = tiny_dir("0,0\n1,1\n2,2\n", "0\n0\n0\n", &format!("0-1:1\n{line}\n"));
            let message = format!("{:#}", load(dir.path(), "m-1").unwrap_err());
            assert!(
                message.contains("interpretation_label/m-1.txt` line 2")
                    && message.contains(expected),
                "{message}"
            );
        }
    }

    #[test]
    fn unknown_machine_suggests_the_closest() {
        let dir = tiny_dir("0,0\n", "0\n", "");
        let message = format!("{:#}", load(dir.path(), "m-2").unwrap_err());
        assert!(
            message.contains("unknown machine `m-2`") && message.contains("available: SMD, m-1"),
            "{message}"
        );
        assert!(message.contains("did you mean `m-1`?"), "{message}");
        let message = format!("{:#}", load(dir.path(), "SMD").unwrap_err());
        assert!(message.contains("per machine"), "{message}");
        let dataset = load(dir.path(), "M-1").unwrap();
        assert_eq!(dataset.meta.dataset, "m-1");
    }
}
