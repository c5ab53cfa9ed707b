//! node: the processor thread, owner of a node's protocol state.
//!
//! Every datagram the node receives and every request the gRPC API takes passes through here, on
//! one thread: which datagrams go on (forwarding), which are dropped (superseded, deleted, corrupt),
//! which are fed to a waiting GET ([`crate::reassembly`]), the probes that time the loop, the write
//! versions ([`crate::clock`]) and the records of recent writes and deletions. It forwards a
//! datagram by leaving it in the batch it arrived in: no copy, no decode into owned structs, no
//! re-encode. It must not block on the network (that is [`crate::ring`]) nor on a gRPC client
//! (answers go to [`crate::pending`]).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver, Sender};

use crate::clock::{self, Hlc, Version};
use crate::pending::Pending;
use crate::reassembly::Reassembly;
use crate::ring::{IoCounters, Ring, RingPorts};
use crate::shutdown::Shutdown;
use crate::udp::{Batch, SocketOptions};
use crate::wire::{self, DataRepr, Frame, FrameType, ProbeRepr, TombstoneRepr};

/// Identifies one request from the API to the processor.
pub type RequestId = u64;

/// IPv6 (40) plus UDP (8) header bytes: a datagram carries at most `mtu - 48` bytes.
pub const IP_UDP_OVERHEAD: usize = 48;
/// Batches of new frames a PUT may emit before the processor looks at arriving datagrams again.
const PUT_BATCHES_PER_TURN: usize = 4;
/// Unanswered probes remembered; past this, older ones are forgotten (the loop is broken anyway).
const MAX_OUTSTANDING_PROBES: usize = 4096;
/// Foreign probes older than this (or ten of our loop periods) are dropped.
const PROBE_MAX_AGE: Duration = Duration::from_secs(60);
/// Tombstones older than this are dropped even if their origin never takes them back.
const TOMBSTONE_MAX_AGE_MS: u64 = 10 * 60 * 1000;

/// What a node is started with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Local UDP address.
    pub bind: SocketAddr,
    /// Next hop: another node or a reflector.
    pub destination: SocketAddr,
    /// Largest IP packet to send; datagrams are at most `mtu - 48` bytes.
    pub mtu: usize,
    /// Largest value accepted by PUT and reassembled for GET.
    pub max_value_size: u64,
    /// Requested kernel socket buffer size, each direction.
    pub socket_buffer: usize,
    /// Shortest silence of the loop (no probe back) that counts as broken.
    pub loop_timeout: Duration,
}

impl NodeConfig {
    /// Largest datagram this node sends or accepts.
    pub fn max_datagram(&self) -> usize {
        self.mtu - IP_UDP_OVERHEAD
    }
}

/// A request from the API.
#[derive(Debug)]
pub enum Command {
    /// Store `value` under `key`.
    Put {
        id: RequestId,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Read `key`.
    Get { id: RequestId, key: Vec<u8> },
    /// Remove `key`.
    Delete { id: RequestId, key: Vec<u8> },
    /// Report figures.
    Stats { id: RequestId },
    /// The caller of `id` went away: free what it holds.
    Cancel { id: RequestId },
}

/// Why a request failed, in API terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    Unavailable,
    InvalidArgument,
    ResourceExhausted,
    DataLoss,
}

/// A failed request: a kind and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// The processor's answer to a request.
#[derive(Debug)]
pub enum Answer {
    /// PUT or DELETE done.
    Done,
    /// The value of a GET.
    Value(Vec<u8>),
    /// Figures for a stats request.
    Stats(Box<Stats>),
    /// The request failed.
    Failed(Failure),
}

/// Reasons a datagram is dropped, as metric labels.
pub const DROP_REASONS: [&str; 11] = [
    "truncated",
    "bad_magic",
    "unsupported_version",
    "unknown_type",
    "bad_checksum",
    "malformed",
    "superseded",
    "deleted",
    "stale",
    "kernel",
    "send_failed",
];

fn drop_index(error: wire::Error) -> usize {
    match error {
        wire::Error::Truncated => 0,
        wire::Error::BadMagic => 1,
        wire::Error::UnsupportedVersion => 2,
        wire::Error::UnknownType => 3,
        wire::Error::BadChecksum => 4,
        wire::Error::Malformed => 5,
    }
}
const DROP_SUPERSEDED: usize = 6;
const DROP_DELETED: usize = 7;
const DROP_STALE: usize = 8;
const DROP_KERNEL: usize = 9;
const DROP_SEND_FAILED: usize = 10;

