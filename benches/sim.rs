//! The ring simulator (tests/sim/) over many seeds: `cargo bench --bench sim -- --seeds N
//! [--from S] [--jobs J]` runs seeds S..S+N (S defaults to 1,000,000, past the seeds `cargo
//! test` runs) on J threads (default: every core), prints progress and laps per second, and
//! lists every failing seed with its message; the exit status is non-zero if any failed. Each
//! failing seed then becomes a regression case (`REGRESSION_SEEDS` in tests/sim.rs). The runs
//! fail on the symptoms of the fixed bugs listed in `sim::Known` and count those of the open
//! ones; with `--all` they fail on those too; with `--known` they are lenient: the symptoms of
//! every bug listed are counted, not failed on, and the seeds that showed one are listed.
//!
//! `cargo bench --bench sim -- --survival [--scale F] [--jobs J]`: the FEC survival runs at
//! full scale, each on a node and a reflector and on a ring of 3 — 1,000 values of 100 B to
//! 200 KB (log-uniform; 1232-byte datagrams, 32+8 stripes, 20 ms laps) written and confirmed on
//! a fault-free loop, then loss on every hop, then every value read back while the loss goes
//! on, then the census once it stops:
//! - 1 % random loss for 10,000 laps (every value must survive);
//! - 5 % loss in bursts of 20 datagrams for 1,000 laps;
//! - the survey: 2, 5, 8, 10 and 15 % random loss for 1,000 laps each, as a table of values
//!   lost.
//!
//! `--scale F` multiplies values and laps by F (0.1 for a quick look). Every run holds every
//! invariant of the simulator; a failure is printed with its run and the status is non-zero.
//!
//! Run without `--bench` (as `cargo test --benches` does) it runs a few seeds, so that it keeps
//! compiling and working.

#[path = "../tests/sim/mod.rs"]
mod sim;

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

struct Options {
    seeds: u64,
    from: u64,
    jobs: usize,
    known: bool,
    all: bool,
    survival: bool,
    scale: f64,
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut benching = false;
    let mut seeds = None;
    let mut from = 1_000_000;
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut known = false;
    let mut all = false;
    let mut survival = false;
    let mut scale = 1.0;
    let number = |name: &str, value: Option<String>| -> Result<u64, String> {
        value
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{name} takes a number"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => benching = true,
            "--seeds" => seeds = Some(number("--seeds", args.next())?),
            "--from" => from = number("--from", args.next())?,
            "--jobs" => jobs = number("--jobs", args.next())?.max(1) as usize,
            "--known" => known = true,
            "--all" => all = true,
            "--survival" => survival = true,
            "--scale" => {
                scale = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&f: &f64| f > 0.0)
                    .ok_or("--scale takes a positive number")?
            }
            // Filters and flags cargo passes on to every bench: not ours.
            _ => {}
        }
    }
    let seeds = seeds.unwrap_or(if benching { 1000 } else { 20 });
    if known && all {
        return Err("--known and --all contradict each other".to_string());
    }
    Ok(Options {
        seeds,
        from,
        jobs,
        known,
        all,
        survival: survival && benching,
        scale,
    })
}

fn main() -> ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("sim bench: {message}");
            return ExitCode::from(2);
        }
    };
    // Failures are reported below, with their seed; the default hook would print each twice.
    std::panic::set_hook(Box::new(|_| {}));
    if options.survival {
        return survival(&options);
    }
    let end = options.from + options.seeds;
    eprintln!(
        "sim bench: seeds {}..{} on {} threads",
        options.from, end, options.jobs
    );

    let next = Arc::new(AtomicU64::new(options.from));
    let state = Arc::new(Mutex::new((
        sim::Totals::default(),
        Vec::<(u64, String)>::new(),
    )));
    let start = Instant::now();
    let threads: Vec<_> = (0..options.jobs)
        .map(|_| {
            let next = next.clone();
            let state = state.clone();
            let list_known = options.known;
            let all = options.all;
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                let result = if list_known {
                    sim::check_seed_lenient(seed)
                } else if all {
                    sim::check_seed_all(seed)
                } else {
                    sim::check_seed(seed)
                };
                let mut state = state.lock().expect("no panic while locked");
                match result {
                    Ok(summary) => {
                        let known: Vec<String> = sim::Known::ALL
                            .iter()
                            .filter(|&&k| summary.known[k as usize] > 0)
                            .map(|&k| format!("{k:?} {}", summary.known[k as usize]))
                            .collect();
                        if list_known && !known.is_empty() {
                            println!(
                                "known bugs in seed {seed}: {} ({} forwardings of immortal \
                                 datagrams)",
                                known.join(", "),
                                summary.immortal
                            );
                        }
                        state.0.add(&summary);
                    }
                    Err(message) => {
                        println!("FAILED seed {seed}: {message}");
                        state.1.push((seed, message));
                    }
                }
            })
        })
        .collect();

    let mut last = Instant::now();
    while threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        if last.elapsed() >= Duration::from_secs(10) {
            last = Instant::now();
            let state = state.lock().expect("no panic while locked");
            let mut totals = state.0.clone();
            totals.wall = start.elapsed().as_secs_f64();
            eprintln!(
                "sim bench: {} of {} seeds done, {} failed; {}",
                totals.seeds + state.1.len() as u64,
                options.seeds,
                state.1.len(),
                totals.line()
            );
        }
    }
    for thread in threads {
        thread.join().expect("seed failures are caught");
    }

    let (mut totals, mut failed) = state.lock().expect("no panic while locked").clone();
    totals.wall = start.elapsed().as_secs_f64();
    failed.sort();
    eprintln!("sim bench: {}", totals.line());
    if failed.is_empty() {
        eprintln!("sim bench: all {} seeds passed", options.seeds);
        ExitCode::SUCCESS
    } else {
        let seeds: Vec<String> = failed.iter().map(|(seed, _)| seed.to_string()).collect();
        eprintln!(
            "sim bench: {} of {} seeds FAILED: {}",
            failed.len(),
            options.seeds,
            seeds.join(", ")
        );
        ExitCode::FAILURE
    }
}

