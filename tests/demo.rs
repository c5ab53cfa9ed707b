//! `elayday demo` end to end: the real binary with its node and reflector in one process, on free
//! loopback ports (so that tests and a running demo do not collide), used through gRPC and the CLI.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A running `elayday demo` whose stdout and stderr lines are collected; SIGTERM on drop.
struct Demo {
    child: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Demo {
    fn spawn(args: &[&str]) -> Demo {
        let mut child = Command::new(BIN)
            .arg("demo")
            .args(args)
            .env("RUST_LOG", "info")
            .env_remove("ELAYDAY_GRPC")
            .env_remove("ELAYDAY_DELAY")
            .env_remove("ELAYDAY_DEMO_BIND")
            .env_remove("ELAYDAY_DEMO_REFLECTOR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn elayday demo");
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Demo {
            child: Some(child),
            stdout,
            stderr,
        }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().join("\n")
    }

    /// The first `error: ` line on stderr, once there is one.
    fn error_line(&self) -> String {
        wait_until(Duration::from_secs(5), "the error line", || {
            self.stderr()
                .lines()
                .find(|l| l.starts_with("error: "))
                .map(str::to_string)
        })
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let status = wait_until(Duration::from_secs(20), "the demo to exit", || {
            child.try_wait().unwrap()
        });
        self.child = None;
        status
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.as_ref().unwrap().id() as i32;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.wait_exit()
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
    }
}

#[test]
fn the_demo_serves_a_round_trip_and_says_how() {
    let grpc = free_tcp("127.0.0.1");
    let (bind, reflector) = (free_udp("127.0.0.1"), free_udp("127.0.0.1"));
    let (g, b, r) = (grpc.to_string(), bind.to_string(), reflector.to_string());
    let mut demo = Demo::spawn(&[
        "--grpc",
        &g,
        "--bind",
        &b,
        "--reflector",
        &r,
        "--delay",
        "0.3",
    ]);
    let banner = wait_until(Duration::from_secs(30), "the demo's banner", || {
        let out = demo.stdout();
        out.contains("stats --grpc").then_some(out)
    });
    assert!(
        banner.contains(&format!(
            "grpcurl -plaintext \\\n  -d '{{\"key\":\"foo\",\"value\":\"SGVsbG8gd29ybGQgCg==\"}}' \\\n  {g} elayday.Elayday/PutValue"
        )),
        "{banner}"
    );
    assert!(
        banner.contains(&format!(
            "grpcurl -plaintext \\\n    -d '{{\"key\":\"foo\"}}' \\\n    {g} elayday.Elayday/GetValue"
        )),
        "{banner}"
    );
    for command in [
        format!("elayday put --grpc {g} foo hello"),
        format!("elayday get --grpc {g} foo"),
        format!("elayday stats --grpc {g}"),
    ] {
        assert!(banner.lines().any(|l| l == command), "{command}: {banner}");
    }
    assert!(banner.contains(&format!("node on UDP {b}")), "{banner}");
    assert!(
        banner.contains(&format!("reflector on UDP {r}")),
        "{banner}"
    );
    assert!(banner.contains("holds it for 0.3 s"), "{banner}");

    // The seed's PUT and GET, through the demo's gRPC API.
    let client = client(grpc);
    let stats = wait_closed(&client);
    let period = stats.loop_period_last_us;
    assert!(
        (290_000..5_000_000).contains(&period),
        "a 0.3 s reflector: {period} µs"
    );
    put(&client, "foo", b"Hello world \n").unwrap();
    assert_eq!(get(&client, "foo").unwrap(), b"Hello world \n");

    // And the CLI commands it printed.
    let cli = |args: &[&str]| {
        Command::new(BIN)
            .args(args)
            .env_remove("ELAYDAY_GRPC")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let put = cli(&["put", "--grpc", &g, "foo", "hello"]);
    assert!(put.status.success(), "{put:?}");
    let got = cli(&["get", "--grpc", &g, "foo"]);
    assert!(got.status.success(), "{got:?}");
    assert_eq!(got.stdout, b"hello");

    let status = demo.terminate();
    assert!(status.success(), "{}", demo.stderr());
    assert!(demo.stderr().contains("demo stopped"), "{}", demo.stderr());
}

#[test]
fn a_taken_grpc_port_is_reported_with_the_flag_to_change_it() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let g = taken.local_addr().unwrap().to_string();
    let (b, r) = (
        free_udp("127.0.0.1").to_string(),
        free_udp("127.0.0.1").to_string(),
    );
    let mut demo = Demo::spawn(&["--grpc", &g, "--bind", &b, "--reflector", &r]);
    let status = demo.wait_exit();
    assert!(!status.success());
    let error = demo.error_line();
    assert!(
        error.contains(&format!("the gRPC port {g} is taken")) && error.contains("--grpc"),
        "{error}"
    );
    assert!(
        demo.stdout().is_empty(),
        "no banner for a demo that did not start"
    );
}

#[test]
fn a_taken_udp_port_names_its_flag() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let r = taken.local_addr().unwrap().to_string();
    let g = free_tcp("127.0.0.1").to_string();
    let b = free_udp("127.0.0.1").to_string();
    let mut demo = Demo::spawn(&["--grpc", &g, "--bind", &b, "--reflector", &r]);
    assert!(!demo.wait_exit().success());
    let error = demo.error_line();
    assert!(
        error.contains(&format!("cannot bind UDP {r}")) && error.contains("--reflector"),
        "{error}"
    );
}
