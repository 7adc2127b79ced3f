//! Fan-out: one request, one chain per member.
//!
//! A binding (one `-P` argument, or a step's default) that holds a list or whose value
//! named a group is an *axis*. A step runs once per member of every axis it reads or
//! inherits from upstream, except the axes it gathers: a gathering step runs once over
//! all of their members. Pure: a project and bound parameters in, instances out.
//!
//! ```text
//!   -P dataset=a,b  -P seed=0,1          ensemble: {depends_on: [train], gather: seed}
//!
//!   load[a] ── train[a seed=0] ──┬── ensemble[a]
//!          └── train[a seed=1] ──┘
//!   load[b] ── train[b seed=0] ──┬── ensemble[b]
//!          └── train[b seed=1] ──┘
//! ```

use std::collections::{BTreeSet, HashMap};

use crate::dag::Dag;
use crate::params::Bound;
use crate::spec::{Gather, Project};

/// One run-to-be of one step: which member of each of its axes it computes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub entry: String,
    /// `(binding, value index)` for each axis of the step, in binding order.
    pub assignment: Vec<(usize, usize)>,
    /// Instances of the step's direct dependencies that this one reads.
    pub parents: Vec<usize>,
}

/// The instances of every step of `closure` (topological order), grouped by step in
/// that order, members in axis order.
pub fn expand(project: &Project, dag: &Dag, closure: &[String], bound: &Bound) -> Vec<Instance> {
    let mut axes: HashMap<&str, BTreeSet<usize>> = HashMap::with_capacity(closure.len());
    let mut by_entry: HashMap<&str, Vec<usize>> = HashMap::with_capacity(closure.len());
    let mut instances: Vec<Instance> = Vec::with_capacity(closure.len());
    for name in closure {
        let entry = &project.entries[name];
        let parents = dag.parents(name);
        let mut own: BTreeSet<usize> = bound.steps[name]
            .values()
            .copied()
            .filter(|&b| bound.bindings[b].axis)
            .collect();
        for parent in &parents {
            own.extend(axes[parent.as_str()].iter().copied());
        }
        match &entry.gather {
            Gather::None => {}
            Gather::All => own.clear(),
            Gather::Params(params) => own.retain(|&b| !params.contains(&bound.bindings[b].param)),
        }
        let step_axes: Vec<usize> = own.iter().copied().collect();
        let mut created = Vec::new();
        for assignment in cartesian(&step_axes, bound) {
            let mut parent_instances = Vec::new();
            for parent in &parents {
                let shared = &axes[parent.as_str()];
                for &candidate in &by_entry[parent.as_str()] {
                    let agrees = instances[candidate]
                        .assignment
                        .iter()
                        .filter(|(b, _)| shared.contains(b))
                        .all(|pair| !own.contains(&pair.0) || assignment.contains(pair));
                    if agrees {
                        parent_instances.push(candidate);
                    }
                }
            }
            created.push(instances.len());
            instances.push(Instance {
                entry: name.clone(),
                assignment,
                parents: parent_instances,
            });
        }
        axes.insert(name.as_str(), own);
        by_entry.insert(name.as_str(), created);
    }
    instances
}

/// Every combination of one value per axis, the last axis varying fastest.
fn cartesian(axes: &[usize], bound: &Bound) -> Vec<Vec<(usize, usize)>> {
    let mut combinations: Vec<Vec<(usize, usize)>> = vec![Vec::new()];
    for &axis in axes {
        let count = bound.bindings[axis].values.len();
        combinations = combinations
            .into_iter()
            .flat_map(|prefix| {
                (0..count).map(move |value| {
                    let mut next = prefix.clone();
                    next.push((axis, value));
                    next
                })
            })
            .collect();
    }
    combinations
}

/// One axis value of a member, and how users read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPart {
    pub param: String,
    pub value: String,
    /// The value alone for a step's key parameter (`machine-1-1`), `name=value`
    /// otherwise (`seed=0`).
    pub text: String,
}

