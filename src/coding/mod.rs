//! coding: the erasure code that lets a stripe of fragments be rebuilt from any `data` of its
//! `data + parity` fragments.
//!
//! It owns the use of the Reed-Solomon code (the `reed-solomon-simd` crate, GF(2^16), with
//! SIMD where the CPU has it): computing a stripe's parity ([`Coder::encode`]) and rebuilding
//! whatever fragments of a stripe are missing, data or parity, byte for byte
//! ([`Coder::rebuild`]). A shard is a fragment's payload; a data payload shorter than the
//! stripe's shard length (the value's last fragment) is coded as if zero-padded to it. It knows
//! nothing of frames, keys, sockets or time, and it holds no value: only the coder's working
//! space, reused from call to call.

use std::fmt;

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

/// Why a stripe could not be coded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Fewer fragments present than the stripe has data fragments.
    TooFew { present: usize, data: usize },
    /// The code refused the geometry or a shard (a bug in the caller, or a frame that lies).
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

impl From<reed_solomon_simd::Error> for Error {
    fn from(error: reed_solomon_simd::Error) -> Error {
        Error::Code(error.to_string())
    }
}

/// A Reed-Solomon coder with its working space, for one thread.
#[derive(Default)]
pub struct Coder {
    encoder: Option<ReedSolomonEncoder>,
    decoder: Option<ReedSolomonDecoder>,
    /// A short data shard padded to the shard length.
    padded: Vec<u8>,
    /// Data shards restored by the decoder, when parity must be recomputed from them.
    restored: Vec<u8>,
}

impl Coder {
    /// A coder with no working space yet.
    pub fn new() -> Coder {
        Coder::default()
    }

    fn encoder(
        &mut self,
        data: usize,
        parity: usize,
        shard_len: usize,
    ) -> Result<&mut ReedSolomonEncoder, Error> {
        match &mut self.encoder {
            Some(encoder) => encoder.reset(data, parity, shard_len)?,
            None => self.encoder = Some(ReedSolomonEncoder::new(data, parity, shard_len)?),
        }
        Ok(self.encoder.as_mut().expect("set above"))
    }

    fn decoder(
        &mut self,
        data: usize,
        parity: usize,
        shard_len: usize,
    ) -> Result<&mut ReedSolomonDecoder, Error> {
        match &mut self.decoder {
            Some(decoder) => decoder.reset(data, parity, shard_len)?,
            None => self.decoder = Some(ReedSolomonDecoder::new(data, parity, shard_len)?),
        }
        Ok(self.decoder.as_mut().expect("set above"))
    }

    /// Computes the `parity` parity shards of a stripe whose data shards are `data` (each at
    /// most `shard_len` bytes; shorter ones count as zero-padded) and hands each to `out` with
    /// its parity index. `shard_len` must be even and not 0. With `parity` 0 it does nothing.
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
        let mut padded = std::mem::take(&mut self.padded);
        let result = (|| {
            let encoder = self.encoder(data.len(), parity, shard_len)?;
            for shard in data {
                encoder.add_original_shard(pad(shard, shard_len, &mut padded))?;
            }
            let result = encoder.encode()?;
            for (index, shard) in result.recovery_iter().enumerate() {
                out(index, shard);
            }
            Ok(())
        })();
        self.padded = padded;
        result
    }

    /// Rebuilds the missing fragments of a stripe of `data` data and `parity` parity shards of
    /// `shard_len` bytes. `shards` has one entry per fragment, data first, then parity: the
    /// payload of those present, `None` for those missing. Each missing fragment is handed to
    /// `out` with its position in the stripe; a data shard comes whole (`shard_len` bytes),
    /// for the caller to cut to its payload length.
    pub fn rebuild(
        &mut self,
        data: usize,
        parity: usize,
        shard_len: usize,
        shards: &[Option<&[u8]>],
        out: impl FnMut(usize, &[u8]),
    ) -> Result<(), Error> {
        self.rebuild_some(data, parity, shard_len, shards, true, out)
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
        self.rebuild_some(data, parity, shard_len, shards, false, out)
    }

    fn rebuild_some(
        &mut self,
        data: usize,
        parity: usize,
        shard_len: usize,
        shards: &[Option<&[u8]>],
        with_parity: bool,
        mut out: impl FnMut(usize, &[u8]),
    ) -> Result<(), Error> {
        if shards.len() != data + parity {
            return Err(Error::Code(format!(
                "{} fragments for a stripe of {data} + {parity}",
                shards.len()
            )));
        }
        let present = shards.iter().flatten().count();
        if present < data {
            return Err(Error::TooFew { present, data });
        }
        let data_missing = shards[..data].iter().any(Option::is_none);
        let parity_missing = with_parity && shards[data..].iter().any(Option::is_none);
        let mut padded = std::mem::take(&mut self.padded);
        let mut restored = std::mem::take(&mut self.restored);
        let result = (|| {
            if data_missing {
                let decoder = self.decoder(data, parity, shard_len)?;
                for (index, shard) in shards[..data].iter().enumerate() {
                    if let Some(shard) = shard {
                        decoder.add_original_shard(index, pad(shard, shard_len, &mut padded))?;
                    }
                }
                for (index, shard) in shards[data..].iter().enumerate() {
                    if let Some(shard) = shard {
                        decoder.add_recovery_shard(index, shard)?;
                    }
                }
                let result = decoder.decode()?;
                restored.clear();
                restored.resize(data * shard_len, 0);
                for (index, shard) in result.restored_original_iter() {
                    out(index, shard);
                    restored[index * shard_len..][..shard_len].copy_from_slice(shard);
                }
            }
            if parity_missing {
                let mut whole: Vec<&[u8]> = Vec::with_capacity(data);
                for (index, shard) in shards[..data].iter().enumerate() {
                    whole.push(match shard {
                        Some(shard) => shard,
                        None => &restored[index * shard_len..][..shard_len],
                    });
                }
                let mut wanted = |index: usize, shard: &[u8]| {
                    if shards[data + index].is_none() {
                        out(data + index, shard);
                    }
                };
                let encoder = self.encoder(data, parity, shard_len)?;
                for shard in &whole {
                    encoder.add_original_shard(pad(shard, shard_len, &mut padded))?;
                }
                let result = encoder.encode()?;
                for (index, shard) in result.recovery_iter().enumerate() {
                    wanted(index, shard);
                }
            }
            Ok(())
        })();
        self.padded = padded;
        self.restored = restored;
        result
    }
}

/// `shard` itself when it is `shard_len` bytes long, else a zero-padded copy in `scratch`.
fn pad<'a>(shard: &'a [u8], shard_len: usize, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    if shard.len() == shard_len {
        return shard;
    }
    scratch.clear();
    scratch.extend_from_slice(&shard[..shard.len().min(shard_len)]);
    scratch.resize(shard_len, 0);
    scratch
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
