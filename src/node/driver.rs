//! node::driver: the `processor` thread, a thin driver around the protocol [`Core`].
//!
//! It owns the core and the processor's ends of the channels. It feeds the core every received
//! batch, request and tick of the clock, forwards the datagrams the core keeps by leaving them in
//! the batch they arrived in (no copy, no decode, no allocation), writes the core's new frames
//! into free batches, and delivers answers to the [`Pending`] table. It makes no decision of its
//! own.
//!
//! **The processor never blocks** except in its one `select!`, which also wakes for the core's
//! next deadline. Every send goes to a channel with room for every batch there is, and a free
//! batch is only ever taken with `try_recv`: when none is free, the core's new frames simply wait
//! in the core (a state the loop comes back to), and the `select!` also waits for the pool.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver};

use super::core::{Answer, Command, Core, CoreConfig, IoFigures, Now};
use super::pending::Pending;
use super::ring::{IoCounters, RingPorts};
use super::status::{LoopStatus, Summary};
use crate::daemon::shutdown::Shutdown;
use crate::udp::{Batch, BATCH_SLOTS};

/// New frames the core may write per turn before the processor looks at arriving datagrams
/// again: forwarding comes first.
const FRAMES_PER_TURN: usize = 4 * BATCH_SLOTS;
/// The longest the processor sleeps without looking at the shutdown flag.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// The processor: the core and the ends of the channels it is driven through.
pub struct Driver {
    core: Core,
    ports: RingPorts,
    commands: Receiver<Command>,
    pending: Arc<Pending>,
    io: Arc<IoCounters>,
    loop_status: Arc<LoopStatus>,
    origin: Instant,
    /// The batch new frames are being written into.
    out: Option<Box<Batch>>,
}

impl Driver {
    pub fn new(
        config: CoreConfig,
        ports: RingPorts,
        commands: Receiver<Command>,
        pending: Arc<Pending>,
        io: Arc<IoCounters>,
        loop_status: Arc<LoopStatus>,
    ) -> Driver {
        let origin = Instant::now();
        Driver {
            core: Core::new(config, now_since(origin)),
            ports,
            commands,
            pending,
            io,
            loop_status,
            origin,
            out: None,
        }
    }

    /// Runs until shutdown; returns what circulated then.
    pub fn run(mut self, shutdown: &Shutdown) -> Summary {
        let inbound = self.ports.inbound.clone();
        let pool = self.ports.pool.clone();
        let commands = self.commands.clone();
        let never = crossbeam_channel::never();
        while !shutdown.is_requested() {
            let now = self.now();
            // A free batch is only worth waiting for when new frames wait for one; then the
            // pool wakes us for them, and only the timers count for the wait.
            let waiting_for_pool = self.out.is_none() && self.core.wants_transmit(now);
            let (pool, deadline) = if waiting_for_pool {
                (&pool, self.core.next_timer())
            } else {
                (&never, self.core.next_deadline())
            };
            let wait = deadline.saturating_sub(now.mono).min(MAX_WAIT);
            select! {
                recv(inbound) -> batch => match batch {
                    Ok(batch) => self.on_batch(batch),
                    Err(_) => break,
                },
                recv(commands) -> command => {
                    if let Ok(command) = command {
                        self.on_command(command);
                    }
                },
                recv(pool) -> batch => {
                    if let Ok(batch) = batch {
                        self.out = Some(batch);
                    }
                },
                default(wait) => {},
            }
            self.turn();
        }
        self.core.shut_down();
        self.deliver_answers();
        self.loop_status.set(false);
        let c = self.core.circulating();
        Summary {
            circulating_datagrams: c.datagrams,
            circulating_bytes: c.bytes,
            circulating_values: c.values,
        }
    }

    fn now(&self) -> Now {
        now_since(self.origin)
    }

    /// Work after every event: the core's timers, its new frames, answers, the loop status.
    fn turn(&mut self) {
        let now = self.now();
        self.core.on_timer(now);
        self.transmit(now);
        self.flush();
        self.deliver_answers();
        self.loop_status.set(self.core.loop_closed());
    }

    fn on_batch(&mut self, mut batch: Box<Batch>) {
        let now = self.now();
        for i in 0..batch.len() {
            if !self.core.on_datagram(batch.datagram_mut(i), now) {
                batch.discard(i);
            }
        }
        if self.ports.outbound.send(batch).is_err() {
            log::error!("udp-send is gone; datagrams are being lost");
        }
    }

    /// Writes the core's new frames into free batches, a bounded number per turn, never
    /// waiting for a batch.
    fn transmit(&mut self, now: Now) {
        for _ in 0..FRAMES_PER_TURN {
            if !self.core.wants_transmit(now) {
                return;
            }
            if self.out.as_ref().is_some_and(|b| b.is_full()) {
                let full = self.out.take().expect("checked");
                let _ = self.ports.outbound.send(full);
            }
            let batch = match &mut self.out {
                Some(batch) => batch,
                None => match self.ports.pool.try_recv() {
                    Ok(batch) => self.out.insert(batch),
                    Err(_) => return, // the frames wait in the core
                },
            };
            let core = &mut self.core;
            let mut wrote = false;
            batch.push_with(|buf| {
                let len = core.poll_transmit(buf, now);
                wrote = len.is_some();
                len.unwrap_or(0)
            });
            if !wrote {
                let last = batch.len() - 1;
                batch.discard(last);
                return;
            }
        }
    }

    /// Hands the batch of new frames, if any, to `udp-send`.
    fn flush(&mut self) {
        if let Some(batch) = self.out.take() {
            if batch.is_empty() {
                self.out = Some(batch);
            } else {
                let _ = self.ports.outbound.send(batch);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Stats { id } => {
                let io = &self.io;
                let figures = IoFigures {
                    received: io.received.load(Ordering::Relaxed),
                    truncated: io.truncated.load(Ordering::Relaxed),
                    kernel_drops: io.kernel_drops.load(Ordering::Relaxed),
                    send_failed: io.send_failed.load(Ordering::Relaxed),
                    pending_requests: self.pending.len() as u64,
                    pending_refused: self.pending.refused(),
                };
                let stats = self.core.stats(now, figures);
                self.pending.complete(id, Answer::Stats(Box::new(stats)));
            }
            command => self.core.on_command(command, now),
        }
    }

    fn deliver_answers(&mut self) {
        while let Some((id, answer)) = self.core.poll_answer() {
            self.pending.complete(id, answer);
        }
    }
}

/// The time now, monotonic since `origin` and by the wall clock.
fn now_since(origin: Instant) -> Now {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Now {
        mono: origin.elapsed(),
        unix_ms,
    }
}
