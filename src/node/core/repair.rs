//! node::core::repair: in-loop repair, and the removal of copies of a fragment.
//!
//! It owns what the node knows of the stripes passing it now: for each, when each of its
//! fragments last passed, and a copy of their payloads while the stripe passes. When a stripe
//! has gone by with fragments missing and at least its data count present, it rebuilds exactly
//! the missing ones (byte for byte: same header, same payload) and queues them to be sent on,
//! so that the loop is whole again within the lap. A fragment that passes a second time within
//! half the shortest loop period is a copy (a network duplicate, or an original that was only
//! delayed and has been rebuilt meanwhile): the core drops it, so every fragment circulates
//! once. Nothing is held beyond the stripes passing now, and never more bytes than its budget
//! (`--max-repair`): a stripe that finds no room passes untracked (counted).
//!
//! It must not decide what the loop keeps otherwise (versions, deletions are the core's), and
//! it has no clock: times come in with each call.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use super::clock::Version;
use crate::coding::Coder;
use crate::wire::{DataFrame, DataRepr, Geometry};

/// Fixed bytes charged to each tracked stripe besides its payloads and header.
const SLOT_OVERHEAD: u64 = 128;
/// The longest a stripe is waited for after its last fragment passed before it is judged.
const QUIET_MAX: Duration = Duration::from_millis(100);
/// The shortest: below it a pass is judged while its own fragments still arrive.
const QUIET_MIN: Duration = Duration::from_micros(200);

/// Identifies a stripe in the loop: the write's version and the stripe's index. A version is
/// unique to one write of one key (a node stamps each write with a new clock value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct StripeId {
    origin: u64,
    hlc: u64,
    stripe: u32,
}

/// A multiplicative hash of the three words of a [`StripeId`]: the ids are not chosen by an
/// adversary who could not also forge the frames themselves, so SipHash buys nothing here.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
}

type IdMap<V> = HashMap<StripeId, V, BuildHasherDefault<IdHasher>>;

/// What the core should do with a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on.
    Forward,
    /// A copy of a fragment that passed moments ago: drop it.
    Duplicate,
}

/// One stripe passing the node.
struct Slot {
    geometry: Geometry,
    stripe: u32,
    /// The key: with the id and the geometry, all a rebuilt fragment's header needs.
    key: Box<[u8]>,
    /// When each fragment last passed.
    seen: Vec<Option<Duration>>,
    /// Fragments seen in the current pass.
    present: u32,
    /// Payloads, `chunk_len` bytes per fragment (data payloads shorter than that are
    /// zero-padded), held while the stripe is not whole; a fragment's bytes are the same on
    /// every lap, so they may come from this pass or the one before.
    payloads: Option<Vec<u8>>,
    /// Which fragments `payloads` holds.
    copied: Vec<bool>,
    /// Start of the current pass.
    pass_start: Duration,
    /// When a fragment last passed.
    last: Duration,
    /// The current pass is whole, or was made whole.
    done: bool,
    /// The current pass found no room for its payloads (counted once).
    no_room: bool,
    /// A timer entry stands for this slot.
    timer: bool,
}

impl Slot {
    fn shards(&self) -> u32 {
        self.geometry.shards_in(self.stripe)
    }

    fn data(&self) -> u32 {
        u32::from(self.geometry.data_in(self.stripe))
    }

    fn chunk(&self) -> usize {
        usize::from(self.geometry.chunk_len)
    }

    /// Bytes charged while the slot exists: its times and key.
    fn cost(&self) -> u64 {
        slot_cost(&self.geometry, self.stripe, self.key.len())
    }

    /// Bytes charged while it holds payloads.
    fn payload_cost(&self) -> u64 {
        u64::from(self.shards()) * u64::from(self.geometry.chunk_len)
    }
}

fn slot_cost(geometry: &Geometry, stripe: u32, key: usize) -> u64 {
    let shards = u64::from(geometry.shards_in(stripe));
    shards * 16 + key as u64 + SLOT_OVERHEAD
}

/// Gives back the payloads `slot` holds, if any.
fn release(slot: &mut Slot, pool: &mut Vec<Vec<u8>>, held: &mut u64) {
    if let Some(buf) = slot.payloads.take() {
        *held -= slot.payload_cost();
        recycle(pool, Some(buf));
    }
}

