//! node::core::probes: the probes that time the loop, and what they tell.
//!
//! It owns the probe schedule (a steady beat, plus an early one when a GET or a write waits for
//! one), the probes still out (at most [`MAX_OUTSTANDING`]), the loop period (last, min, max),
//! what circulated during the last period, and whether the loop is closed, never was, or broke.
//! It must not write frames or answer requests: the core asks it when a probe is due and tells
//! it when one is sent or comes back.

use std::collections::VecDeque;
use std::time::Duration;

/// Unanswered probes remembered; past this, older ones are forgotten (the loop is broken anyway).
pub const MAX_OUTSTANDING: usize = 4096;

/// Running totals of data datagrams forwarded; the difference between two probes is what
/// circulates in the loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub datagrams: u64,
    pub bytes: u64,
    pub values: u64,
}

struct Sent {
    seq: u64,
    sent_at: Duration,
    totals: Totals,
}

/// The probe schedule and the loop's timing.
pub struct Probes {
    out: VecDeque<Sent>,
    next_seq: u64,
    next_at: Duration,
    last_sent_at: Option<Duration>,
    wanted: bool,
    silent_since: Option<Duration>,
    ever_closed: bool,
    broken: bool,
    last: Option<Duration>,
    min: Option<Duration>,
    max: Option<Duration>,
    circulating: Totals,
    last_logged: Option<Duration>,
    last_logged_at: Option<Duration>,
}

impl Probes {
    /// A schedule whose first probe is due at `now`.
    pub fn new(now: Duration) -> Probes {
        Probes {
            out: VecDeque::new(),
            next_seq: 0,
            next_at: now,
            last_sent_at: None,
            wanted: true,
            silent_since: None,
            ever_closed: false,
            broken: false,
            last: None,
            min: None,
            max: None,
            circulating: Totals::default(),
            last_logged: None,
            last_logged_at: None,
        }
    }

    /// Asks for a probe soon; returns the sequence number of the next one sent, whose return
    /// proves that everything sent before it had a full lap.
    pub fn want(&mut self) -> u64 {
        self.wanted = true;
        self.next_seq
    }

    /// The sequence number of the next probe.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// When the next probe is due.
    pub fn next_due(&self) -> Duration {
        if self.wanted {
            let spaced = self
                .last_sent_at
                .map_or(Duration::ZERO, |at| at + self.spacing());
            self.next_at.min(spaced)
        } else {
            self.next_at
        }
    }

    /// Whether a probe is due at `now`.
    pub fn due(&self, now: Duration) -> bool {
        now >= self.next_due()
    }

    /// A probe was sent at `now`, when the data totals were `totals`.
    pub fn sent(&mut self, now: Duration, totals: Totals) {
        if self.out.len() == MAX_OUTSTANDING {
            self.out.pop_front();
        }
        self.out.push_back(Sent {
            seq: self.next_seq,
            sent_at: now,
            totals,
        });
        self.silent_since.get_or_insert(now);
        self.next_seq += 1;
        self.wanted = false;
        self.last_sent_at = Some(now);
        self.next_at = now + self.interval();
    }

    /// Probes still out.
    pub fn outstanding(&self) -> usize {
        self.out.len()
    }

    /// Our probe `seq` came back at `now`, when the data totals were `totals`. Returns `seq`
    /// if it was one still out (not a duplicate, nor one forgotten or forged).
    pub fn returned(&mut self, seq: u64, now: Duration, totals: Totals) -> Option<u64> {
        if self.out.front().is_none_or(|p| p.seq > seq) || self.out.back()?.seq < seq {
            return None;
        }
        let mut matched = None;
        while let Some(front) = self.out.front() {
            if front.seq > seq {
                break;
            }
            let probe = self.out.pop_front().expect("front exists");
            if probe.seq == seq {
                matched = Some(probe);
            }
        }
        let probe = matched?;
        let period = now.saturating_sub(probe.sent_at);
        self.last = Some(period);
        self.min = Some(self.min.map_or(period, |m| m.min(period)));
        self.max = Some(self.max.map_or(period, |m| m.max(period)));
        self.circulating = Totals {
            datagrams: totals.datagrams - probe.totals.datagrams,
            bytes: totals.bytes - probe.totals.bytes,
            values: totals.values - probe.totals.values,
        };
        self.silent_since = self.out.front().map(|p| p.sent_at);
        if !self.ever_closed {
            self.ever_closed = true;
            log::info!("the loop is closed: first probe back after {period:?}");
        }
        self.log_period(period, now);
        if self.broken {
            self.broken = false;
            log::info!("the loop is closed again (period {period:?})");
        }
        Some(seq)
    }

