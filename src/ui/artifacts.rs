//! A run's published files: the listing, a preview page (CSV as a table, PNG inline, text
//! as text) and the raw bytes for download.
//!
//! A path is looked up in the run's manifest and read from the object its hash names, so
//! nothing outside the store can be reached; a path with `..`, a leading `/` or a
//! backslash is refused with a 400 before any lookup.

use std::fmt::Write;
use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::store::ui_queries::LatestPoint;
use crate::store::{Artifact, RunRecord};
use crate::ui::error::{ApiError, PageError, UiError};
use crate::ui::html::{bytes, escape, layout, run_link, short_id, url_encode};
use crate::ui::{blocking, UiState};

/// Rows of a CSV shown in a preview, and bytes of a text file.
const PREVIEW_ROWS: usize = 200;
const PREVIEW_TEXT_BYTES: usize = 256 * 1024;

#[derive(Debug, Deserialize)]
pub struct ArtifactQuery {
    /// Logical path inside the run's outputs, `/`-separated.
    path: String,
}

/// True for an evaluate run's outputs (its scores and summary), which the anomaly page reads.
pub fn is_anomaly_run(artifacts: &[Artifact]) -> bool {
    ["scores.csv", "summary.json"]
        .iter()
        .all(|name| artifacts.iter().any(|artifact| artifact.path == *name))
}

/// True for a `flow serve` monitoring run (its windows are metrics).
pub fn is_serve_run(latest: &[LatestPoint]) -> bool {
    latest.iter().any(|point| point.key == "anomaly_rate")
        && latest.iter().any(|point| point.key == "score.mean")
}

/// Refuses paths that could mean anything outside the outputs.
pub fn validate_path(path: &str) -> Result<(), UiError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path.split('/').any(|part| part == ".." || part == ".");
    if bad {
        return Err(UiError::bad_request(format!(
            "artifact path `{path}` must be a relative path inside the run's outputs (no `..`, `.`, leading `/` or `\\`)"
        )));
    }
    Ok(())
}

/// The artifact and the bytes' location; a missing object is a 410 that says so.
fn find(
    state: &UiState,
    run: &RunRecord,
    path: &str,
) -> Result<(Artifact, std::path::PathBuf), UiError> {
    validate_path(path)?;
    let artifacts = state.store.artifacts(&run.run_id)?;
    let artifact = artifacts
        .into_iter()
        .find(|artifact| artifact.path == path)
        .ok_or_else(|| {
            UiError::not_found(format!(
                "run {} has no artifact `{path}`",
                short_id(&run.run_id)
            ))
        })?;
    let object = state.store.object_of(&artifact)?;
    if !object.is_file() {
        return Err(UiError {
            status: StatusCode::GONE,
            message: format!(
                "the content of `{path}` of run {} is gone from the store (object {} was deleted)",
                short_id(&run.run_id),
                &artifact.hash[..12]
            ),
        });
    }
    Ok((artifact, object))
}

/// `GET /api/flow/runs/{id}/artifacts`: path, size and hash of every published file.
pub async fn api_list(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let value = blocking(&state, move |state| {
        let run = state.store.get_run(&id)?;
        Ok(json!({
            "run_id": run.run_id,
            "artifacts": state.store.artifacts(&run.run_id)?,
        }))
    })
    .await?;
    Ok(Json(value))
}

/// `GET /api/flow/runs/{id}/artifact?path=P`: the file's bytes (PNG, CSV and text inline,
/// anything else as a download).
pub async fn api_raw(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
    query: Result<Query<ArtifactQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|error| UiError::bad_request(error.body_text()))?;
    let (artifact, bytes) = blocking(&state, move |state| {
        let run = state.store.get_run(&id)?;
        let (artifact, object) = find(state, &run, &query.path)?;
        let bytes = std::fs::read(&object).map_err(|error| {
            UiError::internal(format!("cannot read `{}`: {error}", object.display()))
        })?;
        Ok((artifact, bytes))
    })
    .await?;
    let file_name = artifact
        .path
        .rsplit('/')
        .next()
        .unwrap_or("artifact")
        .to_string();
    let content_type = content_type(&artifact.path);
    let disposition = if content_type.starts_with("application/octet-stream") {
        format!("attachment; filename=\"{}\"", file_name.replace('"', ""))
    } else {
        format!("inline; filename=\"{}\"", file_name.replace('"', ""))
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from(bytes),
    )
        .into_response())
}

