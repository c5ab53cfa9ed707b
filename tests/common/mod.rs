//! Test harness: real `elayday` processes on loopback, free ports, a real grpcio client, and a
//! UDP relay that plays a network link (delay, counting of the frames that cross it).
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use elayday::proto::elayday::*;
use elayday::proto::grpc::ElaydayClient;
use elayday::wire::{Frame, Kind};

pub const BIN: &str = env!("CARGO_BIN_EXE_elayday");

/// A file of this repository. `cargo test` runs every test binary from the package root; the
/// path is taken from there at run time rather than baked in at build time, so a binary built
/// from another checkout with the same sources still reads this one.
pub fn repo_file(relative: &str) -> String {
    std::fs::read_to_string(relative).unwrap_or_else(|e| {
        let here = std::env::current_dir().unwrap_or_default();
        panic!("{relative} (from {}): {e}", here.display())
    })
}

/// A UDP port nobody listens on right now (for the address family of `ip`).
pub fn free_udp(ip: &str) -> SocketAddr {
    let socket = UdpSocket::bind(format!("{ip}:0")).expect("bind an ephemeral UDP port");
    socket.local_addr().unwrap()
}

/// A TCP port nobody listens on right now.
pub fn free_tcp(ip: &str) -> SocketAddr {
    let listener = TcpListener::bind(format!("{ip}:0")).expect("bind an ephemeral TCP port");
    listener.local_addr().unwrap()
}

pub fn ipv6_available() -> bool {
    UdpSocket::bind("[::1]:0").is_ok()
}

/// Polls `condition` every few milliseconds until it holds; panics with `what` after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = condition() {
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running `elayday` process whose stderr is collected; SIGTERM and reaped on drop.
pub struct Process {
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    reader: Option<JoinHandle<()>>,
}

impl Process {
    /// Runs this build's `elayday`, or the binary named by `ELAYDAY_TEST_BIN` (to show that a
    /// test fails on an older build: `ELAYDAY_TEST_BIN=/path/to/old/elayday cargo test ...`).
    pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Process {
        let bin = std::env::var("ELAYDAY_TEST_BIN")
            .ok()
            .filter(|b| !b.is_empty())
            .unwrap_or_else(|| BIN.to_string());
        Process::spawn_binary(&bin, args, env)
    }

    /// `binary` (some build of `elayday`) with `args`, the `ELAYDAY_*` addresses of the
    /// environment removed and `env` added, logging at info.
    pub fn spawn_binary(binary: &str, args: &[&str], env: &[(&str, &str)]) -> Process {
        let mut command = Command::new(binary);
        command
            .args(args)
            .env_remove("RUST_LOG")
            .env("RUST_LOG", "info");
        for var in [
            "ELAYDAY_BIND",
            "ELAYDAY_DESTINATION",
            "ELAYDAY_BIND_GRPC",
            "ELAYDAY_DELAY",
        ] {
            command.env_remove(var);
        }
        for (k, v) in env {
            command.env(k, v);
        }
        Process::start(command)
    }

