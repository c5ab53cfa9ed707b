//! reassembly: puts values back together from the datagrams that pass while a GET waits.
//!
//! It owns the only copies of value bytes a node ever holds, and only for keys that a GET is
//! waiting on: one partial buffer per (key, version) seen. It must not decide when a GET gives up
//! (that is the processor's loop-period logic) and must not touch frames of keys nobody wants.

use std::collections::HashMap;

use crate::clock::Version;
use crate::node::RequestId;
use crate::wire::Frame;

/// Versions of one key assembled side by side before the oldest is given up.
const MAX_VERSIONS_PER_KEY: usize = 4;

/// What became of a key once a version of it was complete.
#[derive(Debug)]
pub struct Completed {
    /// The GETs that were waiting for the key.
    pub waiters: Vec<RequestId>,
    /// The value, or the length it claims when that is over the node's limit.
    pub value: Result<Vec<u8>, u64>,
}

struct Partial {
    version: Version,
    value_len: u64,
    chunk_len: u16,
    fragment_count: u32,
    have: Vec<u64>,
    received: u32,
    buf: Vec<u8>,
}

impl Partial {
    fn matches(&self, frame: &Frame<&[u8]>) -> bool {
        self.value_len == frame.value_len()
            && self.chunk_len == frame.chunk_len()
            && self.fragment_count == frame.fragment_count()
    }
}

#[derive(Default)]
struct KeyState {
    waiters: Vec<RequestId>,
    partials: Vec<Partial>,
}

/// Values being reassembled, by key.
pub struct Reassembly {
    keys: HashMap<Box<[u8]>, KeyState>,
    max_value_size: u64,
}

impl Reassembly {
    /// Reassembles values up to `max_value_size` bytes.
    pub fn new(max_value_size: u64) -> Reassembly {
        Reassembly {
            keys: HashMap::new(),
            max_value_size,
        }
    }

    /// Whether no GET waits for anything (the hot path skips all lookups then).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Registers GET `id` as waiting for `key`.
    pub fn add_waiter(&mut self, key: &[u8], id: RequestId) {
        match self.keys.get_mut(key) {
            Some(state) => state.waiters.push(id),
            None => {
                let state = KeyState {
                    waiters: vec![id],
                    partials: Vec::new(),
                };
                self.keys.insert(key.into(), state);
            }
        }
    }

    /// Withdraws GET `id`; the key's partial buffers go when its last waiter does.
    pub fn remove_waiter(&mut self, key: &[u8], id: RequestId) {
        if let Some(state) = self.keys.get_mut(key) {
            state.waiters.retain(|&w| w != id);
            if state.waiters.is_empty() {
                self.keys.remove(key);
            }
        }
    }

    /// Fragments received and needed of the most complete version of `key`, if any was seen.
    pub fn progress(&self, key: &[u8]) -> Option<(u32, u32)> {
        let state = self.keys.get(key)?;
        state
            .partials
            .iter()
            .map(|p| (p.received, p.fragment_count))
            .max_by_key(|&(have, _)| have)
    }

    /// Bytes held in partial buffers.
    pub fn held_bytes(&self) -> u64 {
        let partials = self.keys.values().flat_map(|s| s.partials.iter());
        partials.map(|p| p.buf.len() as u64).sum()
    }

