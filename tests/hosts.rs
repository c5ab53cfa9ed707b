//! Two remote hosts, played by two network namespaces joined by a veth pair: host A runs a node
//! and host B a reflector, each started the way its systemd unit starts it — `elayday server` or
//! `elayday reflector` with no flags, its settings only from an `/etc/default`-style file, and
//! `NOTIFY_SOCKET` to report readiness on. The test then PUTs and GETs through host A, whose
//! values can only come back by crossing the link to B and back.
//!
//! It needs root and iproute2's `ip`; without them it prints why it is skipped and passes. All
//! addresses live inside the two namespaces (IPv6 ULA, or 10.203.0.0/24 where IPv6 is off), so
//! no datagram leaves them; the namespaces are removed when the test ends, even on failure.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{wait_until, Process, BIN};

/// Set for the client half, which the test runs inside host A's namespace: the gRPC address.
const CLIENT_GRPC: &str = "ELAYDAY_HOSTS_CLIENT_GRPC";
/// Set for the client half: the reflector's delay in seconds, the least the loop can take.
const CLIENT_MIN_PERIOD: &str = "ELAYDAY_HOSTS_CLIENT_MIN_PERIOD";
/// The value the client half PUTs across the link in many datagrams.
const LARGE_VALUE_BYTES: usize = 300_000;
/// The reflector's delay on host B.
const DELAY: &str = "0.2";

#[test]
fn node_and_reflector_on_two_hosts() {
    let hosts = match Hosts::create() {
        Ok(hosts) => hosts,
        Err(reason) => {
            eprintln!("skipped: two-host test: {reason}");
            return;
        }
    };
    let (a_ip, b_ip, loopback) = (&hosts.a_addr, &hosts.b_addr, hosts.loopback);
    let node_udp = format!("{}:24601", bracket(a_ip));
    let reflector_udp = format!("{}:24602", bracket(b_ip));
    let grpc = format!("{}:24603", bracket(loopback));

    // Host B: the shipped /etc/default/elayday-reflector with its settings filled in.
    let reflector_file = hosts.write_default_file(
        "elayday-reflector",
        &configure(
            &shipped_default_file("elayday-reflector"),
            &[
                ("ELAYDAY_BIND", &reflector_udp),
                ("ELAYDAY_DELAY", DELAY),
                ("RUST_LOG", "info"),
            ],
        ),
    );
    let reflector = HostProcess::start(&hosts, &hosts.b, "reflector", &reflector_file);
    let ready = reflector.wait_ready();
    assert!(
        ready.contains(&format!("STATUS=reflector on {reflector_udp}")),
        "{ready}"
    );

    // Host A: the shipped /etc/default/elayday, pointed at host B across the link.
    let node_file = hosts.write_default_file(
        "elayday",
        &configure(
            &shipped_default_file("elayday"),
            &[
                ("ELAYDAY_BIND", &node_udp),
                ("ELAYDAY_DESTINATION", &reflector_udp),
                ("ELAYDAY_BIND_GRPC", &grpc),
                ("RUST_LOG", "info"),
            ],
        ),
    );
    let node = HostProcess::start(&hosts, &hosts.a, "server", &node_file);
    let ready = node.wait_ready();
    assert!(
        ready.contains(&format!(
            "STATUS=node on {node_udp}, next hop {reflector_udp}, gRPC {grpc}"
        )),
        "{ready}"
    );

    let received_before = hosts.rx_bytes(&hosts.b, &hosts.b_link);

    // The client, inside host A: this test binary again, running only its client half.
    let output = Command::new(&hosts.ip)
        .args(["netns", "exec", &hosts.a])
        .arg(std::env::current_exe().expect("the test binary"))
        .args([
            "client_half_inside_host_a",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CLIENT_GRPC, &grpc)
        .env(CLIENT_MIN_PERIOD, DELAY)
        .stdin(Stdio::null())
        .output()
        .expect("run the client half");
    let client_log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && client_log.contains("client half: round trips done"),
        "the client inside host A failed ({}):\n{client_log}\nnode log:\n{}\nreflector log:\n{}",
        output.status,
        node.log().join("\n"),
        reflector.log().join("\n")
    );

    // The value's datagrams really crossed the link to host B (in bytes: with UDP GSO, the
    // veth carries runs of datagrams as single segmented packets).
    let received = hosts.rx_bytes(&hosts.b, &hosts.b_link) - received_before;
    assert!(
        received >= LARGE_VALUE_BYTES as u64,
        "host B received {received} bytes on {}, less than one {LARGE_VALUE_BYTES}-byte value",
        hosts.b_link
    );

    // Both stop as systemd stops them: SIGTERM, STOPPING=1, exit status 0.
    for process in [node, reflector] {
        let (status, stopping, log) = process.terminate();
        assert!(status.success(), "{status}:\n{}", log.join("\n"));
        assert!(stopping.contains("STOPPING=1"), "{stopping}");
    }
}

