//! The accept loop both servers (coordinator and node) run: a cap on
//! concurrent connections, one task per connection, a broadcast stop, and a
//! bounded drain on shutdown.

use crate::connection::Connection;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;

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
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = tasks.set.join_next(), if !tasks.set.is_empty() => {}
            permit = sem.clone().acquire_owned() => {
                let Ok(permit) = permit else { break };
                let accepted = tokio::select! {
                    _ = &mut shutdown => break,
                    a = listener.accept() => a,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let conn = handler(Connection::new(stream), tasks.stop_signal());
                        tasks.set.spawn(async move {
                            conn.await;
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
