//! The command line: parses arguments, calls the library, renders results.
//!
//! The only module that writes to the terminal (steps' own output aside). Data goes to
//! stdout, progress and errors to stderr; errors are rendered once, in [`main`].

mod models;
mod render;
mod runs;
mod serve;
mod server;
mod ui;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::dag::Dag;
use crate::exec::{self, ExecOptions, Executor, SlurmOptions};
use crate::lineage::{self, Direction};
use crate::pipeline::Pipeline;
use crate::registry::{self, RegistryError};
use crate::resolve::{ModelUris, Plan, ResolvedUri, Reuse, ReusePolicy};
use crate::spec::Project;
use crate::store::Store;

/// flow: run ML pipelines declared in MLproject.yaml, reusing every step that is
/// already computed, tracking every run, and tracing where each result came from.
#[derive(Debug, Parser)]
#[command(name = "flow", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// Project directory (holding MLproject.yaml).
    #[arg(long, global = true, env = "FLOW_PROJECT", default_value = ".")]
    pub project: PathBuf,
    /// Store: a directory [default: <project>/.flow], or a PostgreSQL database shared by a
    /// team (`postgresql://user@host/db`; objects then live in --artifacts).
    #[arg(long, global = true, env = "FLOW_STORE")]
    pub store: Option<PathBuf>,
    /// Where a PostgreSQL store keeps run outputs, a directory every machine using the
    /// store shares [default: <project>/.flow].
    #[arg(long, global = true, env = "FLOW_ARTIFACTS")]
    pub artifacts: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

const EXAMPLES: &str = "Examples:
  flow run -e main                          run the whole pipeline, reusing what exists
  flow run -e train -P epochs=3             params reach every step that declares them
  flow run -e train -P load.dataset=M-3     or exactly one step (M-3: a channel in data/)
  flow plan -e main                         what would be reused or executed, and why
  flow lineage <run>                        where a result came from
  flow runs list --entry train --sort metric.val_loss";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an entry point and everything upstream of it that is not already computed.
    Run(RunArgs),
    /// Show what `flow run` would reuse or execute, and why, without running anything.
    Plan(PlanArgs),
    /// Show the runs a result came from (or, with --down, what was derived from it).
    Lineage(LineageArgs),
    /// List, show and delete runs.
    #[command(subcommand)]
    Runs(runs::RunsCommand),
    /// Show two runs' params and metrics side by side.
    Compare {
        /// First run (id or unique prefix).
        left: String,
        /// Second run.
        right: String,
    },
    /// Remove stored objects that no run references, and report the bytes freed.
    Gc,
    /// The named pipelines of this project (`pipelines/*.yaml`).
    #[command(subcommand)]
    Pipelines(PipelinesCommand),
    /// Record a metric, param, tag or artifact from inside a running step (any language).
    #[command(subcommand)]
    Log(runs::LogCommand),
    /// Run a built-in step (load, process, train, evaluate, predict) in this process.
    #[command(subcommand)]
    Step(flow_steps::StepCommand),
    /// Register, stage and alias trained model bundles.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Serve a model bundle over HTTP (MLflow's /invocations), monitoring what is scored.
    Serve(serve::ServeArgs),
    /// Show the latest monitoring windows of a `flow serve` run and flag drifting features.
    Monitor(serve::MonitorArgs),
    /// Supervises one step's process group for `flow run` (internal).
    #[command(name = "__guard", hide = true)]
    Guard {
        /// The flow process the step belongs to; when it dies, the step is stopped.
        #[arg(long)]
        parent: u32,
        /// The step's command file.
        script: PathBuf,
    },
    /// Serve MLflow's tracking REST API over the store: scripts using the `mlflow` client log into flow.
    Server(server::ServerArgs),
    /// Serve the web dashboard: runs, curves, artifacts, lineage, comparisons, models.
    Ui(ui::UiArgs),
}

