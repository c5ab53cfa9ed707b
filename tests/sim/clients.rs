//! sim::clients: the clients — a workload of PUTs, GETs, DELETEs and STATS drawn from the
//! world's generator (single requests, concurrent writers of one key, crowds of GETs), each
//! made to a node, and the cancellations of impatient clients.
//!
//! It calls into a core only to make or cancel a request; what follows is left to `nodes.rs`.
//! It must draw from the generator in the same order for ever: a seed is one run.

use elayday::node::core::Command;
use elayday::wire::{self, Geometry};

use super::oracle::{Op, Request, State, Write};
use super::world::{Ev, World};

/// What a client asks for.
pub(super) enum OpKind {
    Put(Vec<u8>),
    Get,
    Delete,
    Stats,
}

impl World {
    pub(super) fn client(&mut self) {
        if self.now >= self.sc.issue_for {
            return;
        }
        if self.rng.chance(self.sc.workload.burst_chance) {
            self.burst();
        } else {
            let n = self.rng.below(self.nodes.len() as u64) as usize;
            let key = self.pick_key();
            let kind = match self.rng.weighted(&[
                (self.sc.workload.weights[0], 0),
                (self.sc.workload.weights[1], 1),
                (self.sc.workload.weights[2], 2),
                (self.sc.workload.weights[3], 3),
            ]) {
                0 => OpKind::Put(self.value(n)),
                1 => OpKind::Get,
                2 => OpKind::Delete,
                _ => OpKind::Stats,
            };
            self.issue(n, kind, key);
        }
        let gap = 1 + self.rng.below(2 * self.sc.workload.gap_mean);
        self.push(self.now + gap, Ev::Client);
    }

    /// Concurrent writers of one key, or a crowd of GETs on one node.
    fn burst(&mut self) {
        if self.rng.chance(0.5) {
            let key = self.pick_key();
            for _ in 0..self.rng.range(2, 6) {
                let n = self.rng.below(self.nodes.len() as u64) as usize;
                let kind = if self.rng.chance(0.8) {
                    OpKind::Put(self.value(n))
                } else {
                    OpKind::Delete
                };
                self.issue(n, kind, key);
            }
        } else {
            let n = self.rng.below(self.nodes.len() as u64) as usize;
            for _ in 0..self.rng.range(2, 10) {
                let key = self.pick_key();
                self.issue(n, OpKind::Get, key);
            }
        }
    }

    fn pick_key(&mut self) -> u16 {
        let count = self.sc.workload.keys.len() as u64;
        let hot = if self.rng.chance(0.5) {
            count.min(2)
        } else {
            count
        };
        self.rng.below(hot) as u16
    }

    /// A value for a PUT on node `n`: sizes from empty to the largest allowed; from 8 bytes on
    /// it starts with the write's number, so that no two values are alike.
    fn value(&mut self, n: usize) -> Vec<u8> {
        let max = self
            .sc
            .workload
            .value_max
            .min(self.nodes[n].spec.limits.max_value_size as usize);
        let len = match self.rng.below(100) {
            0..2 => 0,
            2..12 => self.rng.range(1, 7) as usize,
            12..52 => self.rng.range(8, 200) as usize,
            52..87 => self.rng.range(200, 2_000) as usize,
            87..97 => self.rng.range(2_000, max.max(2_000) as u64) as usize,
            _ => max,
        }
        .min(max);
        let mut value = vec![0; len];
        self.rng.fill(&mut value);
        if len >= 8 {
            value[..8].copy_from_slice(&(self.writes.len() as u64).to_be_bytes());
        }
        value
    }

