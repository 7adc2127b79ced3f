//! Debugging a detector (`/runs/{id}/anomaly` of an evaluate run), the views MTAD-GAT users
//! otherwise build in Streamlit: training and validation loss per epoch (from the train
//! run upstream), the test score over time with the POT, epsilon and best-F1 thresholds
//! and the true anomaly segments shaded (zoomable), a segment picker showing forecast and
//! reconstruction against the actual values of the segment's top features, and precision,
//! recall and F1 per method.
//!
//! Everything is read from the run's published files — `summary.json`, `scores.csv`,
//! `segments.csv` and, when evaluate wrote it, `segment_features.csv` — so any evaluate
//! run in the store can be opened, however old.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Html;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::store::{RunRecord, Store};
use crate::ui::downsample::downsample;
use crate::ui::error::{ApiError, PageError, UiError};
use crate::ui::evaluation_files::{
    method_rows, parse_scores, parse_segment_features, parse_segments, thresholds, Segment,
};
use crate::ui::html::{escape, layout, number, run_link, short_id, url_encode};
use crate::ui::{blocking, UiState};

/// Buckets the score curve is reduced to.
const SCORE_BUCKETS: usize = 1500;
/// The files of an evaluate run, read.
struct Evaluation {
    run: RunRecord,
    summary: Value,
    segments: Vec<Segment>,
    /// The train run upstream, whose per-epoch losses are drawn.
    train: Option<(RunRecord, Vec<String>)>,
}

/// Reads a published file of `run` whole; `None` when the run did not publish it.
fn read_text(store: &Store, run: &RunRecord, path: &str) -> Result<Option<String>, UiError> {
    let artifacts = store.artifacts(&run.run_id)?;
    let Some(artifact) = artifacts.iter().find(|a| a.path == path) else {
        return Ok(None);
    };
    let object = store.object_of(artifact)?;
    std::fs::read_to_string(&object)
        .map(Some)
        .map_err(|error| UiError {
            status: axum::http::StatusCode::GONE,
            message: format!(
                "cannot read `{path}` of run {}: {error} (was its object deleted?)",
                short_id(&run.run_id)
            ),
        })
}

fn require_text(store: &Store, run: &RunRecord, path: &str) -> Result<String, UiError> {
    read_text(store, run, path)?.ok_or_else(|| {
        UiError::not_found(format!(
            "run {} ({}) has no `{path}`: anomaly debugging needs an evaluate run",
            short_id(&run.run_id),
            run.entry
        ))
    })
}

fn load(store: &Store, id: &str) -> Result<Evaluation, UiError> {
    let run = store.get_run(id)?;
    let summary: Value = serde_json::from_str(&require_text(store, &run, "summary.json")?)
        .map_err(|error| UiError::internal(format!("`summary.json` is not JSON: {error}")))?;
    let segments = match read_text(store, &run, "segments.csv")? {
        Some(text) => parse_segments(&text)?,
        None => Vec::new(),
    };
    let train = find_train(store, &run)?;
    Ok(Evaluation {
        run,
        summary,
        segments,
        train,
    })
}

/// The nearest upstream run that logged per-epoch curves, with those keys.
fn find_train(store: &Store, run: &RunRecord) -> Result<Option<(RunRecord, Vec<String>)>, UiError> {
    let mut queue: Vec<String> = run.upstream.iter().map(|(_, id)| id.clone()).collect();
    let mut seen = std::collections::BTreeSet::new();
    while let Some(id) = queue.first().cloned() {
        queue.remove(0);
        if !seen.insert(id.clone()) || seen.len() > 32 {
            continue;
        }
        let Ok(upstream) = store.get_run(&id) else {
            continue;
        };
        let curves: Vec<String> = store
            .latest_points(&upstream.run_id)?
            .into_iter()
            .filter(|point| point.step > 0 && point.key.contains("loss"))
            .map(|point| point.key)
            .collect();
        if !curves.is_empty() {
            return Ok(Some((upstream, curves)));
        }
        queue.extend(upstream.upstream.iter().map(|(_, id)| id.clone()));
    }
    Ok(None)
}

#[derive(Debug, Default, Deserialize)]
pub struct ScoreQuery {
    points: Option<usize>,
    from: Option<i64>,
    to: Option<i64>,
}

