//! The resolver against an oracle: random step graphs × random stored runs (params,
//! statuses, upstream runs, data and code versions, run times), each plan compared with a
//! direct reading of the README's rules ("When is a step reused?"): a stored run of a step
//! is reusable iff it FINISHED, has exactly the requested params, recorded exactly the
//! upstream runs resolved for this request, has the same data version and — under
//! `--reuse commit` — the same code version; the newest reusable run wins; a step whose
//! upstream executes executes; otherwise a live RUNNING run of the same key is waited for.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use flow::dag::Dag;
use flow::resolve::{Decision, NoModels, Plan, Reuse, ReusePolicy};
use flow::spec::Project;
use flow::store::{NewRun, RunKey, RunRecord, RunStatus, Store};
use flow::version::data_version_of_upstream;
use proptest::prelude::*;

/// One stored run, as the strategy draws it.
#[derive(Debug, Clone)]
struct StoredRun {
    step: usize,
    /// Values of the step's params `p0`, `p1`.
    params: [u8; 2],
    status: u8,
    /// Which earlier-drawn run of each parent it names (modulo the runs there are).
    upstream_pick: u8,
    other_data: bool,
    other_code: bool,
    minutes: u16,
}

#[derive(Debug, Clone)]
struct Case {
    /// `deps[i]`: parents of step i, all < i.
    deps: Vec<Vec<usize>>,
    runs: Vec<StoredRun>,
    /// `-P p0=v` (global) if set.
    p0: Option<u8>,
    policy: ReusePolicy,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=4)
        .prop_flat_map(|n| {
            let deps = (0..n)
                .map(|i| proptest::collection::vec(0..i.max(1), 0..=i.min(2)))
                .collect::<Vec<_>>();
            let run = (
                0..n,
                [0u8..2, 0u8..2],
                0u8..4,
                any::<u8>(),
                proptest::bool::weighted(0.2),
                proptest::bool::weighted(0.2),
                0u16..500,
            )
                .prop_map(
                    |(step, params, status, upstream_pick, other_data, other_code, minutes)| {
                        StoredRun {
                            step,
                            params,
                            status,
                            upstream_pick,
                            other_data,
                            other_code,
                            minutes,
                        }
                    },
                );
            (
                deps,
                proptest::collection::vec(run, 0..24),
                proptest::option::of(0u8..2),
                prop_oneof![
                    Just(ReusePolicy::Commit),
                    Just(ReusePolicy::Any),
                    Just(ReusePolicy::Never)
                ],
            )
        })
        .prop_map(|(deps, runs, p0, policy)| {
            let deps = deps
                .into_iter()
                .enumerate()
                .map(|(i, mut d)| {
                    d.retain(|&p| p < i);
                    d.sort();
                    d.dedup();
                    d
                })
                .collect();
            Case {
                deps,
                runs,
                p0,
                policy,
            }
        })
}

fn spec(case: &Case) -> String {
    let mut text = String::from("name: oracle\nentry_points:\n");
    for (i, deps) in case.deps.iter().enumerate() {
        text.push_str(&format!(
            "  s{i}:\n    parameters:\n      p0: {{type: int, default: 0}}\n      p1: {{type: int, default: 0}}\n    command: \"true\"\n"
        ));
        if !deps.is_empty() {
            let names: Vec<String> = deps.iter().map(|d| format!("s{d}")).collect();
            text.push_str(&format!("    depends_on: [{}]\n", names.join(", ")));
        }
    }
    let last = case.deps.len() - 1;
    text.push_str(&format!("  target:\n    depends_on: [s{last}]\n"));
    text
}

fn status(code: u8) -> RunStatus {
    match code {
        0 | 1 => RunStatus::Finished,
        2 => RunStatus::Failed,
        _ => RunStatus::Running,
    }
}

fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

/// Stores the drawn runs, parents before children so upstream edges name real runs.
fn fill(store: &Store, case: &Case) -> Vec<Vec<RunRecord>> {
    let mut by_step: Vec<Vec<RunRecord>> = vec![Vec::new(); case.deps.len()];
    let mut runs = case.runs.clone();
    runs.sort_by_key(|r| r.step);
    for drawn in runs {
        let upstream: Vec<(String, String)> = case.deps[drawn.step]
            .iter()
            .filter_map(|&parent| {
                let candidates = &by_step[parent];
                (!candidates.is_empty()).then(|| {
                    let run = &candidates[drawn.upstream_pick as usize % candidates.len()];
                    (run.entry.clone(), run.run_id.clone())
                })
            })
            .collect();
        let manifests: Vec<(String, String)> = upstream
            .iter()
            .map(|(entry, _)| (entry.clone(), String::new()))
            .collect();
        let data_version = if drawn.other_data {
            "other".to_string()
        } else if case.deps[drawn.step].is_empty() {
            "none".to_string()
        } else {
            data_version_of_upstream(&manifests)
        };
        let key = RunKey {
            entry: format!("s{}", drawn.step),
            key_value: None,
            params: BTreeMap::from([
                ("p0".to_string(), drawn.params[0].to_string()),
                ("p1".to_string(), drawn.params[1].to_string()),
            ]),
            upstream,
            data_version,
            code_version: if drawn.other_code { "other" } else { "none" }.to_string(),
        };
        let run_id = store
            .begin_run(&NewRun {
                key: &key,
                experiment: "oracle",
                member: None,
                code_dirty: false,
                command: "true",
                run_time: base_time() + Duration::minutes(i64::from(drawn.minutes)),
            })
            .unwrap();
        let final_status = status(drawn.status);
        if final_status != RunStatus::Running {
            store.end_run(&run_id, final_status).unwrap();
        }
        by_step[drawn.step].push(store.get_run(&run_id).unwrap());
    }
    by_step
}

