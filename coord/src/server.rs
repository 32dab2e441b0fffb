//! The coordinator's accept loop, request dispatch and background monitor.

use crate::cmd;
use crate::config::CoordConfig;
use crate::error::{Error, Result};
use crate::session::{self, Origin};
use crate::state::Coord;
use protocol::handshake::{self, Acceptor, KeyStore, Peer, Role};
use protocol::{Connection, CoordRequest, CoordResponse, FileName, Secret};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

const MAX_CONNECTIONS: usize = 1024;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the coordinator on `listener` until `shutdown` completes. Every
/// acknowledged change is already in the journal, so stopping loses nothing.
pub async fn run(
    listener: TcpListener,
    config: CoordConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    serve(listener, Coord::open(config)?, shutdown).await
}

/// Like [`run`], on a coordinator opened by the caller: the process that
/// also serves the dashboard shares the same state with it.
pub async fn serve(
    listener: TcpListener,
    coord: Arc<Coord>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let mut tasks = protocol::server::Tasks::default();
    tasks.spawn(monitor(coord.clone(), tasks.stop_signal()));
    tasks.spawn(crate::repair::run(coord.clone(), tasks.stop_signal()));
    tasks.spawn(crate::rebalance::run(coord.clone(), tasks.stop_signal()));
    for addr in coord.config.nodes.clone() {
        let stop = tasks.stop_signal();
        tasks.spawn(session::dial_loop(coord.clone(), addr, stop));
    }
    tracing::info!(
        listen = %listener.local_addr()?,
        cluster = %coord.cluster,
        data = %coord.config.data_dir.display(),
        secured = coord.config.secured(),
        read_only = coord.config.read_only,
        replication = coord.config.replication,
        scheme = %coord.config.scheme,
        ha = coord.config.ha,
        chunk_size = coord.config.chunk_size,
        "coordinator serving"
    );
    let c = coord.clone();
    protocol::server::serve(
        listener,
        MAX_CONNECTIONS,
        DRAIN_TIMEOUT,
        tasks,
        shutdown,
        move |conn, stop| handle(conn, c.clone(), stop),
    )
    .await;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Declares nodes dead and expires abandoned uploads.
async fn monitor(coord: Arc<Coord>, mut stop: watch::Receiver<bool>) {
    let period =
        (coord.config.heartbeat / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let now = Instant::now();
        {
            let mut st = coord.lock();
            for (node, died) in st.members.check(now, &coord.config) {
                st.repairs.node_died(&node, died);
            }
            let window = coord.config.delete_grace.max(Duration::from_secs(60));
            st.reports
                .retain(|_, at| now.saturating_duration_since(*at) < window);
        }
        cmd::put::expire(&coord, now);
        coord.flush_deletes(now);
        session::purge_set_aside(&coord, now);
    }
}

/// Client keys, looked up in the catalog at each handshake, so a revoked
/// key is refused from the next connection on.
struct CatalogKeys(Arc<Coord>);

impl KeyStore for CatalogKeys {
    fn client_key(&self, name: &str) -> Option<Secret> {
        let key = *self.0.lock().catalog.keys.get(name)?;
        Secret::new(key.to_vec()).ok()
    }
}

/// What a peer may ask, by its (proved) role. Without a secret the cluster
/// is a trusted loopback one and roles are only claimed.
fn allowed(peer: &Peer, req: &CoordRequest, secured: bool) -> std::result::Result<(), String> {
    // Unsecured clusters are trusted loopback ones: anyone is an operator.
    let admin = !secured || peer.is(Role::Admin, true);
    match req {
        CoordRequest::Register(_) if peer.is(Role::Node, secured) => Ok(()),
        CoordRequest::Register(_) => {
            Err("only a node holding the cluster secret may register".into())
        }
        _ if peer.role == Role::Node || peer.role == Role::Coord => {
            Err("nodes may only register".into())
        }
        CoordRequest::Drain { .. }
        | CoordRequest::Forget { .. }
        | CoordRequest::Scrub { .. }
        | CoordRequest::KeyCreate { .. }
        | CoordRequest::KeyRevoke { .. }
        | CoordRequest::KeyList
        | CoordRequest::Rebalance { .. }
            if !admin =>
        {
            Err("this operation needs the cluster secret (--secret-file), not a client key".into())
        }
        _ => Ok(()),
    }
}

async fn handle(mut conn: Connection, coord: Arc<Coord>, mut stop: watch::Receiver<bool>) {
    let policy = Acceptor {
        secret: coord.config.secret.clone(),
        cluster: Some(coord.cluster),
        keys: Some(Arc::new(CatalogKeys(coord.clone()))),
        anonymous_clients: false,
    };
    let peer = match handshake::accept(&mut conn, &policy).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "handshake failed, closing connection");
            return;
        }
    };
    drop(policy);
    // The key this connection proved, to notice its revocation.
    let proved_key = peer
        .key_name
        .as_deref()
        .map(|k| cmd::keys::current(&coord, k));
    let owner = match (&peer.key_name, conn.peer()) {
        (Some(k), _) => format!("key {k}"),
        (None, Some(a)) => a.ip().to_string(),
        (None, None) => "unknown".into(),
    };
    let secured = coord.config.secured();
    while let Some(req) = conn.next_request::<CoordRequest>(&mut stop).await {
        if let (Some(name), Some(proved)) = (peer.key_name.as_deref(), proved_key) {
            if cmd::keys::current(&coord, name) != proved {
                tracing::warn!(key = %name, "refused: the client key was revoked; closing its connection");
                let why = format!("client key {name} was revoked");
                let _ = conn.reply_err(Error::Forbidden(why).to_wire()).await;
                return;
            }
        }
        if let Err(why) = allowed(&peer, &req, secured) {
            tracing::warn!(role = ?peer.role, key = ?peer.key_name, "refused: {why}");
            if conn
                .reply_err(Error::Forbidden(why).to_wire())
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let (op, started) = (op_name(&req), Instant::now());
        let res = match req {
            CoordRequest::Register(reg) => {
                session::serve(coord, conn, reg, Origin::Node, stop).await;
                return;
            }
            CoordRequest::PlanPut {
                name,
                size,
                force,
                scheme,
            } => cmd::put::plan(&coord, name, size, force, scheme, false, &owner)
                .map(CoordResponse::Plan),
            CoordRequest::PlanPutFit {
                name,
                size,
                force,
                scheme,
            } => cmd::put::plan(&coord, name, size, force, scheme, true, &owner)
                .map(CoordResponse::Plan),
            CoordRequest::CommitPut(c) => cmd::put::commit(&coord, c)
                .await
                .map(CoordResponse::Committed),
            CoordRequest::ReplaceTarget {
                upload_id,
                chunk,
                failed,
            } => cmd::put::replace(&coord, upload_id, chunk, failed).map(CoordResponse::Target),
            CoordRequest::AbortPut { upload_id } => {
                cmd::put::abort(&coord, upload_id).map(|_| CoordResponse::Aborted)
            }
            CoordRequest::Lookup { name } => {
                cmd::read::lookup(&coord, &name).map(CoordResponse::File)
            }
            CoordRequest::List { prefix } => {
                Ok(CoordResponse::Files(cmd::read::list(&coord, &prefix)))
            }
            CoordRequest::ListPage {
                prefix,
                after,
                limit,
            } => Ok(CoordResponse::Files(cmd::read::list_page(
                &coord,
                &prefix,
                after.as_deref(),
                limit,
            ))),
            CoordRequest::Concat { name, parts, attrs } => {
                cmd::put::concat(&coord, name, parts, attrs)
                    .await
                    .map(CoordResponse::Committed)
            }
            CoordRequest::CopyFile {
                src,
                dst,
                range,
                attrs,
                force,
            } => cmd::copy::copy(&coord, src, dst, range, attrs, force, &owner)
                .await
                .map(CoordResponse::Committed),
            CoordRequest::Remove { name } => remove(&coord, name).await,
            CoordRequest::Status => {
                Ok(CoordResponse::Status(Box::new(cmd::status::status(&coord))))
            }
            CoordRequest::Fsck { names, what_if } => {
                cmd::fsck::fsck(&coord, names, what_if).map(CoordResponse::Fsck)
            }
            CoordRequest::FsckPage {
                after,
                limit,
                what_if,
            } => cmd::fsck::fsck_page(&coord, after, limit, what_if).map(CoordResponse::Fsck),
            CoordRequest::KeyCreate { name } => cmd::keys::create(&coord, name)
                .await
                .map(CoordResponse::Key),
            CoordRequest::KeyRevoke { name } => cmd::keys::revoke(&coord, name)
                .await
                .map(|_| CoordResponse::Done),
            CoordRequest::KeyList => Ok(CoordResponse::Keys(cmd::keys::list(&coord))),
            CoordRequest::Drain { node, cancel } => cmd::maintain::drain(&coord, node, cancel)
                .await
                .map(|_| CoordResponse::Done),
            CoordRequest::Forget { node } => cmd::maintain::forget(&coord, node)
                .await
                .map(|_| CoordResponse::Done),
            CoordRequest::Scrub { node } => {
                cmd::maintain::scrub(&coord, node).map(|_| CoordResponse::Done)
            }
            CoordRequest::Rebalance { start } => {
                cmd::maintain::rebalance(&coord, start).map(CoordResponse::Rebalance)
            }
            CoordRequest::ReportBad {
                chunk,
                node,
                reason,
            } => {
                cmd::maintain::report_bad(&coord, chunk, node, &reason).map(|_| CoordResponse::Done)
            }
        };
        crate::metrics::request(op, started, res.is_ok());
        let sent = match res {
            Ok(r) => conn.reply(&r).await,
            Err(e) => {
                tracing::debug!(error = %e, "request failed");
                conn.reply_err(e.to_wire()).await
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// The operation's label in the request metrics.
fn op_name(req: &CoordRequest) -> &'static str {
    match req {
        CoordRequest::Register(_) => "register",
        CoordRequest::PlanPut { .. } => "plan",
        CoordRequest::CommitPut(_) => "commit",
        CoordRequest::AbortPut { .. } => "abort",
        CoordRequest::ReplaceTarget { .. } => "replace_target",
        CoordRequest::Lookup { .. } => "lookup",
        CoordRequest::List { .. } => "list",
        CoordRequest::Remove { .. } => "remove",
        CoordRequest::Status => "status",
        CoordRequest::Fsck { .. } => "fsck",
        CoordRequest::Drain { .. } => "drain",
        CoordRequest::Forget { .. } => "forget",
        CoordRequest::Scrub { .. } => "scrub",
        CoordRequest::ReportBad { .. } => "report_bad",
        CoordRequest::KeyCreate { .. } => "key_create",
        CoordRequest::KeyRevoke { .. } => "key_revoke",
        CoordRequest::KeyList => "key_list",
        CoordRequest::ListPage { .. } => "list_page",
        CoordRequest::Concat { .. } => "concat",
        CoordRequest::CopyFile { .. } => "copy",
        CoordRequest::PlanPutFit { .. } => "plan",
        CoordRequest::FsckPage { .. } => "fsck_page",
        CoordRequest::Rebalance { .. } => "rebalance",
    }
}

async fn remove(coord: &Coord, name: FileName) -> Result<CoordResponse> {
    cmd::remove::remove(coord, name).await?;
    Ok(CoordResponse::Removed)
}