#[derive(Debug, Args)]
pub struct Selection {
    /// Entry point to run (its upstream steps come along) [default: the pipeline's, or `main`].
    #[arg(short, long)]
    pub entry: Option<String>,
    /// A named pipeline (`pipelines/<NAME>.yaml`, or a path): its entry point and
    /// parameters, under any `-P` given here.
    #[arg(short = 'p', long = "pipeline", value_name = "NAME")]
    pub pipeline: Option<String>,
    /// Parameter `name=value` for every step declaring it, or `step.name=value` for one step.
    #[arg(short = 'P', long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Which earlier runs may be reused: same `commit` (and uncommitted changes), `any` commit, or `never`.
    #[arg(long, value_enum, default_value = "commit")]
    pub reuse: ReusePolicy,
    /// Execute STEP even when an earlier run could be reused; its downstream steps follow (repeatable).
    #[arg(long, value_name = "STEP")]
    pub force: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum PipelinesCommand {
    /// List the pipelines: name, entry point, parameters, description.
    List,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Experiment the new runs belong to.
    #[arg(long, default_value = "Default")]
    pub experiment: String,
    /// Steps to run at once [default: number of cores; under Slurm, no limit]; each also
    /// needs the cores and memory its entry point's `resources` declare.
    #[arg(short, long)]
    pub jobs: Option<usize>,
    /// Override a step's resources: `train.cpus=1`, `train.memory=2G`, `train.time=2h`
    /// (repeatable).
    #[arg(long = "resources", value_name = "STEP.NAME=VALUE")]
    pub resources: Vec<String>,
    /// Print one JSON object describing every step instead of text.
    #[arg(long)]
    pub json: bool,
    /// Where steps run: this machine, or a Slurm cluster (one `sbatch` job per step run).
    #[arg(long, value_enum, default_value = "local")]
    pub executor: ExecutorKind,
    /// Slurm partition for every job.
    #[arg(long, value_name = "NAME")]
    pub partition: Option<String>,
    /// Slurm account charged for every job.
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    /// sbatch options for every job, one per line (`--qos=high` or `#SBATCH --qos=high`).
    #[arg(long, value_name = "FILE")]
    pub slurm_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    Local,
    Slurm,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub selection: Selection,
    /// Print the plan as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LineageArgs {
    /// Run id or unique prefix.
    pub run: String,
    /// Show what was derived from the run instead of what it came from.
    #[arg(long)]
    pub down: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: LineageFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LineageFormat {
    Text,
    Json,
    Dot,
}

/// Parses the process arguments, runs the command, renders any error; returns the exit code.
pub fn main() -> i32 {
    let mut cli = Cli::parse();
    // FLOW_HOME is the store's older name; --store and FLOW_STORE win over it.
    if cli.store.is_none() {
        cli.store = std::env::var_os("FLOW_HOME").map(PathBuf::from);
    }
    if let Some(dir) = &cli.artifacts {
        // open_store reads it from here, and so do the steps' own `flow` commands.
        std::env::set_var("FLOW_ARTIFACTS", dir);
    }
    if cli.command.only_reports() {
        die_quietly_on_closed_stdout();
    }
    match dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            render::error(&error);
            1
        }
    }
}

impl Command {
    /// Commands whose work is printing what the store holds, so that a reader closing the
    /// pipe early (`flow runs list | head`) can end them at any point.
    fn only_reports(&self) -> bool {
        matches!(
            self,
            Command::Plan(_) | Command::Lineage(_) | Command::Runs(_) | Command::Compare { .. }
        ) || matches!(self, Command::Pipelines(_))
            || matches!(self, Command::Models(command) if command.only_reports())
    }
}

