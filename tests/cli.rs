//! The command-line client end to end: `elayday put|get|delete|stats` run as processes against a
//! real node and reflector on loopback, checked by exit code, stdout bytes and stderr lines.

mod common;

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;

/// What a finished client command left behind.
struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    /// The one error line, checked to be one line starting with "error: ".
    fn error_line(&self) -> &str {
        let line = self.stderr.strip_suffix('\n').unwrap_or(&self.stderr);
        assert!(
            line.starts_with("error: ") && !line.contains('\n'),
            "want one error line, got {:?}",
            self.stderr
        );
        line
    }
}

/// Runs `elayday ARGS` with `stdin` fed in and the client's environment variables cleared.
fn elayday(args: &[&str], stdin: &[u8]) -> Run {
    elayday_env(args, stdin, &[])
}

fn elayday_env(args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Run {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("ELAYDAY_GRPC")
        .env_remove("ELAYDAY_TIMEOUT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn elayday");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    // A writer thread, so that a large value cannot dead-lock against a full stdout pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let output = child.wait_with_output().expect("wait for elayday");
    writer.join().unwrap();
    Run {
        code: output.status.code().expect("exited by itself"),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A value with every byte value, then `len` bytes of a pattern.
fn binary_value(len: usize) -> Vec<u8> {
    let mut value: Vec<u8> = (0..=255u8).collect();
    value.extend((0..len).map(|i| (i as u8).wrapping_mul(151).wrapping_add((i >> 13) as u8)));
    value
}

#[test]
fn put_and_get_round_trip_through_arguments_stdin_and_stdout() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let grpc = node.grpc.to_string();
    let g = grpc.as_str();

    let put = elayday(&["put", "--grpc", g, "greeting", "hello"], b"");
    assert_eq!(put.code, 0, "{}", put.stderr);
    assert!(
        put.stdout.is_empty() && put.stderr.is_empty(),
        "quiet when piped"
    );
    let got = elayday(&["get", "--grpc", g, "greeting"], b"");
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(got.stdout, b"hello", "the value and nothing else");
    assert!(got.stderr.is_empty(), "{}", got.stderr);

    // Binary-safe through stdin (VALUE omitted) and back through stdout, several MiB.
    let value = binary_value(3 << 20);
    let put = elayday(&["put", "--grpc", g, "--timeout", "60", "binary"], &value);
    assert_eq!(put.code, 0, "{}", put.stderr);
    assert!(put.stderr.is_empty(), "no progress when stderr is a pipe");
    let got = elayday(&["get", "--grpc", g, "--timeout", "60", "binary"], b"");
    assert_eq!(got.code, 0, "{}", got.stderr);
    assert_eq!(got.stdout.len(), value.len());
    assert!(got.stdout == value, "the value came back changed");

    // '-' reads stdin too; an empty stdin is an empty value.
    let put = elayday(&["put", "--grpc", g, "small", "-"], &binary_value(0));
    assert_eq!(put.code, 0, "{}", put.stderr);
    assert_eq!(
        elayday(&["get", "--grpc", g, "small"], b"").stdout,
        binary_value(0)
    );
    let put = elayday(&["put", "--grpc", g, "empty"], b"");
    assert_eq!(put.code, 0, "{}", put.stderr);
    let got = elayday(&["get", "--grpc", g, "empty"], b"");
    assert_eq!((got.code, got.stdout.len()), (0, 0), "{}", got.stderr);

    // ELAYDAY_GRPC stands in for --grpc; a key may start with '-' after '--'.
    let put = elayday_env(&["put", "--", "-dash", "x"], b"", &[("ELAYDAY_GRPC", g)]);
    assert_eq!(put.code, 0, "{}", put.stderr);
    let got = elayday_env(&["get", "--", "-dash"], b"", &[("ELAYDAY_GRPC", g)]);
    assert_eq!(
        (got.code, got.stdout.as_slice()),
        (0, &b"x"[..]),
        "{}",
        got.stderr
    );
}

#[test]
fn a_missing_or_deleted_key_exits_1() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let g = node.grpc.to_string();
    let missing = elayday(&["get", "--grpc", &g, "never-stored"], b"");
    assert_eq!(missing.code, 1, "{}", missing.stderr);
    assert!(missing.stdout.is_empty());
    let line = missing.error_line();
    assert!(
        line.contains("\"never-stored\"") && line.contains("not found"),
        "{line}"
    );

    assert_eq!(elayday(&["put", "--grpc", &g, "doomed", "v"], b"").code, 0);
    let deleted = elayday(&["delete", "--grpc", &g, "doomed"], b"");
    assert_eq!(deleted.code, 0, "{}", deleted.stderr);
    assert!(deleted.stdout.is_empty() && deleted.stderr.is_empty());
    let gone = elayday(&["get", "--grpc", &g, "doomed"], b"");
    assert_eq!(gone.code, 1, "{}", gone.stderr);
    assert!(gone.error_line().contains("not found"));
}

#[test]
fn bad_usage_exits_2_with_one_line() {
    let cases: &[(&[&str], &str)] = &[
        (&["put"], "needs a KEY"),
        (&["get"], "needs a KEY"),
        (&["delete"], "needs a KEY"),
        (&["get", "a", "b"], "unexpected argument 'b'"),
        (&["put", "k", "v", "w"], "unexpected argument 'w'"),
        (&["stats", "x"], "unexpected argument 'x'"),
        (&["get", ""], "must not be empty"),
        (
            &["get", "--grpc", "nowhere", "k"],
            "--grpc: 'nowhere' is not a host with a port",
        ),
        (
            &["get", "--timeout", "soon", "k"],
            "--timeout: 'soon' is not a number of seconds",
        ),
        (&["get", "--bogus", "1", "k"], "unknown flag --bogus"),
        (&["get", "--grpc"], "--grpc needs a value"),
    ];
    for (args, expected) in cases {
        let run = elayday(args, b"");
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        let line = run.error_line();
        assert!(
            line.contains(expected),
            "{args:?}: got {line:?}, want {expected:?}"
        );
    }
    let run = elayday_env(&["stats"], b"", &[("ELAYDAY_TIMEOUT", "-3")]);
    assert_eq!(run.code, 2);
    assert!(
        run.error_line().contains("ELAYDAY_TIMEOUT"),
        "{}",
        run.stderr
    );
}

#[test]
fn nothing_listening_exits_3() {
    let nobody = free_tcp("127.0.0.1").to_string();
    for args in [
        &["get", "--grpc", &nobody, "k"][..],
        &["put", "--grpc", &nobody, "k", "v"],
        &["delete", "--grpc", &nobody, "k"],
        &["stats", "--grpc", &nobody],
    ] {
        let run = elayday(args, b"");
        assert_eq!(run.code, 3, "{args:?}: {}", run.stderr);
        let line = run.error_line();
        assert!(line.contains(&format!("{nobody} is unavailable")), "{line}");
    }
}

#[test]
fn no_answer_within_the_timeout_exits_3() {
    // A node whose loop never closes (nothing at its destination): a GET waits for a probe that
    // never comes back, so the client's deadline passes first.
    let node = Node::start(
        free_udp("127.0.0.1"),
        free_udp("127.0.0.1"),
        &["--loop-timeout", "60"],
    );
    let g = node.grpc.to_string();
    let run = elayday(&["get", "--grpc", &g, "--timeout", "0.5", "k"], b"");
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.error_line().contains("no answer from"),
        "{}",
        run.stderr
    );
}

