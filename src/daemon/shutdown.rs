//! shutdown: the flag "the process has been asked to stop", which every long-running loop polls.
//!
//! It owns the flag and the waking of those who sleep on it. [`super::signals`] sets it on
//! SIGINT and SIGTERM, a failing role may set it to stop the process in order, and
//! [`super::roles`] reads it to tell a role that stopped on request from one that died. It must
//! not know who sets it or why: the roles finish their loops and the main thread reports.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// A cloneable handle on "the process has been asked to stop".
#[derive(Clone, Default)]
pub struct Shutdown {
    state: Arc<(Mutex<bool>, Condvar)>,
}

impl Shutdown {
    /// A flag that nothing has set yet (signals are not hooked up: see
    /// [`on_signals`](super::signals::on_signals)).
    pub fn new() -> Shutdown {
        Shutdown::default()
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
