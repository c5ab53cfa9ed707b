//! sim::oracle: what the simulator knows that the nodes do not — every request and its fate,
//! every write with its version and what became of its datagrams, and for each key what a GET
//! must answer.
//!
//! The world (world.rs and the files that drive it, settling.rs above all) feeds it events and
//! asks it questions; the invariants themselves are checked in the world, where the context for
//! a failure message is.

use elayday::node::core::FailureKind;

use super::net::Ver;

/// What a request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A PUT, with its index in the writes.
    Put(usize),
    Get,
    Delete,
    Stats,
}

/// Where a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Held by a node whose loop never closed yet (PUT and DELETE only).
    Parked,
    /// Taken by the core: waiting, being sent or confirmed.
    Accepted,
    Answered,
    /// Parked, then cancelled: gone without an answer.
    Withdrawn,
}

/// An answer, without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Value,
    Stats,
    Failed(FailureKind),
}

/// Why a request has a deadline now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Parked until the loop first closes (or is declared broken).
    Parked,
    /// A GET waiting for its value or its probe.
    Get,
    /// A PUT whose datagrams are not all sent.
    Sending,
    /// A PUT all sent, waiting for its datagrams (or the probe behind them) to come back.
    Confirming,
    /// A DELETE whose tombstone is queued.
    Tombstone,
}

/// What a GET must answer when nothing about its key changes while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The newest version of the key is write `write`, confirmed by node `origin`, and nothing
    /// else is happening to the key since `since`.
    Value {
        write: usize,
        origin: usize,
        since: u64,
    },
    /// The key is deleted (or was never written) and nothing else is happening to it since
    /// `since`.
    Absent { since: u64 },
}

#[derive(Debug)]
pub struct Request {
    pub node: usize,
    pub key: u16,
    pub op: Op,
    pub issued: u64,
    pub state: State,
    pub answer: Option<(u64, Outcome)>,
    /// Answered by the call that made it (or by its replay when the loop closed).
    pub immediate: bool,
    pub cancelled: bool,
    /// The latest time by which the design says it is answered, and why.
    pub deadline: Option<(u64, Stage)>,
    /// GET: the key's epoch and what the GET must answer, as of when it was made.
    pub epoch: u64,
    pub expect: Option<Settled>,
    /// GETs open on the node, and made on it so far, when this one was made.
    pub crowd: (u32, u64),
}

impl Request {
    /// Whether an answer is still owed.
    pub fn open(&self) -> bool {
        match self.state {
            State::Answered | State::Withdrawn => false,
            // A cancelled GET is forgotten by the core; a cancelled PUT or DELETE is not.
            _ => !(self.cancelled && self.op == Op::Get),
        }
    }
}

/// One PUT and everything known about its value's datagrams.
#[derive(Debug)]
pub struct Write {
    pub req: usize,
    pub node: usize,
    pub key: u16,
    pub value: Vec<u8>,
    pub chunk_len: u16,
    pub count: u32,
    pub accepted_at: Option<u64>,
    pub version: Option<Ver>,
    pub emitted: u32,
    pub sent_at: Option<u64>,
    /// Taken out of its node's queue by a broken loop or a failure: nothing more is sent.
    pub cleared: bool,
    /// Fragments back at the origin and kept there (one bit each).
    pub returned: Vec<u64>,
    pub returned_count: u32,
    /// Answered OK once every fragment came back (not because a newer version replaced it),
    /// and when.
    pub confirmed: bool,
    pub confirmed_at: u64,
    /// A later PUT or DELETE of the key was taken by the same node before this was answered.
    pub superseded_locally: bool,
    /// Its datagrams outlived the deletion or overwrite of their version (see
    /// `Known::LingeringWrite`).
    pub lingering: bool,
    /// Answered OK while its version was unknown: the newest version its node had seen then,
    /// to check once the version is known.
    pub seen_at_done: Option<Option<Ver>>,
    /// Answered DATA_LOSS, its rollback tombstone not sent yet.
    pub awaiting_rollback: bool,
    pub resolved: bool,
    /// Copies destroyed by the network (lost, corrupted, overflowed).
    pub destroyed: u32,
    /// Intact copies a node dropped.
    pub node_dropped: u32,
}

