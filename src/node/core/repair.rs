//! node::core::repair: in-loop repair, the removal of copies of a fragment, and the return of
//! rebuilt fragments to their places in the loop.
//!
//! It owns what the node knows of the stripes passing it now. A stripe's fragments pass a node
//! once a lap, in the loop's order, which is first-in first-out: the writer sends them in
//! ascending shard order (interleaved with other stripes, see `writes`), so the last parity
//! fragment, the *tail*, is the last of its stripe to pass. The node copies the payloads of a
//! stripe while it passes; when the tail passes, the pass is over:
//!
//! - whole: the copies are released;
//! - short, with at least the data count present: the node rebuilds exactly the missing
//!   fragments (byte for byte: same header, same payload), sends them on, and then the tail,
//!   which it held back for the purpose. The stripe leaves the node whole, in the same lap, and
//!   its tail is still its last fragment; the nodes downstream see nothing missing;
//! - short of its data count: waited for while its fragments come (a stripe can pass in parts),
//!   then counted unrecoverable once the pass is over.
//!
//! Nothing here depends on how long a hop takes: a stalled hop delays a stripe, it does not
//! reorder it. Only a lost tail needs a clock: the pass is judged after a quiet spell (an eighth
//! of the shortest loop period), and every missing fragment, the tail last, is rebuilt then.
//!
//! A rebuilt fragment goes back in behind the tail, not where it was lost. Left there, a
//! stripe's rebuilt fragments would gather at its end over many laps and one burst of losses
//! could take them all, undoing the writer's interleaving; so the node that rebuilt a fragment
//! keeps it (within the budget) for one lap and, on the next, sends it right after the fragment
//! that precedes it, dropping the copy behind the tail when that comes round. The loop
//! returns to the writer's order.
//!
//! A fragment that passes a second time in the same pass, within half the shortest loop period
//! of its twin, is a copy (a network duplicate, or an original that was only late and has been
//! rebuilt meanwhile): the core drops it, so every fragment circulates once. Later than that,
//! it starts the stripe's next pass.
//!
//! Nothing is held beyond the stripes passing now and the fragments being put back, and never
//! more bytes than the budget (`--max-repair`): a stripe that finds no room passes untracked
//! (counted). It must not decide what the loop keeps otherwise (versions and deletions are the
//! core's, and it asks the core before mending on a timer or sending), and it has no clock:
//! times come in with each call.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use super::clock::Version;
use crate::coding::Coder;
use crate::wire::{DataFrame, DataRepr, Geometry, MAX_STRIPE_DATA, MAX_STRIPE_PARITY};

/// Fixed bytes charged to each tracked stripe, and to each fragment held, besides payloads.
const SLOT_OVERHEAD: u64 = 128;
/// The longest a stripe whose tail has not come is waited for after its last fragment.
const QUIET_MAX: Duration = Duration::from_millis(100);
/// The shortest.
const QUIET_MIN: Duration = Duration::from_micros(200);
/// Fragments in a stripe at most.
const MAX_SHARDS: usize = MAX_STRIPE_DATA as usize + MAX_STRIPE_PARITY as usize;

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

/// One bit per fragment of a stripe.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Marks([u64; MAX_SHARDS / 64]);

impl Marks {
    fn get(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }

    fn count(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }
}

/// What the core should do with a fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it on.
    Forward,
    /// A copy of a fragment that passed moments ago: drop it.
    Duplicate,
    /// The tail of a stripe that was short: the rebuilt fragments go first, then a copy of it
    /// (see [`Repair::poll_transmit`]); the core does not send the original.
    Held,
}

/// What the core says of a stripe the repair would mend on a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mend {
    /// Mend it.
    Yes,
    /// Its version is deleted or overwritten: the core drops it as it passes, so its pass looks
    /// short, and mending it would put the old value back.
    Obsolete,
    /// This node is still sending it: what has not gone yet is not missing.
    Later,
}

