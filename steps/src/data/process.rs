//! The `process` step: fits the scaler on the training rows only, scales train and
//! test with it, and writes them with the labels as one safetensors file beside the
//! fitted `preprocessor.json` (which the model bundle later embeds).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use crate::context::StepContext;
use crate::data::meta::Meta;
use crate::data::parquet::{read_labels, read_parquet};
use crate::data::preprocessor::{Preprocessor, ScalerKind};
use crate::data::table::Table;

/// Parameters of `process`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProcessArgs {
    /// Scaler fitted on the training rows: `minmax`, `standard` or `none`.
    #[arg(long, value_enum, default_value_t = ScalerKind::Minmax)]
    pub logic: ScalerKind,
    /// Sliding-window length W (rows of context per forecast).
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Columns to forecast and score: `auto` (the dataset's default: telemanom [0],
    /// SMD all), `all`, or 0-based indices such as `0,3,5`.
    #[arg(long, default_value = "auto")]
    pub target_dims: String,
    /// Value that replaces NaN before scaling.
    #[arg(long, default_value_t = 0.0)]
    pub nan_fill: f64,
}

/// Scaled data ready for the model, as written to `data.safetensors`.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    pub preprocessor: Preprocessor,
    /// Row-major [n_train, K] and [n_test, K].
    pub train: Vec<f32>,
    pub test: Vec<f32>,
    pub n_train: usize,
    pub n_test: usize,
    pub labels: Vec<u8>,
}

/// Runs the step on the outputs of `load`.
pub fn run(ctx: &StepContext, args: &ProcessArgs) -> Result<()> {
    let load_dir = ctx.input("load")?;
    let processed = process_dir(load_dir, args)?;
    let preprocessor_path = ctx.output_path("preprocessor.json")?;
    let json = serde_json::to_string_pretty(&processed.preprocessor)?;
    std::fs::write(&preprocessor_path, json + "\n")
        .with_context(|| format!("cannot write `{}`", preprocessor_path.display()))?;
    save_safetensors(&ctx.output_path("data.safetensors")?, &processed)?;

    let window = processed.preprocessor.window;
    ctx.log_metrics(
        &[
            ("n_features", processed.preprocessor.n_features() as f64),
            (
                "n_target_dims",
                processed.preprocessor.target_dims.len() as f64,
            ),
            ("n_train_windows", (processed.n_train - window) as f64),
            ("n_test_windows", (processed.n_test - window) as f64),
        ],
        0,
    )?;
    eprintln!(
        "scaled {} train and {} test rows of {} features ({:?} scaler fitted on train), window {window}, target dims {:?}",
        processed.n_train,
        processed.n_test,
        processed.preprocessor.n_features(),
        processed.preprocessor.scaler,
        processed.preprocessor.target_dims
    );
    Ok(())
}

/// Reads a `load` output directory and scales it.
pub fn process_dir(load_dir: &Path, args: &ProcessArgs) -> Result<Processed> {
    let meta = Meta::read(&load_dir.join("meta.json"))?;
    let train = read_parquet(&load_dir.join("train.parquet"))?;
    let test = read_parquet(&load_dir.join("test.parquet"))?;
    let labels_path = load_dir.join("labels.parquet");
    let labels = read_labels(&labels_path)?;
    for (name, table) in [("train.parquet", &train), ("test.parquet", &test)] {
        if table.columns != meta.columns {
            bail!(
                "`{}` columns differ from those in meta.json",
                load_dir.join(name).display()
            );
        }
    }
    if labels.len() != test.n_rows {
        bail!(
            "label length mismatch: `{}` has {} rows but the test data has {}",
            labels_path.display(),
            labels.len(),
            test.n_rows
        );
    }
    let target_dims = parse_target_dims(&args.target_dims, &meta)?;
    process(&train, &test, labels, target_dims, args)
}

