//! sim::scenario: everything a seed decides before the run starts — the topology, each link's
//! delays and faults, each node's configuration, clock and send rate, and the workload.
//!
//! A seed's profile is `Profile::ALL[seed % 9]`, so a seed alone names a run and a range of
//! seeds covers every profile; the rest is drawn from a generator seeded with the seed.

use std::fmt;

use elayday::node::core::{reassembly, Fec, Limits};
use elayday::wire::{self, Geometry, DATA_HEADER_LEN};

use super::rng::Rng;

/// Nanoseconds in a millisecond and a microsecond: simulated time is a u64 of nanoseconds.
pub const MS: u64 = 1_000_000;
pub const US: u64 = 1_000;

/// The longest key a workload uses.
const LONG_KEY_MAX: usize = 60;

/// The family of faults a seed runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// No fault at all: FIFO links, no loss, ample capacity, clocks nearly in step.
    FaultFree,
    /// Independent random loss.
    Lossy,
    /// Gilbert-Elliott bursts of loss.
    Bursty,
    /// Flipped, truncated and extended bytes, duplicates, garbage datagrams from outside.
    Corrupt,
    /// Links that reorder (random extra delay) and duplicate with a delay.
    Reorder,
    /// Links cut for a while, then healed.
    Partition,
    /// Wall clocks far apart, and stepping while the ring runs.
    Skew,
    /// Small memory limits, small buffers and slow senders: refusals and overflow.
    Tight,
    /// A bit of everything.
    Chaos,
}

impl Profile {
    pub const ALL: [Profile; 9] = [
        Profile::FaultFree,
        Profile::Lossy,
        Profile::Bursty,
        Profile::Corrupt,
        Profile::Reorder,
        Profile::Partition,
        Profile::Skew,
        Profile::Tight,
        Profile::Chaos,
    ];

    /// The profile that seed `seed` runs under.
    pub fn of_seed(seed: u64) -> Profile {
        Profile::ALL[(seed % Profile::ALL.len() as u64) as usize]
    }

    /// Position in [`Profile::ALL`]: the seeds of this profile are `index + 9 k`.
    pub fn index(self) -> u64 {
        Profile::ALL
            .iter()
            .position(|&p| p == self)
            .expect("listed") as u64
    }

    pub fn name(self) -> &'static str {
        match self {
            Profile::FaultFree => "fault-free",
            Profile::Lossy => "lossy",
            Profile::Bursty => "bursty",
            Profile::Corrupt => "corrupt",
            Profile::Reorder => "reorder",
            Profile::Partition => "partition",
            Profile::Skew => "skew",
            Profile::Tight => "tight",
            Profile::Chaos => "chaos",
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Gilbert-Elliott burst loss: the link turns bad with probability `enter` per datagram, good
/// again with `leave`, and loses a datagram with probability `loss` while bad.
#[derive(Debug, Clone)]
pub struct Burst {
    pub enter: f64,
    pub leave: f64,
    pub loss: f64,
}

/// Corruption modes, drawn per corrupted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    Flip,
    Truncate,
    Extend,
}

/// One directed hop.
#[derive(Debug, Clone)]
pub struct LinkSpec {
    /// Delay of every datagram.
    pub base: u64,
    /// Extra delay, uniform in `0..=jitter`.
    pub jitter: u64,
    /// Whether datagrams leave in the order they came (jitter then never reorders).
    pub fifo: bool,
    pub loss: f64,
    pub burst: Option<Burst>,
    pub dup: f64,
    /// Extra delay of a duplicate on a non-FIFO link, uniform in `0..=dup_extra`.
    pub dup_extra: u64,
    pub corrupt: f64,
    /// Intervals `[from, to)` during which the link delivers nothing.
    pub partitions: Vec<(u64, u64)>,
    /// Bytes in flight at most (bandwidth times delay); beyond it the link drops.
    pub capacity: u64,
}

impl LinkSpec {
    fn clean(base: u64) -> LinkSpec {
        LinkSpec {
            base,
            jitter: 0,
            fifo: true,
            loss: 0.0,
            burst: None,
            dup: 0.0,
            dup_extra: 0,
            corrupt: 0.0,
            partitions: Vec::new(),
            capacity: 8 << 20,
        }
    }

