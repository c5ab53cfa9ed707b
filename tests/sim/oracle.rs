//! sim::oracle: what the simulator knows that the nodes do not — every request and its fate,
//! every write with its version and what became of its datagrams, and for each key what a GET
//! must answer.
//!
//! The world (world.rs and the files that drive it, settling.rs above all) feeds it events and
//! asks it questions; the invariants themselves are checked in the world, where the context for
//! a failure message is.

use elayday::node::core::FailureKind;
use elayday::wire::Geometry;

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
    /// GET: datagrams its node had had no room to reassemble when it was made.
    pub refused_before: u64,
    /// Fragments its node had rebuilt and sent when its deadline was last set: those sent
    /// since went out before its frames.
    pub repairs_seen: u64,
    /// Fragments rebuilt by its node that postponed its deadline, in all.
    pub postponed_by: u64,
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
///
/// A datagram of the value is named by its position, `stripe * (data + parity) + shard` (the
/// positions past a short last stripe's fragments are never used).
#[derive(Debug)]
pub struct Write {
    pub req: usize,
    pub node: usize,
    pub key: u16,
    pub value: Vec<u8>,
    /// How its node cuts the value (its `max_datagram`, the key's length and its `fec`).
    pub geometry: Geometry,
    /// Datagrams of the value, data and parity.
    pub count: u32,
    /// The positions in the order the node must send them (`wire::interleaved`), filled in
    /// when the first goes out.
    pub order: Vec<u32>,
    /// The parity of every stripe, `parity * chunk_len` bytes per stripe, computed when first
    /// needed.
    pub parity: Option<Vec<u8>>,
    pub accepted_at: Option<u64>,
    pub version: Option<Ver>,
    /// Datagrams its node sent (not counting repairs), in `order`.
    pub emitted: u32,
    /// Stripes of which fewer than their data count went out from the node.
    pub sent_short: u32,
    pub sent_in: Vec<u16>,
    pub sent_at: Option<u64>,
    /// Taken out of its node's queue by a broken loop or a failure: nothing more is sent.
    pub cleared: bool,
    /// Positions back at the origin and kept there (one bit each), per stripe, and the number
    /// of stripes with fewer back than their data count.
    pub returned: Vec<u64>,
    pub returned_in: Vec<u16>,
    pub returned_short: u32,
    /// Intact copies of each position in the network (on links and in the reflector).
    pub live: Vec<u16>,
    /// Positions whose last copy the network destroyed or a node dropped (one bit each), at
    /// least once, and how many per stripe.
    pub lost: Vec<u64>,
    pub lost_in: Vec<u16>,
    /// Per position: until when it was last missing from the network (`u64::MAX` while it is;
    /// before its node sends it, it is).
    pub absent_until: Vec<u64>,
    /// Answered OK once every stripe had its data count back (not because a newer version
    /// replaced it), and when.
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
    /// Intact copies a node dropped (superseded, deleted, or the last copy of a position
    /// dropped as a duplicate).
    pub node_dropped: u32,
    /// Datagrams other nodes (or its own, on their way back) rebuilt and sent, and when the
    /// last was.
    pub repaired: u32,
    pub last_repair_at: u64,
    /// When each node last rebuilt one of its datagrams (by node index; empty until one does).
    pub rebuilt_by: Vec<u64>,
    /// When a stripe of it first had fewer of its fragments in the network than its data count
    /// (all of it sent, then), and which.
    pub died: Option<(u64, u32)>,
}

impl Write {
    /// A PUT of `value` under `key` by node `node`, request `req`, cut as `geometry` says.
    pub fn new(req: usize, node: usize, key: u16, value: Vec<u8>, geometry: Geometry) -> Write {
        let stripes = geometry.stripe_count() as usize;
        let positions = stripes * width(&geometry) as usize;
        Write {
            req,
            node,
            key,
            value,
            geometry,
            count: geometry.datagram_count() as u32,
            order: Vec::new(),
            parity: None,
            accepted_at: None,
            version: None,
            emitted: 0,
            sent_short: stripes as u32,
            sent_in: vec![0; stripes],
            sent_at: None,
            cleared: false,
            returned: vec![0; positions.div_ceil(64)],
            returned_in: vec![0; stripes],
            returned_short: stripes as u32,
            live: vec![0; positions],
            lost: vec![0; positions.div_ceil(64)],
            lost_in: vec![0; stripes],
            absent_until: vec![u64::MAX; positions],
            confirmed: false,
            confirmed_at: 0,
            superseded_locally: false,
            lingering: false,
            seen_at_done: None,
            awaiting_rollback: false,
            resolved: false,
            destroyed: 0,
            node_dropped: 0,
            repaired: 0,
            last_repair_at: 0,
            rebuilt_by: Vec::new(),
            died: None,
        }
    }

