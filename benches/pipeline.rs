//! Throughput of each stage of the chunk pipeline on one 64 MiB chunk:
//! SHA-256, LZ4 compress / decompress, the full `encode` and `decode` of
//! `protocol::chunk`, and the XOR of one chunk into a parity accumulator.
//!
//! Run with `cargo bench --bench pipeline` (under a minute of measuring on 2
//! cores, plus the build). Throughput is in decimal units (MB/s = 10^6 B/s).
//! Filter with e.g. `cargo bench --bench pipeline -- lz4`.
//!
//! Inputs are generated deterministically so runs are comparable across
//! machines:
//! - `mixed`: 64 KiB blocks, 3 of 4 text-like (words from a vocabulary with
//!   punctuation and line breaks, ~2-3x LZ4 ratio) and 1 of 4 random bytes,
//!   a rough stand-in for a tarball of source, docs and binaries;
//! - `random`: incompressible bytes, which `encode` stores raw.

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use protocol::chunk::{decode, encode, sha256, xor_into};
use protocol::ChunkId;
use std::hint::black_box;
use std::time::Duration;

const CHUNK: usize = 64 << 20;
const BLOCK: usize = 64 << 10;

/// xorshift64*: a small deterministic generator, good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

const WORDS: &[&str] = &[
    "the",
    "chunk",
    "node",
    "replica",
    "parity",
    "stripe",
    "coordinator",
    "heartbeat",
    "fn",
    "let",
    "mut",
    "impl",
    "struct",
    "return",
    "error",
    "result",
    "buffer",
    "file",
    "write",
    "read",
    "offset",
    "length",
    "hash",
    "digest",
    "compress",
    "a",
    "of",
    "to",
    "in",
    "is",
    "and",
    "for",
    "with",
    "on",
    "as",
    "by",
    "at",
    "system",
    "storage",
    "distributed",
    "throughput",
    "latency",
    "request",
    "server",
    "0",
    "1",
    "42",
    "1024",
    "65536",
    "0xdeadbeef",
    "true",
    "false",
    "None",
    "Some",
];

/// Text-like bytes: words drawn with a skew towards the head of the list, so
/// the data has the repetition of real text or source code.
fn text_bytes(len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        let r = rng.next();
        // Skewed pick: min of two uniform draws favours low indices.
        let a = (r as usize) % WORDS.len();
        let b = ((r >> 16) as usize) % WORDS.len();
        out.extend_from_slice(WORDS[a.min(b)].as_bytes());
        out.push(match (r >> 32) % 16 {
            0 => b'\n',
            1 => b',',
            2 => b'.',
            3 => b'(',
            4 => b')',
            5 => b'_',
            _ => b' ',
        });
    }
    out.truncate(len);
    out
}

fn mixed_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(len);
    let mut i = 0u64;
    while out.len() < len {
        let n = BLOCK.min(len - out.len());
        if i % 4 == 3 {
            out.extend_from_slice(&random_bytes(n, rng.next()));
        } else {
            out.extend_from_slice(&text_bytes(n, &mut rng));
        }
        i += 1;
    }
    out
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    // One 64 MiB iteration takes 10-300 ms: flat sampling with few samples
    // keeps the whole run to a few minutes on 2 cores.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::BytesDecimal(CHUNK as u64));
    g
}

fn pipeline(c: &mut Criterion) {
    let mixed = Bytes::from(mixed_bytes(CHUNK, 0x5eed));
    let random = Bytes::from(random_bytes(CHUNK, 0xfeed));
    let inputs = [("mixed", &mixed), ("random", &random)];

    {
        let mixed_lz4 = lz4_flex::block::compress(&mixed);
        eprintln!(
            "inputs: {} MiB chunks; mixed LZ4 ratio {:.2} ({} -> {} bytes)",
            CHUNK >> 20,
            mixed.len() as f64 / mixed_lz4.len() as f64,
            mixed.len(),
            mixed_lz4.len()
        );
    }

    let mut g = configure(c, "sha256");
    g.bench_function(BenchmarkId::from_parameter("mixed"), |b| {
        b.iter(|| black_box(sha256(black_box(&mixed))))
    });
    g.finish();

    let mut g = configure(c, "lz4_compress");
    for (name, data) in inputs {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(lz4_flex::block::compress(black_box(data))))
        });
    }
    g.finish();

    // Decompress into a preallocated buffer, as `decode` does (minus its
    // allocation, which the `decode` bench includes).
    let mut g = configure(c, "lz4_decompress");
    {
        let compressed = lz4_flex::block::compress(&mixed);
        let mut out = vec![0u8; CHUNK];
        g.bench_function(BenchmarkId::from_parameter("mixed"), |b| {
            b.iter(|| {
                let n = lz4_flex::block::decompress_into(black_box(&compressed), &mut out)
                    .expect("valid LZ4");
                assert_eq!(n, CHUNK);
            })
        });
    }
    g.finish();

    let mut g = configure(c, "encode");
    for (name, data) in inputs {
        let id = ChunkId::random();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(encode(id, black_box(data.clone()))))
        });
    }
    g.finish();

    let mut g = configure(c, "decode");
    for (name, data) in inputs {
        let (header, stored) = encode(ChunkId::random(), data.clone());
        assert_eq!(decode(&header, stored.clone()).as_ref(), Ok(data));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(decode(&header, black_box(stored.clone())).expect("decodes")))
        });
    }
    g.finish();

    let mut g = configure(c, "xor_parity");
    {
        let mut acc = vec![0u8; CHUNK];
        g.bench_function(BenchmarkId::from_parameter("mixed"), |b| {
            b.iter(|| xor_into(black_box(&mut acc), black_box(&mixed)))
        });
    }
    g.finish();
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
