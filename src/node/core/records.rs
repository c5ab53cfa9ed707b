//! node::core::records: what the node knows of each key's newest write or deletion.
//!
//! It owns the table of records (newest version, deleted or not, the shape of a write this node
//! made, and the confirmation a local PUT waits for) and their expiry: a record lives while
//! older datagrams of its key may still be on their way round. The table has a fixed capacity
//! ([`Records::new`]); past it nothing new is recorded. It must not answer requests or emit
//! frames: it returns what the core has to act on.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use super::clock::Version;
use super::requests::RequestId;
use crate::wire::Geometry;

/// A write is acknowledged only when every stripe of it has come back around the loop with at
/// least its data count of fragments: then it is in the delay line (and whatever of it is
/// missing is rebuilt as it passes), not just handed to the kernel.
#[derive(Debug)]
pub struct Confirm {
    pub id: RequestId,
    pub geometry: Geometry,
    /// One bit per fragment seen back, at `stripe * (data + parity) + shard`.
    seen: Vec<u64>,
    /// Fragments seen back, per stripe.
    counts: Vec<u16>,
    /// Stripes with fewer fragments back than their data count.
    pub short: u64,
    /// Set once every datagram is sent: the probe whose return proves they all had time to.
    pub probe_seq: Option<u64>,
}

impl Confirm {
    /// A confirmation for a write of this shape.
    pub fn new(id: RequestId, geometry: Geometry) -> Confirm {
        let stripes = geometry.stripe_count() as usize;
        let width = usize::from(geometry.data) + usize::from(geometry.parity);
        Confirm {
            id,
            geometry,
            seen: vec![0; (stripes * width).div_ceil(64)],
            counts: vec![0; stripes],
            short: stripes as u64,
            probe_seq: None,
        }
    }

    /// Marks fragment `shard` of stripe `stripe` as back; true when that made the last short
    /// stripe whole enough. Positions out of range, and repeats, are ignored.
    pub fn mark(&mut self, stripe: u32, shard: u16) -> bool {
        let g = &self.geometry;
        if u64::from(stripe) >= g.stripe_count() || u32::from(shard) >= g.shards_in(stripe) {
            return false;
        }
        let width = usize::from(g.data) + usize::from(g.parity);
        let at = stripe as usize * width + usize::from(shard);
        let (word, bit) = (at / 64, 1u64 << (at % 64));
        let Some(w) = self.seen.get_mut(word) else {
            return false;
        };
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        let count = &mut self.counts[stripe as usize];
        *count += 1;
        if *count == g.data_in(stripe) {
            self.short -= 1;
            return self.short == 0;
        }
        false
    }

    /// The stripe that came back with the fewest fragments: (stripe, fragments back).
    pub fn worst(&self) -> (u32, u16) {
        let (stripe, count) = self
            .counts
            .iter()
            .enumerate()
            .min_by_key(|&(s, &c)| i64::from(c) - i64::from(self.geometry.data_in(s as u32)))
            .map_or((0, 0), |(s, &c)| (s as u32, c));
        (stripe, count)
    }
}

/// The newest write or deletion of a key this node knows of.
#[derive(Debug)]
pub struct Record {
    pub version: Version,
    pub deleted: bool,
    /// Monotonic time after which the record may go (if no confirmation waits).
    pub expires: Duration,
    /// The shape of a write this node made, while it is the newest version: a frame of the
    /// same version with another shape is not ours, and is dropped.
    pub geometry: Option<Geometry>,
    /// A PUT of this version waiting for its datagrams to come back once.
    pub confirm: Option<Confirm>,
}

/// The table is full: the key could not be recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// Records by key, with their expiry.
pub struct Records {
    map: HashMap<Box<[u8]>, Record>,
    /// One entry per record: (time to look at it again, key).
    expiry: BinaryHeap<Reverse<(Duration, Box<[u8]>)>>,
    capacity: usize,
}

impl Records {
    /// A table of at most `capacity` records.
    pub fn new(capacity: usize) -> Records {
        Records {
            map: HashMap::new(),
            expiry: BinaryHeap::new(),
            capacity,
        }
    }