#[test]
fn other_failures_exit_4() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let g = node.grpc.to_string();
    let long = "k".repeat(1025);
    let run = elayday(&["put", "--grpc", &g, &long, "v"], b"");
    assert_eq!(run.code, 4, "{}", run.stderr);
    let line = run.error_line();
    assert!(line.contains("the limit is 1024 bytes"), "{line}");
    assert!(line.len() < 300, "a long key is cut short: {line}");
}

#[test]
fn stats_are_readable_and_show_the_loop() {
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let g = node.grpc.to_string();
    assert_eq!(elayday(&["put", "--grpc", &g, "one", "1"], b"").code, 0);
    let text = wait_until(Duration::from_secs(20), "stats to show one value", || {
        let run = elayday(&["stats", "--grpc", &g], b"");
        assert_eq!(run.code, 0, "{}", run.stderr);
        let text = String::from_utf8(run.stdout).expect("text");
        text.contains("circulating   1 values").then_some(text)
    });
    assert!(text.contains("loop          closed\n"), "{text}");
    let period = text
        .lines()
        .find(|l| l.starts_with("loop period   last "))
        .unwrap_or_else(|| panic!("no loop period in {text}"));
    assert!(
        period.contains(" ms, min ") && period.contains(", max "),
        "{period}"
    );
    assert!(
        text.contains(&format!("elayday {}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert!(text.contains("dropped       none\n"), "{text}");
}

/// A pseudo-terminal: the client's stderr is its slave side, the test reads the master side.
/// `None` where the system has none to give (e.g. a container without /dev/pts).
fn pty() -> Option<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty fills in two new descriptors, which we then own.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        eprintln!("openpty: {}", std::io::Error::last_os_error());
        return None;
    }
    // Keep the descriptors out of processes other tests start meanwhile, and let the reader
    // poll the master side.
    unsafe {
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(master, libc::F_SETFL, libc::O_NONBLOCK);
        Some((OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)))
    }
}

