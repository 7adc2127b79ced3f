//! The step graph: which entry points a request needs, and in which order.
//!
//! Pure: a project goes in, an ordered list of names comes out. No IO.
//!
//! ```text
//!   load ──> process ──> train ──> evaluate ──> main
//!                 └──────────────────────────┘
//! ```
//! `closure("train")` is `[load, process, train]`: upstream first, each node after all
//! of its dependencies, ties broken by name so the order is stable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::spec::Project;

/// The dependency graph of a project; an edge `a -> b` means `b` depends on `a`.
#[derive(Debug)]
pub struct Dag {
    graph: DiGraph<String, ()>,
    index: BTreeMap<String, NodeIndex>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DagError {
    /// The steps on a dependency cycle in `depends_on` order (each depends on the next),
    /// the first step repeated at the end.
    Cycle(Vec<String>),
    UnknownEntry {
        name: String,
        suggestion: Option<String>,
        available: Vec<String>,
    },
}

impl DagError {
    /// The step an error is about, to point at its line in the spec.
    pub fn step(&self) -> &str {
        match self {
            DagError::Cycle(steps) => steps.first().map_or("", String::as_str),
            DagError::UnknownEntry { name, .. } => name,
        }
    }
}

impl fmt::Display for DagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DagError::Cycle(steps) => match &steps[..] {
                [step, again] if step == again => {
                    write!(f, "dependency cycle: `{step}` depends on itself")
                }
                [first, rest @ ..] => {
                    write!(f, "dependency cycle: `{first}` depends on ")?;
                    let rest: Vec<String> = rest.iter().map(|s| format!("`{s}`")).collect();
                    write!(f, "{}", rest.join(", which depends on "))
                }
                [] => write!(f, "dependency cycle"),
            },
            DagError::UnknownEntry {
                name,
                suggestion,
                available,
            } => {
                write!(f, "no entry point `{name}`")?;
                match suggestion {
                    Some(s) => write!(f, " (did you mean `{s}`?)"),
                    None if available.is_empty() => write!(f, "; the project declares none"),
                    None => write!(f, "; available: {}", available.join(", ")),
                }
            }
        }
    }
}

impl std::error::Error for DagError {}

impl Dag {
    /// Builds the graph; fails if the dependencies contain a cycle.
    pub fn new(project: &Project) -> Result<Dag, DagError> {
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        for name in project.entries.keys() {
            index.insert(name.clone(), graph.add_node(name.clone()));
        }
        for entry in project.entries.values() {
            for dep in &entry.depends_on {
                if let (Some(&from), Some(&to)) = (index.get(dep), index.get(&entry.name)) {
                    graph.update_edge(from, to, ());
                }
            }
        }
        let dag = Dag { graph, index };
        if let Some(cycle) = dag.find_cycle() {
            return Err(DagError::Cycle(cycle));
        }
        Ok(dag)
    }

    /// `entry` and everything upstream of it, in a stable topological order.
    pub fn closure(&self, entry: &str) -> Result<Vec<String>, DagError> {
        let &start = self
            .index
            .get(entry)
            .ok_or_else(|| DagError::UnknownEntry {
                name: entry.to_string(),
                suggestion: crate::suggest::closest(entry, self.index.keys().map(String::as_str))
                    .map(str::to_string),
                available: self.index.keys().cloned().collect(),
            })?;
        let mut wanted = BTreeSet::new();
        let mut stack = vec![start];
        while let Some(node) = stack.pop() {
            if wanted.insert(node) {
                stack.extend(self.graph.neighbors_directed(node, Direction::Incoming));
            }
        }
        Ok(self.ordered(&wanted))
    }

    /// Everything downstream of `entry` (excluding it), in topological order.
    pub fn downstream(&self, entry: &str) -> Vec<String> {
        let Some(&start) = self.index.get(entry) else {
            return Vec::new();
        };
        let mut found = BTreeSet::new();
        let mut stack: Vec<NodeIndex> = self
            .graph
            .neighbors_directed(start, Direction::Outgoing)
            .collect();
        while let Some(node) = stack.pop() {
            if found.insert(node) {
                stack.extend(self.graph.neighbors_directed(node, Direction::Outgoing));
            }
        }
        self.ordered(&found)
    }

    /// Direct dependencies of `entry`, sorted.
    pub fn parents(&self, entry: &str) -> Vec<String> {
        let Some(&node) = self.index.get(entry) else {
            return Vec::new();
        };
        let mut names: Vec<String> = self
            .graph
            .neighbors_directed(node, Direction::Incoming)
            .map(|n| self.graph[n].clone())
            .collect();
        names.sort();
        names
    }

