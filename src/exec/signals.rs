//! Termination requests: Ctrl-C (INT), `kill` (TERM) and a closed terminal (HUP) all
//! stop a run the same way — running steps are stopped and recorded KILLED — and flow
//! exits 128 + the signal's number, as a shell would report it.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal that asked flow to stop, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn record(signal: libc::c_int) {
    // Only an atomic store: async-signal-safe. The executor polls it.
    RECEIVED.store(signal, Ordering::SeqCst);
}

/// Routes INT, TERM and HUP to the flag [`received`] reads. Idempotent.
pub fn install() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `record` is an `extern "C"` function that only stores to an atomic;
        // sigaction with a zeroed mask and SA_RESTART is a valid disposition.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = record as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// The signal received since [`install`], if any.
pub fn received() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// The exit code a shell reports for a process ended by `signal`.
pub fn exit_code(signal: i32) -> i32 {
    128 + signal
}
