//! demo: `elayday demo`, a node and a reflector in one process on loopback, to try elayday out.
//!
//! It owns the choice of the demo's addresses (the seed's ports on IPv6 loopback, or on IPv4
//! loopback where IPv6 is off), the wiring of a [`Node`], a [`Reflector`] on its own role thread
//! and the gRPC [`Api`], and the text telling the user what to try. It must not add behaviour of
//! its own: the parts run exactly as `elayday server` and `elayday reflector` run them; nor parse
//! flags: it gets a [`DemoConfig`].

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::Duration;

use crate::api::Api;
use crate::daemon::shutdown::Shutdown;
use crate::node::{Fec, Limits, Node, NodeConfig};
use crate::reflector::{Reflector, ReflectorConfig};
use crate::udp::SocketOptions;

use super::config::DemoConfig;
use super::flags::{default_grpc, ipv6_loopback};

/// The seed README's ports: node, reflector, gRPC.
pub const NODE_PORT: u16 = 24601;
pub const REFLECTOR_PORT: u16 = 24602;
pub const GRPC_PORT: u16 = 24603;

/// Largest value the demo's node accepts.
const MAX_VALUE_SIZE: u64 = 64 << 20;
/// Memory the demo's reflector holds datagrams in.
const REFLECTOR_BUFFER: usize = 128 << 20;
/// Kernel socket buffers to ask for (as `elayday server` and `elayday reflector` do).
const SOCKET_BUFFER: usize = 64 << 20;

/// The addresses the demo runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DemoAddrs {
    pub node: SocketAddr,
    pub reflector: SocketAddr,
    pub grpc: SocketAddr,
}

/// Fills in the defaults of `config`: the seed's ports on `[::1]`, or on `127.0.0.1` when
/// `ipv6` is false. The reflector follows the node's address family.
pub fn addrs_for(config: &DemoConfig, ipv6: bool) -> DemoAddrs {
    let loopback: IpAddr = if ipv6 {
        Ipv6Addr::LOCALHOST.into()
    } else {
        Ipv4Addr::LOCALHOST.into()
    };
    let node = config.bind.unwrap_or_else(|| {
        let ip = config.reflector.map_or(loopback, |r| r.ip());
        SocketAddr::new(ip, NODE_PORT)
    });
    DemoAddrs {
        node,
        reflector: config
            .reflector
            .unwrap_or(SocketAddr::new(node.ip(), REFLECTOR_PORT)),
        grpc: config.grpc.unwrap_or(SocketAddr::new(loopback, GRPC_PORT)),
    }
}

