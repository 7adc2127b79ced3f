//! Killing flow at random points loses nothing: after each of many trials (SIGKILL, TERM,
//! HUP or INT at a random moment of a three-step run), the store passes SQLite's
//! integrity check, nothing is left RUNNING, every FINISHED run's outputs are whole, no
//! staging directory and no step process is left behind. `FLOW_KILL_TRIALS` sets the
//! number of trials (100 by default).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestProject;

const SPEC: &str = r#"name: kill
entry_points:
  load:
    parameters:
      trial: {type: int, default: 0}
    command: "head -c 300000 /dev/zero > $FLOW_OUTPUT_DIR/data.bin && sleep 0.21 && echo {trial} > $FLOW_OUTPUT_DIR/trial.txt"
  train:
    depends_on: [load]
    command: "i=0; while [ $i -lt 5 ]; do i=$((i+1)); flow log metric loss $i --step $i; done; cp $FLOW_INPUT_LOAD/data.bin $FLOW_OUTPUT_DIR/model.bin && sleep 0.21"
  evaluate:
    depends_on: [train]
    command: "cmp -s $FLOW_INPUT_TRAIN/model.bin $FLOW_INPUT_LOAD/data.bin && sh -c 'sleep 0.21 & wait' && echo ok > $FLOW_OUTPUT_DIR/verdict.txt"
"#;

/// A small deterministic generator (the trials must be reproducible).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

/// Processes whose command line is a step's `sleep 0.21`.
fn step_processes() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|raw| raw.as_slice() == b"sleep\x000.21\x00")
        .count()
}

#[test]
fn random_kills_leave_a_sound_store() {
    let trials: u64 = std::env::var("FLOW_KILL_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(100);
    let p = TestProject::new(&[("MLproject.yaml", SPEC), (".gitignore", ".flow/\n")]);
    let signals = [libc::SIGKILL, libc::SIGTERM, libc::SIGHUP, libc::SIGINT];
    let mut rng = Lcg(2026);
    let mut finished_chains = 0;
    for trial in 0..trials {
        let signal = signals[rng.next(signals.len() as u64) as usize];
        let delay = Duration::from_millis(rng.next(900));
        let mut child = p
            .command(&[
                "run",
                "-e",
                "evaluate",
                "--json",
                "-P",
                &format!("trial={trial}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("flow starts");
        std::thread::sleep(delay);
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(child.id() as i32, signal);
        }
        let status = child.wait().unwrap();
        if status.success() {
            finished_chains += 1;
        }
        // The next flow reaps what a killed one left; `runs list` is such a start.
        let listed = p
            .flow(&["runs", "list", "--json", "--limit", "100000"])
            .json();
        for run in listed.as_array().unwrap() {
            assert_ne!(
                run["status"], "RUNNING",
                "trial {trial} (signal {signal}): {run}"
            );
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while step_processes() > 0 {
            assert!(
                Instant::now() < deadline,
                "trial {trial}: a step outlived flow"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let staged: Vec<String> = std::fs::read_dir(p.path().join(".flow/tmp"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|name| name.len() == 32)
            .collect();
        assert!(staged.is_empty(), "trial {trial}: staging left: {staged:?}");
    }
    let db = rusqlite::Connection::open(p.path().join(".flow/flow.db")).unwrap();
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    // Every FINISHED run has its outputs whole.
    let mut checked = 0;
    let listed = p
        .flow(&[
            "runs", "list", "--json", "--status", "finished", "--limit", "100000",
        ])
        .json();
    for run in listed.as_array().unwrap() {
        let id = run["run_id"].as_str().unwrap();
        let dir = p.path().join(".flow/runs").join(id);
        let expect = |file: &str, size: u64| {
            let meta =
                std::fs::metadata(dir.join(file)).unwrap_or_else(|e| panic!("{id}/{file}: {e}"));
            assert_eq!(meta.len(), size, "{id}/{file}");
        };
        match run["entry"].as_str().unwrap() {
            "load" => expect("data.bin", 300_000),
            "train" => {
                expect("model.bin", 300_000);
                let show = p.flow(&["runs", "show", id, "--json"]).json();
                assert_eq!(show["metrics"]["loss"], 5.0, "{id}");
            }
            "evaluate" => expect("verdict.txt", 3),
            other => panic!("unexpected entry {other}"),
        }
        checked += 1;
    }
    assert!(
        checked > 0,
        "no run ever finished: the kills came too early"
    );
    eprintln!("{trials} trials, {finished_chains} whole chains, {checked} finished runs checked");
}
