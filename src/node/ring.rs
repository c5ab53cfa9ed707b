//! node::ring: the node's datagram path, one OS thread per role.
//!
//! It owns the node's UDP socket, a fixed pool of [`Batch`]es and the two I/O threads:
//! `udp-recv` fills batches with recvmmsg and hands them to the processor, `udp-send` sends the
//! datagrams the processor kept (forwarded or new) to the next hop with sendmmsg and returns the
//! batch to the pool. Batches travel by channel, so each has exactly one owner at a time and
//! nothing is allocated per datagram. It must not look inside datagrams: the processor decides.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};

use crate::daemon::roles::spawn_role;
use crate::daemon::shutdown::Shutdown;
use crate::udp::{self, Batch, SocketOptions};

/// Batches in circulation inside one node, each holding up to [`udp::BATCH_SLOTS`] datagrams:
/// 4096 datagrams in all.
pub const POOL_BATCHES: usize = 16;
/// The least time between two warnings about datagrams lost on receive.
const DROP_WARN_INTERVAL: Duration = Duration::from_secs(60);
/// How often a blocked I/O thread looks at the shutdown flag.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Counters written only by the I/O threads, read by anyone.
#[derive(Debug, Default)]
pub struct IoCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Datagrams longer than `--mtu` allows, cut by the kernel and dropped.
    pub truncated: AtomicU64,
    /// Datagrams the kernel dropped because the receive buffer was full.
    pub kernel_drops: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_failed: AtomicU64,
}

/// The channel ends the processor works with.
pub struct RingPorts {
    /// Filled batches from `udp-recv`.
    pub inbound: Receiver<Box<Batch>>,
    /// Batches to send; dropping this sender stops `udp-send`.
    pub outbound: Sender<Box<Batch>>,
    /// Free batches, for new frames.
    pub pool: Receiver<Box<Batch>>,
}

/// The running I/O threads of a node.
pub struct Ring {
    /// Address the UDP socket is bound to.
    pub local_addr: SocketAddr,
    /// I/O counters.
    pub counters: Arc<IoCounters>,
    threads: Vec<JoinHandle<()>>,
}

impl Ring {
    /// Binds `bind`, starts `udp-recv` and `udp-send` towards `destination` and returns the
    /// ports for the processor. `slot_size` is the largest datagram the node sends or accepts.
    pub fn start(
        bind: SocketAddr,
        destination: SocketAddr,
        slot_size: usize,
        options: &SocketOptions,
        shutdown: &Shutdown,
    ) -> io::Result<(Ring, RingPorts)> {
        let bound = udp::bind(bind, options).map_err(|e| udp::bind_failed(bind, e))?;
        bound.warn_if_capped(options);
        let local_addr = bound.socket.local_addr()?;
        bound.socket.set_read_timeout(Some(POLL_INTERVAL))?;
        let send_socket = bound.socket.try_clone()?;

        let (free_tx, free_rx) = crossbeam_channel::bounded(POOL_BATCHES);
        for _ in 0..POOL_BATCHES {
            free_tx
                .send(Box::new(Batch::new(slot_size)))
                .expect("pool has room for every batch");
        }
        let (inbound_tx, inbound_rx) = crossbeam_channel::bounded(POOL_BATCHES);
        let (outbound_tx, outbound_rx) = crossbeam_channel::bounded(POOL_BATCHES);
        let counters = Arc::new(IoCounters::default());

        let receiver = udp::Receiver::new(bound.socket, slot_size);
        let sender = udp::Sender::new(send_socket);
        let on_off = |on: bool| if on { "on" } else { "off" };
        log::debug!(
            "UDP {local_addr}: GRO {}, GSO {}",
            on_off(receiver.gro()),
            on_off(sender.gso())
        );
        let recv = {
            let free = free_rx.clone();
            let counters = counters.clone();
            let flag = shutdown.clone();
            spawn_role("udp-recv", shutdown, move || {
                receive(receiver, free, inbound_tx, &counters, &flag)
            })?
        };
        let send = {
            let counters = counters.clone();
            spawn_role("udp-send", shutdown, move || {
                transmit(sender, destination, outbound_rx, free_tx, &counters)
            })?
        };
        let ring = Ring {
            local_addr,
            counters,
            threads: vec![recv, send],
        };
        let ports = RingPorts {
            inbound: inbound_rx,
            outbound: outbound_tx,
            pool: free_rx,
        };
        Ok((ring, ports))
    }

    /// Waits for both I/O threads (they stop on shutdown and once the processor is gone).
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// `udp-recv`: fill a free batch, hand it over, repeat.
fn receive(
    mut receiver: udp::Receiver,
    free: Receiver<Box<Batch>>,
    inbound: Sender<Box<Batch>>,
    counters: &IoCounters,
    shutdown: &Shutdown,
) {
    let mut batch = None;
    let mut warned_at: Option<std::time::Instant> = None;
    let (mut truncated, mut dropped) = (0u64, 0u64);
    while !shutdown.is_requested() {
        if truncated + dropped > 0 && warned_at.is_none_or(|at| at.elapsed() >= DROP_WARN_INTERVAL)
        {
            log::warn!(
                "lost {dropped} datagrams in the kernel (receive buffer full: raise \
                 --socket-buffer or net.core.rmem_max) and {truncated} longer than --mtu allows \
                 (every hop must use the same --mtu)"
            );
            (truncated, dropped) = (0, 0);
            warned_at = Some(std::time::Instant::now());
        }
        let mut current = match batch.take() {
            Some(b) => b,
            None => match free.recv_timeout(POLL_INTERVAL) {
                Ok(b) => b,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => continue,
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
            },
        };
        match receiver.recv(&mut current) {
            Ok(report) => {
                truncated += report.truncated as u64;
                dropped += report.kernel_drops;
                counters
                    .truncated
                    .fetch_add(report.truncated as u64, Ordering::Relaxed);
                counters
                    .kernel_drops
                    .fetch_add(report.kernel_drops, Ordering::Relaxed);
                if current.is_empty() {
                    batch = Some(current);
                    continue;
                }
                counters
                    .received
                    .fetch_add(current.len() as u64, Ordering::Relaxed);
                if inbound.send(current).is_err() {
                    return;
                }
            }
            Err(e) => {
                log::error!("UDP receive failed: {e}");
                batch = Some(current);
                if shutdown.wait_timeout(POLL_INTERVAL) {
                    return;
                }
            }
        }
    }
}

/// `udp-send`: send what the processor kept, recycle the batch.
fn transmit(
    mut sender: udp::Sender,
    destination: SocketAddr,
    outbound: Receiver<Box<Batch>>,
    free: Sender<Box<Batch>>,
    counters: &IoCounters,
) {
    let destination = socket2::SockAddr::from(destination);
    let mut warned = false;
    for mut batch in outbound {
        match sender.send_to(&batch, &destination) {
            Ok(report) => {
                if report.failed > 0 {
                    counters
                        .send_failed
                        .fetch_add(report.failed as u64, Ordering::Relaxed);
                    if !warned {
                        log::warn!(
                            "the kernel refused datagrams to {}",
                            destination_str(&destination)
                        );
                        warned = true;
                    }
                }
            }
            Err(e) => log::error!("UDP send failed: {e}"),
        }
        batch.clear();
        if free.send(batch).is_err() {
            return;
        }
    }
}

fn destination_str(addr: &socket2::SockAddr) -> String {
    addr.as_socket()
        .map_or_else(|| "?".into(), |a| a.to_string())
}
