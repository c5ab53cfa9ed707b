//! A lossy link for real-process tests: [`LossyRelay`], a UDP forwarder that drops datagrams
//! at random or in bursts, reproducibly from a seed, and can also delay them.
//!
//! It stands where [`Relay`](super::Relay) stands: between a node and a reflector (datagrams
//! from `to` go back to whoever sent last from elsewhere), or, with [`Routing::ForwardOnly`],
//! as one hop of a ring (node A sends to the relay, everything goes on to node B), or, with
//! [`Routing::Reflector`], in place of the reflector (everything goes back to its sender after
//! the delay; half the traffic of a relay in front of a reflector).
//!
//! Loss models ([`Loss`]), changeable at any time from the test thread:
//! - `None`: every datagram goes through.
//! - `Random(p)`: each datagram subject to loss is dropped independently with probability `p`.
//! - `Bursts { p, mean_len }`: a Gilbert–Elliott chain of two states over the datagrams subject
//!   to loss. In the good state nothing is dropped; in the bad state everything is. Per datagram,
//!   the chain first moves (good → bad with probability `a`, bad → good with probability `b`),
//!   then the datagram is dropped if the chain is bad. A burst (a stay in the bad state) then
//!   lasts a geometric number of datagrams of mean `1 / b`, and the chain is bad a fraction
//!   `a / (a + b)` of the time; so for a loss rate `p` and a mean burst length `L`:
//!   `b = 1 / L` and `a = p b / (1 - p) = p / (L (1 - p))`. `a <= 1` needs `p <= L / (L + 1)`.
//!   Between two bursts at least one datagram goes through, so the runs of consecutive lost
//!   datagrams a receiver sees are exactly the bursts the relay counted.
//!
//! Which datagrams are subject to loss ([`Subject`]): by default only elayday DATA and PARITY
//! frames (magic `ELDY`, frame type byte at offset 5 equal to 1 or 4), so that probes and
//! tombstones always get through and the node does not think its loop broke; or every datagram.
//! Datagrams not subject to loss do not advance the random generator or the chain. Loss can also
//! be limited to one [`Direction`]: between a node and a reflector every datagram crosses the
//! relay twice per loop, so with `Direction::Both` a loop loses about `2p` of them.
//!
//! Reproducibility: the generator is SplitMix64 from the seed, and it is consulted once per
//! datagram subject to loss (in that order), so the same seed and the same sequence of datagrams
//! drop the same ones. Changing the loss model resets the chain to good; the generator goes on.
//!
//! Speed: one thread receives with `recvmmsg` (and GRO) and sends with `sendmmsg` (and GSO)
//! through elayday's own `udp::Receiver` and `udp::Sender`, with 64 MiB socket buffers, and
//! counts what the kernel dropped at its socket (`SO_RXQ_OVFL`): a test that needs the relay to
//! be lossless except by design should check [`LossyStats::kernel_drops`] is 0.
//! `cargo test --release --test lossy_relay -- --ignored --nocapture` measures the rate: on a
//! two-core machine, 1232-byte datagrams paced at 400,000 a second went through without a loss
//! (the ceiling, flat out, was 400,000 to 570,000 a second depending on the load), and a node
//! holding a 64 MiB value through [`LossyRelay::reflector`] at 0.2 s (about 300,000 datagrams a
//! second) lost none. In front of a real reflector every datagram crosses the relay twice per
//! loop, so the relay then carries twice the loop's rate.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use elayday::udp::{self, Batch, Outgoing, Receiver, Sender, SocketOptions};

/// The wire format's magic and the frame type codes the relay looks at (docs/wire-format.md).
const MAGIC: &[u8; 4] = b"ELDY";
const TYPE_OFFSET: usize = 5;
pub const FRAME_DATA: u8 = 1;
pub const FRAME_TOMBSTONE: u8 = 2;
pub const FRAME_PROBE: u8 = 3;
pub const FRAME_PARITY: u8 = 4;

/// How datagrams subject to loss are lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Loss {
    /// None are.
    None,
    /// Each one independently, with this probability (0..=1).
    Random(f64),
    /// In bursts (Gilbert–Elliott, see the module documentation): a long-run loss rate `p`
    /// (0..1) in bursts of `mean_len` (>= 1) datagrams on average.
    Bursts { p: f64, mean_len: f64 },
}

