//! sim::deadlines: a request the core takes (a GET waiting, a write or a tombstone queued) or
//! parks until its loop closes, the deadline the design gives it (the bounds are in world.rs),
//! and the check that it was answered by then.
//!
//! It records what the node took in the world's mirror of the node's queues; it never drives a
//! core (it only asks one whether its loop is closed, for a failure message) and never sends
//! anything.

use elayday::node::core::writes::INTERLEAVE_DEPTH;

use super::oracle::{Op, Stage, State};
use super::scenario::MS;
use super::world::{Ev, World, PROBE_SPACING_MAX, SLACK};

impl World {
    /// The core took request `id` (a GET is waiting, a write queued, a tombstone queued).
    pub(super) fn accept(&mut self, id: usize) {
        let n = self.requests[id].node;
        let key = self.requests[id].key;
        self.requests[id].state = State::Accepted;
        let frame_ns = self.nodes[n].spec.frame_ns;
        let lt = self.nodes[n].lt(self.p_max);
        match self.requests[id].op {
            Op::Get => {
                let at = self.now + PROBE_SPACING_MAX + frame_ns + lt + SLACK;
                self.set_deadline(id, at, Stage::Get);
            }
            Op::Put(w) => {
                self.superseded_locally(n, key, w);
                self.writes[w].accepted_at = Some(self.now);
                let node = &self.nodes[n];
                let ahead: u64 = node
                    .queue
                    .iter()
                    .map(|&q| u64::from(self.writes[q].count - self.writes[q].emitted))
                    .sum();
                let frames = ahead
                    + u64::from(self.writes[w].count)
                    + 2 * node.spec.limits.max_requests as u64
                    + 16;
                self.nodes[n].queue.push_back(w);
                // A value of fewer stripes than the interleaving depth has its rows spread over
                // half a (measured) lap.
                let g = self.writes[w].geometry;
                let narrow = g.parity > 0 && g.stripe_count() < u64::from(INTERLEAVE_DEPTH);
                let spread = if narrow { self.p_max / 2 } else { 0 };
                let at = self.now + 2 * frames * frame_ns + spread + 20 * MS;
                self.set_deadline(id, at, Stage::Sending);
            }
            Op::Delete => {
                self.superseded_locally(n, key, usize::MAX);
                let node = &mut self.nodes[n];
                let ahead = (node.deletes.len() + node.rollbacks.len()) as u64;
                node.deletes.push_back(id);
                let at = self.now + 2 * (ahead + 3) * frame_ns + MS;
                self.set_deadline(id, at, Stage::Tombstone);
            }
            Op::Stats => unreachable!("answered by the call"),
        }
    }

    pub(super) fn park(&mut self, id: usize) {
        let n = self.requests[id].node;
        self.requests[id].state = State::Parked;
        self.nodes[n].parked.push(id);
        let first = self.nodes[n].first_probe_at.unwrap_or(self.now);
        let at = (first + self.nodes[n].spec.loop_timeout).max(self.now) + SLACK;
        self.set_deadline(id, at, Stage::Parked);
    }

    pub(super) fn set_deadline(&mut self, id: usize, at: u64, stage: Stage) {
        self.requests[id].repairs_seen = self.nodes[self.requests[id].node].repairs_sent;
        self.requests[id].deadline = Some((at, stage));
        self.push(at, Ev::Deadline { req: id });
    }

    /// Every request is answered by its deadline.
    pub(super) fn deadline(&mut self, id: usize) {
        let r = &self.requests[id];
        let Some((at, stage)) = r.deadline else {
            return;
        };
        if at != self.now || !r.open() {
            return;
        }
        // Rebuilt fragments go out before tombstones and writes: each one the node sent since
        // delays a write or a tombstone by a frame (and the probes among them, one in two).
        let node = &self.nodes[r.node];
        let repairs = node.repairs_sent - r.repairs_seen;
        if matches!(stage, Stage::Sending | Stage::Tombstone) && repairs > 0 {
            let at = at + 2 * repairs * node.spec.frame_ns;
            self.requests[id].postponed_by += repairs;
            self.set_deadline(id, at, stage);
            return;
        }
        let r = &self.requests[id];
        let extra = match r.op {
            Op::Put(w) => {
                let w = &self.writes[w];
                format!(
                    "; {} of {} datagrams sent (all at {:?}), {} stripes of {} short of their \
                     data count back, {} destroyed, {} rebuilt",
                    w.emitted,
                    w.count,
                    w.sent_at.map(Self::ms),
                    w.returned_short,
                    w.stripes(),
                    w.destroyed,
                    w.repaired
                )
            }
            _ => String::new(),
        };
        self.fail(format!(
            "request #{id} ({:?} of {} on node {}, issued at {}) not answered by its deadline \
             ({stage:?}, {}){extra}; node loop closed: {}",
            r.op,
            self.key_name(r.key),
            r.node,
            Self::ms(r.issued),
            Self::ms(at),
            self.nodes[r.node].core.loop_closed()
        ));
    }
}
