//! Reed-Solomon crates for elayday's forward error correction, measured side by side: a stripe
//! of `k` data shards and `m` parity shards, each shard one datagram's payload.
//!
//! `cargo bench --bench coding` prints, for `reed-solomon-simd` (GF(2^16)),
//! `reed-solomon-erasure` (GF(2^8), with its `simd-accel` C kernels: the code the node uses) and
//! `elayday::coding::Coder` (that code as the node calls it, padding and copies included), for
//! stripes of
//! 8+2, 16+4, 32+8 and 64+16 shards of 1176 bytes (the default chunk: a 1232-byte datagram less
//! the headers) and of 8936 bytes (a 9000-byte jumbo MTU):
//!
//! - encode: the time to make the `m` parity shards of a stripe, per data shard, and the data
//!   rate;
//! - lose m: the stripe rebuilt with `m` shards missing, half of them data and half parity
//!   (positions drawn from 1024 patterns, so that a crate that caches its decoding matrices
//!   mostly misses), per stripe and per shard restored;
//! - lose 1 data / lose 1 parity: one shard missing, the common repair.
//!
//! Rebuilding means restoring every missing shard, parity included: the `reed-solomon-simd`
//! decoder only restores the data, so its repair of a lost parity
//! shard re-encodes the stripe, and that is timed too. Every repair is checked against the
//! original once before it is timed. Each figure is the median of three runs of at least
//! 200 ms. Without `--bench` (as `cargo test --benches` runs it) it makes one quick pass over
//! one geometry, so that the benchmark keeps compiling and working.
//!
//! What it showed on a two-core AMD EPYC with AVX2: `reed-solomon-simd` encodes at 4 to 10 GB/s
//! of data, but every decode costs 0.2 to 0.4 ms (0.3 to 1.5 ms with jumbo shards) however few
//! shards are lost, because it evaluates the erasure locator over the whole of GF(2^16);
//! `reed-solomon-erasure` with `simd-accel` encodes about as fast for k <= 16 (2 to 4 times
//! slower at 32 to 64) and restores one lost shard of 1176 bytes in 1 to 6 us. Without
//! `simd-accel` (pure Rust) it encodes 10 to 40 times slower. (`reed-solomon-novelpoly` was
//! measured too, 50 to 100 times slower, and dropped.)

use std::hint::black_box;
use std::time::{Duration, Instant};

use reed_solomon_erasure::galois_8;
use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Shard sizes: the default chunk (1232-byte datagrams less the headers) and a jumbo one.
const SHARD_SIZES: [usize; 2] = [1176, 8936];
/// Stripe geometries: (data shards, parity shards).
const GEOMETRIES: [(usize, usize); 4] = [(8, 2), (16, 4), (32, 8), (64, 16)];
/// Missing-shard patterns cycled through for the "lose m" figures.
const PATTERNS: usize = 1024;

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let (sizes, geometries, target): (&[usize], &[(usize, usize)], _) = if full {
        (&SHARD_SIZES, &GEOMETRIES, Duration::from_millis(200))
    } else {
        (
            &SHARD_SIZES[..1],
            &GEOMETRIES[1..2],
            Duration::from_millis(2),
        )
    };
    println!(
        "Reed-Solomon stripes of k data + m parity shards; median of 3 runs of >= {target:?} each"
    );
    println!(
        "lose m: m/2 data + m/2 parity shards missing; ns/shard = per shard restored; \
         MB/s = data bytes encoded per second"
    );
    for &size in sizes {
        println!();
        println!("shards of {size} bytes");
        println!(
            "{:<24} {:>6} | {:>10} {:>8} | {:>12} {:>10} | {:>12} | {:>12}",
            "crate",
            "k+m",
            "enc ns/sh",
            "enc MB/s",
            "lose m ns",
            "ns/shard",
            "lose 1 data",
            "lose 1 par"
        );
        for &(k, m) in geometries {
            let codecs: Vec<Box<dyn Codec>> = vec![
                Box::new(Simd::new(k, m, size)),
                Box::new(Erasure::new(k, m)),
                Box::new(Ours::new(k, m)),
            ];
            for mut codec in codecs {
                let row = measure(codec.as_mut(), k, m, size, target);
                println!(
                    "{:<24} {:>6} | {:>10.0} {:>8.0} | {:>12.0} {:>10.0} | {:>12.0} | {:>12.0}",
                    codec.name(),
                    format!("{k}+{m}"),
                    row.encode / k as f64,
                    (k * size) as f64 / row.encode * 1e3,
                    row.lose_m,
                    row.lose_m / m as f64,
                    row.lose_data,
                    row.lose_parity,
                );
            }
        }
    }
}

