//! What `flow plan` would say (`/plan?entry=main&P=epochs=2`, `GET /api/flow/plan`): for
//! an entry point and parameters typed in a form, each step's decision — reuse which run,
//! or execute and why — and why each newer candidate was rejected. A run page links here
//! with its own params, which answers "would a request reuse this run now, and if not, why?".

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::Html;
use axum::Json;
use serde_json::{json, Value};

use crate::exec::rfc3339;
use crate::resolve::{Decision, Plan};
use crate::spec::Project;
use crate::ui::error::{ApiError, PageError, UiError};
use crate::ui::html::{escape, layout, run_link, url_decode};
use crate::ui::{blocking, Planner, UiState};

/// The form's fields: the entry, `-P` values, and a run to point out in the answer.
#[derive(Debug, Default)]
struct PlanRequest {
    entry: Option<String>,
    params: Vec<String>,
    highlight: Option<String>,
}

fn parse_query(query: Option<&str>) -> PlanRequest {
    let mut request = PlanRequest::default();
    for pair in query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
    {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = url_decode(value);
        match name {
            "entry" if !value.trim().is_empty() => request.entry = Some(value.trim().to_string()),
            "P" | "param" => request.params.extend(
                value
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(str::to_string),
            ),
            "highlight" if !value.is_empty() => request.highlight = Some(value),
            _ => {}
        }
    }
    request
}

fn planner(state: &UiState) -> Result<&Arc<dyn Planner>, UiError> {
    state.config.planner.as_ref().ok_or_else(|| {
        UiError::not_found("no project at hand: start `flow ui` in a project directory (or with --project) to plan")
    })
}

/// Plans the request, mapping a bad entry or parameter to a 400 with flow's own message.
fn plan(state: &UiState, entry: &str, params: &[String]) -> Result<Plan, UiError> {
    planner(state)?.plan(entry, params).map_err(|error| {
        let ui: UiError = error.into();
        if ui.status == axum::http::StatusCode::INTERNAL_SERVER_ERROR {
            // Spec, parameter and resolution errors are the request's fault.
            UiError::bad_request(ui.message)
        } else {
            ui
        }
    })
}