/// What the README's rules decide per step: `Some(run)` reuse, `None` execute, and
/// whether a live RUNNING run of the key is waited for.
#[derive(Debug, PartialEq)]
enum Expected {
    Reuse(String),
    Wait(String),
    Execute,
}

fn oracle(case: &Case, by_step: &[Vec<RunRecord>]) -> Vec<Expected> {
    let mut decided: Vec<Expected> = Vec::new();
    for (step, parents) in case.deps.iter().enumerate() {
        if parents
            .iter()
            .any(|&p| !matches!(decided[p], Expected::Reuse(_)))
        {
            decided.push(Expected::Execute);
            continue;
        }
        if case.policy == ReusePolicy::Never {
            decided.push(Expected::Execute);
            continue;
        }
        let mut upstream: Vec<(String, String)> = parents
            .iter()
            .map(|&p| match &decided[p] {
                Expected::Reuse(run) => (format!("s{p}"), run.clone()),
                _ => unreachable!(),
            })
            .collect();
        upstream.sort();
        let data = if parents.is_empty() {
            "none".to_string()
        } else {
            data_version_of_upstream(
                &parents
                    .iter()
                    .map(|&p| (format!("s{p}"), String::new()))
                    .collect::<Vec<_>>(),
            )
        };
        let p0 = case.p0.unwrap_or(0).to_string();
        let matches = |run: &RunRecord| {
            let mut recorded = run.upstream.clone();
            recorded.sort();
            run.params.get("p0") == Some(&p0)
                && run.params.get("p1").map(String::as_str) == Some("0")
                && recorded == upstream
                && run.data_version == data
                && (case.policy == ReusePolicy::Any || run.code_version == "none")
        };
        // Newest run_time first; among equal run_times the later stored.
        let mut candidates: Vec<&RunRecord> = by_step[step].iter().filter(|r| matches(r)).collect();
        candidates.sort_by_key(|r| r.run_time);
        let newest = |status: RunStatus| {
            candidates
                .iter()
                .rev()
                .find(|r| r.status == status)
                .map(|r| r.run_id.clone())
        };
        decided.push(
            match (newest(RunStatus::Finished), newest(RunStatus::Running)) {
                (Some(run), _) => Expected::Reuse(run),
                (None, Some(run)) => Expected::Wait(run),
                (None, None) => Expected::Execute,
            },
        );
    }
    decided
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn plans_equal_the_rules(case in case()) {
        let dir = tempfile::tempdir().unwrap();
        let text = spec(&case);
        let project = Project::parse(&text, &dir.path().join("MLproject.yaml")).unwrap();
        let dag = Dag::new(&project).unwrap();
        let store = Store::open(&dir.path().join(".flow")).unwrap();
        let by_step = fill(&store, &case);
        let args: Vec<String> = case.p0.map(|v| format!("p0={v}")).into_iter().collect();
        let plan = Plan::resolve(
            &project,
            &dag,
            &store,
            "target",
            &args,
            Reuse { policy: case.policy, force: &[] },
            &NoModels,
        )
        .unwrap();
        let expected = oracle(&case, &by_step);
        // Every step is in the closure of `target` only if it leads there; compare those.
        for node in plan.nodes.iter().filter(|n| n.entry != "target") {
            let step: usize = node.entry[1..].parse().unwrap();
            let got = match &node.decision {
                Decision::Reuse(run) => Expected::Reuse(run.run_id.clone()),
                Decision::Wait(run) => Expected::Wait(run.run_id.clone()),
                Decision::Execute(_) => Expected::Execute,
                Decision::Target => unreachable!(),
            };
            prop_assert_eq!(&got, &expected[step], "step s{} of {:?}", step, case.deps);
            // Each rejected candidate is newer than the chosen run and has a reason.
            for rejection in &node.rejected {
                prop_assert!(!rejection.reasons.is_empty(), "rejected {} without a reason", rejection.run.run_id);
                if let Decision::Reuse(chosen) = &node.decision {
                    prop_assert!(rejection.run.run_time > chosen.run_time);
                }
            }
        }
    }
}
