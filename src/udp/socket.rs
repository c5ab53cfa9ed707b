//! socket: UDP socket setup: binding, kernel buffer sizes, the kernel's drop counter.
//!
//! It owns the socket options the roles ask for ([`SocketOptions`]), what the kernel really
//! granted ([`BoundSocket`]), the wording of a failed bind, and the `setsockopt`/`getsockopt`
//! plumbing the receiver and sender use for their own options (GRO, GSO). It must not receive
//! or send datagrams.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

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
        let container = in_container();
        for (which, got, asked, sysctl) in capped {
            if got < asked {
                let advice = if container {
                    // Not a per-container setting: read-only (or absent) in a container's
                    // network namespace, so runc fails on `docker run --sysctl` for it.
                    format!(
                        "in a container the limit is the host's {sysctl}, which no container \
                         can change (nor can `docker run --sysctl`): raise it on the host with \
                         `sysctl -w {sysctl}={asked}`, or give the process CAP_NET_ADMIN \
                         (`docker run --user 0 --cap-add NET_ADMIN`)"
                    )
                } else {
                    format!(
                        "raise the limit with `sysctl -w {sysctl}={asked}` or run with \
                         CAP_NET_ADMIN"
                    )
                };
                log::warn!(
                    "the {which} socket buffer is {got} bytes, below the {asked} requested: \
                     bursts may be dropped; {advice}"
                );
            }
        }
    }
}

/// Whether this process runs in a container, going by the files Docker and Podman put in every
/// container's root and systemd writes when it boots in one (systemd-nspawn, LXC).
fn in_container() -> bool {
    [
        "/.dockerenv",
        "/run/.containerenv",
        "/run/systemd/container",
    ]
    .iter()
    .any(|marker| std::path::Path::new(marker).exists())
}

/// Binds a UDP socket with large kernel buffers.
///
/// Tries `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (root or `CAP_NET_ADMIN`) and falls back to
/// `SO_RCVBUF`/`SO_SNDBUF`, which the kernel caps at `net.core.rmem_max`/`wmem_max`. Enables
/// `SO_RXQ_OVFL` so that [`Receiver::recv`](super::Receiver::recv) can report the kernel's
/// drops. Errors are the plain OS errors; [`bind_failed`] words one for a user.
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

pub(super) fn set_int_option(
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

pub(super) fn get_int_option(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
) -> io::Result<i32> {
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

/// Turns on `SO_RXQ_OVFL`: the kernel then attaches its drop counter to received datagrams.
pub(super) fn enable_drop_counter(fd: libc::c_int) -> io::Result<()> {
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn bind_reports_granted_buffers() {
        // Below the default net.core.rmem_max/wmem_max, so granted even without privileges.
        let asked = SocketOptions {
            recv_buffer: 150_000,
            send_buffer: 120_000,
        };
        let a = bind((Ipv4Addr::LOCALHOST, 0).into(), &asked).unwrap();
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
        assert_eq!(
            bind_failed(addr, error).to_string(),
            format!("cannot bind UDP {addr}: Address already in use")
        );
    }
}
