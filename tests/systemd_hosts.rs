//! The Debian package on two booted systemd hosts: two copies of a minimal Debian root, each
//! booted with `systemd-nspawn --boot` in a network namespace of its own, the two namespaces
//! joined by a veth pair. On both, the test installs the .deb of this build with dpkg; host B
//! fills in `/etc/default/elayday-reflector` and starts `elayday-reflector`, host A fills in
//! `/etc/default/elayday` (next hop: host B across the link) and starts `elayday`, both with
//! `systemctl start` (the units are Type=notify: it returns once the daemon is ready). Then,
//! with the packaged CLI on host A, it PUTs and GETs values that can only come back by crossing
//! the link; stops the reflector unit (the node reports the loop broken), starts it (closed
//! again) and restarts it (serving again); and removes and purges the package (the units and
//! the binary gone on remove, the conffiles gone on purge).
//!
//! The Debian root is made once with debootstrap (minbase, plus systemd) from the Debian
//! mirror this machine's apt uses, for this machine's release, and kept in
//! `/var/tmp/elayday-debootstrap` (`ELAYDAY_DEBOOTSTRAP_CACHE` to move it); the hosts boot it
//! with `--volatile=overlay`, so it stays as made. The .deb is `cargo deb --no-build` of the
//! binary this test run was built with.
//!
//! It needs root, systemd-nspawn (systemd-container), debootstrap, iproute2, nsenter and
//! cargo-deb; without any of them it prints `skipped:` and why, and passes. Everything it
//! makes is named `elayday-nspawn-<pid>-...` and removed when it ends, even on failure; what a
//! killed run left behind is removed by the next one.

mod common;

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{wait_until, BIN};

/// Names of namespaces, machines and folders of a run: this, then the test process id.
const PREFIX: &str = "elayday-nspawn-";
/// Where the Debian root is kept between runs.
const DEFAULT_CACHE: &str = "/var/tmp/elayday-debootstrap";
/// What the root has beyond debootstrap's minbase: an init to boot.
const INCLUDE: &str = "systemd,systemd-sysv";
/// The reflector's delay on host B, in seconds.
const DELAY: &str = "0.2";
/// The value PUT across the link in many datagrams.
const LARGE_VALUE_BYTES: usize = 300_000;
/// Where each host sees the folder with the .deb.
const DEB_MOUNT: &str = "/mnt/elayday";

