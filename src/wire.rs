//! wire: the byte layout of every datagram that circulates between elayday nodes.
//!
//! It owns the format (format version 1): a checked, zero-copy view over a received buffer
//! ([`Frame`]), emitters that write a frame into a caller-supplied buffer ([`DataRepr`],
//! [`TombstoneRepr`], [`ProbeRepr`]), the CRC32C checksum and the arithmetic that cuts a value
//! into fragments. It sits on the forwarding hot path, so it must not allocate, log, or know
//! about sockets, time or protocol state: it answers "is this a well-formed frame, and what do
//! its fields say", nothing more. `docs/wire-format.md` describes the same layout byte by byte.
//!
//! All integers are big-endian.

#![forbid(unsafe_code)]

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
mod field {
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

impl Error {
    /// Every variant, in declaration order (for pre-registering metric labels).
    pub const ALL: [Error; 6] = [
        Error::Truncated,
        Error::BadMagic,
        Error::UnsupportedVersion,
        Error::UnknownType,
        Error::BadChecksum,
        Error::Malformed,
    ];

    /// A short snake_case name, used as a metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Error::Truncated => "truncated",
            Error::BadMagic => "bad_magic",
            Error::UnsupportedVersion => "unsupported_version",
            Error::UnknownType => "unknown_type",
            Error::BadChecksum => "bad_checksum",
            Error::Malformed => "malformed",
        }
    }
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

fn read_u16(buf: &[u8], at: Range<usize>) -> u16 {
    let mut bytes = [0; 2];
    bytes.copy_from_slice(&buf[at]);
    u16::from_be_bytes(bytes)
}

fn read_u32(buf: &[u8], at: Range<usize>) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&buf[at]);
    u32::from_be_bytes(bytes)
}

fn read_u64(buf: &[u8], at: Range<usize>) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&buf[at]);
    u64::from_be_bytes(bytes)
}

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

