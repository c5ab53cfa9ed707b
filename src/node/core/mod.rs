//! node::core: the node's protocol as a state machine, with no I/O of its own.
//!
//! It owns every decision a node makes: which received datagram goes on and which is dropped
//! (superseded, deleted, corrupt, inconsistent), the confirmation and rollback of writes, the
//! reassembly of values for GETs, the probes that time the loop, the write versions and the
//! records of recent writes and deletions. Inputs come in as calls — a received datagram
//! ([`Core::on_datagram`]), a request ([`Core::on_command`]), the passing of time
//! ([`Core::on_timer`]) — each with the current time ([`Now`]); outputs go out as new frames
//! written into the caller's buffer ([`Core::poll_transmit`]) and answers
//! ([`Core::poll_answer`]). It has no sockets, channels, threads or clock: the drivers in
//! [`crate::node`] and the ring simulator in the tests supply all of that, so the same code runs
//! under both.
//!
//! A forwarded datagram is looked at in place (a checked view, no copy, no allocation): the
//! caller forwards the very bytes it passed in when [`Core::on_datagram`] says so. Every table
//! has a limit set by configuration ([`Limits`]); past it requests are refused with
//! RESOURCE_EXHAUSTED and datagrams are counted, never allocated.

pub mod clock;
mod config;
mod probes;
pub mod reassembly;
pub mod records;
pub mod repair;
mod requests;
#[cfg(test)]
mod tests;
pub mod writes;

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

pub use config::{CoreConfig, Fec, Limits, Now};
pub use requests::{
    Answer, Command, DropReason, Failure, FailureKind, IoFigures, RequestId, Stats, Usage,
};

use self::clock::{Hlc, Version};
use self::probes::Probes;
pub use self::probes::Totals;
use self::reassembly::{Progress, Reassembly};
use self::records::{Confirm, Records};
use self::repair::{Repair, Verdict};
use self::writes::{Emit, PutJob};
use crate::coding::Coder;
use crate::wire::{
    self, DataFrame, Frame, Geometry, Kind, ProbeRepr, TombstoneFrame, TombstoneRepr,
};

/// Foreign probes older than this (or ten of our loop periods) are dropped.
const PROBE_MAX_AGE: Duration = Duration::from_secs(60);
/// Tombstones older than this are dropped even if their origin never takes them back.
const TOMBSTONE_MAX_AGE_MS: u64 = 10 * 60 * 1000;

/// What becomes of a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Drop,
    /// Forwarded as it came.
    Forward,
    /// A fragment forwarded as one of the pass of this lap (it goes with one more).
    Lap(u8),
}

struct GetWait {
    key: Box<[u8]>,
    probe_seq: u64,
}

/// A tombstone to emit, and the DELETE to answer once it is on its way.
struct TombstoneOut {
    key: Box<[u8]>,
    hlc: u64,
    answer: Option<RequestId>,
}

/// A node's protocol state. See the module documentation.
pub struct Core {
    config: CoreConfig,
    hlc: Hlc,
    started: Duration,
    records: Records,
    reassembly: Reassembly,
    repair: Repair,
    /// Computes the parity of writes being sent.
    coder: Coder,
    gets: BTreeMap<RequestId, GetWait>,
    /// Writes held until the loop is first known to be closed.
    parked: VecDeque<Command>,
    puts: VecDeque<PutJob>,
    /// Keys of writes all sent, waiting for the probe that proves they had time to come back.
    confirming: Vec<Box<[u8]>>,
    tombstones: VecDeque<TombstoneOut>,
    answers: VecDeque<(RequestId, Answer)>,
    probes: Probes,
    totals: Totals,
    forwarded: u64,
    forwarded_bytes: u64,
    dropped: [u64; DropReason::ALL.len()],
    refused: [u64; requests::REFUSALS.len()],
}

