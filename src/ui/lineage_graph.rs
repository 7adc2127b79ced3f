//! A run's lineage as a graph: every run it came from (left) and every run derived from
//! it (right), laid out in columns by distance and drawn as SVG whose nodes link to their
//! runs (`GET /api/flow/runs/{id}/lineage` gives the same nodes and edges as JSON).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::Serialize;
use serde_json::Value;

use crate::exec::rfc3339;
use crate::store::{RunRecord, Store};
use crate::ui::error::{ApiError, UiError};
use crate::ui::html::{abbreviate, escape, short_id};
use crate::ui::{blocking, UiState};

/// Runs drawn at most on each side; a load run feeding thousands of chains would
/// otherwise draw them all.
const MAX_NODES_PER_SIDE: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct GraphNode {
    pub run_id: String,
    pub entry: String,
    pub key: Option<String>,
    pub member: Option<String>,
    pub status: String,
    pub run_time: String,
    /// Columns from the run the graph is about: negative upstream, positive downstream.
    pub depth: i32,
}

#[derive(Debug, Clone, Serialize)]
pub struct GraphEdge {
    /// The upstream run.
    pub from: String,
    /// The run that consumed it.
    pub to: String,
    /// Entry the input was given as (`FLOW_INPUT_<ENTRY>`).
    pub entry: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineageGraph {
    pub run_id: String,
    pub nodes: Vec<GraphNode>,
    pub edges: Vec<GraphEdge>,
    /// True when a side had more runs than are drawn.
    pub truncated: bool,
}

impl LineageGraph {
    /// Walks `run_inputs` edges both ways from `run`, breadth first.
    pub fn build(store: &Store, run: &RunRecord) -> Result<LineageGraph, UiError> {
        let mut nodes: BTreeMap<String, GraphNode> = BTreeMap::new();
        let mut edges: Vec<GraphEdge> = Vec::new();
        let mut truncated = false;
        nodes.insert(run.run_id.clone(), node(run, 0));
        for upstream in [true, false] {
            let mut queue = VecDeque::from([(run.clone(), 0i32)]);
            let mut added = 0;
            while let Some((current, depth)) = queue.pop_front() {
                let neighbours: Vec<(String, String)> = if upstream {
                    current.upstream.clone()
                } else {
                    store
                        .downstream(&current.run_id)?
                        .into_iter()
                        .map(|id| (current.entry.clone(), id))
                        .collect()
                };
                for (entry, id) in neighbours {
                    let (from, to) = if upstream {
                        (id.clone(), current.run_id.clone())
                    } else {
                        (current.run_id.clone(), id.clone())
                    };
                    if !edges.iter().any(|e| e.from == from && e.to == to) {
                        edges.push(GraphEdge { from, to, entry });
                    }
                    if nodes.contains_key(&id) {
                        continue;
                    }
                    if added == MAX_NODES_PER_SIDE {
                        truncated = true;
                        continue;
                    }
                    // An upstream run deleted with force is still named by its edge.
                    let Ok(next) = store.get_run(&id) else {
                        continue;
                    };
                    let next_depth = if upstream { depth - 1 } else { depth + 1 };
                    nodes.insert(id.clone(), node(&next, next_depth));
                    added += 1;
                    queue.push_back((next, next_depth));
                }
            }
        }
        edges.retain(|edge| nodes.contains_key(&edge.from) && nodes.contains_key(&edge.to));
        let mut nodes: Vec<GraphNode> = nodes.into_values().collect();
        nodes.sort_by(|a, b| {
            (a.depth, &a.entry, &a.key, &a.member, &a.run_time).cmp(&(
                b.depth,
                &b.entry,
                &b.key,
                &b.member,
                &b.run_time,
            ))
        });
        Ok(LineageGraph {
            run_id: run.run_id.clone(),
            nodes,
            edges,
            truncated,
        })
    }
}

fn node(run: &RunRecord, depth: i32) -> GraphNode {
    GraphNode {
        run_id: run.run_id.clone(),
        entry: run.entry.clone(),
        key: run.key_value.clone(),
        member: run.member.clone(),
        status: run.status.as_str().to_string(),
        run_time: rfc3339(run.run_time),
        depth,
    }
}

/// `GET /api/flow/runs/{id}/lineage`: nodes (with their column) and edges.
pub async fn api_lineage(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let graph = blocking(&state, move |state| {
        let run = state.store.get_run(&id)?;
        LineageGraph::build(&state.store, &run)
    })
    .await?;
    Ok(Json(serde_json::to_value(graph).map_err(|error| {
        UiError::internal(format!("cannot encode the lineage: {error}"))
    })?))
}

const NODE_WIDTH: i32 = 180;
const NODE_HEIGHT: i32 = 46;
const COLUMN_GAP: i32 = 60;
const ROW_GAP: i32 = 14;

/// The graph as an SVG: one column per depth, nodes linking to their runs, the run the
/// page is about outlined.
pub fn lineage_svg(graph: &LineageGraph) -> String {
    if graph.nodes.len() == 1 {
        return "<p class=\"empty\" id=\"lineage\">no upstream or downstream runs</p>".to_string();
    }
    let min_depth = graph.nodes.iter().map(|n| n.depth).min().unwrap_or(0);
    let mut rows_in_column: BTreeMap<i32, i32> = BTreeMap::new();
    let mut positions: BTreeMap<&str, (i32, i32)> = BTreeMap::new();
    for node in &graph.nodes {
        let row = rows_in_column.entry(node.depth).or_insert(0);
        let x = (node.depth - min_depth) * (NODE_WIDTH + COLUMN_GAP) + 4;
        let y = *row * (NODE_HEIGHT + ROW_GAP) + 4;
        positions.insert(&node.run_id, (x, y));
        *row += 1;
    }
    let n_columns = rows_in_column.len() as i32;
    let n_rows = rows_in_column.values().copied().max().unwrap_or(1);
    let width = n_columns * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP + 8;
    let height = n_rows * (NODE_HEIGHT + ROW_GAP) - ROW_GAP + 8;
    let mut out = format!(
        "<div class=\"lineage\"><svg id=\"lineage\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"lineage graph\">"
    );
    for edge in &graph.edges {
        let (Some(&(x1, y1)), Some(&(x2, y2))) = (
            positions.get(edge.from.as_str()),
            positions.get(edge.to.as_str()),
        ) else {
            continue;
        };
        let (sx, sy) = (x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2);
        let (tx, ty) = (x2, y2 + NODE_HEIGHT / 2);
        let mid = (sx + tx) / 2;
        let _ = write!(
            out,
            "<path class=\"edge\" d=\"M{sx},{sy} C{mid},{sy} {mid},{ty} {tx},{ty}\"><title>{}</title></path>",
            escape(&edge.entry)
        );
    }
    for node in &graph.nodes {
        let (x, y) = positions[node.run_id.as_str()];
        let focus = if node.run_id == graph.run_id {
            " focus"
        } else {
            ""
        };
        let label = match (&node.key, &node.member) {
            (Some(key), Some(member)) if member != key => {
                format!("{} [{key}] {member}", node.entry)
            }
            (Some(key), _) => format!("{} [{key}]", node.entry),
            (None, Some(member)) => format!("{} {member}", node.entry),
            (None, None) => node.entry.clone(),
        };
        let _ = write!(
            out,
            "<a class=\"node{focus}\" href=\"/runs/{id}\" data-run=\"{id}\">\
             <rect x=\"{x}\" y=\"{y}\" width=\"{NODE_WIDTH}\" height=\"{NODE_HEIGHT}\" rx=\"6\" class=\"status-{status}\"/>\
             <text x=\"{tx}\" y=\"{ty1}\">{label}</text><text class=\"sub\" x=\"{tx}\" y=\"{ty2}\">{short} · {status_text}</text>\
             <title>{id} ({run_time})</title></a>",
            id = escape(&node.run_id),
            status = node.status.to_ascii_lowercase(),
            status_text = escape(&node.status),
            tx = x + 8,
            ty1 = y + 19,
            ty2 = y + 37,
            label = escape(&abbreviate(&label, 26)),
            short = escape(short_id(&node.run_id)),
            run_time = escape(&node.run_time),
        );
    }
    out.push_str("</svg></div>");
    if graph.truncated {
        let _ = write!(
            out,
            "<p class=\"note\">more than {MAX_NODES_PER_SIDE} runs on one side: the rest are not drawn</p>"
        );
    }
    out
}
