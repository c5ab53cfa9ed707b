//! Tests of the wire format: round trips, every rejection path, a fixed vector, noise.

use super::*;

/// Largest datagram at the default `--mtu 1280`.
const DATAGRAM: usize = 1232;

/// Emits every DATA fragment of `value` and returns the frames.
fn fragments(key: &[u8], value: &[u8], chunk_len: u16) -> Vec<Vec<u8>> {
    fragments_at(key, value, 0x0001_8c2e_5a6b_0003, chunk_len)
}

/// Emits every DATA fragment of `value`, written by node 7 at stamp `hlc`, checking that each
/// emit writes exactly its length; for the tests of other modules too.
pub(crate) fn fragments_at(key: &[u8], value: &[u8], hlc: u64, chunk_len: u16) -> Vec<Vec<u8>> {
    let value_len = value.len() as u64;
    let count = u32::try_from(fragment_count(value_len, chunk_len)).unwrap();
    (0..count)
        .map(|i| {
            let repr = DataRepr {
                origin: 7,
                hlc,
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

/// The DATA or PARITY fields of a checked frame.
fn data<'a>(frame: &'a Frame<&[u8]>) -> DataFrame<'a> {
    match frame.kind() {
        Kind::Data(d) | Kind::Parity(d) => d,
        other => panic!("not a data frame: {other:?}"),
    }
}

fn check(buf: &[u8]) -> Result<(), Error> {
    Frame::new_checked(buf).map(|_| ())
}

/// Reassembles a value from its checked fragments using only the accessors.
fn reassemble(frames: &[Vec<u8>]) -> Vec<u8> {
    let first = Frame::new_checked(&frames[0][..]).unwrap();
    let mut value = vec![0; usize::try_from(data(&first).value_len()).unwrap()];
    for buf in frames {
        let frame = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(frame.frame_type(), FrameType::Data);
        let d = data(&frame);
        let at = usize::try_from(d.payload_offset()).unwrap();
        value[at..at + d.payload().len()].copy_from_slice(d.payload());
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
        assert_eq!(data(&frame).value_len(), 1000);
        assert_eq!(data(&frame).fragment_index(), i as u32);
        assert_eq!(data(&frame).fragment_count(), 4);
        assert_eq!(data(&frame).chunk_len(), 300);
        assert_eq!(data(&frame).parity_count(), 0);
        assert_eq!(data(&frame).key(), b"some/key");
        assert_eq!(data(&frame).payload_offset(), i as u64 * 300);
        assert_eq!(data(&frame).payload(), &value[chunk(1000, i as u32, 300)]);
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
    assert_eq!(data(&frame).value_len(), 0);
    assert_eq!(data(&frame).fragment_count(), 1);
    assert_eq!(data(&frame).fragment_index(), 0);
    assert_eq!(data(&frame).payload(), b"");
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
    assert_eq!(data(&last).payload().len(), 1);
    assert_eq!(data(&last).payload_offset(), 300);
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
    match frame.kind() {
        Kind::Tombstone(t) => assert_eq!(t.key(), b"gone"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn probe_round_trip() {
    let buf = probe_frame();
    let frame = Frame::new_checked(&buf[..]).unwrap();
    assert_eq!(frame.frame_type(), FrameType::Probe);
    assert_eq!(frame.origin(), 5);
    assert_eq!(frame.hlc(), 6);
    match frame.kind() {
        Kind::Probe(p) => {
            assert_eq!(p.sequence(), 77);
            assert_eq!(p.sent_at_ns(), 123_456_789);
        }
        other => panic!("{other:?}"),
    }
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
    assert_eq!(data(&frame).value_len(), 1000);
    assert_eq!(data(&frame).fragment_index(), 1);
    assert_eq!(data(&frame).fragment_count(), 4);
    assert_eq!(data(&frame).chunk_len(), 300);
    assert_eq!(data(&frame).parity_count(), 2);
    assert_eq!(data(&frame).key(), b"fec");
    assert_eq!(data(&frame).payload(), &[0x5A; 300][..]);
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
    assert_eq!(data(&Frame::new_checked(&buf[..]).unwrap()).key(), &key[..]);
    let buf = tombstone_frame(&key);
    match Frame::new_checked(&buf[..]).unwrap().kind() {
        Kind::Tombstone(t) => assert_eq!(t.key(), &key[..]),
        other => panic!("{other:?}"),
    }

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
    assert_eq!(data(&frame).payload(), b"v");

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
    assert_eq!(
        seen,
        [
            Error::Truncated,
            Error::BadMagic,
            Error::UnsupportedVersion,
            Error::UnknownType,
            Error::BadChecksum,
            Error::Malformed
        ]
    );
    for error in seen {
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
    sum ^= u64::from(frame.checksum()) ^ frame.as_bytes().len() as u64;
    match frame.kind() {
        Kind::Data(d) | Kind::Parity(d) => {
            sum ^= d.value_len() ^ d.payload_offset() ^ d.payload().len() as u64;
            sum ^= u64::from(d.fragment_count()) ^ u64::from(d.parity_count());
            sum ^= u64::from(d.fragment_index()) ^ u64::from(d.chunk_len()) ^ d.key().len() as u64;
        }
        Kind::Tombstone(t) => sum ^= t.key().len() as u64,
        Kind::Probe(p) => sum ^= p.sequence() ^ p.sent_at_ns(),
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
