//! node::core::reassembly: puts values back together from the datagrams that pass while a GET
//! waits, from any `data` of each stripe's `data + parity` fragments.
//!
//! It owns the only copies of value bytes a node ever holds, and only for keys that a GET is
//! waiting on: one partial buffer per (key, version) seen, at most [`MAX_VERSIONS_PER_KEY`] per
//! key, and never more bytes in all than its budget (`--max-reassembly`): a version that does
//! not fit is not allocated, only counted, and its waiters learn why when they give up. It must
//! not decide when a GET gives up (that is the core's loop-period logic) and must not touch
//! frames of keys nobody wants.

use std::collections::HashMap;

use super::clock::Version;
use super::requests::RequestId;
use crate::coding::Coder;
use crate::wire::{DataFrame, Geometry};

/// Versions of one key assembled side by side before the oldest is given up.
pub const MAX_VERSIONS_PER_KEY: usize = 4;

/// What became of a key once a version of it was complete.
#[derive(Debug)]
pub struct Completed {
    /// The GETs that were waiting for the key.
    pub waiters: Vec<RequestId>,
    /// The value, or the length it claims when that is over the node's limit.
    pub value: Result<Vec<u8>, u64>,
}

/// How far a key got when its GETs give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// No datagram of the key passed.
    Nothing,
    /// The most complete version had a stripe, `stripe`, with only `have` of the `need`
    /// fragments it takes to rebuild it (out of `total`).
    Partial {
        stripe: u32,
        have: u32,
        need: u32,
        total: u32,
    },
    /// A version passed that the reassembly budget had no room for: its length, and the bytes
    /// it would have held.
    NoRoom { value_len: u64, cost: u64 },
}

/// What a version has of one stripe.
#[derive(Default)]
struct StripeState {
    /// Data fragments held (received or rebuilt).
    data: u16,
    /// Fragments received, data and parity.
    count: u16,
    /// Which parity fragments are held, and their payloads (`chunk_len` bytes each), kept
    /// only while data of the stripe is missing.
    parity_have: u128,
    parity: Vec<u8>,
}

struct Partial {
    version: Version,
    geometry: Geometry,
    /// One bit per data fragment received (or rebuilt).
    have: Vec<u64>,
    /// Stripes with all their data.
    stripes_done: u64,
    stripes: Vec<StripeState>,
    /// Bytes of parity held.
    parity_bytes: u64,
    /// When ([`Reassembly::seq`]) a datagram of it last passed.
    last: u64,
    buf: Vec<u8>,
}

impl Partial {
    /// Bytes this partial holds besides parity: the value buffer, the bitmap, the stripes.
    fn cost(&self) -> u64 {
        cost(&self.geometry) + self.parity_bytes
    }

    fn has(&self, index: u64) -> bool {
        self.have[(index / 64) as usize] & (1 << (index % 64)) != 0
    }

    fn set(&mut self, index: u64) {
        self.have[(index / 64) as usize] |= 1 << (index % 64);
    }

    /// The stripe furthest from its data count: (stripe, fragments, needed, total).
    fn worst(&self) -> (u32, u32, u32, u32) {
        let g = &self.geometry;
        (0..self.stripes.len() as u32)
            .map(|s| {
                let st = &self.stripes[s as usize];
                (
                    s,
                    u32::from(st.count),
                    u32::from(g.data_in(s)),
                    g.shards_in(s),
                )
            })
            .min_by_key(|&(_, have, need, _)| i64::from(have) - i64::from(need))
            .unwrap_or((0, 0, 1, 1))
    }
}

