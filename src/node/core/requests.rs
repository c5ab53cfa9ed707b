//! node::core::requests: the vocabulary between the core and the API: requests, answers,
//! failures, figures and the reasons a datagram is dropped or a request refused.
//!
//! It owns these types and their names (metric labels come from here, from one list each). It
//! must not hold state or know how requests are carried (that is the drivers' business).

use std::time::Duration;

pub use super::repair::RepairFigures;
use crate::wire;

/// Identifies one request from the API to the core.
pub type RequestId = u64;

/// A request from the API.
#[derive(Debug)]
pub enum Command {
    /// Store `value` under `key`.
    Put {
        id: RequestId,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Read `key`.
    Get { id: RequestId, key: Vec<u8> },
    /// Remove `key`.
    Delete { id: RequestId, key: Vec<u8> },
    /// Report figures.
    Stats { id: RequestId },
    /// The caller of `id` went away: free what it holds.
    Cancel { id: RequestId },
}

impl Command {
    /// The request a PUT, GET, DELETE or STATS answers; `None` for a cancellation.
    pub fn id(&self) -> Option<RequestId> {
        match self {
            Command::Put { id, .. }
            | Command::Get { id, .. }
            | Command::Delete { id, .. }
            | Command::Stats { id } => Some(*id),
            Command::Cancel { .. } => None,
        }
    }
}

/// Why a request failed, in API terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    Unavailable,
    InvalidArgument,
    ResourceExhausted,
    DataLoss,
}

/// A failed request: a kind and a message for the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    /// A failure of `kind`, explained by `message`.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// The refusal of a request past `--max-requests` (`max`), by the core or by the table
    /// where gRPC calls wait.
    pub fn too_many_requests(max: usize) -> Failure {
        Failure::new(
            FailureKind::ResourceExhausted,
            format!("this node holds {max} requests already (--max-requests); try again later"),
        )
    }
}

/// The answer to a request.
#[derive(Debug)]
pub enum Answer {
    /// PUT or DELETE done.
    Done,
    /// The value of a GET.
    Value(Vec<u8>),
    /// Figures for a stats request.
    Stats(Box<Stats>),
    /// The request failed.
    Failed(Failure),
}

/// Why a datagram was dropped: the one list behind the counters, the stats and the metric
/// labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the frame its headers describe.
    Truncated,
    /// Not an elayday frame.
    BadMagic,
    /// Another wire format version.
    UnsupportedVersion,
    /// A frame type this version does not know.
    UnknownType,
    /// The CRC32C does not match.
    BadChecksum,
    /// Header fields contradict each other, or trailing bytes.
    Malformed,
    /// An older version of a key written since.
    Superseded,
    /// A version of a key deleted since.
    Deleted,
    /// A probe or tombstone whose origin is gone.
    Stale,
    /// Lost in the kernel's receive buffer.
    Kernel,
    /// Refused by the kernel on send.
    SendFailed,
    /// A frame of a version this node wrote, with a shape it did not write.
    Inconsistent,
    /// A copy of a fragment that passed moments before (a network duplicate, or an original
    /// that was only delayed and has been rebuilt meanwhile).
    Duplicate,
    /// A sealed frame (key epoch not 0) this node has no key to check.
    Unauthenticated,
}

impl DropReason {
    /// The reasons that are a [`wire::Error`]: the datagram is not a well-formed frame.
    pub const WIRE: [DropReason; 6] = [
        DropReason::Truncated,
        DropReason::BadMagic,
        DropReason::UnsupportedVersion,
        DropReason::UnknownType,
        DropReason::BadChecksum,
        DropReason::Malformed,
    ];

    /// Every reason, in the order of the counters.
    pub const ALL: [DropReason; 14] = [
        DropReason::Truncated,
        DropReason::BadMagic,
        DropReason::UnsupportedVersion,
        DropReason::UnknownType,
        DropReason::BadChecksum,
        DropReason::Malformed,
        DropReason::Superseded,
        DropReason::Deleted,
        DropReason::Stale,
        DropReason::Kernel,
        DropReason::SendFailed,
        DropReason::Inconsistent,
        DropReason::Duplicate,
        DropReason::Unauthenticated,
    ];

