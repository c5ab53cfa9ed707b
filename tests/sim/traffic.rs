//! sim::traffic: every datagram the world puts on a link — a node's new frames, checked and
//! identified (valid, within its size; its own frames of its origin, its DATA and PARITY
//! fragments those of the write it took next, in `wire::interleaved` order, each byte for byte
//! the fragment the write's value and parity make; a fragment it rebuilt byte for byte the one
//! its origin sent; every tombstone accounted for), forwarded datagrams checked for staleness,
//! the copies of each fragment in the network counted, and what the network destroyed counted.
//!
//! It never calls into a core: the frames come from `nodes.rs`, which drives the cores.

use elayday::node::core::writes::INTERLEAVE_DEPTH;
use elayday::wire::{self, DataFrame, DataRepr, Frame, Kind};

use super::net::{Datagram, Meta, Ver};
use super::oracle::{Owner, Stage};
use super::world::{Ev, World, PROBE_SPACING_MAX, SLACK};

impl World {
    /// Node `n` wrote a new frame: check it, learn what it is, put it on the wire. `repair`:
    /// the core took it from its repair queue (a fragment it rebuilt, of any origin).
    pub(super) fn emitted(&mut self, n: usize, bytes: Vec<u8>, repair: bool) {
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
        if frame.epoch() != 0 {
            self.fail(format!("node {n} sealed a frame, with no ring key"));
        }
        if !repair && frame.origin() != self.nodes[n].spec.id {
            self.fail(format!(
                "node {n} sent a frame with another origin, not one it rebuilt"
            ));
        }
        let ver = Ver {
            hlc: frame.hlc(),
            origin: frame.origin(),
        };
        let key = match frame.kind() {
            Kind::Data(d) | Kind::Parity(d) => self.key_id(d.key()),
            Kind::Tombstone(t) => self.key_id(t.key()),
            Kind::Probe(_) => None,
        };
        // Whether the node knows a newer version of the key. A rebuilt fragment's node may have
        // seen one and had no room to record it (`--max-records`): only a version it confirmed
        // or deleted itself, while it remembers it, is sure to be in its records.
        let knowing = key.is_some_and(|k| {
            let node = &self.nodes[n];
            if repair {
                node.took[k as usize]
                    .is_some_and(|(took, at)| took > ver && self.now <= at + self.memory())
            } else {
                node.seen[k as usize] > Some(ver)
            }
        });
        let meta = match frame.kind() {
            _ if repair => {
                let (Kind::Data(d) | Kind::Parity(d)) = frame.kind() else {
                    self.fail(format!(
                        "node {n} sent a {:?} frame from its repair queue",
                        frame.frame_type()
                    ));
                };
                self.repair_sent(n, ver, &d, &bytes)
            }
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
            Kind::Data(d) | Kind::Parity(d) => {
                let Some(key) = self.key_id(d.key()) else {
                    self.fail(format!("node {n} sent DATA of a key nobody wrote"));
                };
                let (write, pos) = self.data_sent(n, key, ver, &d, &bytes, knowing);
                Meta::Data {
                    key,
                    write: write as u32,
                    pos,
                }
            }
        };
        if let Meta::Data { write, pos, .. } = meta {
            // A copy of the position enters the network: it is there again if it was missing.
            let write = &mut self.writes[write as usize];
            if write.live[pos as usize] == 0 {
                write.absent_until[pos as usize] = self.now;
            }
        }
        self.summary.sent += 1;
        self.trace(|| {
            let what = if repair { "rebuilt " } else { "" };
            let lap = match (meta, bytes.get(54)) {
                (Meta::Data { .. }, Some(lap)) => format!(" lap {lap}"),
                _ => String::new(),
            };
            format!("node {n} sends {what}{meta:?}{lap} {ver:?}")
        });
        self.send(
            n,
            Datagram {
                bytes,
                meta,
                born: self.now,
                knowing,
                corrupted: false,
                rebuilt: repair,
            },
        );
    }

