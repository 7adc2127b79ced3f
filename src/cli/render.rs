//! Turning plans, reports and errors into text.

use crate::exec::{rfc3339, RunReport};
use crate::resolve::{short_commit, Decision, ExecuteReason, Node, Plan, TimeSelector};

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

/// One line before execution: what will be reused and what will run.
pub fn plan_header(plan: &Plan) {
    let count = |f: fn(&Decision) -> bool| plan.nodes.iter().filter(|n| f(&n.decision)).count();
    let reused = count(|d| matches!(d, Decision::Reuse(_)));
    let executed = count(|d| matches!(d, Decision::Execute(_)));
    let waiting = count(|d| matches!(d, Decision::Wait(_)));
    let members = plan
        .axes
        .iter()
        .map(|(param, values)| format!(", {} {param} members", values.len()))
        .collect::<String>();
    eprintln!(
        "flow: `{}`{members}: {reused} reused, {executed} to execute{}",
        plan.entry,
        if waiting > 0 {
            format!(", {waiting} computed by another flow")
        } else {
            String::new()
        }
    );
}

pub fn report(report: &RunReport) {
    let with_members = report.steps.iter().any(|s| s.member.is_some());
    let member_width = report
        .steps
        .iter()
        .filter_map(|s| s.member.as_ref().map(String::len))
        .max()
        .unwrap_or(0);
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
        let member = if with_members {
            format!("{:<member_width$} ", step.member.as_deref().unwrap_or(""))
        } else {
            String::new()
        };
        println!(
            "{:<10} {member}{:<9} {:<12} {id}{key}",
            step.entry, step.action, step.status
        );
    }
    if let Some(signal) = report.interrupted {
        eprintln!(
            "flow: stopped by {}; running steps were killed",
            signal_name(signal)
        );
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT",
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// The decision of one node in a few words.
fn decision_text(node: &Node) -> String {
    match &node.decision {
        Decision::Reuse(run) => format!("reuse {} ({})", &run.run_id[..12], rfc3339(run.run_time)),
        Decision::Execute(reason) => format!("execute: {reason}"),
        Decision::Wait(run) => format!(
            "wait for run {} (RUNNING in another flow since {}), then reuse it",
            &run.run_id[..12],
            rfc3339(run.start_time)
        ),
        Decision::Target => "target (no command)".to_string(),
    }
}

/// Why a node executes, as short as a summary wants it.
fn short_reason(node: &Node) -> String {
    match &node.decision {
        Decision::Execute(ExecuteReason::NoMatch) => node
            .rejected
            .first()
            .map(|r| {
                r.reasons
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .filter(|text| !text.is_empty())
            .unwrap_or_else(|| ExecuteReason::NoMatch.to_string()),
        Decision::Execute(reason) => reason.to_string(),
        _ => String::new(),
    }
}

/// `28 members: 26 reused, 2 execute (data changed: machine-3-4, machine-3-5)`.
fn members_summary(nodes: &[&Node]) -> String {
    let reused = nodes
        .iter()
        .filter(|n| matches!(n.decision, Decision::Reuse(_)))
        .count();
    let waiting = nodes
        .iter()
        .filter(|n| matches!(n.decision, Decision::Wait(_)))
        .count();
    let mut executing: Vec<(String, Vec<String>)> = Vec::new();
    for node in nodes {
        if !matches!(node.decision, Decision::Execute(_)) {
            continue;
        }
        let reason = short_reason(node);
        let member = node.member.clone().unwrap_or_default();
        match executing.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, members)) => members.push(member),
            None => executing.push((reason, vec![member])),
        }
    }
    let mut parts = vec![format!("{reused} reused")];
    let n_executing: usize = executing.iter().map(|(_, m)| m.len()).sum();
    if n_executing > 0 {
        let reasons: Vec<String> = executing
            .iter()
            .map(|(reason, members)| format!("{reason}: {}", list_some(members)))
            .collect();
        parts.push(format!("{n_executing} execute ({})", reasons.join("; ")));
    }
    if waiting > 0 {
        parts.push(format!("{waiting} computed by another flow"));
    }
    format!("{} members: {}", nodes.len(), parts.join(", "))
}

/// A list of names, the first few and a count of the rest.
fn list_some(names: &[String]) -> String {
    const SHOWN: usize = 6;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
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
    for (param, values) in &plan.axes {
        out.push_str(&format!(
            "fan-out over `{param}`: {} members ({})\n",
            values.len(),
            list_some(values)
        ));
    }
    // The nodes of each step, steps in plan order (one pass: plans may hold 10,000 nodes).
    let mut steps: Vec<(&str, Vec<&Node>)> = Vec::new();
    let mut position: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for node in &plan.nodes {
        let at = *position.entry(&node.entry).or_insert_with(|| {
            steps.push((&node.entry, Vec::new()));
            steps.len() - 1
        });
        steps[at].1.push(node);
    }
    for (entry, nodes) in steps {
        let fanned = nodes.len() > 1 || nodes.iter().any(|n| n.member.is_some());
        if !fanned {
            let node = nodes[0];
            let key = node
                .key
                .key_value
                .as_ref()
                .map(|k| format!(" [{k}]"))
                .unwrap_or_default();
            let gathers = if node.parents.iter().any(|&p| plan.nodes[p].member.is_some()) {
                format!(" (gathers {} members)", gathered_count(plan, node))
            } else {
                String::new()
            };
            out.push_str(&format!("{entry}{key}{gathers}: {}\n", decision_text(node)));
            explain(&mut out, node, "    ");
            continue;
        }
        if nodes.iter().all(|n| matches!(n.decision, Decision::Target)) {
            out.push_str(&format!(
                "{entry}: target (no command), {} members\n",
                nodes.len()
            ));
            continue;
        }
        out.push_str(&format!("{entry}: {}\n", members_summary(&nodes)));
        for node in nodes {
            let key = match (&node.key.key_value, &node.member) {
                (Some(key), Some(member)) if key != member => format!(" [{key}]"),
                _ => String::new(),
            };
            out.push_str(&format!(
                "    {}{key}: {}\n",
                node.member.as_deref().unwrap_or("-"),
                decision_text(node)
            ));
            explain(&mut out, node, "        ");
        }
    }
    out
}

/// The members a gathering node reads, counted over its nearest upstream runs.
fn gathered_count(plan: &Plan, node: &Node) -> usize {
    node.upstream
        .iter()
        .filter(|&&u| plan.nodes[u].member.is_some())
        .count()
}

/// The pin and the rejected candidates of one node.
fn explain(out: &mut String, node: &Node, indent: &str) {
    if let TimeSelector::Window { label, .. } = &node.selector {
        out.push_str(&format!("{indent}pinned to run_time {label}\n"));
    }
    for rejection in &node.rejected {
        let reasons: Vec<String> = rejection.reasons.iter().map(|r| r.to_string()).collect();
        out.push_str(&format!(
            "{indent}rejected {} ({}): {}\n",
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
