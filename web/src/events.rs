//! Live updates for the page: server-sent events (`GET /api/events`).
//!
//! One task per coordinator computes the status document at most every
//! [`TICK`] while anyone listens, and publishes it; each open page's stream
//! sends the whole document once, then only what changed: the nodes whose
//! entry differs (by id) and the rest of the document when it differs. With
//! 100 nodes and a repair running, a page gets the few tiles that moved
//! within [`TICK`] instead of re-fetching the whole status every second.
//! Actions taken from any page are events too.
//!
//! Events (`event:` name, `data:` JSON):
//! - `status`: the whole `GET /api/status` document (first event), plus
//!   `at_ms`, when the server computed it (ms since the Unix epoch).
//! - `delta`: `{"status": <document without nodes>|null, "nodes": [changed
//!   node entries], "order": [every node id, in order], "at_ms": ...}`.
//! - `action`: an [`ActionEvent`].

use axum::response::sse::{Event, KeepAlive, Sse};
use client::report::StatusReport;
use futures_util::stream::Stream;
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};

/// How often the status is looked at while a page listens (less often when
/// computing it takes long, see [`DUTY`]).
pub const TICK: Duration = Duration::from_millis(250);
/// Pause after computing the status, in multiples of the time it took.
const DUTY: u32 = 4;
/// Action events a slow page may fall behind by before it skips some.
const ACTION_BACKLOG: usize = 64;

/// One action, as the API answers it and as the event stream shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ActionEvent {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// `drain`, `cancel-drain`, `scrub`, `forget`, `rebalance`.
    pub action: &'static str,
    pub node: Option<String>,
    pub ok: bool,
    pub message: String,
}

/// The status as last computed, shared by every stream.
#[derive(Clone)]
pub struct Events {
    status: watch::Receiver<Option<Arc<(u64, Value)>>>,
    actions: broadcast::Sender<ActionEvent>,
    /// Pages listening now: the status is computed only while any does.
    listeners: Arc<AtomicUsize>,
}

/// Counts one listening page while it lives.
struct Listening(Arc<AtomicUsize>);

impl Drop for Listening {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Events {
    /// Starts the status task for `coord`; it stops when `Events` (every
    /// clone) is dropped.
    pub fn start(coord: Arc<coord::Coord>) -> Events {
        let (tx, rx) = watch::channel(None);
        let (actions, _) = broadcast::channel(ACTION_BACKLOG);
        let listeners = Arc::new(AtomicUsize::new(0));
        let listening = listeners.clone();
        tokio::spawn(async move {
            let mut pause = TICK;
            loop {
                tokio::time::sleep(pause).await;
                if tx.is_closed() {
                    return;
                }
                if listening.load(Ordering::Relaxed) == 0 {
                    continue;
                }
                let c = coord.clone();
                let started = std::time::Instant::now();
                let doc = tokio::task::spawn_blocking(move || {
                    serde_json::to_value(StatusReport::from(&coord::cmd::status::status(&c))).ok()
                })
                .await
                .ok()
                .flatten();
                // The status walks the whole catalog under the coordinator's
                // lock: in a huge namespace look less often, so a page left
                // open takes at most a fifth of the coordinator's time.
                pause = TICK.max(started.elapsed() * DUTY);
                if let Some(doc) = doc {
                    tx.send_replace(Some(Arc::new((coord::cmd::now_ms(), doc))));
                }
            }
        });
        Events {
            status: rx,
            actions,
            listeners,
        }
    }

    /// Tells every open page about an action.
    pub fn action(&self, ev: ActionEvent) {
        let _ = self.actions.send(ev);
    }

    /// The stream of one page.
    pub fn stream(&self) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
        self.listeners.fetch_add(1, Ordering::Relaxed);
        let st = Stream1 {
            _listening: Listening(self.listeners.clone()),
            status: self.status.clone(),
            actions: self.actions.subscribe(),
            nodes: None,
            rest: None,
        };
        let s = futures_util::stream::unfold(st, |mut st| async move {
            let ev = st.next().await;
            Some((Ok(ev), st))
        });
        Sse::new(s).keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
    }
}

/// What one page was last sent.
struct Stream1 {
    _listening: Listening,
    status: watch::Receiver<Option<Arc<(u64, Value)>>>,
    actions: broadcast::Receiver<ActionEvent>,
    /// Node entries by id, as sent.
    nodes: Option<HashMap<String, Value>>,
    /// The document without its nodes, as sent.
    rest: Option<Value>,
}

