//! sim::world: what a world is — the simulated nodes, links, reflector, requests, writes and
//! keys of one seed and its event queue on simulated time — with its construction and the
//! context every part uses (failing with the seed and the time, tracing, counting known bugs,
//! each node's clocks). It drives nothing and checks nothing itself: the parts that do are its
//! siblings, each an `impl World` on the state defined here, in layers where each part calls
//! only the parts listed before it (and this file):
//!
//! - `settling.rs`: the versions of each key — when a write is resolved and a key settles, what
//!   a GET must answer, which datagrams are obsolete;
//! - `deadlines.rs`: a request the core takes or parks, and the deadline it gets;
//! - `answers.rs`: every answer a node gives, checked;
//! - `traffic.rs`: every datagram put on a link, and every frame a node sends, checked, and the
//!   copies of each fragment in the network counted;
//! - `nodes.rs`: the calls into each core, as the driver makes them;
//! - `clients.rs`: the clients' requests and cancellations;
//! - `census.rs`: the faults stop, and the census of the loop a few laps later;
//! - `survival.rs`: the script of a survival run, in place of the clients' workload;
//! - `event_loop.rs`: the run, event by event, and the checks at its end.
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
//! - PUT, sending: it waits behind the values queued before it, at most `2 max_requests`
//!   tombstones and the fragments the node rebuilds meanwhile (`R`, counted as they go out);
//!   probes take at most one frame in two at the rates simulated (at least five frames per ms
//!   against at most 2.2 probes per ms); a value of fewer stripes than the interleaving depth
//!   (with parity) has its rows spread over half a lap. Deadline: `accepted + 2 F (frames ahead
//!   + own + 2 max_requests + 16 + R) + 20 ms`, and `P / 2` more for a narrow value.
//! - PUT, all sent: the probe asked for after its last fragment settles it as for a GET.
//!   Deadline: `all sent + S + F + LT`.
//! - DELETE: answered when its tombstone goes out, behind probes, rebuilt fragments (`R`) and
//!   the tombstones queued before it. Deadline: `accepted + 2 F (tombstones ahead + 3 + R) +
//!   1 ms`.
//! - Parked (the loop never closed yet): the first probe's silence breaks the loop after
//!   `loop_timeout`. Deadline: `first probe + loop_timeout`; when the loop closes, the request is
//!   taken and gets the deadline of its kind from then.
//! - STATS: answered by the call.
//!
//! Each bound gets 10 µs of slack for the timer granularity (a timer that is due now runs 1 µs
//! later).
//! The deadlines are set in `deadlines.rs` (and in `traffic.rs` once a write is all sent).

use std::cell::Cell;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fmt::Display;
use std::rc::Rc;
use std::time::Duration;

use elayday::coding::Coder;
use elayday::node::core::{Core, CoreConfig, IoFigures, Now};

use super::net::{Datagram, Link, Reflector, Ver};
use super::oracle::{KeyState, Request, Settled, Write};
use super::rng::Rng;
use super::scenario::{NodeSpec, Scenario, MS, US};
use super::summary::{Known, Summary};
use super::survival::SurvivalRun;

/// The longest a probe asked for waits (probes.rs: `period / 32`, at most 10 ms).
pub(super) const PROBE_SPACING_MAX: u64 = 10 * MS;
/// Slack on every bound: the simulator's timer granularity.
pub(super) const SLACK: u64 = 10 * US;

/// Which symptoms of the bugs listed in [`Known`] fail a run (the others are counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    /// None.
    Lenient,
    /// Those of the bugs fixed: every ordinary run.
    Fixed,
    /// All, open bugs included.
    All,
}

/// Something that happens at a simulated time.
pub(super) enum Ev {
    Arrive { link: usize, d: Datagram },
    Reflect { d: Datagram },
    Timer { node: usize },
    Client,
    Deadline { req: usize },
    GiveUp { req: usize },
    Garbage,
}

