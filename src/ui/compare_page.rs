//! Two or more runs side by side (`/compare?runs=a,b,c`, `GET /api/flow/compare`): what
//! they were computed from (key, member, data and code version, and the params of every
//! run upstream, so two evaluate runs of different datasets show it), their params with
//! differences marked, their metrics, and their curves overlaid.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Html;
use axum::Json;
use serde_json::{json, Value};

use crate::resolve::short_commit;
use crate::store::{RunRecord, Store};
use crate::ui::error::{ApiError, PageError, UiError};
use crate::ui::html::{escape, layout, number, run_link, short_id, url_decode, url_encode};
use crate::ui::run_row::metrics_json;
use crate::ui::{blocking, UiState};

/// At most this many runs in one comparison (columns stay readable).
const MAX_RUNS: usize = 20;
/// Overlaid charts drawn when the page opens.
const CHARTS_DRAWN_AT_ONCE: usize = 6;

/// One run of a comparison and what it was made from.
struct Column {
    run: RunRecord,
    /// Params of the run and of every run upstream, as `entry.param`.
    lineage_params: BTreeMap<String, String>,
    metrics: BTreeMap<String, f64>,
    /// Keys with a curve (latest step above zero).
    curves: BTreeSet<String>,
}

/// Run ids from `runs=a,b` and/or repeated `run=a&run=b` (what the runs table's form sends).
fn run_ids(query: Option<&str>) -> Result<Vec<String>, UiError> {
    let mut ids = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name == "runs" || name == "run" {
            let value = url_decode(value);
            ids.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                    .map(str::to_string),
            );
        }
    }
    ids.dedup();
    if ids.len() < 2 {
        return Err(UiError::bad_request(
            "pick at least two runs to compare: `/compare?runs=<id>,<id>`",
        ));
    }
    if ids.len() > MAX_RUNS {
        return Err(UiError::bad_request(format!(
            "at most {MAX_RUNS} runs can be compared at once, not {}",
            ids.len()
        )));
    }
    Ok(ids)
}

fn load(store: &Store, ids: &[String]) -> Result<Vec<Column>, UiError> {
    ids.iter()
        .map(|id| {
            let run = store.get_run(id)?;
            let latest = store.latest_points(&run.run_id)?;
            Ok(Column {
                lineage_params: lineage_params(store, &run)?,
                metrics: latest.iter().map(|p| (p.key.clone(), p.value)).collect(),
                curves: latest
                    .iter()
                    .filter(|p| p.step > 0)
                    .map(|p| p.key.clone())
                    .collect(),
                run,
            })
        })
        .collect()
}

/// The run's own params — its key params and those it logged itself (through `flow log`
/// or the tracking API, where an mlflow client keeps its params) — by name, and
/// `entry.param` for every run upstream of it (what `flow compare` shows too).
pub fn lineage_params(
    store: &Store,
    run: &RunRecord,
) -> crate::store::Result<BTreeMap<String, String>> {
    let mut params = run.params.clone();
    params.extend(store.logged_params(&run.run_id)?);
    let mut seen = BTreeSet::from([run.run_id.clone()]);
    let mut queue: Vec<RunRecord> = Vec::new();
    for (_, id) in &run.upstream {
        if let Ok(upstream) = store.get_run(id) {
            queue.push(upstream);
        }
    }
    while let Some(current) = queue.pop() {
        if !seen.insert(current.run_id.clone()) || seen.len() > 64 {
            continue;
        }
        for (key, value) in &current.params {
            params.insert(format!("{}.{key}", current.entry), value.clone());
        }
        for (_, id) in &current.upstream {
            if let Ok(upstream) = store.get_run(id) {
                queue.push(upstream);
            }
        }
    }
    Ok(params)
}

/// `GET /api/flow/compare?runs=a,b`.
pub async fn api_compare(
    State(state): State<Arc<UiState>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let ids = run_ids(query.as_deref())?;
    let columns = blocking(&state, move |state| load(&state.store, &ids)).await?;
    let runs: Vec<Value> = columns
        .iter()
        .map(|column| {
            json!({
                "run_id": column.run.run_id,
                "entry": column.run.entry,
                "key": column.run.key_value,
                "member": column.run.member,
                "status": column.run.status.as_str(),
                "data_version": column.run.data_version,
                "code_version": column.run.code_version,
                "params": column.lineage_params,
                "metrics": metrics_json(&column.metrics),
                "curves": column.curves,
            })
        })
        .collect();
    let differing: Vec<String> = union(columns.iter().map(|c| &c.lineage_params))
        .into_iter()
        .filter(|key| differs(columns.iter().map(|c| c.lineage_params.get(key))))
        .collect();
    Ok(Json(json!({ "runs": runs, "differing_params": differing })))
}

