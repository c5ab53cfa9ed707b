//! wire: the byte layout of every datagram that circulates between elayday nodes.
//!
//! It owns the format (format version 2): a checked, zero-copy view over a received buffer
//! ([`Frame`]), emitters that write a frame into a caller-supplied buffer ([`DataRepr`],
//! [`TombstoneRepr`], [`ProbeRepr`]), the CRC32C checksum and the arithmetic that cuts a value
//! into stripes of fragments. It sits on the forwarding hot path, so it must not allocate, log, or know
//! about sockets, time or protocol state: it answers "is this a well-formed frame, and what do
//! its fields say", nothing more. `docs/wire-format.md` describes the same layout byte by byte.
//!
//! All integers are big-endian.

#![forbid(unsafe_code)]

mod format;
mod frame;
mod repr;
#[cfg(test)]
pub(crate) mod tests;

pub use format::{
    chunk, compute_checksum, fragment_count, interleaved, lap_check, max_chunk_len, write_lap,
    Error, FrameType, Geometry, DATA_HEADER_LEN, FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_KEY_LEN,
    MAX_STRIPE_DATA, MAX_STRIPE_PARITY, PROBE_LEN, TAG_LEN, TOMBSTONE_HEADER_LEN,
};
pub use frame::{DataFrame, Frame, Kind, ProbeFrame, TombstoneFrame};
pub use repr::{DataRepr, ProbeRepr, TombstoneRepr};
