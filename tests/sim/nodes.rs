//! sim::nodes: the calls into each core, as the driver makes them — a datagram arrives, time
//! passes (`on_timer`), new frames go out at the node's send rate, its timer is armed — and
//! what follows every call: loop transitions, answers drained, memory within the limits.
//!
//! It checks what a core decides about each datagram it receives (a corrupted one is never
//! kept, nor the node's own probe or tombstone after a lap) and the memory each core holds; the
//! frames a core sends and the answers it gives are checked in `traffic.rs` and `answers.rs`.
//! It makes no request: `clients.rs` does.

use elayday::node::core::writes::INTERLEAVE_DEPTH;
use elayday::node::core::{DropReason, Usage};

use super::net::{Datagram, Meta};
use super::oracle::State;
use super::scenario::US;
use super::world::{Ev, World};

/// Probes a core may remember (probes.rs `MAX_OUTSTANDING`).
const PROBES_MAX: usize = 4096;

impl World {
    /// Time-driven work of node `n`, as the driver's turn.
    pub(super) fn turn(&mut self, n: usize) {
        let now = self.now_of(n);
        self.nodes[n].core.on_timer(now);
        self.after_input(n);
        self.transmit(n);
        self.schedule(n);
        self.check_usage(n);
    }

    /// A datagram reaches node `n`.
    pub(super) fn arrive(&mut self, n: usize, mut d: Datagram) {
        let now = self.now_of(n);
        let refused_before = self.trace.then(|| self.reassembly_refused(n));
        let duplicates_before = self.nodes[n].core.dropped(DropReason::Duplicate);
        let keep = self.nodes[n].core.on_datagram(&mut d.bytes, now);
        let duplicate = self.nodes[n].core.dropped(DropReason::Duplicate) > duplicates_before;
        if refused_before.is_some_and(|before| self.reassembly_refused(n) > before) {
            self.trace(|| format!("node {n}: no room to reassemble {:?}", d.meta));
        }
        self.trace(|| {
            format!(
                "node {n} receives {:?}{}{} keep={keep}{}",
                d.meta,
                match (d.meta, d.bytes.get(54)) {
                    (Meta::Data { .. }, Some(lap)) => format!(" lap {lap}"),
                    _ => String::new(),
                },
                if d.corrupted { " (corrupted)" } else { "" },
                if duplicate { " (a copy)" } else { "" }
            )
        });
        if d.corrupted {
            self.nodes[n].corrupted_in += 1;
            if keep {
                self.fail(format!(
                    "node {n} forwarded a corrupted datagram ({:?}, {} bytes): the checks let it \
                     through",
                    d.meta,
                    d.bytes.len()
                ));
            }
        } else {
            if duplicate && !matches!(d.meta, Meta::Data { .. }) {
                self.fail(format!(
                    "node {n} dropped {:?} as a copy of a fragment",
                    d.meta
                ));
            }
            match d.meta {
                Meta::Data { key, write, pos } => {
                    let w = write as usize;
                    let ver = self.writes[w].version.expect("sent data has a version");
                    self.nodes[n].see(key, ver);
                    if keep {
                        if self.writes[w].node == n {
                            self.writes[w].mark_returned(pos);
                        }
                    } else if duplicate && self.writes[w].live[pos as usize] > 0 {
                        // A copy removed: the fragment is still in the network.
                        self.summary.duplicates += 1;
                    } else {
                        // Superseded, deleted, or the last copy of the fragment taken for a copy
                        // (its twin was destroyed, or waits in a repair queue).
                        self.writes[w].node_dropped += 1;
                        self.writes[w].copy_lost(pos, self.now);
                        self.summary.node_drops += 1;
                        if duplicate {
                            self.summary.duplicates += 1;
                            self.summary.last_copy_drops += 1;
                        }
                    }
                }
                Meta::Tombstone { key, ver } => {
                    self.nodes[n].see(key, ver);
                    if keep && ver.origin == self.nodes[n].spec.id {
                        self.fail(format!(
                            "node {n} forwarded its own tombstone after a full lap"
                        ));
                    }
                }
                Meta::Probe { node } => {
                    if keep && node as usize == n {
                        self.fail(format!("node {n} forwarded its own probe after a full lap"));
                    }
                }
                Meta::Garbage => unreachable!("garbage is always marked corrupted"),
            }
        }
        self.after_input(n);
        if keep {
            self.summary.forwarded += 1;
            self.send(n, d);
        }
        self.transmit(n);
        self.schedule(n);
        self.check_usage(n);
    }

