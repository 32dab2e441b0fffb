//! The node's long-lived session with the coordinator: registration with the
//! full inventory, heartbeats, and commands coming back.
//!
//! Either side may open it: a node started with `--coord` dials (and keeps
//! redialling), and a coordinator started with `--nodes` attaches to the
//! nodes it was given. After the first exchange both cases run the same loop.

use crate::ctx::Ctx;
use crate::error::Result;
use protocol::handshake::{self, Credential, Role};
use protocol::{Connection, CoordRequest, CoordResponse, Register, RegisterAck, SessionMsg};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

const MAX_BACKOFF: Duration = Duration::from_secs(2);

fn register(ctx: &Ctx) -> Register {
    let (cluster, seq_seen, node_uuid) = {
        let id = ctx.identity.lock().unwrap_or_else(|p| p.into_inner());
        (id.cluster, id.seq_seen, id.node.clone())
    };
    Register {
        node_id: ctx.config.id.clone(),
        addr: ctx.config.advertise.clone(),
        stats: ctx.stats(),
        inventory: ctx.store.inventory(),
        domain: ctx.config.domain.clone(),
        spare: ctx.config.spare,
        cluster,
        seq_seen,
        set_aside: ctx.store.set_aside_list(),
        node_uuid: Some(node_uuid),
    }
}

/// Checks the coordinator's answer against this node's cluster (recording
/// it on first join) and its term against the highest seen (fencing a
/// deposed leader).
fn accept_ack(ctx: &Ctx, ack: &RegisterAck) -> Result<()> {
    let res = {
        let mut id = ctx.identity.lock().unwrap_or_else(|p| p.into_inner());
        id.accept(ack.cluster, ack.catalog_seq)
            .and_then(|_| id.accept_term(ack.term))
    };
    if let Err(e) = &res {
        tracing::error!(error = %e, "refusing the coordinator");
    }
    res
}

