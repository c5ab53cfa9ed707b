//! wire::frame: the checked, zero-copy view over a received datagram.
//!
//! It owns validation ([`Frame::new_checked`]) and the field accessors. A [`Frame`] can only be
//! built by checking, so every accessor it offers is valid and never panics; the fields that
//! belong to one frame type are reached through that type's view ([`Frame::kind`]), so a PROBE
//! has no key and a TOMBSTONE no payload to ask for. It must not allocate or copy.

use core::ops::Range;

use super::format::{
    compute_checksum, field, lap_check, Error, FrameType, Geometry, DATA_HEADER_LEN,
    FORMAT_VERSION, HEADER_LEN, MAGIC, MAX_KEY_LEN, PROBE_LEN, TAG_LEN, TOMBSTONE_HEADER_LEN,
};

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

/// A checked, read-only view of a frame in a byte buffer.
///
/// The only way to build one is [`Frame::new_checked`]: every accessor is then valid and never
/// panics. The common header's fields are here; the rest are on the view [`Frame::kind`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    frame_type: FrameType,
}

/// The part of a checked frame that only its type has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind<'a> {
    /// One data fragment of a value.
    Data(DataFrame<'a>),
    /// A parity fragment of a stripe (same fields as DATA).
    Parity(DataFrame<'a>),
    /// A deletion.
    Tombstone(TombstoneFrame<'a>),
    /// A loop latency probe.
    Probe(ProbeFrame<'a>),
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` once it is a well-formed frame. Checks run cheap first: length of the
    /// common header (`Truncated`), magic (`BadMagic`), version (`UnsupportedVersion`), type
    /// (`UnknownType`), then the type's own fields (`Malformed`) and length (`Truncated` if the
    /// buffer is shorter than the frame they describe, `Malformed` if longer), and the checksum
    /// (`BadChecksum`) and the lap's check byte (`BadChecksum` too) last. Flags and reserved
    /// fields are not looked at.
    pub fn new_checked(buffer: T) -> Result<Frame<T>, Error> {
        let frame_type = check(buffer.as_ref())?;
        Ok(Frame { buffer, frame_type })
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
    pub fn frame_type(&self) -> FrameType {
        self.frame_type
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

    /// The key epoch: 0 for a frame sent in the clear, else the epoch of the ring key that
    /// sealed it (the frame then ends in a [`TAG_LEN`]-byte tag).
    pub fn epoch(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::EPOCH)
    }

    /// The authentication tag that ends a sealed frame; `None` in the clear.
    pub fn tag(&self) -> Option<&[u8]> {
        let buf = self.buffer.as_ref();
        (self.epoch() != 0).then(|| &buf[buf.len() - TAG_LEN..])
    }

    /// The fields of this frame's type.
    pub fn kind(&self) -> Kind<'_> {
        let buf = self.buffer.as_ref();
        let buf = &buf[..buf.len() - self.tag().map_or(0, <[u8]>::len)];
        match self.frame_type {
            FrameType::Data => Kind::Data(DataFrame { buf }),
            FrameType::Parity => Kind::Parity(DataFrame { buf }),
            FrameType::Tombstone => Kind::Tombstone(TombstoneFrame { buf }),
            FrameType::Probe => Kind::Probe(ProbeFrame { buf }),
        }
    }
}

/// The fields of a checked DATA or PARITY frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    buf: &'a [u8],
}

impl<'a> DataFrame<'a> {
    /// Total length of the value in bytes.
    pub fn value_len(&self) -> u64 {
        read_u64(self.buf, field::VALUE_LEN)
    }

    /// The stripe this fragment belongs to: below [`Geometry::stripe_count`].
    pub fn stripe(&self) -> u32 {
        read_u32(self.buf, field::STRIPE)
    }

    /// Position of this fragment in its stripe: data below [`Geometry::data_in`], parity from
    /// there to [`Geometry::shards_in`].
    pub fn shard(&self) -> u16 {
        read_u16(self.buf, field::SHARD)
    }

    /// Payload bytes of every data fragment but the last, and of every parity fragment (even,
    /// never 0).
    pub fn chunk_len(&self) -> u16 {
        read_u16(self.buf, field::CHUNK_LEN)
    }

    /// Data fragments per stripe (1 to [`super::MAX_STRIPE_DATA`]).
    pub fn stripe_data(&self) -> u16 {
        read_u16(self.buf, field::STRIPE_DATA)
    }

    /// Parity fragments per stripe (0 to [`super::MAX_STRIPE_PARITY`]).
    pub fn stripe_parity(&self) -> u16 {
        read_u16(self.buf, field::STRIPE_PARITY)
    }

    /// How the value is cut, as every fragment of it says.
    pub fn geometry(&self) -> Geometry {
        Geometry {
            value_len: self.value_len(),
            chunk_len: self.chunk_len(),
            data: self.stripe_data(),
            parity: self.stripe_parity(),
        }
    }

    /// Number of data fragments of the value.
    pub fn fragment_count(&self) -> u64 {
        self.geometry().fragment_count()
    }

    /// Index of this fragment among the value's data fragments; `None` for PARITY.
    pub fn data_index(&self) -> Option<u64> {
        self.geometry().data_index(self.stripe(), self.shard())
    }

    /// The key: 1 to [`MAX_KEY_LEN`] bytes.
    pub fn key(&self) -> &'a [u8] {
        let len = usize::from(read_u16(self.buf, field::DATA_KEY_LEN));
        &self.buf[DATA_HEADER_LEN..DATA_HEADER_LEN + len]
    }

    /// Laps the fragment has made (hops through nodes since its writer sent it, modulo 256):
    /// every fragment of a stripe that passes a node in one lap carries the same lap, and the
    /// next lap's one more (a node per hop in a ring). It tells a copy from the next lap.
    pub fn lap(&self) -> u8 {
        self.buf[field::DATA_LAP]
    }

    /// The payload: everything after the key (and before the tag of a sealed frame).
    pub fn payload(&self) -> &'a [u8] {
        let len = usize::from(read_u16(self.buf, field::DATA_KEY_LEN));
        &self.buf[DATA_HEADER_LEN + len..]
    }

    /// Where a DATA fragment's payload starts inside the value: `data_index * chunk_len`
    /// (`None` for PARITY). With the payload's length it stays within `value_len`.
    pub fn payload_offset(&self) -> Option<u64> {
        self.data_index().map(|i| i * u64::from(self.chunk_len()))
    }
}

/// The fields of a checked TOMBSTONE frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TombstoneFrame<'a> {
    buf: &'a [u8],
}

impl<'a> TombstoneFrame<'a> {
    /// The key deleted: 1 to [`MAX_KEY_LEN`] bytes.
    pub fn key(&self) -> &'a [u8] {
        &self.buf[TOMBSTONE_HEADER_LEN..]
    }
}

/// The fields of a checked PROBE frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeFrame<'a> {
    buf: &'a [u8],
}

impl ProbeFrame<'_> {
    /// Sequence number of the probe.
    pub fn sequence(&self) -> u64 {
        read_u64(self.buf, field::SEQUENCE)
    }

    /// Origin-local monotonic send time in ns (opaque to other nodes).
    pub fn sent_at_ns(&self) -> u64 {
        read_u64(self.buf, field::SENT_AT_NS)
    }
}

/// Validates a whole frame and returns its type (see [`Frame::new_checked`]).
fn check(buf: &[u8]) -> Result<FrameType, Error> {
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
    let body_len = match frame_type {
        FrameType::Data | FrameType::Parity => check_data(buf, frame_type)?,
        FrameType::Tombstone => check_tombstone(buf)?,
        FrameType::Probe => PROBE_LEN,
    };
    let tag_len = if read_u32(buf, field::EPOCH) == 0 {
        0
    } else {
        TAG_LEN
    };
    let frame_len = body_len + tag_len;
    if buf.len() < frame_len {
        return Err(Error::Truncated);
    }
    if buf.len() > frame_len {
        return Err(Error::Malformed);
    }
    if read_u32(buf, field::CHECKSUM) != compute_checksum(buf) {
        return Err(Error::BadChecksum);
    }
    if matches!(frame_type, FrameType::Data | FrameType::Parity)
        && buf[field::DATA_LAP_CHECK] != lap_check(buf[field::DATA_LAP])
    {
        return Err(Error::BadChecksum);
    }
    Ok(frame_type)
}

/// Checks the DATA / PARITY header fields and returns the frame length they describe (tag not
/// included).
fn check_data(buf: &[u8], frame_type: FrameType) -> Result<usize, Error> {
    if buf.len() < DATA_HEADER_LEN {
        return Err(Error::Truncated);
    }
    let key_len = usize::from(read_u16(buf, field::DATA_KEY_LEN));
    if key_len == 0 || key_len > MAX_KEY_LEN {
        return Err(Error::Malformed);
    }
    let geometry = Geometry {
        value_len: read_u64(buf, field::VALUE_LEN),
        chunk_len: read_u16(buf, field::CHUNK_LEN),
        data: read_u16(buf, field::STRIPE_DATA),
        parity: read_u16(buf, field::STRIPE_PARITY),
    };
    if !geometry.is_valid() {
        return Err(Error::Malformed);
    }
    let stripe = read_u32(buf, field::STRIPE);
    let shard = read_u16(buf, field::SHARD);
    if u64::from(stripe) >= geometry.stripe_count()
        || u32::from(shard) >= geometry.shards_in(stripe)
    {
        return Err(Error::Malformed);
    }
    let is_data = geometry.data_index(stripe, shard).is_some();
    if is_data != (frame_type == FrameType::Data) {
        return Err(Error::Malformed);
    }
    Ok(DATA_HEADER_LEN + key_len + geometry.payload_len(stripe, shard))
}

/// Checks the TOMBSTONE header fields and returns the frame length they describe (tag not
/// included).
fn check_tombstone(buf: &[u8]) -> Result<usize, Error> {
    if buf.len() < TOMBSTONE_HEADER_LEN {
        return Err(Error::Truncated);
    }
    let key_len = usize::from(read_u16(buf, field::TOMBSTONE_KEY_LEN));
    if key_len == 0 || key_len > MAX_KEY_LEN {
        return Err(Error::Malformed);
    }
    Ok(TOMBSTONE_HEADER_LEN + key_len)
}
