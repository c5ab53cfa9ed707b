//! sim::summary: what a run reports — its figures ([`Summary`]) — and the core bugs the
//! simulator found ([`Known`]), whose symptoms a lenient run counts.
//!
//! Plain data: it knows nothing of the world that fills it in, nor of the batches that add
//! summaries up (`Totals` in mod.rs).

/// Bugs of the core that the simulator found, each checked where its symptom shows. All three
/// are fixed (commit "node::core: three bugs the ring simulator found"), and every run fails on
/// their symptoms; a lenient run (`run_seed_lenient` in mod.rs, the bench's `--known`) counts
/// them instead, so that a bug listed here before it is fixed does not hide the other
/// invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// A GET answers NOT_FOUND at once from a deletion recorded off another node's tombstone,
    /// even though a newer write of the key, confirmed since, passed the node before that
    /// tombstone did (`Core::on_command`, the `records.get(&key).is_some_and(|r| r.deleted)`
    /// shortcut). Seeds 154 and 41.
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
    /// ms: a GET of k5 in between would get a deleted value back.
    LingeringWrite,
    /// A GET that had no room for some datagram of its value while other GETs held
    /// `--max-reassembly`, and room for the rest, answers DATA_LOSS ("the value went round
    /// incomplete: 2 of 3 datagrams arrived") for a value that is whole in the loop:
    /// `Reassembly::progress` reports the partial before the refusal. Seed 152: GET #386 of k2
    /// on node 0 at 9357.3 ms; fragment 2 of write #109 passes at 9366.6 ms while GET #384
    /// holds the budget, fragments 0 and 1 pass again at 9457.0 and 9468.8 ms, the probe is
    /// back at 9472.0 ms.
    NoRoomAsLoss,
}

impl Known {
    pub const ALL: [Known; 3] = [
        Known::DeletedShortcut,
        Known::LingeringWrite,
        Known::NoRoomAsLoss,
    ];
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
    /// Intact DATA datagrams a node dropped (superseded, deleted).
    pub node_drops: u64,
    /// GETs whose answer was checked against a settled key, and how many of those got the value.
    pub checked_gets: u64,
    pub checked_values: u64,
    /// Failures tolerated only because links reorder (a probe can overtake data).
    pub reorder_excused: u64,
    /// Forwardings of datagrams of a lingering write (see [`Known::LingeringWrite`]) that
    /// outlived their own lap: nobody drops them.
    pub immortal: u64,
    /// Symptoms of known core bugs let pass, by [`Known`].
    pub known: [u64; Known::ALL.len()],
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
