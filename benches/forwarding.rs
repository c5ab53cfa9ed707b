//! The forwarding ceiling of a node: datagrams per second through one node closed by a reflector
//! on loopback at `--delay 0.1`, filled until the loop carries more than the node can forward.
//! Real processes, a real gRPC client, only 127.0.0.1.
//!
//! `cargo bench --bench forwarding` measures this build. To compare with another build of
//! elayday in the same run, on the same machine, pass its binary:
//! `cargo bench --bench forwarding -- --baseline /path/to/old/elayday [--rounds N]`. The two are
//! measured in alternating rounds (baseline first) and the median of each is printed with the
//! change. Without `--bench` (as `cargo test --benches` runs it) it makes one short round.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

/// Values put into the loop, one at a time.
const STEP: usize = 16 << 20;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let full = args.iter().any(|a| a == "--bench");
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let baseline = flag("--baseline");
    let rounds: usize = flag("--rounds")
        .and_then(|n| n.parse().ok())
        .unwrap_or(if full { 3 } else { 1 });
    let fill = if full { 160 << 20 } else { 16 << 20 };

    let mut binaries = Vec::new();
    if let Some(path) = &baseline {
        binaries.push(("baseline", path.clone()));
    }
    binaries.push(("this build", BIN.to_string()));
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); binaries.len()];
    println!(
        "forwarding ceiling, --delay 0.1, filled to {} MiB:",
        fill >> 20
    );
    for round in 0..rounds {
        for (i, (label, path)) in binaries.iter().enumerate() {
            let rate = measure(path, fill);
            println!("  round {round}: {label:<10} {rate:>10.0} datagrams/s");
            rates[i].push(rate);
        }
    }
    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    for ((label, path), m) in binaries.iter().zip(&medians) {
        println!("median {label:<10} {m:>10.0} datagrams/s  ({path})");
    }
    if let [before, after] = medians[..] {
        println!(
            "change: {:+.1} % (this build against the baseline)",
            (after / before - 1.0) * 100.0
        );
    }
}

/// Starts `binary` as a node and a reflector, fills the loop to `fill` bytes and returns the
/// datagrams forwarded per second over three seconds.
fn measure(binary: &str, fill: usize) -> f64 {
    let reflector_addr = free_udp("127.0.0.1");
    let addr = reflector_addr.to_string();
    let _reflector = start(
        binary,
        &[
            "reflector",
            "--bind",
            &addr,
            "--delay",
            "0.1",
            "--max-buffer",
            "1G",
        ],
    );
    let (udp, grpc) = (free_udp("127.0.0.1"), free_tcp("127.0.0.1"));
    let (u, g) = (udp.to_string(), grpc.to_string());
    let node = start(
        binary,
        &[
            "server",
            "--bind",
            &u,
            "--destination",
            &addr,
            "--bind-grpc",
            &g,
            "--max-value-size",
            "64M",
        ],
    );
    let client = client(grpc);
    wait_until(Duration::from_secs(20), "the loop to close", || {
        stats(&client).ok().filter(|s| s.loop_closed)
    });
    let mut stored = 0;
    let mut n = 0;
    while stored < fill {
        let len = STEP.min(fill - stored);
        if put(&client, &format!("fill-{n}"), &vec![n as u8; len]).is_err() {
            break; // the loop is over capacity: measure what it carries
        }
        stored += len;
        n += 1;
    }
    // Until a whole loop carried everything stored (datagrams count their headers too), or ten
    // seconds if the loop lost some of it; then three seconds of forwarding.
    let spread = Instant::now() + Duration::from_secs(10);
    let mut before = stats(&client).unwrap();
    while before.circulating_bytes < stored as u64 && Instant::now() < spread {
        before = stats(&client).unwrap();
    }
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let after = stats(&client).unwrap();
    let rate =
        (after.datagrams_forwarded - before.datagrams_forwarded) as f64 / t.elapsed().as_secs_f64();
    drop(node);
    rate
}

fn start(binary: &str, args: &[&str]) -> Process {
    Process::spawn_binary(binary, args, &[("RUST_LOG", "warn")])
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
