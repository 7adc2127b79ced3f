//! Built-in steps of flow: the anomaly-detection workload.
//!
//! Each step reads directories and parameters and writes files and metrics through
//! [`context::StepContext`]; the crate knows nothing of the runner's store, so a step
//! written in Python or shell is a first-class citizen beside these.
//!
//! Data contracts between steps (paths relative to a run's output directory):
//! - `load`     -> `train.parquet`, `test.parquet`, `labels.parquet`, `meta.json`
//! - `process`  -> `data.safetensors` (`train` [N,K], `test` [M,K], `labels` [M]), `preprocessor.json`
//! - `train`    -> `model/flow-model.json`, `model/weights.safetensors` (the bundle)
//! - `evaluate` -> `model/` (the bundle with fitted thresholds), `scores.csv`, `train_scores.csv`,
//!   `segments.csv`, `summary.json`, `plots/*.png`
//! - `predict`  -> `predictions.csv`
//! - `summarize` (fan-in over `evaluate`'s members) -> `summary.csv`, `summary.json`,
//!   `plots/summary.png`
//! - `ensemble` (fan-in over `train`'s members) -> `evaluate`'s files without `model/`

pub mod bundle;
pub mod context;
pub mod data;
pub mod ensemble;
pub mod evaluate;
pub mod metrics_file;
pub mod model;
pub mod plot;
pub mod predict;
pub mod summarize;
pub mod thresholds;
pub mod train;

use anyhow::Result;

use context::StepContext;

/// The built-in steps, as `flow step <name> [flags]` runs them.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum StepCommand {
    /// Read a published dataset (telemanom SMAP/MSL, SMD, CSV, Parquet) into Parquet.
    Load(data::load::LoadArgs),
    /// Fit the scaler on train only and write scaled series for the model.
    Process(data::process::ProcessArgs),
    /// Train MTAD-GAT on the processed windows and write the model bundle.
    Train(train::TrainArgs),
    /// Score the test split, fit thresholds (POT, epsilon, best-F1), report metrics and plots.
    Evaluate(evaluate::EvaluateArgs),
    /// Score new rows with a bundle: per-row score, anomaly flag, top features.
    Predict(predict::PredictArgs),
    /// Fan-in over a fanned-out `evaluate`: per-member, mean and pooled F1 (POT, epsilon, best).
    Summarize(summarize::SummarizeArgs),
    /// Fan-in over a fanned-out `train`: scores with every model, judges their mean score.
    Ensemble(ensemble::EnsembleArgs),
}

/// Runs one built-in step with the context the runner set up (`FLOW_*` variables).
pub fn run_step(command: StepCommand) -> Result<()> {
    // Listing members runs at plan time, outside any run: it needs no context.
    if let StepCommand::Load(args) = &command {
        if args.list_members {
            return data::members::print_members(args);
        }
        if args.list_inputs {
            return data::members::print_inputs(args);
        }
    }
    run_step_in(&StepContext::from_env()?, &command)
}

/// Runs one built-in step in an explicit context (tests and embedding callers).
pub fn run_step_in(ctx: &StepContext, command: &StepCommand) -> Result<()> {
    std::fs::create_dir_all(&ctx.output_dir)?;
    match command {
        StepCommand::Load(args) => data::load::run(ctx, args),
        StepCommand::Process(args) => data::process::run(ctx, args),
        StepCommand::Train(args) => train::run(ctx, args),
        StepCommand::Evaluate(args) => evaluate::run(ctx, args),
        StepCommand::Predict(args) => predict::run(ctx, args),
        StepCommand::Summarize(args) => summarize::run(ctx, args),
        StepCommand::Ensemble(args) => ensemble::run(ctx, args),
    }
}
