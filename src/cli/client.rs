//! client: the command-line client, `elayday put|get|delete|stats`, over the gRPC API.
//!
//! It owns, for the length of one command, a gRPC channel to a node, the reading of a value from
//! stdin, the writing of a value to stdout (the raw bytes, nothing added) and the progress line on
//! stderr, drawn only when stderr is a terminal. Every outcome is an exit code — 0 done, 1 key not
//! found, 2 usage error (decided by the parser, [`super::parse`]), 3 server unavailable, 4
//! anything else — and a failure is one line on stderr. It must not know the protocol: it speaks
//! only the public gRPC API, like any other client; nor parse flags: it gets a [`ClientConfig`].

use std::future::Future;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use grpcio::{CallOption, ChannelBuilder, ClientUnaryReceiver, EnvBuilder, RpcStatusCode};

use crate::proto::elayday::*;
use crate::proto::grpc::ElaydayClient;

use super::config::{ClientConfig, ClientRequest, ValueSource};
use super::flags::{default_grpc, ipv6_loopback};

/// The command did what was asked.
pub const EXIT_DONE: u8 = 0;
/// GET: the key is not in the loop.
pub const EXIT_NOT_FOUND: u8 = 1;
/// Bad flags or arguments.
pub const EXIT_USAGE: u8 = 2;
/// Nothing listens at `--grpc`, the node's loop is broken, or no answer within `--timeout`.
pub const EXIT_UNAVAILABLE: u8 = 3;
/// Any other failure.
pub const EXIT_FAILED: u8 = 4;

/// The largest message gRPC can carry (its length field is an i32), less room for the key.
const MAX_VALUE: usize = i32::MAX as usize - (1 << 20);
/// stdin is read in chunks of this size (and its progress drawn after each).
const READ_CHUNK: u64 = 1 << 20;
/// Values from this size on get a progress line while they are sent.
const PROGRESS_FROM: usize = 1 << 20;
/// A call that takes this long gets a progress line whatever its size.
const PROGRESS_AFTER: Duration = Duration::from_millis(500);
/// The progress line is redrawn at most this often.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// A failed command: its exit code and one line for stderr.
struct Failure {
    code: u8,
    message: String,
}

fn failed(code: u8, message: impl Into<String>) -> Failure {
    Failure {
        code,
        message: message.into(),
    }
}

/// Runs one client command; returns the exit code (errors are already on stderr).
pub fn run(config: ClientConfig) -> u8 {
    let mut progress = Progress::on_stderr();
    let result = execute(config, &mut progress);
    progress.clear();
    match result {
        Ok(()) => EXIT_DONE,
        Err(failure) => {
            eprintln!("error: {}", one_line(&failure.message));
            failure.code
        }
    }
}

