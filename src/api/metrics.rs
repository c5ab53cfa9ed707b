//! metrics: the Prometheus endpoint, a small synchronous HTTP/1.1 server on its own thread.
//!
//! It owns the metrics TCP listener and the `metrics` role thread, which answers
//! `GET /metrics` with the node's figures in the Prometheus text exposition format 0.0.4, one
//! connection at a time.
//! It gets the figures the way a gRPC call does: a request id in [`crate::pending`], a
//! [`Command::Stats`] to the processor, and a blocking wait on its own thread. Each client has a
//! bounded time to send its request and to take the answer, so a slow or silent client holds the
//! endpoint for a few seconds at most. It must not keep figures of its own nor touch protocol
//! state; it must not block the processor.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{Shutdown as Half, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::daemon::roles::spawn_role;
use crate::daemon::shutdown::Shutdown;
use crate::node::{Answer, Command, NodeHandle, Stats};

/// Time a client has to send its whole request head.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Time a client has to take each part of the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long to take what a client still sends after the answer, before closing.
const LINGER: Duration = Duration::from_millis(200);
/// How long to wait for the processor's figures.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);
/// How often the idle thread looks at the shutdown flag.
const SHUTDOWN_POLL_MS: i32 = 200;

/// The exposition format this endpoint speaks.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A bound metrics listener, not serving yet: bind before starting the node so that a port in
/// use fails fast, then [`MetricsListener::serve`].
pub struct MetricsListener {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl MetricsListener {
    /// Binds `addr`; the error names it, e.g. "cannot bind metrics 127.0.0.1:9100: Address
    /// already in use".
    pub fn bind(addr: SocketAddr) -> io::Result<MetricsListener> {
        let bind_error =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot bind metrics {addr}: {e}"));
        let listener = TcpListener::bind(addr).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        let local_addr = listener.local_addr()?;
        Ok(MetricsListener {
            listener,
            local_addr,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Starts the `metrics` role thread (see [`spawn_role`]), which serves `node`'s figures
    /// until `shutdown`.
    pub fn serve(self, node: NodeHandle, shutdown: &Shutdown) -> io::Result<MetricsServer> {
        let local_addr = self.local_addr;
        let stop = shutdown.clone();
        let thread = spawn_role("metrics", shutdown, move || {
            accept_loop(&self.listener, &node, &stop)
        })?;
        log::info!("Prometheus metrics on http://{local_addr}/metrics");
        Ok(MetricsServer { local_addr, thread })
    }
}

/// The running endpoint.
pub struct MetricsServer {
    /// The address it listens on.
    pub local_addr: SocketAddr,
    thread: JoinHandle<()>,
}

impl MetricsServer {
    /// Waits for the thread after a shutdown request (it notices within a fraction of a second).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

fn accept_loop(listener: &TcpListener, node: &NodeHandle, shutdown: &Shutdown) {
    while !shutdown.is_requested() {
        if !readable(listener, SHUTDOWN_POLL_MS) {
            continue;
        }
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(e) = serve_connection(stream, node) {
                    log::debug!("metrics: connection from {peer}: {e}");
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // E.g. out of file descriptors: wait a little rather than spin.
                log::warn!("metrics: cannot accept a connection: {e}");
                shutdown.wait_timeout(Duration::from_millis(100));
            }
        }
    }
}

/// Waits up to `timeout_ms` for a connection to accept.
fn readable(listener: &TcpListener, timeout_ms: i32) -> bool {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a socket we own, for the duration of the call.
    let ready = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
    ready > 0
}

/// An HTTP answer.
struct Response {
    status: &'static str,
    content_type: &'static str,
    extra_header: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            extra_header: "",
            body: body.into(),
        }
    }
}

fn serve_connection(mut stream: TcpStream, node: &NodeHandle) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let (response, head_only) = match read_head(&mut stream) {
        Ok(head) => respond(&head, node),
        Err(HeadError::Closed) => return Ok(()),
        Err(HeadError::TimedOut) => (
            Response::text("408 Request Timeout", "the request took too long\n"),
            false,
        ),
        Err(HeadError::TooLarge) => (
            Response::text(
                "431 Request Header Fields Too Large",
                "the request head is too large\n",
            ),
            false,
        ),
        Err(HeadError::Io(e)) => return Err(e),
    };
    let mut out = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}Connection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len(),
        response.extra_header
    );
    if !head_only {
        out.push_str(&response.body);
    }
    stream.write_all(out.as_bytes())?;
    // Close gracefully: tell the client we are done, then take (and discard) whatever it still
    // sends for a moment, so that closing does not reset the connection under our answer.
    stream.shutdown(Half::Write)?;
    let deadline = Instant::now() + LINGER;
    let mut sink = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Ok(())
}

