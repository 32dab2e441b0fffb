//! The coordinator's accept loop, request dispatch and background monitor.

use crate::cmd;
use crate::config::CoordConfig;
use crate::error::Result;
use crate::session::{self, Origin};
use crate::state::Coord;
use protocol::handshake;
use protocol::{Connection, CoordRequest, CoordResponse, FileName};
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
    for addr in coord.config.nodes.clone() {
        let stop = tasks.stop_signal();
        tasks.spawn(session::dial_loop(coord.clone(), addr, stop));
    }
    tracing::info!(
        listen = %listener.local_addr()?,
        replication = coord.config.replication,
        parity = coord.config.parity,
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
        }
        cmd::put::expire(&coord, now);
    }
}

async fn handle(mut conn: Connection, coord: Arc<Coord>, mut stop: watch::Receiver<bool>) {
    if let Err(e) = handshake::accept(&mut conn, coord.config.secret.as_ref()).await {
        tracing::warn!(error = %e, "handshake failed, closing connection");
        return;
    }
    while let Some(req) = conn.next_request::<CoordRequest>(&mut stop).await {
        let (op, started) = (op_name(&req), Instant::now());
        let res = match req {
            CoordRequest::Register(reg) => {
                session::serve(coord, conn, reg, Origin::Node, stop).await;
                return;
            }
            CoordRequest::PlanPut { name, size, force } => {
                cmd::put::plan(&coord, name, size, force).map(CoordResponse::Plan)
            }
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
            CoordRequest::Remove { name } => remove(&coord, name).await,
            CoordRequest::Status => Ok(CoordResponse::Status(cmd::status::status(&coord))),
            CoordRequest::Fsck { names, what_if } => {
                cmd::fsck::fsck(&coord, names, what_if).map(CoordResponse::Fsck)
            }
            CoordRequest::Drain { node, cancel } => cmd::maintain::drain(&coord, node, cancel)
                .await
                .map(|_| CoordResponse::Done),
            CoordRequest::Forget { node } => cmd::maintain::forget(&coord, node)
                .await
                .map(|_| CoordResponse::Done),
            CoordRequest::Scrub { node } => {
                cmd::maintain::scrub(&coord, node).map(|_| CoordResponse::Done)
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
    }
}

async fn remove(coord: &Coord, name: FileName) -> Result<CoordResponse> {
    cmd::remove::remove(coord, name).await?;
    Ok(CoordResponse::Removed)
}