/// A rebuilt fragment waiting to be sent.
struct Rebuilt {
    id: StripeId,
    key: Box<[u8]>,
    geometry: Geometry,
    shard: u16,
    payload: Vec<u8>,
}

impl Rebuilt {
    fn cost(&self) -> u64 {
        (self.key.len() + self.payload.len()) as u64 + SLOT_OVERHEAD
    }
}

/// Figures of the repair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairFigures {
    /// Fragments rebuilt and sent on.
    pub repaired: u64,
    /// Stripe passes with fewer fragments than their data count: not rebuildable here.
    pub unrecoverable: u64,
    /// Stripe passes not tracked for want of room.
    pub untracked: u64,
    /// Copies of a fragment that had passed moments before.
    pub duplicates: u64,
    /// Bytes held now (tracked stripes and rebuilt fragments waiting to go).
    pub held: u64,
}

/// The stripes passing now. See the module documentation.
pub struct Repair {
    slots: IdMap<Slot>,
    /// (when to look at a slot again, its id), in time order; one entry per slot at most.
    timers: BinaryHeap<Reverse<(Duration, StripeId)>>,
    out: VecDeque<Rebuilt>,
    budget: u64,
    held: u64,
    figures: RepairFigures,
    coder: Coder,
    /// Reused payload buffers.
    pool: Vec<Vec<u8>>,
    /// Half the shortest loop period: a fragment seen again sooner is a copy.
    window: Duration,
    /// How long a stripe is waited for after its last fragment before it is judged.
    quiet: Duration,
}

