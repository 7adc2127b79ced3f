//! The `predict` step: applies a bundle to new data — raw rows in, anomaly scores,
//! 0/1 decisions under the bundle's threshold, and the features behind each score out.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::bundle::{Bundle, Scores, MANIFEST_FILE};
use crate::context::StepContext;
use crate::data::formats::read_table;
use crate::data::meta::Meta;
use crate::data::table::Table;

/// Parameters of `predict`.
#[derive(clap::Args, Debug, Clone)]
pub struct PredictArgs {
    /// Bundle directory; default: `FLOW_MODEL_DIR`, else the `evaluate` run's `model/`,
    /// else the `train` run's `model/`.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Raw rows to score (.csv, .parquet, .npy, .txt, optionally .gz); default: the
    /// `load` run's `test.parquet`.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Anomaly threshold on the row score; default: the bundle's chosen threshold.
    #[arg(long)]
    pub threshold: Option<f64>,
    /// How many top-scoring features to name per row.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    /// Score even when the bundle was trained on another dataset than the `load` run's
    /// (by default one member's model never scores another member's data).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_other_dataset: bool,
}

/// `auto` (what an MLproject default can say) means the same as leaving the flag out.
fn not_auto(path: &Option<PathBuf>) -> Option<&PathBuf> {
    path.as_ref().filter(|p| p.as_os_str() != "auto")
}

/// Runs the step.
pub fn run(ctx: &StepContext, args: &PredictArgs) -> Result<()> {
    let model_dir = model_dir(ctx, args)?;
    let bundle = Bundle::load(&model_dir)?;
    let data_path = match not_auto(&args.data) {
        Some(path) => path.clone(),
        None => {
            let load_dir = ctx
                .input("load")
                .context("no data to score: pass `--data PATH` or depend on `load`")?;
            let meta = Meta::read(&load_dir.join("meta.json"))?;
            check_dataset(&bundle, &model_dir, &meta, args.allow_other_dataset)?;
            load_dir.join("test.parquet")
        }
    };
    let threshold = match args.threshold {
        Some(t) if t.is_finite() => t,
        Some(t) => bail!("`--threshold` must be a finite number, got {t}"),
        None => bundle.manifest.thresholds.active().with_context(|| {
            format!(
                "the bundle `{}` has no threshold: run `evaluate` on it first, or pass `--threshold`",
                model_dir.display()
            )
        })?,
    };
    let (table, _labels) = read_table(&data_path)?.split_labels(&data_path)?;
    let raw = align_columns(&table, &bundle.manifest.preprocessor.columns, &data_path)?;
    let source = match (args.threshold, &bundle.manifest.thresholds.chosen) {
        (Some(_), _) => "`--threshold`".to_string(),
        (None, Some(chosen)) => {
            format!("the bundle's `{chosen}` threshold, fitted by evaluate on plain scores")
        }
        (None, None) => "the bundle's threshold".to_string(),
    };
    eprintln!(
        "scoring {} rows of `{}` with `{}` (threshold {threshold}: {source})",
        table.n_rows,
        data_path.display(),
        model_dir.display()
    );
    let scores = bundle
        .score_raw(&raw, table.n_rows)
        .with_context(|| format!("cannot score `{}`", data_path.display()))?;
    let feature_names: Vec<&str> = bundle
        .target_dims()
        .iter()
        .map(|&d| bundle.manifest.preprocessor.columns[d].as_str())
        .collect();
    let n_anomalies = write_predictions(
        &ctx.output_path("predictions.csv")?,
        &scores,
        threshold,
        &feature_names,
        args.top_k,
    )?;
    let n_rows = scores.n_scored();
    let rate = n_anomalies as f64 / n_rows as f64;
    ctx.log_metrics(
        &[
            ("n_rows", n_rows as f64),
            ("n_anomalies", n_anomalies as f64),
            ("anomaly_rate", rate),
        ],
        0,
    )?;
    eprintln!(
        "{n_anomalies} of {n_rows} scored rows are anomalous ({:.2}%); the first {} rows fill the window",
        100.0 * rate,
        scores.first_row
    );
    Ok(())
}