enum HeadError {
    Closed,
    TimedOut,
    TooLarge,
    Io(io::Error),
}

/// Reads up to the blank line that ends the request head, within [`REQUEST_TIMEOUT`] in all.
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::TimedOut);
        }
        stream.set_read_timeout(Some(left)).map_err(HeadError::Io)?;
        let n = match stream.read(&mut chunk) {
            Ok(0) if head.is_empty() => return Err(HeadError::Closed),
            Ok(0) => return Ok(head), // ended early: let the parser judge what came
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::TimedOut)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HeadError::Io(e)),
        };
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if head.len() > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
    }
}

/// Where the head ends: after the first empty line (CRLF CRLF, or bare LF LF).
fn head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The answer to a request head, and whether to send it without a body (HEAD).
fn respond(head: &[u8], node: &NodeHandle) -> (Response, bool) {
    let bad = |why: &str| (Response::text("400 Bad Request", format!("{why}\n")), false);
    let Ok(head) = std::str::from_utf8(head) else {
        return bad("the request head is not text");
    };
    let line = head.lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return bad("expected a request line like 'GET /metrics HTTP/1.1'");
    };
    if !version.starts_with("HTTP/1.") {
        return bad("only HTTP/1.x is spoken here");
    }
    let is_token = !method.is_empty()
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !is_token || !target.starts_with('/') {
        return bad("expected a request line like 'GET /metrics HTTP/1.1'");
    }
    let path = target.split(['?', '#']).next().unwrap_or(target);
    if path != "/metrics" {
        return (
            Response::text("404 Not Found", "not found; the metrics are at /metrics\n"),
            false,
        );
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => {
            let mut response = Response::text(
                "405 Method Not Allowed",
                "only GET (and HEAD) are allowed here\n",
            );
            response.extra_header = "Allow: GET, HEAD\r\n";
            return (response, false);
        }
    };
    let response = match fetch_stats(node) {
        Some(stats) => Response {
            status: "200 OK",
            content_type: CONTENT_TYPE,
            extra_header: "",
            body: render(&stats),
        },
        None => Response::text(
            "503 Service Unavailable",
            "the node did not answer (is it shutting down?)\n",
        ),
    };
    (response, head_only)
}

/// Asks the processor for its figures, as a gRPC call would, and waits on this thread.
fn fetch_stats(node: &NodeHandle) -> Option<Box<Stats>> {
    let id = node.pending.register().ok()?;
    if node.commands.send(Command::Stats { id }).is_err() {
        node.pending.forget(id);
        return None;
    }
    match node.pending.wait(id, STATS_TIMEOUT)? {
        Answer::Stats(stats) => Some(stats),
        _ => None,
    }
}

