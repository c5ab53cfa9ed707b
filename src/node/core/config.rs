//! node::core::config: what a core is started with, and the time it is given.
//!
//! It owns the core's settings ([`CoreConfig`]), its memory limits ([`Limits`], with the
//! defaults of `elayday server`) and the two clocks every input carries ([`Now`]). It must not
//! read flags or the system clock: the drivers and the simulator fill these in.

use std::time::Duration;

/// The current time, as the caller knows it: a monotonic clock for periods and deadlines, and
/// the wall clock for write versions and the age of frames from other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time since an arbitrary origin that never changes for one core.
    pub mono: Duration,
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

/// How much a core may hold; past each limit it refuses instead of allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest value accepted by PUT and reassembled for GET.
    pub max_value_size: u64,
    /// Requests held at once: waiting GETs, writes being sent or confirmed, deletes.
    pub max_requests: usize,
    /// Bytes of PUT values accepted and not yet all sent.
    pub max_write_backlog: u64,
    /// Bytes of values being put back together for GETs.
    pub max_reassembly: u64,
    /// Keys whose newest write or deletion is remembered at once.
    pub max_records: usize,
    /// Bytes held for the stripes passing now, to rebuild what they lack.
    pub max_repair: u64,
}

impl Limits {
    /// The defaults of `elayday server` (its flag table says the same), for a node whose
    /// largest value is `max_value_size` bytes.
    pub fn defaults(max_value_size: u64) -> Limits {
        Limits {
            max_value_size,
            max_requests: 10_000,
            max_write_backlog: (512 << 20).max(max_value_size),
            max_reassembly: (512 << 20).max(Limits::min_reassembly(max_value_size)),
            max_records: 262_144,
            max_repair: 64 << 20,
        }
    }

    /// The least `max_reassembly` that holds one value of `max_value_size` bytes with its
    /// bookkeeping (see [`super::reassembly::cost`]).
    pub fn min_reassembly(max_value_size: u64) -> u64 {
        max_value_size + max_value_size / 2 + 64
    }
}

/// How this node cuts the values it writes: stripes of `data` data fragments and `parity`
/// parity fragments (`--fec DATA+PARITY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fec {
    pub data: u16,
    pub parity: u16,
}

impl Default for Fec {
    /// 32 + 8: 25 % of parity; a stripe is lost only if more than 8 of its 40 fragments go
    /// between two nodes (2e-10 at 1 % random loss).
    fn default() -> Fec {
        Fec {
            data: 32,
            parity: 8,
        }
    }
}

/// What a core is started with.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// This node's id: the origin of its frames and the tie-breaker of its versions.
    pub id: u64,
    /// Largest datagram this node sends or accepts.
    pub max_datagram: usize,
    /// Shortest silence of the loop (no probe back) that counts as broken.
    pub loop_timeout: Duration,
    /// The next hop, for messages.
    pub destination: String,
    /// Memory limits.
    pub limits: Limits,
    /// Stripe shape of the values this node writes.
    pub fec: Fec,
}