#[test]
fn deb_on_two_booted_systemd_hosts() {
    let tools = match Tools::find() {
        Ok(tools) => tools,
        Err(reason) => {
            eprintln!("skipped: systemd hosts test: {reason}");
            return;
        }
    };
    remove_stale(&tools);
    let work = WorkDir::create();
    let started = Instant::now();
    let deb = build_deb(&tools, &work.path);
    let root = debian_root(&tools);
    let prepared = started.elapsed();

    let hosts = Hosts::create(&tools);
    let a = Machine::boot(&tools, &hosts.a, &root, &work.path, "a");
    let b = Machine::boot(&tools, &hosts.b, &root, &work.path, "b");
    a.wait_booted();
    b.wait_booted();
    let booted = started.elapsed();
    let deb_inside = format!("{DEB_MOUNT}/{}", deb.file_name().unwrap().to_string_lossy());

    // Installed on both: enabled, not started (each needs its settings first).
    for host in [&a, &b] {
        host.run_ok(&["dpkg", "--install", &deb_inside]);
        for unit in ["elayday", "elayday-reflector"] {
            assert_eq!(host.run(&["systemctl", "is-enabled", unit]).0, "enabled");
            assert_eq!(host.run(&["systemctl", "is-active", unit]).0, "inactive");
        }
    }

    // Host B: the reflector, from the shipped /etc/default file filled in.
    let reflector_udp = format!("{}:24602", bracket(&hosts.b_addr));
    b.configure(
        "elayday-reflector",
        &[("ELAYDAY_BIND", &reflector_udp), ("ELAYDAY_DELAY", DELAY)],
    );
    b.run_ok(&["systemctl", "start", "elayday-reflector"]);
    assert_eq!(
        b.property("elayday-reflector", "StatusText"),
        format!("reflector on {reflector_udp}"),
        "Type=notify: started means ready, with its status"
    );

    // Host A: the node, whose next hop is host B.
    let node_udp = format!("{}:24601", bracket(&hosts.a_addr));
    let grpc = format!("{}:24603", bracket(hosts.loopback));
    a.configure(
        "elayday",
        &[
            ("ELAYDAY_BIND", &node_udp),
            ("ELAYDAY_DESTINATION", &reflector_udp),
            ("ELAYDAY_BIND_GRPC", &grpc),
        ],
    );
    a.run_ok(&["systemctl", "start", "elayday"]);
    assert_eq!(
        a.property("elayday", "StatusText"),
        format!("node on {node_udp}, next hop {reflector_udp}, gRPC {grpc}")
    );
    assert_eq!(a.property("elayday", "SubState"), "running");
    // The host's socket buffer limit is what the container gets; below the 64 MiB asked for,
    // the node says where to raise it (systemd-sysctl does not run in a container).
    let host_limit: u64 = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .map_or(0, |text| text.trim().parse().unwrap_or(0));
    if host_limit < 64 << 20 {
        a.wait_journal(
            "elayday",
            "in a container the limit is the host's net.core.rmem_max",
        );
    }
    // The packaged CLI, told where the node's API is (the default is [::1]:24603 too).
    let cli = |args: &[&str]| {
        let mut all = vec!["elayday", args[0], "--grpc", &grpc];
        all.extend_from_slice(&args[1..]);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };

    // The packaged CLI on host A, across the link and back.
    let received_before = hosts.rx_bytes(&hosts.b);
    a.wait_put(
        &cli(&["put", "greeting", "hello from host A"]),
        "the loop to close",
    );
    assert_eq!(
        a.stdout_of(&cli(&["get", "greeting"])),
        b"hello from host A"
    );
    let large: Vec<u8> = (0..LARGE_VALUE_BYTES)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let put = a.exec(&cli(&["put", "large"]), Some(&large));
    assert!(put.status.success(), "put large: {put:?}");
    assert!(
        a.stdout_of(&cli(&["get", "large"])) == large,
        "the large value came back different"
    );
    let received = hosts.rx_bytes(&hosts.b) - received_before;
    assert!(
        received >= LARGE_VALUE_BYTES as u64,
        "host B received {received} bytes, less than one {LARGE_VALUE_BYTES}-byte value"
    );

    // The reflector stops: the node reports the loop broken; GETs are refused (exit 3).
    b.run_ok(&["systemctl", "stop", "elayday-reflector"]);
    wait_until(
        Duration::from_secs(30),
        "the node to call the loop broken",
        || {
            let output = a.exec(&cli(&["get", "greeting"]), None);
            (output.status.code() == Some(3)).then_some(())
        },
    );
    a.wait_journal("elayday", "broken");
    // It starts again: the loop closes, writes are confirmed again.
    b.run_ok(&["systemctl", "start", "elayday-reflector"]);
    a.wait_put(
        &cli(&["put", "after-start", "back"]),
        "the loop to close again",
    );
    a.wait_journal("elayday", "closed again");
    // A restart (a new process, the values it held lost) and the loop serves on.
    let before = b.property("elayday-reflector", "MainPID");
    b.run_ok(&["systemctl", "restart", "elayday-reflector"]);
    assert_ne!(b.property("elayday-reflector", "MainPID"), before);
    assert_eq!(b.property("elayday-reflector", "ActiveState"), "active");
    a.wait_put(
        &cli(&["put", "after-restart", "still"]),
        "writes after the restart",
    );
    assert_eq!(a.stdout_of(&cli(&["get", "after-restart"])), b"still");

    // Remove on host A, the node running: it stops, the binary and the units go (Debian masks
    // a removed package's units until it is purged), the settings stay.
    a.run_ok(&["dpkg", "--remove", "elayday"]);
    assert_eq!(a.run(&["systemctl", "is-active", "elayday"]).0, "inactive");
    assert!(!a.exists("/usr/bin/elayday"));
    for unit in ["elayday", "elayday-reflector"] {
        assert!(!a.exists(&format!("/lib/systemd/system/{unit}.service")));
        assert!(!a.exists(&format!("/usr/lib/systemd/system/{unit}.service")));
        assert_eq!(a.property(unit, "LoadState"), "masked");
        assert!(a.exists(&format!("/etc/default/{unit}")));
    }
    // Purge on both (host B straight from installed, its reflector running).
    for host in [&a, &b] {
        host.run_ok(&["dpkg", "--purge", "elayday"]);
        for unit in ["elayday", "elayday-reflector"] {
            assert_eq!(host.property(unit, "LoadState"), "not-found");
            assert!(!host.exists(&format!("/etc/default/{unit}")));
        }
        assert_eq!(
            host.run(&["systemctl", "is-active", "elayday-reflector"]).0,
            "inactive"
        );
        let status = host.run(&[
            "dpkg-query",
            "--show",
            "--showformat=${db:Status-Status}",
            "elayday",
        ]);
        assert!(
            status.0.is_empty() || status.0 == "not-installed",
            "{status:?}"
        );
    }

    let poweroff = Instant::now();
    a.poweroff();
    b.poweroff();
    eprintln!(
        "figures: .deb and Debian root ready {prepared:.1?}, both hosts booted {booted:.1?}, \
         all done {:.1?} (poweroff {:.1?})",
        started.elapsed(),
        poweroff.elapsed()
    );
}

