//! node: a running elayday node: its protocol core and the threads that drive it.
//!
//! It owns the node's assembly: [`core`] decides everything and does no I/O; [`ring`] runs the
//! `udp-recv` and `udp-send` threads over a fixed pool of batches; [`driver`] runs the
//! `processor` thread that feeds the core what arrives (datagrams, requests, time) and carries
//! out what it says (forward, send new frames, answer); [`pending`] is the table where gRPC
//! calls wait for answers. It must not serve gRPC or parse flags (that is [`crate::api`] and
//! [`crate::cli`]).

pub mod core;
mod driver;
pub mod pending;
pub mod ring;
mod status;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use self::core::CoreConfig;
pub use self::core::{
    Answer, Command, DropReason, Failure, FailureKind, Fec, Limits, RequestId, Stats,
};
use self::driver::Driver;
use self::pending::Pending;
use self::ring::Ring;
pub use self::status::{LoopStatus, Summary};
use crate::daemon::roles;
use crate::daemon::shutdown::Shutdown;
use crate::udp::SocketOptions;
use crate::wire;

/// IPv6 (40) plus UDP (8) header bytes: a datagram carries at most `mtu - 48` bytes.
pub const IP_UDP_OVERHEAD: usize = 48;

/// What a node is started with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Local UDP address.
    pub bind: SocketAddr,
    /// Next hop: another node or a reflector.
    pub destination: SocketAddr,
    /// Largest IP packet to send; datagrams are at most `mtu - 48` bytes.
    pub mtu: usize,
    /// Requested kernel socket buffer size, each direction.
    pub socket_buffer: usize,
    /// Shortest silence of the loop (no probe back) that counts as broken.
    pub loop_timeout: Duration,
    /// What the node may hold in memory.
    pub limits: Limits,
    /// Stripe shape of the values this node writes.
    pub fec: Fec,
}

impl NodeConfig {
    /// Largest datagram this node sends or accepts.
    pub fn max_datagram(&self) -> usize {
        self.mtu - IP_UDP_OVERHEAD
    }
}

/// What the API needs to talk to a running node.
#[derive(Clone)]
pub struct NodeHandle {
    /// Requests to the processor.
    pub commands: Sender<Command>,
    /// Where answers wait for their callers.
    pub pending: Arc<Pending>,
    /// Largest value accepted.
    pub max_value_size: u64,
    /// Longest key accepted at this MTU.
    pub max_key_len: usize,
    /// Whether the loop is closed.
    pub loop_status: Arc<LoopStatus>,
}

/// A running node: I/O threads and processor.
pub struct Node {
    handle: NodeHandle,
    ring: Ring,
    processor: JoinHandle<Summary>,
}

impl Node {
    /// Binds the socket and starts the I/O threads and the processor.
    pub fn start(config: NodeConfig, shutdown: &Shutdown) -> io::Result<Node> {
        let options = SocketOptions {
            recv_buffer: config.socket_buffer,
            send_buffer: config.socket_buffer,
        };
        let (ring, ports) = Ring::start(
            config.bind,
            config.destination,
            config.max_datagram(),
            &options,
            shutdown,
        )?;
        let id = random_node_id();
        log::info!(
            "node {id:016x} listening on UDP {}, forwarding to {}, datagrams up to {} bytes",
            ring.local_addr,
            config.destination,
            config.max_datagram()
        );
        let pending = Arc::new(Pending::new(config.limits.max_requests));
        let (commands_tx, commands_rx) = crossbeam_channel::unbounded();
        let max_key_len = wire::MAX_KEY_LEN.min(
            config
                .max_datagram()
                .saturating_sub(wire::DATA_HEADER_LEN + 1),
        );
        let loop_status = Arc::new(LoopStatus::default());
        let handle = NodeHandle {
            commands: commands_tx,
            pending: pending.clone(),
            max_value_size: config.limits.max_value_size,
            max_key_len,
            loop_status: loop_status.clone(),
        };
        let core_config = CoreConfig {
            id,
            max_datagram: config.max_datagram(),
            loop_timeout: config.loop_timeout,
            destination: config.destination.to_string(),
            limits: config.limits,
            fec: config.fec,
        };
        let driver = Driver::new(
            core_config,
            ports,
            commands_rx,
            pending,
            ring.counters.clone(),
            loop_status,
        );
        let flag = shutdown.clone();
        let processor = roles::spawn_role("processor", shutdown, move || driver.run(&flag))?;
        Ok(Node {
            handle,
            ring,
            processor,
        })
    }

    /// The UDP address the node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.ring.local_addr
    }

    /// A handle for the API.
    pub fn handle(&self) -> NodeHandle {
        self.handle.clone()
    }

    /// Waits for every thread after a shutdown request; returns what was lost with the loop.
    pub fn join(self) -> Summary {
        drop(self.handle);
        let summary = self.processor.join().unwrap_or_default();
        self.ring.join();
        summary
    }
}

/// A random 64-bit node id from the kernel's generator.
fn random_node_id() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: writes at most bytes.len() bytes into a buffer we own.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // getrandom cannot fail for 8 bytes on Linux >= 3.17; fall back to time and pid anyway.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        return (nanos ^ u64::from(std::process::id()).rotate_left(32)) | 1;
    }
    u64::from_be_bytes(bytes) | 1
}
