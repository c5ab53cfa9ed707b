//! A dead role thread ends the process: the real binary, with one of its role threads made to
//! panic as it starts (`ELAYDAY_TEST_PANIC_THREAD`, a test-only fault injection), exits with
//! status 70 within a few seconds, and its stderr says why on one line from the panic hook,
//! then once more from the supervisor. No half-alive node or reflector stays behind.

mod common;

use std::time::{Duration, Instant};

use common::*;

const PANIC_VAR: &str = "ELAYDAY_TEST_PANIC_THREAD";
const MESSAGE: &str = "panic requested by ELAYDAY_TEST_PANIC_THREAD";
/// `EX_SOFTWARE`: what the supervisor exits with.
const EXIT_ROLE_DIED: i32 = 70;

/// Waits for `process` to end by itself, then checks the status and the two lines naming `role`.
fn assert_died_of(process: Process, role: &str) {
    let started = Instant::now();
    let (status, log) = process.wait_exit(Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "'{role}': took {:?} to exit",
        started.elapsed()
    );
    assert_eq!(
        status.code(),
        Some(EXIT_ROLE_DIED),
        "'{role}': {status:?}\n{}",
        log.join("\n")
    );
    let panicked = log
        .iter()
        .position(|l| {
            l.starts_with(&format!("thread '{role}' panicked at "))
                && l.ends_with(&format!(": {MESSAGE}"))
        })
        .unwrap_or_else(|| panic!("'{role}': no one-line panic\n{}", log.join("\n")));
    let died = log
        .iter()
        .position(|l| l.ends_with(&format!("role thread '{role}' died: {MESSAGE}; exiting")))
        .unwrap_or_else(|| panic!("'{role}': no supervisor line\n{}", log.join("\n")));
    assert!(panicked < died, "the cause comes first\n{}", log.join("\n"));
    assert_eq!(
        log.iter().filter(|l| l.contains("died:")).count(),
        1,
        "one supervisor line\n{}",
        log.join("\n")
    );
}

#[test]
fn a_reflector_whose_thread_dies_exits() {
    for role in ["reflector", "signals"] {
        let bind = free_udp("127.0.0.1").to_string();
        let process = Process::spawn(
            &["reflector", "--bind", &bind, "--delay", "0.1"],
            &[(PANIC_VAR, role)],
        );
        assert_died_of(process, role);
    }
}

#[test]
fn a_node_whose_thread_dies_exits() {
    for role in ["udp-recv", "udp-send", "processor", "metrics"] {
        let metrics = free_tcp("127.0.0.1").to_string();
        let process = Process::server(
            free_udp("127.0.0.1"),
            free_udp("127.0.0.1"),
            free_tcp("127.0.0.1"),
            &["--bind-metrics", &metrics],
            &[(PANIC_VAR, role)],
        );
        assert_died_of(process, role);
    }
}

#[test]
fn a_demo_whose_reflector_dies_exits() {
    let (grpc, bind, reflector) = (
        free_tcp("127.0.0.1").to_string(),
        free_udp("127.0.0.1").to_string(),
        free_udp("127.0.0.1").to_string(),
    );
    let process = Process::spawn(
        &[
            "demo",
            "--grpc",
            &grpc,
            "--bind",
            &bind,
            "--reflector",
            &reflector,
            "--delay",
            "0.1",
        ],
        &[(PANIC_VAR, "reflector")],
    );
    assert_died_of(process, "reflector");
}

#[test]
fn an_unnamed_role_changes_nothing() {
    let bind = free_udp("127.0.0.1").to_string();
    let process = Process::spawn(
        &["reflector", "--bind", &bind, "--delay", "0.1"],
        &[(PANIC_VAR, "no-such-role")],
    );
    process.wait_for_log("reflector on", Duration::from_secs(10));
    let (status, log) = process.terminate();
    assert!(status.success(), "{status:?}\n{}", log.join("\n"));
    assert!(
        !log.iter().any(|l| l.contains("panicked")),
        "{}",
        log.join("\n")
    );
}
