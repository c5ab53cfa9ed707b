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
pub const FORMAT_VERSION: u8 = 2;
/// Length of the common header that starts every frame.
pub const HEADER_LEN: usize = 32;
/// Length of the DATA / PARITY header (common header included), before the key.
pub const DATA_HEADER_LEN: usize = 56;
/// Length of the TOMBSTONE header (common header included), before the key.
pub const TOMBSTONE_HEADER_LEN: usize = 36;
/// Exact length of a PROBE frame (unsealed).
pub const PROBE_LEN: usize = 48;
/// Longest key a frame may carry. Keys are never empty.
pub const MAX_KEY_LEN: usize = 1024;
/// Length of the authentication tag that ends a sealed frame (one whose key epoch is not 0).
pub const TAG_LEN: usize = 16;
/// Most data fragments in one stripe.
pub const MAX_STRIPE_DATA: u16 = 192;
/// Most parity fragments in one stripe (with the data, at most 256: the code is over GF(2^8)).
pub const MAX_STRIPE_PARITY: u16 = 64;

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
    pub const EPOCH: Range<usize> = 28..32;

    // DATA and PARITY.
    pub const VALUE_LEN: Range<usize> = 32..40;
    pub const STRIPE: Range<usize> = 40..44;
    pub const SHARD: Range<usize> = 44..46;
    pub const CHUNK_LEN: Range<usize> = 46..48;
    pub const STRIPE_DATA: Range<usize> = 48..50;
    pub const STRIPE_PARITY: Range<usize> = 50..52;
    pub const DATA_KEY_LEN: Range<usize> = 52..54;
    /// The lap (u8), then its check byte: the two bytes the checksum does not cover.
    pub const DATA_LAP: usize = 54;
    pub const DATA_LAP_CHECK: usize = 55;

    // TOMBSTONE.
    pub const TOMBSTONE_KEY_LEN: Range<usize> = 32..34;
    pub const TOMBSTONE_RESERVED: Range<usize> = 34..36;

    // PROBE.
    pub const SEQUENCE: Range<usize> = 32..40;
    pub const SENT_AT_NS: Range<usize> = 40..48;
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
    /// A parity fragment of a stripe (code 4): Reed-Solomon parity over the stripe's data.
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

/// Byte range of data fragment `index` inside a value of `value_len` bytes cut into chunks of
/// `chunk_len` bytes. For `index >= fragment_count(..)` the range is empty (at `value_len`).
pub fn chunk(value_len: usize, index: u64, chunk_len: u16) -> Range<usize> {
    let len = value_len as u64;
    let start = index.saturating_mul(u64::from(chunk_len)).min(len);
    let end = (start + u64::from(chunk_len)).min(len);
    // Both are at most `value_len`, so they fit in usize.
    start as usize..end as usize
}

/// How a value is cut: into data fragments of `chunk_len` bytes, grouped in stripes of `data`
/// data fragments (the last stripe may have fewer), each stripe followed by `parity` parity
/// fragments of `chunk_len` bytes. Every DATA and PARITY frame of a value carries it whole.
///
/// Fragment `shard` of stripe `s` is data fragment `s * data + shard` of the value when
/// `shard < data_in(s)`, else parity fragment `shard - data_in(s)` of the stripe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub value_len: u64,
    pub chunk_len: u16,
    /// Data fragments per stripe (`1..=MAX_STRIPE_DATA`).
    pub data: u16,
    /// Parity fragments per stripe (`0..=MAX_STRIPE_PARITY`).
    pub parity: u16,
}

impl Geometry {
    /// Whether the fields are within the format's limits: `chunk_len` even and not 0, `data`
    /// in `1..=MAX_STRIPE_DATA`, `parity` at most `MAX_STRIPE_PARITY`, and a stripe count
    /// that fits the 32-bit stripe field.
    pub fn is_valid(&self) -> bool {
        self.chunk_len != 0
            && self.chunk_len % 2 == 0
            && (1..=MAX_STRIPE_DATA).contains(&self.data)
            && self.parity <= MAX_STRIPE_PARITY
            && self.stripe_count() <= u64::from(u32::MAX) + 1
    }

    /// Data fragments of the value (see [`fragment_count`]; an invalid `chunk_len` of 0 counts
    /// as 1 here rather than panic).
    pub fn fragment_count(&self) -> u64 {
        fragment_count(self.value_len, self.chunk_len.max(1))
    }

    /// Stripes of the value: `ceil(fragment_count / data)`, at least 1.
    pub fn stripe_count(&self) -> u64 {
        self.fragment_count().div_ceil(u64::from(self.data.max(1)))
    }

    /// Data fragments in stripe `stripe`: `data`, but fewer in a short last stripe (0 past
    /// the last stripe).
    pub fn data_in(&self, stripe: u32) -> u16 {
        let first = u64::from(stripe) * u64::from(self.data);
        let left = self.fragment_count().saturating_sub(first);
        // At most `data`, a u16.
        left.min(u64::from(self.data)) as u16
    }