/// Figures about the loop and the node.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub node_id: u64,
    pub loop_closed: bool,
    pub period_last: Option<Duration>,
    pub period_min: Option<Duration>,
    pub period_max: Option<Duration>,
    pub circulating_datagrams: u64,
    pub circulating_bytes: u64,
    pub circulating_values: u64,
    pub received: u64,
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    pub dropped: Vec<(&'static str, u64)>,
    pub uptime: Duration,
    pub pending_requests: u64,
}

/// What was in the loop when the node stopped (and is now lost).
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub circulating_datagrams: u64,
    pub circulating_bytes: u64,
    pub circulating_values: u64,
}

/// Whether the loop is closed, published by the processor (its only writer) for readers such as
/// the health service, which can also ask to be woken on the next change.
#[derive(Default)]
pub struct LoopStatus {
    closed: AtomicBool,
    watchers: parking_lot::Mutex<Vec<std::task::Waker>>,
}

impl LoopStatus {
    /// Whether probes come back.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Wakes `waker` at the next change (once).
    pub fn watch(&self, waker: &std::task::Waker) {
        let mut watchers = self.watchers.lock();
        if !watchers.iter().any(|w| w.will_wake(waker)) {
            watchers.push(waker.clone());
        }
    }

    fn set(&self, closed: bool) {
        if self.closed.swap(closed, Ordering::SeqCst) != closed {
            for waker in std::mem::take(&mut *self.watchers.lock()) {
                waker.wake();
            }
        }
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
        let id = clock::random_node_id();
        log::info!(
            "node {id:016x} listening on UDP {}, forwarding to {}, datagrams up to {} bytes",
            ring.local_addr,
            config.destination,
            config.max_datagram()
        );
        let pending = Arc::new(Pending::default());
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
            max_value_size: config.max_value_size,
            max_key_len,
            loop_status: loop_status.clone(),
        };
        let processor = Processor::new(
            id,
            config,
            ports,
            commands_rx,
            pending,
            ring.counters.clone(),
            loop_status,
        );
        let shutdown = shutdown.clone();
        let processor = std::thread::Builder::new()
            .name("processor".into())
            .spawn(move || processor.run(&shutdown))?;
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

/// The newest write or deletion of a key this node knows of, kept while older datagrams of the
/// key may still be on their way round.
struct Record {
    version: Version,
    deleted: bool,
    expires: Instant,
    /// A PUT of this version waiting for its datagrams to come back once.
    confirm: Option<Confirm>,
}

/// A write is acknowledged only when every one of its datagrams has gone round the loop once:
/// then it is in the delay line, not just handed to the kernel.
struct Confirm {
    id: RequestId,
    seen: Vec<u64>,
    missing: u32,
    count: u32,
    /// Set once every datagram is sent: the probe whose return proves they all had time to.
    probe_seq: Option<u64>,
}

struct GetWait {
    key: Box<[u8]>,
    probe_seq: u64,
}

struct PutJob {
    key: Box<[u8]>,
    value: Vec<u8>,
    version: Version,
    chunk_len: u16,
    count: u32,
    next: u32,
}

struct ProbeSent {
    seq: u64,
    sent_at: Instant,
    totals: Totals,
}

/// Running totals of data datagrams forwarded; the difference between two probes is what
/// circulates in the loop.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    datagrams: u64,
    bytes: u64,
    values: u64,
}

#[derive(Default)]
struct LoopClock {
    last: Option<Duration>,
    min: Option<Duration>,
    max: Option<Duration>,
    last_logged: Option<Duration>,
    last_logged_at: Option<Instant>,
    circulating: Totals,
}

struct Processor {
    id: u64,
    config: NodeConfig,
    clock: Hlc,
    ports: RingPorts,
    commands: Receiver<Command>,
    pending: Arc<Pending>,
    io: Arc<IoCounters>,
    loop_status: Arc<LoopStatus>,
    started: Instant,

