//! The supervisor between flow and a step's shell (`flow __guard`).
//!
//! flow starts every step as `flow __guard --parent <flow pid> <script>`; the guard runs
//! `sh <script>` as the leader of a new process group and waits for it. It dies with flow
//! (a parent-death signal) and then stops the step's whole group: TERM, a grace period,
//! KILL. A parent-death signal on the shell alone would not do — `sh -c 'sleep 60 & wait'`
//! runs `sleep` as its child, which would outlive a killed flow. When the step's shell
//! ends by itself, whatever it left running in its group is stopped the same way, so no
//! process of a step outlives it.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

/// How long a stopped step may take to exit after TERM before it is killed.
pub const GRACE: Duration = Duration::from_secs(10);

/// How often the guard looks at its child and its stop flag.
const POLL: Duration = Duration::from_millis(20);

static STOP: AtomicI32 = AtomicI32::new(0);

extern "C" fn request_stop(signal: libc::c_int) {
    STOP.store(signal, Ordering::SeqCst);
}

/// Runs the guard; returns the exit code it ends with (the step's, or 128 + signal).
pub fn run(parent: u32, script: &Path) -> i32 {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic; the action is fully initialised.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = request_stop as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    // SAFETY: getppid has no preconditions. flow set our parent-death signal before exec;
    // if flow died before we could handle it, we were already reparented.
    if unsafe { libc::getppid() } as u32 != parent {
        return 128 + libc::SIGTERM;
    }
    let mut child = match Command::new("sh").arg(script).process_group(0).spawn() {
        Ok(child) => child,
        Err(error) => {
            eprintln!("flow: cannot start `sh {}`: {error}", script.display());
            return 127;
        }
    };
    let group = child.id() as i32;
    let code = loop {
        match child.try_wait() {
            Ok(Some(status)) => break code_of(status),
            Ok(None) => {}
            Err(_) => break 1,
        }
        if STOP.load(Ordering::SeqCst) != 0 {
            stop_group(group, || matches!(child.try_wait(), Ok(Some(_))));
            let status = child.wait().map(code_of).unwrap_or(1);
            break status;
        }
        std::thread::sleep(POLL);
    };
    // Whatever the shell left running in its group ends with it.
    stop_group(group, || !group_exists(group));
    code
}

/// TERM to the group, up to [`GRACE`] for `done`, then KILL.
fn stop_group(group: i32, mut done: impl FnMut() -> bool) {
    if !group_exists(group) {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals that process group only.
    unsafe {
        libc::kill(-group, libc::SIGTERM);
    }
    let deadline = Instant::now() + GRACE;
    while Instant::now() < deadline {
        if done() {
            break;
        }
        std::thread::sleep(POLL);
    }
    if group_exists(group) {
        // SAFETY: as above.
        unsafe {
            libc::kill(-group, libc::SIGKILL);
        }
    }
}

/// Some process of the group still exists (zombies of the group leader aside: a group
/// whose leader we have reaped may still hold its children).
fn group_exists(group: i32) -> bool {
    // SAFETY: signal 0 checks existence and permission only.
    unsafe { libc::kill(-group, 0) == 0 }
}

fn code_of(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|signal| 128 + signal))
        .unwrap_or(1)
}