    fn log_period(&mut self, period: Duration, now: Duration) {
        log::debug!("loop period {period:?}");
        let changed = self.last_logged.is_none_or(|logged| {
            let (a, b) = (logged.as_secs_f64(), period.as_secs_f64());
            (a - b).abs() > 0.1 * a
        });
        let stale = self
            .last_logged_at
            .is_none_or(|at| now.saturating_sub(at) >= Duration::from_secs(60));
        if changed || stale {
            let c = self.circulating;
            log::info!(
                "loop period {period:?}; circulating: {} bytes in {} datagrams, {} values",
                c.bytes,
                c.datagrams,
                c.values
            );
            self.last_logged = Some(period);
            self.last_logged_at = Some(now);
        }
    }

    /// Marks the loop broken when nothing came back for the loop timeout; true on the change.
    pub fn check_broken(&mut self, now: Duration, floor: Duration) -> bool {
        let silent = self.broken_at(floor).is_some_and(|at| now >= at);
        if silent {
            self.broken = true;
        }
        silent
    }

    /// When the loop will count as broken if no probe comes back (`None` if broken already or
    /// no probe is out).
    pub fn broken_at(&self, floor: Duration) -> Option<Duration> {
        if self.broken {
            return None;
        }
        self.silent_since
            .map(|since| since + self.loop_timeout(floor))
    }

    /// The silence that breaks the loop: three periods, and never less than `floor`.
    pub fn loop_timeout(&self, floor: Duration) -> Duration {
        self.last.map_or(floor, |p| (p * 3).max(floor))
    }

    /// How long a record of a write or deletion is kept: long enough for every older datagram
    /// of the key to pass this node once (three periods, and never less than `floor`).
    pub fn retention(&self, floor: Duration) -> Duration {
        (self.last.unwrap_or(floor) * 3).max(floor)
    }

    /// Least time between probes sent on request: requests that arrive together share one.
    fn spacing(&self) -> Duration {
        let period = self.last.unwrap_or(Duration::from_millis(100));
        (period / 32).clamp(Duration::from_micros(500), Duration::from_millis(10))
    }

    fn interval(&self) -> Duration {
        match self.last {
            Some(period) if !self.broken => {
                (period / 4).clamp(Duration::from_millis(5), Duration::from_millis(250))
            }
            _ => Duration::from_millis(100),
        }
    }

    /// Whether probes come back.
    pub fn closed(&self) -> bool {
        self.ever_closed && !self.broken
    }

    /// Whether probes came back once and then stopped.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Whether a probe ever came back.
    pub fn ever_closed(&self) -> bool {
        self.ever_closed
    }

    pub fn period_last(&self) -> Option<Duration> {
        self.last
    }

    pub fn period_min(&self) -> Option<Duration> {
        self.min
    }

    pub fn period_max(&self) -> Option<Duration> {
        self.max
    }

    /// What circulated during the last period.
    pub fn circulating(&self) -> Totals {
        self.circulating
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_probe_back_measures_the_period_and_closes_the_loop() {
        let mut p = Probes::new(Duration::ZERO);
        assert!(p.due(Duration::ZERO));
        p.sent(Duration::ZERO, Totals::default());
        assert!(!p.closed());
        let totals = Totals {
            datagrams: 5,
            bytes: 500,
            values: 1,
        };
        assert_eq!(p.returned(0, 100 * MS, totals), Some(0));
        assert!(p.closed());
        assert_eq!(p.period_last(), Some(100 * MS));
        assert_eq!(p.circulating(), totals);
        assert_eq!(p.returned(0, 110 * MS, totals), None, "a duplicate");
        assert_eq!(p.returned(7, 110 * MS, totals), None, "never sent");
    }

    #[test]
    fn silence_breaks_the_loop_and_a_probe_back_heals_it() {
        let floor = 2000 * MS;
        let mut p = Probes::new(Duration::ZERO);
        p.sent(Duration::ZERO, Totals::default());
        p.returned(0, 10 * MS, Totals::default());
        p.sent(20 * MS, Totals::default());
        assert_eq!(p.broken_at(floor), Some(2020 * MS));
        assert!(!p.check_broken(2019 * MS, floor));
        assert!(
            p.check_broken(2020 * MS, floor),
            "at the deadline it reports"
        );
        assert!(!p.check_broken(3000 * MS, floor), "reported once");
        assert!(!p.closed() && p.broken());
        p.sent(3000 * MS, Totals::default());
        p.returned(2, 3010 * MS, Totals::default());
        assert!(p.closed());
    }

    #[test]
    fn outstanding_probes_are_bounded() {
        let mut p = Probes::new(Duration::ZERO);
        for i in 0..(MAX_OUTSTANDING as u32 + 100) {
            p.sent(MS * i, Totals::default());
        }
        assert_eq!(p.outstanding(), MAX_OUTSTANDING);
    }

    #[test]
    fn a_wanted_probe_is_due_early_but_spaced() {
        let mut p = Probes::new(Duration::ZERO);
        p.sent(Duration::ZERO, Totals::default());
        p.returned(0, 100 * MS, Totals::default());
        p.sent(100 * MS, Totals::default());
        assert!(!p.due(101 * MS));
        assert_eq!(p.want(), 2);
        assert!(!p.due(101 * MS), "spaced by period / 32");
        assert!(p.due(104 * MS));
    }
}
