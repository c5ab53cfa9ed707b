//! The core on its own: one node closed by a perfect 10 ms reflector, driven by hand. The ring
//! simulator (`tests/sim`) covers whole rings under faults; these pin single behaviours.

use std::time::Duration;

use super::*;
use crate::wire::{self, DataRepr, Frame, Kind};

/// A one-stripe shape with no parity, for hand-made frames from other nodes.
fn plain(value_len: u64, chunk_len: u16) -> Geometry {
    Geometry {
        value_len,
        chunk_len,
        data: 192,
        parity: 0,
    }
}

const MAX_DATAGRAM: usize = 200;
const LAP: Duration = Duration::from_millis(10);
const STEP: Duration = Duration::from_micros(100);
const UNIX_START: u64 = 1_764_000_000_000;

/// Says which datagrams are lost on their way back to the node.
type Lose = Box<dyn FnMut(&[u8]) -> bool>;

struct Loop {
    core: Core,
    now: Now,
    /// Datagrams on their way back, with their arrival times.
    flight: Vec<(Duration, Vec<u8>)>,
    answers: Vec<(RequestId, Answer)>,
    next_id: RequestId,
    /// DATA frames the core has sent.
    sent_data: usize,
    /// Datagrams for which this says true are lost on their way back to the node.
    lose: Option<Lose>,
}

impl Loop {
    fn new(limits: Limits) -> Loop {
        let now = Now {
            mono: Duration::from_secs(5),
            unix_ms: UNIX_START + 5000,
        };
        let config = CoreConfig {
            id: 1,
            max_datagram: MAX_DATAGRAM,
            loop_timeout: Duration::from_millis(200),
            destination: "reflector".into(),
            limits,
            fec: Fec::default(),
        };
        let mut l = Loop {
            core: Core::new(config, now),
            now,
            flight: Vec::new(),
            answers: Vec::new(),
            next_id: 0,
            sent_data: 0,
            lose: None,
        };
        // Long enough for the probes to have measured the loop well (see
        // `PROBES_BEFORE_REPAIR`).
        l.run(LAP * 40);
        assert!(l.core.loop_closed());
        l
    }

    /// Runs the loop for `time`, in 100 µs steps.
    fn run(&mut self, time: Duration) {
        let end = self.now.mono + time;
        let mut buf = vec![0; MAX_DATAGRAM];
        while self.now.mono < end {
            self.now.mono += STEP;
            self.now.unix_ms = UNIX_START + self.now.mono.as_millis() as u64;
            let now = self.now;
            let (due, later): (Vec<_>, Vec<_>) =
                self.flight.drain(..).partition(|(at, _)| *at <= now.mono);
            self.flight = later;
            for (_, mut d) in due {
                if self.lose.as_mut().is_some_and(|lose| lose(&d)) {
                    continue;
                }
                if self.core.on_datagram(&mut d, now) {
                    self.flight.push((now.mono + LAP, d));
                }
            }
            self.core.on_timer(now);
            while let Some(len) = self.core.poll_transmit(&mut buf, now) {
                if let Kind::Data(_) = Frame::new_checked(&buf[..len]).unwrap().kind() {
                    self.sent_data += 1;
                }
                self.flight.push((now.mono + LAP, buf[..len].to_vec()));
            }
            while let Some(answer) = self.core.poll_answer() {
                self.answers.push(answer);
            }
        }
    }

    fn request(&mut self, make: impl FnOnce(RequestId) -> Command) -> Answer {
        self.next_id += 1;
        let id = self.next_id;
        self.core.on_command(make(id), self.now);
        for _ in 0..100 {
            if let Some(i) = self.answers.iter().position(|(a, _)| *a == id) {
                return self.answers.remove(i).1;
            }
            self.run(Duration::from_millis(5));
        }
        panic!("request {id} not answered in 500 ms");
    }

    fn put(&mut self, key: &str, value: &[u8]) -> Answer {
        let (key, value) = (key.as_bytes().to_vec(), value.to_vec());
        self.request(|id| Command::Put { id, key, value })
    }

    fn get(&mut self, key: &str) -> Answer {
        let key = key.as_bytes().to_vec();
        self.request(|id| Command::Get { id, key })
    }

    fn delete(&mut self, key: &str) -> Answer {
        let key = key.as_bytes().to_vec();
        self.request(|id| Command::Delete { id, key })
    }
}