/// Which datagrams [`Loss`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    /// elayday DATA and PARITY frames only (the default): probes, tombstones and anything
    /// else always get through.
    DataAndParity,
    /// Every datagram.
    All,
}

/// Which way [`Loss`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways (the default).
    Both,
    /// Only to datagrams going to `to` (from the node to the reflector).
    Outbound,
    /// Only to datagrams coming back from `to`.
    Inbound,
}

/// Where datagrams go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Datagrams from `to` go back to whoever sent last from elsewhere; all others go to `to`
    /// (the default: between a node and a reflector).
    Reflect,
    /// Everything goes to `to` (one hop of a ring: node A -> relay -> node B).
    ForwardOnly,
    /// Everything goes back to its sender: the relay is the reflector itself (`to` is not
    /// used). Each datagram then crosses the relay once per loop instead of twice, so the
    /// relay carries half as much as in front of a real reflector, and the loss rate per loop
    /// is the configured one. Loss applies as for `Direction::Outbound`.
    Reflector,
}

/// How a [`LossyRelay`] starts.
#[derive(Debug, Clone)]
pub struct LossyOptions {
    /// The seed of its random generator.
    pub seed: u64,
    /// How long each datagram is held before it is sent on.
    pub delay: Duration,
    pub loss: Loss,
    pub subject: Subject,
    pub direction: Direction,
    pub routing: Routing,
    /// The largest datagram it carries; larger ones are dropped and counted as truncated.
    pub max_datagram: usize,
    /// Its kernel receive and send buffers, in bytes.
    pub socket_buffer: usize,
}

impl Default for LossyOptions {
    fn default() -> LossyOptions {
        LossyOptions {
            seed: 1,
            delay: Duration::ZERO,
            loss: Loss::None,
            subject: Subject::DataAndParity,
            direction: Direction::Both,
            routing: Routing::Reflect,
            max_datagram: 9216,
            socket_buffer: 64 << 20,
        }
    }
}

/// What a [`LossyRelay`] did so far. Counted per datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossyStats {
    /// Datagrams received.
    pub received: u64,
    /// Of those, datagrams subject to loss (the generator was consulted for each).
    pub subject: u64,
    /// Datagrams sent on (the kernel accepted them).
    pub forwarded: u64,
    /// Dropped by [`Loss::Random`].
    pub dropped_random: u64,
    /// Dropped by [`Loss::Bursts`] (in the bad state).
    pub dropped_burst: u64,
    /// Bursts started (good -> bad transitions).
    pub bursts: u64,
    /// Datagrams from `to` before anyone else had sent (nowhere to reflect them), dropped.
    pub unroutable: u64,
    /// Datagrams the kernel dropped at the relay's socket (its receive buffer was full): the
    /// relay did not keep up. Should stay 0. A lower bound: with GRO the kernel counts a dropped
    /// coalesced buffer once, however many datagrams (up to 64) it held.
    pub kernel_drops: u64,
    /// Datagrams larger than `max_datagram`, dropped.
    pub truncated: u64,
    /// Datagrams the kernel refused to send (destination unreachable...).
    pub send_failures: u64,
}

impl LossyStats {
    /// Datagrams dropped by the loss model.
    pub fn dropped(&self) -> u64 {
        self.dropped_random + self.dropped_burst
    }

    /// Datagrams received and done with: sent on, dropped, or refused by the kernel. Equal to
    /// `received` once the relay is idle; below it while datagrams are being sent or held for
    /// their delay (sends are counted when `sendmmsg` returns, after the receiver may already
    /// have them).
    pub fn settled(&self) -> u64 {
        self.forwarded + self.dropped() + self.unroutable + self.send_failures
    }

