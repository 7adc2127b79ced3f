//! The step interface: where a step reads its inputs and writes its outputs and metrics.
//!
//! The runner passes everything through environment variables (see DESIGN.md):
//! `FLOW_RUN_ID`, `FLOW_OUTPUT_DIR`, `FLOW_INPUT_<STEP>` and `FLOW_METRICS`. Outside
//! the runner (tests, a user calling `flow step` by hand) a context is built from
//! plain directories.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};

use crate::metrics_file;

/// What a running step may read and write.
#[derive(Debug, Clone)]
pub struct StepContext {
    /// The run this step executes as, or `local` outside the runner.
    pub run_id: String,
    /// Outputs go here; the runner publishes the directory when the step succeeds.
    pub output_dir: PathBuf,
    /// Upstream outputs by lower-case step name (`load`, `process`, ...), read-only.
    pub inputs: BTreeMap<String, PathBuf>,
    /// JSON-lines metrics file, if any; without one metrics go to stderr.
    pub metrics_path: Option<PathBuf>,
}

impl StepContext {
    /// The context the runner set up for this process.
    pub fn from_env() -> Result<StepContext> {
        let output_dir = std::env::var_os("FLOW_OUTPUT_DIR")
            .map(PathBuf::from)
            .ok_or_else(|| anyhow!("`FLOW_OUTPUT_DIR` is not set: run this step through `flow run`, or pass `--output`"))?;
        let mut inputs = BTreeMap::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str() else { continue };
            if let Some(step) = name.strip_prefix("FLOW_INPUT_") {
                inputs.insert(step.to_ascii_lowercase(), PathBuf::from(value));
            }
        }
        Ok(StepContext {
            run_id: std::env::var("FLOW_RUN_ID").unwrap_or_else(|_| "local".to_string()),
            output_dir,
            inputs,
            metrics_path: std::env::var_os("FLOW_METRICS").map(PathBuf::from),
        })
    }

    /// A context over plain directories, for tests and manual runs.
    pub fn for_dirs(output_dir: impl Into<PathBuf>, inputs: &[(&str, &Path)]) -> StepContext {
        StepContext {
            run_id: "local".to_string(),
            output_dir: output_dir.into(),
            inputs: inputs
                .iter()
                .map(|(name, dir)| (name.to_ascii_lowercase(), dir.to_path_buf()))
                .collect(),
            metrics_path: None,
        }
    }

    /// The output directory of upstream step `step`.
    pub fn input(&self, step: &str) -> Result<&Path> {
        self.inputs.get(&step.to_ascii_lowercase()).map(PathBuf::as_path).ok_or_else(|| {
            anyhow!(
                "this step needs the outputs of `{step}`, but `FLOW_INPUT_{}` is not set: declare `depends_on: [{step}]` in MLproject.yaml",
                step.to_ascii_uppercase()
            )
        })
    }

    /// Creates (if needed) and returns `output_dir/relative`.
    pub fn output_path(&self, relative: impl AsRef<Path>) -> Result<PathBuf> {
        let path = self.output_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        Ok(path)
    }

    /// Records one metric value at `step` (epoch, window index, ...).
    pub fn log_metric(&self, key: &str, value: f64, step: i64) -> Result<()> {
        self.log_metrics(&[(key, value)], step)
    }

    /// Records several metric values at one `step`, in one append.
    pub fn log_metrics(&self, values: &[(&str, f64)], step: i64) -> Result<()> {
        let timestamp_ms = metrics_file::now_ms();
        let text: String = values
            .iter()
            .map(|(key, value)| metrics_file::line(key, *value, step, timestamp_ms))
            .collect();
        match &self.metrics_path {
            Some(path) => metrics_file::append(path, &text),
            None => {
                eprint!("{text}");
                Ok(())
            }
        }
    }
}
