//! flags: the table of every flag of every subcommand, with its environment variable and its
//! default, and the help text made from it.
//!
//! It owns what the user reads: flag names, placeholders, defaults, help lines, usage lines and
//! the client's exit codes. The parser reads the same table, so help text, parsing and error
//! messages come from one place. It must not parse anything nor start anything.

use std::net::{Ipv6Addr, UdpSocket};

/// One flag of a subcommand.
pub struct Flag {
    /// Long name without dashes, e.g. `bind`.
    pub name: &'static str,
    /// Environment variable that supplies it when the flag is absent.
    pub env: &'static str,
    /// Placeholder for the value in help text.
    pub value: &'static str,
    /// Default, if the flag is optional.
    pub default: Option<&'static str>,
    /// One line of help.
    pub help: &'static str,
}

const fn flag(
    name: &'static str,
    env: &'static str,
    value: &'static str,
    default: Option<&'static str>,
    help: &'static str,
) -> Flag {
    Flag {
        name,
        env,
        value,
        default,
        help,
    }
}

/// `--socket-buffer`, which the node and the reflector both take.
const SOCKET_BUFFER: Flag = flag(
    "socket-buffer",
    "ELAYDAY_SOCKET_BUFFER",
    "BYTES",
    Some("64M"),
    "kernel UDP buffer to ask for, each direction",
);

/// Flags of `elayday server`.
pub const SERVER_FLAGS: &[Flag] = &[
    flag(
        "bind",
        "ELAYDAY_BIND",
        "ADDR:PORT",
        None,
        "UDP address to receive datagrams on",
    ),
    flag(
        "destination",
        "ELAYDAY_DESTINATION",
        "HOST:PORT",
        None,
        "next hop of the loop: another node or a reflector",
    ),
    flag(
        "bind-grpc",
        "ELAYDAY_BIND_GRPC",
        "ADDR:PORT",
        Some(""),
        "serve the gRPC API here (off when empty)",
    ),
    flag(
        "mtu",
        "ELAYDAY_MTU",
        "BYTES",
        Some("1280"),
        "largest IP packet to send; datagrams are MTU - 48 bytes",
    ),
    flag(
        "max-value-size",
        "ELAYDAY_MAX_VALUE_SIZE",
        "BYTES",
        Some("256M"),
        "largest value to store or fetch (also the gRPC message limit)",
    ),
    SOCKET_BUFFER,
    flag(
        "loop-timeout",
        "ELAYDAY_LOOP_TIMEOUT",
        "SECONDS",
        Some("2"),
        "silence (no probe back) after which the loop counts as broken; at least 3 loop periods",
    ),
    flag(
        "max-requests",
        "ELAYDAY_MAX_REQUESTS",
        "COUNT",
        Some("10000"),
        "requests held at once (waiting GETs, writes, deletes); more are refused",
    ),
    flag(
        "max-write-backlog",
        "ELAYDAY_MAX_WRITE_BACKLOG",
        "BYTES",
        Some("512M"),
        "PUT bytes accepted but not yet sent; more are refused (at least --max-value-size)",
    ),
    flag(
        "max-reassembly",
        "ELAYDAY_MAX_REASSEMBLY",
        "BYTES",
        Some("512M"),
        "memory for values being put together for GETs (at least --max-value-size + 50 %)",
    ),
    flag(
        "fec",
        "ELAYDAY_FEC",
        "DATA+PARITY",
        Some("32+8"),
        "stripes of the values this node writes: DATA datagrams, then PARITY to rebuild them",
    ),
    flag(
        "max-repair",
        "ELAYDAY_MAX_REPAIR",
        "BYTES",
        Some("64M"),
        "memory for the stripes passing now, to rebuild lost datagrams (at least 4M)",
    ),
    flag(
        "max-records",
        "ELAYDAY_MAX_RECORDS",
        "COUNT",
        Some("262144"),
        "recent writes and deletions remembered; past it new ones are refused",
    ),
    flag(
        "bind-metrics",
        "ELAYDAY_BIND_METRICS",
        "ADDR:PORT",
        Some(""),
        "serve Prometheus metrics at http://ADDR:PORT/metrics (off when empty)",
    ),
];

/// Flags of `elayday reflector`.
pub const REFLECTOR_FLAGS: &[Flag] = &[
    flag(
        "bind",
        "ELAYDAY_BIND",
        "ADDR:PORT",
        None,
        "UDP address to reflect on",
    ),
    flag(
        "delay",
        "ELAYDAY_DELAY",
        "SECONDS",
        Some("1"),
        "how long to hold each datagram before sending it back (fractions allowed)",
    ),
    flag(
        "max-buffer",
        "ELAYDAY_MAX_BUFFER",
        "BYTES",
        Some("256M"),
        "memory for held datagrams; what does not fit is dropped and counted",
    ),
    SOCKET_BUFFER,
];

/// Where the client commands look for a node, and where `elayday demo` serves: the seed's
/// gRPC address, or [`DEFAULT_GRPC_IPV4`] on a host without IPv6.
pub const DEFAULT_GRPC: &str = "[::1]:24603";
/// The default gRPC address where IPv6 is off.
pub const DEFAULT_GRPC_IPV4: &str = "127.0.0.1:24603";

