//! udp: batched datagram I/O (`recvmmsg`/`sendmmsg`, UDP GRO and GSO) and UDP socket setup.
//!
//! It owns the `mmsghdr`/`iovec`/`cmsg` plumbing, the [`Batch`] of datagram slots that threads
//! pass around, the splitting of coalesced receives (GRO) back into datagrams, the grouping of
//! same-size datagrams to one destination into segmented sends (GSO), and the kernel's drop
//! counter (`SO_RXQ_OVFL`). It must not interpret payloads, allocate on the hot path (everything
//! is sized once in the constructors), or log per datagram: it counts, and the roles decide what
//! to report.
//!
//! GRO and GSO are used when the kernel has them (Linux 5.0 and 4.18); otherwise, or when the
//! kernel refuses a segmented send, they are left off with one debug line. Either way callers
//! see the same datagrams, in the same order.
//!
//! The syscall structures live in boxed arrays owned by [`Receiver`] and [`Sender`]; the
//! pointers inside them are written right before each syscall and never read by Rust code
//! afterwards, so the owners stay movable and `Send`.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// How many datagrams one [`Batch`] holds.
pub const BATCH_SLOTS: usize = 256;

/// Messages one `recvmmsg` asks for (each a datagram, or with GRO up to 64 KiB of them).
const RECV_MESSAGES: usize = 64;
/// The receive buffer of one message with GRO on: the most the kernel coalesces.
const GRO_BUFFER: usize = 65_536;
/// The most datagrams one segmented send carries (the kernel's `UDP_MAX_SEGMENTS` before 6.x).
const GSO_MAX_SEGMENTS: usize = 64;
/// The most payload bytes one segmented send carries: the largest IPv4 UDP payload.
const GSO_MAX_BYTES: usize = 65_507;
/// Messages (single datagrams or segmented sends) per `sendmmsg`.
const SEND_MESSAGES: usize = 64;
/// Datagrams per `sendmmsg` (one `iovec` each).
const SEND_IOVECS: usize = 1024;

/// Room for the control messages of one received datagram: `SO_RXQ_OVFL` and `UDP_GRO` (one
/// `u32` each) plus slack for options someone else may have enabled on the socket.
const CMSG_SLOT_WORDS: usize = 8;
const CMSG_SLOT_BYTES: usize = CMSG_SLOT_WORDS * size_of::<u64>();
/// Room for the `UDP_SEGMENT` control message (one `u16`) of one send.
const SEND_CMSG_WORDS: usize = 4;

const STORAGE_LEN: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

/// A fixed set of datagram slots, recycled between threads through channels (`Send`).
///
/// Slot `i` lives at `data[i * slot_size..]`. A received datagram also carries the address it
/// came from; a datagram written with [`Batch::push_with`] has none.
pub struct Batch {
    slot_size: usize,
    data: Box<[u8]>,
    lens: Box<[usize]>,
    keep: Box<[bool]>,
    peers: Box<[libc::sockaddr_storage]>,
    peer_lens: Box<[libc::socklen_t]>,
    count: usize,
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
    /// datagram that was not received). Suitable for [`Outgoing::dest`].
    pub fn peer_bytes(&self, i: usize) -> &[u8] {
        assert!(i < self.count, "peer {i} of a batch of {}", self.count);
        storage_bytes(&self.peers[i], self.peer_lens[i])
    }

    /// Marks datagram `i` so that the [`Sender`] skips it.
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
    fn push_received(
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
    fn kept_iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        (0..self.count)
            .filter(|&i| self.keep[i])
            .map(|i| (self.datagram(i), self.peer_bytes(i)))
    }
}

/// The first `len` bytes of a socket address (all of it at most).
fn storage_bytes(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> &[u8] {
    let len = (len as usize).min(size_of::<libc::sockaddr_storage>());
    // SAFETY: sockaddr_storage is plain old data (fully initialised, zeroed at creation), and
    // `len` does not exceed its size.
    unsafe { std::slice::from_raw_parts((storage as *const libc::sockaddr_storage).cast(), len) }
}

/// Kernel buffer sizes to ask for, in bytes (0 leaves the system default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// `SO_RCVBUF`: how much the kernel queues for us before it drops.
    pub recv_buffer: usize,
    /// `SO_SNDBUF`: how much the kernel queues on the way out.
    pub send_buffer: usize,
}

/// A bound socket and the kernel buffer sizes it really got, in the units of
/// [`SocketOptions`]: Linux reads back twice the size it granted (the extra half is its
/// bookkeeping allowance), so these are the read-back values halved, and a size below the
/// request means the request was capped.
pub struct BoundSocket {
    /// The bound socket (blocking, no timeouts set).
    pub socket: UdpSocket,
    /// The receive buffer granted.
    pub recv_buffer: usize,
    /// The send buffer granted.
    pub send_buffer: usize,
}

/// A failed [`bind`] for a user: "cannot bind UDP [::1]:24601: Address already in use".
pub fn bind_failed(addr: SocketAddr, error: io::Error) -> io::Error {
    let text = error.to_string();
    let reason = text.split(" (os error ").next().unwrap_or(&text);
    io::Error::new(error.kind(), format!("cannot bind UDP {addr}: {reason}"))
}

impl BoundSocket {
    /// Warns when the kernel granted smaller buffers than `requested` (bursts may then be
    /// dropped), naming the limits to raise.
    pub fn warn_if_capped(&self, requested: &SocketOptions) {
        let capped = [
            (
                "receive",
                self.recv_buffer,
                requested.recv_buffer,
                "net.core.rmem_max",
            ),
            (
                "send",
                self.send_buffer,
                requested.send_buffer,
                "net.core.wmem_max",
            ),
        ];
        for (which, got, asked, sysctl) in capped {
            if got < asked {
                log::warn!(
                    "the {which} socket buffer is {got} bytes, below the {asked} requested: \
                     bursts may be dropped; raise the limit with `sysctl -w {sysctl}={asked}` \
                     or run with CAP_NET_ADMIN"
                );
            }
        }
    }
}

/// Binds a UDP socket with large kernel buffers.
///
/// Tries `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (root or `CAP_NET_ADMIN`) and falls back to
/// `SO_RCVBUF`/`SO_SNDBUF`, which the kernel caps at `net.core.rmem_max`/`wmem_max`. Enables
/// `SO_RXQ_OVFL` so that [`Receiver::recv`] can report the kernel's drops. Errors are the plain
/// OS errors; [`bind_failed`] words one for a user.
pub fn bind(addr: SocketAddr, options: &SocketOptions) -> io::Result<BoundSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let fd = socket.as_raw_fd();
    if options.recv_buffer > 0 {
        set_buffer(
            fd,
            libc::SO_RCVBUFFORCE,
            libc::SO_RCVBUF,
            options.recv_buffer,
        )?;
    }
    if options.send_buffer > 0 {
        set_buffer(
            fd,
            libc::SO_SNDBUFFORCE,
            libc::SO_SNDBUF,
            options.send_buffer,
        )?;
    }
    enable_drop_counter(fd)?;
    socket.bind(&addr.into())?;
    Ok(BoundSocket {
        recv_buffer: socket.recv_buffer_size()? / 2,
        send_buffer: socket.send_buffer_size()? / 2,
        socket: socket.into(),
    })
}

