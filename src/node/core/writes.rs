//! node::core::writes: a PUT's value on its way out, fragment by fragment.
//!
//! It owns the order in which a write's fragments leave (stripes interleaved in groups of
//! [`INTERLEAVE_DEPTH`], see [`crate::wire::interleaved`]), their spacing in time, and the
//! parity of the group being sent, computed when the group starts: one group's parity is all it
//! holds besides the value. A value of fewer stripes than the depth cannot spread a burst of
//! losses over enough stripes by itself: its rows (one fragment of each stripe) are sent
//! `spacing` apart, so that the loop's other traffic comes between them. It must not decide
//! when a write is confirmed or rolled back (the core's records do that).

use std::time::Duration;

use super::clock::Version;
use super::requests::RequestId;
use crate::coding::Coder;
use crate::wire::{self, DataRepr, Geometry};

/// Stripes whose fragments are interleaved: a burst of `b` consecutive losses takes at most
/// `ceil(b / 16)` fragments of any one stripe of a group (up to 128 with the default 8 parity
/// fragments per stripe, before the stripe cannot be rebuilt).
pub const INTERLEAVE_DEPTH: u32 = 16;

/// What [`PutJob::emit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Wrote a fragment of this many bytes.
    Frame(usize),
    /// The next row may not go before this time.
    Wait(Duration),
    /// Every fragment has been sent.
    Done,
}

/// A write being sent.
pub struct PutJob {
    pub id: RequestId,
    pub key: Box<[u8]>,
    pub value: Vec<u8>,
    pub version: Version,
    pub geometry: Geometry,
    /// Next position to send: group, position in the stripe, stripe in the group.
    group: u64,
    position: u32,
    offset: u32,
    /// Parity of the current group, `parity * chunk_len` bytes per stripe; empty until the
    /// group's first fragment goes.
    parity: Vec<u8>,
    sent: u64,
    /// Time between two rows of a group; zero to send them back to back.
    spacing: Duration,
    /// The current row may not start before this time.
    ready_at: Duration,
    /// When the first row went, and rows started since: row `r` is due at
    /// `started + r * spacing`, so a late wake-up catches up instead of stretching the spread,
    /// but at twice the pace at most (half a spacing between rows), never back to back: rows
    /// sent together are what one burst of losses takes at once.
    started: Option<Duration>,
    rows: u32,
}

impl PutJob {
    /// A write of `value` under `key` at `version`, cut as `geometry` says. A value of fewer
    /// stripes than [`INTERLEAVE_DEPTH`] (with parity) has its rows spread over `spread`.
    pub fn new(
        id: RequestId,
        key: Box<[u8]>,
        value: Vec<u8>,
        version: Version,
        geometry: Geometry,
        spread: Duration,
    ) -> PutJob {
        // The first stripe is the widest.
        let rows = geometry.shards_in(0);
        let narrow = geometry.stripe_count() < u64::from(INTERLEAVE_DEPTH);
        let spacing = if narrow && geometry.parity > 0 {
            spread / rows
        } else {
            Duration::ZERO
        };
        PutJob {
            id,
            key,
            value,
            version,
            geometry,
            group: 0,
            position: 0,
            offset: 0,
            parity: Vec::new(),
            sent: 0,
            spacing,
            ready_at: Duration::ZERO,
            started: None,
            rows: 0,
        }
    }

    /// Whether a fragment may go at `now`.
    pub fn ready(&self, now: Duration) -> bool {
        !self.done() && self.ready_at <= now
    }

    /// When the next fragment may go, if later than `now`.
    pub fn waits_until(&self, now: Duration) -> Option<Duration> {
        (!self.done() && self.ready_at > now).then_some(self.ready_at)
    }

    /// Bytes of the value not sent yet (approximately: by fragments sent, parity included).
    pub fn backlog(&self) -> u64 {
        let total = self.geometry.datagram_count();
        let left = total.saturating_sub(self.sent);
        (self.value.len() as u64).saturating_mul(left) / total.max(1)
    }

    /// Whether every fragment has been sent.
    pub fn done(&self) -> bool {
        self.sent >= self.geometry.datagram_count()
    }

    /// Writes the next fragment, from node `origin`, into `buf` if it may go at `now`.
    pub fn emit(&mut self, buf: &mut [u8], origin: u64, coder: &mut Coder, now: Duration) -> Emit {
        if self.done() {
            return Emit::Done;
        }
        if self.ready_at > now {
            return Emit::Wait(self.ready_at);
        }
        let started = *self.started.get_or_insert(now);
        let g = self.geometry;
        let stripes = g.stripe_count();
        let depth = u64::from(INTERLEAVE_DEPTH);
        let width = u32::from(g.data) + u32::from(g.parity);
        loop {
            let first = self.group * depth;
            if first >= stripes {
                return Emit::Done;
            }
            let in_group = (stripes - first).min(depth) as u32;
            if self.position >= width {
                self.group += 1;
                self.position = 0;
                self.offset = 0;
                self.parity.clear();
                continue;
            }
            if self.offset >= in_group {
                self.position += 1;
                self.offset = 0;
                if !self.spacing.is_zero() {
                    self.rows += 1;
                    self.ready_at =
                        (started + self.spacing * self.rows).max(now + self.spacing / 2);
                    if self.ready_at > now {
                        return Emit::Wait(self.ready_at);
                    }
                }
                continue;
            }
            // `first + offset < stripes <= 2^32`.
            let stripe = (first + u64::from(self.offset)) as u32;
            self.offset += 1;
            if self.position >= g.shards_in(stripe) {
                continue;
            }
            if self.parity.is_empty() && g.parity > 0 {
                self.encode_group(first as u32, in_group, coder);
            }
            let shard = self.position as u16;
            let payload = match g.data_index(stripe, shard) {
                Some(index) => &self.value[wire::chunk(self.value.len(), index, g.chunk_len)],
                None => {
                    let chunk = usize::from(g.chunk_len);
                    let per_stripe = usize::from(g.parity) * chunk;
                    let parity = usize::from(shard - g.data_in(stripe));
                    let at = (stripe - first as u32) as usize * per_stripe + parity * chunk;
                    &self.parity[at..at + chunk]
                }
            };
            let repr = DataRepr {
                origin,
                hlc: self.version.hlc,
                geometry: g,
                stripe,
                shard,
                lap: 0,
                key: &self.key,
                payload,
            };
            self.sent += 1;
            return Emit::Frame(repr.emit(buf));
        }
    }

