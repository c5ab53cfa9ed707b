//! The delay-line store end to end: real `elayday` processes on loopback, a real gRPC client.

mod common;

use std::time::{Duration, Instant};

use common::*;
use grpcio::RpcStatusCode;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn round_trips_of_every_size() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    for (key, len) in [
        ("empty", 0),
        ("one", 1),
        ("kib", 1024),
        ("ten-mib", 10 << 20),
    ] {
        let value = pattern(len, len as u8);
        put(&node.client, key, &value).unwrap();
        let got = get(&node.client, key).unwrap();
        assert_eq!(got.len(), value.len(), "{key}");
        assert!(got == value, "{key}: value differs");
    }
}

#[test]
fn seed_command_lines_on_ipv6() {
    if !ipv6_available() {
        eprintln!("skipped: no IPv6 loopback");
        return;
    }
    let reflector_addr = free_udp("[::1]");
    let _reflector = reflector(reflector_addr, "0.2");
    let node = Node::start(free_udp("[::1]"), reflector_addr, &[]);
    wait_closed(&node.client);
    // The seed README's value: "Hello world \n".
    put(&node.client, "foo", b"Hello world \n").unwrap();
    assert_eq!(get(&node.client, "foo").unwrap(), b"Hello world \n");
}

#[test]
fn keys_are_validated() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let (c, message) = code(put(&node.client, "", b"x"));
    assert_eq!(c, RpcStatusCode::INVALID_ARGUMENT);
    assert!(message.contains("must not be empty"), "{message}");
    let long = "k".repeat(1025);
    let (c, message) = code(get(&node.client, &long));
    assert_eq!(c, RpcStatusCode::INVALID_ARGUMENT);
    assert!(
        message.contains("1025 bytes; the limit is 1024"),
        "{message}"
    );
    let longest = "k".repeat(1024);
    put(&node.client, &longest, &pattern(5000, 1)).unwrap();
    assert_eq!(get(&node.client, &longest).unwrap(), pattern(5000, 1));
    assert_eq!(
        code(delete(&node.client, "")).0,
        RpcStatusCode::INVALID_ARGUMENT
    );
}

#[test]
fn requests_past_max_requests_are_refused_and_counted() {
    let (node, _reflector) = node_with_reflector("1", &["--max-requests", "2"]);
    let grpc = node.grpc;
    let start = std::sync::Arc::new(std::sync::Barrier::new(3));
    let gets: Vec<_> = (0..3)
        .map(|g| {
            let start = start.clone();
            std::thread::spawn(move || {
                let c = client(grpc);
                start.wait();
                code(get(&c, &format!("missing-{g}")))
            })
        })
        .collect();
    let answers: Vec<_> = gets.into_iter().map(|g| g.join().unwrap()).collect();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(c, _)| *c == RpcStatusCode::RESOURCE_EXHAUSTED)
        .collect();
    assert_eq!(refused.len(), 1, "{answers:?}");
    assert!(refused[0].1.contains("--max-requests"), "{answers:?}");
    let not_found = answers
        .iter()
        .filter(|(c, _)| *c == RpcStatusCode::NOT_FOUND);
    assert_eq!(not_found.count(), 2, "{answers:?}");
    assert_eq!(stats(&node.client).unwrap().refused["requests_full"], 1);
}

#[test]
fn values_over_the_limit_are_refused() {
    let (node, _reflector) = node_with_reflector("0.2", &["--max-value-size", "1M"]);
    let (c, message) = code(put(&node.client, "big", &vec![0; (1 << 20) + 1]));
    assert_eq!(c, RpcStatusCode::INVALID_ARGUMENT);
    assert!(message.contains("--max-value-size"), "{message}");
    put(&node.client, "fits", &vec![7; 1 << 20]).unwrap();
    assert_eq!(get(&node.client, "fits").unwrap().len(), 1 << 20);
}

