//! sim::survival: the script of a survival run ([`super::scenario::Survival`]) in place of the
//! clients' random workload — every value written and confirmed on a fault-free loop, then loss
//! on every hop for a number of laps, then every value read back while the loss goes on — and
//! what it found ([`SurvivalReport`]).
//!
//! Every invariant of the world holds throughout (a GET that does not return its value must
//! have had a stripe short of its data count while it waited, a PUT is answered OK only when its
//! stripes came back, ...); this part adds that every PUT of the first phase is confirmed, and
//! counts what survived: the values whose every stripe still has its data count in the network
//! when the reads start (the simulator's own count), and the GETs that returned their value. The
//! calm and the census at the end of every run follow (`census.rs`). It makes requests with
//! `clients.rs` and reads the cores' figures; it never drives a core otherwise.

use elayday::node::core::{FailureKind, IoFigures};

use super::clients::OpKind;
use super::oracle::{Op, Outcome};
use super::rng::Rng;
use super::summary::SurvivalReport;
use super::world::{Ev, World};

/// Where a survival run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The loop has not closed yet.
    Starting,
    /// PUTs made, not all answered.
    Writing,
    /// Every value confirmed; loss on every hop until `until`.
    Lossy {
        until: u64,
    },
    /// Reading every value back, the loss going on.
    Reading,
    Done,
}

/// The state of a survival run.
#[derive(Debug)]
pub struct SurvivalRun {
    pub phase: Phase,
    /// Each value's write.
    writes: Vec<usize>,
    /// GETs made, by value.
    gets: Vec<usize>,
    pub report: SurvivalReport,
}

impl World {
    /// A survival run starts: its first step once the loop has had time to close.
    pub(super) fn start_survival(&mut self) {
        let s = self.sc.survival.as_ref().expect("a survival run");
        let values = s.values;
        self.survival = Some(SurvivalRun {
            phase: Phase::Starting,
            writes: Vec::with_capacity(values),
            gets: Vec::with_capacity(values),
            report: SurvivalReport::default(),
        });
        self.push(2 * self.p_max, Ev::Client);
    }

    /// The next step of the script.
    pub(super) fn survival_step(&mut self) {
        let s = self.sc.survival.clone().expect("a survival run");
        let phase = self.survival.as_ref().expect("started").phase;
        let poll = self.now + self.p_max / 4;
        match phase {
            Phase::Starting => {
                if self.nodes.iter().any(|n| !n.closed) {
                    return self.push(poll, Ev::Client);
                }
                let mut rng = Rng::new(s.seed ^ 0x0da7_a5e7_0ff1_e1d5);
                let (lo, hi) = ((s.size_min as f64).ln(), (s.size_max as f64).ln());
                for i in 0..s.values {
                    let len = (lo + (hi - lo) * rng.unit()).exp() as usize;
                    let mut value = vec![0; len.clamp(s.size_min, s.size_max)];
                    rng.fill(&mut value);
                    let w = self.writes.len();
                    self.issue(i % self.nodes.len(), OpKind::Put(value), i as u16);
                    self.survival.as_mut().expect("started").writes.push(w);
                }
                self.survival.as_mut().expect("started").phase = Phase::Writing;
                self.push(poll, Ev::Client);
            }
            Phase::Writing => {
                let run = self.survival.as_ref().expect("started");
                let writes = run.writes.clone();
                let pending = writes
                    .iter()
                    .any(|&w| !self.writes[w].resolved || !self.writes[w].fully_sent());
                if pending {
                    return self.push(poll, Ev::Client);
                }
                let mut report = SurvivalReport::default();
                for &w in &writes {
                    let write = &self.writes[w];
                    if !write.confirmed {
                        self.fail(format!(
                            "write #{w} ({} bytes) was not confirmed on a fault-free loop: {:?}",
                            write.value.len(),
                            self.requests[write.req].answer
                        ));
                    }
                    report.values += 1;
                    report.bytes += write.value.len() as u64;
                    report.datagrams += u64::from(write.count);
                    report.narrow += u64::from(write.stripes() == 1);
                }
                report.laps = s.laps;
                for link in &mut self.links {
                    s.loss.apply(&mut link.spec);
                }
                self.trace(|| format!("{} on every hop from now", s.loss));
                let until = self.now + s.laps * self.sc.period();
                let run = self.survival.as_mut().expect("started");
                run.report = report;
                run.phase = Phase::Lossy { until };
                self.push(until, Ev::Client);
            }
            Phase::Lossy { until } => {
                if self.now < until {
                    return self.push(until, Ev::Client);
                }
                let (lost, lost_narrow) = self.values_lost();
                let run = self.survival.as_ref().expect("started");
                let from = until - s.laps * self.sc.period();
                let first = run
                    .writes
                    .iter()
                    .filter_map(|&w| self.writes[w].died)
                    .map(|(at, _)| at)
                    .min();
                let lap = first.map(|at| at.saturating_sub(from) as f64 / self.sc.period() as f64);
                let run = self.survival.as_mut().expect("started");
                run.report.lost = lost;
                run.report.lost_narrow = lost_narrow;
                run.report.first_death_lap = lap;
                run.phase = Phase::Reading;
                self.survival_step();
            }
            Phase::Reading => {
                let run = self.survival.as_ref().expect("started");
                let (next, writes) = (run.gets.len(), run.writes.len());
                let open = run
                    .gets
                    .iter()
                    .filter(|&&id| self.requests[id].answer.is_none())
                    .count();
                let room = s.gets_at_once.saturating_sub(open);
                for i in next..(next + room).min(writes) {
                    let id = self.requests.len();
                    let n = (i + 1) % self.nodes.len();
                    self.issue(n, OpKind::Get, i as u16);
                    self.survival.as_mut().expect("started").gets.push(id);
                }
                let run = self.survival.as_ref().expect("started");
                let answered = run
                    .gets
                    .iter()
                    .all(|&id| self.requests[id].answer.is_some());
                if run.gets.len() < writes || !answered {
                    return self.push(self.now + self.p_max / 8, Ev::Client);
                }
                self.finish_reading();
            }
            Phase::Done => {}
        }
    }