fn execute(config: ClientConfig, progress: &mut Progress) -> Result<(), Failure> {
    let ClientConfig {
        target,
        timeout,
        request,
    } = config;
    let target = target.unwrap_or_else(default_target);
    let client = connect(&target);
    let option = || CallOption::default().timeout(timeout);
    let on_error = |what: &str| {
        let what = what.to_string();
        let target = target.clone();
        move |e| rpc_failure(e, &what, &target, timeout)
    };
    match request {
        ClientRequest::Put { key, value } => {
            let what = format!("put {}", shown(&key));
            let value = match value {
                ValueSource::Argument(value) => value,
                ValueSource::Stdin => read_stdin(progress)?,
            };
            if value.len() > MAX_VALUE {
                return Err(failed(
                    EXIT_FAILED,
                    format!(
                        "{what}: the value is {} bytes, more than gRPC can carry in one message ({MAX_VALUE} bytes)",
                        value.len()
                    ),
                ));
            }
            let label = format!("putting {} into the loop via {target}", size(value.len()));
            let at_once = value.len() >= PROGRESS_FROM;
            let request = PutValueRequest {
                key,
                value,
                ..Default::default()
            };
            let call = client
                .put_value_async_opt(&request, option())
                .map_err(on_error(&what))?;
            drop(request);
            wait(call, progress, &label, at_once).map_err(on_error(&what))?;
        }
        ClientRequest::Get { key } => {
            let what = format!("get {}", shown(&key));
            let label = format!("waiting for {} to come round at {target}", shown(&key));
            let request = GetValueRequest {
                key,
                ..Default::default()
            };
            let call = client
                .get_value_async_opt(&request, option())
                .map_err(on_error(&what))?;
            let response = wait(call, progress, &label, false).map_err(on_error(&what))?;
            progress.clear();
            write_stdout(&response.value)?;
        }
        ClientRequest::Delete { key } => {
            let what = format!("delete {}", shown(&key));
            let label = format!("deleting {} at {target}", shown(&key));
            let request = DeleteValueRequest {
                key,
                ..Default::default()
            };
            let call = client
                .delete_value_async_opt(&request, option())
                .map_err(on_error(&what))?;
            wait(call, progress, &label, false).map_err(on_error(&what))?;
        }
        ClientRequest::Stats => {
            let what = "stats";
            let label = format!("asking {target} for its figures");
            let call = client
                .get_stats_async_opt(&GetStatsRequest::new(), option())
                .map_err(on_error(what))?;
            let stats = wait(call, progress, &label, false).map_err(on_error(what))?;
            progress.clear();
            write_stdout(format_stats(&stats, &target).as_bytes())?;
        }
    }
    Ok(())
}

/// The seed's gRPC address `[::1]:24603`, or `127.0.0.1:24603` on a host without IPv6: where
/// `elayday demo` serves.
pub fn default_target() -> String {
    default_grpc(ipv6_loopback()).to_string()
}

fn connect(target: &str) -> ElaydayClient {
    let env = Arc::new(
        EnvBuilder::new()
            .cq_count(1)
            .name_prefix("grpc-client")
            .build(),
    );
    let channel = ChannelBuilder::new(env)
        .max_receive_message_len(i32::MAX)
        .max_send_message_len(i32::MAX)
        .connect(target);
    ElaydayClient::new(channel)
}

/// Maps a failed call to an exit code and a line naming what failed and why.
fn rpc_failure(error: grpcio::Error, what: &str, target: &str, timeout: Duration) -> Failure {
    let grpcio::Error::RpcFailure(status) = error else {
        return failed(EXIT_FAILED, format!("{what}: {error}"));
    };
    let code = status.code();
    let message = match status.message() {
        "" => code_name(code),
        message => message.to_string(),
    };
    match code {
        RpcStatusCode::NOT_FOUND => failed(EXIT_NOT_FOUND, format!("{what}: {message}")),
        RpcStatusCode::UNAVAILABLE => failed(
            EXIT_UNAVAILABLE,
            format!("{what}: {target} is unavailable: {message}"),
        ),
        RpcStatusCode::DEADLINE_EXCEEDED => failed(
            EXIT_UNAVAILABLE,
            format!(
                "{what}: no answer from {target} within {} s (--timeout)",
                timeout.as_secs_f64()
            ),
        ),
        code => failed(
            EXIT_FAILED,
            format!("{what}: {message} ({})", code_name(code)),
        ),
    }
}

/// `INVALID_ARGUMENT` -> `invalid argument`.
fn code_name(code: RpcStatusCode) -> String {
    let text = format!("{code:?}"); // "3-INVALID_ARGUMENT"
    let name = text.split_once('-').map_or(text.as_str(), |(_, name)| name);
    name.to_ascii_lowercase().replace('_', " ")
}

