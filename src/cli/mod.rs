//! cli: the command line: flags and environment variables parsed into typed configurations,
//! and the client and demo subcommands.
//!
//! - `flags.rs`: the table of every flag, its environment variable and its default; help text.
//! - `values.rs`: one flag's text to a typed value, or a [`UsageError`].
//! - `config.rs`: the client's and the demo's settings ([`ClientConfig`], [`DemoConfig`]).
//! - this file: [`parse`], a whole command line to an [`Invocation`].
//! - `client.rs`: `elayday put|get|delete|stats`, run from a [`ClientConfig`] (gRPC).
//! - `demo.rs`: `elayday demo`, run from a [`DemoConfig`] (gRPC).
//!
//! Each file depends only on the ones listed before it: the parser builds configurations
//! without the code that runs them, and that code does not parse. `main.rs` dispatches. A flag
//! on the command line wins over its environment variable. [`parse`] must not start anything:
//! it only turns strings into settings, or into one clear error line (exit code 2); it needs no
//! gRPC (the client and the demo are behind the `grpc` feature, the parser is not).

#[cfg(feature = "grpc")]
pub mod client;
mod config;
#[cfg(feature = "grpc")]
pub mod demo;
mod flags;
mod values;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use crate::node::{Fec, Limits, NodeConfig, IP_UDP_OVERHEAD};
use crate::reflector::ReflectorConfig;
use crate::udp::SocketOptions;
use crate::wire;

pub use config::{ClientConfig, ClientRequest, DemoConfig, ValueSource};
pub use flags::{
    command_help, default_grpc, ipv6_loopback, Flag, CLIENT_FLAGS, DEFAULT_GRPC, DEFAULT_GRPC_IPV4,
    DEMO_FLAGS, REFLECTOR_FLAGS, SERVER_FLAGS,
};
pub use values::{bytes, grpc_target, resolve, seconds, socket_addr, system_lookup, UsageError};

use flags::{main_help, positionals, version_line};
use values::{key_text, usage};

/// What the command line asks for.
#[derive(Debug)]
pub enum Invocation {
    /// Run a node.
    Server {
        node: NodeConfig,
        grpc: Option<SocketAddr>,
        metrics: Option<SocketAddr>,
    },
    /// Run a reflector.
    Reflector(ReflectorConfig),
    /// Ask a node something over gRPC.
    Client(ClientConfig),
    /// Run a node and a reflector in one process.
    Demo(DemoConfig),
    /// Print this text to stdout and exit 0.
    Print(String),
}