    /// Fragments in stripe `stripe`, data and parity (`parity` more than [`Geometry::data_in`]).
    pub fn shards_in(&self, stripe: u32) -> u32 {
        u32::from(self.data_in(stripe)) + u32::from(self.parity)
    }

    /// Every datagram of the value: its data fragments and every stripe's parity.
    pub fn datagram_count(&self) -> u64 {
        self.fragment_count() + self.stripe_count() * u64::from(self.parity)
    }

    /// Index among the value's data fragments of fragment `shard` of stripe `stripe`, or
    /// `None` for a parity fragment.
    pub fn data_index(&self, stripe: u32, shard: u16) -> Option<u64> {
        (shard < self.data_in(stripe))
            .then(|| u64::from(stripe) * u64::from(self.data) + u64::from(shard))
    }

    /// Payload length of fragment `shard` of stripe `stripe`: its chunk of the value for a
    /// data fragment, `chunk_len` for parity.
    pub fn payload_len(&self, stripe: u32, shard: u16) -> usize {
        match self.data_index(stripe, shard) {
            Some(index) => chunk(self.value_len as usize, index, self.chunk_len).len(),
            None => usize::from(self.chunk_len),
        }
    }
}

/// The order in which a node sends the fragments of a value: stripes in groups of `depth`,
/// and within a group position 0 of each stripe, then position 1 of each, and so on. A burst of
/// `b` consecutive losses then takes at most `ceil(b / depth)` fragments of any one stripe of a
/// group. Yields `(stripe, shard)`.
pub fn interleaved(geometry: Geometry, depth: u32) -> impl Iterator<Item = (u32, u16)> {
    let stripes = geometry.stripe_count().min(u64::from(u32::MAX) + 1);
    let depth = u64::from(depth.max(1));
    let width = u32::from(geometry.data) + u32::from(geometry.parity);
    (0..stripes.div_ceil(depth)).flat_map(move |group| {
        let first = group * depth;
        let last = (first + depth).min(stripes);
        (0..width).flat_map(move |position| {
            (first..last).filter_map(move |stripe| {
                // `stripe < stripes <= 2^32`, so it fits.
                let stripe = stripe as u32;
                (position < geometry.shards_in(stripe)).then_some((stripe, position as u16))
            })
        })
    })
}

/// Payload bytes that fit in one datagram of at most `max_datagram` bytes for a key of
/// `key_len` bytes, rounded down to an even number (every `chunk_len` is even); 0 if none fit,
/// or if `key_len` is 0 or above [`MAX_KEY_LEN`], since no valid frame carries such a key.
/// Capped at 65534, the largest even `chunk_len`.
pub fn max_chunk_len(max_datagram: usize, key_len: usize) -> usize {
    if key_len == 0 || key_len > MAX_KEY_LEN {
        return 0;
    }
    let room = max_datagram
        .saturating_sub(DATA_HEADER_LEN + key_len)
        .min(usize::from(u16::MAX));
    room & !1
}

/// CRC32C (Castagnoli) of a datagram with its checksum field (bytes 8..12) taken as zero, and,
/// in a DATA or PARITY frame (type byte 1 or 4), its lap and lap check (bytes 54..56) too: they
/// change at every hop, and have a check of their own ([`lap_check`]). Works on any length,
/// without copying; a buffer that ends inside one of those fields has the part of it that it
/// holds taken as zero.
pub fn compute_checksum(datagram: &[u8]) -> u32 {
    let lap_hole = matches!(
        datagram
            .get(field::TYPE)
            .copied()
            .and_then(FrameType::from_code),
        Some(FrameType::Data | FrameType::Parity)
    );
    let holes: &[Range<usize>] = if lap_hole {
        &[field::CHECKSUM, field::DATA_LAP..field::DATA_LAP_CHECK + 1]
    } else {
        &[field::CHECKSUM]
    };
    let len = datagram.len();
    let mut crc = 0;
    let mut at = 0;
    for hole in holes {
        let start = hole.start.min(len);
        let end = hole.end.min(len);
        crc = crc32c::crc32c_append(crc, &datagram[at..start]);
        crc = crc32c::crc32c_append(crc, &[0; 4][..end - start]);
        at = end;
    }
    crc32c::crc32c_append(crc, &datagram[at..])
}

/// The check byte of a lap: its bits in reverse order. A change to either byte alone, or to
/// both but not alike, no longer matches; lap 0 has check 0.
pub fn lap_check(lap: u8) -> u8 {
    lap.reverse_bits()
}

/// Writes `lap` and its check into a DATA or PARITY frame, in place: what a node does to every
/// fragment it sends on. The checksum does not cover them, so it stays valid.
///
/// # Panics
/// If `frame` is shorter than a DATA header.
pub fn write_lap(frame: &mut [u8], lap: u8) {
    frame[field::DATA_LAP] = lap;
    frame[field::DATA_LAP_CHECK] = lap_check(lap);
}
