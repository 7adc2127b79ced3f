//! One run (`/runs/{id}`, `GET /api/flow/runs/{id}`): its key, params, tags, metrics with
//! their curves (`GET .../metrics/{key}`, reduced on the server), artifacts, lineage, the
//! runs that consumed it, and its log, followed while it runs (`GET .../log`).

use std::fmt::Write;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::exec::rfc3339;
use crate::resolve::short_commit;
use crate::store::{RunRecord, RunStatus};
use crate::ui::artifacts::{artifact_list_html, is_anomaly_run, is_serve_run};
use crate::ui::downsample::downsample;
use crate::ui::error::{ApiError, PageError, UiError};
use crate::ui::html::{
    escape, key_value_table, layout, number, run_link, short_id, status_badge, time, url_encode,
};
use crate::ui::lineage_graph::{lineage_svg, LineageGraph};
use crate::ui::run_row::{progress_bar, run_json};
use crate::ui::{blocking, UiState};

/// Buckets a curve is reduced to unless the request asks otherwise (about one per pixel
/// of a wide chart), and the most it may ask for.
const DEFAULT_BUCKETS: usize = 1000;
const MAX_BUCKETS: usize = 5000;
/// Curves drawn when the page opens; the others are drawn on request.
const CURVES_DRAWN_AT_ONCE: usize = 6;
/// Bytes of log one request returns at most.
const LOG_CHUNK: u64 = 64 * 1024;

/// `GET /api/flow/runs/{id}`: the run with its tags, logged params, every latest metric
/// (value and step), artifacts and the runs that consumed it.
pub async fn api_run(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let value = blocking(&state, move |state| {
        let store = &state.store;
        let run = store.get_run(&id)?;
        let tags = store.tags(&run.run_id)?;
        let latest = store.latest_points(&run.run_id)?;
        let metrics = latest
            .iter()
            .map(|point| (point.key.clone(), point.value))
            .collect();
        let mut value = run_json(&run, &metrics, &tags);
        value["logged_params"] = json!(store.logged_params(&run.run_id)?);
        value["metric_steps"] = json!(latest
            .iter()
            .map(|point| (point.key.clone(), json!(point.step)))
            .collect::<serde_json::Map<_, _>>());
        value["command"] = json!(run.command);
        value["data_version"] = json!(run.data_version);
        value["artifacts"] = json!(store.artifacts(&run.run_id)?);
        value["downstream"] = json!(store.downstream(&run.run_id)?);
        let reuses = store.reuses(&run.run_id)?;
        value["reused"] = json!({"count": reuses.count, "last": reuses.last.map(rfc3339)});
        Ok(value)
    })
    .await?;
    Ok(Json(value))
}

#[derive(Debug, Default, Deserialize)]
pub struct SeriesQuery {
    /// Buckets to reduce to (each keeps at most 4 points).
    points: Option<usize>,
    /// First and last step of the range (inclusive); both or neither.
    from: Option<i64>,
    to: Option<i64>,
}

/// `GET /api/flow/runs/{id}/metrics/{key}?points=1000&from=&to=`: the curve, reduced.
pub async fn api_metric(
    State(state): State<Arc<UiState>>,
    Path((id, key)): Path<(String, String)>,
    query: Result<Query<SeriesQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|error| UiError::bad_request(error.body_text()))?;
    let buckets = query.points.unwrap_or(DEFAULT_BUCKETS);
    if buckets == 0 || buckets > MAX_BUCKETS {
        return Err(UiError::bad_request(format!(
            "points must be between 1 and {MAX_BUCKETS}, not {buckets}"
        ))
        .into());
    }
    let range = match (query.from, query.to) {
        (Some(from), Some(to)) if from <= to => Some((from, to)),
        (None, None) => None,
        _ => {
            return Err(UiError::bad_request(
                "give both `from` and `to` (steps, from <= to) or neither",
            )
            .into())
        }
    };
    let value = blocking(&state, move |state| {
        let run = state.store.get_run(&id)?;
        let read = || state.store.metric_points(&run.run_id, &key);
        let points = if run.status == RunStatus::Running {
            std::sync::Arc::new(read()?)
        } else {
            state.series.get_or_load(&run.run_id, &key, read)?
        };
        if points.is_empty() {
            return Err(UiError::not_found(format!(
                "run {} has no metric `{key}`",
                short_id(&run.run_id)
            )));
        }
        let reduced = downsample(&points, range, buckets);
        Ok(json!({
            "run_id": run.run_id,
            "key": key,
            "first_step": points[0].0,
            "last_step": points[points.len() - 1].0,
            "total_points": reduced.total_points,
            "returned_points": reduced.points.len(),
            "min": reduced.min,
            "max": reduced.max,
            "points": reduced.points,
        }))
    })
    .await?;
    Ok(Json(value))
}

