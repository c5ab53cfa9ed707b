//! server: the grpcio server that carries the three gRPC services.
//!
//! It owns one grpcio environment, the message size limits (from `--max-value-size`), the
//! services registered side by side and the listening port. It must not answer calls itself.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use grpcio::{ChannelBuilder, Environment, Server, ServerBuilder, ServerCredentials};

use super::{health, reflection, store};
use crate::node::NodeHandle;

/// Bytes a request may carry beyond the value itself (key, protobuf framing).
const MESSAGE_OVERHEAD: u64 = 64 * 1024;

/// The running gRPC server.
pub struct Api {
    server: Server,
    /// The address the server listens on (the port resolved if 0 was asked for).
    pub local_addr: SocketAddr,
}

impl Api {
    /// Starts the gRPC server on `addr` in front of `node`.
    pub fn start(addr: SocketAddr, node: NodeHandle) -> io::Result<Api> {
        // grpc-core reports a failed bind only as a log line; binding once ourselves first
        // turns "port in use" into a proper error that names the address.
        std::net::TcpListener::bind(addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot bind gRPC {addr}: {e}")))?;
        let env = Arc::new(Environment::new(2));
        let limit = (node.max_value_size + MESSAGE_OVERHEAD).min(i32::MAX as u64) as i32;
        let args = ChannelBuilder::new(env.clone())
            .max_receive_message_len(limit)
            .max_send_message_len(limit)
            .reuse_port(false)
            .build_args();
        let health = health::service(node.loop_status.clone());
        let service = store::service(node);
        let mut server = ServerBuilder::new(env)
            .channel_args(args)
            .register_service(service)
            .register_service(health)
            .register_service(reflection::service())
            .build()
            .map_err(|e| io::Error::other(format!("cannot start gRPC server: {e}")))?;
        let port = server
            .add_listening_port(addr.to_string(), ServerCredentials::insecure())
            .map_err(|e| io::Error::other(format!("cannot bind gRPC {addr}: {e}")))?;
        server.start();
        let local_addr = SocketAddr::new(addr.ip(), port);
        log::info!("gRPC API listening on {local_addr}");
        Ok(Api { server, local_addr })
    }

    /// Stops taking calls and cancels those in flight.
    pub fn stop(mut self) {
        self.server.cancel_all_calls();
        drop(self.server);
    }
}
