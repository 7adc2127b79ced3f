//! The runs table (`/`, `GET /api/flow/runs`): every run, filtered, sorted by any column
//! and paged on the server; RUNNING rows refresh themselves (`GET /api/flow/runs/status`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Html;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::exec::rfc3339;
use crate::resolve::short_commit;
use crate::store::ui_queries::{RunField, RunSearch};
use crate::store::{RunRecord, Store};
use crate::ui::error::{ApiError, PageError, UiError};
use crate::ui::filter::{field_name, normalise, parse_filter, parse_sort};
use crate::ui::html::{
    abbreviate, duration, escape, layout, number, run_link, status_badge, time, url_encode,
};
use crate::ui::run_row::{progress, progress_bar, run_json};
use crate::ui::{blocking, UiState};

/// Rows per page unless asked otherwise, and the most a page may ask for.
const DEFAULT_PER_PAGE: usize = 50;
const MAX_PER_PAGE: usize = 500;
/// Metric columns shown when the user picked none (more make pages slow to read).
const DEFAULT_METRIC_COLUMNS: usize = 3;
/// Metrics shown by default when a run has them, in this order.
const PREFERRED_METRICS: [&str; 6] = [
    "f1_pa_best",
    "f1_pa_pot",
    "f1_pa_epsilon",
    "val_loss",
    "train_loss",
    "loss",
];
/// The query string of the runs page and of `GET /api/flow/runs`.
#[derive(Debug, Default, Deserialize)]
pub struct RunsQuery {
    /// Filter expression, e.g. `metric.f1_pa_best > 0.9 and entry = evaluate`.
    #[serde(default)]
    pub filter: String,
    /// Field to order by (`start` by default, `metric.<key>`, `param.<name>`, ...).
    pub sort: Option<String>,
    /// `asc` or `desc` (default).
    pub order: Option<String>,
    /// 1-based page.
    pub page: Option<usize>,
    pub per_page: Option<usize>,
    /// Extra columns, comma-separated: `metric.f1,param.epochs,tag.owner`.
    pub columns: Option<String>,
}

/// A parsed request: the store query and the columns to show.
struct Request {
    search: RunSearch,
    page: usize,
    per_page: usize,
    columns: Vec<RunField>,
}

impl RunsQuery {
    fn parse(&self, store: &Store) -> Result<Request, UiError> {
        let conditions = parse_filter(&self.filter)
            .map_err(|error| UiError::bad_request(format!("{error} in `{}`", self.filter)))?;
        let order_by = match self.sort.as_deref().filter(|text| !text.trim().is_empty()) {
            Some(text) => parse_sort(text)
                .map_err(|error| UiError::bad_request(format!("sort: {}", error.message)))?,
            None => RunField::Start,
        };
        let ascending = match self.order.as_deref() {
            None | Some("") | Some("desc") => false,
            Some("asc") => true,
            Some(other) => {
                return Err(UiError::bad_request(format!(
                    "order must be `asc` or `desc`, not `{other}`"
                )))
            }
        };
        let per_page = self.per_page.unwrap_or(DEFAULT_PER_PAGE);
        if per_page == 0 || per_page > MAX_PER_PAGE {
            return Err(UiError::bad_request(format!(
                "per_page must be between 1 and {MAX_PER_PAGE}, not {per_page}"
            )));
        }
        let page = self.page.unwrap_or(1).max(1);
        let mut columns = Vec::new();
        for text in self
            .columns
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|text| !text.is_empty())
        {
            let field = parse_sort(text)
                .map_err(|error| UiError::bad_request(format!("columns: {}", error.message)))?;
            if matches!(
                field,
                RunField::Metric(_) | RunField::Param(_) | RunField::Tag(_)
            ) && !columns.contains(&field)
            {
                columns.push(field);
            }
        }
        let mentioned = conditions
            .iter()
            .map(|condition| condition.field.clone())
            .chain(std::iter::once(order_by.clone()));
        for field in mentioned {
            if matches!(field, RunField::Metric(_) | RunField::Param(_))
                && !columns.contains(&field)
            {
                columns.push(field);
            }
        }
        if self.columns.is_none() {
            let metrics = store.recent_field_names(200)?.metrics;
            let preferred = PREFERRED_METRICS
                .iter()
                .filter(|name| metrics.iter().any(|m| m == *name))
                .map(|name| name.to_string());
            let others = metrics.iter().cloned();
            for name in preferred.chain(others) {
                let n_metric_columns = columns
                    .iter()
                    .filter(|field| matches!(field, RunField::Metric(_)))
                    .count();
                if n_metric_columns >= DEFAULT_METRIC_COLUMNS {
                    break;
                }
                let field = RunField::Metric(name);
                if !columns.contains(&field) {
                    columns.push(field);
                }
            }
        }
        Ok(Request {
            search: RunSearch {
                conditions: normalise(conditions),
                order_by,
                ascending,
                offset: (page - 1) * per_page,
                limit: per_page,
            },
            page,
            per_page,
            columns,
        })
    }
}