#[derive(Debug, Default, Deserialize)]
pub struct LogQuery {
    /// Byte offset to read from; absent = the last 64 KiB.
    offset: Option<u64>,
}

/// `GET /api/flow/runs/{id}/log?offset=N`: up to 64 KiB of the run's log from `offset`,
/// the offset to ask for next, and whether the run is still writing it.
pub async fn api_log(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
    query: Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|error| UiError::bad_request(error.body_text()))?;
    let value = blocking(&state, move |state| {
        let run = state.store.get_run(&id)?;
        let chunk = read_log(state, &run, query.offset)?;
        Ok(json!({
            "run_id": run.run_id,
            "status": run.status.as_str(),
            "running": run.status == RunStatus::Running,
            "offset": chunk.offset,
            "next_offset": chunk.offset + chunk.bytes_read,
            "size": chunk.size,
            "text": chunk.text,
        }))
    })
    .await?;
    Ok(Json(value))
}

struct LogChunk {
    offset: u64,
    bytes_read: u64,
    size: u64,
    text: String,
}

/// Where a run's log is: `.flow/logs/<run>.log` while it exists, else the copy among its
/// published outputs (`logs/<entry>.log`).
fn log_path(state: &UiState, run: &RunRecord) -> Result<Option<PathBuf>, UiError> {
    let live = state
        .store
        .dir()
        .join("logs")
        .join(format!("{}.log", run.run_id));
    if live.is_file() {
        return Ok(Some(live));
    }
    if run.manifest_hash.is_none() {
        return Ok(None);
    }
    let published = format!("logs/{}.log", run.entry);
    let artifacts = state.store.artifacts(&run.run_id)?;
    match artifacts.iter().find(|artifact| artifact.path == published) {
        Some(artifact) => Ok(Some(state.store.object_of(artifact)?)),
        None => Ok(None),
    }
}