/// A DATA frame from another node, as bytes.
fn emit(repr: &DataRepr<'_>) -> Vec<u8> {
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(&mut buf);
    buf
}

/// A one-fragment value `value` of `key`, written by node `origin` at stamp `hlc`.
fn whole_value(origin: u64, hlc: u64, key: &[u8], value: &[u8]) -> Vec<u8> {
    emit(&DataRepr {
        origin,
        hlc,
        geometry: plain(value.len() as u64, 100),
        stripe: 0,
        shard: 0,
        lap: 0,
        key,
        payload: value,
    })
}

fn limits() -> Limits {
    Limits::defaults(1 << 20)
}

fn failed(answer: Answer) -> Failure {
    match answer {
        Answer::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn value(answer: Answer) -> Vec<u8> {
    match answer {
        Answer::Value(v) => v,
        other => panic!("expected a value, got {other:?}"),
    }
}

#[test]
fn put_get_overwrite_delete() {
    let mut l = Loop::new(limits());
    let v1: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
    assert!(matches!(l.put("k", &v1), Answer::Done));
    assert_eq!(value(l.get("k")), v1);
    assert!(matches!(l.put("k", b"second"), Answer::Done));
    assert_eq!(value(l.get("k")), b"second");
    assert!(matches!(l.delete("k"), Answer::Done));
    assert_eq!(failed(l.get("k")).kind, FailureKind::NotFound);
    l.run(LAP * 10);
    assert!(l
        .flight
        .iter()
        .all(|(_, d)| { matches!(Frame::new_checked(&d[..]).unwrap().kind(), Kind::Probe(_)) }));
    assert_eq!(failed(l.get("missing")).kind, FailureKind::NotFound);
}

/// The crafted datagram of issue 6: our own key and version, a larger fragment count and index.
#[test]
fn a_forged_fragment_of_a_write_being_confirmed_is_dropped() {
    let mut l = Loop::new(limits());
    l.next_id += 1;
    let id = l.next_id;
    let value = vec![7u8; 1000];
    l.core.on_command(
        Command::Put {
            id,
            key: b"k".to_vec(),
            value: value.clone(),
        },
        l.now,
    );
    l.run(Duration::from_millis(2));
    let real = l
        .flight
        .iter()
        .find(|(_, d)| matches!(Frame::new_checked(&d[..]).unwrap().kind(), Kind::Data(_)))
        .unwrap()
        .1
        .clone();
    let frame = Frame::new_checked(&real[..]).unwrap();
    let forged = DataRepr {
        origin: frame.origin(),
        hlc: frame.hlc(),
        geometry: Geometry {
            value_len: 1_000_000,
            chunk_len: 10,
            data: 32,
            parity: 8,
        },
        stripe: 3000,
        shard: 39,
        lap: 0,
        key: b"k",
        payload: &[0; 10],
    };
    let buf = emit(&forged);
    assert!(!l.core.on_datagram(&mut buf.clone(), l.now));
    assert_eq!(l.core.dropped(DropReason::Inconsistent), 1);
    l.run(LAP * 3);
    assert!(l
        .answers
        .iter()
        .any(|(a, ans)| *a == id && matches!(ans, Answer::Done)));
    assert_eq!(value_of(&mut l, "k"), value);
}

fn value_of(l: &mut Loop, key: &str) -> Vec<u8> {
    value(l.get(key))
}

#[test]
fn a_write_that_does_not_come_back_is_rolled_back_without_waiting_for_anything() {
    let mut l = Loop::new(limits());
    l.next_id += 1;
    let id = l.next_id;
    l.core.on_command(
        Command::Put {
            id,
            key: b"k".to_vec(),
            value: vec![1; 2000],
        },
        l.now,
    );
    // Lose 9 data fragments of the write on their way back: one more than its stripe's 8
    // parity fragments.
    let mut lost = 0;
    l.lose = Some(Box::new(move |d: &[u8]| {
        let frame = Frame::new_checked(d).unwrap();
        let data = matches!(frame.kind(), Kind::Data(_));
        lost += usize::from(data && lost < 9);
        data && lost <= 9 && frame.origin() == 1
    }));
    l.run(LAP * 4);
    let answer = l.answers.iter().position(|(a, _)| *a == id).unwrap();
    let failure = failed(l.answers.remove(answer).1);
    assert_eq!(failure.kind, FailureKind::DataLoss);
    assert!(
        failure.message.contains("rolled back"),
        "{}",
        failure.message
    );
    l.run(LAP * 2);
    assert_eq!(failed(l.get("k")).kind, FailureKind::NotFound);
}

#[test]
fn every_limit_refuses_with_resource_exhausted() {
    let mut small = limits();
    small.max_records = 2;
    let mut l = Loop::new(small);
    assert!(matches!(l.put("a", b"1"), Answer::Done));
    assert!(matches!(l.put("b", b"2"), Answer::Done));
    let f = failed(l.put("c", b"3"));
    assert_eq!(f.kind, FailureKind::ResourceExhausted);
    assert!(f.message.contains("--max-records"), "{}", f.message);
    assert!(
        matches!(l.put("a", b"again"), Answer::Done),
        "a known key has room"
    );

    let mut small = limits();
    small.max_write_backlog = 4000;
    let mut l = Loop::new(small);
    l.core.on_command(
        Command::Put {
            id: 100,
            key: b"big".to_vec(),
            value: vec![0; 3000],
        },
        l.now,
    );
    let f = failed(l.put("more", &[0; 3000]));
    assert_eq!(f.kind, FailureKind::ResourceExhausted);
    assert!(f.message.contains("--max-write-backlog"), "{}", f.message);

    let mut small = limits();
    small.max_requests = 1;
    let mut l = Loop::new(small);
    l.core.on_command(
        Command::Get {
            id: 100,
            key: b"x".to_vec(),
        },
        l.now,
    );
    let f = failed(l.get("y"));
    assert_eq!(f.kind, FailureKind::ResourceExhausted);
    assert!(f.message.contains("--max-requests"), "{}", f.message);
    assert_eq!(
        l.core.stats(l.now, IoFigures::default()).refused[0],
        ("requests_full", 1)
    );
}

#[test]
fn a_get_whose_value_finds_no_room_says_so() {
    let mut small = limits();
    small.max_reassembly = 1000;
    small.max_value_size = 1000;
    let mut l = Loop::new(small);
    assert!(matches!(l.put("k", &[5; 900]), Answer::Done));
    // A GET of j holds 908 bytes: the first fragment of a 900-byte version went by.
    l.core.on_command(
        Command::Get {
            id: 100,
            key: b"j".to_vec(),
        },
        l.now,
    );
    let first = DataRepr {
        origin: 99,
        hlc: clock::stamp(l.now.unix_ms),
        geometry: plain(900, 100),
        stripe: 0,
        shard: 0,
        lap: 0,
        key: b"j",
        payload: &[6; 100],
    };
    let buf = emit(&first);
    assert!(l.core.on_datagram(&mut buf.clone(), l.now));
    assert_eq!(
        l.core.usage().reassembly,
        reassembly::cost(&plain(900, 100))
    );
    let f = failed(l.get("k"));
    assert_eq!(f.kind, FailureKind::ResourceExhausted, "{}", f.message);
    assert!(f.message.contains("--max-reassembly"), "{}", f.message);
    assert!(l.core.usage().reassembly <= 1000);
    // The datagrams of k that came by while j held the budget.
    let refused = l.core.stats(l.now, IoFigures::default()).refused;
    let (_, count) = refused
        .iter()
        .find(|(r, _)| *r == "reassembly_full")
        .unwrap();
    assert!(
        (1..=written(900).datagram_count()).contains(count),
        "{refused:?}"
    );
}

#[test]
fn the_largest_value_reads_back_at_the_least_reassembly_memory() {
    let mut small = limits();
    small.max_value_size = 10_000;
    small.max_reassembly = Limits::min_reassembly(10_000);
    let mut l = Loop::new(small);
    let v = vec![3u8; 10_000];
    assert!(matches!(l.put("k", &v), Answer::Done));
    assert_eq!(value(l.get("k")), v);
}

#[test]
fn a_key_stamped_by_a_clock_far_ahead_refuses_writes_with_a_reason() {
    let mut l = Loop::new(limits());
    let ahead = clock::stamp(l.now.unix_ms + 2 * 60 * 60 * 1000);
    let buf = whole_value(99, ahead, b"k", b"x");
    assert!(matches!(l.put("k", b"ours"), Answer::Done));
    assert!(
        l.core.on_datagram(&mut buf.clone(), l.now),
        "a newer version from elsewhere"
    );
    let f = failed(l.put("k", b"again"));
    assert_eq!(f.kind, FailureKind::Unavailable);
    assert!(f.message.contains("ms ahead"), "{}", f.message);
}

#[test]
fn a_broken_loop_fails_what_waits_and_heals() {
    let mut l = Loop::new(limits());
    l.next_id += 1;
    let id = l.next_id;
    l.core.on_command(
        Command::Get {
            id,
            key: b"k".to_vec(),
        },
        l.now,
    );
    // The reflector goes away: nothing comes back.
    let until = l.now.mono + Duration::from_millis(400);
    let mut buf = vec![0; MAX_DATAGRAM];
    while l.now.mono < until {
        l.now.mono += Duration::from_millis(1);
        l.now.unix_ms += 1;
        l.core.on_timer(l.now);
        while l.core.poll_transmit(&mut buf, l.now).is_some() {}
        while let Some(a) = l.core.poll_answer() {
            l.answers.push(a);
        }
    }
    l.flight.clear();
    assert!(!l.core.loop_closed());
    let (_, answer) = l.answers.iter().find(|(a, _)| *a == id).unwrap();
    assert!(matches!(answer, Answer::Failed(f) if f.kind == FailureKind::Unavailable));
    assert_eq!(failed(l.put("k", b"v")).kind, FailureKind::Unavailable);
    l.run(Duration::from_millis(200));
    assert!(l.core.loop_closed());
    assert!(matches!(l.put("k", b"v"), Answer::Done));
}

/// Seed 41/154 of the ring simulator: a deletion learned from another node's tombstone is not
/// the last word when a newer write passed here first.
#[test]
fn a_deletion_heard_from_elsewhere_does_not_hide_a_newer_write() {
    let mut l = Loop::new(limits());
    let data = whole_value(99, clock::stamp(l.now.unix_ms + 5), b"k", b"new");
    assert!(l.core.on_datagram(&mut data.clone(), l.now));
    l.flight.push((l.now.mono + LAP, data));
    let tombstone = wire::TombstoneRepr {
        origin: 98,
        hlc: clock::stamp(l.now.unix_ms),
        key: b"k",
    };
    let mut buf = vec![0; tombstone.buffer_len()];
    tombstone.emit(&mut buf);
    assert!(l.core.on_datagram(&mut buf.clone(), l.now));
    assert_eq!(value(l.get("k")), b"new");
}

/// Seed 1000611 of the ring simulator: a write replaced before its fragments went out sends
/// none of them.
#[test]
fn a_write_deleted_before_it_went_out_sends_nothing() {
    let mut l = Loop::new(limits());
    l.core.on_command(
        Command::Put {
            id: 100,
            key: b"k".to_vec(),
            value: vec![1; 5000],
        },
        l.now,
    );
    l.core.on_command(
        Command::Delete {
            id: 101,
            key: b"k".to_vec(),
        },
        l.now,
    );
    l.run(LAP * 3);
    let done = |id| {
        l.answers
            .iter()
            .any(|(a, ans)| *a == id && matches!(ans, Answer::Done))
    };
    assert!(done(100), "written, then deleted");
    assert!(done(101));
    assert_eq!(l.sent_data, 0, "no fragment of the deleted write went out");
    assert_eq!(l.core.usage().write_backlog, 0);
    assert_eq!(failed(l.get("k")).kind, FailureKind::NotFound);
}

/// The fragments of data and parity in flight, by (origin, hlc, stripe, shard), with their
/// number of copies.
fn census(l: &Loop) -> std::collections::HashMap<(u64, u64, u32, u16), usize> {
    let mut census = std::collections::HashMap::new();
    for (_, d) in &l.flight {
        let frame = Frame::new_checked(&d[..]).unwrap();
        if let Kind::Data(f) | Kind::Parity(f) = frame.kind() {
            *census
                .entry((frame.origin(), frame.hlc(), f.stripe(), f.shard()))
                .or_default() += 1;
        }
    }
    census
}

/// The loop of a value of `len` bytes written at the default shape.
fn written(len: usize) -> Geometry {
    let fec = Fec::default();
    Geometry {
        value_len: len as u64,
        chunk_len: wire::max_chunk_len(MAX_DATAGRAM, 1) as u16,
        data: fec.data,
        parity: fec.parity,
    }
}

#[test]
fn lost_fragments_are_rebuilt_within_the_lap_and_the_loop_stays_whole() {
    let mut l = Loop::new(limits());
    let v: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
    assert!(matches!(l.put("k", &v), Answer::Done));
    let g = written(v.len());
    l.run(LAP * 2);
    assert_eq!(census(&l).len() as u64, g.datagram_count());
    // Lose 8 fragments of stripe 0 and 3 of stripe 2, data and parity.
    let mut lost = 0;
    l.flight.retain(|(_, d)| {
        let frame = Frame::new_checked(&d[..]).unwrap();
        let drop = match frame.kind() {
            Kind::Data(f) | Kind::Parity(f) => {
                (f.stripe() == 0 && f.shard() % 5 == 0) || (f.stripe() == 2 && f.shard() < 3)
            }
            _ => false,
        };
        lost += usize::from(drop);
        !drop
    });
    assert_eq!(lost, 11);
    l.run(LAP * 3);
    let census = census(&l);
    let figures = l.core.stats(l.now, IoFigures::default()).repair;
    assert_eq!(
        census.len() as u64,
        g.datagram_count(),
        "every fragment is back: {figures:?}"
    );
    assert!(census.values().all(|&n| n == 1), "and only once");
    let stats = l.core.stats(l.now, IoFigures::default());
    assert_eq!(stats.repair.repaired, 11);
    assert_eq!(stats.repair.unrecoverable, 0);
    assert_eq!(value(l.get("k")), v);
}

#[test]
fn a_delayed_fragment_that_was_also_rebuilt_leaves_one_copy() {
    let mut l = Loop::new(limits());
    let v = vec![9u8; 3000];
    assert!(matches!(l.put("k", &v), Answer::Done));
    l.run(LAP * 2);
    // Hold one fragment back until the node has rebuilt it.
    let at = l
        .flight
        .iter()
        .position(|(_, d)| matches!(Frame::new_checked(&d[..]).unwrap().kind(), Kind::Data(_)))
        .unwrap();
    let (_, datagram) = l.flight.remove(at);
    for _ in 0..4 * LAP.as_micros() / STEP.as_micros() {
        if l.core.stats(l.now, IoFigures::default()).repair.repaired >= 1 {
            break;
        }
        l.run(STEP);
    }
    let stats = l.core.stats(l.now, IoFigures::default());
    assert_eq!(
        stats.repair.repaired, 1,
        "{:?} {:?}",
        stats.repair, stats.dropped
    );
    assert!(
        !l.core.on_datagram(&mut datagram.clone(), l.now),
        "the late original is a copy"
    );
    assert_eq!(l.core.dropped(DropReason::Duplicate), 1);
    l.run(LAP * 3);
    let census = census(&l);
    assert_eq!(census.len() as u64, written(v.len()).datagram_count());
    assert!(census.values().all(|&n| n == 1));
    assert_eq!(value(l.get("k")), v);
}

#[test]
fn a_network_duplicate_is_dropped_and_the_next_lap_is_not() {
    let mut l = Loop::new(limits());
    assert!(matches!(l.put("k", b"tiny"), Answer::Done));
    l.run(LAP * 2);
    let copies: Vec<(Duration, Vec<u8>)> = l.flight.clone();
    l.flight.extend(copies);
    l.run(LAP * 3);
    let census = census(&l);
    assert_eq!(
        census.len() as u64,
        written(4).datagram_count(),
        "1 + 8 parity"
    );
    assert!(census.values().all(|&n| n == 1));
    assert_eq!(value(l.get("k")), b"tiny");
}

#[test]
fn a_get_reads_a_value_whose_stripes_each_lost_up_to_their_parity() {
    let mut l = Loop::new(limits());
    // Another node's value, with 8 fragments of each stripe never arriving here: the GET
    // rebuilds them (and so does the repair, for the next lap).
    let v: Vec<u8> = (0..9000u32).map(|i| (i % 251) as u8).collect();
    let g = written(v.len());
    let frames = wire::tests::frames_of(b"far", &v, clock::stamp(l.now.unix_ms), g);
    l.next_id += 1;
    let id = l.next_id;
    l.core.on_command(
        Command::Get {
            id,
            key: b"far".to_vec(),
        },
        l.now,
    );
    for (i, frame) in frames.iter().enumerate() {
        if i % 5 != 0 {
            assert!(l.core.on_datagram(&mut frame.clone(), l.now));
        }
    }
    while let Some(answer) = l.core.poll_answer() {
        l.answers.push(answer);
    }
    let at = l
        .answers
        .iter()
        .position(|(a, _)| *a == id)
        .expect("answered at once");
    assert_eq!(value(l.answers.remove(at).1), v);
}