fn set_int_option(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live c_int and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn get_int_option(fd: libc::c_int, level: libc::c_int, name: libc::c_int) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live and `len` holds the size of `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set_buffer(
    fd: libc::c_int,
    force: libc::c_int,
    plain: libc::c_int,
    size: usize,
) -> io::Result<()> {
    let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    match set_int_option(fd, libc::SOL_SOCKET, force, size) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            set_int_option(fd, libc::SOL_SOCKET, plain, size)
        }
        Err(e) => Err(e),
    }
}

fn enable_drop_counter(fd: libc::c_int) -> io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

/// What one [`Receiver`] call saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct RecvReport {
    /// Datagrams handed over.
    pub received: usize,
    /// Datagrams larger than a slot, dropped.
    pub truncated: usize,
    /// Datagrams the kernel dropped (receive buffer full) since the previous report. The kernel
    /// attaches its counter to the next datagram it queues, so drops show up with the first
    /// datagram received after them. With GRO on, the kernel counts a dropped coalesced buffer
    /// once however many datagrams (up to 64) it held, so the count is then a lower bound.
    pub kernel_drops: u64,
    /// The call took as many messages from the kernel as one syscall can (or left some for
    /// the next call): more are probably queued.
    pub saturated: bool,
}

/// The C structures kept in [`Slots`]: plain data for which all-zero bytes are a valid value.
///
/// # Safety
/// Implement only for `repr(C)` structs of integers and raw pointers.
unsafe trait PlainC {}

// SAFETY: both are libc's C structs of integers and raw pointers.
unsafe impl PlainC for libc::mmsghdr {}
// SAFETY: as above.
unsafe impl PlainC for libc::iovec {}

/// A boxed array of syscall structures whose pointers only the kernel dereferences, during a
/// call made through `&mut self` of the owner.
struct Slots<T: PlainC>(Box<[T]>);

// SAFETY: the raw pointers inside the entries are rewritten right before each syscall to point
// at memory borrowed for that call; between calls they are stale and never dereferenced, so
// moving the owner to another thread cannot create shared access.
unsafe impl<T: PlainC> Send for Slots<T> {}

impl<T: PlainC> Slots<T> {
    fn zeroed(n: usize) -> Slots<T> {
        // SAFETY: `T: PlainC`, for which all-zero bytes are a valid value.
        Slots((0..n).map(|_| unsafe { mem::zeroed() }).collect())
    }
}

/// Turns on `UDP_GRO` (Linux 5.0+): the kernel may then hand over several same-size datagrams
/// from one sender as one buffer, which [`Receiver`] splits again.
fn enable_gro(fd: libc::c_int) -> io::Result<()> {
    set_int_option(fd, libc::SOL_UDP, libc::UDP_GRO, 1)
}

/// Whether the kernel takes `UDP_SEGMENT` (Linux 4.18+). An older kernel would ignore the
/// control message and send one oversized datagram, so this is asked before the first send.
fn gso_available(fd: libc::c_int) -> io::Result<()> {
    get_int_option(fd, libc::SOL_UDP, libc::UDP_SEGMENT).map(|_| ())
}

/// Where `recvmmsg` writes when receiving through [`Receiver::recv_each_nonblocking`], or
/// through [`Receiver::recv`] with GRO on: one buffer per message, its source address, and how
/// far its datagrams have been handed out. Datagrams that did not fit the caller's batch stay
/// here for the next call.
struct Arena {
    /// Bytes per message.
    buffer: usize,
    data: Box<[u8]>,
    peers: Box<[libc::sockaddr_storage]>,
    peer_lens: Box<[libc::socklen_t]>,
    /// Bytes received per message.
    lens: Box<[usize]>,
    /// The size of each datagram in a message (the whole message when not coalesced).
    segments: Box<[usize]>,
    /// Whether the kernel cut the message to the buffer.
    cut: Box<[bool]>,
    /// Messages received by the last call.
    count: usize,
    /// The first message not yet wholly handed out, and how many of its bytes were.
    next: usize,
    offset: usize,
}

impl Arena {
    fn new(buffer: usize) -> Arena {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let empty: libc::sockaddr_storage = unsafe { mem::zeroed() };
        Arena {
            buffer,
            data: vec![0u8; RECV_MESSAGES * buffer].into_boxed_slice(),
            peers: vec![empty; RECV_MESSAGES].into_boxed_slice(),
            peer_lens: vec![0; RECV_MESSAGES].into_boxed_slice(),
            lens: vec![0; RECV_MESSAGES].into_boxed_slice(),
            segments: vec![0; RECV_MESSAGES].into_boxed_slice(),
            cut: vec![false; RECV_MESSAGES].into_boxed_slice(),
            count: 0,
            next: 0,
            offset: 0,
        }
    }

    /// Whether every received datagram has been handed out.
    fn is_drained(&self) -> bool {
        self.next >= self.count
    }

    /// Hands out the datagrams not yet handed out, in order: `take(source, source_len,
    /// datagram)` returns false to stop before that datagram (it is offered again next time).
    /// Datagrams longer than `slot_size`, and messages the kernel cut, are counted as
    /// truncated instead.
    fn hand_out(
        &mut self,
        slot_size: usize,
        report: &mut RecvReport,
        mut take: impl FnMut(&libc::sockaddr_storage, libc::socklen_t, &[u8]) -> bool,
    ) {
        while self.next < self.count {
            let m = self.next;
            let (len, segment) = (self.lens[m], self.segments[m].max(1));
            if self.cut[m] {
                report.truncated += 1;
            } else {
                let base = m * self.buffer;
                let message = &self.data[base..base + len];
                let (peer, peer_len) = (&self.peers[m], self.peer_lens[m]);
                // A message of zero bytes is one empty datagram.
                while self.offset < len || (len == 0 && self.offset == 0) {
                    let end = (self.offset + segment).min(len);
                    let datagram = &message[self.offset..end];
                    if datagram.len() > slot_size {
                        report.truncated += 1;
                    } else if !take(peer, peer_len, datagram) {
                        return;
                    }
                    if len == 0 {
                        break;
                    }
                    self.offset = end;
                }
            }
            self.next += 1;
            self.offset = 0;
        }
    }
}

/// Receives datagrams into [`Batch`]es with `recvmmsg`, using GRO when the kernel has it.
///
/// Without GRO the kernel writes straight into the batch's slots. With GRO it writes up to
/// 64 KiB per message into the receiver's own buffers, and each datagram is copied into a
/// slot once: the copy is far cheaper than the per-datagram work GRO saves in the kernel.
pub struct Receiver {
    socket: UdpSocket,
    slot_size: usize,
    gro: bool,
    msgs: Slots<libc::mmsghdr>,
    iovs: Slots<libc::iovec>,
    cmsgs: Box<[u64]>,
    arena: Arena,
    /// The last value of the kernel's cumulative drop counter seen.
    drop_counter: u32,
}

impl Receiver {
    /// Receives from `socket` into batches of `slot_size`-byte slots, with GRO when the kernel
    /// has it. Enables `SO_RXQ_OVFL` (as [`bind`] does) in case the socket was made elsewhere.
    pub fn new(socket: UdpSocket, slot_size: usize) -> Receiver {
        let gro = match enable_gro(socket.as_raw_fd()) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("UDP GRO unavailable, receiving datagrams one by one: {e}");
                false
            }
        };
        Receiver::with_gro(socket, slot_size, gro)
    }

    /// Like [`Receiver::new`] but never asks for GRO (and turns it off if it was on), as on a
    /// kernel without it.
    pub fn without_gro(socket: UdpSocket, slot_size: usize) -> Receiver {
        let _ = set_int_option(socket.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 0);
        Receiver::with_gro(socket, slot_size, false)
    }

    fn with_gro(socket: UdpSocket, slot_size: usize, gro: bool) -> Receiver {
        assert!(slot_size > 0, "a receive slot must hold at least one byte");
        if let Err(e) = enable_drop_counter(socket.as_raw_fd()) {
            log::debug!("SO_RXQ_OVFL unavailable, kernel drops will not be counted: {e}");
        }
        let messages = BATCH_SLOTS.max(RECV_MESSAGES);
        Receiver {
            socket,
            slot_size,
            gro,
            msgs: Slots::zeroed(messages),
            iovs: Slots::zeroed(messages),
            cmsgs: vec![0u64; messages * CMSG_SLOT_WORDS].into_boxed_slice(),
            arena: Arena::new(if gro {
                slot_size.max(GRO_BUFFER)
            } else {
                slot_size
            }),
            drop_counter: 0,
        }
    }

    /// The socket it reads (to set a read timeout, poll it, or ask its address).
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Whether the kernel coalesces datagrams for this receiver (GRO).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Clears `batch`, then blocks until at least one datagram arrives or the socket's read
    /// timeout passes (a timeout, `EAGAIN`, `EINTR` or a pending ICMP error return `received`
    /// 0), and fills up to [`BATCH_SLOTS`] datagrams, recording each one's source address.
    /// Datagrams larger than a slot are left out of the batch and counted as `truncated`.
    /// With GRO, datagrams received but not handed over stay for the next call, which then
    /// returns at once.
    ///
    /// Panics if `batch` was not made with this receiver's slot size.
    pub fn recv(&mut self, batch: &mut Batch) -> io::Result<RecvReport> {
        self.recv_flags(batch, libc::MSG_WAITFORONE)
    }

    /// Like [`Receiver::recv`] but never blocks: returns `received` 0 when nothing is queued.
    pub fn recv_nonblocking(&mut self, batch: &mut Batch) -> io::Result<RecvReport> {
        self.recv_flags(batch, libc::MSG_DONTWAIT)
    }

    /// Receives what is queued, without blocking and without a batch: calls
    /// `each(source, datagram)` for every datagram in arrival order, `source` being the raw
    /// address it came from (for [`Outgoing::dest`]). Datagrams larger than the slot size are
    /// counted as `truncated` instead.
    pub fn recv_each_nonblocking(
        &mut self,
        mut each: impl FnMut(&[u8], &[u8]),
    ) -> io::Result<RecvReport> {
        let mut report = RecvReport::default();
        if self.arena.is_drained() {
            self.fill_arena(libc::MSG_DONTWAIT, &mut report)?;
        }
        let mut received = 0;
        self.arena
            .hand_out(self.slot_size, &mut report, |peer, peer_len, datagram| {
                each(storage_bytes(peer, peer_len), datagram);
                received += 1;
                true
            });
        report.received = received;
        Ok(report)
    }

    fn recv_flags(&mut self, batch: &mut Batch, flags: libc::c_int) -> io::Result<RecvReport> {
        assert_eq!(
            batch.slot_size, self.slot_size,
            "batch slot size differs from the receiver's"
        );
        batch.clear();
        if !self.gro && self.arena.is_drained() {
            return self.recv_into_slots(batch, flags);
        }
        let mut report = RecvReport::default();
        let slot_size = self.slot_size;
        self.arena
            .hand_out(slot_size, &mut report, |peer, peer_len, datagram| {
                batch.push_received(peer, peer_len, datagram)
            });
        if self.arena.is_drained() && !batch.is_full() {
            // Room is left: receive more, without waiting when there is something already.
            let flags = if batch.is_empty() {
                flags
            } else {
                libc::MSG_DONTWAIT
            };
            self.fill_arena(flags, &mut report)?;
            self.arena
                .hand_out(slot_size, &mut report, |peer, peer_len, datagram| {
                    batch.push_received(peer, peer_len, datagram)
                });
        }
        report.saturated |= !self.arena.is_drained();
        report.received = batch.len();
        Ok(report)
    }

    /// Points message `i` at `len` bytes at `data` and at its source address and control
    /// buffers.
    ///
    /// # Safety
    /// `i` must be below the length of `msgs`, `iovs` and `cmsgs / CMSG_SLOT_WORDS`, and
    /// `data`/`peer` valid for writes of `len` bytes and one `sockaddr_storage` until the next
    /// syscall returns.
    unsafe fn prepare(
        &mut self,
        i: usize,
        data: *mut u8,
        len: usize,
        peer: *mut libc::sockaddr_storage,
    ) {
        let iov = self.iovs.0.as_mut_ptr().add(i);
        (*iov).iov_base = data.cast();
        (*iov).iov_len = len;
        let msg = &mut *self.msgs.0.as_mut_ptr().add(i);
        msg.msg_hdr.msg_name = peer.cast();
        msg.msg_hdr.msg_namelen = STORAGE_LEN;
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = 1;
        msg.msg_hdr.msg_control = self.cmsgs.as_mut_ptr().add(i * CMSG_SLOT_WORDS).cast();
        msg.msg_hdr.msg_controllen = CMSG_SLOT_BYTES as _;
        msg.msg_hdr.msg_flags = 0;
        msg.msg_len = 0;
    }

    /// Runs `recvmmsg` over the first `n` prepared messages: how many arrived (0 for a
    /// timeout, `EAGAIN`, `EINTR` or a pending ICMP error).
    fn recvmmsg(&mut self, n: usize, flags: libc::c_int) -> io::Result<usize> {
        let fd = self.socket.as_raw_fd();
        // SAFETY: `prepare` pointed every header at buffers owned by `self` or by a batch
        // exclusively borrowed for this call, with lengths matching their sizes.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.0.as_mut_ptr(),
                n as _,
                flags,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let error = io::Error::last_os_error();
            return match error.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR | libc::ECONNREFUSED) => Ok(0),
                _ => Err(error),
            };
        }
        Ok(rc as usize)
    }

    /// Receives into the arena (which must be drained).
    fn fill_arena(&mut self, flags: libc::c_int, report: &mut RecvReport) -> io::Result<()> {
        let buffer = self.arena.buffer;
        let data = self.arena.data.as_mut_ptr();
        let peers = self.arena.peers.as_mut_ptr();
        for i in 0..RECV_MESSAGES {
            // SAFETY: the arena holds RECV_MESSAGES buffers of `buffer` bytes and addresses,
            // and the syscall arrays at least RECV_MESSAGES entries.
            unsafe { self.prepare(i, data.add(i * buffer), buffer, peers.add(i)) };
        }
        let received = self.recvmmsg(RECV_MESSAGES, flags)?;
        for i in 0..received {
            let hdr = &self.msgs.0[i].msg_hdr;
            report.kernel_drops += drop_delta(&mut self.drop_counter, hdr);
            let len = self.msgs.0[i].msg_len as usize;
            self.arena.lens[i] = len;
            self.arena.segments[i] = gro_segment_size(hdr).unwrap_or(len);
            self.arena.cut[i] = hdr.msg_flags & libc::MSG_TRUNC != 0;
            self.arena.peer_lens[i] = hdr.msg_namelen.min(STORAGE_LEN);
        }
        self.arena.count = received;
        self.arena.next = 0;
        self.arena.offset = 0;
        report.saturated = received == RECV_MESSAGES;
        Ok(())
    }

    /// Receives straight into the slots of `batch` (no GRO, so one datagram per message).
    fn recv_into_slots(&mut self, batch: &mut Batch, flags: libc::c_int) -> io::Result<RecvReport> {
        let slot = batch.slot_size;
        let data = batch.data.as_mut_ptr();
        let peers = batch.peers.as_mut_ptr();
        for i in 0..BATCH_SLOTS {
            // SAFETY: the batch holds BATCH_SLOTS slots of `slot` bytes and addresses, and the
            // syscall arrays at least BATCH_SLOTS entries.
            unsafe { self.prepare(i, data.add(i * slot), slot, peers.add(i)) };
        }
        let received = self.recvmmsg(BATCH_SLOTS, flags)?;
        let mut report = RecvReport {
            saturated: received == BATCH_SLOTS,
            ..RecvReport::default()
        };
        let mut kept = 0;
        for i in 0..received {
            let msg = &self.msgs.0[i];
            report.kernel_drops += drop_delta(&mut self.drop_counter, &msg.msg_hdr);
            if msg.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                report.truncated += 1;
                continue;
            }
            if kept != i {
                batch
                    .data
                    .copy_within(i * slot..i * slot + msg.msg_len as usize, kept * slot);
                batch.peers[kept] = batch.peers[i];
            }
            batch.lens[kept] = msg.msg_len as usize;
            batch.peer_lens[kept] = msg.msg_hdr.msg_namelen.min(STORAGE_LEN);
            batch.keep[kept] = true;
            kept += 1;
        }
        batch.count = kept;
        report.received = kept;
        Ok(report)
    }
}

