//! coding: the erasure code that lets a stripe of fragments be rebuilt from any `data` of its
//! `data + parity` fragments.
//!
//! It owns the use of the Reed-Solomon code (the `reed-solomon-erasure` crate over GF(2^8),
//! with its SIMD kernels): computing a stripe's parity ([`Coder::encode`]) and rebuilding
//! whatever fragments of a stripe are missing, data or parity, byte for byte
//! ([`Coder::rebuild_in`], [`Coder::rebuild`]). A shard is a fragment's payload; a data payload
//! shorter than the stripe's shard length (the value's last fragment) is coded as if
//! zero-padded to it. GF(2^8) allows 256 fragments per stripe, which the wire format's limits
//! keep to. Why this crate: `benches/coding.rs` measures it against `reed-solomon-simd`, whose
//! every decode costs 0.2 to 0.4 ms however few fragments are lost, where this one restores
//! one lost fragment in a few microseconds; repair is what a node does all day on a lossy
//! path, encoding only once per write.
//!
//! It knows nothing of frames, keys, sockets or time, and it holds no value: only the codes it
//! has built (one per stripe shape) and a scratch buffer, reused from call to call.

use std::collections::HashMap;
use std::fmt;

use reed_solomon_erasure::galois_8::ReedSolomon;

/// Why a stripe could not be coded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Fewer fragments present than the stripe has data fragments.
    TooFew { present: usize, data: usize },
    /// The code refused the shape or a shard (a bug in the caller, or a frame that lies).
    Code(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::TooFew { present, data } => {
                write!(f, "{present} fragments present, {data} needed")
            }
            Error::Code(why) => write!(f, "erasure code: {why}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<reed_solomon_erasure::Error> for Error {
    fn from(error: reed_solomon_erasure::Error) -> Error {
        Error::Code(format!("{error:?}"))
    }
}

/// Most codes kept built at once (a node meets few stripe shapes).
const MAX_CODES: usize = 64;

/// A Reed-Solomon coder with its codes and working space, for one thread.
#[derive(Default)]
pub struct Coder {
    codes: HashMap<(usize, usize), ReedSolomon>,
    /// Shards copied side by side, for [`Coder::rebuild`] and for padding.
    scratch: Vec<u8>,
    present: Vec<bool>,
}

impl Coder {
    /// A coder with no codes built yet.
    pub fn new() -> Coder {
        Coder::default()
    }

    fn code(&mut self, data: usize, parity: usize) -> Result<&ReedSolomon, Error> {
        if !self.codes.contains_key(&(data, parity)) {
            if self.codes.len() >= MAX_CODES {
                self.codes.clear();
            }
            self.codes
                .insert((data, parity), ReedSolomon::new(data, parity)?);
        }
        Ok(&self.codes[&(data, parity)])
    }

    /// Computes the `parity` parity shards of a stripe whose data shards are `data` (each at
    /// most `shard_len` bytes; shorter ones count as zero-padded) and hands each to `out` with
    /// its parity index. With `parity` 0 it does nothing.
    pub fn encode(
        &mut self,
        data: &[&[u8]],
        parity: usize,
        shard_len: usize,
        mut out: impl FnMut(usize, &[u8]),
    ) -> Result<(), Error> {
        if parity == 0 {
            return Ok(());
        }
        let k = data.len();
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        // Room for the parity, and for a padded copy of a short data shard.
        scratch.resize((parity + 1) * shard_len, 0);
        let result = (|| {
            let (parity_buf, padded) = scratch.split_at_mut(parity * shard_len);
            // At most one data shard is short: the value's last.
            if let Some(short) = data.iter().find(|s| s.len() != shard_len) {
                let n = short.len().min(shard_len);
                padded[..n].copy_from_slice(&short[..n]);
                padded[n..].fill(0);
            }
            let padded = &*padded;
            let shards: Vec<&[u8]> = data
                .iter()
                .map(|&s| if s.len() == shard_len { s } else { padded })
                .collect();
            let mut outputs: Vec<&mut [u8]> = parity_buf.chunks_exact_mut(shard_len).collect();
            self.code(k, parity)?.encode_sep(&shards, &mut outputs)?;
            for (index, shard) in outputs.iter().enumerate() {
                out(index, shard);
            }
            Ok(())
        })();
        self.scratch = scratch;
        result
    }

    /// Rebuilds, in place, the missing fragments of a stripe of `data` data and `parity` parity
    /// shards laid side by side in `stripe` (`shard_len` bytes each, data first; short data
    /// shards zero-padded). `present` says which are there; the missing ones (all of them, or
    /// only the data with `data_only`) are written and marked present. Needs `data` present.
    pub fn rebuild_in(
        &mut self,
        data: usize,
        parity: usize,
        shard_len: usize,
        stripe: &mut [u8],
        present: &mut [bool],
        data_only: bool,
    ) -> Result<(), Error> {
        let n = data + parity;
        if present.len() != n || stripe.len() != n * shard_len {
            return Err(Error::Code(format!(
                "{} bytes and {} marks for a stripe of {data} + {parity} shards of {shard_len}",
                stripe.len(),
                present.len()
            )));
        }
        let count = present.iter().filter(|&&p| p).count();
        if count < data {
            return Err(Error::TooFew {
                present: count,
                data,
            });
        }
        if count == n || (data_only && present[..data].iter().all(|&p| p)) {
            return Ok(());
        }
        let mut shards: Vec<(&mut [u8], bool)> = stripe
            .chunks_exact_mut(shard_len)
            .zip(present.iter().copied())
            .collect();
        let code = self.code(data, parity)?;
        if data_only {
            code.reconstruct_data(&mut shards)?;
        } else {
            code.reconstruct(&mut shards)?;
        }
        let limit = if data_only { data } else { n };
        present[..limit].fill(true);
        Ok(())
    }

    /// Rebuilds the missing fragments of a stripe given as one entry per fragment (data
    /// first): the payload of those present, `None` for those missing. Each missing fragment is
    /// handed to `out` with its position in the stripe; a data shard comes whole (`shard_len`
    /// bytes), for the caller to cut to its payload length.
    pub fn rebuild(
        &mut self,
        data: usize,
        parity: usize,
        shard_len: usize,
        shards: &[Option<&[u8]>],
        out: impl FnMut(usize, &[u8]),
    ) -> Result<(), Error> {
        self.rebuild_copy(data, parity, shard_len, shards, false, out)
    }

    /// As [`Coder::rebuild`], but only the missing data fragments: what a reader needs.
    pub fn restore_data(
        &mut self,
        data: usize,
        parity: usize,
        shard_len: usize,
        shards: &[Option<&[u8]>],
        out: impl FnMut(usize, &[u8]),
    ) -> Result<(), Error> {
        self.rebuild_copy(data, parity, shard_len, shards, true, out)
    }

    fn rebuild_copy(
        &mut self,
        data: usize,
        parity: usize,
        shard_len: usize,
        shards: &[Option<&[u8]>],
        data_only: bool,
        mut out: impl FnMut(usize, &[u8]),
    ) -> Result<(), Error> {
        let n = data + parity;
        if shards.len() != n {
            return Err(Error::Code(format!(
                "{} fragments for a stripe of {data} + {parity}",
                shards.len()
            )));
        }
        let mut stripe = std::mem::take(&mut self.scratch);
        let mut present = std::mem::take(&mut self.present);
        stripe.clear();
        stripe.resize(n * shard_len, 0);
        present.clear();
        for (i, shard) in shards.iter().enumerate() {
            if let Some(shard) = shard {
                let len = shard.len().min(shard_len);
                stripe[i * shard_len..][..len].copy_from_slice(&shard[..len]);
            }
            present.push(shard.is_some());
        }
        let result = self.rebuild_in(
            data,
            parity,
            shard_len,
            &mut stripe,
            &mut present,
            data_only,
        );
        if result.is_ok() {
            let limit = if data_only { data } else { n };
            for (i, shard) in shards[..limit].iter().enumerate() {
                if shard.is_none() {
                    out(i, &stripe[i * shard_len..][..shard_len]);
                }
            }
        }
        self.scratch = stripe;
        self.present = present;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards(data: usize, len: usize, last: usize) -> Vec<Vec<u8>> {
        (0..data)
            .map(|i| {
                let n = if i + 1 == data { last } else { len };
                (0..n).map(|b| (i * 131 + b * 7) as u8).collect()
            })
            .collect()
    }

    fn parity_of(coder: &mut Coder, data: &[Vec<u8>], parity: usize, len: usize) -> Vec<Vec<u8>> {
        let refs: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut out = vec![Vec::new(); parity];
        coder
            .encode(&refs, parity, len, |i, s| out[i] = s.to_vec())
            .unwrap();
        out
    }

    #[test]
    fn any_data_of_the_stripe_rebuild_the_rest_byte_for_byte() {
        let mut coder = Coder::new();
        for (data, parity, last) in [(1, 1, 5), (1, 4, 0), (4, 2, 100), (16, 4, 37), (32, 8, 100)] {
            let len = 100;
            let d = shards(data, len, last);
            let p = parity_of(&mut coder, &d, parity, len);
            let all: Vec<&Vec<u8>> = d.iter().chain(&p).collect();
            // Lose `parity` fragments at several places: first, last, spread.
            for start in [
                0,
                data.saturating_sub(1),
                data + parity - parity.min(data + parity),
            ] {
                let lost: Vec<usize> = (0..parity)
                    .map(|j| (start + j * 3) % (data + parity))
                    .collect();
                let present: Vec<Option<&[u8]>> = (0..data + parity)
                    .map(|i| (!lost.contains(&i)).then(|| all[i].as_slice()))
                    .collect();
                let mut rebuilt = vec![None; data + parity];
                coder
                    .rebuild(data, parity, len, &present, |i, s| {
                        rebuilt[i] = Some(s.to_vec())
                    })
                    .unwrap();
                for i in 0..data + parity {
                    match (&rebuilt[i], lost.contains(&i)) {
                        (Some(s), true) => {
                            let want = all[i];
                            assert_eq!(&s[..want.len()], &want[..], "shard {i} of {data}+{parity}");
                            assert!(s[want.len()..].iter().all(|&b| b == 0));
                        }
                        (None, false) => {}
                        (got, lost) => {
                            panic!("shard {i}: rebuilt {:?}, lost {lost}", got.is_some())
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn rebuild_in_place_restores_data_only_when_asked() {
        let mut coder = Coder::new();
        let d = shards(4, 10, 10);
        let p = parity_of(&mut coder, &d, 2, 10);
        let whole: Vec<u8> = d.iter().chain(&p).flatten().copied().collect();
        let mut stripe = whole.clone();
        stripe[10..20].fill(0xEE); // data 1, lost
        stripe[50..60].fill(0xEE); // parity 1, lost
        let mut present = [true, false, true, true, true, false];
        coder
            .rebuild_in(4, 2, 10, &mut stripe, &mut present, true)
            .unwrap();
        assert_eq!(&stripe[..40], &whole[..40]);
        assert_eq!(present, [true, true, true, true, true, false]);
        coder
            .rebuild_in(4, 2, 10, &mut stripe, &mut present, false)
            .unwrap();
        assert_eq!(stripe, whole);
        assert!(present.iter().all(|&p| p));
    }

    #[test]
    fn fewer_than_data_fragments_is_an_error() {
        let mut coder = Coder::new();
        let d = shards(4, 10, 10);
        let p = parity_of(&mut coder, &d, 2, 10);
        let present = [
            None,
            None,
            None,
            Some(&d[3][..]),
            Some(&p[0][..]),
            Some(&p[1][..]),
        ];
        let err = coder.rebuild(4, 2, 10, &present, |_, _| {}).unwrap_err();
        assert_eq!(
            err,
            Error::TooFew {
                present: 3,
                data: 4
            }
        );
    }
}