/// Refuses a bundle trained on another dataset than the one `meta` describes, unless
/// `allow`; a bundle from before the dataset was recorded passes. Same name with other
/// parts (e.g. the bundled 3-channel MSL sample against full MSL) is only a warning.
pub fn check_dataset(bundle: &Bundle, model_dir: &Path, meta: &Meta, allow: bool) -> Result<()> {
    let trained = &bundle.manifest.dataset;
    if !trained.is_known() {
        return Ok(());
    }
    if trained.name != meta.dataset {
        if allow {
            eprintln!(
                "warning: the model was trained on `{}`, scoring `{}` as `--allow-other-dataset true` asks",
                trained.name, meta.dataset
            );
            return Ok(());
        }
        bail!(
            "the model `{}` was trained on dataset `{}`, but this chain scores `{}`: one member's model must not score another's data. Use a model trained on `{}` (the predict step's default is `models:/anomaly-{{dataset}}/Production`), or pass `--allow-other-dataset true` to score anyway",
            model_dir.display(),
            trained.name,
            meta.dataset,
            meta.dataset
        );
    }
    let parts: Vec<&str> = meta.parts.iter().map(|p| p.name.as_str()).collect();
    if !trained.parts.is_empty() && trained.parts != parts {
        eprintln!(
            "warning: the model was trained on `{}` with {} part(s), this data has {} ({}): same name, other channels or machines",
            trained.name,
            trained.parts.len(),
            parts.len(),
            preview(&parts.iter().map(|p| p.to_string()).collect::<Vec<_>>())
        );
    }
    Ok(())
}

/// The bundle directory: `--model`, `FLOW_MODEL_DIR`, then the upstream runs' `model/`.
fn model_dir(ctx: &StepContext, args: &PredictArgs) -> Result<PathBuf> {
    if let Some(dir) = not_auto(&args.model) {
        return Ok(dir.clone());
    }
    if let Some(dir) = std::env::var_os("FLOW_MODEL_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    for step in ["evaluate", "train"] {
        if let Ok(dir) = ctx.input(step) {
            let candidate = dir.join("model");
            if candidate.join(MANIFEST_FILE).exists() {
                return Ok(candidate);
            }
        }
    }
    bail!("no model to apply: pass `--model DIR`, set `FLOW_MODEL_DIR`, or depend on `evaluate` or `train`")
}

/// The table's values in the model's column order (row-major).
///
/// Columns are matched by name (extra columns are ignored); a header-less file with
/// exactly the expected number of columns is taken in order.
pub fn align_columns(table: &Table, expected: &[String], path: &Path) -> Result<Vec<f64>> {
    if table.columns == expected {
        return Ok(table.values.clone());
    }
    let positions: Option<Vec<usize>> = expected
        .iter()
        .map(|name| table.columns.iter().position(|c| c == name))
        .collect();
    if let Some(positions) = positions {
        let mut values = Vec::with_capacity(table.n_rows * expected.len());
        for row in 0..table.n_rows {
            let row = table.row(row);
            values.extend(positions.iter().map(|&p| row[p]));
        }
        return Ok(values);
    }
    if table.n_cols() == expected.len() {
        eprintln!(
            "warning: the columns of `{}` do not match the model's by name; using them in order",
            path.display()
        );
        return Ok(table.values.clone());
    }
    bail!(
        "`{}` has {} columns ({}), but the model expects {}: {}",
        path.display(),
        table.n_cols(),
        preview(&table.columns),
        expected.len(),
        expected.join(", ")
    )
}

/// `row,score,anomaly,top_features`; returns the number of anomalous rows.
fn write_predictions(
    path: &Path,
    scores: &Scores,
    threshold: f64,
    names: &[&str],
    top_k: usize,
) -> Result<usize> {
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create `{}`", path.display()))?;
    let mut out = BufWriter::new(file);
    writeln!(out, "row,score,anomaly,top_features")?;
    let mut n_anomalies = 0;
    let mut ranked: Vec<usize> = Vec::with_capacity(scores.n_target);
    let mut features = String::new();
    for (i, &score) in scores.total.iter().enumerate() {
        let anomaly = f64::from(score) > threshold;
        n_anomalies += usize::from(anomaly);
        let row = &scores.per_feature[i * scores.n_target..(i + 1) * scores.n_target];
        ranked.clear();
        ranked.extend(0..scores.n_target);
        ranked.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
        features.clear();
        for (rank, &f) in ranked.iter().take(top_k).enumerate() {
            if rank > 0 {
                features.push(';');
            }
            let _ = write!(features, "{}", names.get(f).copied().unwrap_or("?"));
        }
        writeln!(
            out,
            "{},{score},{},{}",
            i + scores.first_row,
            u8::from(anomaly),
            csv_field(&features)
        )?;
    }
    out.flush()
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(n_anomalies)
}

/// Quotes a CSV field when it needs it.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// At most 8 names, then a count of the rest.
fn preview(names: &[String]) -> String {
    if names.len() <= 8 {
        names.join(", ")
    } else {
        format!(
            "{}, ... and {} more",
            names[..8].join(", "),
            names.len() - 8
        )
    }
}

#[cfg(test)]
mod tests;
