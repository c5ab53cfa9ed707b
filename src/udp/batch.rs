//! batch: the [`Batch`], a fixed set of datagram slots that the roles pass between threads.
//!
//! It owns the memory of a batch (payloads, lengths, keep marks and source addresses, all sized
//! once in [`Batch::new`]) and the accessors the roles use to read, discard and write datagrams.
//! The receiver fills its slots and the sender reads them (both in this folder); it must not
//! make a syscall, interpret a payload or allocate after construction.

use std::mem;
use std::net::SocketAddr;

use socket2::SockAddr;

/// How many datagrams one [`Batch`] holds.
pub const BATCH_SLOTS: usize = 256;

/// A fixed set of datagram slots, recycled between threads through channels (`Send`).
///
/// Slot `i` lives at `data[i * slot_size..]`. A received datagram also carries the address it
/// came from; a datagram written with [`Batch::push_with`] has none.
pub struct Batch {
    pub(super) slot_size: usize,
    pub(super) data: Box<[u8]>,
    pub(super) lens: Box<[usize]>,
    pub(super) keep: Box<[bool]>,
    pub(super) peers: Box<[libc::sockaddr_storage]>,
    pub(super) peer_lens: Box<[libc::socklen_t]>,
    pub(super) count: usize,
}

impl Batch {
    /// An empty batch whose slots hold datagrams of up to `slot_size` bytes.
    pub fn new(slot_size: usize) -> Batch {
        assert!(slot_size > 0, "a batch slot must hold at least one byte");
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let empty: libc::sockaddr_storage = unsafe { mem::zeroed() };
        Batch {
            slot_size,
            data: vec![0u8; BATCH_SLOTS * slot_size].into_boxed_slice(),
            lens: vec![0; BATCH_SLOTS].into_boxed_slice(),
            keep: vec![false; BATCH_SLOTS].into_boxed_slice(),
            peers: vec![empty; BATCH_SLOTS].into_boxed_slice(),
            peer_lens: vec![0; BATCH_SLOTS].into_boxed_slice(),
            count: 0,
        }
    }

    /// The largest datagram one slot holds.
    pub fn slot_size(&self) -> usize {
        self.slot_size
    }

    /// How many slots are in use (kept or discarded).
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no slot is in use.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Whether every slot is in use: [`Batch::push_with`] would refuse.
    pub fn is_full(&self) -> bool {
        self.count == BATCH_SLOTS
    }

    /// Forgets every datagram (the memory stays).
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// The bytes of datagram `i` (`i < len()`).
    pub fn datagram(&self, i: usize) -> &[u8] {
        assert!(i < self.count, "datagram {i} of a batch of {}", self.count);
        let start = i * self.slot_size;
        &self.data[start..start + self.lens[i]]
    }

    /// The bytes of datagram `i` (`i < len()`), to change in place.
    pub fn datagram_mut(&mut self, i: usize) -> &mut [u8] {
        assert!(i < self.count, "datagram {i} of a batch of {}", self.count);
        let start = i * self.slot_size;
        &mut self.data[start..start + self.lens[i]]
    }

    /// Where datagram `i` came from, for a received datagram.
    pub fn peer(&self, i: usize) -> Option<SocketAddr> {
        assert!(i < self.count, "peer {i} of a batch of {}", self.count);
        if self.peer_lens[i] == 0 {
            return None;
        }
        // SAFETY: the kernel wrote a socket address of `peer_lens[i]` bytes into this storage
        // (or it is still zeroed, which `as_socket` rejects as AF_UNSPEC).
        let addr = unsafe { SockAddr::new(self.peers[i], self.peer_lens[i]) };
        addr.as_socket()
    }

    /// The raw socket address datagram `i` came from, as the kernel laid it out (empty for a
    /// datagram that was not received). Suitable for [`Outgoing::dest`](super::Outgoing::dest).
    pub fn peer_bytes(&self, i: usize) -> &[u8] {
        assert!(i < self.count, "peer {i} of a batch of {}", self.count);
        storage_bytes(&self.peers[i], self.peer_lens[i])
    }

    /// Marks datagram `i` so that the [`Sender`](super::Sender) skips it.
    pub fn discard(&mut self, i: usize) {
        assert!(i < self.count, "discard {i} of a batch of {}", self.count);
        self.keep[i] = false;
    }

    /// Whether datagram `i` is still to be sent (not discarded).
    pub fn is_kept(&self, i: usize) -> bool {
        assert!(i < self.count, "datagram {i} of a batch of {}", self.count);
        self.keep[i]
    }

    /// How many datagrams are still to be sent.
    pub fn kept(&self) -> usize {
        self.keep[..self.count].iter().filter(|&&k| k).count()
    }

    /// The payload bytes of the datagrams still to be sent.
    pub fn kept_bytes(&self) -> usize {
        (0..self.count)
            .filter(|&i| self.keep[i])
            .map(|i| self.lens[i])
            .sum()
    }

    /// Writes a new datagram into the next free slot: `write` gets the whole slot and returns
    /// the length used. Returns false (without calling `write`) when the batch is full.
    pub fn push_with(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.count;
        let start = i * self.slot_size;
        let len = write(&mut self.data[start..start + self.slot_size]);
        assert!(
            len <= self.slot_size,
            "datagram of {len} bytes in a slot of {}",
            self.slot_size
        );
        self.lens[i] = len;
        self.keep[i] = true;
        self.peer_lens[i] = 0;
        self.count += 1;
        true
    }

    /// Copies a received datagram (at most a slot long) and its source into the next free
    /// slot. False when the batch is full.
    pub(super) fn push_received(
        &mut self,
        peer: &libc::sockaddr_storage,
        peer_len: u32,
        datagram: &[u8],
    ) -> bool {
        if self.is_full() {
            return false;
        }
        let i = self.count;
        let start = i * self.slot_size;
        self.data[start..start + datagram.len()].copy_from_slice(datagram);
        self.lens[i] = datagram.len();
        self.keep[i] = true;
        self.peers[i] = *peer;
        self.peer_lens[i] = peer_len;
        self.count += 1;
        true
    }

    /// The kept datagrams, in order, with their raw source addresses.
    pub(super) fn kept_iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        (0..self.count)
            .filter(|&i| self.keep[i])
            .map(|i| (self.datagram(i), self.peer_bytes(i)))
    }
}

/// The first `len` bytes of a socket address (all of it at most).
pub(super) fn storage_bytes(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> &[u8] {
    let len = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: sockaddr_storage is plain old data (fully initialised, zeroed at creation), and
    // `len` does not exceed its size.
    unsafe { std::slice::from_raw_parts((storage as *const libc::sockaddr_storage).cast(), len) }
}
