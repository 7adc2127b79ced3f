//! The `load` step: reads a published dataset and writes it as a Parquet snapshot
//! (`train.parquet`, `test.parquet`, `labels.parquet`) plus `meta.json`, so every later
//! step reads one format and the snapshot's hash is the data version.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::context::StepContext;
use crate::data::dataset::Dataset;
use crate::data::parquet::{write_labels, write_parquet};
use crate::data::{generic, smd, source, telemanom};

/// Parameters of `load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// `MSL` or `SMAP` (every channel present), a channel (`M-6`), an SMD machine
    /// (`machine-2-1`), or a name for a generic CSV/Parquet dataset.
    #[arg(long, default_value = "MSL")]
    pub dataset: String,
    /// Directory holding the dataset in its published layout.
    #[arg(long, default_value = "data/telemanom")]
    pub data_dir: PathBuf,
    /// Layout of `data_dir`; `auto` recognises it from the files present.
    #[arg(long, value_enum, default_value_t = SourceFormat::Auto)]
    pub format: SourceFormat,
    /// Print the members `--dataset` stands for, one per line, and load nothing: every
    /// machine for `SMD`, every channel for `MSL/channels`, else the canonical name.
    #[arg(long)]
    pub list_members: bool,
    /// Print the files loading `--dataset` reads, one per line, and load nothing: what the
    /// step's data version covers (MLproject `inputs_from`).
    #[arg(long, conflicts_with = "list_members")]
    pub list_inputs: bool,
}

/// The layouts `load` reads.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    Auto,
    Telemanom,
    Smd,
    Csv,
    Parquet,
}

/// Runs the step: reads the dataset, writes the snapshot, logs its shape.
pub fn run(ctx: &StepContext, args: &LoadArgs) -> Result<()> {
    let format = resolve_format(&args.data_dir, args.format)?;
    let dataset = read_dataset(&args.data_dir, &args.dataset, format)?;
    write_dataset(ctx, &dataset)?;
    ctx.log_metrics(
        &[
            ("n_train_rows", dataset.train.n_rows as f64),
            ("n_test_rows", dataset.test.n_rows as f64),
            ("n_features", dataset.train.n_cols() as f64),
            ("anomaly_ratio", dataset.anomaly_ratio()),
        ],
        0,
    )?;
    eprintln!("{}", summary(&dataset));
    let constant = dataset.meta.constant_target_names(&dataset.train.values);
    if !constant.is_empty() {
        eprintln!(
            "warning: {} of {} parts have a constant target in their training rows ({}): the model can learn nothing there (evaluate names them, and leaves a part out of its threshold fits when most of its training scores are one value)",
            constant.len(),
            dataset.meta.parts.len(),
            constant.join(", ")
        );
    }
    Ok(())
}

/// Reads `dataset` from `data_dir` in a concrete (not `auto`) format.
pub fn read_dataset(data_dir: &Path, dataset: &str, format: SourceFormat) -> Result<Dataset> {
    let loaded = match format {
        SourceFormat::Telemanom => telemanom::load(data_dir, dataset),
        SourceFormat::Smd => smd::load(data_dir, dataset),
        SourceFormat::Csv => generic::load(data_dir, dataset, "csv"),
        SourceFormat::Parquet => generic::load(data_dir, dataset, "parquet"),
        SourceFormat::Auto => {
            let format = resolve_format(data_dir, format)?;
            return read_dataset(data_dir, dataset, format);
        }
    };
    loaded.with_context(|| load_context(data_dir, dataset))
}

/// What every error of loading (or listing) `dataset` starts with.
pub fn load_context(data_dir: &Path, dataset: &str) -> String {
    format!(
        "cannot load dataset `{dataset}` from `{}`",
        data_dir.display()
    )
}

/// `format` itself, or for `auto` the layout recognised in `data_dir`.
pub fn resolve_format(data_dir: &Path, format: SourceFormat) -> Result<SourceFormat> {
    if !data_dir.is_dir() {
        let what = if data_dir.exists() {
            "is a file, not a directory"
        } else {
            "does not exist"
        };
        bail!(
            "data directory `{}` {what} (set it with `--data-dir`)",
            data_dir.display()
        );
    }
    if format != SourceFormat::Auto {
        return Ok(format);
    }
    if source::find_maybe_gz(data_dir, telemanom::LABELS_FILE).is_some() {
        Ok(SourceFormat::Telemanom)
    } else if data_dir.join(smd::TEST_LABEL_DIR).is_dir() {
        Ok(SourceFormat::Smd)
    } else if source::find_maybe_gz(data_dir, "train.csv").is_some() {
        Ok(SourceFormat::Csv)
    } else if source::find_maybe_gz(data_dir, "train.parquet").is_some() {
        Ok(SourceFormat::Parquet)
    } else {
        bail!(
            "cannot tell the layout of `{}`: expected `{}` (telemanom), a `{}/` directory (SMD), or `train.csv`/`train.parquet` (generic); pass `--format`",
            data_dir.display(),
            telemanom::LABELS_FILE,
            smd::TEST_LABEL_DIR
        )
    }
}

