//! Executing a plan: start the step runs that must run, wait for those another flow is
//! computing, publish what they wrote, and record every outcome in the store.
//!
//! The driver here decides *when* a node runs and what its end means for the store; an
//! [`Executor`] decides *where* (this machine: `local.rs`; a Slurm cluster: `slurm/`).
//! Only the driver touches the store: steps hand their metrics, params and tags over as
//! files (`annotations.rs`). Before executing a node it claims the node's key
//! (`Store::claim_run`): a key another live flow is computing is waited for and then
//! reused, so concurrent flows execute each key once. Every run this flow claimed ends
//! FINISHED, FAILED or KILLED, whatever happens — a step failing, an error of flow's own,
//! or INT/TERM/HUP.

mod annotations;
mod guard;
mod job;
mod local;
mod progress;
mod signals;
mod slurm;
mod staging;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::resolve::{run_clock as now, Decision, ExecuteReason, Plan, ReusePolicy, COMMIT_TAG};
use crate::spec::{Project, Resources};
use crate::store::{Claim, NewRun, ReuseQuery, RunKey, RunStatus, Store};
use crate::version;

pub use annotations::{append as append_annotation, Annotation, Kind as AnnotationKind};
pub use guard::run as run_guard;
pub use job::{Executor, Job, JobEnd, Outcome};
pub use local::LocalExecutor;
pub use progress::{Console, PROGRESS_TAG};
pub use signals::install as install_signal_handlers;
pub use slurm::{
    cancel_tagged as cancel_slurm_jobs, read_sbatch_options, SlurmExecutor, SlurmOptions,
};
pub use staging::env_name;

/// The tag naming a run's job to its executor's tools (`slurm:<id>`).
pub const EXECUTOR_JOB_TAG: &str = "flow.executor_job";

/// How a run request executes.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub experiment: String,
    /// Echo step output to stderr (always saved to the run's log).
    pub echo: bool,
    /// Steps to execute even when a finished run of their key exists (`--force`).
    pub force: Vec<String>,
    /// Resources set on the command line, by entry, over those MLproject declares.
    pub resources: BTreeMap<String, Resources>,
    /// `MLFLOW_TRACKING_URI` for the steps (with `MLFLOW_RUN_ID` their own run).
    pub tracking_uri: Option<String>,
}

/// What happened to one node.
#[derive(Debug, Clone, Serialize)]
pub struct StepOutcome {
    pub entry: String,
    /// The fan-out member, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    pub run_id: Option<String>,
    /// `reused`, `executed`, `waited` (another flow computed it; its run is reused) or
    /// `skipped` (an upstream step failed, or flow was stopped first).
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
    /// The signal that stopped the run (INT, TERM or HUP), if one did.
    #[serde(skip)]
    pub interrupted: Option<i32>,
}

impl RunReport {
    /// The exit code flow should end with: 0, a failed step's own code, or 128 + the
    /// signal that stopped it.
    pub fn exit_code(&self) -> i32 {
        if let Some(signal) = self.interrupted {
            return signals::exit_code(signal);
        }
        self.steps
            .iter()
            .find(|s| s.status == "FAILED")
            .map(|s| s.exit_code.filter(|c| *c != 0).unwrap_or(1))
            .unwrap_or(0)
    }
}

/// Where one node is.
#[derive(Debug, Clone)]
enum State {
    Pending,
    /// Another flow computes this key; look again at `next_check`.
    Waiting {
        next_check: Instant,
    },
    Running {
        run_id: String,
        run_time: DateTime<Utc>,
    },
    /// Finished (or a target): downstream nodes may read its run.
    Done,
    Failed,
    Skipped,
}

/// How often a waiting node looks at the run it waits for.
const WAIT_POLL: Duration = Duration::from_millis(300);
/// How often the runs this flow owns say they are alive: every 30 s, and at least four
/// times per lease.
fn heartbeat_every() -> Duration {
    Duration::from_secs(30).min(crate::store::lease() / 4)
}

/// Runs every node the plan does not reuse, upstream first, as the executor has room.
pub fn execute(
    project: &Project,
    store: &Store,
    plan: &Plan,
    options: &ExecOptions,
    executor: &mut dyn Executor,
    console: Console,
) -> Result<RunReport> {
    let mut driver = Driver::new(project, store, plan, options, console);
    let reused: Vec<&str> = driver.runs.values().map(String::as_str).collect();
    store.record_reuses(&reused)?;
    match driver.drive(executor) {
        Ok(()) => Ok(driver.report()),
        Err(error) => {
            driver.abort(executor);
            Err(error)
        }
    }
}