/// Fits the preprocessor on `train` only and scales both splits.
pub fn process(
    train: &Table,
    test: &Table,
    labels: Vec<u8>,
    target_dims: Vec<usize>,
    args: &ProcessArgs,
) -> Result<Processed> {
    if args.window == 0 {
        bail!("`--window` must be at least 1");
    }
    if !args.nan_fill.is_finite() {
        bail!(
            "`--nan-fill` must be a finite number, got {}",
            args.nan_fill
        );
    }
    for (split, table) in [("train", train), ("test", test)] {
        if table.n_rows < args.window + 1 {
            bail!(
                "{split} has {} rows but `--window {}` needs at least {} (window + 1): lower the window or use more data",
                table.n_rows,
                args.window,
                args.window + 1
            );
        }
    }
    let preprocessor = Preprocessor::fit(
        &train.values,
        train.columns.clone(),
        args.logic,
        args.nan_fill,
        target_dims,
        args.window,
    );
    let train_scaled = preprocessor.transform(&train.values);
    let test_scaled = preprocessor.transform(&test.values);
    if let Some(position) = train_scaled
        .iter()
        .chain(&test_scaled)
        .position(|v| !v.is_finite())
    {
        let (split, index) = if position < train_scaled.len() {
            ("train", position)
        } else {
            ("test", position - train_scaled.len())
        };
        let col = index % train.n_cols();
        bail!(
            "{split} row {}, column `{}`: the value is infinite or too large once scaled",
            index / train.n_cols() + 1,
            train.columns[col]
        );
    }
    Ok(Processed {
        preprocessor,
        train: train_scaled,
        test: test_scaled,
        n_train: train.n_rows,
        n_test: test.n_rows,
        labels,
    })
}

/// `auto` (meta's default), `all`, or a comma list of 0-based column indices.
pub fn parse_target_dims(spec: &str, meta: &Meta) -> Result<Vec<usize>> {
    let n_cols = meta.columns.len();
    let dims = match spec.trim() {
        "auto" => meta.resolved_target_dims(),
        "all" => (0..n_cols).collect(),
        list => {
            let mut dims = Vec::new();
            for token in list.split(',').map(str::trim) {
                let dim = token.parse::<usize>().with_context(|| {
                    format!("`--target-dims {spec}`: `{token}` is not a column index (use `auto`, `all` or e.g. `0,2`)")
                })?;
                if dims.contains(&dim) {
                    bail!("`--target-dims {spec}`: column {dim} is listed twice");
                }
                dims.push(dim);
            }
            dims
        }
    };
    if let Some(dim) = dims.iter().find(|&&dim| dim >= n_cols) {
        bail!("`--target-dims {spec}`: column {dim} is out of range, the data has {n_cols} columns (0..{})", n_cols.saturating_sub(1));
    }
    if dims.is_empty() {
        bail!("`--target-dims {spec}` selects no column");
    }
    Ok(dims)
}