/// One survival run of the bench: its name in the tables, and its spec.
struct Run {
    name: String,
    spec: sim::Survival,
}

/// The survival runs and the survey, at full scale times `--scale`, on `--jobs` threads.
fn survival(options: &Options) -> ExitCode {
    let scaled = |n: u64| ((n as f64 * options.scale).round() as u64).max(1);
    let values = scaled(1000) as usize;
    let mut runs = Vec::new();
    let mut add = |name: String, loss: sim::LossSpec, laps: u64| {
        for nodes in [1, 3] {
            let seed = 7 + runs.len() as u64;
            runs.push(Run {
                name: format!("{name}, {}", topology(nodes)),
                spec: sim::survival(seed, nodes, values, loss, scaled(laps)),
            });
        }
    };
    add("1 % random".into(), sim::LossSpec::Random(0.01), 10_000);
    let bursts = sim::LossSpec::Burst {
        rate: 0.05,
        mean: 20.0,
    };
    add("5 % in bursts of 20".into(), bursts, 1_000);
    for percent in [2, 5, 8, 10, 15] {
        let loss = sim::LossSpec::Random(f64::from(percent) / 100.0);
        add(format!("survey {percent} % random"), loss, 1_000);
    }
    eprintln!(
        "sim bench: {} survival runs of {values} values on {} threads",
        runs.len(),
        options.jobs
    );
    let runs = Arc::new(runs);
    let next = Arc::new(AtomicU64::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..options.jobs)
        .map(|_| {
            let (runs, next, results) = (runs.clone(), next.clone(), results.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(run) = runs.get(i) else {
                    return;
                };
                let start = Instant::now();
                let result = std::panic::catch_unwind(|| sim::run_survival(&run.spec, false))
                    .map(|summary| -> sim::SurvivalReport {
                        summary.survival.expect("a survival report")
                    })
                    .map_err(|payload| panic_text(&*payload));
                let wall = start.elapsed().as_secs_f64();
                match &result {
                    Ok(report) => {
                        println!("{}: {} ({wall:.0} s)", run.spec.describe(), report.line())
                    }
                    Err(message) => println!("FAILED {}: {message}", run.name),
                }
                results
                    .lock()
                    .expect("no panic while locked")
                    .push((i, result, wall));
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("failures are caught");
    }
    let mut results = std::mem::take(&mut *results.lock().expect("no panic while locked"));
    results.sort_by_key(|(i, _, _)| *i);
    println!();
    println!(
        "{:<40} {:>7} {:>6} {:>8} {:>8} {:>7} {:>10} {:>10} {:>8} {:>7}",
        "run",
        "values",
        "laps",
        "lost",
        "narrow",
        "read",
        "destroyed",
        "rebuilt",
        "doubled",
        "wall s"
    );
    let mut failed = 0;
    for (i, result, wall) in &results {
        let run = &runs[*i];
        match result {
            Ok(r) => println!(
                "{:<40} {:>7} {:>6} {:>7.1}% {:>8} {:>7} {:>10} {:>10} {:>8} {:>7.0}",
                run.name,
                r.values,
                r.laps,
                100.0 * r.lost as f64 / r.values.max(1) as f64,
                format!("{}/{}", r.lost_narrow, r.narrow),
                r.read,
                r.destroyed,
                r.repaired,
                r.census.doubled,
                wall
            ),
            Err(_) => {
                failed += 1;
                println!("{:<40} FAILED", run.name);
            }
        }
    }
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn topology(nodes: usize) -> String {
    match nodes {
        1 => "1 node + reflector".to_string(),
        n => format!("ring of {n}"),
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic without a message)".to_string()
    }
}
