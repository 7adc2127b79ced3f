//! The step interface: where a step reads its inputs and writes its outputs and metrics.
//!
//! The runner passes everything through environment variables (see DESIGN.md):
//! `FLOW_RUN_ID`, `FLOW_OUTPUT_DIR`, `FLOW_INPUT_<STEP>` and `FLOW_METRICS`. Outside
//! the runner (tests, a user calling `flow step` by hand) a context is built from
//! plain directories.
//!
//! A fan-in step (`gather:` in MLproject.yaml) receives a fanned-out upstream step as a
//! *member directory*: one subdirectory per member holding that member run's outputs, and
//! `members.json` listing them in member order,
//! `[{"member": "machine-1-1", "dir": "machine-1-1", "run_id": "<32 hex>", "params": {...}}]`.
//! [`StepContext::members`] reads it; an upstream step that is not fanned out stays a plain
//! directory ([`StepContext::input`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// The file listing the members of a member directory.
pub const MEMBERS_FILE: &str = "members.json";

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
    /// JSON-lines progress file (`FLOW_PROGRESS`), if any: the runner draws it as a live
    /// bar, since a step's own stderr is a pipe, never a terminal.
    pub progress_path: Option<PathBuf>,
}

/// One member of a fanned-out upstream step, as a fan-in step receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberInput {
    /// The member's label (`machine-1-1`, `seed=0`).
    pub member: String,
    /// The member run's outputs.
    pub dir: PathBuf,
    pub run_id: String,
    /// The member run's params, as the runner recorded them.
    pub params: BTreeMap<String, serde_json::Value>,
}

/// One line of `members.json`.
#[derive(Deserialize)]
struct MemberEntry {
    member: String,
    dir: String,
    #[serde(default)]
    run_id: String,
    #[serde(default)]
    params: BTreeMap<String, serde_json::Value>,
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
            progress_path: std::env::var_os("FLOW_PROGRESS").map(PathBuf::from),
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
            progress_path: None,
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

