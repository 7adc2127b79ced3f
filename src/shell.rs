//! Commands as `sh` receives them: placeholders filled with shell-quoted values, and the
//! environment every command flow starts shares (this binary first on `PATH`).

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::params::StepParams;
use crate::spec;

/// `template` with every `{param}` replaced by its value, quoted for `sh`.
pub fn render(template: &str, values: &StepParams) -> String {
    spec::substitute(template, |name| values.get(name).map(|v| quote(v)))
}

/// Quotes a value for `sh` so it arrives as one literal argument.
pub fn quote(value: &str) -> String {
    let safe = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

/// `PATH` with this binary's directory first, so commands can call `flow step ...`.
pub fn path_with_own_binary() -> Option<OsString> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.to_path_buf();
    let mut paths = vec![dir];
    if let Some(existing) = std::env::var_os("PATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).ok()
}

/// Runs a short read-only `command` (a `members` listing) in `dir` and returns its
/// stdout; a non-zero exit or running past `timeout` is an error quoting its stderr.
pub fn capture(command: &str, dir: &Path, timeout: Duration) -> Result<String> {
    let mut child = Command::new("sh");
    child
        .arg("-c")
        .arg(command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = path_with_own_binary() {
        child.env("PATH", path);
    }
    let mut process = child
        .spawn()
        .with_context(|| format!("cannot start `{command}`"))?;
    let mut stdout = process.stdout.take();
    let mut stderr = process.stderr.take();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stdout.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(pipe) = stderr.as_mut() {
            let _ = pipe.read_to_string(&mut text);
        }
        text
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = process.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = process.kill();
            let _ = process.wait();
            bail!("`{command}` ran longer than {} s", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if !status.success() {
        let reason = stderr.trim();
        let reason = reason.strip_prefix("error: ").unwrap_or(reason);
        bail!(
            "`{command}` failed ({}){}{reason}",
            status
                .code()
                .map(|c| format!("exit code {c}"))
                .unwrap_or_else(|| "killed by a signal".into()),
            if reason.is_empty() { "" } else { ": " }
        );
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_injection_literal() {
        assert_eq!(quote("MSL"), "MSL");
        assert_eq!(quote("x; rm -rf y"), "'x; rm -rf y'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn capture_returns_stdout_or_names_the_failure() {
        let dir = tempfile::tempdir().unwrap();
        let out = capture("printf 'a\\nb\\n'", dir.path(), Duration::from_secs(5)).unwrap();
        assert_eq!(out, "a\nb\n");
        let err = capture(
            "echo 'error: no such group' >&2; exit 3",
            dir.path(),
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("exit code 3") && err.ends_with("no such group"),
            "{err}"
        );
        let err = capture("sleep 5", dir.path(), Duration::from_millis(100))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ran longer"), "{err}");
    }
}
