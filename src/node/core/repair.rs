//! node::core::repair: in-loop repair, and the removal of copies of a fragment.
//!
//! It owns what the node knows of the stripes passing it now: which of their fragments passed
//! in the stripe's current lap, and a copy of their payloads while the stripe passes. Every
//! fragment carries its lap (`DataFrame::lap`: the hops it has made through nodes, one more at
//! every node), so the fragments of one lap of a stripe carry the same number at a node and
//! those of its next lap a larger one: a pass is told from the next exactly, whatever the
//! timing. When a stripe's pass has gone by with fragments missing and at least its data count
//! present (a quiet spell after its last fragment, or its next lap arriving, whichever comes
//! first), it rebuilds exactly the missing ones (byte for byte: same header, same payload) and
//! queues them to be sent on as part of that pass, so that the loop is whole again within the
//! lap. A fragment that comes a second time in one lap is a copy (a network duplicate, or an
//! original that was only delayed and has been rebuilt meanwhile): the core drops it, so every
//! fragment circulates once. Judging a pass too early costs work, never a fragment: whatever
//! comes after the judgement is a copy of what was rebuilt. Rebuilt fragments go out a
//! stripe's gap apart, and on the next lap are sent again into their place in the stripe (the
//! copies behind it dropped), so that a stripe keeps its writer's spread. What it holds: the
//! payloads of a stripe while it passes, a copy of the fragments it rebuilt until their next
//! lap, and 64 bytes per stripe that passed whole until its next lap (to drop stray copies of
//! it); never more bytes than its budget (`--max-repair`): a stripe that finds no room passes
//! untracked (counted).
//!
//! It must not decide what the loop keeps otherwise (versions, deletions are the core's), and
//! it has no clock: times come in with each call.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
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
/// Per-fragment tables of a slot kept for reuse: `seen`, `at`, `copied`.
type Shell = (Vec<bool>, Vec<Duration>, Vec<bool>);
/// Most of them kept.
const MAX_SHELLS: usize = 256;
/// Bytes charged for remembering the lap of a stripe that passed whole.
const PASSED_COST: u64 = 64;
/// How long a stripe is remembered after its last fragment while the loop's period is unknown.
const WINDOW_UNKNOWN: Duration = Duration::from_millis(100);

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
    /// Send it on as a fragment of the pass that carries this lap (the core writes the lap plus
    /// one into it): the lap it came with, or, for a fragment late by a lap or more that stands
    /// in for its next lap's copy, the stripe's current one.
    Forward(u8),
    /// A copy of a fragment that has passed (or was rebuilt) in this lap: drop it.
    Duplicate,
}

/// One stripe passing the node.
struct Slot {
    geometry: Geometry,
    stripe: u32,
    /// The key: with the id and the geometry, all a rebuilt fragment's header needs.
    key: Box<[u8]>,
    /// The lap the fragments of the current pass carry as they reach this node.
    lap: u8,
    /// Fragments seen (or rebuilt) in the current pass.
    seen: Vec<bool>,
    /// When each fragment of `seen` passed (or was sent).
    at: Vec<Duration>,
    /// How many of `seen` are set.
    present: u32,
    /// Payloads, `chunk_len` bytes per fragment (data payloads shorter than that are
    /// zero-padded), held while the stripe is not whole; a fragment's bytes are the same on
    /// every lap, so they may come from this pass or the one before.
    payloads: Option<Vec<u8>>,
    /// Which fragments `payloads` holds.
    copied: Vec<bool>,
    /// When the current pass began, and when a fragment of it last passed.
    first: Duration,
    last: Duration,
    /// How far behind the head of their pass the fragments in `moving` went out.
    lag: Duration,
    /// Remembered at least until then: the copies of moved fragments are still to come.
    until: Duration,
    /// How long the pass before took from its first fragment to its last (a fragment that was
    /// rebuilt behind the stripe, and not moved, comes as late every lap): the pass is not
    /// judged before that much time after its first fragment.
    expect: Duration,
    /// The current pass is whole, or was made whole.
    done: bool,
    /// The current pass found no room for its payloads (counted once).
    no_room: bool,
    /// The slot was made while the repair was turning stripes away for want of room: the
    /// pass may have begun before it, with fragments that passed unseen, so it is not mended
    /// (that would send copies of them). The next pass is seen whole.
    partial: bool,
    /// Fragments rebuilt a quiet spell after the rest of their pass, with their payloads and
    /// where in the pass they belong (time after its head): they went out behind their stripe,
    /// so on its next lap they are sent again in their place and the copies that come behind
    /// the stripe are dropped. The stripe keeps its spread (a burst hits few of its fragments),
    /// and its next pass is not judged while they are still on their way.
    moving: Vec<(u16, Vec<u8>, Duration)>,
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

