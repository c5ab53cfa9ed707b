//! elayday: a key-value store that keeps its values circulating in the network.
//!
//! Values are cut into UDP datagrams that travel forever around a ring of nodes (or bounce off a
//! reflector), like the mercury delay-line memories of the 1940s. A node stores nothing: it only
//! forwards what passes by, and reassembles a value while a GET is waiting for it.
//!
//! Modules, one concern each:
//! - [`wire`]: the datagram format, a checked view over bytes plus emitters.
//! - [`udp`]: batched datagram I/O (recvmmsg/sendmmsg) and socket setup.
//! - [`ring`]: the node's receive and send threads and their pool of batches.
//! - [`node`]: the processor thread that owns the protocol state.
//! - [`reassembly`]: values being put back together for waiting GETs.
//! - [`clock`]: hybrid logical clock and write versions.
//! - [`pending`]: the table where gRPC calls wait for answers.
//! - [`api`]: what a node serves: the gRPC server with the store (`elayday.Elayday`), health
//!   (`grpc.health.v1.Health`) and reflection services, and the Prometheus endpoint.
//! - [`reflector`]: the delay reflector that closes a loop with a single node.
//! - [`cli`]: flags and environment variables; the client and demo subcommands.
//! - [`daemon`]: the shutdown flag, the role-thread supervisor ([`daemon::spawn_role`]: a dead
//!   thread ends the process), SIGINT/SIGTERM, readiness messages to systemd (`sd_notify`).

pub mod api;
pub mod cli;
pub mod clock;
pub mod daemon;
pub mod node;
pub mod pending;
pub mod reassembly;
pub mod reflector;
pub mod ring;
pub mod udp;
pub mod wire;

/// The shutdown flag's former path, [`daemon::shutdown`], kept so that `crate::shutdown::Shutdown`
/// still names it.
#[doc(hidden)]
pub use daemon::shutdown;

/// Code generated from `proto/` by `build.rs`.
pub mod proto {
    #![allow(clippy::all, missing_docs, unused_qualifications)]
    include!(concat!(env!("OUT_DIR"), "/protos/mod.rs"));

    /// grpcio method descriptors and clients.
    pub mod grpc {
        include!(concat!(env!("OUT_DIR"), "/grpc.rs"));
    }
}
