//! `flow runs`, `flow compare` and `flow log`: looking at runs and writing into them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use comfy_table::{ColumnConstraint, ContentArrangement, Table};
use serde_json::json;
use terminal_size::Width;

use crate::exec::{append_annotation, append_metric, rfc3339, Annotation, AnnotationKind};
use crate::resolve::short_commit;
use crate::store::{RunFilter, RunRecord, RunStatus, Store};
use crate::ui::{format_number, lineage_params};

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first.
    List {
        /// Only runs of this entry point.
        #[arg(long)]
        entry: Option<String>,
        /// Only runs with this status (RUNNING, FINISHED, FAILED, KILLED).
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this experiment.
        #[arg(long)]
        experiment: Option<String>,
        /// Only runs of this fan-out member (`machine-1-1`, `seed=0`).
        #[arg(long)]
        member: Option<String>,
        /// Order by `run_time` (default, newest first) or by a metric's latest value,
        /// highest first: `metric.<key>` (runs without the metric are left out).
        #[arg(long)]
        sort: Option<String>,
        /// Reverse the order: oldest or lowest first (`--sort metric.val_loss --asc`).
        #[arg(long)]
        asc: bool,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Show one run: params, metrics (last values), artifacts, lineage edges.
    Show {
        run: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a run (refused while other runs were derived from it, unless --force).
    Delete {
        run: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Append a metric value to the current run.
    Metric {
        key: String,
        value: f64,
        #[arg(long, default_value_t = 0)]
        step: i64,
    },
    /// Record an extra param of the current run (stored when the step ends).
    Param { key: String, value: String },
    /// Set a tag on the current run (stored when the step ends).
    Tag { key: String, value: String },
    /// Copy a file into the current run's outputs.
    Artifact {
        path: PathBuf,
        /// Name inside the outputs [default: the file name].
        #[arg(long)]
        name: Option<String>,
    },
}

pub fn runs(store: &Store, command: RunsCommand) -> Result<i32> {
    match command {
        RunsCommand::List {
            entry,
            status,
            experiment,
            member,
            sort,
            asc,
            limit,
            json,
        } => {
            let status = match status {
                Some(text) => Some(text.to_ascii_uppercase().parse::<RunStatus>().map_err(
                    |_| {
                        anyhow::anyhow!(
                            "unknown status `{text}`; expected RUNNING, FINISHED, FAILED or KILLED"
                        )
                    },
                )?),
                None => None,
            };
            let sort_metric = match sort.as_deref() {
                None | Some("run_time") => None,
                Some(text) => match text.strip_prefix("metric.") {
                    Some(key) => Some(key.to_string()),
                    None => bail!("cannot sort by `{text}`; use `run_time` or `metric.<key>`"),
                },
            };
            let filter = RunFilter {
                entry,
                status,
                experiment,
                member,
                limit: Some(limit),
                metric: sort_metric.clone(),
                ascending: asc,
            };
            let runs = store.list_runs(&filter)?;
            let mut rows: Vec<(RunRecord, BTreeMap<String, f64>)> = Vec::with_capacity(runs.len());
            for run in runs {
                let metrics = store.latest_metrics(&run.run_id)?;
                rows.push((run, metrics));
            }
            if json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(run, metrics)| run_json(run, metrics, None))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let with_members = rows.iter().any(|(run, _)| run.member.is_some());
                let mut header = vec!["RUN", "ENTRY", "KEY"];
                if with_members {
                    header.push("MEMBER");
                }
                header.extend(["STATUS", "RUN_TIME", "METRICS"]);
                let metrics_column = header.len() - 1;
                let mut table = new_table(header, &[metrics_column]);
                for (run, metrics) in &rows {
                    let shown: Vec<String> = match &sort_metric {
                        Some(key) => metrics
                            .get(key)
                            .map(|v| format!("{key}={}", format_number(*v)))
                            .into_iter()
                            .collect(),
                        None => metrics
                            .iter()
                            .take(3)
                            .map(|(k, v)| format!("{k}={}", format_number(*v)))
                            .collect(),
                    };
                    let mut cells = vec![
                        run.run_id[..12].to_string(),
                        run.entry.clone(),
                        run.key_value.clone().unwrap_or_else(|| "-".into()),
                    ];
                    if with_members {
                        cells.push(run.member.clone().unwrap_or_else(|| "-".into()));
                    }
                    cells.extend([
                        run.status.to_string(),
                        run.run_time.format("%Y-%m-%d %H:%M:%S").to_string(),
                        shown.join(" "),
                    ]);
                    table.add_row(cells);
                }
                print_table(&table);
            }
            Ok(0)
        }
        RunsCommand::Show { run, json } => {
            let run = store.get_run(&run)?;
            let metrics = store.latest_metrics(&run.run_id)?;
            let artifacts = store.artifacts(&run.run_id)?;
            let reuses = store.reuses(&run.run_id)?;
            if json {
                let mut value = run_json(&run, &metrics, Some(&artifacts));
                value["reused"] = json!(reuses.count);
                println!("{}", serde_json::to_string_pretty(&value)?);
                return Ok(0);
            }
            println!("run        {}", run.run_id);
            println!(
                "entry      {}{}",
                run.entry,
                run.key_value
                    .as_ref()
                    .map(|k| format!(" [{k}]"))
                    .unwrap_or_default()
            );
            println!("status     {}", run.status);
            println!("run_time   {}", rfc3339(run.run_time));
            if let Some(end) = run.end_time {
                println!(
                    "duration   {:.1} s",
                    (end - run.start_time).num_milliseconds() as f64 / 1000.0
                );
            }
            println!("experiment {}", run.experiment);
            println!("code       {}", short_commit(&run.code_version));
            println!("data       {}", run.data_version);
            if let Some(last) = reuses.last {
                println!(
                    "reused     {} time{} (last {})",
                    reuses.count,
                    if reuses.count == 1 { "" } else { "s" },
                    rfc3339(last)
                );
            }
            println!("command    {}", run.command);
            section(
                "params",
                run.params.iter().map(|(k, v)| format!("{k} = {v}")),
            );
            section(
                "logged params",
                store
                    .logged_params(&run.run_id)?
                    .into_iter()
                    .map(|(k, v)| format!("{k} = {v}")),
            );
            section(
                "upstream",
                run.upstream
                    .iter()
                    .map(|(e, r)| format!("{e} {}", &r[..r.len().min(12)])),
            );
            section("metrics", metrics.iter().map(|(k, v)| format!("{k} = {v}")));
            let tags = store.tags(&run.run_id)?;
            section("tags", tags.iter().map(|(k, v)| format!("{k} = {v}")));
            section(
                "artifacts",
                artifacts.iter().map(|a| {
                    format!(
                        "{}  {}  {}",
                        a.path,
                        crate::ui::format_bytes(a.size),
                        &a.hash[..12]
                    )
                }),
            );
            section(
                "uploaded artifacts",
                store.logged_artifacts(&run.run_id)?.into_iter().map(|a| {
                    format!(
                        "{}  {}  {}",
                        a.path,
                        crate::ui::format_bytes(a.size),
                        &a.hash[..12]
                    )
                }),
            );
            let log = store.dir().join("logs").join(format!("{}.log", run.run_id));
            if log.exists() {
                println!("log        {}", log.display());
            }
            Ok(0)
        }
        RunsCommand::Delete { run, force } => {
            let record = store.get_run(&run)?;
            store.delete_run(&record.run_id, force)?;
            let _ = std::fs::remove_file(
                store
                    .dir()
                    .join("logs")
                    .join(format!("{}.log", record.run_id)),
            );
            println!(
                "deleted run {} ({}); `flow gc` reclaims its unreferenced objects",
                &record.run_id[..12],
                record.entry
            );
            Ok(0)
        }
    }
}