    /// What happened between `earlier` and these stats.
    pub fn since(&self, earlier: &LossyStats) -> LossyStats {
        LossyStats {
            received: self.received - earlier.received,
            subject: self.subject - earlier.subject,
            forwarded: self.forwarded - earlier.forwarded,
            dropped_random: self.dropped_random - earlier.dropped_random,
            dropped_burst: self.dropped_burst - earlier.dropped_burst,
            bursts: self.bursts - earlier.bursts,
            unroutable: self.unroutable - earlier.unroutable,
            kernel_drops: self.kernel_drops - earlier.kernel_drops,
            truncated: self.truncated - earlier.truncated,
            send_failures: self.send_failures - earlier.send_failures,
        }
    }
}

/// SplitMix64: tiny, fast, and good enough to drop datagrams with.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// What [`LossModel::decide`] says of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    DropRandom,
    /// Dropped in a burst; `starts` when this datagram opens a new one.
    DropBurst {
        starts: bool,
    },
}

/// The loss decision for a sequence of datagrams subject to loss: the generator and the
/// Gilbert–Elliott chain, without sockets (the relay runs one; tests can run one alone).
#[derive(Debug, Clone)]
pub struct LossModel {
    rng: SplitMix64,
    loss: Loss,
    /// The chain's transition probabilities (good -> bad, bad -> good) for `Loss::Bursts`.
    to_bad: f64,
    to_good: f64,
    bad: bool,
}

impl LossModel {
    pub fn new(seed: u64, loss: Loss) -> LossModel {
        let mut model = LossModel {
            rng: SplitMix64::new(seed),
            loss: Loss::None,
            to_bad: 0.0,
            to_good: 1.0,
            bad: false,
        };
        model.set_loss(loss);
        model
    }

    /// The Gilbert–Elliott transition probabilities (good -> bad, bad -> good) for a loss rate
    /// `p` in bursts of `mean_len` datagrams on average.
    pub fn burst_transitions(p: f64, mean_len: f64) -> (f64, f64) {
        assert!(
            (0.0..1.0).contains(&p),
            "burst loss rate {p} outside [0, 1)"
        );
        assert!(mean_len >= 1.0, "mean burst length {mean_len} below 1");
        let to_good = 1.0 / mean_len;
        let to_bad = p * to_good / (1.0 - p);
        assert!(
            to_bad <= 1.0,
            "a loss rate of {p} cannot come in bursts of {mean_len} on average \
             (needs p <= L / (L + 1))"
        );
        (to_bad, to_good)
    }

    /// Changes the model; the chain restarts in the good state, the generator goes on.
    pub fn set_loss(&mut self, loss: Loss) {
        match loss {
            Loss::None => {}
            Loss::Random(p) => assert!((0.0..=1.0).contains(&p), "loss rate {p}"),
            Loss::Bursts { p, mean_len } => {
                (self.to_bad, self.to_good) = LossModel::burst_transitions(p, mean_len);
            }
        }
        self.loss = loss;
        self.bad = false;
    }

    pub fn loss(&self) -> Loss {
        self.loss
    }

    /// Decides the fate of the next datagram subject to loss.
    pub fn decide(&mut self) -> Verdict {
        match self.loss {
            Loss::None => Verdict::Keep,
            Loss::Random(p) => {
                if self.rng.next_f64() < p {
                    Verdict::DropRandom
                } else {
                    Verdict::Keep
                }
            }
            Loss::Bursts { .. } => {
                let draw = self.rng.next_f64();
                let was_bad = self.bad;
                self.bad = if was_bad {
                    draw >= self.to_good
                } else {
                    draw < self.to_bad
                };
                if self.bad {
                    Verdict::DropBurst { starts: !was_bad }
                } else {
                    Verdict::Keep
                }
            }
        }
    }
}

/// What the test thread can change while the relay runs.
#[derive(Debug, Clone, Copy)]
struct Settings {
    loss: Loss,
    subject: Subject,
    direction: Direction,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    subject: AtomicU64,
    forwarded: AtomicU64,
    dropped_random: AtomicU64,
    dropped_burst: AtomicU64,
    bursts: AtomicU64,
    unroutable: AtomicU64,
    kernel_drops: AtomicU64,
    truncated: AtomicU64,
    send_failures: AtomicU64,
}

struct Shared {
    stop: AtomicBool,
    /// Bumped on every change of `settings`, so that the relay locks only then.
    generation: AtomicU64,
    settings: Mutex<Settings>,
    counters: Counters,
}