impl Stream1 {
    async fn next(&mut self) -> Event {
        loop {
            // The first status goes out as soon as there is one.
            if self.nodes.is_none() {
                self.status.mark_changed();
            }
            tokio::select! {
                r = self.actions.recv() => match r {
                    Ok(ev) => return json_event("action", &ev),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    // No sender: the server is going away; only status left.
                    Err(broadcast::error::RecvError::Closed) => {
                        std::future::pending::<()>().await;
                    }
                },
                r = self.status.changed() => {
                    if r.is_err() {
                        std::future::pending::<()>().await;
                    }
                    let Some(doc) = self.status.borrow_and_update().clone() else { continue };
                    if let Some((name, v)) = self.diff(doc.0, &doc.1) {
                        return json_event(name, &v);
                    }
                }
            }
        }
    }

    /// The event that brings the page from what it was sent to `doc`, if
    /// anything changed.
    fn diff(&mut self, at_ms: u64, doc: &Value) -> Option<(&'static str, Value)> {
        let mut rest = doc.clone();
        let nodes: Vec<Value> = match rest.as_object_mut().and_then(|o| o.remove("nodes")) {
            Some(Value::Array(a)) => a,
            _ => vec![],
        };
        let id = |n: &Value| n["id"].as_str().unwrap_or_default().to_string();
        let Some(sent) = &mut self.nodes else {
            self.nodes = Some(nodes.iter().map(|n| (id(n), n.clone())).collect());
            self.rest = Some(rest);
            let mut full = doc.clone();
            full["at_ms"] = at_ms.into();
            return Some(("status", full));
        };
        let changed: Vec<&Value> = nodes
            .iter()
            .filter(|n| sent.get(&id(n)) != Some(n))
            .collect();
        let order: Vec<String> = nodes.iter().map(id).collect();
        let same_set = order.len() == sent.len();
        let rest_changed = self.rest.as_ref() != Some(&rest);
        if changed.is_empty() && same_set && !rest_changed {
            return None;
        }
        let ev = (
            "delta",
            serde_json::json!({
                "status": if rest_changed { rest.clone() } else { Value::Null },
                "nodes": changed,
                "order": order,
                "at_ms": at_ms,
            }),
        );
        *sent = nodes.iter().map(|n| (id(n), n.clone())).collect();
        self.rest = Some(rest);
        Some(ev)
    }
}

fn json_event(name: &str, v: &impl serde::Serialize) -> Event {
    Event::default()
        .event(name)
        .data(serde_json::to_string(v).unwrap_or_else(|_| "null".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stream() -> Stream1 {
        let (_tx, rx) = watch::channel(None);
        let (atx, arx) = broadcast::channel(1);
        drop(atx);
        Stream1 {
            _listening: Listening(Arc::new(AtomicUsize::new(1))),
            status: rx,
            actions: arx,
            nodes: None,
            rest: None,
        }
    }

    #[test]
    fn the_whole_status_once_then_only_what_changed() {
        let mut s = stream();
        let a =
            json!({"files": 1, "nodes": [{"id": "n1", "chunks": 3}, {"id": "n2", "chunks": 4}]});
        let (name, v) = s.diff(10, &a).unwrap();
        assert_eq!(name, "status");
        assert_eq!(v["nodes"][1]["chunks"], 4);
        assert_eq!(v["at_ms"], 10);
        assert!(s.diff(11, &a).is_none(), "nothing changed, nothing sent");
        // One node changes: only it goes out, with the order of all.
        let b =
            json!({"files": 1, "nodes": [{"id": "n1", "chunks": 3}, {"id": "n2", "chunks": 5}]});
        let (name, v) = s.diff(12, &b).unwrap();
        assert_eq!(name, "delta");
        assert_eq!(v["nodes"], json!([{"id": "n2", "chunks": 5}]));
        assert_eq!(v["order"], json!(["n1", "n2"]));
        assert_eq!(v["status"], Value::Null);
        // The rest changes, a node goes: the rest is sent, the order shrinks.
        let c = json!({"files": 2, "nodes": [{"id": "n1", "chunks": 3}]});
        let (_, v) = s.diff(13, &c).unwrap();
        assert_eq!(v["status"], json!({"files": 2}));
        assert_eq!(v["nodes"], json!([]));
        assert_eq!(v["order"], json!(["n1"]));
    }
}
