//! The resolver: for each step run of a request, reuse the newest coherent run or execute.
//!
//! A stored run of step S is reusable iff it FINISHED, its params equal the requested
//! ones (defaults applied), its recorded upstream runs are exactly the resolved upstream
//! runs, its data version equals the current one, its code version matches the reuse
//! policy, and its run_time satisfies any `*_time` selector. A request fans out into one
//! chain per member (`fanout`); every node of the plan is decided on its own.
//! Decisions and rejections are values (`decision`); `cli` renders them.

mod decision;
mod fanout;
mod members;
mod models;
mod selector;

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Context, Result};

use crate::dag::Dag;
use crate::params::{self, Bound, StepParams};
use crate::shell;
use crate::spec::{Project, Resources};
use crate::store::{ReuseQuery, RunKey, RunRecord, Store};
use crate::version::{self, CodeVersion, HashCache};

pub use decision::{
    mismatches, short_commit, Comparison, Decision, ExecuteReason, Mismatch, Rejection, ReusePolicy,
};
pub use fanout::{member_dir_name, member_label, MemberPart};
pub use models::{ModelUris, NoModels, ResolvedUri};
pub use selector::{parse_selector, run_clock, TimeSelector};

/// Which earlier runs a plan may take: the policy, and steps forced to execute anyway.
#[derive(Debug, Clone, Copy)]
pub struct Reuse<'a> {
    pub policy: ReusePolicy,
    /// Entry points to execute even when a run could be reused (`--force`).
    pub force: &'a [String],
}

/// The whole plan: one node per step run, in topological order (step by step, members
/// in order within a step).
#[derive(Debug, Clone)]
pub struct Plan {
    pub entry: String,
    pub nodes: Vec<Node>,
    pub code: CodeVersion,
    pub policy: ReusePolicy,
    /// The fan-out axes: parameter and members, in binding order.
    pub axes: Vec<(String, Vec<String>)>,
}

/// One step run of the plan.
#[derive(Debug, Clone)]
pub struct Node {
    pub entry: String,
    /// The fan-out member (`machine-1-1`, `seed=0`); `None` outside a fan-out and for
    /// steps that gather every axis.
    pub member: Option<String>,
    /// The member's axis values, in axis order.
    pub member_parts: Vec<MemberPart>,
    /// All bound parameter values (time selectors included), for the command.
    pub values: StepParams,
    /// The key, complete when every upstream node is reused; the executor fills in the
    /// upstream runs and data version of a node whose upstream executes.
    pub key: RunKey,
    pub selector: TimeSelector,
    /// Nodes of the direct dependencies (targets included).
    pub parents: Vec<usize>,
    /// The nearest upstream nodes with commands (targets looked through): the runs this
    /// run reads.
    pub upstream: Vec<usize>,
    /// Runs whose model bundles `uri` parameters resolved to, as (`model`, run id):
    /// lineage edges and part of the key like upstream runs.
    pub model_inputs: Vec<(String, String)>,
    pub decision: Decision,
    pub rejected: Vec<Rejection>,
    /// The command with parameters substituted, shell-quoted; `None` for a target.
    pub command: Option<String>,
    pub resources: Resources,
}

impl Node {
    /// The member's axis values (`dataset` -> `machine-1-1`).
    pub fn member_params(&self) -> BTreeMap<String, String> {
        self.member_parts
            .iter()
            .map(|p| (p.param.clone(), p.value.clone()))
            .collect()
    }

    /// `entry [member]`, the way plans and logs name a node.
    pub fn label(&self) -> String {
        match &self.member {
            Some(member) => format!("{} [{member}]", self.entry),
            None => self.entry.clone(),
        }
    }
}

/// The tag recording the commit a run's code was taken from.
pub const COMMIT_TAG: &str = "flow.commit";

