//! ring: the reflector's byte ring, a FIFO of held datagrams in one preallocated buffer (not to
//! be confused with the node's [`crate::ring`] of batches).
//!
//! It owns the layout of the buffer (`[header][sender address][payload]` entries, back to back,
//! wrapping at the end) and the accounting of what it holds. It must not allocate after
//! [`Ring::new`], make syscalls, or look inside payloads.

use std::io;

/// Size of an entry's header: payload length (u32), address length (u32), due time (u64 ns).
pub(super) const HEADER: usize = 16;
/// A payload length that marks the rest of the ring as unused: the next entry is at 0.
const SKIP: u32 = u32::MAX;

/// One datagram held in the ring.
pub(super) struct Entry<'a> {
    pub(super) due: u64,
    pub(super) addr: &'a [u8],
    pub(super) payload: &'a [u8],
}

/// A FIFO of datagrams in one preallocated byte buffer.
///
/// Entries are `[header][sender address][payload]`, back to back. When an entry does not fit
/// before the end of the buffer, the writer wraps to 0 and the leftover is wasted: it holds a
/// `SKIP` marker when there is room for a header, and a leftover shorter than a header is
/// skipped by rule. `used` counts entries and wasted space, so `head == tail` with `len > 0`
/// means full. An empty ring keeps its position (so a steady trickle still goes round the whole
/// buffer) and starts over at 0 only when the next entry fits nowhere else.
pub(super) struct Ring {
    buf: Box<[u8]>,
    /// Where the next entry goes.
    head: usize,
    /// Where the oldest entry (or the wasted space before it) starts.
    tail: usize,
    used: usize,
    len: usize,
    payload_bytes: usize,
}

impl Ring {
    /// Allocates and touches the whole buffer up front, so that memory is there before the
    /// first datagram and a size the machine cannot hold fails here.
    pub(super) fn new(capacity: usize) -> io::Result<Ring> {
        let mut buf = Vec::new();
        buf.try_reserve_exact(capacity).map_err(|_| {
            io::Error::new(
                io::ErrorKind::OutOfMemory,
                format!("cannot allocate a {capacity}-byte reflector buffer"),
            )
        })?;
        buf.resize(capacity, 0);
        Ok(Ring {
            buf: buf.into_boxed_slice(),
            head: 0,
            tail: 0,
            used: 0,
            len: 0,
            payload_bytes: 0,
        })
    }

    pub(super) fn capacity(&self) -> usize {
        self.buf.len()
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// Appends a datagram; false (and nothing stored) when it does not fit.
    pub(super) fn push(&mut self, due: u64, addr: &[u8], payload: &[u8]) -> bool {
        let size = HEADER + addr.len() + payload.len();
        let capacity = self.buf.len();
        let at = if self.len == 0 || self.head > self.tail {
            if capacity - self.head >= size {
                self.head
            } else if self.len == 0 && size <= capacity {
                // Empty, but neither end has room: start over at 0.
                self.head = 0;
                self.tail = 0;
                0
            } else if self.tail >= size {
                let waste = capacity - self.head;
                if waste >= HEADER {
                    self.buf[self.head..self.head + 4].copy_from_slice(&SKIP.to_ne_bytes());
                }
                self.used += waste;
                0
            } else {
                return false;
            }
        } else if self.tail - self.head >= size {
            self.head
        } else {
            return false;
        };
        let entry = &mut self.buf[at..at + size];
        entry[0..4].copy_from_slice(&(payload.len() as u32).to_ne_bytes());
        entry[4..8].copy_from_slice(&(addr.len() as u32).to_ne_bytes());
        entry[8..16].copy_from_slice(&due.to_ne_bytes());
        entry[HEADER..HEADER + addr.len()].copy_from_slice(addr);
        entry[HEADER + addr.len()..].copy_from_slice(payload);
        self.head = at + size;
        self.used += size;
        self.len += 1;
        self.payload_bytes += payload.len();
        true
    }

    /// Where the entry at or after `pos` starts, past a wasted end of the buffer.
    fn entry_start(&self, pos: usize) -> usize {
        if self.buf.len() - pos < HEADER || self.read_u32(pos) == SKIP {
            0
        } else {
            pos
        }
    }

    fn read_u32(&self, pos: usize) -> u32 {
        u32::from_ne_bytes(self.buf[pos..pos + 4].try_into().expect("4 bytes"))
    }

    /// The entry starting at `start` and its size in bytes.
    fn entry_at(&self, start: usize) -> (Entry<'_>, usize) {
        let payload_len = self.read_u32(start) as usize;
        let addr_len = self.read_u32(start + 4) as usize;
        let due = u64::from_ne_bytes(self.buf[start + 8..start + 16].try_into().expect("8 bytes"));
        let addr = &self.buf[start + HEADER..start + HEADER + addr_len];
        let payload_at = start + HEADER + addr_len;
        let payload = &self.buf[payload_at..payload_at + payload_len];
        (
            Entry { due, addr, payload },
            HEADER + addr_len + payload_len,
        )
    }

    /// When the oldest entry is due.
    pub(super) fn oldest_due(&self) -> Option<u64> {
        self.iter().next().map(|entry| entry.due)
    }

    /// The entries, oldest first.
    pub(super) fn iter(&self) -> RingIter<'_> {
        RingIter {
            ring: self,
            pos: self.tail,
            remaining: self.len,
        }
    }