/// Writes `train` F32 [N,K], `test` F32 [M,K] and `labels` U8 [M].
pub fn save_safetensors(path: &Path, processed: &Processed) -> Result<()> {
    let n_cols = processed.preprocessor.n_features();
    let device = Device::Cpu;
    let tensors: HashMap<String, Tensor> = [
        (
            "train",
            Tensor::from_vec(
                processed.train.clone(),
                (processed.n_train, n_cols),
                &device,
            )?,
        ),
        (
            "test",
            Tensor::from_vec(processed.test.clone(), (processed.n_test, n_cols), &device)?,
        ),
        (
            "labels",
            Tensor::from_vec(processed.labels.clone(), processed.labels.len(), &device)?,
        ),
    ]
    .into_iter()
    .map(|(name, tensor)| (name.to_string(), tensor))
    .collect();
    candle_core::safetensors::save(&tensors, path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    // The writer creates the file owner-only (0600); outputs are shared artifacts.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot set permissions of `{}`", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::load::{read_dataset, write_dataset, SourceFormat};
    use crate::data::meta::Part;
    use candle_core::DType;

    fn args(window: usize) -> ProcessArgs {
        ProcessArgs {
            logic: ScalerKind::Minmax,
            window,
            target_dims: "auto".into(),
            nan_fill: 0.0,
        }
    }

    fn meta(n_cols: usize, target_dims: Option<Vec<usize>>) -> Meta {
        Meta {
            format_version: 1,
            dataset: "t".into(),
            source_format: "csv".into(),
            columns: (0..n_cols).map(|i| format!("f{i}")).collect(),
            target_dims,
            parts: vec![Part {
                name: "t".into(),
                train_rows: 0,
                test_rows: 0,
            }],
            interpretation: vec![],
        }
    }

    #[test]
    fn scaler_is_fitted_on_train_only() {
        let train = Table::new(vec!["a".into()], 3, vec![0.0, 5.0, 10.0]).unwrap();
        let test = Table::new(vec!["a".into()], 3, vec![20.0, f64::NAN, 5.0]).unwrap();
        let processed = process(&train, &test, vec![1, 0, 0], vec![0], &args(2)).unwrap();
        assert_eq!(processed.train, vec![0.0, 0.5, 1.0]);
        // 20 is outside the training range and stays there; NaN becomes nan_fill = 0 -> 0.
        assert_eq!(processed.test, vec![2.0, 0.0, 0.5]);
        assert_eq!(
            (
                processed.preprocessor.offset[0],
                processed.preprocessor.scale[0]
            ),
            (0.0, 10.0)
        );
    }

    #[test]
    fn window_too_long_names_both_numbers() {
        let table = Table::new(vec!["a".into()], 3, vec![0.0, 1.0, 2.0]).unwrap();
        let message = process(&table, &table, vec![0; 3], vec![0], &args(3))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("train has 3 rows")
                && message.contains("--window 3")
                && message.contains("at least 4"),
            "{message}"
        );
        assert!(process(&table, &table, vec![0; 3], vec![0], &args(0)).is_err());
    }

    #[test]
    fn target_dims_spec() {
        let smd = meta(3, None);
        let tele = meta(3, Some(vec![0]));
        assert_eq!(parse_target_dims("auto", &smd).unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_target_dims("auto", &tele).unwrap(), vec![0]);
        assert_eq!(parse_target_dims("all", &tele).unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_target_dims("2, 0", &tele).unwrap(), vec![2, 0]);
        let message = parse_target_dims("0,3", &tele).unwrap_err().to_string();
        assert!(
            message.contains("column 3 is out of range") && message.contains("3 columns"),
            "{message}"
        );
        assert!(parse_target_dims("0,x", &tele)
            .unwrap_err()
            .to_string()
            .contains("`x` is not a column index"));
        assert!(parse_target_dims("1,1", &tele)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn run_on_load_output_writes_safetensors_and_preprocessor() {
        let load_dir = tempfile::tempdir().unwrap();
        let sample = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/telemanom");
        let dataset = read_dataset(&sample, "M-3", SourceFormat::Auto).unwrap();
        write_dataset(&StepContext::for_dirs(load_dir.path(), &[]), &dataset).unwrap();

        let out = tempfile::tempdir().unwrap();
        let ctx = StepContext::for_dirs(out.path(), &[("load", load_dir.path())]);
        run(&ctx, &args(100)).unwrap();

        let tensors =
            candle_core::safetensors::load(out.path().join("data.safetensors"), &Device::Cpu)
                .unwrap();
        let (train, test, labels) = (&tensors["train"], &tensors["test"], &tensors["labels"]);
        assert_eq!((train.dims(), train.dtype()), (&[2037, 55][..], DType::F32));
        assert_eq!((test.dims(), test.dtype()), (&[2127, 55][..], DType::F32));
        assert_eq!((labels.dims(), labels.dtype()), (&[2127][..], DType::U8));
        assert_eq!(labels.to_vec1::<u8>().unwrap(), dataset.labels);
        // Min-max on train: every scaled train value lies in [0, 1], and each
        // non-constant column reaches both ends.
        let train_values = train.to_vec2::<f32>().unwrap();
        assert!(train_values
            .iter()
            .flatten()
            .all(|v| (0.0..=1.0).contains(v)));
        let column0: Vec<f32> = train_values.iter().map(|row| row[0]).collect();
        assert!(column0.contains(&0.0) && column0.contains(&1.0));

        let json = std::fs::read_to_string(out.path().join("preprocessor.json")).unwrap();
        let preprocessor: Preprocessor = serde_json::from_str(&json).unwrap();
        assert_eq!(preprocessor.target_dims, vec![0]);
        assert_eq!(preprocessor.window, 100);
        assert_eq!(preprocessor.columns.len(), 55);
    }

    #[test]
    fn missing_load_input_is_an_error() {
        let out = tempfile::tempdir().unwrap();
        let ctx = StepContext::for_dirs(out.path(), &[]);
        let message = run(&ctx, &args(100)).unwrap_err().to_string();
        assert!(message.contains("FLOW_INPUT_LOAD"), "{message}");
    }
}
