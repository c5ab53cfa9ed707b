//! sim::net: the simulated network — datagrams in flight with what the simulator knows of them,
//! links with their faults, and the reflector.
//!
//! The network never looks inside a datagram: each carries a [`Meta`] worked out once, when its
//! node created it, so that whatever the network does to it (drop, duplicate, corrupt) can be
//! charged to the key and version it belongs to.

use super::rng::Rng;
use super::scenario::{Corruption, LinkSpec, ReflectorSpec};

/// A version as on the wire, `(hlc, origin)`, ordered like the core orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ver {
    pub hlc: u64,
    pub origin: u64,
}

/// What a datagram is, as its creator wrote it.
#[derive(Debug, Clone, Copy)]
pub enum Meta {
    /// The DATA or PARITY fragment at position `pos` (`stripe * (data + parity) + shard`) of
    /// the value of write `write` (an index into the simulator's writes), sent by the write's
    /// node or rebuilt by any node.
    Data {
        key: u16,
        write: u32,
        pos: u32,
    },
    Tombstone {
        key: u16,
        ver: Ver,
    },
    /// A probe of node `node`.
    Probe {
        node: u16,
    },
    /// Bytes from outside the ring.
    Garbage,
}

/// A datagram in flight.
#[derive(Debug, Clone)]
pub struct Datagram {
    pub bytes: Vec<u8>,
    pub meta: Meta,
    /// When its node sent it.
    pub born: u64,
    /// Its node had seen a newer version of its key when it sent it.
    pub knowing: bool,
    /// The bytes are no longer the ones its creator wrote.
    pub corrupted: bool,
    /// A fragment a node rebuilt (its creator is not its origin).
    pub rebuilt: bool,
}

/// Why the network destroyed a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    Random,
    Burst,
    Partition,
    /// A link or the reflector had no room.
    Overflow,
}

/// A directed hop with its faults.
pub struct Link {
    pub spec: LinkSpec,
    rng: Rng,
    bad: bool,
    last_delivery: u64,
    /// Bytes sent and not yet delivered.
    pub in_flight: u64,
    corruption: Vec<Corruption>,
}

impl Link {
    pub fn new(spec: LinkSpec, rng: Rng, corruption: Vec<Corruption>) -> Link {
        Link {
            spec,
            rng,
            bad: false,
            last_delivery: 0,
            in_flight: 0,
            corruption,
        }
    }

    pub fn partitioned(&self, now: u64) -> bool {
        self.spec
            .partitions
            .iter()
            .any(|&(from, to)| from <= now && now < to)
    }

    /// Sends `d` at `now`: the copies to deliver (one, or two when duplicated) go into `out`
    /// with their arrival times; `Err` when the network destroys it. A corrupted datagram is
    /// still delivered (the receiver must reject it); `d.corrupted` says so.
    pub fn send(
        &mut self,
        now: u64,
        mut d: Datagram,
        out: &mut Vec<(u64, Datagram)>,
    ) -> Result<(), Loss> {
        if self.partitioned(now) {
            return Err(Loss::Partition);
        }
        if let Some(burst) = &self.spec.burst {
            if self.bad {
                if self.rng.chance(burst.leave) {
                    self.bad = false;
                }
            } else if self.rng.chance(burst.enter) {
                self.bad = true;
            }
            if self.bad && self.rng.chance(burst.loss) {
                return Err(Loss::Burst);
            }
        }
        if self.rng.chance(self.spec.loss) {
            return Err(Loss::Random);
        }
        if self.rng.chance(self.spec.corrupt) {
            let mode = *self.rng.pick(&self.corruption);
            corrupt(&mut d.bytes, mode, &mut self.rng);
            d.corrupted = true;
        }
        let len = d.bytes.len() as u64;
        if self.in_flight + len > self.spec.capacity {
            return Err(Loss::Overflow);
        }
        let jitter = if self.spec.jitter > 0 {
            self.rng.below(self.spec.jitter + 1)
        } else {
            0
        };
        let mut at = now + self.spec.base + jitter;
        if self.spec.fifo {
            at = at.max(self.last_delivery);
            self.last_delivery = at;
        }
        self.in_flight += len;
        if self.rng.chance(self.spec.dup) && self.in_flight + len <= self.spec.capacity {
            let extra = if self.spec.fifo || self.spec.dup_extra == 0 {
                0
            } else {
                self.rng.below(self.spec.dup_extra + 1)
            };
            self.in_flight += len;
            out.push((at + extra, d.clone()));
        }
        out.push((at, d));
        Ok(())
    }

    /// A datagram of `len` bytes arrived at the far end.
    pub fn delivered(&mut self, len: usize) {
        self.in_flight -= len as u64;
    }
}

/// Changes `bytes` so that they differ from what was sent.
fn corrupt(bytes: &mut Vec<u8>, mode: Corruption, rng: &mut Rng) {
    match mode {
        Corruption::Flip if !bytes.is_empty() => {
            let flips: Vec<(usize, u8)> = (0..rng.range(1, 3))
                .map(|_| {
                    let at = rng.below(bytes.len() as u64) as usize;
                    (at, rng.range(1, 255) as u8)
                })
                .collect();
            for &(at, mask) in &flips {
                bytes[at] ^= mask;
            }
            // Two flips of one byte with one mask cancel out (seed 2001126): flip it back.
            if flips
                .iter()
                .all(|&(at, _)| flips.iter().filter(|f| f.0 == at).fold(0, |m, f| m ^ f.1) == 0)
            {
                bytes[flips[0].0] ^= 0xff;
            }
        }
        Corruption::Truncate if !bytes.is_empty() => {
            let len = rng.below(bytes.len() as u64) as usize;
            bytes.truncate(len);
        }
        _ => {
            for _ in 0..rng.range(1, 8) {
                bytes.push(rng.next_u64() as u8);
            }
        }
    }
}

/// The reflector: holds what it receives for its delay, within its byte capacity.
pub struct Reflector {
    pub spec: ReflectorSpec,
    pub held: u64,
}

impl Reflector {
    pub fn new(spec: ReflectorSpec) -> Reflector {
        Reflector { spec, held: 0 }
    }

    /// Takes a datagram of `len` bytes if there is room; false when it must be dropped.
    pub fn take(&mut self, len: usize) -> bool {
        if self.held + len as u64 > self.spec.capacity {
            return false;
        }
        self.held += len as u64;
        true
    }

    /// A datagram of `len` bytes left.
    pub fn release(&mut self, len: usize) {
        self.held -= len as u64;
    }
}

/// Bytes from outside the ring: random bytes, or something that starts like a frame.
pub fn garbage(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(300) as usize;
    let mut bytes = vec![0; len];
    rng.fill(&mut bytes);
    if rng.chance(0.6) && len >= 6 {
        bytes[..4].copy_from_slice(b"ELDY");
        bytes[4] = if rng.chance(0.9) { 1 } else { 2 };
        bytes[5] = rng.range(0, 5) as u8;
    }
    bytes
}
