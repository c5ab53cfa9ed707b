//! The `elayday` binary: parses the command line and runs a node, a reflector or the demo until
//! SIGINT or SIGTERM, or one client command. Everything else lives in the library; this file
//! only wires the parts together and turns the outcome into an exit status.

use std::process::ExitCode;
use std::time::Duration;

use elayday::api::metrics::MetricsListener;
use elayday::api::Api;
use elayday::cli::{self, Invocation};
use elayday::daemon::{notify, roles, signals, Shutdown};
use elayday::node::{Node, NodeConfig};
use elayday::reflector::{Reflector, ReflectorConfig};

fn main() -> ExitCode {
    let invocation = match cli::parse(std::env::args_os().skip(1), |name| std::env::var(name).ok())
    {
        Ok(invocation) => invocation,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Invocation::Print(text) = invocation {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    if let Invocation::Client(config) = invocation {
        return ExitCode::from(cli::client::run(config));
    }
    roles::install_panic_hook();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let shutdown = match signals::on_signals() {
        Ok(shutdown) => shutdown,
        Err(e) => {
            eprintln!("error: cannot set up signal handling: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match invocation {
        Invocation::Server {
            node,
            grpc,
            metrics,
        } => run_server(node, grpc, metrics, &shutdown),
        Invocation::Reflector(config) => run_reflector(config, &shutdown),
        Invocation::Demo(config) => cli::demo::run(config, &shutdown),
        Invocation::Print(_) | Invocation::Client(_) => unreachable!("handled above"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Sleeps until a stop is requested (by a signal, or by a role that failed).
fn wait_for_shutdown(shutdown: &Shutdown) {
    while !shutdown.wait_timeout(Duration::from_secs(3600)) {}
}

fn run_server(
    config: NodeConfig,
    grpc: Option<std::net::SocketAddr>,
    metrics: Option<std::net::SocketAddr>,
    shutdown: &Shutdown,
) -> std::io::Result<()> {
    let destination = config.destination;
    let metrics = metrics.map(MetricsListener::bind).transpose()?;
    let node = Node::start(config, shutdown)?;
    let api = match grpc {
        Some(addr) => match Api::start(addr, node.handle()) {
            Ok(api) => Some(api),
            Err(e) => {
                shutdown.request();
                node.join();
                return Err(e);
            }
        },
        None => None,
    };
    let metrics = match metrics
        .map(|m| m.serve(node.handle(), shutdown))
        .transpose()
    {
        Ok(metrics) => metrics,
        Err(e) => {
            shutdown.request();
            if let Some(api) = api {
                api.stop();
            }
            node.join();
            return Err(e);
        }
    };
    let grpc_text = api
        .as_ref()
        .map_or("off".into(), |api| api.local_addr.to_string());
    notify::ready(&format!(
        "node on {}, next hop {destination}, gRPC {grpc_text}",
        node.local_addr()
    ));
    wait_for_shutdown(shutdown);
    notify::stopping("shutting down");
    if let Some(api) = api {
        api.stop();
    }
    if let Some(metrics) = metrics {
        metrics.join();
    }
    let lost = node.join();
    log::info!(
        "stopped; {} bytes in {} datagrams ({} values) were circulating and are lost",
        lost.circulating_bytes,
        lost.circulating_datagrams,
        lost.circulating_values
    );
    Ok(())
}

fn run_reflector(config: ReflectorConfig, shutdown: &Shutdown) -> std::io::Result<()> {
    let reflector = Reflector::bind(config)?;
    notify::ready(&format!("reflector on {}", reflector.local_addr()));
    let running = reflector.spawn(shutdown)?;
    wait_for_shutdown(shutdown);
    notify::stopping("shutting down");
    // A panic never reaches here: the role supervisor ends the process first.
    let stats = running
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the reflector thread panicked")))?;
    log::info!(
        "stopped; {} bytes in {} datagrams were held and are lost",
        stats.held_bytes,
        stats.held_datagrams
    );
    Ok(())
}