impl Repair {
    /// A repair that holds at most `budget` bytes. It tracks nothing until it knows the loop's
    /// period ([`Repair::set_period`]).
    pub fn new(budget: u64) -> Repair {
        Repair {
            slots: IdMap::default(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            budget,
            held: 0,
            figures: RepairFigures::default(),
            coder: Coder::new(),
            pool: Vec::new(),
            window: Duration::ZERO,
            quiet: QUIET_MIN,
        }
    }

    /// Tells the loop's shortest period so far (zero turns the repair off).
    ///
    /// A copy of a fragment must arrive within half the shortest period of the original (the
    /// window), and a stripe is judged after a quarter of it of silence (long enough for the
    /// stalls of a busy machine): a stripe that passes in less than an eighth of the period
    /// (writers spread a narrow value's rows over an eighth, see `writes`) has its rebuilt
    /// copies and any late original within the window.
    pub fn set_period(&mut self, min: Duration) {
        self.window = min / 2;
        self.quiet = (min / 4).clamp(QUIET_MIN, QUIET_MAX);
    }

    /// The figures so far.
    pub fn figures(&self) -> RepairFigures {
        RepairFigures {
            held: self.held,
            ..self.figures
        }
    }

    /// Bytes held now.
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// Takes a checked DATA or PARITY fragment of version `(hlc, origin)` passing at `now`.
    /// The hot path: a lookup and a copy of the payload into a buffer that is reused.
    pub fn on_fragment(
        &mut self,
        frame: &DataFrame<'_>,
        origin: u64,
        hlc: u64,
        now: Duration,
    ) -> Verdict {
        let geometry = frame.geometry();
        if geometry.parity == 0 || self.window.is_zero() {
            // Nothing to rebuild from; or the period is unknown, so a copy cannot be told
            // from the next lap.
            return Verdict::Forward;
        }
        let id = StripeId {
            origin,
            hlc,
            stripe: frame.stripe(),
        };
        let window = self.window;
        let shard = usize::from(frame.shard());
        let slot = match self.slots.get_mut(&id) {
            Some(slot) => slot,
            None => {
                let key = frame.key();
                let cost = slot_cost(&geometry, id.stripe, key.len());
                if self.held + cost > self.budget {
                    self.figures.untracked += 1;
                    return Verdict::Forward;
                }
                self.held += cost;
                let shards = geometry.shards_in(id.stripe) as usize;
                let slot = Slot {
                    geometry,
                    stripe: id.stripe,
                    key: key.into(),
                    seen: vec![None; shards],
                    present: 0,
                    payloads: None,
                    copied: vec![false; shards],
                    pass_start: now,
                    last: now,
                    done: false,
                    no_room: false,
                    timer: false,
                };
                self.slots.entry(id).or_insert(slot)
            }
        };
        if slot.geometry != geometry || *slot.key != *frame.key() {
            return Verdict::Forward; // another shape under the same version: not ours to mend
        }
        match slot.seen[shard] {
            Some(at) if now.saturating_sub(at) < window => {
                // A datagram comes round a lap after it passed, never sooner than the shortest
                // period: a second copy within half of it is a copy (a late original of one
                // this node rebuilt, or a network duplicate).
                self.figures.duplicates += 1;
                return Verdict::Duplicate;
            }
            Some(at) if at >= slot.pass_start => {
                // Seen in this pass, a lap or more ago: the stripe's next pass begins.
                if !slot.done {
                    let room = self.budget.saturating_sub(self.held);
                    self.held += judge(
                        id,
                        slot,
                        room,
                        &mut self.coder,
                        &mut self.out,
                        &mut self.figures,
                        now,
                    );
                }
                end_pass(slot, &mut self.figures);
                slot.present = 0;
                slot.pass_start = now;
                slot.done = false;
                slot.no_room = false;
            }
            // Never seen, or seen in an earlier pass: a fragment of this pass.
            _ => {}
        }
        slot.seen[shard] = Some(now);
        slot.present += 1;
        slot.last = now;
        if slot.present >= slot.shards() {
            slot.done = true;
            release(slot, &mut self.pool, &mut self.held);
        } else if !slot.done {
            if slot.payloads.is_none() {
                if self.held + slot.payload_cost() > self.budget {
                    // No room to keep this pass: it goes by unmended.
                    if !slot.no_room {
                        slot.no_room = true;
                        self.figures.untracked += 1;
                    }
                    self.push_timer(id, now);
                    return Verdict::Forward;
                }
                self.held += slot.payload_cost();
                slot.copied.fill(false);
                let mut buf = self.pool.pop().unwrap_or_default();
                buf.clear();
                buf.resize(slot.shards() as usize * slot.chunk(), 0);
                slot.payloads = Some(buf);
            }
            let copied = &mut slot.copied;
            let payloads = slot.payloads.as_mut().expect("allocated above");
            copied[shard] = true;
            let chunk = usize::from(geometry.chunk_len);
            let payload = frame.payload();
            let dst = &mut payloads[shard * chunk..][..chunk];
            dst[..payload.len()].copy_from_slice(payload);
            dst[payload.len()..].fill(0);
        }
        self.push_timer(id, now);
        Verdict::Forward
    }

    /// Makes sure a timer entry stands for the slot of `id`.
    fn push_timer(&mut self, id: StripeId, now: Duration) {
        if let Some(slot) = self.slots.get_mut(&id) {
            if !slot.timer {
                slot.timer = true;
                self.timers.push(Reverse((now + self.quiet, id)));
            }
        }
    }

    /// Judges the stripes that have gone quiet by `now`, and forgets those that passed long
    /// enough ago that a copy of theirs is no longer to be expected. A stripe of a version that
    /// `obsolete(key, version)` says the node knows to be deleted or overwritten is not mended:
    /// the node drops such fragments as they pass, so its pass looks short, and rebuilding it
    /// would put the deleted value back in the loop.
    pub fn on_timer(&mut self, now: Duration, obsolete: impl Fn(&[u8], Version) -> bool) {
        let keep = self.window.max(self.quiet);
        while let Some(&Reverse((due, id))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            if slot.last + self.quiet > now {
                // Fragments still came: look again once it has been quiet for long enough.
                self.timers.push(Reverse((now + self.quiet, id)));
                continue;
            }
            let version = Version {
                hlc: id.hlc,
                origin: id.origin,
            };
            if obsolete(&slot.key, version) {
                slot.done = true;
                release(slot, &mut self.pool, &mut self.held);
            }
            if !slot.done {
                let room = self.budget.saturating_sub(self.held);
                self.held += judge(
                    id,
                    slot,
                    room,
                    &mut self.coder,
                    &mut self.out,
                    &mut self.figures,
                    now,
                );
                if slot.done {
                    release(slot, &mut self.pool, &mut self.held);
                }
            }
            // A pass that went by short may be late in parts (a hop that stalled): it is kept
            // until just before its next lap, for the rest of it to come.
            let keep = if slot.done {
                keep
            } else {
                (self.window * 9 / 5).max(keep)
            };
            if slot.last + keep <= now {
                let mut slot = self.slots.remove(&id).expect("looked up above");
                end_pass(&slot, &mut self.figures);
                release(&mut slot, &mut self.pool, &mut self.held);
                self.held -= slot.cost();
            } else {
                let at = (slot.last + keep).max(now + self.quiet);
                self.timers.push(Reverse((at, id)));
            }
        }
    }

    /// When [`Repair::on_timer`] next has work.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.peek().map(|&Reverse((due, _))| due)
    }