/// Nanoseconds per stripe.
struct Row {
    encode: f64,
    lose_m: f64,
    lose_data: f64,
    lose_parity: f64,
}

/// One crate behind one interface. A stripe is `k + m` shards: data first, then parity.
trait Codec {
    fn name(&self) -> &'static str;
    /// Writes the parity shards of `stripe` from its data shards.
    fn encode(&mut self, stripe: &mut [Vec<u8>]);
    /// Restores in place every shard of `stripe` whose `present` flag is false.
    fn rebuild(&mut self, stripe: &mut [Vec<u8>], present: &[bool]);
}

fn measure(codec: &mut dyn Codec, k: usize, m: usize, size: usize, target: Duration) -> Row {
    let mut rng = SplitMix(0x5eed ^ (k * 1000 + m) as u64 ^ (size as u64) << 32);
    let mut stripe: Vec<Vec<u8>> = (0..k + m)
        .map(|_| (0..size).map(|_| rng.next() as u8).collect())
        .collect();
    codec.encode(&mut stripe);
    let original = stripe.clone();

    // m/2 data and m/2 parity shards missing, at random positions.
    let patterns: Vec<Vec<bool>> = (0..PATTERNS)
        .map(|_| {
            let mut present = vec![true; k + m];
            let lost_data = m / 2;
            let mut lost = 0;
            while lost < lost_data {
                let i = rng.below(k);
                lost += std::mem::replace(&mut present[i], false) as usize;
            }
            while lost < m {
                let i = k + rng.below(m);
                lost += std::mem::replace(&mut present[i], false) as usize;
            }
            present
        })
        .collect();
    let one_missing = |at: usize| {
        let mut present = vec![true; k + m];
        present[at] = false;
        present
    };
    let lose_data: Vec<Vec<bool>> = (0..k).map(one_missing).collect();
    let lose_parity: Vec<Vec<bool>> = (k..k + m).map(one_missing).collect();

    // Every repair restores the original before it is timed.
    for present in patterns
        .iter()
        .take(16)
        .chain(&lose_data)
        .chain(&lose_parity)
    {
        for (shard, &here) in stripe.iter_mut().zip(present) {
            if !here {
                shard.fill(0);
            }
        }
        codec.rebuild(&mut stripe, present);
        assert!(
            stripe == original,
            "{} {k}+{m}: a rebuild with {present:?} did not restore the stripe",
            codec.name()
        );
    }

    let encode = time(target, || {
        codec.encode(&mut stripe);
        black_box(&stripe);
    });
    let mut rebuild_each = |patterns: &[Vec<bool>]| {
        let mut next = 0;
        time(target, || {
            codec.rebuild(&mut stripe, &patterns[next]);
            black_box(&stripe);
            next = (next + 1) % patterns.len();
        })
    };
    Row {
        encode,
        lose_m: rebuild_each(&patterns),
        lose_data: rebuild_each(&lose_data),
        lose_parity: rebuild_each(&lose_parity),
    }
}

/// Nanoseconds per call of `f`: the median of three runs of at least `target`.
fn time(target: Duration, mut f: impl FnMut()) -> f64 {
    f(); // warm up caches and lazily built tables
    let mut run = |iterations: u64| {
        let start = Instant::now();
        for _ in 0..iterations {
            f();
        }
        start.elapsed()
    };
    // Find an iteration count that takes at least `target`.
    let mut iterations = 1u64;
    loop {
        let took = run(iterations);
        if took >= target {
            break;
        }
        let scale = target.as_secs_f64() / took.as_secs_f64().max(1e-9);
        iterations = ((iterations as f64 * scale * 1.2).ceil() as u64).max(iterations + 1);
    }
    let mut samples: Vec<f64> = (0..3)
        .map(|_| run(iterations).as_nanos() as f64 / iterations as f64)
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[1]
}

/// SplitMix64, for the test data and the missing-shard patterns.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// `reed-solomon-simd`: GF(2^16), O(n log n), SIMD picked at run time. Its decoder restores only
/// data shards; a lost parity shard is made again by encoding the (restored) data.
struct Simd {
    k: usize,
    m: usize,
    encoder: ReedSolomonEncoder,
    decoder: ReedSolomonDecoder,
}

