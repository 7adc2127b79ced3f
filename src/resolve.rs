//! The resolver: for each step of a request, reuse the newest coherent run or execute.
//!
//! A stored run of step S is reusable iff it FINISHED, its params equal the requested
//! ones (defaults applied), its recorded upstream runs are exactly the resolved upstream
//! runs, its data version equals the current one, its code version matches the reuse
//! policy, and its run_time satisfies any `*_time` selector. Decisions and rejections are
//! values; `cli` renders them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Duration, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

use crate::dag::Dag;
use crate::params::{self, StepParams};
use crate::spec::{self, Entry, ParamType, Project};
use crate::store::{ReuseQuery, RunKey, RunRecord, RunStatus, Store};
use crate::version::{self, CodeVersion, HashCache};

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

/// Resolves model URIs (`models:/...`, `runs:/...`) found in `uri` parameters. The
/// caller provides it: the registry sits above resolve in the import order.
pub trait ModelUris {
    /// The bundle a URI names, or `None` when the model, version, stage or alias does
    /// not exist (yet); other problems are errors.
    fn resolve(&self, uri: &str) -> Result<Option<ResolvedUri>>;
}

/// A model URI resolved to the run that published the bundle.
#[derive(Debug, Clone)]
pub struct ResolvedUri {
    pub run_id: String,
    pub dir: PathBuf,
}

/// No model URIs resolve (for callers without a registry).
pub struct NoModels;

impl ModelUris for NoModels {
    fn resolve(&self, _uri: &str) -> Result<Option<ResolvedUri>> {
        Ok(None)
    }
}

/// A `*_time` parameter value: which run_times are acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeSelector {
    Latest,
    /// Runs with `from <= run_time < to`; `label` is what the user wrote.
    Window {
        label: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

/// The decision for one step.
#[derive(Debug, Clone)]
pub enum Decision {
    Reuse(Box<RunRecord>),
    Execute(ExecuteReason),
    /// An entry point without a command (a target such as `main`): nothing to run.
    Target,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ExecuteReason {
    NoRuns,
    NoMatch,
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
    },
    DataChanged,
    OutsideTime(String),
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub run: RunRecord,
    pub reasons: Vec<Mismatch>,
}

/// The resolved plan of one step.
#[derive(Debug, Clone)]
pub struct StepPlan {
    pub entry: String,
    /// All bound parameter values (time selectors included), for the command.
    pub values: StepParams,
    /// The values compared for reuse and stored with a run (time selectors excluded).
    pub params: StepParams,
    pub key_value: Option<String>,
    pub selector: TimeSelector,
    /// Upstream runs by entry, when every upstream step is reused.
    pub upstream_runs: Vec<(String, String)>,
    /// Every upstream step of the closure, transitively (for `FLOW_INPUT_*`).
    pub ancestors: Vec<String>,
    /// Nearest upstream steps with commands (targets looked through).
    pub upstream_steps: Vec<String>,
    /// Runs whose model bundles `uri` parameters resolved to, as (`model`, run id):
    /// lineage edges and part of the reuse key like upstream runs.
    pub model_inputs: Vec<(String, String)>,
    pub data_version: Option<String>,
    pub decision: Decision,
    pub rejected: Vec<Rejection>,
    /// The command with parameters substituted, shell-quoted.
    pub command: Option<String>,
}

/// Which earlier runs a plan may take: the policy, and steps forced to execute anyway.
#[derive(Debug, Clone, Copy)]
pub struct Reuse<'a> {
    pub policy: ReusePolicy,
    /// Entry points to execute even when a run could be reused (`--force`).
    pub force: &'a [String],
}

/// The whole plan, in topological order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub entry: String,
    pub steps: Vec<StepPlan>,
    pub code: CodeVersion,
    pub policy: ReusePolicy,
}

/// How many rejected candidates a plan explains per step.
const EXPLAINED_CANDIDATES: usize = 5;

