//! Tests of the wire format: round trips, every rejection path, a fixed vector, noise.

use super::*;

/// Largest datagram at the default `--mtu 1280`.
const DATAGRAM: usize = 1232;

/// Emits every DATA fragment of `value` (no parity) and returns the frames.
fn fragments(key: &[u8], value: &[u8], chunk_len: u16) -> Vec<Vec<u8>> {
    fragments_at(key, value, 0x0001_8c2e_5a6b_0003, chunk_len)
}

/// Emits every DATA fragment of `value` with no parity (stripes of [`MAX_STRIPE_DATA`]),
/// written by node 7 at stamp `hlc`; for the tests of other modules too.
pub(crate) fn fragments_at(key: &[u8], value: &[u8], hlc: u64, chunk_len: u16) -> Vec<Vec<u8>> {
    let geometry = Geometry {
        value_len: value.len() as u64,
        chunk_len,
        data: MAX_STRIPE_DATA,
        parity: 0,
    };
    frames_of(key, value, hlc, geometry)
}

/// Emits every fragment of `value` cut as `geometry` says (its `value_len` is ignored), data
/// and parity, stripe after stripe, written by node 7 at stamp `hlc`, checking that each emit
/// writes exactly its length; for the tests of other modules too.
pub(crate) fn frames_of(key: &[u8], value: &[u8], hlc: u64, geometry: Geometry) -> Vec<Vec<u8>> {
    let geometry = Geometry {
        value_len: value.len() as u64,
        ..geometry
    };
    let mut coder = crate::coding::Coder::new();
    let chunk_len = geometry.chunk_len;
    let mut frames = Vec::new();
    for stripe in 0..u32::try_from(geometry.stripe_count()).unwrap() {
        let data: Vec<&[u8]> = (0..geometry.data_in(stripe))
            .map(|shard| {
                let index = geometry.data_index(stripe, shard).unwrap();
                &value[chunk(value.len(), index, chunk_len)]
            })
            .collect();
        let mut parity = vec![Vec::new(); usize::from(geometry.parity)];
        coder
            .encode(&data, parity.len(), usize::from(chunk_len), |i, p| {
                parity[i] = p.to_vec()
            })
            .unwrap();
        let payloads = data.iter().copied().chain(parity.iter().map(Vec::as_slice));
        for (shard, payload) in payloads.enumerate() {
            let repr = DataRepr {
                origin: 7,
                hlc,
                geometry,
                stripe,
                shard: shard as u16,
                lap: 0,
                key,
                payload,
            };
            let mut buf = vec![0xAA; repr.buffer_len() + 10];
            let len = repr.emit(&mut buf);
            assert_eq!(len, repr.buffer_len());
            buf.truncate(len);
            frames.push(buf);
        }
    }
    frames
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
        let at = usize::try_from(d.payload_offset().unwrap()).unwrap();
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
        assert_eq!(frame.epoch(), 0);
        assert_eq!(frame.tag(), None);
        assert_eq!(data(&frame).value_len(), 1000);
        assert_eq!(data(&frame).stripe(), 0);
        assert_eq!(data(&frame).shard(), i as u16);
        assert_eq!(data(&frame).data_index(), Some(i as u64));
        assert_eq!(data(&frame).fragment_count(), 4);
        assert_eq!(data(&frame).chunk_len(), 300);
        assert_eq!(data(&frame).stripe_data(), MAX_STRIPE_DATA);
        assert_eq!(data(&frame).stripe_parity(), 0);
        assert_eq!(data(&frame).key(), b"some/key");
        assert_eq!(data(&frame).payload_offset(), Some(i as u64 * 300));
        assert_eq!(data(&frame).payload(), &value[chunk(1000, i as u64, 300)]);
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
    assert_eq!(data(&frame).shard(), 0);
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
    assert_eq!(data(&last).payload_offset(), Some(300));
}