/// A run as a row of the table, with its latest metrics.
struct Row {
    run: RunRecord,
    metrics: BTreeMap<String, f64>,
    tags: BTreeMap<String, String>,
}

struct Table {
    request: Request,
    total: u64,
    rows: Vec<Row>,
}

fn load_table(state: &UiState, query: &RunsQuery) -> Result<Table, UiError> {
    let request = query.parse(&state.store)?;
    let page = state.store.search_runs(&request.search)?;
    let rows = page
        .runs
        .into_iter()
        .map(|run| {
            Ok(Row {
                metrics: state.store.latest_metrics(&run.run_id)?,
                tags: state.store.tags(&run.run_id)?,
                run,
            })
        })
        .collect::<Result<Vec<_>, UiError>>()?;
    Ok(Table {
        request,
        total: page.total,
        rows,
    })
}

/// `GET /api/flow/runs`.
pub async fn api_runs(
    State(state): State<Arc<UiState>>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|error| UiError::bad_request(error.body_text()))?;
    let table = blocking(&state, move |state| load_table(state, &query)).await?;
    let runs: Vec<Value> = table
        .rows
        .iter()
        .map(|row| run_json(&row.run, &row.metrics, &row.tags))
        .collect();
    Ok(Json(json!({
        "total": table.total,
        "page": table.request.page,
        "per_page": table.request.per_page,
        "columns": table.request.columns.iter().map(field_name).collect::<Vec<_>>(),
        "runs": runs,
    })))
}

#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    /// Comma-separated run ids.
    ids: String,
}

/// `GET /api/flow/runs/status?ids=a,b`: status, end and progress of a few runs, for pages
/// that follow RUNNING runs.
pub async fn api_status(
    State(state): State<Arc<UiState>>,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query.map_err(|error| UiError::bad_request(error.body_text()))?;
    let ids: Vec<String> = query
        .ids
        .split(',')
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect();
    if ids.len() > MAX_PER_PAGE {
        return Err(UiError::bad_request(format!("at most {MAX_PER_PAGE} ids at once")).into());
    }
    let statuses = blocking(&state, move |state| {
        ids.iter()
            .map(|id| {
                let run = state.store.get_run(id)?;
                let tags = state.store.tags(&run.run_id)?;
                Ok(json!({
                    "run_id": run.run_id,
                    "status": run.status.as_str(),
                    "end_time": run.end_time.map(rfc3339),
                    "duration": duration(&run),
                    "progress": progress(&tags),
                }))
            })
            .collect::<Result<Vec<_>, UiError>>()
    })
    .await?;
    Ok(Json(json!({ "runs": statuses })))
}

/// `GET /api/flow/fields`: entry points, param, metric and tag names in recent use.
pub async fn api_fields(State(state): State<Arc<UiState>>) -> Result<Json<Value>, ApiError> {
    let (entries, names) = blocking(&state, |state| {
        Ok((
            state.store.entries_with_runs()?,
            state.store.recent_field_names(1000)?,
        ))
    })
    .await?;
    Ok(Json(json!({
        "entries": entries,
        "params": names.params,
        "metrics": names.metrics,
        "tags": names.tags,
    })))
}

