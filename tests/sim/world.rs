//! sim::world: the event loop that drives the cores, the network and the clients, and checks
//! the invariants after every step.
//!
//! Simulated time is a u64 of nanoseconds; events at the same time run in the order they were
//! scheduled, so a seed is one run. Each node is a [`Core`] driven as the real driver drives it:
//! a received datagram is decided at once and, if kept, forwarded before the node's new frames
//! go out; new frames go out at the node's send rate (a token bucket of up to 1024 frames, like
//! the driver's frames per turn); `on_timer` runs after every input and at the core's deadline.
//!
//! # The bounds behind "every request is answered by its deadline"
//!
//! With `P` the longest the network can take for one lap (every link at its worst plus the
//! reflector), `LT = max(3 P, loop_timeout)` (the core's broken-loop timeout is three measured
//! periods, never less than `loop_timeout`, and a measured period is at most `P`), `S = 10 ms`
//! (the most a probe asked for waits, `period / 32` clamped to 10 ms) and `F` the time to send
//! one frame at the node's rate:
//!
//! - GET: its probe leaves within `S + F`; either a probe sent after it returns (within `P`), or
//!   the loop has been silent since at the latest that probe and is declared broken `LT` later.
//!   Deadline: `issued + S + F + LT`.
//! - PUT, sending: it waits behind the values queued before it and at most `2 max_requests`
//!   tombstones; probes take at most one frame in two at the rates simulated (at least five
//!   frames per ms against at most 2.2 probes per ms). Deadline: `accepted + 2 F (frames ahead +
//!   own + 2 max_requests + 16) + 20 ms`.
//! - PUT, all sent: the probe asked for after its last fragment settles it as for a GET.
//!   Deadline: `all sent + S + F + LT`.
//! - DELETE: answered when its tombstone goes out, behind probes and the tombstones queued
//!   before it. Deadline: `accepted + 2 F (tombstones ahead + 3) + 1 ms`.
//! - Parked (the loop never closed yet): the first probe's silence breaks the loop after
//!   `loop_timeout`. Deadline: `first probe + loop_timeout`; when the loop closes, the request is
//!   taken and gets the deadline of its kind from then.
//! - STATS: answered by the call.
//!
//! Each bound gets 10 µs of slack for the timer granularity (the core declares the loop broken
//! strictly after its deadline, so the simulator calls `on_timer` 1 µs after `next_deadline`).

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt::Display;
use std::rc::Rc;
use std::time::Duration;

use elayday::node::core::{
    Answer, Command, Core, CoreConfig, DropReason, FailureKind, IoFigures, Now, Usage,
};
use elayday::wire::{self, DataFrame, Frame, Kind};

use super::net::{self, Datagram, Link, Meta, Reflector, Ver};
use super::oracle::{KeyState, Op, Outcome, Owner, Request, Settled, Stage, State, Write};
use super::rng::Rng;
use super::scenario::{NodeSpec, Profile, Scenario, MS, US};

/// The longest a probe asked for waits (probes.rs: `period / 32`, at most 10 ms).
const PROBE_SPACING_MAX: u64 = 10 * MS;
/// Probes a core may remember (probes.rs `MAX_OUTSTANDING`).
const PROBES_MAX: usize = 4096;
/// Slack on every bound: the simulator's timer granularity.
const SLACK: u64 = 10 * US;
/// Events after which a run counts as a runaway.
const MAX_EVENTS: u64 = 40_000_000;

/// Bugs of the core that the simulator found and that are not fixed yet. Normal runs count
/// their symptom and let it pass, so that every other invariant keeps being checked on every
/// seed; strict runs ([`super::run_seed_strict`], the regression seeds) fail on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// A GET answers NOT_FOUND at once from a deletion recorded off another node's tombstone,
    /// even though a newer write of the key, confirmed since, passed the node before that
    /// tombstone did (`Core::on_command`, the `records.get(&key).is_some_and(|r| r.deleted)`
    /// shortcut). Seeds 154 and 41.
    DeletedShortcut,
    /// A write replaced while its fragments are still queued (by a DELETE or PUT of the key on
    /// the same node, or a newer version from elsewhere) is answered OK, and its fragments
    /// still go out to the last one (`Core::poll_transmit` takes `puts.front()` without looking
    /// at the key's record): datagrams of a deleted or overwritten version enter the network
    /// more than a lap after the deletion, and those sent after the node forgets the deletion
    /// circulate for ever. Seed 1000611: PUT #173 (12 KB of k5, queued behind another 18 KB at
    /// 5 frames/ms) is answered OK when DELETE #448 of k5 is taken at 1087.1 ms; its fragments
    /// go out from 1120.5 ms on, after the node forgot the deletion (its record lasts three
    /// periods, ~31 ms), so they are kept and go round until the next DELETE of k5, at 1182.8
    /// ms: a GET of k5 in between would get a deleted value back.
    LingeringWrite,
    /// A GET that had no room for some datagram of its value while other GETs held
    /// `--max-reassembly`, and room for the rest, answers DATA_LOSS ("the value went round
    /// incomplete: 2 of 3 datagrams arrived") for a value that is whole in the loop:
    /// `Reassembly::progress` reports the partial before the refusal. Seed 152: GET #386 of k2
    /// on node 0 at 9357.3 ms; fragment 2 of write #109 passes at 9366.6 ms while GET #384
    /// holds the budget, fragments 0 and 1 pass again at 9457.0 and 9468.8 ms, the probe is
    /// back at 9472.0 ms.
    NoRoomAsLoss,
}

impl Known {
    pub const ALL: [Known; 3] = [
        Known::DeletedShortcut,
        Known::LingeringWrite,
        Known::NoRoomAsLoss,
    ];
}

/// Figures of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub seed: u64,
    pub description: String,
    /// Simulated time, ns.
    pub sim_time: u64,
    /// Nominal loop period, ns.
    pub period: u64,
    pub events: u64,
    pub requests: u64,
    pub done: u64,
    pub values: u64,
    pub not_found: u64,
    pub data_loss: u64,
    pub unavailable: u64,
    pub exhausted: u64,
    pub cancelled: u64,
    /// New frames the nodes sent, and datagrams they forwarded.
    pub sent: u64,
    pub forwarded: u64,
    /// Datagrams the network destroyed (lost, cut, overflowed, corrupted).
    pub destroyed: u64,
    pub corrupted: u64,
    /// Intact DATA datagrams a node dropped (superseded, deleted).
    pub node_drops: u64,
    /// GETs whose answer was checked against a settled key, and how many of those got the value.
    pub checked_gets: u64,
    pub checked_values: u64,
    /// Failures tolerated only because links reorder (a probe can overtake data).
    pub reorder_excused: u64,
    /// Forwardings of datagrams of a lingering write (see [`Known::LingeringWrite`]) that
    /// outlived their own lap: nobody drops them.
    pub immortal: u64,
    /// Symptoms of known core bugs let pass, by [`Known`].
    pub known: [u64; Known::ALL.len()],
    /// Highest usage seen on any node.
    pub peak_requests: usize,
    pub peak_records: usize,
    pub peak_reassembly: u64,
    pub peak_backlog: u64,
}

impl Summary {
    /// Simulated loop periods.
    pub fn laps(&self) -> f64 {
        self.sim_time as f64 / self.period as f64
    }
}

enum Ev {
    Arrive { link: usize, d: Datagram },
    Reflect { d: Datagram },
    Timer { node: usize },
    Client,
    Deadline { req: usize },
    GiveUp { req: usize },
    Garbage,
}

