//! values: the text of one flag (or argument) turned into a typed value, or into one line
//! saying what is wrong with it.
//!
//! It owns the accepted forms of addresses, host names, sizes, durations and keys, and the
//! [`UsageError`] every parsing failure becomes (exit code 2). Each error names where the text
//! came from (`--bind` or `ELAYDAY_BIND`). It must not know which subcommand takes what.

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// A usage error: one line for the user, exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error of `message`, on one line: control characters that came in with the user's
/// text (a newline in an argument, an escape sequence) are shown escaped.
pub(super) fn usage(message: impl Into<String>) -> UsageError {
    let message: String = message.into();
    if !message.contains(char::is_control) {
        return UsageError(message);
    }
    let escaped = message
        .chars()
        .map(|c| match c {
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect();
    UsageError(escaped)
}
/// A KEY argument: text (UTF-8), not empty.
pub(super) fn key_text(key: &OsString) -> Result<String, UsageError> {
    let key = key.to_str().ok_or_else(|| {
        usage("the KEY is not valid UTF-8 (keys are text; values may be any bytes)")
    })?;
    if key.is_empty() {
        return Err(usage("the KEY must not be empty"));
    }
    Ok(key.to_string())
}

/// `[::1]:24603`, `127.0.0.1:24603` or `node1.example:24603`: something gRPC can connect to.
pub fn grpc_target(text: &str, source: &str) -> Result<String, UsageError> {
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(text.to_string());
    }
    let port = match text.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && !host.contains(':') => port,
        _ => "",
    };
    if port.parse::<u16>().is_err() {
        return Err(usage(format!(
            "{source}: '{text}' is not a host with a port (e.g. [::1]:24603 or node1.example:24603)"
        )));
    }
    Ok(text.to_string())
}

/// `[::1]:24601` or `127.0.0.1:24601`.
pub fn socket_addr(text: &str, source: &str) -> Result<SocketAddr, UsageError> {
    text.parse().map_err(|_| {
        usage(format!(
            "{source}: '{text}' is not an address with a port (e.g. [::1]:24601 or 127.0.0.1:24601)"
        ))
    })
}

/// Looks `host` up with the system's resolver.
pub fn system_lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Resolves `host:port` to an address of the same family as the local socket, looking names up
/// with `lookup` (normally [`system_lookup`]).
pub fn resolve(
    text: &str,
    source: &str,
    bind: SocketAddr,
    lookup: impl Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
) -> Result<SocketAddr, UsageError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return same_family(addr, bind).ok_or_else(|| family_error(text, source, bind));
    }
    let needs_port = || {
        usage(format!(
            "{source}: '{text}' needs a port (e.g. node2.example:24601)"
        ))
    };
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => rest.split_once("]:").ok_or_else(needs_port)?,
        None => match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, port),
            _ => return Err(needs_port()),
        },
    };
    let port: u16 = port.parse().map_err(|_| {
        usage(format!(
            "{source}: '{port}' in '{text}' is not a port number"
        ))
    })?;
    let addrs =
        lookup(host, port).map_err(|e| usage(format!("{source}: cannot resolve '{host}': {e}")))?;
    addrs
        .iter()
        .find_map(|&a| same_family(a, bind))
        .ok_or_else(|| family_error(text, source, bind))
}

fn same_family(addr: SocketAddr, bind: SocketAddr) -> Option<SocketAddr> {
    match (addr, bind) {
        (SocketAddr::V4(_), SocketAddr::V4(_)) | (SocketAddr::V6(_), SocketAddr::V6(_)) => {
            Some(addr)
        }
        // An IPv6 socket reaches IPv4 peers through mapped addresses (when not IPv6-only).
        (SocketAddr::V4(v4), SocketAddr::V6(b)) if b.ip().is_unspecified() => {
            Some(SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()))
        }
        _ => None,
    }
}

fn family_error(text: &str, source: &str, bind: SocketAddr) -> UsageError {
    let family = if bind.is_ipv4() { "IPv4" } else { "IPv6" };
    usage(format!(
        "{source}: '{text}' has no {family} address, but --bind {bind} is {family}"
    ))
}

/// `1500`, `64K`, `256M`, `1G` (binary multiples; `KiB`/`MiB`/`GiB` and `B` also accepted).
pub fn bytes(text: &str, source: &str) -> Result<u64, UsageError> {
    let bad = || {
        usage(format!(
            "{source}: '{text}' is not a size in bytes (e.g. 65536, 64K, 256M, 1G)"
        ))
    };
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, suffix) = t.split_at(digits);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let shift = match suffix.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(bad()),
    };
    number.checked_mul(1 << shift).ok_or_else(bad)
}

/// `1`, `0.5`, `2.25` seconds.
pub fn seconds(text: &str, source: &str) -> Result<Duration, UsageError> {
    let value: f64 = text.trim().trim_end_matches('s').parse().map_err(|_| {
        usage(format!(
            "{source}: '{text}' is not a number of seconds (e.g. 1 or 0.25)"
        ))
    })?;
    if !value.is_finite() || !(0.0..=86_400.0).contains(&value) {
        return Err(usage(format!(
            "{source}: {text} is out of range (0 to 86400 seconds)"
        )));
    }
    Ok(Duration::from_secs_f64(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_on_one_line_whatever_the_input() {
        let e = usage("unknown subcommand 'a\nb\u{1b}[31m'");
        assert_eq!(e.to_string(), "unknown subcommand 'a\\nb\\u{1b}[31m'");
        assert_eq!(usage("plain").to_string(), "plain");
    }

    #[test]
    fn sizes_and_seconds() {
        assert_eq!(bytes("64K", "x").unwrap(), 65536);
        assert_eq!(bytes("1 GiB", "x").unwrap(), 1 << 30);
        assert_eq!(bytes("1500", "x").unwrap(), 1500);
        assert!(bytes("99999999999G", "x").is_err());
        assert_eq!(seconds("0.25", "x").unwrap(), Duration::from_millis(250));
        assert!(seconds("NaN", "x").is_err());
    }

    #[test]
    fn host_names_resolve() {
        let bind: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            resolve("localhost:9", "x", bind, system_lookup).unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(resolve("no-such-host.invalid:9", "x", bind, system_lookup)
            .unwrap_err()
            .0
            .contains("cannot resolve"));
    }
}
