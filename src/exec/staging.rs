//! A step run's staging directory (`.flow/tmp/<run>/`): what a step is given before it
//! starts — its command as a script, its outputs directory, its metrics and progress
//! files, its inputs — and what becomes of them when it ends: metrics ingested, outputs
//! published only on success, the directory removed either way.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use flow_steps::metrics_file::BadLine;

use crate::exec::annotations;
use crate::exec::job::Job;
use crate::resolve::{member_dir_name, member_label, Plan};
use crate::shell;
use crate::store::{Metric, RunStatus, Store};

/// Where a node's upstream runs are: node -> run id, for every node done so far.
pub type DoneRuns = BTreeMap<usize, String>;

/// The parts of a staging directory.
pub struct Staging {
    pub dir: PathBuf,
}

impl Staging {
    pub fn new(store: &Store, run_id: &str) -> Staging {
        Staging {
            dir: store.staging_dir(run_id),
        }
    }

    pub fn outputs(&self) -> PathBuf {
        self.dir.join("out")
    }

    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }

    pub fn progress(&self) -> PathBuf {
        self.dir.join("progress.jsonl")
    }

    pub fn annotations(&self) -> PathBuf {
        self.dir.join("annotations.jsonl")
    }

    fn script(&self) -> PathBuf {
        self.dir.join("command.sh")
    }

    fn inputs(&self) -> PathBuf {
        self.dir.join("inputs")
    }
}

/// What the step's environment gets besides the plan.
pub struct JobSettings<'a> {
    pub cpus: u32,
    /// Memory in bytes and wall time in seconds, as declared or overridden.
    pub memory: Option<u64>,
    pub time: Option<u64>,
    /// `MLFLOW_TRACKING_URI` for steps that log with the mlflow client.
    pub tracking_uri: Option<&'a str>,
}

/// Writes the staging directory of `node`, now claimed as `run_id`, and returns the job
/// that runs it.
pub fn prepare(
    store: &Store,
    plan: &Plan,
    project_dir: &Path,
    node: usize,
    run_id: &str,
    done: &DoneRuns,
    settings: &JobSettings,
) -> Result<Job> {
    let step = &plan.nodes[node];
    let staging = Staging::new(store, run_id);
    fs::create_dir_all(staging.outputs())
        .with_context(|| format!("cannot create `{}`", staging.outputs().display()))?;
    let command = step.command.clone().unwrap_or_default();
    fs::write(staging.script(), format!("{command}\n"))
        .with_context(|| format!("cannot write `{}`", staging.script().display()))?;
    let logs = store.dir().join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("cannot create `{}`", logs.display()))?;

    let mut env: Vec<(String, OsString)> = Vec::new();
    let mut set = |name: &str, value: OsString| env.push((name.to_string(), value));
    set("FLOW_RUN_ID", run_id.into());
    set("FLOW_STEP", step.entry.clone().into());
    if let Some(member) = &step.member {
        set("FLOW_MEMBER", member.into());
    }
    set("FLOW_OUTPUT_DIR", absolute(&staging.outputs()).into());
    set("FLOW_METRICS", absolute(&staging.metrics()).into());
    set("FLOW_PROGRESS", absolute(&staging.progress()).into());
    set("FLOW_ANNOTATIONS", absolute(&staging.annotations()).into());
    set("FLOW_STORE", store_location(store).into());
    set("FLOW_ARTIFACTS", absolute(store.dir()).into());
    set("FLOW_PROJECT_DIR", absolute(project_dir).into());
    let cpus = settings.cpus.to_string();
    for name in ["FLOW_CPUS", "RAYON_NUM_THREADS", "OMP_NUM_THREADS"] {
        set(name, cpus.clone().into());
    }
    if let Some(path) = shell::path_with_own_binary() {
        set("PATH", path);
    }
    if let Some(uri) = settings.tracking_uri {
        set("MLFLOW_TRACKING_URI", uri.into());
        set("MLFLOW_RUN_ID", run_id.into());
    }
    for (name, dir) in inputs(store, plan, node, done, &staging)? {
        set(
            &format!("FLOW_INPUT_{}", env_name(&name)),
            absolute(&dir).into(),
        );
    }
    Ok(Job {
        node,
        run_id: run_id.to_string(),
        label: step.label(),
        script: absolute(&staging.script()),
        dir: project_dir.to_path_buf(),
        env,
        log: logs.join(format!("{run_id}.log")),
        cpus: settings.cpus,
        memory: settings.memory,
        time: settings.time,
    })
}