struct Queued {
    at: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Queued {}

impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Queued {
    /// Reversed: the heap pops the earliest event, and of equal times the first scheduled.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

enum OpKind {
    Put(Vec<u8>),
    Get,
    Delete,
    Stats,
}

struct SimNode {
    core: Core,
    spec: NodeSpec,
    /// Theoretical arrival time of the send-rate bucket (GCRA).
    tat: u64,
    timer_at: Option<u64>,
    closed: bool,
    ever_closed: bool,
    first_probe_at: Option<u64>,
    buf: Vec<u8>,
    /// Writes taken, none of their fragments sent yet, in the core's order.
    queue: VecDeque<usize>,
    /// The write whose fragments are going out.
    sending: Option<usize>,
    /// DELETEs whose tombstone is queued.
    deletes: VecDeque<usize>,
    /// Writes answered DATA_LOSS whose rollback tombstone is queued.
    rollbacks: Vec<usize>,
    parked: Vec<usize>,
    /// The tombstone just sent, until a DELETE's answer or a rollback accounts for it.
    last_tombstone: Option<(u16, Ver)>,
    /// Newest version of each key this node has sent or received intact.
    seen: Vec<Option<Ver>>,
    /// Newest version of each key this node confirmed or deleted, and when: while it remembers
    /// it, its GETs never return anything older.
    took: Vec<Option<(Ver, u64)>>,
    gets_open: u32,
    /// GETs made so far, to tell whether a GET had company.
    gets_started: u64,
    corrupted_in: u64,
}

impl SimNode {
    fn may_send(&self, now: u64) -> bool {
        self.tat <= now + (self.spec.burst - 1) * self.spec.frame_ns
    }

    fn next_send(&self) -> u64 {
        self.tat - (self.spec.burst - 1) * self.spec.frame_ns
    }

    fn sent_one(&mut self, now: u64) {
        self.tat = self.tat.max(now) + self.spec.frame_ns;
    }

    fn see(&mut self, key: u16, ver: Ver) {
        let seen = &mut self.seen[key as usize];
        if seen.is_none_or(|s| ver > s) {
            *seen = Some(ver);
        }
    }

    /// The core's broken-loop timeout at its longest.
    fn lt(&self, period_max: u64) -> u64 {
        (3 * period_max).max(self.spec.loop_timeout)
    }
}

/// The simulation of one seed.
pub struct World {
    sc: Scenario,
    description: String,
    now: u64,
    clock: Rc<Cell<u64>>,
    seq: u64,
    queue: BinaryHeap<Queued>,
    nodes: Vec<SimNode>,
    links: Vec<Link>,
    reflector: Option<Reflector>,
    rng: Rng,
    garbage_rng: Rng,
    requests: Vec<Request>,
    writes: Vec<Write>,
    keys: Vec<KeyState>,
    p_max: u64,
    fifo: bool,
    out: Vec<(u64, Datagram)>,
    in_command: Option<usize>,
    /// Parked requests the core just replayed, while their answers are drained.
    replaying: Vec<usize>,
    open: usize,
    summary: Summary,
    /// `SIM_TRACE` set: print what happens to requests and frames.
    trace: bool,
    /// Fail on the symptoms of known bugs too.
    strict: bool,
}

impl World {
    /// A world for `sc`; `clock` follows simulated time (for messages after a panic).
    pub fn new(sc: Scenario, clock: Rc<Cell<u64>>, strict: bool) -> World {
        let mut rng = Rng::new(sc.seed);
        let description = sc.describe();
        let key_count = sc.workload.keys.len();
        let nodes = sc
            .nodes
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let config = CoreConfig {
                    id: spec.id,
                    max_datagram: spec.max_datagram,
                    loop_timeout: Duration::from_nanos(spec.loop_timeout),
                    destination: format!("sim-hop-{}", (i + 1) % sc.nodes.len().max(1)),
                    limits: spec.limits,
                };
                let now = now_of(&sc, spec, 0);
                SimNode {
                    core: Core::new(config, now),
                    spec: spec.clone(),
                    tat: 0,
                    timer_at: None,
                    closed: false,
                    ever_closed: false,
                    first_probe_at: None,
                    buf: vec![0; spec.max_datagram],
                    queue: VecDeque::new(),
                    sending: None,
                    deletes: VecDeque::new(),
                    rollbacks: Vec::new(),
                    parked: Vec::new(),
                    last_tombstone: None,
                    seen: vec![None; key_count],
                    took: vec![None; key_count],
                    gets_open: 0,
                    gets_started: 0,
                    corrupted_in: 0,
                }
            })
            .collect();
        let links = sc
            .links
            .iter()
            .map(|spec| Link::new(spec.clone(), rng.fork(), sc.corruption.clone()))
            .collect();
        let keys = (0..key_count)
            .map(|_| KeyState {
                settled: Some(Settled::Absent { since: 0 }),
                ..KeyState::default()
            })
            .collect();
        World {
            reflector: sc.reflector.clone().map(Reflector::new),
            p_max: sc.period_max(),
            fifo: sc.fifo(),
            summary: Summary {
                seed: sc.seed,
                description: description.clone(),
                period: sc.period(),
                ..Summary::default()
            },
            description,
            now: 0,
            clock,
            seq: 0,
            queue: BinaryHeap::new(),
            nodes,
            links,
            garbage_rng: rng.fork(),
            rng: rng.fork(),
            requests: Vec::new(),
            writes: Vec::new(),
            keys,
            out: Vec::new(),
            in_command: None,
            replaying: Vec::new(),
            open: 0,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            strict,
            sc,
        }
    }

    /// Runs the seed to the end; panics with the seed and the time on a broken invariant.
    pub fn run(mut self) -> Summary {
        for n in 0..self.nodes.len() {
            self.turn(n);
        }
        self.push(0, Ev::Client);
        if let Some(gap) = self.sc.garbage_gap {
            self.push(gap, Ev::Garbage);
        }
        let hard_end = self.sc.issue_for + 60_000 * MS;
        while let Some(q) = self.queue.pop() {
            if q.at >= self.sc.issue_for && self.open == 0 {
                break;
            }
            if q.at > hard_end {
                break;
            }
            self.now = q.at;
            self.clock.set(q.at);
            self.summary.events += 1;
            if self.summary.events > MAX_EVENTS {
                self.fail(format!("runaway: more than {MAX_EVENTS} events"));
            }
            match q.ev {
                Ev::Arrive { link, d } => {
                    self.links[link].delivered(d.bytes.len());
                    match self.sc.link_target(link) {
                        Some(n) => self.arrive(n, d),
                        None => self.reflect_in(d),
                    }
                }
                Ev::Reflect { d } => {
                    self.reflector
                        .as_mut()
                        .expect("a reflector")
                        .release(d.bytes.len());
                    self.send(1, d);
                }
                Ev::Timer { node } => {
                    if self.nodes[node].timer_at == Some(self.now) {
                        self.nodes[node].timer_at = None;
                        self.turn(node);
                    }
                }
                Ev::Client => self.client(),
                Ev::Deadline { req } => self.deadline(req),
                Ev::GiveUp { req } => self.give_up(req),
                Ev::Garbage => self.garbage(),
            }
        }
        self.finish()
    }

    // ----- context ---------------------------------------------------------------------------

    fn fail(&self, what: impl Display) -> ! {
        panic!(
            "sim {} at t={:.3} ms: {what}",
            self.description,
            self.now as f64 / MS as f64
        )
    }

    /// The symptom of a known bug: counted, or a failure in a strict run.
    fn known(&mut self, bug: Known, what: String) {
        if self.strict {
            self.fail(format!("{what} [known bug {bug:?}]"));
        }
        self.summary.known[bug as usize] += 1;
        self.trace(|| format!("known bug {bug:?}: {what}"));
    }

    /// Datagrams node `n` had no room to reassemble (for traces).
    fn reassembly_refused(&self, n: usize) -> u64 {
        let stats = self.nodes[n]
            .core
            .stats(self.now_of(n), IoFigures::default());
        stats
            .refused
            .iter()
            .find(|(what, _)| *what == "reassembly_full")
            .map_or(0, |(_, count)| *count)
    }