/// The client half of [`node_and_reflector_on_two_hosts`], which runs it inside host A's
/// namespace; run alone it has nothing to talk to.
#[test]
#[ignore = "the client half of node_and_reflector_on_two_hosts, which runs it inside host A"]
fn client_half_inside_host_a() {
    // Run alone (`--include-ignored`) it has no node to talk to. Its parent does not count on
    // its exit status alone: it looks for the closing line below.
    let Ok(grpc) = std::env::var(CLIENT_GRPC) else {
        eprintln!(
            "skipped: run only by node_and_reflector_on_two_hosts ({CLIENT_GRPC} is not set)"
        );
        return;
    };
    let min_period: f64 = std::env::var(CLIENT_MIN_PERIOD).unwrap().parse().unwrap();
    let client = common::client(grpc.parse().expect("a gRPC address"));
    let stats = common::wait_closed(&client);
    let period = Duration::from_micros(stats.loop_period_last_us);
    assert!(
        period >= Duration::from_secs_f64(min_period),
        "the loop takes {period:?}, less than host B's delay of {min_period} s"
    );
    common::put(&client, "greeting", b"hello from host A").expect("PUT greeting");
    assert_eq!(
        common::get(&client, "greeting").expect("GET greeting"),
        b"hello from host A"
    );
    let large: Vec<u8> = (0..LARGE_VALUE_BYTES)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    common::put(&client, "large", &large).expect("PUT large");
    assert!(
        common::get(&client, "large").expect("GET large") == large,
        "the large value came back different"
    );
    println!("client half: round trips done, loop period {period:?}");
}

/// What an `/etc/default` file sets, read the way systemd reads an `EnvironmentFile=`: one
/// `KEY=VALUE` a line, blank lines and lines starting with `#` or `;` ignored, whitespace around
/// the key and value dropped, one pair of surrounding quotes removed.
fn load_environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#') && !line.starts_with(';'))
        .map(|line| {
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("not an assignment: {line:?}"));
            let value = value.trim();
            let unquoted = ['"', '\'']
                .iter()
                .find_map(|&q| value.strip_prefix(q).and_then(|v| v.strip_suffix(q)));
            (
                key.trim().to_string(),
                unquoted.unwrap_or(value).to_string(),
            )
        })
        .collect()
}

/// The file the package installs as `/etc/default/NAME`.
fn shipped_default_file(name: &str) -> String {
    common::repo_file(&format!("packaging/default/{name}"))
}

/// What an administrator does to a shipped file: uncomment each example line `#KEY=...` and
/// give it a value.
fn configure(shipped: &str, settings: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = shipped.lines().map(str::to_string).collect();
    for (key, value) in settings {
        let example = format!("#{key}=");
        let line = lines
            .iter_mut()
            .find(|l| l.starts_with(&example))
            .unwrap_or_else(|| panic!("the shipped file has no example line for {key}"));
        *line = format!("{key}={value}");
    }
    lines.join("\n") + "\n"
}

fn bracket(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}

/// Two network namespaces joined by a veth pair; both are deleted on drop.
struct Hosts {
    ip: PathBuf,
    a: String,
    b: String,
    a_link: String,
    b_link: String,
    a_addr: String,
    b_addr: String,
    loopback: &'static str,
    created: Vec<String>,
    dir: PathBuf,
}

/// Names of this run's namespaces start with this, then the test process id.
const NAMESPACE_PREFIX: &str = "elayday-hosts-";

