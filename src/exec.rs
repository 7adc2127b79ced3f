//! Executing a plan: start the steps that must run, stream their output, publish what
//! they wrote, and record every outcome in the store.
//!
//! Only the main thread touches the store; worker threads own child processes and
//! report exit statuses over a channel. Steps run in their own process group so that
//! Ctrl-C can stop them (KILLED), and with a parent-death signal so that a killed flow
//! does not leave them running.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;

use anyhow::{Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::resolve::{Decision, Plan, StepPlan};
use crate::spec::Project;
use crate::store::{Metric, NewRun, RunKey, RunStatus, Store};
use crate::version;

/// How a run request executes.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub experiment: String,
    /// Steps run at once.
    pub jobs: usize,
    /// Echo step output to stderr (always saved to the run's log).
    pub echo: bool,
}

/// What happened to one step.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub entry: String,
    pub run_id: Option<String>,
    /// `reused`, `executed` or `skipped` (an upstream step failed).
    pub action: &'static str,
    pub status: String,
    pub key: Option<String>,
    pub run_time: Option<String>,
    #[serde(skip)]
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub entry: String,
    pub steps: Vec<StepOutcome>,
    #[serde(skip)]
    pub interrupted: bool,
}

impl RunReport {
    /// The exit code flow should end with: 0, a failed step's own code, or 130 when interrupted.
    pub fn exit_code(&self) -> i32 {
        if self.interrupted {
            return 130;
        }
        self.steps
            .iter()
            .find(|s| s.status == "FAILED")
            .map(|s| s.exit_code.filter(|c| *c != 0).unwrap_or(1))
            .unwrap_or(0)
    }
}

/// Process groups of running steps, for the Ctrl-C handler.
fn running_groups() -> &'static Mutex<Vec<i32>> {
    static GROUPS: OnceLock<Mutex<Vec<i32>>> = OnceLock::new();
    GROUPS.get_or_init(|| Mutex::new(Vec::new()))
}

fn interrupted() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    &FLAG
}

/// Installs the Ctrl-C handler once: it stops launching steps and terminates running ones.
pub fn install_interrupt_handler() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = ctrlc::set_handler(|| {
            interrupted().store(true, Ordering::SeqCst);
            if let Ok(groups) = running_groups().lock() {
                for &group in groups.iter() {
                    // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
                    unsafe {
                        libc::kill(-group, libc::SIGTERM);
                    }
                }
            }
        });
    });
}

struct Finished {
    entry: String,
    status: std::io::Result<ExitStatus>,
}