    /// Whether a rebuilt fragment waits to be sent.
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// Writes the next rebuilt fragment into `buf` and returns its length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        let rebuilt = self.out.pop_front()?;
        self.held -= rebuilt.cost();
        let repr = DataRepr {
            origin: rebuilt.id.origin,
            hlc: rebuilt.id.hlc,
            geometry: rebuilt.geometry,
            stripe: rebuilt.id.stripe,
            shard: rebuilt.shard,
            key: &rebuilt.key,
            payload: &rebuilt.payload,
        };
        let len = repr.emit(buf);
        recycle(&mut self.pool, Some(rebuilt.payload));
        Some(len)
    }
}

/// The current pass of `slot` is over: counted unrecoverable if it went by short of its data
/// count and nothing made it whole.
fn end_pass(slot: &Slot, figures: &mut RepairFigures) {
    let held = slot.copied.iter().filter(|&&c| c).count() as u32;
    if !slot.done && slot.present < slot.data() && (slot.payloads.is_none() || held < slot.data()) {
        figures.unrecoverable += 1;
    }
}

fn recycle(pool: &mut Vec<Vec<u8>>, buf: Option<Vec<u8>>) {
    if let Some(buf) = buf {
        if pool.len() < 64 {
            pool.push(buf);
        }
    }
}

/// Judges a pass that has gone by: whole, rebuildable (then the missing fragments are rebuilt,
/// queued, and count as passed now), or short of its data count (counted once, and looked at
/// again if more of it comes). The rebuilt fragments must fit in `room` bytes, or the stripe is
/// looked at again later (counted in `untracked`). Returns the bytes queued.
fn judge(
    id: StripeId,
    slot: &mut Slot,
    room: u64,
    coder: &mut Coder,
    out: &mut VecDeque<Rebuilt>,
    figures: &mut RepairFigures,
    now: Duration,
) -> u64 {
    if slot.present >= slot.shards() {
        slot.done = true;
        return 0;
    }
    // What the node holds of the stripe counts, not only this pass: a hop that stalled can
    // split one pass in two, and the bytes of a fragment are the same on every lap.
    let held = slot.copied.iter().filter(|&&c| c).count() as u32;
    if slot.payloads.is_none() || held < slot.data() {
        // Counted if the pass ends so (`end_pass`); more of it may still come.
        return 0;
    }
    let missing = u64::from(slot.shards() - slot.present);
    let per = u64::from(slot.geometry.chunk_len) + slot.key.len() as u64 + SLOT_OVERHEAD;
    if missing * per > room {
        figures.untracked += 1;
        return 0;
    }
    let chunk = slot.chunk();
    let start = slot.pass_start;
    let data = slot.data() as usize;
    let parity = usize::from(slot.geometry.parity);
    let Some(payloads) = slot.payloads.as_mut() else {
        return 0;
    };
    if coder
        .rebuild_in(data, parity, chunk, payloads, &mut slot.copied, false)
        .is_err()
    {
        return 0;
    }
    slot.done = true;
    let mut bytes = 0;
    for index in 0..slot.shards() as usize {
        if slot.seen[index].is_some_and(|t| t >= start) {
            continue;
        }
        slot.seen[index] = Some(now);
        slot.present += 1;
        figures.repaired += 1;
        let rebuilt = rebuilt(id, slot, index as u16);
        bytes += rebuilt.cost();
        out.push_back(rebuilt);
    }
    bytes
}

/// A copy of fragment `shard` of the stripe of `slot`, whose payload it holds.
fn rebuilt(id: StripeId, slot: &Slot, shard: u16) -> Rebuilt {
    let chunk = slot.chunk();
    let len = slot.geometry.payload_len(slot.stripe, shard);
    let payloads = slot.payloads.as_ref().expect("just rebuilt");
    Rebuilt {
        id,
        key: slot.key.clone(),
        geometry: slot.geometry,
        shard,
        payload: payloads[usize::from(shard) * chunk..][..len].to_vec(),
    }
}
