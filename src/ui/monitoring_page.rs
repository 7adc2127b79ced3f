//! A `flow serve` run's monitoring windows (`/runs/{id}/monitoring`): the score's
//! distribution, the anomaly rate and the feedback F1 over time, and PSI/KS drift per
//! feature, the most drifting first. The windows are the run's metrics (step = window
//! index), so every curve here is a metric curve of the API.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Html;
use axum::Json;
use serde_json::{json, Value};

use crate::store::ui_queries::LatestPoint;
use crate::store::RunRecord;
use crate::ui::artifacts::is_serve_run;
use crate::ui::error::{ApiError, PageError, UiError};
use crate::ui::html::{escape, layout, number, run_link, short_id, url_encode};
use crate::ui::{blocking, UiState};

/// PSI above which a feature is flagged as drifting (the usual rule of thumb, as `flow monitor`).
const PSI_DRIFT: f64 = 0.2;
/// Features drawn in the drift charts, the most drifting first.
const DRIFT_FEATURES_DRAWN: usize = 8;

/// Per-feature drift in the latest window.
#[derive(Debug, Clone, serde::Serialize)]
struct FeatureDrift {
    feature: String,
    psi: Option<f64>,
    ks: Option<f64>,
    drifting: bool,
}

struct Monitoring {
    run: RunRecord,
    windows: i64,
    latest: Vec<LatestPoint>,
    drift: Vec<FeatureDrift>,
}

fn load(state: &UiState, id: &str) -> Result<Monitoring, UiError> {
    let run = state.store.get_run(id)?;
    let latest = state.store.latest_points(&run.run_id)?;
    if !is_serve_run(&latest) {
        return Err(UiError::not_found(format!(
            "run {} ({}) has no monitoring windows: open a run that `flow serve` created",
            short_id(&run.run_id),
            run.entry
        )));
    }
    let windows = latest.iter().map(|p| p.step).max().unwrap_or(0) + 1;
    let mut drift: Vec<FeatureDrift> = Vec::new();
    for point in &latest {
        let Some(rest) = point.key.strip_prefix("feature.") else {
            continue;
        };
        let (feature, stat) = match rest.rsplit_once('.') {
            Some(pair) => pair,
            None => continue,
        };
        if stat != "psi" && stat != "ks" {
            continue;
        }
        let index = match drift.iter().position(|d| d.feature == feature) {
            Some(index) => index,
            None => {
                drift.push(FeatureDrift {
                    feature: feature.to_string(),
                    psi: None,
                    ks: None,
                    drifting: false,
                });
                drift.len() - 1
            }
        };
        if stat == "psi" {
            drift[index].psi = Some(point.value);
            drift[index].drifting = point.value > PSI_DRIFT;
        } else {
            drift[index].ks = Some(point.value);
        }
    }
    drift.sort_by(|a, b| {
        b.psi
            .unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&a.psi.unwrap_or(f64::NEG_INFINITY))
    });
    Ok(Monitoring {
        run,
        windows,
        latest,
        drift,
    })
}

/// `GET /api/flow/runs/{id}/monitoring`: the number of windows, the latest window's
/// values, and drift per feature (most drifting first).
pub async fn api_monitoring(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let value = blocking(&state, move |state| {
        let monitoring = load(state, &id)?;
        let latest: serde_json::Map<String, Value> = monitoring
            .latest
            .iter()
            .filter(|p| !p.key.starts_with("feature."))
            .map(|p| (p.key.clone(), json!(p.value)))
            .collect();
        Ok(json!({
            "run_id": monitoring.run.run_id,
            "windows": monitoring.windows,
            "latest": latest,
            "psi_threshold": PSI_DRIFT,
            "features": monitoring.drift,
        }))
    })
    .await?;
    Ok(Json(value))
}

/// `GET /runs/{id}/monitoring`.
pub async fn page(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
) -> Result<Html<String>, PageError> {
    let html = blocking(&state, move |state| {
        let monitoring = load(state, &id)?;
        let title = format!("monitoring {}", short_id(&monitoring.run.run_id));
        Ok(layout(&title, state.page_token(), &render(&monitoring)))
    })
    .await?;
    Ok(Html(html))
}

fn render(monitoring: &Monitoring) -> String {
    let run = &monitoring.run;
    let has = |key: &str| monitoring.latest.iter().any(|p| p.key == key);
    let source = |key: &str| format!("/api/flow/runs/{}/metrics/{}", run.run_id, url_encode(key));
    let chart = |id: &str, title: &str, keys: &[String]| -> String {
        let keys: Vec<&String> = keys.iter().filter(|key| has(key)).collect();
        if keys.is_empty() {
            return String::new();
        }
        let sources: Vec<String> = keys.iter().map(|key| source(key)).collect();
        let labels: Vec<&str> = keys.iter().map(|key| key.as_str()).collect();
        format!(
            "<figure class=\"chart-box\"><figcaption>{title}</figcaption><div class=\"chart\" id=\"{id}\" data-series=\"{src}\" data-labels=\"{labels}\" data-x-label=\"window\"></div></figure>",
            src = escape(&sources.join("|")),
            labels = escape(&labels.join("|")),
        )
    };
    let owned = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let mut out = format!(
        "<h1>Monitoring <small>{} {}</small></h1><p id=\"window-count\">{} window{} of scored requests</p><div class=\"charts\">",
        escape(&run.entry),
        run_link(&run.run_id),
        monitoring.windows,
        if monitoring.windows == 1 { "" } else { "s" }
    );
    out.push_str(&chart(
        "score-distribution",
        "score distribution (min, quartiles, max)",
        &owned(&[
            "score.min",
            "score.q25",
            "score.median",
            "score.q75",
            "score.max",
        ]),
    ));
    out.push_str(&chart(
        "anomaly-rate",
        "anomaly rate",
        &owned(&["anomaly_rate"]),
    ));
    out.push_str(&chart("row-count", "rows scored", &owned(&["count"])));
    out.push_str(&chart(
        "feedback",
        "feedback precision, recall, F1",
        &owned(&["precision", "recall", "f1"]),
    ));
    let top: Vec<&FeatureDrift> = monitoring.drift.iter().take(DRIFT_FEATURES_DRAWN).collect();
    let psi: Vec<String> = top
        .iter()
        .map(|d| format!("feature.{}.psi", d.feature))
        .collect();
    let ks: Vec<String> = top
        .iter()
        .map(|d| format!("feature.{}.ks", d.feature))
        .collect();
    out.push_str(&chart(
        "psi-chart",
        "PSI drift per feature (most drifting)",
        &psi,
    ));
    out.push_str(&chart(
        "ks-chart",
        "KS drift per feature (most drifting)",
        &ks,
    ));
    out.push_str("</div>");
    let _ = write!(
        out,
        "<section><h2>Drift in the latest window</h2><table class=\"kv\" id=\"drift\"><thead><tr><th>feature</th><th>PSI</th><th>KS</th><th></th></tr></thead><tbody>"
    );
    for feature in &monitoring.drift {
        let _ = write!(
            out,
            "<tr class=\"{}\"><th>{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            if feature.drifting { "differs" } else { "" },
            escape(&feature.feature),
            feature.psi.map(number).unwrap_or_else(|| "—".into()),
            feature.ks.map(number).unwrap_or_else(|| "—".into()),
            if feature.drifting {
                format!("drifting (PSI &gt; {PSI_DRIFT})")
            } else {
                String::new()
            },
        );
    }
    out.push_str("</tbody></table></section>");
    out
}