impl Simd {
    fn new(k: usize, m: usize, size: usize) -> Simd {
        Simd {
            k,
            m,
            encoder: ReedSolomonEncoder::new(k, m, size).unwrap(),
            decoder: ReedSolomonDecoder::new(k, m, size).unwrap(),
        }
    }

    /// Writes the parity shards flagged in `wanted` (all when None).
    fn encode_parity(&mut self, stripe: &mut [Vec<u8>], wanted: Option<&[bool]>) {
        let (data, parity) = stripe.split_at_mut(self.k);
        for shard in data.iter() {
            self.encoder.add_original_shard(shard).unwrap();
        }
        let result = self.encoder.encode().unwrap();
        for (j, recovered) in result.recovery_iter().enumerate() {
            if wanted.is_none_or(|w| w[j]) {
                parity[j].copy_from_slice(recovered);
            }
        }
    }
}

impl Codec for Simd {
    fn name(&self) -> &'static str {
        "reed-solomon-simd 3"
    }

    fn encode(&mut self, stripe: &mut [Vec<u8>]) {
        self.encode_parity(stripe, None);
    }

    fn rebuild(&mut self, stripe: &mut [Vec<u8>], present: &[bool]) {
        let k = self.k;
        if present[..k].iter().any(|&p| !p) {
            for (i, shard) in stripe.iter().enumerate() {
                if present[i] {
                    if i < k {
                        self.decoder.add_original_shard(i, shard).unwrap();
                    } else {
                        self.decoder.add_recovery_shard(i - k, shard).unwrap();
                    }
                }
            }
            let result = self.decoder.decode().unwrap();
            for (i, restored) in result.restored_original_iter() {
                stripe[i].copy_from_slice(restored);
            }
        }
        if present[k..].iter().any(|&p| !p) {
            let lost: Vec<bool> = present[k..k + self.m].iter().map(|&p| !p).collect();
            self.encode_parity(stripe, Some(&lost));
        }
    }
}

/// `reed-solomon-erasure`: GF(2^8), a Vandermonde-derived matrix, pure Rust (no `simd-accel`).
/// It restores data and parity shards alike, in place, and caches the inverted matrices of the
/// last 254 loss patterns.
struct Erasure {
    k: usize,
    rs: galois_8::ReedSolomon,
}

impl Erasure {
    fn new(k: usize, m: usize) -> Erasure {
        Erasure {
            k,
            rs: galois_8::ReedSolomon::new(k, m).unwrap(),
        }
    }
}

impl Codec for Erasure {
    fn name(&self) -> &'static str {
        "reed-solomon-erasure 6"
    }

    fn encode(&mut self, stripe: &mut [Vec<u8>]) {
        let (data, parity) = stripe.split_at_mut(self.k);
        self.rs.encode_sep(data, parity).unwrap();
    }

    fn rebuild(&mut self, stripe: &mut [Vec<u8>], present: &[bool]) {
        let mut shards: Vec<(&mut [u8], bool)> = stripe
            .iter_mut()
            .zip(present)
            .map(|(shard, &here)| (shard.as_mut_slice(), here))
            .collect();
        self.rs.reconstruct(&mut shards).unwrap();
    }
}

/// `elayday::coding::Coder`: `reed-solomon-erasure` as the node calls it (its rebuild here also
/// copies the stripe into one buffer and back, which the node's repair, working in place on
/// its own buffer, does not).
struct Ours {
    k: usize,
    m: usize,
    coder: elayday::coding::Coder,
}

impl Ours {
    fn new(k: usize, m: usize) -> Ours {
        Ours {
            k,
            m,
            coder: elayday::coding::Coder::new(),
        }
    }
}

impl Codec for Ours {
    fn name(&self) -> &'static str {
        "elayday::coding"
    }

    fn encode(&mut self, stripe: &mut [Vec<u8>]) {
        let size = stripe[0].len();
        let (data, parity) = stripe.split_at_mut(self.k);
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        self.coder
            .encode(&refs, parity.len(), size, |i, p| {
                parity[i].copy_from_slice(p)
            })
            .unwrap();
    }

    fn rebuild(&mut self, stripe: &mut [Vec<u8>], present: &[bool]) {
        let size = stripe[0].len();
        let (k, m) = (self.k, self.m);
        let mut flat: Vec<u8> = stripe.iter().flatten().copied().collect();
        let mut marks = present.to_vec();
        self.coder
            .rebuild_in(k, m, size, &mut flat, &mut marks, false)
            .unwrap();
        for (shard, bytes) in stripe.iter_mut().zip(flat.chunks_exact(size)) {
            shard.copy_from_slice(bytes);
        }
    }
}
