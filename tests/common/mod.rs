//! A fresh project in a temporary git repository, driven through the real `flow` binary.
//! Each test binary uses a different part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct TestProject {
    pub dir: tempfile::TempDir,
}

/// What one `flow` invocation did.
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// `(entry, action)` per step of a `flow run --json` report.
    pub fn actions(&self) -> Vec<(String, String)> {
        self.step_fields(&["entry", "action"])
            .into_iter()
            .map(|f| (f[0].clone(), f[1].clone()))
            .collect()
    }

    /// The named string fields of each step of a `flow run --json` report ("" if absent).
    pub fn step_fields(&self, keys: &[&str]) -> Vec<Vec<String>> {
        self.json()["steps"]
            .as_array()
            .expect("steps array")
            .iter()
            .map(|s| {
                keys.iter()
                    .map(|k| s[*k].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .collect()
    }

    /// `entry member` (or `entry` outside a fan-out) of each step the report executed.
    #[allow(dead_code)] // not every test binary fans out
    pub fn executed_nodes(&self) -> Vec<String> {
        self.step_fields(&["entry", "member", "action"])
            .into_iter()
            .filter(|f| f[2] == "executed")
            .map(|f| format!("{} {}", f[0], f[1]).trim().to_string())
            .collect()
    }

    pub fn run_id(&self, entry: &str) -> String {
        self.json()["steps"]
            .as_array()
            .expect("steps array")
            .iter()
            .find(|s| s["entry"] == entry)
            .and_then(|s| s["run_id"].as_str())
            .unwrap_or_else(|| panic!("no run of {entry} in {}", self.stdout))
            .to_string()
    }
}

pub fn flow_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flow"))
}

impl TestProject {
    /// A git repository holding `files` (path, content), committed.
    pub fn new(files: &[(&str, &str)]) -> TestProject {
        let dir = tempfile::tempdir().expect("temp dir");
        let project = TestProject { dir };
        project.git(&["init", "-q"]);
        project.git(&["config", "user.email", "test@example.com"]);
        project.git(&["config", "user.name", "test"]);
        for (path, content) in files {
            project.write(path, content);
        }
        project.commit("initial");
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, path: &str, content: &str) {
        let full = self.path().join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(full, content).unwrap();
    }

    pub fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
    }

    fn git(&self, args: &[&str]) {
        let status = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .output()
            .expect("git runs");
        assert!(
            status.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(flow_binary());
        command
            .args(args)
            .current_dir(self.path())
            .env_remove("FLOW_HOME")
            .env_remove("FLOW_STORE")
            .env_remove("FLOW_ARTIFACTS")
            .env_remove("FLOW_HOST")
            .env_remove("FLOW_LEASE_SECONDS")
            .env_remove("FLOW_PROJECT")
            .env_remove("FLOW_TEST_NOW")
            .env("TZ", "UTC")
            .env("NO_COLOR", "1");
        // The default hangup disposition, whatever the test runner's: a CI started under
        // `nohup` hands SIGHUP down ignored, and flow rightly keeps an ignored hangup ignored,
        // which tests of what SIGHUP does would read as a hang. A test wanting it ignored sets
        // that in a pre_exec of its own, which runs after this one.
        // SAFETY: signal(2) is async-signal-safe; it runs in the child between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                libc::signal(libc::SIGHUP, libc::SIG_DFL);
                Ok(())
            });
        }
        command
    }

    pub fn flow(&self, args: &[&str]) -> Outcome {
        self.flow_env(args, &[])
    }

    pub fn flow_env(&self, args: &[&str], env: &[(&str, &str)]) -> Outcome {
        let mut command = self.command(args);
        for (k, v) in env {
            command.env(k, v);
        }
        outcome(command.output().expect("flow runs"))
    }

    /// `flow run --json` with extra args; panics with the transcript if it fails.
    pub fn run_ok(&self, args: &[&str]) -> Outcome {
        let mut full = vec!["run", "--json"];
        full.extend_from_slice(args);
        let out = self.flow(&full);
        assert_eq!(
            out.code, 0,
            "flow {full:?} failed:\n{}\n{}",
            out.stdout, out.stderr
        );
        out
    }
}

