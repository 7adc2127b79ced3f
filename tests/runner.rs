//! The runner end to end: reuse, invalidation, failures, selectors, errors, lineage,
//! crashes and concurrency, through the real binary in temporary git repositories.

mod common;

use std::time::{Duration, Instant};

use common::{pipeline, TestProject};

fn executed(actions: &[(String, String)]) -> Vec<&str> {
    actions
        .iter()
        .filter(|(_, a)| a == "executed")
        .map(|(e, _)| e.as_str())
        .collect()
}

/// A second `flow run` executes nothing and reuses every step.
#[test]
fn second_run_reuses_every_step() {
    let p = pipeline();
    let first = p.run_ok(&[]);
    assert_eq!(executed(&first.actions()), ["load", "process", "train"]);
    let second = p.run_ok(&[]);
    assert_eq!(executed(&second.actions()), Vec::<&str>::new());
    assert_eq!(first.run_id("train"), second.run_id("train"));
    // Explicit defaults are the same params.
    let third = p.run_ok(&["-P", "epochs=2", "-P", "scale=1"]);
    assert_eq!(executed(&third.actions()), Vec::<&str>::new());
    // Each request that reused a run is counted on it (what the run saved); plans are not.
    p.flow(&["plan"]);
    let show = p
        .flow(&["runs", "show", &first.run_id("train"), "--json"])
        .json();
    assert_eq!(show["reused"], 2, "{show}");
    let text = p.flow(&["runs", "show", &first.run_id("train")]).stdout;
    assert!(text.contains("reused     2 times (last "), "{text}");
}

/// Changing one param re-executes that step and its downstream only.
#[test]
fn changed_param_reexecutes_step_and_downstream() {
    let p = pipeline();
    let first = p.run_ok(&[]);
    let out = p.run_ok(&["-P", "scale=2.5"]);
    assert_eq!(executed(&out.actions()), ["process", "train"]);
    assert_eq!(out.run_id("load"), first.run_id("load"));
    let out = p.run_ok(&["-P", "train.epochs=3"]);
    assert_eq!(executed(&out.actions()), ["train"]);
    // Going back to the old values reuses the old runs.
    let back = p.run_ok(&[]);
    assert_eq!(back.run_id("train"), first.run_id("train"));
}

/// A new commit re-executes under --reuse=commit, not under --reuse=any.
#[test]
fn new_commit_invalidates_only_under_commit_policy() {
    let p = pipeline();
    p.run_ok(&[]);
    p.write("README.md", "changed\n");
    p.commit("docs");
    let any = p.run_ok(&["--reuse", "any"]);
    assert_eq!(executed(&any.actions()), Vec::<&str>::new());
    let commit = p.run_ok(&["--reuse", "commit"]);
    assert_eq!(executed(&commit.actions()), ["load", "process", "train"]);
    let never = p.run_ok(&["--reuse", "never"]);
    assert_eq!(executed(&never.actions()), ["load", "process", "train"]);
    // --force re-executes one step and what follows it, whatever the policy.
    let forced = p.run_ok(&["--reuse", "any", "--force", "process"]);
    assert_eq!(executed(&forced.actions()), ["process", "train"]);
    assert_eq!(forced.run_id("load"), never.run_id("load"));
    let typo = p.flow(&["run", "--force", "proces"]);
    assert_ne!(typo.code, 0);
    assert!(
        typo.stderr.contains("`--force proces`") && typo.stderr.contains("`process`"),
        "{}",
        typo.stderr
    );
}

/// Uncommitted changes count as their own code version; the store does not.
#[test]
fn dirty_tree_is_its_own_version() {
    let p = pipeline();
    p.run_ok(&[]);
    assert_eq!(
        executed(&p.run_ok(&[]).actions()),
        Vec::<&str>::new(),
        ".flow/ must not make the tree dirty"
    );
    p.write("notes.txt", "wip\n");
    assert_eq!(
        executed(&p.run_ok(&[]).actions()),
        ["load", "process", "train"]
    );
    assert_eq!(executed(&p.run_ok(&[]).actions()), Vec::<&str>::new());
}