/// Restores the default SIGPIPE action, which Rust's runtime sets to "ignore": a write to a
/// closed pipe then ends the process silently, as it does for `ls` or `cat`, instead of
/// panicking inside `println!`. Only for reporting commands: `run` and `serve` must outlive
/// a reader that goes away and finish what they started.
fn die_quietly_on_closed_stdout() {
    // SAFETY: called once at start-up, before any thread exists; SIG_DFL is a valid action.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn dispatch(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Run(args) => run(&cli.project, cli.store.as_deref(), args),
        Command::Plan(args) => plan(&cli.project, cli.store.as_deref(), args),
        Command::Lineage(args) => {
            let store = open_store(&cli.project, cli.store.as_deref())?;
            let direction = if args.down {
                Direction::Downstream
            } else {
                Direction::Upstream
            };
            let tree = lineage::build(&store, &args.run, direction)?;
            match args.format {
                LineageFormat::Text => print!("{}", tree.to_text()),
                LineageFormat::Json => println!("{}", serde_json::to_string_pretty(&tree)?),
                LineageFormat::Dot => print!("{}", tree.to_dot()),
            }
            Ok(0)
        }
        Command::Runs(command) => {
            let store = open_store(&cli.project, cli.store.as_deref())?;
            runs::runs(&store, command)
        }
        Command::Compare { left, right } => {
            let store = open_store(&cli.project, cli.store.as_deref())?;
            runs::compare(&store, &left, &right)
        }
        Command::Pipelines(PipelinesCommand::List) => {
            let (project, _) = load_project(&cli.project)?;
            for name in Pipeline::names(&project.dir) {
                match Pipeline::load(&project, &name) {
                    Ok(pipeline) => println!(
                        "{name:<14} -e {:<10} {}{}",
                        pipeline.entry,
                        pipeline
                            .args
                            .iter()
                            .map(|a| format!("-P {a} "))
                            .collect::<String>(),
                        if pipeline.description.is_empty() {
                            String::new()
                        } else {
                            format!("\n{:<14} {}", "", pipeline.description)
                        }
                    ),
                    Err(error) => println!("{name:<14} (invalid: {error})"),
                }
            }
            Ok(0)
        }
        Command::Gc => {
            let store = open_store(&cli.project, cli.store.as_deref())?;
            let report = store.gc()?;
            println!(
                "removed {} object{}, freed {}",
                report.objects_removed,
                if report.objects_removed == 1 { "" } else { "s" },
                crate::ui::format_bytes(report.bytes_freed)
            );
            Ok(0)
        }
        Command::Log(command) => runs::log(command),
        Command::Step(command) => {
            flow_steps::run_step(command)?;
            Ok(0)
        }
        Command::Serve(args) => {
            let store = open_store(&cli.project, cli.store.as_deref())?;
            serve::serve(store, args)
        }
        Command::Monitor(args) => {
            let store = open_store(&cli.project, cli.store.as_deref())?;
            serve::monitor(&store, args)
        }
        Command::Models(command) => {
            let store = open_store(&cli.project, cli.store.as_deref())?;
            models::models(&store, command)
        }
        Command::Guard { parent, script } => Ok(exec::run_guard(parent, &script)),
        Command::Server(args) => server::server(
            open_store(&cli.project, cli.store.as_deref())?,
            &cli.project,
            cli.store.as_deref(),
            args,
        ),
        Command::Ui(args) => {
            let store = open_store(&cli.project, cli.store.as_deref())?;
            ui::ui(store, &cli.project, cli.store.as_deref(), args)
        }
    }
}

fn run(project_dir: &Path, store_dir: Option<&Path>, args: RunArgs) -> Result<i32> {
    // Before resolving: a signal during a long plan must not kill flow half-way through
    // writing a store it shares.
    exec::install_signal_handlers();
    // Before resolving too: bad executor options fail before anything is planned.
    let echo = true;
    let console = exec::Console::new();
    let mut executor = executor(&args, console.clone(), echo)?;
    let (project, store, plan) = resolve_selection(project_dir, store_dir, &args.selection)?;
    let options = ExecOptions {
        experiment: args.experiment.clone(),
        echo,
        force: args.selection.force.clone(),
        resources: resource_overrides(&project, &args.resources)?,
        tracking_uri: std::env::var("FLOW_TRACKING_URI").ok(),
    };
    if !args.json {
        render::plan_header(&plan);
    }
    let report = exec::execute(
        &project,
        &store,
        &plan,
        &options,
        executor.as_mut(),
        console,
    )?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        render::report(&report);
    }
    Ok(report.exit_code())
}