#[test]
fn a_missing_key_is_not_found_after_one_loop() {
    let (node, _reflector) = node_with_reflector("0.5", &[]);
    put(&node.client, "present", b"yes").unwrap();
    let period = Duration::from_micros(wait_closed(&node.client).loop_period_last_us);
    for _ in 0..3 {
        let start = Instant::now();
        let (c, message) = code(get(&node.client, "absent"));
        let elapsed = start.elapsed();
        assert_eq!(c, RpcStatusCode::NOT_FOUND, "{message}");
        assert!(
            elapsed >= period.mul_f64(0.95),
            "answered after {elapsed:?}, loop period {period:?}"
        );
        assert!(
            elapsed <= period.mul_f64(1.5) + Duration::from_millis(50),
            "answered after {elapsed:?}, loop period {period:?}"
        );
    }
    assert_eq!(get(&node.client, "present").unwrap(), b"yes");
}

#[test]
fn a_get_returns_within_one_loop_wherever_it_starts() {
    let (node, _reflector) = node_with_reflector("0.5", &[]);
    put(&node.client, "k", &pattern(100_000, 3)).unwrap();
    let period = Duration::from_micros(wait_closed(&node.client).loop_period_last_us);
    for i in 0..5 {
        // Start at different points of the loop.
        std::thread::sleep(period / 5 * i);
        let start = Instant::now();
        assert_eq!(get(&node.client, "k").unwrap(), pattern(100_000, 3));
        let elapsed = start.elapsed();
        assert!(
            elapsed < period + Duration::from_millis(150),
            "took {elapsed:?}, period {period:?}"
        );
    }
}

#[test]
fn overwrite_wins_and_the_old_version_leaves_the_loop() {
    let (node, _reflector, tap) = node_behind_tap("0.3");
    put(&node.client, "marker", b"m").unwrap();
    put(&node.client, "k", &pattern(50_000, 1)).unwrap();
    assert_eq!(get(&node.client, "k").unwrap(), pattern(50_000, 1));
    put(&node.client, "k", &pattern(30_000, 2)).unwrap();
    // The node that took the write never returns the older value afterwards.
    for _ in 0..3 {
        assert_eq!(get(&node.client, "k").unwrap(), pattern(30_000, 2));
    }
    // One loop after the overwrite every older datagram has passed this node; in the loop after
    // that, only the new version crosses the link.
    tap.wait_one_loop(b"marker", 1);
    tap.wait_one_loop(b"marker", 1);
    let census = tap.census();
    let versions: Vec<_> = census.keys().filter(|(k, _, _)| k == b"k").collect();
    assert_eq!(
        versions.len(),
        1,
        "versions of k still circulating: {census:?}"
    );
}

#[test]
fn delete_removes_the_key_from_the_loop() {
    let (node, _reflector, tap) = node_behind_tap("0.3");
    put(&node.client, "gone", &pattern(20_000, 9)).unwrap();
    put(&node.client, "stays", b"here").unwrap();
    assert_eq!(get(&node.client, "gone").unwrap(), pattern(20_000, 9));
    delete(&node.client, "gone").unwrap();
    let (c, _) = code(get(&node.client, "gone"));
    assert_eq!(c, RpcStatusCode::NOT_FOUND);
    tap.wait_one_loop(b"stays", 1);
    tap.wait_one_loop(b"stays", 1);
    let census = tap.census();
    assert!(
        census.keys().all(|(k, _, _)| k != b"gone"),
        "deleted key still circulates: {census:?}"
    );
    assert_eq!(get(&node.client, "stays").unwrap(), b"here");
    // Deleting a key that is not there is not an error.
    delete(&node.client, "never-was").unwrap();
}

