//! elayday: a key-value store that keeps its values circulating in the network.
//!
//! Values are cut into UDP datagrams that travel forever around a ring of nodes (or bounce off a
//! reflector), like the mercury delay-line memories of the 1940s. A node stores nothing: it only
//! forwards what passes by, and reassembles a value while a GET is waiting for it.
//!
//! Modules, one concern each (a folder for each part made of several files; every file opens
//! with what it owns and what it must not do):
//! - [`wire`]: the datagram format, a checked view over bytes plus emitters.
//! - [`coding`]: the Reed-Solomon erasure code over a stripe's fragments (parity, rebuild).
//! - [`daemon`]: the shutdown flag, the role-thread supervisor ([`daemon::spawn_role`]: a dead
//!   thread ends the process), SIGINT/SIGTERM, readiness messages to systemd.
//! - [`udp`]: batched datagram I/O (recvmmsg/sendmmsg, GRO/GSO) and socket setup.
//! - [`node`]: a node: its sans-IO protocol core ([`node::core`]: forwarding decisions, writes
//!   and their confirmation, reassembly, probes, records, versions), the threads that drive it
//!   (`udp-recv`, `processor`, `udp-send`) and the pending table where gRPC calls wait.
//! - [`reflector`]: the delay reflector that closes a loop with a single node.
//! - [`api`]: the gRPC server (the store, health and reflection services) and the Prometheus
//!   endpoint.
//! - [`cli`]: flags and environment variables; the client and demo subcommands.
//!
//! The `grpc` feature (on by default) brings in grpcio and everything that needs it: the gRPC
//! services and server, the client, the demo, and the generated stubs in `proto::grpc`. Without
//! it the library still has the node, the reflector, the metrics endpoint and the flag parser
//! (for fuzzing without the gRPC C-core).

pub mod api;
pub mod cli;
pub mod coding;
pub mod daemon;
pub mod node;
pub mod reflector;
pub mod udp;
pub mod wire;

/// Code generated from `proto/` by `build.rs`.
pub mod proto {
    #![allow(clippy::all, missing_docs, unused_qualifications)]
    include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));

    /// grpcio method descriptors and clients.
    #[cfg(feature = "grpc")]
    pub mod grpc {
        include!(concat!(env!("OUT_DIR"), "/grpc.rs"));
    }
}