impl Hosts {
    /// The two hosts with their link up, or why they cannot be made here.
    fn create() -> Result<Hosts, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root to create network namespaces".into());
        }
        let ip = find_ip()
            .ok_or("iproute2's `ip` is not installed (apt-get install iproute2)".to_string())?;
        remove_stale_namespaces(&ip);
        let pid = std::process::id();
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let (a_addr, b_addr, prefix, loopback) = if ipv6 {
            ("fd00:203::1", "fd00:203::2", 64, "::1")
        } else {
            ("10.203.0.1", "10.203.0.2", 24, "127.0.0.1")
        };
        let dir = std::env::temp_dir().join(format!("{NAMESPACE_PREFIX}{pid}"));
        let mut hosts = Hosts {
            a: format!("{NAMESPACE_PREFIX}{pid}-a"),
            b: format!("{NAMESPACE_PREFIX}{pid}-b"),
            a_link: "veth-a".into(),
            b_link: "veth-b".into(),
            a_addr: a_addr.into(),
            b_addr: b_addr.into(),
            loopback,
            created: Vec::new(),
            dir,
            ip,
        };
        for namespace in [hosts.a.clone(), hosts.b.clone()] {
            hosts
                .run(&["netns", "add", &namespace])
                .map_err(|e| format!("cannot create a network namespace: {e}"))?;
            hosts.created.push(namespace);
        }
        let (a, b) = (hosts.a.clone(), hosts.b.clone());
        let (a_link, b_link) = (hosts.a_link.clone(), hosts.b_link.clone());
        hosts
            .run(&[
                "-n", &a, "link", "add", &a_link, "type", "veth", "peer", "name", &b_link, "netns",
                &b,
            ])
            .map_err(|e| format!("cannot create a veth pair: {e}"))?;
        let family = if ipv6 { "-6" } else { "-4" };
        for (namespace, link, addr) in [(&a, &a_link, a_addr), (&b, &b_link, b_addr)] {
            let cidr = format!("{addr}/{prefix}");
            let mut add = vec![family, "-n", namespace, "addr", "add", &cidr, "dev", link];
            if ipv6 {
                add.push("nodad");
            }
            for args in [
                &["-n", namespace, "link", "set", "lo", "up"][..],
                &add,
                &["-n", namespace, "link", "set", link, "up"],
            ] {
                hosts
                    .run(args)
                    .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
            }
        }
        for (namespace, link) in [(&a, &a_link), (&b, &b_link)] {
            wait_until(Duration::from_secs(10), "the veth link to come up", || {
                let show = hosts.run(&["-n", namespace, "link", "show", link]).ok()?;
                show.contains("LOWER_UP").then_some(())
            });
        }
        std::fs::create_dir_all(&hosts.dir).expect("a directory for the hosts' files");
        Ok(hosts)
    }

    /// Runs `ip ARGS`; its stdout, or its stderr as the error.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new(&self.ip)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.ip.display()))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    /// Writes one host's `/etc/default/NAME`.
    fn write_default_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write the environment file");
        path
    }

    /// Packets received on `link` inside `namespace`.
    fn rx_bytes(&self, namespace: &str, link: &str) -> u64 {
        let statistics = format!("/sys/class/net/{link}/statistics/rx_bytes");
        self.run(&["netns", "exec", namespace, "cat", &statistics])
            .expect("read the link's counters")
            .trim()
            .parse()
            .expect("a byte count")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for namespace in &self.created {
            if let Err(e) = self.run(&["netns", "del", namespace]) {
                eprintln!("cannot delete network namespace {namespace}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_ip() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join("ip"))
        .find(|candidate| candidate.is_file())
}

/// Deletes namespaces left by runs of this test that were killed before they could clean up.
fn remove_stale_namespaces(ip: &Path) {
    let Ok(output) = Command::new(ip).args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(NAMESPACE_PREFIX) else {
            continue;
        };
        let Some(Ok(pid)) = rest.split('-').next().map(str::parse::<u32>) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new(ip).args(["netns", "del", name]).status();
        }
    }
}

/// An `elayday` process on one of the hosts, started as its unit starts it, with a notify socket
/// standing in for systemd's.
struct HostProcess {
    process: Option<Process>,
    notify: UnixDatagram,
    notify_path: PathBuf,
}

impl HostProcess {
    /// `ip netns exec NAMESPACE elayday ROLE` with exactly the environment the file sets.
    fn start(hosts: &Hosts, namespace: &str, role: &str, environment_file: &Path) -> HostProcess {
        let text = std::fs::read_to_string(environment_file).expect("read the environment file");
        let notify_path = hosts.dir.join(format!("notify-{role}.sock"));
        let notify = UnixDatagram::bind(&notify_path).expect("bind the notify socket");
        notify
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut command = Command::new(&hosts.ip);
        command
            .args(["netns", "exec", namespace, BIN, role])
            .env_clear()
            .envs(load_environment_file(&text))
            .env("NOTIFY_SOCKET", &notify_path);
        HostProcess {
            process: Some(Process::start(command)),
            notify,
            notify_path,
        }
    }

    fn log(&self) -> Vec<String> {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    /// The next notification, as systemd would receive it.
    fn next_notification(&self, what: &str) -> String {
        let mut buf = [0u8; 4096];
        match self.notify.recv(&mut buf) {
            Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Err(e) => panic!(
                "no {what} notification within 30 s ({e}); log:\n{}",
                self.log().join("\n")
            ),
        }
    }

    /// Waits for READY=1 (as systemd does for Type=notify); returns the whole message.
    fn wait_ready(&self) -> String {
        let message = self.next_notification("READY=1");
        assert!(
            message.lines().any(|l| l == "READY=1"),
            "{message}; log:\n{}",
            self.log().join("\n")
        );
        message
    }

    /// SIGTERM, as `systemctl stop` sends (`ip netns exec` has become elayday); returns the exit
    /// status, the next notification and the log.
    fn terminate(mut self) -> (std::process::ExitStatus, String, Vec<String>) {
        let (status, log) = self.process.take().expect("running").terminate();
        let stopping = self.next_notification("STOPPING=1");
        (status, stopping, log)
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        if let Some(process) = self.process.take() {
            process.kill();
        }
        let _ = std::fs::remove_file(&self.notify_path);
    }
}

#[test]
fn environment_files_are_read_as_systemd_reads_them() {
    let text = "# comment\n; also a comment\n\n  KEY = value \nQUOTED=\"a b\"\nSINGLE='c'\n";
    assert_eq!(
        load_environment_file(text),
        [("KEY", "value"), ("QUOTED", "a b"), ("SINGLE", "c")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    // As shipped, both files set nothing: a fresh install has no addresses until they are filled in.
    for name in ["elayday", "elayday-reflector"] {
        assert_eq!(load_environment_file(&shipped_default_file(name)), []);
    }
}