    records: HashMap<Box<[u8]>, Record>,
    record_expiry: VecDeque<(Instant, Box<[u8]>)>,
    reassembly: Reassembly,
    gets: HashMap<RequestId, GetWait>,
    parked: Vec<Command>,
    puts: VecDeque<PutJob>,
    confirming: Vec<Box<[u8]>>,
    out: Option<Box<Batch>>,

    probes: VecDeque<ProbeSent>,
    next_seq: u64,
    next_probe_at: Instant,
    last_probe_at: Option<Instant>,
    probe_wanted: bool,
    silent_since: Option<Instant>,
    ever_closed: bool,
    broken: bool,
    period: LoopClock,

    totals: Totals,
    forwarded: u64,
    forwarded_bytes: u64,
    dropped: [u64; DROP_REASONS.len()],
}

impl Processor {
    fn new(
        id: u64,
        config: NodeConfig,
        ports: RingPorts,
        commands: Receiver<Command>,
        pending: Arc<Pending>,
        io: Arc<IoCounters>,
        loop_status: Arc<LoopStatus>,
    ) -> Processor {
        let now = Instant::now();
        Processor {
            id,
            reassembly: Reassembly::new(config.max_value_size),
            config,
            clock: Hlc::default(),
            ports,
            commands,
            pending,
            io,
            loop_status,
            started: now,
            records: HashMap::new(),
            record_expiry: VecDeque::new(),
            gets: HashMap::new(),
            parked: Vec::new(),
            puts: VecDeque::new(),
            confirming: Vec::new(),
            out: None,
            probes: VecDeque::new(),
            next_seq: 0,
            next_probe_at: now,
            last_probe_at: None,
            probe_wanted: true,
            silent_since: None,
            ever_closed: false,
            broken: false,
            period: LoopClock::default(),
            totals: Totals::default(),
            forwarded: 0,
            forwarded_bytes: 0,
            dropped: [0; DROP_REASONS.len()],
        }
    }

