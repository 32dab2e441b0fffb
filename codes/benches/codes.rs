//! Encode and decode throughput of each scheme on 64 MiB of data (the
//! stripe's data chunks together), in GB/s of data processed.
//!
//! Run with `cargo bench -p codes --bench codes`. Decode rebuilds one lost
//! data chunk (LRC: from its local group) and, for the MDS codes, the
//! largest tolerated loss of data chunks.

use codes::{Code, Scheme};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

const DATA: usize = 64 << 20;

fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("codes");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(DATA as u64));
    for s in [
        "xor:4",
        "rs:4+2",
        "rs:6+3",
        "rs:12+4",
        "lrc:6+2+2",
        "lrc:12+2+2",
    ] {
        let scheme: Scheme = s.parse().unwrap();
        let code = Code::new(scheme).unwrap();
        let k = code.k();
        let len = DATA / k;
        let data: Vec<Vec<u8>> = (0..k).map(|i| bytes(len, i as u64 + 7)).collect();
        let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
        let parities = code.encode(&refs).unwrap();
        g.bench_function(BenchmarkId::new("encode", s), |b| {
            b.iter(|| black_box(code.encode(black_box(&refs)).unwrap()))
        });
        let member = |m: usize| -> &[u8] {
            if m < k {
                &data[m]
            } else {
                &parities[m - k]
            }
        };
        let tolerated = match scheme {
            Scheme::Rs { m, .. } => m as usize,
            _ => 1,
        };
        for lost in [1, tolerated] {
            let want: Vec<usize> = (0..lost).collect();
            let read = code.read_plan(k, &want, &want).unwrap();
            let dec = code.decoder(k, &read, &want).unwrap();
            // Throughput counts the full stripe's data, the rebuild unit.
            g.bench_function(BenchmarkId::new(format!("decode-{lost}"), s), |b| {
                b.iter(|| {
                    let mut out = vec![vec![0u8; len]; lost];
                    let mut o: Vec<&mut [u8]> = out.iter_mut().map(|x| x.as_mut_slice()).collect();
                    for (r, &m) in dec.read().iter().enumerate() {
                        dec.add(r, member(m), &mut o);
                    }
                    black_box(out)
                })
            });
            if lost == tolerated {
                break;
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
