//! sim::summary: what a run reports — its figures ([`Summary`]) — and the core bugs the
//! simulator found ([`Known`]), whose symptoms a lenient run counts.
//!
//! Plain data: it knows nothing of the world that fills it in, nor of the batches that add
//! summaries up (`Totals` in mod.rs).

/// Bugs of the core that the simulator found, each checked where its symptom shows. Every run
/// fails on the symptoms of those fixed ([`Known::fixed`]); the symptoms of a bug still open
/// are counted by the ordinary runs (and listed in their figures), and fail only the runs that
/// hold the core to every invariant (`run_seed_all` in mod.rs: the `open_bugs` test, the
/// bench's `--all`); a lenient run (`run_seed_lenient`, the bench's `--known`) counts them all,
/// so that a bug listed here does not hide the other invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// A GET answers NOT_FOUND at once from a deletion recorded off another node's tombstone,
    /// even though a newer write of the key, confirmed since, passed the node before that
    /// tombstone did (`Core::on_command`, the `records.get(&key).is_some_and(|r| r.deleted)`
    /// shortcut). Seeds 154 and 41. Fixed.
    DeletedShortcut,
    /// A write replaced while its fragments are still queued (by a DELETE or PUT of the key on
    /// the same node, or a newer version from elsewhere) is answered OK, and its fragments
    /// still go out to the last one (`Core::poll_transmit` takes `puts.front()` without looking
    /// at the key's record): datagrams of a deleted or overwritten version enter the network
    /// more than a lap after the deletion, and those sent after the node forgets the deletion
    /// circulate for ever. Seed 1000611: PUT #173 (12 KB of k5, queued behind another 18 KB at
    /// 5 frames/ms) is answered OK when DELETE #448 of k5 is taken at 1087.1 ms; its fragments
    /// go out from 1120.5 ms on, after the node forgot the deletion (its record lasts three
    /// periods, ~31 ms), so they are kept and go round until the next DELETE of k5, at 1182.8
    /// ms: a GET of k5 in between would get a deleted value back. Fixed.
    LingeringWrite,
    /// A GET that had no room for some datagram of its value while other GETs held
    /// `--max-reassembly`, and room for the rest, answers DATA_LOSS ("the value went round
    /// incomplete: 2 of 3 datagrams arrived") for a value that is whole in the loop:
    /// `Reassembly::progress` reports the partial before the refusal. Seed 152: GET #386 of k2
    /// on node 0 at 9357.3 ms; fragment 2 of write #109 passes at 9366.6 ms while GET #384
    /// holds the budget, fragments 0 and 1 pass again at 9457.0 and 9468.8 ms, the probe is
    /// back at 9472.0 ms. Fixed, and open again with stripes: a PARITY fragment that finds no
    /// room (`Reassembly::offer`, the parity branch) is counted (`reassembly_full`) but not
    /// recorded as a refusal, so `progress` reports the partial. Seed 152 again: GET #374 of k4
    /// on node 1 (9302.0 to 9431.3 ms) holds 18 of write #140's 19 data fragments (the 19th,
    /// data shard 14, is one node 1 rebuilds every lap, see `RepairChurn`: the copy that comes
    /// is dropped before the reassembly sees it), and no room for its parity, passing at 9388.2
    /// to 9405.6 ms while other GETs hold the budget: DATA_LOSS "stripe 0 had 18 of its 27
    /// datagrams, and 19 are needed". Seed 97 likewise (GET #729 of k5 at 18067.8 ms). And
    /// alone on its node: `Limits::min_reassembly` (1.5 times the value) leaves no room for a
    /// stripe's parity, `parity * chunk_len` bytes however small the value (9.4 KB at 32+8 and
    /// 1232-byte datagrams); seed 377: GET #601 of k4 on node 1 (12715.8 to 12843.4 ms, the
    /// node's `--max-reassembly` a few KB above the least) holds 9 of write #190's 11 data
    /// fragments and every one of its 8 parity fragments is refused: DATA_LOSS "stripe 0 had 9
    /// of its 19 datagrams, and 11 are needed". Open.
    NoRoomAsLoss,
    /// In-loop repair rebuilds and sends fragments of a version the node itself knows to be
    /// deleted or overwritten: it drops them as they pass (superseded, deleted), which makes
    /// their stripe's pass look short, and the repair, which never sees what the core drops,
    /// fills the pass in when it is judged. The deleted value goes back into the loop, out of
    /// reach of the one-lap rule (and for ever once the nodes forget the deletion). Seed 0:
    /// node 1's write #19 of k1 (1 data + 8 parity), replaced after 7 of its 9 datagrams went
    /// out, is deleted by DELETE #58 at 640.3 ms; node 3 drops shards 7 and 8 (rebuilt by node
    /// 2) as deleted at 658.17 ms and sends a rebuilt shard 7 at 658.35 ms. Fixed (repair.rs:
    /// `Repair::on_timer` does not judge a stripe of a version the core's records say is
    /// obsolete). Checked with the one-lap rule, for rebuilt datagrams. Open again for one case:
    /// a node that holds no record of the key (it neither wrote nor deleted it) cannot tell that
    /// a newer version passed, so a fragment it rebuilt of the older one, waiting to be sent
    /// into its place (`Repair::drop_older` forgets those the records make obsolete), still goes
    /// out; the writer of the newer version drops it as it passes, within a lap of being sent.
    /// Seed 5384 (bursty, ring of 3): a rebuilt fragment of write #149 of k5 goes out at 959.731
    /// ms, 12.6 ms after a newer version passed that node.
    RebuiltObsolete,
    /// Repair churn: a fragment a node rebuilds goes out when its stripe's pass is judged, a
    /// `quiet` time after the rest of its stripe (repair.rs: a quarter of the shortest lap, at
    /// most 100 ms, at 8d8d900), so it comes back a lap later at the very moment the node
    /// judges the next pass: the node judges first, finds it missing, rebuilds it again and drops
    /// the one that comes as a copy — once a lap, for ever, at every node it passes. Smallest
    /// case (test `repair_falls_silent_after_one_lossy_lap`, one node and a reflector, FIFO
    /// links, 20 ms laps, one lap of 1 % loss): shard 16 of write #1 is lost at 81.9 ms and
    /// rebuilt at 110.000 ms; at 130.000, 150.000, 170.000 ms and so on node 0 rebuilds shards
    /// 15 and 16 and drops the pair that comes at that same instant as copies. With more nodes
    /// and more traffic the rebuilt fragments drift away from their stripe; once a stripe spans
    /// half a lap, passes mix and two copies of a fragment half a lap apart are each taken for
    /// the other's next lap: both circulate for ever (seed 147 at 7ebf145: shard 0 of write #55
    /// rebuilt at 1985.87 and again at 1991.30 ms, half a lap later; census: 2 copies). A GET
    /// on a churning node misses what it rebuilds: the fragments a node rebuilds are not offered
    /// to its own reassembly, and the ones that come are dropped as copies before it sees them;
    /// seed 1000271 (ring of 5, 585 ms laps): GET #1245 of k1 on node 0 (140390.5 to 140975.7
    /// ms); node 0 judges stripe 3 of write #477 at 140600.7 ms before 8 trailing fragments
    /// come, rebuilds them, drops them as copies at 140651.3 and 140713.5 ms: DATA_LOSS "stripe 3
    /// had 31 of its 40 datagrams, and 32 are needed". At a slow node the churn takes the whole
    /// send rate, and rebuilt fragments go out before tombstones and writes: seed 309 at
    /// 8d8d900 (ring of 5, 5 frames/ms): node 4 sends 301,702 rebuilt fragments from 2255 ms to
    /// the end of the run at 62.6 s (240,839 of them of one write of k3), and DELETE #114,
    /// taken at 2255.4 ms, is never answered. Checked by the census (fragments rebuilt
    /// more than two laps after the faults stopped, fragments with two copies, or missing while
    /// still rebuilt) and at a GET's answer (DATA_LOSS or NOT_FOUND for a value whole in the
    /// loop, whose node rebuilt fragments of it while the GET waited), and at the end (a
    /// request never answered, postponed by more rebuilt fragments than the network ever
    /// destroyed). Fixed: fragments carry their lap (wire `lap`, one more at every node), so a
    /// copy is told from the next lap exactly, whatever the timing; a fragment rebuilt behind its
    /// stripe is moved into its place on the next lap (repair.rs `moving`), so a stripe stays
    /// together and its next pass is not judged before its last fragment. Then one seed of the
    /// long run: 4778 (chaos, ring of 2, 544 ms laps, 1+1): after the faults
    /// stop, node 0 sends rebuilt copies of shard 0 of stripes 8 and 9 of write #388 at
    /// 131536.276 ms, 100 ms (the longest quiet time) after both stripes passed it whole in lap
    /// 8, with lap 8 on the wire; from then on both nodes rebuild fragments of the write every
    /// lap and drop the copies. The node's `--max-repair` (14 KB) was full when shard 0 passed:
    /// the stripe went untracked, a slot was made when shard 1 came, and that pass, short of the
    /// shard that had gone by unseen, was mended: a copy. Fixed: a slot made while stripes are
    /// being turned away for want of room is not mended until its next pass (`Slot::partial`).
    RepairChurn,
    /// A fragment missing from its stripe's pass is never rebuilt, though the rest of the
    /// stripe passes every lap: `judge` hands the coder the payloads the slot holds, and a slot
    /// that lives from one pass to the next (a narrow value's rows span half a lap, and the slot
    /// is kept half a lap after its last fragment) still holds the missing fragment's payload
    /// from the pass before; the coder, given every shard, rebuilds nothing, the pass is marked
    /// done, and the fragment is never sent again. Seed 136 (ring of 2, 109 ms laps, 120-byte
    /// datagrams, 32+8): shard 12 of write #75 (k2, 10 stripes) is lost on link 0 at about
    /// 15240 ms; node 1 judges every later pass of stripe 0 at the start of the next with 39 of
    /// 40 present (`present 39, seen[12]` a lap old, payloads held) and sends nothing; the census
    /// finds it missing. Checked by the census (a fragment missing, with nothing of its write
    /// rebuilt in the last lap). Fixed in 8d8d900 (the judge rebuilds in place, in the slot's
    /// own buffer, every fragment the pass lacks).
    NotRebuilt,
    /// A node that cannot send as fast as it mends (5 frames/ms) keeps a backlog of rebuilt
    /// fragments; each goes out laps after its stripe was judged, when the stripe has moved on,
    /// so it is a copy from an old lap (its lap is behind: the laps of one write's fragments
    /// scatter), and the stripe, still short when judged again, is mended again: the rebuilt
    /// fragments take the whole send rate and the run passes its event budget. Seed 2469
    /// (corrupt, a node and a reflector, 2+5): runaway at 35.8 s. Fixed: a rebuilt fragment is
    /// sent only while its stripe is in the lap it was rebuilt for (`Repair::wanted`).
    RepairBacklog,
}