/// A lossy UDP link, running in its own thread until dropped. See the module documentation.
pub struct LossyRelay {
    /// Where to send datagrams for it to carry.
    pub addr: SocketAddr,
    pub to: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LossyRelay {
    /// A relay on `ip` (port chosen by the kernel) carrying datagrams to `to`.
    pub fn start(ip: &str, to: SocketAddr, options: LossyOptions) -> LossyRelay {
        let bind = ip
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .expect("an IP address");
        let buffers = SocketOptions {
            recv_buffer: options.socket_buffer,
            send_buffer: options.socket_buffer,
        };
        let socket = udp::bind(SocketAddr::new(bind, 0), &buffers)
            .expect("bind the lossy relay")
            .socket;
        socket
            .set_read_timeout(Some(IDLE_WAIT))
            .expect("read timeout");
        let addr = socket.local_addr().unwrap();
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            settings: Mutex::new(Settings {
                loss: options.loss,
                subject: options.subject,
                direction: options.direction,
            }),
            counters: Counters::default(),
        });
        // Check the model's parameters here, in the test thread, rather than panic in the relay.
        LossModel::new(options.seed, options.loss);
        let sender = Sender::new(socket.try_clone().expect("clone the relay socket"));
        let receiver = Receiver::new(socket, options.max_datagram);
        let mut worker = Worker {
            receiver,
            sender,
            batch: Batch::new(options.max_datagram),
            dests: vec![RawAddr::EMPTY; udp::BATCH_SLOTS],
            to,
            to_raw: RawAddr::of(to),
            other_side: None,
            routing: options.routing,
            delay: options.delay,
            held: VecDeque::new(),
            spare: Vec::new(),
            model: LossModel::new(options.seed, options.loss),
            settings: *shared.settings.lock().unwrap(),
            generation: 0,
            timeout: IDLE_WAIT,
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("lossy-relay".into())
            .spawn(move || worker.run())
            .expect("spawn the lossy relay");
        LossyRelay {
            addr,
            to,
            shared,
            thread: Some(thread),
        }
    }

    /// Between a node and a reflector at `to`, no delay, no loss until [`set_loss`] (only DATA
    /// and PARITY frames subject to it).
    ///
    /// [`set_loss`]: LossyRelay::set_loss
    pub fn reflecting(ip: &str, to: SocketAddr, seed: u64) -> LossyRelay {
        LossyRelay::start(
            ip,
            to,
            LossyOptions {
                seed,
                ..LossyOptions::default()
            },
        )
    }

    /// One hop of a ring: everything received goes to `to` (the next node) after `delay`; no
    /// loss until [`set_loss`](LossyRelay::set_loss).
    pub fn ring_hop(ip: &str, to: SocketAddr, delay: Duration, seed: u64) -> LossyRelay {
        LossyRelay::start(
            ip,
            to,
            LossyOptions {
                seed,
                delay,
                routing: Routing::ForwardOnly,
                ..LossyOptions::default()
            },
        )
    }

    /// A lossy reflector on `ip`: every datagram goes back to its sender after `delay`, so a
    /// node can use it as its `--destination` with no reflector process (see
    /// [`Routing::Reflector`]); no loss until [`set_loss`](LossyRelay::set_loss).
    pub fn reflector(ip: &str, delay: Duration, seed: u64) -> LossyRelay {
        let unused = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0);
        LossyRelay::start(
            ip,
            unused,
            LossyOptions {
                seed,
                delay,
                routing: Routing::Reflector,
                ..LossyOptions::default()
            },
        )
    }

    /// Changes the loss model from the next batch of datagrams on (the chain restarts good).
    /// Panics on impossible parameters.
    pub fn set_loss(&self, loss: Loss) {
        LossModel::new(0, loss); // checks the parameters
        self.update(|s| s.loss = loss);
    }

    /// Changes which datagrams are subject to loss.
    pub fn set_subject(&self, subject: Subject) {
        self.update(|s| s.subject = subject);
    }

    /// Changes which way loss applies.
    pub fn set_direction(&self, direction: Direction) {
        self.update(|s| s.direction = direction);
    }

    fn update(&self, change: impl FnOnce(&mut Settings)) {
        let mut settings = self.shared.settings.lock().unwrap();
        change(&mut settings);
        self.shared.generation.fetch_add(1, Ordering::Release);
    }

    /// The counters now.
    pub fn stats(&self) -> LossyStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LossyStats {
            received: get(&c.received),
            subject: get(&c.subject),
            forwarded: get(&c.forwarded),
            dropped_random: get(&c.dropped_random),
            dropped_burst: get(&c.dropped_burst),
            bursts: get(&c.bursts),
            unroutable: get(&c.unroutable),
            kernel_drops: get(&c.kernel_drops),
            truncated: get(&c.truncated),
            send_failures: get(&c.send_failures),
        }
    }
}