#[test]
fn chunk_ranges() {
    assert_eq!(chunk(1000, 0, 300), 0..300);
    assert_eq!(chunk(1000, 3, 300), 900..1000);
    assert_eq!(chunk(1000, 4, 300), 1000..1000);
    assert_eq!(chunk(1000, u64::MAX, u16::MAX), 1000..1000);
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
        48
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
    assert_eq!(len, 39);
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

/// The geometry of the parity tests: 1000 bytes in chunks of 300 (4 data fragments), stripes
/// of 3 data and 2 parity: stripe 0 holds data 0..3, stripe 1 data 3 (100 bytes) and its parity.
const FEC: Geometry = Geometry {
    value_len: 1000,
    chunk_len: 300,
    data: 3,
    parity: 2,
};

/// Fragment `shard` of stripe `stripe` of [`FEC`], with a payload of `payload_len` bytes,
/// whatever the geometry says it should hold.
fn shard_frame(stripe: u32, shard: u16, payload_len: usize) -> Vec<u8> {
    let repr = DataRepr {
        origin: 11,
        hlc: 12,
        geometry: FEC,
        stripe,
        shard,
        lap: 0,
        key: b"fec",
        payload: &[0x5A; 400][..payload_len],
    };
    let mut buf = vec![0; repr.buffer_len()];
    repr.emit(&mut buf);
    buf
}

#[test]
fn parity_round_trip() {
    let buf = shard_frame(0, 4, 300);
    let frame = Frame::new_checked(&buf[..]).unwrap();
    assert_eq!(frame.frame_type(), FrameType::Parity);
    assert_eq!(frame.origin(), 11);
    assert_eq!(frame.hlc(), 12);
    let d = data(&frame);
    assert_eq!(d.geometry(), FEC);
    assert_eq!((d.stripe(), d.shard()), (0, 4));
    assert_eq!(d.data_index(), None);
    assert_eq!(d.payload_offset(), None);
    assert_eq!(d.key(), b"fec");
    assert_eq!(d.payload(), &[0x5A; 300][..]);
    // The short last stripe: one data fragment of 100 bytes, then parity at 1 and 2.
    let buf = shard_frame(1, 0, 100);
    let frame = Frame::new_checked(&buf[..]).unwrap();
    assert_eq!(frame.frame_type(), FrameType::Data);
    assert_eq!(data(&frame).data_index(), Some(3));
    let buf = shard_frame(1, 2, 300);
    assert_eq!(
        Frame::new_checked(&buf[..]).unwrap().frame_type(),
        FrameType::Parity
    );
}

#[test]
fn geometry_arithmetic() {
    assert_eq!(FEC.fragment_count(), 4);
    assert_eq!(FEC.stripe_count(), 2);
    assert_eq!((FEC.data_in(0), FEC.data_in(1), FEC.data_in(2)), (3, 1, 0));
    assert_eq!((FEC.shards_in(0), FEC.shards_in(1)), (5, 3));
    assert_eq!(FEC.datagram_count(), 8);
    assert_eq!(FEC.data_index(1, 0), Some(3));
    assert_eq!(FEC.data_index(1, 1), None);
    assert_eq!(FEC.payload_len(1, 0), 100);
    assert_eq!(FEC.payload_len(1, 1), 300);
    let empty = Geometry {
        value_len: 0,
        ..FEC
    };
    assert_eq!((empty.stripe_count(), empty.datagram_count()), (1, 3));
    assert!(FEC.is_valid());
    for bad in [
        Geometry {
            chunk_len: 0,
            ..FEC
        },
        Geometry {
            chunk_len: 301,
            ..FEC
        },
        Geometry { data: 0, ..FEC },
        Geometry {
            data: MAX_STRIPE_DATA + 1,
            ..FEC
        },
        Geometry {
            parity: MAX_STRIPE_PARITY + 1,
            ..FEC
        },
        Geometry {
            value_len: u64::MAX,
            chunk_len: 2,
            data: 1,
            parity: 0,
        },
    ] {
        assert!(!bad.is_valid(), "{bad:?}");
    }
    assert!(Geometry { parity: 0, ..FEC }.is_valid());
}

#[test]
fn interleaving_spreads_each_stripe() {
    // 10 data fragments in stripes of 2 + 1: stripes 0..=4, grouped 2 by 2, then the last.
    let g = Geometry {
        value_len: 1000,
        chunk_len: 100,
        data: 2,
        parity: 1,
    };
    let order: Vec<(u32, u16)> = interleaved(g, 2).collect();
    assert_eq!(
        order,
        [
            (0, 0),
            (1, 0),
            (0, 1),
            (1, 1),
            (0, 2),
            (1, 2),
            (2, 0),
            (3, 0),
            (2, 1),
            (3, 1),
            (2, 2),
            (3, 2),
            (4, 0),
            (4, 1),
            (4, 2),
        ]
    );
    // Every fragment exactly once, for a short last stripe too.
    let g = Geometry {
        value_len: 10_000,
        chunk_len: 100,
        data: 16,
        parity: 4,
    };
    let mut all: Vec<(u32, u16)> = interleaved(g, 8).collect();
    assert_eq!(all.len() as u64, g.datagram_count());
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len() as u64, g.datagram_count());
    // A burst of 16 consecutive losses takes at most 2 fragments of any stripe of a group of
    // 8 stripes (100 data fragments are 7 stripes of 16: use 200).
    let g = Geometry {
        value_len: 20_000,
        ..g
    };
    let order: Vec<(u32, u16)> = interleaved(g, 8).collect();
    for window in order[..8 * 20].windows(16) {
        for stripe in 0..8 {
            assert!(window.iter().filter(|(s, _)| *s == stripe).count() <= 2);
        }
    }
}

