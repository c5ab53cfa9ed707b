//! The figures of a node and a reflector on loopback, measured with the real binaries and a real
//! gRPC client (it only talks to 127.0.0.1):
//!
//! 1. the loop period with `--delay 1`;
//! 2. GET latency p50/p99 for a 1 KiB and a 10 MiB value (`--delay 1`);
//! 3. the node's resident memory with 100+ MiB circulating;
//! 4. the forwarding rate (datagrams/s, MB/s) with `--delay 0.5` as the loop is filled, until
//!    the reflector's `--max-buffer` (256 MiB by default) is full;
//! 5. the same with `--delay 0.1`, where the buffer allows more than the loop can carry: the
//!    rate stops growing and the period stretches past the delay at the forwarding ceiling.
//!
//! The reflector's losses come from its log (kernel drops: with GRO a dropped coalesced buffer
//! counts once, so they are a lower bound).
//!
//! `cargo bench --bench loop` runs it all (about three minutes). Without `--bench` (as
//! `cargo test --benches` runs it) it makes one short pass so the benchmark keeps working.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (samples_small, samples_large, fill_steps) = if full { (60, 20, 12) } else { (3, 1, 1) };

    // 1 + 2: delay 1 s.
    let (node, reflector_process) = node_with_reflector("1", &[]);
    let s = wait_periods(&node, 3);
    println!(
        "loop period with --delay 1: last {:.3} ms, min {:.3} ms, max {:.3} ms",
        ms(s.loop_period_last_us),
        ms(s.loop_period_min_us),
        ms(s.loop_period_max_us)
    );
    for (label, len, samples) in [
        ("1 KiB", 1024, samples_small),
        ("10 MiB", 10 << 20, samples_large),
    ] {
        let value = vec![0xa5u8; len];
        put(&node.client, "bench", &value).unwrap();
        let mut latencies = Vec::new();
        let period = Duration::from_micros(s.loop_period_last_us);
        for i in 0..samples {
            // Start at points spread evenly over the loop (golden-ratio sequence).
            std::thread::sleep(period.mul_f64((i as f64 * 0.618_034) % 1.0));
            let start = Instant::now();
            let got = get(&node.client, "bench").unwrap();
            latencies.push(start.elapsed());
            assert_eq!(got.len(), len);
        }
        latencies.sort();
        println!(
            "GET {label} (--delay 1, {samples} samples): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            percentile(&latencies, 1.0)
        );
    }
    let idle_rss = rss_kib(node.process.pid());
    let target = if full { 112u64 << 20 } else { 8 << 20 };
    let chunk = 16usize << 20;
    let mut stored = 0u64;
    let mut key = 0;
    while stored < target {
        let value = vec![key as u8; chunk.min((target - stored) as usize)];
        put(&node.client, &format!("fill-{key}"), &value).unwrap();
        stored += value.len() as u64;
        key += 1;
    }
    let s = wait_until(Duration::from_secs(30), "the fill to go round", || {
        stats(&node.client)
            .ok()
            .filter(|s| s.circulating_bytes >= target)
    });
    println!(
        "node RSS: {} KiB idle, {} KiB with {:.1} MiB circulating ({} datagrams, {} values); reflector RSS {} KiB",
        idle_rss,
        rss_kib(node.process.pid()),
        s.circulating_bytes as f64 / (1 << 20) as f64,
        s.circulating_datagrams,
        s.circulating_values,
        rss_kib(reflector_process.pid()),
    );
    drop(node);
    drop(reflector_process);

    // 4: delay 0.5 s, fill step by step.
    let step = if full { 32usize << 20 } else { 4 << 20 };
    fill_and_measure("0.5", step, fill_steps);

    // 5: delay 0.1 s, smaller steps, up to the ceiling.
    let (step, steps) = if full {
        (16usize << 20, 14)
    } else {
        (4 << 20, 1)
    };
    fill_and_measure("0.1", step, steps);
}

/// Starts a node and a reflector with `delay`, then adds `step`-byte values one at a time (at
/// most `steps`), printing the forwarding rate after each.
fn fill_and_measure(delay: &str, step: usize, steps: usize) {
    let (node, reflector) = node_with_reflector(delay, &["--max-value-size", "64M"]);
    println!("forwarding with --delay {delay} (1232-byte datagrams):");
    println!(
        "  circulating MiB | datagrams/s | MB/s   | period ms | node dropped (kernel) | reflector lost (kernel) | node RSS KiB | PUT confirmed in"
    );
    for n in 0..steps {
        let t = Instant::now();
        if let Err(e) = put(&node.client, &format!("rate-{n}"), &vec![n as u8; step]) {
            println!(
                "  the loop is full: adding {} MiB more failed: {e}",
                step >> 20
            );
            break;
        }
        let confirmed = t.elapsed();
        let before = wait_periods(&node, 2);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs(2));
        let after = stats(&node.client).unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let datagrams = (after.datagrams_forwarded - before.datagrams_forwarded) as f64 / secs;
        let bytes = (after.bytes_forwarded - before.bytes_forwarded) as f64 / secs;
        let dropped: u64 = after.datagrams_dropped.values().sum();
        let (lost, lost_kernel) = reflector_losses(&reflector);
        println!(
            "  {:>15.1} | {:>11.0} | {:>6.1} | {:>9.1} | {:>21} | {:>23} | {:>12} | {:?}",
            after.circulating_bytes as f64 / (1 << 20) as f64,
            datagrams,
            bytes / 1e6,
            ms(after.loop_period_last_us),
            format!(
                "{dropped} ({})",
                after.datagrams_dropped.get("kernel").copied().unwrap_or(0)
            ),
            format!("{lost} ({lost_kernel})"),
            rss_kib(node.process.pid()),
            confirmed,
        );
    }
}

/// What the reflector reported losing so far (all reasons, and the kernel's part), summed over
/// its warning lines ("reflector lost datagrams: A with the ... buffer full, B too large, C
/// dropped by the kernel, D refused on send"). Counts of the last second may still be pending.
fn reflector_losses(reflector: &Process) -> (u64, u64) {
    let (mut all, mut kernel) = (0, 0);
    for line in reflector.log() {
        let Some((_, counts)) = line.split_once("reflector lost datagrams: ") else {
            continue;
        };
        for part in counts.split(", ") {
            let n: u64 = part
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            all += n;
            if part.contains("by the kernel") {
                kernel += n;
            }
        }
    }
    (all, kernel)
}

/// Waits until `n` more loop periods have been measured, returns the stats then.
fn wait_periods(node: &Node, n: u32) -> elayday::proto::elayday::GetStatsResponse {
    let first = wait_closed(&node.client);
    let period = Duration::from_micros(first.loop_period_last_us);
    std::thread::sleep(period * n);
    stats(&node.client).unwrap()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