/// A read-only view of a frame in a byte buffer.
///
/// Build it with [`Frame::new_checked`] for anything received: every accessor is then valid
/// for the frame's type and never panics. After [`Frame::new_unchecked`] the accessors read
/// whatever bytes are there and panic if the buffer is too short.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without looking at it.
    pub fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer after [`Frame::check`] has accepted it.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, Error> {
        let frame = Frame::new_unchecked(buffer);
        frame.check()?;
        Ok(frame)
    }

    /// Validates the whole frame, cheap checks first: length of the common header
    /// (`Truncated`), magic (`BadMagic`), version (`UnsupportedVersion`), type (`UnknownType`),
    /// then the type's own fields (`Malformed`) and length (`Truncated` if the buffer is
    /// shorter than the frame they describe, `Malformed` if longer), and the checksum
    /// (`BadChecksum`) last. Flags and reserved fields are not looked at.
    pub fn check(&self) -> Result<(), Error> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if buf[field::MAGIC] != MAGIC {
            return Err(Error::BadMagic);
        }
        if buf[field::VERSION] != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion);
        }
        let frame_type = FrameType::from_code(buf[field::TYPE]).ok_or(Error::UnknownType)?;
        let frame_len = match frame_type {
            FrameType::Data | FrameType::Parity => self.check_data(frame_type)?,
            FrameType::Tombstone => self.check_tombstone()?,
            FrameType::Probe => PROBE_LEN,
        };
        if buf.len() < frame_len {
            return Err(Error::Truncated);
        }
        if buf.len() > frame_len {
            return Err(Error::Malformed);
        }
        if self.checksum() != compute_checksum(buf) {
            return Err(Error::BadChecksum);
        }
        Ok(())
    }

    /// Checks the DATA / PARITY header fields and returns the frame length they describe.
    fn check_data(&self, frame_type: FrameType) -> Result<usize, Error> {
        if self.buffer.as_ref().len() < DATA_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let key_len = self.key_len();
        if key_len == 0 || key_len > MAX_KEY_LEN {
            return Err(Error::Malformed);
        }
        let chunk_len = self.chunk_len();
        if chunk_len == 0 {
            return Err(Error::Malformed);
        }
        let value_len = self.value_len();
        let count = u64::from(self.fragment_count());
        if count != fragment_count(value_len, chunk_len) {
            return Err(Error::Malformed);
        }
        let index = u64::from(self.fragment_index());
        let payload_len = match frame_type {
            FrameType::Parity => {
                if index >= u64::from(self.parity_count()) {
                    return Err(Error::Malformed);
                }
                u64::from(chunk_len)
            }
            _ => {
                if index >= count {
                    return Err(Error::Malformed);
                }
                if index + 1 < count {
                    u64::from(chunk_len)
                } else {
                    // count == fragment_count(..) keeps this in 0..=chunk_len.
                    value_len - (count - 1) * u64::from(chunk_len)
                }
            }
        };
        // payload_len <= u16::MAX, so the cast is lossless.
        Ok(DATA_HEADER_LEN + key_len + payload_len as usize)
    }

    /// Checks the TOMBSTONE header fields and returns the frame length they describe.
    fn check_tombstone(&self) -> Result<usize, Error> {
        if self.buffer.as_ref().len() < TOMBSTONE_HEADER_LEN {
            return Err(Error::Truncated);
        }
        let key_len = self.key_len();
        if key_len == 0 || key_len > MAX_KEY_LEN {
            return Err(Error::Malformed);
        }
        Ok(TOMBSTONE_HEADER_LEN + key_len)
    }

    /// The buffer back.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole datagram.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The frame type.
    ///
    /// # Panics
    /// If the type code is unknown (never after [`Frame::check`]).
    pub fn frame_type(&self) -> FrameType {
        FrameType::from_code(self.buffer.as_ref()[field::TYPE])
            .expect("unknown frame type code: the frame was not checked")
    }

    /// The flags field. Senders write 0; receivers ignore bits they do not know.
    pub fn flags(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::FLAGS)
    }

    /// The checksum field as received.
    pub fn checksum(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::CHECKSUM)
    }

    /// Id of the node that created the frame.
    pub fn origin(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::ORIGIN)
    }

    /// Hybrid logical clock stamp taken when the frame was created (opaque here).
    pub fn hlc(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::HLC)
    }

    /// Total length of the value in bytes. DATA and PARITY only: on other types it reads
    /// unrelated bytes or panics.
    pub fn value_len(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::VALUE_LEN)
    }

    /// Index of this fragment: below `fragment_count` for DATA, below `parity_count` for
    /// PARITY. DATA and PARITY only (see [`Frame::value_len`]).
    pub fn fragment_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::FRAGMENT_INDEX)
    }

    /// Number of data fragments of the value. DATA and PARITY only.
    pub fn fragment_count(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::FRAGMENT_COUNT)
    }

    /// Payload bytes of every data fragment but the last. DATA and PARITY only.
    pub fn chunk_len(&self) -> u16 {
        read_u16(self.buffer.as_ref(), field::CHUNK_LEN)
    }

    /// Number of parity shards of the value (0 in v1). DATA and PARITY only.
    pub fn parity_count(&self) -> u8 {
        self.buffer.as_ref()[field::PARITY_COUNT]
    }

    /// Offset of the key and the key length field for this frame's type; `None` for PROBE.
    fn key_layout(&self) -> Option<(usize, Range<usize>)> {
        match FrameType::from_code(self.buffer.as_ref()[field::TYPE]) {
            Some(FrameType::Data | FrameType::Parity) => {
                Some((DATA_HEADER_LEN, field::DATA_KEY_LEN))
            }
            Some(FrameType::Tombstone) => Some((TOMBSTONE_HEADER_LEN, field::TOMBSTONE_KEY_LEN)),
            Some(FrameType::Probe) | None => None,
        }
    }

    fn key_len(&self) -> usize {
        match self.key_layout() {
            Some((_, len_field)) => usize::from(read_u16(self.buffer.as_ref(), len_field)),
            None => 0,
        }
    }

    /// The key. DATA, PARITY and TOMBSTONE; empty for PROBE.
    pub fn key(&self) -> &[u8] {
        match self.key_layout() {
            Some((start, _)) => &self.buffer.as_ref()[start..start + self.key_len()],
            None => &[],
        }
    }

    /// The payload: everything after the key. DATA and PARITY; empty for other types.
    pub fn payload(&self) -> &[u8] {
        match FrameType::from_code(self.buffer.as_ref()[field::TYPE]) {
            Some(FrameType::Data | FrameType::Parity) => {
                &self.buffer.as_ref()[DATA_HEADER_LEN + self.key_len()..]
            }
            _ => &[],
        }
    }

    /// Where this fragment's payload starts inside the value: `fragment_index * chunk_len`.
    /// DATA only (meaningless for PARITY).
    pub fn payload_offset(&self) -> u64 {
        u64::from(self.fragment_index()) * u64::from(self.chunk_len())
    }

    /// Sequence number of a probe. PROBE only.
    pub fn sequence(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::SEQUENCE)
    }

    /// Origin-local monotonic send time of a probe in ns (opaque to other nodes). PROBE only.
    pub fn sent_at_ns(&self) -> u64 {
        read_u64(self.buffer.as_ref(), field::SENT_AT_NS)
    }
}

/// Writes the common header with a zero checksum and zero flags.
fn emit_header(buf: &mut [u8], frame_type: FrameType, origin: u64, hlc: u64) {
    buf[field::MAGIC].copy_from_slice(&MAGIC);
    buf[field::VERSION] = FORMAT_VERSION;
    buf[field::TYPE] = frame_type.code();
    buf[field::FLAGS].copy_from_slice(&0u16.to_be_bytes());
    buf[field::CHECKSUM].copy_from_slice(&0u32.to_be_bytes());
    buf[field::ORIGIN].copy_from_slice(&origin.to_be_bytes());
    buf[field::HLC].copy_from_slice(&hlc.to_be_bytes());
}

/// Writes the checksum of a complete frame into its checksum field.
fn fill_checksum(frame: &mut [u8]) {
    let crc = compute_checksum(frame);
    frame[field::CHECKSUM].copy_from_slice(&crc.to_be_bytes());
}