struct Driver<'a> {
    project: &'a Project,
    store: &'a Store,
    plan: &'a Plan,
    options: &'a ExecOptions,
    console: Console,
    progress: progress::Progress,
    states: Vec<State>,
    /// Run ids of nodes that are done (reused or finished here).
    runs: BTreeMap<usize, String>,
    outcomes: BTreeMap<usize, StepOutcome>,
    interrupted: Option<i32>,
    last_heartbeat: Instant,
}

impl<'a> Driver<'a> {
    fn new(
        project: &'a Project,
        store: &'a Store,
        plan: &'a Plan,
        options: &'a ExecOptions,
        console: Console,
    ) -> Driver<'a> {
        let mut driver = Driver {
            project,
            store,
            plan,
            options,
            progress: progress::Progress::new(console.clone()),
            console,
            states: vec![State::Pending; plan.nodes.len()],
            runs: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            interrupted: None,
            last_heartbeat: Instant::now(),
        };
        for (index, node) in plan.nodes.iter().enumerate() {
            if let Decision::Reuse(run) = &node.decision {
                driver.states[index] = State::Done;
                driver.runs.insert(index, run.run_id.clone());
                driver.outcomes.insert(
                    index,
                    driver.outcome(
                        index,
                        Some(&run.run_id),
                        "reused",
                        run.status,
                        Some(run.run_time),
                        None,
                    ),
                );
            }
        }
        driver
    }

    fn drive(&mut self, executor: &mut dyn Executor) -> Result<()> {
        loop {
            if let Some(signal) = signals::received() {
                self.interrupted = Some(signal);
                for end in executor.cancel_all() {
                    self.finish(end)?;
                }
                for index in 0..self.states.len() {
                    if matches!(self.states[index], State::Pending | State::Waiting { .. }) {
                        self.skip(index);
                    }
                }
                return Ok(());
            }
            self.advance(executor)?;
            let active = self
                .states
                .iter()
                .any(|s| matches!(s, State::Running { .. } | State::Waiting { .. }));
            if !active {
                // Nothing runs or waits, so nothing pending can ever become ready.
                for index in 0..self.states.len() {
                    if matches!(self.states[index], State::Pending) {
                        self.skip(index);
                    }
                }
                return Ok(());
            }
            for end in executor.wait(Duration::from_millis(200))? {
                self.finish(end)?;
            }
            for (run, progress) in self.progress.poll() {
                self.store.set_tag(&run, PROGRESS_TAG, &progress)?;
            }
            if self.last_heartbeat.elapsed() >= heartbeat_every() {
                self.store.heartbeat(&self.owned())?;
                self.last_heartbeat = Instant::now();
            }
        }
    }

    /// Starts, skips, reuses or re-checks every node whose turn it is.
    fn advance(&mut self, executor: &mut dyn Executor) -> Result<()> {
        for index in 0..self.states.len() {
            match &self.states[index] {
                State::Pending => {}
                State::Waiting { next_check, .. } if Instant::now() >= *next_check => {}
                _ => continue,
            }
            let node = &self.plan.nodes[index];
            let inputs = if node.command.is_some() {
                &node.upstream
            } else {
                &node.parents
            };
            if inputs
                .iter()
                .any(|&u| matches!(self.states[u], State::Failed | State::Skipped))
            {
                self.skip(index);
                continue;
            }
            if !inputs
                .iter()
                .all(|&u| matches!(self.states[u], State::Done))
            {
                continue;
            }
            if node.command.is_none() {
                self.states[index] = State::Done;
                continue;
            }
            let resources = self.resources(index);
            let cpus = executor.grant(resources.cpus.unwrap_or(1));
            if !executor.has_room(cpus, resources.memory) {
                continue;
            }
            let granted = Resources {
                cpus: Some(cpus),
                ..resources
            };
            self.claim_and_start(index, granted, executor)?;
        }
        Ok(())
    }

    /// Claims the node's key and starts it, or reuses/waits for another flow's run.
    fn claim_and_start(
        &mut self,
        index: usize,
        resources: Resources,
        executor: &mut dyn Executor,
    ) -> Result<()> {
        let node = &self.plan.nodes[index];
        let key = self.key(index)?;
        let forced = self.options.force.contains(&node.entry)
            || matches!(node.decision, Decision::Execute(ExecuteReason::Forced));
        let reuse = self.plan.policy != ReusePolicy::Never && !forced;
        let run_time = now();
        let command = node.command.clone().unwrap_or_default();
        let new = NewRun {
            key: &key,
            experiment: &self.options.experiment,
            member: node.member.as_deref(),
            code_dirty: self.plan.code.dirty,
            command: &command,
            run_time,
        };
        let query = ReuseQuery {
            key: &key,
            match_data: true,
            match_code: self.plan.policy == ReusePolicy::Commit,
            run_time: None,
        };
        match self.store.claim_run(&new, &query, reuse)? {
            Claim::Finished(run) => {
                self.store.record_reuses(&[&run.run_id])?;
                let waited = matches!(self.states[index], State::Waiting { .. });
                self.runs.insert(index, run.run_id.clone());
                let action = if waited { "waited" } else { "reused" };
                let outcome = self.outcome(
                    index,
                    Some(&run.run_id),
                    action,
                    run.status,
                    Some(run.run_time),
                    None,
                );
                self.outcomes.insert(index, outcome);
                self.states[index] = State::Done;
            }
            Claim::Running(run) => {
                if !matches!(self.states[index], State::Waiting { .. }) && self.options.echo {
                    self.console.line(&format!(
                        "flow: {} is being computed by another flow (run {}); waiting for it",
                        node.label(),
                        &run.run_id[..8]
                    ));
                }
                self.states[index] = State::Waiting {
                    next_check: Instant::now() + WAIT_POLL,
                };
            }
            Claim::Claimed(run_id) => {
                self.states[index] = State::Running {
                    run_id: run_id.clone(),
                    run_time,
                };
                let settings = staging::JobSettings {
                    cpus: resources.cpus.unwrap_or(1),
                    memory: resources.memory,
                    time: resources.time,
                    tracking_uri: self.options.tracking_uri.as_deref(),
                };
                let started = staging::prepare(
                    self.store,
                    self.plan,
                    &self.project.dir,
                    index,
                    &run_id,
                    &self.runs,
                    &settings,
                )
                .and_then(|job| {
                    let progress = staging::Staging::new(self.store, &run_id).progress();
                    executor.start(job)?;
                    self.progress.watch(index, &run_id, &node.label(), progress);
                    Ok(())
                });
                if self.plan.code.commit != "none" {
                    self.store
                        .set_tag(&run_id, COMMIT_TAG, &self.plan.code.commit)?;
                }
                match started {
                    Ok(()) => {
                        if let Some(job_id) = executor.job_id(index) {
                            self.store.set_tag(&run_id, EXECUTOR_JOB_TAG, &job_id)?;
                        }
                        if self.options.echo {
                            self.console.line(&format!(
                                "flow: {} executing (run {})",
                                node.label(),
                                &run_id[..8]
                            ));
                        }
                    }
                    Err(error) => {
                        self.console.line(&format!(
                            "flow: {} could not start: {error:#}",
                            node.label()
                        ));
                        let end = JobEnd {
                            node: index,
                            outcome: Outcome::Lost(format!("{error:#}")),
                        };
                        self.finish(end)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Records a job's end.
    fn finish(&mut self, end: JobEnd) -> Result<()> {
        let index = end.node;
        let State::Running { run_id, run_time } = self.states[index].clone() else {
            return Ok(());
        };
        self.progress.unwatch(index);
        // Progress describes a RUNNING run; an ended one has its status instead.
        self.store.remove_tag(&run_id, PROGRESS_TAG)?;
        let node = &self.plan.nodes[index];
        let killed = self.interrupted.is_some() || signals::received().is_some();
        let success = end.outcome == Outcome::Exited(0);
        let log = self.store.dir().join("logs").join(format!("{run_id}.log"));
        let (status, warnings) =
            staging::complete(self.store, &run_id, &node.entry, &log, success, killed)?;
        for warning in warnings {
            self.console
                .line(&format!("flow: {}: {warning}", node.label()));
        }
        let exit_code = match &end.outcome {
            Outcome::Exited(code) => Some(*code),
            Outcome::Lost(_) => None,
        };
        if status == RunStatus::Failed {
            let why = match &end.outcome {
                Outcome::Exited(code) if *code > 128 => format!("killed by signal {}", code - 128),
                Outcome::Exited(code) => format!("exit code {code}"),
                Outcome::Lost(reason) => reason.clone(),
            };
            self.console.line(&format!(
                "flow: step `{}` failed ({why}); its log: {}",
                node.label(),
                log.display()
            ));
        }
        let outcome = self.outcome(
            index,
            Some(&run_id),
            "executed",
            status,
            Some(run_time),
            exit_code,
        );
        self.outcomes.insert(index, outcome);
        if status == RunStatus::Finished {
            self.runs.insert(index, run_id);
            self.states[index] = State::Done;
        } else {
            self.states[index] = State::Failed;
        }
        Ok(())
    }

    /// After an error of flow's own: stop what runs and end every run this flow claimed,
    /// so nothing is left RUNNING and no staging stays behind.
    fn abort(&mut self, executor: &mut dyn Executor) {
        let _ = executor.cancel_all();
        let status = if signals::received().is_some() {
            RunStatus::Killed
        } else {
            RunStatus::Failed
        };
        for run in self.owned() {
            staging::discard(self.store, &run);
            let _ = self.store.end_run(&run, status);
        }
    }

    /// Runs this flow claimed that have not ended.
    fn owned(&self) -> Vec<String> {
        self.states
            .iter()
            .filter_map(|s| match s {
                State::Running { run_id, .. } => Some(run_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// The node's full key, now that its upstream nodes are done.
    fn key(&self, index: usize) -> Result<RunKey> {
        let node = &self.plan.nodes[index];
        let mut key = node.key.clone();
        if !node.upstream.is_empty() {
            key.upstream.clear();
            let mut manifests = Vec::new();
            for &upstream in &node.upstream {
                let run_id = &self.runs[&upstream];
                let run = self.store.get_run(run_id)?;
                manifests.push((
                    run.entry.clone(),
                    run.manifest_hash.clone().unwrap_or_default(),
                ));
                key.upstream.push((run.entry, run.run_id));
            }
            key.upstream.extend(node.model_inputs.iter().cloned());
            key.data_version = version::data_version_of_upstream(&manifests);
        }
        Ok(key)
    }

    fn resources(&self, index: usize) -> Resources {
        let node = &self.plan.nodes[index];
        let mut resources = node.resources;
        if let Some(set) = self.options.resources.get(&node.entry) {
            resources.cpus = set.cpus.or(resources.cpus);
            resources.memory = set.memory.or(resources.memory);
            resources.time = set.time.or(resources.time);
        }
        resources
    }

    fn skip(&mut self, index: usize) {
        self.states[index] = State::Skipped;
        if self.plan.nodes[index].command.is_some() {
            let outcome = StepOutcome {
                status: "NOT_STARTED".to_string(),
                ..self.outcome(index, None, "skipped", RunStatus::Failed, None, None)
            };
            self.outcomes.insert(index, outcome);
        }
    }

    fn outcome(
        &self,
        index: usize,
        run_id: Option<&String>,
        action: &'static str,
        status: RunStatus,
        run_time: Option<DateTime<Utc>>,
        exit_code: Option<i32>,
    ) -> StepOutcome {
        let node = &self.plan.nodes[index];
        StepOutcome {
            entry: node.entry.clone(),
            member: node.member.clone(),
            run_id: run_id.cloned(),
            action,
            status: status.to_string(),
            key: node.key.key_value.clone(),
            run_time: run_time.map(rfc3339),
            exit_code,
        }
    }

    fn report(&mut self) -> RunReport {
        let mut outcomes = std::mem::take(&mut self.outcomes);
        RunReport {
            entry: self.plan.entry.clone(),
            steps: (0..self.plan.nodes.len())
                .filter_map(|index| outcomes.remove(&index))
                .collect(),
            interrupted: self.interrupted,
        }
    }
}

/// Appends one metric line the way steps do (used by `flow log metric`).
pub fn append_metric(path: &std::path::Path, key: &str, value: f64, step: i64) -> Result<()> {
    let line = flow_steps::metrics_file::line(key, value, step, flow_steps::metrics_file::now_ms());
    flow_steps::metrics_file::append(path, &line)
}

pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}