/// Flags of the client commands: `elayday put|get|delete|stats`.
pub const CLIENT_FLAGS: &[Flag] = &[
    flag(
        "grpc",
        "ELAYDAY_GRPC",
        "HOST:PORT",
        Some(""),
        "the node's gRPC API [default: [::1]:24603, or 127.0.0.1:24603 without IPv6]",
    ),
    flag(
        "timeout",
        "ELAYDAY_TIMEOUT",
        "SECONDS",
        Some("30"),
        "give up after this long (exit code 3)",
    ),
];

/// Flags of `elayday demo`.
pub const DEMO_FLAGS: &[Flag] = &[
    flag(
        "grpc",
        "ELAYDAY_GRPC",
        "ADDR:PORT",
        Some(""),
        "serve the gRPC API here [default: [::1]:24603, or 127.0.0.1:24603 without IPv6]",
    ),
    flag(
        "delay",
        "ELAYDAY_DELAY",
        "SECONDS",
        Some("1"),
        "how long the reflector holds each datagram (fractions allowed)",
    ),
    flag(
        "bind",
        "ELAYDAY_DEMO_BIND",
        "ADDR:PORT",
        Some(""),
        "the node's UDP address [default: [::1]:24601, or 127.0.0.1:24601 without IPv6]",
    ),
    flag(
        "reflector",
        "ELAYDAY_DEMO_REFLECTOR",
        "ADDR:PORT",
        Some(""),
        "the reflector's UDP address [default: port 24602 next to the node]",
    ),
];
/// Whether this host has IPv6 loopback: without it, [`DEFAULT_GRPC_IPV4`] is the default.
pub fn ipv6_loopback() -> bool {
    UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).is_ok()
}

/// The default gRPC address: [`DEFAULT_GRPC`], or [`DEFAULT_GRPC_IPV4`] without `ipv6`.
pub fn default_grpc(ipv6: bool) -> &'static str {
    if ipv6 {
        DEFAULT_GRPC
    } else {
        DEFAULT_GRPC_IPV4
    }
}

/// The positional arguments a subcommand takes, as shown in its usage line.
pub(super) fn positionals(command: &str) -> &'static [&'static str] {
    match command {
        "put" => &["KEY", "[VALUE]"],
        "get" | "delete" => &["KEY"],
        _ => &[],
    }
}

/// `elayday 0.1.0`, for `--version`.
pub(super) fn version_line() -> String {
    format!("elayday {}\n", env!("CARGO_PKG_VERSION"))
}

/// The help of `elayday` itself: the subcommands.
pub(super) fn main_help() -> String {
    format!(
        "elayday {} — a key-value store that keeps its data in the network\n\n\
         Usage: elayday <COMMAND> [FLAGS]\n\n\
         Commands:\n  \
           server     run a node: forward the loop's datagrams, serve the gRPC API\n  \
           reflector  send every datagram back to its sender after a delay\n  \
           demo       run a node and a reflector in this process, on loopback\n  \
           put        store a value:  elayday put KEY [VALUE]  (stdin without VALUE)\n  \
           get        print a value:  elayday get KEY\n  \
           delete     remove a key:   elayday delete KEY\n  \
           stats      print the figures of a node's loop\n\n\
         Run 'elayday <COMMAND> --help' for the flags of a command.\n\
         Logging: RUST_LOG=debug|info|warn|error (default info).\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Help text of a subcommand, generated from its flag table.
pub fn command_help(command: &str, flags: &[Flag]) -> String {
    let mut args = String::new();
    for arg in positionals(command) {
        args.push(' ');
        args.push_str(arg);
    }
    let mut out = format!("Usage: elayday {command} [FLAGS]{args}\n\n{}Flags (each also read from its environment variable; the flag wins):\n", command_about(command));
    for f in flags {
        let left = format!("--{} {}", f.name, f.value);
        let default = match f.default {
            Some("") => String::new(),
            Some(d) => format!(" [default: {d}]"),
            None => " (required)".to_string(),
        };
        out.push_str(&format!(
            "  {left:<30} {}{default}\n  {:<30} env: {}\n",
            f.help, "", f.env
        ));
    }
    out.push_str("  -h, --help                     print this help\n  -V, --version                  print the version\n");
    if matches!(command, "put" | "get" | "delete" | "stats") {
        out.push_str(CLIENT_EXIT_CODES);
    }
    out
}

fn command_about(command: &str) -> &'static str {
    match command {
        "put" => {
            "Stores VALUE under KEY. Without VALUE, or when it is '-', the value is read from\n\
                  stdin, byte for byte (any binary data). Prints nothing when done.\n\n"
        }
        "get" => "Writes the value of KEY to stdout exactly as stored, nothing added.\n\n",
        "delete" => "Removes KEY from the loop.\n\n",
        "stats" => {
            "Prints the node's figures: loop period, what circulates, datagram counters.\n\n"
        }
        "demo" => {
            "Runs a node and a reflector in this process on loopback, with the gRPC API, and\n\
                   prints commands to try. Runs until Ctrl-C; the values are gone afterwards.\n\n"
        }
        _ => "",
    }
}

const CLIENT_EXIT_CODES: &str = "\nExit codes:\n  \
    0  done\n  \
    1  key not found\n  \
    2  usage error (bad flags or arguments)\n  \
    3  server unavailable: nothing listening, the loop is broken, or no answer within --timeout\n  \
    4  any other failure (e.g. the node refused the key or value); the reason is on stderr\n\
    Progress is shown on stderr when it is a terminal.\n";