/// The executor `--executor` names, with its options.
fn executor(args: &RunArgs, console: exec::Console, echo: bool) -> Result<Box<dyn Executor>> {
    match args.executor {
        ExecutorKind::Local => {
            let slurm_only = [
                ("--partition", args.partition.is_some()),
                ("--account", args.account.is_some()),
                ("--slurm-config", args.slurm_config.is_some()),
            ];
            if let Some((option, _)) = slurm_only.iter().find(|(_, given)| *given) {
                anyhow::bail!("`{option}` applies to `--executor slurm`");
            }
            let jobs = args.jobs.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
            Ok(Box::new(exec::LocalExecutor::new(jobs, console, echo)))
        }
        ExecutorKind::Slurm => {
            let extra = match &args.slurm_config {
                Some(path) => exec::read_sbatch_options(path)?,
                None => Vec::new(),
            };
            let options = SlurmOptions {
                partition: args.partition.clone(),
                account: args.account.clone(),
                extra,
                max_jobs: args.jobs,
            };
            Ok(Box::new(exec::SlurmExecutor::new(options, console, echo)))
        }
    }
}

/// `--resources train.cpus=1` as resources by entry point.
fn resource_overrides(
    project: &Project,
    args: &[String],
) -> Result<std::collections::BTreeMap<String, crate::spec::Resources>> {
    let mut overrides: std::collections::BTreeMap<String, crate::spec::Resources> =
        Default::default();
    for arg in args {
        let parsed = arg.split_once('=').and_then(|(name, value)| {
            name.split_once('.')
                .map(|(step, field)| (step, field, value))
        });
        let Some((step, field, value)) = parsed else {
            anyhow::bail!("`--resources {arg}` is not of the form `step.cpus=2`, `step.memory=4G` or `step.time=2h`");
        };
        if !project.entries.contains_key(step) {
            anyhow::bail!("`--resources {arg}`: no entry point `{step}`");
        }
        let resources = overrides.entry(step.to_string()).or_default();
        match field {
            "cpus" => {
                resources.cpus = Some(value.parse::<u32>().ok().filter(|c| *c > 0).with_context(
                    || format!("`--resources {arg}`: cpus must be a whole number of cores"),
                )?)
            }
            "memory" => {
                resources.memory = Some(
                    crate::spec::parse_memory(value)
                        .map_err(|e| anyhow::anyhow!("`--resources {arg}`: {e}"))?,
                )
            }
            "time" => {
                resources.time = Some(
                    crate::spec::parse_duration(value)
                        .map_err(|e| anyhow::anyhow!("`--resources {arg}`: {e}"))?,
                )
            }
            other => anyhow::bail!(
                "`--resources {arg}`: unknown resource `{other}`; expected cpus, memory or time"
            ),
        }
    }
    Ok(overrides)
}

fn plan(project_dir: &Path, store_dir: Option<&Path>, args: PlanArgs) -> Result<i32> {
    let (_, _, plan) = resolve_selection(project_dir, store_dir, &args.selection)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&crate::ui::plan_json(&plan))?
        );
    } else {
        print!("{}", render::plan_text(&plan));
    }
    Ok(0)
}

/// Loads the project and store and resolves the requested entry point (or pipeline).
fn resolve_selection(
    project_dir: &Path,
    store_dir: Option<&Path>,
    selection: &Selection,
) -> Result<(Project, Store, Plan)> {
    let (project, dag) = load_project(project_dir)?;
    let store = open_store(project_dir, store_dir)?;
    let mut args = Vec::new();
    let mut entry = selection.entry.clone();
    if let Some(name) = &selection.pipeline {
        let pipeline = Pipeline::load(&project, name)?;
        entry = entry.or(Some(pipeline.entry));
        args = pipeline.args;
    }
    args.extend(selection.params.iter().cloned());
    let entry = entry.unwrap_or_else(|| "main".to_string());
    let plan = Plan::resolve(
        &project,
        &dag,
        &store,
        &entry,
        &args,
        Reuse {
            policy: selection.reuse,
            force: &selection.force,
        },
        &RegistryUris(&store),
    )?;
    Ok((project, store, plan))
}