/// Blocks until the call's answer is there, drawing "label… N s" on a terminal meanwhile: from the
/// start when `at_once`, otherwise once the call has taken [`PROGRESS_AFTER`]. A unary call tells
/// nothing about bytes in flight, so the line shows only the time it has taken.
fn wait<T: Unpin>(
    mut call: ClientUnaryReceiver<T>,
    progress: &mut Progress,
    label: &str,
    at_once: bool,
) -> grpcio::Result<T> {
    let started = Instant::now();
    let waker = crate::node::pending::current_thread_waker();
    let mut context = Context::from_waker(&waker);
    let mut first = true;
    loop {
        if let Poll::Ready(result) = Pin::new(&mut call).poll(&mut context) {
            return result;
        }
        let elapsed = started.elapsed();
        if at_once || elapsed >= PROGRESS_AFTER {
            let line = format!("{label}… {} s", elapsed.as_secs());
            if first {
                progress.show_now(&line);
                first = false;
            } else {
                progress.show(&line);
            }
        }
        std::thread::park_timeout(REDRAW_EVERY);
    }
}

/// Reads stdin to its end, byte for byte.
fn read_stdin(progress: &mut Progress) -> Result<Vec<u8>, Failure> {
    // SAFETY: isatty only inspects the descriptor.
    if progress.enabled && unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
        eprintln!("reading the value from stdin; end it with Ctrl-D");
    }
    let mut stdin = io::stdin().lock();
    let mut value = Vec::new();
    loop {
        let n = Read::by_ref(&mut stdin)
            .take(READ_CHUNK)
            .read_to_end(&mut value)
            .map_err(|e| {
                failed(
                    EXIT_FAILED,
                    format!("cannot read the value from stdin: {e}"),
                )
            })?;
        if n == 0 {
            return Ok(value);
        }
        if value.len() > MAX_VALUE {
            return Err(failed(
                EXIT_FAILED,
                format!("the value on stdin is more than gRPC can carry in one message ({MAX_VALUE} bytes)"),
            ));
        }
        if value.len() >= PROGRESS_FROM {
            progress.show(&format!(
                "reading the value from stdin: {}",
                size(value.len())
            ));
        }
    }
}

/// Writes `bytes` to stdout as they are. A reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(failed(EXIT_FAILED, format!("cannot write to stdout: {e}"))),
    }
}