/// A fragment this node rebuilt and keeps for a lap, to put back in its place.
struct Moved {
    shard: u16,
    payload: Vec<u8>,
}

impl Moved {
    fn cost(&self, key: usize) -> u64 {
        (self.payload.len() + key) as u64 + SLOT_OVERHEAD
    }
}

/// One stripe passing the node.
struct Slot {
    geometry: Geometry,
    stripe: u32,
    /// The key: with the id and the geometry, all a rebuilt fragment's header needs.
    key: Box<[u8]>,
    /// Fragments seen in the current pass (or sent by this node in it).
    seen: Marks,
    /// When each was seen (or sent), in microseconds from `base`.
    at: Vec<u32>,
    /// When the slot was made.
    base: Duration,
    /// Start of the current pass, and when a fragment of it last passed.
    pass_start: Duration,
    last: Duration,
    /// The current pass has not been judged yet.
    open: bool,
    /// Payloads of the current pass, `chunk_len` bytes per fragment (data payloads shorter
    /// than that zero-padded), while it is open and there is room.
    payloads: Option<Vec<u8>>,
    /// Which fragments `payloads` holds.
    copied: Marks,
    /// The current pass found no room for its payloads (counted once).
    no_room: bool,
    /// Fragments this node rebuilt in the previous pass, to send in their places in this one.
    moves: Vec<Moved>,
    /// When the slot's timer entry is due (entries due at other times are stale).
    timer: Option<Duration>,
}

impl Slot {
    fn shards(&self) -> u32 {
        self.geometry.shards_in(self.stripe)
    }

    fn tail(&self) -> usize {
        self.shards() as usize - 1
    }

    fn data(&self) -> u32 {
        u32::from(self.geometry.data_in(self.stripe))
    }

    fn chunk(&self) -> usize {
        usize::from(self.geometry.chunk_len)
    }

    /// Bytes charged while it holds payloads.
    fn payload_cost(&self) -> u64 {
        u64::from(self.shards()) * u64::from(self.geometry.chunk_len)
    }

    /// Fragment `shard` passes, or is sent, at `now`.
    fn mark(&mut self, shard: usize, now: Duration) {
        self.seen.set(shard);
        self.at[shard] = now
            .saturating_sub(self.base)
            .as_micros()
            .min(u128::from(u32::MAX)) as u32;
    }

    /// How long ago fragment `shard` passed (or was sent) in this pass.
    fn since(&self, shard: usize, now: Duration) -> Duration {
        now.saturating_sub(self.base + Duration::from_micros(u64::from(self.at[shard])))
    }

    fn payload(&self, shard: usize) -> &[u8] {
        let payloads = self.payloads.as_deref().unwrap_or_default();
        let len = self.geometry.payload_len(self.stripe, shard as u16);
        payloads
            .get(shard * self.chunk()..)
            .map_or(&[], |p| &p[..len])
    }
}

fn slot_cost(key: usize) -> u64 {
    key as u64 + SLOT_OVERHEAD + 2 * std::mem::size_of::<Marks>() as u64
}

/// A fragment waiting to be sent: rebuilt, held back, or put back in its place.
struct Outgoing {
    id: StripeId,
    key: Box<[u8]>,
    geometry: Geometry,
    shard: u16,
    payload: Vec<u8>,
}

impl Outgoing {
    fn cost(&self) -> u64 {
        (self.key.len() + self.payload.len()) as u64 + SLOT_OVERHEAD
    }
}

/// Figures of the repair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RepairFigures {
    /// Fragments rebuilt and sent on.
    pub repaired: u64,
    /// Stripe passes over with fewer fragments than their data count (counted when the stripe
    /// comes round again, or is forgotten): not rebuildable here.
    pub unrecoverable: u64,
    /// Stripe passes not tracked for want of room.
    pub untracked: u64,
    /// Copies of a fragment that had passed moments before.
    pub duplicates: u64,
    /// Rebuilt fragments put back in their places a lap later.
    pub moved: u64,
    /// Tails held back to go after the fragments rebuilt before them.
    pub tails_held: u64,
    /// Bytes held now (tracked stripes, fragments waiting to go or to be put back).
    pub held: u64,
}

