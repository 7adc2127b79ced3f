//! The Slurm executor: every step run is one `sbatch` job.
//!
//! # How a job runs
//!
//! `start` writes a batch script beside the step's command in its staging directory
//! (`sbatch.sh`: the job's environment as `export` lines, then `sh command.sh`) and
//! submits it with the step's resources (`--cpus-per-task`, `--mem`, `--time`), a job
//! name `flow-<entry>-<member>`, the project as working directory and the run's log file
//! as `--output` (stderr joins it). `wait` follows the logs, echoing new lines prefixed
//! with the step's label as the local executor does. A step that ends leaves its exit
//! code in the staging directory (`exit_code`, written by the batch script), which ends
//! the job for flow at once unless a signal ended the step; everything else — a job that never started, was cancelled,
//! ran out of time or lost its node — comes from `squeue`, asked about the jobs this flow
//! submitted at most once per [`POLL`] (`sacct` only for a job `squeue` no longer knows,
//! when accounting exists).
//!
//! # Outcomes
//!
//! COMPLETED and FAILED carry the command's exit status ([`Outcome::Exited`]); CANCELLED,
//! TIMEOUT, NODE_FAIL, PREEMPTED, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE are
//! [`Outcome::Lost`] with the state named, and the driver records the run FAILED (KILLED
//! when flow itself was stopped). A re-run resubmits only what did not finish.
//!
//! # Sharing
//!
//! The job reads its inputs and writes its outputs, metrics, progress and log under the
//! store directory, so the store and the project must be on a path every node sees.
//! Only this process (the coordinating flow) writes the store: steps report params and
//! tags through files too (`annotations.rs`).

mod config;
mod status;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::exec::job::{Executor, Job, JobEnd, Outcome};
use crate::exec::progress::Console;

pub use config::read_sbatch_options;
use status::{JobState, Poll};

/// The least time between two `squeue` calls of one flow.
pub const POLL: Duration = Duration::from_secs(1);

/// How long `cancel_all` waits for cancelled jobs to leave the queue (Slurm's default
/// `KillWait` between TERM and KILL is 30 s).
const CANCEL_WAIT: Duration = Duration::from_secs(60);

/// Where jobs go and what every `sbatch` gets.
#[derive(Debug, Clone, Default)]
pub struct SlurmOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// Options for every job (`--slurm-config`), before flow's own so a step's declared
    /// resources win over a site default.
    pub extra: Vec<String>,
    /// At most this many jobs submitted at once (`-j`); unlimited by default, the
    /// cluster queues them.
    pub max_jobs: Option<usize>,
}

/// The jobs this flow submitted and has not seen end.
pub struct SlurmExecutor {
    options: SlurmOptions,
    console: Console,
    echo: bool,
    jobs: BTreeMap<usize, Submitted>,
    last_poll: Option<Instant>,
    /// The last `squeue` failure, printed once until a call succeeds again.
    poll_error: Option<String>,
}

struct Submitted {
    id: String,
    label: String,
    log: LogTail,
    /// The file the batch script writes the step's exit code to.
    exit_marker: PathBuf,
    /// The last pending reason shown, so each is printed once.
    reason_shown: String,
    /// `squeue` calls in a row that did not list the job.
    missing: u32,
}

impl SlurmExecutor {
    pub fn new(options: SlurmOptions, console: Console, echo: bool) -> SlurmExecutor {
        SlurmExecutor {
            options,
            console,
            echo,
            jobs: BTreeMap::new(),
            last_poll: None,
            poll_error: None,
        }
    }

    /// The `sbatch` arguments for `job`, its batch script last (paths as they are, not
    /// necessarily UTF-8).
    fn sbatch_args(&self, job: &Job, batch: &Path) -> Vec<OsString> {
        let with_path = |option: &str, path: &Path| {
            let mut arg = OsString::from(option);
            arg.push(path.as_os_str());
            arg
        };
        let mut args: Vec<OsString> = vec!["--parsable".into()];
        args.extend(self.options.extra.iter().map(OsString::from));
        args.push(format!("--job-name={}", job_name(&job.label)).into());
        args.push(with_path("--output=", &job.log));
        args.push("--open-mode=truncate".into());
        args.push(with_path("--chdir=", &job.dir));
        args.push(format!("--cpus-per-task={}", job.cpus.max(1)).into());
        if let Some(bytes) = job.memory {
            args.push(format!("--mem={}M", bytes.div_ceil(1024 * 1024).max(1)).into());
        }
        if let Some(seconds) = job.time {
            args.push(format!("--time={}", slurm_duration(seconds)).into());
        }
        if let Some(partition) = &self.options.partition {
            args.push(format!("--partition={partition}").into());
        }
        if let Some(account) = &self.options.account {
            args.push(format!("--account={account}").into());
        }
        args.push(batch.as_os_str().to_owned());
        args
    }