#[test]
fn large_values_show_progress_on_a_terminal_and_erase_it() {
    let Some((master, slave)) = pty() else {
        eprintln!("skipped: no pseudo-terminal on this system");
        return;
    };
    let (node, _reflector) = node_with_reflector("0.2", &[]);
    let g = node.grpc.to_string();
    let mut child = Command::new(BIN)
        .args(["put", "--grpc", &g, "--timeout", "60", "big"])
        .env_remove("ELAYDAY_GRPC")
        .env_remove("ELAYDAY_TIMEOUT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("spawn elayday");
    let mut terminal = std::fs::File::from(master);
    let exited = Arc::new(AtomicBool::new(false));
    let done = exited.clone();
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut chunk = [0u8; 4096];
        // The master side is non-blocking: read what is there until the client has exited and
        // its last line (the erasure) has come through, or for 5 s more at most. End of file is
        // not to be relied on: another test's child may have inherited the slave side before it
        // was marked close-on-exec.
        let mut exited_at = None;
        loop {
            if exited_at.is_none() && done.load(Ordering::SeqCst) {
                exited_at = Some(std::time::Instant::now());
            }
            match terminal.read(&mut chunk) {
                Ok(n) if n > 0 => seen.extend_from_slice(&chunk[..n]),
                _ => match exited_at {
                    Some(at)
                        if seen.ends_with(b"\r\x1b[2K")
                            || at.elapsed() > Duration::from_secs(5) =>
                    {
                        break
                    }
                    _ => std::thread::sleep(Duration::from_millis(5)),
                },
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let value = binary_value(4 << 20);
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&value).unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    exited.store(true, Ordering::SeqCst);
    let drawn = reader.join().unwrap();
    assert!(status.success(), "{drawn}");
    assert!(
        drawn.contains("reading the value from stdin: "),
        "{drawn:?}"
    );
    assert!(
        drawn.contains("putting 4.0 MiB into the loop via"),
        "{drawn:?}"
    );
    assert!(
        drawn.ends_with("\r\x1b[2K"),
        "the line is erased at the end: {drawn:?}"
    );
    let got = elayday(&["get", "--grpc", &g, "--timeout", "60", "big"], b"");
    assert!(got.stdout == value, "the value came back changed");
}
