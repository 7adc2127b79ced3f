//! The model registry (`/models`, `GET /api/flow/models`): registered models, their
//! versions, stages and aliases, with stage transitions and aliases changed from the page
//! (`POST`/`DELETE` under `/api/flow/models/`, guarded by `security`).

use std::fmt::Write;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Html;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::registry::{self, ModelVersion, Stage};
use crate::ui::error::{ApiError, PageError, UiError};
use crate::ui::html::{escape, layout, run_link, time};
use crate::ui::{blocking, UiState};

/// `GET /api/flow/models`: every model with its versions.
pub async fn api_models(State(state): State<Arc<UiState>>) -> Result<Json<Value>, ApiError> {
    let models = blocking(&state, grouped).await?;
    let models: Vec<Value> = models
        .into_iter()
        .map(|(name, versions)| json!({ "name": name, "versions": versions }))
        .collect();
    Ok(Json(json!({ "models": models })))
}

fn grouped(state: &UiState) -> Result<Vec<(String, Vec<ModelVersion>)>, UiError> {
    let names = registry::model_names(&state.store)?;
    let versions = registry::list(&state.store, None)?;
    Ok(names
        .into_iter()
        .map(|name| {
            let mine = versions
                .iter()
                .filter(|v| v.name == name)
                .cloned()
                .collect();
            (name, mine)
        })
        .collect())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StageRequest {
    stage: String,
    /// Keep other Production versions where they are instead of archiving them.
    #[serde(default)]
    keep_others: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasRequest {
    alias: String,
    version: u32,
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8], shape: &str) -> Result<T, UiError> {
    serde_json::from_slice(body)
        .map_err(|error| UiError::bad_request(format!("the body must be JSON {shape}: {error}")))
}

fn parse_version(text: &str) -> Result<u32, UiError> {
    text.parse().map_err(|_| {
        UiError::bad_request(format!("version must be a positive integer, not `{text}`"))
    })
}

/// `POST /api/flow/models/{name}/versions/{version}/stage` with `{"stage": "Production"}`:
/// moves the version (archiving the previous Production one unless `keep_others`).
pub async fn api_set_stage(
    State(state): State<Arc<UiState>>,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let version = parse_version(&version)?;
    let request: StageRequest = parse_body(
        &body,
        "`{\"stage\": \"Production\", \"keep_others\": false}`",
    )?;
    let changed = blocking(&state, move |state| {
        let stage: Stage = request.stage.parse()?;
        Ok(registry::set_stage(
            &state.store,
            &name,
            version,
            stage,
            request.keep_others,
        )?)
    })
    .await?;
    Ok(Json(json!({ "changed": changed })))
}

/// `POST /api/flow/models/{name}/aliases` with `{"alias": "champion", "version": 2}`.
pub async fn api_set_alias(
    State(state): State<Arc<UiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let request: AliasRequest = parse_body(&body, "`{\"alias\": \"champion\", \"version\": 1}`")?;
    let value = blocking(&state, move |state| {
        registry::set_alias(&state.store, &name, &request.alias, request.version)?;
        Ok(json!({ "name": name, "alias": request.alias, "version": request.version }))
    })
    .await?;
    Ok(Json(value))
}

/// `DELETE /api/flow/models/{name}/aliases/{alias}`.
pub async fn api_remove_alias(
    State(state): State<Arc<UiState>>,
    Path((name, alias)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let value = blocking(&state, move |state| {
        let version = registry::remove_alias(&state.store, &name, &alias)?;
        Ok(json!({ "name": name, "alias": alias, "version": version }))
    })
    .await?;
    Ok(Json(value))
}

/// `GET /models`.
pub async fn page(State(state): State<Arc<UiState>>) -> Result<Html<String>, PageError> {
    let html = blocking(&state, |state| {
        let models = grouped(state)?;
        Ok(layout(
            "Models",
            state.page_token(),
            &render(&models, state.config.read_only),
        ))
    })
    .await?;
    Ok(Html(html))
}

fn render(models: &[(String, Vec<ModelVersion>)], read_only: bool) -> String {
    let mut out = String::from("<h1>Models</h1>");
    if read_only {
        out.push_str("<p class=\"note\" id=\"read-only\">read-only: stages and aliases cannot be changed here</p>");
    }
    if models.is_empty() {
        out.push_str("<p class=\"empty\" id=\"models\">no registered models; register one with <code>flow models register NAME RUN</code></p>");
        return out;
    }
    out.push_str("<p id=\"action-result\" class=\"note\" role=\"status\"></p>");
    for (name, versions) in models {
        let _ = write!(
            out,
            "<section class=\"model\" data-model=\"{n}\"><h2>{n}</h2>",
            n = escape(name)
        );
        if versions.is_empty() {
            out.push_str("<p class=\"empty\">every version was deleted</p></section>");
            continue;
        }
        out.push_str("<table class=\"kv models\"><thead><tr><th>version</th><th>stage</th><th>aliases</th><th>run</th><th>bundle</th><th>created</th></tr></thead><tbody>");
        for version in versions {
            let stage_control = if read_only {
                escape(version.stage.as_str())
            } else {
                let mut options = String::new();
                for stage in Stage::ALL {
                    let _ = write!(
                        options,
                        "<option{}>{}</option>",
                        if stage == version.stage {
                            " selected"
                        } else {
                            ""
                        },
                        stage.as_str()
                    );
                }
                format!(
                    "<span class=\"stage stage-{lower}\">{stage}</span> <select class=\"stage-select\" aria-label=\"stage of version {v}\">{options}</select> <button class=\"set-stage\" data-model=\"{n}\" data-version=\"{v}\">move</button>",
                    lower = version.stage.as_str().to_ascii_lowercase(),
                    stage = version.stage.as_str(),
                    n = escape(name),
                    v = version.version,
                )
            };
            let aliases: Vec<String> = version
                .aliases
                .iter()
                .map(|alias| {
                    if read_only {
                        format!("<span class=\"alias\">@{}</span>", escape(alias))
                    } else {
                        format!(
                            "<span class=\"alias\">@{a} <button class=\"remove-alias\" data-model=\"{n}\" data-alias=\"{a}\" title=\"remove\">×</button></span>",
                            a = escape(alias),
                            n = escape(name)
                        )
                    }
                })
                .collect();
            let alias_form = if read_only {
                String::new()
            } else {
                format!(
                    " <input class=\"alias-input\" size=\"10\" placeholder=\"alias\" aria-label=\"new alias for version {v}\"><button class=\"set-alias\" data-model=\"{n}\" data-version=\"{v}\">set</button>",
                    n = escape(name),
                    v = version.version
                )
            };
            let _ = write!(
                out,
                "<tr data-version=\"{v}\"><td><code>{uri}</code></td><td>{stage_control}</td><td>{aliases}{alias_form}</td><td>{run}</td><td>{path}</td><td>{created}</td></tr>",
                v = version.version,
                uri = escape(&version.uri()),
                aliases = aliases.join(" "),
                run = run_link(&version.run_id),
                path = escape(&version.artifact_path),
                created = time(version.created_at),
            );
        }
        out.push_str("</tbody></table></section>");
    }
    out
}