    /// Whether the table is empty (the hot path then skips the lookup).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Most records held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The record of `key`.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&Record> {
        self.map.get(key)
    }

    /// Whether version `version` of `key` is one this node knows to be deleted or overwritten
    /// (it drops such fragments as they pass).
    pub fn obsolete(&self, key: &[u8], version: Version) -> bool {
        self.get(key)
            .is_some_and(|r| version < r.version || (version == r.version && r.deleted))
    }

    /// The record of `key`, to change.
    #[inline]
    pub fn get_mut(&mut self, key: &[u8]) -> Option<&mut Record> {
        self.map.get_mut(key)
    }

    /// Whether a new key could be recorded.
    pub fn has_room_for(&self, key: &[u8]) -> bool {
        self.map.len() < self.capacity || self.map.contains_key(key)
    }

    /// Records `version` of `key` (a write, or a deletion if `deleted`) unless a version as new
    /// is already recorded; the record lives until `expires` at least. Returns the confirmation
    /// of an older local write that this one supersedes (it was written, then replaced).
    pub fn record(
        &mut self,
        key: &[u8],
        version: Version,
        deleted: bool,
        expires: Duration,
    ) -> Result<Option<Confirm>, Full> {
        let len = self.map.len();
        match self.map.get_mut(key) {
            Some(record) if record.version >= version => Ok(None),
            Some(record) => {
                record.version = version;
                record.deleted = deleted;
                record.geometry = None;
                record.expires = record.expires.max(expires);
                Ok(record.confirm.take())
            }
            None if len >= self.capacity => Err(Full),
            None => {
                let record = Record {
                    version,
                    deleted,
                    expires,
                    geometry: None,
                    confirm: None,
                };
                self.map.insert(key.into(), record);
                self.expiry.push(Reverse((expires, key.into())));
                Ok(None)
            }
        }
    }

    /// Removes the records that expired by `now`. A record whose confirmation still waits is
    /// looked at again after `recheck`.
    pub fn expire(&mut self, now: Duration, recheck: Duration) {
        while let Some(Reverse((at, _))) = self.expiry.peek() {
            if *at > now {
                break;
            }
            let Reverse((_, key)) = self.expiry.pop().expect("peeked");
            let Some(record) = self.map.get(&key) else {
                continue;
            };
            if record.confirm.is_some() {
                self.expiry.push(Reverse((now + recheck, key)));
            } else if record.expires > now {
                let at = record.expires;
                self.expiry.push(Reverse((at, key)));
            } else {
                self.map.remove(&key);
            }
        }
    }

    /// When [`Records::expire`] next has work.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.expiry.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes every waiting confirmation, in request order.
    pub fn take_confirms(&mut self) -> Vec<Confirm> {
        let mut confirms: Vec<Confirm> = self
            .map
            .values_mut()
            .filter_map(|r| r.confirm.take())
            .collect();
        confirms.sort_by_key(|c| c.id);
        confirms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(hlc: u64) -> Version {
        Version { hlc, origin: 1 }
    }

    const S: Duration = Duration::from_secs(1);
    const G: Geometry = Geometry {
        value_len: 1000,
        chunk_len: 300,
        data: 3,
        parity: 2,
    };

    #[test]
    fn newer_versions_replace_older_and_hand_back_the_confirmation() {
        let mut r = Records::new(10);
        r.record(b"k", v(5), false, S).unwrap();
        r.get_mut(b"k").unwrap().confirm = Some(Confirm::new(7, G));
        assert!(r.record(b"k", v(4), true, S).unwrap().is_none());
        assert!(!r.get(b"k").unwrap().deleted);
        let superseded = r.record(b"k", v(6), true, S).unwrap();
        assert_eq!(superseded.unwrap().id, 7);
        assert!(r.get(b"k").unwrap().deleted);
    }

    #[test]
    fn the_table_refuses_new_keys_when_full() {
        let mut r = Records::new(2);
        r.record(b"a", v(1), false, S).unwrap();
        r.record(b"b", v(1), false, S).unwrap();
        assert_eq!(r.record(b"c", v(1), false, S).unwrap_err(), Full);
        assert!(!r.has_room_for(b"c"));
        assert!(r.has_room_for(b"a"));
        r.record(b"a", v(2), false, S).unwrap();
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn records_expire_once_and_keep_one_expiry_entry() {
        let mut r = Records::new(10);
        for i in 0..100 {
            r.record(b"k", v(i), i % 2 == 0, S * (i as u32 + 1))
                .unwrap();
        }
        assert_eq!(r.expiry.len(), 1);
        r.expire(S * 50, S);
        assert_eq!(r.len(), 1, "extended by the later versions");
        r.expire(S * 100, S);
        assert!(r.is_empty());
        assert!(r.next_expiry().is_none());
    }

    #[test]
    fn a_waiting_confirmation_keeps_its_record() {
        let mut r = Records::new(10);
        r.record(b"k", v(1), false, S).unwrap();
        r.get_mut(b"k").unwrap().confirm = Some(Confirm::new(1, G));
        r.expire(S * 2, S);
        assert_eq!(r.len(), 1);
        assert_eq!(r.next_expiry(), Some(S * 3));
        r.get_mut(b"k").unwrap().confirm = None;
        r.expire(S * 3, S);
        assert!(r.is_empty());
    }

    #[test]
    fn marks_ignore_out_of_range_and_repeats() {
        // 4 data fragments in stripes of 3 + 2: stripe 0 needs 3 of 5, stripe 1 needs 1 of 3.
        let mut c = Confirm::new(1, G);
        assert_eq!(c.short, 2);
        assert!(!c.mark(0, 0));
        assert!(!c.mark(0, 0));
        assert!(!c.mark(0, 5));
        assert!(!c.mark(1, 3));
        assert!(!c.mark(2, 0));
        assert!(!c.mark(u32::MAX, u16::MAX));
        assert!(!c.mark(0, 4), "parity counts too");
        assert_eq!(c.worst(), (0, 2), "both one short: the first");
        assert!(!c.mark(1, 2));
        assert_eq!(c.worst(), (0, 2));
        assert!(c.mark(0, 1));
        assert_eq!(c.short, 0);
        assert!(!c.mark(0, 2), "already whole enough");
    }
}
