//! Values survive a lossy network: real `elayday` processes whose loop runs through a
//! [`LossyRelay`] that drops a seeded fraction of the DATA and PARITY datagrams, at random or in
//! bursts. The loss starts only once every value is written and confirmed; the values must read
//! back intact after hundreds of laps, and the loop must hold exactly one copy of every datagram
//! (repair neither loses nor multiplies them).
//!
//! Laps are counted, not timed: every datagram of the loop crosses the lossy hop once a lap, so
//! `n` laps have gone by when the hop has carried `n` times the datagrams of the values.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::lossy::{Loss, LossyRelay, LossyStats};
use common::*;
use elayday::proto::elayday::GetStatsResponse;
use elayday::wire::{self, Geometry};

/// The datagram of the default `--mtu 1280`.
const DATAGRAM: usize = 1232;

/// Datagrams a value of `len` bytes under a key of `key_len` bytes takes with the default
/// stripes of 32 + 8.
fn datagrams(key_len: usize, len: usize) -> u64 {
    Geometry {
        value_len: len as u64,
        chunk_len: wire::max_chunk_len(DATAGRAM, key_len) as u16,
        data: 32,
        parity: 8,
    }
    .datagram_count()
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Waits until `hop` has carried `laps` laps of `per_lap` datagrams since `start`.
fn wait_laps(hop: &LossyRelay, start: &LossyStats, per_lap: u64, laps: u64, budget: Duration) {
    let begun = Instant::now();
    wait_until(
        budget,
        &format!("{laps} laps of {per_lap} datagrams"),
        || {
            let carried = hop.stats().since(start).subject;
            (carried >= per_lap * laps).then_some(())
        },
    );
    eprintln!(
        "{laps} laps of {per_lap} datagrams in {:.1?}",
        begun.elapsed()
    );
}

/// Waits until a full loop's count of datagrams at `node` is `expected`: after the loss
/// stopped, the repair has made the loop whole, and no copy is left.
fn wait_whole(node: &Node, expected: u64) -> GetStatsResponse {
    let mut last = None;
    let found = wait_until_or(Duration::from_secs(60), || {
        let s = stats(&node.client).ok()?;
        let n = s.circulating_datagrams;
        last = Some(s.clone());
        (n == expected).then_some(s)
    });
    found.unwrap_or_else(|| {
        panic!("the loop never held exactly {expected} datagrams: {last:?}");
    })
}

/// [`wait_until`] that gives up quietly.
fn wait_until_or<T>(timeout: Duration, mut condition: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = condition() {
            return Some(value);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn report(what: &str, hop: &LossyStats, node: &GetStatsResponse) {
    eprintln!(
        "{what}: the hop dropped {} of {} datagrams ({:.3} %, {} bursts); the node rebuilt {}, \
         saw {} stripes unrecoverable, removed {} copies, kernel drops at the hop {}",
        hop.dropped(),
        hop.subject,
        100.0 * hop.dropped() as f64 / hop.subject.max(1) as f64,
        hop.bursts,
        node.datagrams_repaired,
        node.stripes_unrecoverable,
        node.datagrams_dropped
            .get("duplicate")
            .copied()
            .unwrap_or(0),
        hop.kernel_drops,
    );
}

/// A node whose loop is closed by a lossy reflector (the relay itself reflects, after `delay`).
fn node_on_lossy_reflector(delay: Duration, seed: u64) -> (Node, LossyRelay) {
    let hop = LossyRelay::reflector("127.0.0.1", delay, seed);
    let node = Node::start(free_udp("127.0.0.1"), hop.addr, &[]);
    wait_closed(&node.client);
    (node, hop)
}

/// Writes the values, then runs `laps` laps under `loss`, stops the loss, and checks that the
/// loop is whole and every value reads back.
fn survive(node: &Node, hop: &LossyRelay, values: &[(String, Vec<u8>)], loss: Loss, laps: u64) {
    for (key, value) in values {
        put(&node.client, key, value).unwrap();
    }
    let per_lap: u64 = values
        .iter()
        .map(|(k, v)| datagrams(k.len(), v.len()))
        .sum();
    wait_whole(node, per_lap);
    let start = hop.stats();
    hop.set_loss(loss);
    wait_laps(hop, &start, per_lap, laps, Duration::from_secs(600));
    hop.set_loss(Loss::None);
    let during = hop.stats().since(&start);
    let s = wait_whole(node, per_lap);
    report(&format!("{loss:?} for {laps} laps"), &during, &s);
    assert!(during.dropped() > 0, "the hop lost nothing: {during:?}");
    assert_eq!(during.kernel_drops, 0, "the hop itself lost datagrams");
    // Every loss is mended, but that of a copy on its way out (a fragment rebuilt behind its
    // stripe travels once more before it is moved into its place, and the copy that follows
    // the stripe is then dropped): at 1 % loss, those are about 1 % of the copies.
    assert!(
        s.datagrams_repaired >= during.dropped() * 9 / 10,
        "{} rebuilt for {} lost: {s:?}",
        s.datagrams_repaired,
        during.dropped()
    );
    for (key, value) in values {
        let got = get(&node.client, key).unwrap_or_else(|e| panic!("{key}: {e:?}"));
        assert!(got == *value, "{key}: a different value came back");
    }
}

fn values(count: usize, len: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| (format!("value-{i:02}"), pattern(len, i as u64 + 1)))
        .collect()
}

#[test]
fn twenty_values_of_100_kib_survive_500_laps_at_1_percent_loss() {
    let (node, hop) = node_on_lossy_reflector(Duration::from_millis(50), 7);
    survive(&node, &hop, &values(20, 100 << 10), Loss::Random(0.01), 500);
}

/// Known to fail (issue 7 stays open): under bursts the repair loses values. See the closing
/// note of the FEC work; run it with `--ignored` to reproduce.
#[test]
#[ignore = "known failure: values are lost under burst loss (issue 7)"]
fn twenty_values_of_100_kib_survive_200_laps_of_loss_in_bursts() {
    let (node, hop) = node_on_lossy_reflector(Duration::from_millis(50), 8);
    let loss = Loss::Bursts {
        p: 0.01,
        mean_len: 10.0,
    };
    survive(&node, &hop, &values(20, 100 << 10), loss, 200);
}

/// 71,825 datagrams in a 300 ms loop (about 240,000 a second through the relay): the laps the
/// fragments carry tell a copy from the next lap whatever the stalls of a loaded machine.
#[test]
fn a_64_mib_value_survives_100_laps_at_1_percent_loss() {
    let (node, hop) = node_on_lossy_reflector(Duration::from_millis(300), 9);
    survive(&node, &hop, &values(1, 64 << 20), Loss::Random(0.01), 100);
}

/// Three nodes, each hop through a lossy relay with 20 ms of delay: whoever is downstream of a
/// loss mends it; a fragment two nodes mend leaves one copy.
#[test]
fn a_three_node_ring_with_loss_on_every_hop_survives_200_laps() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_udp("127.0.0.1")).collect();
    let hops: Vec<LossyRelay> = (0..3)
        .map(|i| {
            let next = addrs[(i + 1) % 3];
            LossyRelay::ring_hop("127.0.0.1", next, Duration::from_millis(20), 100 + i as u64)
        })
        .collect();
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(addrs[i], hops[i].addr, &[]))
        .collect();
    for node in &nodes {
        wait_closed(&node.client);
    }
    let values = values(10, 100 << 10);
    for (key, value) in &values {
        put(&nodes[0].client, key, value).unwrap();
    }
    let per_lap: u64 = values
        .iter()
        .map(|(k, v)| datagrams(k.len(), v.len()))
        .sum();
    for node in &nodes {
        wait_whole(node, per_lap);
    }
    let starts: Vec<LossyStats> = hops.iter().map(LossyRelay::stats).collect();
    for hop in &hops {
        hop.set_loss(Loss::Random(0.01));
    }
    wait_laps(&hops[0], &starts[0], per_lap, 200, Duration::from_secs(600));
    for hop in &hops {
        hop.set_loss(Loss::None);
    }
    for (i, node) in nodes.iter().enumerate() {
        let during = hops[(i + 2) % 3].stats().since(&starts[(i + 2) % 3]);
        let s = wait_whole(node, per_lap);
        report(
            &format!("node {i}, downstream of hop {}", (i + 2) % 3),
            &during,
            &s,
        );
        assert!(during.dropped() > 0);
        assert_eq!(during.kernel_drops, 0);
        assert!(s.datagrams_repaired >= during.dropped(), "node {i}: {s:?}");
    }
    for node in &nodes {
        for (key, value) in &values {
            let got = get(&node.client, key).unwrap_or_else(|e| panic!("{key}: {e:?}"));
            assert!(got == *value, "{key}: a different value came back");
        }
    }
}

/// Three nodes in a ring with no delay anywhere (the loop is only the nodes' queues, a period
/// of well under a millisecond): a value written on one is read on the others, and stays.
/// Found by tests/docker.rs's ring of containers.
#[test]
fn a_ring_without_delay_keeps_its_values() {
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_udp("127.0.0.1")).collect();
    let nodes: Vec<Node> = (0..3)
        .map(|i| Node::start(addrs[i], addrs[(i + 1) % 3], &[]))
        .collect();
    for node in &nodes {
        wait_closed(&node.client);
    }
    let value = pattern(20_000, 5);
    put(&nodes[0].client, "ring", &value).unwrap();
    for round in 0..3 {
        for (i, node) in nodes.iter().enumerate() {
            let got = get(&node.client, "ring").unwrap_or_else(|e| {
                panic!("round {round}, node {i}: {e:?} {:?}", stats(&node.client))
            });
            assert!(got == value, "round {round}, node {i}: a different value");
        }
    }
}