    /// A client sends a request to node `n`.
    pub(super) fn issue(&mut self, n: usize, kind: OpKind, key: u16) {
        let id = self.requests.len();
        let key_bytes = self.sc.workload.keys[key as usize].clone();
        let (op, command) = match kind {
            OpKind::Put(value) => {
                let w = self.writes.len();
                let spec = &self.nodes[n].spec;
                // As the core cuts it (`Core::start_put`).
                let chunk_len = wire::max_chunk_len(spec.max_datagram, key_bytes.len());
                let geometry = Geometry {
                    value_len: value.len() as u64,
                    chunk_len: u16::try_from(chunk_len).unwrap_or(u16::MAX - 1),
                    data: spec.fec.data,
                    parity: spec.fec.parity,
                };
                self.writes
                    .push(Write::new(id, n, key, value.clone(), geometry));
                self.keys[key as usize].writes.push(w);
                let command = Command::Put {
                    id: id as u64,
                    key: key_bytes,
                    value,
                };
                (Op::Put(w), command)
            }
            OpKind::Get => (
                Op::Get,
                Command::Get {
                    id: id as u64,
                    key: key_bytes,
                },
            ),
            OpKind::Delete => (
                Op::Delete,
                Command::Delete {
                    id: id as u64,
                    key: key_bytes,
                },
            ),
            OpKind::Stats => (Op::Stats, Command::Stats { id: id as u64 }),
        };
        if matches!(op, Op::Put(_) | Op::Delete) {
            let ks = &mut self.keys[key as usize];
            ks.epoch += 1;
            ks.settled = None;
            ks.unresolved += 1;
        }
        let node = &mut self.nodes[n];
        let crowd = (node.gets_open, node.gets_started);
        let expect = if op == Op::Get {
            node.gets_open += 1;
            node.gets_started += 1;
            self.expectation(n, key)
        } else {
            None
        };
        self.requests.push(Request {
            node: n,
            key,
            op,
            issued: self.now,
            state: State::Accepted,
            answer: None,
            immediate: false,
            cancelled: false,
            deadline: None,
            epoch: self.keys[key as usize].epoch,
            expect,
            crowd,
            refused_before: if op == Op::Get {
                self.reassembly_refused(n)
            } else {
                0
            },
            repairs_seen: 0,
            postponed_by: 0,
        });
        self.open += 1;
        self.summary.requests += 1;
        self.trace(|| {
            let what = match op {
                Op::Put(w) => format!("PUT #{w} ({} bytes)", self.writes[w].value.len()),
                other => format!("{other:?}"),
            };
            format!("#{id}: {what} of {} on node {n}", self.key_name(key))
        });

        let now = self.now_of(n);
        self.in_command = Some(id);
        self.nodes[n].core.on_command(command, now);
        self.after_input(n);
        self.in_command = None;
        if self.requests[id].answer.is_none() {
            if op == Op::Stats {
                self.fail("STATS not answered by the call");
            }
            if op == Op::Get || self.nodes[n].core.loop_closed() {
                self.accept(id);
            } else {
                self.park(id);
            }
        }
        self.transmit(n);
        self.schedule(n);
        self.check_usage(n);

        if self.requests[id].open() && self.rng.chance(self.sc.workload.impatient) {
            let lt = self.nodes[n].lt(self.p_max);
            let at = self.now + 1 + self.rng.below(lt + lt / 2);
            self.push(at, Ev::GiveUp { req: id });
        }
    }

    /// The client's deadline passed: it cancels, as gRPC does.
    pub(super) fn give_up(&mut self, id: usize) {
        let r = &self.requests[id];
        if r.answer.is_some() || r.cancelled || r.state == State::Withdrawn {
            return;
        }
        let n = r.node;
        self.requests[id].cancelled = true;
        self.summary.cancelled += 1;
        let now = self.now_of(n);
        self.nodes[n]
            .core
            .on_command(Command::Cancel { id: id as u64 }, now);
        match (self.requests[id].state, self.requests[id].op) {
            (State::Parked, op) => {
                self.requests[id].state = State::Withdrawn;
                self.nodes[n].parked.retain(|&p| p != id);
                self.open -= 1;
                match op {
                    Op::Put(w) => self.try_resolve_write(w),
                    _ => self.resolve_delete(self.requests[id].key),
                }
            }
            (_, Op::Get) => {
                self.open -= 1;
                self.nodes[n].gets_open -= 1;
            }
            _ => {}
        }
        self.after_input(n);
        self.transmit(n);
        self.schedule(n);
        self.check_usage(n);
    }
}
