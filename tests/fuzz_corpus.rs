//! Replays the fuzzers' checked-in corpus (`fuzz/corpus/<target>/`) through the same harness
//! the cargo-fuzz targets run (`tests/fuzz_harness`), so CI checks every input the fuzzers kept
//! without running a fuzzer. `cargo test --release --test fuzz_corpus -- --ignored` rewrites
//! the hand-made seeds (`seed-*` files); the fuzzer adds the rest.

mod fuzz_harness;

use std::path::PathBuf;

use elayday::wire::{DataRepr, Geometry, ProbeRepr, TombstoneRepr};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    // Relative to the package root, where `cargo test` runs test binaries (not a path baked in
    // at build time: the target dir may be shared between checkouts).
    let dir = PathBuf::from("fuzz/corpus").join(target);
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "{}: empty corpus", dir.display());
    inputs
}

fn replay(target: &str, run: fn(&[u8])) {
    let inputs = corpus(target);
    for (path, bytes) in &inputs {
        let outcome = std::panic::catch_unwind(|| run(bytes));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
    }
    eprintln!("{target}: {} inputs replayed", inputs.len());
}

#[test]
fn frame_corpus() {
    replay("frame", fuzz_harness::frame);
}

#[test]
fn core_corpus() {
    replay("core", fuzz_harness::core);
}

#[test]
fn flags_corpus() {
    replay("flags", fuzz_harness::flags);
}

/// Writes the hand-made seeds: one frame of each type, a few scripts for the core, and a few
/// command lines.
#[test]
#[ignore]
fn write_seeds() {
    let root = PathBuf::from("fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    };
    let emit = |len: usize, f: &dyn Fn(&mut [u8]) -> usize| {
        let mut buf = vec![0; len];
        let n = f(&mut buf);
        buf.truncate(n);
        buf
    };
    let geometry = Geometry {
        value_len: 10,
        chunk_len: 6,
        data: 1,
        parity: 1,
    };
    let data = DataRepr {
        origin: 7,
        hlc: 1 << 40,
        geometry,
        stripe: 1,
        shard: 0,
        lap: 0,
        key: b"key",
        payload: b"6789",
    };
    write("frame", "data", &emit(data.buffer_len(), &|b| data.emit(b)));
    let parity = DataRepr {
        shard: 1,
        lap: 0,
        payload: b"parity",
        ..data
    };
    write(
        "frame",
        "parity",
        &emit(parity.buffer_len(), &|b| parity.emit(b)),
    );
    let tombstone = TombstoneRepr {
        origin: 7,
        hlc: 1 << 40,
        key: b"key",
    };
    write(
        "frame",
        "tombstone",
        &emit(tombstone.buffer_len(), &|b| tombstone.emit(b)),
    );
    let probe = ProbeRepr {
        origin: 7,
        hlc: 1 << 40,
        sequence: 3,
        sent_at_ns: 99,
    };
    write(
        "frame",
        "probe",
        &emit(probe.buffer_len(), &|b| probe.emit(b)),
    );

    // Core scripts: 0 put(key, len, fill), 1 get, 2 delete, 3 cancel, 4 raw datagram,
    // 5 forge from the loop, 6 lose from the loop, 7 time passes.
    let wait = [7u8, 30, 7, 30, 7, 30];
    let mut put_get = vec![7, 50, 7, 50, 0, 1, 0x10, 0x00, 0xAB];
    put_get.extend_from_slice(&wait);
    put_get.extend_from_slice(&[1, 1]);
    put_get.extend_from_slice(&wait);
    write("core", "put-get", &put_get);
    let mut forge = put_get.clone();
    forge.extend_from_slice(&[0, 2, 0x20, 0x00, 0x11, 5, 0, 0, 40, 0xFF, 5, 1, 0, 36, 0x7F]);
    forge.extend_from_slice(&wait);
    write("core", "forge-during-confirmation", &forge);
    let mut lossy = put_get.clone();
    lossy.extend_from_slice(&[0, 3, 0x08, 0x00, 0x22, 6, 0, 6, 1, 6, 2, 2, 3, 1, 3]);
    lossy.extend_from_slice(&wait);
    write("core", "loss-delete-get", &lossy);

    let lines: [(&str, &[u8]); 5] = [
        (
            "server",
            b"server\0--bind\0[::1]:24601\0--destination\0[::1]:24602",
        ),
        (
            "server-env",
            b"server\0\0ELAYDAY_BIND=127.0.0.1:1\0ELAYDAY_DESTINATION=127.0.0.1:2",
        ),
        (
            "reflector",
            b"reflector\x00--bind\x00127.0.0.1:5\x00--delay\x000.5",
        ),
        ("put", b"put\0key\0value\0--grpc\0[::1]:24603"),
        ("demo", b"demo\x00--delay\x002"),
    ];
    for (name, line) in lines {
        write("flags", name, line);
    }
}