#[test]
fn parity_rejections() {
    // Positions past the stripe's fragments.
    assert_eq!(check(&shard_frame(0, 5, 300)), Err(Error::Malformed));
    assert_eq!(check(&shard_frame(1, 3, 300)), Err(Error::Malformed));
    assert_eq!(check(&shard_frame(2, 0, 300)), Err(Error::Malformed));
    check(&shard_frame(1, 2, 300)).unwrap();
    // Parity payload exactly chunk_len, even where the data fragment would hold 100.
    assert_eq!(check(&shard_frame(1, 1, 100)), Err(Error::Truncated));
    assert_eq!(check(&shard_frame(0, 3, 299)), Err(Error::Truncated));
    assert_eq!(check(&shard_frame(0, 3, 301)), Err(Error::Malformed));
    // The type must match the position: DATA below data_in, PARITY from there.
    let mut buf = shard_frame(0, 0, 300);
    buf[5] = FrameType::Parity.code();
    refresh(&mut buf);
    assert_eq!(check(&buf), Err(Error::Malformed));
    let mut buf = shard_frame(0, 3, 300);
    buf[5] = FrameType::Data.code();
    refresh(&mut buf);
    assert_eq!(check(&buf), Err(Error::Malformed));
}

#[test]
fn sealed_frames_end_in_a_tag() {
    // Epoch 0 is the clear; any other epoch means a 16-byte tag follows the frame.
    let mut buf = probe_frame();
    buf[28..32].copy_from_slice(&7u32.to_be_bytes());
    refresh(&mut buf);
    assert_eq!(check(&buf), Err(Error::Truncated));
    buf.extend_from_slice(&[0x77; TAG_LEN]);
    refresh(&mut buf);
    let frame = Frame::new_checked(&buf[..]).unwrap();
    assert_eq!(frame.epoch(), 7);
    assert_eq!(frame.tag(), Some(&[0x77; TAG_LEN][..]));
    match frame.kind() {
        Kind::Probe(p) => assert_eq!(p.sequence(), 77),
        other => panic!("{other:?}"),
    }
    let mut buf = data_frame(b"k", b"value", 10);
    buf[28..32].copy_from_slice(&1u32.to_be_bytes());
    buf.extend_from_slice(&[0x11; TAG_LEN]);
    refresh(&mut buf);
    let frame = Frame::new_checked(&buf[..]).unwrap();
    assert_eq!(data(&frame).payload(), b"value", "the tag is not payload");
    let mut buf = tombstone_frame(b"key");
    buf[28..32].copy_from_slice(&1u32.to_be_bytes());
    buf.extend_from_slice(&[0x11; TAG_LEN + 1]);
    refresh(&mut buf);
    assert_eq!(check(&buf), Err(Error::Malformed));
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
    for version in [0, 1, 3, 255] {
        let mut buf = data_frame(b"k", b"v", 10);
        buf[4] = version;
        refresh(&mut buf);
        assert_eq!(check(&buf), Err(Error::UnsupportedVersion));
    }
    // A future version's frame of any length and layout is dropped on the version byte.
    let mut buf = [0u8; HEADER_LEN];
    buf[..4].copy_from_slice(&MAGIC);
    buf[4] = 3;
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
    // Fields that only the checksum guards: flags, checksum, origin, hlc, the lap and its
    // check (guarded by each other), key, payload.
    let positions = [6, 7, 8, 11, 12, 19, 20, 27, 54, 55, 56, 62, 63, 80, 102];
    assert_eq!(buf.len(), 103);
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
    bad[36] ^= 1;
    assert_eq!(check(&bad), Err(Error::BadChecksum));
    let mut bad = probe_frame();
    bad[47] ^= 0x80;
    assert_eq!(check(&bad), Err(Error::BadChecksum));
}