/// `FLOW_INPUT_<STEP>` for every upstream step of `node`, transitively: the run's
/// directory, or for a step whose members this node gathers, a directory of member
/// directories with `members.json`.
fn inputs(
    store: &Store,
    plan: &Plan,
    node: usize,
    done: &DoneRuns,
    staging: &Staging,
) -> Result<Vec<(String, PathBuf)>> {
    let mut ancestors: BTreeSet<usize> = BTreeSet::new();
    let mut queue: VecDeque<usize> = plan.nodes[node].upstream.iter().copied().collect();
    while let Some(index) = queue.pop_front() {
        if ancestors.insert(index) {
            queue.extend(plan.nodes[index].upstream.iter().copied());
        }
    }
    let mut by_entry: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for &index in &ancestors {
        by_entry
            .entry(&plan.nodes[index].entry)
            .or_default()
            .push(index);
    }
    let own = &plan.nodes[node].member_parts;
    let mut inputs = Vec::new();
    for (entry, indexes) in by_entry {
        let runs: Vec<(usize, &String)> = indexes
            .iter()
            .filter_map(|i| done.get(i).map(|run| (*i, run)))
            .collect();
        let gathered = indexes.len() > 1
            || indexes.iter().any(|&i| {
                plan.nodes[i]
                    .member_parts
                    .iter()
                    .any(|part| !own.contains(part))
            });
        if !gathered {
            if let Some((_, run)) = runs.first() {
                inputs.push((entry.to_string(), store.run_dir(run)?));
            }
            continue;
        }
        let dir = staging.inputs().join(entry);
        fs::create_dir_all(&dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
        let mut manifest = Vec::new();
        for (index, run) in runs {
            let member = &plan.nodes[index];
            let label = member.member.clone().unwrap_or_else(|| run.clone());
            // Named by what tells the members apart here: `seed=0`, not `a seed=0`.
            let relative = member_label(member.member_parts.iter().filter(|p| !own.contains(p)));
            let name = member_dir_name(relative.as_deref().unwrap_or(&label));
            let target = absolute(&store.run_dir(run)?);
            let link = dir.join(&name);
            std::os::unix::fs::symlink(&target, &link)
                .with_context(|| format!("cannot link `{}`", link.display()))?;
            manifest.push(serde_json::json!({
                "member": label,
                "dir": name,
                "run_id": run,
                "params": member.member_params(),
            }));
        }
        let manifest_path = dir.join("members.json");
        fs::write(&manifest_path, serde_json::to_string_pretty(&manifest)?)
            .with_context(|| format!("cannot write `{}`", manifest_path.display()))?;
        inputs.push((entry.to_string(), dir));
    }
    Ok(inputs)
}

/// Records the end of a run: metrics, params and tags the step logged (a bad line is
/// named and skipped), outputs (only on success), status; removes the staging directory
/// either way. Returns the status.
pub fn complete(
    store: &Store,
    run_id: &str,
    entry: &str,
    log: &Path,
    success: bool,
    killed: bool,
) -> Result<(RunStatus, Vec<String>)> {
    let staging = Staging::new(store, run_id);
    let mut warnings = Vec::new();
    let contents = flow_steps::metrics_file::read(&staging.metrics())?;
    warn_bad_lines(
        &mut warnings,
        &staging.metrics(),
        &contents.bad_lines,
        "metric",
    );
    let annotations = annotations::read(&staging.annotations())?;
    warn_bad_lines(
        &mut warnings,
        &staging.annotations(),
        &annotations.bad_lines,
        "param or tag",
    );
    for (tag, bad_lines) in [
        ("flow.skipped_metric_lines", &contents.bad_lines),
        ("flow.skipped_annotation_lines", &annotations.bad_lines),
    ] {
        if !bad_lines.is_empty() {
            store.set_tag(run_id, tag, &bad_lines.len().to_string())?;
        }
    }
    for annotation in &annotations.annotations {
        match annotation.kind {
            annotations::Kind::Param => {
                store.log_param(run_id, &annotation.key, &annotation.value)?
            }
            annotations::Kind::Tag => store.set_tag(run_id, &annotation.key, &annotation.value)?,
        }
    }
    let points: Vec<Metric> = contents
        .points
        .into_iter()
        .map(|p| Metric {
            key: p.key,
            value: p.value,
            step: p.step,
            timestamp_ms: p.timestamp_ms,
        })
        .collect();
    if !points.is_empty() {
        store.log_metrics(run_id, &points)?;
    }
    let status = if success && !killed {
        let logs = staging.outputs().join("logs");
        fs::create_dir_all(&logs)?;
        fs::copy(log, logs.join(format!("{entry}.log")))
            .with_context(|| format!("cannot keep the log of `{entry}`"))?;
        store.publish(run_id, &staging.outputs())?;
        // Materialise `.flow/runs/<id>/` before the run shows FINISHED, so users (and
        // downstream steps) can browse every FINISHED run's outputs.
        store.run_dir(run_id)?;
        RunStatus::Finished
    } else if killed {
        RunStatus::Killed
    } else {
        RunStatus::Failed
    };
    // Staging goes before the run ends: a flow killed in between leaves a RUNNING run of a
    // dead process, which the next flow reaps. (Outputs of a failed or killed step are
    // discarded, never published.)
    discard(store, run_id);
    store.end_run(run_id, status)?;
    Ok((status, warnings))
}

/// One warning per unreadable line (the first five), then how many more.
fn warn_bad_lines(warnings: &mut Vec<String>, path: &Path, bad_lines: &[BadLine], what: &str) {
    for bad in bad_lines.iter().take(5) {
        warnings.push(format!(
            "{}: line {}: {}; skipped",
            path.display(),
            bad.number,
            bad.reason
        ));
    }
    if bad_lines.len() > 5 {
        warnings.push(format!(
            "... and {} more unreadable {what} lines",
            bad_lines.len() - 5
        ));
    }
}

/// Removes a run's staging directory, best effort.
pub fn discard(store: &Store, run_id: &str) {
    let _ = fs::remove_dir_all(store.staging_dir(run_id));
}

/// `FLOW_INPUT_<STEP>` uses the entry name upper-cased, other characters as `_`.
pub fn env_name(entry: &str) -> String {
    entry
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// What a step's own `flow` commands open: the URL of a PostgreSQL store, or the directory.
fn store_location(store: &Store) -> String {
    let location = store.location();
    if crate::store::is_postgres_url(&location) {
        location
    } else {
        absolute(store.dir()).display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_are_shell_safe() {
        assert_eq!(env_name("train-fast"), "TRAIN_FAST");
    }
}
