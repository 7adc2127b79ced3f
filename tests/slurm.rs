//! `flow run --executor slurm` against a real Slurm: the single-node cluster that
//! `scripts/slurm.sh start` runs on this machine (CI starts it before the tests). Every
//! `sbatch` flow makes goes through a wrapper that records the job id, so a test knows
//! exactly which jobs are its own and how many were submitted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Outcome, TestProject};

/// A fan-out over `dataset` with a gathering step. `load` fails for `bad`, and for `slow`
/// it waits until the file `go` exists (git-ignored, so creating it changes no code).
const FANNED: &str = r#"name: fanned
entry_points:
  load:
    key: dataset
    parameters:
      dataset: {type: string, default: a}
    inputs: ["data/{dataset}.txt"]
    resources: {cpus: 1, memory: 100M, time: 10m}
    command: "echo loading {dataset} in job $SLURM_JOB_ID; test {dataset} != bad || exit 3; while [ {dataset} = slow ] && [ ! -e go ]; do sleep 0.2; done; flow log param rows $(wc -l < data/{dataset}.txt); flow log tag node $(hostname); cat data/{dataset}.txt > $FLOW_OUTPUT_DIR/rows.txt"
  train:
    depends_on: [load]
    resources: {cpus: 1, memory: 100M}
    command: "wc -l < $FLOW_INPUT_LOAD/rows.txt > $FLOW_OUTPUT_DIR/model.txt && flow log metric loss 0.5"
  summarize:
    depends_on: [train]
    gather: true
    command: "cat $FLOW_INPUT_TRAIN/*/model.txt > $FLOW_OUTPUT_DIR/all.txt"
"#;

/// Job states after which Slurm runs nothing more of a job.
const ENDED: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
];

/// A project in a temporary git repository, run against the cluster through a recording
/// `sbatch`.
struct SlurmProject {
    project: TestProject,
    /// Holds the `sbatch` wrapper and the list of submitted job ids.
    tools: tempfile::TempDir,
    conf: String,
}

impl SlurmProject {
    fn new() -> SlurmProject {
        let conf = cluster();
        let project = TestProject::new(&[
            ("MLproject.yaml", FANNED),
            ("data/a.txt", "x\ny\n"),
            ("data/b.txt", "z\n"),
            ("data/c.txt", "1\n2\n3\n"),
            ("data/bad.txt", "\n"),
            ("data/slow.txt", "s\n"),
            (".gitignore", ".flow/\ngo\n"),
        ]);
        let tools = tempfile::tempdir().unwrap();
        let real = which("sbatch");
        let wrapper = tools.path().join("sbatch");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nout=$('{}' \"$@\") || exit $?\necho \"$out\"\necho \"$out\" >> '{}'\n",
                real.display(),
                tools.path().join("submitted").display()
            ),
        )
        .unwrap();
        Command::new("chmod")
            .arg("+x")
            .arg(&wrapper)
            .status()
            .unwrap();
        SlurmProject {
            project,
            tools,
            conf,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = self.project.command(args);
        let path = std::env::var("PATH").unwrap_or_default();
        command
            .env("SLURM_CONF", &self.conf)
            .env("PATH", format!("{}:{path}", self.tools.path().display()));
        command
    }

    fn flow(&self, args: &[&str]) -> Outcome {
        common::outcome(self.command(args).output().expect("flow runs"))
    }

    /// `flow run --json --executor slurm` with `args`.
    fn run(&self, args: &[&str]) -> Outcome {
        self.flow(&slurm_run(args))
    }

    fn spawn_run(&self, args: &[&str]) -> Child {
        self.spawn(&slurm_run(args))
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flow starts")
    }