    /// A DATA or PARITY fragment node `n` sent of its own: it must be the next fragment, in
    /// `wire::interleaved` order, of a write the node is sending, or the first of the first
    /// write it took and has not started (writes start in the order taken; one whose next row
    /// waits lets the next go meanwhile). Returns the write and the position.
    fn data_sent(
        &mut self,
        n: usize,
        key: u16,
        ver: Ver,
        d: &DataFrame<'_>,
        bytes: &[u8],
        knowing: bool,
    ) -> (usize, u32) {
        let queue = &self.nodes[n].queue;
        let started = queue
            .iter()
            .copied()
            .find(|&w| self.writes[w].version == Some(ver));
        let w = match started {
            Some(w) => w,
            None => self.start_write(n, key, ver, d, knowing),
        };
        let write = &self.writes[w];
        let due = write.order[write.emitted as usize];
        let (stripe, shard) = write.at(due);
        if (d.stripe(), d.shard()) != (stripe, shard) {
            self.fail(format!(
                "node {n} sent fragment ({}, {}) of write #{w} ({}) where fragment ({stripe}, \
                 {shard}) was due (datagram {} of {} in interleaved order)",
                d.stripe(),
                d.shard(),
                self.key_name(key),
                write.emitted + 1,
                write.count
            ));
        }
        self.check_fragment(n, w, stripe, shard, bytes, "sent");
        let write = &mut self.writes[w];
        write.mark_sent(due);
        write.emitted += 1;
        if write.emitted == write.count {
            write.sent_at = Some(self.now);
            self.nodes[n].queue.retain(|&q| q != w);
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
        (w, due)
    }

    /// The first fragment of a write of node `n` with version `ver`: it must be the first
    /// write in its queue not started yet.
    fn start_write(
        &mut self,
        n: usize,
        key: u16,
        ver: Ver,
        d: &DataFrame<'_>,
        knowing: bool,
    ) -> usize {
        let queue = &self.nodes[n].queue;
        let Some(w) = queue
            .iter()
            .copied()
            .find(|&w| self.writes[w].version.is_none())
        else {
            self.fail(format!(
                "node {n} sent a value of {} (version {ver:?}) that no PUT it took and has not \
                 all sent wrote",
                self.key_name(key)
            ));
        };
        let write = &self.writes[w];
        if write.key != key || d.geometry() != write.geometry {
            self.fail(format!(
                "node {n} sent a value of {} cut as {:?}, not write #{w}, the next it took \
                 ({} cut as {:?})",
                self.key_name(key),
                d.geometry(),
                self.key_name(write.key),
                write.geometry
            ));
        }
        if let Some(&other) = self.by_version.get(&ver) {
            self.fail(format!(
                "node {n} sent write #{w} with the version {ver:?} of write #{other}"
            ));
        }
        self.by_version.insert(ver, w);
        self.nodes[n].see(key, ver);
        if !self.keys[key as usize].note(ver, Owner::Write(w), self.now) && !knowing {
            self.born_obsolete(key);
        }
        let write = &mut self.writes[w];
        write.version = Some(ver);
        let geometry = write.geometry;
        let width = write.width();
        write.order = wire::interleaved(geometry, INTERLEAVE_DEPTH)
            .map(|(stripe, shard)| stripe * width + u32::from(shard))
            .collect();
        let (listed, count) = (write.order.len(), write.count);
        if listed as u32 != count {
            self.fail(format!(
                "wire::interleaved gives {listed} positions for {geometry:?}, which has {count} \
                 datagrams"
            ));
        }
        let local = write.superseded_locally;
        if let Some(seen) = write.seen_at_done.take() {
            if !local && seen.is_none_or(|s| s <= ver) {
                self.fail(format!(
                    "write #{w} was answered OK before any of its datagrams went out, and its \
                     node had seen no newer version of {} (newest {seen:?}, this {ver:?})",
                    self.key_name(key)
                ));
            }
        }
        w
    }

    /// A fragment node `n` rebuilt and sent: it must be byte for byte the fragment its origin
    /// sent (or would send: parity a node rebuilds may pass its origin's own copy), of a write
    /// whose node has sent something. Returns its meta.
    fn repair_sent(&mut self, n: usize, ver: Ver, d: &DataFrame<'_>, bytes: &[u8]) -> Meta {
        let Some(&w) = self.by_version.get(&ver) else {
            self.fail(format!(
                "node {n} rebuilt a fragment of version {ver:?}, which no PUT sent"
            ));
        };
        let write = &self.writes[w];
        let key = write.key;
        if self.key_id(d.key()) != Some(key) || d.geometry() != write.geometry {
            self.fail(format!(
                "node {n} rebuilt a fragment of version {ver:?} (write #{w} of {}, cut as {:?}) \
                 with key {:?} cut as {:?}",
                self.key_name(key),
                write.geometry,
                String::from_utf8_lossy(d.key()),
                d.geometry()
            ));
        }
        let (stripe, shard) = (d.stripe(), d.shard());
        if !write.valid(stripe, shard) {
            self.fail(format!(
                "node {n} rebuilt fragment ({stripe}, {shard}) of write #{w}, which has no such \
                 fragment"
            ));
        }
        let pos = write.pos(stripe, shard);
        self.check_fragment(n, w, stripe, shard, bytes, "rebuilt");
        self.writes[w].repaired += 1;
        self.writes[w].last_repair_at = self.now;
        let rebuilt_by = &mut self.writes[w].rebuilt_by;
        if rebuilt_by.len() <= n {
            rebuilt_by.resize(n + 1, 0);
        }
        rebuilt_by[n] = self.now;
        self.summary.repaired += 1;
        if self.mended() {
            self.summary.late_repairs += 1;
            self.trace(|| format!("late repair: write #{w} position {pos}"));
        }
        self.nodes[n].repairs_sent += 1;
        self.nodes[n].see(key, ver);
        let ks = &mut self.keys[key as usize];
        if ks.newest.is_some_and(|(newest, _)| newest > ver) {
            ks.old_rebuilt_at = Some(self.now);
        }
        Meta::Data {
            key,
            write: w as u32,
            pos,
        }
    }

    /// `bytes` must be the frame of fragment `(stripe, shard)` of write `w` exactly as its
    /// origin makes it: the value's bytes for DATA, the stripe's Reed-Solomon parity (computed
    /// here with `elayday::coding::Coder`) for PARITY.
    fn check_fragment(
        &mut self,
        n: usize,
        w: usize,
        stripe: u32,
        shard: u16,
        bytes: &[u8],
        how: &str,
    ) {
        self.compute_parity(w);
        let write = &self.writes[w];
        let g = write.geometry;
        let ver = write.version.expect("sent");
        let chunk = usize::from(g.chunk_len);
        let payload = match g.data_index(stripe, shard) {
            Some(index) => &write.value[wire::chunk(write.value.len(), index, g.chunk_len)],
            None => {
                let parity = write.parity.as_ref().expect("computed above");
                let at = (stripe as usize * usize::from(g.parity)
                    + usize::from(shard - g.data_in(stripe)))
                    * chunk;
                &parity[at..at + chunk]
            }
        };
        let repr = DataRepr {
            origin: ver.origin,
            hlc: ver.hlc,
            geometry: g,
            stripe,
            shard,
            // The lap is the one thing a node changes in a fragment (one more at every node).
            lap: bytes.get(54).copied().unwrap_or(0),
            key: &self.sc.workload.keys[write.key as usize],
            payload,
        };
        let mut expected = std::mem::take(&mut self.scratch);
        expected.resize(repr.buffer_len(), 0);
        repr.emit(&mut expected);
        if expected[..] != *bytes {
            let kind = if shard < g.data_in(stripe) {
                "DATA"
            } else {
                "PARITY"
            };
            let first = expected.iter().zip(bytes).position(|(a, b)| a != b);
            self.fail(format!(
                "node {n} {how} fragment ({stripe}, {shard}) of write #{w} ({kind}, {} of {} \
                 bytes, first difference at byte {first:?}) that is not the one its value \
                 makes ({} bytes)",
                self.key_name(write.key),
                bytes.len(),
                expected.len()
            ));
        }
        self.scratch = expected;
    }

    /// The parity of every stripe of write `w`, once.
    fn compute_parity(&mut self, w: usize) {
        let write = &self.writes[w];
        let g = write.geometry;
        if write.parity.is_some() || g.parity == 0 {
            return;
        }
        let chunk = usize::from(g.chunk_len);
        let per_stripe = usize::from(g.parity) * chunk;
        let mut parity = vec![0; write.stripes() as usize * per_stripe];
        for stripe in 0..write.stripes() {
            let data: Vec<&[u8]> = (0..g.data_in(stripe))
                .map(|shard| {
                    let index = g.data_index(stripe, shard).expect("a data position");
                    &write.value[wire::chunk(write.value.len(), index, g.chunk_len)]
                })
                .collect();
            let out = &mut parity[stripe as usize * per_stripe..][..per_stripe];
            self.coder
                .encode(&data, usize::from(g.parity), chunk, |i, shard| {
                    out[i * chunk..][..chunk].copy_from_slice(shard)
                })
                .expect("a valid geometry codes");
        }
        self.writes[w].parity = Some(parity);
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
            self.check_stale(key, write as usize, &d);
        }
        let meta = d.meta;
        let mut out = std::mem::take(&mut self.out);
        match self.links[link].send(self.now, d, &mut out) {
            Ok(()) => {
                if out.first().is_some_and(|(_, d)| d.corrupted) {
                    self.summary.corrupted += 1;
                    self.destroyed(meta);
                } else if let Meta::Data { write, pos, .. } = meta {
                    self.writes[write as usize].live[pos as usize] += out.len() as u16;
                }
                for (at, d) in out.drain(..) {
                    self.push(at, Ev::Arrive { link, d });
                }
            }
            Err(_) => self.destroyed(meta),
        }
        self.out = out;
    }

