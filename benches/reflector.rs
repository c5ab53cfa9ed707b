//! Reflector throughput on loopback: a client sends flat out through `udp::Sender`, another
//! thread counts the echoes, and the reflector's own stats say where the rest went.
//!
//! `cargo bench --bench reflector` runs three payload sizes flat out, then 512-byte datagrams at
//! fixed rates, then the node's datagram size (1232 bytes at the default MTU) flat out from a
//! client without GSO (every datagram its own send, as from an old kernel) and at high fixed
//! rates, for a few seconds each (the target needs `harness = false`). Run without `--bench`
//! (as `cargo test --benches` does) it makes one short round, so that the benchmark keeps
//! compiling and working. It only talks to 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use elayday::daemon::Shutdown;
use elayday::reflector::{Reflector, ReflectorConfig, ReflectorStats};
use elayday::udp::{self, Batch, Receiver, Sender, SocketOptions, BATCH_SLOTS};

const BUFFERS: SocketOptions = SocketOptions {
    recv_buffer: 8 << 20,
    send_buffer: 8 << 20,
};
const DELAY: Duration = Duration::from_millis(10);
/// How long the client keeps listening after it stopped sending and nothing came back.
const QUIET: Duration = Duration::from_millis(300);

/// The node's datagrams at the default MTU (1280 - 48).
const NODE_DATAGRAM: usize = 1232;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (sizes, paced, node_paced, duration): (&[usize], &[u64], &[u64], _) = if full {
        (
            &[64, 512, 1400],
            &[100_000, 150_000, 200_000],
            &[400_000, 800_000],
            Duration::from_secs(3),
        )
    } else {
        (&[512], &[50_000], &[], Duration::from_millis(200))
    };
    println!("reflector on loopback, delay {DELAY:?}, {duration:?} of sending per line");
    for &size in sizes {
        round(size, None, true, duration);
    }
    for &rate in paced {
        round(512, Some(rate), true, duration);
    }
    round(NODE_DATAGRAM, None, false, duration);
    for &rate in node_paced {
        round(NODE_DATAGRAM, Some(rate), true, duration);
    }
}

/// Sends `payload`-byte datagrams for `duration`, flat out or at `rate` datagrams a second,
/// with GSO if `gso` (and the kernel has it).
fn round(payload: usize, rate: Option<u64>, gso: bool, duration: Duration) {
    let loopback: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
    let reflector = Reflector::bind(ReflectorConfig {
        bind: loopback,
        delay: DELAY,
        max_buffer: 64 << 20,
        socket: BUFFERS,
    })
    .expect("reflector");
    let target = reflector.local_addr().into();
    let shutdown = Shutdown::new();
    let running = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || reflector.run(&shutdown))
    };

    let client = udp::bind(loopback, &BUFFERS).expect("client socket").socket;
    client
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let done_sending = Arc::new(AtomicBool::new(false));
    let counting = {
        let done_sending = done_sending.clone();
        let mut receiver = Receiver::new(client.try_clone().unwrap(), payload);
        std::thread::spawn(move || count_echoes(&mut receiver, payload, &done_sending))
    };

    let mut sender = if gso {
        Sender::new(client)
    } else {
        Sender::without_gso(client)
    };
    let mut batch = Batch::new(payload);
    while batch.push_with(|slot| {
        slot.fill(0xa5);
        payload
    }) {}
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        if let Some(rate) = rate {
            // Pace by batches: sleep until this batch is due.
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(ahead) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(ahead);
            }
        }
        sent += sender.send_to(&batch, &target).expect("send").sent as u64;
    }
    let sending = started.elapsed();
    done_sending.store(true, Ordering::Release);
    let (echoed, echo_span) = counting.join().unwrap();

    shutdown.request();
    let stats = join_bounded(running);
    let per_second = |count: u64, span: Duration| count as f64 / span.as_secs_f64().max(1e-9);
    let rate_label = rate.map_or_else(
        || "flat out".to_string(),
        |rate| format!("at {}k/s", rate / 1000),
    );
    let client_label = if sender.gso() { "" } else { " (no GSO)" };
    println!(
        "{payload:>5} B {:>11}{client_label}: sent {sent} ({:.0}/s), reflected {} ({:.0}/s), echoed back {echoed} ({:.0}/s, {:.1}% of sent)",
        rate_label,
        per_second(sent, sending),
        stats.reflected,
        per_second(stats.reflected, sending),
        per_second(echoed, echo_span),
        100.0 * echoed as f64 / sent.max(1) as f64,
    );
    println!(
        "                   lost at the reflector: {} kernel receive drops, {} buffer full, {} send failures; \
         at the client: {} (its own receive queue)",
        stats.kernel_drops,
        stats.dropped_full,
        stats.send_failures,
        stats.reflected.saturating_sub(echoed),
    );
}

/// Counts echoes until the client stopped sending and nothing came back for [`QUIET`]; returns
/// the count and the time from the first echo to the last.
fn count_echoes(
    receiver: &mut Receiver,
    payload: usize,
    done_sending: &AtomicBool,
) -> (u64, Duration) {
    let mut batch = Batch::new(payload);
    let mut count = 0u64;
    let mut first = None;
    let mut last = Instant::now();
    loop {
        let report = receiver.recv(&mut batch).expect("receive");
        let now = Instant::now();
        if report.received > 0 {
            count += report.received as u64;
            first.get_or_insert(now);
            last = now;
        } else if done_sending.load(Ordering::Acquire) && last.elapsed() >= QUIET {
            break;
        }
        debug_assert!(report.received <= BATCH_SLOTS);
    }
    (count, first.map_or(Duration::ZERO, |first| last - first))
}

fn join_bounded(
    running: std::thread::JoinHandle<std::io::Result<ReflectorStats>>,
) -> ReflectorStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !running.is_finished() {
        assert!(Instant::now() < deadline, "the reflector did not stop");
        std::thread::sleep(Duration::from_millis(1));
    }
    running.join().unwrap().expect("reflector run")
}
