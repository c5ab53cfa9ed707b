//! config: what the command line asks the client and the demo to do, as the parser builds it.
//!
//! It owns the settings of `elayday put|get|delete|stats` and of `elayday demo`, kept apart from
//! the code that runs them so that the parser needs neither that code nor gRPC. (A node's and a
//! reflector's settings are [`crate::node::NodeConfig`] and
//! [`crate::reflector::ReflectorConfig`], next to what they configure.) It must not hold
//! defaults that depend on the host: those are picked when the command runs.

use std::net::SocketAddr;
use std::time::Duration;

/// What the command line asks the client to do.
#[derive(Debug)]
pub struct ClientConfig {
    /// The node's gRPC address, `host:port`; `None` for the default
    /// ([`default_grpc`](super::default_grpc)).
    pub target: Option<String>,
    /// Deadline of the call.
    pub timeout: Duration,
    pub request: ClientRequest,
}

/// One client command.
#[derive(Debug)]
pub enum ClientRequest {
    Put { key: String, value: ValueSource },
    Get { key: String },
    Delete { key: String },
    Stats,
}

/// Where a PUT's value comes from.
#[derive(Debug)]
pub enum ValueSource {
    /// The command-line argument's bytes.
    Argument(Vec<u8>),
    /// stdin, to its end.
    Stdin,
}

/// What `elayday demo` is started with; `None` picks the default address.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    pub grpc: Option<SocketAddr>,
    pub bind: Option<SocketAddr>,
    pub reflector: Option<SocketAddr>,
    pub delay: Duration,
}
