//! notify: the service manager's readiness protocol (`sd_notify`), for units of `Type=notify`.
//!
//! When systemd starts the daemon it sets `NOTIFY_SOCKET` to a Unix datagram socket, a path
//! (`/run/systemd/notify`) or an abstract name (`@...`). This module owns that one exchange:
//! one datagram of `KEY=VALUE` lines per state change, `READY=1` once the daemon's sockets are
//! bound and its API listens, `STOPPING=1` when it begins to shut down. Without the variable it
//! does nothing. It must not fail the daemon: a message that cannot be sent is a warning.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// Tells the service manager that the daemon is up; `status` is shown by `systemctl status`.
pub fn ready(status: &str) {
    send_or_warn(&format!("READY=1\nSTATUS={}", one_line(status)));
}

/// Tells the service manager that the daemon is shutting down.
pub fn stopping(status: &str) {
    send_or_warn(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
}

fn send_or_warn(message: &str) {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET) else {
        return;
    };
    let target = target.to_string_lossy();
    if let Err(e) = send(&target, message) {
        log::warn!("cannot notify the service manager at {NOTIFY_SOCKET}={target}: {e}");
    }
}

/// Sends `message` as one datagram to the socket named by `target` (a `NOTIFY_SOCKET` value).
pub fn send(target: &str, message: &str) -> io::Result<()> {
    let address = socket_address(target)?;
    let socket = UnixDatagram::unbound()?;
    let sent = socket.send_to_addr(message.as_bytes(), &address)?;
    if sent != message.len() {
        return Err(io::Error::other(format!(
            "sent {sent} of {} bytes",
            message.len()
        )));
    }
    Ok(())
}

/// `/run/systemd/notify` is a path; `@name` is the abstract socket `\0name`.
pub fn socket_address(target: &str) -> io::Result<SocketAddr> {
    if let Some(name) = target.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        SocketAddr::from_abstract_name(name.as_bytes())
    } else if target.starts_with('/') {
        SocketAddr::from_pathname(target)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a socket path (/...) or an abstract socket name (@...)",
        ))
    }
}

/// A status is one line of the message: line breaks would start new assignments.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::linux::net::SocketAddrExt;

    #[test]
    fn addresses_are_paths_or_abstract_names() {
        let path = socket_address("/run/systemd/notify").unwrap();
        assert_eq!(
            path.as_pathname(),
            Some(std::path::Path::new("/run/systemd/notify"))
        );
        let abstract_name = socket_address("@elayday/test").unwrap();
        assert_eq!(abstract_name.as_abstract_name(), Some(&b"elayday/test"[..]));
        for bad in ["", "relative/path", "vsock:2:1234"] {
            assert!(socket_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_datagram_reaches_an_abstract_socket() {
        let name = format!("elayday-notify-unit-{}", std::process::id());
        let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let receiver = UnixDatagram::bind_addr(&address).unwrap();
        send(&format!("@{name}"), "READY=1\nSTATUS=up").unwrap();
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=up");
    }

    #[test]
    fn a_missing_socket_is_an_error() {
        let missing = std::env::temp_dir().join(format!(
            "elayday-no-such-notify-socket-{}",
            std::process::id()
        ));
        assert!(send(missing.to_str().unwrap(), "READY=1").is_err());
    }

    #[test]
    fn status_stays_on_one_line() {
        assert_eq!(one_line("a\nb\rc"), "a b c");
    }
}