    /// A short snake_case name, used as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::BadMagic => "bad_magic",
            DropReason::UnsupportedVersion => "unsupported_version",
            DropReason::UnknownType => "unknown_type",
            DropReason::BadChecksum => "bad_checksum",
            DropReason::Malformed => "malformed",
            DropReason::Superseded => "superseded",
            DropReason::Deleted => "deleted",
            DropReason::Stale => "stale",
            DropReason::Kernel => "kernel",
            DropReason::SendFailed => "send_failed",
            DropReason::Inconsistent => "inconsistent",
            DropReason::Duplicate => "duplicate",
            DropReason::Unauthenticated => "unauthenticated",
        }
    }
}

impl From<wire::Error> for DropReason {
    fn from(error: wire::Error) -> DropReason {
        match error {
            wire::Error::Truncated => DropReason::Truncated,
            wire::Error::BadMagic => DropReason::BadMagic,
            wire::Error::UnsupportedVersion => DropReason::UnsupportedVersion,
            wire::Error::UnknownType => DropReason::UnknownType,
            wire::Error::BadChecksum => DropReason::BadChecksum,
            wire::Error::Malformed => DropReason::Malformed,
        }
    }
}

/// Why a request was refused, or a datagram not kept, for want of room: the labels of the
/// `refused` counters. Two more follow them in the figures: `reassembly_full`, counted by the
/// reassembly, and `repair_full` (stripes that passed untracked), counted by the repair.
pub const REFUSALS: [&str; 3] = ["requests_full", "write_backlog_full", "records_full"];
pub const REFUSED_REQUESTS: usize = 0;
pub const REFUSED_BACKLOG: usize = 1;
pub const REFUSED_RECORDS: usize = 2;

/// Figures about the loop and the node.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub node_id: u64,
    pub loop_closed: bool,
    pub period_last: Option<Duration>,
    pub period_min: Option<Duration>,
    pub period_max: Option<Duration>,
    pub circulating_datagrams: u64,
    pub circulating_bytes: u64,
    pub circulating_values: u64,
    pub received: u64,
    pub forwarded: u64,
    pub forwarded_bytes: u64,
    /// Datagrams dropped, by [`DropReason`] label.
    pub dropped: Vec<(&'static str, u64)>,
    /// Requests refused and datagrams not kept for want of room, by label.
    pub refused: Vec<(&'static str, u64)>,
    pub uptime: Duration,
    pub pending_requests: u64,
    /// Records of recent writes and deletions held.
    pub records: u64,
    /// Bytes held for values being reassembled.
    pub reassembly_bytes: u64,
    /// Bytes of PUT values accepted and not yet sent.
    pub write_backlog_bytes: u64,
    /// In-loop repair: fragments rebuilt, stripes found unrecoverable, bytes held.
    pub repair: RepairFigures,
}

/// Figures of the I/O threads, for [`Core::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoFigures {
    pub received: u64,
    pub truncated: u64,
    pub kernel_drops: u64,
    pub send_failed: u64,
    /// Requests waiting in the API's table.
    pub pending_requests: u64,
    /// Requests that table refused, being full.
    pub pending_refused: u64,
}

/// What a core holds now, table by table (see [`Core::usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub requests: usize,
    pub write_backlog: u64,
    pub reassembly: u64,
    pub repair: u64,
    pub records: usize,
    pub probes: usize,
    pub answers: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wire_error_has_a_drop_reason_and_labels_are_unique() {
        let labels: Vec<&str> = DropReason::ALL.iter().map(|r| r.as_str()).collect();
        let mut unique = labels.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), labels.len());
        for (i, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, i, "ALL is in declaration order");
        }
        assert_eq!(
            DropReason::from(wire::Error::BadChecksum).as_str(),
            "bad_checksum"
        );
        assert_eq!(DropReason::WIRE[..], DropReason::ALL[..6]);
    }
}
