//! What Slurm says about a job, and what that means for flow: still going, held for a
//! reason worth showing, or ended with an [`Outcome`].

use std::collections::BTreeMap;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::exec::job::Outcome;

/// One job as `squeue` (or `sacct`) reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobState {
    /// `PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, `TIMEOUT`, ...
    pub state: String,
    /// Why it pends, or why it ended (`None`, `Resources`, `NonZeroExitCode`, ...).
    pub reason: String,
    /// The batch script's wait status as `squeue -O exit_code` prints it, or as
    /// `code:signal` from `sacct`.
    pub exit: Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit code, or 128 + the signal that ended the command.
    Code(i32),
    Unknown,
}

/// What the driver should hear about a job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Active,
    /// Pending for a reason that may keep it pending for good (a partition's limit, a
    /// node that is down): shown to the user once.
    Waiting(String),
    Ended(Outcome),
}

/// Pending reasons that only mean "its turn has not come".
const ORDINARY_REASONS: &[&str] = &[
    "None",
    "Priority",
    "Resources",
    "Dependency",
    "BeginTime",
    "Prolog",
    "JobHeldUser",
];

impl JobState {
    /// What ends a job flow thought was queued when Slurm no longer knows it.
    pub fn vanished(id: &str) -> JobState {
        JobState {
            state: "VANISHED".into(),
            reason: format!("Slurm job {id} is no longer known to squeue or sacct"),
            exit: Exit::Unknown,
        }
    }

    pub fn poll(&self, id: &str) -> Poll {
        // `CANCELLED by 0` in sacct; flags such as `+` after a state in some versions.
        let state = self
            .state
            .split([' ', '+'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let lost =
            |what: &str| Poll::Ended(Outcome::Lost(format!("Slurm job {id} {state} ({what})")));
        match state.as_str() {
            "COMPLETED" | "FAILED" => match self.exit {
                Exit::Code(0) if state == "COMPLETED" => Poll::Ended(Outcome::Exited(0)),
                Exit::Code(code) if code != 0 => Poll::Ended(Outcome::Exited(code)),
                // FAILED without a status: the batch script never ran (bad --chdir, a
                // node that could not launch it).
                _ => lost(&self.reason),
            },
            "CANCELLED" => lost("cancelled"),
            "TIMEOUT" => lost("reached its time limit"),
            "NODE_FAIL" => lost("its node failed"),
            "PREEMPTED" => lost("preempted"),
            "OUT_OF_MEMORY" => lost("ran out of memory"),
            "BOOT_FAIL" => lost("its node failed to boot"),
            "DEADLINE" => lost("missed its deadline"),
            "REVOKED" => lost("revoked by another cluster"),
            "VANISHED" => Poll::Ended(Outcome::Lost(self.reason.clone())),
            "PENDING" if !ORDINARY_REASONS.contains(&self.reason.as_str()) => {
                Poll::Waiting(self.reason.clone())
            }
            _ => Poll::Active,
        }
    }
}

/// The job id in `sbatch --parsable` output (`id` or `id;cluster`).
pub fn parse_submitted(stdout: &str) -> Option<String> {
    let id = stdout.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit())).then(|| id.to_string())
}

/// The state of each of `ids` that `squeue` still knows (ended jobs stay listed for
/// `MinJobAge`, 300 s by default).
pub fn squeue(ids: &[&str]) -> Result<BTreeMap<String, JobState>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let output = Command::new("squeue")
        .arg(format!("--jobs={}", ids.join(",")))
        .args([
            "--states=all",
            "--noheader",
            "--Format=JobID:|,State:|,Reason:|,exit_code:",
        ])
        .output()
        .context("cannot run `squeue`")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        // Asked about one job it has forgotten, squeue fails instead of listing nothing.
        if stderr.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        bail!("squeue failed: {}", stderr.trim());
    }
    Ok(parse_squeue(&String::from_utf8_lossy(&output.stdout)))
}

/// Lines `id|STATE|reason|wait status`.
fn parse_squeue(text: &str) -> BTreeMap<String, JobState> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('|').map(str::trim).collect();
            let [id, state, reason, status, ..] = fields[..] else {
                return None;
            };
            let exit = status
                .parse::<i32>()
                .map(|raw| Exit::Code(wait_status_code(raw)))
                .unwrap_or(Exit::Unknown);
            Some((
                id.to_string(),
                JobState {
                    state: state.to_string(),
                    reason: reason.to_string(),
                    exit,
                },
            ))
        })
        .collect()
}