impl Plan {
    /// Resolves `entry` with `-P` arguments against the store, without executing anything.
    pub fn resolve(
        project: &Project,
        dag: &Dag,
        store: &Store,
        entry: &str,
        args: &[String],
        reuse: Reuse<'_>,
        models: &dyn ModelUris,
    ) -> Result<Plan> {
        let Reuse { policy, force } = reuse;
        let closure = dag.closure(entry)?;
        for step in force {
            if !closure.contains(step) {
                bail!(
                    "`--force {step}`: `{entry}` does not run a step named `{step}`; its steps are {}",
                    closure.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                );
            }
        }
        let bound = params::bind(project, &closure, args)?;
        let code = CodeVersion::of(&project.dir, store.dir())?;
        let mut cache = HashCache::open(store.dir().join("hash-cache.json"));
        let mut steps: Vec<StepPlan> = Vec::with_capacity(closure.len());
        for name in &closure {
            let mut step = resolve_step(
                project,
                dag,
                store,
                &project.entries[name],
                &bound[name],
                &steps,
                &code,
                policy,
                models,
                &mut cache,
            )?;
            if force.contains(name) && matches!(step.decision, Decision::Reuse(_)) {
                // Its downstream steps see an executing upstream and follow.
                step.decision = Decision::Execute(ExecuteReason::Forced);
            }
            steps.push(step);
        }
        cache.save();
        Ok(Plan {
            entry: entry.to_string(),
            steps,
            code,
            policy,
        })
    }

    pub fn step(&self, entry: &str) -> Option<&StepPlan> {
        self.steps.iter().find(|s| s.entry == entry)
    }
}

#[allow(clippy::too_many_arguments)]
fn resolve_step(
    project: &Project,
    dag: &Dag,
    store: &Store,
    entry: &Entry,
    values: &StepParams,
    done: &[StepPlan],
    code: &CodeVersion,
    policy: ReusePolicy,
    models: &dyn ModelUris,
    cache: &mut HashCache,
) -> Result<StepPlan> {
    let mut values = values.clone();
    let (model_inputs, compared) = resolve_model_params(entry, &mut values, models)?;
    let values = &values;
    let mut selector = TimeSelector::Latest;
    let mut params = StepParams::new();
    for (name, value) in values {
        if entry.parameters[name].is_time_selector() {
            selector = parse_selector(value)
                .with_context(|| format!("step `{}`: parameter `{name}`", entry.name))?;
        } else {
            params.insert(name.clone(), compared.get(name).unwrap_or(value).clone());
        }
    }
    let key_value = entry.key.as_ref().and_then(|k| values.get(k)).cloned();
    let upstream_steps = nearest_commands(project, dag, &entry.name);
    let ancestors: Vec<String> = dag
        .closure(&entry.name)?
        .into_iter()
        .filter(|s| *s != entry.name && project.entries[s].command.is_some())
        .collect();
    let command = entry.command.as_ref().map(|template| {
        spec::substitute(template, |name| values.get(name).map(|v| shell_quote(v)))
    });
    let mut plan = StepPlan {
        entry: entry.name.clone(),
        values: values.clone(),
        params,
        key_value,
        selector,
        upstream_runs: Vec::new(),
        ancestors,
        upstream_steps: upstream_steps.clone(),
        model_inputs: model_inputs.clone(),
        data_version: None,
        decision: Decision::Target,
        rejected: Vec::new(),
        command,
    };
    if entry.command.is_none() {
        return Ok(plan);
    }

    let executing: Vec<String> = upstream_steps
        .iter()
        .filter(|s| {
            matches!(
                done.iter().find(|d| &d.entry == *s).map(|d| &d.decision),
                Some(Decision::Execute(_))
            )
        })
        .cloned()
        .collect();
    if !executing.is_empty() {
        if let TimeSelector::Window { label, .. } = &plan.selector {
            bail!(
                "step `{}` is pinned to run_time `{label}`, but its upstream {} will execute anew, so no run of that time can match",
                entry.name,
                executing.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
            );
        }
        plan.decision = Decision::Execute(ExecuteReason::UpstreamExecutes(executing));
        return Ok(plan);
    }

    let mut manifests = Vec::new();
    for upstream in &upstream_steps {
        if let Some(Decision::Reuse(run)) = done
            .iter()
            .find(|d| &d.entry == upstream)
            .map(|d| &d.decision)
        {
            plan.upstream_runs
                .push((upstream.clone(), run.run_id.clone()));
            manifests.push((
                upstream.clone(),
                run.manifest_hash.clone().unwrap_or_default(),
            ));
        }
    }
    plan.upstream_runs.extend(model_inputs);
    plan.data_version = Some(if upstream_steps.is_empty() {
        if entry.inputs.is_empty() {
            "none".to_string()
        } else {
            let globs: Vec<String> = entry
                .inputs
                .iter()
                .map(|g| spec::substitute(g, |name| values.get(name).cloned()))
                .collect();
            version::data_version_of_inputs(&project.dir, &globs, cache)
                .with_context(|| format!("step `{}`: cannot compute its data version", entry.name))?
                .0
        }
    } else {
        version::data_version_of_upstream(&manifests)
    });

    let pinned = matches!(plan.selector, TimeSelector::Window { .. });
    if policy == ReusePolicy::Never && !pinned {
        plan.decision = Decision::Execute(ExecuteReason::PolicyNever);
        return Ok(plan);
    }
    // A run pinned by time is taken as it was: its code and data may be older by design.
    let code_id = code.id();
    let window = match &plan.selector {
        TimeSelector::Window { from, to, .. } => Some((*from, *to)),
        TimeSelector::Latest => None,
    };
    let key = RunKey {
        entry: entry.name.clone(),
        key_value: plan.key_value.clone(),
        params: plan.params.clone(),
        upstream: plan.upstream_runs.clone(),
        data_version: plan.data_version.clone().unwrap_or_default(),
        code_version: code_id.clone(),
    };
    let query = ReuseQuery {
        key: &key,
        match_data: !pinned,
        match_code: !pinned && policy != ReusePolicy::Any,
        run_time: window,
    };
    let found = store.find_reusable(&query)?;
    let recent = store.recent_runs(&entry.name, plan.key_value.as_deref(), EXPLAINED_CANDIDATES)?;
    for run in recent {
        if let Some(chosen) = &found {
            if run.run_id == chosen.run_id || run.run_time <= chosen.run_time {
                break;
            }
        }
        let reasons = mismatches(&run, &plan, &code_id, policy, pinned);
        plan.rejected.push(Rejection { run, reasons });
    }
    plan.decision = match found {
        Some(run) => Decision::Reuse(Box::new(run)),
        None if pinned => {
            let TimeSelector::Window { label, .. } = &plan.selector else {
                unreachable!()
            };
            bail!(
                "no finished run of `{}` matches run_time `{label}` with these parameters and upstream runs\nhint: list them with `flow runs list --entry {}`",
                entry.name,
                entry.name
            );
        }
        None if plan.rejected.is_empty() => Decision::Execute(ExecuteReason::NoRuns),
        None => Decision::Execute(ExecuteReason::NoMatch),
    };
    Ok(plan)
}

