//! How well a file is protected right now, judged from its catalog entry and
//! the liveness of the nodes holding its copies.

use protocol::{ChunkInfo, FileInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Every chunk has its target number of live copies.
    Healthy,
    /// Readable, but some chunk or parity block is below target.
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

pub fn live_copies(c: &ChunkInfo) -> usize {
    c.locations.iter().filter(|l| l.alive).count()
}

pub fn file_health(f: &FileInfo) -> Health {
    let mut worst = Health::Healthy;
    for s in &f.stripes {
        let parity_live = s.parity.as_ref().map(live_copies).unwrap_or(0);
        let unreadable = s.data.iter().filter(|c| live_copies(c) == 0).count();
        // Tolerance left: how many more lost copies the stripe survives,
        // taking the weakest chunk's copies plus what parity adds.
        let h = if unreadable > 1 || (unreadable == 1 && parity_live == 0) {
            Health::Lost
        } else {
            let min_live = s.data.iter().map(live_copies).min().unwrap_or(0);
            let spare = min_live + parity_live;
            let below = s
                .data
                .iter()
                .any(|c| live_copies(c) < f.replication as usize)
                || (s.parity.is_some() && parity_live == 0);
            // A file stored without redundancy is healthy at its own target;
            // at-risk means it fell below target to the last line of defence.
            match (below, spare <= 1) {
                (false, _) => Health::Healthy,
                (true, true) => Health::AtRisk,
                (true, false) => Health::Degraded,
            }
        };
        worst = worst.max(h);
    }
    worst
}