#[test]
fn reserved_and_flags_ignored() {
    let mut buf = data_frame(b"k", b"v", 10);
    buf[6..8].copy_from_slice(&0xBEEFu16.to_be_bytes());
    refresh(&mut buf);
    let frame = Frame::new_checked(&buf[..]).unwrap();
    assert_eq!(frame.flags(), 0xBEEF);
    assert_eq!(data(&frame).payload(), b"v");

    let mut buf = tombstone_frame(b"k");
    buf[6] = 0x80;
    buf[34..36].copy_from_slice(&[1, 2]);
    refresh(&mut buf);
    assert_eq!(Frame::new_checked(&buf[..]).unwrap().flags(), 0x8000);
}

#[test]
fn the_lap_changes_without_touching_the_checksum() {
    let buf = data_frame(b"the-key", &value_of(40), 100);
    assert_eq!(data(&Frame::new_checked(&buf[..]).unwrap()).lap(), 0);
    assert_eq!(&buf[54..56], &[0, 0]);
    for lap in [1u8, 2, 0x7f, 0x80, 0xA5, 0xff] {
        let mut moved = buf.clone();
        write_lap(&mut moved, lap);
        let frame = Frame::new_checked(&moved[..]).unwrap();
        assert_eq!(data(&frame).lap(), lap);
        assert_eq!(frame.checksum(), compute_checksum(&buf), "lap {lap}");
        assert_eq!(moved[55], lap.reverse_bits());
        // Either byte changed alone is caught.
        for at in [54, 55] {
            for bit in 0..8 {
                let mut bad = moved.clone();
                bad[at] ^= 1 << bit;
                assert_eq!(check(&bad), Err(Error::BadChecksum), "lap {lap} byte {at}");
            }
        }
    }
    // Only DATA and PARITY have a lap: in a TOMBSTONE those bytes are the key's, covered.
    let mut bad = tombstone_frame(b"a-key-long-enough-to-reach-byte-54");
    bad[54] ^= 1;
    assert_eq!(check(&bad), Err(Error::BadChecksum));
}