    fn run(mut self, shutdown: &Shutdown) -> Summary {
        let inbound = self.ports.inbound.clone();
        let pool = self.ports.pool.clone();
        let commands = self.commands.clone();
        let never = crossbeam_channel::never();
        while !shutdown.is_requested() {
            let now = Instant::now();
            let mut due = self.next_probe_at;
            if self.probe_wanted {
                let spaced = self.last_probe_at.map(|at| at + self.probe_spacing());
                due = due.min(spaced.unwrap_or(now));
            }
            let wait = due
                .saturating_duration_since(now)
                .min(Duration::from_millis(50));
            // A free batch is only worth waiting for when new frames are queued.
            let pool = if self.puts.is_empty() { &never } else { &pool };
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
                        if self.out.is_none() {
                            self.out = Some(batch);
                        } else {
                            // Not needed after all: udp-send recycles an empty batch.
                            let _ = self.ports.outbound.send(batch);
                        }
                    }
                },
                default(wait) => {},
            }
            self.turn();
        }
        self.loop_status.set(false);
        self.fail_everything(FailureKind::Unavailable, "the node is shutting down");
        let c = self.period.circulating;
        Summary {
            circulating_datagrams: c.datagrams,
            circulating_bytes: c.bytes,
            circulating_values: c.values,
        }
    }

    /// Time-driven work after every event: probes, loop health, expiry, PUT emission, flushing.
    fn turn(&mut self) {
        let now = Instant::now();
        self.check_loop(now);
        let soon_enough = self
            .last_probe_at
            .is_none_or(|at| now >= at + self.probe_spacing());
        if (self.probe_wanted && soon_enough) || now >= self.next_probe_at {
            self.send_probe(now);
        }
        self.expire_records(now);
        self.emit_puts();
        self.flush();
    }

    // ----- datagrams -------------------------------------------------------------------------

    fn on_batch(&mut self, mut batch: Box<Batch>) {
        let now = Instant::now();
        for i in 0..batch.len() {
            if !self.keep(batch.datagram(i), now) {
                batch.discard(i);
            }
        }
        self.forwarded += batch.kept() as u64;
        self.forwarded_bytes += batch.kept_bytes() as u64;
        if self.ports.outbound.send(batch).is_err() {
            log::error!("udp-send is gone; datagrams are being lost");
        }
    }

    /// Decides the fate of one received datagram: true to forward it.
    #[inline]
    fn keep(&mut self, datagram: &[u8], now: Instant) -> bool {
        let frame = match Frame::new_checked(datagram) {
            Ok(frame) => frame,
            Err(error) => {
                self.dropped[drop_index(error)] += 1;
                return false;
            }
        };
        self.clock.observe(frame.hlc());
        match frame.frame_type() {
            FrameType::Probe => {
                if frame.origin() != self.id {
                    // Another node's probe: its origin takes it back, unless that node is gone
                    // (restarted nodes get a new id); then it would go round for ever.
                    if age_ms(frame.hlc()) > self.probe_max_age_ms() {
                        self.dropped[DROP_STALE] += 1;
                        return false;
                    }
                    return true;
                }
                self.probe_returned(frame.sequence(), now);
                false
            }
            FrameType::Tombstone => self.on_tombstone(&frame, now),
            FrameType::Data | FrameType::Parity => self.on_data(&frame, datagram.len()),
        }
    }

    fn on_data(&mut self, frame: &Frame<&[u8]>, len: usize) -> bool {
        let version = Version {
            hlc: frame.hlc(),
            origin: frame.origin(),
        };
        let mut floor = None;
        if !self.records.is_empty() {
            if let Some(record) = self.records.get_mut(frame.key()) {
                if version < record.version {
                    let reason = if record.deleted {
                        DROP_DELETED
                    } else {
                        DROP_SUPERSEDED
                    };
                    self.dropped[reason] += 1;
                    return false;
                }
                if version > record.version {
                    // A newer write from elsewhere: from now on it is the one to keep.
                    record.version = version;
                    record.deleted = false;
                    if let Some(confirm) = record.confirm.take() {
                        // Ours was written and then overwritten: last writer wins.
                        self.pending.complete(confirm.id, Answer::Done);
                    }
                }
                floor = Some(record.version);
                if let Some(confirm) = &mut record.confirm {
                    if version == record.version && frame.frame_type() == FrameType::Data {
                        let index = frame.fragment_index() as usize;
                        let (word, bit) = (index / 64, 1u64 << (index % 64));
                        if confirm.seen[word] & bit == 0 {
                            confirm.seen[word] |= bit;
                            confirm.missing -= 1;
                            if confirm.missing == 0 {
                                let confirm = record.confirm.take().expect("checked");
                                let keep = retention(self.period.last, self.config.loop_timeout);
                                record.expires = Instant::now() + keep;
                                self.record_expiry
                                    .push_back((record.expires, frame.key().into()));
                                self.pending.complete(confirm.id, Answer::Done);
                            }
                        }
                    }
                }
            }
        }
        self.totals.datagrams += 1;
        self.totals.bytes += len as u64;
        if frame.frame_type() == FrameType::Data && frame.fragment_index() == 0 {
            self.totals.values += 1;
        }
        if frame.frame_type() == FrameType::Data && !self.reassembly.is_empty() {
            if let Some(done) = self.reassembly.offer(frame, floor) {
                self.finish_gets(done.waiters, done.value);
            }
        }
        true
    }

    fn on_tombstone(&mut self, frame: &Frame<&[u8]>, now: Instant) -> bool {
        if frame.origin() == self.id {
            // Back home after a full circuit: every node has seen it.
            return false;
        }
        if age_ms(frame.hlc()) > TOMBSTONE_MAX_AGE_MS {
            self.dropped[DROP_STALE] += 1;
            return false;
        }
        let version = Version {
            hlc: frame.hlc(),
            origin: frame.origin(),
        };
        self.record(frame.key(), version, true, now);
        true
    }

    fn finish_gets(&mut self, waiters: Vec<RequestId>, value: Result<Vec<u8>, u64>) {
        let mut value = Some(value);
        let last = waiters.len().saturating_sub(1);
        for (n, id) in waiters.into_iter().enumerate() {
            self.gets.remove(&id);
            let result = if n == last {
                value.take().expect("taken once, by the last waiter")
            } else {
                value.as_ref().expect("still here").clone()
            };
            let answer = match result {
                Ok(value) => Answer::Value(value),
                Err(len) => Answer::Failed(Failure::new(
                    FailureKind::ResourceExhausted,
                    format!(
                        "the value is {len} bytes, more than this node's --max-value-size of {}",
                        self.config.max_value_size
                    ),
                )),
            };
            self.pending.complete(id, answer);
        }
    }

    // ----- records of writes and deletions ---------------------------------------------------

    /// How long a record of a write or deletion is kept: long enough for every older datagram
    /// of the key to pass this node once.
    fn retention(&self) -> Duration {
        retention(self.period.last, self.config.loop_timeout)
    }

    fn record(&mut self, key: &[u8], version: Version, deleted: bool, now: Instant) {
        let expires = now + self.retention();
        match self.records.get_mut(key) {
            Some(record) if record.version >= version => return,
            Some(record) => {
                record.version = version;
                record.deleted = deleted;
                record.expires = expires;
                if let Some(confirm) = record.confirm.take() {
                    // Superseded before it was confirmed: it was written, then replaced.
                    self.pending.complete(confirm.id, Answer::Done);
                }
            }
            None => {
                self.records.insert(
                    key.into(),
                    Record {
                        version,
                        deleted,
                        expires,
                        confirm: None,
                    },
                );
            }
        }
        self.record_expiry.push_back((expires, key.into()));
    }

    fn expire_records(&mut self, now: Instant) {
        while let Some((at, _)) = self.record_expiry.front() {
            if *at > now {
                break;
            }
            let (_, key) = self.record_expiry.pop_front().expect("front exists");
            if self
                .records
                .get(&key)
                .is_some_and(|r| r.expires <= now && r.confirm.is_none())
            {
                self.records.remove(&key);
            }
        }
    }

    // ----- probes and the loop period --------------------------------------------------------

    fn send_probe(&mut self, now: Instant) {
        let repr = ProbeRepr {
            origin: self.id,
            hlc: self.clock.tick(),
            sequence: self.next_seq,
            sent_at_ns: now.duration_since(self.started).as_nanos() as u64,
        };
        if !self.emit(|buf| repr.emit(buf)) {
            return; // no free batch right now; the next turn tries again
        }
        if self.probes.len() == MAX_OUTSTANDING_PROBES {
            self.probes.pop_front();
        }
        self.probes.push_back(ProbeSent {
            seq: self.next_seq,
            sent_at: now,
            totals: self.totals,
        });
        self.silent_since.get_or_insert(now);
        self.next_seq += 1;
        self.probe_wanted = false;
        self.last_probe_at = Some(now);
        self.next_probe_at = now + self.probe_interval();
    }

    /// Least time between probes sent for waiting GETs: GETs that arrive together share one.
    fn probe_spacing(&self) -> Duration {
        let period = self.period.last.unwrap_or(Duration::from_millis(100));
        (period / 32).clamp(Duration::from_micros(500), Duration::from_millis(10))
    }

    fn probe_interval(&self) -> Duration {
        match self.period.last {
            Some(period) if !self.broken => {
                (period / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
            }
            _ => Duration::from_millis(100),
        }
    }

    fn probe_returned(&mut self, seq: u64, now: Instant) {
        let mut matched = None;
        while let Some(front) = self.probes.front() {
            if front.seq > seq {
                break;
            }
            let probe = self.probes.pop_front().expect("front exists");
            if probe.seq == seq {
                matched = Some(probe);
            }
        }
        let Some(probe) = matched else {
            return; // a duplicate, or older than what we remember
        };
        let period = now.duration_since(probe.sent_at);
        let p = &mut self.period;
        p.last = Some(period);
        p.min = Some(p.min.map_or(period, |m| m.min(period)));
        p.max = Some(p.max.map_or(period, |m| m.max(period)));
        p.circulating = Totals {
            datagrams: self.totals.datagrams - probe.totals.datagrams,
            bytes: self.totals.bytes - probe.totals.bytes,
            values: self.totals.values - probe.totals.values,
        };
        self.silent_since = self.probes.front().map(|p| p.sent_at);
        if !self.ever_closed {
            self.ever_closed = true;
            self.loop_status.set(true);
            log::info!("the loop is closed: first probe back after {period:?}");
        }
        self.log_period(period, now);
        if self.broken {
            self.broken = false;
            self.loop_status.set(true);
            log::info!("the loop is closed again (period {period:?})");
        }
        if !self.confirming.is_empty() {
            self.check_confirmations(seq, now);
        }
        let parked = std::mem::take(&mut self.parked);
        for command in parked {
            self.on_command(command);
        }
        let done: Vec<RequestId> = self
            .gets
            .iter()
            .filter(|(_, get)| get.probe_seq <= seq)
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            let get = self.gets.remove(&id).expect("listed above");
            let progress = self.reassembly.progress(&get.key);
            self.reassembly.remove_waiter(&get.key, id);
            let failure = match progress {
                Some((have, need)) => Failure::new(
                    FailureKind::DataLoss,
                    format!("the value went round incomplete: {have} of {need} datagrams arrived"),
                ),
                None => Failure::new(FailureKind::NotFound, "key not found in the delay line"),
            };
            self.pending.complete(id, Answer::Failed(failure));
        }
    }

    fn log_period(&mut self, period: Duration, now: Instant) {
        log::debug!("loop period {period:?}");
        let p = &mut self.period;
        let changed = p.last_logged.is_none_or(|logged| {
            let (a, b) = (logged.as_secs_f64(), period.as_secs_f64());
            (a - b).abs() > 0.1 * a
        });
        let stale = p
            .last_logged_at
            .is_none_or(|at| now.duration_since(at) >= Duration::from_secs(60));
        if changed || stale {
            let c = p.circulating;
            log::info!(
                "loop period {period:?}; circulating: {} bytes in {} datagrams, {} values",
                c.bytes,
                c.datagrams,
                c.values
            );
            p.last_logged = Some(period);
            p.last_logged_at = Some(now);
        }
    }

    /// Another node's probe older than this has lost its origin.
    fn probe_max_age_ms(&self) -> u64 {
        let period = self.period.max.unwrap_or(Duration::ZERO);
        (period * 10).max(PROBE_MAX_AGE).as_millis() as u64
    }

    fn loop_timeout(&self) -> Duration {
        let floor = self.config.loop_timeout;
        self.period.last.map_or(floor, |p| (p * 3).max(floor))
    }

    fn check_loop(&mut self, now: Instant) {
        let silent = self
            .silent_since
            .is_some_and(|since| now.duration_since(since) > self.loop_timeout());
        if silent && !self.broken {
            self.broken = true;
            self.loop_status.set(false);
            let failure = self.unavailable();
            log::warn!("{}", failure.message);
            self.fail_everything(failure.kind, &failure.message);
        }
    }

    fn unavailable(&self) -> Failure {
        Failure::new(
            FailureKind::Unavailable,
            format!(
                "the delay line is broken: nothing came back from {} for {:?}",
                self.config.destination,
                self.loop_timeout()
            ),
        )
    }

    /// Fails every waiting GET and parked request (PUTs already emitting finish).
    fn fail_everything(&mut self, kind: FailureKind, message: &str) {
        for (id, get) in self.gets.drain() {
            self.reassembly.remove_waiter(&get.key, id);
            self.pending
                .complete(id, Answer::Failed(Failure::new(kind, message)));
        }
        for command in std::mem::take(&mut self.parked) {
            if let Command::Put { id, .. } | Command::Delete { id, .. } = command {
                self.pending
                    .complete(id, Answer::Failed(Failure::new(kind, message)));
            }
        }
        // Writes being sent or waiting for their datagrams to come back: they cannot be
        // confirmed over a broken loop.
        self.puts.clear();
        for record in self.records.values_mut() {
            if let Some(confirm) = record.confirm.take() {
                self.pending
                    .complete(confirm.id, Answer::Failed(Failure::new(kind, message)));
            }
        }
        self.confirming.clear();
    }

    // ----- requests --------------------------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Stats { id } => {
                let stats = self.stats();
                self.pending.complete(id, Answer::Stats(Box::new(stats)));
            }
            Command::Cancel { id } => {
                if let Some(get) = self.gets.remove(&id) {
                    self.reassembly.remove_waiter(&get.key, id);
                }
                self.parked.retain(|c| !matches!(c, Command::Put { id: p, .. } | Command::Delete { id: p, .. } if *p == id));
            }
            _ if self.broken => {
                let id = match &command {
                    Command::Put { id, .. }
                    | Command::Get { id, .. }
                    | Command::Delete { id, .. } => *id,
                    _ => unreachable!("handled above"),
                };
                self.pending
                    .complete(id, Answer::Failed(self.unavailable()));
            }
            Command::Get { id, key } => {
                if self.records.get(key.as_slice()).is_some_and(|r| r.deleted) {
                    let failure = Failure::new(FailureKind::NotFound, "key not found (deleted)");
                    self.pending.complete(id, Answer::Failed(failure));
                    return;
                }
                self.reassembly.add_waiter(&key, id);
                self.gets.insert(
                    id,
                    GetWait {
                        key: key.into(),
                        probe_seq: self.next_seq,
                    },
                );
                self.probe_wanted = true;
            }
            command if !self.ever_closed => {
                // Nothing has come back yet: hold writes until the loop is known to be closed.
                self.parked.push(command);
            }
            Command::Put { id, key, value } => self.start_put(id, key, value, now),
            Command::Delete { id, key } => {
                self.delete(&key, now);
                self.pending.complete(id, Answer::Done);
            }
        }
    }

    /// Deletes every version of `key` older than now: recorded here, announced to the other
    /// nodes by a tombstone that goes round the loop once.
    fn delete(&mut self, key: &[u8], now: Instant) {
        let version = Version {
            hlc: self.clock.tick(),
            origin: self.id,
        };
        self.record(key, version, true, now);
        let repr = TombstoneRepr {
            origin: self.id,
            hlc: version.hlc,
            key,
        };
        // A tombstone is one small datagram: if the pool is momentarily empty, wait for a
        // batch rather than lose the deletion's news.
        while !self.emit(|buf| repr.emit(buf)) {
            match self.ports.pool.recv() {
                Ok(batch) => self.out = Some(batch),
                Err(_) => return,
            }
        }
    }

    /// Fails the writes whose datagrams had a full loop to come back and did not all do so,
    /// and takes what is left of them out of the loop.
    fn check_confirmations(&mut self, returned_seq: u64, now: Instant) {
        let keys = std::mem::take(&mut self.confirming);
        for key in keys {
            let Some(record) = self.records.get_mut(&key) else {
                continue;
            };
            let due = record
                .confirm
                .as_ref()
                .is_some_and(|c| c.probe_seq.is_some_and(|seq| seq <= returned_seq));
            if !due {
                if record.confirm.is_some() {
                    self.confirming.push(key);
                }
                continue;
            }
            let confirm = record.confirm.take().expect("checked");
            let message = format!(
                "only {} of the value's {} datagrams came back around the loop (is it over \
                 capacity or lossy?); the write was rolled back and the key is now absent",
                confirm.count - confirm.missing,
                confirm.count
            );
            self.delete(&key, now);
            self.pending.complete(
                confirm.id,
                Answer::Failed(Failure::new(FailureKind::DataLoss, message)),
            );
        }
    }

    fn start_put(&mut self, id: RequestId, key: Vec<u8>, value: Vec<u8>, now: Instant) {
        let chunk_len = wire::max_chunk_len(self.config.max_datagram(), key.len());
        let chunk_len = u16::try_from(chunk_len).unwrap_or(u16::MAX);
        if chunk_len == 0 {
            let failure = Failure::new(
                FailureKind::InvalidArgument,
                format!(
                    "a {}-byte key leaves no room for data at --mtu {}",
                    key.len(),
                    self.config.mtu
                ),
            );
            self.pending.complete(id, Answer::Failed(failure));
            return;
        }
        let count = wire::fragment_count(value.len() as u64, chunk_len);
        let Ok(count) = u32::try_from(count) else {
            let failure = Failure::new(
                FailureKind::InvalidArgument,
                "the value needs more than 2^32 datagrams",
            );
            self.pending.complete(id, Answer::Failed(failure));
            return;
        };
        let version = Version {
            hlc: self.clock.tick(),
            origin: self.id,
        };
        self.record(&key, version, false, now);
        if let Some(record) = self.records.get_mut(key.as_slice()) {
            record.confirm = Some(Confirm {
                id,
                seen: vec![0; (count as usize).div_ceil(64)],
                missing: count,
                count,
                probe_seq: None,
            });
        }
        self.puts.push_back(PutJob {
            key: key.into(),
            value,
            version,
            chunk_len,
            count,
            next: 0,
        });
    }

    /// Writes queued PUT fragments into free batches, a bounded amount per turn.
    fn emit_puts(&mut self) {
        let budget = PUT_BATCHES_PER_TURN * crate::udp::BATCH_SLOTS;
        let mut emitted = 0;
        while let Some(job) = self.puts.front_mut() {
            while job.next < job.count && emitted < budget {
                let range = wire::chunk(job.value.len(), job.next, job.chunk_len);
                let repr = DataRepr {
                    origin: self.id,
                    hlc: job.version.hlc,
                    value_len: job.value.len() as u64,
                    fragment_index: job.next,
                    fragment_count: job.count,
                    chunk_len: job.chunk_len,
                    parity_count: 0,
                    key: &job.key,
                    payload: &job.value[range],
                };
                if !emit_into(&mut self.out, &self.ports, |buf| repr.emit(buf)) {
                    return;
                }
                job.next += 1;
                emitted += 1;
            }
            if job.next < job.count {
                return;
            }
            // All sent: the next probe's return proves they have all had time to come back.
            let job = self.puts.pop_front().expect("front exists");
            let confirm = self.records.get_mut(&job.key).and_then(|r| {
                (r.version == job.version)
                    .then_some(r.confirm.as_mut())
                    .flatten()
            });
            if let Some(confirm) = confirm {
                confirm.probe_seq = Some(self.next_seq);
                self.probe_wanted = true;
                self.confirming.push(job.key);
            }
        }
    }

    /// Appends a new frame to the outgoing batch. False when no batch is free.
    fn emit(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> bool {
        emit_into(&mut self.out, &self.ports, write)
    }

    /// Hands the outgoing batch, if any, to `udp-send`.
    fn flush(&mut self) {
        if let Some(batch) = self.out.take() {
            if batch.is_empty() {
                self.out = Some(batch);
            } else {
                let _ = self.ports.outbound.send(batch);
            }
        }
    }

    fn stats(&self) -> Stats {
        let io = &self.io;
        let mut dropped: Vec<(&'static str, u64)> =
            DROP_REASONS.iter().copied().zip(self.dropped).collect();
        dropped[drop_index(wire::Error::Truncated)].1 += io.truncated.load(Ordering::Relaxed);
        dropped[DROP_KERNEL].1 += io.kernel_drops.load(Ordering::Relaxed);
        dropped[DROP_SEND_FAILED].1 += io.send_failed.load(Ordering::Relaxed);
        let c = self.period.circulating;
        Stats {
            node_id: self.id,
            loop_closed: self.ever_closed && !self.broken,
            period_last: self.period.last,
            period_min: self.period.min,
            period_max: self.period.max,
            circulating_datagrams: c.datagrams,
            circulating_bytes: c.bytes,
            circulating_values: c.values,
            received: io.received.load(Ordering::Relaxed),
            forwarded: self.forwarded,
            forwarded_bytes: self.forwarded_bytes,
            dropped,
            uptime: self.started.elapsed(),
            pending_requests: self.pending.len() as u64,
        }
    }
}

/// Three loop periods (the loop timeout until one is measured), and never less than the timeout.
fn retention(period: Option<Duration>, loop_timeout: Duration) -> Duration {
    (period.unwrap_or(loop_timeout) * 3).max(loop_timeout)
}

/// How old a frame's HLC stamp is, in milliseconds of wall-clock time.
fn age_ms(stamp: u64) -> u64 {
    clock::now_millis().saturating_sub(clock::stamp_millis(stamp))
}

/// Appends a frame to `out`, taking a free batch from the pool (and sending a full one on) as
/// needed. False when no batch is free.
fn emit_into(
    out: &mut Option<Box<Batch>>,
    ports: &RingPorts,
    write: impl FnOnce(&mut [u8]) -> usize,
) -> bool {
    if out.as_ref().is_some_and(|b| b.is_full()) {
        let full = out.take().expect("checked");
        let _ = ports.outbound.send(full);
    }
    if out.is_none() {
        match ports.pool.try_recv() {
            Ok(batch) => *out = Some(batch),
            Err(_) => return false,
        }
    }
    out.as_mut().expect("filled above").push_with(write)
}