    /// The members of fanned-out upstream step `step`, in member order: each member's label,
    /// outputs directory, run and params, as `members.json` lists them.
    pub fn members(&self, step: &str) -> Result<Vec<MemberInput>> {
        let root = self.input(step)?;
        let listing = root.join(MEMBERS_FILE);
        if !listing.is_file() {
            bail!(
                "`FLOW_INPUT_{}` (`{}`) is not a member directory (no `{MEMBERS_FILE}`): this step gathers the members of a fanned-out `{step}`; declare `gather:` on it in MLproject.yaml and fan `{step}` out (e.g. `-P dataset=SMD`, `-P seed=0,1,2,3`)",
                step.to_ascii_uppercase(),
                root.display()
            );
        }
        let text = std::fs::read_to_string(&listing)
            .with_context(|| format!("cannot read `{}`", listing.display()))?;
        let entries: Vec<MemberEntry> = serde_json::from_str(&text).with_context(|| {
            format!(
                "`{}` must be a JSON list of {{\"member\", \"dir\", \"run_id\", \"params\"}}",
                listing.display()
            )
        })?;
        if entries.is_empty() {
            bail!("`{}` lists no members", listing.display());
        }
        let mut members: Vec<MemberInput> = Vec::with_capacity(entries.len());
        for entry in entries {
            let relative = Path::new(&entry.dir);
            let safe = relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if entry.dir.is_empty() || !safe {
                bail!(
                    "`{}`: member `{}` has directory `{}`; it must be a plain relative name inside `{}`",
                    listing.display(),
                    entry.member,
                    entry.dir,
                    root.display()
                );
            }
            if members.iter().any(|m| m.member == entry.member) {
                bail!(
                    "`{}` lists member `{}` twice",
                    listing.display(),
                    entry.member
                );
            }
            let dir = root.join(relative);
            if !dir.is_dir() {
                bail!(
                    "`{}` lists member `{}`, but its directory `{}` does not exist",
                    listing.display(),
                    entry.member,
                    dir.display()
                );
            }
            members.push(MemberInput {
                member: entry.member,
                dir,
                run_id: entry.run_id,
                params: entry.params,
            });
        }
        Ok(members)
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

    /// Writes `value` as pretty JSON to `output_dir/relative` (e.g. `summary.json`).
    pub fn write_json(
        &self,
        relative: impl AsRef<Path>,
        value: &impl serde::Serialize,
    ) -> Result<PathBuf> {
        let path = self.output_path(relative)?;
        let text = serde_json::to_string_pretty(value)
            .with_context(|| format!("cannot serialise `{}`", path.display()))?;
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("cannot write `{}`", path.display()))?;
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

/// One line of the progress file, as the runner reads it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProgressReport<'a> {
    /// What is under way (`epoch 3/10`); a new label starts a new bar.
    pub label: &'a str,
    pub done: u64,
    pub total: u64,
    pub unit: &'a str,
}

impl StepContext {
    /// Reports progress to the runner, when there is one (`FLOW_PROGRESS`). One line per
    /// call, written at once, so a reader never sees half a line. Reporting is best
    /// effort: a step does not fail because its progress could not be written.
    pub fn report_progress(&self, report: &ProgressReport) {
        let Some(path) = &self.progress_path else {
            return;
        };
        let Ok(mut line) = serde_json::to_string(report) else {
            return;
        };
        line.push('\n');
        let _ = metrics_file::append(path, &line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A member directory with `members` (label, subdirectory) and the given listing text.
    fn member_dir(root: &Path, subdirs: &[&str], listing: &str) -> StepContext {
        for sub in subdirs {
            std::fs::create_dir_all(root.join("evaluate").join(sub)).unwrap();
        }
        std::fs::write(root.join("evaluate").join(MEMBERS_FILE), listing).unwrap();
        StepContext::for_dirs(root.join("out"), &[("evaluate", &root.join("evaluate"))])
    }

    #[test]
    fn members_are_read_in_listed_order() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = member_dir(
            dir.path(),
            &["machine-1-6", "machine-2-1"],
            r#"[{"member": "machine-2-1", "dir": "machine-2-1", "run_id": "ab", "params": {"dataset": "machine-2-1"}},
                {"member": "machine-1-6", "dir": "machine-1-6", "run_id": "cd", "params": {}}]"#,
        );
        let members = ctx.members("evaluate").unwrap();
        let labels: Vec<&str> = members.iter().map(|m| m.member.as_str()).collect();
        assert_eq!(labels, ["machine-2-1", "machine-1-6"]);
        assert_eq!(members[0].dir, dir.path().join("evaluate/machine-2-1"));
        assert_eq!(members[0].run_id, "ab");
        assert_eq!(members[0].params["dataset"], "machine-2-1");
    }

    #[test]
    fn a_plain_directory_or_a_bad_listing_is_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("plain")).unwrap();
        let ctx = StepContext::for_dirs(dir.path(), &[("evaluate", &dir.path().join("plain"))]);
        let err = ctx.members("evaluate").unwrap_err().to_string();
        assert!(
            err.contains("FLOW_INPUT_EVALUATE") && err.contains("not a member directory"),
            "{err}"
        );
        let err = StepContext::for_dirs(dir.path(), &[])
            .members("evaluate")
            .unwrap_err()
            .to_string();
        assert!(err.contains("depends_on: [evaluate]"), "{err}");

        for (listing, expected) in [
            ("[]", "lists no members"),
            ("{}", "must be a JSON list"),
            (r#"[{"member": "a", "dir": "../a"}]"#, "plain relative name"),
            (
                r#"[{"member": "a", "dir": "a"}, {"member": "a", "dir": "a"}]"#,
                "twice",
            ),
            (r#"[{"member": "b", "dir": "b"}]"#, "does not exist"),
        ] {
            let root = tempfile::tempdir().unwrap();
            let ctx = member_dir(root.path(), &["a"], listing);
            let err = format!("{:#}", ctx.members("evaluate").unwrap_err());
            assert!(err.contains(expected), "{listing}: {err}");
        }
    }
}
