//! The reuse decision as values: what a step does, and why each newer candidate was not
//! taken. Pure: facts in (the requested key, a stored run), reasons out; `cli` renders them.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::resolve::selector::TimeSelector;
use crate::store::{RunKey, RunRecord, RunStatus};

/// How much the code version matters for reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReusePolicy {
    /// Reuse only runs made at the same commit (and the same uncommitted changes).
    Commit,
    /// Reuse runs made at any commit.
    Any,
    /// Execute every step.
    Never,
}

/// The decision for one step run.
#[derive(Debug, Clone)]
pub enum Decision {
    Reuse(Box<RunRecord>),
    Execute(ExecuteReason),
    /// Another live flow is computing this very key: wait for it, then reuse its run
    /// (or execute if it fails).
    Wait(Box<RunRecord>),
    /// An entry point without a command (a target such as `main`): nothing to run.
    Target,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExecuteReason {
    NoRuns,
    NoMatch,
    /// Upstream steps execute (or are awaited), so this key is not known yet.
    UpstreamExecutes(Vec<String>),
    PolicyNever,
    /// Named in `--force`: executes although an earlier run could be reused.
    Forced,
}

/// Why one stored run was not reused.
#[derive(Debug, Clone, PartialEq)]
pub enum Mismatch {
    NotFinished(RunStatus),
    ParamDiffers {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    UpstreamDiffers {
        entry: String,
        old: Option<String>,
        new: Option<String>,
    },
    CommitDiffers {
        old: String,
        new: String,
        /// The files that make the difference, when they can be named.
        files: Vec<String>,
    },
    DataChanged,
    OutsideTime(String),
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub run: RunRecord,
    pub reasons: Vec<Mismatch>,
}

/// What a candidate is compared on besides its key.
#[derive(Debug, Clone, Copy)]
pub struct Comparison<'a> {
    pub policy: ReusePolicy,
    pub selector: &'a TimeSelector,
}

impl Comparison<'_> {
    /// A run pinned by a time selector is taken as it was: its code and data may be older.
    pub fn pinned(&self) -> bool {
        matches!(self.selector, TimeSelector::Window { .. })
    }
}

/// Why `run` does not satisfy the requested `key`; empty when it would.
pub fn mismatches(run: &RunRecord, key: &RunKey, comparison: Comparison<'_>) -> Vec<Mismatch> {
    let mut reasons = Vec::new();
    if run.status != RunStatus::Finished {
        reasons.push(Mismatch::NotFinished(run.status));
    }
    let mut names: Vec<&String> = run.params.keys().chain(key.params.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (old, new) = (run.params.get(name), key.params.get(name));
        if old != new {
            reasons.push(Mismatch::ParamDiffers {
                name: name.clone(),
                old: old.cloned(),
                new: new.cloned(),
            });
        }
    }
    reasons.extend(upstream_mismatches(&run.upstream, &key.upstream));
    if !comparison.pinned() {
        if run.data_version != key.data_version {
            reasons.push(Mismatch::DataChanged);
        }
        if comparison.policy == ReusePolicy::Commit && run.code_version != key.code_version {
            reasons.push(Mismatch::CommitDiffers {
                old: run.code_version.clone(),
                new: key.code_version.clone(),
                files: Vec::new(),
            });
        }
    }
    if let TimeSelector::Window { label, from, to } = comparison.selector {
        if run.run_time < *from || run.run_time >= *to {
            reasons.push(Mismatch::OutsideTime(label.clone()));
        }
    }
    reasons
}

/// Upstream runs that differ, per entry (a fan-in lists several runs of one entry).
fn upstream_mismatches(old: &[(String, String)], new: &[(String, String)]) -> Vec<Mismatch> {
    let group = |pairs: &[(String, String)]| {
        let mut by_entry: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (entry, run) in pairs {
            by_entry.entry(entry.clone()).or_default().push(run.clone());
        }
        for runs in by_entry.values_mut() {
            runs.sort();
        }
        by_entry
    };
    let (old, new) = (group(old), group(new));
    let mut entries: Vec<&String> = old.keys().chain(new.keys()).collect();
    entries.sort();
    entries.dedup();
    let mut reasons = Vec::new();
    for entry in entries {
        let (before, after) = (old.get(entry), new.get(entry));
        if before == after {
            continue;
        }
        let describe = |runs: Option<&Vec<String>>| match runs.map(Vec::as_slice) {
            None | Some([]) => None,
            Some([one]) => Some(one.clone()),
            Some(many) => Some(format!("{} runs", many.len())),
        };
        reasons.push(Mismatch::UpstreamDiffers {
            entry: entry.clone(),
            old: describe(before),
            new: describe(after),
        });
    }
    reasons
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_string());
        match self {
            Mismatch::NotFinished(status) => write!(f, "not finished ({status})"),
            Mismatch::ParamDiffers { name, old, new } => {
                write!(f, "param `{name}`: {} -> {}", show(old), show(new))
            }
            Mismatch::UpstreamDiffers { entry, old, new } => {
                let short = |v: &Option<String>| {
                    v.as_deref()
                        .map(|s| s[..s.len().min(8)].to_string())
                        .unwrap_or_else(|| "(none)".into())
                };
                write!(
                    f,
                    "upstream `{entry}` differs: {} -> {}",
                    short(old),
                    short(new)
                )
            }
            Mismatch::CommitDiffers { old, new, files } => {
                write!(
                    f,
                    "commit differs: {} -> {}",
                    short_commit(old),
                    short_commit(new)
                )?;
                if !files.is_empty() {
                    const SHOWN: usize = 5;
                    let mut names: Vec<&str> =
                        files.iter().take(SHOWN).map(String::as_str).collect();
                    let more = files.len().saturating_sub(SHOWN);
                    let extra = format!("{more} more");
                    if more > 0 {
                        names.push(&extra);
                    }
                    write!(f, " ({})", names.join(", "))?;
                }
                Ok(())
            }
            Mismatch::DataChanged => write!(f, "data changed"),
            Mismatch::OutsideTime(label) => write!(f, "run_time outside `{label}`"),
        }
    }
}