    /// Asks `squeue` about every submitted job; returns those that ended.
    fn poll(&mut self) -> Vec<JobEnd> {
        self.last_poll = Some(Instant::now());
        let ids: Vec<&str> = self.jobs.values().map(|j| j.id.as_str()).collect();
        let states = match status::squeue(&ids) {
            Ok(states) => {
                if self.poll_error.take().is_some() {
                    self.console.line("flow: squeue answers again");
                }
                states
            }
            Err(error) => {
                let text = format!("{error:#}");
                if self.poll_error.as_deref() != Some(&text) {
                    self.console.line(&format!(
                        "flow: cannot ask Slurm about its jobs ({text}); retrying"
                    ));
                    self.poll_error = Some(text);
                }
                return Vec::new();
            }
        };
        let mut ended = Vec::new();
        for (&node, job) in self.jobs.iter_mut() {
            let state = match states.get(&job.id) {
                Some(state) => {
                    job.missing = 0;
                    state.clone()
                }
                None => {
                    job.missing += 1;
                    if job.missing < 3 {
                        continue;
                    }
                    status::sacct(&job.id).unwrap_or_else(|| JobState::vanished(&job.id))
                }
            };
            match state.poll(&job.id) {
                Poll::Active => {}
                Poll::Waiting(reason) => {
                    if reason != job.reason_shown {
                        self.console.line(&format!(
                            "flow: {} is held in Slurm's queue (job {}: {reason})",
                            job.label, job.id
                        ));
                        job.reason_shown = reason;
                    }
                }
                Poll::Ended(outcome) => ended.push(JobEnd { node, outcome }),
            }
        }
        for end in &ended {
            if let Some(mut job) = self.jobs.remove(&end.node) {
                self.tail(&mut job, true);
            }
        }
        ended
    }

    /// Echoes what the job's log gained; at the end, its last unterminated line too.
    fn tail(&self, job: &mut Submitted, last: bool) {
        let lines = job.log.read_lines(last);
        if self.echo {
            for line in lines {
                self.console.line(&format!("[{}] {line}", job.label));
            }
        }
    }
}

impl Executor for SlurmExecutor {
    fn has_room(&self, _cpus: u32, _memory: Option<u64>) -> bool {
        self.options
            .max_jobs
            .is_none_or(|max| self.jobs.len() < max)
    }

    fn grant(&self, cpus: u32) -> u32 {
        // The cluster decides what fits; a request no node can hold is refused by sbatch.
        cpus.max(1)
    }

    fn start(&mut self, job: Job) -> Result<()> {
        let batch = job.script.with_file_name("sbatch.sh");
        write_batch_script(&batch, &job)?;
        // slurmd opens the log on the node; an old one must not show through.
        File::create(&job.log).with_context(|| format!("cannot create `{}`", job.log.display()))?;
        let args = self.sbatch_args(&job, &batch);
        let output = Command::new("sbatch")
            .args(&args)
            .current_dir(&job.dir)
            .output()
            .context("cannot run `sbatch` (is Slurm's client installed and on PATH?)")?;
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if !output.status.success() {
            bail!("sbatch refused the job: {stderr}");
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let id = status::parse_submitted(&stdout)
            .with_context(|| format!("sbatch printed no job id: `{}`", stdout.trim()))?;
        if !stderr.is_empty() && self.echo {
            self.console
                .line(&format!("flow: {}: sbatch: {stderr}", job.label));
        }
        self.jobs.insert(
            job.node,
            Submitted {
                id,
                label: job.label.clone(),
                log: LogTail::new(job.log.clone()),
                exit_marker: exit_marker(&job),
                reason_shown: String::new(),
                missing: 0,
            },
        );
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<Vec<JobEnd>> {
        std::thread::sleep(timeout);
        let mut jobs = std::mem::take(&mut self.jobs);
        let mut ended = Vec::new();
        for (&node, job) in jobs.iter_mut() {
            self.tail(job, false);
            // A step ended by a signal may have been cancelled, timed out or preempted:
            // squeue tells which.
            let code = read_exit_marker(&job.exit_marker).filter(|code| *code < 128);
            if let Some(code) = code {
                ended.push(JobEnd {
                    node,
                    outcome: Outcome::Exited(code),
                });
            }
        }
        for end in &ended {
            if let Some(mut job) = jobs.remove(&end.node) {
                self.tail(&mut job, true);
            }
        }
        self.jobs = jobs;
        let poll_due = self.last_poll.is_none_or(|t| t.elapsed() >= POLL);
        if !self.jobs.is_empty() && poll_due {
            ended.extend(self.poll());
        }
        Ok(ended)
    }

    fn cancel_all(&mut self) -> Vec<JobEnd> {
        if self.jobs.is_empty() {
            return Vec::new();
        }
        let ids: Vec<String> = self.jobs.values().map(|j| j.id.clone()).collect();
        if let Err(error) = scancel(&ids) {
            self.console.line(&format!("flow: {error:#}"));
        }
        let deadline = Instant::now() + CANCEL_WAIT;
        let mut ended = Vec::new();
        while !self.jobs.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(250));
            ended.extend(self.poll());
        }
        for (node, job) in std::mem::take(&mut self.jobs) {
            self.console.line(&format!(
                "flow: Slurm job {} ({}) still listed after scancel; check `squeue -j {}`",
                job.id, job.label, job.id
            ));
            ended.push(JobEnd {
                node,
                outcome: Outcome::Lost(format!("Slurm job {} did not stop in time", job.id)),
            });
        }
        ended
    }