fn section(title: &str, lines: impl Iterator<Item = String>) {
    let lines: Vec<String> = lines.collect();
    if lines.is_empty() {
        return;
    }
    println!("{title}:");
    for line in lines {
        println!("  {line}");
    }
}

fn run_json(
    run: &RunRecord,
    metrics: &BTreeMap<String, f64>,
    artifacts: Option<&[crate::store::Artifact]>,
) -> serde_json::Value {
    let mut value = json!({
        "run_id": run.run_id,
        "entry": run.entry,
        "status": run.status.to_string(),
        "key": run.key_value,
        "run_time": rfc3339(run.run_time),
        "experiment": run.experiment,
        "params": run.params,
        "metrics": metrics.iter().map(|(k, v)| (k.clone(), if v.is_finite() { json!(v) } else { json!(v.to_string()) })).collect::<serde_json::Map<_, _>>(),
        "upstream": run.upstream.iter().map(|(e, r)| json!({"entry": e, "run_id": r})).collect::<Vec<_>>(),
        "data_version": run.data_version,
        "code_version": run.code_version,
    });
    if let Some(artifacts) = artifacts {
        value["artifacts"] = json!(artifacts
            .iter()
            .map(|a| json!({"path": a.path, "hash": a.hash, "size": a.size}))
            .collect::<Vec<_>>());
    }
    value
}