/// Walks the control messages of a received message, calling `f` with each one's level, type
/// and data (which the kernel sized by `cmsg_len`).
fn for_each_cmsg(hdr: &libc::msghdr, mut f: impl FnMut(libc::c_int, libc::c_int, &[u8])) {
    if hdr.msg_controllen == 0 || hdr.msg_control.is_null() {
        return;
    }
    // SAFETY: the kernel filled `msg_control` with `msg_controllen` bytes of well-formed control
    // messages (it sets MSG_CTRUNC rather than writing past the buffer); the CMSG_* macros stay
    // inside that range, and the data is only read as bytes.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let header = libc::CMSG_LEN(0) as usize;
            let len = ((*cmsg).cmsg_len as usize).saturating_sub(header);
            let data = std::slice::from_raw_parts(libc::CMSG_DATA(cmsg), len);
            f((*cmsg).cmsg_level, (*cmsg).cmsg_type, data);
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
}

/// The control message's data as a native-endian `u32`, if it is that long.
fn cmsg_u32(data: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(..4)?.try_into().ok()?))
}

/// New kernel drops announced by the `SO_RXQ_OVFL` control message of one received datagram.
///
/// The kernel's counter is a cumulative `u32` per socket, so the delta wraps; a value slightly
/// behind the last one seen (datagrams queued out of order) is ignored rather than read as a
/// wrap of four billion drops.
fn drop_delta(last: &mut u32, hdr: &libc::msghdr) -> u64 {
    let mut new = 0;
    for_each_cmsg(hdr, |level, kind, data| {
        if level != libc::SOL_SOCKET || kind != libc::SO_RXQ_OVFL {
            return;
        }
        if let Some(counter) = cmsg_u32(data) {
            let delta = counter.wrapping_sub(*last);
            if delta != 0 && delta <= u32::MAX / 2 {
                *last = counter;
                new += u64::from(delta);
            }
        }
    });
    new
}

