//! sim::traffic: every datagram the world puts on a link — a node's new frames, checked and
//! identified (valid, of the node, within its size, DATA fragments in order and of the write
//! the node took next, every tombstone accounted for), forwarded datagrams checked for
//! staleness, and what the network destroyed counted.
//!
//! It never calls into a core: the frames come from `nodes.rs`, which drives the cores.

use elayday::wire::{self, DataFrame, Frame, Kind};

use super::net::{Datagram, Meta, Ver};
use super::oracle::{Owner, Stage};
use super::world::{Ev, World, PROBE_SPACING_MAX, SLACK};

impl World {
    /// Node `n` wrote a new frame: check it, learn what it is, put it on the wire.
    pub(super) fn emitted(&mut self, n: usize, bytes: Vec<u8>) {
        let frame = match Frame::new_checked(&bytes[..]) {
            Ok(frame) => frame,
            Err(error) => self.fail(format!("node {n} sent an invalid frame ({error:?})")),
        };
        if bytes.len() > self.nodes[n].spec.max_datagram {
            self.fail(format!(
                "node {n} sent a {}-byte datagram, over its {} bytes",
                bytes.len(),
                self.nodes[n].spec.max_datagram
            ));
        }
        if frame.origin() != self.nodes[n].spec.id {
            self.fail(format!("node {n} sent a frame with another origin"));
        }
        let ver = Ver {
            hlc: frame.hlc(),
            origin: frame.origin(),
        };
        let key = match frame.kind() {
            Kind::Data(d) => self.key_id(d.key()),
            Kind::Tombstone(t) => self.key_id(t.key()),
            _ => None,
        };
        let knowing = key.is_some_and(|k| self.nodes[n].seen[k as usize] > Some(ver));
        let meta = match frame.kind() {
            Kind::Probe(_) => {
                let now = self.now;
                self.nodes[n].first_probe_at.get_or_insert(now);
                Meta::Probe { node: n as u16 }
            }
            Kind::Tombstone(t) => {
                let Some(key) = self.key_id(t.key()) else {
                    self.fail(format!("node {n} sent a tombstone of a key nobody deleted"));
                };
                if self.nodes[n].last_tombstone.is_some() {
                    self.fail(format!("node {n}: a tombstone went out unaccounted for"));
                }
                self.nodes[n].last_tombstone = Some((key, ver));
                self.nodes[n].see(key, ver);
                if !self.keys[key as usize].note(ver, Owner::Tombstone, self.now) && !knowing {
                    self.born_obsolete(key);
                }
                Meta::Tombstone { key, ver }
            }
            Kind::Data(d) => {
                let Some(key) = self.key_id(d.key()) else {
                    self.fail(format!("node {n} sent DATA of a key nobody wrote"));
                };
                let write = self.data_sent(n, key, ver, &d, knowing);
                Meta::Data {
                    key,
                    write: write as u32,
                    index: d.fragment_index(),
                }
            }
            Kind::Parity(_) => self.fail(format!("node {n} sent a PARITY frame (v1 never does)")),
        };
        self.summary.sent += 1;
        self.trace(|| format!("node {n} sends {meta:?} {ver:?}"));
        self.send(
            n,
            Datagram {
                bytes,
                meta,
                born: self.now,
                knowing,
                corrupted: false,
            },
        );
    }

