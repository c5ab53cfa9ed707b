//! sim: a deterministic ring simulator on the node's sans-IO core ([`elayday::node::core`]).
//!
//! N nodes (or one node and a reflector) joined by a simulated network with seeded delay, loss,
//! bursts, duplication, reordering, corruption and partitions, on simulated time. Every node is
//! a real [`elayday::node::core::Core`]; only sockets, threads and clocks are simulated. A seed
//! decides the whole run ([`Scenario::from_seed`]): same seed, same run. The nodes write with
//! the wire format's stripes: mostly the default 32 + 8, in some seeds small stripes (4+2, 8+2,
//! 1+1, 2+5) that the simulator's small values fill, in some no parity at all (the behaviour of
//! format 1), in some a mix of shapes across the nodes.
//!
//! After every step the world checks (see `world.rs` for the bounds):
//! - no panic, in the core or anywhere;
//! - memory within the configured limits (`Core::usage` against `Limits`, repair included,
//!   probes ≤ 4096);
//! - every request answered by the deadline the design gives it, and answered once, with an
//!   answer of its kind (and never after its client cancelled it);
//! - never a wrong value: a GET's value is one that a PUT of the key sent (the data count of
//!   every stripe); once a key is settled (its newest version confirmed or deleted, nothing else
//!   happening to it) a GET returns exactly that value, or NOT_FOUND for a deleted key;
//!   DATA_LOSS or NOT_FOUND only if some stripe of the value had more fragments missing from the
//!   network than its parity while the GET waited (or a lap before), or, on links that reorder,
//!   a probe overtook it; a GET on the node that confirmed or deleted a version never returns an
//!   older one while that node remembers it (the loop timeout, at least). (A GET made within a
//!   lap after a node rebuilt a fragment of an older version of its key is not held to the
//!   settled value: a node with no record of the key mends the older version behind the newest,
//!   which is then no longer ahead of it even on links that keep order; counted);
//! - a PUT is answered OK only when every stripe had its data count back at its node (possibly
//!   before its last parity went out) or a newer version replaced it, and DATA_LOSS only when
//!   some stripe is short and lost more of its fragments (the last copy destroyed by the
//!   network or dropped by a node) than its parity (or links reorder);
//! - no datagram of a deleted or overwritten version anywhere in the network one lap after the
//!   deletion or the newer write was confirmed (fragments a node rebuilt included);
//! - frames the nodes send are valid and unsealed; a node's own DATA and PARITY fragments are
//!   those of the write it took next or is sending, in `wire::interleaved` order (several writes
//!   may be going out at once: a narrow value's rows wait), each byte for byte the frame its
//!   value makes (the value's bytes, or the stripe's Reed-Solomon parity computed here with
//!   [`elayday::coding::Coder`]); a frame from the repair queue, whatever its origin, is byte for
//!   byte a fragment its write's origin sends; every corrupted datagram is rejected and counted;
//!   a node drops nothing but fragments as copies; `wants_transmit` is exact (`poll_transmit`
//!   then writes a frame) but for a narrow write between two rows (counted: idle polls);
//! - once every request is answered the faults stop (loss, bursts, duplicates, corruption,
//!   reordering, partitions, overflow) and, a few laps later, the census (census.rs): every
//!   fragment of a key's newest version circulates exactly once — no two copies (with parity;
//!   without it nothing removes a network duplicate), and none missing if the write was
//!   confirmed and no stripe of it ever lost more fragments than its parity.
//!
//! A failure panics with a message that starts `sim seed N (...)`: that seed, run alone with
//! [`run_seed`], fails the same way.
//!
//! Which version must win is decided by version order (the core's last-writer-wins). When a
//! node that had not heard of a key's newest version writes an older one (concurrent writers,
//! a partition, skewed clocks), the node that made the newest drops it within a lap while it
//! remembers the newest: GETs are held to one answer only from then on, or not at all until a
//! newer version goes out if nobody may remember (`KeyState::muddled` in oracle.rs).
//!
//! Bugs of the core found here are listed in [`Known`], with the seeds that found them. Every
//! run fails on the symptoms of those fixed; those of the open ones are counted (and printed
//! with each profile's figures) unless the run holds the core to everything ([`run_seed_all`],
//! the `open_bugs` test, the bench's `--all`); a lenient run ([`run_seed_lenient`], the bench's
//! `--known`) counts them all and goes on checking everything else.
//!
//! Survival runs ([`Survival`], [`run_survival`], survival.rs) replace the random workload with
//! a script: values written and confirmed on a fault-free loop, then loss on every hop for many
//! laps, then every value read back, with every invariant above holding throughout; their
//! [`SurvivalReport`] says what survived.
//!
//! Adding an invariant: the world calls into each core at four places — `World::arrive` (a
//! datagram) and `World::turn` (time) in nodes.rs, `World::issue` (a request) and
//! `World::give_up` (a cancellation) in clients.rs — and every one of them ends with
//! `check_usage`; frames a node sends pass `World::emitted`, datagrams any hop sends pass
//! `World::send` (both in traffic.rs), answers pass `World::on_answer` (answers.rs). Check there
//! and fail with `self.fail(..)`, which names the seed and the simulated time. world.rs lists
//! the files of the world and the order in which they may call each other.

