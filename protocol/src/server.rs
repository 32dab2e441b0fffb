//! The accept loop both servers (coordinator and node) run: a cap on
//! concurrent connections, one task per connection, a broadcast stop, and a
//! bounded drain on shutdown.
//!
//! Connections cannot pin a server: one that sends no request for
//! [`IDLE_TIMEOUT`] is closed, and when the cap is reached the connection
//! idle the longest (waiting for a request, or for its handshake) is closed
//! to make room, so a flood of idle peers never locks out a working one.

use crate::activity::Activity;
pub use crate::activity::IDLE_TIMEOUT;
use crate::connection::Connection;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

#[derive(Default)]
struct Registry {
    next: u64,
    conns: HashMap<u64, Arc<Activity>>,
}

impl Registry {
    /// Signals the connection idle the longest; false if none is idle.
    fn evict_oldest_idle(&self) -> bool {
        let oldest = self
            .conns
            .values()
            .filter_map(|a| a.idle_since().map(|t| (t, a)))
            .min_by_key(|(t, _)| *t);
        match oldest {
            Some((_, a)) => {
                a.evict();
                true
            }
            None => false,
        }
    }
}

/// Background tasks of a server and the signal that stops them.
pub struct Tasks {
    pub set: JoinSet<()>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
}

impl Default for Tasks {
    fn default() -> Self {
        let (stop_tx, stop_rx) = watch::channel(false);
        Tasks {
            set: JoinSet::new(),
            stop_tx,
            stop_rx,
        }
    }
}

impl Tasks {
    /// A receiver that changes when the server stops.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_rx.clone()
    }

    /// Runs `task` until the server stops (it should watch `stop_signal`).
    pub fn spawn(&mut self, task: impl Future<Output = ()> + Send + 'static) {
        self.set.spawn(task);
    }
}

/// Accepts connections until `shutdown` completes, running `handler` for
/// each (at most `max_connections` at once: further peers wait in the
/// kernel's accept queue). Then tells every task to stop, gives them `drain`
/// to finish and cuts off the rest (dropped tasks clean up after themselves:
/// nothing half-written becomes visible).
pub async fn serve<H, F>(
    listener: TcpListener,
    max_connections: usize,
    drain: Duration,
    mut tasks: Tasks,
    shutdown: impl Future<Output = ()>,
    handler: H,
) where
    H: Fn(Connection, watch::Receiver<bool>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(max_connections.max(1)));
    let registry = Arc::new(Mutex::new(Registry::default()));
    let epoch = Instant::now();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.set.join_next(), if !tasks.set.is_empty() => {}
            accepted = listener.accept() => {
                match accepted {
                    Ok((stream, peer)) => {
                        // At the cap, make room by closing the connection
                        // idle the longest; wait only if every one is busy.
                        let permit = match sem.clone().try_acquire_owned() {
                            Ok(p) => p,
                            Err(_) => {
                                let evicted = registry
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .evict_oldest_idle();
                                if evicted {
                                    tracing::debug!("connection cap reached: closing the longest-idle connection");
                                }
                                let p = tokio::select! {
                                    _ = &mut shutdown => break,
                                    p = sem.clone().acquire_owned() => p,
                                };
                                let Ok(p) = p else { break };
                                p
                            }
                        };
                        let activity = Arc::new(Activity::new(epoch));
                        let id = {
                            let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
                            r.next += 1;
                            let id = r.next;
                            r.conns.insert(id, activity.clone());
                            id
                        };
                        let mut c = Connection::new(stream);
                        c.set_activity(activity.clone());
                        let conn = handler(c, tasks.stop_signal());
                        let registry = registry.clone();
                        tasks.set.spawn(async move {
                            let evicted = async {
                                loop {
                                    activity.evicted().await;
                                    // Busy again since it was picked: keep it.
                                    if activity.idle_since().is_some() {
                                        return;
                                    }
                                }
                            };
                            tokio::select! {
                                _ = conn => {}
                                _ = evicted => tracing::debug!("idle connection evicted"),
                            }
                            registry.lock().unwrap_or_else(|p| p.into_inner()).conns.remove(&id);
                            drop(permit);
                        }.instrument(tracing::info_span!("conn", %peer)));
                    }
                    Err(e) => {
                        // Usually EMFILE: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
    let _ = tasks.stop_tx.send(true);
    drop(listener);
    if tokio::time::timeout(drain, async {
        while tasks.set.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tracing::warn!("cutting off work still running after {drain:?}");
        tasks.set.shutdown().await;
    }
}