impl Write {
    pub fn answered(&self, requests: &[Request]) -> bool {
        requests[self.req].answer.is_some()
    }

    pub fn fully_sent(&self) -> bool {
        self.sent_at.is_some()
    }

    /// Marks fragment `index` as back home; true if it was not already.
    pub fn mark_returned(&mut self, index: u32) -> bool {
        let (word, bit) = (index as usize / 64, 1u64 << (index % 64));
        if self.returned[word] & bit != 0 {
            return false;
        }
        self.returned[word] |= bit;
        self.returned_count += 1;
        true
    }
}

/// Who holds the newest version of a key that went on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Write(usize),
    Tombstone,
}

/// Events that make older versions of a key obsolete: `(at, floor)` says that at `at` a
/// version `floor` was confirmed or a deletion of that version sent, so that every version below
/// `floor` must leave the network within a lap (the node that made it drops them as they pass,
/// for as long as it keeps its record: at least the loop timeout).
#[derive(Debug, Default)]
pub struct Deadness {
    events: Vec<(u64, Ver)>,
    max: Option<Ver>,
}

impl Deadness {
    pub fn add(&mut self, at: u64, floor: Ver) {
        self.events.push((at, floor));
        if self.max.is_none_or(|m| floor > m) {
            self.max = Some(floor);
        }
    }

    /// When a datagram of version `ver`, made at `born`, must be out of the network: one lap
    /// after the earliest event that made it obsolete, or one lap after it was made if it was
    /// made obsolete without its node knowing (a node that had not heard of the newer version
    /// yet), provided the nodes still remember that event then (`memory` after it). `knowing`:
    /// its node had seen a newer version of the key when it sent it.
    pub fn deadline(
        &self,
        ver: Ver,
        born: u64,
        knowing: bool,
        lap: u64,
        memory: u64,
    ) -> Option<(u64, Ver, u64)> {
        if self.max.is_none_or(|m| ver >= m) {
            return None;
        }
        self.events
            .iter()
            .filter(|(_, floor)| ver < *floor)
            .filter_map(|&(at, floor)| {
                let due = if knowing || born <= at {
                    at + lap
                } else if born <= at + memory {
                    born + lap
                } else {
                    return None;
                };
                Some((due, floor, at))
            })
            .min()
    }
}

/// What the oracle knows of one key.
#[derive(Debug, Default)]
pub struct KeyState {
    /// Bumped by every PUT or DELETE of the key: a GET's expectation holds only if it is the
    /// same when the GET is answered.
    pub epoch: u64,
    /// PUTs and DELETEs not resolved yet (answered, all sent, rolled back).
    pub unresolved: u32,
    pub newest: Option<(Ver, Owner)>,
    /// When the newest went out.
    pub newest_at: u64,
    /// A version older than the newest went out from a node that had not heard of the newest
    /// (concurrent writers, a partition, a lost tombstone, skewed clocks). While the node that
    /// made the newest remembers it, it drops that older version within a lap: GETs made before
    /// `muddled_until` may still see it. If nobody may remember, which version wins is not
    /// decided by version alone, and GETs are not held to one answer (`muddled`) until a newer
    /// version goes out.
    pub muddled: bool,
    pub muddled_until: u64,
    pub settled: Option<Settled>,
    pub dead: Deadness,
    /// Writes of this key, by index.
    pub writes: Vec<usize>,
}

impl KeyState {
    /// A version of the key went out at `now`; false if it is older than the newest.
    pub fn note(&mut self, ver: Ver, owner: Owner, now: u64) -> bool {
        if self.newest.is_none_or(|(v, _)| ver > v) {
            self.newest = Some((ver, owner));
            self.newest_at = now;
            self.muddled = false;
            true
        } else {
            false
        }
    }
}