impl Drop for LossyRelay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How long a receive waits when nothing is held for later: also how soon a drop is noticed.
const IDLE_WAIT: Duration = Duration::from_millis(5);
/// How long a receive waits at most when datagrams are held: how late they may go out.
const HELD_WAIT: Duration = Duration::from_millis(1);

/// A raw socket address (`sockaddr_in` or `sockaddr_in6`) as the kernel lays it out, for
/// [`Outgoing::dest`].
#[derive(Clone, Copy)]
struct RawAddr {
    len: u8,
    bytes: [u8; 28],
}

impl RawAddr {
    const EMPTY: RawAddr = RawAddr {
        len: 0,
        bytes: [0; 28],
    };

    fn of(addr: SocketAddr) -> RawAddr {
        let addr = socket2::SockAddr::from(addr);
        RawAddr::from_bytes(udp::sockaddr_bytes(&addr))
    }

    fn from_bytes(raw: &[u8]) -> RawAddr {
        let mut addr = RawAddr::EMPTY;
        let len = raw.len().min(addr.bytes.len());
        addr.bytes[..len].copy_from_slice(&raw[..len]);
        addr.len = len as u8;
        addr
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// A datagram waiting for its delay to pass.
struct Held {
    due: Instant,
    dest: RawAddr,
    data: Vec<u8>,
}

struct Worker {
    receiver: Receiver,
    sender: Sender,
    batch: Batch,
    /// Where each datagram of `batch` goes.
    dests: Vec<RawAddr>,
    to: SocketAddr,
    to_raw: RawAddr,
    /// The last sender other than `to`, where datagrams from `to` go back.
    other_side: Option<RawAddr>,
    routing: Routing,
    delay: Duration,
    /// Datagrams waiting for their delay, oldest first, and the buffers of those sent.
    held: VecDeque<Held>,
    spare: Vec<Vec<u8>>,
    model: LossModel,
    settings: Settings,
    generation: u64,
    /// The receive timeout set on the socket now.
    timeout: Duration,
    shared: Arc<Shared>,
}

impl Worker {
    fn run(&mut self) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.send_due();
            self.wait_at_most(if self.held.is_empty() {
                IDLE_WAIT
            } else {
                HELD_WAIT
            });
            let report = match self.receiver.recv(&mut self.batch) {
                Ok(report) => report,
                Err(e) => panic!("lossy relay: receive failed: {e}"),
            };
            let counters = &self.shared.counters;
            counters
                .kernel_drops
                .fetch_add(report.kernel_drops, Ordering::Relaxed);
            counters
                .truncated
                .fetch_add(report.truncated as u64, Ordering::Relaxed);
            if report.received == 0 {
                continue;
            }
            self.refresh_settings();
            self.decide();
            if self.delay.is_zero() {
                self.send_batch();
            } else {
                self.hold_batch();
            }
        }
    }

    fn wait_at_most(&mut self, timeout: Duration) {
        if timeout != self.timeout {
            self.receiver
                .socket()
                .set_read_timeout(Some(timeout))
                .expect("read timeout");
            self.timeout = timeout;
        }
    }

    fn refresh_settings(&mut self) {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation != self.generation {
            let settings = *self.shared.settings.lock().unwrap();
            self.generation = generation;
            if settings.loss != self.settings.loss {
                self.model.set_loss(settings.loss);
            }
            self.settings = settings;
        }
    }

