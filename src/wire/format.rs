//! wire::format: the constants of the format, the field offsets, the frame types, the errors,
//! the checksum and the arithmetic that cuts a value into fragments.
//!
//! It owns the numbers that `docs/wire-format.md` lists; the view ([`super::frame`]) and the
//! emitters ([`super::repr`]) read them from here. It must not allocate or hold state.

use core::fmt;
use core::ops::Range;

/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"ELDY";
/// The only format version this module reads and writes.
pub const FORMAT_VERSION: u8 = 1;
/// Length of the common header that starts every frame.
pub const HEADER_LEN: usize = 28;
/// Length of the DATA / PARITY header (common header included), before the key.
pub const DATA_HEADER_LEN: usize = 52;
/// Length of the TOMBSTONE header (common header included), before the key.
pub const TOMBSTONE_HEADER_LEN: usize = 32;
/// Exact length of a PROBE frame.
pub const PROBE_LEN: usize = 44;
/// Longest key a frame may carry. Keys are never empty.
pub const MAX_KEY_LEN: usize = 1024;

/// Byte ranges and offsets of the fields, as in the tables of `docs/wire-format.md`.
pub(super) mod field {
    use core::ops::Range;

    pub const MAGIC: Range<usize> = 0..4;
    pub const VERSION: usize = 4;
    pub const TYPE: usize = 5;
    pub const FLAGS: Range<usize> = 6..8;
    pub const CHECKSUM: Range<usize> = 8..12;
    pub const ORIGIN: Range<usize> = 12..20;
    pub const HLC: Range<usize> = 20..28;

    // DATA and PARITY.
    pub const VALUE_LEN: Range<usize> = 28..36;
    pub const FRAGMENT_INDEX: Range<usize> = 36..40;
    pub const FRAGMENT_COUNT: Range<usize> = 40..44;
    pub const CHUNK_LEN: Range<usize> = 44..46;
    pub const PARITY_COUNT: usize = 46;
    pub const DATA_RESERVED_1: usize = 47;
    pub const DATA_KEY_LEN: Range<usize> = 48..50;
    pub const DATA_RESERVED_2: Range<usize> = 50..52;

    // TOMBSTONE.
    pub const TOMBSTONE_KEY_LEN: Range<usize> = 28..30;
    pub const TOMBSTONE_RESERVED: Range<usize> = 30..32;

    // PROBE.
    pub const SEQUENCE: Range<usize> = 28..36;
    pub const SENT_AT_NS: Range<usize> = 36..44;
}

/// The kind of a frame, byte 5 of the common header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// One fragment of a value (code 1).
    Data,
    /// Deletes every version of a key older than the tombstone's own (code 2).
    Tombstone,
    /// A ring latency probe (code 3).
    Probe,
    /// A forward-error-correction shard (code 4). Reserved: v1 never emits one, but accepts
    /// and forwards it so that later nodes can use it.
    Parity,
}

impl FrameType {
    /// The type code written on the wire.
    pub const fn code(self) -> u8 {
        match self {
            FrameType::Data => 1,
            FrameType::Tombstone => 2,
            FrameType::Probe => 3,
            FrameType::Parity => 4,
        }
    }

    /// The frame type of a wire code, `None` for codes this version does not know.
    pub const fn from_code(code: u8) -> Option<FrameType> {
        match code {
            1 => Some(FrameType::Data),
            2 => Some(FrameType::Tombstone),
            3 => Some(FrameType::Probe),
            4 => Some(FrameType::Parity),
            _ => None,
        }
    }
}

/// Why a buffer is not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer ends before the frame its headers describe does.
    Truncated,
    /// The first four bytes are not [`MAGIC`].
    BadMagic,
    /// The format version is not [`FORMAT_VERSION`].
    UnsupportedVersion,
    /// The frame type code is not one this version knows.
    UnknownType,
    /// The CRC32C of the datagram does not match the checksum field.
    BadChecksum,
    /// Header fields contradict each other or the limits, or bytes follow the end of the frame.
    Malformed,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Error::Truncated => "datagram shorter than the frame its headers describe",
            Error::BadMagic => "datagram does not start with the elayday magic",
            Error::UnsupportedVersion => "unsupported wire format version",
            Error::UnknownType => "unknown frame type",
            Error::BadChecksum => "checksum mismatch",
            Error::Malformed => "inconsistent frame header or trailing bytes",
        };
        f.write_str(text)
    }
}

impl std::error::Error for Error {}

/// Number of data fragments of a value of `value_len` bytes cut into chunks of `chunk_len`
/// bytes: `max(1, ceil(value_len / chunk_len))` (an empty value still takes one fragment).
///
/// # Panics
/// If `chunk_len` is 0 and `value_len` is not.
pub fn fragment_count(value_len: u64, chunk_len: u16) -> u64 {
    if value_len == 0 {
        return 1;
    }
    value_len.div_ceil(u64::from(chunk_len))
}

/// Byte range of fragment `index` inside a value of `value_len` bytes cut into chunks of
/// `chunk_len` bytes. For `index >= fragment_count(..)` the range is empty (at `value_len`).
pub fn chunk(value_len: usize, index: u32, chunk_len: u16) -> Range<usize> {
    let len = value_len as u64;
    let start = (u64::from(index) * u64::from(chunk_len)).min(len);
    let end = (start + u64::from(chunk_len)).min(len);
    // Both are at most `value_len`, so they fit in usize.
    start as usize..end as usize
}

/// Payload bytes that fit in one datagram of at most `max_datagram` bytes for a key of
/// `key_len` bytes (0 if none fit, or if `key_len` is 0 or above [`MAX_KEY_LEN`], since no
/// valid frame carries such a key). Capped at `u16::MAX`, the largest `chunk_len`.
pub fn max_chunk_len(max_datagram: usize, key_len: usize) -> usize {
    if key_len == 0 || key_len > MAX_KEY_LEN {
        return 0;
    }
    max_datagram
        .saturating_sub(DATA_HEADER_LEN + key_len)
        .min(usize::from(u16::MAX))
}

/// CRC32C (Castagnoli) of a datagram with its checksum field (bytes 8..12) taken as zero.
/// Works on any length, without copying; a buffer shorter than 12 bytes has only the part
/// of the checksum field that it holds taken as zero.
pub fn compute_checksum(datagram: &[u8]) -> u32 {
    let head = datagram.len().min(field::CHECKSUM.start);
    let mut crc = crc32c::crc32c_append(0, &datagram[..head]);
    let zeros = datagram.len().min(field::CHECKSUM.end) - head;
    crc = crc32c::crc32c_append(crc, &[0; 4][..zeros]);
    if datagram.len() > field::CHECKSUM.end {
        crc = crc32c::crc32c_append(crc, &datagram[field::CHECKSUM.end..]);
    }
    crc
}