    /// Removes the oldest entry (there must be one).
    pub(super) fn pop(&mut self) {
        assert!(self.len > 0, "pop from an empty reflector ring");
        let start = self.entry_start(self.tail);
        if start != self.tail {
            self.used -= self.buf.len() - self.tail;
        }
        let (entry, size) = self.entry_at(start);
        let payload_len = entry.payload.len();
        self.tail = start + size;
        self.used -= size;
        self.len -= 1;
        self.payload_bytes -= payload_len;
        debug_assert!(
            self.len > 0 || (self.used == 0 && self.tail == self.head),
            "an empty ring holds nothing"
        );
    }
}

pub(super) struct RingIter<'a> {
    ring: &'a Ring,
    pos: usize,
    remaining: usize,
}

impl<'a> Iterator for RingIter<'a> {
    type Item = Entry<'a>;

    fn next(&mut self) -> Option<Entry<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let start = self.ring.entry_start(self.pos);
        let (entry, size) = self.ring.entry_at(start);
        self.pos = start + size;
        self.remaining -= 1;
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::udp::sockaddr_bytes;
    use std::collections::VecDeque;
    use std::net::{Ipv6Addr, SocketAddr};

    /// Pushes and pops datagrams of many sizes through small rings, checking against a queue.
    #[test]
    fn ring_matches_a_queue() {
        let addr: SocketAddr = (Ipv6Addr::LOCALHOST, 9).into();
        let addr = socket2::SockAddr::from(addr);
        let addr = sockaddr_bytes(&addr);
        let mut seed = 0x2545_f491_u32;
        let mut random = move |below: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as usize % below
        };
        for capacity in [HEADER + addr.len(), 100, 257, 1000, 4096] {
            let mut ring = Ring::new(capacity).unwrap();
            let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
            let mut data = [0u8; 300];
            for step in 0..20_000u64 {
                if random(3) > 0 {
                    let limit = if random(4) == 0 { 300 } else { 40 };
                    let len = random(limit);
                    data[..len].fill(step as u8);
                    if ring.push(step, addr, &data[..len]) {
                        model.push_back((step, data[..len].to_vec()));
                    } else {
                        let free = capacity
                            - model
                                .iter()
                                .map(|(_, p)| HEADER + addr.len() + p.len())
                                .sum::<usize>();
                        assert!(!model.is_empty() || len + HEADER + addr.len() > capacity);
                        // Free space is at most split in two, plus a wasted end shorter
                        // than the largest entry.
                        let largest = HEADER + addr.len() + data.len();
                        assert!(
                            free < 2 * (HEADER + addr.len() + len) + largest,
                            "refused with {free} free"
                        );
                    }
                } else if !model.is_empty() {
                    ring.pop();
                    model.pop_front();
                }
                assert_eq!(ring.len(), model.len());
                assert_eq!(
                    ring.payload_bytes(),
                    model.iter().map(|(_, p)| p.len()).sum::<usize>()
                );
                assert_eq!(ring.oldest_due(), model.front().map(|(due, _)| *due));
                assert!(ring.used <= capacity);
                for (entry, (due, payload)) in ring.iter().zip(&model) {
                    assert_eq!(
                        (entry.due, entry.addr, entry.payload),
                        (*due, addr, payload.as_slice())
                    );
                }
            }
        }
    }
}