    /// Routes every datagram of the batch and discards those lost.
    fn decide(&mut self) {
        let counters = &self.shared.counters;
        let (mut subject, mut random, mut burst, mut bursts, mut unroutable) = (0, 0, 0, 0, 0);
        for i in 0..self.batch.len() {
            let outbound = match self.routing {
                Routing::ForwardOnly | Routing::Reflector => true,
                Routing::Reflect => self.batch.peer(i) != Some(self.to),
            };
            if self.routing == Routing::Reflector {
                self.dests[i] = RawAddr::from_bytes(self.batch.peer_bytes(i));
            } else if outbound {
                if self.routing == Routing::Reflect {
                    self.other_side = Some(RawAddr::from_bytes(self.batch.peer_bytes(i)));
                }
                self.dests[i] = self.to_raw;
            } else if let Some(back) = self.other_side {
                self.dests[i] = back;
            } else {
                self.batch.discard(i);
                unroutable += 1;
                continue;
            }
            let applies = match self.settings.direction {
                Direction::Both => true,
                Direction::Outbound => outbound,
                Direction::Inbound => !outbound,
            };
            if !applies || !is_subject(self.batch.datagram(i), self.settings.subject) {
                continue;
            }
            subject += 1;
            match self.model.decide() {
                Verdict::Keep => continue,
                Verdict::DropRandom => random += 1,
                Verdict::DropBurst { starts } => {
                    burst += 1;
                    bursts += u64::from(starts);
                }
            }
            self.batch.discard(i);
        }
        counters
            .received
            .fetch_add(self.batch.len() as u64, Ordering::Relaxed);
        counters.subject.fetch_add(subject, Ordering::Relaxed);
        counters.dropped_random.fetch_add(random, Ordering::Relaxed);
        counters.dropped_burst.fetch_add(burst, Ordering::Relaxed);
        counters.bursts.fetch_add(bursts, Ordering::Relaxed);
        counters.unroutable.fetch_add(unroutable, Ordering::Relaxed);
    }

    fn send_batch(&mut self) {
        let (batch, dests) = (&self.batch, &self.dests);
        let outgoing = (0..batch.len())
            .filter(|&i| batch.is_kept(i))
            .map(|i| Outgoing {
                payload: batch.datagram(i),
                dest: dests[i].as_slice(),
            });
        let report = self.sender.send_each(outgoing).expect("lossy relay: send");
        self.count_sent(report);
    }

    fn hold_batch(&mut self) {
        let due = Instant::now() + self.delay;
        for i in 0..self.batch.len() {
            if !self.batch.is_kept(i) {
                continue;
            }
            let mut data = self.spare.pop().unwrap_or_default();
            data.clear();
            data.extend_from_slice(self.batch.datagram(i));
            self.held.push_back(Held {
                due,
                dest: self.dests[i],
                data,
            });
        }
    }

    /// Sends the held datagrams whose delay has passed.
    fn send_due(&mut self) {
        if self.held.is_empty() {
            return;
        }
        let now = Instant::now();
        let due = self.held.partition_point(|h| h.due <= now);
        if due == 0 {
            return;
        }
        let outgoing = self.held.range(..due).map(|h| Outgoing {
            payload: &h.data,
            dest: h.dest.as_slice(),
        });
        let report = self.sender.send_each(outgoing).expect("lossy relay: send");
        self.count_sent(report);
        for held in self.held.drain(..due) {
            self.spare.push(held.data);
        }
    }

    fn count_sent(&self, report: udp::SendReport) {
        let counters = &self.shared.counters;
        counters
            .forwarded
            .fetch_add(report.sent as u64, Ordering::Relaxed);
        counters
            .send_failures
            .fetch_add(report.failed as u64, Ordering::Relaxed);
    }
}

/// Whether `datagram` is subject to loss.
fn is_subject(datagram: &[u8], subject: Subject) -> bool {
    match subject {
        Subject::All => true,
        Subject::DataAndParity => {
            datagram.len() > TYPE_OFFSET
                && datagram[..4] == MAGIC[..]
                && matches!(datagram[TYPE_OFFSET], FRAME_DATA | FRAME_PARITY)
        }
    }
}
