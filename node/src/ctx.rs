//! The shared state of a running node (`Ctx`), in a module of its own so
//! that the connection handler (`server.rs`), the coordinator session,
//! repair and scrub all depend on it without depending on each other.

use crate::config::NodeConfig;
use crate::store::ChunkStore;
use protocol::data_client::NodePool;
use protocol::{ChunkId, NodeStats, SessionMsg, TokenKey};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify, Semaphore};

/// Full verifications (decompression + SHA-256, a whole chunk in memory)
/// running at once on a coordinator's order; more orders wait their turn,
/// and past [`MAX_VERIFY_QUEUE`] waiting ones are dropped.
pub(crate) const VERIFY_PARALLEL: usize = 2;
const MAX_VERIFY_QUEUE: usize = 1024;

/// Shared state of a running node.
pub(crate) struct Ctx {
    pub config: NodeConfig,
    pub store: Arc<ChunkStore>,
    /// Reports for the coordinator (corrupt copies, repair outcomes),
    /// forwarded by whichever session is open.
    pub events: mpsc::Sender<SessionMsg>,
    pub events_rx: tokio::sync::Mutex<mpsc::Receiver<SessionMsg>>,
    /// Connections to other nodes, for repair.
    pub pool: NodePool,
    pub scrub: ScrubState,
    pub repairs: Arc<Semaphore>,
    /// The repair memory budget, one permit per MiB.
    pub repair_mem: Arc<Semaphore>,
    /// The cluster this node belongs to, once it joined one.
    pub identity: Mutex<crate::identity::Identity>,
    /// Checks block tokens (secured clusters).
    pub token_key: Option<TokenKey>,
    /// Chunks being (or waiting to be) verified on order: duplicates of an
    /// order in progress are dropped.
    pub verifying: Mutex<HashSet<ChunkId>>,
    pub verify_slots: Arc<Semaphore>,
}

impl Ctx {
    pub fn stats(&self) -> NodeStats {
        let mut s = self.store.stats();
        self.scrub.fill(&mut s);
        s
    }

    pub fn cluster(&self) -> Option<protocol::ClusterId> {
        self.identity
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cluster
    }

    /// Verifies a copy on the coordinator's order, at most once at a time
    /// per chunk and [`VERIFY_PARALLEL`] at once; a missing copy is reported
    /// as such (missing is bad).
    pub fn verify_ordered(self: &Arc<Self>, id: ChunkId) {
        {
            let mut v = self.verifying.lock().unwrap_or_else(|p| p.into_inner());
            if v.len() >= MAX_VERIFY_QUEUE || !v.insert(id) {
                return;
            }
        }
        let ctx = self.clone();
        tokio::spawn(async move {
            let _slot = ctx.verify_slots.clone().acquire_owned().await;
            match ctx.store.verify(&id).await {
                Err(crate::Error::Corrupt { reason, .. }) => ctx.corrupt(&id, &reason).await,
                Err(crate::Error::NoSuchChunk(_)) => ctx.missing(&id),
                _ => {}
            }
            ctx.verifying
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    /// Tells the coordinator a copy it counts on is not here.
    pub fn missing(&self, id: &ChunkId) {
        tracing::error!(chunk = %id, "chunk copy missing from disk");
        let _ = self.events.try_send(SessionMsg::Missing(*id));
    }

    /// Quarantines a copy found corrupt and tells the coordinator, which
    /// counts it lost and schedules a repair.
    pub async fn corrupt(&self, id: &ChunkId, reason: &str) {
        self.store.quarantine(id, reason).await;
        self.scrub
            .corrupt_found
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if self.events.try_send(SessionMsg::Corrupt(*id)).is_err() {
            tracing::warn!(chunk = %id, "cannot report corrupt chunk now; the next registration will");
        }
    }
}

/// The scrubber's counters (reported in the node's stats) and its "pass
/// now" signal; `scrub.rs` runs the passes.
#[derive(Default)]
pub struct ScrubState {
    pub passes: AtomicU64,
    pub running: AtomicBool,
    pub corrupt_found: AtomicU64,
    now: Notify,
}

impl ScrubState {
    /// Starts a full, unthrottled pass as soon as the current one (if any)
    /// is done.
    pub fn request(&self) {
        self.now.notify_one();
    }

    /// Completes when a pass is requested.
    pub(crate) fn requested(&self) -> tokio::sync::futures::Notified<'_> {
        self.now.notified()
    }

    pub fn fill(&self, s: &mut NodeStats) {
        s.scrub_passes = self.passes.load(Ordering::Relaxed);
        s.scrub_running = self.running.load(Ordering::Relaxed);
        s.corrupt_found = self.corrupt_found.load(Ordering::Relaxed);
    }
}
