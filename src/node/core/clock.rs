//! node::core::clock: the hybrid logical clock that versions writes, and the version it makes.
//!
//! It owns the rule that orders writes across nodes: a version is (HLC stamp, node id), compared
//! in that order, and the last writer wins everywhere. It has no clock of its own: the caller
//! passes the wall-clock time with every call (the drivers read the system clock, the simulator
//! its own). It must not read the network or know about frames.

/// Bits of an HLC stamp that hold the logical counter; the rest are milliseconds since 1970.
const LOGICAL_BITS: u32 = 16;
/// Stamps further ahead of our wall clock than this are not adopted (a peer with a broken clock
/// must not drag ours into the far future).
const MAX_AHEAD_MS: u64 = 60 * 60 * 1000;

/// The version of a value or a deletion: later versions replace earlier ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Hybrid logical clock stamp of the write.
    pub hlc: u64,
    /// Node that took the write; breaks ties between equal stamps.
    pub origin: u64,
}

/// A hybrid logical clock: never goes backwards, stays close to wall-clock milliseconds, and
/// moves past every stamp it has observed.
#[derive(Debug, Default)]
pub struct Hlc {
    last: u64,
}

impl Hlc {
    /// A stamp for a local event at wall-clock time `unix_ms`, later than every stamp issued or
    /// observed so far.
    pub fn tick(&mut self, unix_ms: u64) -> u64 {
        self.last = stamp(unix_ms).max(self.last + 1);
        self.last
    }

    /// Takes note of a stamp seen on the wire at wall-clock time `unix_ms`.
    #[inline]
    pub fn observe(&mut self, stamp: u64, unix_ms: u64) {
        if stamp > self.last && stamp >> LOGICAL_BITS <= unix_ms.saturating_add(MAX_AHEAD_MS) {
            self.last = stamp;
        }
    }
}

/// The first stamp of millisecond `unix_ms`.
pub fn stamp(unix_ms: u64) -> u64 {
    unix_ms << LOGICAL_BITS
}

/// Milliseconds since the Unix epoch that a stamp stands for.
pub fn stamp_millis(stamp: u64) -> u64 {
    stamp >> LOGICAL_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_764_000_000_000;

    #[test]
    fn ticks_are_strictly_increasing() {
        let mut clock = Hlc::default();
        let mut last = 0;
        for _ in 0..10_000 {
            let now = clock.tick(NOW_MS);
            assert!(now > last);
            last = now;
        }
        // A wall clock that steps back does not make stamps go back.
        assert!(clock.tick(NOW_MS - 1000) > last);
    }

    #[test]
    fn observing_a_later_stamp_moves_past_it() {
        let mut clock = Hlc::default();
        let ahead = clock.tick(NOW_MS) + (5_000 << LOGICAL_BITS);
        clock.observe(ahead, NOW_MS);
        assert!(clock.tick(NOW_MS) > ahead);
    }

    #[test]
    fn a_stamp_from_the_far_future_is_ignored() {
        let mut clock = Hlc::default();
        let far = stamp(NOW_MS + 2 * MAX_AHEAD_MS);
        clock.observe(far, NOW_MS);
        assert!(clock.tick(NOW_MS) < far);
    }

    #[test]
    fn versions_order_by_stamp_then_node() {
        let a = Version { hlc: 5, origin: 9 };
        let b = Version { hlc: 6, origin: 1 };
        let c = Version { hlc: 6, origin: 2 };
        assert!(a < b && b < c);
    }
}