/// `GET /`: the runs table.
pub async fn page(
    State(state): State<Arc<UiState>>,
    query: Result<Query<RunsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Html<String>, PageError> {
    let Query(query) = query.map_err(|error| UiError::bad_request(error.body_text()))?;
    let html = blocking(&state, move |state| {
        let names = state.store.recent_field_names(1000)?;
        let body = match load_table(state, &query) {
            Ok(table) => render(&query, &table, &names),
            // A bad filter keeps the form so it can be corrected.
            Err(error) if error.status == axum::http::StatusCode::BAD_REQUEST => {
                let mut body = filter_form(&query, &names);
                let _ = write!(
                    body,
                    "<p class=\"error\" id=\"filter-error\">{}</p>",
                    escape(&error.message)
                );
                body
            }
            Err(error) => return Err(error),
        };
        Ok(layout("Runs", state.page_token(), &body))
    })
    .await?;
    Ok(Html(html))
}

fn filter_form(query: &RunsQuery, names: &crate::store::ui_queries::FieldNames) -> String {
    let mut suggestions = String::new();
    for (prefix, list) in [
        ("metric.", &names.metrics),
        ("param.", &names.params),
        ("tag.", &names.tags),
    ] {
        for name in list {
            let _ = write!(
                suggestions,
                "<option value=\"{}\">",
                escape(&format!("{prefix}{name}"))
            );
        }
    }
    format!(
        "<form class=\"filter\" id=\"filter-form\" method=\"get\" action=\"/\">\
         <input type=\"search\" name=\"filter\" id=\"filter\" value=\"{filter}\" list=\"fields\" \
          placeholder=\"metric.f1_pa_best &gt; 0.9 and entry = evaluate\" size=\"60\">\
         <input type=\"hidden\" name=\"sort\" value=\"{sort}\">\
         <input type=\"hidden\" name=\"order\" value=\"{order}\">\
         <input type=\"text\" name=\"columns\" id=\"columns\" value=\"{columns}\" list=\"fields\" \
          placeholder=\"columns: metric.f1,param.epochs\" size=\"30\">\
         <button type=\"submit\">Apply</button> <a href=\"/\">reset</a>\
         <datalist id=\"fields\">{suggestions}</datalist></form>",
        filter = escape(&query.filter),
        sort = escape(query.sort.as_deref().unwrap_or("")),
        order = escape(query.order.as_deref().unwrap_or("")),
        columns = escape(query.columns.as_deref().unwrap_or("")),
    )
}

/// The fixed columns: (field, header).
const FIXED_COLUMNS: [(RunField, &str); 8] = [
    (RunField::RunId, "run"),
    (RunField::Entry, "entry"),
    (RunField::KeyValue, "key"),
    (RunField::Member, "member"),
    (RunField::Status, "status"),
    (RunField::Start, "start"),
    (RunField::Duration, "duration"),
    (RunField::CodeVersion, "commit"),
];

fn render(
    query: &RunsQuery,
    table: &Table,
    names: &crate::store::ui_queries::FieldNames,
) -> String {
    let request = &table.request;
    let mut out = String::from("<h1>Runs</h1>");
    out.push_str(&filter_form(query, names));
    let first = request.search.offset + 1;
    let last = request.search.offset + table.rows.len();
    let _ = write!(
        out,
        "<form id=\"compare-form\" method=\"get\" action=\"/compare\">\
         <div class=\"toolbar\"><span id=\"count\">{}</span>\
         <button type=\"submit\" id=\"compare-button\">Compare selected</button>{}</div>",
        if table.rows.is_empty() {
            format!("no runs of {} match", grouped(table.total))
        } else {
            format!("{first}–{last} of {} runs", grouped(table.total))
        },
        pager(query, request, table.total),
    );
    out.push_str("<table class=\"runs\" id=\"runs-table\"><thead><tr><th></th>");
    let sort_link = |field: &RunField, header: &str| -> String {
        let name = field_name(field);
        let active = request.search.order_by == *field;
        let next_order = if active && !request.search.ascending {
            "asc"
        } else {
            "desc"
        };
        let arrow = match (active, request.search.ascending) {
            (true, true) => " ▲",
            (true, false) => " ▼",
            _ => "",
        };
        format!(
            "<th><a class=\"sort\" data-field=\"{name_attr}\" href=\"{href}\">{header}{arrow}</a></th>",
            name_attr = escape(&name),
            href = escape(&link(query, &[("sort", &name), ("order", next_order), ("page", "1")])),
            header = escape(header),
        )
    };
    for (field, header) in &FIXED_COLUMNS {
        out.push_str(&sort_link(field, header));
    }
    for field in &request.columns {
        out.push_str(&sort_link(field, &field_name(field)));
    }
    out.push_str("<th>params</th></tr></thead><tbody>");
    for row in &table.rows {
        let run = &row.run;
        let _ = write!(
            out,
            "<tr data-run=\"{id}\"><td><input type=\"checkbox\" name=\"run\" value=\"{id}\" aria-label=\"select {short}\"></td>\
             <td>{link}</td><td>{entry}</td><td>{key}</td><td>{member}</td><td>{status}{bar}</td>\
             <td>{start}</td><td class=\"num\" data-duration=\"{id}\">{duration}</td><td><code>{commit}</code></td>",
            id = escape(&run.run_id),
            short = escape(crate::ui::html::short_id(&run.run_id)),
            link = run_link(&run.run_id),
            entry = escape(&run.entry),
            key = escape(run.key_value.as_deref().unwrap_or("")),
            member = escape(run.member.as_deref().unwrap_or("")),
            status = status_badge(run),
            bar = progress_bar(run, &row.tags),
            start = time(run.start_time),
            duration = duration(run),
            commit = escape(&short_commit(&run.code_version)),
        );
        for field in &request.columns {
            let cell = match field {
                RunField::Metric(key) => row.metrics.get(key).map(|v| number(*v)),
                RunField::Param(key) => run.params.get(key).cloned(),
                RunField::Tag(key) => row.tags.get(key).cloned(),
                _ => None,
            };
            let _ = write!(
                out,
                "<td class=\"num\">{}</td>",
                escape(cell.as_deref().unwrap_or(""))
            );
        }
        let params: Vec<String> = run
            .params
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let _ = write!(
            out,
            "<td class=\"params\" title=\"{all}\">{shown}</td></tr>",
            all = escape(&params.join("\n")),
            shown = escape(&abbreviate(&params.join(" "), 48)),
        );
    }
    out.push_str("</tbody></table></form>");
    out
}

fn pager(query: &RunsQuery, request: &Request, total: u64) -> String {
    let n_pages = total.div_ceil(request.per_page as u64).max(1) as usize;
    let mut out = String::from("<span class=\"pager\">");
    if request.page > 1 {
        let _ = write!(
            out,
            "<a id=\"prev-page\" href=\"{}\">‹ previous</a> ",
            escape(&link(query, &[("page", &(request.page - 1).to_string())]))
        );
    }
    let _ = write!(out, "page {} of {}", request.page, grouped(n_pages as u64));
    if request.page < n_pages {
        let _ = write!(
            out,
            " <a id=\"next-page\" href=\"{}\">next ›</a>",
            escape(&link(query, &[("page", &(request.page + 1).to_string())]))
        );
    }
    out.push_str("</span>");
    out
}

/// The runs page's URL with some query parameters replaced.
fn link(query: &RunsQuery, changes: &[(&str, &str)]) -> String {
    let page = query.page.map(|page| page.to_string());
    let per_page = query.per_page.map(|n| n.to_string());
    let current: [(&str, Option<&str>); 6] = [
        ("filter", Some(query.filter.as_str())),
        ("sort", query.sort.as_deref()),
        ("order", query.order.as_deref()),
        ("page", page.as_deref()),
        ("per_page", per_page.as_deref()),
        ("columns", query.columns.as_deref()),
    ];
    let pairs: Vec<String> = current
        .iter()
        .filter_map(|(name, value)| {
            let value = changes
                .iter()
                .find(|(changed, _)| changed == name)
                .map(|(_, value)| *value)
                .or(*value)?;
            (!value.is_empty()).then(|| format!("{name}={}", url_encode(value)))
        })
        .collect();
    format!("/?{}", pairs.join("&"))
}

/// `100000` -> `100,000`.
pub fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_grouped() {
        assert_eq!(grouped(100_000), "100,000");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
    }

    #[test]
    fn links_keep_the_query_and_replace_what_changes() {
        let query = RunsQuery {
            filter: "metric.f1 > 0.5".into(),
            sort: Some("metric.f1".into()),
            page: Some(3),
            ..RunsQuery::default()
        };
        assert_eq!(
            link(&query, &[("page", "4")]),
            "/?filter=metric.f1%20%3E%200.5&sort=metric.f1&page=4"
        );
    }
}