/// Keeps a session with the coordinator open until `stop`. `coords` is one
/// address or a coordinator group's members (`a,b,c`): the node follows a
/// follower's pointer to the leader, and tries the next member when one is
/// down.
pub(crate) async fn dial_loop(ctx: Arc<Ctx>, coords: String, mut stop: watch::Receiver<bool>) {
    let list: Vec<String> = coords
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let mut next = 0usize;
    let mut hint: Option<String> = None;
    let mut backoff = Duration::from_millis(100);
    let mut last_err = String::new();
    loop {
        let coord = hint.take().unwrap_or_else(|| {
            list.get(next % list.len().max(1))
                .cloned()
                .unwrap_or_default()
        });
        match open(&ctx, &coord).await {
            Ok((conn, ack)) => {
                tracing::info!(%coord, term = ack.term, "registered with coordinator");
                backoff = Duration::from_millis(100);
                last_err.clear();
                match run(conn, &ctx, &ack, &mut stop).await {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(%coord, error = %e, "coordinator session lost"),
                }
                // Look for the (maybe new) leader at once.
                next += 1;
                continue;
            }
            Err(crate::Error::NotLeader { leader }) => {
                tracing::debug!(%coord, ?leader, "not the coordinator leader");
                match leader {
                    Some(l) if l != coord => {
                        hint = Some(l);
                        continue;
                    }
                    _ => next += 1,
                }
            }
            Err(e) => {
                next += 1;
                let msg = e.to_string();
                if msg != last_err {
                    if refused(&e) {
                        tracing::error!(%coord, "the coordinator refused this node: {msg}; retrying");
                    } else {
                        tracing::warn!(%coord, error = %msg, "cannot reach coordinator, retrying");
                    }
                    last_err = msg;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        // With a group to go through, move on quickly.
        let max = if list.len() > 1 {
            Duration::from_millis(500)
        } else {
            MAX_BACKOFF
        };
        backoff = (backoff * 2).min(max);
    }
}

/// Whether the coordinator answered with a refusal (rather than not at all).
fn refused(e: &crate::Error) -> bool {
    matches!(
        e,
        crate::Error::Protocol(protocol::Error::Remote(w)) if w.kind == protocol::ErrorKind::Forbidden
    )
}

/// A coordinator that does not answer registration this soon is skipped
/// (a paused group member accepts connections and says nothing).
const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

async fn open(ctx: &Ctx, coord: &str) -> Result<(Connection, RegisterAck)> {
    match tokio::time::timeout(OPEN_TIMEOUT, open_inner(ctx, coord)).await {
        Ok(r) => r,
        Err(_) => Err(protocol::Error::Timeout("registering with the coordinator").into()),
    }
}

async fn open_inner(ctx: &Ctx, coord: &str) -> Result<(Connection, RegisterAck)> {
    let mut conn = Connection::connect(coord).await?;
    let cred = ctx.config.secret.clone().map(Credential::Internal);
    handshake::initiate(&mut conn, Role::Node, cred.as_ref(), ctx.cluster()).await?;
    conn.send(&CoordRequest::Register(register(ctx))).await?;
    match conn.recv_reply::<CoordResponse>().await? {
        CoordResponse::Registered(ack) => {
            accept_ack(ctx, &ack)?;
            Ok((conn, ack))
        }
        CoordResponse::NotLeader { leader } => Err(crate::Error::NotLeader { leader }),
        _ => Err(protocol::Error::Unexpected {
            expected: "Registered",
            got: "another response",
        }
        .into()),
    }
}

/// The coordinator attached over `conn` (it sent `NodeRequest::Attach`).
pub(crate) async fn attached(mut conn: Connection, ctx: Arc<Ctx>, mut stop: watch::Receiver<bool>) {
    let res: Result<()> = async {
        conn.reply(&register(&ctx)).await?;
        let ack: RegisterAck = conn.recv_reply().await?;
        accept_ack(&ctx, &ack)?;
        tracing::info!("coordinator attached");
        run(conn, &ctx, &ack, &mut stop).await
    }
    .await;
    if let Err(e) = res {
        tracing::warn!(error = %e, "coordinator session ended");
    }
}

/// How long a coordinator may stay silent (no answer to heartbeats) before
/// the node drops the session and looks for a leader: a paused leader's
/// socket stays open, so silence is the only sign.
fn silence_limit(heartbeat_ms: u64) -> Duration {
    Duration::from_millis(heartbeat_ms.saturating_mul(5)).max(Duration::from_secs(3))
}

/// Notes that the coordinator spoke (any message counts).
fn heard(m: SessionMsg, last: &mut tokio::time::Instant) -> SessionMsg {
    *last = tokio::time::Instant::now();
    m
}

/// Whether orders of a session running under `term` may still be obeyed:
/// not once this node has seen a higher term (another leader).
fn fenced(ctx: &Ctx, term: u64) -> Option<u64> {
    let seen = ctx
        .identity
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .term_seen;
    (seen > term).then_some(seen)
}

/// Heartbeats every `heartbeat_ms` and executes commands until the
/// coordinator goes away (error) or the node stops (`Ok`).
async fn run(
    mut conn: Connection,
    ctx: &Arc<Ctx>,
    ack: &RegisterAck,
    stop: &mut watch::Receiver<bool>,
) -> Result<()> {
    let (heartbeat_ms, term) = (ack.heartbeat_ms, ack.term);
    let silence = silence_limit(heartbeat_ms);
    let mut last_heard = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(heartbeat_ms.clamp(10, 60_000)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Only one session forwards the node's reports; a second concurrent
    // session (dialled and attached at once) just heartbeats.
    let mut events = ctx.events_rx.try_lock().ok();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if last_heard.elapsed() > silence {
                    return Err(crate::Error::BadRequest(format!(
                        "the coordinator answered nothing for {:.1} s (paused or cut off?)",
                        last_heard.elapsed().as_secs_f64()
                    )));
                }
                let stats = ctx.stats();
                crate::metrics::local(&stats);
                conn.send(&SessionMsg::Heartbeat(stats)).await?;
            }
            Some(ev) = async { match events.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                conn.send(&ev).await?;
            }
            msg = conn.recv::<SessionMsg>() => match heard(msg?, &mut last_heard) {
                SessionMsg::Beat { .. } => {}
                order if fenced(ctx, term).is_some() => {
                    let seen = fenced(ctx, term).unwrap_or_default();
                    tracing::warn!(term, seen, ?order, "refusing an order from a deposed coordinator leader; ending its session");
                    return Err(crate::Error::Deposed { term, seen });
                }
                SessionMsg::Delete(ids) => {
                    // Unlinked before the next message is read: a repair
                    // order for the same chunk that follows must not find
                    // (and vouch for) the copy being deleted.
                    let (n, dirs) = ctx.store.unlink(&ids);
                    tracing::info!(count = n, "deleted chunks on coordinator's request");
                    tokio::spawn(async move {
                        for d in dirs {
                            let _ = crate::store::fsync_dir(d).await;
                        }
                    });
                }
                SessionMsg::Repair(order) => {
                    tokio::spawn(crate::repair::execute(ctx.clone(), order));
                }
                SessionMsg::Verify(id) => ctx.verify_ordered(id),
                SessionMsg::SetAside(ids) => {
                    // Like deletes, done before the next message is read.
                    let n = ctx.store.set_aside(&ids).await;
                    tracing::warn!(count = n, "set aside copies the catalog does not know (kept until the orphan grace period ends)");
                }
                SessionMsg::Reclaim(ids) => {
                    let n = ctx.store.reclaim(&ids).await;
                    tracing::info!(count = n, "reclaimed set-aside copies the catalog needs");
                }
                SessionMsg::Purge(ids) => {
                    let n = ctx.store.purge(&ids).await;
                    tracing::info!(count = n, "purged set-aside copies past their grace period");
                }
                SessionMsg::Scrub => ctx.scrub.request(),
                SessionMsg::Doom(ids) => {
                    // Before the next message, like deletes: the delete
                    // that follows the grace removes the tombstone too.
                    let n = ctx.store.doom(&ids).await;
                    tracing::info!(count = n, "recorded tombstones of removed files' chunks");
                }
                SessionMsg::KeepName(tag) => ctx.store.keep_name(&tag),
                SessionMsg::DropName { name, upto } => ctx.store.drop_name(&name, upto),
                other => tracing::debug!(?other, "ignoring session message"),
            },
            _ = stop.changed() => return Ok(()),
        }
    }
}
