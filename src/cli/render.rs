//! Turning plans, reports and errors into text.

use crate::exec::{rfc3339, RunReport};
use crate::resolve::{short_commit, Decision, Plan, TimeSelector};

/// Prints an error and its causes once, with any hint lines after a blank line.
pub fn error(error: &anyhow::Error) {
    let mut message = error.to_string();
    let mut hints = Vec::new();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    let mut lines = Vec::new();
    for line in message.lines() {
        match line.strip_prefix("hint: ") {
            Some(hint) => hints.push(hint.to_string()),
            None => lines.push(line.to_string()),
        }
    }
    eprintln!("error: {}", lines.join("\n"));
    if !hints.is_empty() {
        eprintln!();
        for hint in hints {
            eprintln!("hint: {hint}");
        }
    }
}

/// One line per step before execution: what will be reused and what will run.
pub fn plan_header(plan: &Plan) {
    let reused = plan
        .steps
        .iter()
        .filter(|s| matches!(s.decision, Decision::Reuse(_)))
        .count();
    let executed = plan
        .steps
        .iter()
        .filter(|s| matches!(s.decision, Decision::Execute(_)))
        .count();
    eprintln!(
        "flow: `{}`: {reused} reused, {executed} to execute",
        plan.entry
    );
}

pub fn report(report: &RunReport) {
    for step in &report.steps {
        let id = step
            .run_id
            .as_deref()
            .map(|r| &r[..r.len().min(12)])
            .unwrap_or("-");
        let key = step
            .key
            .as_ref()
            .map(|k| format!(" [{k}]"))
            .unwrap_or_default();
        println!(
            "{:<10} {:<9} {:<12} {}{key}",
            step.entry, step.action, step.status, id
        );
    }
    if report.interrupted {
        eprintln!("flow: interrupted; running steps were killed");
    }
}

pub fn plan_text(plan: &Plan) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "plan for `{}` (reuse: {}, code {})\n",
        plan.entry,
        serde_json::to_value(plan.policy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        short_commit(&plan.code.id())
    ));
    for step in &plan.steps {
        let key = step
            .key_value
            .as_ref()
            .map(|k| format!(" [{k}]"))
            .unwrap_or_default();
        let decision = match &step.decision {
            Decision::Reuse(run) => {
                format!("reuse {} ({})", &run.run_id[..12], rfc3339(run.run_time))
            }
            Decision::Execute(reason) => format!("execute: {reason}"),
            Decision::Target => "target (no command)".to_string(),
        };
        out.push_str(&format!("{}{key}: {decision}\n", step.entry));
        if let TimeSelector::Window { label, .. } = &step.selector {
            out.push_str(&format!("    pinned to run_time {label}\n"));
        }
        for rejection in &step.rejected {
            let reasons: Vec<String> = rejection.reasons.iter().map(|r| r.to_string()).collect();
            out.push_str(&format!(
                "    rejected {} ({}): {}\n",
                &rejection.run.run_id[..12],
                rfc3339(rejection.run.run_time),
                if reasons.is_empty() {
                    "newer than the chosen run but not coherent".into()
                } else {
                    reasons.join("; ")
                }
            ));
        }
    }
    out
}