/// The key length as written on the wire.
///
/// # Panics
/// If the key does not fit a u16 length field.
fn wire_key_len(key: &[u8]) -> [u8; 2] {
    u16::try_from(key.len())
        .expect("key longer than u16::MAX bytes")
        .to_be_bytes()
}

/// One DATA fragment of a value, to emit.
///
/// `emit` writes the fields as given and does not validate them: the caller keeps them
/// consistent (`fragment_count == fragment_count(value_len, chunk_len)`, payload the bytes of
/// [`chunk`], key 1..=[`MAX_KEY_LEN`] bytes), or receivers reject the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRepr<'a> {
    pub origin: u64,
    pub hlc: u64,
    pub value_len: u64,
    pub fragment_index: u32,
    pub fragment_count: u32,
    pub chunk_len: u16,
    pub parity_count: u8,
    pub key: &'a [u8],
    pub payload: &'a [u8],
}

impl DataRepr<'_> {
    /// Length of the emitted frame.
    pub fn buffer_len(&self) -> usize {
        DATA_HEADER_LEN + self.key.len() + self.payload.len()
    }

    /// Writes the frame, checksum included, into `buf[..self.buffer_len()]` and returns that
    /// length.
    ///
    /// # Panics
    /// If `buf` is shorter than [`DataRepr::buffer_len`], or the key is longer than
    /// `u16::MAX` bytes.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let buf = &mut buf[..len];
        emit_header(buf, FrameType::Data, self.origin, self.hlc);
        buf[field::VALUE_LEN].copy_from_slice(&self.value_len.to_be_bytes());
        buf[field::FRAGMENT_INDEX].copy_from_slice(&self.fragment_index.to_be_bytes());
        buf[field::FRAGMENT_COUNT].copy_from_slice(&self.fragment_count.to_be_bytes());
        buf[field::CHUNK_LEN].copy_from_slice(&self.chunk_len.to_be_bytes());
        buf[field::PARITY_COUNT] = self.parity_count;
        buf[field::DATA_RESERVED_1] = 0;
        buf[field::DATA_KEY_LEN].copy_from_slice(&wire_key_len(self.key));
        buf[field::DATA_RESERVED_2].copy_from_slice(&[0, 0]);
        let payload_start = DATA_HEADER_LEN + self.key.len();
        buf[DATA_HEADER_LEN..payload_start].copy_from_slice(self.key);
        buf[payload_start..].copy_from_slice(self.payload);
        fill_checksum(buf);
        len
    }
}

/// A TOMBSTONE, to emit: deletes every version of `key` older than `(hlc, origin)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TombstoneRepr<'a> {
    pub origin: u64,
    pub hlc: u64,
    pub key: &'a [u8],
}

impl TombstoneRepr<'_> {
    /// Length of the emitted frame.
    pub fn buffer_len(&self) -> usize {
        TOMBSTONE_HEADER_LEN + self.key.len()
    }

    /// Writes the frame, checksum included, into `buf[..self.buffer_len()]` and returns that
    /// length.
    ///
    /// # Panics
    /// If `buf` is shorter than [`TombstoneRepr::buffer_len`], or the key is longer than
    /// `u16::MAX` bytes.
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let buf = &mut buf[..len];
        emit_header(buf, FrameType::Tombstone, self.origin, self.hlc);
        buf[field::TOMBSTONE_KEY_LEN].copy_from_slice(&wire_key_len(self.key));
        buf[field::TOMBSTONE_RESERVED].copy_from_slice(&[0, 0]);
        buf[TOMBSTONE_HEADER_LEN..].copy_from_slice(self.key);
        fill_checksum(buf);
        len
    }
}

/// A PROBE, to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRepr {
    pub origin: u64,
    pub hlc: u64,
    pub sequence: u64,
    pub sent_at_ns: u64,
}

impl ProbeRepr {
    /// Length of the emitted frame: always [`PROBE_LEN`].
    pub fn buffer_len(&self) -> usize {
        PROBE_LEN
    }

    /// Writes the frame, checksum included, into `buf[..PROBE_LEN]` and returns [`PROBE_LEN`].
    ///
    /// # Panics
    /// If `buf` is shorter than [`PROBE_LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> usize {
        let buf = &mut buf[..PROBE_LEN];
        emit_header(buf, FrameType::Probe, self.origin, self.hlc);
        buf[field::SEQUENCE].copy_from_slice(&self.sequence.to_be_bytes());
        buf[field::SENT_AT_NS].copy_from_slice(&self.sent_at_ns.to_be_bytes());
        fill_checksum(buf);
        PROBE_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Largest datagram at the default `--mtu 1280`.
    const DATAGRAM: usize = 1232;