#![allow(dead_code)]

mod answers;
mod census;
mod clients;
mod deadlines;
mod event_loop;
mod net;
mod nodes;
mod oracle;
mod rng;
mod scenario;
mod settling;
mod summary;
mod survival;
mod traffic;
mod world;

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Instant;

pub use scenario::{LossSpec, Profile, Scenario, Survival, MS};
pub use summary::{Known, Summary, SurvivalReport};
use world::Strictness;

/// Runs seed `seed`; panics with the seed and the simulated time if an invariant breaks or the
/// core panics, the symptoms of the fixed core bugs listed in [`Known`] included (those of the
/// open ones are counted).
pub fn run_seed(seed: u64) -> Summary {
    run(seed, Strictness::Fixed)
}

/// Runs seed `seed` counting the symptoms of the bugs listed in [`Known`] instead of failing.
pub fn run_seed_lenient(seed: u64) -> Summary {
    run(seed, Strictness::Lenient)
}

/// Runs seed `seed` failing on the symptoms of every bug listed in [`Known`], open ones too.
pub fn run_seed_all(seed: u64) -> Summary {
    run(seed, Strictness::All)
}

fn run(seed: u64, strict: Strictness) -> Summary {
    run_scenario(Scenario::from_seed(seed), strict)
}

/// A survival run of `values` values of 100 B to 200 KB (log-uniform) at 1232-byte datagrams
/// (1174 bytes of value each), the default stripes (32 + 8) and 20 ms laps, on a ring of `nodes`
/// (1: a node and a reflector), with `loss` on every hop for `laps` laps.
pub fn survival(seed: u64, nodes: usize, values: usize, loss: LossSpec, laps: u64) -> Survival {
    Survival {
        seed,
        nodes,
        values,
        size_min: 100,
        size_max: 200_000,
        loss,
        laps,
        fec: elayday::node::core::Fec::default(),
        period: 20 * MS,
        max_datagram: 1232,
        gets_at_once: 64,
    }
}

/// Runs survival run `s` (see [`Survival`]), failing on the symptoms of every known bug if
/// `all`, else on those of the fixed ones; its report is `Summary::survival`.
pub fn run_survival(s: &Survival, all: bool) -> Summary {
    let strict = if all {
        Strictness::All
    } else {
        Strictness::Fixed
    };
    run_scenario(Scenario::survival(s), strict)
}

fn run_scenario(scenario: Scenario, strict: Strictness) -> Summary {
    let description = scenario.describe();
    let clock = Rc::new(Cell::new(0));
    let world = world::World::new(scenario, clock.clone(), strict);
    match panic::catch_unwind(AssertUnwindSafe(|| world.run())) {
        Ok(summary) => summary,
        Err(payload) => {
            let message = panic_message(&*payload);
            if message.starts_with("sim seed") || message.starts_with("sim survival") {
                panic::resume_unwind(payload);
            }
            panic!(
                "sim {description} at t={:.3} ms: panic outside the simulator's checks (in the \
                 core?): {message}",
                clock.get() as f64 / MS as f64
            );
        }
    }
}

/// Runs seed `seed`; the failure message if it fails.
pub fn check_seed(seed: u64) -> Result<Summary, String> {
    panic::catch_unwind(|| run_seed(seed)).map_err(|payload| panic_message(&*payload))
}

/// Runs seed `seed` leniently; the failure message if it fails.
pub fn check_seed_lenient(seed: u64) -> Result<Summary, String> {
    panic::catch_unwind(|| run_seed_lenient(seed)).map_err(|payload| panic_message(&*payload))
}

