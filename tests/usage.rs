//! The binary's command line as a user meets it: help, version, bad input, ports in use.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("ELAYDAY_BIND")
        .env_remove("ELAYDAY_DESTINATION")
        .stdin(Stdio::null())
        .output()
        .expect("run elayday");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_and_version() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("server") && out.contains("reflector"), "{out}");
    let (code, out, _) = run(&["server", "--help"]);
    assert_eq!(code, 0);
    for needle in [
        "--bind",
        "--destination",
        "--bind-grpc",
        "ELAYDAY_BIND_GRPC",
        "--mtu",
    ] {
        assert!(out.contains(needle), "{needle} missing from:\n{out}");
    }
    let (code, out, _) = run(&["reflector", "--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("--delay") && out.contains("ELAYDAY_DELAY"),
        "{out}"
    );
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("elayday {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_input_is_one_line_and_exit_code_2() {
    let cases: &[&[&str]] = &[
        &["frobnicate"],
        &["server"],
        &["server", "--bind", "[::1]:24601"],
        &[
            "server",
            "--bind",
            "not-an-address",
            "--destination",
            "[::1]:1",
        ],
        &[
            "server",
            "--bind",
            "127.0.0.1:0",
            "--destination",
            "no-such-host.invalid:1",
        ],
        &[
            "server",
            "--bind",
            "127.0.0.1:0",
            "--destination",
            "127.0.0.1:1",
            "--mtu",
            "70000",
        ],
        &[
            "server",
            "--bind",
            "127.0.0.1:0",
            "--destination",
            "127.0.0.1:1",
            "--bind-grpc",
            "x",
        ],
        &[
            "server",
            "--bind",
            "127.0.0.1:0",
            "--destination",
            "127.0.0.1:1",
            "--frob",
        ],
        &["reflector", "--bind", "127.0.0.1:0", "--delay", "forever"],
        &["reflector", "--bind", "127.0.0.1:0", "--max-buffer", "lots"],
    ];
    for args in cases {
        let (code, out, err) = run(args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: stdout {out}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let p = Process::spawn(&["reflector", "--bind", &addr], &[]);
    let (status, log) = p.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    let line = log
        .iter()
        .find(|l| l.contains("error"))
        .expect("an error line");
    assert!(line.contains(&addr) && line.contains("in use"), "{line}");

    let p = Process::spawn(
        &["server", "--bind", &addr, "--destination", "127.0.0.1:9"],
        &[],
    );
    let (status, log) = p.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    assert!(
        log.iter()
            .any(|l| l.contains(&addr) && l.contains("in use")),
        "{log:?}"
    );

    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let grpc = tcp.local_addr().unwrap().to_string();
    let udp = free_udp("127.0.0.1").to_string();
    let args = [
        "server",
        "--bind",
        &udp,
        "--destination",
        "127.0.0.1:9",
        "--bind-grpc",
        &grpc,
    ];
    let p = Process::spawn(&args, &[]);
    let (status, log) = p.wait_exit(Duration::from_secs(20));
    assert!(!status.success());
    assert!(
        log.iter()
            .any(|l| l.contains(&format!("gRPC {grpc}")) && l.contains("in use")),
        "{log:?}"
    );
}

#[test]
fn environment_variables_configure_everything() {
    let reflector_addr = free_udp("127.0.0.1").to_string();
    let _reflector = Process::spawn(
        &["reflector"],
        &[("ELAYDAY_BIND", &reflector_addr), ("ELAYDAY_DELAY", "0.1")],
    );
    let grpc = free_tcp("127.0.0.1");
    let node = Process::spawn(
        &["server"],
        &[
            ("ELAYDAY_BIND", &free_udp("127.0.0.1").to_string()),
            (
                "ELAYDAY_DESTINATION",
                &format!("localhost:{}", reflector_addr.rsplit(':').next().unwrap()),
            ),
            ("ELAYDAY_BIND_GRPC", &grpc.to_string()),
        ],
    );
    node.wait_for_log("gRPC API listening", Duration::from_secs(30));
    let c = client(grpc);
    wait_closed(&c);
    put(&c, "env", b"configured").unwrap();
    assert_eq!(get(&c, "env").unwrap(), b"configured");
}