/// The size of the datagrams the kernel coalesced into one received message (its `UDP_GRO`
/// control message), or None for a message holding one datagram.
fn gro_segment_size(hdr: &libc::msghdr) -> Option<usize> {
    let mut size = None;
    for_each_cmsg(hdr, |level, kind, data| {
        if level == libc::SOL_UDP && kind == libc::UDP_GRO {
            size = cmsg_u32(data).filter(|&s| s > 0).map(|s| s as usize);
        }
    });
    size
}

/// What one send call did.
#[derive(Debug, Default, Clone, Copy)]
pub struct SendReport {
    /// Datagrams the kernel accepted.
    pub sent: usize,
    /// Their payload bytes.
    pub bytes: usize,
    /// Datagrams the kernel refused (too big, unreachable, wrong address family...), skipped.
    pub failed: usize,
}

/// One datagram for [`Sender::send_each`].
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    /// The datagram's bytes.
    pub payload: &'a [u8],
    /// The destination as a raw socket address, laid out as the kernel expects it (from
    /// [`sockaddr_bytes`] or [`Batch::peer_bytes`]); no alignment needed. The kernel validates
    /// it: a malformed one makes the datagram fail, nothing worse.
    pub dest: &'a [u8],
}

/// The raw bytes of a socket address, for [`Outgoing::dest`].
pub fn sockaddr_bytes(addr: &SockAddr) -> &[u8] {
    // SAFETY: `as_ptr` points at the address's storage, which holds at least `len()` bytes.
    unsafe { std::slice::from_raw_parts(addr.as_ptr().cast(), addr.len() as usize) }
}