    /// Ids of the jobs flow submitted, in order.
    fn submitted(&self) -> Vec<String> {
        std::fs::read_to_string(self.tools.path().join("submitted"))
            .unwrap_or_default()
            .lines()
            .map(|l| l.split(';').next().unwrap_or_default().trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// `(id, state)` of each submitted job, as squeue reports it now.
    fn states(&self) -> Vec<(String, String)> {
        let ids = self.submitted();
        if ids.is_empty() {
            return Vec::new();
        }
        let out = Command::new("squeue")
            .env("SLURM_CONF", &self.conf)
            .arg(format!("--jobs={}", ids.join(",")))
            .args(["--states=all", "--noheader", "--format=%i %T"])
            .output()
            .expect("squeue runs");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(id, state)| (id.trim().to_string(), state.trim().to_string()))
            .collect()
    }

    /// Submitted jobs that are still pending or running.
    fn active(&self) -> Vec<(String, String)> {
        self.states()
            .into_iter()
            .filter(|(_, state)| !ENDED.contains(&state.as_str()))
            .collect()
    }

    fn runs(&self) -> Vec<serde_json::Value> {
        self.flow(&["runs", "list", "--json"])
            .json()
            .as_array()
            .expect("a list")
            .clone()
    }

    fn path(&self) -> &Path {
        self.project.path()
    }
}

fn slurm_run<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["run", "--json", "--executor", "slurm"];
    full.extend_from_slice(args);
    full
}

/// The cluster's `SLURM_CONF`: the environment's, or the one `scripts/slurm.sh start`
/// writes. A test without a cluster fails, saying how to start one.
fn cluster() -> String {
    let conf = std::env::var("SLURM_CONF").unwrap_or_else(|_| {
        let dir = std::env::var("FLOW_SLURM_DIR").unwrap_or_else(|_| "/tmp/flow-slurm".into());
        format!("{dir}/slurm.conf")
    });
    let answers = Path::new(&conf).exists()
        && Command::new("timeout")
            .args(["10", "sinfo", "--noheader"])
            .env("SLURM_CONF", &conf)
            .output()
            .map(|o| o.status.success() && !o.stdout.is_empty())
            .unwrap_or(false);
    assert!(
        answers,
        "no Slurm cluster answers at SLURM_CONF={conf}: start the single-node cluster with \
         `scripts/slurm.sh start` (as root) before these tests"
    );
    conf
}

fn which(tool: &str) -> PathBuf {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .unwrap();
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "`{tool}` is not installed: run `scripts/slurm.sh start`"
    );
    PathBuf::from(path)
}

fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `(entry member, action, status)` per node of a `flow run --json` report.
fn steps(out: &Outcome) -> Vec<(String, String, String)> {
    out.step_fields(&["entry", "member", "action", "status"])
        .into_iter()
        .map(|f| {
            let node = format!("{} {}", f[0], f[1]).trim().to_string();
            (node, f[2].clone(), f[3].clone())
        })
        .collect()
}

fn executed(out: &Outcome) -> Vec<String> {
    out.executed_nodes()
}

fn run_of(out: &Outcome, node: &str) -> String {
    out.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            format!(
                "{} {}",
                s["entry"].as_str().unwrap_or_default(),
                s["member"].as_str().unwrap_or_default()
            )
            .trim()
                == node
        })
        .and_then(|s| s["run_id"].as_str())
        .unwrap_or_else(|| panic!("no run of {node} in {}", out.stdout))
        .to_string()
}

