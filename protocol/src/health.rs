//! How well a file is protected, from the live copies of each stripe
//! member. One definition shared by `stat` (client side), `fsck` and
//! `fsck --what-if` (coordinator side); whether a loss pattern decodes is
//! decided by `codes::Code::is_decodable`, the same function the client,
//! the nodes and repair use.

use codes::Code;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Health {
    /// Every chunk has its target number of live copies.
    Healthy,
    /// Readable, some chunk or parity block below target.
    Degraded,
    /// Readable, but one more node failure could make a chunk unreadable.
    AtRisk,
    /// Some chunk can be neither read nor rebuilt.
    Lost,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::AtRisk => "at-risk",
            Health::Lost => "lost",
        }
    }
}

/// Live copies of each member of one stripe.
pub struct StripeCopies {
    pub data: Vec<u32>,
    /// One entry per parity, in member order.
    pub parity: Vec<u32>,
}

/// Health of one stripe coded with `code` whose data chunks target
/// `replication` copies (parities target one).
pub fn stripe_health(code: &Code, s: &StripeCopies, replication: u32) -> Health {
    let k = code.k();
    let data = s.data.len();
    let live = |m: usize| -> u32 {
        if m < k {
            s.data.get(m).copied().unwrap_or(0)
        } else {
            s.parity.get(m - k).copied().unwrap_or(0)
        }
    };
    let members: Vec<usize> = code.real_members(data).collect();
    let lost: Vec<usize> = members.iter().copied().filter(|&m| live(m) == 0).collect();
    if data == 0 || !code.is_decodable(data, &lost) {
        return Health::Lost;
    }
    let below = s.data.iter().any(|&n| n < replication) || s.parity.contains(&0);
    if !below {
        // A file stored without redundancy is healthy at its own target.
        return Health::Healthy;
    }
    // At risk when one more failure (of a member's last copy) would leave a
    // pattern the code cannot decode.
    let fragile = members.iter().copied().filter(|&m| live(m) == 1).any(|m| {
        let mut more = lost.clone();
        more.push(m);
        !code.is_decodable(data, &more)
    });
    if fragile {
        Health::AtRisk
    } else {
        Health::Degraded
    }
}

/// The worst stripe decides.
pub fn file_health<'a>(
    code: &Code,
    stripes: impl IntoIterator<Item = &'a StripeCopies>,
    replication: u32,
) -> Health {
    stripes
        .into_iter()
        .map(|s| stripe_health(code, s, replication))
        .max()
        .unwrap_or(Health::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(scheme: &str, data: &[u32], parity: &[u32], r: u32) -> Health {
        let code = Code::new(scheme.parse().unwrap()).unwrap();
        stripe_health(
            &code,
            &StripeCopies {
                data: data.to_vec(),
                parity: parity.to_vec(),
            },
            r,
        )
    }

    #[test]
    fn classification_xor_and_none() {
        assert_eq!(h("xor:2", &[2, 2], &[1], 2), Health::Healthy);
        assert_eq!(h("xor:2", &[1, 2], &[1], 2), Health::Degraded);
        assert_eq!(h("none", &[1], &[], 2), Health::AtRisk);
        assert_eq!(h("xor:2", &[2, 2], &[0], 2), Health::Degraded);
        assert_eq!(h("xor:2", &[1, 1], &[1], 1), Health::Healthy);
        assert_eq!(h("xor:2", &[0, 1], &[1], 1), Health::AtRisk);
        assert_eq!(h("xor:2", &[1, 1], &[0], 1), Health::AtRisk);
        assert_eq!(h("xor:2", &[0, 0], &[1], 1), Health::Lost);
        assert_eq!(h("none", &[0], &[], 1), Health::Lost);
        assert_eq!(h("none", &[1], &[], 1), Health::Healthy);
        // A short xor stripe: one data chunk and its parity.
        assert_eq!(h("xor:4", &[0], &[1], 1), Health::AtRisk);
    }

    #[test]
    fn classification_rs_and_lrc() {
        assert_eq!(h("rs:4+2", &[1, 1, 1, 1], &[1, 1], 1), Health::Healthy);
        assert_eq!(h("rs:4+2", &[0, 1, 1, 1], &[1, 1], 1), Health::Degraded);
        assert_eq!(h("rs:4+2", &[0, 1, 1, 1], &[1, 0], 1), Health::AtRisk);
        assert_eq!(h("rs:4+2", &[0, 0, 1, 1], &[1, 0], 1), Health::Lost);
        // LRC: 3 losses with every 4th still decodable are merely degraded.
        let d = [0, 1, 1, 0, 1, 1];
        assert_eq!(h("lrc:6+2+2", &d, &[1, 1, 0, 1], 1), Health::Degraded);
        assert_eq!(
            h("lrc:6+2+2", &[0, 0, 0, 1, 1, 1], &[1, 1, 1, 1], 1),
            Health::AtRisk
        );
        assert_eq!(
            h("lrc:6+2+2", &[0, 0, 0, 0, 1, 1], &[1, 1, 1, 1], 1),
            Health::AtRisk
        );
        assert_eq!(
            h("lrc:6+2+2", &[0, 0, 0, 0, 0, 1], &[1, 1, 1, 1], 1),
            Health::Lost
        );
    }
}