/// Runs seed `seed` failing on open bugs too; the failure message if it fails.
pub fn check_seed_all(seed: u64) -> Result<Summary, String> {
    panic::catch_unwind(|| run_seed_all(seed)).map_err(|payload| panic_message(&*payload))
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}

/// What a batch of seeds did.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    pub seeds: u64,
    pub laps: f64,
    pub events: u64,
    pub requests: u64,
    pub checked_gets: u64,
    pub checked_values: u64,
    pub destroyed: u64,
    pub corrupted: u64,
    pub data_loss: u64,
    pub unavailable: u64,
    pub exhausted: u64,
    pub cancelled: u64,
    pub reorder_excused: u64,
    pub old_rebuilt_excused: u64,
    pub known: [u64; Known::ALL.len()],
    pub immortal: u64,
    pub repaired: u64,
    pub duplicates: u64,
    pub last_copy_drops: u64,
    pub idle_polls: u64,
    /// Census: fragments of the values live at the end, missing ones, doubled ones.
    pub fragments: u64,
    pub missing: u64,
    pub doubled: u64,
    pub late_repairs: u64,
    pub wall: f64,
}

impl Totals {
    pub fn add(&mut self, s: &Summary) {
        self.seeds += 1;
        self.laps += s.laps();
        self.events += s.events;
        self.requests += s.requests;
        self.checked_gets += s.checked_gets;
        self.checked_values += s.checked_values;
        self.destroyed += s.destroyed;
        self.corrupted += s.corrupted;
        self.data_loss += s.data_loss;
        self.unavailable += s.unavailable;
        self.exhausted += s.exhausted;
        self.cancelled += s.cancelled;
        self.reorder_excused += s.reorder_excused;
        self.old_rebuilt_excused += s.old_rebuilt_excused;
        self.immortal += s.immortal;
        self.repaired += s.repaired;
        self.duplicates += s.duplicates;
        self.last_copy_drops += s.last_copy_drops;
        self.idle_polls += s.idle_polls;
        if let Some(c) = s.census {
            self.fragments += c.fragments;
            self.missing += c.missing;
            self.doubled += c.doubled;
            self.late_repairs += c.late_repairs;
        }
        for (total, n) in self.known.iter_mut().zip(s.known) {
            *total += n;
        }
    }

    /// One line of figures.
    pub fn line(&self) -> String {
        format!(
            "{} seeds, {:.0} laps in {:.2} s ({:.0} laps/s, {:.2} M events/s), {} requests, \
             {} GETs checked against a settled key ({} values), {} datagrams destroyed ({} \
             corrupted), {} rebuilt, {} copies dropped ({} of them the last), answers: {} \
             DATA_LOSS, {} UNAVAILABLE, {} RESOURCE_EXHAUSTED, {} cancelled, {} excused by \
             reordering, {} GETs not held (an older version rebuilt); census: {} fragments, {} missing, {} doubled, {} rebuilt late; {} idle polls; known bugs \
             let pass: {} ({} forwardings of immortal datagrams)",
            self.seeds,
            self.laps,
            self.wall,
            self.laps / self.wall.max(1e-9),
            self.events as f64 / self.wall.max(1e-9) / 1e6,
            self.requests,
            self.checked_gets,
            self.checked_values,
            self.destroyed,
            self.corrupted,
            self.repaired,
            self.duplicates,
            self.last_copy_drops,
            self.data_loss,
            self.unavailable,
            self.exhausted,
            self.cancelled,
            self.reorder_excused,
            self.old_rebuilt_excused,
            self.fragments,
            self.missing,
            self.doubled,
            self.late_repairs,
            self.idle_polls,
            Known::ALL
                .iter()
                .map(|k| format!("{k:?} {}", self.known[*k as usize]))
                .collect::<Vec<_>>()
                .join(", "),
            self.immortal,
        )
    }
}

/// Runs `count` seeds of `profile` (`profile.index() + 9 k`), panicking at the first failure,
/// and prints what they did.
pub fn run_profile(profile: Profile, count: u64) -> Totals {
    let start = Instant::now();
    let mut totals = Totals::default();
    for k in 0..count {
        let seed = profile.index() + Profile::ALL.len() as u64 * k;
        totals.add(&run_seed(seed));
    }
    totals.wall = start.elapsed().as_secs_f64();
    eprintln!("sim {profile}: {}", totals.line());
    totals
}