/// The figures in the Prometheus text format: each family's HELP and TYPE, then its samples.
pub fn render(stats: &Stats) -> String {
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let plain = |value: u64| vec![(String::new(), value.to_string())];
    family(
        "elayday_build_info",
        "gauge",
        "The version of elayday running this node (always 1).",
        &[(
            format!("{{version=\"{}\"}}", escape(env!("CARGO_PKG_VERSION"))),
            "1".into(),
        )],
    );
    family(
        "elayday_loop_closed",
        "gauge",
        "1 while the node's probes come back (the loop is closed), 0 otherwise.",
        &plain(stats.loop_closed as u64),
    );
    let periods: Vec<(String, String)> = [
        ("last", stats.period_last),
        ("min", stats.period_min),
        ("max", stats.period_max),
    ]
    .into_iter()
    .filter_map(|(stat, period)| {
        period.map(|p| (format!("{{stat=\"{stat}\"}}"), p.as_secs_f64().to_string()))
    })
    .collect();
    family(
        "elayday_loop_period_seconds",
        "gauge",
        "Time for a datagram to go round the loop once: last measured, minimum and maximum since start (absent until the first probe came back).",
        &periods,
    );
    let counts = [
        (
            "elayday_circulating_datagrams",
            "gauge",
            "Data datagrams that passed this node during the last full loop.",
            stats.circulating_datagrams,
        ),
        (
            "elayday_circulating_bytes",
            "gauge",
            "Bytes (whole UDP payloads) of the data datagrams that passed this node during the last full loop.",
            stats.circulating_bytes,
        ),
        (
            "elayday_circulating_values",
            "gauge",
            "Values (keys) whose first datagram passed this node during the last full loop.",
            stats.circulating_values,
        ),
        (
            "elayday_records",
            "gauge",
            "Records of recent writes and deletions held (limit: --max-records).",
            stats.records,
        ),
        (
            "elayday_reassembly_bytes",
            "gauge",
            "Bytes held for values being reassembled for GETs (limit: --max-reassembly).",
            stats.reassembly_bytes,
        ),
        (
            "elayday_write_backlog_bytes",
            "gauge",
            "Bytes of PUT values accepted and not yet sent (limit: --max-write-backlog).",
            stats.write_backlog_bytes,
        ),
        (
            "elayday_repair_bytes",
            "gauge",
            "Bytes held for the stripes passing now, to rebuild lost datagrams (limit: --max-repair).",
            stats.repair.held,
        ),
        (
            "elayday_datagrams_repaired_total",
            "counter",
            "Datagrams rebuilt from their stripe and sent back into the loop.",
            stats.repair.repaired,
        ),
        (
            "elayday_stripes_unrecoverable_total",
            "counter",
            "Stripe passes seen with fewer datagrams than it takes to rebuild them.",
            stats.repair.unrecoverable,
        ),
        (
            "elayday_datagrams_received_total",
            "counter",
            "Datagrams received from the previous hop.",
            stats.received,
        ),
        (
            "elayday_datagrams_forwarded_total",
            "counter",
            "Datagrams forwarded to the next hop.",
            stats.forwarded,
        ),
        (
            "elayday_forwarded_bytes_total",
            "counter",
            "Bytes (UDP payloads) forwarded to the next hop.",
            stats.forwarded_bytes,
        ),
    ];
    for (name, kind, help, value) in counts {
        family(name, kind, help, &plain(value));
    }
    let dropped: Vec<(String, String)> = stats
        .dropped
        .iter()
        .map(|(reason, n)| (format!("{{reason=\"{}\"}}", escape(reason)), n.to_string()))
        .collect();
    family(
        "elayday_datagrams_dropped_total",
        "counter",
        "Datagrams dropped, by reason.",
        &dropped,
    );
    let refused: Vec<(String, String)> = stats
        .refused
        .iter()
        .map(|(limit, n)| (format!("{{limit=\"{}\"}}", escape(limit)), n.to_string()))
        .collect();
    family(
        "elayday_refused_total",
        "counter",
        "Requests refused and datagrams not kept for want of room, by limit.",
        &refused,
    );
    family(
        "elayday_uptime_seconds",
        "gauge",
        "Time since the node started.",
        &[(String::new(), stats.uptime.as_secs_f64().to_string())],
    );
    family(
        "elayday_pending_requests",
        "gauge",
        "Requests waiting for the node's answer, this scrape included.",
        &plain(stats.pending_requests),
    );
    out
}

/// Escapes a label value: backslash, double quote and line feed.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_ends_at_the_first_empty_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n\r\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn periods_are_absent_until_measured() {
        let text = render(&Stats::default());
        assert!(text.contains("# TYPE elayday_loop_period_seconds gauge\n"));
        assert!(!text.contains("elayday_loop_period_seconds{"));
        let stats = Stats {
            period_last: Some(Duration::from_millis(1500)),
            period_min: Some(Duration::from_millis(1000)),
            period_max: Some(Duration::from_millis(2000)),
            ..Stats::default()
        };
        let text = render(&stats);
        assert!(text.contains("elayday_loop_period_seconds{stat=\"last\"} 1.5\n"));
        assert!(text.contains("elayday_loop_period_seconds{stat=\"min\"} 1\n"));
    }
}