    fn running(&self) -> usize {
        self.jobs.len()
    }

    fn job_id(&self, node: usize) -> Option<String> {
        self.jobs.get(&node).map(|job| format!("slurm:{}", job.id))
    }
}

/// Cancels Slurm jobs by id (`slurm:<id>` tags of runs whose flow died); ids that are
/// not Slurm's are ignored. Returns the ids it asked `scancel` to stop.
pub fn cancel_tagged(tags: &[String]) -> Result<Vec<String>> {
    let ids: Vec<String> = tags
        .iter()
        .filter_map(|tag| tag.strip_prefix("slurm:"))
        .map(str::to_string)
        .collect();
    if !ids.is_empty() {
        scancel(&ids)?;
    }
    Ok(ids)
}

fn scancel(ids: &[String]) -> Result<()> {
    let output = Command::new("scancel")
        .args(ids)
        .output()
        .context("cannot run `scancel` (is Slurm's client installed and on PATH?)")?;
    if !output.status.success() {
        bail!(
            "scancel {} failed: {}",
            ids.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `flow-<entry>-<member>` from a label `entry [member]`, in characters every Slurm tool
/// prints plainly.
fn job_name(label: &str) -> String {
    let mut name = String::from("flow-");
    for c in label.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            name.push(c);
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    name.trim_end_matches('-').to_string()
}

/// Seconds as `days-hours:minutes:seconds`, a form every `--time` accepts.
fn slurm_duration(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    format!(
        "{days}-{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The batch script: the job's environment exported, then the step's command file.
fn write_batch_script(path: &Path, job: &Job) -> Result<()> {
    let mut text: Vec<u8> = Vec::new();
    text.extend_from_slice(b"#!/bin/sh\n");
    text.extend_from_slice(format!("# flow run {} ({})\n", job.run_id, job.label).as_bytes());
    for (name, value) in &job.env {
        text.extend_from_slice(format!("export {name}=").as_bytes());
        text.extend_from_slice(&quote(value));
        text.push(b'\n');
    }
    text.extend_from_slice(b"cd ");
    text.extend_from_slice(&quote(job.dir.as_os_str()));
    text.extend_from_slice(b" || exit 1\nsh ");
    text.extend_from_slice(&quote(job.script.as_os_str()));
    // The exit code as a file, written whole (rename), so flow need not wait for squeue.
    let marker = exit_marker(job);
    let partial = marker.with_extension("partial");
    text.extend_from_slice(b"\ncode=$?\necho $code > ");
    text.extend_from_slice(&quote(partial.as_os_str()));
    text.extend_from_slice(b" && mv ");
    text.extend_from_slice(&quote(partial.as_os_str()));
    text.push(b' ');
    text.extend_from_slice(&quote(marker.as_os_str()));
    text.extend_from_slice(b"\nexit $code\n");
    let mut file =
        File::create(path).with_context(|| format!("cannot write `{}`", path.display()))?;
    file.write_all(&text)
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Where the batch script leaves the step's exit code (beside its command file).
fn exit_marker(job: &Job) -> PathBuf {
    job.script.with_file_name("exit_code")
}

/// The exit code a finished batch script left, if it has.
fn read_exit_marker(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Any bytes as one `sh` word: single-quoted, `'` as `'\''`.
fn quote(value: &OsStr) -> Vec<u8> {
    let mut quoted = vec![b'\''];
    for &byte in value.as_bytes() {
        if byte == b'\'' {
            quoted.extend_from_slice(b"'\\''");
        } else {
            quoted.push(byte);
        }
    }
    quoted.push(b'\'');
    quoted
}

/// A log file followed from where it was last read.
struct LogTail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl LogTail {
    fn new(path: PathBuf) -> LogTail {
        LogTail {
            path,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// The complete lines appended since the last call; with `last`, the rest as well.
    fn read_lines(&mut self, last: bool) -> Vec<String> {
        if let Ok(mut file) = File::open(&self.path) {
            if file.seek(SeekFrom::Start(self.offset)).is_ok() {
                let mut bytes = Vec::new();
                if let Ok(n) = file.read_to_end(&mut bytes) {
                    self.offset += n as u64;
                    self.partial.extend_from_slice(&bytes);
                }
            }
        }
        let mut lines = Vec::new();
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            lines.push(text_of(&line[..line.len() - 1]));
        }
        if last && !self.partial.is_empty() {
            lines.push(text_of(&std::mem::take(&mut self.partial)));
        }
        lines
    }
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches('\r')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_plain() {
        assert_eq!(job_name("train [a seed=0]"), "flow-train-a-seed-0");
        assert_eq!(job_name("load"), "flow-load");
        assert_eq!(job_name("load [machine-1-6]"), "flow-load-machine-1-6");
    }

    #[test]
    fn durations_in_slurm_form() {
        assert_eq!(slurm_duration(59), "0-00:00:59");
        assert_eq!(slurm_duration(2 * 3600 + 61), "0-02:01:01");
        assert_eq!(slurm_duration(3 * 86_400 + 7200), "3-02:00:00");
    }

    fn job(dir: &Path) -> Job {
        Job {
            node: 0,
            run_id: "r1".into(),
            label: "train [a]".into(),
            script: dir.join("command.sh"),
            dir: dir.to_path_buf(),
            env: vec![
                ("FLOW_RUN_ID".into(), "r1".into()),
                ("ODD".into(), OsString::from("it's $HOME `x` \"y\"\nz")),
            ],
            log: dir.join("run.log"),
            cpus: 2,
            memory: Some(1536 * 1024 * 1024 + 1),
            time: Some(5400),
        }
    }

    /// The batch script hands the step exactly the environment flow computed, whatever
    /// characters it holds, and runs the command file in the project.
    #[test]
    fn batch_script_exports_the_environment_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path());
        std::fs::write(
            &job.script,
            "printf '%s|%s|%s' \"$FLOW_RUN_ID\" \"$ODD\" \"$PWD\"\n",
        )
        .unwrap();
        let batch = dir.path().join("sbatch.sh");
        write_batch_script(&batch, &job).unwrap();
        let out = Command::new("sh")
            .arg(&batch)
            .current_dir("/")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!(
                "r1|it's $HOME `x` \"y\"\nz|{}",
                dir.path().canonicalize().unwrap().display()
            )
        );
        assert_eq!(read_exit_marker(&exit_marker(&job)), Some(0));
    }

    /// The step's exit code is the job's, and the marker says it too.
    #[test]
    fn batch_script_passes_the_exit_code_on() {
        let dir = tempfile::tempdir().unwrap();
        let job = job(dir.path());
        std::fs::write(&job.script, "exit 7\n").unwrap();
        let batch = dir.path().join("sbatch.sh");
        write_batch_script(&batch, &job).unwrap();
        let status = Command::new("sh").arg(&batch).status().unwrap();
        assert_eq!(status.code(), Some(7));
        assert_eq!(read_exit_marker(&exit_marker(&job)), Some(7));
    }

    #[test]
    fn sbatch_gets_resources_after_site_options() {
        let dir = tempfile::tempdir().unwrap();
        let executor = SlurmExecutor::new(
            SlurmOptions {
                partition: Some("gpu".into()),
                account: None,
                extra: vec!["--time=1:00:00".into(), "--qos=high".into()],
                max_jobs: None,
            },
            Console::default(),
            false,
        );
        let job = job(dir.path());
        let args: Vec<String> = executor
            .sbatch_args(&job, Path::new("/x/sbatch.sh"))
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let position = |prefix: &str| args.iter().position(|a| a.starts_with(prefix)).unwrap();
        assert!(position("--time=1:00:00") < position("--time=0-01:30:00"));
        assert!(args.contains(&"--mem=1537M".to_string()), "{args:?}");
        assert!(args.contains(&"--cpus-per-task=2".to_string()));
        assert!(args.contains(&"--job-name=flow-train-a".to_string()));
        assert!(args.contains(&"--partition=gpu".to_string()));
        assert_eq!(args.last().unwrap(), "/x/sbatch.sh");
    }

    #[test]
    fn log_tail_returns_whole_lines_then_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut tail = LogTail::new(path.clone());
        assert!(tail.read_lines(false).is_empty(), "no file yet");
        std::fs::write(&path, "one\ntw").unwrap();
        assert_eq!(tail.read_lines(false), ["one"]);
        std::fs::write(&path, "one\ntwo\nthr").unwrap();
        assert_eq!(tail.read_lines(false), ["two"]);
        assert_eq!(tail.read_lines(true), ["thr"]);
        assert!(tail.read_lines(true).is_empty());
    }
}