impl Core {
    /// A core that starts at `now` with nothing known of the loop.
    pub fn new(config: CoreConfig, now: Now) -> Core {
        let limits = config.limits;
        Core {
            hlc: Hlc::default(),
            started: now.mono,
            records: Records::new(limits.max_records),
            reassembly: Reassembly::new(limits.max_value_size, limits.max_reassembly),
            repair: Repair::new(limits.max_repair),
            coder: Coder::new(),
            gets: BTreeMap::new(),
            parked: VecDeque::new(),
            puts: VecDeque::new(),
            confirming: Vec::new(),
            tombstones: VecDeque::new(),
            answers: VecDeque::new(),
            probes: Probes::new(now.mono),
            totals: Totals::default(),
            forwarded: 0,
            forwarded_bytes: 0,
            dropped: [0; DropReason::ALL.len()],
            refused: [0; requests::REFUSALS.len()],
            config,
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.config.id
    }

    /// Whether probes come back (false before the first one has, and while the loop is broken).
    pub fn loop_closed(&self) -> bool {
        self.probes.closed()
    }

    /// What circulated during the last loop period.
    pub fn circulating(&self) -> Totals {
        self.probes.circulating()
    }

    // ----- datagrams -------------------------------------------------------------------------

    /// Decides the fate of one received datagram: true to forward it, as it is now. The core
    /// changes one thing in it: the lap of a DATA or PARITY fragment, one more at every node
    /// (`wire::write_lap`, two bytes the checksum does not cover). The hot path: no
    /// allocation, no copy (but into a value a GET waits for).
    #[inline]
    pub fn on_datagram(&mut self, datagram: &mut [u8], now: Now) -> bool {
        let fate = self.keep(datagram, now);
        if let Fate::Lap(lap) = fate {
            wire::write_lap(datagram, lap.wrapping_add(1));
        }
        let keep = fate != Fate::Drop;
        if keep {
            self.forwarded += 1;
            self.forwarded_bytes += datagram.len() as u64;
        }
        keep
    }

    fn drop_for(&mut self, reason: DropReason) -> Fate {
        self.dropped[reason as usize] += 1;
        Fate::Drop
    }

    fn keep(&mut self, datagram: &[u8], now: Now) -> Fate {
        let frame = match Frame::new_checked(datagram) {
            Ok(frame) => frame,
            Err(error) => return self.drop_for(error.into()),
        };
        if frame.epoch() != 0 {
            // Sealed with a ring key this node does not have.
            return self.drop_for(DropReason::Unauthenticated);
        }
        self.hlc.observe(frame.hlc(), now.unix_ms);
        let version = Version {
            hlc: frame.hlc(),
            origin: frame.origin(),
        };
        match frame.kind() {
            Kind::Probe(probe) => {
                if frame.origin() != self.config.id {
                    // Another node's probe: its origin takes it back, unless that node is gone
                    // (restarted nodes get a new id); then it would go round for ever.
                    if age_ms(frame.hlc(), now) > self.probe_max_age_ms() {
                        return self.drop_for(DropReason::Stale);
                    }
                    return Fate::Forward;
                }
                if let Some(seq) = self
                    .probes
                    .returned(probe.sequence(), now.mono, self.totals)
                {
                    self.on_probe_back(seq, now);
                }
                Fate::Drop
            }
            Kind::Tombstone(tombstone) => {
                if self.on_tombstone(version, &tombstone, now) {
                    Fate::Forward
                } else {
                    Fate::Drop
                }
            }
            Kind::Data(data) => self.on_data(version, &data, true, datagram.len(), now),
            Kind::Parity(data) => self.on_data(version, &data, false, datagram.len(), now),
        }
    }

    fn on_data(
        &mut self,
        version: Version,
        frame: &DataFrame<'_>,
        is_data: bool,
        len: usize,
        now: Now,
    ) -> Fate {
        let mut floor = None;
        let mut superseded = None;
        let mut confirmed = None;
        let mut newer = false;
        if !self.records.is_empty() {
            if let Some(record) = self.records.get_mut(frame.key()) {
                if version < record.version || (version == record.version && record.deleted) {
                    let reason = if record.deleted {
                        DropReason::Deleted
                    } else {
                        DropReason::Superseded
                    };
                    return self.drop_for(reason);
                }
                if version > record.version {
                    // A newer write from elsewhere: from now on it is the one to keep.
                    record.version = version;
                    record.deleted = false;
                    record.geometry = None;
                    superseded = record.confirm.take();
                    newer = true;
                } else if record.geometry.is_some_and(|g| g != frame.geometry()) {
                    // Our own version with a shape we never wrote: not ours.
                    return self.drop_for(DropReason::Inconsistent);
                }
                floor = Some(record.version);
            }
        }
        if newer {
            self.stop_older_writes(frame.key(), version);
        }
        let lap = match self
            .repair
            .on_fragment(frame, version.origin, version.hlc, now.mono)
        {
            Verdict::Forward(lap) => lap,
            Verdict::Duplicate => {
                if let Some(confirm) = superseded {
                    self.write_superseded(confirm);
                }
                // A copy is dropped, but its bytes are the fragment's: a GET waiting here may
                // not have had the one the node sent in its place (a rebuilt or moved one).
                if !self.reassembly.is_empty() {
                    if let Some(done) = self.reassembly.offer(frame, version, floor) {
                        self.finish_gets(done.waiters, done.value);
                    }
                }
                return self.drop_for(DropReason::Duplicate);
            }
        };
        if let Some(record) = floor.and_then(|_| self.records.get_mut(frame.key())) {
            if let Some(confirm) = record.confirm.as_mut() {
                if confirm.mark(frame.stripe(), frame.shard()) {
                    confirmed = record.confirm.take();
                    record.expires = now.mono + self.probes.retention(self.config.loop_timeout);
                }
            }
        }
        if let Some(confirm) = confirmed {
            self.answers.push_back((confirm.id, Answer::Done));
        }
        if let Some(confirm) = superseded {
            self.write_superseded(confirm);
        }
        self.totals.datagrams += 1;
        self.totals.bytes += len as u64;
        if is_data && frame.stripe() == 0 && frame.shard() == 0 {
            self.totals.values += 1;
        }
        if !self.reassembly.is_empty() {
            if let Some(done) = self.reassembly.offer(frame, version, floor) {
                self.finish_gets(done.waiters, done.value);
            }
        }
        Fate::Lap(lap)
    }

    fn on_tombstone(&mut self, version: Version, frame: &TombstoneFrame<'_>, now: Now) -> bool {
        if version.origin == self.config.id {
            // Back home after a full circuit: every node has seen it.
            return false;
        }
        if age_ms(version.hlc, now) > TOMBSTONE_MAX_AGE_MS {
            self.drop_for(DropReason::Stale);
            return false;
        }
        let expires = now.mono + self.probes.retention(self.config.loop_timeout);
        self.stop_older_writes(frame.key(), version);
        match self.records.record(frame.key(), version, true, expires) {
            Ok(Some(confirm)) => self.write_superseded(confirm),
            Ok(None) => {}
            // Forwarded all the same: the other nodes record it; this one cannot drop the
            // deleted datagrams as they pass.
            Err(records::Full) => self.refused[requests::REFUSED_RECORDS] += 1,
        }
        true
    }

    /// A local write not yet confirmed was replaced by a newer version of its key (a write or
    /// a deletion, from here or elsewhere): it was written, then replaced, so it is done; what
    /// it had not sent yet is not sent at all (what it sent is dropped as it passes, being
    /// older than the key's record).
    fn write_superseded(&mut self, confirm: Confirm) {
        self.puts.retain(|job| job.id != confirm.id);
        self.answers.push_back((confirm.id, Answer::Done));
    }

    /// Version `version` of `key` is known here now: what is left to send of an older local
    /// write of the key, or of fragments of an older version rebuilt here, goes no further.
    /// (`write_superseded` does this for a write waiting for
    /// its confirmation; one confirmed before its last rows went out has none left.)
    fn stop_older_writes(&mut self, key: &[u8], version: Version) {
        self.repair.drop_older(key, version);
        if !self.puts.is_empty() {
            self.puts
                .retain(|job| *job.key != *key || job.version >= version);
        }
    }

    /// A fragment this node rebuilt, on its way out: a GET waiting here counts it as passed
    /// (its copy, if one comes, is dropped, and the next lap is one lap away).
    fn offer_rebuilt(&mut self, datagram: &[u8]) {
        let Ok(frame) = Frame::new_checked(datagram) else {
            return;
        };
        let version = Version {
            hlc: frame.hlc(),
            origin: frame.origin(),
        };
        if let Kind::Data(data) | Kind::Parity(data) = frame.kind() {
            let floor = self.records.get(data.key()).map(|r| r.version);
            if let Some(done) = self.reassembly.offer(&data, version, floor) {
                self.finish_gets(done.waiters, done.value);
            }
        }
    }

    fn finish_gets(&mut self, waiters: Vec<RequestId>, value: Result<Vec<u8>, u64>) {
        let mut value = Some(value);
        let last = waiters.len().saturating_sub(1);
        for (n, id) in waiters.into_iter().enumerate() {
            self.gets.remove(&id);
            let result = if n == last {
                value.take().expect("taken once, by the last waiter")
            } else {
                value.as_ref().expect("still here").clone()
            };
            let answer = match result {
                Ok(value) => Answer::Value(value),
                Err(len) => Answer::Failed(Failure::new(
                    FailureKind::ResourceExhausted,
                    format!(
                        "the value is {len} bytes, more than this node's --max-value-size of {}",
                        self.config.limits.max_value_size
                    ),
                )),
            };
            self.answers.push_back((id, answer));
        }
    }

    // ----- probes and the loop ---------------------------------------------------------------

    /// Another node's probe older than this has lost its origin.
    fn probe_max_age_ms(&self) -> u64 {
        let period = self.probes.period_max().unwrap_or(Duration::ZERO);
        (period * 10).max(PROBE_MAX_AGE).as_millis() as u64
    }

    /// Our probe `seq` came back: every datagram sent before it had a full lap to pass.
    fn on_probe_back(&mut self, seq: u64, now: Now) {
        // The shortest period sets how long the repair waits for a stripe, and remembers it.
        if let (Some(min), Some(max)) = (self.probes.period_min(), self.probes.period_max()) {
            self.repair.set_period(min, max);
        }
        self.check_confirmations(seq, now);
        for command in std::mem::take(&mut self.parked) {
            self.on_command(command, now);
        }
        let done: Vec<RequestId> = self
            .gets
            .iter()
            .filter(|(_, get)| get.probe_seq <= seq)
            .map(|(&id, _)| id)
            .collect();
        for id in done {
            let get = self.gets.remove(&id).expect("listed above");
            let floor = self.records.get(&get.key).map(|r| r.version);
            let progress = self.reassembly.progress(&get.key, floor, id);
            self.reassembly.remove_waiter(&get.key, id);
            let failure = match progress {
                Progress::Partial {
                    stripe,
                    have,
                    need,
                    total,
                } => Failure::new(
                    FailureKind::DataLoss,
                    format!(
                        "the value went round incomplete: stripe {stripe} had {have} of its \
                         {total} datagrams, and {need} are needed to rebuild it"
                    ),
                ),
                Progress::NoRoom { value_len, cost } => {
                    let budget = self.reassembly.budget();
                    let why = if cost > budget {
                        format!("it needs {cost} bytes, more than this node's --max-reassembly of {budget}")
                    } else {
                        format!(
                            "this node's --max-reassembly of {budget} bytes is taken by other GETs"
                        )
                    };
                    Failure::new(
                        FailureKind::ResourceExhausted,
                        format!("no room to reassemble the {value_len}-byte value: {why}"),
                    )
                }
                Progress::Nothing => {
                    Failure::new(FailureKind::NotFound, "key not found in the delay line")
                }
            };
            self.answers.push_back((id, Answer::Failed(failure)));
        }
    }

    /// Fails the writes whose datagrams had a full loop to come back and did not all do so,
    /// and takes what is left of them out of the loop with a tombstone.
    fn check_confirmations(&mut self, returned_seq: u64, now: Now) {
        let keys = std::mem::take(&mut self.confirming);
        for key in keys {
            let Some(record) = self.records.get_mut(&key) else {
                continue;
            };
            let due = record
                .confirm
                .as_ref()
                .and_then(|c| c.probe_seq)
                .is_some_and(|seq| seq <= returned_seq);
            if !due {
                if record.confirm.is_some() {
                    self.confirming.push(key);
                }
                continue;
            }
            let confirm = record.confirm.take().expect("checked");
            let (stripe, back) = confirm.worst();
            let g = confirm.geometry;
            let message = format!(
                "stripe {stripe} of the value came back around the loop with {back} of its {} \
                 datagrams, fewer than the {} it takes to rebuild it (is the loop over capacity \
                 or lossier than its parity covers?); the write was rolled back and the key is \
                 now absent",
                g.shards_in(stripe),
                g.data_in(stripe)
            );
            self.answers.push_back((
                confirm.id,
                Answer::Failed(Failure::new(FailureKind::DataLoss, message)),
            ));
            // The key is in the table already, so the deletion always finds room.
            self.delete(key, None, now);
        }
    }

    /// Time-driven work: loop health and the expiry of records. Call it at
    /// [`Core::next_deadline`] at the latest, and after any other input.
    pub fn on_timer(&mut self, now: Now) {
        if self.probes.check_broken(now.mono, self.config.loop_timeout) {
            let failure = self.unavailable();
            log::warn!("{}", failure.message);
            self.fail_everything(&failure);
        }
        let recheck = self.probes.loop_timeout(self.config.loop_timeout);
        self.records.expire(now.mono, recheck);
        // A version this node drops as it passes is not mended either.
        let records = &self.records;
        self.repair
            .on_timer(now.mono, |key, version| records.obsolete(key, version));
    }

    /// The latest time at which [`Core::on_timer`] or [`Core::poll_transmit`] has work to do.
    pub fn next_deadline(&self) -> Duration {
        let rows = self
            .puts
            .iter()
            .filter_map(|job| job.waits_until(Duration::ZERO))
            .min();
        self.next_timer()
            .min(self.probes.next_due())
            .min(rows.unwrap_or(Duration::MAX))
    }

    /// The latest time at which [`Core::on_timer`] has work to do (a caller that cannot
    /// transmit now waits for this, and for room to transmit).
    pub fn next_timer(&self) -> Duration {
        let broken = self.probes.broken_at(self.config.loop_timeout);
        let expiry = self.records.next_expiry();
        let repair = self.repair.next_deadline();
        [broken, expiry, repair]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(Duration::MAX)
    }

    fn unavailable(&self) -> Failure {
        Failure::new(
            FailureKind::Unavailable,
            format!(
                "the delay line is broken: nothing came back from {} for {:?}",
                self.config.destination,
                self.probes.loop_timeout(self.config.loop_timeout)
            ),
        )
    }

    /// Fails every request held: waiting GETs, parked and unsent writes, unconfirmed writes.
    /// Deletions already recorded still send their tombstones.
    fn fail_everything(&mut self, failure: &Failure) {
        for (id, get) in std::mem::take(&mut self.gets) {
            self.reassembly.remove_waiter(&get.key, id);
            self.answers
                .push_back((id, Answer::Failed(failure.clone())));
        }
        for command in std::mem::take(&mut self.parked) {
            if let Some(id) = command.id() {
                self.answers
                    .push_back((id, Answer::Failed(failure.clone())));
            }
        }
        // Writes being sent or waiting for their datagrams to come back cannot be confirmed
        // over a broken loop.
        self.puts.clear();
        for confirm in self.records.take_confirms() {
            self.answers
                .push_back((confirm.id, Answer::Failed(failure.clone())));
        }
        self.confirming.clear();
    }

    /// Fails everything held because the node is stopping.
    pub fn shut_down(&mut self) {
        let failure = Failure::new(FailureKind::Unavailable, "the node is shutting down");
        self.fail_everything(&failure);
        for tombstone in std::mem::take(&mut self.tombstones) {
            if let Some(id) = tombstone.answer {
                self.answers
                    .push_back((id, Answer::Failed(failure.clone())));
            }
        }
    }

    // ----- requests --------------------------------------------------------------------------

    /// Requests held now (waiting GETs, writes parked, being sent or confirmed, deletes).
    pub fn requests_held(&self) -> usize {
        let deletes = self.tombstones.iter().filter(|t| t.answer.is_some());
        self.gets.len()
            + self.parked.len()
            + self.puts.len()
            + self.confirming.len()
            + deletes.count()
    }

    /// Bytes of PUT values accepted and not yet all sent.
    pub fn write_backlog(&self) -> u64 {
        let parked = self.parked.iter().map(|c| match c {
            Command::Put { value, .. } => value.len() as u64,
            _ => 0,
        });
        let sending = self.puts.iter().map(PutJob::backlog);
        parked.sum::<u64>() + sending.sum::<u64>()
    }

    fn refuse(&mut self, id: RequestId, refusal: usize, message: String) {
        self.refused[refusal] += 1;
        let failure = Failure::new(FailureKind::ResourceExhausted, message);
        self.answers.push_back((id, Answer::Failed(failure)));
    }

    /// Takes a request. Its answer comes out of [`Core::poll_answer`], now or later.
    pub fn on_command(&mut self, command: Command, now: Now) {
        let id = match command {
            Command::Stats { id } => {
                let stats = self.stats(now, IoFigures::default());
                self.answers.push_back((id, Answer::Stats(Box::new(stats))));
                return;
            }
            Command::Cancel { id } => {
                if let Some(get) = self.gets.remove(&id) {
                    self.reassembly.remove_waiter(&get.key, id);
                }
                self.parked.retain(|c| c.id() != Some(id));
                return;
            }
            Command::Put { id, .. } | Command::Get { id, .. } | Command::Delete { id, .. } => id,
        };
        if self.probes.broken() {
            let failure = self.unavailable();
            self.answers.push_back((id, Answer::Failed(failure)));
            return;
        }
        let max = self.config.limits.max_requests;
        if self.requests_held() >= max {
            let message = Failure::too_many_requests(max).message;
            return self.refuse(id, requests::REFUSED_REQUESTS, message);
        }
        if let Command::Put { value, .. } = &command {
            let backlog = self.write_backlog();
            let max = self.config.limits.max_write_backlog;
            if backlog + value.len() as u64 > max {
                let message = format!(
                    "this node has {backlog} bytes of writes still to send; a {}-byte value \
                     would pass its --max-write-backlog of {max}; try again later",
                    value.len()
                );
                return self.refuse(id, requests::REFUSED_BACKLOG, message);
            }
        }
        match command {
            Command::Get { id, key } => {
                // Only this node's own deletion is known to be the newest version: one learned
                // from a tombstone may already be overwritten by a write that passed here first.
                let own = self.config.id;
                let deleted_here = self.records.get(&key);
                if deleted_here.is_some_and(|r| r.deleted && r.version.origin == own) {
                    let failure = Failure::new(FailureKind::NotFound, "key not found (deleted)");
                    self.answers.push_back((id, Answer::Failed(failure)));
                    return;
                }
                self.reassembly.add_waiter(&key, id);
                let probe_seq = self.probes.want();
                self.gets.insert(
                    id,
                    GetWait {
                        key: key.into(),
                        probe_seq,
                    },
                );
            }
            command if !self.probes.ever_closed() => {
                // Nothing has come back yet: hold writes until the loop is known to be closed.
                self.parked.push_back(command);
            }
            Command::Put { id, key, value } => self.start_put(id, key, value, now),
            Command::Delete { id, key } => {
                if !self.records.has_room_for(&key) {
                    return self.refuse(id, requests::REFUSED_RECORDS, self.records_full());
                }
                self.delete(key.into(), Some(id), now);
            }
            Command::Stats { .. } | Command::Cancel { .. } => unreachable!("handled above"),
        }
    }

    fn records_full(&self) -> String {
        format!(
            "this node remembers {} recent writes and deletions already (--max-records); try \
             again in a loop period or two",
            self.records.capacity()
        )
    }

    /// Takes a new version for a write (or a deletion, if `deleted`) of `key`, which has room in
    /// the records, and records it; an older local write it supersedes is answered as done.
    /// Fails if a newer version of the key is in the loop already.
    fn new_version(&mut self, key: &[u8], deleted: bool, now: Now) -> Result<Version, Failure> {
        let version = Version {
            hlc: self.hlc.tick(now.unix_ms),
            origin: self.config.id,
        };
        if let Some(failure) = self.ahead_of_us(key, version) {
            return Err(failure);
        }
        let expires = now.mono + self.probes.retention(self.config.loop_timeout);
        self.stop_older_writes(key, version);
        match self.records.record(key, version, deleted, expires) {
            Ok(Some(confirm)) => self.write_superseded(confirm),
            Ok(None) => {}
            Err(records::Full) => unreachable!("callers check for room first"),
        }
        Ok(version)
    }

    /// A failure if `key` has a version newer than `ours` in the loop: one stamped by a node
    /// whose clock is more than the clock's tolerance ahead of this one's. A write now would
    /// lose to it.
    fn ahead_of_us(&self, key: &[u8], ours: Version) -> Option<Failure> {
        let theirs = self.records.get(key)?.version;
        (theirs > ours).then(|| {
            let ahead =
                clock::stamp_millis(theirs.hlc).saturating_sub(clock::stamp_millis(ours.hlc));
            Failure::new(
                FailureKind::Unavailable,
                format!(
                    "the key has a newer version in the loop, stamped {ahead} ms ahead of this \
                     node's clock by node {:016x}: fix that node's clock, then write again",
                    theirs.origin
                ),
            )
        })
    }

    /// Deletes every version of `key` older than now: recorded here, announced to the other
    /// nodes by a tombstone that goes round the loop once. `answer` is the DELETE to answer
    /// when the tombstone is on its way.
    fn delete(&mut self, key: Box<[u8]>, answer: Option<RequestId>, now: Now) {
        let version = match self.new_version(&key, true, now) {
            Ok(version) => version,
            Err(failure) => {
                if let Some(id) = answer {
                    self.answers.push_back((id, Answer::Failed(failure)));
                }
                return;
            }
        };
        self.tombstones.push_back(TombstoneOut {
            key,
            hlc: version.hlc,
            answer,
        });
    }

    fn start_put(&mut self, id: RequestId, key: Vec<u8>, value: Vec<u8>, now: Now) {
        let chunk_len = wire::max_chunk_len(self.config.max_datagram, key.len());
        let chunk_len = u16::try_from(chunk_len).unwrap_or(u16::MAX - 1);
        if chunk_len == 0 {
            let failure = Failure::new(
                FailureKind::InvalidArgument,
                format!(
                    "a {}-byte key leaves no room for data in a {}-byte datagram",
                    key.len(),
                    self.config.max_datagram
                ),
            );
            self.answers.push_back((id, Answer::Failed(failure)));
            return;
        }
        let geometry = Geometry {
            value_len: value.len() as u64,
            chunk_len,
            data: self.config.fec.data,
            parity: self.config.fec.parity,
        };
        if !geometry.is_valid() {
            let failure = Failure::new(
                FailureKind::InvalidArgument,
                format!(
                    "a {}-byte value needs more than 2^32 stripes of {} datagrams",
                    value.len(),
                    geometry.data
                ),
            );
            self.answers.push_back((id, Answer::Failed(failure)));
            return;
        }
        if !self.records.has_room_for(&key) {
            return self.refuse(id, requests::REFUSED_RECORDS, self.records_full());
        }
        let version = match self.new_version(&key, false, now) {
            Ok(version) => version,
            Err(failure) => {
                self.answers.push_back((id, Answer::Failed(failure)));
                return;
            }
        };
        let record = self.records.get_mut(&key).expect("just recorded");
        record.geometry = Some(geometry);
        record.confirm = Some(Confirm::new(id, geometry));
        // A narrow value's rows are spread over an eighth of a lap (see `writes` and
        // `repair::Repair::set_period`).
        let lap = self.probes.period_last().min(self.probes.period_min());
        let spread = lap.unwrap_or_default() / 8;
        self.puts.push_back(PutJob::new(
            id,
            key.into(),
            value,
            version,
            geometry,
            spread,
        ));
    }

    // ----- output ----------------------------------------------------------------------------

    /// Whether [`Core::poll_transmit`] has a frame to write at `now`.
    pub fn wants_transmit(&self, now: Now) -> bool {
        !self.tombstones.is_empty()
            || self.puts.iter().any(|job| job.ready(now.mono))
            || self.repair.wants_transmit(now.mono)
            || self.probes.due(now.mono)
    }

    /// Writes the next new frame (a probe that is due, a rebuilt fragment, a tombstone, a PUT
    /// fragment) into `buf`,
    /// which holds at least `max_datagram` bytes, and returns its length; `None` when nothing
    /// is waiting. The caller sends it to the next hop. Frames not taken wait here.
    pub fn poll_transmit(&mut self, buf: &mut [u8], now: Now) -> Option<usize> {
        if self.probes.due(now.mono) {
            let repr = ProbeRepr {
                origin: self.config.id,
                hlc: self.hlc.tick(now.unix_ms),
                sequence: self.probes.next_seq(),
                sent_at_ns: now.mono.saturating_sub(self.started).as_nanos() as u64,
            };
            self.probes.sent(now.mono, self.totals);
            return Some(repr.emit(buf));
        }
        if self.repair.wants_transmit(now.mono) {
            if let Some(len) = self.repair.poll_transmit(buf, now.mono) {
                if !self.reassembly.is_empty() {
                    self.offer_rebuilt(&buf[..len]);
                }
                return Some(len);
            }
        }
        if let Some(tombstone) = self.tombstones.pop_front() {
            let repr = TombstoneRepr {
                origin: self.config.id,
                hlc: tombstone.hlc,
                key: &tombstone.key,
            };
            let len = repr.emit(buf);
            if let Some(id) = tombstone.answer {
                self.answers.push_back((id, Answer::Done));
            }
            return Some(len);
        }
        // (A write replaced before all of it went out has left the queue: see
        // `write_superseded`.) Writes go in the order taken, but one whose next row must wait
        // lets those behind it go meanwhile.
        let mut at = 0;
        while at < self.puts.len() {
            match self.puts[at].emit(buf, self.config.id, &mut self.coder, now.mono) {
                Emit::Frame(len) => {
                    if self.puts[at].done() {
                        self.all_sent(at);
                    }
                    return Some(len);
                }
                Emit::Wait(_) => at += 1,
                Emit::Done => self.all_sent(at),
            }
        }
        None
    }

    /// Write `at` of the queue has sent everything: the next probe's return proves it has all
    /// had time to come back.
    fn all_sent(&mut self, at: usize) {
        let job = self.puts.remove(at).expect("in the queue");
        let confirm = self.records.get_mut(&job.key).and_then(|r| {
            (r.version == job.version)
                .then_some(r.confirm.as_mut())
                .flatten()
                .filter(|c| c.id == job.id)
        });
        if let Some(confirm) = confirm {
            confirm.probe_seq = Some(self.probes.want());
            self.confirming.push(job.key);
        }
    }

    /// The next answer to deliver to its caller.
    pub fn poll_answer(&mut self) -> Option<(RequestId, Answer)> {
        self.answers.pop_front()
    }

    // ----- figures ---------------------------------------------------------------------------

    /// Figures about the loop and the core, with the I/O threads' figures `io`.
    pub fn stats(&self, now: Now, io: IoFigures) -> Stats {
        let c = self.probes.circulating();
        let dropped = DropReason::ALL
            .iter()
            .map(|&r| {
                let outside = match r {
                    DropReason::Truncated => io.truncated,
                    DropReason::Kernel => io.kernel_drops,
                    DropReason::SendFailed => io.send_failed,
                    _ => 0,
                };
                (r.as_str(), self.dropped[r as usize] + outside)
            })
            .collect();
        let mut counts = self.refused;
        counts[requests::REFUSED_REQUESTS] += io.pending_refused;
        let refused = requests::REFUSALS
            .iter()
            .copied()
            .zip(counts)
            .chain([
                ("reassembly_full", self.reassembly.refused()),
                ("repair_full", self.repair.figures().untracked),
            ])
            .collect();
        Stats {
            node_id: self.config.id,
            loop_closed: self.probes.closed(),
            period_last: self.probes.period_last(),
            period_min: self.probes.period_min(),
            period_max: self.probes.period_max(),
            circulating_datagrams: c.datagrams,
            circulating_bytes: c.bytes,
            circulating_values: c.values,
            received: io.received,
            forwarded: self.forwarded,
            forwarded_bytes: self.forwarded_bytes,
            dropped,
            refused,
            uptime: now.mono.saturating_sub(self.started),
            pending_requests: io.pending_requests.max(self.requests_held() as u64),
            records: self.records.len() as u64,
            reassembly_bytes: self.reassembly.held_bytes(),
            write_backlog_bytes: self.write_backlog(),
            repair: self.repair.figures(),
        }
    }

    /// Datagrams dropped for `reason` so far.
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Memory the core holds in its bounded tables, for checking against [`Limits`].
    pub fn usage(&self) -> Usage {
        Usage {
            requests: self.requests_held(),
            write_backlog: self.write_backlog(),
            reassembly: self.reassembly.held_bytes(),
            repair: self.repair.held_bytes(),
            records: self.records.len(),
            probes: self.probes.outstanding(),
            answers: self.answers.len(),
        }
    }
}

/// How old a frame's HLC stamp is at `now`, in milliseconds of wall-clock time.
fn age_ms(stamp: u64, now: Now) -> u64 {
    now.unix_ms.saturating_sub(clock::stamp_millis(stamp))
}
