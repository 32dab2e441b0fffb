//! Whether one server connection is idle, shared between the connection
//! (which marks itself idle while it waits for a request) and the accept
//! loop in `server.rs` (which evicts the longest-idle one at its cap). Its
//! own module so that `connection.rs` and `server.rs` both use it without
//! importing each other.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A connection that sends no request for this long is closed. Sessions
/// (heartbeats) never wait this long; pooled client connections are reused
/// only well within it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the accept loop knows of one connection: whether it is idle, and
/// the signal that evicts it.
pub struct Activity {
    /// Milliseconds since the server started at which the connection became
    /// idle, plus one; 0 while it serves a request.
    idle_since: AtomicU64,
    epoch: Instant,
    evict: tokio::sync::Notify,
}

impl Activity {
    pub(crate) fn new(epoch: Instant) -> Self {
        let a = Activity {
            idle_since: AtomicU64::new(0),
            epoch,
            evict: tokio::sync::Notify::new(),
        };
        a.set_idle(true);
        a
    }

    pub(crate) fn set_idle(&self, idle: bool) {
        let v = if idle {
            self.epoch.elapsed().as_millis() as u64 + 1
        } else {
            0
        };
        self.idle_since.store(v, Ordering::Relaxed);
    }

    /// Asks the connection's task to close it (the accept loop, at its cap).
    pub(crate) fn evict(&self) {
        self.evict.notify_one();
    }

    /// Completes when the connection is asked to close.
    pub(crate) async fn evicted(&self) {
        self.evict.notified().await
    }

    pub(crate) fn idle_since(&self) -> Option<u64> {
        match self.idle_since.load(Ordering::Relaxed) {
            0 => None,
            v => Some(v),
        }
    }
}
