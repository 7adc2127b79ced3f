//! `flow runs`, `flow compare` and `flow log`: looking at runs and writing into them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use serde_json::json;

use crate::exec::{append_annotation, append_metric, rfc3339, Annotation, AnnotationKind};
use crate::resolve::short_commit;
use crate::store::{RunFilter, RunRecord, RunStatus, Store};

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
                println!(
                    "{:<12}  {:<10}  {:<14} {:<9} {:<24} METRICS",
                    "RUN", "ENTRY", "KEY", "STATUS", "RUN_TIME"
                );
                for (run, metrics) in &rows {
                    let shown: Vec<String> = match &sort_metric {
                        Some(key) => metrics
                            .get(key)
                            .map(|v| format!("{key}={v:.4}"))
                            .into_iter()
                            .collect(),
                        None => metrics
                            .iter()
                            .take(3)
                            .map(|(k, v)| format!("{k}={v:.4}"))
                            .collect(),
                    };
                    println!(
                        "{:<12}  {:<10}  {:<14} {:<9} {:<24} {}",
                        &run.run_id[..12],
                        run.entry,
                        run.key_value.as_deref().unwrap_or("-"),
                        run.status.to_string(),
                        rfc3339(run.run_time),
                        shown.join(" ")
                    );
                }
            }
            Ok(0)
        }
        RunsCommand::Show { run, json } => {
            let run = store.get_run(&run)?;
            let metrics = store.latest_metrics(&run.run_id)?;
            let artifacts = store.artifacts(&run.run_id)?;
            if json {
                let value = run_json(&run, &metrics, Some(&artifacts));
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
            println!("command    {}", run.command);
            section(
                "params",
                run.params.iter().map(|(k, v)| format!("{k} = {v}")),
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
                        super::render::bytes(a.size),
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

pub fn compare(store: &Store, left: &str, right: &str) -> Result<i32> {
    let (a, b) = (store.get_run(left)?, store.get_run(right)?);
    let (ma, mb) = (
        store.latest_metrics(&a.run_id)?,
        store.latest_metrics(&b.run_id)?,
    );
    println!("{:<24} {:<20} {:<20}", "", &a.run_id[..12], &b.run_id[..12]);
    println!("{:<24} {:<20} {:<20}", "entry", a.entry, b.entry);
    let mut keys: Vec<&String> = a.params.keys().chain(b.params.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (x, y) = (
            a.params.get(key).map(String::as_str).unwrap_or("-"),
            b.params.get(key).map(String::as_str).unwrap_or("-"),
        );
        let mark = if x != y { "*" } else { " " };
        println!("{mark}{:<23} {:<20} {:<20}", format!("param.{key}"), x, y);
    }
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let show = |m: &BTreeMap<String, f64>| {
            m.get(key)
                .map(|v| format!("{v:.6}"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            " {:<23} {:<20} {:<20}",
            format!("metric.{key}"),
            show(&ma),
            show(&mb)
        );
    }
    Ok(0)
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