    /// The longest a datagram (or its duplicate) can take on this link.
    pub fn max_delay(&self) -> u64 {
        self.base + self.jitter + if self.fifo { 0 } else { self.dup_extra }
    }
}

/// A stripe shape for a node: mostly the default 32 + 8; stripes of a few fragments, which the
/// simulator's small values and datagrams fill (and whose single lost fragment is rebuilt or
/// kills the stripe); and no parity at all, in stripes of 32 or of the most the format allows
/// (the behaviour of format 1: every fragment counts).
fn draw_fec(rng: &mut Rng) -> Fec {
    let fec = |data, parity| Fec { data, parity };
    *rng.weighted(&[
        (45, fec(32, 8)),
        (10, fec(4, 2)),
        (10, fec(8, 2)),
        (8, fec(1, 1)),
        (5, fec(2, 5)),
        (10, fec(32, 0)),
        (12, fec(wire::MAX_STRIPE_DATA, 0)),
    ])
}

/// One node.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub id: u64,
    /// Wall clock minus true time, in ms, from the start.
    pub skew_ms: i64,
    /// Steps of the wall clock: from `at` on, the skew is the new value.
    pub steps: Vec<(u64, i64)>,
    /// The node's monotonic clock at simulated time 0.
    pub mono_offset: u64,
    /// Time to send one new frame (the send rate), in ns.
    pub frame_ns: u64,
    /// New frames that may go out back to back (the driver takes up to 1024 per turn).
    pub burst: u64,
    pub max_datagram: usize,
    pub limits: Limits,
    /// `CoreConfig::loop_timeout`, the floor of the broken-loop timeout.
    pub loop_timeout: u64,
    /// The stripes this node cuts its values into (`CoreConfig::fec`).
    pub fec: Fec,
}

impl NodeSpec {
    /// Skew of the wall clock at `t`.
    pub fn skew_at(&self, t: u64) -> i64 {
        self.steps
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .map_or(self.skew_ms, |(_, skew)| *skew)
    }
}

/// The reflector of a one-node loop.
#[derive(Debug, Clone)]
pub struct ReflectorSpec {
    pub delay: u64,
    /// Bytes held at once (`--max-buffer`); beyond it the reflector drops.
    pub capacity: u64,
}

/// What the clients do.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    pub keys: Vec<Vec<u8>>,
    /// Mean time between client actions.
    pub gap_mean: u64,
    /// Largest value written.
    pub value_max: usize,
    /// Chance that an action is a burst of concurrent requests.
    pub burst_chance: f64,
    /// Chance that a request's client gives up early (and cancels).
    pub impatient: f64,
    /// Weights of PUT, GET, DELETE and STATS.
    pub weights: [u32; 4],
}

/// Loss on every hop of a survival run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossSpec {
    /// Each datagram lost with this probability, independently.
    Random(f64),
    /// Gilbert-Elliott bursts: `rate` of the datagrams lost in all, in bursts of `mean`
    /// datagrams on average (every datagram lost while the link is bad).
    Burst { rate: f64, mean: f64 },
}

impl LossSpec {
    /// Puts this loss on `link`.
    pub fn apply(self, link: &mut LinkSpec) {
        match self {
            LossSpec::Random(p) => link.loss = p,
            LossSpec::Burst { rate, mean } => {
                let leave = 1.0 / mean;
                link.burst = Some(Burst {
                    enter: leave * rate / (1.0 - rate),
                    leave,
                    loss: 1.0,
                });
            }
        }
    }
}

impl fmt::Display for LossSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossSpec::Random(p) => write!(f, "{:.1} % random loss", p * 100.0),
            LossSpec::Burst { rate, mean } => {
                write!(f, "{:.1} % loss in bursts of {mean:.0}", rate * 100.0)
            }
        }
    }
}

/// A survival run: `values` values of `size_min` to `size_max` bytes (log-uniform) written
/// and confirmed on a fault-free loop, then `loss` on every hop for `laps` laps, then every
/// value read back (GETs on the nodes in turn, `gets_at_once` at a time) while the loss goes
/// on; then the loss stops, and the census follows a few laps later.
#[derive(Debug, Clone)]
pub struct Survival {
    pub seed: u64,
    /// Nodes in the ring; 1 is a node and a reflector.
    pub nodes: usize,
    pub values: usize,
    pub size_min: usize,
    pub size_max: usize,
    pub loss: LossSpec,
    pub laps: u64,
    pub fec: Fec,
    pub period: u64,
    pub max_datagram: usize,
    pub gets_at_once: usize,
}

