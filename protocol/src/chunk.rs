//! The encoding of one chunk: SHA-256 of the raw bytes, LZ4 compression,
//! CRC-32 of the stored bytes, and the XOR parity over a stripe.
//!
//! It lives here, next to [`ChunkHeader`], because client, node and repair
//! must agree on it byte for byte.

use crate::message::{ChunkHeader, Codec};
use crate::ChunkId;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Largest raw chunk the system accepts (and thus the largest chunk size a
/// coordinator may be configured with). Bounds every length read from disk or
/// wire before anything is allocated from it.
pub const MAX_CHUNK_LEN: u64 = 1 << 30;

/// Largest stored (compressed) form of a chunk of `raw_len` bytes.
pub fn max_stored_len(raw_len: u64) -> u64 {
    // LZ4's worst case plus slack; a Raw chunk is exactly raw_len.
    raw_len + raw_len / 255 + 64
}

/// Why stored bytes do not decode to what their header promises.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("stored length {got} differs from header's {want}")]
    Length { got: u64, want: u64 },
    #[error("CRC mismatch on stored bytes")]
    Crc,
    #[error("LZ4 data is malformed: {0}")]
    Decompress(String),
    #[error("raw length {got} differs from header's {want}")]
    RawLength { got: u64, want: u64 },
    #[error("SHA-256 mismatch")]
    Sha,
    #[error("header is out of bounds: {0}")]
    Bounds(String),
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Sample taken from each of a few places in a chunk to guess whether LZ4
/// is worth running on the whole of it.
const PROBE_PIECE: usize = 16 * 1024;
/// Below this saving on the probe, the chunk is stored raw: compressing it
/// would cost a full pass for a few percent (random data, media, most XOR
/// parity blocks) and cost decompression on every read.
const PROBE_MIN_SAVING: f64 = 0.08;

/// Whether LZ4 is likely to shrink `raw` by a worthwhile margin, judged on a
/// few small samples (about 1/1000 of the work of compressing it all).
fn worth_compressing(raw: &[u8]) -> bool {
    if raw.len() <= 8 * PROBE_PIECE {
        return true;
    }
    let mut sample = 0usize;
    let mut packed = 0usize;
    for k in 0..4 {
        let at = (raw.len() - PROBE_PIECE) / 3 * k;
        let piece = &raw[at..at + PROBE_PIECE];
        sample += piece.len();
        packed += lz4_flex::block::compress(piece).len();
    }
    (packed as f64) < sample as f64 * (1.0 - PROBE_MIN_SAVING)
}

/// Compresses and hashes `raw` into the header and bytes a node stores. LZ4 is
/// kept only when it saves space, so incompressible data is stored raw.
pub fn encode(id: ChunkId, raw: Bytes) -> (ChunkHeader, Bytes) {
    let raw_sha256 = sha256(&raw);
    let compressed = if worth_compressing(&raw) {
        Some(lz4_flex::block::compress(&raw))
    } else {
        None
    };
    let (codec, stored) = match compressed {
        Some(c) if c.len() < raw.len() => (Codec::Lz4, Bytes::from(c)),
        _ => (Codec::Raw, raw.clone()),
    };
    let header = ChunkHeader {
        id,
        raw_len: raw.len() as u64,
        raw_sha256,
        codec,
        stored_len: stored.len() as u64,
        stored_crc: crc32fast::hash(&stored),
    };
    (header, stored)
}

/// Checks the header's lengths against the system's bounds; done before
/// anything is allocated or read on the strength of them.
pub fn check_bounds(h: &ChunkHeader) -> Result<(), ChunkError> {
    if h.raw_len > MAX_CHUNK_LEN {
        return Err(ChunkError::Bounds(format!(
            "raw length {} exceeds {}",
            h.raw_len, MAX_CHUNK_LEN
        )));
    }
    let max = match h.codec {
        Codec::Raw => h.raw_len,
        Codec::Lz4 => max_stored_len(h.raw_len),
    };
    if h.stored_len > max || (h.codec == Codec::Raw && h.stored_len != h.raw_len) {
        return Err(ChunkError::Bounds(format!(
            "stored length {} impossible for raw length {}",
            h.stored_len, h.raw_len
        )));
    }
    Ok(())
}

/// Turns stored bytes back into the raw chunk, checking CRC, length and
/// SHA-256: the end-to-end verification every read performs.
pub fn decode(h: &ChunkHeader, stored: Bytes) -> Result<Bytes, ChunkError> {
    check_bounds(h)?;
    if stored.len() as u64 != h.stored_len {
        return Err(ChunkError::Length {
            got: stored.len() as u64,
            want: h.stored_len,
        });
    }
    if crc32fast::hash(&stored) != h.stored_crc {
        return Err(ChunkError::Crc);
    }
    let raw = match h.codec {
        Codec::Raw => stored,
        Codec::Lz4 => {
            // Page-aligned, so the reader can write it to disk directly.
            let mut out = directio::AlignedBuf::zeroed(h.raw_len as usize);
            let n = lz4_flex::block::decompress_into(&stored, &mut out)
                .map_err(|e| ChunkError::Decompress(e.to_string()))?;
            if n as u64 != h.raw_len {
                return Err(ChunkError::RawLength {
                    got: n as u64,
                    want: h.raw_len,
                });
            }
            out.into_bytes()
        }
    };
    if sha256(&raw) != h.raw_sha256 {
        return Err(ChunkError::Sha);
    }
    Ok(raw)
}

/// XORs `src` into `acc`, growing `acc` with zeros if `src` is longer. Parity
/// of a stripe is the XOR of its data chunks, each zero-padded to the longest.
pub fn xor_into(acc: &mut Vec<u8>, src: &[u8]) {
    if acc.len() < src.len() {
        acc.resize(src.len(), 0);
    }
    let (head, _) = acc.split_at_mut(src.len());
    // Word-at-a-time; the compiler vectorises this loop.
    let mut a = head.chunks_exact_mut(8);
    let mut b = src.chunks_exact(8);
    for (x, y) in (&mut a).zip(&mut b) {
        let v = u64::from_ne_bytes(x[..].try_into().unwrap_or([0; 8]))
            ^ u64::from_ne_bytes(y.try_into().unwrap_or([0; 8]));
        x.copy_from_slice(&v.to_ne_bytes());
    }
    for (x, y) in a.into_remainder().iter_mut().zip(b.remainder()) {
        *x ^= y;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_compressible_and_not() {
        let text = Bytes::from("hello world ".repeat(10_000));
        let (h, s) = encode(ChunkId::random(), text.clone());
        assert_eq!(h.codec, Codec::Lz4);
        assert!(s.len() < text.len());
        assert_eq!(decode(&h, s).unwrap(), text);

        let mut x = 0x9e3779b97f4a7c15u64;
        let noise: Vec<u8> = (0..100_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let noise = Bytes::from(noise);
        let (h, s) = encode(ChunkId::random(), noise.clone());
        assert_eq!(h.codec, Codec::Raw);
        assert_eq!(decode(&h, s).unwrap(), noise);

        let (h, s) = encode(ChunkId::random(), Bytes::new());
        assert_eq!(decode(&h, s).unwrap().len(), 0);
    }

    #[test]
    fn corruption_is_detected() {
        let text = Bytes::from("abc".repeat(1000));
        let (h, s) = encode(ChunkId::random(), text);
        let mut bad = s.to_vec();
        bad[3] ^= 1;
        assert_eq!(decode(&h, Bytes::from(bad)), Err(ChunkError::Crc));
        // CRC matches but SHA does not: header lies about the hash.
        let mut h2 = h.clone();
        h2.raw_sha256[0] ^= 1;
        assert_eq!(decode(&h2, s.clone()), Err(ChunkError::Sha));
        let mut h3 = h.clone();
        h3.raw_len = MAX_CHUNK_LEN + 1;
        assert!(matches!(decode(&h3, s), Err(ChunkError::Bounds(_))));
    }

    #[test]
    fn xor_parity_recovers_any_member() {
        let a = b"first chunk, longest of all".to_vec();
        let b = b"second".to_vec();
        let c = b"third one".to_vec();
        let mut p = Vec::new();
        for x in [&a, &b, &c] {
            xor_into(&mut p, x);
        }
        let mut rec = p.clone();
        xor_into(&mut rec, &a);
        xor_into(&mut rec, &c);
        rec.truncate(b.len());
        assert_eq!(rec, b);
    }
}