/// Runs the demo until `shutdown`.
pub fn run(config: DemoConfig, shutdown: &Shutdown) -> io::Result<()> {
    let ipv6 = ipv6_loopback();
    if !ipv6 {
        log::info!("no IPv6 loopback here: the demo runs on 127.0.0.1");
    }
    let addrs = addrs_for(&config, ipv6);
    // Find a taken gRPC port before anything starts (the usual clash: a demo already running).
    drop(TcpListener::bind(addrs.grpc).map_err(|e| taken(e, "gRPC", addrs.grpc, "--grpc"))?);

    let reflector = Reflector::bind(ReflectorConfig {
        bind: addrs.reflector,
        delay: config.delay,
        max_buffer: REFLECTOR_BUFFER,
        socket: SocketOptions {
            recv_buffer: SOCKET_BUFFER,
            send_buffer: SOCKET_BUFFER,
        },
    })
    .map_err(|e| hint(e, "--reflector"))?;
    let reflector_addr = reflector.local_addr();
    let reflector = reflector.spawn(shutdown)?;
    let stop_reflector = |reflector: std::thread::JoinHandle<_>, error: io::Error| {
        shutdown.request();
        let _ = reflector.join();
        error
    };

    let node = NodeConfig {
        bind: addrs.node,
        destination: reflector_addr,
        mtu: 1280,
        socket_buffer: SOCKET_BUFFER,
        loop_timeout: (config.delay * 3).max(Duration::from_secs(2)),
        limits: Limits::defaults(MAX_VALUE_SIZE),
        fec: Fec::default(),
    };
    let node = match Node::start(node, shutdown) {
        Ok(node) => node,
        Err(e) => return Err(stop_reflector(reflector, hint(e, "--bind"))),
    };
    let node_addr = node.local_addr();
    let api = match Api::start(addrs.grpc, node.handle()) {
        Ok(api) => api,
        Err(e) => {
            shutdown.request();
            node.join();
            return Err(stop_reflector(
                reflector,
                taken(e, "gRPC", addrs.grpc, "--grpc"),
            ));
        }
    };
    let shown = DemoAddrs {
        node: node_addr,
        reflector: reflector_addr,
        grpc: api.local_addr,
    };
    let client_default: SocketAddr = default_grpc(ipv6).parse().expect("a socket address");
    let mut stdout = io::stdout().lock();
    let text = banner(&shown, config.delay, &cli_name(), client_default);
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
    drop(stdout);

    while !shutdown.wait_timeout(Duration::from_secs(3600)) {}
    api.stop();
    let lost = node.join();
    // A panic never reaches here: the role supervisor ends the process first.
    let reflected = reflector
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("the reflector thread panicked")));
    log::info!(
        "demo stopped; {} values ({} bytes) were circulating and are gone",
        lost.circulating_values,
        lost.circulating_bytes
    );
    // A reflector that failed stopped the demo: that is the demo's error.
    reflected
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("the reflector stopped: {e}")))
}

/// Says which flag picks another address when `error` is "address in use".
fn hint(error: io::Error, flag: &str) -> io::Error {
    if error.kind() == io::ErrorKind::AddrInUse {
        io::Error::new(
            error.kind(),
            format!("{error} (is another elayday running? choose another address with {flag} ADDR:PORT)"),
        )
    } else {
        error
    }
}

fn taken(error: io::Error, what: &str, addr: SocketAddr, flag: &str) -> io::Error {
    if error.kind() == io::ErrorKind::AddrInUse {
        io::Error::new(
            error.kind(),
            format!(
                "the {what} port {addr} is taken (is another elayday running?); choose another address with {flag} ADDR:PORT"
            ),
        )
    } else if error.to_string().contains(&addr.to_string()) {
        error
    } else {
        io::Error::new(error.kind(), format!("cannot bind {what} {addr}: {error}"))
    }
}

/// How to call this binary from a shell: `elayday` when that is what PATH finds, else its path.
fn cli_name() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "elayday".into();
    };
    let exe = exe.canonicalize().unwrap_or(exe);
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("elayday"))
            .find(|candidate| candidate.is_file())
    });
    match on_path.map(|p| p.canonicalize().unwrap_or(p)) {
        Some(found) if found == exe => "elayday".into(),
        _ => shell_quote(&exe.to_string_lossy()),
    }
}