    /// `elayday server` on `udp`, sending to `destination`, gRPC on `grpc`.
    pub fn server(
        udp: SocketAddr,
        destination: SocketAddr,
        grpc: SocketAddr,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Process {
        let (u, d, g) = (udp.to_string(), destination.to_string(), grpc.to_string());
        let mut args = vec![
            "server",
            "--bind",
            &u,
            "--destination",
            &d,
            "--bind-grpc",
            &g,
        ];
        args.extend_from_slice(extra);
        Process::spawn(&args, env)
    }

    /// Starts a prepared command with no stdin or stdout, collecting its stderr.
    pub fn start(mut command: Command) -> Process {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn elayday");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("ELAYDAY_TEST_ECHO").is_some() {
                    eprintln!("{line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        Process {
            child: Some(child),
            log,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        wait_until(timeout, &format!("log line '{needle}'"), || {
            self.log().into_iter().find(|l| l.contains(needle))
        })
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Sends SIGTERM and waits for the exit; returns the status and the whole log.
    pub fn terminate(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.stop(libc::SIGTERM);
        (status, self.log())
    }

    /// Kills with SIGKILL (the process gets no chance to clean up).
    pub fn kill(mut self) {
        self.stop(libc::SIGKILL);
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(mut self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let mut child = self.child.take().unwrap();
        let status = wait_until(timeout, "the process to exit", || child.try_wait().unwrap());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        (status, self.log())
    }

    fn stop(&mut self, signal: i32) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = wait_until(Duration::from_secs(20), "the process to stop", || {
            child.try_wait().unwrap()
        });
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        status
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop(libc::SIGTERM);
        }
    }
}

pub fn client(addr: SocketAddr) -> ElaydayClient {
    let env = Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let channel = grpcio::ChannelBuilder::new(env)
        .max_receive_message_len(i32::MAX)
        .max_send_message_len(i32::MAX)
        .connect(&addr.to_string());
    ElaydayClient::new(channel)
}

pub fn opt(timeout: Duration) -> grpcio::CallOption {
    grpcio::CallOption::default().timeout(timeout)
}

pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub fn put(c: &ElaydayClient, key: &str, value: &[u8]) -> grpcio::Result<PutValueResponse> {
    let req = PutValueRequest {
        key: key.into(),
        value: value.to_vec(),
        ..Default::default()
    };
    c.put_value_opt(&req, opt(CALL_TIMEOUT))
}

pub fn get(c: &ElaydayClient, key: &str) -> grpcio::Result<Vec<u8>> {
    let req = GetValueRequest {
        key: key.into(),
        ..Default::default()
    };
    c.get_value_opt(&req, opt(CALL_TIMEOUT)).map(|r| r.value)
}

pub fn delete(c: &ElaydayClient, key: &str) -> grpcio::Result<DeleteValueResponse> {
    let req = DeleteValueRequest {
        key: key.into(),
        ..Default::default()
    };
    c.delete_value_opt(&req, opt(CALL_TIMEOUT))
}

pub fn stats(c: &ElaydayClient) -> grpcio::Result<GetStatsResponse> {
    c.get_stats_opt(&GetStatsRequest::new(), opt(Duration::from_secs(5)))
}

/// The gRPC status code of a failed call.
pub fn code(result: grpcio::Result<impl std::fmt::Debug>) -> (grpcio::RpcStatusCode, String) {
    match result {
        Err(grpcio::Error::RpcFailure(status)) => (status.code(), status.message().to_string()),
        other => panic!("expected an RPC failure, got {other:?}"),
    }
}

/// Waits until the node reports a closed loop (its probes come back); returns its stats.
pub fn wait_closed(c: &ElaydayClient) -> GetStatsResponse {
    wait_until(Duration::from_secs(30), "the loop to close", || {
        stats(c)
            .ok()
            .filter(|s| s.loop_closed && s.loop_period_last_us > 0)
    })
}

/// Waits until the node has dropped exactly `count` datagrams for `reason`.
pub fn wait_dropped(c: &ElaydayClient, reason: &str, count: u64) {
    wait_until(
        Duration::from_secs(10),
        &format!("{count} '{reason}' drops"),
        || {
            let s = stats(c).ok()?;
            (s.datagrams_dropped.get(reason) == Some(&count)).then_some(())
        },
    );
}

/// A node process plus its client.
pub struct Node {
    pub process: Process,
    pub udp: SocketAddr,
    pub grpc: SocketAddr,
    pub client: ElaydayClient,
}

impl Node {
    pub fn start(udp: SocketAddr, destination: SocketAddr, extra: &[&str]) -> Node {
        Node::start_with_env(udp, destination, extra, &[])
    }

    /// [`Node::start`] with environment variables of its own.
    pub fn start_with_env(
        udp: SocketAddr,
        destination: SocketAddr,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
        let ip = if udp.is_ipv4() { "127.0.0.1" } else { "[::1]" };
        let grpc = free_tcp(ip);
        let process = Process::server(udp, destination, grpc, extra, env);
        let client = client(grpc);
        process.wait_for_log("gRPC API listening", Duration::from_secs(30));
        Node {
            process,
            udp,
            grpc,
            client,
        }
    }
}

pub fn reflector(bind: SocketAddr, delay: &str) -> Process {
    let b = bind.to_string();
    let process = Process::spawn(&["reflector", "--bind", &b, "--delay", delay], &[]);
    process.wait_for_log("reflector on", Duration::from_secs(30));
    process
}

/// A node and a reflector with `delay` seconds on 127.0.0.1, loop closed.
pub fn node_with_reflector(delay: &str, extra: &[&str]) -> (Node, Process) {
    let reflector_addr = free_udp("127.0.0.1");
    let refl = reflector(reflector_addr, delay);
    let node = Node::start(free_udp("127.0.0.1"), reflector_addr, extra);
    wait_closed(&node.client);
    (node, refl)
}

/// A node whose datagrams reach a reflector (`delay` seconds) through a [`Relay`] that counts
/// them; loop closed.
pub fn node_behind_tap(delay: &str) -> (Node, Process, Relay) {
    let reflector_addr = free_udp("127.0.0.1");
    let refl = reflector(reflector_addr, delay);
    let tap = Relay::start("127.0.0.1", reflector_addr, Duration::ZERO);
    let node = Node::start(free_udp("127.0.0.1"), tap.addr, &[]);
    wait_closed(&node.client);
    (node, refl, tap)
}

/// What a [`Relay`] saw of one value version: (key, hlc, origin) -> datagrams.
pub type Census = HashMap<(Vec<u8>, u64, u64), u64>;

/// A UDP relay standing in for a network link: everything it receives goes to `to` (or, for
/// datagrams that come from `to`, back to whoever sent last from elsewhere) after `delay`. It
/// counts the DATA frames that cross it by value version.
pub struct Relay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    lose: Arc<Mutex<(Vec<u8>, u64)>>,
    census: Arc<Mutex<Census>>,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(ip: &str, to: SocketAddr, delay: Duration) -> Relay {
        let options = elayday::udp::SocketOptions {
            recv_buffer: 32 << 20,
            send_buffer: 32 << 20,
        };
        let bind = ip
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .unwrap();
        let socket = elayday::udp::bind(SocketAddr::new(bind, 0), &options)
            .unwrap()
            .socket;
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let addr = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let census = Arc::new(Mutex::new(Census::new()));
        let lose = Arc::new(Mutex::new((Vec::new(), 0)));
        let (s, c, d) = (stop.clone(), census.clone(), lose.clone());
        let thread = std::thread::spawn(move || relay(socket, to, delay, &s, &c, &d));
        Relay {
            addr,
            stop,
            lose,
            census,
            thread: Some(thread),
        }
    }

    /// Loses every `n`th DATA datagram of `key` from now on (0: none), as a lossy link would.
    pub fn lose(&self, key: &[u8], n: u64) {
        *self.lose.lock().unwrap() = (key.to_vec(), n);
    }

    /// Waits until `key` (a value of `fragments` datagrams) has made one full loop since now:
    /// every datagram crossed out and back, then out again. Every datagram that was in the loop
    /// when it was called has passed the node by then.
    pub fn wait_one_loop(&self, key: &[u8], fragments: u64) {
        self.reset();
        wait_until(Duration::from_secs(20), "a full loop", || {
            let census = self.census();
            let crossings: u64 = census
                .iter()
                .filter(|((k, _, _), _)| k == key)
                .map(|(_, n)| n)
                .sum();
            (crossings >= 3 * fragments).then_some(())
        });
    }

    /// Forgets what was counted so far.
    pub fn reset(&self) {
        self.census.lock().unwrap().clear();
    }

    pub fn census(&self) -> Census {
        self.census.lock().unwrap().clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn relay(
    socket: UdpSocket,
    to: SocketAddr,
    delay: Duration,
    stop: &AtomicBool,
    census: &Mutex<Census>,
    lose: &Mutex<(Vec<u8>, u64)>,
) {
    let mut data_seen = 0u64;
    let mut queue: std::collections::VecDeque<(Instant, SocketAddr, Vec<u8>)> = Default::default();
    let mut other_side: Option<SocketAddr> = None;
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        while let Some((due, _, _)) = queue.front() {
            if *due > Instant::now() {
                break;
            }
            let (_, dest, datagram) = queue.pop_front().unwrap();
            let _ = socket.send_to(&datagram, dest);
        }
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let datagram = buf[..n].to_vec();
        if let Ok(frame) = Frame::new_checked(&datagram[..]) {
            if let Kind::Data(data) = frame.kind() {
                let id = (data.key().to_vec(), frame.hlc(), frame.origin());
                *census.lock().unwrap().entry(id).or_default() += 1;
                let (key, n) = &*lose.lock().unwrap();
                if *n > 0 && key == data.key() {
                    data_seen += 1;
                    if data_seen % n == 0 {
                        continue;
                    }
                }
            }
        }
        let dest = if from == to {
            match other_side {
                Some(d) => d,
                None => continue,
            }
        } else {
            other_side = Some(from);
            to
        };
        queue.push_back((Instant::now() + delay, dest, datagram));
    }
}

pub mod lossy;