    pub fn answered(&self, requests: &[Request]) -> bool {
        requests[self.req].answer.is_some()
    }

    pub fn fully_sent(&self) -> bool {
        self.sent_at.is_some()
    }

    /// Positions per stripe.
    pub fn width(&self) -> u32 {
        width(&self.geometry)
    }

    pub fn stripes(&self) -> u32 {
        self.sent_in.len() as u32
    }

    /// Position of fragment `shard` of stripe `stripe`.
    pub fn pos(&self, stripe: u32, shard: u16) -> u32 {
        stripe * self.width() + u32::from(shard)
    }

    /// Stripe and shard of position `pos`.
    pub fn at(&self, pos: u32) -> (u32, u16) {
        (pos / self.width(), (pos % self.width()) as u16)
    }

    /// The positions of stripe `stripe` that its fragments use.
    pub fn positions(&self, stripe: u32) -> std::ops::Range<u32> {
        let first = stripe * self.width();
        first..first + self.geometry.shards_in(stripe)
    }

    /// Whether `pos` names a fragment of the value.
    pub fn valid(&self, stripe: u32, shard: u16) -> bool {
        stripe < self.stripes() && u32::from(shard) < self.geometry.shards_in(stripe)
    }

    /// Marks position `pos` as back home; true if it was not already.
    pub fn mark_returned(&mut self, pos: u32) -> bool {
        if !set_bit(&mut self.returned, pos) {
            return false;
        }
        let stripe = pos / self.width();
        let count = &mut self.returned_in[stripe as usize];
        *count += 1;
        if *count == self.geometry.data_in(stripe) {
            self.returned_short -= 1;
        }
        true
    }

    /// The node sent position `pos` itself.
    pub fn mark_sent(&mut self, pos: u32) {
        let stripe = pos / self.width();
        let count = &mut self.sent_in[stripe as usize];
        *count += 1;
        if *count == self.geometry.data_in(stripe) {
            self.sent_short -= 1;
        }
    }

    /// A copy of position `pos` left the network (arrived somewhere).
    pub fn copy_out(&mut self, pos: u32) {
        self.live[pos as usize] -= 1;
    }

    /// A copy of position `pos` was destroyed or dropped: if it was the last, the position is
    /// lost (until a node rebuilds it).
    pub fn copy_lost(&mut self, pos: u32, now: u64) {
        if self.live[pos as usize] > 0 {
            return;
        }
        self.absent_until[pos as usize] = u64::MAX;
        let stripe = pos / self.width();
        if set_bit(&mut self.lost, pos) {
            self.lost_in[stripe as usize] += 1;
        }
        if self.died.is_none() && self.fully_sent() {
            let live = self
                .positions(stripe)
                .filter(|&p| self.live[p as usize] > 0)
                .count();
            if live < usize::from(self.geometry.data_in(stripe)) {
                self.died = Some((now, stripe));
            }
        }
    }

    /// The stripe that lost the most distinct positions, and how many.
    pub fn most_lost(&self) -> (u32, u16) {
        (0..self.stripes())
            .map(|s| (s, self.lost_in[s as usize]))
            .max_by_key(|&(s, lost)| (lost, std::cmp::Reverse(s)))
            .unwrap_or((0, 0))
    }

    /// Stripes that had more positions missing at some time since `since` than their parity
    /// (a reader that started then may have found them short), and the worst of them.
    pub fn short_since(&self, since: u64) -> Option<(u32, u32)> {
        (0..self.stripes())
            .map(|s| {
                let absent = self
                    .positions(s)
                    .filter(|&p| self.absent_until[p as usize] >= since)
                    .count() as u32;
                (s, absent)
            })
            .filter(|&(_, absent)| absent > u32::from(self.geometry.parity))
            .max_by_key(|&(_, absent)| absent)
    }
}

/// Positions per stripe of a value cut as `geometry` says.
pub fn width(geometry: &Geometry) -> u32 {
    u32::from(geometry.data) + u32::from(geometry.parity)
}

/// Sets bit `at`; true if it was clear.
fn set_bit(bits: &mut [u64], at: u32) -> bool {
    let (word, bit) = (at as usize / 64, 1u64 << (at % 64));
    let was = bits[word] & bit != 0;
    bits[word] |= bit;
    !was
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
    /// When a node last rebuilt a fragment of a version older than the newest: a node with no
    /// record of the key forwards the newest and mends the older behind it, so for a lap the
    /// older one is no longer ahead of the newest, even on links that keep order.
    pub old_rebuilt_at: Option<u64>,
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