/// How many rejected candidates a plan explains per node.
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
        let closure = dag.closure(entry)?;
        for step in reuse.force {
            if !closure.contains(step) {
                bail!(
                    "`--force {step}`: `{entry}` does not run a step named `{step}`; its steps are {}",
                    closure.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                );
            }
        }
        let mut bound = params::bind(project, &closure, args)?;
        members::expand_groups(project, &closure, &mut bound)?;
        let instances = fanout::expand(project, dag, &closure, &bound);
        let code = CodeVersion::of(&project.dir, store.dir())?;
        let mut resolver = Resolver {
            project,
            bound: &bound,
            store,
            code: &code,
            reuse,
            models,
            cache: HashCache::open(store.dir().join("hash-cache.json")),
            nodes: Vec::with_capacity(instances.len()),
            code_versions: BTreeMap::new(),
        };
        let mut missing: Vec<String> = Vec::new();
        for (index, instance) in instances.iter().enumerate() {
            let (node, pinned_miss) = resolver.node(instance)?;
            if pinned_miss {
                missing.push(node.member.clone().unwrap_or_else(|| node.entry.clone()));
            }
            let last_of_step = instances
                .get(index + 1)
                .is_none_or(|next| next.entry != instance.entry);
            let selector = node.selector.clone();
            let step = node.entry.clone();
            resolver.nodes.push(node);
            if last_of_step && !missing.is_empty() {
                bail!(
                    "no finished run of `{step}` matches run_time `{}` with these parameters and upstream runs{}\nhint: list them with `flow runs list --entry {step}`",
                    selector.label().unwrap_or("latest"),
                    if missing.len() == 1 && missing[0] == step {
                        String::new()
                    } else {
                        format!(" for {} of {} members: {}", missing.len(), instances.iter().filter(|i| i.entry == step).count(), missing.join(", "))
                    }
                );
            }
        }
        resolver.cache.save();
        let nodes = resolver.nodes;
        // Bindings a later `-P` overrode everywhere read nothing and fan nothing out.
        let used: BTreeSet<usize> = bound
            .steps
            .values()
            .flat_map(|p| p.values().copied())
            .collect();
        let axes = used
            .into_iter()
            .map(|b| &bound.bindings[b])
            .filter(|b| b.axis)
            .map(|b| (b.param.clone(), b.values.clone()))
            .collect();
        Ok(Plan {
            entry: entry.to_string(),
            nodes,
            code,
            policy: reuse.policy,
            axes,
        })
    }

    /// The nodes of one step, in member order.
    pub fn nodes_of<'a>(&'a self, entry: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes.iter().filter(move |n| n.entry == entry)
    }
}

/// The state of one resolution: the nodes decided so far.
struct Resolver<'a> {
    project: &'a Project,
    bound: &'a Bound,
    store: &'a Store,
    code: &'a CodeVersion,
    reuse: Reuse<'a>,
    models: &'a dyn ModelUris,
    cache: HashCache,
    nodes: Vec<Node>,
    /// Code versions of entries that declare `code:`, computed once per plan.
    code_versions: BTreeMap<String, String>,
}