impl Survival {
    /// One line that says what this run is.
    pub fn describe(&self) -> String {
        let topology = match self.nodes {
            1 => "1 node + reflector".to_string(),
            n => format!("ring of {n}"),
        };
        format!(
            "survival seed {} ({topology}, {} values of {} B to {} B, fec {}+{}, {} B \
             datagrams, {} for {} laps of {:.0} ms)",
            self.seed,
            self.values,
            self.size_min,
            self.size_max,
            self.fec.data,
            self.fec.parity,
            self.max_datagram,
            self.loss,
            self.laps,
            self.period as f64 / MS as f64
        )
    }
}

/// A whole run, decided by its seed.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub seed: u64,
    pub profile: Profile,
    pub nodes: Vec<NodeSpec>,
    /// Link `i` leaves node `i`; with a reflector, link 0 goes to it and link 1 comes back.
    pub links: Vec<LinkSpec>,
    pub reflector: Option<ReflectorSpec>,
    pub workload: WorkloadSpec,
    /// Clients act during `0..issue_for`; the run then drains.
    pub issue_for: u64,
    /// Mean gap between garbage datagrams thrown at the nodes, if any.
    pub garbage_gap: Option<u64>,
    pub corruption: Vec<Corruption>,
    /// Wall-clock milliseconds at simulated time 0.
    pub epoch_ms: u64,
    /// A survival run's script, in place of the clients' random workload.
    pub survival: Option<Survival>,
}