    /// Kahn's algorithm restricted to `subset`, smallest name first among ready nodes.
    fn ordered(&self, subset: &BTreeSet<NodeIndex>) -> Vec<String> {
        let mut remaining: BTreeMap<NodeIndex, usize> = subset
            .iter()
            .map(|&n| {
                let deps = self
                    .graph
                    .neighbors_directed(n, Direction::Incoming)
                    .filter(|d| subset.contains(d))
                    .count();
                (n, deps)
            })
            .collect();
        let mut ready: BTreeSet<(String, NodeIndex)> = remaining
            .iter()
            .filter(|(_, &deps)| deps == 0)
            .map(|(&n, _)| (self.graph[n].clone(), n))
            .collect();
        let mut order = Vec::with_capacity(subset.len());
        while let Some((name, node)) = ready.pop_first() {
            remaining.remove(&node);
            order.push(name);
            for next in self.graph.neighbors_directed(node, Direction::Outgoing) {
                if let Some(deps) = remaining.get_mut(&next) {
                    *deps -= 1;
                    if *deps == 0 {
                        ready.insert((self.graph[next].clone(), next));
                    }
                }
            }
        }
        order
    }

    /// Depth-first search keeping the current path, so a back edge yields the whole circle.
    fn find_cycle(&self) -> Option<Vec<String>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let mut marks = vec![Mark::New; self.graph.node_count()];
        for &root in self.index.values() {
            if marks[root.index()] != Mark::New {
                continue;
            }
            let mut path: Vec<NodeIndex> = vec![root];
            let mut iters = vec![self.sorted_children(root)];
            marks[root.index()] = Mark::OnPath;
            while let Some(children) = iters.last_mut() {
                match children.pop() {
                    Some(child) => match marks[child.index()] {
                        Mark::OnPath => {
                            let start = path.iter().position(|&n| n == child).unwrap_or(0);
                            // Edges run from a dependency to its dependent; the
                            // message reads along `depends_on`, so the path is reversed.
                            let mut cycle: Vec<String> = path[start..]
                                .iter()
                                .rev()
                                .map(|&n| self.graph[n].clone())
                                .collect();
                            cycle.insert(0, self.graph[child].clone());
                            return Some(cycle);
                        }
                        Mark::New => {
                            marks[child.index()] = Mark::OnPath;
                            path.push(child);
                            iters.push(self.sorted_children(child));
                        }
                        Mark::Done => {}
                    },
                    None => {
                        if let Some(done) = path.pop() {
                            marks[done.index()] = Mark::Done;
                        }
                        iters.pop();
                    }
                }
            }
        }
        None
    }

    fn sorted_children(&self, node: NodeIndex) -> Vec<NodeIndex> {
        let mut children: Vec<NodeIndex> = self
            .graph
            .neighbors_directed(node, Direction::Outgoing)
            .collect();
        children.sort_by(|a, b| self.graph[*b].cmp(&self.graph[*a]));
        children
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn project(edges: &[(&str, &[&str])]) -> Project {
        let mut text = String::from("entry_points:\n");
        for (name, deps) in edges {
            text.push_str(&format!(
                "  {name}:\n    command: \"true\"\n    depends_on: [{}]\n",
                deps.join(", ")
            ));
        }
        Project::parse(&text, Path::new("MLproject.yaml")).unwrap()
    }

    //   a ──> b ──> d
    //   └───> c ──┘
    #[test]
    fn closure_is_upstream_first_and_stable() {
        let p = project(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["a"]),
            ("d", &["b", "c"]),
            ("e", &[]),
        ]);
        let dag = Dag::new(&p).unwrap();
        assert_eq!(dag.closure("d").unwrap(), vec!["a", "b", "c", "d"]);
        assert_eq!(dag.closure("b").unwrap(), vec!["a", "b"]);
        assert_eq!(dag.downstream("a"), vec!["b", "c", "d"]);
        assert_eq!(dag.parents("d"), vec!["b", "c"]);
    }

    //   a ──> b ──> c ──> a
    #[test]
    fn cycle_names_every_step() {
        let p = project(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"]), ("x", &[])]);
        let err = Dag::new(&p).unwrap_err();
        assert_eq!(
            err,
            DagError::Cycle(vec!["a".into(), "c".into(), "b".into(), "a".into()])
        );
        assert_eq!(
            err.to_string(),
            "dependency cycle: `a` depends on `c`, which depends on `b`, which depends on `a`"
        );
        assert_eq!(err.step(), "a");
    }

    //   a ──> a
    #[test]
    fn a_step_depending_on_itself_says_so() {
        let p = project(&[("a", &["a"]), ("b", &[])]);
        let err = Dag::new(&p).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: `a` depends on itself");
    }

    #[test]
    fn an_unknown_entry_in_an_empty_project_says_there_are_none() {
        let err = DagError::UnknownEntry {
            name: "main".into(),
            suggestion: None,
            available: Vec::new(),
        };
        assert_eq!(
            err.to_string(),
            "no entry point `main`; the project declares none"
        );
    }

    #[test]
    fn unknown_entry_suggests() {
        let p = project(&[("train", &[])]);
        let err = Dag::new(&p).unwrap().closure("trian").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no entry point `trian` (did you mean `train`?)"
        );
    }
}