/// Why `run` does not satisfy `plan`; empty when it would.
fn mismatches(
    run: &RunRecord,
    plan: &StepPlan,
    code_id: &str,
    policy: ReusePolicy,
    pinned: bool,
) -> Vec<Mismatch> {
    let mut reasons = Vec::new();
    if run.status != RunStatus::Finished {
        reasons.push(Mismatch::NotFinished(run.status));
    }
    let mut names: Vec<&String> = run.params.keys().chain(plan.params.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (old, new) = (run.params.get(name), plan.params.get(name));
        if old != new {
            reasons.push(Mismatch::ParamDiffers {
                name: name.clone(),
                old: old.cloned(),
                new: new.cloned(),
            });
        }
    }
    let old_up: BTreeMap<&String, &String> = run.upstream.iter().map(|(e, r)| (e, r)).collect();
    let new_up: BTreeMap<&String, &String> =
        plan.upstream_runs.iter().map(|(e, r)| (e, r)).collect();
    let mut entries: Vec<&String> = old_up.keys().chain(new_up.keys()).copied().collect();
    entries.sort();
    entries.dedup();
    for entry in entries {
        let (old, new) = (old_up.get(entry), new_up.get(entry));
        if old != new {
            reasons.push(Mismatch::UpstreamDiffers {
                entry: entry.clone(),
                old: old.map(|s| s.to_string()),
                new: new.map(|s| s.to_string()),
            });
        }
    }
    if !pinned {
        if Some(&run.data_version) != plan.data_version.as_ref() {
            reasons.push(Mismatch::DataChanged);
        }
        if policy == ReusePolicy::Commit && run.code_version != code_id {
            reasons.push(Mismatch::CommitDiffers {
                old: run.code_version.clone(),
                new: code_id.to_string(),
            });
        }
    }
    if let TimeSelector::Window { label, from, to } = &plan.selector {
        if run.run_time < *from || run.run_time >= *to {
            reasons.push(Mismatch::OutsideTime(label.clone()));
        }
    }
    reasons
}

