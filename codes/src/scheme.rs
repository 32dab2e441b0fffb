//! Which code protects a file: parsed from `--parity`, validated once, and
//! printed back in the same form.

use crate::error::Error;
use std::fmt;
use std::str::FromStr;

/// Data chunks per stripe when `xor` is given without a width.
pub const DEFAULT_XOR_K: u8 = 4;

/// Most members (data + parities) a stripe may have: GF(2^8) has 256
/// elements, and a Cauchy matrix needs one distinct element per member.
pub const MAX_MEMBERS: usize = 255;

/// An erasure-coding scheme. Members of a stripe are numbered data first
/// (`0..k`), then parities in the order of [`Scheme::parity_roles`].
///
/// On the wire and on disk it travels as its text form (`rs:6+3`) and is
/// validated when decoded, so an impossible scheme never gets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Scheme {
    /// No parity: each chunk stands alone, protected by replication only.
    None,
    /// One XOR parity over `k` data chunks (round 1's scheme).
    Xor { k: u8 },
    /// Reed-Solomon: `k` data, `m` parities; any `m` losses decode.
    Rs { k: u8, m: u8 },
    /// Two-level local reconstruction code: `k` data in `l` groups of
    /// `k / l`, one XOR parity per group, `g` global parities over all `k`.
    /// Any `g + 1` losses decode; one loss reads only its group.
    Lrc { k: u8, l: u8, g: u8 },
}

/// What a parity member is, for display and for choosing cheap reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Data(usize),
    /// The XOR parity of a whole `xor` stripe.
    Xor,
    /// The XOR of local group `g` (LRC).
    Local(usize),
    /// Global parity `j` (RS parities and LRC globals).
    Global(usize),
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Data(i) => write!(f, "data {i}"),
            Role::Xor => write!(f, "xor parity"),
            Role::Local(g) => write!(f, "local parity of group {g}"),
            Role::Global(j) => write!(f, "global parity {j}"),
        }
    }
}

impl Scheme {
    /// Data chunks per full stripe.
    pub fn data_count(&self) -> usize {
        match *self {
            Scheme::None => 1,
            Scheme::Xor { k } | Scheme::Rs { k, .. } | Scheme::Lrc { k, .. } => k as usize,
        }
    }

    pub fn parity_count(&self) -> usize {
        match *self {
            Scheme::None => 0,
            Scheme::Xor { .. } => 1,
            Scheme::Rs { m, .. } => m as usize,
            Scheme::Lrc { l, g, .. } => (l + g) as usize,
        }
    }

    /// Roles of the parities, in member order.
    pub fn parity_roles(&self) -> Vec<Role> {
        match *self {
            Scheme::None => Vec::new(),
            Scheme::Xor { .. } => vec![Role::Xor],
            Scheme::Rs { m, .. } => (0..m as usize).map(Role::Global).collect(),
            Scheme::Lrc { l, g, .. } => (0..l as usize)
                .map(Role::Local)
                .chain((0..g as usize).map(Role::Global))
                .collect(),
        }
    }

    /// Role of member `i`.
    pub fn role(&self, i: usize) -> Role {
        let k = self.data_count();
        if i < k {
            Role::Data(i)
        } else {
            self.parity_roles()[i - k]
        }
    }

    /// Stored bytes per logical byte for full stripes and one copy of data.
    pub fn overhead(&self) -> f64 {
        (self.data_count() + self.parity_count()) as f64 / self.data_count() as f64
    }