/// The programs the test runs, or why it cannot run here.
struct Tools {
    ip: PathBuf,
    nspawn: PathBuf,
    nsenter: PathBuf,
    debootstrap: PathBuf,
    cargo: PathBuf,
}

impl Tools {
    fn find() -> Result<Tools, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root (network namespaces, systemd-nspawn, debootstrap)".into());
        }
        let need = |name: &str, package: &str| {
            find_program(name).ok_or(format!(
                "{name} is not installed (apt-get install {package})"
            ))
        };
        let tools = Tools {
            ip: need("ip", "iproute2")?,
            nspawn: need("systemd-nspawn", "systemd-container")?,
            nsenter: need("nsenter", "util-linux")?,
            debootstrap: need("debootstrap", "debootstrap")?,
            cargo: std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from),
        };
        let cargo_deb = Command::new(&tools.cargo)
            .args(["deb", "--version"])
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|out| out.status.success());
        if !cargo_deb {
            return Err(
                "cargo-deb is not installed (bash packaging/build-deb.sh installs it)".into(),
            );
        }
        Ok(tools)
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs a command to the end; its stdout, or what went wrong.
fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{command:?}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A folder of this run (the .deb, the hosts' logs); removed on drop.
struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    fn create() -> WorkDir {
        let path = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a folder for the test");
        WorkDir { path }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The .deb of the binary this run was built with: `cargo deb --no-build --strip`, as
/// `packaging/build-deb.sh` builds it, from the same target folder.
fn build_deb(tools: &Tools, out: &Path) -> PathBuf {
    let target = Path::new(BIN)
        .parent()
        .and_then(Path::parent)
        .expect("the binary is in <target>/release");
    let printed = run(Command::new(&tools.cargo)
        .args(["deb", "--no-build", "--strip", "--output"])
        .arg(out)
        .env("CARGO_TARGET_DIR", target))
    .unwrap_or_else(|e| panic!("cargo deb: {e}"));
    let deb = PathBuf::from(printed.lines().last().unwrap_or_default().trim());
    assert!(deb.is_file(), "cargo deb printed {printed:?}");
    deb
}

/// The Debian mirror and release this machine's apt uses: the first source of the release
/// itself (not -updates or -security), from sources.list or a deb822 .sources file.
fn debian_mirror() -> (String, String) {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let codename = os_release
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|c| c.trim_matches('"').to_string())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "bookworm".into());
    if let Ok(mirror) = std::env::var("ELAYDAY_DEBOOTSTRAP_MIRROR") {
        return (mirror, codename);
    }
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let name = file.to_string_lossy().into_owned();
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if name.ends_with(".list") {
            for line in text.lines().map(str::trim) {
                let words: Vec<&str> = line.split_whitespace().collect();
                // deb [options] URI SUITE COMPONENTS...
                let words: Vec<&str> = words.into_iter().filter(|w| !w.starts_with('[')).collect();
                if words.len() >= 3 && words[0] == "deb" && words[2] == codename {
                    return (words[1].to_string(), codename);
                }
            }
        } else if name.ends_with(".sources") {
            for stanza in text.split("\n\n") {
                let field = |key: &str| {
                    stanza
                        .lines()
                        .find_map(|l| l.strip_prefix(key))
                        .map(|v| v.trim().to_string())
                };
                let enabled = field("Enabled:").is_none_or(|v| v != "no");
                let debs =
                    field("Types:").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
                let suites = field("Suites:").unwrap_or_default();
                if enabled && debs && suites.split_whitespace().any(|s| s == codename) {
                    if let Some(uri) =
                        field("URIs:").and_then(|u| u.split_whitespace().next().map(str::to_string))
                    {
                        return (uri, codename);
                    }
                }
            }
        }
    }
    ("http://deb.debian.org/debian".into(), codename)
}