/// The parts of the member an assignment stands for, in axis order.
pub fn member_parts(
    project: &Project,
    bound: &Bound,
    assignment: &[(usize, usize)],
) -> Vec<MemberPart> {
    if assignment.is_empty() {
        return Vec::new();
    }
    let keys: BTreeSet<&str> = project
        .entries
        .values()
        .filter_map(|e| e.key.as_deref())
        .collect();
    assignment
        .iter()
        .map(|&(binding, value)| {
            let binding = &bound.bindings[binding];
            let value = binding.values[value].clone();
            let text = if keys.contains(binding.param.as_str()) {
                value.clone()
            } else {
                format!("{}={value}", binding.param)
            };
            MemberPart {
                param: binding.param.clone(),
                value,
                text,
            }
        })
        .collect()
}

/// The label of a member (`machine-1-1 seed=0`); `None` outside a fan-out.
pub fn member_label<'a>(parts: impl IntoIterator<Item = &'a MemberPart>) -> Option<String> {
    let texts: Vec<&str> = parts.into_iter().map(|p| p.text.as_str()).collect();
    (!texts.is_empty()).then(|| texts.join(" "))
}

/// A member label as a directory name: anything but `[A-Za-z0-9._=-]` becomes `_`.
pub fn member_dir_name(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._=-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::params;

    const SPEC: &str = "entry_points:
  load:
    key: dataset
    parameters: {dataset: {type: string, default: a}}
    command: x
  train:
    key: algorithm
    depends_on: [load]
    parameters: {algorithm: {type: string, default: m}, seed: {type: int, default: 0}}
    command: x
  ensemble:
    depends_on: [train]
    gather: seed
    command: x
  summarize:
    depends_on: [ensemble]
    gather: true
    command: x
";

    fn expanded(args: &[&str]) -> Vec<(String, Option<String>, Vec<usize>)> {
        let project = Project::parse(SPEC, Path::new("MLproject.yaml")).unwrap();
        let dag = Dag::new(&project).unwrap();
        let closure = dag.closure("summarize").unwrap();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let bound = params::bind(&project, &closure, &args).unwrap();
        expand(&project, &dag, &closure, &bound)
            .into_iter()
            .map(|i| {
                let label = member_label(&member_parts(&project, &bound, &i.assignment));
                (i.entry, label, i.parents)
            })
            .collect()
    }

    fn row(
        entry: &str,
        member: Option<&str>,
        parents: &[usize],
    ) -> (String, Option<String>, Vec<usize>) {
        (
            entry.to_string(),
            member.map(str::to_string),
            parents.to_vec(),
        )
    }

    //   load ── train ── ensemble ── summarize
    #[test]
    fn without_lists_every_step_runs_once() {
        assert_eq!(
            expanded(&[]),
            vec![
                row("load", None, &[]),
                row("train", None, &[0]),
                row("ensemble", None, &[1]),
                row("summarize", None, &[2]),
            ]
        );
    }

    //   load[a] ── train[a s0] ─┬─ ensemble[a] ─┬─ summarize
    //          └── train[a s1] ─┘               │
    //   load[b] ── train[b s0] ─┬─ ensemble[b] ─┘
    //          └── train[b s1] ─┘
    #[test]
    fn two_axes_cross_and_gathers_collapse_them() {
        assert_eq!(
            expanded(&["dataset=a,b", "seed=0,1"]),
            vec![
                row("load", Some("a"), &[]),
                row("load", Some("b"), &[]),
                row("train", Some("a seed=0"), &[0]),
                row("train", Some("a seed=1"), &[0]),
                row("train", Some("b seed=0"), &[1]),
                row("train", Some("b seed=1"), &[1]),
                row("ensemble", Some("a"), &[2, 3]),
                row("ensemble", Some("b"), &[4, 5]),
                row("summarize", None, &[6, 7]),
            ]
        );
    }

    //   load ── train[s0] ─┬─ ensemble ── summarize
    //      └─── train[s1] ─┘
    #[test]
    fn an_axis_starts_at_the_step_declaring_it() {
        assert_eq!(
            expanded(&["seed=0,1"]),
            vec![
                row("load", None, &[]),
                row("train", Some("seed=0"), &[0]),
                row("train", Some("seed=1"), &[0]),
                row("ensemble", None, &[1, 2]),
                row("summarize", None, &[3]),
            ]
        );
    }

    #[test]
    fn member_dirs_are_plain_names() {
        assert_eq!(member_dir_name("machine-1-1 seed=0"), "machine-1-1_seed=0");
        assert_eq!(member_dir_name("MSL/channels"), "MSL_channels");
    }
}