impl Known {
    pub const ALL: [Known; 7] = [
        Known::DeletedShortcut,
        Known::LingeringWrite,
        Known::NoRoomAsLoss,
        Known::RebuiltObsolete,
        Known::RepairChurn,
        Known::NotRebuilt,
        Known::RepairBacklog,
    ];

    /// Whether the bug is fixed: then every run fails on its symptom.
    pub fn fixed(self) -> bool {
        !matches!(self, Known::NoRoomAsLoss | Known::RebuiltObsolete)
    }

    /// Seeds that show the symptom of an open bug (the `open_bugs` test runs them).
    pub fn seeds(self) -> &'static [u64] {
        match self {
            Known::NoRoomAsLoss => &[97],
            Known::RebuiltObsolete => &[5384],
            _ => &[],
        }
    }
}

/// Figures of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub seed: u64,
    pub description: String,
    /// Simulated time, ns.
    pub sim_time: u64,
    /// Nominal loop period, ns.
    pub period: u64,
    pub events: u64,
    pub requests: u64,
    pub done: u64,
    pub values: u64,
    pub not_found: u64,
    pub data_loss: u64,
    pub unavailable: u64,
    pub exhausted: u64,
    pub cancelled: u64,
    /// New frames the nodes sent, and datagrams they forwarded.
    pub sent: u64,
    pub forwarded: u64,
    /// Datagrams the network destroyed (lost, cut, overflowed, corrupted).
    pub destroyed: u64,
    pub corrupted: u64,
    /// Intact DATA and PARITY datagrams a node dropped (superseded, deleted, or the last copy
    /// of a fragment taken for a copy).
    pub node_drops: u64,
    /// Fragments the nodes rebuilt and sent (in-loop repair), and of those the ones rebuilt
    /// once the loop should have been mended (`World::mended`).
    pub repaired: u64,
    pub late_repairs: u64,
    /// Copies of a fragment the nodes dropped (`DropReason::Duplicate`), and of those the ones
    /// that were its last copy in the network.
    pub duplicates: u64,
    pub last_copy_drops: u64,
    /// Times `wants_transmit` said yes and `poll_transmit` gave nothing (a narrow write between
    /// two rows: see `World::idle_poll`).
    pub idle_polls: u64,
    /// GETs whose answer was checked against a settled key, and how many of those got the value.
    pub checked_gets: u64,
    pub checked_values: u64,
    /// Failures tolerated only because links reorder (a probe can overtake data).
    pub reorder_excused: u64,
    /// GETs of a settled key not held to its value because a node had rebuilt a fragment of an
    /// older version of the key within a lap before (`KeyState::old_rebuilt_at`).
    pub old_rebuilt_excused: u64,
    /// Forwardings of datagrams of a lingering write (see [`Known::LingeringWrite`]) that
    /// outlived their own lap: nobody drops them.
    pub immortal: u64,
    /// Symptoms of known core bugs let pass, by [`Known`].
    pub known: [u64; Known::ALL.len()],
    /// What circulated once the faults had stopped and the nodes had mended the loop.
    pub census: Option<Census>,
    /// What a survival run found.
    pub survival: Option<SurvivalReport>,
    /// Highest usage seen on any node.
    pub peak_requests: usize,
    pub peak_records: usize,
    pub peak_reassembly: u64,
    pub peak_backlog: u64,
}