#[test]
fn rejects_inconsistent_data_headers() {
    use Error::{Malformed, Truncated};
    // (value_len, stripe, shard, chunk_len, data, parity, payload_len, expected).
    // Baseline: 1000 bytes in chunks of 300 -> 4 data fragments, the last of 100 bytes, in
    // stripes of 3 + 2: stripe 0 = data 0..3 + parity, stripe 1 = data 3 + parity.
    type Case = (u64, u32, u16, u16, u16, u16, usize, Result<(), Error>);
    let cases: [Case; 26] = [
        (1000, 0, 0, 300, 3, 2, 300, Ok(())),
        (1000, 1, 0, 300, 3, 2, 100, Ok(())),
        (1000, 1, 2, 300, 3, 2, 300, Ok(())),
        // Stripe or position out of range.
        (1000, 2, 0, 300, 3, 2, 300, Err(Malformed)),
        (1000, u32::MAX, 0, 300, 3, 2, 300, Err(Malformed)),
        (1000, 0, 5, 300, 3, 2, 300, Err(Malformed)),
        (1000, 1, 3, 300, 3, 2, 300, Err(Malformed)),
        (1000, 0, u16::MAX, 300, 3, 2, 300, Err(Malformed)),
        // Stripe shape out of the format's limits.
        (1000, 0, 0, 300, 0, 2, 300, Err(Malformed)),
        (1000, 0, 0, 300, MAX_STRIPE_DATA + 1, 2, 300, Err(Malformed)),
        (
            1000,
            0,
            0,
            300,
            3,
            MAX_STRIPE_PARITY + 1,
            300,
            Err(Malformed),
        ),
        (1000, 0, 0, 300, 3, 0, 300, Ok(())),
        // chunk_len 0 or odd, also for an empty value.
        (1000, 0, 0, 0, 3, 2, 0, Err(Malformed)),
        (1000, 0, 0, 301, 3, 2, 301, Err(Malformed)),
        (0, 0, 0, 0, 3, 2, 0, Err(Malformed)),
        // More stripes than the 32-bit stripe field counts.
        (1 << 50, 0, 0, 2, 1, 0, 2, Err(Malformed)),
        // Data payload short / long.
        (1000, 0, 1, 300, 3, 2, 299, Err(Truncated)),
        (1000, 0, 1, 300, 3, 2, 100, Err(Truncated)),
        (1000, 0, 1, 300, 3, 2, 301, Err(Malformed)),
        // Last data fragment short / long / a full chunk.
        (1000, 1, 0, 300, 3, 2, 99, Err(Truncated)),
        (1000, 1, 0, 300, 3, 2, 0, Err(Truncated)),
        (1000, 1, 0, 300, 3, 2, 101, Err(Malformed)),
        (1000, 1, 0, 300, 3, 2, 300, Err(Malformed)),
        // Empty value: one empty data fragment, then parity of a full chunk.
        (0, 0, 0, 300, 3, 2, 1, Err(Malformed)),
        (0, 0, 0, 300, 3, 2, 0, Ok(())),
        (0, 0, 1, 300, 3, 2, 300, Ok(())),
    ];
    for (value_len, stripe, shard, chunk_len, data, parity, payload_len, expected) in cases {
        let payload = [1; 400];
        let geometry = Geometry {
            value_len,
            chunk_len,
            data,
            parity,
        };
        let repr = DataRepr {
            origin: 1,
            hlc: 1,
            geometry,
            stripe,
            shard,
            lap: 0,
            key: b"k",
            payload: &payload[..payload_len],
        };
        let mut buf = [0; 500];
        let len = repr.emit(&mut buf);
        // The emitter picks the type from the geometry; force DATA where it cannot tell.
        if geometry.data_in(stripe) == 0 {
            buf[5] = FrameType::Data.code();
            refresh(&mut buf[..len]);
        }
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
    assert_eq!(check(&buf[..PROBE_LEN - 1]), Err(Error::Truncated));
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
    bad[4] = 1;
    seen.push(check(&bad).unwrap_err());
    let mut bad = good.clone();
    bad[5] = 9;
    seen.push(check(&bad).unwrap_err());
    let mut bad = good.clone();
    bad[DATA_HEADER_LEN] ^= 1;
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
    assert_eq!(chunk_len, 1172);
    let repr = DataRepr {
        origin: 1,
        hlc: 2,
        geometry: Geometry {
            value_len: 2,
            chunk_len,
            data: 32,
            parity: 8,
        },
        stripe: 0,
        shard: 0,
        lap: 0,
        key: b"foo",
        payload: b"hi",
    };
    let mut buf = [0; 64];
    let len = repr.emit(&mut buf);
    let expected: [u8; 61] = [
        0x45, 0x4c, 0x44, 0x59, 0x02, 0x01, 0x00, 0x00, // magic, version 2, type DATA, flags
        CRC[0], CRC[1], CRC[2], CRC[3], // checksum
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, // origin
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // hlc
        0x00, 0x00, 0x00, 0x00, // epoch 0: in the clear
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, // value_len
        0x00, 0x00, 0x00, 0x00, // stripe
        0x00, 0x00, 0x04, 0x94, // shard, chunk_len 1172
        0x00, 0x20, 0x00, 0x08, // stripe_data 32, stripe_parity 8
        0x00, 0x03, 0x00, 0x00, // key_len, reserved
        0x66, 0x6f, 0x6f, 0x68, 0x69, // "foo" "hi"
    ];
    assert_eq!(&buf[..len], &expected[..]);
    assert_eq!(compute_checksum(&buf[..len]), u32::from_be_bytes(CRC));
    // One hop later: lap 1, its check 0x80, the same checksum.
    write_lap(&mut buf[..len], 1);
    assert_eq!(&buf[54..56], &[0x01, 0x80]);
    assert_eq!(compute_checksum(&buf[..len]), u32::from_be_bytes(CRC));
    Frame::new_checked(&buf[..len]).unwrap();
    Frame::new_checked(&buf[..len]).unwrap();
}

/// The checksum of the worked example.
const CRC: [u8; 4] = [0xbf, 0x59, 0x0e, 0x24];

#[test]
fn max_chunk_len_fits_the_datagram() {
    assert_eq!(
        max_chunk_len(1232, 1),
        1232 - 58,
        "1175 rounded down to even"
    );
    assert_eq!(max_chunk_len(1232, 2), 1232 - 58);
    assert_eq!(max_chunk_len(1232, MAX_KEY_LEN), 1232 - 56 - 1024);
    assert_eq!(max_chunk_len(DATA_HEADER_LEN + 10, 10), 0);
    assert_eq!(max_chunk_len(DATA_HEADER_LEN + 11, 10), 0);
    assert_eq!(max_chunk_len(10, 10), 0);
    assert_eq!(max_chunk_len(1 << 20, 1), usize::from(u16::MAX - 1));
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
        shard_frame(0, 3, 300),
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
    sum ^= u64::from(frame.epoch()) ^ frame.tag().map_or(0, <[u8]>::len) as u64;
    sum ^= u64::from(frame.checksum()) ^ frame.as_bytes().len() as u64;
    match frame.kind() {
        Kind::Data(d) | Kind::Parity(d) => {
            sum ^= d.value_len() ^ d.payload_offset().unwrap_or(1) ^ d.payload().len() as u64;
            sum ^= d.fragment_count() ^ d.data_index().unwrap_or(2);
            sum ^= u64::from(d.stripe()) ^ u64::from(d.shard()) ^ u64::from(d.stripe_data());
            sum ^= u64::from(d.stripe_parity()) ^ u64::from(d.chunk_len()) ^ d.key().len() as u64;
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
        shard_frame(0, 4, 300),
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
