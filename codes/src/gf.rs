//! Arithmetic in GF(2^8) with the polynomial x^8 + x^4 + x^3 + x^2 + 1
//! (0x11d), the field every storage Reed-Solomon code uses.
//!
//! Scalar products go through log/exp tables. Region products (`dst ^= c *
//! src` over whole buffers, the inner loop of every encode and decode) use
//! the split-table method: `c * x = lo[x & 15] ^ hi[x >> 4]`, two 16-entry
//! tables per coefficient, which maps onto one byte shuffle per nibble with
//! AVX2 (32 bytes per step) and onto a 256-entry table lookup otherwise.

use std::sync::OnceLock;

const POLY: u16 = 0x11d;

struct Tables {
    exp: [u8; 512],
    log: [u8; 256],
    /// `mul[c][x] = c * x`: 64 KiB, the scalar region path.
    mul: Vec<[u8; 256]>,
    /// `nib[c] = (lo, hi)`: `c * x = lo[x & 15] ^ hi[x >> 4]`.
    nib: Vec<([u8; 16], [u8; 16])>,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut exp = [0u8; 512];
        let mut log = [0u8; 256];
        let mut x: u16 = 1;
        for (i, e) in exp.iter_mut().take(255).enumerate() {
            *e = x as u8;
            log[x as usize] = i as u8;
            x <<= 1;
            if x & 0x100 != 0 {
                x ^= POLY;
            }
        }
        for i in 255..512 {
            exp[i] = exp[i - 255];
        }
        let slow = |a: u8, b: u8| -> u8 {
            if a == 0 || b == 0 {
                0
            } else {
                exp[log[a as usize] as usize + log[b as usize] as usize]
            }
        };
        let mut mul = vec![[0u8; 256]; 256];
        let mut nib = vec![([0u8; 16], [0u8; 16]); 256];
        for c in 0..256usize {
            for (x, v) in mul[c].iter_mut().enumerate() {
                *v = slow(c as u8, x as u8);
            }
            for n in 0..16usize {
                nib[c].0[n] = slow(c as u8, n as u8);
                nib[c].1[n] = slow(c as u8, (n << 4) as u8);
            }
        }
        Tables { exp, log, mul, nib }
    })
}

pub fn mul(a: u8, b: u8) -> u8 {
    tables().mul[a as usize][b as usize]
}

/// Multiplicative inverse; `inv(0)` is a caller bug and returns 0.
pub fn inv(a: u8) -> u8 {
    if a == 0 {
        return 0;
    }
    let t = tables();
    t.exp[255 - t.log[a as usize] as usize]
}

/// `dst[i] ^= c * src[i]` for `i < src.len()`; `dst` must be at least as
/// long as `src` (a shorter member is a zero-padded one: its missing tail
/// contributes nothing).
pub fn mul_add(c: u8, src: &[u8], dst: &mut [u8]) {
    assert!(dst.len() >= src.len(), "destination shorter than source");
    let dst = &mut dst[..src.len()];
    match c {
        0 => {}
        1 => xor_into(src, dst),
        _ => {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx2") {
                    let (lo, hi) = &tables().nib[c as usize];
                    // SAFETY: AVX2 support was just checked at run time, and
                    // the function only touches `src`/`dst` within bounds.
                    let done = unsafe { avx2::mul_add(lo, hi, src, dst) };
                    let row = &tables().mul[c as usize];
                    for (d, s) in dst[done..].iter_mut().zip(&src[done..]) {
                        *d ^= row[*s as usize];
                    }
                    return;
                }
            }
            let row = &tables().mul[c as usize];
            for (d, s) in dst.iter_mut().zip(src) {
                *d ^= row[*s as usize];
            }
        }
    }
}

/// `dst ^= src`, eight bytes at a time (the compiler vectorises it).
fn xor_into(src: &[u8], dst: &mut [u8]) {
    let mut dc = dst.chunks_exact_mut(8);
    let mut sc = src.chunks_exact(8);
    for (d, s) in (&mut dc).zip(&mut sc) {
        let v = u64::from_ne_bytes(d[..8].try_into().expect("8 bytes"))
            ^ u64::from_ne_bytes(s.try_into().expect("8 bytes"));
        d.copy_from_slice(&v.to_ne_bytes());
    }
    for (d, s) in dc.into_remainder().iter_mut().zip(sc.remainder()) {
        *d ^= *s;
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Processes whole 32-byte blocks; returns how many bytes it did.
    ///
    /// # Safety
    /// The CPU must support AVX2; `dst.len() == src.len()`.
    #[target_feature(enable = "avx2")]
    pub unsafe fn mul_add(lo: &[u8; 16], hi: &[u8; 16], src: &[u8], dst: &mut [u8]) -> usize {
        let n = src.len() / 32 * 32;
        let lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(lo.as_ptr().cast()));
        let hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(hi.as_ptr().cast()));
        let mask = _mm256_set1_epi8(0x0f);
        let mut i = 0;
        while i < n {
            let s = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            let l = _mm256_and_si256(s, mask);
            let h = _mm256_and_si256(_mm256_srli_epi64(s, 4), mask);
            let p = _mm256_xor_si256(_mm256_shuffle_epi8(lo, l), _mm256_shuffle_epi8(hi, h));
            let d = _mm256_loadu_si256(dst.as_ptr().add(i).cast());
            _mm256_storeu_si256(dst.as_mut_ptr().add(i).cast(), _mm256_xor_si256(d, p));
            i += 32;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_laws() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inv(a)), 1, "inverse of {a}");
            assert_eq!(mul(a, 1), a);
            assert_eq!(mul(a, 0), 0);
        }
        // Distributivity on a sample.
        for a in (0..=255u8).step_by(7) {
            for b in (0..=255u8).step_by(11) {
                for c in (0..=255u8).step_by(13) {
                    assert_eq!(mul(a, b ^ c), mul(a, b) ^ mul(a, c));
                }
            }
        }
    }

    #[test]
    fn region_matches_scalar_at_every_length_and_coefficient() {
        let src: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for c in 0..=255u8 {
            for len in [0, 1, 31, 32, 33, 64, 100, 200] {
                let mut dst: Vec<u8> = (0..len as u32 + 5).map(|i| (i * 3) as u8).collect();
                let before = dst.clone();
                mul_add(c, &src[..len], &mut dst);
                for i in 0..dst.len() {
                    let want = if i < len {
                        before[i] ^ mul(c, src[i])
                    } else {
                        before[i]
                    };
                    assert_eq!(dst[i], want, "c={c} len={len} i={i}");
                }
            }
        }
    }
}