fn load_project(dir: &Path) -> Result<(Project, Dag)> {
    let project = Project::load(dir)?;
    for warning in &project.warnings {
        eprintln!("warning: {warning}");
    }
    for section in &project.ignored_sections {
        eprintln!("note: `{section}` is accepted and ignored: flow runs commands in the current environment");
    }
    let dag = Dag::new(&project).map_err(|error| {
        let line = project.entry(error.step()).map_or(0, |entry| entry.line);
        anyhow::anyhow!("{}:{line}: {error}", project.path.display())
    })?;
    Ok((project, dag))
}

/// The store for `project_dir` (or `store`: a directory or a PostgreSQL URL, whose objects
/// live in `FLOW_ARTIFACTS`), with runs left RUNNING by dead processes marked FAILED.
pub fn open_store(project_dir: &Path, store: Option<&Path>) -> Result<Store> {
    let url = store
        .and_then(Path::to_str)
        .filter(|location| crate::store::is_postgres_url(location));
    let store = match url {
        Some(url) => {
            let artifacts = std::env::var_os("FLOW_ARTIFACTS")
                .map(PathBuf::from)
                .unwrap_or_else(|| project_dir.join(".flow"));
            Store::open_postgres(url, &artifacts).with_context(|| {
                format!("cannot open the store at `{}`", crate::store::redacted(url))
            })?
        }
        None => {
            let dir = store
                .map(Path::to_path_buf)
                .unwrap_or_else(|| project_dir.join(".flow"));
            Store::open(&dir)
                .with_context(|| format!("cannot open the store at `{}`", dir.display()))?
        }
    };
    let reaped = store.reap_dead_runs()?;
    for run in &reaped {
        eprintln!(
            "note: run {} was left RUNNING by a process that died; marked FAILED",
            &run[..run.len().min(12)]
        );
    }
    cancel_orphan_jobs(&store, &reaped);
    Ok(store)
}

/// Cancels the Slurm jobs of runs whose flow died (a `kill -9` cannot `scancel`), so
/// nothing keeps computing for a run already marked FAILED.
fn cancel_orphan_jobs(store: &Store, reaped: &[String]) {
    let tags: Vec<String> = reaped
        .iter()
        .filter_map(|run| store.tags(run).ok()?.remove(exec::EXECUTOR_JOB_TAG))
        .collect();
    match exec::cancel_slurm_jobs(&tags) {
        Ok(ids) if !ids.is_empty() => eprintln!(
            "note: cancelled their Slurm job{} {}",
            if ids.len() == 1 { "" } else { "s" },
            ids.join(", ")
        ),
        Ok(_) => {}
        Err(error) => eprintln!("warning: cannot cancel their Slurm jobs: {error:#}"),
    }
}

/// Model URIs in `uri` parameters, resolved through the registry.
struct RegistryUris<'a>(&'a Store);

impl ModelUris for RegistryUris<'_> {
    fn resolve(&self, uri: &str) -> Result<Option<ResolvedUri>> {
        match registry::resolve_uri(self.0, uri) {
            Ok(resolved) => Ok(resolved.run_id.map(|run_id| ResolvedUri {
                run_id,
                dir: resolved.dir,
            })),
            Err(
                RegistryError::UnknownModel { .. }
                | RegistryError::UnknownVersion { .. }
                | RegistryError::NoVersions { .. }
                | RegistryError::NoVersionInStage { .. }
                | RegistryError::UnknownAlias { .. },
            ) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }
}
