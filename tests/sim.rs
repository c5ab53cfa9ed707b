//! The ring simulator (tests/sim/): a few hundred seeds across every fault profile, each a
//! whole run of a ring (or a node and a reflector) on simulated time, with the invariants
//! checked after every step. See tests/sim/mod.rs for the invariants and tests/sim/world.rs for
//! the bounds.
//!
//! A failing seed is printed in the panic message (`sim seed N (...)`); add it to
//! `REGRESSION_SEEDS`. Many more seeds: `cargo bench --bench sim -- --seeds 5000`, or
//! `SIM_SEEDS=5000 cargo test --release --test sim -- --ignored many_seeds`. One seed, with a
//! trace of every request, answer and datagram: `SIM_SEED=N SIM_TRACE=1 cargo test --release
//! --test sim -- --ignored one_seed --nocapture`.
//!
//! Bugs of the core that the simulator found are listed in `sim::Known` (all fixed); these runs
//! fail on their symptoms like on any other broken invariant.

#[path = "sim/mod.rs"]
mod sim;

use sim::Profile;

/// Seeds of each profile that `cargo test` runs: 9 profiles × 48 = 432 seeds.
const SEEDS_PER_PROFILE: u64 = 48;

/// Seeds that once failed, with what they found.
const REGRESSION_SEEDS: &[(u64, &str)] = &[
    (
        0,
        "simulator: a PUT answered OK because the next PUT of its key was being taken",
    ),
    (
        45,
        "simulator: parked writes replayed when the loop closes, one superseding another",
    ),
    (
        44,
        "simulator: a node cut off by a partition writes a version already obsolete",
    ),
    (
        2001126,
        "simulator: two flips of one byte cancelled out, the 'corrupted' datagram was intact",
    ),
    (
        41,
        "core, Known::DeletedShortcut: NOT_FOUND from another node's older tombstone",
    ),
    (
        154,
        "core, Known::DeletedShortcut: NOT_FOUND from another node's older tombstone",
    ),
    (
        43,
        "core, fixed in a48256c: --max-reassembly = --max-value-size never fit the largest",
    ),
    (
        152,
        "core, Known::NoRoomAsLoss: DATA_LOSS for a whole value the node had no room for",
    ),
    (
        1000611,
        "core, Known::LingeringWrite: a deleted write's fragments still sent",
    ),
    (
        3021608,
        "core: DATA_LOSS from a rolled-back write that went by before the GET started",
    ),
    (
        3019732,
        "core: DATA_LOSS from a deleted write that went by before the GET started",
    ),
    (
        3026532,
        "core: DATA_LOSS from a deleted write that went by before the GET started",
    ),
    (
        3026891,
        "core: DATA_LOSS from a deleted write that went by before the GET started",
    ),
];

#[test]
fn fault_free() {
    sim::run_profile(Profile::FaultFree, SEEDS_PER_PROFILE);
}

#[test]
fn lossy() {
    sim::run_profile(Profile::Lossy, SEEDS_PER_PROFILE);
}

#[test]
fn bursty() {
    sim::run_profile(Profile::Bursty, SEEDS_PER_PROFILE);
}

#[test]
fn corrupt() {
    sim::run_profile(Profile::Corrupt, SEEDS_PER_PROFILE);
}

#[test]
fn reorder() {
    sim::run_profile(Profile::Reorder, SEEDS_PER_PROFILE);
}

#[test]
fn partition() {
    sim::run_profile(Profile::Partition, SEEDS_PER_PROFILE);
}

#[test]
fn skew() {
    sim::run_profile(Profile::Skew, SEEDS_PER_PROFILE);
}

#[test]
fn tight() {
    sim::run_profile(Profile::Tight, SEEDS_PER_PROFILE);
}

#[test]
fn chaos() {
    sim::run_profile(Profile::Chaos, SEEDS_PER_PROFILE);
}

#[test]
fn regression_seeds() {
    for &(seed, _) in REGRESSION_SEEDS {
        sim::run_seed(seed);
    }
}

#[test]
fn a_seed_is_one_run() {
    for seed in [3, 17, 40] {
        assert_eq!(sim::run_seed(seed), sim::run_seed(seed), "seed {seed}");
    }
}

/// `SIM_SEED=N cargo test --release --test sim -- --ignored one_seed --nocapture`: seed N alone
/// (with `SIM_TRACE=1`, every request, answer and datagram on the way).
#[test]
#[ignore]
fn one_seed() {
    let seed = std::env::var("SIM_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("SIM_SEED=<seed>");
    let summary = if std::env::var_os("SIM_LENIENT").is_some() {
        sim::run_seed_lenient(seed)
    } else {
        sim::run_seed(seed)
    };
    eprintln!("{summary:#?}");
}

/// `SIM_SEEDS=N [SIM_FROM=S] cargo test --release --test sim -- --ignored many_seeds`: N seeds
/// from S, stopping at the first failure (the bench runs them all and lists every failure).
#[test]
#[ignore]
fn many_seeds() {
    let var = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (count, from) = (var("SIM_SEEDS", 2000), var("SIM_FROM", 1_000_000));
    let start = std::time::Instant::now();
    let mut totals = sim::Totals::default();
    for seed in from..from + count {
        totals.add(&sim::run_seed(seed));
    }
    totals.wall = start.elapsed().as_secs_f64();
    eprintln!("sim many_seeds: {}", totals.line());
}