impl Summary {
    /// Simulated loop periods.
    pub fn laps(&self) -> f64 {
        self.sim_time as f64 / self.period as f64
    }
}

/// What the census found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Census {
    /// Keys whose newest version is a value, and their datagrams.
    pub values: u64,
    pub fragments: u64,
    /// Of those values, the ones with a stripe short of its data count: lost.
    pub lost_values: u64,
    /// Fragments missing, in stripes that could still be rebuilt and in those that could not.
    pub missing: u64,
    /// Fragments with more than one copy in the network.
    pub doubled: u64,
    /// Fragments rebuilt more than two laps after the faults stopped.
    pub late_repairs: u64,
}

/// What a survival run found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SurvivalReport {
    pub values: u64,
    pub bytes: u64,
    /// Datagrams of all values, data and parity.
    pub datagrams: u64,
    /// Values of a single stripe.
    pub narrow: u64,
    /// Laps of loss before the reads started, and laps in all until the reads ended.
    pub laps: u64,
    pub laps_total: f64,
    /// Values with a stripe short of its data count in the network when the reads started,
    /// and of those the narrow ones.
    pub lost: u64,
    pub lost_narrow: u64,
    /// The lap of loss in which the first value lost its first stripe.
    pub first_death_lap: Option<f64>,
    /// GETs that returned their value, that answered DATA_LOSS or NOT_FOUND, and UNAVAILABLE
    /// (the loop broken: all that is lost, and bursts counted in datagrams last long when
    /// little is left to send).
    pub read: u64,
    pub unreadable: u64,
    pub unavailable: u64,
    /// The network's and the nodes' figures over the whole run.
    pub destroyed: u64,
    pub repaired: u64,
    pub unrecoverable: u64,
    pub duplicates: u64,
    /// What circulated once the loss stopped and the nodes had mended the loop.
    pub census: Census,
    /// Symptoms of the open bugs listed in [`Known`] (a GET that missed what its own node
    /// rebuilt, say), by bug.
    pub known: [u64; Known::ALL.len()],
    pub events: u64,
}

