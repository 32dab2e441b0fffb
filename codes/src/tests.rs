//! Exhaustive erasure tests: every loss pattern of the small codes the
//! system uses decodes byte-exact when the rank test says it can, and is
//! refused (never answered with wrong bytes) when it says it cannot.

use super::*;

fn rng_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// A stripe of `data` chunks of varied lengths and its encoding.
fn stripe(code: &Code, data: usize) -> Vec<Vec<u8>> {
    let mut members: Vec<Vec<u8>> = (0..data)
        .map(|i| rng_bytes(40 + (i * 7) % 23, i as u64 + 1))
        .collect();
    let refs: Vec<&[u8]> = members.iter().map(|d| d.as_slice()).collect();
    let parities = code.encode(&refs).unwrap();
    // Virtual members: empty placeholders, never offered to the decoder.
    members.extend((data..code.k()).map(|_| Vec::new()));
    members.extend(parities);
    members
}

/// Checks every subset of real members as the lost set; returns how many
/// patterns of each size decoded.
fn exhaustive(scheme: &str, data: usize, must_tolerate: usize) -> Vec<(usize, usize)> {
    let code = Code::new(scheme.parse().unwrap()).unwrap();
    let members = stripe(&code, data);
    let real: Vec<usize> = code.real_members(data).collect();
    let plen = members[code.k()..]
        .iter()
        .map(|p| p.len())
        .max()
        .unwrap_or(0);
    let mut counts = vec![(0usize, 0usize); real.len() + 1];
    for mask in 0u32..(1 << real.len()) {
        let lost: Vec<usize> = real
            .iter()
            .enumerate()
            .filter(|(b, _)| mask & (1 << b) != 0)
            .map(|(_, &m)| m)
            .collect();
        let present: Vec<Option<&[u8]>> = (0..code.members())
            .map(|m| (real.contains(&m) && !lost.contains(&m)).then(|| members[m].as_slice()))
            .collect();
        let ok = code.is_decodable(data, &lost);
        counts[lost.len()].1 += 1;
        if ok {
            counts[lost.len()].0 += 1;
        }
        if lost.len() <= must_tolerate {
            assert!(ok, "{scheme} data={data}: losing {lost:?} must decode");
        }
        if lost.is_empty() {
            continue;
        }
        match code.reconstruct(data, &present, &lost, plen) {
            Ok(out) => {
                assert!(
                    ok,
                    "{scheme}: {lost:?} decoded although reported undecodable"
                );
                for (w, bytes) in lost.iter().zip(&out) {
                    let want = &members[*w];
                    assert_eq!(bytes.len(), plen, "{scheme}: output length");
                    assert_eq!(
                        &bytes[..want.len()],
                        &want[..],
                        "{scheme}: {lost:?} member {w}"
                    );
                    assert!(bytes[want.len()..].iter().all(|&b| b == 0), "zero padding");
                }
            }
            Err(Error::Undecodable { .. }) => {
                assert!(!ok, "{scheme}: {lost:?} decodable but refused");
                // Single members may still be rebuildable; whatever is
                // returned must be right.
                for &w in &lost {
                    if let Ok(out) = code.reconstruct(data, &present, &[w], plen) {
                        let want = &members[w];
                        assert_eq!(&out[0][..want.len()], &want[..], "{scheme}: partial {w}");
                    }
                }
            }
            Err(e) => panic!("{scheme}: {lost:?}: {e}"),
        }
    }
    counts
}

#[test]
fn rs_4_2_every_pattern() {
    let c = exhaustive("rs:4+2", 4, 2);
    // MDS: exactly the patterns of at most 2 losses decode.
    for (n, (ok, all)) in c.iter().enumerate() {
        assert_eq!(*ok == *all, n <= 2, "{n} losses: {ok}/{all}");
        if n > 2 {
            assert_eq!(*ok, 0);
        }
    }
}

#[test]
fn rs_6_3_every_pattern() {
    let c = exhaustive("rs:6+3", 6, 3);
    for (n, (ok, all)) in c.iter().enumerate() {
        assert_eq!(*ok, if n <= 3 { *all } else { 0 }, "{n} losses");
    }
}

#[test]
fn lrc_6_2_2_every_pattern() {
    let c = exhaustive("lrc:6+2+2", 6, 3);
    // Some 4-loss patterns decode (e.g. one per group plus both globals
    // would not, but one data per group and one global does).
    assert!(c[4].0 > 0 && c[4].0 < c[4].1, "{:?}", c[4]);
}

#[test]
fn lrc_12_2_2_every_pattern() {
    let c = exhaustive("lrc:12+2+2", 12, 3);
    assert!(c[4].0 > 0 && c[4].0 < c[4].1, "{:?}", c[4]);
    assert_eq!(c[5].0, 0, "5 losses leave 11 members for 12 data");
}

#[test]
fn xor_every_pattern() {
    let c = exhaustive("xor:4", 4, 1);
    assert_eq!(c[2].0, 0);
}

#[test]
fn short_stripes_decode_with_virtual_zeros() {
    exhaustive("rs:4+2", 1, 2);
    exhaustive("rs:6+3", 4, 3);
    exhaustive("lrc:6+2+2", 1, 3);
    exhaustive("lrc:6+2+2", 4, 3);
    exhaustive("lrc:12+2+2", 5, 3);
    exhaustive("xor:4", 2, 1);
    exhaustive("none", 1, 0);
}