/// A minimal Debian root with systemd, made with debootstrap once and kept in the cache
/// folder (under a lock, so that two runs do not make it at once).
fn debian_root(tools: &Tools) -> PathBuf {
    let cache = PathBuf::from(
        std::env::var("ELAYDAY_DEBOOTSTRAP_CACHE").unwrap_or_else(|_| DEFAULT_CACHE.into()),
    );
    std::fs::create_dir_all(&cache).expect("the debootstrap cache folder");
    let (mirror, suite) = debian_mirror();
    let root = cache.join(format!("{suite}-minbase-{}", INCLUDE.replace(',', "-")));
    let lock = File::create(cache.join(".lock")).expect("the cache's lock file");
    // SAFETY: flock on a file descriptor we own; released when `lock` is closed.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    if root.join(".complete").exists() {
        return root;
    }
    let partial = cache.join(format!(".partial-{suite}"));
    let _ = std::fs::remove_dir_all(&partial);
    let started = Instant::now();
    eprintln!(
        "systemd hosts: debootstrap {suite} from {mirror} into {} (once)",
        root.display()
    );
    run(Command::new(&tools.debootstrap)
        .args(["--variant=minbase", &format!("--include={INCLUDE}"), &suite])
        .arg(&partial)
        .arg(&mirror))
    .unwrap_or_else(|e| panic!("debootstrap: {e}"));
    // Each host gets its name from nspawn, and its machine id at boot.
    let _ = std::fs::remove_file(partial.join("etc/hostname"));
    std::fs::write(partial.join("etc/machine-id"), "").expect("empty machine-id");
    std::fs::write(partial.join(".complete"), format!("{mirror} {suite}\n")).unwrap();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&partial, &root).expect("move the new root into place");
    eprintln!("systemd hosts: debootstrap took {:.1?}", started.elapsed());
    root
}

/// Two network namespaces joined by a veth pair, loopback up in both; deleted on drop.
struct Hosts {
    ip: PathBuf,
    a: String,
    b: String,
    a_addr: String,
    b_addr: String,
    loopback: &'static str,
}

impl Hosts {
    fn create(tools: &Tools) -> Hosts {
        let pid = std::process::id();
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let (a_addr, b_addr, prefix, loopback) = if ipv6 {
            ("fd00:204::1", "fd00:204::2", 64, "::1")
        } else {
            ("10.204.0.1", "10.204.0.2", 24, "127.0.0.1")
        };
        let mut hosts = Hosts {
            ip: tools.ip.clone(),
            a: String::new(),
            b: String::new(),
            a_addr: a_addr.into(),
            b_addr: b_addr.into(),
            loopback,
        };
        // Assigned one by one so that drop deletes exactly what was made.
        hosts.ip(&["netns", "add", &format!("{PREFIX}{pid}-a")]);
        hosts.a = format!("{PREFIX}{pid}-a");
        hosts.ip(&["netns", "add", &format!("{PREFIX}{pid}-b")]);
        hosts.b = format!("{PREFIX}{pid}-b");
        let (a, b) = (hosts.a.clone(), hosts.b.clone());
        hosts.ip(&[
            "-n", &a, "link", "add", "veth-a", "type", "veth", "peer", "name", "veth-b", "netns",
            &b,
        ]);
        let family = if ipv6 { "-6" } else { "-4" };
        for (namespace, link, addr) in [(&a, "veth-a", a_addr), (&b, "veth-b", b_addr)] {
            let cidr = format!("{addr}/{prefix}");
            let mut add = vec![family, "-n", namespace, "addr", "add", &cidr, "dev", link];
            if ipv6 {
                add.push("nodad");
            }
            // A new network namespace has its loopback down: the gRPC API listens there.
            hosts.ip(&["-n", namespace, "link", "set", "lo", "up"]);
            hosts.ip(&add);
            hosts.ip(&["-n", namespace, "link", "set", link, "up"]);
        }
        for (namespace, link) in [(&a, "veth-a"), (&b, "veth-b")] {
            wait_until(Duration::from_secs(10), "the veth link to come up", || {
                let show =
                    run(Command::new(&hosts.ip).args(["-n", namespace, "link", "show", link]))
                        .ok()?;
                show.contains("LOWER_UP").then_some(())
            });
        }
        hosts
    }

