//! send: sending datagrams with `sendmmsg`, and UDP GSO (generic segmentation offload).
//!
//! It owns the [`Sender`]: its syscall arrays and the grouping of runs of same-size datagrams to
//! one destination into segmented sends, sent straight from the memory the datagrams live in.
//! A datagram the kernel refuses is skipped and counted; a kernel that refuses to segment gets
//! every later datagram one by one. It must not interpret payloads, allocate after
//! construction, or log per datagram.

use std::io;
use std::mem;
use std::net::UdpSocket;
use std::os::fd::AsRawFd;

use socket2::SockAddr;

use super::batch::Batch;
use super::mmsg::Slots;
use super::socket::get_int_option;

/// The most datagrams one segmented send carries (the kernel's `UDP_MAX_SEGMENTS` before 6.x).
const GSO_MAX_SEGMENTS: usize = 64;
/// The most payload bytes one segmented send carries: the largest IPv4 UDP payload.
const GSO_MAX_BYTES: usize = 65_507;
/// Messages (single datagrams or segmented sends) per `sendmmsg`.
const SEND_MESSAGES: usize = 64;
/// Datagrams per `sendmmsg` (one `iovec` each).
const SEND_IOVECS: usize = 1024;
/// Room for the `UDP_SEGMENT` control message (one `u16`) of one send.
const SEND_CMSG_WORDS: usize = 4;

/// Whether the kernel takes `UDP_SEGMENT` (Linux 4.18+). An older kernel would ignore the
/// control message and send one oversized datagram, so this is asked before the first send.
fn gso_available(fd: libc::c_int) -> io::Result<()> {
    get_int_option(fd, libc::SOL_UDP, libc::UDP_SEGMENT).map(|_| ())
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
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

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
}