#[test]
fn read_plans_are_minimal() {
    let rs = Code::new("rs:6+3".parse().unwrap()).unwrap();
    for w in 0..9 {
        let plan = rs.read_plan(6, &[], &[w]).unwrap();
        assert_eq!(plan.len(), 6, "rs reads exactly K for member {w}");
        assert!(!plan.contains(&w));
    }
    // A short rs stripe of 2 data chunks needs 2 reads.
    assert_eq!(rs.read_plan(2, &[], &[0]).unwrap().len(), 2);
    let lrc = Code::new("lrc:12+2+2".parse().unwrap()).unwrap();
    for w in 0..14 {
        let plan = lrc.read_plan(12, &[], &[w]).unwrap();
        assert_eq!(
            plan.len(),
            6,
            "lrc:12+2+2 reads its group of 6 for member {w}: {plan:?}"
        );
    }
    // A global parity needs all data.
    assert_eq!(
        lrc.read_plan(12, &[], &[14]).unwrap(),
        (0..12).collect::<Vec<_>>()
    );
    // Two losses in one group fall back to a rank-K read.
    assert_eq!(lrc.read_plan(12, &[1], &[0]).unwrap().len(), 12);
    // One loss in each group stays local.
    assert_eq!(lrc.read_plan(12, &[], &[0, 6]).unwrap().len(), 12 - 2 + 2);
    let x = Code::new("xor:4".parse().unwrap()).unwrap();
    assert_eq!(x.read_plan(4, &[], &[2]).unwrap(), vec![0, 1, 3, 4]);
    assert!(matches!(
        x.read_plan(4, &[1], &[2]),
        Err(Error::Undecodable { .. })
    ));
}

#[test]
fn streaming_ranges_equal_whole_encode() {
    let code = Code::new("rs:12+4".parse().unwrap()).unwrap();
    let data: Vec<Vec<u8>> = (0..12)
        .map(|i| rng_bytes(100_000 - i * 1000, i as u64))
        .collect();
    let refs: Vec<&[u8]> = data.iter().map(|d| d.as_slice()).collect();
    let whole = code.encode(&refs).unwrap();
    // Encode in 4 KiB ranges, one data chunk at a time per range.
    let mut parts = vec![vec![0u8; 100_000]; 4];
    for start in (0..100_000).step_by(4096) {
        let end = (start + 4096).min(100_000);
        let mut outs: Vec<&mut [u8]> = parts.iter_mut().map(|p| &mut p[start..end]).collect();
        for (i, d) in data.iter().enumerate() {
            if start < d.len() {
                code.encode_add(i, &d[start..end.min(d.len())], &mut outs);
            }
        }
    }
    assert_eq!(parts, whole);
    // Decode the first three data chunks and one parity, in ranges.
    let lost = [0, 1, 2, 13];
    let read = code.read_plan(12, &lost, &lost).unwrap();
    assert_eq!(read.len(), 12);
    let dec = code.decoder(12, &read, &lost).unwrap();
    let member = |m: usize| if m < 12 { &data[m] } else { &whole[m - 12] };
    let mut outs = vec![vec![0u8; 100_000]; 4];
    for start in (0..100_000).step_by(10_000) {
        let end = start + 10_000;
        let mut o: Vec<&mut [u8]> = outs.iter_mut().map(|p| &mut p[start..end]).collect();
        for (r, &m) in dec.read().iter().enumerate() {
            let src = member(m);
            if start < src.len() {
                dec.add(r, &src[start..end.min(src.len())], &mut o);
            }
        }
    }
    for (w, out) in lost.iter().zip(&outs) {
        let want = member(*w);
        assert_eq!(&out[..want.len()], &want[..]);
    }
}

#[test]
fn scheme_text_round_trips_and_errors_say_what_works() {
    for s in [
        "none",
        "xor:4",
        "rs:6+3",
        "rs:10+4",
        "lrc:12+2+2",
        "lrc:6+2+2",
    ] {
        let p: Scheme = s.parse().unwrap();
        assert_eq!(p.to_string(), s);
    }
    assert_eq!(
        "xor".parse::<Scheme>().unwrap(),
        Scheme::Xor { k: DEFAULT_XOR_K }
    );
    let e = "rs:200+100".parse::<Scheme>().unwrap_err().to_string();
    assert!(e.contains("300 members") && e.contains("255"), "{e}");
    let e = "lrc:12+5+2".parse::<Scheme>().unwrap_err().to_string();
    assert!(
        e.contains("does not divide") && e.contains("1, 2, 3, 4, 6"),
        "{e}"
    );
    let e = "rs:6".parse::<Scheme>().unwrap_err().to_string();
    assert!(e.contains("rs:K+M"), "{e}");
    assert!("rs:0+2".parse::<Scheme>().is_err());
    assert!("lrc:4+4+1".parse::<Scheme>().is_err());
    assert!("raid5".parse::<Scheme>().is_err());
    assert_eq!(
        "lrc:12+2+2".parse::<Scheme>().unwrap().overhead(),
        16.0 / 12.0
    );
    assert_eq!(Scheme::Lrc { k: 6, l: 2, g: 2 }.role(7), Role::Local(1));
}