/// Whether two raw destinations are the same address. Asked for every datagram sent, about
/// 16 or 28 bytes: compared in words, inline (a `memcmp` call costs more than the compare).
#[inline]
fn same_dest(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.as_ptr() == b.as_ptr() {
        return true;
    }
    let (mut a_words, mut b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let word = |w: &[u8]| u64::from_ne_bytes(w.try_into().expect("8 bytes"));
    (&mut a_words)
        .zip(&mut b_words)
        .all(|(x, y)| word(x) == word(y))
        && a_words
            .remainder()
            .iter()
            .zip(b_words.remainder())
            .all(|(x, y)| x == y)
}

/// Errors with which a kernel refuses a segmented send it cannot do (rather than a datagram).
fn is_gso_refusal(errno: Option<i32>) -> bool {
    matches!(
        errno,
        Some(libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP | libc::EMSGSIZE)
    )
}

/// Sends datagrams with `sendmmsg`; with GSO, runs of same-size datagrams (the last of a run
/// may be shorter) to one destination go as one segmented send, straight from where they are.
pub struct Sender {
    socket: UdpSocket,
    gso: bool,
    msgs: Slots<libc::mmsghdr>,
    iovs: Slots<libc::iovec>,
    cmsgs: Box<[u64]>,
    /// Datagrams in each prepared message.
    segments: Box<[usize]>,
}

impl Sender {
    /// Sends through `socket` (connected or not: every datagram names its destination), with
    /// GSO when the kernel has it.
    pub fn new(socket: UdpSocket) -> Sender {
        let gso = match gso_available(socket.as_raw_fd()) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("UDP GSO unavailable, sending datagrams one by one: {e}");
                false
            }
        };
        Sender::with_gso(socket, gso)
    }

    /// Like [`Sender::new`] but never segments, as on a kernel without GSO.
    pub fn without_gso(socket: UdpSocket) -> Sender {
        Sender::with_gso(socket, false)
    }

    fn with_gso(socket: UdpSocket, gso: bool) -> Sender {
        Sender {
            socket,
            gso,
            msgs: Slots::zeroed(SEND_MESSAGES),
            iovs: Slots::zeroed(SEND_IOVECS),
            cmsgs: vec![0u64; SEND_MESSAGES * SEND_CMSG_WORDS].into_boxed_slice(),
            segments: vec![0; SEND_MESSAGES].into_boxed_slice(),
        }
    }

    /// The socket it writes.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// Whether runs of datagrams go as segmented sends (GSO).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Sends every kept datagram of `batch`, in order, to `dest`. A datagram the kernel refuses
    /// is skipped and counted in `failed`; only errors about the socket itself (`EBADF`...) are
    /// returned.
    pub fn send_to(&mut self, batch: &Batch, dest: &SockAddr) -> io::Result<SendReport> {
        let dest = sockaddr_bytes(dest);
        self.send_each(
            batch
                .kept_iter()
                .map(|(payload, _)| Outgoing { payload, dest }),
        )
    }

    /// Like [`Sender::send_to`], but each datagram goes back to the peer it came from
    /// ([`Batch::peer`]); a datagram that was not received has no peer and fails.
    pub fn send_to_peers(&mut self, batch: &Batch) -> io::Result<SendReport> {
        self.send_each(
            batch
                .kept_iter()
                .map(|(payload, dest)| Outgoing { payload, dest }),
        )
    }

    /// Sends every datagram of `datagrams`, in order, in `sendmmsg` calls of up to
    /// [`SEND_MESSAGES`] messages, straight from the memory they live in. Same error rules as
    /// [`Sender::send_to`].
    pub fn send_each<'a>(
        &mut self,
        datagrams: impl IntoIterator<Item = Outgoing<'a>>,
    ) -> io::Result<SendReport> {
        let mut report = SendReport::default();
        let mut datagrams = datagrams.into_iter().peekable();
        loop {
            let max_segments = if self.gso { GSO_MAX_SEGMENTS } else { 1 };
            let (mut n, mut v) = (0, 0);
            let mut exhausted = false;
            while n < SEND_MESSAGES && v < SEND_IOVECS {
                let Some(first) = datagrams.next() else {
                    exhausted = true;
                    break;
                };
                let size = first.payload.len();
                self.set_iov(v, first.payload);
                let (mut count, mut total) = (1, size);
                // Zero-length datagrams cannot be segments: they go alone.
                while size > 0 && count < max_segments && v + count < SEND_IOVECS {
                    let Some(next) = datagrams.peek() else { break };
                    let len = next.payload.len();
                    if len == 0
                        || len > size
                        || total + len > GSO_MAX_BYTES
                        || !same_dest(next.dest, first.dest)
                    {
                        break;
                    }
                    self.set_iov(v + count, next.payload);
                    datagrams.next();
                    count += 1;
                    total += len;
                    if len < size {
                        break; // only the last segment may be shorter
                    }
                }
                self.set_message(n, v, count, size, first.dest);
                n += 1;
                v += count;
            }
            if n > 0 {
                self.flush(n, &mut report)?;
            }
            if exhausted || n == 0 {
                return Ok(report);
            }
        }
    }

    fn set_iov(&mut self, v: usize, payload: &[u8]) {
        let iov = &mut self.iovs.0[v];
        iov.iov_base = payload.as_ptr() as *mut libc::c_void;
        iov.iov_len = payload.len();
    }

    /// Prepares message `n` over iovecs `v..v + count`; with more than one, a segmented send
    /// of `size`-byte datagrams.
    fn set_message(&mut self, n: usize, v: usize, count: usize, size: usize, dest: &[u8]) {
        let control = if count > 1 {
            let words = &mut self.cmsgs[n * SEND_CMSG_WORDS..(n + 1) * SEND_CMSG_WORDS];
            words.fill(0);
            let control = words.as_mut_ptr().cast::<libc::c_void>();
            // SAFETY: a msghdr over this message's control words, large enough for one
            // UDP_SEGMENT message (CMSG_SPACE(2) = 24 bytes of 32), written through the CMSG_*
            // helpers; the u16 payload is written unaligned.
            unsafe {
                let mut hdr: libc::msghdr = mem::zeroed();
                hdr.msg_control = control;
                hdr.msg_controllen = libc::CMSG_SPACE(size_of::<u16>() as u32) as _;
                let cmsg = libc::CMSG_FIRSTHDR(&hdr);
                (*cmsg).cmsg_level = libc::SOL_UDP;
                (*cmsg).cmsg_type = libc::UDP_SEGMENT;
                (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as _;
                std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), size as u16);
                Some((control, hdr.msg_controllen))
            }
        } else {
            None
        };
        self.segments[n] = count;
        let iov = &mut self.iovs.0[v] as *mut libc::iovec;
        let msg = &mut self.msgs.0[n];
        msg.msg_hdr.msg_name = dest.as_ptr() as *mut libc::c_void;
        msg.msg_hdr.msg_namelen = dest.len() as libc::socklen_t;
        msg.msg_hdr.msg_iov = iov;
        msg.msg_hdr.msg_iovlen = count as _;
        (msg.msg_hdr.msg_control, msg.msg_hdr.msg_controllen) =
            control.unwrap_or((std::ptr::null_mut(), 0));
        msg.msg_hdr.msg_flags = 0;
        msg.msg_len = 0;
    }

    /// Sends the `n` prepared messages, looping over partial sends and skipping refused ones.
    fn flush(&mut self, n: usize, report: &mut SendReport) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let mut start = 0;
        while start < n {
            // SAFETY: messages `start..n` point at payloads and addresses borrowed (through
            // `send_each`'s `'a`) for the whole call; the kernel only reads them.
            let rc = unsafe {
                libc::sendmmsg(fd, self.msgs.0.as_mut_ptr().add(start), (n - start) as _, 0)
            };
            if rc > 0 {
                let done = start + rc as usize;
                for k in start..done {
                    report.bytes += self.msgs.0[k].msg_len as usize;
                    report.sent += self.segments[k];
                }
                start = done;
                continue;
            }
            // rc == 0 (nothing moved, no error) is not expected; skipping keeps it from looping.
            let error = (rc < 0).then(io::Error::last_os_error);
            let errno = error.as_ref().and_then(io::Error::raw_os_error);
            match (error, errno) {
                (_, Some(libc::EINTR)) => {}
                (Some(error), Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT)) => {
                    return Err(error)
                }
                (error, _) if self.segments[start] > 1 => {
                    // A segmented send refused: the datagrams go one by one, and if the
                    // kernel cannot segment (old, or no checksum offload on this route),
                    // later sends do not ask again.
                    if self.gso && is_gso_refusal(errno) {
                        log::debug!("UDP GSO refused ({error:?}): sending datagrams one by one");
                        self.gso = false;
                    }
                    self.send_segments_alone(start, report)?;
                    start += 1;
                }
                (error, _) => {
                    // The first remaining message was refused (too big, unreachable, wrong
                    // family, send buffer full on a non-blocking socket...): skip it so that
                    // one bad datagram cannot stall the rest.
                    log::debug!("datagram refused by the kernel: {error:?}");
                    report.failed += 1;
                    start += 1;
                }
            }
        }
        Ok(())
    }

    /// Sends the datagrams of prepared message `k` one `sendmsg` each.
    fn send_segments_alone(&mut self, k: usize, report: &mut SendReport) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let prepared = &self.msgs.0[k].msg_hdr;
        for j in 0..self.segments[k] {
            // SAFETY: a zeroed msghdr is valid; it borrows the destination and iovec `j` of
            // message `k`, both still pointing at memory borrowed for this send.
            let mut hdr: libc::msghdr = unsafe { mem::zeroed() };
            hdr.msg_name = prepared.msg_name;
            hdr.msg_namelen = prepared.msg_namelen;
            // SAFETY: message `k` has `segments[k]` iovecs from `msg_iov` on.
            hdr.msg_iov = unsafe { prepared.msg_iov.add(j) };
            hdr.msg_iovlen = 1;
            loop {
                // SAFETY: `hdr` points at live buffers; the kernel only reads them.
                let rc = unsafe { libc::sendmsg(fd, &hdr, 0) };
                if rc >= 0 {
                    report.sent += 1;
                    report.bytes += rc as usize;
                    break;
                }
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EBADF | libc::ENOTSOCK | libc::EFAULT) => return Err(error),
                    _ => {
                        log::debug!("datagram refused by the kernel: {error:?}");
                        report.failed += 1;
                        break;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::{Duration, Instant};

    const BIG: SocketOptions = SocketOptions {
        recv_buffer: 4 << 20,
        send_buffer: 4 << 20,
    };

    fn loopback(v6: bool) -> SocketAddr {
        if v6 {
            (Ipv6Addr::LOCALHOST, 0).into()
        } else {
            (Ipv4Addr::LOCALHOST, 0).into()
        }
    }

    /// A socket on the loopback address of one family, or None when IPv6 is unavailable.
    fn bound(v6: bool, options: &SocketOptions) -> Option<BoundSocket> {
        match bind(loopback(v6), options) {
            Ok(socket) => Some(socket),
            Err(e) if v6 => {
                eprintln!("skipping the IPv6 case: {e}");
                None
            }
            Err(e) => panic!("{e}"),
        }
    }

    /// Receives until `want` datagrams arrived (in several calls if the kernel hands them over
    /// in pieces), failing after a few seconds.
    fn recv_all(rx: &mut Receiver, want: usize, slot: usize) -> Vec<(Vec<u8>, SocketAddr)> {
        rx.socket()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut batch = Batch::new(slot);
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() < want {
            assert!(
                Instant::now() < deadline,
                "only {} of {want} datagrams arrived",
                got.len()
            );
            let report = rx.recv(&mut batch).unwrap();
            assert_eq!(report.received, batch.len());
            for i in 0..batch.len() {
                got.push((batch.datagram(i).to_vec(), batch.peer(i).unwrap()));
            }
        }
        got
    }

    fn pattern(i: usize, len: usize) -> impl Iterator<Item = u8> {
        (0..len).map(move |k| (i * 31 + k) as u8)
    }

    fn fill(batch: &mut Batch, sizes: &[usize]) {
        for (i, &len) in sizes.iter().enumerate() {
            assert!(batch.push_with(|slot| {
                for (dst, src) in slot.iter_mut().zip(pattern(i, len)) {
                    *dst = src;
                }
                len
            }));
        }
    }

    fn round_trip(v6: bool) {
        let (Some(a), Some(b)) = (bound(v6, &BIG), bound(v6, &BIG)) else {
            return;
        };
        let dest: SockAddr = b.socket.local_addr().unwrap().into();
        let from = a.socket.local_addr().unwrap();
        let slot = 1500;
        let sizes: Vec<usize> = (0..BATCH_SLOTS).map(|i| (i * 97) % (slot + 1)).collect();
        assert_eq!(sizes[0], 0);
        let mut batch = Batch::new(slot);
        fill(&mut batch, &sizes);
        assert!(batch.is_full());
        assert!(!batch.push_with(|_| unreachable!("a full batch must not call write")));
        assert_eq!(batch.kept(), BATCH_SLOTS);
        assert_eq!(batch.kept_bytes(), sizes.iter().sum::<usize>());

        let mut tx = Sender::new(a.socket);
        let report = tx.send_to(&batch, &dest).unwrap();
        assert_eq!(
            (report.sent, report.bytes, report.failed),
            (BATCH_SLOTS, batch.kept_bytes(), 0)
        );

        let mut rx = Receiver::new(b.socket, slot);
        let got = recv_all(&mut rx, BATCH_SLOTS, slot);
        assert_eq!(got.len(), BATCH_SLOTS);
        for (i, (payload, peer)) in got.iter().enumerate() {
            assert_eq!(payload.len(), sizes[i], "datagram {i}");
            assert!(
                payload.iter().copied().eq(pattern(i, sizes[i])),
                "datagram {i} corrupted"
            );
            assert_eq!(*peer, from);
        }
    }

    #[test]
    fn batch_round_trips_in_order_ipv4() {
        round_trip(false);
    }

    #[test]
    fn batch_round_trips_in_order_ipv6() {
        round_trip(true);
    }

    #[test]
    fn oversize_datagram_is_counted_as_truncated() {
        let a = bound(false, &BIG).unwrap();
        let b = bound(false, &BIG).unwrap();
        let dest: SockAddr = b.socket.local_addr().unwrap().into();
        let mut batch = Batch::new(200);
        fill(&mut batch, &[10, 200, 5]);
        let mut tx = Sender::new(a.socket);
        tx.send_to(&batch, &dest).unwrap();

        // The receiver's slots are smaller than the middle datagram.
        let mut rx = Receiver::new(b.socket, 100);
        rx.socket()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut got = Batch::new(100);
        let (mut payloads, mut truncated) = (Vec::new(), 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while payloads.len() + truncated < 3 {
            assert!(Instant::now() < deadline);
            let report = rx.recv(&mut got).unwrap();
            truncated += report.truncated;
            payloads.extend((0..got.len()).map(|i| got.datagram(i).to_vec()));
        }
        assert_eq!(
            payloads,
            vec![pattern(0, 10).collect::<Vec<u8>>(), pattern(2, 5).collect()]
        );
        assert_eq!(truncated, 1);
    }

    #[test]
    fn discarded_datagrams_are_not_sent() {
        let a = bound(false, &BIG).unwrap();
        let b = bound(false, &BIG).unwrap();
        let dest: SockAddr = b.socket.local_addr().unwrap().into();
        let mut batch = Batch::new(64);
        fill(&mut batch, &[1, 2, 3, 4, 5]);
        batch.discard(1);
        batch.discard(3);
        assert!(!batch.is_kept(1) && batch.is_kept(2));
        assert_eq!((batch.kept(), batch.kept_bytes()), (3, 1 + 3 + 5));
        let report = Sender::new(a.socket).send_to(&batch, &dest).unwrap();
        assert_eq!((report.sent, report.bytes), (3, 9));
        let mut rx = Receiver::new(b.socket, 64);
        let got = recv_all(&mut rx, 3, 64);
        let sizes: Vec<usize> = got.iter().map(|(p, _)| p.len()).collect();
        assert_eq!(sizes, vec![1, 3, 5]);
    }

    fn echo_to_peers(v6: bool) {
        let (Some(server), Some(c1), Some(c2)) =
            (bound(v6, &BIG), bound(v6, &BIG), bound(v6, &BIG))
        else {
            return;
        };
        let server_addr: SockAddr = server.socket.local_addr().unwrap().into();
        let mut rx = Receiver::new(server.socket.try_clone().unwrap(), 256);
        let mut echo = Sender::new(server.socket);
        let mut c1_tx = Sender::new(c1.socket.try_clone().unwrap());
        let mut c2_tx = Sender::new(c2.socket.try_clone().unwrap());
        let mut batch = Batch::new(256);
        fill(&mut batch, &[7, 8, 9]);
        c1_tx.send_to(&batch, &server_addr).unwrap();
        batch.clear();
        fill(&mut batch, &[20, 21]);
        c2_tx.send_to(&batch, &server_addr).unwrap();

        // Echo everything back to wherever it came from.
        rx.socket()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut echoed = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while echoed < 5 {
            assert!(Instant::now() < deadline);
            rx.recv(&mut batch).unwrap();
            echoed += echo.send_to_peers(&batch).unwrap().sent;
        }
        let mut c1_rx = Receiver::new(c1.socket, 256);
        let mut c2_rx = Receiver::new(c2.socket, 256);
        let sizes =
            |got: Vec<(Vec<u8>, SocketAddr)>| got.iter().map(|(p, _)| p.len()).collect::<Vec<_>>();
        assert_eq!(sizes(recv_all(&mut c1_rx, 3, 256)), vec![7, 8, 9]);
        assert_eq!(sizes(recv_all(&mut c2_rx, 2, 256)), vec![20, 21]);
    }

    #[test]
    fn send_to_peers_returns_to_sender_ipv4() {
        echo_to_peers(false);
    }

    #[test]
    fn send_to_peers_returns_to_sender_ipv6() {
        echo_to_peers(true);
    }

    #[test]
    fn bind_reports_granted_buffers() {
        // Below the default net.core.rmem_max/wmem_max, so granted even without privileges.
        let asked = SocketOptions {
            recv_buffer: 150_000,
            send_buffer: 120_000,
        };
        let a = bound(false, &asked).unwrap();
        assert!(
            a.recv_buffer >= asked.recv_buffer,
            "{} bytes",
            a.recv_buffer
        );
        assert!(
            a.send_buffer >= asked.send_buffer,
            "{} bytes",
            a.send_buffer
        );
        let addr = a.socket.local_addr().unwrap();
        let error = bind(addr, &asked).err().expect("the port is taken");
        assert_eq!(error.raw_os_error(), Some(libc::EADDRINUSE));
    }

    #[test]
    fn roles_can_move_between_threads() {
        fn send<T: Send>() {}
        send::<Batch>();
        send::<Receiver>();
        send::<Sender>();
    }

    #[test]
    fn read_timeout_returns_nothing() {
        let a = bound(false, &BIG).unwrap();
        a.socket
            .set_read_timeout(Some(Duration::from_millis(30)))
            .unwrap();
        let mut rx = Receiver::new(a.socket, 100);
        let mut batch = Batch::new(100);
        fill(&mut batch, &[3]);
        let started = Instant::now();
        let report = rx.recv(&mut batch).unwrap();
        assert_eq!(report.received, 0);
        assert!(batch.is_empty(), "recv clears the batch");
        assert!(started.elapsed() >= Duration::from_millis(25));
        assert_eq!(rx.recv_nonblocking(&mut batch).unwrap().received, 0);
    }

    #[test]
    fn refused_datagram_is_skipped_and_counted() {
        let a = bound(false, &BIG).unwrap();
        let b = bound(false, &BIG).unwrap();
        let dest: SockAddr = b.socket.local_addr().unwrap().into();
        // 66000 bytes cannot go in one IPv4 UDP datagram: EMSGSIZE for that one only.
        let mut batch = Batch::new(66_000);
        fill(&mut batch, &[10, 66_000, 11]);
        let report = Sender::new(a.socket.try_clone().unwrap())
            .send_to(&batch, &dest)
            .unwrap();
        assert_eq!((report.sent, report.bytes, report.failed), (2, 21, 1));
        // A destination of the wrong family fails the same way.
        let v6: SockAddr = SocketAddr::from((Ipv6Addr::LOCALHOST, 9)).into();
        let report = Sender::new(a.socket).send_to(&batch, &v6).unwrap();
        assert_eq!((report.sent, report.failed), (0, 3));
        let mut rx = Receiver::new(b.socket, 66_000);
        let got = recv_all(&mut rx, 2, 66_000);
        assert_eq!(
            got.iter().map(|(p, _)| p.len()).collect::<Vec<_>>(),
            vec![10, 11]
        );
    }

    #[test]
    fn kernel_drops_are_reported() {
        // The smallest receive buffer the kernel allows; flood it without reading.
        let tiny = SocketOptions {
            recv_buffer: 1,
            send_buffer: 0,
        };
        let a = bound(false, &BIG).unwrap();
        let b = bound(false, &tiny).unwrap();
        let dest: SockAddr = b.socket.local_addr().unwrap().into();
        let mut tx = Sender::new(a.socket);
        let mut batch = Batch::new(512);
        fill(&mut batch, &[512; BATCH_SLOTS]);
        for _ in 0..16 {
            assert_eq!(tx.send_to(&batch, &dest).unwrap().sent, BATCH_SLOTS);
        }
        let mut rx = Receiver::new(b.socket, 512);
        rx.socket()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut received = 0;
        let mut drops = 0;
        // Drain what fit, then send one more: the kernel reports its count with the next
        // datagram it queues.
        loop {
            let report = rx.recv(&mut batch).unwrap();
            if report.received == 0 {
                break;
            }
            received += report.received;
            drops += report.kernel_drops;
        }
        batch.clear();
        fill(&mut batch, &[1]);
        tx.send_to(&batch, &dest).unwrap();
        let report = rx.recv(&mut batch).unwrap();
        assert_eq!(report.received, 1);
        drops += report.kernel_drops;
        assert!(received < 16 * BATCH_SLOTS, "nothing was dropped");
        // Drops before the socket (a full loopback backlog) are not the socket's to count.
        assert!(
            drops > 0 && drops as usize <= 16 * BATCH_SLOTS - received,
            "{drops} drops"
        );
        // The counter is cumulative in the kernel but reported as a delta.
        batch.clear();
        fill(&mut batch, &[1]);
        tx.send_to(&batch, &dest).unwrap();
        assert_eq!(rx.recv(&mut batch).unwrap().kernel_drops, 0);
    }

    /// Sizes that make runs of every kind: long equal runs (more than one segmented send can
    /// carry), runs ending in a shorter datagram, a longer one breaking a run, lone sizes, an
    /// empty datagram, and a run longer than a batch so that a coalesced receive spans batches.
    fn mixed_sizes(slot: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        sizes.extend([1000; 70]);
        sizes.push(600);
        sizes.extend([slot; 300]);
        sizes.extend([0, 7, 7, 7, 9, 3, 1]);
        sizes.extend([50; 10]);
        sizes.push(slot);
        sizes.extend((1..=20).map(|k| k * 61));
        sizes.extend([slot; 200]);
        sizes.push(1);
        sizes
    }

    /// Sends `sizes` (in batches) from a socket to another, with GSO and GRO as asked, and
    /// checks that every datagram arrives once, whole and in order. Returns whether the
    /// receiver saw coalesced messages, and the sender's final GSO state.
    fn exchange(
        v6: bool,
        sizes: &[usize],
        slot: usize,
        gso: bool,
        gro: bool,
    ) -> Option<(bool, bool)> {
        let (a, b) = (bound(v6, &BIG)?, bound(v6, &BIG)?);
        let from = a.socket.local_addr().unwrap();
        let dest: SockAddr = b.socket.local_addr().unwrap().into();
        let mut tx = if gso {
            Sender::new(a.socket)
        } else {
            Sender::without_gso(a.socket)
        };
        let mut rx = if gro {
            Receiver::new(b.socket, slot)
        } else {
            Receiver::without_gro(b.socket, slot)
        };
        assert!(!tx.gso() || gso, "GSO off was asked for");
        assert!(!rx.gro() || gro, "GRO off was asked for");
        let mut batch = Batch::new(slot);
        let mut sent = 0;
        for (first, chunk) in sizes.chunks(BATCH_SLOTS).enumerate() {
            batch.clear();
            for (k, &len) in chunk.iter().enumerate() {
                let n = first * BATCH_SLOTS + k;
                assert!(batch.push_with(|buf| {
                    for (dst, src) in buf.iter_mut().zip(pattern(n, len)) {
                        *dst = src;
                    }
                    len
                }));
            }
            let report = tx.send_to(&batch, &dest).unwrap();
            assert_eq!(
                (report.sent, report.bytes, report.failed),
                (chunk.len(), chunk.iter().sum(), 0)
            );
            sent += report.sent;
        }
        assert_eq!(sent, sizes.len());

        rx.socket()
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut got = 0;
        let mut coalesced = false;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < sizes.len() {
            assert!(
                Instant::now() < deadline,
                "only {got} of {} arrived",
                sizes.len()
            );
            let report = rx.recv(&mut batch).unwrap();
            assert_eq!(
                (report.received, report.truncated, report.kernel_drops),
                (batch.len(), 0, 0)
            );
            coalesced |= (0..rx.arena.count).any(|m| rx.arena.lens[m] > rx.arena.segments[m]);
            for i in 0..batch.len() {
                let n = got + i;
                assert!(n < sizes.len(), "more datagrams than were sent");
                assert_eq!(batch.datagram(i).len(), sizes[n], "datagram {n}");
                assert!(
                    batch.datagram(i).iter().copied().eq(pattern(n, sizes[n])),
                    "datagram {n} corrupted"
                );
                assert_eq!(batch.peer(i), Some(from));
            }
            got += batch.len();
        }
        assert_eq!(
            rx.recv_nonblocking(&mut batch).unwrap().received,
            0,
            "nothing extra"
        );
        Some((coalesced, tx.gso()))
    }

    #[test]
    fn coalesced_datagrams_are_split_in_order_ipv4() {
        let Some((coalesced, gso)) = exchange(false, &mixed_sizes(1232), 1232, true, true) else {
            return;
        };
        assert!(gso, "GSO was given up");
        assert!(coalesced, "GSO and GRO on, yet no datagrams were coalesced");
    }

    #[test]
    fn coalesced_datagrams_are_split_in_order_ipv6() {
        if let Some((coalesced, _)) = exchange(true, &mixed_sizes(1232), 1232, true, true) {
            assert!(coalesced, "GSO and GRO on, yet no datagrams were coalesced");
        }
    }

    #[test]
    fn segmented_sends_reach_a_receiver_without_gro() {
        // The kernel splits them again before queueing.
        let (coalesced, _) = exchange(false, &mixed_sizes(1232), 1232, true, false).unwrap();
        assert!(!coalesced);
    }

    #[test]
    fn plain_sends_reach_a_receiver_with_gro() {
        let (coalesced, gso) = exchange(false, &mixed_sizes(1232), 1232, false, true).unwrap();
        assert!(!coalesced && !gso);
    }

    #[test]
    fn plain_sends_reach_a_plain_receiver() {
        let (coalesced, _) = exchange(false, &mixed_sizes(1232), 1232, false, false).unwrap();
        assert!(!coalesced);
    }

    #[test]
    fn refused_segmented_sends_go_one_by_one() {
        // The kernel refuses to segment for a socket that sends without UDP checksums (EINVAL),
        // as it may for a route that cannot: the datagrams still go, and GSO is given up.
        let a = bound(false, &BIG).unwrap();
        let b = bound(false, &BIG).unwrap();
        set_int_option(a.socket.as_raw_fd(), libc::SOL_SOCKET, libc::SO_NO_CHECK, 1).unwrap();
        let dest: SockAddr = b.socket.local_addr().unwrap().into();
        let mut tx = Sender::new(a.socket);
        if !tx.gso() {
            eprintln!("skipping: no GSO on this kernel");
            return;
        }
        let sizes = [300, 300, 300, 100, 20, 20];
        let mut batch = Batch::new(300);
        fill(&mut batch, &sizes);
        let report = tx.send_to(&batch, &dest).unwrap();
        assert_eq!((report.sent, report.bytes, report.failed), (6, 1040, 0));
        assert!(!tx.gso(), "GSO is given up after a refusal");
        let mut rx = Receiver::new(b.socket, 300);
        let got = recv_all(&mut rx, 6, 300);
        for (i, (payload, _)) in got.iter().enumerate() {
            assert!(
                payload.iter().copied().eq(pattern(i, sizes[i])),
                "datagram {i}"
            );
        }
    }

    #[test]
    fn each_datagram_is_handed_over_without_a_batch() {
        let a = bound(false, &BIG).unwrap();
        let b = bound(false, &BIG).unwrap();
        let from = a.socket.local_addr().unwrap();
        let dest: SockAddr = b.socket.local_addr().unwrap().into();
        // Slots of 100 bytes: the 150-byte run is too large and counted, the rest arrives.
        let sizes = [40, 40, 40, 150, 150, 150, 100, 100, 0, 60];
        let mut batch = Batch::new(150);
        fill(&mut batch, &sizes);
        // GRO applies to what is queued after it is turned on.
        let mut rx = Receiver::new(b.socket, 100);
        Sender::new(a.socket).send_to(&batch, &dest).unwrap();
        let (mut got, mut truncated, mut coalesced) = (Vec::new(), 0, false);
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.len() + truncated < sizes.len() {
            assert!(Instant::now() < deadline, "only {} arrived", got.len());
            let report = rx
                .recv_each_nonblocking(|peer, datagram| {
                    got.push((peer.to_vec(), datagram.to_vec()))
                })
                .unwrap();
            truncated += report.truncated;
            coalesced |= (0..rx.arena.count).any(|m| rx.arena.lens[m] > rx.arena.segments[m]);
        }
        assert_eq!(truncated, 3);
        assert!(coalesced || !rx.gro(), "GRO on, yet nothing was coalesced");
        let expected: Vec<usize> = (0..sizes.len()).filter(|&i| sizes[i] <= 100).collect();
        assert_eq!(got.len(), expected.len());
        for ((peer, payload), &i) in got.iter().zip(&expected) {
            assert!(
                payload.iter().copied().eq(pattern(i, sizes[i])),
                "datagram {i}"
            );
            assert_eq!(peer.as_slice(), sockaddr_bytes(&from.into()));
        }
    }

    #[test]
    fn destinations_compare_by_value() {
        let v4: SockAddr = SocketAddr::from((Ipv4Addr::LOCALHOST, 9)).into();
        let v6: SockAddr = SocketAddr::from((Ipv6Addr::LOCALHOST, 9)).into();
        for addr in [&v4, &v6] {
            let bytes = sockaddr_bytes(addr);
            let copy = bytes.to_vec();
            assert!(same_dest(bytes, bytes) && same_dest(bytes, &copy));
            for at in 0..copy.len() {
                let mut other = copy.clone();
                other[at] ^= 1;
                assert!(!same_dest(bytes, &other), "byte {at} differs");
            }
            assert!(!same_dest(bytes, &copy[..copy.len() - 1]));
        }
        assert!(!same_dest(sockaddr_bytes(&v4), sockaddr_bytes(&v6)));
    }

    /// Feeds `drop_delta` a control message announcing `counter`.
    fn announce(counter: u32, last: &mut u32) -> u64 {
        let mut buffer = [0u64; CMSG_SLOT_WORDS];
        // SAFETY: a zeroed msghdr whose control buffer is `buffer`, large enough for one
        // SO_RXQ_OVFL message, written through the CMSG_* helpers.
        unsafe {
            let mut hdr: libc::msghdr = mem::zeroed();
            hdr.msg_control = buffer.as_mut_ptr().cast();
            hdr.msg_controllen = libc::CMSG_SPACE(4) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&hdr);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SO_RXQ_OVFL;
            (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u32>(), counter);
            drop_delta(last, &hdr)
        }
    }

    #[test]
    fn drop_counter_delta_wraps() {
        let mut last = u32::MAX - 2;
        assert_eq!(announce(2, &mut last), 5);
        assert_eq!(last, 2);
        // A value behind the last one (queued out of order) is not a wrap.
        assert_eq!(announce(1, &mut last), 0);
        assert_eq!(announce(2, &mut last), 0);
        assert_eq!(announce(10, &mut last), 8);
    }
}
