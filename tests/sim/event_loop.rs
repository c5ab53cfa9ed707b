//! sim::event_loop: the run of a world — events popped in time order and handed to the part
//! that handles them, garbage datagrams thrown at the nodes, the calm at the end (the faults
//! stop once every request is answered, and the census follows a few laps later) and the checks
//! at the end (every request answered, every corrupted datagram counted as invalid).
//!
//! It is the only part that calls all the others; none of them calls it.

use elayday::node::core::DropReason;

use super::net::{self, Datagram, Meta};
use super::scenario::MS;
use super::summary::{Known, Summary};
use super::world::{Ev, World};

/// Events after which a seed's run counts as a runaway; a survival run may take this many per
/// value and lap more (each of a value's datagrams makes about three events a lap).
const MAX_EVENTS: u64 = 40_000_000;
const MAX_EVENTS_PER_VALUE_LAP: u64 = 1_000;

impl World {
    /// Runs the seed to the end; panics with the seed and the time on a broken invariant.
    pub fn run(mut self) -> Summary {
        for n in 0..self.nodes.len() {
            self.turn(n);
        }
        if self.sc.survival.is_some() {
            self.start_survival();
        } else {
            self.push(0, Ev::Client);
        }
        if let Some(gap) = self.sc.garbage_gap {
            self.push(gap, Ev::Garbage);
        }
        let max_events = MAX_EVENTS
            + self.sc.survival.as_ref().map_or(0, |s| {
                MAX_EVENTS_PER_VALUE_LAP * s.values as u64 * (s.laps + 100)
            });
        // Once every request is answered, the faults stop and the nodes mend the loop.
        let mut calm_until = None;
        while let Some(q) = self.queue.pop() {
            if calm_until.is_none() && q.at >= self.sc.issue_for && self.open == 0 {
                calm_until = Some(q.at + self.calm_down());
            }
            if calm_until.is_some_and(|end| q.at > end) {
                self.summary.census = Some(self.census());
                break;
            }
            if q.at > self.sc.issue_for.saturating_add(60_000 * MS) {
                break;
            }
            self.now = q.at;
            self.clock.set(q.at);
            self.summary.events += 1;
            if self.summary.events > max_events {
                self.fail(format!("runaway: more than {max_events} events"));
            }
            match q.ev {
                Ev::Arrive { link, d } => {
                    self.delivered(link, &d);
                    match self.sc.link_target(link) {
                        Some(n) => self.arrive(n, d),
                        None => self.reflect_in(d),
                    }
                }
                Ev::Reflect { d } => self.reflect_out(d),
                Ev::Timer { node } => {
                    if self.nodes[node].timer_at == Some(self.now) {
                        self.nodes[node].timer_at = None;
                        self.turn(node);
                    }
                }
                Ev::Client if self.sc.survival.is_some() => self.survival_step(),
                Ev::Client => self.client(),
                Ev::Deadline { req } => self.deadline(req),
                Ev::GiveUp { req } => self.give_up(req),
                Ev::Garbage => self.garbage(),
            }
        }
        self.finish()
    }

    fn garbage(&mut self) {
        let n = self.garbage_rng.below(self.nodes.len() as u64) as usize;
        let bytes = net::garbage(&mut self.garbage_rng);
        self.arrive(
            n,
            Datagram {
                bytes,
                meta: Meta::Garbage,
                born: self.now,
                knowing: false,
                corrupted: true,
                rebuilt: false,
            },
        );
        if let Some(gap) = self.sc.garbage_gap {
            if self.now < self.sc.issue_for {
                let at = self.now + 1 + self.garbage_rng.below(2 * gap);
                self.push(at, Ev::Garbage);
            }
        }
    }

    fn finish(mut self) -> Summary {
        for id in 0..self.requests.len() {
            let r = &self.requests[id];
            if !r.open() {
                continue;
            }
            let what = format!(
                "request #{id} ({:?} on node {}, issued at {}) was never answered ({} fragments \
                 its node rebuilt went out before its frames)",
                r.op,
                r.node,
                Self::ms(r.issued),
                r.postponed_by
            );
            // Its node's send rate taken by fragments it kept rebuilding: more than the network
            // ever destroyed, which only the churn can rebuild.
            if r.postponed_by > self.summary.destroyed {
                self.known(Known::RepairChurn, what);
            } else {
                self.fail(what);
            }
        }
        // Every corrupted datagram a node received was counted under a wire error.
        for (n, node) in self.nodes.iter().enumerate() {
            let counted: u64 = DropReason::WIRE.iter().map(|&r| node.core.dropped(r)).sum();
            if counted != node.corrupted_in {
                self.fail(format!(
                    "node {n} received {} corrupted datagrams and counted {counted} as invalid",
                    node.corrupted_in
                ));
            }
        }
        self.summary.sim_time = self.now;
        self.summary.survival = self.survival_report();
        self.summary
    }
}
