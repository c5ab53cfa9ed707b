//! The fuzz targets' bodies, shared by the cargo-fuzz binaries in `fuzz/` (which include this
//! file by path) and by `tests/fuzz_corpus.rs`, which replays the checked-in corpus as an
//! ordinary test. Each takes arbitrary bytes and must not panic, hang or grow without bound.

#![allow(dead_code)]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use elayday::node::core::{Command, Core, CoreConfig, Fec, Limits, Now};
use elayday::wire::{self, Frame, Kind};

/// `Frame::new_checked` on anything; every accessor of an accepted frame.
pub fn frame(data: &[u8]) {
    let Ok(frame) = Frame::new_checked(data) else {
        return;
    };
    let mut sum = frame.origin() ^ frame.hlc() ^ u64::from(frame.flags() ^ 1);
    sum ^= u64::from(frame.checksum());
    match frame.kind() {
        Kind::Data(d) | Kind::Parity(d) => {
            assert!(!d.key().is_empty() && d.key().len() <= wire::MAX_KEY_LEN);
            let g = d.geometry();
            assert!(g.is_valid());
            assert!(u64::from(d.stripe()) < g.stripe_count());
            assert!(u32::from(d.shard()) < g.shards_in(d.stripe()));
            assert_eq!(d.payload().len(), g.payload_len(d.stripe(), d.shard()));
            assert_eq!(
                d.fragment_count(),
                wire::fragment_count(d.value_len(), d.chunk_len())
            );
            sum ^= d.value_len() ^ d.payload_offset().unwrap_or(1) ^ d.payload().len() as u64;
            sum ^= d.data_index().unwrap_or(2) ^ u64::from(d.stripe_parity());
        }
        Kind::Tombstone(t) => sum ^= t.key().len() as u64,
        Kind::Probe(p) => sum ^= p.sequence() ^ p.sent_at_ns(),
    }
    assert_eq!(frame.as_bytes().len(), data.len());
    std::hint::black_box(sum);
}

/// Limits small enough for the fuzzer to reach every one of them.
const LIMITS: Limits = Limits {
    max_value_size: 64 << 10,
    max_requests: 16,
    max_write_backlog: 128 << 10,
    max_reassembly: 128 << 10,
    max_records: 8,
    max_repair: 256 << 10,
};
const MAX_DATAGRAM: usize = 300;
const LOOP_DELAY: Duration = Duration::from_millis(20);

