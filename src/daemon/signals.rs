//! signals: turns SIGINT and SIGTERM into a [`Shutdown`] request.
//!
//! It owns the process signal mask for those two signals and the `signals` role thread, which
//! waits for them with `sigwait`. It must not do any work of its own on a signal beyond setting
//! the flag and waking the waiters: the roles finish their loops and the main thread reports.

use std::io;

use super::roles::spawn_role;
use super::shutdown::Shutdown;

/// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it spawns
/// afterwards) and starts the `signals` role thread, which sets the returned flag when one of
/// them arrives. Call it from `main` before any other thread is spawned.
pub fn on_signals() -> io::Result<Shutdown> {
    let shutdown = Shutdown::new();
    // SAFETY: plain libc signal-set manipulation on a zeroed, owned sigset_t.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        set
    };
    let handle = shutdown.clone();
    spawn_role("signals", &shutdown, move || {
        wait_for_signals(&set, &handle)
    })?;
    Ok(shutdown)
}

/// Sets `shutdown` each time SIGINT or SIGTERM arrives; never returns.
fn wait_for_signals(set: &libc::sigset_t, shutdown: &Shutdown) {
    loop {
        let mut signal: libc::c_int = 0;
        // SAFETY: `set` is a valid signal set, blocked in this thread.
        let rc = unsafe { libc::sigwait(set, &mut signal) };
        if rc == 0 {
            let name = if signal == libc::SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            log::info!("received {name}, shutting down");
            shutdown.request();
        }
    }
}
