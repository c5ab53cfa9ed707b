//! node::core::writes: a PUT's value on its way out, fragment by fragment.
//!
//! It owns the order in which a write's fragments leave (stripes interleaved in groups of
//! [`INTERLEAVE_DEPTH`], see [`crate::wire::interleaved`]) and the parity of the group being
//! sent, computed when the group starts: one group's parity is all it holds besides the value.
//! It must not decide when a write is confirmed or rolled back (the core's records do that).

use super::clock::Version;
use super::requests::RequestId;
use crate::coding::Coder;
use crate::wire::{self, DataRepr, Geometry};

/// Stripes whose fragments are interleaved: a burst of `b` consecutive losses takes at most
/// `ceil(b / 16)` fragments of any one stripe of a group (up to 128 with the default 8 parity
/// fragments per stripe, before the stripe cannot be rebuilt).
pub const INTERLEAVE_DEPTH: u32 = 16;

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
}

impl PutJob {
    /// A write of `value` under `key` at `version`, cut as `geometry` says.
    pub fn new(
        id: RequestId,
        key: Box<[u8]>,
        value: Vec<u8>,
        version: Version,
        geometry: Geometry,
    ) -> PutJob {
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
        }
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

    /// Writes the next fragment, from node `origin`, into `buf` and returns its length;
    /// `None` once all are sent.
    pub fn emit(&mut self, buf: &mut [u8], origin: u64, coder: &mut Coder) -> Option<usize> {
        let g = self.geometry;
        let stripes = g.stripe_count();
        let depth = u64::from(INTERLEAVE_DEPTH);
        let width = u32::from(g.data) + u32::from(g.parity);
        loop {
            let first = self.group * depth;
            if first >= stripes {
                return None;
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
                key: &self.key,
                payload,
            };
            self.sent += 1;
            return Some(repr.emit(buf));
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
        let mut job = PutJob::new(1, b"k".to_vec().into(), value.clone(), version, geometry);
        let mut coder = Coder::new();
        let mut buf = [0u8; 2048];
        let mut order = Vec::new();
        let expected = crate::wire::tests::frames_of(b"k", &value, 5, geometry);
        while let Some(len) = job.emit(&mut buf, 7, &mut coder) {
            let frame = Frame::new_checked(&buf[..len]).unwrap();
            let (Kind::Data(d) | Kind::Parity(d)) = frame.kind() else {
                panic!("not a fragment");
            };
            order.push((d.stripe(), d.shard()));
            // Byte for byte the frame of the reference emitter (same origin, stamp, parity).
            assert!(expected.iter().any(|e| e[..] == buf[..len]), "{:?}", order.last());
        }
        assert!(job.done());
        assert_eq!(job.backlog(), 0);
        let want: Vec<(u32, u16)> = wire::interleaved(geometry, INTERLEAVE_DEPTH).collect();
        assert_eq!(order, want);
        assert_eq!(order.len() as u64, geometry.datagram_count());
    }
}
