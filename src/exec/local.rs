//! The local executor: steps as processes of this machine, as many at once as the cores,
//! memory and `-j` allow.
//!
//! Every step runs under `flow __guard` (guard.rs), in its own process group, so a
//! killed flow takes its steps with it. Worker threads stream each step's output into
//! its log and, prefixed, to the console, and report its exit over a channel.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::exec::guard::GRACE;
use crate::exec::job::{Executor, Job, JobEnd, Outcome};
use crate::exec::progress::Console;

/// This machine's capacity and what running jobs hold of it.
pub struct LocalExecutor {
    max_jobs: usize,
    cores: u32,
    memory: u64,
    console: Console,
    echo: bool,
    running: BTreeMap<usize, Running>,
    sender: Sender<JobEnd>,
    receiver: Receiver<JobEnd>,
}

struct Running {
    /// The guard's pid: it leads the step's supervision.
    guard: i32,
    cpus: u32,
    memory: u64,
}

impl LocalExecutor {
    /// `max_jobs` steps at once, within this machine's cores and available memory.
    pub fn new(max_jobs: usize, console: Console, echo: bool) -> LocalExecutor {
        let cores = thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let (sender, receiver) = mpsc::channel();
        LocalExecutor {
            max_jobs: max_jobs.max(1),
            cores,
            memory: available_memory().unwrap_or(u64::MAX),
            console,
            echo,
            running: BTreeMap::new(),
            sender,
            receiver,
        }
    }

    fn used(&self) -> (u32, u64) {
        self.running
            .values()
            .fold((0, 0), |(c, m), r| (c + r.cpus, m.saturating_add(r.memory)))
    }
}

impl Executor for LocalExecutor {
    fn has_room(&self, cpus: u32, memory: Option<u64>) -> bool {
        if self.running.is_empty() {
            // A step larger than the machine runs alone rather than never.
            return true;
        }
        let (cpus_used, memory_used) = self.used();
        self.running.len() < self.max_jobs
            && cpus_used + self.grant(cpus) <= self.cores
            && memory_used.saturating_add(memory.unwrap_or(0)) <= self.memory
    }

    fn grant(&self, cpus: u32) -> u32 {
        cpus.clamp(1, self.cores)
    }

    fn start(&mut self, job: Job) -> Result<()> {
        let exe =
            std::env::current_exe().context("cannot find the flow binary to supervise a step")?;
        let mut command = Command::new(exe);
        command
            .arg("__guard")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .arg(&job.script)
            .current_dir(&job.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .envs(job.env.iter().map(|(k, v)| (k, v)))
            .process_group(0);
        // SAFETY: prctl only asks the kernel to send SIGTERM to the guard when this thread
        // (the driver's, which outlives every step) ends; async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let log = File::create(&job.log)
            .with_context(|| format!("cannot create `{}`", job.log.display()))?;
        let mut process = command
            .spawn()
            .with_context(|| format!("cannot start step `{}`", job.label))?;
        let log = Arc::new(Mutex::new(log));
        let prefix = format!("[{}] ", job.label);
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
                let console = self.echo.then(|| self.console.clone());
                thread::spawn(move || stream_lines(pipe, &log, &prefix, console.as_ref()))
            })
            .collect();
        let sender = self.sender.clone();
        let node = job.node;
        let guard = process.id() as i32;
        thread::spawn(move || {
            for reader in readers {
                let _ = reader.join();
            }
            let outcome = match process.wait() {
                Ok(status) => Outcome::Exited(
                    status
                        .code()
                        .or_else(|| status.signal().map(|s| 128 + s))
                        .unwrap_or(1),
                ),
                Err(error) => Outcome::Lost(format!("cannot wait for the step: {error}")),
            };
            let _ = sender.send(JobEnd { node, outcome });
        });
        self.running.insert(
            job.node,
            Running {
                guard,
                cpus: job.cpus,
                memory: job.memory.unwrap_or(0),
            },
        );
        Ok(())
    }

    fn wait(&mut self, timeout: Duration) -> Result<Vec<JobEnd>> {
        let mut ended = Vec::new();
        if self.running.is_empty() {
            thread::sleep(timeout);
            return Ok(ended);
        }
        match self.receiver.recv_timeout(timeout) {
            Ok(end) => ended.push(end),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                anyhow::bail!("a step's worker thread vanished")
            }
        }
        ended.extend(self.receiver.try_iter());
        for end in &ended {
            self.running.remove(&end.node);
        }
        Ok(ended)
    }

    fn cancel_all(&mut self) -> Vec<JobEnd> {
        for running in self.running.values() {
            // SAFETY: kill(2) on the guard's pid; it stops the step's group itself.
            unsafe {
                libc::kill(running.guard, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + GRACE + Duration::from_secs(5);
        let mut ended = Vec::new();
        while !self.running.is_empty() && Instant::now() < deadline {
            if let Ok(end) = self.receiver.recv_timeout(Duration::from_millis(100)) {
                self.running.remove(&end.node);
                ended.push(end);
            }
        }
        for (node, running) in std::mem::take(&mut self.running) {
            // SAFETY: as above; the guard did not end in time.
            unsafe {
                libc::kill(running.guard, libc::SIGKILL);
            }
            ended.push(JobEnd {
                node,
                outcome: Outcome::Lost("did not stop in time; killed".into()),
            });
        }
        ended
    }

    fn running(&self) -> usize {
        self.running.len()
    }
}

/// Copies a child's output line by line to the log and, prefixed, to the console.
fn stream_lines(
    pipe: Box<dyn Read + Send>,
    log: &Mutex<File>,
    prefix: &str,
    console: Option<&Console>,
) {
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        if let Ok(mut file) = log.lock() {
            let _ = file.write_all(&line);
        }
        if let Some(console) = console {
            let text = String::from_utf8_lossy(&line);
            console.line(&format!("{prefix}{}", text.trim_end_matches(['\n', '\r'])));
        }
        line.clear();
    }
}

/// `MemAvailable` from /proc/meminfo, in bytes.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