/// A changed input file re-executes its source step (and what depends on it).
#[test]
fn changed_input_reexecutes_source_step() {
    let p = pipeline();
    let first = p.run_ok(&[]);
    p.write("data/a.txt", "x\ny\nw\n");
    let out = p.run_ok(&["--reuse", "any"]);
    assert_eq!(executed(&out.actions()), ["load", "process", "train"]);
    let plan = p.flow(&["plan"]);
    assert!(plan.stdout.contains("load [a]: reuse"), "{}", plan.stdout);
    p.write("data/a.txt", "x\ny\n");
    let back = p.run_ok(&["--reuse", "any"]);
    assert_eq!(
        back.run_id("load"),
        first.run_id("load"),
        "same content, same data version"
    );
}

/// A failing step is FAILED, downstream never starts, flow exits non-zero.
#[test]
fn failing_step_stops_downstream() {
    let p = pipeline();
    let spec = common::PIPELINE.replace("tr a-z A-Z <", "exit 3; tr a-z A-Z <");
    p.write("MLproject.yaml", &spec);
    p.commit("break process");
    let out = p.flow(&["run", "--json"]);
    assert_eq!(
        out.code, 3,
        "the step's exit code passes through:\n{}",
        out.stderr
    );
    let steps = out.json()["steps"].clone();
    assert_eq!(steps[1]["status"], "FAILED");
    assert_eq!(steps[2]["action"], "skipped");
    let list = p.flow(&["runs", "list", "--entry", "train", "--json"]);
    assert_eq!(list.json().as_array().unwrap().len(), 0);
    let failed = p.flow(&["runs", "list", "--status", "failed", "--json"]);
    assert_eq!(failed.json()[0]["entry"], "process");
}

/// `retrieval_time=<day>` picks the newest run of that day; a past day without runs is an
/// error, today without runs executes (the run made now is of today).
#[test]
fn time_selector_picks_newest_run_of_the_day() {
    let p = pipeline();
    let day_before = p.flow_env(
        &["run", "--json", "-e", "load"],
        &[("FLOW_TEST_NOW", "2026-11-20T10:00:00Z")],
    );
    assert_eq!(day_before.code, 0, "{}", day_before.stderr);
    let morning = p.flow_env(
        &["run", "--json", "-e", "load", "--reuse", "never"],
        &[("FLOW_TEST_NOW", "2026-11-22T09:00:00Z")],
    );
    let evening = p.flow_env(
        &["run", "--json", "-e", "load", "--reuse", "never"],
        &[("FLOW_TEST_NOW", "2026-11-22T18:00:00Z")],
    );
    let _today = p.run_ok(&["-e", "load", "--reuse", "never"]);
    assert_ne!(morning.run_id("load"), evening.run_id("load"));
    // The data changed since: a pinned run is taken as it was.
    p.write("data/a.txt", "new\n");
    let out = p.run_ok(&["-e", "train", "-P", "retrieval_time=2026-11-22"]);
    assert_eq!(out.run_id("load"), evening.run_id("load"));
    assert_eq!(executed(&out.actions()), ["process", "train"]);
    let exact = p.run_ok(&["-e", "load", "-P", "retrieval_time=2026-11-20T10:00:00Z"]);
    assert_eq!(exact.run_id("load"), day_before.run_id("load"));
    let none = p.flow(&["run", "-e", "train", "-P", "retrieval_time=2026-11-21"]);
    assert_eq!(none.code, 1);
    assert!(
        none.stderr
            .contains("no finished run of `load` matches run_time `2026-11-21`"),
        "{}",
        none.stderr
    );
    assert!(
        none.stderr
            .contains("hint: list them with `flow runs list --entry load`"),
        "{}",
        none.stderr
    );
    let today = [("FLOW_TEST_NOW", "2026-11-25T12:00:00Z")];
    let args = [
        "run",
        "--json",
        "-e",
        "train",
        "-P",
        "retrieval_time=2026-11-25",
    ];
    let first = p.flow_env(&args, &today);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(executed(&first.actions()), ["load", "process", "train"]);
    let again = p.flow_env(&args, &today);
    assert_eq!(executed(&again.actions()), Vec::<&str>::new());
    assert_eq!(again.run_id("load"), first.run_id("load"));
}