    /// A DATA fragment node `n` sent: it must be the next fragment of the write being sent,
    /// or the first of the next write taken (writes go out whole, in the order taken).
    fn data_sent(
        &mut self,
        n: usize,
        key: u16,
        ver: Ver,
        d: &DataFrame<'_>,
        knowing: bool,
    ) -> usize {
        if d.fragment_index() == 0 {
            if let Some(w) = self.nodes[n].sending {
                self.fail(format!(
                    "node {n} started a value before sending all of write #{w}"
                ));
            }
            let Some(&w) = self.nodes[n].queue.front() else {
                self.fail(format!(
                    "node {n} sent a value of {} that no PUT it took wrote",
                    self.key_name(key)
                ));
            };
            let write = &self.writes[w];
            let first = wire::chunk(write.value.len(), 0, write.chunk_len);
            if write.key != key
                || write.value.len() as u64 != d.value_len()
                || d.payload() != &write.value[first]
            {
                self.fail(format!(
                    "node {n} sent a value that is not that of write #{w}, the next it took"
                ));
            }
            self.nodes[n].queue.pop_front();
            self.nodes[n].sending = Some(w);
            self.nodes[n].see(key, ver);
            if !self.keys[key as usize].note(ver, Owner::Write(w), self.now) && !knowing {
                self.born_obsolete(key);
            }
            let write = &mut self.writes[w];
            write.version = Some(ver);
            if let Some(seen) = write.seen_at_done.take() {
                if !write.superseded_locally && seen.is_none_or(|s| s <= ver) {
                    self.fail(format!(
                        "write #{w} was answered OK before any of its datagrams went out, and \
                         its node had seen no newer version of {} (newest {seen:?}, this \
                         {ver:?})",
                        self.key_name(key)
                    ));
                }
            }
        }
        let Some(w) = self.nodes[n].sending else {
            self.fail(format!("node {n} sent a fragment of no value being sent"));
        };
        let write = &self.writes[w];
        let index = d.fragment_index();
        let range = wire::chunk(write.value.len(), index, write.chunk_len);
        if write.version != Some(ver)
            || index != write.emitted
            || d.fragment_count() != write.count
            || d.chunk_len() != write.chunk_len
            || d.payload() != &write.value[range]
        {
            self.fail(format!(
                "node {n} sent fragment {index}/{} of {} that is not fragment {} of write #{w}",
                d.fragment_count(),
                self.key_name(key),
                write.emitted
            ));
        }
        let write = &mut self.writes[w];
        write.emitted += 1;
        if write.emitted == write.count {
            write.sent_at = Some(self.now);
            self.nodes[n].sending = None;
            let req = write.req;
            if self.requests[req].open() {
                let at = self.now
                    + PROBE_SPACING_MAX
                    + self.nodes[n].spec.frame_ns
                    + self.nodes[n].lt(self.p_max)
                    + SLACK;
                self.set_deadline(req, at, Stage::Confirming);
            }
            self.try_resolve_write(w);
        }
        w
    }

    /// A tombstone went out and no DELETE's answer came with it: it is the rollback of a write
    /// answered DATA_LOSS.
    pub(super) fn claim_rollback(&mut self, n: usize) {
        let Some((key, ver)) = self.nodes[n].last_tombstone.take() else {
            return;
        };
        let writes = &self.writes;
        let Some(pos) = self.nodes[n]
            .rollbacks
            .iter()
            .position(|&w| writes[w].key == key)
        else {
            self.fail(format!(
                "node {n} sent a tombstone of {} that no DELETE or rolled-back PUT accounts for",
                self.key_name(key)
            ));
        };
        let w = self.nodes[n].rollbacks.remove(pos);
        if self.writes[w].version.is_none_or(|v| v >= ver) {
            self.fail(format!(
                "the rollback tombstone of write #{w} is not newer than the write"
            ));
        }
        self.writes[w].awaiting_rollback = false;
        self.took(n, key, ver);
        self.keys[key as usize].dead.add(self.now, ver);
        self.try_resolve_write(w);
    }

    /// Puts `d` on link `link` (out of node `link`, or out of the reflector for link 1).
    pub(super) fn send(&mut self, link: usize, d: Datagram) {
        if let (Meta::Data { key, write, .. }, false) = (d.meta, d.corrupted) {
            self.check_stale(key, write as usize, d.born, d.knowing);
        }
        let meta = d.meta;
        let mut out = std::mem::take(&mut self.out);
        match self.links[link].send(self.now, d, &mut out) {
            Ok(()) => {
                if out.first().is_some_and(|(_, d)| d.corrupted) {
                    self.summary.corrupted += 1;
                    self.destroyed(meta);
                }
                for (at, d) in out.drain(..) {
                    self.push(at, Ev::Arrive { link, d });
                }
            }
            Err(_) => self.destroyed(meta),
        }
        self.out = out;
    }

    pub(super) fn reflect_in(&mut self, d: Datagram) {
        let reflector = self.reflector.as_mut().expect("a reflector");
        if reflector.take(d.bytes.len()) {
            let at = self.now + reflector.spec.delay;
            self.push(at, Ev::Reflect { d });
        } else if !d.corrupted {
            self.destroyed(d.meta);
        }
    }

    fn destroyed(&mut self, meta: Meta) {
        self.summary.destroyed += 1;
        if let Meta::Data { write, .. } = meta {
            self.writes[write as usize].destroyed += 1;
        }
    }
}
