//! node::status: what the processor publishes for other threads: whether the loop is closed
//! (read by the health service, which can ask to be woken on a change), and what circulated
//! when the node stopped.
//!
//! It owns only these two small values; it must not hold protocol state.

use std::sync::atomic::{AtomicBool, Ordering};

/// What was in the loop when the node stopped (and is now lost).
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub circulating_datagrams: u64,
    pub circulating_bytes: u64,
    pub circulating_values: u64,
}

/// Whether the loop is closed, published by the processor (its only writer) for readers such as
/// the health service, which can also ask to be woken on the next change.
#[derive(Default)]
pub struct LoopStatus {
    closed: AtomicBool,
    watchers: parking_lot::Mutex<Vec<std::task::Waker>>,
}

impl LoopStatus {
    /// Whether probes come back.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Wakes `waker` at the next change (once).
    pub fn watch(&self, waker: &std::task::Waker) {
        let mut watchers = self.watchers.lock();
        if !watchers.iter().any(|w| w.will_wake(waker)) {
            watchers.push(waker.clone());
        }
    }

    /// Publishes a change (the processor is the only writer).
    pub(super) fn set(&self, closed: bool) {
        if self.closed.swap(closed, Ordering::SeqCst) != closed {
            for waker in std::mem::take(&mut *self.watchers.lock()) {
                waker.wake();
            }
        }
    }
}
