//! The seam between the driver (what to run, when, and what it means for the store) and
//! an executor (where and how a step's command runs: this machine, or a Slurm cluster).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

/// One step run for an executor to carry out.
#[derive(Debug, Clone)]
pub struct Job {
    /// The plan node, echoed back in [`JobEnd`].
    pub node: usize,
    pub run_id: String,
    /// `entry [member]`, for output prefixes and job names.
    pub label: String,
    /// The step's command, as a file `sh` runs (no argument-size limit).
    pub script: PathBuf,
    /// Working directory: the project.
    pub dir: PathBuf,
    pub env: Vec<(String, OsString)>,
    /// Where the step's stdout and stderr go (also echoed, prefixed, when asked).
    pub log: PathBuf,
    /// Cores granted (`FLOW_CPUS`).
    pub cpus: u32,
    pub memory: Option<u64>,
    /// Wall-time limit in seconds.
    pub time: Option<u64>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited with this code (128 + n when a signal ended it).
    Exited(i32),
    /// The command never started, or its executor lost it (node failure, preemption).
    Lost(String),
}

/// A job that ended.
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub node: usize,
    pub outcome: Outcome,
}

/// What jobs may start: what is free now.
pub trait Executor {
    /// Whether a job needing `cpus` and `memory` may start now.
    fn has_room(&self, cpus: u32, memory: Option<u64>) -> bool;
    /// Starts `job`; its end comes back from [`Executor::wait`]. An error means it could
    /// not be started and nothing of it runs.
    fn start(&mut self, job: Job) -> Result<()>;
    /// Waits up to `timeout` and returns the jobs that ended meanwhile.
    fn wait(&mut self, timeout: Duration) -> Result<Vec<JobEnd>>;
    /// Stops every running job and returns their ends.
    fn cancel_all(&mut self) -> Vec<JobEnd>;
    /// How many jobs are running.
    fn running(&self) -> usize;
    /// The cores a job asking for `cpus` gets (capped at what one job can have).
    fn grant(&self, cpus: u32) -> u32;
    /// Identifies a running job to the executor's own tools (a Slurm job id), recorded
    /// as the run's tag `flow.executor_job`.
    fn job_id(&self, _node: usize) -> Option<String> {
        None
    }
}