    /// Checks the parameters; the error says what would work.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |reason: String| {
            Err(Error::BadScheme {
                scheme: self.to_string(),
                reason,
            })
        };
        match *self {
            Scheme::None => Ok(()),
            Scheme::Xor { k } => {
                if k == 0 || k as usize + 1 > MAX_MEMBERS {
                    return bad(format!(
                        "the stripe needs 1 to {} data chunks",
                        MAX_MEMBERS - 1
                    ));
                }
                Ok(())
            }
            Scheme::Rs { k, m } => {
                if k == 0 || m == 0 {
                    return bad("K and M must be at least 1 (e.g. rs:6+3)".into());
                }
                if k as usize + m as usize > MAX_MEMBERS {
                    return bad(format!(
                        "K+M = {} exceeds {MAX_MEMBERS} (GF(2^8) has 256 elements); use at most {} parities with K={k}",
                        k as usize + m as usize,
                        MAX_MEMBERS.saturating_sub(k as usize)
                    ));
                }
                Ok(())
            }
            Scheme::Lrc { k, l, g } => {
                if k == 0 || l == 0 || g == 0 {
                    return bad("K, L and G must be at least 1 (e.g. lrc:12+2+2)".into());
                }
                if k % l != 0 {
                    let divisors: Vec<String> = (1..=k)
                        .filter(|d| k % d == 0 && *d < k)
                        .map(|d| d.to_string())
                        .collect();
                    return bad(format!(
                        "L={l} does not divide K={k}; every local group needs the same size (L could be {})",
                        divisors.join(", ")
                    ));
                }
                if l == k {
                    return bad(format!(
                        "L={l} makes every group a single chunk (a copy, not a code); use L < K, e.g. lrc:{k}+{}+{g}",
                        (1..k).rev().find(|d| k % d == 0).unwrap_or(1)
                    ));
                }
                let members = k as usize + l as usize + g as usize;
                if members > MAX_MEMBERS || k as usize + g as usize + 1 > 256 {
                    return bad(format!(
                        "K+L+G = {members} exceeds {MAX_MEMBERS} (GF(2^8) has 256 elements)"
                    ));
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scheme::None => write!(f, "none"),
            Scheme::Xor { k } => write!(f, "xor:{k}"),
            Scheme::Rs { k, m } => write!(f, "rs:{k}+{m}"),
            Scheme::Lrc { k, l, g } => write!(f, "lrc:{k}+{l}+{g}"),
        }
    }
}

impl FromStr for Scheme {
    type Err = Error;

    /// `none`, `xor`, `xor:K`, `rs:K+M`, `lrc:K+L+G`.
    fn from_str(s: &str) -> Result<Scheme, Error> {
        let bad = |reason: &str| Error::BadScheme {
            scheme: s.to_string(),
            reason: reason.to_string(),
        };
        const FORMS: &str =
            "expected none, xor, xor:K, rs:K+M or lrc:K+L+G (e.g. rs:6+3, lrc:12+2+2)";
        let t = s.trim().to_ascii_lowercase();
        let (kind, params) = match t.split_once(':') {
            Some((k, p)) => (k, Some(p)),
            None => (t.as_str(), None),
        };
        let nums = |p: Option<&str>, n: usize| -> Result<Vec<u8>, Error> {
            let members = |v: &[u32]| v.iter().sum::<u32>();
            let p = p.ok_or_else(|| bad(FORMS))?;
            let v: Vec<&str> = p.split('+').collect();
            if v.len() != n {
                return Err(bad(FORMS));
            }
            let v: Vec<u32> = v
                .iter()
                .map(|x| {
                    x.trim()
                        .parse::<u32>()
                        .map_err(|_| bad(&format!("{x:?} is not a number; {FORMS}")))
                })
                .collect::<Result<_, _>>()?;
            if members(&v) as usize > MAX_MEMBERS {
                return Err(bad(&format!(
                    "{} members per stripe exceed {MAX_MEMBERS} (GF(2^8) has 256 elements); use fewer data or parity chunks",
                    members(&v)
                )));
            }
            Ok(v.into_iter().map(|x| x as u8).collect())
        };
        let scheme = match kind {
            "none" if params.is_none() => Scheme::None,
            "xor" => match params {
                None => Scheme::Xor { k: DEFAULT_XOR_K },
                p => Scheme::Xor { k: nums(p, 1)?[0] },
            },
            "rs" => {
                let v = nums(params, 2)?;
                Scheme::Rs { k: v[0], m: v[1] }
            }
            "lrc" => {
                let v = nums(params, 3)?;
                Scheme::Lrc {
                    k: v[0],
                    l: v[1],
                    g: v[2],
                }
            }
            _ => return Err(bad(FORMS)),
        };
        scheme.validate()?;
        Ok(scheme)
    }
}

impl From<Scheme> for String {
    fn from(s: Scheme) -> String {
        s.to_string()
    }
}

impl TryFrom<String> for Scheme {
    type Error = Error;
    fn try_from(s: String) -> Result<Scheme, Error> {
        s.parse()
    }
}