    /// Every GET is answered: count them, and let the run calm down.
    fn finish_reading(&mut self) {
        let run = self.survival.as_ref().expect("started");
        let (mut read, mut unreadable, mut unavailable) = (0, 0, 0);
        for &id in &run.gets {
            let r = &self.requests[id];
            debug_assert_eq!(r.op, Op::Get);
            match r.answer.map(|(_, outcome)| outcome) {
                Some(Outcome::Value) => read += 1,
                Some(Outcome::Failed(FailureKind::DataLoss | FailureKind::NotFound)) => {
                    unreadable += 1
                }
                // The loop declared broken: no probe came back for three laps.
                Some(Outcome::Failed(FailureKind::Unavailable)) => unavailable += 1,
                other => self.fail(format!(
                    "GET #{id} of {} on node {} answered {other:?}",
                    self.key_name(r.key),
                    r.node
                )),
            }
        }
        let run = self.survival.as_mut().expect("started");
        run.report.read = read;
        run.report.unreadable = unreadable;
        run.report.unavailable = unavailable;
        run.phase = Phase::Done;
        // No request is open: the run calms down at its next event (`event_loop.rs`).
        self.sc.issue_for = self.now;
    }

    /// Values with a stripe short of its data count in the network now, and of those the
    /// narrow ones (a single stripe).
    fn values_lost(&self) -> (u64, u64) {
        let run = self.survival.as_ref().expect("started");
        let mut lost = (0, 0);
        for &w in &run.writes {
            let write = &self.writes[w];
            let short = (0..write.stripes()).any(|s| {
                let live = write
                    .positions(s)
                    .filter(|&p| write.live[p as usize] > 0)
                    .count();
                live < usize::from(write.geometry.data_in(s))
            });
            if short {
                lost.0 += 1;
                lost.1 += u64::from(write.stripes() == 1);
                self.trace(|| {
                    let (at, stripe) = write.died.unwrap_or_default();
                    format!(
                        "lost: write #{w} ({} bytes, {} stripes), stripe {stripe} short since {} \
                         ({} of its positions ever lost, {} datagrams rebuilt)",
                        write.value.len(),
                        write.stripes(),
                        Self::ms(at),
                        write.lost_in[stripe as usize],
                        write.repaired
                    )
                });
            }
        }
        lost
    }

    /// The report of a survival run, with the run's figures, once it is over.
    pub(super) fn survival_report(&self) -> Option<SurvivalReport> {
        let run = self.survival.as_ref()?;
        let mut report = run.report.clone();
        report.destroyed = self.summary.destroyed;
        report.repaired = self.summary.repaired;
        report.duplicates = self.summary.duplicates;
        report.unrecoverable = (0..self.nodes.len())
            .map(|n| {
                let now = self.now_of(n);
                let stats = self.nodes[n].core.stats(now, IoFigures::default());
                stats.repair.unrecoverable
            })
            .sum();
        report.census = self.summary.census.unwrap_or_default();
        report.known = self.summary.known;
        report.events = self.summary.events;
        report.laps_total = self.now as f64 / self.sc.period() as f64;
        Some(report)
    }
}