/// Replaces model URIs in `uri` parameters: the command gets the bundle directory, the
/// compared value names the resolved run (so promoting another version re-executes),
/// and the run becomes a lineage edge. A *default* URI that does not resolve yet becomes
/// `auto`, leaving the choice to the step.
fn resolve_model_params(
    entry: &Entry,
    values: &mut StepParams,
    models: &dyn ModelUris,
) -> Result<(Vec<(String, String)>, StepParams)> {
    let mut inputs = Vec::new();
    let mut compared = StepParams::new();
    for (name, parameter) in &entry.parameters {
        let Some(value) = values.get(name).cloned() else {
            continue;
        };
        if parameter.kind != ParamType::Uri
            || !(value.starts_with("models:/") || value.starts_with("runs:/"))
        {
            continue;
        }
        match models.resolve(&value)? {
            Some(resolved) => {
                values.insert(name.clone(), resolved.dir.to_string_lossy().to_string());
                compared.insert(name.clone(), format!("{value} ({})", resolved.run_id));
                inputs.push(("model".to_string(), resolved.run_id));
            }
            None if parameter.default.as_deref() == Some(value.as_str()) => {
                values.insert(name.clone(), "auto".to_string());
            }
            None => bail!(
                "step `{}`: parameter `{name}`: `{value}` names no model bundle\nhint: see `flow models list`",
                entry.name
            ),
        }
    }
    Ok((inputs, compared))
}

/// The nearest upstream entries that have commands, looking through command-less targets.
fn nearest_commands(project: &Project, dag: &Dag, entry: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = dag.parents(entry);
    while let Some(parent) = stack.pop() {
        if project.entries[&parent].command.is_some() {
            if !found.contains(&parent) {
                found.push(parent);
            }
        } else {
            stack.extend(dag.parents(&parent));
        }
    }
    found.sort();
    found
}

/// Parses a `*_time` value: `latest`, a day `2026-11-22` (local time), or a timestamp.
pub fn parse_selector(text: &str) -> Result<TimeSelector> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("latest") {
        return Ok(TimeSelector::Latest);
    }
    let label = text.to_string();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = day
            .and_hms_opt(0, 0, 0)
            .and_then(|t| Local.from_local_datetime(&t).earliest());
        let end = day
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|t| Local.from_local_datetime(&t).earliest());
        if let (Some(start), Some(end)) = (start, end) {
            return Ok(TimeSelector::Window {
                label,
                from: start.with_timezone(&Utc),
                to: end.with_timezone(&Utc),
            });
        }
    }
    let precise = text.contains('.');
    let span = if precise {
        Duration::milliseconds(1)
    } else {
        Duration::seconds(1)
    };
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        let from = instant.with_timezone(&Utc);
        return Ok(TimeSelector::Window {
            label,
            from,
            to: from + span,
        });
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            if let Some(local) = Local.from_local_datetime(&naive).earliest() {
                let from = local.with_timezone(&Utc);
                return Ok(TimeSelector::Window {
                    label,
                    from,
                    to: from + span,
                });
            }
        }
    }
    bail!("`{text}` is not a time selector: use `latest`, a day like `2026-11-22`, or a timestamp like `2026-11-22T14:03:00Z`")
}

/// Quotes a value for `sh` so it arrives as one literal argument.
pub fn shell_quote(value: &str) -> String {
    let safe = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
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
            Mismatch::CommitDiffers { old, new } => {
                write!(
                    f,
                    "commit differs: {} -> {}",
                    short_commit(old),
                    short_commit(new)
                )
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

/// Resolves the project in `dir` (a convenience for callers holding only a path).
pub fn load_project(dir: &Path) -> Result<(Project, Dag)> {
    let project = Project::load(dir)?;
    let dag = Dag::new(&project)?;
    Ok((project, dag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_injection_literal() {
        assert_eq!(shell_quote("MSL"), "MSL");
        assert_eq!(shell_quote("x; rm -rf y"), "'x; rm -rf y'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn selectors_parse_days_and_instants() {
        assert_eq!(parse_selector("latest").unwrap(), TimeSelector::Latest);
        let TimeSelector::Window { from, to, .. } = parse_selector("2026-11-22").unwrap() else {
            panic!()
        };
        assert_eq!(to - from, Duration::hours(24));
        let TimeSelector::Window { from, to, .. } = parse_selector("2026-11-22T10:00:00Z").unwrap()
        else {
            panic!()
        };
        assert_eq!(to - from, Duration::seconds(1));
        assert!(parse_selector("yesterday")
            .unwrap_err()
            .to_string()
            .contains("not a time selector"));
    }
}