    /// After any call into node `n`: loop transitions, then its answers.
    pub(super) fn after_input(&mut self, n: usize) {
        let closed = self.nodes[n].core.loop_closed();
        let node = &mut self.nodes[n];
        let was = node.closed;
        node.closed = closed;
        let mut replay = Vec::new();
        if closed && !node.ever_closed {
            // The core replays its parked writes when the loop first closes.
            node.ever_closed = true;
            replay = std::mem::take(&mut node.parked);
            self.trace(|| format!("node {n}: loop closed"));
        }
        if was && !closed {
            self.loop_broke(n);
        }
        // The core took the replayed requests in order; those it refused are answered now.
        for &id in &replay {
            if self.requests[id].state == State::Parked {
                self.accept(id);
            }
        }
        self.replaying = replay;
        while let Some((id, answer)) = self.nodes[n].core.poll_answer() {
            let id = id as usize;
            let immediate = self.in_command == Some(id) || self.replaying.contains(&id);
            self.on_answer(n, id, answer, immediate);
        }
        self.replaying.clear();
    }

    /// The core declared its loop broken: it dropped every write still to send.
    fn loop_broke(&mut self, n: usize) {
        self.trace(|| format!("node {n}: loop broken"));
        let node = &mut self.nodes[n];
        let dropped: Vec<usize> = node.queue.drain(..).collect();
        for w in dropped {
            self.writes[w].cleared = true;
            self.try_resolve_write(w);
        }
    }

    /// Sends node `n`'s new frames, as many as its rate allows now.
    pub(super) fn transmit(&mut self, n: usize) {
        loop {
            let now = self.now_of(n);
            let node = &mut self.nodes[n];
            if !node.core.wants_transmit(now) || !node.may_send(self.now) {
                return;
            }
            let mut buf = std::mem::take(&mut node.buf);
            // Only a rebuilt fragment leaving the repair queue lowers what the repair holds.
            let held = node.core.usage().repair;
            let Some(len) = node.core.poll_transmit(&mut buf, now) else {
                node.buf = buf;
                self.idle_poll(n);
                return;
            };
            let repair = node.core.usage().repair < held;
            node.sent_one(self.now);
            let bytes = buf[..len].to_vec();
            self.nodes[n].buf = buf;
            self.emitted(n, bytes, repair);
            self.after_input(n);
            self.claim_rollback(n);
        }
    }

    /// `wants_transmit` said yes and `poll_transmit` gave nothing. The one case let pass (and
    /// counted): a narrow write (its rows spread over half a lap) at the end of a row, which
    /// learns that its next row must wait only when asked for it (`PutJob::emit`); the core must
    /// then want nothing more until that row is due.
    fn idle_poll(&mut self, n: usize) {
        let now = self.now_of(n);
        let spaced = self.nodes[n].queue.iter().any(|&w| {
            let write = &self.writes[w];
            let g = write.geometry;
            let narrow = g.parity > 0 && g.stripe_count() < u64::from(INTERLEAVE_DEPTH);
            let e = write.emitted as usize;
            // Between two rows: the next fragment due is of another shard than the last sent.
            narrow && e > 0 && e < write.order.len() && {
                let row = |i: usize| write.at(write.order[i]).1;
                row(e) != row(e - 1)
            }
        });
        if !spaced || self.nodes[n].core.wants_transmit(now) {
            self.fail(format!(
                "node {n}: wants_transmit said yes and poll_transmit gave nothing"
            ));
        }
        self.summary.idle_polls += 1;
    }

    /// Arms node `n`'s timer for its next deadline (or its next chance to send).
    pub(super) fn schedule(&mut self, n: usize) {
        let now = self.now_of(n);
        let node = &mut self.nodes[n];
        let deadline = node.core.next_deadline().as_nanos() as u64;
        let mut at = deadline.saturating_sub(node.spec.mono_offset);
        if node.core.wants_transmit(now) {
            at = at.min(node.next_send());
        }
        if at <= self.now {
            // Due now: the next event, a microsecond on (the core fires at its deadline).
            at = self.now + US;
        }
        if node.timer_at.is_none_or(|t| at < t || t < self.now) {
            node.timer_at = Some(at);
            self.push(at, Ev::Timer { node: n });
        }
    }

    /// Memory within the configured limits, after every step.
    pub(super) fn check_usage(&mut self, n: usize) {
        let node = &self.nodes[n];
        let u: Usage = node.core.usage();
        let l = node.spec.limits;
        if u.requests > l.max_requests
            || u.write_backlog > l.max_write_backlog
            || u.reassembly > l.max_reassembly
            || u.records > l.max_records
            || u.repair > l.max_repair
            || u.probes > PROBES_MAX
            || u.answers != 0
        {
            self.fail(format!(
                "node {n} holds more than its limits allow: {u:?}, limits {l:?}"
            ));
        }
        let s = &mut self.summary;
        s.peak_requests = s.peak_requests.max(u.requests);
        s.peak_records = s.peak_records.max(u.records);
        s.peak_reassembly = s.peak_reassembly.max(u.reassembly);
        s.peak_backlog = s.peak_backlog.max(u.write_backlog);
    }
}