    /// Computes the parity of the `count` stripes from `first`.
    fn encode_group(&mut self, first: u32, count: u32, coder: &mut Coder) {
        let g = self.geometry;
        let chunk = usize::from(g.chunk_len);
        let per_stripe = usize::from(g.parity) * chunk;
        self.parity.resize(count as usize * per_stripe, 0);
        let mut data: Vec<&[u8]> = Vec::with_capacity(usize::from(g.data));
        for n in 0..count {
            let stripe = first + n;
            data.clear();
            for shard in 0..g.data_in(stripe) {
                let index = g.data_index(stripe, shard).expect("a data position");
                data.push(&self.value[wire::chunk(self.value.len(), index, g.chunk_len)]);
            }
            let out = &mut self.parity[n as usize * per_stripe..][..per_stripe];
            let parity = usize::from(g.parity);
            coder
                .encode(&data, parity, chunk, |i, shard| {
                    out[i * chunk..][..chunk].copy_from_slice(shard)
                })
                .expect("a valid geometry codes");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Frame, Kind};

    #[test]
    fn sends_every_fragment_once_in_interleaved_order_with_the_right_parity() {
        let value: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let geometry = Geometry {
            value_len: value.len() as u64,
            chunk_len: 100,
            data: 8,
            parity: 3,
        };
        let version = Version { hlc: 5, origin: 9 };
        let spread = Duration::from_millis(11);
        let mut job = PutJob::new(
            1,
            b"k".to_vec().into(),
            value.clone(),
            version,
            geometry,
            spread,
        );
        let mut coder = Coder::new();
        let mut buf = [0u8; 2048];
        let mut order = Vec::new();
        let expected = crate::wire::tests::frames_of(b"k", &value, 5, geometry);
        let now = Duration::from_secs(1);
        while let Emit::Frame(len) = job.emit(&mut buf, 7, &mut coder, now) {
            let frame = Frame::new_checked(&buf[..len]).unwrap();
            let (Kind::Data(d) | Kind::Parity(d)) = frame.kind() else {
                panic!("not a fragment");
            };
            order.push((d.stripe(), d.shard()));
            // Byte for byte the frame of the reference emitter (same origin, stamp, parity).
            assert!(
                expected.iter().any(|e| e[..] == buf[..len]),
                "{:?}",
                order.last()
            );
        }
        assert!(job.done());
        assert_eq!(job.backlog(), 0);
        let want: Vec<(u32, u16)> = wire::interleaved(geometry, INTERLEAVE_DEPTH).collect();
        assert_eq!(order, want);
        assert_eq!(order.len() as u64, geometry.datagram_count());
    }

    #[test]
    fn a_narrow_value_spreads_its_rows() {
        // 3 full stripes of 8 + 3: 11 rows of 3 fragments, 1 ms apart over an 11 ms spread.
        let value = vec![1u8; 2400];
        let geometry = Geometry {
            value_len: 2400,
            chunk_len: 100,
            data: 8,
            parity: 3,
        };
        let version = Version { hlc: 5, origin: 9 };
        let spread = Duration::from_millis(11);
        let mut job = PutJob::new(1, b"k".to_vec().into(), value, version, geometry, spread);
        let mut coder = Coder::new();
        let mut buf = [0u8; 2048];
        let mut now = Duration::from_secs(1);
        let mut rows = vec![0];
        loop {
            match job.emit(&mut buf, 7, &mut coder, now) {
                Emit::Frame(_) => *rows.last_mut().unwrap() += 1,
                Emit::Wait(at) => {
                    assert_eq!(at, now + Duration::from_millis(1), "rows on schedule");
                    assert!(!job.ready(now) && job.waits_until(now) == Some(at));
                    now = at;
                    rows.push(0);
                }
                Emit::Done => break,
            }
        }
        assert_eq!(rows.len(), 11);
        assert!(rows.iter().all(|&n| n == 3), "{rows:?}");
        assert_eq!(job.waits_until(now), None);
        // A late caller catches up, at twice the pace: a row already due waits half a spacing
        // after the one before.
        let mut job = PutJob::new(
            1,
            b"k".to_vec().into(),
            vec![1u8; 2400],
            version,
            geometry,
            spread,
        );
        let start = Duration::from_secs(1);
        assert!(matches!(
            job.emit(&mut buf, 7, &mut coder, start),
            Emit::Frame(_)
        ));
        let late = start + Duration::from_micros(5500);
        let mut sent = 1;
        while let Emit::Frame(_) = job.emit(&mut buf, 7, &mut coder, late) {
            sent += 1;
        }
        assert_eq!(sent, 3, "row 0 goes whole, then row 1 waits");
        assert_eq!(
            job.waits_until(late),
            Some(late + Duration::from_micros(500)),
            "half the 1 ms spacing after the row before"
        );
    }
}