/// The figures, one per line, for people.
fn format_stats(s: &GetStatsResponse, target: &str) -> String {
    let mut dropped: Vec<(&String, &u64)> =
        s.datagrams_dropped.iter().filter(|(_, &n)| n > 0).collect();
    dropped.sort();
    let dropped = if dropped.is_empty() {
        "none".to_string()
    } else {
        dropped
            .iter()
            .map(|(reason, n)| format!("{n} {reason}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let period = if s.loop_period_last_us == 0 {
        "not measured yet (no probe has come back)".to_string()
    } else {
        format!(
            "last {}, min {}, max {}",
            micros(s.loop_period_last_us),
            micros(s.loop_period_min_us),
            micros(s.loop_period_max_us)
        )
    };
    let mut refused: Vec<(&String, &u64)> = s.refused.iter().filter(|(_, &n)| n > 0).collect();
    refused.sort();
    let refused = if refused.is_empty() {
        "none".to_string()
    } else {
        refused
            .iter()
            .map(|(limit, n)| format!("{n} {limit}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let others = s.pending_requests.saturating_sub(1);
    format!(
        "node          {:016x} at {target}, elayday {}, up {}\n\
         loop          {}\n\
         loop period   {period}\n\
         circulating   {} values in {} datagrams, {} (in the last full loop)\n\
         received      {} datagrams\n\
         forwarded     {} datagrams, {}\n\
         dropped       {dropped}\n\
         refused       {refused}\n\
         repaired      {} datagrams rebuilt, {} stripes seen unrecoverable\n\
         holding       {} records, {} reassembling, {} of writes to send, {} for repair\n\
         pending       {others} other request{}\n",
        s.node_id,
        s.version,
        uptime(s.uptime_seconds),
        if s.loop_closed {
            "closed"
        } else {
            "OPEN: probes do not come back"
        },
        s.circulating_values,
        s.circulating_datagrams,
        size(s.circulating_bytes as usize),
        s.datagrams_received,
        s.datagrams_forwarded,
        size(s.bytes_forwarded as usize),
        s.datagrams_repaired,
        s.stripes_unrecoverable,
        s.records,
        size(s.reassembly_bytes as usize),
        size(s.write_backlog_bytes as usize),
        size(s.repair_bytes as usize),
        if others == 1 { "" } else { "s" },
    )
}

/// `512 bytes`, `1.5 KiB`, `12.0 MiB`, `1.2 GiB`.
fn size(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `850 µs`, `12.3 ms`, `1.002 s`.
fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us} µs"),
        1_000..=999_999 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.3} s", us as f64 / 1e6),
    }
}

/// `42s`, `3m 07s`, `2h 03m 07s`, `4d 02h 03m`.
fn uptime(seconds: u64) -> String {
    let (d, h, m, s) = (
        seconds / 86_400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s:02}s"),
        (0, _, _) => format!("{h}h {m:02}m {s:02}s"),
        _ => format!("{d}d {h:02}h {m:02}m"),
    }
}

/// A key for messages: quoted and escaped, long ones cut short.
fn shown(key: &str) -> String {
    const LONGEST: usize = 40;
    match key.char_indices().nth(LONGEST) {
        None => format!("{key:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &key[..cut], key.len()),
    }
}

/// Error text on one line, whatever the server put in it.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The transient status line on stderr; inert unless stderr is a terminal.
struct Progress {
    enabled: bool,
    drawn: bool,
    last_draw: Option<Instant>,
}

impl Progress {
    fn on_stderr() -> Progress {
        Progress {
            // SAFETY: isatty only inspects the descriptor.
            enabled: unsafe { libc::isatty(libc::STDERR_FILENO) } == 1,
            drawn: false,
            last_draw: None,
        }
    }

    /// Replaces the line with `text` (at most every [`REDRAW_EVERY`]).
    fn show(&mut self, text: &str) {
        if self.last_draw.is_some_and(|at| at.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.show_now(text);
    }

    /// Replaces the line with `text` now: the first line of a new step.
    fn show_now(&mut self, text: &str) {
        if !self.enabled {
            return;
        }
        let mut stderr = io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{text}");
        let _ = stderr.flush();
        self.drawn = true;
        self.last_draw = Some(Instant::now());
    }

    /// Erases the line, leaving the cursor where it was before the first draw.
    fn clear(&mut self) {
        if self.drawn {
            let mut stderr = io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[2K");
            let _ = stderr.flush();
            self.drawn = false;
            self.last_draw = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(size(5), "5 bytes");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(12 << 20), "12.0 MiB");
        assert_eq!(micros(850), "850 µs");
        assert_eq!(micros(12_345), "12.3 ms");
        assert_eq!(micros(1_002_000), "1.002 s");
        assert_eq!(uptime(42), "42s");
        assert_eq!(uptime(187), "3m 07s");
        assert_eq!(uptime(7387), "2h 03m 07s");
    }

    #[test]
    fn status_codes_get_plain_names() {
        assert_eq!(
            code_name(RpcStatusCode::INVALID_ARGUMENT),
            "invalid argument"
        );
        assert_eq!(code_name(RpcStatusCode::DATA_LOSS), "data loss");
    }

    #[test]
    fn keys_are_quoted_and_cut_short() {
        assert_eq!(shown("foo"), "\"foo\"");
        assert_eq!(shown("a\nb"), "\"a\\nb\"");
        let long = "k".repeat(100);
        assert_eq!(shown(&long), format!("\"{}\"… (100 bytes)", "k".repeat(40)));
    }

    #[test]
    fn errors_fit_on_one_line() {
        assert_eq!(one_line("a\nb\r\n  c"), "a b c");
    }
}