impl Scenario {
    /// The run of `seed`.
    pub fn from_seed(seed: u64) -> Scenario {
        let profile = Profile::of_seed(seed);
        let mut rng = Rng::new(seed ^ 0x51e1_a7da_7a11_0e5e);
        let reflected = rng.chance(0.35);
        let n = if reflected {
            1
        } else {
            rng.range(2, 5) as usize
        };
        let period = *rng.weighted(&[
            (35, 10 * MS),
            (25, 20 * MS),
            (20, 50 * MS),
            (12, 100 * MS),
            (8, 500 * MS),
        ]);
        let period = period + rng.below(period / 4);

        // Topology: a reflector holds most of the period, a ring splits it among its links.
        let mut links = Vec::new();
        let reflector = if reflected {
            let hop = period / 20 + 1;
            links.push(LinkSpec::clean(hop));
            links.push(LinkSpec::clean(hop));
            Some(ReflectorSpec {
                delay: period - 2 * hop,
                capacity: 8 << 20,
            })
        } else {
            let mut weights: Vec<u64> = (0..n).map(|_| rng.range(1, 4)).collect();
            let total: u64 = weights.iter().sum();
            for w in &mut weights {
                links.push(LinkSpec::clean((period * *w / total).max(US)));
            }
            None
        };

        // Faults by profile.
        let hops = links.len();
        let mut corruption = vec![Corruption::Flip];
        let mut garbage_gap = None;
        let mut skew_span = 50;
        let mut steps = false;
        match profile {
            Profile::FaultFree => {}
            Profile::Lossy => {
                for l in &mut links {
                    l.loss = if rng.chance(0.3) {
                        0.0
                    } else {
                        rng.float(0.0002, 0.01)
                    };
                }
            }
            Profile::Bursty => {
                for l in &mut links {
                    l.burst = Some(Burst {
                        enter: rng.float(0.0002, 0.004),
                        leave: rng.float(0.05, 0.4),
                        loss: rng.float(0.5, 1.0),
                    });
                }
            }
            Profile::Corrupt => {
                corruption = vec![Corruption::Flip, Corruption::Truncate, Corruption::Extend];
                garbage_gap = Some(period / rng.range(1, 8));
                for l in &mut links {
                    l.corrupt = rng.float(0.0005, 0.01);
                    l.dup = if rng.chance(0.5) {
                        rng.float(0.0, 0.001)
                    } else {
                        0.0
                    };
                }
            }
            Profile::Reorder => {
                for l in &mut links {
                    l.fifo = false;
                    l.jitter = (l.base as f64 * rng.float(0.05, 1.0)) as u64;
                    l.dup = if rng.chance(0.5) {
                        rng.float(0.0, 0.0005)
                    } else {
                        0.0
                    };
                    l.dup_extra = l.base;
                }
            }
            Profile::Partition => {
                for l in &mut links {
                    l.loss = if rng.chance(0.5) { 0.0 } else { 0.0005 };
                }
            }
            Profile::Skew => {
                skew_span = *rng.pick(&[2_000, 30_000, 600_000]);
                steps = true;
                for l in &mut links {
                    l.loss = if rng.chance(0.5) { 0.0 } else { 0.0005 };
                }
            }
            Profile::Tight => {
                for l in &mut links {
                    l.loss = if rng.chance(0.5) { 0.0 } else { 0.0005 };
                }
            }
            Profile::Chaos => {
                corruption = vec![Corruption::Flip, Corruption::Truncate, Corruption::Extend];
                if rng.chance(0.5) {
                    garbage_gap = Some(period / rng.range(1, 4));
                }
                skew_span = 5_000;
                steps = rng.chance(0.5);
                let reorder = rng.chance(0.4);
                for l in &mut links {
                    l.loss = if rng.chance(0.5) {
                        rng.float(0.0, 0.005)
                    } else {
                        0.0
                    };
                    if rng.chance(0.4) {
                        l.burst = Some(Burst {
                            enter: rng.float(0.0002, 0.002),
                            leave: rng.float(0.1, 0.5),
                            loss: rng.float(0.3, 1.0),
                        });
                    }
                    l.corrupt = if rng.chance(0.5) {
                        rng.float(0.0, 0.005)
                    } else {
                        0.0
                    };
                    l.dup = if rng.chance(0.3) {
                        rng.float(0.0, 0.0005)
                    } else {
                        0.0
                    };
                    if reorder {
                        l.fifo = false;
                        l.jitter = (l.base as f64 * rng.float(0.0, 0.5)) as u64;
                        l.dup_extra = l.base / 2;
                    } else {
                        l.jitter = (l.base as f64 * rng.float(0.0, 0.3)) as u64;
                    }
                }
            }
        }

        let period_max: u64 = links.iter().map(LinkSpec::max_delay).sum::<u64>()
            + reflector.as_ref().map_or(0, |r| r.delay);
        let laps = rng.range(120, 240);
        let issue_for = period * laps;

        // Partitions: each cuts one link for a while, from a fraction of a period to several
        // (longer than the loop timeout, so the loop breaks and heals).
        let cuts = match profile {
            Profile::Partition => rng.range(1, 3),
            Profile::Chaos if rng.chance(0.3) => 1,
            _ => 0,
        };
        for _ in 0..cuts {
            let link = rng.below(hops as u64) as usize;
            let from = issue_for / 10 + rng.below(issue_for * 7 / 10);
            let len = period_max / 2 + rng.below(period_max * 8);
            links[link].partitions.push((from, from + len));
        }

        // Nodes.
        let max_datagram = *rng.pick(&[120, 200, 300, 576, 1232]);
        let tight = profile == Profile::Tight || (profile == Profile::Chaos && rng.chance(0.3));
        let frame_ns = if tight {
            *rng.pick(&[250 * US, 100 * US, 20 * US])
        } else {
            *rng.weighted(&[(20, 200 * US), (40, 20 * US), (40, US)])
        };
        let floor = period_max * 3 + rng.below(period_max) + MS;
        let value_cap = if tight {
            rng.range(1_000, 20_000)
        } else {
            1 << 20
        };
        // Stripe shapes and repair budgets come from a generator of their own, so that the rest
        // of a seed (topology, faults, workload) is what it was before the wire format had
        // stripes: the regression seeds still run the situations that found their bugs.
        let mut fec_rng = Rng::new(seed ^ 0x0fec_57a1_9e5a_11ce);
        let mixed = fec_rng.chance(0.2);
        let seed_fec = draw_fec(&mut fec_rng);
        let fecs: Vec<Fec> = (0..n)
            .map(|_| {
                if mixed {
                    draw_fec(&mut fec_rng)
                } else {
                    seed_fec
                }
            })
            .collect();
        // The least --max-reassembly that holds the largest value: the CLI's least, or more
        // with the simulator's small datagrams (many stripes of few fragments of a few bytes,
        // with the longest key of the workload below), for the shape of any node's values.
        let chunk_least = wire::max_chunk_len(max_datagram, LONG_KEY_MAX) as u16;
        let reassembly_least = fecs
            .iter()
            .map(|fec| {
                reassembly::cost(&Geometry {
                    value_len: value_cap,
                    chunk_len: chunk_least,
                    data: fec.data,
                    parity: fec.parity,
                })
            })
            .fold(Limits::min_reassembly(value_cap), u64::max);
        let max_repair = if tight && fec_rng.chance(0.5) {
            // Room for a few small stripes: some pass untracked (`repair_full`).
            fec_rng.range(2_000, 60_000)
        } else {
            4 << 20
        };
        let limits = if tight {
            Limits {
                max_value_size: value_cap,
                max_requests: rng.range(2, 12) as usize,
                max_write_backlog: value_cap + rng.below(30_000),
                max_reassembly: if rng.chance(0.3) {
                    reassembly_least
                } else {
                    reassembly_least + rng.below(30_000)
                },
                max_records: rng.range(1, 6) as usize,
                max_repair,
            }
        } else {
            Limits {
                max_value_size: value_cap,
                max_requests: 256,
                max_write_backlog: 4 << 20,
                max_reassembly: 4 << 20,
                max_records: 256,
                max_repair,
            }
        };
        let mut ids = Vec::new();
        while ids.len() < n {
            let id = rng.next_u64() | 1;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let nodes = ids
            .into_iter()
            .zip(fecs)
            .map(|(id, fec)| {
                let skew_ms = rng.range(0, 2 * skew_span) as i64 - skew_span as i64;
                let mut node_steps = Vec::new();
                if steps && rng.chance(0.6) {
                    let at = rng.below(issue_for);
                    let jump = rng.range(100, 5_000) as i64 * if rng.chance(0.5) { 1 } else { -1 };
                    node_steps.push((at, skew_ms + jump));
                }
                NodeSpec {
                    id,
                    skew_ms,
                    steps: node_steps,
                    mono_offset: rng.below(1 << 40),
                    frame_ns,
                    burst: 1024,
                    max_datagram,
                    limits,
                    loop_timeout: floor,
                    fec,
                }
            })
            .collect();

        if tight {
            for l in &mut links {
                l.capacity = rng.range(20_000, 400_000);
            }
        }
        let reflector = reflector.map(|mut r| {
            if tight || (profile == Profile::Chaos && rng.chance(0.3)) {
                r.capacity = rng.range(10_000, 200_000);
            }
            r
        });

        // Workload: a few keys (one of them long), values up to ~300 fragments.
        let key_count = rng.range(2, 8) as usize;
        let mut keys: Vec<Vec<u8>> = (0..key_count)
            .map(|i| format!("k{i}").into_bytes())
            .collect();
        if rng.chance(0.3) {
            let len = rng.range(20, LONG_KEY_MAX as u64) as usize;
            let mut long = vec![b'L'; len];
            long[0] = b'l';
            keys.push(long);
        }
        let chunk_min =
            max_datagram - DATA_HEADER_LEN - keys.iter().map(Vec::len).max().unwrap_or(1);
        let value_max = (chunk_min * 300).min(20_000).min(value_cap as usize);
        let ops_per_lap = *rng.pick(&[0.5, 1.5, 4.0]);
        let workload = WorkloadSpec {
            keys,
            gap_mean: ((period as f64) / ops_per_lap) as u64,
            value_max,
            burst_chance: rng.float(0.0, 0.1),
            impatient: rng.float(0.0, 0.2),
            weights: [40, 40, 15, 5],
        };

        Scenario {
            seed,
            profile,
            nodes,
            links,
            reflector,
            workload,
            issue_for,
            garbage_gap,
            corruption,
            epoch_ms: 1_764_000_000_000 + rng.below(1 << 30),
            survival: None,
        }
    }

    /// The world of survival run `s`: fault-free until the script turns the loss on, nodes
    /// that send a frame a microsecond with room for everything, links and a reflector that
    /// never overflow.
    pub fn survival(s: &Survival) -> Scenario {
        let mut rng = Rng::new(s.seed ^ 0x5eed_0f5a_7e11_17e5);
        let mut links = Vec::new();
        let reflector = if s.nodes == 1 {
            let hop = s.period / 20 + 1;
            links.push(LinkSpec::clean(hop));
            links.push(LinkSpec::clean(hop));
            Some(ReflectorSpec {
                delay: s.period - 2 * hop,
                capacity: u64::MAX / 4,
            })
        } else {
            for _ in 0..s.nodes {
                links.push(LinkSpec::clean(s.period / s.nodes as u64));
            }
            None
        };
        for link in &mut links {
            link.capacity = u64::MAX / 4;
        }
        let period_max: u64 = links.iter().map(LinkSpec::max_delay).sum::<u64>()
            + reflector.as_ref().map_or(0, |r| r.delay);
        let value_cap = s.size_max as u64;
        let limits = Limits {
            max_value_size: value_cap,
            max_requests: 1 << 20,
            max_write_backlog: 1 << 32,
            max_reassembly: 1 << 30,
            max_records: 1 << 20,
            max_repair: Limits::defaults(value_cap).max_repair,
        };
        let mut ids = Vec::new();
        while ids.len() < s.nodes {
            let id = rng.next_u64() | 1;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let nodes = ids
            .into_iter()
            .map(|id| NodeSpec {
                id,
                skew_ms: 0,
                steps: Vec::new(),
                mono_offset: rng.below(1 << 40),
                frame_ns: US,
                burst: 1024,
                max_datagram: s.max_datagram,
                limits,
                loop_timeout: 3 * period_max + MS,
                fec: s.fec,
            })
            .collect();
        let profile = match s.loss {
            LossSpec::Random(_) => Profile::Lossy,
            LossSpec::Burst { .. } => Profile::Bursty,
        };
        Scenario {
            seed: s.seed,
            profile,
            nodes,
            links,
            reflector,
            workload: WorkloadSpec {
                keys: (0..s.values)
                    .map(|i| format!("v{i}").into_bytes())
                    .collect(),
                gap_mean: s.period,
                value_max: s.size_max,
                burst_chance: 0.0,
                impatient: 0.0,
                weights: [1, 1, 0, 0],
            },
            // Until the script is done (it sets the end).
            issue_for: u64::MAX / 4,
            garbage_gap: None,
            corruption: vec![Corruption::Flip],
            epoch_ms: 1_764_000_000_000 + rng.below(1 << 30),
            survival: Some(s.clone()),
        }
    }

    /// The loop period with no fault: the sum of the links' base delays and the reflector's.
    pub fn period(&self) -> u64 {
        self.links.iter().map(|l| l.base).sum::<u64>()
            + self.reflector.as_ref().map_or(0, |r| r.delay)
    }

    /// The longest a datagram can take to go round: every link at its worst (jitter, delayed
    /// duplicates) plus the reflector.
    pub fn period_max(&self) -> u64 {
        self.links.iter().map(LinkSpec::max_delay).sum::<u64>()
            + self.reflector.as_ref().map_or(0, |r| r.delay)
    }

    /// Whether every link keeps the order of its datagrams.
    pub fn fifo(&self) -> bool {
        self.links.iter().all(|l| l.fifo)
    }

    /// Whether any link is ever cut.
    pub fn partitioned(&self) -> bool {
        self.links.iter().any(|l| !l.partitions.is_empty())
    }

    /// The hop after link `link`: `Some(node)`, or `None` for the reflector.
    pub fn link_target(&self, link: usize) -> Option<usize> {
        if self.reflector.is_some() {
            (link == 1).then_some(0)
        } else {
            Some((link + 1) % self.nodes.len())
        }
    }

    /// One line that says what this run is.
    pub fn describe(&self) -> String {
        if let Some(s) = &self.survival {
            return s.describe();
        }
        let topology = match &self.reflector {
            Some(r) => format!("1 node + reflector ({} KB)", r.capacity / 1000),
            None => format!("ring of {}", self.nodes.len()),
        };
        let n = &self.nodes[0];
        let fec = |f: &Fec| format!("{}+{}", f.data, f.parity);
        let fecs: Vec<String> = self.nodes.iter().map(|n| fec(&n.fec)).collect();
        let fec = if fecs.iter().all(|f| *f == fecs[0]) {
            fecs[0].clone()
        } else {
            fecs.join("/")
        };
        format!(
            "seed {} ({}, {topology}, period {:.1} ms (max {:.1}), fec {fec}, {} B datagrams, {} \
             frames/ms, {} keys, values up to {} B)",
            self.seed,
            self.profile,
            self.period() as f64 / MS as f64,
            self.period_max() as f64 / MS as f64,
            n.max_datagram,
            MS / n.frame_ns,
            self.workload.keys.len(),
            self.workload.value_max,
        )
    }
}