/// Runs every step the plan marks for execution, in dependency order, `jobs` at a time.
pub fn execute(
    project: &Project,
    store: &Store,
    plan: &Plan,
    options: &ExecOptions,
) -> Result<RunReport> {
    let mut outcomes: BTreeMap<String, StepOutcome> = BTreeMap::new();
    let mut run_ids: BTreeMap<String, String> = BTreeMap::new();
    for step in &plan.steps {
        if let Decision::Reuse(run) = &step.decision {
            run_ids.insert(step.entry.clone(), run.run_id.clone());
            outcomes.insert(
                step.entry.clone(),
                StepOutcome {
                    entry: step.entry.clone(),
                    run_id: Some(run.run_id.clone()),
                    action: "reused",
                    status: run.status.to_string(),
                    key: run.key_value.clone(),
                    run_time: Some(rfc3339(run.run_time)),
                    exit_code: None,
                },
            );
        }
    }
    let mut pending: Vec<&StepPlan> = plan
        .steps
        .iter()
        .filter(|s| matches!(s.decision, Decision::Execute(_)))
        .collect();
    let (sender, receiver) = mpsc::channel::<Finished>();
    let mut running: BTreeMap<String, Launched> = BTreeMap::new();
    let mut failed: Vec<String> = Vec::new();

    loop {
        // Launch every step whose upstream steps all finished, within the job limit.
        let mut index = 0;
        while index < pending.len() {
            let step = pending[index];
            let blocked_by_failure = step.upstream_steps.iter().any(|u| failed.contains(u));
            if blocked_by_failure || interrupted().load(Ordering::SeqCst) {
                failed.push(step.entry.clone());
                outcomes.insert(step.entry.clone(), skipped(step));
                pending.remove(index);
                continue;
            }
            let ready = step.upstream_steps.iter().all(|u| run_ids.contains_key(u));
            if ready && running.len() < options.jobs.max(1) {
                pending.remove(index);
                let launched = launch(
                    project,
                    store,
                    plan,
                    step,
                    &run_ids,
                    options,
                    sender.clone(),
                )?;
                running.insert(step.entry.clone(), launched);
                continue;
            }
            index += 1;
        }
        if running.is_empty() {
            break;
        }
        let done = receiver.recv().context("a step's worker thread vanished")?;
        let Some(launched) = running.remove(&done.entry) else {
            continue;
        };
        let outcome = complete(
            store,
            launched,
            done.status,
            interrupted().load(Ordering::SeqCst),
        )?;
        if outcome.status == "FINISHED" {
            if let Some(run_id) = &outcome.run_id {
                run_ids.insert(outcome.entry.clone(), run_id.clone());
            }
        } else {
            failed.push(outcome.entry.clone());
        }
        outcomes.insert(outcome.entry.clone(), outcome);
    }

    let steps = plan
        .steps
        .iter()
        .filter_map(|s| outcomes.remove(&s.entry))
        .collect();
    Ok(RunReport {
        entry: plan.entry.clone(),
        steps,
        interrupted: interrupted().load(Ordering::SeqCst),
    })
}

fn skipped(step: &StepPlan) -> StepOutcome {
    StepOutcome {
        entry: step.entry.clone(),
        run_id: None,
        action: "skipped",
        status: "NOT_STARTED".to_string(),
        key: step.key_value.clone(),
        run_time: None,
        exit_code: None,
    }
}

/// A started step: what `complete` needs to record its end.
struct Launched {
    entry: String,
    run_id: String,
    key: Option<String>,
    run_time: DateTime<Utc>,
    work_dir: PathBuf,
    log_path: PathBuf,
    group: i32,
}