/// Bytes a partial of this shape holds before any parity: the value, one bit per data fragment
/// and a few bytes per stripe. For the fragments nodes write (at least 152 bytes of payload, at
/// the smallest MTU and the longest key, in stripes of at least one data fragment) that is less
/// than `value_len + value_len / 2 + 64`, which is what `--max-reassembly` must allow for the
/// largest value ([`super::Limits::min_reassembly`]).
pub fn cost(geometry: &Geometry) -> u64 {
    let stripe_state = std::mem::size_of::<StripeState>() as u64;
    geometry.value_len
        + geometry.fragment_count().div_ceil(64) * 8
        + geometry.stripe_count() * stripe_state
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Refused {
    version: Version,
    value_len: u64,
    cost: u64,
    /// When ([`Reassembly::seq`]) it was last refused.
    at: u64,
}

#[derive(Default)]
struct KeyState {
    /// The GETs waiting, each with the [`Reassembly::seq`] at which it started: what passed
    /// before is not its concern.
    waiters: Vec<(RequestId, u64)>,
    partials: Vec<Partial>,
    /// The newest version refused for want of room, with its claimed length and cost.
    refused: Option<Refused>,
}

/// Values being reassembled, by key.
pub struct Reassembly {
    keys: HashMap<Box<[u8]>, KeyState>,
    coder: Coder,
    max_value_size: u64,
    budget: u64,
    held: u64,
    refused: u64,
    /// Counts the datagrams offered for wanted keys: the clock of `since` and `last`.
    seq: u64,
}

impl Reassembly {
    /// Reassembles values up to `max_value_size` bytes, holding at most `budget` bytes in all.
    pub fn new(max_value_size: u64, budget: u64) -> Reassembly {
        Reassembly {
            keys: HashMap::new(),
            coder: Coder::new(),
            max_value_size,
            budget,
            held: 0,
            refused: 0,
            seq: 0,
        }
    }

    /// Whether no GET waits for anything (the hot path skips all lookups then).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Registers GET `id` as waiting for `key`.
    pub fn add_waiter(&mut self, key: &[u8], id: RequestId) {
        let waiter = (id, self.seq);
        match self.keys.get_mut(key) {
            Some(state) => state.waiters.push(waiter),
            None => {
                let state = KeyState {
                    waiters: vec![waiter],
                    ..KeyState::default()
                };
                self.keys.insert(key.into(), state);
            }
        }
    }

    /// Withdraws GET `id`; the key's partial buffers go when its last waiter does.
    pub fn remove_waiter(&mut self, key: &[u8], id: RequestId) {
        if let Some(state) = self.keys.get_mut(key) {
            state.waiters.retain(|&(w, _)| w != id);
            if state.waiters.is_empty() {
                self.remove_key(key);
            }
        }
    }

    fn remove_key(&mut self, key: &[u8]) -> Option<KeyState> {
        let state = self.keys.remove(key)?;
        self.held -= state.partials.iter().map(Partial::cost).sum::<u64>();
        Some(state)
    }

    /// How far `key` got: its most complete version, or why none could be kept. A refusal of
    /// a version at least as new as the most complete one explains what is missing better than
    /// a loss would: the value may be whole in the loop.
    ///
    /// Versions older than `floor` (the newest write or deletion this node knows of now) are
    /// not counted: a deleted or overwritten value that went by in part is not a loss.
    ///
    /// Only what passed while GET `id` waited counts for it: a version that stopped going round
    /// before it started (deleted, rolled back) is nothing to it.
    pub fn progress(&self, key: &[u8], floor: Option<Version>, id: RequestId) -> Progress {
        let Some(state) = self.keys.get(key) else {
            return Progress::Nothing;
        };
        let since = state
            .waiters
            .iter()
            .find(|(w, _)| *w == id)
            .map_or(0, |&(_, since)| since);
        let current = |version: Version| floor.is_none_or(|floor| version >= floor);
        let refused = state.refused.filter(|r| current(r.version) && r.at > since);
        let best = state
            .partials
            .iter()
            .filter(|p| current(p.version) && p.last > since)
            .max_by_key(|p| (p.worst().1 as i64 - p.worst().2 as i64, p.version));
        match (best, refused) {
            (Some(p), Some(r)) if r.version >= p.version => Progress::NoRoom {
                value_len: r.value_len,
                cost: r.cost,
            },
            (Some(p), _) => {
                let (stripe, have, need, total) = p.worst();
                Progress::Partial {
                    stripe,
                    have,
                    need,
                    total,
                }
            }
            (None, Some(r)) => Progress::NoRoom {
                value_len: r.value_len,
                cost: r.cost,
            },
            (None, None) => Progress::Nothing,
        }
    }

    /// Bytes held in partial buffers (never more than the budget).
    pub fn held_bytes(&self) -> u64 {
        self.held
    }

    /// The budget, in bytes.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Datagrams of wanted keys not kept for want of room, since the start.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Takes a checked DATA frame of `version`. Versions older than `floor` (a newer write or a
    /// deletion this node knows of) are ignored. Returns the waiters and the value once a
    /// version is complete.
    pub fn offer(
        &mut self,
        frame: &DataFrame<'_>,
        version: Version,
        floor: Option<Version>,
    ) -> Option<Completed> {
        let key = frame.key();
        let state = self.keys.get_mut(key)?;
        if floor.is_some_and(|floor| version < floor) {
            return None;
        }
        if frame.value_len() > self.max_value_size {
            let state = self.remove_key(key)?;
            return Some(Completed {
                waiters: state.waiters.into_iter().map(|(id, _)| id).collect(),
                value: Err(frame.value_len()),
            });
        }
        self.seq += 1;
        let seq = self.seq;
        let geometry = frame.geometry();
        let slot = match state.partials.iter().position(|p| p.version == version) {
            Some(slot) => slot,
            None => {
                let need = cost(&geometry);
                // A key keeps its newest versions: a new one takes the oldest one's place,
                // if that makes room for it.
                let evict = (state.partials.len() == MAX_VERSIONS_PER_KEY).then(|| {
                    (0..state.partials.len())
                        .min_by_key(|&i| state.partials[i].version)
                        .unwrap_or(0)
                });
                if evict.is_some_and(|oldest| state.partials[oldest].version > version) {
                    return None; // older than every version kept
                }
                let freed = evict.map_or(0, |oldest| state.partials[oldest].cost());
                if self.held - freed + need > self.budget {
                    let refused = Refused {
                        version,
                        value_len: frame.value_len(),
                        cost: need,
                        at: seq,
                    };
                    state.refused = Some(state.refused.map_or(refused, |r| r.max(refused)));
                    self.refused += 1;
                    return None;
                }
                if let Some(oldest) = evict {
                    state.partials.swap_remove(oldest);
                }
                self.held = self.held - freed + need;
                let stripes = geometry.stripe_count() as usize;
                state.partials.push(Partial {
                    version,
                    geometry,
                    have: vec![0; geometry.fragment_count().div_ceil(64) as usize],
                    stripes_done: 0,
                    stripes: (0..stripes).map(|_| StripeState::default()).collect(),
                    parity_bytes: 0,
                    last: seq,
                    buf: vec![0; frame.value_len() as usize],
                });
                state.partials.len() - 1
            }
        };
        let partial = &mut state.partials[slot];
        if partial.geometry != geometry {
            return None;
        }
        partial.last = seq;
        let stripe = frame.stripe();
        let data_in = geometry.data_in(stripe);
        let chunk = usize::from(geometry.chunk_len);
        let st = &partial.stripes[stripe as usize];
        if st.data == data_in {
            return None; // this stripe is whole already
        }
        match frame.data_index() {
            Some(index) => {
                if partial.has(index) {
                    return None;
                }
                let offset = (index * u64::from(geometry.chunk_len)) as usize;
                let payload = frame.payload();
                let dst = partial.buf.get_mut(offset..offset + payload.len())?;
                dst.copy_from_slice(payload);
                partial.set(index);
                partial.stripes[stripe as usize].data += 1;
            }
            None => {
                // Parity is kept only while data of the stripe is missing, within the budget.
                let bit = 1u128 << (frame.shard() - data_in);
                if st.parity_have & bit != 0 {
                    return None;
                }
                let parity_len = usize::from(geometry.parity) * chunk;
                if st.parity.is_empty() {
                    if self.held + parity_len as u64 > self.budget {
                        self.refused += 1;
                        return None;
                    }
                    self.held += parity_len as u64;
                    partial.parity_bytes += parity_len as u64;
                }
                let st = &mut partial.stripes[stripe as usize];
                if st.parity.is_empty() {
                    st.parity = vec![0; parity_len];
                }
                let at = usize::from(frame.shard() - data_in) * chunk;
                st.parity[at..at + chunk].copy_from_slice(frame.payload());
                st.parity_have |= bit;
            }
        }
        let st = &mut partial.stripes[stripe as usize];
        st.count += 1;
        if st.data < data_in && st.count >= data_in {
            rebuild(partial, stripe, &mut self.coder);
        }
        let st = &mut partial.stripes[stripe as usize];
        if st.data == data_in {
            partial.stripes_done += 1;
            let freed = st.parity.len() as u64;
            st.parity = Vec::new();
            st.parity_have = 0;
            partial.parity_bytes -= freed;
            self.held -= freed;
        }
        if partial.stripes_done < partial.stripes.len() as u64 {
            return None;
        }
        let value = std::mem::take(&mut partial.buf);
        let state = self.remove_key(key)?;
        Some(Completed {
            waiters: state.waiters.into_iter().map(|(id, _)| id).collect(),
            value: Ok(value),
        })
    }
}

/// Restores the missing data of `stripe` from what `partial` holds of it (at least its data
/// count of fragments).
fn rebuild(partial: &mut Partial, stripe: u32, coder: &mut Coder) {
    let g = partial.geometry;
    let chunk = usize::from(g.chunk_len);
    let data_in = usize::from(g.data_in(stripe));
    let st = &partial.stripes[stripe as usize];
    let ranges: Vec<(u64, std::ops::Range<usize>)> = (0..data_in as u16)
        .map(|shard| {
            let index = g.data_index(stripe, shard).expect("a data position");
            (
                index,
                crate::wire::chunk(partial.buf.len(), index, g.chunk_len),
            )
        })
        .collect();
    let mut shards: Vec<Option<&[u8]>> = ranges
        .iter()
        .map(|(index, range)| partial.has(*index).then(|| &partial.buf[range.clone()]))
        .collect();
    for p in 0..usize::from(g.parity) {
        let held = st.parity_have & (1 << p) != 0;
        shards.push(held.then(|| &st.parity[p * chunk..][..chunk]));
    }
    let mut restored: Vec<(usize, Vec<u8>)> = Vec::new();
    let result = coder.restore_data(
        data_in,
        usize::from(g.parity),
        chunk,
        &shards,
        |i, shard| {
            restored.push((i, shard.to_vec()));
        },
    );
    if result.is_err() {
        return;
    }
    for (i, shard) in restored {
        let (index, range) = ranges[i].clone();
        let len = range.len();
        partial.buf[range].copy_from_slice(&shard[..len]);
        partial.set(index);
        partial.stripes[stripe as usize].data += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::{fragments_at as frames, frames_of};
    use crate::wire::{Frame, Kind};

    /// What a one-stripe value of up to 64 fragments costs besides its bytes: its bitmap and
    /// its stripe.
    const PER_VALUE: u64 = 8 + std::mem::size_of::<StripeState>() as u64;

    fn offer_all(r: &mut Reassembly, frames: &[Vec<u8>], floor: Option<Version>) -> Vec<Completed> {
        frames
            .iter()
            .filter_map(|f| {
                let frame = Frame::new_checked(&f[..]).unwrap();
                let version = Version {
                    hlc: frame.hlc(),
                    origin: frame.origin(),
                };
                match frame.kind() {
                    Kind::Data(d) | Kind::Parity(d) => r.offer(&d, version, floor),
                    _ => panic!("not a fragment"),
                }
            })
            .collect()
    }

    #[test]
    fn reassembles_out_of_order_and_ignores_duplicates() {
        let value: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut fs = frames(b"k", &value, 1, 100);
        fs.reverse();
        fs.insert(3, fs[0].clone());
        let mut r = Reassembly::new(1 << 20, 1 << 30);
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
        let mut r = Reassembly::new(1 << 20, 1 << 30);
        r.add_waiter(b"k", 1);
        let done = offer_all(&mut r, &frames(b"k", b"", 1, 100), None);
        assert_eq!(done[0].value.as_ref().unwrap(), b"");
    }

    #[test]
    fn unwanted_keys_and_old_versions_are_ignored() {
        let mut r = Reassembly::new(1 << 20, 1 << 30);
        r.add_waiter(b"k", 1);
        assert!(offer_all(&mut r, &frames(b"other", b"x", 1, 100), None).is_empty());
        let floor = Some(Version { hlc: 5, origin: 0 });
        assert!(offer_all(&mut r, &frames(b"k", b"old", 4, 100), floor).is_empty());
        let done = offer_all(&mut r, &frames(b"k", b"new", 6, 100), floor);
        assert_eq!(done[0].value.as_ref().unwrap(), b"new");
    }

    #[test]
    fn interleaved_versions_are_kept_apart() {
        let mut r = Reassembly::new(1 << 20, 1 << 30);
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
        let mut r = Reassembly::new(1 << 20, 1 << 30);
        r.add_waiter(b"k", 1);
        let fs = frames(b"k", &[0u8; 500], 1, 100);
        offer_all(&mut r, &fs[..2], None);
        assert_eq!(
            r.progress(b"k", None, 1),
            Progress::Partial {
                stripe: 0,
                have: 2,
                need: 5,
                total: 5
            }
        );
        assert_eq!(r.held_bytes(), 500 + PER_VALUE);
        r.remove_waiter(b"k", 1);
        assert!(r.is_empty());
    }

    #[test]
    fn too_large_values_fail_the_waiters() {
        let mut r = Reassembly::new(10, 1 << 30);
        r.add_waiter(b"k", 1);
        let done = offer_all(&mut r, &frames(b"k", &[0u8; 11], 1, 100), None);
        assert_eq!(done[0].value, Err(11));
    }

    #[test]
    fn memory_stays_within_the_budget() {
        // Budget for one 1000-byte value (plus its 8-byte bitmap), not two.
        let mut r = Reassembly::new(1 << 20, 1500);
        r.add_waiter(b"k", 1);
        r.add_waiter(b"j", 2);
        let a = frames(b"k", &[1u8; 1000], 1, 100);
        let b = frames(b"j", &[2u8; 1000], 1, 100);
        assert!(offer_all(&mut r, &a[..1], None).is_empty());
        assert!(offer_all(&mut r, &b, None).is_empty(), "no room for j");
        assert_eq!(r.held_bytes(), 1000 + PER_VALUE);
        assert_eq!(r.refused(), 10);
        assert_eq!(
            r.progress(b"j", None, 2),
            Progress::NoRoom {
                value_len: 1000,
                cost: 1000 + PER_VALUE
            }
        );
        let done = offer_all(&mut r, &a[1..], None);
        assert_eq!(done[0].value.as_ref().unwrap(), &vec![1u8; 1000]);
        assert_eq!(r.held_bytes(), 0);
        // Room again: j completes on its next lap.
        let done = offer_all(&mut r, &b, None);
        assert_eq!(done[0].waiters, vec![2]);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn claimed_sizes_of_many_versions_never_exceed_the_budget() {
        let budget = 10_000;
        let mut r = Reassembly::new(1 << 30, budget);
        r.add_waiter(b"k", 1);
        for hlc in 0..100 {
            let fs = frames(b"k", &vec![0u8; 3000 + hlc as usize], hlc, 1000);
            offer_all(&mut r, &fs[..1], None);
            assert!(r.held_bytes() <= budget);
        }
        r.remove_waiter(b"k", 1);
        assert_eq!(r.held_bytes(), 0);
    }

    #[test]
    fn a_refused_datagram_of_the_newest_version_is_no_room_not_a_loss() {
        // Fragment 2 finds no room while another GET holds the budget; 0 and 1 come later.
        let mut r = Reassembly::new(1 << 20, 460);
        r.add_waiter(b"k", 1);
        r.add_waiter(b"big", 2);
        let big = frames(b"big", &[9u8; 390], 1, 100);
        offer_all(&mut r, &big[..1], None);
        let k = frames(b"k", &[1u8; 300], 2, 100);
        assert!(offer_all(&mut r, &k[2..], None).is_empty());
        r.remove_waiter(b"big", 2);
        assert!(offer_all(&mut r, &k[..2], None).is_empty());
        assert_eq!(
            r.progress(b"k", None, 1),
            Progress::NoRoom {
                value_len: 300,
                cost: 300 + PER_VALUE
            }
        );
        // An older refusal does not hide a real loss of a newer version.
        let mut r = Reassembly::new(1 << 20, 460);
        r.add_waiter(b"k", 1);
        r.add_waiter(b"big", 2);
        offer_all(&mut r, &big[..1], None);
        let old = frames(b"k", &[1u8; 300], 2, 100);
        offer_all(&mut r, &old[..1], None);
        r.remove_waiter(b"big", 2);
        let new = frames(b"k", &[2u8; 300], 3, 100);
        offer_all(&mut r, &new[..2], None);
        assert_eq!(
            r.progress(b"k", None, 1),
            Progress::Partial {
                stripe: 0,
                have: 2,
                need: 3,
                total: 3
            }
        );
        // A deletion or write newer than every version seen: nothing of the key is lost.
        let floor = Some(Version { hlc: 4, origin: 0 });
        assert_eq!(r.progress(b"k", floor, 1), Progress::Nothing);
    }

    #[test]
    fn what_went_by_before_a_get_started_is_not_its_loss() {
        let mut r = Reassembly::new(1 << 20, 1 << 20);
        r.add_waiter(b"k", 1);
        let rolled_back = frames(b"k", &[1u8; 300], 2, 100);
        offer_all(&mut r, &rolled_back[..2], None);
        r.add_waiter(b"k", 2);
        assert_eq!(
            r.progress(b"k", None, 1),
            Progress::Partial {
                stripe: 0,
                have: 2,
                need: 3,
                total: 3
            }
        );
        assert_eq!(r.progress(b"k", None, 2), Progress::Nothing);
        // A fragment seen again while GET 2 waits: the version still goes round.
        offer_all(&mut r, &rolled_back[..1], None);
        assert_eq!(
            r.progress(b"k", None, 2),
            Progress::Partial {
                stripe: 0,
                have: 2,
                need: 3,
                total: 3
            }
        );
    }

    #[test]
    fn a_version_with_no_room_does_not_evict_one_kept() {
        // Four versions of 100 bytes are kept (4 * 156 bytes held); a fifth of 600 would not
        // fit even in the oldest one's place, so the oldest stays and can still complete.
        let mut r = Reassembly::new(1 << 20, 800);
        r.add_waiter(b"k", 1);
        let oldest = frames(b"k", &[1u8; 100], 1, 50);
        offer_all(&mut r, &oldest[..1], None);
        for hlc in 2..=4 {
            offer_all(&mut r, &frames(b"k", &[hlc as u8; 100], hlc, 50)[..1], None);
        }
        assert_eq!(r.held_bytes(), 4 * (100 + PER_VALUE));
        offer_all(&mut r, &frames(b"k", &[9u8; 600], 5, 50)[..1], None);
        assert_eq!(r.held_bytes(), 4 * (100 + PER_VALUE));
        let done = offer_all(&mut r, &oldest[1..], None);
        assert_eq!(done[0].value.as_ref().unwrap(), &vec![1u8; 100]);
    }

    /// 10,000 bytes in chunks of 100: 100 data fragments in stripes of 8 + 3 (13 stripes, the
    /// last of 4 data fragments).
    fn coded(value: &[u8]) -> (Geometry, Vec<Vec<u8>>) {
        let g = Geometry {
            value_len: value.len() as u64,
            chunk_len: 100,
            data: 8,
            parity: 3,
        };
        (g, frames_of(b"k", value, 1, g))
    }

    #[test]
    fn a_value_completes_from_any_data_count_of_each_stripe() {
        let value: Vec<u8> = (0..10_000u32).map(|i| (i * 13 % 255) as u8).collect();
        let (g, all) = coded(&value);
        // Drop up to 3 fragments of every stripe, at different places in each.
        let mut kept = Vec::new();
        let mut at = 0;
        for stripe in 0..g.stripe_count() as u32 {
            let n = g.shards_in(stripe) as usize;
            let lose = [
                stripe as usize % n,
                (stripe as usize * 3 + 1) % n,
                (stripe as usize + 5) % n,
            ];
            for shard in 0..n {
                if !lose.contains(&shard) {
                    kept.push(all[at + shard].clone());
                }
            }
            at += n;
        }
        let mut r = Reassembly::new(1 << 20, 1 << 20);
        r.add_waiter(b"k", 1);
        let done = offer_all(&mut r, &kept, None);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].value.as_ref().unwrap(), &value);
        assert_eq!(r.held_bytes(), 0, "parity freed with the value");
    }

    #[test]
    fn a_stripe_short_of_its_data_count_is_reported() {
        let value = vec![4u8; 10_000];
        let (g, all) = coded(&value);
        // Stripe 2 keeps 7 of its 11 fragments: one short of the 8 it takes.
        let start = 2 * 11;
        let kept: Vec<Vec<u8>> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| !(start..start + 4).contains(i))
            .map(|(_, f)| f.clone())
            .collect();
        let mut r = Reassembly::new(1 << 20, 1 << 20);
        r.add_waiter(b"k", 1);
        assert!(offer_all(&mut r, &kept, None).is_empty());
        assert_eq!(
            r.progress(b"k", None, 1),
            Progress::Partial {
                stripe: 2,
                have: 7,
                need: 8,
                total: 11
            }
        );
        assert!(r.held_bytes() <= cost(&g) + 3 * 100);
        // One more of the stripe comes by on the next lap: the value completes.
        let done = offer_all(&mut r, &all[start..start + 1], None);
        assert_eq!(done[0].value.as_ref().unwrap(), &value);
    }
}
