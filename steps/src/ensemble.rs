//! The `ensemble` step: a fan-in over a fanned-out `train` (e.g. `-P seed=0,1,2,3`) that
//! scores both splits with every member's model, combines them into one score per row and
//! judges it exactly as `evaluate` judges one model.
//!
//! The combination is the mean of the members' row scores after each is post-processed as
//! `evaluate` does it (per-part min-max normalisation for SMAP/MSL, optional robust
//! scaling), so a model whose errors run larger does not outweigh the others. Every model
//! must have been trained on the processed data the step receives (`FLOW_INPUT_PROCESS`,
//! shared by the members); a member trained on other data is refused.
//!
//! Outputs are `evaluate`'s (metrics, `scores.csv`, `train_scores.csv`, `segments.csv`,
//! `summary.json`, plots) without a bundle: an ensemble is a measurement, not a model that
//! `flow serve` can load. `summary.json` adds each member's own figures beside the
//! ensemble's.

use anyhow::{bail, Context, Result};
use serde_json::json;

use crate::bundle::{Bundle, Scores};
use crate::context::StepContext;
use crate::evaluate::{judge_scored, write_outputs, EvaluateArgs, Inputs, Scored, SplitScores};
use crate::train::read_preprocessor;

/// Parameters of `ensemble`: those of `evaluate` (thresholds, post-processing, plots).
#[derive(clap::Args, Debug, Clone)]
pub struct EnsembleArgs {
    #[command(flatten)]
    pub evaluate: EvaluateArgs,
}

/// Runs the step over `FLOW_INPUT_TRAIN`'s members and the shared `process` and `load` runs.
pub fn run(ctx: &StepContext, args: &EnsembleArgs) -> Result<()> {
    let args = &args.evaluate;
    let members = ctx.members("train")?;
    let inputs = Inputs::read(ctx, args)?;
    let process_dir = ctx.input("process")?;
    let preprocessor = read_preprocessor(process_dir)?;
    let mut bundles = Vec::with_capacity(members.len());
    for member in &members {
        let bundle = Bundle::load(&member.dir.join("model"))
            .with_context(|| format!("member `{}` has no readable model", member.member))?;
        if bundle.manifest.preprocessor != preprocessor {
            bail!(
                "member `{}`'s model was trained on other processed data than `{}` (its preprocessor differs: columns, scaler statistics, target dims or window): an ensemble combines models of the same data; fan out only `train` (e.g. `-P seed=0,1,2,3`)",
                member.member,
                process_dir.join("preprocessor.json").display()
            );
        }
        inputs.check_columns(&bundle, &format!("member `{}`'s model", member.member))?;
        bundles.push(bundle);
    }

    let mut scored = Vec::with_capacity(bundles.len());
    for (member, bundle) in members.iter().zip(&bundles) {
        eprintln!("member `{}`:", member.member);
        scored.push(inputs.score(bundle, args.gamma.or(bundle.manifest.gamma), args)?);
    }
    let mut member_figures = Vec::with_capacity(members.len());
    for (member, member_scored) in members.iter().zip(&scored) {
        let judged = judge_scored(&inputs, args, member_scored, false)?;
        let metric = |key: &str| {
            judged
                .metrics
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| *value)
        };
        member_figures.push(json!({
            "member": member.member,
            "run_id": member.run_id,
            "f1_pa_pot": metric("f1_pa_pot"),
            "f1_pa_epsilon": metric("f1_pa_epsilon"),
            "f1_pa_best": metric("f1_pa_best"),
            "threshold_pot": metric("threshold_pot"),
        }));
    }
    let combined = combine(&scored)?;
    eprintln!("ensemble of {} members:", members.len());
    let judged = judge_scored(&inputs, args, &combined, false)?;
    let mut extra = serde_json::Map::new();
    extra.insert("members".into(), json!(member_figures));
    extra.insert(
        "combination".into(),
        json!("mean of the members' row scores, each post-processed as evaluate does (per-part normalisation for SMAP/MSL)"),
    );
    write_outputs(ctx, args, &inputs, &combined, &judged, extra, None)?;
    for figures in &member_figures {
        eprintln!(
            "member {:<12} F1(pa) pot {:.4}  epsilon {:.4}  best {:.4}",
            figures["member"].as_str().unwrap_or("?"),
            figures["f1_pa_pot"].as_f64().unwrap_or(f64::NAN),
            figures["f1_pa_epsilon"].as_f64().unwrap_or(f64::NAN),
            figures["f1_pa_best"].as_f64().unwrap_or(f64::NAN),
        );
    }
    Ok(())
}

/// The members' scores averaged row by row: row scores (as judged and plain), per-feature
/// scores, and forecasts and reconstructions for the figures.
pub(crate) fn combine(scored: &[Scored]) -> Result<Scored> {
    let Some(first) = scored.first() else {
        bail!("an ensemble needs at least one member");
    };
    if let Some(other) = scored.iter().find(|s| {
        s.window != first.window
            || s.train.total.len() != first.train.total.len()
            || s.test.total.len() != first.test.total.len()
    }) {
        bail!(
            "the members' scores do not line up (window {} vs {}): their models differ in window",
            first.window,
            other.window
        );
    }
    let mean = |pick: &dyn Fn(&Scored) -> &[f64]| -> Vec<f64> {
        let n = scored.len() as f64;
        let mut out = vec![0.0; pick(first).len()];
        for s in scored {
            for (acc, v) in out.iter_mut().zip(pick(s)) {
                *acc += v / n;
            }
        }
        out
    };
    let mean_f32 = |pick: &dyn Fn(&Scores) -> &[f32]| -> Vec<f32> {
        let n = scored.len() as f32;
        let mut out = vec![0.0f32; pick(&first.test_scores).len()];
        for s in scored {
            for (acc, v) in out.iter_mut().zip(pick(&s.test_scores)) {
                *acc += v / n;
            }
        }
        out
    };
    let split = |which: fn(&Scored) -> &SplitScores| SplitScores {
        per_feature: mean(&|s| &which(s).per_feature),
        total: mean(&|s| &which(s).total),
        plain_total: mean(&|s| &which(s).plain_total),
    };
    Ok(Scored {
        train: split(|s| &s.train),
        test: split(|s| &s.test),
        test_scores: Scores {
            first_row: first.test_scores.first_row,
            n_target: first.test_scores.n_target,
            total: mean_f32(&|s| &s.total),
            per_feature: mean_f32(&|s| &s.per_feature),
            forecast: mean_f32(&|s| &s.forecast),
            reconstruction: mean_f32(&|s| &s.reconstruction),
            actual: first.test_scores.actual.clone(),
        },
        labels: first.labels.clone(),
        columns: first.columns.clone(),
        target_dims: first.target_dims.clone(),
        window: first.window,
        gamma: first.gamma,
    })
}

#[cfg(test)]
mod tests;