    /// Bytes charged while the slot exists: its marks and key.
    fn cost(&self) -> u64 {
        slot_cost(&self.geometry, self.stripe, self.key.len())
    }

    /// Bytes charged for a fragment kept to be moved (as for one waiting to be sent).
    fn moving_cost(&self, payload: &[u8]) -> u64 {
        (self.key.len() + payload.len()) as u64 + SLOT_OVERHEAD
    }

    /// Bytes charged while it holds payloads.
    fn payload_cost(&self) -> u64 {
        u64::from(self.shards()) * u64::from(self.geometry.chunk_len)
    }

    /// Starts the pass of lap `lap` at `now`.
    fn begin_pass(&mut self, lap: u8, now: Duration) {
        self.lap = lap;
        self.first = now;
        self.seen.fill(false);
        self.present = 0;
        self.done = false;
        self.no_room = false;
        self.partial = false;
    }
}

fn slot_cost(geometry: &Geometry, stripe: u32, key: usize) -> u64 {
    let shards = u64::from(geometry.shards_in(stripe));
    // `seen`, `copied` and `at`.
    shards * 18 + key as u64 + SLOT_OVERHEAD
}

/// Gives back the payloads `slot` holds, if any.
fn release(slot: &mut Slot, pool: &mut Vec<Vec<u8>>, held: &mut u64) {
    if let Some(buf) = slot.payloads.take() {
        *held -= slot.payload_cost();
        recycle(pool, Some(buf));
    }
}

/// What is remembered of a stripe that passed whole, until its next lap: any fragment of it
/// that comes with that lap or an earlier one is a copy (a straggler, a network duplicate).
struct Passed {
    lap: u8,
    until: Duration,
    /// From its first fragment to its last: the next pass is waited for that long at least.
    span: Duration,
}

/// A rebuilt fragment waiting to be sent.
struct Rebuilt {
    id: StripeId,
    key: Box<[u8]>,
    geometry: Geometry,
    shard: u16,
    /// The lap of the pass it belongs to (it goes out with one more).
    lap: u8,
    /// Sent into its place in a pass that is still to come: checked at sending (its copy may
    /// have passed meanwhile). Otherwise already counted in its pass.
    placed: bool,
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
    /// Copies of a fragment that had passed in the same lap.
    pub duplicates: u64,
    /// Rebuilt fragments sent again at the head of their stripe's next lap (their copies
    /// behind it dropped).
    pub moved: u64,
    /// Bytes held now (tracked stripes and rebuilt fragments waiting to go).
    pub held: u64,
}

/// The stripes passing now. See the module documentation.
pub struct Repair {
    slots: IdMap<Slot>,
    /// Stripes that passed whole, remembered until just after their next lap.
    passed: IdMap<Passed>,
    /// (when a `passed` entry expires, its id), in time order.
    passed_order: VecDeque<(Duration, StripeId)>,
    /// (when to look at a slot again, its id), in time order; one entry per slot at most.
    timers: BinaryHeap<Reverse<(Duration, StripeId)>>,
    /// Rebuilt fragments to be sent at a time to come (where they belong in their stripe's
    /// pass), by (time, sequence).
    scheduled: BTreeMap<(Duration, u64), Rebuilt>,
    seq: u64,
    budget: u64,
    held: u64,
    figures: RepairFigures,
    coder: Coder,
    /// Reused payload buffers.
    pool: Vec<Vec<u8>>,
    /// When a stripe was last turned away for want of room.
    turned_away: Option<Duration>,
    /// Reused per-fragment tables of slots (`seen`, `at`, `copied`).
    shells: Vec<Shell>,
    /// Half the shortest loop period: how long a whole stripe is remembered after its last
    /// fragment, for copies of it to be told.
    window: Duration,
    /// How long a stripe is waited for after its last fragment before it is judged.
    quiet: Duration,
    /// How long a stripe with fragments to move is remembered after its last fragment: until
    /// well after its next lap.
    next_lap: Duration,
}