/// Parses `elayday ARGS...` (without the program name), reading environment variables through
/// `env` so tests can supply their own. Host names are looked up with the system's resolver.
pub fn parse(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Invocation, UsageError> {
    parse_with(args, env, system_lookup)
}

/// [`parse`], looking host names up with `lookup` (host, port) instead of the system's
/// resolver: the fuzzer's never reaches the network.
pub fn parse_with(
    args: impl IntoIterator<Item = OsString>,
    env: impl Fn(&str) -> Option<String>,
    lookup: impl Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
) -> Result<Invocation, UsageError> {
    let mut parser = lexopt::Parser::from_args(args);
    let command = match parser.next().map_err(|e| usage(e.to_string()))? {
        Some(lexopt::Arg::Value(v)) => v
            .into_string()
            .map_err(|_| usage("the subcommand is not valid UTF-8"))?,
        Some(lexopt::Arg::Long("help")) | Some(lexopt::Arg::Short('h')) | None => {
            return Ok(Invocation::Print(main_help()))
        }
        Some(lexopt::Arg::Long("version")) | Some(lexopt::Arg::Short('V')) => {
            return Ok(Invocation::Print(version_line()))
        }
        Some(other) => {
            return Err(usage(format!(
                "unexpected {}; expected a subcommand (see elayday --help)",
                describe(&other)
            )))
        }
    };
    let flags = match command.as_str() {
        "server" => SERVER_FLAGS,
        "reflector" => REFLECTOR_FLAGS,
        "put" | "get" | "delete" | "stats" => CLIENT_FLAGS,
        "demo" => DEMO_FLAGS,
        "help" => return Ok(Invocation::Print(main_help())),
        other => {
            return Err(usage(format!(
                "unknown subcommand '{other}' (expected server, reflector, demo, put, get, delete or stats; see elayday --help)"
            )))
        }
    };
    let values = match collect(&mut parser, &command, flags, &env)? {
        Collected::Values(values) => values,
        Collected::Help => return Ok(Invocation::Print(command_help(&command, flags))),
        Collected::Version => return Ok(Invocation::Print(version_line())),
    };
    match command.as_str() {
        "server" => server(&values, &lookup),
        "put" | "get" | "delete" | "stats" => client(&command, &values),
        "demo" => demo(&values),
        _ => reflector(&values),
    }
}

enum Collected {
    Values(Values),
    Help,
    Version,
}

/// The raw value of each flag and where it came from (for error messages), and the positional
/// arguments in order.
pub struct Values {
    entries: Vec<(&'static Flag, Option<(String, String)>)>,
    positional: Vec<OsString>,
}

impl Values {
    fn get(&self, name: &str) -> Option<(&str, &str)> {
        let (_, value) = self.entries.iter().find(|(f, _)| f.name == name)?;
        value
            .as_ref()
            .map(|(v, source)| (v.as_str(), source.as_str()))
    }

    fn required(&self, name: &str) -> Result<(&str, &str), UsageError> {
        self.get(name).ok_or_else(|| {
            let flag = self
                .entries
                .iter()
                .find(|(f, _)| f.name == name)
                .expect("known flag")
                .0;
            usage(format!("--{name} is required (or set {})", flag.env))
        })
    }
}

fn collect(
    parser: &mut lexopt::Parser,
    command: &str,
    flags: &'static [Flag],
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Collected, UsageError> {
    let mut given: Vec<Option<String>> = vec![None; flags.len()];
    let mut positional = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| usage(e.to_string()))? {
        match arg {
            lexopt::Arg::Long("help") | lexopt::Arg::Short('h') => return Ok(Collected::Help),
            lexopt::Arg::Long("version") | lexopt::Arg::Short('V') => {
                return Ok(Collected::Version)
            }
            lexopt::Arg::Long(name) => {
                let name = name.to_owned();
                let Some(index) = flags.iter().position(|f| f.name == name) else {
                    return Err(usage(format!(
                        "unknown flag --{name} for 'elayday {command}' (see elayday {command} --help)"
                    )));
                };
                let value = parser.value().map_err(|_| {
                    usage(format!("--{name} needs a value ({})", flags[index].value))
                })?;
                let value = value
                    .into_string()
                    .map_err(|_| usage(format!("--{name}: the value is not valid UTF-8")))?;
                given[index] = Some(value);
            }
            lexopt::Arg::Value(value) if positional.len() < positionals(command).len() => {
                positional.push(value);
            }
            other => {
                return Err(usage(format!(
                    "unexpected {} for 'elayday {command}' (see elayday {command} --help)",
                    describe(&other)
                )))
            }
        }
    }
    let entries = flags
        .iter()
        .zip(given)
        .map(|(flag, given)| {
            let value = match given {
                Some(v) => Some((v, format!("--{}", flag.name))),
                None => match env(flag.env) {
                    Some(v) => Some((v, flag.env.to_string())),
                    None => flag
                        .default
                        .map(|d| (d.to_string(), format!("--{}", flag.name))),
                },
            };
            (flag, value)
        })
        .collect();
    Ok(Collected::Values(Values {
        entries,
        positional,
    }))
}

fn describe(arg: &lexopt::Arg) -> String {
    match arg {
        lexopt::Arg::Short(c) => format!("flag -{c}"),
        lexopt::Arg::Long(l) => format!("flag --{l}"),
        lexopt::Arg::Value(v) => format!("argument '{}'", v.to_string_lossy()),
    }
}

fn server(
    values: &Values,
    lookup: &impl Fn(&str, u16) -> std::io::Result<Vec<SocketAddr>>,
) -> Result<Invocation, UsageError> {
    let (bind, source) = values.required("bind")?;
    let bind = socket_addr(bind, source)?;
    let (destination, source) = values.required("destination")?;
    let destination = resolve(destination, source, bind, lookup)?;
    let same_ip = destination.ip() == bind.ip()
        || (bind.ip().is_unspecified() && destination.ip().is_loopback());
    if same_ip && destination.port() == bind.port() {
        return Err(usage(format!(
            "{source}: {destination} is this node's own --bind address; the loop needs another \
             node or a reflector"
        )));
    }
    let grpc = match values.get("bind-grpc") {
        Some(("", _)) | None => None,
        Some((addr, source)) => Some(socket_addr(addr, source)?),
    };
    let (mtu, source) = values.required("mtu")?;
    let mtu = bytes(mtu, source)?;
    if !(1280..=9216).contains(&mtu) {
        return Err(usage(format!(
            "{source}: {mtu} is out of range (1280 to 9216 bytes: the IPv6 minimum to jumbo frames)"
        )));
    }
    let (max_value, source) = values.required("max-value-size")?;
    let max_value_size = bytes(max_value, source)?;
    let grpc_limit = (i32::MAX as u64) - (1 << 20);
    if max_value_size > grpc_limit {
        return Err(usage(format!(
            "{source}: {max_value_size} is more than gRPC can carry in one message ({grpc_limit} bytes)"
        )));
    }
    let (socket_buffer, source) = values.required("socket-buffer")?;
    let socket_buffer = bytes(socket_buffer, source)? as usize;
    let (timeout, source) = values.required("loop-timeout")?;
    let loop_timeout = seconds(timeout, source)?;
    if loop_timeout < Duration::from_millis(10) {
        return Err(usage(format!("{source}: must be at least 0.01 seconds")));
    }
    let limits = limits(values, max_value_size)?;
    let fec = fec(values)?;
    let metrics = match values.get("bind-metrics") {
        Some(("", _)) | None => None,
        Some((addr, source)) => Some(socket_addr(addr, source)?),
    };
    let node = NodeConfig {
        bind,
        destination,
        mtu: mtu as usize,
        socket_buffer,
        loop_timeout,
        limits,
        fec,
    };
    debug_assert!(node.mtu > IP_UDP_OVERHEAD);
    Ok(Invocation::Server {
        node,
        grpc,
        metrics,
    })
}

/// The memory limits of `elayday server`.
fn limits(values: &Values, max_value_size: u64) -> Result<Limits, UsageError> {
    let count = |name: &str| -> Result<usize, UsageError> {
        let (text, source) = values.required(name)?;
        match text.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(usage(format!(
                "{source}: '{text}' is not a positive whole number"
            ))),
        }
    };
    let at_least = |name: &str, least: u64, why: &str| -> Result<u64, UsageError> {
        let (text, source) = values.required(name)?;
        let n = bytes(text, source)?;
        if n < least {
            return Err(usage(format!("{source}: {n} is less than {least}, {why}")));
        }
        Ok(n)
    };
    Ok(Limits {
        max_value_size,
        max_requests: count("max-requests")?,
        max_write_backlog: at_least(
            "max-write-backlog",
            max_value_size,
            "--max-value-size: the largest value could never be written",
        )?,
        max_reassembly: at_least(
            "max-reassembly",
            Limits::min_reassembly(max_value_size),
            "--max-value-size and 50 % for parity and bookkeeping: the largest value could never \
             be read",
        )?,
        max_records: count("max-records")?,
        max_repair: at_least(
            "max-repair",
            MIN_REPAIR,
            "too little to hold the largest stripe",
        )?,
    })
}

/// The least `--max-repair`: one stripe of the largest shape at the largest MTU, with room.
const MIN_REPAIR: u64 = 4 << 20;

/// `--fec DATA+PARITY`.
fn fec(values: &Values) -> Result<Fec, UsageError> {
    let (text, source) = values.required("fec")?;
    let bad = || {
        usage(format!(
            "{source}: '{text}' is not DATA+PARITY (1 to {} data and 0 to {} parity datagrams \
             per stripe, e.g. 32+8)",
            wire::MAX_STRIPE_DATA,
            wire::MAX_STRIPE_PARITY
        ))
    };
    let (data, parity) = text.trim().split_once('+').ok_or_else(bad)?;
    let data: u16 = data.trim().parse().map_err(|_| bad())?;
    let parity: u16 = parity.trim().parse().map_err(|_| bad())?;
    if !(1..=wire::MAX_STRIPE_DATA).contains(&data) || parity > wire::MAX_STRIPE_PARITY {
        return Err(bad());
    }
    Ok(Fec { data, parity })
}

fn reflector(values: &Values) -> Result<Invocation, UsageError> {
    let (bind, source) = values.required("bind")?;
    let bind = socket_addr(bind, source)?;
    let (delay, source) = values.required("delay")?;
    let delay = seconds(delay, source)?;
    let (max_buffer, source) = values.required("max-buffer")?;
    let max_buffer = bytes(max_buffer, source)?;
    if max_buffer < 64 * 1024 {
        return Err(usage(format!("{source}: must be at least 64K")));
    }
    let (socket_buffer, source) = values.required("socket-buffer")?;
    let socket_buffer = bytes(socket_buffer, source)? as usize;
    Ok(Invocation::Reflector(ReflectorConfig {
        bind,
        delay,
        max_buffer: max_buffer as usize,
        socket: SocketOptions {
            recv_buffer: socket_buffer,
            send_buffer: socket_buffer,
        },
    }))
}

fn client(command: &str, values: &Values) -> Result<Invocation, UsageError> {
    let target = match values.get("grpc") {
        Some(("", _)) | None => None,
        Some((target, source)) => Some(grpc_target(target, source)?),
    };
    let (timeout, source) = values.required("timeout")?;
    let timeout = seconds(timeout, source)?;
    if timeout < Duration::from_millis(10) {
        return Err(usage(format!("{source}: must be at least 0.01 seconds")));
    }
    let mut args = values.positional.iter();
    let key = match args.next() {
        None if command == "stats" => None,
        None => {
            return Err(usage(format!(
                "'elayday {command}' needs a KEY (see elayday {command} --help)"
            )))
        }
        Some(key) => Some(key_text(key)?),
    };
    let request = match (command, key) {
        ("put", Some(key)) => {
            let value = match args.next() {
                None => ValueSource::Stdin,
                Some(v) if v == "-" => ValueSource::Stdin,
                Some(v) => ValueSource::Argument(v.as_bytes().to_vec()),
            };
            ClientRequest::Put { key, value }
        }
        ("get", Some(key)) => ClientRequest::Get { key },
        ("delete", Some(key)) => ClientRequest::Delete { key },
        _ => ClientRequest::Stats,
    };
    Ok(Invocation::Client(ClientConfig {
        target,
        timeout,
        request,
    }))
}

fn demo(values: &Values) -> Result<Invocation, UsageError> {
    let optional = |name: &str| match values.get(name) {
        Some(("", _)) | None => Ok(None),
        Some((addr, source)) => socket_addr(addr, source).map(Some),
    };
    let grpc = optional("grpc")?;
    let bind = optional("bind")?;
    let reflector = optional("reflector")?;
    if let (Some(b), Some(r)) = (bind, reflector) {
        if b.is_ipv4() != r.is_ipv4() {
            return Err(usage(format!(
                "--bind {b} and --reflector {r} must be of the same address family"
            )));
        }
    }
    let (delay, source) = values.required("delay")?;
    let delay = seconds(delay, source)?;
    Ok(Invocation::Demo(DemoConfig {
        grpc,
        bind,
        reflector,
        delay,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation, UsageError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(args.iter().map(OsString::from), move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn seed_server_command_line() {
        let Ok(Invocation::Server { node, grpc, .. }) = run(
            &[
                "server",
                "--bind",
                "[::1]:24601",
                "--destination",
                "[::1]:24602",
                "--bind-grpc",
                "[::1]:24603",
            ],
            &[],
        ) else {
            panic!("parses")
        };
        assert_eq!(node.bind, "[::1]:24601".parse().unwrap());
        assert_eq!(node.destination, "[::1]:24602".parse().unwrap());
        assert_eq!(grpc, Some("[::1]:24603".parse().unwrap()));
        assert_eq!(node.mtu, 1280);
        assert_eq!(node.limits, crate::node::Limits::defaults(256 << 20));
    }

    #[test]
    fn limits_are_checked() {
        let base = ["server", "--bind", "[::1]:1", "--destination", "[::1]:2"];
        let with = |extra: &[&str]| {
            let mut args = base.to_vec();
            args.extend_from_slice(extra);
            run(&args, &[])
        };
        let Ok(Invocation::Server { node, .. }) = with(&[
            "--max-requests",
            "5",
            "--max-records",
            "7",
            "--max-reassembly",
            "1G",
            "--max-write-backlog",
            "300M",
        ]) else {
            panic!("parses")
        };
        assert_eq!(node.limits.max_requests, 5);
        assert_eq!(node.limits.max_records, 7);
        assert_eq!(node.limits.max_reassembly, 1 << 30);
        assert_eq!(node.limits.max_write_backlog, 300 << 20);
        for bad in [
            &["--max-requests", "0"][..],
            &["--max-records", "-1"],
            &["--max-reassembly", "1M"],
            &["--max-write-backlog", "lots"],
        ] {
            let Err(e) = with(bad) else {
                panic!("{bad:?} accepted")
            };
            assert!(e.to_string().contains(bad[0]), "{bad:?}: {e}");
        }
    }

    #[test]
    fn environment_fills_in_and_flags_win() {
        let env = [
            ("ELAYDAY_BIND", "127.0.0.1:1"),
            ("ELAYDAY_DESTINATION", "127.0.0.1:2"),
            ("ELAYDAY_MTU", "1500"),
        ];
        let Ok(Invocation::Server { node, grpc, .. }) = run(&["server", "--mtu", "9000"], &env)
        else {
            panic!("parses")
        };
        assert_eq!(node.bind.port(), 1);
        assert_eq!(node.mtu, 9000);
        assert_eq!(grpc, None);
    }

    #[test]
    fn seed_reflector_command_line() {
        let Ok(Invocation::Reflector(r)) = run(
            &["reflector", "--bind", "[::1]:24602", "--delay", "0.5"],
            &[],
        ) else {
            panic!("parses")
        };
        assert_eq!(r.delay, Duration::from_millis(500));
        assert_eq!(r.max_buffer, 256 << 20);
    }

    #[test]
    fn bad_input_gives_one_clear_line() {
        let cases: &[(&[&str], &str)] = &[
            (&["frobnicate"], "unknown subcommand 'frobnicate'"),
            (
                &["server", "--destination", "[::1]:2"],
                "--bind is required (or set ELAYDAY_BIND)",
            ),
            (
                &["server", "--bind", "nonsense", "--destination", "[::1]:2"],
                "--bind: 'nonsense' is not an address",
            ),
            (
                &["server", "--bind", "[::1]:1", "--destination", "[::1]"],
                "needs a port",
            ),
            (
                &[
                    "server",
                    "--bind",
                    "[::1]:1",
                    "--destination",
                    "127.0.0.1:2",
                ],
                "has no IPv6 address",
            ),
            (
                &[
                    "server",
                    "--bind",
                    "[::1]:1",
                    "--destination",
                    "[::1]:2",
                    "--mtu",
                    "100",
                ],
                "out of range",
            ),
            (
                &[
                    "server",
                    "--bind",
                    "[::1]:1",
                    "--destination",
                    "[::1]:2",
                    "--mtu",
                    "lots",
                ],
                "not a size",
            ),
            (
                &[
                    "server",
                    "--bind",
                    "[::1]:1",
                    "--destination",
                    "[::1]:2",
                    "--nope",
                    "1",
                ],
                "unknown flag --nope",
            ),
            (&["server", "--bind"], "--bind needs a value"),
            (&["server", "stray"], "unexpected argument 'stray'"),
            (
                &["server", "--bind", "[::1]:7", "--destination", "[::1]:7"],
                "own --bind address",
            ),
            (
                &[
                    "server",
                    "--bind",
                    "0.0.0.0:7",
                    "--destination",
                    "127.0.0.1:7",
                ],
                "own --bind address",
            ),
            (
                &["reflector", "--bind", "[::1]:1", "--delay", "-1"],
                "out of range",
            ),
            (
                &["reflector", "--bind", "[::1]:1", "--delay", "soon"],
                "not a number of seconds",
            ),
            (
                &["reflector", "--bind", "[::1]:1", "--max-buffer", "1K"],
                "at least 64K",
            ),
        ];
        for (args, expected) in cases {
            let error = run(args, &[]).expect_err(&format!("{args:?} must fail"));
            assert!(
                error.0.contains(expected),
                "{args:?}: got '{error}', want '{expected}'"
            );
            assert!(!error.0.contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn environment_errors_name_the_variable() {
        let error = run(
            &["reflector", "--bind", "[::1]:1"],
            &[("ELAYDAY_DELAY", "x")],
        )
        .unwrap_err();
        assert!(error.0.starts_with("ELAYDAY_DELAY:"), "{error}");
    }

    #[test]
    fn help_and_version() {
        for args in [
            &["--help"][..],
            &["server", "--help"],
            &["reflector", "-h"],
            &["--version"],
            &[],
        ] {
            assert!(
                matches!(run(args, &[]), Ok(Invocation::Print(_))),
                "{args:?}"
            );
        }
    }

    #[test]
    fn client_commands() {
        let client = |args: &[&str], env: &[(&str, &str)]| match run(args, env) {
            Ok(Invocation::Client(config)) => config,
            other => panic!("{args:?}: {other:?}"),
        };
        let c = client(&["put", "k", "v"], &[]);
        assert_eq!(c.target, None, "the default, picked when connecting");
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(
            matches!(&c.request, ClientRequest::Put { key, value: ValueSource::Argument(v) } if key == "k" && v == b"v")
        );
        for args in [&["put", "k"][..], &["put", "k", "-"]] {
            assert!(matches!(
                client(args, &[]).request,
                ClientRequest::Put {
                    value: ValueSource::Stdin,
                    ..
                }
            ));
        }
        let c = client(
            &["get", "--timeout", "2.5", "k"],
            &[("ELAYDAY_GRPC", "node1.example:24603")],
        );
        assert_eq!(c.target.as_deref(), Some("node1.example:24603"));
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert!(matches!(c.request, ClientRequest::Get { key } if key == "k"));
        let c = client(&["delete", "k", "--grpc", "[::1]:1"], &[]);
        assert_eq!(c.target.as_deref(), Some("[::1]:1"));
        assert!(matches!(c.request, ClientRequest::Delete { .. }));
        assert!(matches!(
            client(&["stats"], &[]).request,
            ClientRequest::Stats
        ));
        for (args, expected) in [
            (&["get", "--timeout", "0", "k"][..], "at least 0.01 seconds"),
            (&["get", "--grpc", "[::1]", "k"], "not a host with a port"),
            (
                &["get", "--grpc", "host:port", "k"],
                "not a host with a port",
            ),
        ] {
            let error = run(args, &[]).unwrap_err();
            assert!(error.0.contains(expected), "{args:?}: {error}");
        }
        for args in [&["put", "--help"][..], &["stats", "-h"]] {
            let Ok(Invocation::Print(text)) = run(args, &[]) else {
                panic!("{args:?}")
            };
            assert!(text.contains("Exit codes:"), "{text}");
        }
    }

    #[test]
    fn demo_and_metrics_flags() {
        let Ok(Invocation::Demo(d)) = run(&["demo"], &[]) else {
            panic!("parses")
        };
        assert!(d.grpc.is_none() && d.bind.is_none() && d.reflector.is_none());
        assert_eq!(d.delay, Duration::from_secs(1));
        let Ok(Invocation::Demo(d)) = run(
            &["demo", "--grpc", "127.0.0.1:5", "--delay", "0.5"],
            &[("ELAYDAY_DEMO_BIND", "127.0.0.1:6")],
        ) else {
            panic!("parses")
        };
        assert_eq!(d.grpc, Some("127.0.0.1:5".parse().unwrap()));
        assert_eq!(d.bind, Some("127.0.0.1:6".parse().unwrap()));
        assert_eq!(d.delay, Duration::from_millis(500));
        let error = run(
            &["demo", "--bind", "127.0.0.1:1", "--reflector", "[::1]:2"],
            &[],
        )
        .unwrap_err();
        assert!(error.0.contains("same address family"), "{error}");

        let server = ["server", "--bind", "[::1]:1", "--destination", "[::1]:2"];
        let Ok(Invocation::Server { metrics, .. }) = run(&server, &[]) else {
            panic!("parses")
        };
        assert_eq!(metrics, None, "off unless given");
        let Ok(Invocation::Server { metrics, .. }) =
            run(&server, &[("ELAYDAY_BIND_METRICS", "127.0.0.1:9100")])
        else {
            panic!("parses")
        };
        assert_eq!(metrics, Some("127.0.0.1:9100".parse().unwrap()));
        let mut args = server.to_vec();
        args.extend(["--bind-metrics", "9100"]);
        assert!(run(&args, &[]).unwrap_err().0.contains("--bind-metrics"));
    }
}