/// A 3-member fan-out runs as one sbatch job per step run, with the step's output in the
/// run's log, its metrics, params and tags recorded; a second call submits nothing.
#[test]
fn a_fan_out_runs_as_sbatch_jobs_and_a_rerun_submits_none() {
    let p = SlurmProject::new();
    let args = ["-e", "summarize", "-P", "dataset=a,b,c"];
    let first = p.run(&args);
    assert_eq!(first.code, 0, "{}\n{}", first.stdout, first.stderr);
    assert_eq!(
        executed(&first),
        [
            "load a",
            "load b",
            "load c",
            "train a",
            "train b",
            "train c",
            "summarize"
        ]
    );
    let submitted = p.submitted();
    assert_eq!(submitted.len(), 7, "one job per step run: {submitted:?}");
    let summary = run_of(&first, "summarize");
    let all = std::fs::read_to_string(p.path().join(".flow/runs").join(&summary).join("all.txt"))
        .unwrap();
    assert_eq!(all, "2\n1\n3\n");

    let load_b = run_of(&first, "load b");
    let show = p.flow(&["runs", "show", &load_b]).stdout;
    let tag = |name: &str| {
        show.lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{name} = ")))
            .unwrap_or_else(|| panic!("no tag {name} in {show}"))
            .to_string()
    };
    let job = tag("flow.executor_job");
    assert!(
        submitted.iter().any(|id| job == format!("slurm:{id}")),
        "{job} not among {submitted:?}"
    );
    assert!(!tag("node").is_empty(), "a tag the step logged");
    let log =
        std::fs::read_to_string(p.path().join(".flow/logs").join(format!("{load_b}.log"))).unwrap();
    assert_eq!(
        log,
        format!("loading b in job {}\n", job.trim_start_matches("slurm:"))
    );
    assert!(
        first.stderr.contains("[load [b]] loading b in job"),
        "the step's output is echoed: {}",
        first.stderr
    );
    let train_c = p
        .flow(&["runs", "show", &run_of(&first, "train c"), "--json"])
        .json();
    assert_eq!(train_c["metrics"]["loss"], 0.5, "{train_c}");
    let name = Command::new("squeue")
        .env("SLURM_CONF", &p.conf)
        .args(["--states=all", "--noheader", "--format=%j"])
        .arg(format!("--jobs={}", job.trim_start_matches("slurm:")))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&name.stdout).trim(), "flow-load-b");

    let second = p.run(&args);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(executed(&second).is_empty(), "{}", second.stdout);
    assert_eq!(p.submitted().len(), 7, "the rerun submitted a job");
}

/// A member whose step fails does not stop the others; the gathering step does not run
/// and flow exits with the failed step's code.
#[test]
fn a_failing_member_stops_only_its_own_chain() {
    let p = SlurmProject::new();
    let out = p.run(&["-e", "summarize", "-P", "dataset=a,bad,c"]);
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    let steps = steps(&out);
    let status = |node: &str| {
        steps
            .iter()
            .find(|(n, _, _)| n == node)
            .map(|(_, action, status)| format!("{action} {status}"))
            .unwrap_or_else(|| panic!("no {node} in {steps:?}"))
    };
    assert_eq!(status("load bad"), "executed FAILED");
    assert_eq!(status("train bad"), "skipped NOT_STARTED");
    assert_eq!(status("train a"), "executed FINISHED");
    assert_eq!(status("train c"), "executed FINISHED");
    assert_eq!(status("summarize"), "skipped NOT_STARTED");
    assert!(
        out.stderr
            .contains("step `load [bad]` failed (exit code 3)"),
        "{}",
        out.stderr
    );
    assert_eq!(p.submitted().len(), 5, "no job for what could not run");
}

/// Ctrl-C cancels every job flow submitted, pending or running: none stays in squeue,
/// no run stays RUNNING, and flow exits 130.
#[test]
fn ctrl_c_cancels_every_submitted_job() {
    let p = SlurmProject::new();
    let child = p.spawn_run(&["-e", "train", "-P", "dataset=slow,a"]);
    wait_for("the slow job to run", 60, || {
        let states = p.states();
        states.iter().any(|(_, s)| s == "RUNNING")
            && p.path().join(".flow/logs").read_dir().is_ok_and(|d| {
                d.flatten().any(|e| {
                    std::fs::read_to_string(e.path()).is_ok_and(|t| t.contains("loading slow"))
                })
            })
    });
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let out = common::outcome(child.wait_with_output().unwrap());
    assert_eq!(out.code, 130, "{}", out.stderr);
    assert!(p.active().is_empty(), "still queued: {:?}", p.active());
    let runs = p.runs();
    assert!(!runs.is_empty());
    assert!(runs.iter().all(|r| r["status"] != "RUNNING"), "{runs:?}");
    assert!(
        steps(&out).contains(&("load slow".into(), "executed".into(), "KILLED".into())),
        "{}",
        out.stdout
    );
}