impl Repair {
    /// A repair that holds at most `budget` bytes.
    pub fn new(budget: u64) -> Repair {
        Repair {
            slots: IdMap::default(),
            passed: IdMap::default(),
            passed_order: VecDeque::new(),
            timers: BinaryHeap::new(),
            scheduled: BTreeMap::new(),
            seq: 0,
            budget,
            held: 0,
            figures: RepairFigures::default(),
            coder: Coder::new(),
            pool: Vec::new(),
            turned_away: None,
            shells: Vec::new(),
            window: WINDOW_UNKNOWN,
            quiet: QUIET_MAX,
            next_lap: WINDOW_UNKNOWN * 3,
        }
    }

    /// Tells the loop's shortest and longest periods so far.
    ///
    /// A stripe is judged after a quarter of it of silence (long enough for the stalls of a
    /// busy machine; a stripe that passes in less than an eighth of the period — writers spread
    /// a narrow value's rows over an eighth, see `writes` — is judged once it has all passed),
    /// and remembered for half of it after its last fragment, for late copies to be told. Both
    /// only weigh work against memory: the laps the fragments carry tell a copy from the next
    /// lap. A stripe whose rebuilt fragments are to be moved is remembered for one and a half
    /// of the longest period.
    pub fn set_period(&mut self, min: Duration, max: Duration) {
        self.window = (min / 2).max(QUIET_MIN);
        self.quiet = (min / 4).clamp(QUIET_MIN, QUIET_MAX);
        self.next_lap = (max * 3 / 2).max(self.window);
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
        let lap = frame.lap();
        if geometry.parity == 0 {
            return Verdict::Forward(lap); // nothing to rebuild from
        }
        let id = StripeId {
            origin,
            hlc,
            stripe: frame.stripe(),
        };
        let shard = usize::from(frame.shard());
        let slot = match self.slots.get_mut(&id) {
            Some(slot) => slot,
            None => {
                // A stripe's first fragment in a pass: one lookup more, not one per fragment.
                let mut expect = Duration::ZERO;
                if let Some(passed) = self.passed.get(&id) {
                    if lap.wrapping_sub(passed.lap) as i8 <= 0 {
                        // The stripe passed whole in this lap: this is a copy.
                        self.figures.duplicates += 1;
                        return Verdict::Duplicate;
                    }
                    expect = passed.span;
                    self.passed.remove(&id);
                    self.held -= PASSED_COST;
                }
                let key = frame.key();
                let cost = slot_cost(&geometry, id.stripe, key.len());
                if self.held + cost > self.budget {
                    self.figures.untracked += 1;
                    self.turned_away = Some(now);
                    return Verdict::Forward(lap);
                }
                self.held += cost;
                let partial = self
                    .turned_away
                    .is_some_and(|at| now.saturating_sub(at) < self.window.max(self.quiet));
                let shards = geometry.shards_in(id.stripe) as usize;
                // The per-fragment tables of a forgotten slot, reused: a slot lives for one pass
                // of its stripe, so one is made and one forgotten for every stripe every lap.
                let mut shell = self.shells.pop().unwrap_or_default();
                shell.0.clear();
                shell.0.resize(shards, false);
                shell.1.clear();
                shell.1.resize(shards, now);
                shell.2.clear();
                shell.2.resize(shards, false);
                let slot = Slot {
                    geometry,
                    stripe: id.stripe,
                    key: key.into(),
                    lap,
                    seen: shell.0,
                    at: shell.1,
                    present: 0,
                    payloads: None,
                    copied: shell.2,
                    first: now,
                    last: now,
                    lag: Duration::ZERO,
                    until: now,
                    expect,
                    done: false,
                    no_room: false,
                    partial,
                    moving: Vec::new(),
                    timer: false,
                };
                self.slots.entry(id).or_insert(slot)
            }
        };
        if slot.geometry != geometry || *slot.key != *frame.key() {
            return Verdict::Forward(lap); // another shape under the same version: not ours to mend
        }
        // Laps are counted modulo 256: a lap up to 127 ahead is a later one, else an earlier
        // one (a ring of more than 127 nodes would need the slot forgotten between laps, which
        // it is, half a period after its last fragment).
        let ahead = lap.wrapping_sub(slot.lap) as i8;
        if ahead > 0 {
            // The stripe's next lap: the pass before is over at this node. What it lacked is
            // rebuilt as part of the new pass, which cannot bring it (it was not in the loop),
            // and sent where it belongs in it.
            let mut late = Vec::new();
            if !slot.done {
                let room = self.budget.saturating_sub(self.held);
                late = judge(
                    id,
                    slot,
                    room,
                    &mut self.coder,
                    &mut self.figures,
                    lap,
                    false,
                );
            }
            end_pass(slot, &mut self.figures);
            slot.begin_pass(lap, now);
            if !slot.moving.is_empty() {
                // The copies of what moves now come as far behind this pass's head as they went
                // out behind the last one's.
                slot.until = slot.until.max(now + slot.lag + self.quiet);
            }
            for (mut rebuilt, offset) in late {
                rebuilt.placed = true;
                self.held += rebuilt.cost();
                self.seq += 1;
                self.scheduled.insert((now + offset, self.seq), rebuilt);
            }
            // The moving fragments were charged when they were kept, as ones waiting to go.
            for (shard, payload, offset) in std::mem::take(&mut slot.moving) {
                self.figures.moved += 1;
                let rebuilt = Rebuilt {
                    id,
                    key: slot.key.clone(),
                    geometry,
                    shard,
                    lap,
                    placed: true,
                    payload,
                };
                self.seq += 1;
                self.scheduled.insert((now + offset, self.seq), rebuilt);
            }
        }
        // A fragment of an earlier lap (`ahead < 0`), late, stands in for its copy of this lap
        // if that has not passed (nor been rebuilt): it joins the current pass.
        if slot.seen[shard] {
            self.figures.duplicates += 1;
            return Verdict::Duplicate;
        }
        slot.seen[shard] = true;
        slot.at[shard] = now;
        slot.present += 1;
        slot.last = now;
        let pass_lap = slot.lap;
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
                    return Verdict::Forward(pass_lap);
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
        Verdict::Forward(pass_lap)
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

    /// Judges the stripes that have gone quiet by `now`, and forgets those whose last fragment
    /// passed long enough ago. A stripe of a version that `obsolete(key, version)` says the
    /// node knows to be deleted or overwritten is not mended: the node drops such fragments as
    /// they pass, so its pass looks short, and rebuilding it would put the deleted value back
    /// in the loop.
    pub fn on_timer(&mut self, now: Duration, obsolete: impl Fn(&[u8], Version) -> bool) {
        while let Some(&(until, id)) = self.passed_order.front() {
            if until > now {
                break;
            }
            self.passed_order.pop_front();
            if self.passed.get(&id).is_some_and(|p| p.until == until) {
                self.passed.remove(&id);
                self.held -= PASSED_COST;
            }
        }
        // Fragments due to be sent into their place that are not wanted there any more.
        while let Some((&(due, _), first)) = self.scheduled.first_key_value() {
            if due > now || self.wanted(first) {
                break;
            }
            let (_, rebuilt) = self.scheduled.pop_first().expect("looked at above");
            self.held -= rebuilt.cost();
            recycle(&mut self.pool, Some(rebuilt.payload));
        }
        let keep = self.window.max(self.quiet);
        while let Some(&Reverse((due, id))) = self.timers.peek() {
            if due > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = self.slots.get_mut(&id) else {
                continue;
            };
            let judge_at = (slot.last + self.quiet).max(slot.first + slot.expect + self.quiet / 4);
            if judge_at >= now {
                // Fragments still came: look again once it has been quiet for long enough. A
                // stripe is judged strictly after its quiet time: a fragment rebuilt at that
                // very moment a lap ago comes at that very moment now, and is not missing.
                let again = judge_at + Duration::from_nanos(1);
                self.timers.push(Reverse((again.max(now), id)));
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
                let lap = slot.lap;
                let passed = slot.present;
                let span = slot.last.saturating_sub(slot.first);
                let rebuilt = judge(
                    id,
                    slot,
                    room,
                    &mut self.coder,
                    &mut self.figures,
                    lap,
                    true,
                );
                // Sent a writer's gap apart (the stripe's own pace, within the quiet time), not
                // back to back: a burst then takes few of them.
                let count = rebuilt.len() as u32;
                let gap = if passed > 1 && count > 0 {
                    (span / (passed - 1)).min(self.quiet / count)
                } else {
                    Duration::ZERO
                };
                for (n, (rebuilt, _)) in rebuilt.into_iter().enumerate() {
                    self.held += rebuilt.cost();
                    self.seq += 1;
                    self.scheduled
                        .insert((now + gap * n as u32, self.seq), rebuilt);
                }
                // The copies kept to be moved cost what fragments waiting to go do.
                let kept: u64 = slot
                    .moving
                    .iter()
                    .map(|(_, p, _)| slot.moving_cost(p))
                    .sum();
                self.held += kept;
                if !slot.moving.is_empty() {
                    slot.lag = now.saturating_sub(slot.first);
                }
                if slot.done {
                    release(slot, &mut self.pool, &mut self.held);
                }
            }
            // A pass that went by short may be late in parts (a hop that stalled): it is kept
            // until just before its next lap, for the rest of it to come.
            let keep = if !slot.moving.is_empty() {
                self.next_lap.max(keep)
            } else if slot.done {
                keep
            } else {
                (self.window * 9 / 5).max(keep)
            };
            if slot.last + keep <= now && slot.until <= now {
                let mut slot = self.slots.remove(&id).expect("looked up above");
                if slot.done && slot.moving.is_empty() && self.held + PASSED_COST <= self.budget {
                    let until = slot.last + self.next_lap;
                    let span = slot.last.saturating_sub(slot.first);
                    self.passed.insert(
                        id,
                        Passed {
                            lap: slot.lap,
                            until,
                            span,
                        },
                    );
                    self.passed_order.push_back((until, id));
                    self.held += PASSED_COST;
                }
                end_pass(&slot, &mut self.figures);
                release(&mut slot, &mut self.pool, &mut self.held);
                for (_, payload, _) in std::mem::take(&mut slot.moving) {
                    self.held -= slot.moving_cost(&payload);
                    recycle(&mut self.pool, Some(payload));
                }
                self.held -= slot.cost();
                if self.shells.len() < MAX_SHELLS {
                    self.shells.push((slot.seen, slot.at, slot.copied));
                }
            } else {
                let at = (slot.last + keep).max(slot.until).max(now + self.quiet);
                self.timers.push(Reverse((at, id)));
            }
        }
    }

    /// When [`Repair::on_timer`] or [`Repair::poll_transmit`] next has work.
    pub fn next_deadline(&self) -> Option<Duration> {
        let timer = self.timers.peek().map(|&Reverse((due, _))| due);
        let send = self.scheduled.keys().next().map(|&(due, _)| due);
        let forget = self.passed_order.front().map(|&(until, _)| until);
        [timer, send, forget].into_iter().flatten().min()
    }

    /// Whether a rebuilt fragment waits to be sent at `now`.
    pub fn wants_transmit(&self, now: Duration) -> bool {
        self.scheduled
            .iter()
            .take_while(|((due, _), _)| *due <= now)
            .any(|(_, rebuilt)| self.wanted(rebuilt))
    }

    /// Whether a rebuilt fragment waiting to be sent is still wanted: its stripe is still in
    /// the lap it was rebuilt for (a node that cannot send as fast as it mends does not send
    /// a lap's fragments into the next one, where they would be copies, and mend again), and,
    /// for one sent into its place, its copy has not passed.
    fn wanted(&self, rebuilt: &Rebuilt) -> bool {
        match self.slots.get(&rebuilt.id) {
            Some(slot) => {
                slot.lap == rebuilt.lap
                    && !(rebuilt.placed && slot.seen[usize::from(rebuilt.shard)])
            }
            None => {
                !rebuilt.placed
                    && self
                        .passed
                        .get(&rebuilt.id)
                        .is_some_and(|p| p.lap == rebuilt.lap)
            }
        }
    }

    /// Forgets the rebuilt fragments waiting to be sent of versions of `key` older than
    /// `version`, which the node now knows (a newer write or a deletion): they would put an
    /// overwritten or deleted value back in the loop.
    pub fn drop_older(&mut self, key: &[u8], version: Version) {
        let (pool, held) = (&mut self.pool, &mut self.held);
        let mut keep = |rebuilt: &mut Rebuilt| {
            let older = Version {
                hlc: rebuilt.id.hlc,
                origin: rebuilt.id.origin,
            } < version;
            if older && *rebuilt.key == *key {
                *held -= rebuilt.cost();
                recycle(pool, Some(std::mem::take(&mut rebuilt.payload)));
                false
            } else {
                true
            }
        };
        if !self.scheduled.is_empty() {
            self.scheduled.retain(|_, rebuilt| keep(rebuilt));
        }
    }

    /// Writes the next rebuilt fragment due by `now` into `buf` and returns its length. One
    /// sent into its place in a pass is dropped instead if its copy has passed meanwhile, or the
    /// stripe has moved on to another lap (or been forgotten); then `None` comes only if
    /// [`Repair::wants_transmit`] said no.
    pub fn poll_transmit(&mut self, buf: &mut [u8], now: Duration) -> Option<usize> {
        let rebuilt = loop {
            let first = self.scheduled.first_entry()?;
            if first.key().0 > now {
                return None;
            }
            let rebuilt = first.remove();
            if !self.wanted(&rebuilt) {
                self.held -= rebuilt.cost();
                recycle(&mut self.pool, Some(rebuilt.payload));
                continue;
            }
            if rebuilt.placed {
                let slot = self.slots.get_mut(&rebuilt.id).expect("wanted");
                let at = usize::from(rebuilt.shard);
                slot.seen[at] = true;
                slot.at[at] = now;
                slot.present += 1;
                slot.last = slot.last.max(now);
                if slot.present >= slot.shards() {
                    slot.done = true;
                    release(slot, &mut self.pool, &mut self.held);
                }
            }
            break rebuilt;
        };
        self.held -= rebuilt.cost();
        let repr = DataRepr {
            origin: rebuilt.id.origin,
            hlc: rebuilt.id.hlc,
            geometry: rebuilt.geometry,
            stripe: rebuilt.id.stripe,
            shard: rebuilt.shard,
            lap: rebuilt.lap.wrapping_add(1),
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

/// Judges a pass that has gone by: whole, rebuildable (then the missing fragments are rebuilt
/// as fragments of lap `lap`, count as passed in this pass, and are returned with where they
/// belong in it, as time after its head; with `to_move`, and room, a copy of each is kept to be
/// moved into its place on the next lap), or short of its data count (counted once, and
/// looked at again if more of it comes). The rebuilt fragments must fit in `room` bytes, or the
/// stripe is looked at again later (counted in `untracked`). The caller charges what it
/// returns; the copies kept are charged here.
fn judge(
    id: StripeId,
    slot: &mut Slot,
    room: u64,
    coder: &mut Coder,
    figures: &mut RepairFigures,
    lap: u8,
    to_move: bool,
) -> Vec<(Rebuilt, Duration)> {
    if slot.present >= slot.shards() {
        slot.done = true;
        return Vec::new();
    }
    if slot.partial {
        figures.untracked += 1;
        return Vec::new();
    }
    // What the node holds of the stripe counts, not only this pass: a hop that stalled can
    // split one pass in two, and the bytes of a fragment are the same on every lap.
    let held = slot.copied.iter().filter(|&&c| c).count() as u32;
    if slot.payloads.is_none() || held < slot.data() {
        // Counted if the pass ends so (`end_pass`); more of it may still come.
        return Vec::new();
    }
    let missing = u64::from(slot.shards() - slot.present);
    let per = u64::from(slot.geometry.chunk_len) + slot.key.len() as u64 + SLOT_OVERHEAD;
    if missing * per > room {
        figures.untracked += 1;
        return Vec::new();
    }
    let to_move = to_move && 2 * missing * per <= room;
    let chunk = slot.chunk();
    let data = slot.data() as usize;
    let parity = usize::from(slot.geometry.parity);
    let Some(payloads) = slot.payloads.as_mut() else {
        return Vec::new();
    };
    if coder
        .rebuild_in(data, parity, chunk, payloads, &mut slot.copied, false)
        .is_err()
    {
        return Vec::new();
    }
    slot.done = true;
    let places: Vec<(usize, Duration)> = (0..slot.shards() as usize)
        .filter(|&index| !slot.seen[index])
        .map(|index| (index, place(slot, index)))
        .collect();
    let mut out = Vec::with_capacity(places.len());
    for (index, offset) in places {
        slot.seen[index] = true;
        slot.at[index] = slot.first + offset;
        slot.present += 1;
        figures.repaired += 1;
        let rebuilt = rebuilt(id, slot, index as u16, lap);
        if to_move {
            slot.moving
                .push((rebuilt.shard, rebuilt.payload.clone(), offset));
        }
        out.push((rebuilt, offset));
    }
    out
}

/// Where fragment `index`, missing from the current pass, belongs in it, as time after the
/// pass's head: between the fragments around it that passed, in proportion (a writer sends a
/// stripe's fragments in order, evenly spread).
fn place(slot: &Slot, index: usize) -> Duration {
    let offset = |i: usize| slot.at[i].saturating_sub(slot.first);
    let lower = (0..index).rev().find(|&i| slot.seen[i]);
    let upper = (index + 1..slot.seen.len()).find(|&i| slot.seen[i]);
    let lerp = |a: usize, b: usize, at: usize| -> Duration {
        let (ta, tb) = (offset(a), offset(b));
        if tb <= ta {
            return ta;
        }
        ta + (tb - ta).mul_f64((at - a) as f64 / (b - a) as f64)
    };
    match (lower, upper) {
        (Some(a), Some(b)) => lerp(a, b, index),
        (None, Some(b)) => offset(b).mul_f64(index as f64 / b as f64),
        (Some(a), None) => {
            // Past the last one that passed: at the pace of those before it.
            let first = (0..a).find(|&i| slot.seen[i]);
            match first {
                Some(f) if offset(a) > offset(f) => {
                    let gap = (offset(a) - offset(f)) / (a - f) as u32;
                    offset(a) + gap * (index - a) as u32
                }
                _ => offset(a),
            }
        }
        (None, None) => Duration::ZERO,
    }
}

/// A copy of fragment `shard` of the stripe of `slot`, whose payload it holds.
fn rebuilt(id: StripeId, slot: &Slot, shard: u16, lap: u8) -> Rebuilt {
    let chunk = slot.chunk();
    let len = slot.geometry.payload_len(slot.stripe, shard);
    let payloads = slot.payloads.as_ref().expect("just rebuilt");
    Rebuilt {
        id,
        key: slot.key.clone(),
        geometry: slot.geometry,
        shard,
        lap,
        placed: false,
        payload: payloads[usize::from(shard) * chunk..][..len].to_vec(),
    }
}
