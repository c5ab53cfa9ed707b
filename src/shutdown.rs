//! shutdown: turns SIGINT and SIGTERM into a flag that every long-running loop polls.
//!
//! It owns the process signal mask for those two signals and one thread that waits for them
//! with `sigwait`. It must not do any work of its own on a signal beyond setting the flag and
//! waking the waiters: the roles finish their loops and the main thread reports.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// A cloneable handle on "the process has been asked to stop".
#[derive(Clone, Default)]
pub struct Shutdown {
    state: Arc<(Mutex<bool>, Condvar)>,
}

impl Shutdown {
    /// A flag that nothing has set yet (signals are not hooked up: see [`Shutdown::on_signals`]).
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Blocks SIGINT and SIGTERM in the calling thread (and so in every thread it spawns
    /// afterwards) and starts a thread that sets the flag when one of them arrives.
    /// Call it from `main` before any other thread is spawned.
    pub fn on_signals() -> std::io::Result<Shutdown> {
        let shutdown = Shutdown::new();
        // SAFETY: plain libc signal-set manipulation on a zeroed, owned sigset_t.
        let set = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            set
        };
        let handle = shutdown.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || loop {
                let mut signal: libc::c_int = 0;
                // SAFETY: `set` is a valid signal set, blocked in this thread.
                let rc = unsafe { libc::sigwait(&set, &mut signal) };
                if rc == 0 {
                    let name = if signal == libc::SIGINT {
                        "SIGINT"
                    } else {
                        "SIGTERM"
                    };
                    log::info!("received {name}, shutting down");
                    handle.request();
                }
            })?;
        Ok(shutdown)
    }

    /// Asks every role to stop and wakes everyone blocked in [`Shutdown::wait_timeout`].
    pub fn request(&self) {
        let (flag, wake) = &*self.state;
        *flag.lock() = true;
        wake.notify_all();
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        *self.state.0.lock()
    }

    /// Sleeps up to `timeout`, returning early (with `true`) once a stop was requested.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let (flag, wake) = &*self.state;
        let mut requested = flag.lock();
        if !*requested {
            wake.wait_for(&mut requested, timeout);
        }
        *requested
    }
}