/// One node closed by a perfect reflector (20 ms), driven by a script read from `data`:
/// requests, time passing, arbitrary datagrams, and frames taken from the loop, changed and
/// re-checksummed (forgeries the checksum cannot catch). After every step the core's tables are
/// within their limits.
pub fn core(data: &[u8]) {
    let mut script = Script(data);
    let mut now = Now {
        mono: Duration::from_secs(1),
        unix_ms: 1_764_000_000_000,
    };
    let config = CoreConfig {
        id: 0x5eed,
        max_datagram: MAX_DATAGRAM,
        loop_timeout: Duration::from_millis(100),
        destination: "reflector".into(),
        limits: LIMITS,
        fec: Fec { data: 4, parity: 2 },
    };
    let mut core = Core::new(config, now);
    // Datagrams on their way back from the reflector, with their arrival times.
    let mut in_flight: Vec<(Duration, Vec<u8>)> = Vec::new();
    let mut next_id = 0u64;
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut steps = 0;
    while let Some(op) = script.byte() {
        steps += 1;
        if steps > 2000 {
            break;
        }
        match op % 8 {
            0 => {
                let key = key(script.byte().unwrap_or(0));
                let len = usize::from(script.u16().unwrap_or(0)) % (LIMITS.max_value_size as usize);
                let fill = script.byte().unwrap_or(0);
                next_id += 1;
                let value = vec![fill; len];
                core.on_command(
                    Command::Put {
                        id: next_id,
                        key,
                        value,
                    },
                    now,
                );
            }
            1 => {
                next_id += 1;
                let key = key(script.byte().unwrap_or(0));
                core.on_command(Command::Get { id: next_id, key }, now);
            }
            2 => {
                next_id += 1;
                let key = key(script.byte().unwrap_or(0));
                core.on_command(Command::Delete { id: next_id, key }, now);
            }
            3 => {
                let id = u64::from(script.byte().unwrap_or(0)) % (next_id + 1);
                core.on_command(Command::Cancel { id }, now);
            }
            4 => {
                let len = usize::from(script.byte().unwrap_or(0)) * 2;
                let raw = script.take(len);
                core.on_datagram(&mut raw.to_vec(), now);
            }
            5 => {
                // Forge: a frame from the loop with one byte changed and a valid checksum.
                if in_flight.is_empty() {
                    continue;
                }
                let pick = usize::from(script.byte().unwrap_or(0)) % in_flight.len();
                let mut forged = in_flight[pick].1.clone();
                let at = usize::from(script.u16().unwrap_or(0)) % forged.len();
                forged[at] = script.byte().unwrap_or(0);
                if forged.len() >= 12 {
                    let crc = wire::compute_checksum(&forged);
                    forged[8..12].copy_from_slice(&crc.to_be_bytes());
                }
                core.on_datagram(&mut forged, now);
            }
            6 => {
                // Lose one datagram of the loop.
                if !in_flight.is_empty() {
                    let pick = usize::from(script.byte().unwrap_or(0)) % in_flight.len();
                    in_flight.remove(pick);
                }
            }
            _ => {
                let ms = u64::from(script.byte().unwrap_or(1)) + 1;
                now.mono += Duration::from_millis(ms);
                now.unix_ms += ms;
            }
        }
        // The driver's turn: timers, due datagrams back round, new frames out, answers.
        core.on_timer(now);
        let (due, later): (Vec<_>, Vec<_>) =
            in_flight.drain(..).partition(|(at, _)| *at <= now.mono);
        in_flight = later;
        for (_, mut datagram) in due {
            if core.on_datagram(&mut datagram, now) {
                in_flight.push((now.mono + LOOP_DELAY, datagram));
            }
        }
        for _ in 0..64 {
            match core.poll_transmit(&mut buf, now) {
                Some(len) => in_flight.push((now.mono + LOOP_DELAY, buf[..len].to_vec())),
                None => break,
            }
        }
        while core.poll_answer().is_some() {}
        let usage = core.usage();
        assert!(usage.requests <= LIMITS.max_requests, "{usage:?}");
        assert!(usage.write_backlog <= LIMITS.max_write_backlog, "{usage:?}");
        assert!(usage.reassembly <= LIMITS.max_reassembly, "{usage:?}");
        assert!(usage.records <= LIMITS.max_records, "{usage:?}");
        assert!(usage.repair <= LIMITS.max_repair, "{usage:?}");
        assert!(in_flight.len() < 100_000, "the loop only grows");
    }
}

/// `elayday` command lines and environments read from `data`: NUL-separated arguments, then
/// after two NULs `NAME=value` pairs. The parser must answer with a configuration or one error
/// line, and never look up a host name (the resolver here refuses them all).
pub fn flags(data: &[u8]) {
    let (args, env) = match data.windows(2).position(|w| w == [0, 0]) {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let args: Vec<OsString> = args
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| OsString::from_vec(a.to_vec()))
        .collect();
    let env: Vec<(String, String)> = env
        .split(|&b| b == 0)
        .filter_map(|pair| {
            let text = String::from_utf8_lossy(pair);
            let (k, v) = text.split_once('=')?;
            Some((k.to_string(), v.to_string()))
        })
        .collect();
    let lookup = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let no_names = |host: &str, _port: u16| -> std::io::Result<Vec<std::net::SocketAddr>> {
        Err(std::io::Error::other(format!(
            "no lookups while fuzzing ({host})"
        )))
    };
    if let Err(e) = elayday::cli::parse_with(args, lookup, no_names) {
        let text = e.to_string();
        assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
    }
}

/// Reads the fuzzer's bytes in order; `None` once they run out.
struct Script<'a>(&'a [u8]);

impl<'a> Script<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes([self.byte()?, self.byte()?]))
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}

/// One of a few keys, so that writes, reads and deletions collide.
fn key(b: u8) -> Vec<u8> {
    format!("k{}", b % 6).into_bytes()
}