/// An event in the queue: its time, and its place among the events of that time.
pub(super) struct Queued {
    pub(super) at: u64,
    seq: u64,
    pub(super) ev: Ev,
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

/// A node: its core, as the driver would hold it, and what the simulator mirrors of it.
pub(super) struct SimNode {
    pub(super) core: Core,
    pub(super) spec: NodeSpec,
    /// Theoretical arrival time of the send-rate bucket (GCRA).
    pub(super) tat: u64,
    pub(super) timer_at: Option<u64>,
    pub(super) closed: bool,
    pub(super) ever_closed: bool,
    pub(super) first_probe_at: Option<u64>,
    pub(super) buf: Vec<u8>,
    /// Writes taken and not all sent, in the core's order: those started (some of their
    /// fragments sent) first, then those not started. Writes start in this order, but one whose
    /// next row waits (`writes.rs`: a narrow value's rows are spread over half a lap) lets
    /// those behind it go meanwhile, so several may be going out at once.
    pub(super) queue: VecDeque<usize>,
    /// DELETEs whose tombstone is queued.
    pub(super) deletes: VecDeque<usize>,
    /// Writes answered DATA_LOSS whose rollback tombstone is queued.
    pub(super) rollbacks: Vec<usize>,
    pub(super) parked: Vec<usize>,
    /// The tombstone just sent, until a DELETE's answer or a rollback accounts for it.
    pub(super) last_tombstone: Option<(u16, Ver)>,
    /// Newest version of each key this node has sent or received intact.
    pub(super) seen: Vec<Option<Ver>>,
    /// Newest version of each key this node confirmed or deleted, and when: while it remembers
    /// it, its GETs never return anything older.
    pub(super) took: Vec<Option<(Ver, u64)>>,
    pub(super) gets_open: u32,
    /// GETs made so far, to tell whether a GET had company.
    pub(super) gets_started: u64,
    pub(super) corrupted_in: u64,
    /// Fragments it rebuilt and sent.
    pub(super) repairs_sent: u64,
}

impl SimNode {
    pub(super) fn may_send(&self, now: u64) -> bool {
        self.tat <= now + (self.spec.burst - 1) * self.spec.frame_ns
    }

    pub(super) fn next_send(&self) -> u64 {
        self.tat - (self.spec.burst - 1) * self.spec.frame_ns
    }

    pub(super) fn sent_one(&mut self, now: u64) {
        self.tat = self.tat.max(now) + self.spec.frame_ns;
    }

    pub(super) fn see(&mut self, key: u16, ver: Ver) {
        let seen = &mut self.seen[key as usize];
        if seen.is_none_or(|s| ver > s) {
            *seen = Some(ver);
        }
    }

