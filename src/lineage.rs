//! Provenance: the tree of runs a result came from (or what was derived from it).

use std::collections::BTreeMap;
use std::fmt::Write;

use anyhow::Result;
use serde::Serialize;

use crate::exec::rfc3339;
use crate::resolve::short_commit;
use crate::store::{RunRecord, Store};

/// One run and the runs it was computed from (or, downstream, the runs computed from it).
#[derive(Debug, Clone, Serialize)]
pub struct LineageNode {
    pub run: RunSummary,
    #[serde(rename = "upstream", skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Vec<LineageNode>>,
    #[serde(rename = "downstream", skip_serializing_if = "Option::is_none")]
    pub downstream: Option<Vec<LineageNode>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub run_id: String,
    pub entry: String,
    pub key: Option<String>,
    pub run_time: String,
    pub status: String,
    pub params: BTreeMap<String, String>,
    pub data_version: String,
    pub code_version: String,
}

impl From<&RunRecord> for RunSummary {
    fn from(run: &RunRecord) -> Self {
        RunSummary {
            run_id: run.run_id.clone(),
            entry: run.entry.clone(),
            key: run.key_value.clone(),
            run_time: rfc3339(run.run_time),
            status: run.status.to_string(),
            params: run.params.clone(),
            data_version: run.data_version.clone(),
            code_version: run.code_version.clone(),
        }
    }
}

/// Direction of a lineage walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upstream,
    Downstream,
}

/// Builds the lineage tree of `run_id` in `direction`.
pub fn build(store: &Store, run_id: &str, direction: Direction) -> Result<LineageNode> {
    let run = store.get_run(run_id)?;
    build_from(store, &run, direction, 0)
}

/// Deep enough for any real pipeline; guards against a corrupt store with a loop.
const MAX_DEPTH: usize = 64;

fn build_from(
    store: &Store,
    run: &RunRecord,
    direction: Direction,
    depth: usize,
) -> Result<LineageNode> {
    let mut children = Vec::new();
    if depth < MAX_DEPTH {
        let ids: Vec<String> = match direction {
            Direction::Upstream => run.upstream.iter().map(|(_, id)| id.clone()).collect(),
            Direction::Downstream => store.downstream(&run.run_id)?,
        };
        for id in ids {
            let child = store.get_run(&id)?;
            children.push(build_from(store, &child, direction, depth + 1)?);
        }
    }
    let (upstream, downstream) = match direction {
        Direction::Upstream => (Some(children), None),
        Direction::Downstream => (None, Some(children)),
    };
    Ok(LineageNode {
        run: RunSummary::from(run),
        upstream,
        downstream,
    })
}

impl LineageNode {
    fn children(&self) -> &[LineageNode] {
        self.upstream
            .as_deref()
            .or(self.downstream.as_deref())
            .unwrap_or(&[])
    }

    /// An indented tree, one run per line plus its params.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out, "", true, true);
        out
    }

    fn write_text(&self, out: &mut String, prefix: &str, last: bool, root: bool) {
        let run = &self.run;
        let branch = if root {
            ""
        } else if last {
            "└── "
        } else {
            "├── "
        };
        let key = run
            .key
            .as_ref()
            .map(|k| format!(" [{k}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{prefix}{branch}{} {}{key}  {}  {}  data {}  code {}",
            run.entry,
            &run.run_id[..run.run_id.len().min(12)],
            run.run_time,
            run.status,
            &run.data_version[..run.data_version.len().min(12)],
            short_commit(&run.code_version),
        );
        let child_prefix = if root {
            prefix.to_string()
        } else {
            format!("{prefix}{}", if last { "    " } else { "│   " })
        };
        if !run.params.is_empty() {
            let params: Vec<String> = run.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let bar = if self.children().is_empty() {
                "    "
            } else {
                "│   "
            };
            let _ = writeln!(out, "{child_prefix}{bar}params: {}", params.join(" "));
        }
        let children = self.children();
        for (i, child) in children.iter().enumerate() {
            child.write_text(out, &child_prefix, i + 1 == children.len(), false);
        }
    }

    /// Graphviz: runs as nodes, edges from upstream to derived runs.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph lineage {\n  rankdir=LR;\n  node [shape=box];\n");
        let mut edges = Vec::new();
        self.collect_dot(&mut out, &mut edges);
        edges.sort();
        edges.dedup();
        for edge in edges {
            out.push_str(&edge);
        }
        out.push_str("}\n");
        out
    }

    fn collect_dot(&self, out: &mut String, edges: &mut Vec<String>) {
        let run = &self.run;
        let node = format!(
            "  \"{}\" [label=\"{}\\n{}\\n{}\"];\n",
            run.run_id,
            run.entry,
            run.key.as_deref().unwrap_or(""),
            &run.run_id[..run.run_id.len().min(8)]
        );
        if !out.contains(&node) {
            out.push_str(&node);
        }
        for child in self.children() {
            let (from, to) = if self.upstream.is_some() {
                (&child.run.run_id, &run.run_id)
            } else {
                (&run.run_id, &child.run.run_id)
            };
            edges.push(format!("  \"{from}\" -> \"{to}\";\n"));
            child.collect_dot(out, edges);
        }
    }
}
