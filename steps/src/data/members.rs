//! What a `dataset` value stands for: the canonical members that
//! `flow step load --list-members` prints and a pipeline fans out over.
//!
//! A group names several datasets (`SMD`: every machine present; `MSL/channels`: every MSL
//! channel present, one chain each); any other value names one, spelled canonically
//! (`m-3` -> `M-3`) so that one dataset is one run key. This runs at plan time, so it only
//! lists directories (and reads telemanom's small labels file), never the data.

use std::cmp::Ordering;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::data::load::{load_context, resolve_format, LoadArgs, SourceFormat};
use crate::data::{generic, smd, telemanom};

/// The canonical members `dataset` stands for in `data_dir`, in natural order; the error
/// for a value that names nothing is the one `load` gives.
pub fn list_members(data_dir: &Path, dataset: &str, format: SourceFormat) -> Result<Vec<String>> {
    let listed = match resolve_format(data_dir, format)? {
        SourceFormat::Telemanom => telemanom::members(data_dir, dataset),
        SourceFormat::Smd => smd::members(data_dir, dataset),
        SourceFormat::Csv => generic::members(data_dir, dataset, "csv"),
        SourceFormat::Parquet => generic::members(data_dir, dataset, "parquet"),
        SourceFormat::Auto => unreachable!("resolve_format returns a concrete format"),
    };
    let mut members = listed.map_err(|error| error.context(load_context(data_dir, dataset)))?;
    members.sort_by(|a, b| natural_cmp(a, b));
    Ok(members)
}

/// The files loading `dataset` reads (a group: every member's), for the step's data
/// version: one machine's or channel's files, so new data for another member leaves it be.
pub fn list_inputs(data_dir: &Path, dataset: &str, format: SourceFormat) -> Result<Vec<PathBuf>> {
    let listed = match resolve_format(data_dir, format)? {
        SourceFormat::Telemanom => telemanom::inputs(data_dir, dataset),
        SourceFormat::Smd => smd::inputs(data_dir, dataset),
        SourceFormat::Csv => generic::inputs(data_dir, "csv"),
        SourceFormat::Parquet => generic::inputs(data_dir, "parquet"),
        SourceFormat::Auto => unreachable!("resolve_format returns a concrete format"),
    };
    listed.map_err(|error| error.context(load_context(data_dir, dataset)))
}

/// `load --list-inputs`: the files on stdout, one per line and nothing else.
pub fn print_inputs(args: &LoadArgs) -> Result<()> {
    let files = list_inputs(&args.data_dir, &args.dataset, args.format)?;
    let mut out = std::io::stdout().lock();
    for file in files {
        let text = file
            .to_str()
            .with_context(|| format!("input path `{}` is not UTF-8", file.display()))?;
        writeln!(out, "{text}")?;
    }
    out.flush()?;
    Ok(())
}

/// `load --list-members`: the members on stdout, one per line and nothing else.
pub fn print_members(args: &LoadArgs) -> Result<()> {
    let members = list_members(&args.data_dir, &args.dataset, args.format)?;
    let mut out = std::io::stdout().lock();
    for member in members {
        writeln!(out, "{member}")?;
    }
    out.flush()?;
    Ok(())
}

/// Orders names as people count: runs of digits compare as numbers, so `machine-1-10`
/// comes after `machine-1-9` and `A-2` before `A-10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        if a.is_empty() || b.is_empty() {
            return a.len().cmp(&b.len());
        }
        let (a_chunk, a_rest) = split_chunk(a);
        let (b_chunk, b_rest) = split_chunk(b);
        let both_numbers =
            a_chunk.as_bytes()[0].is_ascii_digit() && b_chunk.as_bytes()[0].is_ascii_digit();
        let order = if both_numbers {
            // By value without parsing (any length), then fewer leading zeros first.
            let (a_value, b_value) = (
                a_chunk.trim_start_matches('0'),
                b_chunk.trim_start_matches('0'),
            );
            a_value
                .len()
                .cmp(&b_value.len())
                .then(a_value.cmp(b_value))
                .then(a_chunk.len().cmp(&b_chunk.len()))
        } else {
            a_chunk.cmp(b_chunk)
        };
        if order != Ordering::Equal {
            return order;
        }
        (a, b) = (a_rest, b_rest);
    }
}

