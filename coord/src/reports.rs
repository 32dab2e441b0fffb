//! Readers' reports of bad copies, rate-limited: a flood of reports (or a
//! hostile reader) must not make nodes verify the same chunk over and over.

use protocol::{ChunkId, NodeId};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Verify orders sent per second at most, whoever reports.
const MAX_REPORTS_PER_S: u32 = 50;

pub struct BadReports {
    /// Recent reports by (chunk, node): repeats are ignored for a while.
    recent: HashMap<(ChunkId, NodeId), Instant>,
    /// Start of the current one-second window and the reports accepted in it.
    window: (Instant, u32),
}

impl Default for BadReports {
    fn default() -> Self {
        BadReports {
            recent: HashMap::new(),
            window: (Instant::now(), 0),
        }
    }
}

impl BadReports {
    /// Whether a report of `chunk` on `node` should become a verify order:
    /// not a repeat, and within the per-second budget.
    pub fn admit(&mut self, chunk: ChunkId, node: &NodeId, now: Instant) -> bool {
        if self.recent.contains_key(&(chunk, node.clone())) {
            tracing::debug!(%chunk, %node, "repeated bad-copy report ignored");
            return false;
        }
        let (start, count) = self.window;
        if now.saturating_duration_since(start) >= Duration::from_secs(1) {
            self.window = (now, 0);
        } else if count >= MAX_REPORTS_PER_S {
            tracing::debug!(%chunk, %node, "bad-copy reports over the rate limit; ignored");
            return false;
        }
        self.window.1 += 1;
        self.recent.insert((chunk, node.clone()), now);
        true
    }

    /// Forgets reports older than `window`.
    pub fn expire(&mut self, now: Instant, window: Duration) {
        self.recent
            .retain(|_, at| now.saturating_duration_since(*at) < window);
    }
}