    /// The core's broken-loop timeout at its longest.
    pub(super) fn lt(&self, period_max: u64) -> u64 {
        (3 * period_max).max(self.spec.loop_timeout)
    }
}

/// The simulation of one seed.
pub struct World {
    pub(super) sc: Scenario,
    description: String,
    pub(super) now: u64,
    pub(super) clock: Rc<Cell<u64>>,
    seq: u64,
    pub(super) queue: BinaryHeap<Queued>,
    pub(super) nodes: Vec<SimNode>,
    pub(super) links: Vec<Link>,
    pub(super) reflector: Option<Reflector>,
    pub(super) rng: Rng,
    pub(super) garbage_rng: Rng,
    pub(super) requests: Vec<Request>,
    pub(super) writes: Vec<Write>,
    /// Writes by version, once their first datagram went out.
    pub(super) by_version: HashMap<Ver, usize>,
    pub(super) keys: Vec<KeyState>,
    pub(super) p_max: u64,
    pub(super) fifo: bool,
    pub(super) out: Vec<(u64, Datagram)>,
    pub(super) in_command: Option<usize>,
    /// Parked requests the core just replayed, while their answers are drained.
    pub(super) replaying: Vec<usize>,
    pub(super) open: usize,
    pub(super) summary: Summary,
    /// `SIM_TRACE` set: print what happens to requests and frames.
    pub(super) trace: bool,
    /// Which known bugs' symptoms fail the run.
    strict: Strictness,
    /// Computes the parity the nodes' fragments must carry.
    pub(super) coder: Coder,
    /// The frame a fragment must be, made here to compare.
    pub(super) scratch: Vec<u8>,
    /// A survival run's script and what it found (`survival.rs`).
    pub(super) survival: Option<SurvivalRun>,
    /// When the faults stopped (`census.rs`).
    pub(super) calm_since: Option<u64>,
}

impl World {
    /// A world for `sc`; `clock` follows simulated time (for messages after a panic).
    pub fn new(sc: Scenario, clock: Rc<Cell<u64>>, strict: Strictness) -> World {
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
                    fec: spec.fec,
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
                    deletes: VecDeque::new(),
                    rollbacks: Vec::new(),
                    parked: Vec::new(),
                    last_tombstone: None,
                    seen: vec![None; key_count],
                    took: vec![None; key_count],
                    gets_open: 0,
                    gets_started: 0,
                    corrupted_in: 0,
                    repairs_sent: 0,
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
            by_version: HashMap::new(),
            keys,
            out: Vec::new(),
            in_command: None,
            replaying: Vec::new(),
            open: 0,
            trace: std::env::var_os("SIM_TRACE").is_some(),
            strict,
            coder: Coder::new(),
            scratch: Vec::new(),
            survival: None,
            calm_since: None,
            sc,
        }
    }

    pub(super) fn fail(&self, what: impl Display) -> ! {
        panic!(
            "sim {} at t={:.3} ms: {what}",
            self.description,
            self.now as f64 / MS as f64
        )
    }

    /// The symptom of a bug listed in [`Known`]: a failure, or counted (see [`Strictness`]).
    pub(super) fn known(&mut self, bug: Known, what: String) {
        let fail = match self.strict {
            Strictness::Lenient => false,
            Strictness::Fixed => bug.fixed(),
            Strictness::All => true,
        };
        if fail {
            let status = if bug.fixed() { "fixed" } else { "open" };
            self.fail(format!("{what} [known bug {bug:?}, {status}]"));
        }
        self.summary.known[bug as usize] += 1;
        self.trace(|| format!("known bug {bug:?}: {what}"));
    }

    /// Datagrams node `n` had no room to reassemble (for traces).
    pub(super) fn reassembly_refused(&self, n: usize) -> u64 {
        let stats = self.nodes[n]
            .core
            .stats(self.now_of(n), IoFigures::default());
        stats
            .refused
            .iter()
            .find(|(what, _)| *what == "reassembly_full")
            .map_or(0, |(_, count)| *count)
    }

    pub(super) fn trace(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("{:>12.3} ms  {}", self.now as f64 / MS as f64, what());
        }
    }

    pub(super) fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued {
            at,
            seq: self.seq,
            ev,
        });
    }

    pub(super) fn now_of(&self, n: usize) -> Now {
        now_of(&self.sc, &self.nodes[n].spec, self.now)
    }

    pub(super) fn key_id(&self, key: &[u8]) -> Option<u16> {
        self.sc
            .workload
            .keys
            .iter()
            .position(|k| k == key)
            .map(|i| i as u16)
    }

    pub(super) fn key_name(&self, key: u16) -> String {
        String::from_utf8_lossy(&self.sc.workload.keys[key as usize]).into_owned()
    }

    pub(super) fn ms(t: u64) -> String {
        format!("{:.3} ms", t as f64 / MS as f64)
    }

    /// How long after a write or deletion every node that must drop the older versions still
    /// remembers it, at the least: records last the loop timeout at least, from about the time
    /// the write was confirmed or the tombstone sent; half of it leaves room for the tombstone's
    /// wait in its queue.
    pub(super) fn memory(&self) -> u64 {
        self.nodes
            .iter()
            .map(|n| n.spec.loop_timeout)
            .min()
            .unwrap_or(0)
            / 2
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