    fn ip(&self, args: &[&str]) -> String {
        run(Command::new(&self.ip).args(args)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Bytes received on host B's end of the link.
    fn rx_bytes(&self, namespace: &str) -> u64 {
        self.ip(&[
            "netns",
            "exec",
            namespace,
            "cat",
            "/sys/class/net/veth-b/statistics/rx_bytes",
        ])
        .trim()
        .parse()
        .expect("a byte count")
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for namespace in [&self.a, &self.b].into_iter().filter(|n| !n.is_empty()) {
            if let Err(e) = run(Command::new(&self.ip).args(["netns", "del", namespace])) {
                eprintln!("cannot delete network namespace {namespace}: {e}");
            }
        }
    }
}

/// A Debian host booted with systemd-nspawn in a network namespace, its root the cached one
/// under a tmpfs overlay. Powered off (or killed) on drop.
struct Machine {
    name: String,
    nspawn: Option<Child>,
    leader: i32,
    nsenter: PathBuf,
    log: PathBuf,
}

impl Machine {
    fn boot(tools: &Tools, namespace: &str, root: &Path, work: &Path, host: &str) -> Machine {
        let name = format!("{PREFIX}{}-{host}", std::process::id());
        let log = work.join(format!("{host}.log"));
        let output = File::create(&log).expect("the host's log file");
        let child = Command::new(&tools.nspawn)
            .arg("--boot")
            // No systemd-machined or service manager on the outside to register with.
            .args(["--register=no", "--keep-unit"])
            .arg("--volatile=overlay")
            .arg(format!("--network-namespace-path=/run/netns/{namespace}"))
            .arg(format!("--directory={}", root.display()))
            .arg(format!("--machine={name}"))
            .arg(format!("--bind-ro={}:{DEB_MOUNT}", work.display()))
            .stdin(Stdio::null())
            .stdout(output.try_clone().unwrap())
            .stderr(output)
            .spawn()
            .expect("start systemd-nspawn");
        let nspawn_pid = child.id();
        let mut machine = Machine {
            name,
            nspawn: Some(child),
            leader: 0,
            nsenter: tools.nsenter.clone(),
            log,
        };
        // The container's PID 1 is the child of systemd-nspawn that runs systemd.
        machine.leader = wait_until(Duration::from_secs(30), "the container's init", || {
            if let Some(child) = machine.nspawn.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "systemd-nspawn exited: {status}\n{}",
                        machine_log(&machine.log)
                    );
                }
            }
            let children =
                std::fs::read_to_string(format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children"))
                    .ok()?;
            children.split_whitespace().find_map(|pid| {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                (comm.trim() == "systemd")
                    .then(|| pid.parse().ok())
                    .flatten()
            })
        });
        machine
    }

    /// Waits until systemd has finished booting: `running`, or `degraded` (a unit of the
    /// minimal root that cannot work in a container; listed).
    fn wait_booted(&self) {
        let state = wait_until(Duration::from_secs(120), "the host to boot", || {
            let (state, _) = self.run(&["systemctl", "is-system-running"]);
            ["running", "degraded"]
                .contains(&state.as_str())
                .then_some(state)
        });
        if state == "degraded" {
            let (failed, _) = self.run(&["systemctl", "--failed", "--no-legend", "--plain"]);
            eprintln!("systemd hosts: {} booted degraded: {failed}", self.name);
        }
    }

    /// `ARGS` inside the host: all its namespaces, a clean environment.
    fn exec<S: AsRef<str>>(&self, args: &[S], input: Option<&[u8]>) -> Output {
        let mut command = Command::new(&self.nsenter);
        command
            .args(["--target", &self.leader.to_string(), "--all", "--"])
            .args([
                "/usr/bin/env",
                "-i",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                "LANG=C.UTF-8",
                "SYSTEMD_PAGER=",
            ])
            .args(args.iter().map(AsRef::as_ref))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let Some(input) = input else {
            return command.stdin(Stdio::null()).output().expect("run nsenter");
        };
        let mut child = command.stdin(Stdio::piped()).spawn().expect("run nsenter");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let output = child.wait_with_output().expect("wait for nsenter");
        writer.join().unwrap().expect("write the input");
        output
    }

    /// Trimmed stdout and the exit code.
    fn run(&self, args: &[&str]) -> (String, Option<i32>) {
        let output = self.exec(args, None);
        (
            String::from_utf8_lossy(&output.stdout).trim().to_string(),
            output.status.code(),
        )
    }