/// Bad specs and bad params are errors that say where and what.
#[test]
fn clear_errors_for_bad_specs_and_params() {
    let p = pipeline();
    let unknown = p.flow(&["run", "-P", "epoch=3"]);
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("unknown parameter `epoch`")
            && unknown.stderr.contains("did you mean `epochs`?"),
        "{}",
        unknown.stderr
    );
    let mistyped = p.flow(&["run", "-P", "epochs=lots"]);
    assert!(
        mistyped
            .stderr
            .contains("step `train`: parameter `epochs` expects an integer (`int`) but got `lots`"),
        "{}",
        mistyped.stderr
    );
    let not_declared = p.flow(&["run", "-P", "load.epochs=3"]);
    assert!(
        not_declared
            .stderr
            .contains("step `load` declares no parameter `epochs`"),
        "{}",
        not_declared.stderr
    );

    let bad_yaml = TestProject::new(&[(
        "MLproject.yaml",
        "entry_points:\n  main:\n    command: \"unclosed\n",
    )]);
    let out = bad_yaml.flow(&["run"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("MLproject.yaml:"), "{}", out.stderr);
    assert!(
        out.stderr.lines().next().unwrap().matches(':').count() >= 3,
        "file:line:col: {}",
        out.stderr
    );

    let cycle = TestProject::new(&[(
        "MLproject.yaml",
        "entry_points:\n  a:\n    depends_on: [c]\n    command: \"true\"\n  b:\n    depends_on: [a]\n    command: \"true\"\n  c:\n    depends_on: [b]\n    command: \"true\"\n",
    )]);
    let out = cycle.flow(&["run", "-e", "a"]);
    assert!(
        out.stderr
            .contains("MLproject.yaml:2: dependency cycle: `a` depends on `c`, which depends on `b`, which depends on `a`"),
        "{}",
        out.stderr
    );

    let missing = TestProject::new(&[("MLproject.yaml", "entry_points:\n  main:\n    parameters:\n      alpha: float\n    command: \"echo {alpha}\"\n")]);
    let out = missing.flow(&["run"]);
    assert!(
        out.stderr
            .contains("missing parameter `alpha` (float) of step `main`"),
        "{}",
        out.stderr
    );
}