    /// Emits every DATA fragment of `value` and returns the frames.
    fn fragments(key: &[u8], value: &[u8], chunk_len: u16) -> Vec<Vec<u8>> {
        let value_len = value.len() as u64;
        let count = u32::try_from(fragment_count(value_len, chunk_len)).unwrap();
        (0..count)
            .map(|i| {
                let repr = DataRepr {
                    origin: 7,
                    hlc: 0x0001_8c2e_5a6b_0003,
                    value_len,
                    fragment_index: i,
                    fragment_count: count,
                    chunk_len,
                    parity_count: 0,
                    key,
                    payload: &value[chunk(value.len(), i, chunk_len)],
                };
                let mut buf = vec![0xAA; repr.buffer_len() + 10];
                let len = repr.emit(&mut buf);
                assert_eq!(len, repr.buffer_len());
                buf.truncate(len);
                buf
            })
            .collect()
    }

    fn data_frame(key: &[u8], value: &[u8], chunk_len: u16) -> Vec<u8> {
        let mut frames = fragments(key, value, chunk_len);
        assert_eq!(frames.len(), 1);
        frames.pop().unwrap()
    }

    fn tombstone_frame(key: &[u8]) -> Vec<u8> {
        let repr = TombstoneRepr {
            origin: 3,
            hlc: 99,
            key,
        };
        let mut buf = vec![0; repr.buffer_len()];
        assert_eq!(repr.emit(&mut buf), buf.len());
        buf
    }

    fn probe_frame() -> Vec<u8> {
        let repr = ProbeRepr {
            origin: 5,
            hlc: 6,
            sequence: 77,
            sent_at_ns: 123_456_789,
        };
        let mut buf = vec![0; PROBE_LEN];
        assert_eq!(repr.emit(&mut buf), PROBE_LEN);
        buf
    }

    /// Rewrites the checksum so that a test reaches the check it targets.
    fn refresh(buf: &mut [u8]) {
        let crc = compute_checksum(buf);
        buf[8..12].copy_from_slice(&crc.to_be_bytes());
    }

    fn check(buf: &[u8]) -> Result<(), Error> {
        Frame::new_checked(buf).map(|_| ())
    }

    /// Reassembles a value from its checked fragments using only the accessors.
    fn reassemble(frames: &[Vec<u8>]) -> Vec<u8> {
        let first = Frame::new_checked(&frames[0][..]).unwrap();
        let mut value = vec![0; usize::try_from(first.value_len()).unwrap()];
        for buf in frames {
            let frame = Frame::new_checked(&buf[..]).unwrap();
            assert_eq!(frame.frame_type(), FrameType::Data);
            let at = usize::try_from(frame.payload_offset()).unwrap();
            value[at..at + frame.payload().len()].copy_from_slice(frame.payload());
        }
        value
    }

    fn value_of(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn data_round_trip() {
        let value = value_of(1000);
        let frames = fragments(b"some/key", &value, 300);
        assert_eq!(frames.len(), 4);
        for (i, buf) in frames.iter().enumerate() {
            let frame = Frame::new_checked(&buf[..]).unwrap();
            assert_eq!(frame.frame_type(), FrameType::Data);
            assert_eq!(frame.flags(), 0);
            assert_eq!(frame.origin(), 7);
            assert_eq!(frame.hlc(), 0x0001_8c2e_5a6b_0003);
            assert_eq!(frame.value_len(), 1000);
            assert_eq!(frame.fragment_index(), i as u32);
            assert_eq!(frame.fragment_count(), 4);
            assert_eq!(frame.chunk_len(), 300);
            assert_eq!(frame.parity_count(), 0);
            assert_eq!(frame.key(), b"some/key");
            assert_eq!(frame.payload_offset(), i as u64 * 300);
            assert_eq!(frame.payload(), &value[chunk(1000, i as u32, 300)]);
            assert_eq!(frame.checksum(), compute_checksum(buf));
            assert_eq!(frame.as_bytes(), &buf[..]);
        }
        // The last fragment is shorter.
        assert_eq!(frames[3].len(), DATA_HEADER_LEN + 8 + 100);
        assert_eq!(reassemble(&frames), value);
    }

    #[test]
    fn empty_value_is_one_empty_fragment() {
        assert_eq!(fragment_count(0, 1), 1);
        assert_eq!(chunk(0, 0, 100), 0..0);
        let buf = data_frame(b"k", b"", 100);
        assert_eq!(buf.len(), DATA_HEADER_LEN + 1);
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.value_len(), 0);
        assert_eq!(frame.fragment_count(), 1);
        assert_eq!(frame.fragment_index(), 0);
        assert_eq!(frame.payload(), b"");
    }

    #[test]
    fn value_multiple_of_chunk_len() {
        let value = value_of(900);
        let frames = fragments(b"k", &value, 300);
        assert_eq!(frames.len(), 3);
        for buf in &frames {
            assert_eq!(buf.len(), DATA_HEADER_LEN + 1 + 300);
        }
        assert_eq!(reassemble(&frames), value);
    }

    #[test]
    fn single_full_chunk_and_one_byte_over() {
        assert_eq!(fragment_count(300, 300), 1);
        assert_eq!(fragment_count(301, 300), 2);
        assert_eq!(fragment_count(1, u16::MAX), 1);
        assert_eq!(fragment_count(u64::MAX, 1), u64::MAX);
        let frames = fragments(b"k", &value_of(301), 300);
        assert_eq!(frames.len(), 2);
        let last = Frame::new_checked(&frames[1][..]).unwrap();
        assert_eq!(last.payload().len(), 1);
        assert_eq!(last.payload_offset(), 300);
    }