impl SurvivalReport {
    /// One line of figures.
    pub fn line(&self) -> String {
        format!(
            "{} values ({} narrow, {:.1} MB, {} datagrams), {} laps of loss: {} values lost \
             ({} narrow; the first in lap {}), {} of {} read back ({} UNAVAILABLE); {} datagrams destroyed, {} rebuilt, {} stripe \
             passes unrecoverable, {} copies dropped; after the calm: {} values lost, {} \
             fragments missing, {} with two copies, {} rebuilt late; open bugs: {}",
            self.values,
            self.narrow,
            self.bytes as f64 / 1e6,
            self.datagrams,
            self.laps,
            self.lost,
            self.lost_narrow,
            self.first_death_lap
                .map_or("-".to_string(), |lap| format!("{lap:.0}")),
            self.read,
            self.read + self.unreadable + self.unavailable,
            self.unavailable,
            self.destroyed,
            self.repaired,
            self.unrecoverable,
            self.duplicates,
            self.census.lost_values,
            self.census.missing,
            self.census.doubled,
            self.census.late_repairs,
            Known::ALL
                .iter()
                .filter(|k| self.known[**k as usize] > 0)
                .map(|k| format!("{k:?} {}", self.known[*k as usize]))
                .collect::<Vec<_>>()
                .join(", "),
        )
    }
}
