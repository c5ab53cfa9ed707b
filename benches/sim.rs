//! The ring simulator (tests/sim/) over many seeds: `cargo bench --bench sim -- --seeds N
//! [--from S] [--jobs J]` runs seeds S..S+N (S defaults to 1,000,000, past the seeds `cargo
//! test` runs) on J threads (default: every core), prints progress and laps per second, and
//! lists every failing seed with its message; the exit status is non-zero if any failed. Each
//! failing seed then becomes a regression case (`REGRESSION_SEEDS` in tests/sim.rs). With
//! `--known` the runs are lenient: the symptoms of the bugs listed in `sim::Known` are counted,
//! not failed on, and the seeds that showed one are listed.
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
}

fn options() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut benching = false;
    let mut seeds = None;
    let mut from = 1_000_000;
    let mut jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut known = false;
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
            // Filters and flags cargo passes on to every bench: not ours.
            _ => {}
        }
    }
    let seeds = seeds.unwrap_or(if benching { 1000 } else { 20 });
    Ok(Options {
        seeds,
        from,
        jobs,
        known,
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
            std::thread::spawn(move || loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= end {
                    return;
                }
                let result = if list_known {
                    sim::check_seed_lenient(seed)
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
