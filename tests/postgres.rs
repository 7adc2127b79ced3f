//! flow with its store in a real PostgreSQL (scripts/postgres.sh starts one; scripts/test.sh
//! does that and sets FLOW_TEST_POSTGRES): several flows, standing for several machines
//! (`FLOW_HOST`), share one database and one artifacts directory.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Database, TestProject};

/// `flow <args>` on the project with the store in `db` and objects in a shared directory,
/// as machine `host`.
fn flow(p: &TestProject, db: &Database, host: &str, args: &[&str]) -> Command {
    let mut command = p.command(args);
    command
        .env("FLOW_STORE", &db.url)
        .env("FLOW_ARTIFACTS", p.path().join("shared"))
        .env("FLOW_HOST", host)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn spawn(mut command: Command) -> Child {
    command.spawn().expect("flow starts")
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn runs(p: &TestProject, db: &Database) -> Vec<serde_json::Value> {
    let out = common::outcome(
        flow(p, db, "observer", &["runs", "list", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.json().as_array().expect("a list").clone()
}

/// Four flows on four "machines" started at once on the same request execute each key
/// once: the claim is one transaction under the store's write lock, and the others wait
/// for the owner's heartbeat-backed RUNNING run, then reuse it.
#[test]
fn four_flows_on_one_postgres_store_execute_each_key_once() {
    let db = Database::new();
    let spec = "name: c\nentry_points:\n  load:\n    command: \"sleep 1 && echo x > $FLOW_OUTPUT_DIR/x\"\n  train:\n    depends_on: [load]\n    command: \"sleep 1 && cat $FLOW_INPUT_LOAD/x > $FLOW_OUTPUT_DIR/y\"\n";
    let p = TestProject::new(&[
        ("MLproject.yaml", spec),
        (".gitignore", ".flow/\nshared/\n"),
    ]);
    let children: Vec<Child> = (0..4)
        .map(|machine| {
            spawn(flow(
                &p,
                &db,
                &format!("node-{machine}"),
                &["run", "--json", "-e", "train"],
            ))
        })
        .collect();
    let mut actions = Vec::new();
    for child in children {
        let out = common::outcome(child.wait_with_output().unwrap());
        assert_eq!(out.code, 0, "{}", out.stderr);
        actions.extend(out.actions());
    }
    let listed = runs(&p, &db);
    assert_eq!(listed.len(), 2, "one run per key: {listed:?}");
    assert!(
        listed.iter().all(|run| run["status"] == "FINISHED"),
        "{listed:?}"
    );
    let executed = actions.iter().filter(|(_, a)| a == "executed").count();
    assert_eq!(executed, 2, "{actions:?}");
    assert!(
        !p.path().join(".flow/flow.db").exists(),
        "nothing went to an embedded store"
    );
    // The outputs are in the shared artifacts directory, readable by every machine.
    let again = common::outcome(
        flow(&p, &db, "node-9", &["run", "--json", "-e", "train"])
            .output()
            .unwrap(),
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(again.executed_nodes().is_empty(), "{}", again.stdout);
}

/// A flow killed with SIGKILL on one machine cannot mark its run: another machine sees it
/// RUNNING while its heartbeat is fresh (`flow plan` waits on it), then, once the lease
/// has passed without a heartbeat, reaps it FAILED and executes the key itself.
#[test]
fn a_killed_flow_on_another_host_is_reaped_after_the_lease() {
    let db = Database::new();
    let spec = "name: k\nentry_points:\n  main:\n    command: \"if [ -e started ]; then echo done > $FLOW_OUTPUT_DIR/x; else touch started; sleep 987; fi\"\n";
    let p = TestProject::new(&[
        ("MLproject.yaml", spec),
        (".gitignore", ".flow/\nshared/\nstarted\n"),
    ]);
    let lease = [("FLOW_LEASE_SECONDS", "3")];
    let mut first = flow(&p, &db, "node-a", &["run", "--json"]);
    first.envs(lease);
    let mut child = spawn(first);
    wait_for("the step to start", || p.path().join("started").exists());
    child.kill().unwrap();
    child.wait().unwrap();

    let mut plan = flow(&p, &db, "node-b", &["plan"]);
    plan.envs(lease);
    let waiting = common::outcome(plan.output().unwrap());
    assert_eq!(waiting.code, 0, "{}", waiting.stderr);
    assert!(
        waiting.stdout.contains("wait for run"),
        "a fresh heartbeat keeps the run alive for other hosts: {}",
        waiting.stdout
    );

    std::thread::sleep(Duration::from_secs(4));
    let mut rerun = flow(&p, &db, "node-b", &["run", "--json"]);
    rerun.envs(lease);
    let out = common::outcome(rerun.output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("marked FAILED"), "{}", out.stderr);
    let listed = runs(&p, &db);
    let statuses: Vec<&str> = listed
        .iter()
        .map(|run| run["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses.len(), 2, "{listed:?}");
    assert!(statuses.contains(&"FAILED"), "{statuses:?}");
    assert!(statuses.contains(&"FINISHED"), "{statuses:?}");
}

/// A PostgreSQL store that cannot be reached is named in the error, password hidden.
#[test]
fn an_unreachable_store_is_named_without_its_password() {
    let p = TestProject::new(&[(
        "MLproject.yaml",
        "name: u\nentry_points:\n  main:\n    command: \"true\"\n",
    )]);
    let out = common::outcome(
        p.command(&["runs", "list"])
            .env("FLOW_STORE", "postgresql://flow:s3cret@127.0.0.1:1/flow")
            .output()
            .unwrap(),
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("postgresql://flow:***@127.0.0.1:1/flow"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("s3cret"), "{}", out.stderr);
}

/// `flow server` on a PostgreSQL store answers the API and the dashboard, and a TERM ends
/// it cleanly: its stores close their connections outside the async runtime (closing one
/// inside it aborted the process).
#[test]
fn flow_server_on_postgres_stops_cleanly_on_term() {
    let db = Database::new();
    let p = TestProject::new(&[(
        "MLproject.yaml",
        "name: s\nentry_points:\n  main:\n    command: \"true\"\n",
    )]);
    let mut server = common::spawn_server({
        let mut command = flow(&p, &db, "node-a", &["server", "--port", "0"]);
        command.stdout(Stdio::null());
        command
    });
    let (status, body) = common::http(
        &server.address,
        "GET",
        "/api/2.0/mlflow/experiments/search?max_results=5",
        &[],
        "",
    );
    assert_eq!(status, 200, "{body}");
    let (status, _) = common::http(&server.address, "GET", "/api/flow/runs", &[], "");
    assert_eq!(status, 200);
    // SAFETY: kill() with a valid pid and signal has no memory effects.
    let pid = libc::pid_t::try_from(server.child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}
