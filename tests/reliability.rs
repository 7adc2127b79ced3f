//! What a run survives: signals, a killed flow, concurrent flows, concurrent metric
//! writers, outputs that cannot be published, commands too long for argv.

mod common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::TestProject;

/// One step that marks its start, then waits on a background `sleep SECONDS`.
fn sleeper(seconds: u32) -> TestProject {
    let spec = format!(
        "name: sleeper\nentry_points:\n  wait:\n    command: \"touch started && sh -c 'sleep {seconds} & wait'\"\n  after:\n    depends_on: [wait]\n    command: \"true\"\n"
    );
    TestProject::new(&[
        ("MLproject.yaml", &spec),
        (".gitignore", ".flow/\nstarted\n"),
    ])
}

fn spawn(p: &TestProject, args: &[&str]) -> Child {
    p.command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flow starts")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process with exactly this command line still exists.
fn running(command_line: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|raw| {
            let text: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|part| !part.is_empty())
                .map(|part| String::from_utf8_lossy(part).to_string())
                .collect();
            text.join(" ") == command_line
        })
}

fn runs(p: &TestProject) -> Vec<serde_json::Value> {
    p.flow(&["runs", "list", "--json"])
        .json()
        .as_array()
        .expect("a list")
        .clone()
}

fn staging_entries(p: &TestProject) -> Vec<String> {
    std::fs::read_dir(p.path().join(".flow/tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.len() == 32)
                .collect()
        })
        .unwrap_or_default()
}

/// INT, TERM and HUP all stop the step's whole process group, record KILLED, and make
/// flow exit as a shell reports that signal.
#[test]
fn termination_signals_kill_the_step_group_and_record_killed() {
    for (index, signal) in [libc::SIGTERM, libc::SIGHUP, libc::SIGINT]
        .into_iter()
        .enumerate()
    {
        let seconds = 971 + index as u32;
        let p = sleeper(seconds);
        let child = spawn(&p, &["run", "--json", "-e", "after"]);
        wait_for("the step to start", || p.path().join("started").exists());
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let out = common::outcome(child.wait_with_output().unwrap());
        assert_eq!(out.code, 128 + signal, "signal {signal}: {}", out.stderr);
        let sleep = format!("sleep {seconds}");
        wait_for("the step's children to end", || !running(&sleep));
        let listed = runs(&p);
        assert_eq!(listed.len(), 1, "`after` never starts: {listed:?}");
        assert_eq!(listed[0]["status"], "KILLED", "signal {signal}");
        assert!(staging_entries(&p).is_empty(), "staging left behind");
    }
}

/// `kill -9` of flow takes the step's process group with it; the next flow reaps the run
/// as FAILED and removes its staging.
#[test]
fn a_killed_flow_leaves_no_step_behind() {
    let p = sleeper(981);
    let mut child = spawn(&p, &["run", "--json", "-e", "after"]);
    wait_for("the step to start", || p.path().join("started").exists());
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for("the step's children to end", || !running("sleep 981"));
    assert_eq!(
        staging_entries(&p).len(),
        1,
        "the killed run's staging exists"
    );
    let listed = runs(&p);
    assert_eq!(listed[0]["status"], "FAILED");
    assert!(
        staging_entries(&p).is_empty(),
        "reaping removed the staging"
    );
}

/// Four flows started at once on the same request execute each key once: the others
/// wait for the running run and reuse it.
#[test]
fn concurrent_flows_execute_each_key_once() {
    let spec = "name: c\nentry_points:\n  load:\n    command: \"sleep 1 && echo x > $FLOW_OUTPUT_DIR/x\"\n  train:\n    depends_on: [load]\n    command: \"sleep 1 && cat $FLOW_INPUT_LOAD/x > $FLOW_OUTPUT_DIR/y\"\n";
    let p = TestProject::new(&[("MLproject.yaml", spec), (".gitignore", ".flow/\n")]);
    let children: Vec<Child> = (0..4)
        .map(|_| spawn(&p, &["run", "--json", "-e", "train"]))
        .collect();
    let mut actions = Vec::new();
    for child in children {
        let out = common::outcome(child.wait_with_output().unwrap());
        assert_eq!(out.code, 0, "{}", out.stderr);
        actions.extend(out.actions());
    }
    let listed = runs(&p);
    assert_eq!(listed.len(), 2, "one run per key: {listed:?}");
    let executed = actions.iter().filter(|(_, a)| a == "executed").count();
    assert_eq!(executed, 2, "{actions:?}");
}

/// Parallel writers of `flow log metric` into one run lose nothing; an unreadable line
/// is named and skipped, and the run still finishes.
#[test]
fn concurrent_metric_writers_lose_nothing() {
    let command = "for w in 1 2 3 4; do (i=0; while [ $i -lt 50 ]; do i=$((i+1)); flow log metric m$w $i --step $i; done) & done; wait; echo 'garbage' >> $FLOW_METRICS";
    let spec = format!("name: m\nentry_points:\n  main:\n    command: \"{command}\"\n");
    let p = TestProject::new(&[("MLproject.yaml", &spec), (".gitignore", ".flow/\n")]);
    let out = p.flow(&["run", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("line 201: not JSON"), "{}", out.stderr);
    let run = out.run_id("main");
    let db = rusqlite::Connection::open(p.path().join(".flow/flow.db")).unwrap();
    let points: i64 = db
        .query_row(
            "SELECT count(*) FROM metrics m JOIN runs r ON r.id = m.run WHERE r.run_id = ?1",
            [&run],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(points, 200);
    let show = p.flow(&["runs", "show", &run, "--json"]).json();
    assert_eq!(show["status"], "FINISHED");
    assert_eq!(show["metrics"]["m3"], 50.0);
}

/// An error of flow's own while ending a step (outputs it refuses to publish) leaves the
/// run FAILED, not RUNNING, and no staging behind.
#[test]
fn an_unpublishable_output_fails_the_run() {
    let spec = "name: s\nentry_points:\n  main:\n    command: \"ln -s /etc/hostname $FLOW_OUTPUT_DIR/link\"\n";
    let p = TestProject::new(&[("MLproject.yaml", spec), (".gitignore", ".flow/\n")]);
    let out = p.flow(&["run", "--json"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("link"), "{}", out.stderr);
    let listed = runs(&p);
    assert_eq!(listed[0]["status"], "FAILED", "{listed:?}");
    assert!(staging_entries(&p).is_empty());
}

/// A command far longer than one argument may be (1 MB) runs: flow hands it to `sh` as a
/// file, not as an argument.
#[test]
fn a_megabyte_command_runs() {
    let command = format!(
        "true {} && echo done > $FLOW_OUTPUT_DIR/out",
        "x".repeat(1 << 20)
    );
    let spec = format!("name: big\nentry_points:\n  main:\n    command: \"{command}\"\n");
    let p = TestProject::new(&[("MLproject.yaml", &spec), (".gitignore", ".flow/\n")]);
    let out = p.flow(&["run", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run = out.run_id("main");
    let text = std::fs::read_to_string(
        Path::new(p.path())
            .join(".flow/runs")
            .join(&run)
            .join("out"),
    )
    .unwrap();
    assert_eq!(text, "done\n");
}