/// The stripes passing now. See the module documentation.
pub struct Repair {
    slots: IdMap<Slot>,
    /// (when to look at a slot again, its id), in time order; an entry whose time is not its
    /// slot's `timer` is stale.
    timers: BinaryHeap<Reverse<(Duration, StripeId)>>,
    out: VecDeque<Outgoing>,
    budget: u64,
    held: u64,
    figures: RepairFigures,
    coder: Coder,
    /// Reused payload buffers.
    pool: Vec<Vec<u8>>,
    /// Half the shortest loop period: a fragment seen again sooner is a copy.
    window: Duration,
    /// How long a stripe whose tail has not come is waited for after its last fragment.
    quiet: Duration,
    /// How long fragments to put back are kept for their stripe's next pass.
    lap: Duration,
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
            lap: Duration::ZERO,
        }
    }

    /// Tells the loop's shortest period so far and the longest of late; zero turns the repair
    /// off (what it tracks is forgotten in time).
    ///
    /// A datagram comes round no sooner than the shortest period, so a fragment seen twice
    /// within half of it is a copy (the window). A stripe whose tail was lost is judged after an
    /// eighth of it of silence. Fragments to put back are kept for two of the longest.
    pub fn set_period(&mut self, min: Duration, max: Duration) {
        self.window = min / 2;
        self.quiet = (min / 8).clamp(QUIET_MIN, QUIET_MAX);
        self.lap = max.max(min) * 2;
    }

    /// Whether it mends stripes (it knows the loop's period).
    pub fn active(&self) -> bool {
        !self.window.is_zero()
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
        let shard = usize::from(frame.shard());
        if !self.slots.contains_key(&id) {
            let cost = slot_cost(frame.key().len());
            if self.held + cost > self.budget {
                self.figures.untracked += 1;
                return Verdict::Forward;
            }
            self.held += cost;
            let slot = Slot {
                geometry,
                stripe: id.stripe,
                key: frame.key().into(),
                seen: Marks::default(),
                at: vec![0; geometry.shards_in(id.stripe) as usize],
                base: now,
                pass_start: now,
                last: now,
                open: true,
                payloads: None,
                copied: Marks::default(),
                no_room: false,
                moves: Vec::new(),
                timer: None,
            };
            self.slots.insert(id, slot);
        }
        let slot = self.slots.get_mut(&id).expect("inserted above");
        if slot.geometry != geometry || *slot.key != *frame.key() {
            return Verdict::Forward; // another shape under the same version: not ours to mend
        }
        if slot.seen.get(shard) {
            // Seen in this pass: a copy if it comes within half the shortest lap of its twin
            // (its next lap comes a lap after it, however long the stripe takes to pass).
            if slot.since(shard, now) < self.window {
                self.figures.duplicates += 1;
                return Verdict::Duplicate;
            }
            // A lap later: the stripe's next pass begins.
            self.next_pass(id, now);
        }
        let slot = self.slots.get_mut(&id).expect("still tracked");
        slot.mark(shard, now);
        slot.last = now;
        self.copy(id, shard, frame.payload());
        self.put_back(id, shard, now);
        self.push_timer(id, now);
        let slot = self.slots.get_mut(&id).expect("still tracked");
        let tail = slot.tail();
        if slot.open && slot.seen.get(tail) {
            if slot.seen.count() >= slot.shards() {
                // Whole (a tail held back goes on now, behind the rest).
                self.close(id);
            } else if shard == tail && slot.copied.get(tail) && self.rebuild(id, now, true) {
                // The tail came with fragments missing: they are rebuilt and go now, the tail
                // behind them.
                self.figures.tails_held += 1;
                return Verdict::Held;
            }
            // Short of the data count when the tail came (the rest may only be late, or come
            // after the tail from a hop that reordered them), or the tail is one this node put
            // back: the timer judges the pass a quiet spell after its last fragment.
        }
        Verdict::Forward
    }

    /// The stripe's previous pass is over (a fragment of it comes round again): what it left
    /// unjudged (its tail was lost and the timer has not come yet) is judged now, and a new
    /// pass begins. Fragments rebuilt now go out at the head of the new pass, and stay there.
    fn next_pass(&mut self, id: StripeId, now: Duration) {
        let slot = self.slots.get_mut(&id).expect("tracked");
        let mut sent = Marks::default();
        if slot.open {
            let before = slot.seen;
            if self.rebuild(id, now, false) {
                let slot = &self.slots[&id];
                for s in 0..slot.shards() as usize {
                    if slot.seen.get(s) && !before.get(s) {
                        sent.set(s);
                    }
                }
            }
            self.close(id);
        }
        self.count_if_short(id);
        let slot = self.slots.get_mut(&id).expect("tracked");
        slot.seen = Marks::default();
        for s in 0..slot.shards() as usize {
            if sent.get(s) {
                slot.mark(s, now);
            }
        }
        slot.copied = Marks::default();
        slot.pass_start = now;
        slot.open = true;
        slot.no_room = false;
    }

    /// Copies the payload of fragment `shard` while the pass is open and there is room.
    fn copy(&mut self, id: StripeId, shard: usize, payload: &[u8]) {
        let slot = self.slots.get_mut(&id).expect("tracked");
        if !slot.open || slot.no_room {
            return;
        }
        if slot.payloads.is_none() {
            if self.held + slot.payload_cost() > self.budget {
                // No room to keep this pass: it goes by unmended.
                slot.no_room = true;
                self.figures.untracked += 1;
                return;
            }
            self.held += slot.payload_cost();
            let mut buf = self.pool.pop().unwrap_or_default();
            buf.clear();
            buf.resize(slot.shards() as usize * slot.chunk(), 0);
            slot.payloads = Some(buf);
        }
        let chunk = slot.chunk();
        let payloads = slot.payloads.as_mut().expect("allocated above");
        let dst = &mut payloads[shard * chunk..][..chunk];
        dst[..payload.len()].copy_from_slice(payload);
        dst[payload.len()..].fill(0);
        slot.copied.set(shard);
    }

    /// Sends the fragments this node put behind the tail last lap whose places come at or
    /// before fragment `shard`: right after it, where the writer had them. The copy behind the
    /// tail is then a copy, dropped when it comes.
    fn put_back(&mut self, id: StripeId, shard: usize, now: Duration) {
        loop {
            let slot = self.slots.get_mut(&id).expect("tracked");
            let seen = slot.seen;
            let Some(at) = slot.moves.iter().position(|m| {
                let s = usize::from(m.shard);
                seen.get(s) || s == 0 || s - 1 <= shard
            }) else {
                return;
            };
            let moved = slot.moves.remove(at);
            self.held -= moved.cost(slot.key.len());
            let s = usize::from(moved.shard);
            if seen.get(s) {
                // It came by already in this pass: it was not where this node put it.
                continue;
            }
            slot.mark(s, now);
            self.figures.moved += 1;
            self.copy(id, s, &moved.payload);
            let slot = &self.slots[&id];
            let out = Outgoing {
                id,
                key: slot.key.clone(),
                geometry: slot.geometry,
                shard: moved.shard,
                payload: moved.payload,
            };
            self.held += out.cost();
            self.out.push_back(out);
        }
    }

    /// Rebuilds what the open pass of `id` is missing, if it holds its data count, and queues
    /// the rebuilt fragments (and, with `tail_held`, the tail after them). Returns whether it
    /// did.
    fn rebuild(&mut self, id: StripeId, now: Duration, tail_held: bool) -> bool {
        let slot = self.slots.get_mut(&id).expect("tracked");
        let shards = slot.shards() as usize;
        let data = slot.data() as usize;
        if slot.payloads.is_none() || slot.copied.count() < data as u32 {
            return false;
        }
        let missing: Vec<usize> = (0..shards).filter(|&s| !slot.seen.get(s)).collect();
        let per = u64::from(slot.geometry.chunk_len) + slot.key.len() as u64 + SLOT_OVERHEAD;
        // Room for the fragments to send, and to keep them for a lap.
        if 2 * (missing.len() as u64 + 1) * per > self.budget.saturating_sub(self.held) {
            self.figures.untracked += 1;
            return false;
        }
        let mut present: Vec<bool> = (0..shards).map(|s| slot.copied.get(s)).collect();
        let chunk = slot.chunk();
        let parity = usize::from(slot.geometry.parity);
        let payloads = slot.payloads.as_mut().expect("checked above");
        if self
            .coder
            .rebuild_in(data, parity, chunk, payloads, &mut present, false)
            .is_err()
        {
            return false;
        }
        // Every rebuilt fragment goes out late (behind the tail, or a quiet spell after the
        // stripe), and is put back in its place next lap.
        let tail = shards - 1;
        let mut queue = missing;
        if tail_held {
            queue.push(tail);
        }
        for shard in queue {
            let payload = slot.payload(shard).to_vec();
            if !tail_held || shard != tail {
                slot.mark(shard, now);
                self.figures.repaired += 1;
                {
                    let moved = Moved {
                        shard: shard as u16,
                        payload: payload.clone(),
                    };
                    self.held += moved.cost(slot.key.len());
                    slot.moves.push(moved);
                }
            }
            let out = Outgoing {
                id,
                key: slot.key.clone(),
                geometry: slot.geometry,
                shard: shard as u16,
                payload,
            };
            self.held += out.cost();
            self.out.push_back(out);
        }
        slot.last = now;
        self.close(id);
        true
    }

    /// The pass of `id` is over (its stripe comes round again, or is forgotten): if fewer than
    /// its data count of fragments came in it, or were rebuilt, it is counted unrecoverable
    /// (unless it went untracked for want of room).
    fn count_if_short(&mut self, id: StripeId) {
        let slot = &self.slots[&id];
        if slot.seen.count() < slot.data() && !slot.no_room {
            self.figures.unrecoverable += 1;
        }
    }

    /// The current pass of `id` is judged: its payloads are released.
    fn close(&mut self, id: StripeId) {
        let slot = self.slots.get_mut(&id).expect("tracked");
        slot.open = false;
        if let Some(buf) = slot.payloads.take() {
            self.held -= slot.payload_cost();
            if self.pool.len() < 64 {
                self.pool.push(buf);
            }
        }
    }

    /// Makes sure the slot of `id` is looked at by `now + quiet` (an open pass is judged a
    /// quiet spell after its last fragment, whatever its slot waited for before).
    fn push_timer(&mut self, id: StripeId, now: Duration) {
        let due = now + self.quiet;
        if let Some(slot) = self.slots.get_mut(&id) {
            if slot.timer.is_none_or(|at| at > due) {
                slot.timer = Some(due);
                self.timers.push(Reverse((due, id)));
            }
        }
    }

    /// Judges the stripes whose tail has not come after a quiet spell, and forgets those that
    /// passed long enough ago that a copy of theirs is no longer to be expected. `check` says
    /// whether a stripe of `(key, version)` may be mended now.
    pub fn on_timer(&mut self, now: Duration, check: impl Fn(&[u8], Version) -> Mend) {
        while let Some(&Reverse((due, id))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            if slot.timer != Some(due) {
                continue; // stale: a sooner entry replaced it
            }
            slot.timer = None;
            let next = if slot.open {
                self.judge_quiet(id, now, &check)
            } else {
                self.forget(id, now)
            };
            if let Some(at) = next {
                let slot = self.slots.get_mut(&id).expect("kept");
                let at = at.max(now);
                if slot.timer.is_none_or(|t| t > at) {
                    slot.timer = Some(at);
                    self.timers.push(Reverse((at, id)));
                }
            }
        }
    }

    /// An open pass whose timer is due. Returns when to look again, if ever.
    fn judge_quiet(
        &mut self,
        id: StripeId,
        now: Duration,
        check: &impl Fn(&[u8], Version) -> Mend,
    ) -> Option<Duration> {
        let slot = self.slots.get_mut(&id).expect("tracked");
        if slot.last + self.quiet > now {
            return Some(slot.last + self.quiet);
        }
        let version = Version {
            hlc: id.hlc,
            origin: id.origin,
        };
        match check(&slot.key, version) {
            Mend::Later => return Some(now + self.quiet),
            Mend::Obsolete => {
                slot.moves.clear();
                self.close(id);
                return Some(now);
            }
            Mend::Yes => {}
        }
        let ok = self.rebuild(id, now, false);
        if ok {
            return Some(now + self.quiet);
        }
        let slot = self.slots.get_mut(&id).expect("tracked");
        if slot.last + self.window > now {
            // Short of its data count: the rest may only be late (a stripe can pass in parts,
            // its tail among the first of them); it stays open while its fragments come.
            return Some(slot.last + self.window);
        }
        // Given up on: what comes later is forwarded as it is, and counted with the pass
        // (`count_if_short`) when the stripe comes round again or is forgotten.
        self.close(id);
        Some(now)
    }

    /// A judged pass whose timer is due: forgotten once a copy of its fragments can no longer
    /// come, and no fragment waits to be put back.
    fn forget(&mut self, id: StripeId, now: Duration) -> Option<Duration> {
        let slot = self.slots.get_mut(&id).expect("tracked");
        let copies_until = slot.last + self.window;
        let until = if slot.moves.is_empty() {
            copies_until
        } else {
            copies_until.max(slot.pass_start + self.lap)
        };
        if until > now {
            return Some(until);
        }
        self.count_if_short(id);
        let slot = self.slots.remove(&id).expect("tracked");
        let key = slot.key.len();
        self.held -= slot_cost(key);
        for moved in slot.moves {
            self.held -= moved.cost(key);
        }
        None
    }

    /// When [`Repair::on_timer`] next has work.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.peek().map(|&Reverse((due, _))| due)
    }

    /// Whether a fragment waits to be sent.
    pub fn wants_transmit(&self) -> bool {
        !self.out.is_empty()
    }

    /// Forgets the fragments waiting to be sent of versions of `key` older than `version`: the
    /// key was overwritten or deleted (a later pass of such a stripe is not mended either,
    /// since the core drops its fragments, and asks [`Mend`] before a timer mends it).
    pub fn drop_older(&mut self, key: &[u8], version: Version) {
        if self.out.is_empty() {
            return;
        }
        let held = &mut self.held;
        self.out.retain(|out| {
            let older = Version {
                hlc: out.id.hlc,
                origin: out.id.origin,
            } < version;
            if older && *out.key == *key {
                *held -= out.cost();
                return false;
            }
            true
        });
    }

    /// Writes the next fragment to send into `buf` and returns its length.
    pub fn poll_transmit(&mut self, buf: &mut [u8]) -> Option<usize> {
        let out = self.out.pop_front()?;
        self.held -= out.cost();
        let repr = DataRepr {
            origin: out.id.origin,
            hlc: out.id.hlc,
            geometry: out.geometry,
            stripe: out.id.stripe,
            shard: out.shard,
            key: &out.key,
            payload: &out.payload,
        };
        Some(repr.emit(buf))
    }
}