impl fmt::Display for ExecuteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecuteReason::NoRuns => write!(f, "no earlier run"),
            ExecuteReason::NoMatch => write!(f, "no coherent earlier run"),
            ExecuteReason::UpstreamExecutes(steps) => write!(
                f,
                "upstream {} executes",
                steps
                    .iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            ExecuteReason::PolicyNever => write!(f, "--reuse=never"),
            ExecuteReason::Forced => write!(f, "--force"),
        }
    }
}

/// A commit shortened for display, keeping any dirty suffix readable.
pub fn short_commit(version: &str) -> String {
    match version.split_once('+') {
        Some((commit, rest)) => format!("{}+{}", &commit[..commit.len().min(10)], rest),
        None => version[..version.len().min(10)].to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn run(status: RunStatus, key: &RunKey) -> RunRecord {
        let time = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        RunRecord {
            run_id: "r".repeat(32),
            experiment: "Default".into(),
            entry: key.entry.clone(),
            key_value: key.key_value.clone(),
            member: None,
            run_time: time,
            start_time: time,
            end_time: None,
            status,
            params: key.params.clone(),
            upstream: key.upstream.clone(),
            data_version: key.data_version.clone(),
            code_version: key.code_version.clone(),
            code_dirty: false,
            command: String::new(),
            pid: None,
            manifest_hash: None,
        }
    }

    fn key() -> RunKey {
        RunKey {
            entry: "train".into(),
            key_value: Some("mtad_gat".into()),
            params: BTreeMap::from([("epochs".into(), "3".into())]),
            upstream: vec![("process".into(), "p1".into())],
            data_version: "d1".into(),
            code_version: "c1".into(),
        }
    }

    const LATEST: TimeSelector = TimeSelector::Latest;

    fn compare(policy: ReusePolicy) -> Comparison<'static> {
        Comparison {
            policy,
            selector: &LATEST,
        }
    }

    /// Facts in, reasons out: one table row per field of the key.
    #[test]
    fn each_key_field_has_its_reason() {
        let requested = key();
        type Case = (
            &'static str,
            fn(&mut RunRecord),
            ReusePolicy,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("same key", |_| {}, ReusePolicy::Commit, vec![]),
            (
                "failed",
                |r| r.status = RunStatus::Failed,
                ReusePolicy::Commit,
                vec!["not finished (FAILED)"],
            ),
            (
                "param",
                |r| {
                    r.params.insert("epochs".into(), "2".into());
                },
                ReusePolicy::Commit,
                vec!["param `epochs`: 2 -> 3"],
            ),
            (
                "upstream",
                |r| r.upstream = vec![("process".into(), "p0".into())],
                ReusePolicy::Commit,
                vec!["upstream `process` differs: p0 -> p1"],
            ),
            (
                "data",
                |r| r.data_version = "d0".into(),
                ReusePolicy::Any,
                vec!["data changed"],
            ),
            (
                "commit",
                |r| r.code_version = "c0".into(),
                ReusePolicy::Commit,
                vec!["commit differs: c0 -> c1"],
            ),
            (
                "commit under any",
                |r| r.code_version = "c0".into(),
                ReusePolicy::Any,
                vec![],
            ),
            (
                "one member more upstream",
                |r| r.upstream.push(("process".into(), "p2".into())),
                ReusePolicy::Commit,
                vec!["upstream `process` differs: 2 runs -> p1"],
            ),
        ];
        for (what, change, policy, expected) in cases {
            let mut stored = run(RunStatus::Finished, &requested);
            change(&mut stored);
            let reasons: Vec<String> = mismatches(&stored, &requested, compare(policy))
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(reasons, expected, "{what}");
        }
    }

    #[test]
    fn a_pinned_run_is_taken_as_it_was() {
        let requested = key();
        let mut stored = run(RunStatus::Finished, &requested);
        stored.data_version = "older".into();
        stored.code_version = "older".into();
        let day = crate::resolve::selector::parse_selector("2026-11-22").unwrap();
        let pinned = Comparison {
            policy: ReusePolicy::Commit,
            selector: &day,
        };
        assert!(mismatches(&stored, &requested, pinned).is_empty());
        let other_day = crate::resolve::selector::parse_selector("2026-11-23").unwrap();
        let reasons = mismatches(
            &stored,
            &requested,
            Comparison {
                policy: ReusePolicy::Commit,
                selector: &other_day,
            },
        );
        assert_eq!(reasons, vec![Mismatch::OutsideTime("2026-11-23".into())]);
    }

    #[test]
    fn changed_files_are_named() {
        let reason = Mismatch::CommitDiffers {
            old: "81bf1e05dd0000".into(),
            new: "81bf1e05dd0000+dirty.7f80".into(),
            files: vec!["result.json (untracked)".into()],
        };
        assert_eq!(
            reason.to_string(),
            "commit differs: 81bf1e05dd -> 81bf1e05dd+dirty.7f80 (result.json (untracked))"
        );
    }
}