/// An unmodified MLflow MLproject (no extensions, env section) parses and runs.
#[test]
fn plain_mlflow_project_runs() {
    let p = TestProject::new(&[(
        "MLproject",
        "name: tutorial\npython_env: python_env.yaml\nentry_points:\n  main:\n    parameters:\n      alpha: {type: float, default: 0.5}\n      data_file: path\n    command: \"echo alpha={alpha} file={data_file} > $FLOW_OUTPUT_DIR/out.txt\"\n",
    )]);
    let out = p.flow(&["run", "--json", "-P", "data_file=train.csv"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("`python_env` is accepted and ignored"),
        "{}",
        out.stderr
    );
    let show = p
        .flow(&["runs", "show", &out.run_id("main"), "--json"])
        .json();
    assert_eq!(show["params"]["alpha"], "0.5");
    assert_eq!(
        show["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["path"] == "out.txt")
            .count(),
        1
    );
}

/// A value with shell syntax reaches the step as one literal argument.
#[test]
fn shell_injection_is_passed_literally() {
    let p = pipeline();
    let out = p.run_ok(&["-P", "note=x; touch pwned; echo $HOME 'q'"]);
    assert!(!p.path().join("pwned").exists());
    let run = out.run_id("train");
    let dir = p.path().join(".flow/runs").join(&run).join("note.txt");
    let note = std::fs::read_to_string(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    assert_eq!(note, "x; touch pwned; echo $HOME 'q'");
}

/// `flow lineage` shows the chain with params and versions; `--down` the other way.
#[test]
fn lineage_shows_the_chain() {
    let p = pipeline();
    let out = p.run_ok(&["-P", "dataset=b"]);
    let train = out.run_id("train");
    let text = p.flow(&["lineage", &train[..8]]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    for needle in ["train", "process", "load", "[b]", "dataset=b", "FINISHED"] {
        assert!(
            text.stdout.contains(needle),
            "missing {needle}:\n{}",
            text.stdout
        );
    }
    let json = p.flow(&["lineage", &train, "--format", "json"]).json();
    assert_eq!(json["run"]["entry"], "train");
    assert_eq!(json["upstream"][0]["run"]["entry"], "process");
    assert_eq!(json["upstream"][0]["upstream"][0]["run"]["entry"], "load");
    assert_eq!(
        json["upstream"][0]["upstream"][0]["run"]["params"]["dataset"],
        "b"
    );
    assert!(json["run"]["code_version"].as_str().unwrap().len() >= 40);
    let down = p.flow(&["lineage", &out.run_id("load"), "--down", "--format", "dot"]);
    assert!(
        down.stdout.contains(&format!(
            "\"{}\" -> \"{}\"",
            out.run_id("load"),
            out.run_id("process")
        )),
        "{}",
        down.stdout
    );
}

/// Deleting a run with dependants is refused unless forced; gc reclaims its bytes.
#[test]
fn delete_and_gc() {
    let p = pipeline();
    let out = p.run_ok(&[]);
    let refused = p.flow(&["runs", "delete", &out.run_id("load")]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains(&out.run_id("process")[..8]),
        "{}",
        refused.stderr
    );
    let deleted = p.flow(&["runs", "delete", &out.run_id("train")]);
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    let gc = p.flow(&["gc"]);
    assert!(gc.stdout.contains("freed"), "{}", gc.stdout);
    assert!(!gc.stdout.contains("removed 0 objects"), "{}", gc.stdout);
    assert_eq!(executed(&p.run_ok(&[]).actions()), ["train"]);
}

/// A flow killed with SIGKILL mid-step publishes nothing; the next start marks the run FAILED.
#[test]
fn sigkill_leaves_no_published_partial_output() {
    let spec = r#"entry_points:
  slow:
    command: "echo partial > $FLOW_OUTPUT_DIR/half.txt; sleep 30; echo done > $FLOW_OUTPUT_DIR/full.txt"
"#;
    let p = TestProject::new(&[("MLproject.yaml", spec)]);
    let mut child = p
        .command(&["run", "-e", "slow"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.path().join(".flow/logs").exists()
        || std::fs::read_dir(p.path().join(".flow/logs"))
            .unwrap()
            .count()
            == 0
    {
        assert!(Instant::now() < deadline, "the step never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = p.flow(&["runs", "list", "--json"]);
    assert!(out.stderr.contains("marked FAILED"), "{}", out.stderr);
    let runs = out.json();
    assert_eq!(runs[0]["status"], "FAILED");
    let run = runs[0]["run_id"].as_str().unwrap();
    let show = p.flow(&["runs", "show", run, "--json"]).json();
    assert_eq!(show["artifacts"].as_array().unwrap().len(), 0);
    assert!(!p.path().join(".flow/runs").join(run).exists());
    // And it is not reused: the next run executes.
    let plan = p.flow(&["plan", "-e", "slow"]);
    assert!(
        plan.stdout.contains("not finished (FAILED)"),
        "{}",
        plan.stdout
    );
}

/// Two `flow run` processes on one store both finish and the database stays sound.
#[test]
fn concurrent_runs_share_a_store() {
    let p = pipeline();
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|d| {
            p.command(&["run", "--json", "-P", &format!("dataset={d}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = common::outcome(child.wait_with_output().unwrap());
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert_eq!(executed(&out.actions()), ["load", "process", "train"]);
    }
    let db = integrity_check(&p.path().join(".flow/flow.db"));
    assert_eq!(db, "ok");
    let list = p.flow(&["runs", "list", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 6);
}

fn integrity_check(db: &std::path::Path) -> String {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0))
        .unwrap()
}

/// `flow runs show --json` has the documented shape, metrics included.
#[test]
fn runs_show_json_shape() {
    let p = pipeline();
    let out = p.run_ok(&["-P", "epochs=7"]);
    let show = p
        .flow(&["runs", "show", &out.run_id("train")[..10], "--json"])
        .json();
    for field in [
        "run_id",
        "entry",
        "status",
        "key",
        "run_time",
        "params",
        "metrics",
        "artifacts",
    ] {
        assert!(show.get(field).is_some(), "missing {field}: {show}");
    }
    assert_eq!(show["metrics"]["loss"], 0.25);
    assert_eq!(show["key"], "count");
    assert_eq!(show["params"]["epochs"], "7");
}

/// `flow runs list --sort metric.<key>` puts the highest value first, `--asc` the lowest,
/// and `--limit` applies after the ordering.
#[test]
fn runs_list_sorts_by_a_metric() {
    let p = pipeline();
    let mut ids = Vec::new();
    for epochs in ["1", "3", "2"] {
        ids.push(
            p.run_ok(&["-P", &format!("epochs={epochs}")])
                .run_id("train"),
        );
    }
    let listed = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["runs", "list", "--json", "--sort", "metric.epochs_seen"];
        args.extend_from_slice(extra);
        let list = p.flow(&args).json();
        list.as_array()
            .expect("a JSON list")
            .iter()
            .map(|run| run["run_id"].as_str().expect("run_id").to_string())
            .collect()
    };
    assert_eq!(
        listed(&[]),
        vec![ids[1].clone(), ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(
        listed(&["--asc"]),
        vec![ids[0].clone(), ids[2].clone(), ids[1].clone()]
    );
    assert_eq!(listed(&["--asc", "--limit", "1"]), vec![ids[0].clone()]);
}

/// A reader that closes the pipe early (`flow runs list | head`) ends a reporting command
/// quietly, as it would `ls`: no panic message, just the default end by SIGPIPE.
#[test]
fn closed_stdout_ends_reports_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let p = pipeline();
    let train = p.run_ok(&["-P", "dataset=b"]).run_id("train");
    for args in [
        vec!["runs", "list"],
        vec!["lineage", &train, "--format", "json"],
    ] {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let output = p
            .command(&args)
            .stdout(writer)
            .output()
            .expect("flow starts");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(
            output.status.signal(),
            Some(libc::SIGPIPE),
            "{args:?}: {stderr}"
        );
    }
}

/// An MLproject with stray keys that MLflow runs (an entry's `data_file:` beside its
/// `parameters`, a top-level `Environment:`) runs too, with a warning naming each key.
#[test]
fn stray_mlproject_keys_warn_and_run() {
    let p = TestProject::new(&[(
        "MLproject",
        "name: stray\nEnvironment: conda.yaml\nentry_points:\n  main:\n    data_file: data.csv\n    parameters:\n      alpha: {type: float, default: 0.5}\n    comand: typo\n    command: \"echo {alpha} > $FLOW_OUTPUT_DIR/out.txt\"\n",
    )]);
    let out = p.flow(&["run", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for expected in [
        "MLproject:2:1: unknown field `Environment` of the spec is ignored",
        "MLproject:5:5: unknown field `data_file` of entry point `main` is ignored",
        "MLproject:8:5: unknown field `comand` of entry point `main` is ignored (did you mean `command`?)",
    ] {
        let line = out.stderr.lines().find(|line| line.ends_with(expected));
        assert!(
            line.is_some_and(|line| line.starts_with("warning: ")),
            "{expected}\n{}",
            out.stderr
        );
    }
}

/// `flow log param|tag` from a step reach the store when the step ends, and the step never
/// opens the store itself (here it could not: `FLOW_STORE` points nowhere).
#[test]
fn logged_params_and_tags_are_recorded_by_the_runner() {
    let p = TestProject::new(&[(
        "MLproject.yaml",
        "name: t\nentry_points:\n  main:\n    command: \"export FLOW_STORE=/nonexistent; flow log param lr 0.01 && flow log tag owner 'a b' && flow log tag owner c\"\n",
    )]);
    let out = p.run_ok(&[]);
    let run = out.run_id("main");
    let show = p.flow(&["runs", "show", &run]);
    assert!(show.stdout.contains("owner = c"), "{}", show.stdout);
    let conn = rusqlite::Connection::open(p.path().join(".flow/flow.db")).unwrap();
    let logged: String = conn
        .query_row(
            "SELECT value FROM logged_params WHERE key = 'lr'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(logged, "0.01");
}

/// A step's `FLOW_PROGRESS` lines reach the console (a line when stderr is no terminal) and
/// the `flow.progress` tag while it runs; an ended run keeps its status, not a stale bar.
#[test]
fn step_progress_is_shown_while_running_and_cleared_at_the_end() {
    // A literal block: the JSON's quotes stay as they are.
    let spec = r#"name: p
entry_points:
  main:
    command: |
      echo '{"label": "epoch 1/2", "done": 2, "total": 4, "unit": "batches"}' >> $FLOW_PROGRESS
      sleep 1.5
      echo '{"label": "epoch 2/2", "done": 4, "total": 4, "unit": "batches"}' >> $FLOW_PROGRESS
      sleep 0.5
"#;
    let p = TestProject::new(&[("MLproject.yaml", spec), (".gitignore", ".flow/\n")]);
    let out = p.flow(&["run", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("epoch 1/2: 2/4 batches (50%)"),
        "{}",
        out.stderr
    );
    let show = p.flow(&["runs", "show", &out.run_id("main")]).stdout;
    assert!(!show.contains("flow.progress"), "{show}");
}