    /// A datagram reached the end of link `link`: it is no longer in the network.
    pub(super) fn delivered(&mut self, link: usize, d: &Datagram) {
        self.links[link].delivered(d.bytes.len());
        if let (Meta::Data { write, pos, .. }, false) = (d.meta, d.corrupted) {
            self.writes[write as usize].copy_out(pos);
        }
    }

    pub(super) fn reflect_in(&mut self, d: Datagram) {
        let reflector = self.reflector.as_mut().expect("a reflector");
        if reflector.take(d.bytes.len()) {
            if let (Meta::Data { write, pos, .. }, false) = (d.meta, d.corrupted) {
                self.writes[write as usize].live[pos as usize] += 1;
            }
            let at = self.now + reflector.spec.delay;
            self.push(at, Ev::Reflect { d });
        } else if !d.corrupted {
            self.destroyed(d.meta);
        }
    }

    /// The reflector sends `d` back.
    pub(super) fn reflect_out(&mut self, d: Datagram) {
        self.reflector
            .as_mut()
            .expect("a reflector")
            .release(d.bytes.len());
        if let (Meta::Data { write, pos, .. }, false) = (d.meta, d.corrupted) {
            self.writes[write as usize].copy_out(pos);
        }
        self.send(1, d);
    }

    /// The network destroyed a datagram (lost, cut, overflowed or corrupted).
    fn destroyed(&mut self, meta: Meta) {
        self.summary.destroyed += 1;
        if let Meta::Data { write, pos, .. } = meta {
            let write = &mut self.writes[write as usize];
            write.destroyed += 1;
            write.copy_lost(pos, self.now);
        }
    }
}