/// Two runs side by side: what they were computed from (key, member, data and code
/// version, and the params of every run upstream, so two evaluate runs of different
/// datasets show it), then their metrics; `*` marks a difference.
pub fn compare(store: &Store, left: &str, right: &str) -> Result<i32> {
    let (a, b) = (store.get_run(left)?, store.get_run(right)?);
    let (ma, mb) = (
        store.latest_metrics(&a.run_id)?,
        store.latest_metrics(&b.run_id)?,
    );
    let (pa, pb) = (lineage_params(store, &a)?, lineage_params(store, &b)?);
    let mut table = new_table(vec!["", "", &a.run_id[..12], &b.run_id[..12]], &[2, 3]);
    let mut row = |name: String, x: String, y: String| {
        let mark = if x != y { "*" } else { "" };
        table.add_row(vec![mark.to_string(), name, x, y]);
    };
    let text = |value: Option<&String>| value.cloned().unwrap_or_else(|| "-".into());
    row("entry".into(), a.entry.clone(), b.entry.clone());
    row(
        "key".into(),
        text(a.key_value.as_ref()),
        text(b.key_value.as_ref()),
    );
    if a.member.is_some() || b.member.is_some() {
        row(
            "member".into(),
            text(a.member.as_ref()),
            text(b.member.as_ref()),
        );
    }
    row("status".into(), a.status.to_string(), b.status.to_string());
    row(
        "code".into(),
        short_commit(&a.code_version),
        short_commit(&b.code_version),
    );
    row(
        "data".into(),
        a.data_version.chars().take(12).collect(),
        b.data_version.chars().take(12).collect(),
    );
    let mut keys: Vec<&String> = pa.keys().chain(pb.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        row(format!("param.{key}"), text(pa.get(key)), text(pb.get(key)));
    }
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let show = |m: &BTreeMap<String, f64>| {
            m.get(key)
                .map(|v| format_number(*v))
                .unwrap_or_else(|| "-".into())
        };
        row(format!("metric.{key}"), show(&ma), show(&mb));
    }
    print_table(&table);
    Ok(0)
}

/// Prints a table without the padding that would trail each line.
fn print_table(table: &Table) {
    for line in table.lines() {
        println!("{}", line.trim_end());
    }
}

/// A borderless table of `header` that fits the terminal: only the columns in `wrapping`
/// wrap their long cells, the others (ids, times) stay whole. Piped output is never
/// wrapped, so `grep` sees whole rows.
fn new_table(header: Vec<&str>, wrapping: &[usize]) -> Table {
    let mut table = Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_header(header);
    if let Some((Width(width), _)) = terminal_size::terminal_size() {
        table
            .set_width(width)
            .set_content_arrangement(ContentArrangement::Dynamic);
    }
    for (index, column) in table.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if !wrapping.contains(&index) {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
    table
}

/// `flow log ...` inside a step: the runner's environment says which run and store.
pub fn log(command: LogCommand) -> Result<i32> {
    let env = |name: &str| {
        std::env::var_os(name).map(PathBuf::from).with_context(|| {
            format!("`{name}` is not set: `flow log` works inside a step started by `flow run`")
        })
    };
    match command {
        LogCommand::Metric { key, value, step } => {
            append_metric(&env("FLOW_METRICS")?, &key, value, step)?;
        }
        // Recorded by the flow that started the step when it ends: a step never opens
        // the store (it may run on another node).
        LogCommand::Param { key, value } => {
            let annotation = Annotation {
                kind: AnnotationKind::Param,
                key,
                value,
            };
            append_annotation(&env("FLOW_ANNOTATIONS")?, &annotation)?;
        }
        LogCommand::Tag { key, value } => {
            let annotation = Annotation {
                kind: AnnotationKind::Tag,
                key,
                value,
            };
            append_annotation(&env("FLOW_ANNOTATIONS")?, &annotation)?;
        }
        LogCommand::Artifact { path, name } => {
            let out = env("FLOW_OUTPUT_DIR")?;
            let name = match name {
                Some(name) => PathBuf::from(name),
                None => PathBuf::from(
                    path.file_name()
                        .with_context(|| format!("`{}` has no file name", path.display()))?,
                ),
            };
            if name.is_absolute()
                || name
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                bail!(
                    "artifact name `{}` must be a relative path inside the outputs",
                    name.display()
                );
            }
            let dest = out.join(&name);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::copy(&path, &dest).with_context(|| {
                format!("cannot copy `{}` into the run's outputs", path.display())
            })?;
        }
    }
    Ok(0)
}
