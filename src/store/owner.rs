//! The process that owns a RUNNING run, and whether it still lives (`kill(pid, 0)` plus
//! the process start time, so a reused pid is not taken for the owner).

/// The process that owns a RUNNING run: its pid, and when it started where the platform
/// says, since a pid alone may by now name an unrelated process (after a reboot, say).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub(crate) pid: i64,
    pub(crate) started: Option<i64>,
}

/// This process, as the owner of the runs it begins.
pub(crate) fn owner_of_this_process() -> Owner {
    let pid = std::process::id();
    Owner {
        pid: i64::from(pid),
        started: process_started(pid),
    }
}

impl Owner {
    pub(crate) fn new(pid: i64, started: Option<i64>) -> Owner {
        Owner { pid, started }
    }

    /// A process with this pid exists and, when both start times are known, it is the
    /// same process. An unreadable start time counts as a match: reaping a live run
    /// would be worse than keeping a dead one.
    pub(crate) fn alive(self) -> bool {
        let Ok(pid) = libc::pid_t::try_from(self.pid) else {
            return false;
        };
        if pid <= 0 {
            return false;
        }
        // SAFETY: signal 0 performs only the existence and permission check.
        let rc = unsafe { libc::kill(pid, 0) };
        let exists = rc == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
        if !exists {
            return false;
        }
        match (self.started, process_started(pid as u32)) {
            (Some(recorded), Some(now)) => recorded == now,
            _ => true,
        }
    }
}

/// When process `pid` started, in clock ticks since boot (field 22 of /proc/<pid>/stat,
/// counted after the parenthesised command name, which may itself hold spaces).
pub(crate) fn process_started(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}