fn launch(
    project: &Project,
    store: &Store,
    plan: &Plan,
    step: &StepPlan,
    run_ids: &BTreeMap<String, String>,
    options: &ExecOptions,
    sender: mpsc::Sender<Finished>,
) -> Result<Launched> {
    let upstream: Vec<(String, String)> = step
        .upstream_steps
        .iter()
        .filter_map(|u| run_ids.get(u).map(|r| (u.clone(), r.clone())))
        .chain(step.model_inputs.iter().cloned())
        .collect();
    let data_version = match &step.data_version {
        Some(v) => v.clone(),
        None => {
            let mut manifests = Vec::new();
            for (entry, run) in upstream
                .iter()
                .filter(|(e, _)| step.upstream_steps.contains(e))
            {
                manifests.push((
                    entry.clone(),
                    store.get_run(run)?.manifest_hash.unwrap_or_default(),
                ));
            }
            version::data_version_of_upstream(&manifests)
        }
    };
    let command = step.command.clone().unwrap_or_default();
    let run_time = now();
    let key = RunKey {
        entry: step.entry.clone(),
        key_value: step.key_value.clone(),
        params: step.params.clone(),
        upstream,
        data_version,
        code_version: plan.code.id(),
    };
    let run_id = store.begin_run(&NewRun {
        key: &key,
        experiment: &options.experiment,
        member: None,
        code_dirty: plan.code.dirty,
        command: &command,
        run_time,
    })?;
    let work_dir = store.dir().join("tmp").join(&run_id);
    let out_dir = work_dir.join("out");
    fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create `{}`", out_dir.display()))?;
    let logs_dir = store.dir().join("logs");
    fs::create_dir_all(&logs_dir)?;
    let log_path = logs_dir.join(format!("{run_id}.log"));

    let mut child = Command::new("sh");
    child
        .arg("-c")
        .arg(&command)
        .current_dir(&project.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("FLOW_RUN_ID", &run_id)
        .env("FLOW_STEP", &step.entry)
        .env("FLOW_OUTPUT_DIR", absolute(&out_dir))
        .env("FLOW_METRICS", absolute(&work_dir.join("metrics.jsonl")))
        .env("FLOW_STORE", absolute(store.dir()))
        .env("FLOW_PROJECT_DIR", absolute(&project.dir))
        .process_group(0);
    if let Some(path) = path_with_own_binary() {
        child.env("PATH", path);
    }
    for ancestor in &step.ancestors {
        if let Some(run) = run_ids.get(ancestor) {
            child.env(
                format!("FLOW_INPUT_{}", env_name(ancestor)),
                absolute(&store.run_dir(run)?),
            );
        }
    }
    // SAFETY: prctl only asks the kernel to signal the child when flow dies; it is
    // async-signal-safe and touches no memory of the parent.
    unsafe {
        child.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut process = child
        .spawn()
        .with_context(|| format!("cannot start step `{}`", step.entry))?;
    let group = process.id() as i32;
    if let Ok(mut groups) = running_groups().lock() {
        groups.push(group);
    }
    if options.echo {
        eprintln!("flow: {} executing (run {})", step.entry, &run_id[..8]);
    }
    let log =
        Arc::new(Mutex::new(File::create(&log_path).with_context(|| {
            format!("cannot create `{}`", log_path.display())
        })?));
    let prefix = format!("[{}] ", step.entry);
    let pipes: Vec<Box<dyn Read + Send>> = [
        process
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        process
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .collect();
    let readers: Vec<_> = pipes
        .into_iter()
        .map(|pipe| {
            let log = Arc::clone(&log);
            let prefix = prefix.clone();
            let echo = options.echo;
            thread::spawn(move || stream_lines(pipe, &log, &prefix, echo))
        })
        .collect();
    let entry = step.entry.clone();
    thread::spawn(move || {
        for reader in readers {
            let _ = reader.join();
        }
        let status = process.wait();
        let _ = sender.send(Finished { entry, status });
    });
    Ok(Launched {
        entry: step.entry.clone(),
        run_id,
        key: step.key_value.clone(),
        run_time,
        work_dir,
        log_path,
        group,
    })
}

/// Copies a child's output line by line to the log and, prefixed, to stderr.
fn stream_lines(pipe: Box<dyn Read + Send>, log: &Mutex<File>, prefix: &str, echo: bool) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        if let Ok(mut file) = log.lock() {
            let _ = file.write_all(&line);
        }
        if echo {
            let text = String::from_utf8_lossy(&line);
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "{prefix}{}", text.trim_end_matches(['\n', '\r']));
        }
        line.clear();
    }
}

