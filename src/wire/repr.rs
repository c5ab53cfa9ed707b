//! wire::repr: emitters that write a frame into a caller-supplied buffer.
//!
//! It owns the encoding side of the format: one `Repr` per frame type, written with its
//! checksum in place. It must not allocate, and does not validate what it is given: the caller
//! keeps the fields consistent (see each `Repr`), or receivers reject the frame.

use super::format::{
    compute_checksum, field, lap_check, FrameType, Geometry, DATA_HEADER_LEN, FORMAT_VERSION,
    MAGIC, PROBE_LEN, TOMBSTONE_HEADER_LEN,
};

/// Writes the common header with a zero checksum, zero flags and key epoch 0 (in the clear).
fn emit_header(buf: &mut [u8], frame_type: FrameType, origin: u64, hlc: u64) {
    buf[field::MAGIC].copy_from_slice(&MAGIC);
    buf[field::VERSION] = FORMAT_VERSION;
    buf[field::TYPE] = frame_type.code();
    buf[field::FLAGS].copy_from_slice(&0u16.to_be_bytes());
    buf[field::CHECKSUM].copy_from_slice(&0u32.to_be_bytes());
    buf[field::ORIGIN].copy_from_slice(&origin.to_be_bytes());
    buf[field::HLC].copy_from_slice(&hlc.to_be_bytes());
    buf[field::EPOCH].copy_from_slice(&0u32.to_be_bytes());
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

/// One fragment of a value, DATA or PARITY, to emit.
///
/// `emit` writes the fields as given and does not validate them: the caller keeps them
/// consistent (a valid `geometry`, `shard < geometry.shards_in(stripe)`, a payload of
/// `geometry.payload_len(stripe, shard)` bytes: the value's bytes of [`super::chunk`] for data,
/// the stripe's parity otherwise; key 1..=[`super::MAX_KEY_LEN`] bytes), or receivers reject
/// the frame. The frame type follows from the position: DATA below `geometry.data_in(stripe)`,
/// PARITY from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRepr<'a> {
    pub origin: u64,
    pub hlc: u64,
    pub geometry: Geometry,
    pub stripe: u32,
    pub shard: u16,
    /// Laps the fragment has made: 0 from its writer; a node sends on what it forwards or
    /// rebuilds with the lap it came with plus one.
    pub lap: u8,
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
        let frame_type = match self.geometry.data_index(self.stripe, self.shard) {
            Some(_) => FrameType::Data,
            None => FrameType::Parity,
        };
        emit_header(buf, frame_type, self.origin, self.hlc);
        let g = &self.geometry;
        buf[field::VALUE_LEN].copy_from_slice(&g.value_len.to_be_bytes());
        buf[field::STRIPE].copy_from_slice(&self.stripe.to_be_bytes());
        buf[field::SHARD].copy_from_slice(&self.shard.to_be_bytes());
        buf[field::CHUNK_LEN].copy_from_slice(&g.chunk_len.to_be_bytes());
        buf[field::STRIPE_DATA].copy_from_slice(&g.data.to_be_bytes());
        buf[field::STRIPE_PARITY].copy_from_slice(&g.parity.to_be_bytes());
        buf[field::DATA_KEY_LEN].copy_from_slice(&wire_key_len(self.key));
        buf[field::DATA_LAP] = self.lap;
        buf[field::DATA_LAP_CHECK] = lap_check(self.lap);
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