/// `GET /compare?runs=a,b,...`.
pub async fn page(
    State(state): State<Arc<UiState>>,
    RawQuery(query): RawQuery,
) -> Result<Html<String>, PageError> {
    let ids = run_ids(query.as_deref())?;
    let html = blocking(&state, move |state| {
        let columns = load(&state.store, &ids)?;
        Ok(layout("Compare", state.page_token(), &render(&columns)))
    })
    .await?;
    Ok(Html(html))
}

fn union<'a>(maps: impl Iterator<Item = &'a BTreeMap<String, String>>) -> BTreeSet<String> {
    maps.flat_map(|map| map.keys().cloned()).collect()
}

fn differs<'a>(values: impl Iterator<Item = Option<&'a String>>) -> bool {
    let values: Vec<Option<&String>> = values.collect();
    values.windows(2).any(|pair| pair[0] != pair[1])
}

fn render(columns: &[Column]) -> String {
    let mut out = String::from(
        "<h1>Compare runs</h1><table class=\"compare\" id=\"compare-table\"><thead><tr><th></th>",
    );
    for column in columns {
        let _ = write!(
            out,
            "<th>{} {}</th>",
            escape(&column.run.entry),
            run_link(&column.run.run_id)
        );
    }
    out.push_str("</tr></thead><tbody>");
    let mut row = |name: &str, cells: Vec<String>, class: &str| {
        let differ = cells.windows(2).any(|pair| pair[0] != pair[1]);
        let _ = write!(
            out,
            "<tr class=\"{class}{}\"><th>{}</th>",
            if differ { " differs" } else { "" },
            escape(name)
        );
        for cell in cells {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>");
    };
    row(
        "status",
        columns.iter().map(|c| c.run.status.to_string()).collect(),
        "meta",
    );
    row(
        "key",
        columns
            .iter()
            .map(|c| c.run.key_value.clone().unwrap_or_default())
            .collect(),
        "meta",
    );
    row(
        "member",
        columns
            .iter()
            .map(|c| c.run.member.clone().unwrap_or_default())
            .collect(),
        "meta",
    );
    row(
        "commit",
        columns
            .iter()
            .map(|c| short_commit(&c.run.code_version))
            .collect(),
        "meta",
    );
    row(
        "data version",
        columns
            .iter()
            .map(|c| c.run.data_version.chars().take(12).collect())
            .collect(),
        "meta",
    );
    for key in union(columns.iter().map(|c| &c.lineage_params)) {
        row(
            &format!("param {key}"),
            columns
                .iter()
                .map(|c| {
                    c.lineage_params
                        .get(&key)
                        .cloned()
                        .unwrap_or_else(|| "—".into())
                })
                .collect(),
            "param",
        );
    }
    let metric_keys: BTreeSet<String> = columns
        .iter()
        .flat_map(|c| c.metrics.keys().cloned())
        .collect();
    for key in &metric_keys {
        row(
            &format!("metric {key}"),
            columns
                .iter()
                .map(|c| {
                    c.metrics
                        .get(key)
                        .map(|v| number(*v))
                        .unwrap_or_else(|| "—".into())
                })
                .collect(),
            "metric",
        );
    }
    out.push_str("</tbody></table>");

    let curve_keys: BTreeSet<&String> = columns.iter().flat_map(|c| c.curves.iter()).collect();
    if !curve_keys.is_empty() {
        out.push_str("<h2>Curves</h2><div class=\"charts\" id=\"overlays\">");
        for (index, key) in curve_keys.iter().enumerate() {
            let having: Vec<&Column> = columns.iter().filter(|c| c.curves.contains(*key)).collect();
            let sources: Vec<String> = having
                .iter()
                .map(|c| {
                    format!(
                        "/api/flow/runs/{}/metrics/{}",
                        c.run.run_id,
                        url_encode(key)
                    )
                })
                .collect();
            let labels: Vec<String> = having
                .iter()
                .map(|c| format!("{} {}", c.run.entry, short_id(&c.run.run_id)))
                .collect();
            let _ = write!(
                out,
                "<figure class=\"chart-box\"><figcaption>{key}</figcaption><div class=\"chart\" data-series=\"{src}\" data-labels=\"{labels}\" {lazy}></div></figure>",
                key = escape(key),
                src = escape(&sources.join("|")),
                labels = escape(&labels.join("|")),
                lazy = if index < CHARTS_DRAWN_AT_ONCE { "" } else { "data-lazy=\"1\"" },
            );
        }
        out.push_str("</div>");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_either_spelling() {
        assert_eq!(run_ids(Some("runs=ab%2Ccd")).unwrap(), ["ab", "cd"]);
        assert_eq!(run_ids(Some("run=ab&run=cd")).unwrap(), ["ab", "cd"]);
        assert!(run_ids(Some("run=ab")).is_err());
        assert!(run_ids(None).is_err());
    }
}