#[test]
fn an_open_loop_is_unavailable() {
    let (node, reflector) = node_with_reflector("0.2", &["--loop-timeout", "0.5"]);
    put(&node.client, "k", b"v").unwrap();
    reflector.kill();
    wait_until(Duration::from_secs(10), "the node to notice", || {
        stats(&node.client).ok().filter(|s| !s.loop_closed)
    });
    let (c, message) = code(get(&node.client, "k"));
    assert_eq!(c, RpcStatusCode::UNAVAILABLE);
    assert!(message.contains("delay line is broken"), "{message}");
    let (c, _) = code(put(&node.client, "k2", b"v"));
    assert_eq!(c, RpcStatusCode::UNAVAILABLE);
    node.process
        .wait_for_log("the delay line is broken", Duration::from_secs(5));
}

#[test]
fn the_loop_heals_when_the_reflector_comes_back() {
    let reflector_addr = free_udp("127.0.0.1");
    let first = reflector(reflector_addr, "0.1");
    let node = Node::start(
        free_udp("127.0.0.1"),
        reflector_addr,
        &["--loop-timeout", "0.3"],
    );
    wait_closed(&node.client);
    first.kill();
    wait_until(Duration::from_secs(10), "the loop to break", || {
        stats(&node.client).ok().filter(|s| !s.loop_closed)
    });
    let _second = reflector(reflector_addr, "0.1");
    wait_closed(&node.client);
    put(&node.client, "k", b"again").unwrap();
    assert_eq!(get(&node.client, "k").unwrap(), b"again");
}

#[test]
fn a_get_on_an_unstarted_loop_waits_then_fails() {
    // The destination never answers: nothing comes back at all.
    let silent = free_udp("127.0.0.1");
    let node = Node::start(free_udp("127.0.0.1"), silent, &["--loop-timeout", "0.3"]);
    let start = Instant::now();
    let (c, _) = code(get(&node.client, "k"));
    assert_eq!(c, RpcStatusCode::UNAVAILABLE);
    assert!(start.elapsed() < Duration::from_secs(5));
    let (c, _) = code(put(&node.client, "k", b"v"));
    assert_eq!(c, RpcStatusCode::UNAVAILABLE);
}

#[test]
fn deadlines_and_cancellations_free_the_request() {
    let (node, _reflector) = node_with_reflector("1", &[]);
    let req = elayday::proto::elayday::GetValueRequest {
        key: "absent".into(),
        ..Default::default()
    };
    let start = Instant::now();
    let result = node
        .client
        .get_value_opt(&req, opt(Duration::from_millis(200)));
    assert_eq!(code(result).0, RpcStatusCode::DEADLINE_EXCEEDED);
    assert!(start.elapsed() < Duration::from_millis(900));
    // Cancel a call in flight by dropping its receiver.
    let call = node
        .client
        .get_value_async_opt(&req, opt(CALL_TIMEOUT))
        .unwrap();
    drop(call);
    wait_until(Duration::from_secs(5), "the pending table to empty", || {
        let s = stats(&node.client).ok()?;
        // The stats call itself is the only pending request.
        (s.pending_requests <= 1).then_some(())
    });
}

#[test]
fn three_node_ring() {
    // n1 -> n2 -> n3 -> link (150 ms) -> n1
    let addrs: Vec<_> = (0..3).map(|_| free_udp("127.0.0.1")).collect();
    let link = Relay::start("127.0.0.1", addrs[0], Duration::from_millis(150));
    let n1 = Node::start(addrs[0], addrs[1], &[]);
    let n2 = Node::start(addrs[1], addrs[2], &[]);
    let n3 = Node::start(addrs[2], link.addr, &[]);
    for n in [&n1, &n2, &n3] {
        wait_closed(&n.client);
    }
    put(&n1.client, "ring", &pattern(200_000, 5)).unwrap();
    assert_eq!(get(&n2.client, "ring").unwrap(), pattern(200_000, 5));
    assert_eq!(get(&n3.client, "ring").unwrap(), pattern(200_000, 5));
    put(&n3.client, "ring", b"overwritten on n3").unwrap();
    wait_until(Duration::from_secs(10), "n1 to see the overwrite", || {
        (get(&n1.client, "ring").ok()? == b"overwritten on n3").then_some(())
    });
    delete(&n2.client, "ring").unwrap();
    assert_eq!(code(get(&n2.client, "ring")).0, RpcStatusCode::NOT_FOUND);
    for n in [&n1, &n3] {
        wait_until(
            Duration::from_secs(10),
            "the deletion to reach every node",
            || {
                let result = get(&n.client, "ring");
                matches!(result, Err(grpcio::Error::RpcFailure(s)) if s.code() == RpcStatusCode::NOT_FOUND)
                .then_some(())
            },
        );
    }
}