    fn trace(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>12.3} ms  {}", self.now as f64 / MS as f64, what());
        }
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn now_of(&self, n: usize) -> Now {
        now_of(&self.sc, &self.nodes[n].spec, self.now)
    }

    fn key_id(&self, key: &[u8]) -> Option<u16> {
        self.sc
            .workload
            .keys
            .iter()
            .position(|k| k == key)
            .map(|i| i as u16)
    }

    fn key_name(&self, key: u16) -> String {
        String::from_utf8_lossy(&self.sc.workload.keys[key as usize]).into_owned()
    }

    fn ms(t: u64) -> String {
        format!("{:.3} ms", t as f64 / MS as f64)
    }

    // ----- nodes -----------------------------------------------------------------------------

    /// Time-driven work of node `n`, as the driver's turn.
    fn turn(&mut self, n: usize) {
        let now = self.now_of(n);
        self.nodes[n].core.on_timer(now);
        self.after_input(n);
        self.transmit(n);
        self.schedule(n);
        self.check_usage(n);
    }

    /// A datagram reaches node `n`.
    fn arrive(&mut self, n: usize, d: Datagram) {
        let now = self.now_of(n);
        let refused_before = self.trace.then(|| self.reassembly_refused(n));
        let keep = self.nodes[n].core.on_datagram(&d.bytes, now);
        if refused_before.is_some_and(|before| self.reassembly_refused(n) > before) {
            self.trace(|| format!("node {n}: no room to reassemble {:?}", d.meta));
        }
        self.trace(|| {
            format!(
                "node {n} receives {:?}{} keep={keep}",
                d.meta,
                if d.corrupted { " (corrupted)" } else { "" }
            )
        });
        if d.corrupted {
            self.nodes[n].corrupted_in += 1;
            if keep {
                self.fail(format!(
                    "node {n} forwarded a corrupted datagram ({:?}, {} bytes): the checks let it \
                     through",
                    d.meta,
                    d.bytes.len()
                ));
            }
        } else {
            match d.meta {
                Meta::Data { key, write, index } => {
                    let w = write as usize;
                    let ver = self.writes[w].version.expect("sent data has a version");
                    self.nodes[n].see(key, ver);
                    if keep {
                        if self.writes[w].node == n {
                            self.writes[w].mark_returned(index);
                        }
                    } else {
                        self.writes[w].node_dropped += 1;
                        self.summary.node_drops += 1;
                    }
                }
                Meta::Tombstone { key, ver } => {
                    self.nodes[n].see(key, ver);
                    if keep && ver.origin == self.nodes[n].spec.id {
                        self.fail(format!(
                            "node {n} forwarded its own tombstone after a full lap"
                        ));
                    }
                }
                Meta::Probe { node } => {
                    if keep && node as usize == n {
                        self.fail(format!("node {n} forwarded its own probe after a full lap"));
                    }
                }
                Meta::Garbage => unreachable!("garbage is always marked corrupted"),
            }
        }
        self.after_input(n);
        if keep {
            self.summary.forwarded += 1;
            self.send(n, d);
        }
        self.transmit(n);
        self.schedule(n);
        self.check_usage(n);
    }

    /// After any call into node `n`: loop transitions, then its answers.
    fn after_input(&mut self, n: usize) {
        let closed = self.nodes[n].core.loop_closed();
        let node = &mut self.nodes[n];
        let was = node.closed;
        node.closed = closed;
        let mut replay = Vec::new();
        if closed && !node.ever_closed {
            // The core replays its parked writes when the loop first closes.
            node.ever_closed = true;
            replay = std::mem::take(&mut node.parked);
            self.trace(|| format!("node {n}: loop closed"));
        }
        if was && !closed {
            self.loop_broke(n);
        }
        // The core took the replayed requests in order; those it refused are answered now.
        for &id in &replay {
            if self.requests[id].state == State::Parked {
                self.accept(id);
            }
        }
        self.replaying = replay;
        while let Some((id, answer)) = self.nodes[n].core.poll_answer() {
            let id = id as usize;
            let immediate = self.in_command == Some(id) || self.replaying.contains(&id);
            self.on_answer(n, id, answer, immediate);
        }
        self.replaying.clear();
    }

    /// The core declared its loop broken: it dropped every write still to send.
    fn loop_broke(&mut self, n: usize) {
        self.trace(|| format!("node {n}: loop broken"));
        let node = &mut self.nodes[n];
        let mut dropped: Vec<usize> = node.queue.drain(..).collect();
        dropped.extend(node.sending.take());
        for w in dropped {
            self.writes[w].cleared = true;
            self.try_resolve_write(w);
        }
    }

    /// Sends node `n`'s new frames, as many as its rate allows now.
    fn transmit(&mut self, n: usize) {
        loop {
            let now = self.now_of(n);
            let node = &mut self.nodes[n];
            if !node.core.wants_transmit(now) || !node.may_send(self.now) {
                return;
            }
            let mut buf = std::mem::take(&mut node.buf);
            let Some(len) = node.core.poll_transmit(&mut buf, now) else {
                self.fail(format!(
                    "node {n}: wants_transmit said yes and poll_transmit gave nothing"
                ));
            };
            node.sent_one(self.now);
            let bytes = buf[..len].to_vec();
            self.nodes[n].buf = buf;
            self.emitted(n, bytes);
            self.after_input(n);
            self.claim_rollback(n);
        }
    }

    /// Arms node `n`'s timer for its next deadline (or its next chance to send).
    fn schedule(&mut self, n: usize) {
        let now = self.now_of(n);
        let node = &mut self.nodes[n];
        let deadline = node.core.next_deadline().as_nanos() as u64;
        let mut at = deadline.saturating_sub(node.spec.mono_offset);
        if node.core.wants_transmit(now) {
            at = at.min(node.next_send());
        }
        if at <= self.now {
            // The core's broken-loop check is strict: it fires just after its deadline.
            at = self.now + US;
        }
        if node.timer_at.is_none_or(|t| at < t || t < self.now) {
            node.timer_at = Some(at);
            self.push(at, Ev::Timer { node: n });
        }
    }

    /// Memory within the configured limits, after every step.
    fn check_usage(&mut self, n: usize) {
        let node = &self.nodes[n];
        let u: Usage = node.core.usage();
        let l = node.spec.limits;
        if u.requests > l.max_requests
            || u.write_backlog > l.max_write_backlog
            || u.reassembly > l.max_reassembly
            || u.records > l.max_records
            || u.probes > PROBES_MAX
            || u.answers != 0
        {
            self.fail(format!(
                "node {n} holds more than its limits allow: {u:?}, limits {l:?}"
            ));
        }
        let s = &mut self.summary;
        s.peak_requests = s.peak_requests.max(u.requests);
        s.peak_records = s.peak_records.max(u.records);
        s.peak_reassembly = s.peak_reassembly.max(u.reassembly);
        s.peak_backlog = s.peak_backlog.max(u.write_backlog);
    }

    // ----- frames a node sends ---------------------------------------------------------------

    /// Node `n` wrote a new frame: check it, learn what it is, put it on the wire.
    fn emitted(&mut self, n: usize, bytes: Vec<u8>) {
        let frame = match Frame::new_checked(&bytes[..]) {
            Ok(frame) => frame,
            Err(error) => self.fail(format!("node {n} sent an invalid frame ({error:?})")),
        };
        if bytes.len() > self.nodes[n].spec.max_datagram {
            self.fail(format!(
                "node {n} sent a {}-byte datagram, over its {} bytes",
                bytes.len(),
                self.nodes[n].spec.max_datagram
            ));
        }
        if frame.origin() != self.nodes[n].spec.id {
            self.fail(format!("node {n} sent a frame with another origin"));
        }
        let ver = Ver {
            hlc: frame.hlc(),
            origin: frame.origin(),
        };
        let key = match frame.kind() {
            Kind::Data(d) => self.key_id(d.key()),
            Kind::Tombstone(t) => self.key_id(t.key()),
            _ => None,
        };
        let knowing = key.is_some_and(|k| self.nodes[n].seen[k as usize] > Some(ver));
        let meta = match frame.kind() {
            Kind::Probe(_) => {
                let now = self.now;
                self.nodes[n].first_probe_at.get_or_insert(now);
                Meta::Probe { node: n as u16 }
            }
            Kind::Tombstone(t) => {
                let Some(key) = self.key_id(t.key()) else {
                    self.fail(format!("node {n} sent a tombstone of a key nobody deleted"));
                };
                if self.nodes[n].last_tombstone.is_some() {
                    self.fail(format!("node {n}: a tombstone went out unaccounted for"));
                }
                self.nodes[n].last_tombstone = Some((key, ver));
                self.nodes[n].see(key, ver);
                if !self.keys[key as usize].note(ver, Owner::Tombstone, self.now) && !knowing {
                    self.born_obsolete(key);
                }
                Meta::Tombstone { key, ver }
            }
            Kind::Data(d) => {
                let Some(key) = self.key_id(d.key()) else {
                    self.fail(format!("node {n} sent DATA of a key nobody wrote"));
                };
                let write = self.data_sent(n, key, ver, &d, knowing);
                Meta::Data {
                    key,
                    write: write as u32,
                    index: d.fragment_index(),
                }
            }
            Kind::Parity(_) => self.fail(format!("node {n} sent a PARITY frame (v1 never does)")),
        };
        self.summary.sent += 1;
        self.trace(|| format!("node {n} sends {meta:?} {ver:?}"));
        self.send(
            n,
            Datagram {
                bytes,
                meta,
                born: self.now,
                knowing,
                corrupted: false,
            },
        );
    }

    /// A DATA fragment node `n` sent: it must be the next fragment of the write being sent,
    /// or the first of the next write taken (writes go out whole, in the order taken).
    fn data_sent(
        &mut self,
        n: usize,
        key: u16,
        ver: Ver,
        d: &DataFrame<'_>,
        knowing: bool,
    ) -> usize {
        if d.fragment_index() == 0 {
            if let Some(w) = self.nodes[n].sending {
                self.fail(format!(
                    "node {n} started a value before sending all of write #{w}"
                ));
            }
            let Some(&w) = self.nodes[n].queue.front() else {
                self.fail(format!(
                    "node {n} sent a value of {} that no PUT it took wrote",
                    self.key_name(key)
                ));
            };
            let write = &self.writes[w];
            let first = wire::chunk(write.value.len(), 0, write.chunk_len);
            if write.key != key
                || write.value.len() as u64 != d.value_len()
                || d.payload() != &write.value[first]
            {
                self.fail(format!(
                    "node {n} sent a value that is not that of write #{w}, the next it took"
                ));
            }
            self.nodes[n].queue.pop_front();
            self.nodes[n].sending = Some(w);
            self.nodes[n].see(key, ver);
            if !self.keys[key as usize].note(ver, Owner::Write(w), self.now) && !knowing {
                self.born_obsolete(key);
            }
            let write = &mut self.writes[w];
            write.version = Some(ver);
            if let Some(seen) = write.seen_at_done.take() {
                if !write.superseded_locally && seen.is_none_or(|s| s <= ver) {
                    self.fail(format!(
                        "write #{w} was answered OK before any of its datagrams went out, and \
                         its node had seen no newer version of {} (newest {seen:?}, this \
                         {ver:?})",
                        self.key_name(key)
                    ));
                }
            }
        }
        let Some(w) = self.nodes[n].sending else {
            self.fail(format!("node {n} sent a fragment of no value being sent"));
        };
        let write = &self.writes[w];
        let index = d.fragment_index();
        let range = wire::chunk(write.value.len(), index, write.chunk_len);
        if write.version != Some(ver)
            || index != write.emitted
            || d.fragment_count() != write.count
            || d.chunk_len() != write.chunk_len
            || d.payload() != &write.value[range]
        {
            self.fail(format!(
                "node {n} sent fragment {index}/{} of {} that is not fragment {} of write #{w}",
                d.fragment_count(),
                self.key_name(key),
                write.emitted
            ));
        }
        let write = &mut self.writes[w];
        write.emitted += 1;
        if write.emitted == write.count {
            write.sent_at = Some(self.now);
            self.nodes[n].sending = None;
            let req = write.req;
            if self.requests[req].open() {
                let at = self.now
                    + PROBE_SPACING_MAX
                    + self.nodes[n].spec.frame_ns
                    + self.nodes[n].lt(self.p_max)
                    + SLACK;
                self.set_deadline(req, at, Stage::Confirming);
            }
            self.try_resolve_write(w);
        }
        w
    }

    /// A tombstone went out and no DELETE's answer came with it: it is the rollback of a write
    /// answered DATA_LOSS.
    fn claim_rollback(&mut self, n: usize) {
        let Some((key, ver)) = self.nodes[n].last_tombstone.take() else {
            return;
        };
        let writes = &self.writes;
        let Some(pos) = self.nodes[n]
            .rollbacks
            .iter()
            .position(|&w| writes[w].key == key)
        else {
            self.fail(format!(
                "node {n} sent a tombstone of {} that no DELETE or rolled-back PUT accounts for",
                self.key_name(key)
            ));
        };
        let w = self.nodes[n].rollbacks.remove(pos);
        if self.writes[w].version.is_none_or(|v| v >= ver) {
            self.fail(format!(
                "the rollback tombstone of write #{w} is not newer than the write"
            ));
        }
        self.writes[w].awaiting_rollback = false;
        self.took(n, key, ver);
        self.keys[key as usize].dead.add(self.now, ver);
        self.try_resolve_write(w);
    }

    // ----- the network -----------------------------------------------------------------------

    /// Puts `d` on link `link` (out of node `link`, or out of the reflector for link 1).
    fn send(&mut self, link: usize, d: Datagram) {
        if let (Meta::Data { key, write, .. }, false) = (d.meta, d.corrupted) {
            self.check_stale(key, write as usize, d.born, d.knowing);
        }
        let meta = d.meta;
        let mut out = std::mem::take(&mut self.out);
        match self.links[link].send(self.now, d, &mut out) {
            Ok(()) => {
                if out.first().is_some_and(|(_, d)| d.corrupted) {
                    self.summary.corrupted += 1;
                    self.destroyed(meta);
                }
                for (at, d) in out.drain(..) {
                    self.push(at, Ev::Arrive { link, d });
                }
            }
            Err(_) => self.destroyed(meta),
        }
        self.out = out;
    }

    fn reflect_in(&mut self, d: Datagram) {
        let reflector = self.reflector.as_mut().expect("a reflector");
        if reflector.take(d.bytes.len()) {
            let at = self.now + reflector.spec.delay;
            self.push(at, Ev::Reflect { d });
        } else if !d.corrupted {
            self.destroyed(d.meta);
        }
    }

    fn destroyed(&mut self, meta: Meta) {
        self.summary.destroyed += 1;
        if let Meta::Data { write, .. } = meta {
            self.writes[write as usize].destroyed += 1;
        }
    }

    /// No datagram of a deleted or overwritten version after one lap.
    fn check_stale(&mut self, key: u16, write: usize, born: u64, knowing: bool) {
        let ver = self.writes[write].version.expect("sent data has a version");
        let memory = self.memory();
        let Some((due, floor, cause)) = self.keys[key as usize]
            .dead
            .deadline(ver, born, knowing, self.p_max, memory)
        else {
            return;
        };
        if self.now > due + SLACK {
            if knowing && self.now > born + self.p_max + SLACK {
                // Past its own lap too: nobody drops it any more, it circulates for ever.
                self.summary.immortal += 1;
                self.trace(|| format!("immortal: write #{write} sent at {}", Self::ms(born)));
            }
            if self.writes[write].lingering {
                return;
            }
            let w = &self.writes[write];
            let answer = self.requests[w.req].answer;
            let what = format!(
                "a DATA datagram of {} version {ver:?} (write #{write} by node {}, answered \
                 {answer:?}, sent at {}{}) is in the network {} after version {floor:?} made it \
                 obsolete (one lap is at most {})",
                self.key_name(key),
                w.node,
                Self::ms(born),
                if knowing {
                    " by a node that had seen a newer version"
                } else {
                    ""
                },
                Self::ms(self.now - cause),
                Self::ms(self.p_max)
            );
            if knowing {
                // Let pass, once per write; what it may revive is no longer checked.
                self.known(Known::LingeringWrite, what);
                self.writes[write].lingering = true;
                let ks = &mut self.keys[key as usize];
                ks.muddled = true;
                ks.settled = None;
            } else {
                self.fail(what);
            }
        }
    }

    /// A node that had not heard of the newest version of `key` sent an older one. The node
    /// that made the newest drops it within a lap if it still remembers the newest then.
    fn born_obsolete(&mut self, key: u16) {
        let ks = &self.keys[key as usize];
        let gone_by = self.now + self.p_max + SLACK;
        let remembered = match ks.newest {
            Some((_, Owner::Write(w))) => {
                let write = &self.writes[w];
                if write.confirmed {
                    gone_by <= write.confirmed_at + 2 * self.memory()
                } else {
                    // Still waiting to be confirmed: its record is kept.
                    self.requests[write.req].answer.is_none()
                }
            }
            Some((_, Owner::Tombstone)) => gone_by <= ks.newest_at + self.memory(),
            None => unreachable!("older than the newest"),
        };
        let ks = &mut self.keys[key as usize];
        ks.settled = None;
        if remembered {
            ks.muddled_until = ks.muddled_until.max(gone_by);
        } else {
            ks.muddled = true;
        }
        self.trace(|| {
            format!(
                "{}: an older version went out (remembered: {remembered})",
                self.key_name(key)
            )
        });
    }

    /// How long after a write or deletion every node that must drop the older versions still
    /// remembers it, at the least: records last the loop timeout at least, from about the time
    /// the write was confirmed or the tombstone sent; half of it leaves room for the tombstone's
    /// wait in its queue.
    fn memory(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.spec.loop_timeout)
            .min()
            .unwrap_or(0)
            / 2
    }

    fn garbage(&mut self) {
        let n = self.garbage_rng.below(self.nodes.len() as u64) as usize;
        let bytes = net::garbage(&mut self.garbage_rng);
        self.arrive(
            n,
            Datagram {
                bytes,
                meta: Meta::Garbage,
                born: self.now,
                knowing: false,
                corrupted: true,
            },
        );
        if let Some(gap) = self.sc.garbage_gap {
            if self.now < self.sc.issue_for {
                let at = self.now + 1 + self.garbage_rng.below(2 * gap);
                self.push(at, Ev::Garbage);
            }
        }
    }

    // ----- clients ---------------------------------------------------------------------------

    fn client(&mut self) {
        if self.now >= self.sc.issue_for {
            return;
        }
        if self.rng.chance(self.sc.workload.burst_chance) {
            self.burst();
        } else {
            let n = self.rng.below(self.nodes.len() as u64) as usize;
            let key = self.pick_key();
            let kind = match self.rng.weighted(&[
                (self.sc.workload.weights[0], 0),
                (self.sc.workload.weights[1], 1),
                (self.sc.workload.weights[2], 2),
                (self.sc.workload.weights[3], 3),
            ]) {
                0 => OpKind::Put(self.value(n)),
                1 => OpKind::Get,
                2 => OpKind::Delete,
                _ => OpKind::Stats,
            };
            self.issue(n, kind, key);
        }
        let gap = 1 + self.rng.below(2 * self.sc.workload.gap_mean);
        self.push(self.now + gap, Ev::Client);
    }

    /// Concurrent writers of one key, or a crowd of GETs on one node.
    fn burst(&mut self) {
        if self.rng.chance(0.5) {
            let key = self.pick_key();
            for _ in 0..self.rng.range(2, 6) {
                let n = self.rng.below(self.nodes.len() as u64) as usize;
                let kind = if self.rng.chance(0.8) {
                    OpKind::Put(self.value(n))
                } else {
                    OpKind::Delete
                };
                self.issue(n, kind, key);
            }
        } else {
            let n = self.rng.below(self.nodes.len() as u64) as usize;
            for _ in 0..self.rng.range(2, 10) {
                let key = self.pick_key();
                self.issue(n, OpKind::Get, key);
            }
        }
    }

    fn pick_key(&mut self) -> u16 {
        let count = self.sc.workload.keys.len() as u64;
        let hot = if self.rng.chance(0.5) {
            count.min(2)
        } else {
            count
        };
        self.rng.below(hot) as u16
    }

    /// A value for a PUT on node `n`: sizes from empty to the largest allowed; from 8 bytes on
    /// it starts with the write's number, so that no two values are alike.
    fn value(&mut self, n: usize) -> Vec<u8> {
        let max = self
            .sc
            .workload
            .value_max
            .min(self.nodes[n].spec.limits.max_value_size as usize);
        let len = match self.rng.below(100) {
            0..2 => 0,
            2..12 => self.rng.range(1, 7) as usize,
            12..52 => self.rng.range(8, 200) as usize,
            52..87 => self.rng.range(200, 2_000) as usize,
            87..97 => self.rng.range(2_000, max.max(2_000) as u64) as usize,
            _ => max,
        }
        .min(max);
        let mut value = vec![0; len];
        self.rng.fill(&mut value);
        if len >= 8 {
            value[..8].copy_from_slice(&(self.writes.len() as u64).to_be_bytes());
        }
        value
    }

    /// A client sends a request to node `n`.
    fn issue(&mut self, n: usize, kind: OpKind, key: u16) {
        let id = self.requests.len();
        let key_bytes = self.sc.workload.keys[key as usize].clone();
        let (op, command) = match kind {
            OpKind::Put(value) => {
                let w = self.writes.len();
                let chunk_len =
                    wire::max_chunk_len(self.nodes[n].spec.max_datagram, key_bytes.len());
                let chunk_len = u16::try_from(chunk_len).unwrap_or(u16::MAX);
                let count = wire::fragment_count(value.len() as u64, chunk_len) as u32;
                self.writes.push(Write {
                    req: id,
                    node: n,
                    key,
                    value: value.clone(),
                    chunk_len,
                    count,
                    accepted_at: None,
                    version: None,
                    emitted: 0,
                    sent_at: None,
                    cleared: false,
                    returned: vec![0; (count as usize).div_ceil(64)],
                    returned_count: 0,
                    confirmed: false,
                    confirmed_at: 0,
                    superseded_locally: false,
                    lingering: false,
                    seen_at_done: None,
                    awaiting_rollback: false,
                    resolved: false,
                    destroyed: 0,
                    node_dropped: 0,
                });
                self.keys[key as usize].writes.push(w);
                let command = Command::Put {
                    id: id as u64,
                    key: key_bytes,
                    value,
                };
                (Op::Put(w), command)
            }
            OpKind::Get => (
                Op::Get,
                Command::Get {
                    id: id as u64,
                    key: key_bytes,
                },
            ),
            OpKind::Delete => (
                Op::Delete,
                Command::Delete {
                    id: id as u64,
                    key: key_bytes,
                },
            ),
            OpKind::Stats => (Op::Stats, Command::Stats { id: id as u64 }),
        };
        if matches!(op, Op::Put(_) | Op::Delete) {
            let ks = &mut self.keys[key as usize];
            ks.epoch += 1;
            ks.settled = None;
            ks.unresolved += 1;
        }
        let node = &mut self.nodes[n];
        let crowd = (node.gets_open, node.gets_started);
        let expect = if op == Op::Get {
            node.gets_open += 1;
            node.gets_started += 1;
            self.expectation(n, key)
        } else {
            None
        };
        self.requests.push(Request {
            node: n,
            key,
            op,
            issued: self.now,
            state: State::Accepted,
            answer: None,
            immediate: false,
            cancelled: false,
            deadline: None,
            epoch: self.keys[key as usize].epoch,
            expect,
            crowd,
        });
        self.open += 1;
        self.summary.requests += 1;
        self.trace(|| {
            let what = match op {
                Op::Put(w) => format!("PUT #{w} ({} bytes)", self.writes[w].value.len()),
                other => format!("{other:?}"),
            };
            format!("#{id}: {what} of {} on node {n}", self.key_name(key))
        });

        let now = self.now_of(n);
        self.in_command = Some(id);
        self.nodes[n].core.on_command(command, now);
        self.after_input(n);
        self.in_command = None;
        if self.requests[id].answer.is_none() {
            if op == Op::Stats {
                self.fail("STATS not answered by the call");
            }
            if op == Op::Get || self.nodes[n].core.loop_closed() {
                self.accept(id);
            } else {
                self.park(id);
            }
        }
        self.transmit(n);
        self.schedule(n);
        self.check_usage(n);

        if self.requests[id].open() && self.rng.chance(self.sc.workload.impatient) {
            let lt = self.nodes[n].lt(self.p_max);
            let at = self.now + 1 + self.rng.below(lt + lt / 2);
            self.push(at, Ev::GiveUp { req: id });
        }
    }

    /// What a GET of `key` on node `n` made now must answer, if the key is settled.
    fn expectation(&self, n: usize, key: u16) -> Option<Settled> {
        let ks = &self.keys[key as usize];
        match ks.settled? {
            s @ Settled::Value { origin, since, .. } => {
                let since = since.max(ks.muddled_until);
                // On FIFO links every older datagram is gone once the newest value has been
                // round (they were ahead of it); on other links they may lag by up to a lap.
                let ready = self.now >= since
                    && (self.fifo || origin == n || self.now >= since + self.p_max + SLACK);
                ready.then_some(s)
            }
            s @ Settled::Absent { since } => {
                let ready = ks.newest.is_none()
                    || (self.now >= since + self.p_max + SLACK && self.now >= ks.muddled_until);
                ready.then_some(s)
            }
        }
    }

    /// The core took request `id` (a GET is waiting, a write queued, a tombstone queued).
    fn accept(&mut self, id: usize) {
        let n = self.requests[id].node;
        let key = self.requests[id].key;
        self.requests[id].state = State::Accepted;
        let frame_ns = self.nodes[n].spec.frame_ns;
        let lt = self.nodes[n].lt(self.p_max);
        match self.requests[id].op {
            Op::Get => {
                let at = self.now + PROBE_SPACING_MAX + frame_ns + lt + SLACK;
                self.set_deadline(id, at, Stage::Get);
            }
            Op::Put(w) => {
                self.superseded_locally(n, key, w);
                self.writes[w].accepted_at = Some(self.now);
                let node = &self.nodes[n];
                let ahead: u64 = node
                    .queue
                    .iter()
                    .chain(node.sending.iter())
                    .map(|&q| u64::from(self.writes[q].count - self.writes[q].emitted))
                    .sum();
                let frames = ahead
                    + u64::from(self.writes[w].count)
                    + 2 * node.spec.limits.max_requests as u64
                    + 16;
                self.nodes[n].queue.push_back(w);
                let at = self.now + 2 * frames * frame_ns + 20 * MS;
                self.set_deadline(id, at, Stage::Sending);
            }
            Op::Delete => {
                self.superseded_locally(n, key, usize::MAX);
                let node = &mut self.nodes[n];
                let ahead = (node.deletes.len() + node.rollbacks.len()) as u64;
                node.deletes.push_back(id);
                let at = self.now + 2 * (ahead + 3) * frame_ns + MS;
                self.set_deadline(id, at, Stage::Tombstone);
            }
            Op::Stats => unreachable!("answered by the call"),
        }
    }

    /// A later PUT or DELETE of `key` was taken by node `n`: it replaces the writes of the key
    /// the node still confirms (they are answered OK, as written then overwritten).
    fn superseded_locally(&mut self, n: usize, key: u16, except: usize) {
        for &w in &self.keys[key as usize].writes {
            let write = &self.writes[w];
            if w != except
                && write.node == n
                && write.accepted_at.is_some()
                && self.requests[write.req].answer.is_none()
            {
                self.writes[w].superseded_locally = true;
            }
        }
    }

    fn park(&mut self, id: usize) {
        let n = self.requests[id].node;
        self.requests[id].state = State::Parked;
        self.nodes[n].parked.push(id);
        let first = self.nodes[n].first_probe_at.unwrap_or(self.now);
        let at = (first + self.nodes[n].spec.loop_timeout).max(self.now) + SLACK;
        self.set_deadline(id, at, Stage::Parked);
    }

    fn set_deadline(&mut self, id: usize, at: u64, stage: Stage) {
        self.requests[id].deadline = Some((at, stage));
        self.push(at, Ev::Deadline { req: id });
    }

    /// Every request is answered by its deadline.
    fn deadline(&mut self, id: usize) {
        let r = &self.requests[id];
        let Some((at, stage)) = r.deadline else {
            return;
        };
        if at != self.now || !r.open() {
            return;
        }
        let extra = match r.op {
            Op::Put(w) => {
                let w = &self.writes[w];
                format!(
                    "; {} of {} fragments sent (all at {:?}), {} back, {} destroyed",
                    w.emitted,
                    w.count,
                    w.sent_at.map(Self::ms),
                    w.returned_count,
                    w.destroyed
                )
            }
            _ => String::new(),
        };
        self.fail(format!(
            "request #{id} ({:?} of {} on node {}, issued at {}) not answered by its deadline \
             ({stage:?}, {}){extra}; node loop closed: {}",
            r.op,
            self.key_name(r.key),
            r.node,
            Self::ms(r.issued),
            Self::ms(at),
            self.nodes[r.node].core.loop_closed()
        ));
    }

    /// The client's deadline passed: it cancels, as gRPC does.
    fn give_up(&mut self, id: usize) {
        let r = &self.requests[id];
        if r.answer.is_some() || r.cancelled || r.state == State::Withdrawn {
            return;
        }
        let n = r.node;
        self.requests[id].cancelled = true;
        self.summary.cancelled += 1;
        let now = self.now_of(n);
        self.nodes[n]
            .core
            .on_command(Command::Cancel { id: id as u64 }, now);
        match (self.requests[id].state, self.requests[id].op) {
            (State::Parked, op) => {
                self.requests[id].state = State::Withdrawn;
                self.nodes[n].parked.retain(|&p| p != id);
                self.open -= 1;
                match op {
                    Op::Put(w) => self.try_resolve_write(w),
                    _ => self.resolve_delete(self.requests[id].key),
                }
            }
            (_, Op::Get) => {
                self.open -= 1;
                self.nodes[n].gets_open -= 1;
            }
            _ => {}
        }
        self.after_input(n);
        self.transmit(n);
        self.schedule(n);
        self.check_usage(n);
    }

    // ----- answers ---------------------------------------------------------------------------

    fn on_answer(&mut self, n: usize, id: usize, answer: Answer, immediate: bool) {
        let Some(r) = self.requests.get(id) else {
            self.fail(format!(
                "node {n} answered request #{id}, which nobody made"
            ));
        };
        if r.node != n {
            self.fail(format!(
                "node {n} answered request #{id}, made to node {}",
                r.node
            ));
        }
        if r.state == State::Answered {
            self.fail(format!("request #{id} answered twice"));
        }
        if r.state == State::Withdrawn || (r.cancelled && r.op == Op::Get) {
            self.fail(format!(
                "request #{id} ({:?}) answered after its client cancelled it",
                r.op
            ));
        }
        self.trace(|| match &answer {
            Answer::Value(v) => format!("node {n} answers #{id}: {} bytes", v.len()),
            Answer::Stats(_) => format!("node {n} answers #{id}: stats"),
            other => format!("node {n} answers #{id}: {other:?}"),
        });
        let outcome = match &answer {
            Answer::Done => Outcome::Done,
            Answer::Value(_) => Outcome::Value,
            Answer::Stats(_) => Outcome::Stats,
            Answer::Failed(f) => Outcome::Failed(f.kind),
        };
        let was_parked = r.state == State::Parked;
        if was_parked {
            self.nodes[n].parked.retain(|&p| p != id);
        }
        let r = &mut self.requests[id];
        r.state = State::Answered;
        r.answer = Some((self.now, outcome));
        r.immediate = immediate;
        let op = r.op;
        self.open -= 1;
        let s = &mut self.summary;
        match outcome {
            Outcome::Done => s.done += 1,
            Outcome::Value => s.values += 1,
            Outcome::Stats => {}
            Outcome::Failed(FailureKind::NotFound) => s.not_found += 1,
            Outcome::Failed(FailureKind::DataLoss) => s.data_loss += 1,
            Outcome::Failed(FailureKind::Unavailable) => s.unavailable += 1,
            Outcome::Failed(FailureKind::ResourceExhausted) => s.exhausted += 1,
            Outcome::Failed(FailureKind::InvalidArgument) => {}
        }
        if outcome == Outcome::Failed(FailureKind::Unavailable)
            && self.sc.profile == Profile::FaultFree
        {
            self.fail(format!(
                "request #{id} ({op:?}) answered UNAVAILABLE on a network with no fault"
            ));
        }
        match op {
            Op::Stats => {
                if !matches!(answer, Answer::Stats(_)) || !immediate {
                    self.fail(format!("STATS #{id} answered {outcome:?}"));
                }
            }
            Op::Get => {
                self.nodes[n].gets_open -= 1;
                self.answered_get(id, &answer, immediate);
            }
            Op::Put(w) => self.answered_put(id, w, &answer, immediate),
            Op::Delete => self.answered_delete(id, &answer, immediate, was_parked),
        }
    }

    fn answered_put(&mut self, id: usize, w: usize, answer: &Answer, immediate: bool) {
        let n = self.writes[w].node;
        let key = self.writes[w].key;
        match answer {
            Answer::Done => {
                let write = &self.writes[w];
                let full = write.fully_sent() && write.returned_count == write.count;
                let (version, local) = (write.version, write.superseded_locally);
                let local = local || self.superseding(w);
                let (returned, count) = (write.returned_count, write.count);
                if full {
                    // Confirmed: every datagram came back. Older versions must be gone a lap
                    // later (the node drops them as they pass, from the moment it took it).
                    self.writes[w].confirmed = true;
                    self.writes[w].confirmed_at = self.now;
                    self.took(n, key, version.expect("sent"));
                    let ver = version.expect("sent");
                    self.keys[key as usize].dead.add(self.now, ver);
                } else if !local {
                    // Written, then overwritten: only if the node saw a newer version.
                    let seen = self.nodes[n].seen[key as usize];
                    match version {
                        Some(ver) if seen.is_none_or(|s| s <= ver) => self.fail(format!(
                            "PUT #{id} answered OK with {returned} of {count} datagrams back and \
                             no newer version of {} seen by node {n}",
                            self.key_name(key)
                        )),
                        Some(_) => {}
                        None => self.writes[w].seen_at_done = Some(seen),
                    }
                }
            }
            Answer::Failed(f) => match f.kind {
                FailureKind::DataLoss => {
                    let write = &self.writes[w];
                    if immediate || !write.fully_sent() {
                        self.fail(format!(
                            "PUT #{id} answered DATA_LOSS before all its datagrams were sent"
                        ));
                    }
                    if write.destroyed + write.node_dropped == 0 {
                        if self.fifo {
                            self.fail(format!(
                                "PUT #{id} answered DATA_LOSS ({}) though none of its {} \
                                 datagrams was destroyed or dropped and the links keep order \
                                 ({} came back)",
                                f.message, write.count, write.returned_count
                            ));
                        }
                        self.summary.reorder_excused += 1;
                    }
                    self.writes[w].awaiting_rollback = true;
                    self.nodes[n].rollbacks.push(w);
                }
                FailureKind::Unavailable => self.clear_write(w),
                FailureKind::ResourceExhausted if immediate => self.clear_write(w),
                kind => self.fail(format!("PUT #{id} answered {kind:?}: {}", f.message)),
            },
            other => self.fail(format!("PUT #{id} answered {other:?}")),
        }
        self.try_resolve_write(w);
    }

    /// Node `n` confirmed or deleted version `ver` of `key` now.
    fn took(&mut self, n: usize, key: u16, ver: Ver) {
        let took = &mut self.nodes[n].took[key as usize];
        if took.is_none_or(|(v, _)| ver > v) {
            *took = Some((ver, self.now));
        }
    }

    /// Whether a later PUT or DELETE of write `w`'s key on its node is being taken right now
    /// (by the call being made, or by the replay of parked requests).
    fn superseding(&self, w: usize) -> bool {
        let write = &self.writes[w];
        self.in_command
            .iter()
            .chain(self.replaying.iter())
            .any(|&id| {
                let r = &self.requests[id];
                id > write.req
                    && r.node == write.node
                    && r.key == write.key
                    && matches!(r.op, Op::Put(_) | Op::Delete)
            })
    }

    /// Write `w` will send nothing more.
    fn clear_write(&mut self, w: usize) {
        let n = self.writes[w].node;
        self.nodes[n].queue.retain(|&q| q != w);
        if self.nodes[n].sending == Some(w) {
            self.nodes[n].sending = None;
        }
        self.writes[w].cleared = true;
    }

    fn try_resolve_write(&mut self, w: usize) {
        let write = &self.writes[w];
        let answered = matches!(
            self.requests[write.req].state,
            State::Answered | State::Withdrawn
        );
        let done_sending = write.accepted_at.is_none() || write.fully_sent() || write.cleared;
        if write.resolved || !answered || !done_sending || write.awaiting_rollback {
            return;
        }
        self.writes[w].resolved = true;
        let key = self.writes[w].key;
        self.keys[key as usize].unresolved -= 1;
        self.maybe_settle(key);
    }

    fn resolve_delete(&mut self, key: u16) {
        self.keys[key as usize].unresolved -= 1;
        self.maybe_settle(key);
    }

    /// When nothing is happening to a key any more, what a GET must answer.
    fn maybe_settle(&mut self, key: u16) {
        let ks = &mut self.keys[key as usize];
        if ks.unresolved > 0 || ks.settled.is_some() || ks.muddled {
            return;
        }
        ks.settled = match ks.newest {
            None | Some((_, Owner::Tombstone)) => Some(Settled::Absent { since: self.now }),
            Some((_, Owner::Write(w))) if self.writes[w].confirmed => Some(Settled::Value {
                write: w,
                origin: self.writes[w].node,
                since: self.now,
            }),
            Some(_) => None,
        };
    }

    fn answered_delete(&mut self, id: usize, answer: &Answer, immediate: bool, parked: bool) {
        let n = self.requests[id].node;
        let key = self.requests[id].key;
        match answer {
            Answer::Done => {
                let Some((sent, ver)) = self.nodes[n].last_tombstone.take() else {
                    self.fail(format!(
                        "DELETE #{id} answered before its tombstone was sent"
                    ));
                };
                if sent != key || self.nodes[n].deletes.pop_front() != Some(id) {
                    self.fail(format!("DELETE #{id} answered for another tombstone"));
                }
                self.took(n, key, ver);
                self.keys[key as usize].dead.add(self.now, ver);
            }
            Answer::Failed(f)
                if (immediate || parked)
                    && matches!(
                        f.kind,
                        FailureKind::Unavailable | FailureKind::ResourceExhausted
                    ) =>
            {
                self.nodes[n].deletes.retain(|&d| d != id);
            }
            other => self.fail(format!("DELETE #{id} answered {other:?}")),
        }
        self.resolve_delete(key);
    }

    fn answered_get(&mut self, id: usize, answer: &Answer, immediate: bool) {
        let r = &self.requests[id];
        let (n, key) = (r.node, r.key);
        let name = self.key_name(key);
        // Never a wrong value: whatever comes back was written, whole, by one PUT of the key.
        let mut got = None;
        match answer {
            Answer::Value(v) => {
                // Values under 8 bytes may repeat: of the writes of that value, the newest.
                let found = self.keys[key as usize]
                    .writes
                    .iter()
                    .copied()
                    .filter(|&w| self.writes[w].value == *v && self.writes[w].fully_sent())
                    .max_by_key(|&w| self.writes[w].version);
                match found {
                    Some(w) => got = Some(w),
                    None => self.fail(format!(
                        "GET #{id} of {name} on node {n} returned {} bytes that no PUT of the \
                         key sent whole (corrupted, mixed or invented)",
                        v.len()
                    )),
                }
            }
            Answer::Failed(f) => match f.kind {
                FailureKind::NotFound
                | FailureKind::Unavailable
                | FailureKind::ResourceExhausted => {}
                FailureKind::DataLoss if !immediate => {}
                kind => self.fail(format!("GET #{id} answered {kind:?}: {}", f.message)),
            },
            other => self.fail(format!("GET #{id} answered {other:?}")),
        }
        // Never older than what its node confirmed or deleted, while the node remembers it.
        if let (Some(g), Some((took, at))) = (got, self.nodes[n].took[key as usize]) {
            let version = self.writes[g].version.expect("sent whole");
            let issued = self.requests[id].issued;
            if version < took && issued >= at && self.now <= at + self.memory() {
                self.fail(format!(
                    "GET #{id} of {name} on node {n} returned write #{g} (version {version:?}), \
                     older than version {took:?} that this node confirmed or deleted at {}",
                    Self::ms(at)
                ));
            }
        }
        // What it must be when nothing happened to the key since before the GET.
        let r = &self.requests[id];
        let Some(expect) = r.expect else {
            return;
        };
        if self.keys[key as usize].epoch != r.epoch {
            return;
        }
        self.summary.checked_gets += 1;
        let kind = match answer {
            Answer::Failed(f) => Some((f.kind, f.message.clone())),
            _ => None,
        };
        match expect {
            Settled::Value { write, since, .. } => {
                let w = &self.writes[write];
                match (got, kind) {
                    (Some(g), _) if g == write || self.writes[g].value == w.value => {
                        self.summary.checked_values += 1;
                    }
                    (Some(g), _) => self.fail(format!(
                        "GET #{id} of {name} on node {n} returned write #{g} (version {:?}, by \
                         node {}) where write #{write} (version {:?}, by node {}, settled at {}) \
                         is the newest and nothing else happened to the key",
                        self.writes[g].version,
                        self.writes[g].node,
                        w.version,
                        w.node,
                        Self::ms(since)
                    )),
                    (None, Some((FailureKind::Unavailable, _))) => {}
                    (None, Some((FailureKind::ResourceExhausted, message))) => {
                        let node = &self.nodes[n];
                        let too_large = w.value.len() as u64 > node.spec.limits.max_value_size;
                        let (open, started) = self.requests[id].crowd;
                        let crowded = open > 0 || node.gets_started > started + 1;
                        if !immediate && !too_large && !crowded {
                            self.fail(format!(
                                "GET #{id} of {name} on node {n}, alone on its node, answered \
                                 RESOURCE_EXHAUSTED for write #{write} of {} bytes (limits \
                                 {:?}): {message}",
                                w.value.len(),
                                node.spec.limits
                            ));
                        }
                    }
                    (None, Some((kind, message))) => {
                        if w.destroyed > 0 {
                            return;
                        }
                        if immediate && kind == FailureKind::NotFound {
                            let what = format!(
                                "GET #{id} of {name} on node {n} answered NOT_FOUND at once \
                                 ({message}) where write #{write} (version {:?}, by node {}) \
                                 is the newest confirmed value, settled at {}",
                                w.version,
                                w.node,
                                Self::ms(since)
                            );
                            self.known(Known::DeletedShortcut, what);
                            return;
                        }
                        if !self.fifo {
                            self.summary.reorder_excused += 1;
                            return;
                        }
                        let (open, started) = self.requests[id].crowd;
                        let crowded = open > 0 || self.nodes[n].gets_started > started + 1;
                        if kind == FailureKind::DataLoss && crowded {
                            let what = format!(
                                "GET #{id} of {name} on node {n}, with other GETs on its node, \
                                 answered DATA_LOSS ({message}) where write #{write} ({} \
                                 fragments, none destroyed) is the newest confirmed value",
                                w.count
                            );
                            self.known(Known::NoRoomAsLoss, what);
                            return;
                        }
                        self.fail(format!(
                            "GET #{id} of {name} on node {n} answered {kind:?} ({message}) \
                             where write #{write} (version {:?}, by node {}, {} fragments, none \
                             destroyed, {} dropped by nodes) is the newest confirmed value, \
                             settled at {}",
                            w.version,
                            w.node,
                            w.count,
                            w.node_dropped,
                            Self::ms(since)
                        ));
                    }
                    (None, None) => unreachable!("a GET answer is a value or a failure"),
                }
            }
            Settled::Absent { since } => match (got, kind) {
                (None, Some((FailureKind::NotFound | FailureKind::Unavailable, _))) => {}
                (None, Some((FailureKind::ResourceExhausted, _))) if immediate => {}
                (got, kind) => self.fail(format!(
                    "GET #{id} of {name} on node {n} answered {:?} where the key is deleted \
                     (or never written) and nothing else happened to it since {}",
                    got.map(|g| format!("write #{g}, version {:?}", self.writes[g].version))
                        .or(kind.map(|(k, m)| format!("{k:?}: {m}"))),
                    Self::ms(since)
                )),
            },
        }
    }

    // ----- the end ---------------------------------------------------------------------------

    fn finish(mut self) -> Summary {
        if let Some(id) = (0..self.requests.len()).find(|&id| self.requests[id].open()) {
            let r = &self.requests[id];
            self.fail(format!(
                "request #{id} ({:?} on node {}, issued at {}) was never answered",
                r.op,
                r.node,
                Self::ms(r.issued)
            ));
        }
        // Every corrupted datagram a node received was counted under a wire error.
        const WIRE_ERRORS: [DropReason; 6] = [
            DropReason::Truncated,
            DropReason::BadMagic,
            DropReason::UnsupportedVersion,
            DropReason::UnknownType,
            DropReason::BadChecksum,
            DropReason::Malformed,
        ];
        for (n, node) in self.nodes.iter().enumerate() {
            let counted: u64 = WIRE_ERRORS.iter().map(|&r| node.core.dropped(r)).sum();
            if counted != node.corrupted_in {
                self.fail(format!(
                    "node {n} received {} corrupted datagrams and counted {counted} as invalid",
                    node.corrupted_in
                ));
            }
        }
        self.summary.sim_time = self.now;
        self.summary
    }
}

/// Node `spec`'s clocks at simulated time `t`.
fn now_of(sc: &Scenario, spec: &NodeSpec, t: u64) -> Now {
    let unix_ms = sc.epoch_ms as i64 + (t / MS) as i64 + spec.skew_at(t);
    Now {
        mono: Duration::from_nanos(spec.mono_offset + t),
        unix_ms: unix_ms as u64,
    }
}