impl Resolver<'_> {
    /// Decides one instance; the flag says it is pinned by time and nothing matched.
    fn node(&mut self, instance: &fanout::Instance) -> Result<(Node, bool)> {
        let project = self.project;
        let entry = &project.entries[&instance.entry];
        let mut values = self.values(instance);
        let plain = values.clone();
        let lookup = |name: &str| {
            plain
                .get(name)
                .cloned()
                .or_else(|| self.upstream_value(&instance.parents, name))
        };
        let resolved = models::resolve_model_params(entry, &mut values, &lookup, self.models)?;
        let mut selector = TimeSelector::Latest;
        let mut params = StepParams::new();
        for (name, value) in &values {
            if entry.parameters[name].is_time_selector() {
                selector = parse_selector(value)
                    .with_context(|| format!("step `{}`: parameter `{name}`", entry.name))?;
            } else {
                let compared = resolved.compared.get(name).unwrap_or(value);
                params.insert(name.clone(), compared.clone());
            }
        }
        let mut upstream: Vec<usize> = Vec::new();
        for &parent in &instance.parents {
            let node = &self.nodes[parent];
            let nearest = if node.command.is_some() {
                vec![parent]
            } else {
                node.upstream.clone()
            };
            for index in nearest {
                if !upstream.contains(&index) {
                    upstream.push(index);
                }
            }
        }
        let member_parts = fanout::member_parts(project, self.bound, &instance.assignment);
        let member = fanout::member_label(&member_parts);
        let mut node = Node {
            entry: entry.name.clone(),
            member,
            member_parts,
            key: RunKey {
                entry: entry.name.clone(),
                key_value: entry.key.as_ref().and_then(|k| values.get(k)).cloned(),
                params,
                upstream: Vec::new(),
                data_version: String::new(),
                code_version: self.code_version(&entry.name)?,
            },
            command: entry
                .command
                .as_ref()
                .map(|template| shell::render(template, &values)),
            values,
            selector,
            parents: instance.parents.clone(),
            upstream,
            model_inputs: resolved.inputs,
            decision: Decision::Target,
            rejected: Vec::new(),
            resources: entry.resources,
        };
        if entry.command.is_none() {
            return Ok((node, false));
        }
        let pending: BTreeSet<&str> = node
            .upstream
            .iter()
            .map(|&u| &self.nodes[u])
            .filter(|u| matches!(u.decision, Decision::Execute(_) | Decision::Wait(_)))
            .map(|u| u.entry.as_str())
            .collect();
        if !pending.is_empty() {
            let names: Vec<String> = pending.into_iter().map(str::to_string).collect();
            if let Some(label) = node
                .selector
                .label()
                .filter(|_| !node.selector.admits_now())
            {
                bail!(
                    "step `{}` is pinned to run_time `{label}`, but its upstream {} will execute anew, so no run of that time can match",
                    node.label(),
                    names.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
                );
            }
            node.decision = Decision::Execute(ExecuteReason::UpstreamExecutes(names));
            return Ok((node, false));
        }
        let mut manifests = Vec::new();
        for &index in &node.upstream {
            if let Decision::Reuse(run) = &self.nodes[index].decision {
                node.key
                    .upstream
                    .push((run.entry.clone(), run.run_id.clone()));
                manifests.push((
                    run.entry.clone(),
                    run.manifest_hash.clone().unwrap_or_default(),
                ));
            }
        }
        node.key.upstream.extend(node.model_inputs.iter().cloned());
        node.key.data_version = if node.selector.window().is_some() {
            // A pinned run is taken as it was; its inputs may be gone by now.
            String::new()
        } else if node.upstream.is_empty() {
            self.source_data_version(&node)?
        } else {
            version::data_version_of_upstream(&manifests)
        };
        let mut decision = self.decide(&mut node)?;
        if decision.is_none() && node.selector.admits_now() {
            // Pinned to a window that holds now (`retrieval_time=<today>`) and nothing there
            // yet: the run made now is the one the selector asks for, with its real data
            // version.
            node.key.data_version = if node.upstream.is_empty() {
                self.source_data_version(&node)?
            } else {
                version::data_version_of_upstream(&manifests)
            };
            decision = Some(Decision::Execute(ExecuteReason::NoMatch));
        }
        let pinned_miss = decision.is_none();
        node.decision = decision.unwrap_or(Decision::Execute(ExecuteReason::NoMatch));
        if self.reuse.force.contains(&node.entry)
            && matches!(node.decision, Decision::Reuse(_) | Decision::Wait(_))
        {
            // Its downstream nodes see an executing upstream and follow.
            node.decision = Decision::Execute(ExecuteReason::Forced);
        }
        Ok((node, pinned_miss))
    }

    /// The decision for a node whose key is complete; `None` when it is pinned by time
    /// and no run matches.
    fn decide(&self, node: &mut Node) -> Result<Option<Decision>> {
        let comparison = Comparison {
            policy: self.reuse.policy,
            selector: &node.selector,
        };
        let pinned = comparison.pinned();
        if self.reuse.policy == ReusePolicy::Never && !pinned {
            return Ok(Some(Decision::Execute(ExecuteReason::PolicyNever)));
        }
        let query = ReuseQuery {
            key: &node.key,
            match_data: !pinned,
            match_code: !pinned && self.reuse.policy != ReusePolicy::Any,
            run_time: node.selector.window(),
        };
        let found = self.store.find_reusable(&query)?;
        // Members of one fan-out share a key value; another member's run is no candidate.
        let other_member = |run: &RunRecord| {
            matches!((&run.member, &node.member), (Some(theirs), Some(ours)) if theirs != ours)
                || node.member_parts.iter().any(|part| {
                    run.params
                        .get(&part.param)
                        .is_some_and(|value| *value != part.value)
                })
        };
        // Only runs newer than the one reused are explained (the walk below stops there).
        let recent = self.store.recent_runs_after(
            &node.entry,
            node.key.key_value.as_deref(),
            found.as_ref().map(|run| run.run_time),
            EXPLAINED_CANDIDATES * 8,
        )?;
        let recent = recent
            .into_iter()
            .filter(|run| !other_member(run))
            .take(EXPLAINED_CANDIDATES);
        for run in recent {
            if let Some(chosen) = &found {
                if run.run_id == chosen.run_id || run.run_time <= chosen.run_time {
                    break;
                }
            }
            let mut reasons = mismatches(&run, &node.key, comparison);
            for reason in &mut reasons {
                if let Mismatch::CommitDiffers { files, .. } = reason {
                    *files = self.changed_files(&run)?;
                }
            }
            node.rejected.push(Rejection { run, reasons });
        }
        Ok(match found {
            Some(run) => Some(Decision::Reuse(Box::new(run))),
            None if pinned => None,
            None => match self.store.find_running(&query)? {
                Some(run) => Some(Decision::Wait(Box::new(run))),
                None if node.rejected.is_empty() => Some(Decision::Execute(ExecuteReason::NoRuns)),
                None => Some(Decision::Execute(ExecuteReason::NoMatch)),
            },
        })
    }

    /// The code version runs of `entry` are keyed by: the whole work tree's, or a hash of
    /// the files its `code:` globs name.
    fn code_version(&mut self, entry: &str) -> Result<String> {
        let globs = &self.project.entries[entry].code;
        if globs.is_empty() {
            return Ok(self.code.id());
        }
        if let Some(version) = self.code_versions.get(entry) {
            return Ok(version.clone());
        }
        let version = self
            .code
            .of_globs(globs)
            .with_context(|| format!("step `{entry}`: cannot compute the version of its `code`"))?;
        self.code_versions
            .insert(entry.to_string(), version.clone());
        Ok(version)
    }

    /// The files that make `run`'s code differ from the work tree's, within its entry's
    /// `code:` globs: against the commit it ran at (its `flow.commit` tag when its code
    /// version is a hash of files), and this tree's uncommitted changes.
    fn changed_files(&self, run: &RunRecord) -> Result<Vec<String>> {
        let commit = if run.code_version.starts_with("files:") {
            match self.store.tags(&run.run_id)?.remove(COMMIT_TAG) {
                Some(commit) => commit,
                None => return Ok(Vec::new()),
            }
        } else {
            run.code_version
                .split('+')
                .next()
                .unwrap_or_default()
                .to_string()
        };
        Ok(self
            .code
            .changed_since(&commit, &self.project.entries[&run.entry].code))
    }

    /// Every parameter of the instance's step: a member's value for its axes, the value
    /// as requested for an axis it gathers, the single value otherwise.
    fn values(&self, instance: &fanout::Instance) -> StepParams {
        let bound = self.bound;
        bound.steps[&instance.entry]
            .iter()
            .map(|(param, &binding)| {
                let raw = match instance.assignment.iter().find(|(b, _)| *b == binding) {
                    Some(&(_, value)) => bound.bindings[binding].values[value].clone(),
                    None if bound.bindings[binding].axis => {
                        return (param.clone(), bound.bindings[binding].requested());
                    }
                    None => bound.bindings[binding].values[0].clone(),
                };
                let value = bound.value(self.project, &instance.entry, param, &raw);
                (param.clone(), value)
            })
            .collect()
    }

    /// The value of `name` in the nearest upstream node declaring it, for `{name}` in a
    /// model URI.
    fn upstream_value(&self, parents: &[usize], name: &str) -> Option<String> {
        let mut queue: std::collections::VecDeque<usize> = parents.iter().copied().collect();
        let mut seen = BTreeSet::new();
        while let Some(index) = queue.pop_front() {
            if !seen.insert(index) {
                continue;
            }
            let node = &self.nodes[index];
            if let Some(value) = node.values.get(name) {
                return Some(value.clone());
            }
            queue.extend(node.parents.iter().copied());
        }
        None
    }

    /// The data version of a source step: blake3 over its declared inputs.
    fn source_data_version(&mut self, node: &Node) -> Result<String> {
        let entry = &self.project.entries[&node.entry];
        if entry.inputs.is_empty() && entry.inputs_from.is_none() {
            return Ok("none".to_string());
        }
        let mut globs: Vec<String> = entry
            .inputs
            .iter()
            .map(|g| crate::spec::substitute(g, |name| node.values.get(name).cloned()))
            .collect();
        if let Some(template) = &entry.inputs_from {
            let command = shell::render(template, &node.values);
            let listed = shell::capture(&command, &self.project.dir, members::LISTING_TIMEOUT)
                .with_context(|| format!("step `{}`: cannot list its input files", node.label()))?;
            // Listed paths are files, not patterns: `[` in a name is a bracket, not a class.
            globs.extend(
                listed
                    .lines()
                    .filter(|line| !line.trim().is_empty())
                    .map(glob::Pattern::escape),
            );
        }
        Ok(
            version::data_version_of_inputs(&self.project.dir, &globs, &mut self.cache)
                .with_context(|| {
                    format!("step `{}`: cannot compute its data version", node.label())
                })?
                .0,
        )
    }
}

/// Loads and checks the project in `dir` (a convenience for callers holding only a path).
pub fn load_project(dir: &std::path::Path) -> Result<(Project, Dag)> {
    let project = Project::load(dir)?;
    let dag = Dag::new(&project)?;
    Ok((project, dag))
}