/// Writes the snapshot files of `dataset` into the step's output directory.
pub fn write_dataset(ctx: &StepContext, dataset: &Dataset) -> Result<()> {
    write_parquet(&ctx.output_path("train.parquet")?, &dataset.train)?;
    write_parquet(&ctx.output_path("test.parquet")?, &dataset.test)?;
    write_labels(&ctx.output_path("labels.parquet")?, &dataset.labels)?;
    dataset.meta.write(&ctx.output_path("meta.json")?)
}

/// One line describing what was loaded.
fn summary(dataset: &Dataset) -> String {
    let meta = &dataset.meta;
    let parts = match meta.parts.len() {
        0 | 1 => String::new(),
        n => format!(", {n} parts"),
    };
    format!(
        "loaded `{}` ({}{parts}): {} train rows, {} test rows, {} features, {:.2}% of test rows anomalous",
        meta.dataset,
        meta.source_format,
        dataset.train.n_rows,
        dataset.test.n_rows,
        dataset.train.n_cols(),
        100.0 * dataset.anomaly_ratio()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::meta::Meta;
    use crate::data::parquet::{read_labels, read_parquet};

    fn sample_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/telemanom")
    }

    #[test]
    fn run_writes_the_snapshot_of_the_bundled_sample() {
        let out = tempfile::tempdir().unwrap();
        let ctx = StepContext::for_dirs(out.path(), &[]);
        let metrics = out.path().join("metrics.jsonl");
        let ctx = StepContext {
            metrics_path: Some(metrics.clone()),
            ..ctx
        };
        let args = LoadArgs {
            dataset: "MSL".into(),
            data_dir: sample_dir(),
            format: SourceFormat::Auto,
            list_members: false,
            list_inputs: false,
        };
        run(&ctx, &args).unwrap();
        let train = read_parquet(&out.path().join("train.parquet")).unwrap();
        let test = read_parquet(&out.path().join("test.parquet")).unwrap();
        let labels = read_labels(&out.path().join("labels.parquet")).unwrap();
        let meta = Meta::read(&out.path().join("meta.json")).unwrap();
        assert_eq!(
            (train.n_rows, test.n_rows, labels.len()),
            (5426, 7979, 7979)
        );
        assert_eq!(meta.source_format, "telemanom");
        assert_eq!(meta.columns, train.columns);
        let direct = read_dataset(&sample_dir(), "MSL", SourceFormat::Telemanom).unwrap();
        assert_eq!(train, direct.train);
        let logged = std::fs::read_to_string(metrics).unwrap();
        assert!(
            logged.contains("\"n_features\"") && logged.contains("\"value\":55"),
            "{logged}"
        );
    }

    #[test]
    fn snapshot_bytes_are_deterministic() {
        // The data version is the hash of these files: the same input must give the same bytes.
        let hashes: Vec<_> = (0..2)
            .map(|_| {
                let out = tempfile::tempdir().unwrap();
                let ctx = StepContext::for_dirs(out.path(), &[]);
                let dataset = read_dataset(&sample_dir(), "T-13", SourceFormat::Auto).unwrap();
                write_dataset(&ctx, &dataset).unwrap();
                [
                    "train.parquet",
                    "test.parquet",
                    "labels.parquet",
                    "meta.json",
                ]
                .map(|name| blake3::hash(&std::fs::read(out.path().join(name)).unwrap()))
            })
            .collect();
        assert_eq!(hashes[0], hashes[1]);
    }

    #[test]
    fn format_detection() {
        assert_eq!(
            resolve_format(&sample_dir(), SourceFormat::Auto).unwrap(),
            SourceFormat::Telemanom
        );
        let dir = tempfile::tempdir().unwrap();
        let message = resolve_format(dir.path(), SourceFormat::Auto)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("cannot tell the layout") && message.contains("--format"),
            "{message}"
        );
        std::fs::create_dir(dir.path().join("test_label")).unwrap();
        assert_eq!(
            resolve_format(dir.path(), SourceFormat::Auto).unwrap(),
            SourceFormat::Smd
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train.parquet.gz"), b"").unwrap();
        assert_eq!(
            resolve_format(dir.path(), SourceFormat::Auto).unwrap(),
            SourceFormat::Parquet
        );
        let message = resolve_format(&dir.path().join("nope"), SourceFormat::Csv)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("nope` does not exist") && message.contains("--data-dir"),
            "{message}"
        );
    }

    #[test]
    fn unknown_dataset_error_names_dataset_and_dir() {
        let message = format!(
            "{:#}",
            read_dataset(&sample_dir(), "Q-1", SourceFormat::Auto).unwrap_err()
        );
        assert!(
            message.contains("cannot load dataset `Q-1`") && message.contains("unknown channel"),
            "{message}"
        );
    }
}