    /// Takes a checked DATA frame. Versions older than `floor` (a newer write or a deletion this
    /// node knows of) are ignored. Returns the waiters and the value once a version is complete.
    pub fn offer(&mut self, frame: &Frame<&[u8]>, floor: Option<Version>) -> Option<Completed> {
        let key = frame.key();
        let state = self.keys.get_mut(key)?;
        let version = Version {
            hlc: frame.hlc(),
            origin: frame.origin(),
        };
        if floor.is_some_and(|floor| version < floor) {
            return None;
        }
        if frame.value_len() > self.max_value_size {
            let state = self.keys.remove(key)?;
            return Some(Completed {
                waiters: state.waiters,
                value: Err(frame.value_len()),
            });
        }
        let slot = match state.partials.iter().position(|p| p.version == version) {
            Some(slot) => slot,
            None => {
                if state.partials.len() == MAX_VERSIONS_PER_KEY {
                    let oldest = (0..state.partials.len())
                        .min_by_key(|&i| state.partials[i].version)
                        .unwrap_or(0);
                    state.partials.swap_remove(oldest);
                }
                let count = frame.fragment_count();
                state.partials.push(Partial {
                    version,
                    value_len: frame.value_len(),
                    chunk_len: frame.chunk_len(),
                    fragment_count: count,
                    have: vec![0; (count as usize).div_ceil(64)],
                    received: 0,
                    buf: vec![0; frame.value_len() as usize],
                });
                state.partials.len() - 1
            }
        };
        let partial = &mut state.partials[slot];
        if !partial.matches(frame) {
            return None;
        }
        let index = frame.fragment_index() as usize;
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if partial.have[word] & bit != 0 {
            return None;
        }
        partial.have[word] |= bit;
        partial.received += 1;
        let offset = frame.payload_offset() as usize;
        let payload = frame.payload();
        partial.buf[offset..offset + payload.len()].copy_from_slice(payload);
        if partial.received < partial.fragment_count {
            return None;
        }
        let value = std::mem::take(&mut partial.buf);
        let state = self.keys.remove(key)?;
        Some(Completed {
            waiters: state.waiters,
            value: Ok(value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{chunk, fragment_count, DataRepr};

    fn frames(key: &[u8], value: &[u8], hlc: u64, chunk_len: u16) -> Vec<Vec<u8>> {
        let count = fragment_count(value.len() as u64, chunk_len) as u32;
        (0..count)
            .map(|i| {
                let repr = DataRepr {
                    origin: 7,
                    hlc,
                    value_len: value.len() as u64,
                    fragment_index: i,
                    fragment_count: count,
                    chunk_len,
                    parity_count: 0,
                    key,
                    payload: &value[chunk(value.len(), i, chunk_len)],
                };
                let mut buf = vec![0; repr.buffer_len()];
                repr.emit(&mut buf);
                buf
            })
            .collect()
    }

    fn offer_all(r: &mut Reassembly, frames: &[Vec<u8>], floor: Option<Version>) -> Vec<Completed> {
        frames
            .iter()
            .filter_map(|f| r.offer(&Frame::new_checked(&f[..]).unwrap(), floor))
            .collect()
    }

    #[test]
    fn reassembles_out_of_order_and_ignores_duplicates() {
        let value: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut fs = frames(b"k", &value, 1, 100);
        fs.reverse();
        fs.insert(3, fs[0].clone());
        let mut r = Reassembly::new(1 << 20);
        r.add_waiter(b"k", 1);
        r.add_waiter(b"k", 2);
        let done = offer_all(&mut r, &fs, None);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].waiters, vec![1, 2]);
        assert_eq!(done[0].value.as_ref().unwrap(), &value);
        assert!(r.is_empty());
    }

    #[test]
    fn empty_value_completes_with_one_fragment() {
        let mut r = Reassembly::new(1 << 20);
        r.add_waiter(b"k", 1);
        let done = offer_all(&mut r, &frames(b"k", b"", 1, 100), None);
        assert_eq!(done[0].value.as_ref().unwrap(), b"");
    }

    #[test]
    fn unwanted_keys_and_old_versions_are_ignored() {
        let mut r = Reassembly::new(1 << 20);
        r.add_waiter(b"k", 1);
        assert!(offer_all(&mut r, &frames(b"other", b"x", 1, 100), None).is_empty());
        let floor = Some(Version { hlc: 5, origin: 0 });
        assert!(offer_all(&mut r, &frames(b"k", b"old", 4, 100), floor).is_empty());
        let done = offer_all(&mut r, &frames(b"k", b"new", 6, 100), floor);
        assert_eq!(done[0].value.as_ref().unwrap(), b"new");
    }

    #[test]
    fn interleaved_versions_are_kept_apart() {
        let mut r = Reassembly::new(1 << 20);
        r.add_waiter(b"k", 1);
        let a = frames(b"k", &[1u8; 300], 1, 100);
        let b = frames(b"k", &[2u8; 300], 2, 100);
        let mixed = vec![
            a[0].clone(),
            b[0].clone(),
            b[1].clone(),
            a[1].clone(),
            b[2].clone(),
        ];
        let done = offer_all(&mut r, &mixed, None);
        assert_eq!(done[0].value.as_ref().unwrap(), &vec![2u8; 300]);
    }

    #[test]
    fn progress_reports_and_waiters_leave() {
        let mut r = Reassembly::new(1 << 20);
        r.add_waiter(b"k", 1);
        let fs = frames(b"k", &[0u8; 500], 1, 100);
        offer_all(&mut r, &fs[..2], None);
        assert_eq!(r.progress(b"k"), Some((2, 5)));
        assert_eq!(r.held_bytes(), 500);
        r.remove_waiter(b"k", 1);
        assert!(r.is_empty());
    }

    #[test]
    fn too_large_values_fail_the_waiters() {
        let mut r = Reassembly::new(10);
        r.add_waiter(b"k", 1);
        let done = offer_all(&mut r, &frames(b"k", &[0u8; 11], 1, 100), None);
        assert_eq!(done[0].value, Err(11));
    }
}