/// The leading run of digits or of non-digits, and the rest.
fn split_chunk(text: &str) -> (&str, &str) {
    let digits = text.as_bytes()[0].is_ascii_digit();
    let end = text
        .bytes()
        .position(|b| b.is_ascii_digit() != digits)
        .unwrap_or(text.len());
    text.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::npy::write_npy;
    use std::path::PathBuf;

    fn sample_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/telemanom")
    }

    fn members(dir: &Path, dataset: &str) -> Result<Vec<String>> {
        list_members(dir, dataset, SourceFormat::Auto)
    }

    #[test]
    fn natural_order_counts_digits_as_numbers() {
        let mut names = vec![
            "machine-1-10",
            "machine-2-1",
            "machine-1-9",
            "machine-1-1",
            "A-10",
            "A-2",
            "A-02",
            "A",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            vec![
                "A",
                "A-2",
                "A-02",
                "A-10",
                "machine-1-1",
                "machine-1-9",
                "machine-1-10",
                "machine-2-1"
            ]
        );
        assert_eq!(
            natural_cmp("x99999999999999999999999", "x100000000000000000000000"),
            Ordering::Less
        );
    }

    #[test]
    fn telemanom_values_name_themselves_canonically_or_their_channels() {
        let dir = sample_dir();
        assert_eq!(members(&dir, "m-3").unwrap(), vec!["M-3"]);
        assert_eq!(members(&dir, "T-13").unwrap(), vec!["T-13"]);
        assert_eq!(members(&dir, "msl").unwrap(), vec!["MSL"]);
        assert_eq!(
            members(&dir, "MSL/channels").unwrap(),
            vec!["F-4", "M-3", "T-13"]
        );
        let message = format!("{:#}", members(&dir, "SMAP/channels").unwrap_err());
        assert!(message.contains("no `SMAP` channel"), "{message}");
        let message = format!("{:#}", members(&dir, "M-8").unwrap_err());
        assert!(
            message.contains("cannot load dataset `M-8`")
                && message.contains("did you mean `M-3`?"),
            "{message}"
        );
        let message = format!("{:#}", members(&dir, "MARS/channels").unwrap_err());
        assert!(
            message.contains("expected `MSL/channels` or `SMAP/channels`"),
            "{message}"
        );
    }

    #[test]
    fn channels_of_a_spacecraft_come_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "test"] {
            std::fs::create_dir(dir.path().join(split)).unwrap();
        }
        let mut labels = "chan_id,spacecraft,anomaly_sequences,class,num_values\n".to_string();
        for chan in ["A-10", "A-2", "A-1", "P-2"] {
            write_npy(&dir.path().join(format!("train/{chan}.npy")), 1, 1, &[0.0]).unwrap();
            labels.push_str(&format!("{chan},SMAP,\"[[0, 0]]\",[point],1\n"));
        }
        labels.push_str("B-1,SMAP,\"[[0, 0]]\",[point],1\n");
        std::fs::write(dir.path().join(telemanom::LABELS_FILE), labels).unwrap();
        // P-2 is skipped as the reference skips it; B-1 has labels but no data.
        assert_eq!(
            members(dir.path(), "smap/channels").unwrap(),
            vec!["A-1", "A-2", "A-10"]
        );
    }

    #[test]
    fn smd_lists_every_machine_present_in_natural_order() {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "test", smd::TEST_LABEL_DIR] {
            std::fs::create_dir(dir.path().join(split)).unwrap();
        }
        for machine in ["machine-1-10", "machine-2-1", "machine-1-9", "machine-1-1"] {
            std::fs::write(dir.path().join(format!("train/{machine}.txt.gz")), b"").unwrap();
        }
        assert_eq!(
            members(dir.path(), "SMD").unwrap(),
            vec!["machine-1-1", "machine-1-9", "machine-1-10", "machine-2-1"]
        );
        assert_eq!(
            members(dir.path(), "Machine-2-1").unwrap(),
            vec!["machine-2-1"]
        );
        let message = format!("{:#}", members(dir.path(), "machine-3-1").unwrap_err());
        assert!(
            message.contains("unknown machine `machine-3-1`"),
            "{message}"
        );
        let empty = tempfile::tempdir().unwrap();
        std::fs::create_dir(empty.path().join("train")).unwrap();
        std::fs::create_dir(empty.path().join(smd::TEST_LABEL_DIR)).unwrap();
        let message = format!("{:#}", members(empty.path(), "smd").unwrap_err());
        assert!(message.contains("no machine"), "{message}");
    }

    /// File names under `dir`, relative, for comparing listings.
    fn relative(dir: &Path, files: Vec<PathBuf>) -> Vec<String> {
        files
            .iter()
            .map(|f| f.strip_prefix(dir).unwrap().to_string_lossy().to_string())
            .collect()
    }

    #[test]
    fn inputs_are_one_members_files_or_a_groups() {
        let dir = tempfile::tempdir().unwrap();
        for split in ["train", "test", smd::TEST_LABEL_DIR, "interpretation_label"] {
            std::fs::create_dir(dir.path().join(split)).unwrap();
        }
        for machine in ["machine-1-1", "machine-2-1"] {
            for split in ["train", "test", smd::TEST_LABEL_DIR] {
                std::fs::write(dir.path().join(format!("{split}/{machine}.txt")), b"").unwrap();
            }
        }
        std::fs::write(dir.path().join("interpretation_label/machine-2-1.txt"), b"").unwrap();
        let inputs = |dataset: &str| {
            relative(
                dir.path(),
                list_inputs(dir.path(), dataset, SourceFormat::Auto).unwrap(),
            )
        };
        assert_eq!(
            inputs("Machine-1-1"),
            [
                "train/machine-1-1.txt",
                "test/machine-1-1.txt",
                "test_label/machine-1-1.txt"
            ]
        );
        assert_eq!(inputs("SMD").len(), 7);
        assert!(inputs("SMD").contains(&"interpretation_label/machine-2-1.txt".to_string()));

        let sample = sample_dir();
        let listed = relative(
            &sample,
            list_inputs(&sample, "m-3", SourceFormat::Auto).unwrap(),
        );
        assert_eq!(listed[0], "labeled_anomalies.csv");
        assert_eq!(listed.len(), 3, "{listed:?}");
        assert!(listed[1].starts_with("train/M-3.npy"), "{listed:?}");
        let msl = list_inputs(&sample, "MSL", SourceFormat::Auto).unwrap();
        assert_eq!(
            msl.len(),
            1 + 2 * 3,
            "the labels and both splits of 3 channels"
        );
    }

    #[test]
    fn generic_data_is_one_member_named_as_given() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.csv"), "a\n1\n").unwrap();
        let message = format!("{:#}", members(dir.path(), "servers").unwrap_err());
        assert!(message.contains("missing `test.csv`"), "{message}");
        std::fs::write(dir.path().join("test.csv"), "a\n1\n").unwrap();
        assert_eq!(members(dir.path(), "servers").unwrap(), vec!["servers"]);
    }

    #[test]
    fn a_data_dir_that_is_a_file_is_said_to_be_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("data.csv");
        std::fs::write(&file, "a\n").unwrap();
        let message = format!("{:#}", members(&file, "x").unwrap_err());
        assert!(message.contains("is a file, not a directory"), "{message}");
    }
}