/// `GET /api/flow/runs/{id}/anomaly?from=&to=&points=`: thresholds, the per-method table,
/// the segments, the train run's loss keys, and the test score reduced for drawing (the
/// same shape as a metric's curve).
pub async fn api_anomaly(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
    query: Result<Query<ScoreQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|error| UiError::bad_request(error.body_text()))?;
    let buckets = query.points.unwrap_or(SCORE_BUCKETS).clamp(1, 5000);
    let range = match (query.from, query.to) {
        (Some(from), Some(to)) if from <= to => Some((from, to)),
        (None, None) => None,
        _ => {
            return Err(UiError::bad_request(
                "give both `from` and `to` (rows, from <= to) or neither",
            )
            .into())
        }
    };
    let value = blocking(&state, move |state| {
        let evaluation = load(&state.store, &id)?;
        let scores = parse_scores(&require_text(&state.store, &evaluation.run, "scores.csv")?)?;
        let reduced = downsample(&scores, range, buckets);
        Ok(json!({
            "run_id": evaluation.run.run_id,
            "dataset": evaluation.summary["dataset"],
            "chosen": evaluation.summary["chosen"],
            "thresholds": thresholds(&evaluation.summary)
                .into_iter()
                .map(|(method, value)| json!({"label": method, "value": value}))
                .collect::<Vec<_>>(),
            "methods": method_rows(&evaluation.summary),
            "segments": evaluation.segments,
            "train_run": evaluation.train.as_ref().map(|(run, _)| run.run_id.clone()),
            "loss_keys": evaluation.train.as_ref().map(|(_, keys)| keys.clone()).unwrap_or_default(),
            "first_step": scores.first().map(|p| p.0),
            "last_step": scores.last().map(|p| p.0),
            "total_points": reduced.total_points,
            "min": reduced.min,
            "max": reduced.max,
            "points": reduced.points,
        }))
    })
    .await?;
    Ok(Json(value))
}