/// A job the cluster loses (here cancelled behind flow's back, as a preemption or node
/// failure would end it) fails its run; the next call resubmits only that member.
#[test]
fn a_lost_job_fails_its_run_and_a_rerun_resubmits_only_it() {
    let p = SlurmProject::new();
    let args = ["-e", "train", "-P", "dataset=a,slow"];
    let child = p.spawn_run(&args);
    let mut slow_job = String::new();
    wait_for("the slow job to run", 60, || {
        let out = Command::new("squeue")
            .env("SLURM_CONF", &p.conf)
            .args(["--noheader", "--states=RUNNING", "--format=%i %j"])
            .output()
            .unwrap();
        let ours = p.submitted();
        slow_job = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(id, name)| ours.contains(&id.to_string()) && *name == "flow-load-slow")
            .map(|(id, _)| id.to_string())
            .unwrap_or_default();
        !slow_job.is_empty()
    });
    let cancelled = Command::new("scancel")
        .env("SLURM_CONF", &p.conf)
        .arg(&slow_job)
        .status()
        .unwrap();
    assert!(cancelled.success());
    let out = common::outcome(child.wait_with_output().unwrap());
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains(&format!("Slurm job {slow_job} CANCELLED (cancelled)")),
        "{}",
        out.stderr
    );
    assert_eq!(executed(&out), ["load a", "load slow", "train a"]);
    let before = p.submitted().len();

    std::fs::write(p.path().join("go"), "").unwrap();
    let rerun = p.run(&args);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(executed(&rerun), ["load slow", "train slow"]);
    assert_eq!(p.submitted().len(), before + 2);
}

/// A flow killed with -9 cannot cancel its jobs; the next flow that opens the store marks
/// its runs FAILED and cancels their jobs.
#[test]
fn the_next_flow_cancels_the_jobs_of_a_killed_one() {
    let p = SlurmProject::new();
    let mut child = p.spawn_run(&["-e", "load", "-P", "dataset=slow"]);
    wait_for("the job to run", 60, || {
        p.states().iter().any(|(_, state)| state == "RUNNING")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(p.active().len(), 1, "the job outlives a killed flow");
    let listed = p.flow(&["runs", "list"]);
    assert!(
        listed.stderr.contains("cancelled their Slurm job"),
        "{}",
        listed.stderr
    );
    wait_for("the job to leave the queue", 60, || p.active().is_empty());
    assert!(p.runs().iter().all(|r| r["status"] == "FAILED"));
}

/// Options reach sbatch: a config file's lines and `--partition`; what sbatch refuses is
/// reported with its reason and fails the run without leaving it RUNNING.
#[test]
fn sbatch_options_and_refusals() {
    let p = SlurmProject::new();
    let config = p.tools.path().join("site.conf");
    std::fs::write(&config, "# site\n#SBATCH --comment=flow test\n").unwrap();
    let config = config.display().to_string();
    let out = p.run(&["--slurm-config", &config, "-e", "load"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let id = p.submitted().pop().unwrap();
    let shown = Command::new("scontrol")
        .env("SLURM_CONF", &p.conf)
        .args(["show", "job", &id])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("Comment=flow test"), "{shown}");
    assert!(shown.contains("MinMemoryNode=100M"), "{shown}");
    assert!(shown.contains("TimeLimit=00:10:00"), "{shown}");

    let refused = p.run(&["--partition", "nosuch", "-e", "load", "-P", "dataset=b"]);
    assert_eq!(refused.code, 1);
    assert!(
        refused.stderr.contains("sbatch refused the job")
            && refused.stderr.contains("invalid partition"),
        "{}",
        refused.stderr
    );
    assert!(p.runs().iter().all(|r| r["status"] != "RUNNING"));

    std::fs::write(p.tools.path().join("bad.conf"), "--qos=x\n--output=y\n").unwrap();
    let bad = p.tools.path().join("bad.conf").display().to_string();
    let out = p.run(&["--slurm-config", &bad]);
    assert!(
        out.stderr
            .contains(&format!("{bad}:2: `--output` is set by flow")),
        "{}",
        out.stderr
    );
    let local = p.flow(&["run", "--partition", "debug"]);
    assert!(
        local
            .stderr
            .contains("`--partition` applies to `--executor slurm`"),
        "{}",
        local.stderr
    );
}
