//! node::pending: the table where gRPC calls wait for the processor's answer.
//!
//! A gRPC handler registers a request id here, sends the processor a command and parks its task
//! (a waker, not a thread) until the processor fills in the answer. The table is the only state
//! the gRPC threads and the processor share; it holds answers in transit, never protocol state.
//! It has a capacity: past it a new request is refused at once instead of queued. It must not
//! block: every critical section is a map lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::core::{Answer, RequestId};

#[derive(Default)]
struct Entry {
    answer: Option<Answer>,
    waker: Option<Waker>,
}

/// Requests that a gRPC call is waiting on, keyed by id.
pub struct Pending {
    next_id: AtomicU64,
    entries: Mutex<HashMap<RequestId, Entry>>,
    capacity: usize,
    refused: AtomicU64,
}

/// The table is full: the request was not registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full {
    /// The table's capacity.
    pub capacity: usize,
}

impl Pending {
    /// A table for at most `capacity` requests at once.
    pub fn new(capacity: usize) -> Pending {
        Pending {
            next_id: AtomicU64::new(0),
            entries: Mutex::new(HashMap::new()),
            capacity,
            refused: AtomicU64::new(0),
        }
    }

    /// Opens a slot for a new request and returns its id, unless `capacity` requests wait.
    pub fn register(&self) -> Result<RequestId, Full> {
        let mut entries = self.entries.lock();
        if entries.len() >= self.capacity {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Full {
                capacity: self.capacity,
            });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        entries.insert(id, Entry::default());
        Ok(id)
    }

    /// Delivers the answer to request `id` and wakes its caller. Returns false when the caller
    /// has gone away (cancelled or past its deadline); the answer is then dropped.
    pub fn complete(&self, id: RequestId, answer: Answer) -> bool {
        let waker = {
            let mut entries = self.entries.lock();
            let Some(entry) = entries.get_mut(&id) else {
                return false;
            };
            entry.answer = Some(answer);
            entry.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Takes the answer of request `id` if it is there (closing the slot); otherwise remembers
    /// `waker` to be woken when it arrives.
    pub fn take_or_park(&self, id: RequestId, waker: &Waker) -> Option<Answer> {
        let mut entries = self.entries.lock();
        let entry = entries.get_mut(&id)?;
        match entry.answer.take() {
            Some(answer) => {
                entries.remove(&id);
                Some(answer)
            }
            None => {
                match &mut entry.waker {
                    Some(parked) if parked.will_wake(waker) => {}
                    parked => *parked = Some(waker.clone()),
                }
                None
            }
        }
    }

    /// Closes the slot of a request whose caller has gone away.
    pub fn forget(&self, id: RequestId) {
        self.entries.lock().remove(&id);
    }

    /// Blocks the calling thread until the answer to `id` arrives or `timeout` passes (then the
    /// slot is closed and `None` returned). For callers on their own OS thread, e.g. the metrics
    /// endpoint; gRPC calls park their task with [`Pending::take_or_park`] instead.
    pub fn wait(&self, id: RequestId, timeout: Duration) -> Option<Answer> {
        let deadline = Instant::now() + timeout;
        let waker = current_thread_waker();
        loop {
            if let Some(answer) = self.take_or_park(id, &waker) {
                return Some(answer);
            }
            let now = Instant::now();
            if now >= deadline {
                self.forget(id);
                return None;
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Requests refused so far, the table being full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Requests currently waiting.
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    /// Whether no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A waker that unparks the calling thread: for code that polls a future on its own OS thread
/// and parks between polls ([`Pending::wait`], the command-line client).
pub fn current_thread_waker() -> Waker {
    Waker::from(Arc::new(ThreadWaker(std::thread::current())))
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_reaches_a_blocked_thread() {
        let pending = Arc::new(Pending::new(10));
        let id = pending.register().unwrap();
        let p = pending.clone();
        let answerer = std::thread::spawn(move || assert!(p.complete(id, Answer::Done)));
        let answer = pending.wait(id, Duration::from_secs(10));
        assert!(matches!(answer, Some(Answer::Done)));
        answerer.join().unwrap();
        assert!(pending.is_empty());
    }

    #[test]
    fn a_wait_times_out_and_frees_the_slot() {
        let pending = Pending::new(10);
        let id = pending.register().unwrap();
        assert!(pending.wait(id, Duration::from_millis(20)).is_none());
        assert!(pending.is_empty());
        assert!(
            !pending.complete(id, Answer::Done),
            "late answers are dropped"
        );
    }

    #[test]
    fn a_full_table_refuses_until_a_slot_frees() {
        let pending = Pending::new(2);
        let a = pending.register().unwrap();
        pending.register().unwrap();
        assert_eq!(pending.register(), Err(Full { capacity: 2 }));
        assert_eq!(pending.refused(), 1);
        pending.forget(a);
        pending.register().unwrap();
    }
}