/// The plan as JSON — what `flow plan --json` prints and `GET /api/flow/plan` answers:
/// the fan-out axes, then per node (step run) its member, decision, reason, key, params,
/// data version, upstream nodes and rejected candidates.
pub fn plan_json(plan: &Plan) -> Value {
    let steps: Vec<Value> = plan
        .nodes
        .iter()
        .map(|node| {
            let (action, run_id, reason) = match &node.decision {
                Decision::Reuse(run) => ("reuse", Some(run.run_id.clone()), None),
                Decision::Execute(reason) => ("execute", None, Some(reason.to_string())),
                Decision::Wait(run) => ("wait", Some(run.run_id.clone()), None),
                Decision::Target => ("target", None, None),
            };
            json!({
                "entry": node.entry,
                "member": node.member,
                "action": action,
                "run_id": run_id,
                "reason": reason,
                "key": node.key.key_value,
                "params": node.key.params,
                "data_version": (!node.key.data_version.is_empty()).then_some(&node.key.data_version),
                "upstream": node.upstream,
                "rejected": node.rejected.iter().map(|rejection| json!({
                    "run_id": rejection.run.run_id,
                    "run_time": rfc3339(rejection.run.run_time),
                    "reasons": rejection.reasons.iter().map(ToString::to_string).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let axes: Vec<Value> = plan
        .axes
        .iter()
        .map(|(param, members)| json!({"param": param, "members": members}))
        .collect();
    json!({ "entry": plan.entry, "code_version": plan.code.id(), "fan_out": axes, "steps": steps })
}

/// `GET /api/flow/plan?entry=E&P=name=value&P=...`.
pub async fn api_plan(
    State(state): State<Arc<UiState>>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let request = parse_query(query.as_deref());
    let Some(entry) = request.entry else {
        return Err(UiError::bad_request(
            "give the entry point: `/api/flow/plan?entry=main&P=epochs=2`",
        )
        .into());
    };
    let value = blocking(&state, move |state| {
        Ok(plan_json(&plan(state, &entry, &request.params)?))
    })
    .await?;
    Ok(Json(value))
}

/// `GET /plan`: the form, and the plan when an entry is given.
pub async fn page(
    State(state): State<Arc<UiState>>,
    RawQuery(query): RawQuery,
) -> Result<Html<String>, PageError> {
    let request = parse_query(query.as_deref());
    let html = blocking(&state, move |state| {
        let project = planner(state)?
            .project()
            .map_err(|error| UiError::bad_request(format!("{error:#}")))?;
        let mut body = form(&project, &request);
        if let Some(entry) = &request.entry {
            match plan(state, entry, &request.params) {
                Ok(plan) => body.push_str(&render(&plan, request.highlight.as_deref())),
                Err(error) if error.status.is_client_error() => {
                    let _ = write!(
                        body,
                        "<p class=\"error\" id=\"plan-error\">{}</p>",
                        escape(&error.message)
                    );
                }
                Err(error) => return Err(error),
            }
        }
        Ok(layout("Plan", state.page_token(), &body))
    })
    .await?;
    Ok(Html(html))
}

fn form(project: &Project, request: &PlanRequest) -> String {
    let mut options = String::new();
    for name in project.entries.keys() {
        let selected = request.entry.as_deref() == Some(name.as_str());
        let _ = write!(
            options,
            "<option{}>{}</option>",
            if selected { " selected" } else { "" },
            escape(name)
        );
    }
    let mut declared = String::new();
    for (name, entry) in &project.entries {
        for (param, spec) in &entry.parameters {
            let _ = write!(
                declared,
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&format!("{name}.{param}")),
                escape(&format!("{:?}", spec.kind).to_ascii_lowercase()),
                escape(spec.default.as_deref().unwrap_or("(required)")),
            );
        }
    }
    format!(
        "<h1>Plan</h1><p>What <code>flow run</code> would reuse or execute now, and why — nothing is run.</p>\
         <form id=\"plan-form\" method=\"get\" action=\"/plan\" class=\"filter\">\
         <label>entry point <select name=\"entry\" id=\"plan-entry\">{options}</select></label>\
         <label>parameters, one <code>name=value</code> or <code>step.name=value</code> a line\
         <textarea name=\"P\" id=\"plan-params\" rows=\"4\" cols=\"50\">{params}</textarea></label>\
         <button type=\"submit\">Plan</button></form>\
         <details><summary>declared parameters</summary><table class=\"kv\"><thead><tr><th>parameter</th><th>type</th><th>default</th></tr></thead><tbody>{declared}</tbody></table></details>",
        params = escape(&request.params.join("\n")),
    )
}

fn render(plan: &Plan, highlight: Option<&str>) -> String {
    let mut out = format!(
        "<h2>Plan for <code>{}</code> at code version <code>{}</code></h2><table class=\"kv\" id=\"plan\"><thead><tr><th>step</th><th>member</th><th>key</th><th>decision</th><th>params</th><th>newer candidates rejected</th></tr></thead><tbody>",
        escape(&plan.entry),
        escape(&plan.code.id()),
    );
    for step in &plan.nodes {
        let decision = match &step.decision {
            Decision::Reuse(run) => format!(
                "<span class=\"decision reuse{}\">reuse {}</span>",
                if Some(run.run_id.as_str()) == highlight {
                    " highlight"
                } else {
                    ""
                },
                run_link(&run.run_id)
            ),
            Decision::Execute(reason) => format!(
                "<span class=\"decision execute\">execute</span>: {}",
                escape(&reason.to_string())
            ),
            Decision::Wait(run) => format!(
                "<span class=\"decision wait\">wait</span> for {} (RUNNING in another flow)",
                run_link(&run.run_id)
            ),
            Decision::Target => "<span class=\"decision\">target</span>".to_string(),
        };
        let params: Vec<String> = step
            .key
            .params
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let rejected: Vec<String> = step
            .rejected
            .iter()
            .map(|rejection| {
                let reasons: Vec<String> =
                    rejection.reasons.iter().map(ToString::to_string).collect();
                format!(
                    "<li class=\"{}\">{}: {}</li>",
                    if Some(rejection.run.run_id.as_str()) == highlight {
                        "highlight"
                    } else {
                        ""
                    },
                    run_link(&rejection.run.run_id),
                    escape(&reasons.join("; "))
                )
            })
            .collect();
        let _ = write!(
            out,
            "<tr data-step=\"{entry}\"><th>{entry}</th><td>{member}</td><td>{key}</td><td>{decision}</td><td class=\"params\">{params}</td><td>{rejected}</td></tr>",
            entry = escape(&step.entry),
            member = escape(step.member.as_deref().unwrap_or("")),
            key = escape(step.key.key_value.as_deref().unwrap_or("")),
            params = escape(&params.join(" ")),
            rejected = if rejected.is_empty() {
                String::new()
            } else {
                format!("<ul>{}</ul>", rejected.join(""))
            },
        );
    }
    out.push_str("</tbody></table>");
    if let Some(run) = highlight {
        let mentioned = plan.nodes.iter().any(|step| {
            matches!(&step.decision, Decision::Reuse(r) if r.run_id == run)
                || step
                    .rejected
                    .iter()
                    .any(|rejection| rejection.run.run_id == run)
        });
        if !mentioned {
            let _ = write!(
                out,
                "<p class=\"note\" id=\"highlight-note\">run {} is neither reused nor among the newest candidates explained: newer runs with the same key come first.</p>",
                run_link(run)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_arrive_from_repeated_fields_and_lines() {
        let request = parse_query(Some(
            "entry=train&P=epochs%3D2%0D%0Aload.dataset%3DM-3&P=seed=1&highlight=ab",
        ));
        assert_eq!(request.entry.as_deref(), Some("train"));
        assert_eq!(request.params, ["epochs=2", "load.dataset=M-3", "seed=1"]);
        assert_eq!(request.highlight.as_deref(), Some("ab"));
    }
}
