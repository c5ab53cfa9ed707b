//! sim::scenario: everything a seed decides before the run starts — the topology, each link's
//! delays and faults, each node's configuration, clock and send rate, and the workload.
//!
//! A seed's profile is `Profile::ALL[seed % 9]`, so a seed alone names a run and a range of
//! seeds covers every profile; the rest is drawn from a generator seeded with the seed.

use std::fmt;

use elayday::node::core::{reassembly, Limits};
use elayday::wire::{self, DATA_HEADER_LEN};

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
        // The least --max-reassembly that holds the largest value: the CLI's least, or more
        // with the simulator's small datagrams (a bit per fragment of at least 8 bytes, with the
        // longest key of the workload below).
        let chunk_least = (max_datagram - DATA_HEADER_LEN - LONG_KEY_MAX) as u16;
        let reassembly_least = Limits::min_reassembly(value_cap).max(reassembly::cost(
            value_cap,
            wire::fragment_count(value_cap, chunk_least) as u32,
        ));
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
            }
        } else {
            Limits {
                max_value_size: value_cap,
                max_requests: 256,
                max_write_backlog: 4 << 20,
                max_reassembly: 4 << 20,
                max_records: 256,
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
            .map(|id| {
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
        let chunk_min = max_datagram - 52 - keys.iter().map(Vec::len).max().unwrap_or(1);
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
        let topology = match &self.reflector {
            Some(r) => format!("1 node + reflector ({} KB)", r.capacity / 1000),
            None => format!("ring of {}", self.nodes.len()),
        };
        let n = &self.nodes[0];
        format!(
            "seed {} ({}, {topology}, period {:.1} ms (max {:.1}), {} B datagrams, {} frames/ms, \
             {} keys, values up to {} B)",
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