pub fn outcome(output: Output) -> Outcome {
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).to_string(),
    }
}

/// A three-step shell pipeline: load (source, reads data/) -> process -> train, plus `main`.
pub const PIPELINE: &str = r#"name: test
entry_points:
  load:
    key: dataset
    parameters:
      dataset: {type: string, default: a}
      retrieval_time: {type: string, default: latest}
    inputs: ["data/{dataset}.txt"]
    command: "cat data/{dataset}.txt > $FLOW_OUTPUT_DIR/rows.txt"
  process:
    key: logic
    depends_on: [load]
    parameters:
      logic: {type: string, default: upper}
      scale: {type: float, default: 1.0}
    command: "tr a-z A-Z < $FLOW_INPUT_LOAD/rows.txt > $FLOW_OUTPUT_DIR/rows.txt"
  train:
    key: algorithm
    depends_on: [process]
    parameters:
      algorithm: {type: string, default: count}
      epochs: {type: int, default: 2}
      note: {type: string, default: none}
    command: "wc -l < $FLOW_INPUT_PROCESS/rows.txt > $FLOW_OUTPUT_DIR/model.txt && printf '%s' {note} > $FLOW_OUTPUT_DIR/note.txt && flow log metric loss 0.25 --step {epochs} && flow log metric epochs_seen {epochs}"
  main:
    depends_on: [train]
"#;

pub fn pipeline() -> TestProject {
    TestProject::new(&[
        ("MLproject.yaml", PIPELINE),
        ("data/a.txt", "x\ny\n"),
        ("data/b.txt", "z\n"),
        (".gitignore", ".flow/\n"),
    ])
}

/// The repository's MLproject.yaml and bundled data, in a fresh git repository.
pub fn shipped_project() -> TestProject {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = TestProject::new(&[(".gitignore", ".flow/\n")]);
    std::fs::copy(repo.join("MLproject.yaml"), p.path().join("MLproject.yaml")).unwrap();
    copy_dir(&repo.join("data"), &p.path().join("data"));
    p.commit("project");
    p
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A `flow serve` or `flow ui` process on an ephemeral port, killed when dropped.
pub struct Server {
    pub child: Child,
    /// `127.0.0.1:<port>`, read from the line the server prints when it listens.
    pub address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TestProject {
    /// Starts `flow ARGS` (a server given `--port 0`) and waits for its "on http://" line.
    pub fn start_server(&self, args: &[&str]) -> Server {
        spawn_server(self.command(args))
    }
}

/// Starts a server command and waits for the address it announces ("on http://...").
// The child is waited for by `Server`'s Drop, which clippy cannot see.
#[allow(clippy::zombie_processes)]
pub fn spawn_server(mut command: Command) -> Server {
    let mut child = command
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "the server did not start");
        let line = lines.next().expect("the server exited early").unwrap();
        if let Some(rest) = line.split("on http://").nth(1) {
            let address = rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_string();
            std::thread::spawn(move || for _ in lines {});
            return Server { child, address };
        }
    }
}

/// One HTTP/1.1 request with extra `headers`; returns (status, body).
pub fn http(
    address: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let response = String::from_utf8_lossy(&response).to_string();
    let status = response.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A fresh database on the test server, dropped when this is.
pub struct Database {
    server: String,
    name: String,
    pub url: String,
}

impl Database {
    pub fn new() -> Database {
        let server = std::env::var("FLOW_TEST_POSTGRES").expect(
            "these tests need a PostgreSQL server: run them through scripts/test.sh, or \
             `scripts/postgres.sh start` and FLOW_TEST_POSTGRES=$(scripts/postgres.sh url)",
        );
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "flow_it_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let url = flow::store::create_postgres_database(&server, &name)
            .unwrap_or_else(|error| panic!("PostgreSQL at {server}: {error}"));
        Database { server, name, url }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = flow::store::drop_postgres_database(&self.server, &self.name);
    }
}
