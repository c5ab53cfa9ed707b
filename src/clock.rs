//! clock: the hybrid logical clock that versions writes, and the value version it produces.
//!
//! It owns the rule that orders writes across nodes: a version is (HLC stamp, node id), compared
//! in that order, and the last writer wins everywhere. It must not read the network or know
//! about frames; the processor feeds it the stamps it sees.

use std::time::{SystemTime, UNIX_EPOCH};

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
    /// A stamp for a local event, later than every stamp issued or observed so far.
    pub fn tick(&mut self) -> u64 {
        self.last = physical().max(self.last + 1);
        self.last
    }

    /// Takes note of a stamp seen on the wire.
    #[inline]
    pub fn observe(&mut self, stamp: u64) {
        if stamp > self.last && stamp >> LOGICAL_BITS <= (physical() >> LOGICAL_BITS) + MAX_AHEAD_MS
        {
            self.last = stamp;
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch, shifted into HLC position.
fn physical() -> u64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    ms << LOGICAL_BITS
}

/// Milliseconds since the Unix epoch that a stamp stands for.
pub fn stamp_millis(stamp: u64) -> u64 {
    stamp >> LOGICAL_BITS
}

/// Milliseconds since the Unix epoch, now.
pub fn now_millis() -> u64 {
    physical() >> LOGICAL_BITS
}

/// A random 64-bit node id from the kernel's generator.
pub fn random_node_id() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: writes at most bytes.len() bytes into a buffer we own.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        // getrandom cannot fail for 8 bytes on Linux ≥ 3.17; fall back to time and pid anyway.
        let seed = physical() ^ u64::from(std::process::id()).rotate_left(32);
        return seed | 1;
    }
    u64::from_be_bytes(bytes) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_strictly_increasing() {
        let mut clock = Hlc::default();
        let mut last = 0;
        for _ in 0..10_000 {
            let now = clock.tick();
            assert!(now > last);
            last = now;
        }
    }

    #[test]
    fn observing_a_later_stamp_moves_past_it() {
        let mut clock = Hlc::default();
        let ahead = clock.tick() + (5_000 << LOGICAL_BITS);
        clock.observe(ahead);
        assert!(clock.tick() > ahead);
    }

    #[test]
    fn a_stamp_from_the_far_future_is_ignored() {
        let mut clock = Hlc::default();
        let far = physical() + ((2 * MAX_AHEAD_MS) << LOGICAL_BITS);
        clock.observe(far);
        assert!(clock.tick() < far);
    }

    #[test]
    fn versions_order_by_stamp_then_node() {
        let a = Version { hlc: 5, origin: 9 };
        let b = Version { hlc: 6, origin: 1 };
        let c = Version { hlc: 6, origin: 2 };
        assert!(a < b && b < c);
    }
}
