//! sim::census: the end of every run — the faults stop (no loss, burst, duplicate, corruption,
//! reordering, partition or overflow any more), a few laps pass for the nodes to mend what the
//! faults left, and then every live fragment must circulate exactly once: no position of a key's
//! newest version has two copies in the network (the nodes drop the copies of a fragment, when
//! its stripes have parity), and none is missing if the write was confirmed and no stripe of it
//! ever lost more positions than its parity (the nodes rebuild what a stripe lacks as it passes).
//! And nothing is rebuilt from two laps after the faults stopped on: nothing is lost any more.
//! Copies, and fragments rebuilt late, are symptoms of `Known::RepairChurn` (fixed), and so is a
//! fragment missing when the nodes still rebuild fragments of its write a lap before the census;
//! a fragment missing otherwise is `Known::NotRebuilt` (fixed: it fails the run).
//!
//! It never calls into a core but to read its figures; it changes the links, and runs after
//! every other part has done its work (`event_loop.rs` calls it).

use elayday::node::core::IoFigures;

use super::oracle::Owner;
use super::scenario::MS;
use super::summary::{Census, Known};
use super::world::World;

/// How long a stripe may wait for its judgement (repair.rs `QUIET_MAX`), at the most.
const QUIET_MAX: u64 = 100 * MS;

impl World {
    /// The faults stop now: the run goes on for the time it takes the nodes to mend the loop,
    /// which it returns.
    pub(super) fn calm_down(&mut self) -> u64 {
        self.trace(|| "the faults stop".to_string());
        for link in &mut self.links {
            link.spec.loss = 0.0;
            link.spec.burst = None;
            link.spec.dup = 0.0;
            link.spec.corrupt = 0.0;
            link.spec.partitions.clear();
            link.spec.capacity = u64::MAX / 2;
            // Reordering too: from now on every lap takes its nominal time.
            link.spec.fifo = true;
            link.spec.jitter = 0;
            link.spec.dup_extra = 0;
        }
        if let Some(reflector) = &mut self.reflector {
            reflector.spec.capacity = u64::MAX / 2;
        }
        self.sc.garbage_gap = None;
        self.calm_since = Some(self.now);
        self.settle_time()
    }

    /// A loss is rebuilt by the next node within a lap and the judgement of its stripe (which
    /// may wait for the rest of the stripe until just before its next lap); a copy is dropped by
    /// the first node it reaches within half a lap of its twin, or a lap later: three laps and
    /// two judgements.
    pub(super) fn settle_time(&self) -> u64 {
        3 * self.p_max + 2 * QUIET_MAX
    }

    /// Whether the nodes have had the time to mend what the faults left: from then on nothing
    /// is lost, so nothing is rebuilt.
    pub(super) fn mended(&self) -> bool {
        self.calm_since
            .is_some_and(|since| self.now > since + 2 * self.p_max + 2 * QUIET_MAX)
    }

    /// Every live fragment circulates exactly once (see the module documentation). Returns the
    /// figures; fails on a copy too many, or a fragment missing that the nodes should have
    /// rebuilt.
    pub(super) fn census(&mut self) -> Census {
        let untracked: u64 = (0..self.nodes.len())
            .map(|n| {
                let now = self.now_of(n);
                self.nodes[n]
                    .core
                    .stats(now, IoFigures::default())
                    .repair
                    .untracked
            })
            .sum();
        let mut census = Census {
            late_repairs: self.summary.late_repairs,
            ..Census::default()
        };
        let laps = self.settle_time() / self.p_max.max(1);
        if census.late_repairs > 0 {
            let what = format!(
                "{} fragments rebuilt more than two laps after the faults stopped (nothing is \
                 lost then)",
                census.late_repairs
            );
            self.known(Known::RepairChurn, what);
        }
        for key in 0..self.keys.len() {
            let Some((_, Owner::Write(w))) = self.keys[key].newest else {
                continue;
            };
            let write = &self.writes[w];
            let g = write.geometry;
            census.values += 1;
            census.fragments += u64::from(write.count);
            let mut lost = false;
            let mut doubled = None;
            let mut missing = None;
            for stripe in 0..write.stripes() {
                let mut live = 0;
                for pos in write.positions(stripe) {
                    match write.live[pos as usize] {
                        0 => {
                            census.missing += 1;
                            missing.get_or_insert(pos);
                        }
                        1 => live += 1,
                        copies => {
                            live += 1;
                            if g.parity > 0 {
                                census.doubled += 1;
                                doubled.get_or_insert((pos, copies));
                            }
                        }
                    }
                }
                lost |= live < g.data_in(stripe);
            }
            census.lost_values += u64::from(lost);
            let name = self.key_name(key as u16);
            if let Some((pos, copies)) = doubled {
                let (stripe, shard) = write.at(pos);
                let what = format!(
                    "{laps} laps after the faults stopped, fragment ({stripe}, {shard}) of write \
                     #{w}, the newest version of {name}, has {copies} copies in the network"
                );
                self.known(Known::RepairChurn, what);
            }
            let write = &self.writes[w];
            let (worst, most) = write.most_lost();
            let mended = write.confirmed
                && write.fully_sent()
                && most <= g.parity
                && untracked == 0
                && !write.lingering;
            if let (true, Some(pos)) = (mended, missing) {
                let (stripe, shard) = write.at(pos);
                // Still rebuilt in the last lap, with no fault for laps: the churn.
                let churning = write.last_repair_at + self.p_max >= self.now;
                let what = format!(
                    "{laps} laps after the faults stopped, fragment ({stripe}, {shard}) of write \
                     #{w} (confirmed, the newest version of {name}, stripes of {}+{}) is missing \
                     though no stripe of it ever lost more than its parity (most: {most}, stripe \
                     {worst}; {} copies destroyed, {} dropped by nodes, {} rebuilt)",
                    g.data, g.parity, write.destroyed, write.node_dropped, write.repaired
                );
                let bug = if churning {
                    Known::RepairChurn
                } else {
                    Known::NotRebuilt
                };
                self.known(bug, what);
            }
        }
        census
    }
}
