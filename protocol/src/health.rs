//! How well a file is protected, from the live copies of each chunk. One
//! definition shared by `stat` (client side) and `fsck` (coordinator side).

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

/// Live copies of each chunk of one stripe.
pub struct StripeCopies {
    pub data: Vec<u32>,
    /// `None` when the file has no parity.
    pub parity: Option<u32>,
}

/// Health of one stripe whose data chunks target `replication` copies.
pub fn stripe_health(s: &StripeCopies, replication: u32) -> Health {
    let parity_live = s.parity.unwrap_or(0);
    let unreadable = s.data.iter().filter(|&&n| n == 0).count();
    if unreadable > 1 || (unreadable == 1 && parity_live == 0) {
        return Health::Lost;
    }
    let below = s.data.iter().any(|&n| n < replication) || s.parity == Some(0);
    if !below {
        // A file stored without redundancy is healthy at its own target.
        return Health::Healthy;
    }
    // Failures the weakest chunk still survives: its own copies, plus one
    // rebuild from parity if every other chunk of the stripe is readable.
    let weakest = s.data.iter().copied().min().unwrap_or(0);
    let spare = weakest + u32::from(parity_live > 0);
    if spare <= 1 {
        Health::AtRisk
    } else {
        Health::Degraded
    }
}

/// The worst stripe decides.
pub fn file_health<'a>(
    stripes: impl IntoIterator<Item = &'a StripeCopies>,
    replication: u32,
) -> Health {
    stripes
        .into_iter()
        .map(|s| stripe_health(s, replication))
        .max()
        .unwrap_or(Health::Healthy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(data: &[u32], parity: Option<u32>, r: u32) -> Health {
        stripe_health(
            &StripeCopies {
                data: data.to_vec(),
                parity,
            },
            r,
        )
    }

    #[test]
    fn classification() {
        assert_eq!(h(&[2, 2], Some(1), 2), Health::Healthy);
        assert_eq!(h(&[1, 2], Some(1), 2), Health::Degraded);
        assert_eq!(h(&[1, 2], None, 2), Health::AtRisk);
        assert_eq!(h(&[2, 2], Some(0), 2), Health::Degraded);
        assert_eq!(h(&[1, 1], Some(1), 1), Health::Healthy);
        assert_eq!(h(&[0, 1], Some(1), 1), Health::AtRisk);
        assert_eq!(h(&[1, 1], Some(0), 1), Health::AtRisk);
        assert_eq!(h(&[0, 0], Some(1), 1), Health::Lost);
        assert_eq!(h(&[0, 1], None, 1), Health::Lost);
        assert_eq!(h(&[1], None, 1), Health::Healthy);
    }
}
