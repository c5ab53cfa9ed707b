//! The ring simulator (tests/sim/): a few hundred seeds across every fault profile, each a
//! whole run of a ring (or a node and a reflector) on simulated time, with the invariants
//! checked after every step and a census of the loop once the faults stop; and the FEC survival
//! runs (values written on a fault-free loop, then loss on every hop for many laps, then read
//! back). See tests/sim/mod.rs for the invariants and tests/sim/world.rs for the bounds.
//!
//! A failing seed is printed in the panic message (`sim seed N (...)`); add it to
//! `REGRESSION_SEEDS`. Many more seeds: `cargo bench --bench sim -- --seeds 5000`, or
//! `SIM_SEEDS=5000 cargo test --release --test sim -- --ignored many_seeds`. One seed, with a
//! trace of every request, answer and datagram: `SIM_SEED=N SIM_TRACE=1 cargo test --release
//! --test sim -- --ignored one_seed --nocapture`. The survival runs at full scale, and the
//! survey of loss rates: `cargo bench --bench sim -- --survival` (see benches/sim.rs).
//!
//! Bugs of the core that the simulator found are listed in `sim::Known`. These runs fail on the
//! symptoms of those fixed like on any other broken invariant, and count those of the open ones
//! (printed in each profile's figures); `open_bugs` (ignored) runs their seeds and fails until
//! they are fixed.

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
    (
        405,
        "core, fixed in 7ebf145: a write confirmed before its last rows went out kept sending \
         after a DELETE of its key",
    ),
    (
        178,
        "simulator: a node that rebuilt an obsolete version had no room to record the newer one",
    ),
    (
        136,
        "core, Known::NotRebuilt, fixed in 8d8d900: a fragment whose payload the slot held from \
         a pass before was never rebuilt",
    ),
    (
        147,
        "core, Known::RepairChurn, fixed by laps: two copies half a lap apart",
    ),
    (8, "core, Known::RepairChurn, fixed by laps"),
    (85, "core, Known::RepairChurn, fixed by laps"),
    (
        309,
        "core, Known::RepairChurn, fixed by laps: churn took a slow node's send rate",
    ),
    (
        1000271,
        "core, Known::RepairChurn, fixed by laps: a GET missed what its node rebuilt",
    ),
    (
        2982,
        "core, Known::RebuiltObsolete: a rebuilt fragment of an overwritten version sent \
         (fixed: Repair::drop_older)",
    ),
    (
        2469,
        "core, Known::RepairBacklog: rebuilt fragments sent laps late took a slow node's send \
         rate",
    ),
    (
        4778,
        "core, Known::RepairChurn: a stripe turned away for want of room, then tracked from \
         its second fragment, was mended with a copy of its first",
    ),
    (
        5623,
        "core: a GET missed the fragments its own node rebuilt and sent (their copies dropped)",
    ),
    (
        3274,
        "core, laps: a fragment rebuilt behind its stripe, not moved (no room), rebuilt again \
         every lap just before it came",
    ),
    (
        372,
        "core, laps: a rebuilt fragment of a deleted version skipped at sending, misread as \
         repair",
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

/// The seeds that show the open bugs listed in `sim::Known`, held to every invariant: fails
/// until those bugs are fixed (then mark them fixed in `Known::fixed`, and this passes).
#[test]
#[ignore]
fn open_bugs() {
    let mut failed = Vec::new();
    for bug in sim::Known::ALL.iter().filter(|bug| !bug.fixed()) {
        for &seed in bug.seeds() {
            if let Err(message) = sim::check_seed_all(seed) {
                failed.push(format!("{bug:?}, seed {seed}: {message}"));
            }
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
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

/// A survival run at the scale of `cargo test`, its figures printed (`--nocapture`).
fn survive(nodes: usize, values: usize, loss: sim::LossSpec, laps: u64) -> sim::SurvivalReport {
    let spec = sim::survival(0x5eed + nodes as u64, nodes, values, loss, laps);
    let start = std::time::Instant::now();
    let summary = sim::run_survival(&spec, false);
    let report = summary.survival.expect("a survival report");
    eprintln!(
        "{}: {} ({:.1} s)",
        spec.describe(),
        report.line(),
        start.elapsed().as_secs_f64()
    );
    report
}

/// Values that must all survive: every one read back intact, none lost in the network, and
/// once the loss stops every fragment in the loop exactly once.
fn assert_whole(report: &sim::SurvivalReport) {
    assert_eq!(report.lost, 0, "values lost: {}", report.line());
    assert_eq!(
        report.read,
        report.values,
        "values unread: {}",
        report.line()
    );
    assert_eq!(
        report.census.missing,
        0,
        "fragments missing: {}",
        report.line()
    );
    assert_eq!(
        report.census.doubled,
        0,
        "fragments doubled: {}",
        report.line()
    );
}

/// 1 % random loss on both hops of a node and a reflector: 150 values of 100 B to 200 KB
/// (1232-byte datagrams, 32+8) survive 200 laps whole. The full run, 1,000 values for 10,000
/// laps: `cargo bench --bench sim -- --survival` (figures in benches/sim.rs).
#[test]
fn survival_1pct_reflector() {
    assert_whole(&survive(1, 150, sim::LossSpec::Random(0.01), 200));
}

/// The same on a ring of 3 nodes (three hops, each node mends what the hop before it lost).
#[test]
fn survival_1pct_ring_of_3() {
    assert_whole(&survive(3, 150, sim::LossSpec::Random(0.01), 200));
}

/// 5 % loss in bursts of 20 datagrams on every hop, 150 values, 200 laps: every invariant holds
/// (a value that is not read back had a stripe short of its data count in the network); the
/// figures say what survived. The full run (1,000 values, 1,000 laps): the bench.
#[test]
fn survival_5pct_bursts() {
    let loss = sim::LossSpec::Burst {
        rate: 0.05,
        mean: 20.0,
    };
    for nodes in [1, 3] {
        let report = survive(nodes, 150, loss, 200);
        assert_eq!(report.values, 150);
    }
}

/// `SIM_SURVIVAL="nodes values laps loss% [burst]" cargo test --release --test sim -- --ignored
/// one_survival --nocapture`: one survival run (seed 1, or `SIM_SEED`; values of 100 B to
/// 200 KB), for trying scales and rates.
#[test]
#[ignore]
fn one_survival() {
    let spec = std::env::var("SIM_SURVIVAL").expect("SIM_SURVIVAL=\"nodes values laps loss%\"");
    let f: Vec<f64> = spec
        .split_whitespace()
        .map(|x| x.parse().expect("numbers"))
        .collect();
    let loss = match f.get(4) {
        Some(&mean) => sim::LossSpec::Burst {
            rate: f[3] / 100.0,
            mean,
        },
        None => sim::LossSpec::Random(f[3] / 100.0),
    };
    let seed = std::env::var("SIM_SEED").map_or(1, |s| s.parse().expect("a seed"));
    let spec = sim::survival(seed, f[0] as usize, f[1] as usize, loss, f[2] as u64);
    let start = std::time::Instant::now();
    let report = sim::run_survival(&spec, false)
        .survival
        .expect("a survival report");
    eprintln!(
        "{}: {} ({:.1} s, {} events)",
        spec.describe(),
        report.line(),
        start.elapsed().as_secs_f64(),
        report.events
    );
}

/// The churn of the repair, at its smallest (`sim::Known::RepairChurn`): 30 values on a ring of
/// 3, one lap of 1 % loss, then a clean loop. Once the few losses are mended (two laps), nothing
/// may be rebuilt and every fragment must circulate once.
#[test]
fn repair_falls_silent_after_one_lossy_lap() {
    for nodes in [1, 3] {
        let spec = sim::survival(
            0xc4u64 + nodes as u64,
            nodes,
            30,
            sim::LossSpec::Random(0.01),
            1,
        );
        let report = sim::run_survival(&spec, true)
            .survival
            .expect("a survival report");
        eprintln!("{}: {}", spec.describe(), report.line());
    }
}