/// A raw wait status as a shell reports it: the exit code, or 128 + the signal.
fn wait_status_code(raw: i32) -> i32 {
    let signal = raw & 0x7f;
    if signal != 0 {
        128 + signal
    } else {
        (raw >> 8) & 0xff
    }
}

/// The job's final state from accounting, when the cluster keeps it.
pub fn sacct(id: &str) -> Option<JobState> {
    let output = Command::new("sacct")
        .args(["--jobs", id, "--noheader", "--parsable2", "--allocations"])
        .args(["--format=State,ExitCode,Reason"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse_sacct(&String::from_utf8_lossy(&output.stdout))
}

/// `STATE|code:signal|reason`.
fn parse_sacct(text: &str) -> Option<JobState> {
    let line = text.lines().find(|l| !l.trim().is_empty())?;
    let mut fields = line.split('|').map(str::trim);
    let state = fields.next()?.to_string();
    let exit = fields
        .next()
        .and_then(|e| e.split_once(':'))
        .and_then(|(code, signal)| Some((code.parse::<i32>().ok()?, signal.parse::<i32>().ok()?)))
        .map(|(code, signal)| Exit::Code(if signal != 0 { 128 + signal } else { code }))
        .unwrap_or(Exit::Unknown);
    let reason = fields.next().unwrap_or("None").to_string();
    Some(JobState {
        state,
        reason,
        exit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(line: &str) -> Poll {
        let states = parse_squeue(line);
        let (id, state) = states.iter().next().expect("one job");
        state.poll(id)
    }

    /// Table: what squeue prints (`-O JobID,State,Reason,exit_code`) -> what flow does.
    #[test]
    fn squeue_states_map_to_outcomes() {
        let lost = |text: &str| Poll::Ended(Outcome::Lost(text.to_string()));
        let cases = [
            ("7|PENDING|Priority|0", Poll::Active),
            ("7|RUNNING|None|0", Poll::Active),
            ("7|COMPLETING|None|0", Poll::Active),
            ("7|COMPLETED|None|0", Poll::Ended(Outcome::Exited(0))),
            (
                "7|FAILED|NonZeroExitCode|768",
                Poll::Ended(Outcome::Exited(3)),
            ),
            (
                "7|FAILED|NonZeroExitCode|9",
                Poll::Ended(Outcome::Exited(137)),
            ),
            (
                "7|FAILED|launch failed|0",
                lost("Slurm job 7 FAILED (launch failed)"),
            ),
            (
                "7|CANCELLED|None|0",
                lost("Slurm job 7 CANCELLED (cancelled)"),
            ),
            (
                "7|TIMEOUT|TimeLimit|0",
                lost("Slurm job 7 TIMEOUT (reached its time limit)"),
            ),
            (
                "7|NODE_FAIL|None|0",
                lost("Slurm job 7 NODE_FAIL (its node failed)"),
            ),
            (
                "7|PREEMPTED|None|0",
                lost("Slurm job 7 PREEMPTED (preempted)"),
            ),
            (
                "7|OUT_OF_MEMORY|OutOfMemory|0",
                lost("Slurm job 7 OUT_OF_MEMORY (ran out of memory)"),
            ),
            (
                "7|BOOT_FAIL|None|0",
                lost("Slurm job 7 BOOT_FAIL (its node failed to boot)"),
            ),
            (
                "7|PENDING|PartitionTimeLimit|0",
                Poll::Waiting("PartitionTimeLimit".into()),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(state(line), expected, "{line}");
        }
    }

    #[test]
    fn squeue_lines_may_be_padded_and_incomplete() {
        let states = parse_squeue("  12 |RUNNING   |None|0\n\ngarbage\n13|PENDING|Resources|\n");
        assert_eq!(states.len(), 2);
        assert_eq!(states["12"].state, "RUNNING");
        assert_eq!(states["13"].exit, Exit::Unknown);
    }

    #[test]
    fn sacct_states_map_to_outcomes() {
        let failed = parse_sacct("FAILED|2:0|NonZeroExitCode\n").unwrap();
        assert_eq!(failed.poll("9"), Poll::Ended(Outcome::Exited(2)));
        let cancelled = parse_sacct("CANCELLED by 1000|0:15|None\n").unwrap();
        assert_eq!(
            cancelled.poll("9"),
            Poll::Ended(Outcome::Lost("Slurm job 9 CANCELLED (cancelled)".into()))
        );
        assert!(parse_sacct("\n").is_none());
    }

    #[test]
    fn submitted_ids() {
        assert_eq!(parse_submitted("42\n").as_deref(), Some("42"));
        assert_eq!(parse_submitted("42;cluster\n").as_deref(), Some("42"));
        assert_eq!(parse_submitted("Submitted batch job 42"), None);
    }
}