#[test]
fn a_thousand_keys() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let req = elayday::proto::elayday::PutValueRequest {
                key: format!("key-{i}"),
                value: format!("value-{i}").into_bytes(),
                ..Default::default()
            };
            node.client
                .put_value_async_opt(&req, opt(CALL_TIMEOUT))
                .unwrap()
        })
        .collect();
    for call in calls {
        futures_executor::block_on(call).unwrap();
    }
    let calls: Vec<_> = (0..1000)
        .map(|i| {
            let req = elayday::proto::elayday::GetValueRequest {
                key: format!("key-{i}"),
                ..Default::default()
            };
            node.client
                .get_value_async_opt(&req, opt(CALL_TIMEOUT))
                .unwrap()
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let value = futures_executor::block_on(call).unwrap().value;
        assert_eq!(value, format!("value-{i}").into_bytes());
    }
    // Every value is counted once per full loop (the window of the node's last probe).
    wait_until(
        Duration::from_secs(10),
        "1000 values counted in one loop",
        || {
            stats(&node.client)
                .ok()
                .filter(|s| s.circulating_values == 1000)
        },
    );
}

#[test]
fn sixteen_concurrent_clients() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let grpc = node.grpc;
    let workers: Vec<_> = (0..16)
        .map(|w| {
            std::thread::spawn(move || {
                let c = client(grpc);
                for round in 0..5 {
                    let key = format!("client-{w}");
                    let value = pattern(1000 + w * 100 + round, (w * 7 + round) as u8);
                    put(&c, &key, &value).unwrap();
                    assert_eq!(get(&c, &key).unwrap(), value, "client {w} round {round}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

#[test]
fn garbage_datagrams_are_dropped_and_counted() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    put(&node.client, "k", &pattern(10_000, 4)).unwrap();
    let valid = {
        let repr = elayday::wire::DataRepr {
            origin: 42,
            hlc: 1,
            geometry: elayday::wire::Geometry {
                value_len: 3,
                chunk_len: 100,
                data: 1,
                parity: 0,
            },
            stripe: 0,
            shard: 0,
            lap: 0,
            key: b"x",
            payload: b"abc",
        };
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(&mut buf);
        buf
    };
    let attacker = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..2000 {
        let datagram: Vec<u8> = match i % 4 {
            0 => (0..(next() % 1200) as usize)
                .map(|_| next() as u8)
                .collect(),
            1 => valid[..(next() as usize % valid.len())].to_vec(),
            2 => {
                let mut d = valid.clone();
                let at = 12 + next() as usize % (d.len() - 12);
                d[at] ^= 1 << (next() % 8);
                d
            }
            _ => {
                let mut d = valid.clone();
                d[4] = 3; // a future format version
                d
            }
        };
        attacker.send_to(&datagram, node.udp).unwrap();
    }
    let s = wait_until(Duration::from_secs(10), "the garbage to be counted", || {
        let s = stats(&node.client).ok()?;
        let dropped: u64 = [
            "truncated",
            "bad_magic",
            "unsupported_version",
            "bad_checksum",
            "malformed",
            "unknown_type",
        ]
        .iter()
        .map(|r| s.datagrams_dropped.get(*r).copied().unwrap_or(0))
        .sum();
        // All 2000 are invalid: wait until each was counted (or lost by the kernel), or the
        // counts below may be read while the last of the burst is still being processed.
        let lost = s.datagrams_dropped.get("kernel").copied().unwrap_or(0);
        (dropped + lost >= 2000).then_some(s)
    });
    if s.datagrams_dropped["kernel"] == 0 {
        assert_eq!(s.datagrams_dropped["unsupported_version"], 500, "{s:?}");
    }
    // A probe of a node that is long gone is taken out of the loop.
    let stale = elayday::wire::ProbeRepr {
        origin: 99,
        hlc: elayday::node::core::clock::stamp(unix_ms() - 3_600_000),
        sequence: 1,
        sent_at_ns: 0,
    };
    let mut buf = vec![0; stale.buffer_len()];
    stale.emit(&mut buf);
    attacker.send_to(&buf, node.udp).unwrap();
    wait_dropped(&node.client, "stale", 1);
    assert!(s.datagrams_dropped["truncated"] > 0, "{s:?}");
    assert!(s.loop_closed);
    assert_eq!(get(&node.client, "k").unwrap(), pattern(10_000, 4));
    put(&node.client, "after", b"fine").unwrap();
    assert_eq!(get(&node.client, "after").unwrap(), b"fine");
}

#[test]
fn sigterm_reports_what_was_circulating() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    put(&node.client, "k", &pattern(100_000, 1)).unwrap();
    wait_until(Duration::from_secs(10), "the value to be counted", || {
        stats(&node.client)
            .ok()
            .filter(|s| s.circulating_bytes >= 100_000)
    });
    let (status, log) = node.process.terminate();
    assert!(status.success(), "{status:?}");
    let line = log
        .iter()
        .find(|l| l.contains("were circulating and are lost"))
        .expect("summary line");
    let bytes: u64 = line
        .split("stopped; ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes >= 100_000, "{line}");
}

#[test]
fn a_write_that_does_not_come_back_whole_is_rolled_back() {
    let (node, _reflector, tap) = node_behind_tap("0.2");
    put(&node.client, "old", b"kept").unwrap();
    // Every other data datagram: 16 of each stripe's 32, more than its 8 parity datagrams.
    tap.lose(b"lossy", 2);
    let (c, message) = code(put(&node.client, "lossy", &pattern(100_000, 8)));
    assert_eq!(c, RpcStatusCode::DATA_LOSS, "{message}");
    assert!(message.contains("rolled back"), "{message}");
    tap.lose(b"", 0);
    assert_eq!(code(get(&node.client, "lossy")).0, RpcStatusCode::NOT_FOUND);
    // What did make it round is taken out of the loop.
    tap.wait_one_loop(b"old", 1);
    tap.wait_one_loop(b"old", 1);
    assert!(
        tap.census().keys().all(|(k, _, _)| k != b"lossy"),
        "{:?}",
        tap.census()
    );
    assert_eq!(get(&node.client, "old").unwrap(), b"kept");
}

#[test]
fn a_value_damaged_in_the_loop_is_data_loss_not_a_wrong_answer() {
    let (node, _reflector, tap) = node_behind_tap("0.2");
    put(&node.client, "fragile", &pattern(100_000, 2)).unwrap();
    // More than the parity can make up for.
    tap.lose(b"fragile", 2);
    wait_until(Duration::from_secs(10), "the damage to be seen", || {
        let result = get(&node.client, "fragile");
        matches!(&result, Err(grpcio::Error::RpcFailure(s)) if s.code() == RpcStatusCode::DATA_LOSS)
            .then_some(())
    });
}

#[test]
fn a_64_mib_value() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let value = pattern(64 << 20, 64);
    put(&node.client, "big", &value).unwrap();
    let got = get(&node.client, "big").unwrap();
    assert!(got == value, "64 MiB value differs");
}

#[test]
fn datagrams_longer_than_the_mtu_are_dropped_counted_and_logged() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sender.send_to(&[0u8; 2000], node.udp).unwrap();
    wait_dropped(&node.client, "truncated", 1);
    node.process
        .wait_for_log("longer than --mtu allows", Duration::from_secs(10));
    put(&node.client, "k", b"still fine").unwrap();
    assert_eq!(get(&node.client, "k").unwrap(), b"still fine");
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