/// Records the end of a step: metrics, outputs (only on success), status.
fn complete(
    store: &Store,
    launched: Launched,
    status: std::io::Result<ExitStatus>,
    was_interrupted: bool,
) -> Result<StepOutcome> {
    if let Ok(mut groups) = running_groups().lock() {
        groups.retain(|g| *g != launched.group);
    }
    let metrics_path = launched.work_dir.join("metrics.jsonl");
    let metrics = read_metrics(&metrics_path).with_context(|| {
        format!(
            "step `{}` wrote unreadable metrics to `{}`",
            launched.entry,
            metrics_path.display()
        )
    })?;
    if !metrics.is_empty() {
        store.log_metrics(&launched.run_id, &metrics)?;
    }
    let exit_code = status.as_ref().ok().and_then(|s| s.code());
    let success = matches!(&status, Ok(s) if s.success());
    let final_status = if success && !was_interrupted {
        let out_dir = launched.work_dir.join("out");
        let logs = out_dir.join("logs");
        fs::create_dir_all(&logs)?;
        fs::copy(
            &launched.log_path,
            logs.join(format!("{}.log", launched.entry)),
        )
        .with_context(|| format!("cannot keep the log of `{}`", launched.entry))?;
        store.publish(&launched.run_id, &out_dir)?;
        store.end_run(&launched.run_id, RunStatus::Finished)?;
        // Materialise `.flow/runs/<id>/` now so users (and downstream steps) can browse it.
        store.run_dir(&launched.run_id)?;
        RunStatus::Finished
    } else if was_interrupted {
        RunStatus::Killed
    } else {
        RunStatus::Failed
    };
    if final_status != RunStatus::Finished {
        store.end_run(&launched.run_id, final_status)?;
    }
    // Outputs of a failed or killed step are discarded, never published.
    let _ = fs::remove_dir_all(&launched.work_dir);
    if final_status == RunStatus::Failed {
        eprintln!(
            "flow: step `{}` failed ({}); its log: {}",
            launched.entry,
            match &status {
                Ok(s) => s
                    .code()
                    .map(|c| format!("exit code {c}"))
                    .unwrap_or_else(|| "killed by a signal".into()),
                Err(e) => e.to_string(),
            },
            launched.log_path.display()
        );
    }
    Ok(StepOutcome {
        entry: launched.entry,
        run_id: Some(launched.run_id),
        action: "executed",
        status: final_status.to_string(),
        key: launched.key,
        run_time: Some(rfc3339(launched.run_time)),
        exit_code,
    })
}

/// Parses the JSON-lines metrics file a step appended to (`{"key","value","step"}`).
pub fn read_metrics(path: &Path) -> Result<Vec<Metric>> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let now_ms = Utc::now().timestamp_millis();
    let mut metrics = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("line {}: not JSON", number + 1))?;
        let key = value["key"]
            .as_str()
            .with_context(|| format!("line {}: no string `key`", number + 1))?;
        let number_value = match &value["value"] {
            serde_json::Value::Number(n) => n.as_f64(),
            serde_json::Value::String(s) => s.parse::<f64>().ok(),
            _ => None,
        }
        .with_context(|| format!("line {}: `value` is not a number", number + 1))?;
        metrics.push(Metric {
            key: key.to_string(),
            value: number_value,
            step: value["step"].as_i64().unwrap_or(0),
            timestamp_ms: value["timestamp"].as_i64().unwrap_or(now_ms),
        });
    }
    Ok(metrics)
}

/// Appends one metric line the way steps do (used by `flow log metric`).
pub fn append_metric(path: &Path, key: &str, value: f64, step: i64) -> Result<()> {
    let line = serde_json::json!({"key": key, "value": value, "step": step, "timestamp": Utc::now().timestamp_millis()});
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open `{}`", path.display()))?;
    writeln!(file, "{line}")?;
    Ok(())
}

/// The clock runs are stamped with. Tests set `FLOW_TEST_NOW` (RFC 3339) to make runs
/// on other days, as cargo's `__CARGO_TEST_LAST_USE_NOW` does; users never need it.
fn now() -> DateTime<Utc> {
    std::env::var("FLOW_TEST_NOW")
        .ok()
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
}

pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
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

/// PATH with this binary's directory first, so commands can call `flow step ...`.
fn path_with_own_binary() -> Option<std::ffi::OsString> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.to_path_buf();
    let mut paths = vec![dir];
    if let Some(existing) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_lines_parse_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        fs::write(
            &path,
            "{\"key\":\"loss\",\"value\":0.5,\"step\":3}\n\n{\"key\":\"f1\",\"value\":\"NaN\"}\n",
        )
        .unwrap();
        let metrics = read_metrics(&path).unwrap();
        assert_eq!(metrics.len(), 2);
        assert_eq!(
            (metrics[0].key.as_str(), metrics[0].value, metrics[0].step),
            ("loss", 0.5, 3)
        );
        assert!(metrics[1].value.is_nan());
        fs::write(&path, "{\"key\":\"loss\",\"value\":[1]}\n").unwrap();
        assert!(read_metrics(&path)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
    }

    #[test]
    fn env_names_are_shell_safe() {
        assert_eq!(env_name("train-fast"), "TRAIN_FAST");
    }
}