    #[test]
    fn chunk_ranges() {
        assert_eq!(chunk(1000, 0, 300), 0..300);
        assert_eq!(chunk(1000, 3, 300), 900..1000);
        assert_eq!(chunk(1000, 4, 300), 1000..1000);
        assert_eq!(chunk(1000, u32::MAX, u16::MAX), 1000..1000);
    }

    #[test]
    fn tombstone_round_trip() {
        let buf = tombstone_frame(b"gone");
        assert_eq!(buf.len(), TOMBSTONE_HEADER_LEN + 4);
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.frame_type(), FrameType::Tombstone);
        assert_eq!(frame.origin(), 3);
        assert_eq!(frame.hlc(), 99);
        assert_eq!(frame.key(), b"gone");
        assert_eq!(frame.payload(), b"");
    }

    #[test]
    fn probe_round_trip() {
        let buf = probe_frame();
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.frame_type(), FrameType::Probe);
        assert_eq!(frame.origin(), 5);
        assert_eq!(frame.hlc(), 6);
        assert_eq!(frame.sequence(), 77);
        assert_eq!(frame.sent_at_ns(), 123_456_789);
        assert_eq!(frame.key(), b"");
        assert_eq!(frame.payload(), b"");
        assert_eq!(
            ProbeRepr {
                origin: 0,
                hlc: 0,
                sequence: 0,
                sent_at_ns: 0
            }
            .buffer_len(),
            44
        );
    }

    #[test]
    fn emit_fills_only_its_length() {
        let repr = TombstoneRepr {
            origin: 1,
            hlc: 1,
            key: b"abc",
        };
        let mut buf = [0xEE; 64];
        let len = repr.emit(&mut buf);
        assert_eq!(len, 35);
        assert!(buf[len..].iter().all(|&b| b == 0xEE));
        Frame::new_checked(&buf[..len]).unwrap();
    }

    #[test]
    #[should_panic]
    fn emit_panics_on_short_buffer() {
        let mut buf = [0; PROBE_LEN - 1];
        ProbeRepr {
            origin: 1,
            hlc: 1,
            sequence: 1,
            sent_at_ns: 1,
        }
        .emit(&mut buf);
    }

    /// A PARITY frame: v1 does not emit one, so turn a DATA frame into one by hand.
    fn parity_frame(index: u32, parity_count: u8, payload_len: usize) -> Vec<u8> {
        let repr = DataRepr {
            origin: 11,
            hlc: 12,
            value_len: 1000,
            fragment_index: index,
            fragment_count: 4,
            chunk_len: 300,
            parity_count,
            key: b"fec",
            payload: &[0x5A; 400][..payload_len],
        };
        let mut buf = vec![0; repr.buffer_len()];
        repr.emit(&mut buf);
        buf[5] = 4;
        refresh(&mut buf);
        buf
    }

    #[test]
    fn parity_round_trip() {
        let buf = parity_frame(1, 2, 300);
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.frame_type(), FrameType::Parity);
        assert_eq!(frame.origin(), 11);
        assert_eq!(frame.hlc(), 12);
        assert_eq!(frame.value_len(), 1000);
        assert_eq!(frame.fragment_index(), 1);
        assert_eq!(frame.fragment_count(), 4);
        assert_eq!(frame.chunk_len(), 300);
        assert_eq!(frame.parity_count(), 2);
        assert_eq!(frame.key(), b"fec");
        assert_eq!(frame.payload(), &[0x5A; 300][..]);
    }

    #[test]
    fn parity_rejections() {
        // index must be below parity_count, not fragment_count.
        assert_eq!(check(&parity_frame(2, 2, 300)), Err(Error::Malformed));
        assert_eq!(check(&parity_frame(0, 0, 300)), Err(Error::Malformed));
        check(&parity_frame(3, 4, 300)).unwrap();
        // Payload exactly chunk_len, even though DATA's last fragment here would hold 100.
        assert_eq!(check(&parity_frame(0, 1, 100)), Err(Error::Truncated));
        assert_eq!(check(&parity_frame(0, 1, 299)), Err(Error::Truncated));
        assert_eq!(check(&parity_frame(0, 1, 301)), Err(Error::Malformed));
    }

    #[test]
    fn max_key_accepted_longer_and_empty_rejected() {
        let key = [b'x'; MAX_KEY_LEN];
        let buf = data_frame(&key, b"v", 10);
        assert_eq!(Frame::new_checked(&buf[..]).unwrap().key(), &key[..]);
        let buf = tombstone_frame(&key);
        assert_eq!(Frame::new_checked(&buf[..]).unwrap().key(), &key[..]);

        let long = [b'x'; MAX_KEY_LEN + 1];
        assert_eq!(check(&data_frame(&long, b"v", 10)), Err(Error::Malformed));
        assert_eq!(check(&tombstone_frame(&long)), Err(Error::Malformed));

        assert_eq!(check(&data_frame(b"", b"v", 10)), Err(Error::Malformed));
        assert_eq!(check(&tombstone_frame(b"")), Err(Error::Malformed));
    }

    #[test]
    fn rejects_short_buffers() {
        assert_eq!(check(&[]), Err(Error::Truncated));
        assert_eq!(check(b"ELDY"), Err(Error::Truncated));
        let buf = data_frame(b"key", b"value", 100);
        assert_eq!(check(&buf[..HEADER_LEN - 1]), Err(Error::Truncated));
        assert_eq!(check(&buf[..DATA_HEADER_LEN - 1]), Err(Error::Truncated));
        // Key cut short.
        assert_eq!(check(&buf[..DATA_HEADER_LEN + 2]), Err(Error::Truncated));
        let buf = tombstone_frame(b"key");
        assert_eq!(
            check(&buf[..TOMBSTONE_HEADER_LEN - 1]),
            Err(Error::Truncated)
        );
        assert_eq!(
            check(&buf[..TOMBSTONE_HEADER_LEN + 1]),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn rejects_bad_magic() {
        for at in 0..4 {
            let mut buf = probe_frame();
            buf[at] ^= 0x20;
            assert_eq!(check(&buf), Err(Error::BadMagic));
        }
        // Checked before the length of the type.
        let mut buf = [0u8; HEADER_LEN];
        buf[..4].copy_from_slice(b"ELDX");
        assert_eq!(check(&buf), Err(Error::BadMagic));
    }

    #[test]
    fn rejects_other_versions() {
        for version in [0, 2, 255] {
            let mut buf = data_frame(b"k", b"v", 10);
            buf[4] = version;
            refresh(&mut buf);
            assert_eq!(check(&buf), Err(Error::UnsupportedVersion));
        }
        // A future version's frame of any length and layout is dropped on the version byte.
        let mut buf = [0u8; HEADER_LEN];
        buf[..4].copy_from_slice(&MAGIC);
        buf[4] = 2;
        buf[5] = 42;
        assert_eq!(check(&buf), Err(Error::UnsupportedVersion));
    }

    #[test]
    fn rejects_unknown_types() {
        for code in [0, 5, 9, 255] {
            let mut buf = data_frame(b"k", b"v", 10);
            buf[5] = code;
            refresh(&mut buf);
            assert_eq!(check(&buf), Err(Error::UnknownType));
        }
    }

    #[test]
    fn flipped_bits_fail_the_checksum() {
        let value = value_of(40);
        let buf = data_frame(b"the-key", &value, 100);
        check(&buf).unwrap();
        // Fields that only the checksum guards: flags, checksum, origin, hlc, parity_count
        // (free in DATA), reserved bytes, key, payload.
        let positions = [
            6, 7, 8, 11, 12, 19, 20, 27, 46, 47, 50, 51, 52, 58, 59, 70, 98,
        ];
        assert_eq!(buf.len(), 99);
        for at in positions {
            for bit in [0, 3, 7] {
                let mut bad = buf.clone();
                bad[at] ^= 1 << bit;
                assert_eq!(check(&bad), Err(Error::BadChecksum), "byte {at} bit {bit}");
            }
        }
        // A flip anywhere else is caught too, by the consistency checks before the checksum.
        for at in 0..buf.len() {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[at] ^= 1 << bit;
                assert!(check(&bad).is_err(), "byte {at} bit {bit}");
            }
        }
        let mut bad = tombstone_frame(b"key");
        bad[33] ^= 1;
        assert_eq!(check(&bad), Err(Error::BadChecksum));
        let mut bad = probe_frame();
        bad[43] ^= 0x80;
        assert_eq!(check(&bad), Err(Error::BadChecksum));
    }

    #[test]
    fn reserved_and_flags_ignored() {
        let mut buf = data_frame(b"k", b"v", 10);
        buf[6..8].copy_from_slice(&0xBEEFu16.to_be_bytes());
        buf[47] = 0xFF;
        buf[50..52].copy_from_slice(&[0xAB, 0xCD]);
        refresh(&mut buf);
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.flags(), 0xBEEF);
        assert_eq!(frame.payload(), b"v");

        let mut buf = tombstone_frame(b"k");
        buf[6] = 0x80;
        buf[30..32].copy_from_slice(&[1, 2]);
        refresh(&mut buf);
        assert_eq!(Frame::new_checked(&buf[..]).unwrap().flags(), 0x8000);
    }

    #[test]
    fn rejects_inconsistent_data_headers() {
        use Error::{Malformed, Truncated};
        // (value_len, fragment_index, fragment_count, chunk_len, payload_len, expected).
        // Baseline: 1000 bytes in chunks of 300 -> 4 fragments, the last of 100 bytes.
        type Case = (u64, u32, u32, u16, usize, Result<(), Error>);
        let cases: [Case; 22] = [
            (1000, 0, 4, 300, 300, Ok(())),
            (1000, 3, 4, 300, 100, Ok(())),
            // index >= count.
            (1000, 4, 4, 300, 0, Err(Malformed)),
            (1000, 4, 4, 300, 100, Err(Malformed)),
            (1000, u32::MAX, 4, 300, 300, Err(Malformed)),
            // count inconsistent with value_len / chunk_len.
            (1000, 0, 3, 300, 300, Err(Malformed)),
            (1000, 0, 5, 300, 300, Err(Malformed)),
            (0, 0, 0, 300, 0, Err(Malformed)),
            (0, 0, 2, 300, 0, Err(Malformed)),
            // A count too large for the u32 field never matches.
            (1 << 40, 0, 0, 1, 1, Err(Malformed)),
            (1 << 40, 0, u32::MAX, 1, 1, Err(Malformed)),
            // chunk_len 0, also for an empty value.
            (1000, 0, 4, 0, 0, Err(Malformed)),
            (0, 0, 1, 0, 0, Err(Malformed)),
            // Middle fragment payload short / long.
            (1000, 1, 4, 300, 299, Err(Truncated)),
            (1000, 1, 4, 300, 100, Err(Truncated)),
            (1000, 1, 4, 300, 301, Err(Malformed)),
            // Last fragment payload short / long / a full chunk.
            (1000, 3, 4, 300, 99, Err(Truncated)),
            (1000, 3, 4, 300, 0, Err(Truncated)),
            (1000, 3, 4, 300, 101, Err(Malformed)),
            (1000, 3, 4, 300, 300, Err(Malformed)),
            // Empty value with a payload.
            (0, 0, 1, 300, 1, Err(Malformed)),
            (0, 0, 1, 300, 0, Ok(())),
        ];
        for (value_len, index, count, chunk_len, payload_len, expected) in cases {
            let payload = [1; 400];
            let repr = DataRepr {
                origin: 1,
                hlc: 1,
                value_len,
                fragment_index: index,
                fragment_count: count,
                chunk_len,
                parity_count: 0,
                key: b"k",
                payload: &payload[..payload_len],
            };
            let mut buf = [0; 500];
            let len = repr.emit(&mut buf);
            assert_eq!(check(&buf[..len]), expected, "{repr:?}");
        }
    }

    #[test]
    fn rejects_trailing_bytes_after_tombstone_key() {
        let mut buf = tombstone_frame(b"key");
        buf.push(0);
        refresh(&mut buf);
        assert_eq!(check(&buf), Err(Error::Malformed));
    }

    #[test]
    fn rejects_probe_of_wrong_length() {
        let buf = probe_frame();
        assert_eq!(check(&buf[..43]), Err(Error::Truncated));
        let mut long = buf.clone();
        long.push(0);
        refresh(&mut long);
        assert_eq!(check(&long), Err(Error::Malformed));
    }

    #[test]
    fn every_error_from_a_real_case() {
        let mut seen = Vec::new();
        let good = data_frame(b"k", b"v", 10);
        seen.push(check(&good[..10]).unwrap_err());
        let mut bad = good.clone();
        bad[0] = 0;
        seen.push(check(&bad).unwrap_err());
        let mut bad = good.clone();
        bad[4] = 2;
        seen.push(check(&bad).unwrap_err());
        let mut bad = good.clone();
        bad[5] = 9;
        seen.push(check(&bad).unwrap_err());
        let mut bad = good.clone();
        bad[52] ^= 1;
        seen.push(check(&bad).unwrap_err());
        let mut bad = good.clone();
        bad.push(0);
        seen.push(check(&bad).unwrap_err());
        assert_eq!(seen, Error::ALL);
    }

    #[test]
    fn error_labels() {
        let labels: Vec<&str> = Error::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(
            labels,
            [
                "truncated",
                "bad_magic",
                "unsupported_version",
                "unknown_type",
                "bad_checksum",
                "malformed"
            ]
        );
        for error in Error::ALL {
            assert!(!error.to_string().is_empty());
            let _: &dyn std::error::Error = &error;
        }
    }

    #[test]
    fn frame_type_codes() {
        for ty in [
            FrameType::Data,
            FrameType::Tombstone,
            FrameType::Probe,
            FrameType::Parity,
        ] {
            assert_eq!(FrameType::from_code(ty.code()), Some(ty));
        }
        assert_eq!(FrameType::from_code(0), None);
        assert_eq!(FrameType::from_code(5), None);
    }

    #[test]
    fn checksum_treats_its_field_as_zero() {
        let buf = data_frame(b"k", b"v", 10);
        let mut zeroed = buf.clone();
        zeroed[8..12].fill(0);
        assert_eq!(compute_checksum(&buf), crc32c::crc32c(&zeroed));
        // Any length works, including ones that end inside the checksum field.
        for len in 0..=buf.len() {
            assert_eq!(
                compute_checksum(&buf[..len]),
                crc32c::crc32c(&zeroed[..len])
            );
        }
    }

    /// The worked example of docs/wire-format.md: a change of layout or checksum breaks this.
    #[test]
    fn known_vector() {
        let chunk_len = max_chunk_len(DATAGRAM, 3) as u16;
        assert_eq!(chunk_len, 1177);
        let repr = DataRepr {
            origin: 1,
            hlc: 2,
            value_len: 2,
            fragment_index: 0,
            fragment_count: 1,
            chunk_len,
            parity_count: 0,
            key: b"foo",
            payload: b"hi",
        };
        let mut buf = [0; 64];
        let len = repr.emit(&mut buf);
        let expected: [u8; 57] = [
            0x45, 0x4c, 0x44, 0x59, 0x01, 0x01, 0x00, 0x00, // magic, version, type, flags
            0xc8, 0xdd, 0xeb, 0x43, // checksum
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // origin
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // hlc
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // value_len
            0x00, 0x00, 0x00, 0x00, // fragment_index
            0x00, 0x00, 0x00, 0x01, // fragment_count
            0x04, 0x99, 0x00, 0x00, // chunk_len, parity_count, reserved
            0x00, 0x03, 0x00, 0x00, // key_len, reserved
            0x66, 0x6f, 0x6f, 0x68, 0x69, // "foo" "hi"
        ];
        assert_eq!(&buf[..len], &expected[..]);
        assert_eq!(compute_checksum(&buf[..len]), 0xc8dd_eb43);
        Frame::new_checked(&buf[..len]).unwrap();
    }

    #[test]
    fn max_chunk_len_fits_the_datagram() {
        assert_eq!(max_chunk_len(1232, 1), 1232 - 53);
        assert_eq!(max_chunk_len(1232, MAX_KEY_LEN), 1232 - 52 - 1024);
        assert_eq!(max_chunk_len(DATA_HEADER_LEN + 10, 10), 0);
        assert_eq!(max_chunk_len(10, 10), 0);
        assert_eq!(max_chunk_len(1 << 20, 1), usize::from(u16::MAX));
        assert_eq!(max_chunk_len(1232, 0), 0);
        assert_eq!(max_chunk_len(1 << 20, MAX_KEY_LEN + 1), 0);
        // A full fragment at that chunk length is exactly the datagram size.
        let key = [b'k'; 100];
        let c = max_chunk_len(DATAGRAM, key.len());
        let frames = fragments(&key, &value_of(3 * c), c as u16);
        assert!(frames.iter().all(|f| f.len() == DATAGRAM));
    }

    #[test]
    fn every_prefix_is_truncated() {
        let frames = [
            data_frame(b"prefix", &value_of(50), 64),
            parity_frame(0, 1, 300),
            tombstone_frame(b"prefix"),
            probe_frame(),
        ];
        for buf in &frames {
            check(buf).unwrap();
            for len in 0..buf.len() {
                assert_eq!(check(&buf[..len]), Err(Error::Truncated), "prefix {len}");
            }
        }
    }

    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Calls every accessor that is valid for the frame's type.
    fn read_all(frame: &Frame<&[u8]>) -> u64 {
        let mut sum = frame.origin() ^ frame.hlc() ^ u64::from(frame.flags());
        sum ^= u64::from(frame.checksum()) ^ frame.key().len() as u64;
        match frame.frame_type() {
            FrameType::Data | FrameType::Parity => {
                sum ^= frame.value_len() ^ frame.payload_offset() ^ frame.payload().len() as u64;
                sum ^= u64::from(frame.fragment_count()) ^ u64::from(frame.parity_count());
            }
            FrameType::Tombstone => {}
            FrameType::Probe => sum ^= frame.sequence() ^ frame.sent_at_ns(),
        }
        sum
    }

    #[test]
    fn arbitrary_input_never_panics() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let seeds = [
            data_frame(b"fuzz", &value_of(40), 64),
            parity_frame(1, 2, 300),
            tombstone_frame(b"fuzz"),
            probe_frame(),
        ];
        let mut accepted = 0;
        let mut buf = [0u8; 512];
        for round in 0..20_000 {
            let len = (rng.next() % 400) as usize;
            match round % 4 {
                // Pure noise.
                0 => buf[..len].iter_mut().for_each(|b| *b = rng.next() as u8),
                // Noise behind a valid magic, version and type, with a valid checksum.
                1 | 2 => {
                    buf[..len].iter_mut().for_each(|b| *b = rng.next() as u8);
                    if len >= HEADER_LEN {
                        buf[..4].copy_from_slice(&MAGIC);
                        buf[4] = FORMAT_VERSION;
                        buf[5] = (rng.next() % 6) as u8;
                        refresh(&mut buf[..len]);
                    }
                }
                // A valid frame with a few bytes changed, re-checksummed.
                _ => {
                    let seed = &seeds[(rng.next() % 4) as usize];
                    let len = seed.len();
                    buf[..len].copy_from_slice(seed);
                    for _ in 0..(rng.next() % 3) {
                        let at = (rng.next() % len as u64) as usize;
                        buf[at] = rng.next() as u8;
                    }
                    refresh(&mut buf[..len]);
                    if let Ok(frame) = Frame::new_checked(&buf[..len]) {
                        accepted += 1;
                        read_all(&frame);
                    }
                    continue;
                }
            }
            if let Ok(frame) = Frame::new_checked(&buf[..len]) {
                read_all(&frame);
            }
        }
        assert!(accepted > 0);
    }
}