fn shell_quote(text: &str) -> String {
    let plain = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,=@".contains(&b));
    if plain && !text.is_empty() {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

/// What the demo prints once it serves: where things run and what to try. `cli` is how to call
/// this binary; `client_default` where the CLI looks without `--grpc`.
pub fn banner(addrs: &DemoAddrs, delay: Duration, cli: &str, client_default: SocketAddr) -> String {
    let grpc = addrs.grpc;
    let flag = if grpc == client_default {
        String::new()
    } else {
        format!(" --grpc {grpc}")
    };
    let alias = if cli == "elayday" {
        String::new()
    } else {
        format!("alias elayday={cli}    # elayday is not on your PATH\n")
    };
    format!(
        "\n\
elayday demo: a node on UDP {node} sends every datagram to a reflector on UDP {reflector},\n\
which holds it for {delay} s and sends it back; the values live only in that loop.\n\
The gRPC API listens on {grpc} (stop with Ctrl-C; the values are then gone).\n\
\n\
Try, in another terminal:\n\
\n\
grpcurl -plaintext \\\n  \
  -d '{{\"key\":\"foo\",\"value\":\"SGVsbG8gd29ybGQgCg==\"}}' \\\n  \
  {grpc} elayday.Elayday/PutValue\n\
\n\
grpcurl -plaintext \\\n    \
    -d '{{\"key\":\"foo\"}}' \\\n    \
    {grpc} elayday.Elayday/GetValue\n\
\n\
{alias}\
elayday put{flag} foo hello\n\
elayday get{flag} foo\n\
elayday stats{flag}\n\
\n",
        node = addrs.node,
        reflector = addrs.reflector,
        delay = delay.as_secs_f64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(bind: Option<&str>, reflector: Option<&str>, grpc: Option<&str>) -> DemoConfig {
        DemoConfig {
            grpc: grpc.map(|a| a.parse().unwrap()),
            bind: bind.map(|a| a.parse().unwrap()),
            reflector: reflector.map(|a| a.parse().unwrap()),
            delay: Duration::from_secs(1),
        }
    }

    #[test]
    fn defaults_are_the_seed_addresses_with_an_ipv4_fallback() {
        let a = addrs_for(&config(None, None, None), true);
        assert_eq!(a.node, "[::1]:24601".parse().unwrap());
        assert_eq!(a.reflector, "[::1]:24602".parse().unwrap());
        assert_eq!(a.grpc, "[::1]:24603".parse().unwrap());
        let a = addrs_for(&config(None, None, None), false);
        assert_eq!(a.node, "127.0.0.1:24601".parse().unwrap());
        assert_eq!(a.reflector, "127.0.0.1:24602".parse().unwrap());
        assert_eq!(a.grpc, "127.0.0.1:24603".parse().unwrap());
    }

    #[test]
    fn the_reflector_follows_the_node_and_the_other_way_round() {
        let a = addrs_for(&config(Some("127.0.0.1:7000"), None, None), true);
        assert_eq!(a.reflector, "127.0.0.1:24602".parse().unwrap());
        let a = addrs_for(&config(None, Some("127.0.0.1:7000"), None), true);
        assert_eq!(a.node, "127.0.0.1:24601".parse().unwrap());
    }

    #[test]
    fn the_banner_has_the_seed_calls_and_the_cli() {
        let a = addrs_for(&config(None, None, None), true);
        let v6 = "[::1]:24603".parse().unwrap();
        let text = banner(&a, Duration::from_secs(1), "elayday", v6);
        assert!(text.contains(
            "grpcurl -plaintext \\\n  -d '{\"key\":\"foo\",\"value\":\"SGVsbG8gd29ybGQgCg==\"}' \\\n  [::1]:24603 elayday.Elayday/PutValue\n"
        ), "{text}");
        assert!(text.contains(
            "grpcurl -plaintext \\\n    -d '{\"key\":\"foo\"}' \\\n    [::1]:24603 elayday.Elayday/GetValue\n"
        ), "{text}");
        assert!(text.contains("\nelayday put foo hello\n"), "{text}");
        assert!(!text.contains("alias"), "{text}");
        let a = addrs_for(&config(None, None, Some("127.0.0.1:9")), true);
        let text = banner(&a, Duration::from_secs(1), "/x/elayday", v6);
        assert!(
            text.contains("\nelayday get --grpc 127.0.0.1:9 foo\n"),
            "{text}"
        );
        assert!(text.contains("alias elayday=/x/elayday"), "{text}");
        // Without IPv6 the CLI's default is the IPv4 one, so no flag is needed.
        let a = addrs_for(&config(None, None, None), false);
        let v4 = "127.0.0.1:24603".parse().unwrap();
        let text = banner(&a, Duration::from_secs(1), "elayday", v4);
        assert!(text.contains("\nelayday get foo\n"), "{text}");
        assert!(
            text.contains("127.0.0.1:24603 elayday.Elayday/GetValue"),
            "{text}"
        );
    }

    #[test]
    fn paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/usr/bin/elayday"), "/usr/bin/elayday");
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
    }
}