/// `GET /api/flow/runs/{id}/anomaly/segments/{index}`: the segment and its top features'
/// actual, forecast and reconstructed values around it.
pub async fn api_segment(
    State(state): State<Arc<UiState>>,
    Path((id, index)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let index: usize = index.parse().map_err(|_| {
        UiError::bad_request(format!("segment index must be a number, not `{index}`"))
    })?;
    let value = blocking(&state, move |state| {
        let evaluation = load(&state.store, &id)?;
        let segment = evaluation.segments.get(index).cloned().ok_or_else(|| {
            UiError::not_found(format!(
                "run {} has {} segment(s); there is no segment {index}",
                short_id(&evaluation.run.run_id),
                evaluation.segments.len()
            ))
        })?;
        let features = match read_text(&state.store, &evaluation.run, "segment_features.csv")? {
            Some(text) => parse_segment_features(&text, index)?,
            None => Vec::new(),
        };
        Ok(json!({
            "run_id": evaluation.run.run_id,
            "segment": segment,
            "features": features,
            "has_feature_file": !features.is_empty(),
        }))
    })
    .await?;
    Ok(Json(value))
}

/// `GET /runs/{id}/anomaly`.
pub async fn page(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let html = blocking(&state, move |state| {
        let evaluation = load(&state.store, &id)?;
        let title = format!("anomalies {}", short_id(&evaluation.run.run_id));
        Ok(layout(&title, state.page_token(), &render(&evaluation)))
    })
    .await?;
    Ok(Html(html))
}

fn render(evaluation: &Evaluation) -> String {
    let run = &evaluation.run;
    let summary = &evaluation.summary;
    let mut out = format!(
        "<h1>Anomaly debugging <small>{entry} {link}</small></h1><p>dataset <b>{dataset}</b>, window {window}, the bundle's threshold method: <b>{chosen}</b></p>",
        entry = escape(&run.entry),
        link = run_link(&run.run_id),
        dataset = escape(summary["dataset"].as_str().unwrap_or("?")),
        window = summary["window"].as_u64().map(|w| w.to_string()).unwrap_or_else(|| "?".into()),
        chosen = escape(summary["chosen"].as_str().unwrap_or("?")),
    );

    out.push_str("<section><h2>Precision, recall and F1 per method</h2><table class=\"kv\" id=\"methods\"><thead><tr><th>method</th><th>threshold</th><th>P</th><th>R</th><th>F1</th><th>P (pa)</th><th>R (pa)</th><th>F1 (pa)</th></tr></thead><tbody>");
    for row in method_rows(summary) {
        let cell = |value: &Value| value.as_f64().map(number).unwrap_or_else(|| "—".into());
        let _ = write!(
            out,
            "<tr data-method=\"{method}\"><th>{label}</th><td class=\"num\">{t}</td><td class=\"num\">{p}</td><td class=\"num\">{r}</td><td class=\"num\">{f}</td><td class=\"num\">{pp}</td><td class=\"num\">{rp}</td><td class=\"num\"><b>{fp}</b></td></tr>",
            method = escape(row["method"].as_str().unwrap_or("")),
            label = escape(row["label"].as_str().unwrap_or("")),
            t = cell(&row["threshold"]),
            p = cell(&row["raw"]["precision"]),
            r = cell(&row["raw"]["recall"]),
            f = cell(&row["raw"]["f1"]),
            pp = cell(&row["adjusted"]["precision"]),
            rp = cell(&row["adjusted"]["recall"]),
            fp = cell(&row["adjusted"]["f1"]),
        );
    }
    out.push_str("</tbody></table><p class=\"note\">(pa): point-adjusted — a true segment counts as found when any of its rows is flagged.</p></section>");

    let levels: Vec<Value> = thresholds(summary)
        .into_iter()
        .map(|(label, value)| json!({"label": label, "value": value}))
        .collect();
    let shaded: Vec<Value> = evaluation
        .segments
        .iter()
        .map(|s| json!([s.start, s.end - 1]))
        .collect();
    let _ = write!(
        out,
        "<section><h2>Test score</h2><p class=\"note\">true anomaly segments shaded; drag across the chart to zoom, double-click to zoom out.</p>\
         <div class=\"chart tall\" id=\"score-chart\" data-title=\"score\" data-series=\"/api/flow/runs/{id}/anomaly\" data-levels=\"{levels}\" data-shaded=\"{shaded}\" data-x-label=\"row\"></div></section>",
        id = escape(&run.run_id),
        levels = escape(&Value::Array(levels).to_string()),
        shaded = escape(&Value::Array(shaded).to_string()),
    );

    out.push_str("<section><h2>Segments</h2>");
    if evaluation.segments.is_empty() {
        out.push_str(
            "<p class=\"empty\" id=\"segments\">no true anomaly segments in the test data</p>",
        );
    } else {
        let methods: Vec<String> = evaluation.segments[0].detected.keys().cloned().collect();
        let _ = write!(
            out,
            "<label>Segment <select id=\"segment-picker\" data-run=\"{}\"><option value=\"\">pick a segment…</option>",
            escape(&run.run_id)
        );
        for segment in &evaluation.segments {
            let caught: Vec<&str> = segment
                .detected
                .iter()
                .filter(|(_, found)| **found)
                .map(|(name, _)| name.as_str())
                .collect();
            let _ = write!(
                out,
                "<option value=\"{index}\" data-start=\"{start}\" data-end=\"{end}\">#{index} rows {start}–{end} {part} (peak {peak}{caught})</option>",
                index = segment.index,
                start = segment.start,
                end = segment.end,
                part = escape(&segment.part),
                peak = number(segment.peak_score),
                caught = if caught.is_empty() {
                    ", missed".to_string()
                } else {
                    format!(", caught by {}", caught.join(", "))
                },
            );
        }
        out.push_str("</select></label><div id=\"segment-view\"></div>");
        out.push_str("<table class=\"kv\" id=\"segments\"><thead><tr><th>#</th><th>rows</th><th>part</th><th>peak score</th>");
        for method in &methods {
            let _ = write!(out, "<th>{}</th>", escape(method));
        }
        out.push_str("</tr></thead><tbody>");
        for segment in &evaluation.segments {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}–{}</td><td>{}</td><td class=\"num\">{}</td>",
                segment.index,
                segment.start,
                segment.end,
                escape(&segment.part),
                number(segment.peak_score)
            );
            for method in &methods {
                let found = segment.detected.get(method).copied().unwrap_or(false);
                let _ = write!(
                    out,
                    "<td class=\"{}\">{}</td>",
                    if found { "hit" } else { "miss" },
                    if found { "caught" } else { "missed" }
                );
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("</section>");

    out.push_str("<section><h2>Training</h2>");
    match &evaluation.train {
        Some((train, keys)) => {
            let sources: Vec<String> = keys
                .iter()
                .map(|key| {
                    format!(
                        "/api/flow/runs/{}/metrics/{}",
                        train.run_id,
                        url_encode(key)
                    )
                })
                .collect();
            let _ = write!(
                out,
                "<p>losses per epoch of {} {}</p><div class=\"chart\" id=\"loss-chart\" data-title=\"loss\" data-series=\"{}\" data-labels=\"{}\" data-x-label=\"epoch\"></div>",
                escape(&train.entry),
                run_link(&train.run_id),
                escape(&sources.join("|")),
                escape(&keys.join("|")),
            );
        }
        None => out.push_str(
            "<p class=\"empty\" id=\"loss-chart\">no upstream run logged losses per epoch</p>",
        ),
    }
    out.push_str("</section>");
    out
}
