//! recv: receiving datagrams with `recvmmsg`, and UDP GRO (generic receive offload).
//!
//! It owns the [`Receiver`]: its syscall arrays, its control-message buffers, and with GRO the
//! arena that coalesced messages land in before they are split back into datagrams, in order.
//! It reads the kernel's drop counter (`SO_RXQ_OVFL`) and reports it as a delta. It must not
//! interpret payloads, allocate after construction, or log per datagram: it counts, and the
//! roles decide what to report.

use std::io;
use std::mem;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use super::batch::{storage_bytes, Batch, BATCH_SLOTS};
use super::mmsg::Slots;
use super::socket::{enable_drop_counter, set_int_option};

/// Messages one `recvmmsg` asks for (each a datagram, or with GRO up to 64 KiB of them).
const RECV_MESSAGES: usize = 64;
/// The receive buffer of one message with GRO on: the most the kernel coalesces.
const GRO_BUFFER: usize = 65_536;

/// Room for the control messages of one received datagram: `SO_RXQ_OVFL` and `UDP_GRO` (one
/// `u32` each) plus slack for options someone else may have enabled on the socket.
const CMSG_SLOT_WORDS: usize = 8;
const CMSG_SLOT_BYTES: usize = CMSG_SLOT_WORDS * size_of::<u64>();
/// The size of the source address buffer of one message.
const STORAGE_LEN: libc::socklen_t = size_of::<libc::sockaddr_storage>() as libc::socklen_t;

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

/// Turns on `UDP_GRO` (Linux 5.0+): the kernel may then hand over several same-size datagrams
/// from one sender as one buffer, which [`Receiver`] splits again.
fn enable_gro(fd: libc::c_int) -> io::Result<()> {
    set_int_option(fd, libc::SOL_UDP, libc::UDP_GRO, 1)
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
    /// has it. Enables `SO_RXQ_OVFL` (as [`bind`](super::bind) does) in case the socket was made
    /// elsewhere.
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

    /// Whether the last receive took a message holding more than one datagram.
    #[cfg(test)]
    pub(super) fn coalesced(&self) -> bool {
        (0..self.arena.count).any(|m| self.arena.lens[m] > self.arena.segments[m])
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
    /// address it came from (for [`Outgoing::dest`](super::Outgoing::dest)). Datagrams larger
    /// than the slot size are counted as `truncated` instead.
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

#[cfg(test)]
mod tests {
    use super::*;

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