    fn run_ok(&self, args: &[&str]) -> String {
        let output = self.exec(args, None);
        assert!(
            output.status.success(),
            "{}: {args:?}: {}\n{}{}",
            self.name,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn stdout_of<S: AsRef<str>>(&self, args: &[S]) -> Vec<u8> {
        let output = self.exec(args, None);
        assert!(output.status.success(), "{}: {output:?}", self.name);
        output.stdout
    }

    /// `systemctl show --property=NAME --value UNIT`.
    fn property(&self, unit: &str, name: &str) -> String {
        self.run_ok(&[
            "systemctl",
            "show",
            &format!("--property={name}"),
            "--value",
            unit,
        ])
        .trim()
        .to_string()
    }

    fn exists(&self, path: &str) -> bool {
        self.run(&["test", "-e", path]).1 == Some(0)
    }

    /// What an administrator does: uncomment the example line of each setting in the
    /// installed `/etc/default/NAME` and give it a value.
    fn configure(&self, name: &str, settings: &[(&str, &str)]) {
        let file = format!("/etc/default/{name}");
        let shipped = self.run_ok(&["cat", &file]);
        let mut lines: Vec<String> = shipped.lines().map(str::to_string).collect();
        for (key, value) in settings {
            let example = format!("#{key}=");
            let line = lines
                .iter_mut()
                .find(|l| l.starts_with(&example))
                .unwrap_or_else(|| panic!("{file} has no example line for {key}"));
            *line = format!("{key}={value}");
        }
        let text = lines.join("\n") + "\n";
        let output = self.exec(
            &["sh", "-c", &format!("cat > {file}")],
            Some(text.as_bytes()),
        );
        assert!(output.status.success(), "write {file}: {output:?}");
    }

    /// Runs a `elayday put` until it succeeds: a write is confirmed only once it has been
    /// round the loop, so this waits for the loop to be closed.
    fn wait_put(&self, put: &[String], what: &str) {
        let start = Instant::now();
        loop {
            let output = self.exec(put, None);
            if output.status.success() {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{}: timed out waiting for {what}: {put:?}: {output:?}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the unit's journal has a line containing `needle`.
    fn wait_journal(&self, unit: &str, needle: &str) {
        wait_until(
            Duration::from_secs(30),
            &format!("'{needle}' in {unit}'s journal"),
            || {
                let (journal, _) =
                    self.run(&["journalctl", "--unit", unit, "--no-pager", "--output=cat"]);
                journal.contains(needle).then_some(())
            },
        );
    }

    /// Shuts the host down as `machinectl poweroff` would (SIGTERM to systemd-nspawn makes it
    /// ask the container's systemd to halt) and waits for it.
    fn poweroff(mut self) {
        if let Some(mut child) = self.nspawn.take() {
            // SAFETY: a signal to our own child process.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let status = wait_until(Duration::from_secs(60), "the host to power off", || {
                child.try_wait().unwrap()
            });
            assert!(
                status.success(),
                "{}: systemd-nspawn {status}\n{}",
                self.name,
                machine_log(&self.log)
            );
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut child) = self.nspawn.take() {
            if std::thread::panicking() {
                eprintln!("{} console:\n{}", self.name, machine_log(&self.log));
            }
            // SIGKILL to the container's PID 1 ends every process of its PID namespace.
            if self.leader > 0 {
                // SAFETY: a signal to a process this test started.
                unsafe { libc::kill(self.leader, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn machine_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Removes what runs of this test that were killed left behind: their hosts (systemd-nspawn
/// processes with a machine name of ours) and network namespaces.
fn remove_stale(tools: &Tools) {
    let dead = |name: &str| {
        name.strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    };
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            let ours = args.first().is_some_and(|a| a.ends_with("systemd-nspawn"))
                && args
                    .iter()
                    .any(|a| a.strip_prefix("--machine=").is_some_and(dead));
            if ours {
                let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                    .unwrap_or_default();
                for child in children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<i32>().ok())
                {
                    // SAFETY: a container init left by an earlier run of this test.
                    unsafe { libc::kill(child, libc::SIGKILL) };
                }
                // SAFETY: a systemd-nspawn left by an earlier run of this test.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let list = run(Command::new(&tools.ip).args(["netns", "list"])).unwrap_or_default();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if dead(name) {
            let _ = run(Command::new(&tools.ip).args(["netns", "del", name]));
        }
    }
}

fn bracket(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_string()
    }
}