fn read_log(state: &UiState, run: &RunRecord, offset: Option<u64>) -> Result<LogChunk, UiError> {
    let Some(path) = log_path(state, run)? else {
        return Ok(LogChunk {
            offset: 0,
            bytes_read: 0,
            size: 0,
            text: String::new(),
        });
    };
    let mut file = std::fs::File::open(&path)
        .map_err(|error| UiError::internal(format!("cannot open `{}`: {error}", path.display())))?;
    let size = file
        .metadata()
        .map_err(|error| UiError::internal(format!("cannot stat `{}`: {error}", path.display())))?
        .len();
    let offset = offset
        .unwrap_or_else(|| size.saturating_sub(LOG_CHUNK))
        .min(size);
    file.seek(SeekFrom::Start(offset))
        .map_err(|error| UiError::internal(format!("cannot read `{}`: {error}", path.display())))?;
    let mut bytes = Vec::new();
    file.take(LOG_CHUNK)
        .read_to_end(&mut bytes)
        .map_err(|error| UiError::internal(format!("cannot read `{}`: {error}", path.display())))?;
    // Stop before a UTF-8 sequence cut by the chunk's end; the next request starts there.
    let valid = match std::str::from_utf8(&bytes) {
        Ok(_) => bytes.len(),
        Err(error) if error.error_len().is_none() => error.valid_up_to(),
        Err(_) => bytes.len(),
    };
    bytes.truncate(valid);
    Ok(LogChunk {
        offset,
        bytes_read: bytes.len() as u64,
        size,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// `GET /runs/{id}`.
pub async fn page(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let html = blocking(&state, move |state| {
        let run = state.store.get_run(&id)?;
        let body = render(state, &run)?;
        let title = format!("{} {}", run.entry, short_id(&run.run_id));
        Ok(layout(&title, state.page_token(), &body))
    })
    .await?;
    Ok(Html(html))
}

fn render(state: &UiState, run: &RunRecord) -> Result<String, UiError> {
    let store = &state.store;
    let tags = store.tags(&run.run_id)?;
    let latest = store.latest_points(&run.run_id)?;
    let artifacts = store.artifacts(&run.run_id)?;
    let downstream = store.downstream(&run.run_id)?;
    let mut out = String::new();
    let _ = write!(
        out,
        "<h1 id=\"run-title\">{entry}{key}{member} <small>{short}</small> {badge}{bar}</h1>",
        entry = escape(&run.entry),
        key = run
            .key_value
            .as_ref()
            .map(|key| format!(" <span class=\"key\">[{}]</span>", escape(key)))
            .unwrap_or_default(),
        member = run
            .member
            .as_ref()
            .map(|member| format!(" <span class=\"member\">{}</span>", escape(member)))
            .unwrap_or_default(),
        short = escape(short_id(&run.run_id)),
        badge = status_badge(run),
        bar = progress_bar(run, &tags),
    );
    out.push_str("<nav class=\"run-links\">");
    if is_anomaly_run(&artifacts) {
        let _ = write!(
            out,
            "<a id=\"anomaly-link\" href=\"/runs/{}/anomaly\">Anomaly debugging</a>",
            escape(&run.run_id)
        );
    }
    if is_serve_run(&latest) {
        let _ = write!(
            out,
            "<a id=\"monitoring-link\" href=\"/runs/{}/monitoring\">Monitoring windows</a>",
            escape(&run.run_id)
        );
    }
    let _ = write!(
        out,
        "<a id=\"plan-link\" href=\"{}\">Would a request reuse it now?</a>",
        escape(&plan_link(state, run))
    );
    out.push_str("</nav>");

    let mut overview = vec![
        (
            "run".to_string(),
            format!("<code>{}</code>", escape(&run.run_id)),
        ),
        ("experiment".to_string(), escape(&run.experiment)),
        ("run time".to_string(), escape(&rfc3339(run.run_time))),
        ("started".to_string(), time(run.start_time)),
        (
            "duration".to_string(),
            format!(
                "<span data-duration=\"{}\">{}</span>",
                escape(&run.run_id),
                crate::ui::html::duration(run)
            ),
        ),
        (
            "commit".to_string(),
            format!(
                "<code title=\"{}\">{}</code>{}",
                escape(&run.code_version),
                escape(&short_commit(&run.code_version)),
                if run.code_dirty {
                    " (uncommitted changes)"
                } else {
                    ""
                }
            ),
        ),
        (
            "data version".to_string(),
            format!("<code>{}</code>", escape(&run.data_version)),
        ),
        (
            "reused".to_string(),
            reused_text(&store.reuses(&run.run_id)?),
        ),
        (
            "command".to_string(),
            format!("<code>{}</code>", escape(&run.command)),
        ),
    ];
    if !run.upstream.is_empty() {
        let inputs: Vec<String> = run
            .upstream
            .iter()
            .map(|(entry, id)| format!("{} {}", escape(entry), run_link(id)))
            .collect();
        overview.push(("inputs".to_string(), inputs.join(", ")));
    }
    overview.push((
        "used by".to_string(),
        if downstream.is_empty() {
            "no later run has used it as an input".to_string()
        } else {
            format!(
                "{} run{} took it as an input: {}",
                downstream.len(),
                if downstream.len() == 1 { "" } else { "s" },
                downstream
                    .iter()
                    .map(|id| run_link(id))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        },
    ));
    out.push_str("<section><h2>Overview</h2>");
    out.push_str(&key_value_table("overview", &overview));
    out.push_str("</section>");

    out.push_str("<div class=\"columns\"><section><h2>Params</h2>");
    let params: Vec<(String, String)> = run
        .params
        .iter()
        .map(|(key, value)| (key.clone(), escape(value)))
        .collect();
    out.push_str(&key_value_table("params", &params));
    let logged = store.logged_params(&run.run_id)?;
    if !logged.is_empty() {
        out.push_str("<h3>Logged by the step</h3>");
        let logged: Vec<(String, String)> = logged
            .iter()
            .map(|(key, value)| (key.clone(), escape(value)))
            .collect();
        out.push_str(&key_value_table("logged-params", &logged));
    }
    out.push_str("</section><section><h2>Tags</h2>");
    let tag_rows: Vec<(String, String)> = tags
        .iter()
        .map(|(key, value)| (key.clone(), escape(value)))
        .collect();
    out.push_str(&key_value_table("tags", &tag_rows));
    out.push_str("</section></div>");

    out.push_str("<section><h2>Metrics</h2>");
    // Losses first: they are what a training run is opened for.
    let mut curves: Vec<&str> = latest
        .iter()
        .filter(|point| point.step > 0)
        .map(|point| point.key.as_str())
        .collect();
    curves.sort_by_key(|key| !key.contains("loss"));
    if latest.is_empty() {
        out.push_str("<p class=\"empty\" id=\"metrics\">none</p>");
    } else {
        out.push_str(
            "<table class=\"kv\" id=\"metrics\"><thead><tr><th>metric</th><th>latest</th><th>step</th><th></th></tr></thead><tbody>",
        );
        for point in &latest {
            let chart = if point.step > 0 {
                format!(
                    "<a href=\"#curve-{key}\" class=\"draw-curve\" data-key=\"{key}\">curve</a>",
                    key = escape(&point.key)
                )
            } else {
                String::new()
            };
            let _ = write!(
                out,
                "<tr><th>{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{chart}</td></tr>",
                escape(&point.key),
                number(point.value),
                point.step
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<div class=\"charts\" id=\"curves\">");
    for (index, key) in curves.iter().enumerate() {
        let _ = write!(
            out,
            "<figure class=\"chart-box\" id=\"curve-{key_attr}\"><figcaption>{key_text}</figcaption>\
             <div class=\"chart\" data-title=\"{key_attr}\" data-series=\"{src}\" {lazy}></div></figure>",
            key_attr = escape(key),
            key_text = escape(key),
            src = escape(&format!(
                "/api/flow/runs/{}/metrics/{}",
                run.run_id,
                url_encode(key)
            )),
            lazy = if index < CURVES_DRAWN_AT_ONCE { "" } else { "data-lazy=\"1\"" },
        );
    }
    out.push_str("</div></section>");

    out.push_str("<section><h2>Artifacts</h2>");
    out.push_str(&artifact_list_html(run, &artifacts));
    out.push_str("</section>");

    out.push_str("<section><h2>Lineage</h2>");
    let graph = LineageGraph::build(store, run)?;
    out.push_str(&lineage_svg(&graph));
    out.push_str("</section>");

    let chunk = read_log(state, run, None)?;
    let _ = write!(
        out,
        "<section><h2>Log</h2><pre class=\"log\" id=\"log\" data-log=\"/api/flow/runs/{id}/log\" \
         data-next=\"{next}\" data-running=\"{running}\">{text}</pre></section>",
        id = escape(&run.run_id),
        next = chunk.offset + chunk.bytes_read,
        running = run.status == RunStatus::Running,
        text = if chunk.size == 0 {
            "(no log)".to_string()
        } else {
            escape(&chunk.text)
        },
    );
    Ok(out)
}

/// The Plan page asked the question "what would `flow run -e ENTRY` with this run's
/// params (and its upstream runs' params) decide now?".
/// "reused by 12 later requests (last …)": what the run saved.
fn reused_text(reuses: &crate::store::Reuses) -> String {
    match (reuses.count, reuses.last) {
        (0, _) | (_, None) => "<span id=\"reused\">not reused yet</span>".to_string(),
        (count, Some(last)) => format!(
            "<span id=\"reused\">reused by {count} later request{} (last {})</span>",
            if count == 1 { "" } else { "s" },
            time(last)
        ),
    }
}

fn plan_link(state: &UiState, run: &RunRecord) -> String {
    let mut params = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut queue = vec![run.clone()];
    while let Some(current) = queue.pop() {
        if !seen.insert(current.run_id.clone()) {
            continue;
        }
        for (key, value) in &current.params {
            params.push(format!(
                "P={}",
                url_encode(&format!("{}.{key}={value}", current.entry))
            ));
        }
        for (_, id) in &current.upstream {
            if let Ok(upstream) = state.store.get_run(id) {
                queue.push(upstream);
            }
        }
    }
    params.sort();
    params.dedup();
    format!(
        "/plan?entry={}&highlight={}&{}",
        url_encode(&run.entry),
        url_encode(&run.run_id),
        params.join("&")
    )
}