fn content_type(path: &str) -> &'static str {
    let extension = path.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match extension.as_str() {
        "png" => "image/png",
        "svg" => "image/svg+xml",
        "csv" => "text/csv; charset=utf-8",
        "json" => "application/json",
        "txt" | "log" | "md" | "yaml" | "yml" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// The artifacts of a run as a table with preview and download links.
pub fn artifact_list_html(run: &RunRecord, artifacts: &[Artifact]) -> String {
    if artifacts.is_empty() {
        return format!(
            "<p class=\"empty\" id=\"artifacts\">{}</p>",
            if run.manifest_hash.is_some() {
                "the run published no files"
            } else {
                "no published outputs (the run has not finished, or failed)"
            }
        );
    }
    let mut out = String::from(
        "<table class=\"kv\" id=\"artifacts\"><thead><tr><th>path</th><th>size</th><th></th></tr></thead><tbody>",
    );
    for artifact in artifacts {
        let path = url_encode(&artifact.path);
        let _ = write!(
            out,
            "<tr><th><a class=\"artifact\" href=\"/runs/{id}/artifacts/view?path={path}\">{name}</a></th>\
             <td class=\"num\">{size}</td><td><a href=\"/api/flow/runs/{id}/artifact?path={path}\" download>download</a></td></tr>",
            id = escape(&run.run_id),
            name = escape(&artifact.path),
            size = escape(&bytes(artifact.size)),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// `GET /runs/{id}/artifacts/view?path=P`: a preview.
pub async fn page(
    State(state): State<Arc<UiState>>,
    Path(id): Path<String>,
    query: Result<Query<ArtifactQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Html<String>, PageError> {
    let Query(query) = query.map_err(|error| UiError::bad_request(error.body_text()))?;
    let html = blocking(&state, move |state| {
        let run = state.store.get_run(&id)?;
        let (artifact, object) = find(state, &run, &query.path)?;
        let raw = format!(
            "/api/flow/runs/{}/artifact?path={}",
            run.run_id,
            url_encode(&artifact.path)
        );
        let mut body = format!(
            "<h1>{path}</h1><p>of {entry} run {link} · {size} · <a href=\"{raw}\" download id=\"download\">download</a></p>",
            path = escape(&artifact.path),
            entry = escape(&run.entry),
            link = run_link(&run.run_id),
            size = escape(&bytes(artifact.size)),
            raw = escape(&raw),
        );
        let read_head = |limit: usize| -> Result<Vec<u8>, UiError> {
            let mut head = Vec::new();
            std::fs::File::open(&object)
                .and_then(|file| file.take(limit as u64).read_to_end(&mut head))
                .map_err(|error| {
                    UiError::internal(format!("cannot read `{}`: {error}", object.display()))
                })?;
            Ok(head)
        };
        match content_type(&artifact.path) {
            "image/png" | "image/svg+xml" => {
                let _ = write!(
                    body,
                    "<img class=\"preview\" id=\"preview-image\" src=\"{}\" alt=\"{}\">",
                    escape(&raw),
                    escape(&artifact.path)
                );
            }
            "text/csv; charset=utf-8" => {
                let head = read_head(PREVIEW_TEXT_BYTES)?;
                body.push_str(&csv_table(&String::from_utf8_lossy(&head), PREVIEW_ROWS));
            }
            "application/octet-stream" => {
                body.push_str("<p class=\"empty\">binary file: no preview</p>");
            }
            _ => {
                let head = read_head(PREVIEW_TEXT_BYTES)?;
                let _ = write!(
                    body,
                    "<pre class=\"preview\" id=\"preview-text\">{}</pre>",
                    escape(&String::from_utf8_lossy(&head))
                );
                if artifact.size as usize > PREVIEW_TEXT_BYTES {
                    body.push_str("<p class=\"note\">first 256 KiB shown</p>");
                }
            }
        }
        Ok(layout(&artifact.path, state.page_token(), &body))
    })
    .await?;
    Ok(Html(html))
}

/// The first `max_rows` rows of CSV text as a table (quotes handled; a row cut by the
/// preview's byte limit is left out).
pub fn csv_table(text: &str, max_rows: usize) -> String {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return "<p class=\"empty\">empty file</p>".to_string();
    };
    let mut out = String::from("<table class=\"csv\" id=\"preview-table\"><thead><tr>");
    for cell in split_csv(header) {
        let _ = write!(out, "<th>{}</th>", escape(&cell));
    }
    out.push_str("</tr></thead><tbody>");
    let complete = text.ends_with('\n');
    let rows: Vec<&str> = lines.collect();
    let n_rows = if complete {
        rows.len()
    } else {
        rows.len().saturating_sub(1)
    };
    for line in rows.iter().take(n_rows.min(max_rows)) {
        out.push_str("<tr>");
        for cell in split_csv(line) {
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    if n_rows > max_rows || !complete {
        let _ = write!(
            out,
            "<p class=\"note\">first {} rows shown</p>",
            n_rows.min(max_rows)
        );
    }
    out
}

/// One CSV line's fields (double quotes, `""` inside them).
pub fn split_csv(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(ch) = chars.next() {
        match (ch, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(ch),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_outputs() {
        for bad in ["../flow.db", "a/../../b", "/etc/passwd", "a\\b", "./x", ""] {
            let error = validate_path(bad).unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad}");
        }
        for good in ["scores.csv", "plots/loss.png", "a..b/c"] {
            validate_path(good).unwrap();
        }
    }

    #[test]
    fn csv_fields_keep_quoted_commas() {
        assert_eq!(split_csv("a,\"b,c\",\"d\"\"e\""), ["a", "b,c", "d\"e"]);
        let table = csv_table("x,y\n1,2\n3,4\n", 1);
        assert!(
            table.contains("<td>1</td>") && !table.contains("<td>3</td>"),
            "{table}"
        );
        assert!(table.contains("first 1 rows shown"));
    }
}
