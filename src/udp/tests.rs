//! The receiver and the sender against each other over real loopback sockets: every datagram
//! arrives once, whole and in order, with GRO and GSO on or off on either side, and what the
//! kernel drops or refuses is counted.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use super::socket::set_int_option;
use super::*;

const BIG: SocketOptions = SocketOptions {
    recv_buffer: 4 << 20,
    send_buffer: 4 << 20,
};

fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        (Ipv6Addr::LOCALHOST, 0).into()
    } else {
        (Ipv4Addr::LOCALHOST, 0).into()
    }
}

/// A socket on the loopback address of one family, or None when IPv6 is unavailable.
fn bound(v6: bool, options: &SocketOptions) -> Option<BoundSocket> {
    match bind(loopback(v6), options) {
        Ok(socket) => Some(socket),
        Err(e) if v6 => {
            eprintln!("skipping the IPv6 case: {e}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Receives until `want` datagrams arrived (in several calls if the kernel hands them over
/// in pieces), failing after a few seconds.
fn recv_all(rx: &mut Receiver, want: usize, slot: usize) -> Vec<(Vec<u8>, SocketAddr)> {
    rx.socket()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut batch = Batch::new(slot);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < want {
        assert!(
            Instant::now() < deadline,
            "only {} of {want} datagrams arrived",
            got.len()
        );
        let report = rx.recv(&mut batch).unwrap();
        assert_eq!(report.received, batch.len());
        for i in 0..batch.len() {
            got.push((batch.datagram(i).to_vec(), batch.peer(i).unwrap()));
        }
    }
    got
}

fn pattern(i: usize, len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(move |k| (i * 31 + k) as u8)
}

fn fill(batch: &mut Batch, sizes: &[usize]) {
    for (i, &len) in sizes.iter().enumerate() {
        assert!(batch.push_with(|slot| {
            for (dst, src) in slot.iter_mut().zip(pattern(i, len)) {
                *dst = src;
            }
            len
        }));
    }
}

fn round_trip(v6: bool) {
    let (Some(a), Some(b)) = (bound(v6, &BIG), bound(v6, &BIG)) else {
        return;
    };
    let dest: SockAddr = b.socket.local_addr().unwrap().into();
    let from = a.socket.local_addr().unwrap();
    let slot = 1500;
    let sizes: Vec<usize> = (0..BATCH_SLOTS).map(|i| (i * 97) % (slot + 1)).collect();
    assert_eq!(sizes[0], 0);
    let mut batch = Batch::new(slot);
    fill(&mut batch, &sizes);
    assert!(batch.is_full());
    assert!(!batch.push_with(|_| unreachable!("a full batch must not call write")));
    assert_eq!(batch.kept(), BATCH_SLOTS);
    assert_eq!(batch.kept_bytes(), sizes.iter().sum::<usize>());

    let mut tx = Sender::new(a.socket);
    let report = tx.send_to(&batch, &dest).unwrap();
    assert_eq!(
        (report.sent, report.bytes, report.failed),
        (BATCH_SLOTS, batch.kept_bytes(), 0)
    );

    let mut rx = Receiver::new(b.socket, slot);
    let got = recv_all(&mut rx, BATCH_SLOTS, slot);
    assert_eq!(got.len(), BATCH_SLOTS);
    for (i, (payload, peer)) in got.iter().enumerate() {
        assert_eq!(payload.len(), sizes[i], "datagram {i}");
        assert!(
            payload.iter().copied().eq(pattern(i, sizes[i])),
            "datagram {i} corrupted"
        );
        assert_eq!(*peer, from);
    }
}

#[test]
fn batch_round_trips_in_order_ipv4() {
    round_trip(false);
}

#[test]
fn batch_round_trips_in_order_ipv6() {
    round_trip(true);
}

#[test]
fn oversize_datagram_is_counted_as_truncated() {
    let a = bound(false, &BIG).unwrap();
    let b = bound(false, &BIG).unwrap();
    let dest: SockAddr = b.socket.local_addr().unwrap().into();
    let mut batch = Batch::new(200);
    fill(&mut batch, &[10, 200, 5]);
    let mut tx = Sender::new(a.socket);
    tx.send_to(&batch, &dest).unwrap();

    // The receiver's slots are smaller than the middle datagram.
    let mut rx = Receiver::new(b.socket, 100);
    rx.socket()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Batch::new(100);
    let (mut payloads, mut truncated) = (Vec::new(), 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while payloads.len() + truncated < 3 {
        assert!(Instant::now() < deadline);
        let report = rx.recv(&mut got).unwrap();
        truncated += report.truncated;
        payloads.extend((0..got.len()).map(|i| got.datagram(i).to_vec()));
    }
    assert_eq!(
        payloads,
        vec![pattern(0, 10).collect::<Vec<u8>>(), pattern(2, 5).collect()]
    );
    assert_eq!(truncated, 1);
}

#[test]
fn discarded_datagrams_are_not_sent() {
    let a = bound(false, &BIG).unwrap();
    let b = bound(false, &BIG).unwrap();
    let dest: SockAddr = b.socket.local_addr().unwrap().into();
    let mut batch = Batch::new(64);
    fill(&mut batch, &[1, 2, 3, 4, 5]);
    batch.discard(1);
    batch.discard(3);
    assert!(!batch.is_kept(1) && batch.is_kept(2));
    assert_eq!((batch.kept(), batch.kept_bytes()), (3, 1 + 3 + 5));
    let report = Sender::new(a.socket).send_to(&batch, &dest).unwrap();
    assert_eq!((report.sent, report.bytes), (3, 9));
    let mut rx = Receiver::new(b.socket, 64);
    let got = recv_all(&mut rx, 3, 64);
    let sizes: Vec<usize> = got.iter().map(|(p, _)| p.len()).collect();
    assert_eq!(sizes, vec![1, 3, 5]);
}

fn echo_to_peers(v6: bool) {
    let (Some(server), Some(c1), Some(c2)) = (bound(v6, &BIG), bound(v6, &BIG), bound(v6, &BIG))
    else {
        return;
    };
    let server_addr: SockAddr = server.socket.local_addr().unwrap().into();
    let mut rx = Receiver::new(server.socket.try_clone().unwrap(), 256);
    let mut echo = Sender::new(server.socket);
    let mut c1_tx = Sender::new(c1.socket.try_clone().unwrap());
    let mut c2_tx = Sender::new(c2.socket.try_clone().unwrap());
    let mut batch = Batch::new(256);
    fill(&mut batch, &[7, 8, 9]);
    c1_tx.send_to(&batch, &server_addr).unwrap();
    batch.clear();
    fill(&mut batch, &[20, 21]);
    c2_tx.send_to(&batch, &server_addr).unwrap();

    // Echo everything back to wherever it came from.
    rx.socket()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut echoed = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while echoed < 5 {
        assert!(Instant::now() < deadline);
        rx.recv(&mut batch).unwrap();
        echoed += echo.send_to_peers(&batch).unwrap().sent;
    }
    let mut c1_rx = Receiver::new(c1.socket, 256);
    let mut c2_rx = Receiver::new(c2.socket, 256);
    let sizes =
        |got: Vec<(Vec<u8>, SocketAddr)>| got.iter().map(|(p, _)| p.len()).collect::<Vec<_>>();
    assert_eq!(sizes(recv_all(&mut c1_rx, 3, 256)), vec![7, 8, 9]);
    assert_eq!(sizes(recv_all(&mut c2_rx, 2, 256)), vec![20, 21]);
}

#[test]
fn send_to_peers_returns_to_sender_ipv4() {
    echo_to_peers(false);
}

#[test]
fn send_to_peers_returns_to_sender_ipv6() {
    echo_to_peers(true);
}

#[test]
fn roles_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<Batch>();
    send::<Receiver>();
    send::<Sender>();
}

#[test]
fn read_timeout_returns_nothing() {
    let a = bound(false, &BIG).unwrap();
    a.socket
        .set_read_timeout(Some(Duration::from_millis(30)))
        .unwrap();
    let mut rx = Receiver::new(a.socket, 100);
    let mut batch = Batch::new(100);
    fill(&mut batch, &[3]);
    let started = Instant::now();
    let report = rx.recv(&mut batch).unwrap();
    assert_eq!(report.received, 0);
    assert!(batch.is_empty(), "recv clears the batch");
    assert!(started.elapsed() >= Duration::from_millis(25));
    assert_eq!(rx.recv_nonblocking(&mut batch).unwrap().received, 0);
}

#[test]
fn refused_datagram_is_skipped_and_counted() {
    let a = bound(false, &BIG).unwrap();
    let b = bound(false, &BIG).unwrap();
    let dest: SockAddr = b.socket.local_addr().unwrap().into();
    // 66000 bytes cannot go in one IPv4 UDP datagram: EMSGSIZE for that one only.
    let mut batch = Batch::new(66_000);
    fill(&mut batch, &[10, 66_000, 11]);
    let report = Sender::new(a.socket.try_clone().unwrap())
        .send_to(&batch, &dest)
        .unwrap();
    assert_eq!((report.sent, report.bytes, report.failed), (2, 21, 1));
    // A destination of the wrong family fails the same way.
    let v6: SockAddr = SocketAddr::from((Ipv6Addr::LOCALHOST, 9)).into();
    let report = Sender::new(a.socket).send_to(&batch, &v6).unwrap();
    assert_eq!((report.sent, report.failed), (0, 3));
    let mut rx = Receiver::new(b.socket, 66_000);
    let got = recv_all(&mut rx, 2, 66_000);
    assert_eq!(
        got.iter().map(|(p, _)| p.len()).collect::<Vec<_>>(),
        vec![10, 11]
    );
}

#[test]
fn kernel_drops_are_reported() {
    // The smallest receive buffer the kernel allows; flood it without reading.
    let tiny = SocketOptions {
        recv_buffer: 1,
        send_buffer: 0,
    };
    let a = bound(false, &BIG).unwrap();
    let b = bound(false, &tiny).unwrap();
    let dest: SockAddr = b.socket.local_addr().unwrap().into();
    let mut tx = Sender::new(a.socket);
    let mut batch = Batch::new(512);
    fill(&mut batch, &[512; BATCH_SLOTS]);
    for _ in 0..16 {
        assert_eq!(tx.send_to(&batch, &dest).unwrap().sent, BATCH_SLOTS);
    }
    let mut rx = Receiver::new(b.socket, 512);
    rx.socket()
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut received = 0;
    let mut drops = 0;
    // Drain what fit, then send one more: the kernel reports its count with the next
    // datagram it queues.
    loop {
        let report = rx.recv(&mut batch).unwrap();
        if report.received == 0 {
            break;
        }
        received += report.received;
        drops += report.kernel_drops;
    }
    batch.clear();
    fill(&mut batch, &[1]);
    tx.send_to(&batch, &dest).unwrap();
    let report = rx.recv(&mut batch).unwrap();
    assert_eq!(report.received, 1);
    drops += report.kernel_drops;
    assert!(received < 16 * BATCH_SLOTS, "nothing was dropped");
    // Drops before the socket (a full loopback backlog) are not the socket's to count.
    assert!(
        drops > 0 && drops as usize <= 16 * BATCH_SLOTS - received,
        "{drops} drops"
    );
    // The counter is cumulative in the kernel but reported as a delta.
    batch.clear();
    fill(&mut batch, &[1]);
    tx.send_to(&batch, &dest).unwrap();
    assert_eq!(rx.recv(&mut batch).unwrap().kernel_drops, 0);
}

/// Sizes that make runs of every kind: long equal runs (more than one segmented send can
/// carry), runs ending in a shorter datagram, a longer one breaking a run, lone sizes, an
/// empty datagram, and a run longer than a batch so that a coalesced receive spans batches.
fn mixed_sizes(slot: usize) -> Vec<usize> {
    let mut sizes = Vec::new();
    sizes.extend([1000; 70]);
    sizes.push(600);
    sizes.extend([slot; 300]);
    sizes.extend([0, 7, 7, 7, 9, 3, 1]);
    sizes.extend([50; 10]);
    sizes.push(slot);
    sizes.extend((1..=20).map(|k| k * 61));
    sizes.extend([slot; 200]);
    sizes.push(1);
    sizes
}

/// Sends `sizes` (in batches) from a socket to another, with GSO and GRO as asked, and
/// checks that every datagram arrives once, whole and in order. Returns whether the
/// receiver saw coalesced messages, and the sender's final GSO state.
fn exchange(v6: bool, sizes: &[usize], slot: usize, gso: bool, gro: bool) -> Option<(bool, bool)> {
    let (a, b) = (bound(v6, &BIG)?, bound(v6, &BIG)?);
    let from = a.socket.local_addr().unwrap();
    let dest: SockAddr = b.socket.local_addr().unwrap().into();
    let mut tx = if gso {
        Sender::new(a.socket)
    } else {
        Sender::without_gso(a.socket)
    };
    let mut rx = if gro {
        Receiver::new(b.socket, slot)
    } else {
        Receiver::without_gro(b.socket, slot)
    };
    assert!(!tx.gso() || gso, "GSO off was asked for");
    assert!(!rx.gro() || gro, "GRO off was asked for");
    let mut batch = Batch::new(slot);
    let mut sent = 0;
    for (first, chunk) in sizes.chunks(BATCH_SLOTS).enumerate() {
        batch.clear();
        for (k, &len) in chunk.iter().enumerate() {
            let n = first * BATCH_SLOTS + k;
            assert!(batch.push_with(|buf| {
                for (dst, src) in buf.iter_mut().zip(pattern(n, len)) {
                    *dst = src;
                }
                len
            }));
        }
        let report = tx.send_to(&batch, &dest).unwrap();
        assert_eq!(
            (report.sent, report.bytes, report.failed),
            (chunk.len(), chunk.iter().sum(), 0)
        );
        sent += report.sent;
    }
    assert_eq!(sent, sizes.len());

    rx.socket()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = 0;
    let mut coalesced = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while got < sizes.len() {
        assert!(
            Instant::now() < deadline,
            "only {got} of {} arrived",
            sizes.len()
        );
        let report = rx.recv(&mut batch).unwrap();
        assert_eq!(
            (report.received, report.truncated, report.kernel_drops),
            (batch.len(), 0, 0)
        );
        coalesced |= rx.coalesced();
        for i in 0..batch.len() {
            let n = got + i;
            assert!(n < sizes.len(), "more datagrams than were sent");
            assert_eq!(batch.datagram(i).len(), sizes[n], "datagram {n}");
            assert!(
                batch.datagram(i).iter().copied().eq(pattern(n, sizes[n])),
                "datagram {n} corrupted"
            );
            assert_eq!(batch.peer(i), Some(from));
        }
        got += batch.len();
    }
    assert_eq!(
        rx.recv_nonblocking(&mut batch).unwrap().received,
        0,
        "nothing extra"
    );
    Some((coalesced, tx.gso()))
}

#[test]
fn coalesced_datagrams_are_split_in_order_ipv4() {
    let Some((coalesced, gso)) = exchange(false, &mixed_sizes(1232), 1232, true, true) else {
        return;
    };
    assert!(gso, "GSO was given up");
    assert!(coalesced, "GSO and GRO on, yet no datagrams were coalesced");
}

#[test]
fn coalesced_datagrams_are_split_in_order_ipv6() {
    if let Some((coalesced, _)) = exchange(true, &mixed_sizes(1232), 1232, true, true) {
        assert!(coalesced, "GSO and GRO on, yet no datagrams were coalesced");
    }
}

#[test]
fn segmented_sends_reach_a_receiver_without_gro() {
    // The kernel splits them again before queueing.
    let (coalesced, _) = exchange(false, &mixed_sizes(1232), 1232, true, false).unwrap();
    assert!(!coalesced);
}

#[test]
fn plain_sends_reach_a_receiver_with_gro() {
    let (coalesced, gso) = exchange(false, &mixed_sizes(1232), 1232, false, true).unwrap();
    assert!(!coalesced && !gso);
}

#[test]
fn plain_sends_reach_a_plain_receiver() {
    let (coalesced, _) = exchange(false, &mixed_sizes(1232), 1232, false, false).unwrap();
    assert!(!coalesced);
}

#[test]
fn refused_segmented_sends_go_one_by_one() {
    // The kernel refuses to segment for a socket that sends without UDP checksums (EINVAL),
    // as it may for a route that cannot: the datagrams still go, and GSO is given up.
    let a = bound(false, &BIG).unwrap();
    let b = bound(false, &BIG).unwrap();
    set_int_option(a.socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
    let dest: SockAddr = b.socket.local_addr().unwrap().into();
    let mut tx = Sender::new(a.socket);
    if !tx.gso() {
        eprintln!("skipping: no GSO on this kernel");
        return;
    }
    let sizes = [300, 300, 300, 100, 20, 20];
    let mut batch = Batch::new(300);
    fill(&mut batch, &sizes);
    let report = tx.send_to(&batch, &dest).unwrap();
    assert_eq!((report.sent, report.bytes, report.failed), (6, 1040, 0));
    assert!(!tx.gso(), "GSO is given up after a refusal");
    let mut rx = Receiver::new(b.socket, 300);
    let got = recv_all(&mut rx, 6, 300);
    for (i, (payload, _)) in got.iter().enumerate() {
        assert!(
            payload.iter().copied().eq(pattern(i, sizes[i])),
            "datagram {i}"
        );
    }
}

#[test]
fn each_datagram_is_handed_over_without_a_batch() {
    let a = bound(false, &BIG).unwrap();
    let b = bound(false, &BIG).unwrap();
    let from = a.socket.local_addr().unwrap();
    let dest: SockAddr = b.socket.local_addr().unwrap().into();
    // Slots of 100 bytes: the 150-byte run is too large and counted, the rest arrives.
    let sizes = [40, 40, 40, 150, 150, 150, 100, 100, 0, 60];
    let mut batch = Batch::new(150);
    fill(&mut batch, &sizes);
    // GRO applies to what is queued after it is turned on.
    let mut rx = Receiver::new(b.socket, 100);
    Sender::new(a.socket).send_to(&batch, &dest).unwrap();
    let (mut got, mut truncated, mut coalesced) = (Vec::new(), 0, false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() + truncated < sizes.len() {
        assert!(Instant::now() < deadline, "only {} arrived", got.len());
        let report = rx
            .recv_each_nonblocking(|peer, datagram| got.push((peer.to_vec(), datagram.to_vec())))
            .unwrap();
        truncated += report.truncated;
        coalesced |= rx.coalesced();
    }
    assert_eq!(truncated, 3);
    assert!(coalesced || !rx.gro(), "GRO on, yet nothing was coalesced");
    let expected: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i] <= 100).collect();
    assert_eq!(got.len(), expected.len());
    for ((peer, payload), &i) in got.iter().zip(&expected) {
        assert!(
            payload.iter().copied().eq(pattern(i, sizes[i])),
            "datagram {i}"
        );
        assert_eq!(peer.as_slice(), sockaddr_bytes(&from.into()));
    }
}
