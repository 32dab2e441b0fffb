//! The coordinator's accept loop, request dispatch and background monitor.

use crate::cmd;
use crate::config::CoordConfig;
use crate::error::{Error, Result};
use crate::session::{self, Origin};
use crate::state::Coord;
use protocol::handshake::{self, Acceptor, KeyStore, Peer, Role};
use protocol::{Connection, CoordRequest, CoordResponse, Secret};
use std::future::Future;
use std::pin::Pin;
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
    coord.start_group().await?;
    let mut tasks = protocol::server::Tasks::default();
    tasks.spawn(monitor(coord.clone(), tasks.stop_signal()));
    tasks.spawn(crate::repair::run::run(coord.clone(), tasks.stop_signal()));
    tasks.spawn(crate::rebalance::run::run(
        coord.clone(),
        tasks.stop_signal(),
    ));
    for addr in coord.config().nodes.clone() {
        let stop = tasks.stop_signal();
        tasks.spawn(session::dial_loop(coord.clone(), addr, stop));
    }
    tracing::info!(
        listen = %listener.local_addr()?,
        cluster = %coord.cluster(),
        data = %coord.config().data_dir.display(),
        secured = coord.config().secured(),
        read_only = coord.config().read_only,
        replication = coord.config().replication,
        scheme = %coord.config().scheme,
        ha = coord.config().ha,
        chunk_size = coord.config().chunk_size,
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
        (coord.config().heartbeat / 4).clamp(Duration::from_millis(20), Duration::from_secs(1));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // Liveness, expiry and deletes are the leader's (a group's followers
        // have no sessions and must not judge the nodes).
        if coord.leading().is_none() {
            continue;
        }
        let now = Instant::now();
        {
            let mut guard = coord.lock();
            let st = guard.parts();
            for (node, died) in st.members.check(now, coord.config()) {
                st.repairs.node_died(&node, died);
            }
            let window = coord.config().delete_grace.max(Duration::from_secs(60));
            st.reports.expire(now, window);
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
        let key = *self.0.lock().catalog().keys().get(name)?;
        Secret::new(key.to_vec()).ok()
    }
}

/// Who may send a request. A request declares one or more; a peer that
/// matches none is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// A node holding the internal secret (its session).
    Node,
    /// Any client: a client key, or the operator.
    Client,
    /// The operator: the internal secret, not a client key.
    Admin,
    /// Another member of this coordinator group (the internal secret).
    Coord,
}

impl Access {
    /// The name the trust table in ARCHITECTURE.md uses.
    pub fn name(self) -> &'static str {
        match self {
            Access::Node => "node",
            Access::Client => "client",
            Access::Admin => "admin",
            Access::Coord => "coord",
        }
    }
}

/// What a request declares next to its handler: its metric label and who
/// may send it.
#[derive(Debug, Clone, Copy)]
pub struct Declared {
    pub label: &'static str,
    pub access: &'static [Access],
}

const NODE: &[Access] = &[Access::Node];
const CLIENT: &[Access] = &[Access::Client];
const ADMIN: &[Access] = &[Access::Admin];
const COORD: &[Access] = &[Access::Coord];

type Reply<'a> = Pin<Box<dyn Future<Output = Result<CoordResponse>> + Send + 'a>>;

/// What serving a request means: an answer, or (registration) the
/// connection becomes a node's session.
enum Handler<'a> {
    Reply(Reply<'a>),
    Session(Box<protocol::Register>),
}

fn reply<'a>(f: impl Future<Output = Result<CoordResponse>> + Send + 'a) -> Handler<'a> {
    Handler::Reply(Box::pin(f))
}

/// The request table: every request, who may send it, its label and its
/// handler, in one exhaustive match (a new request does not compile until
/// it is declared here). Nothing runs before [`permits`] has said yes: the
/// handler is a future, polled only after the check.
fn route<'a>(coord: &'a Arc<Coord>, owner: &'a str, req: CoordRequest) -> (Declared, Handler<'a>) {
    let d = |label, access| Declared { label, access };
    match req {
        CoordRequest::Register(reg) => (d("register", NODE), Handler::Session(Box::new(reg))),
        CoordRequest::PlanPut {
            name,
            size,
            force,
            scheme,
            fit,
        } => (
            d("plan", CLIENT),
            reply(async move {
                cmd::put::plan(coord, name, size, force, scheme, fit, owner)
                    .map(CoordResponse::Plan)
            }),
        ),
        CoordRequest::CommitPut(c) => (
            d("commit", CLIENT),
            reply(async move {
                cmd::put::commit(coord, c)
                    .await
                    .map(CoordResponse::Committed)
            }),
        ),
        CoordRequest::ReplaceTarget {
            upload_id,
            chunk,
            failed,
        } => (
            d("replace_target", CLIENT),
            reply(async move {
                cmd::put::replace(coord, upload_id, chunk, failed).map(CoordResponse::Target)
            }),
        ),
        CoordRequest::AbortPut { upload_id } => (
            d("abort", CLIENT),
            reply(async move { cmd::put::abort(coord, upload_id).map(|_| CoordResponse::Aborted) }),
        ),
        CoordRequest::Lookup { name } => (
            d("lookup", CLIENT),
            reply(async move { cmd::read::lookup(coord, &name).map(CoordResponse::File) }),
        ),
        CoordRequest::List { prefix } => (
            d("list", CLIENT),
            reply(async move { Ok(CoordResponse::Files(cmd::read::list(coord, &prefix))) }),
        ),
        CoordRequest::ListPage {
            prefix,
            after,
            limit,
        } => (
            d("list_page", CLIENT),
            reply(async move {
                Ok(CoordResponse::Files(cmd::read::list_page(
                    coord,
                    &prefix,
                    after.as_deref(),
                    limit,
                )))
            }),
        ),
        CoordRequest::Concat { name, parts, attrs } => (
            d("concat", CLIENT),
            reply(async move {
                cmd::put::concat(coord, name, parts, attrs)
                    .await
                    .map(CoordResponse::Committed)
            }),
        ),
        CoordRequest::CopyFile {
            src,
            dst,
            range,
            attrs,
            force,
        } => (
            d("copy", CLIENT),
            reply(async move {
                cmd::copy::copy(coord, src, dst, range, attrs, force, owner)
                    .await
                    .map(CoordResponse::Committed)
            }),
        ),
        CoordRequest::Remove { name } => (
            d("remove", CLIENT),
            reply(async move {
                cmd::remove::remove(coord, name).await?;
                Ok(CoordResponse::Removed)
            }),
        ),
        CoordRequest::Status => (
            d("status", CLIENT),
            reply(async move { Ok(CoordResponse::Status(Box::new(cmd::status::status(coord)))) }),
        ),
        CoordRequest::Fsck { names, what_if } => (
            d("fsck", CLIENT),
            reply(async move { cmd::fsck::fsck(coord, names, what_if).map(CoordResponse::Fsck) }),
        ),
        CoordRequest::FsckPage {
            after,
            limit,
            what_if,
        } => (
            d("fsck_page", CLIENT),
            reply(async move {
                cmd::fsck::fsck_page(coord, after, limit, what_if).map(CoordResponse::Fsck)
            }),
        ),
        CoordRequest::ReportBad {
            chunk,
            node,
            reason,
        } => (
            d("report_bad", CLIENT),
            reply(async move {
                cmd::maintain::report_bad(coord, chunk, node, &reason).map(|_| CoordResponse::Done)
            }),
        ),
        CoordRequest::KeyCreate { name } => (
            d("key_create", ADMIN),
            reply(async move { cmd::keys::create(coord, name).await.map(CoordResponse::Key) }),
        ),
        CoordRequest::KeyRevoke { name } => (
            d("key_revoke", ADMIN),
            reply(async move {
                cmd::keys::revoke(coord, name)
                    .await
                    .map(|_| CoordResponse::Done)
            }),
        ),
        CoordRequest::KeyList => (
            d("key_list", ADMIN),
            reply(async move { Ok(CoordResponse::Keys(cmd::keys::list(coord))) }),
        ),
        CoordRequest::Drain { node, cancel } => (
            d("drain", ADMIN),
            reply(async move {
                cmd::maintain::drain(coord, node, cancel)
                    .await
                    .map(|_| CoordResponse::Done)
            }),
        ),
        CoordRequest::Forget { node } => (
            d("forget", ADMIN),
            reply(async move {
                cmd::maintain::forget(coord, node)
                    .await
                    .map(|_| CoordResponse::Done)
            }),
        ),
        CoordRequest::Scrub { node } => (
            d("scrub", ADMIN),
            reply(async move { cmd::maintain::scrub(coord, node).map(|_| CoordResponse::Done) }),
        ),
        CoordRequest::Rebalance { start } => (
            d("rebalance", ADMIN),
            reply(
                async move { cmd::maintain::rebalance(coord, start).map(CoordResponse::Rebalance) },
            ),
        ),
        CoordRequest::Raft { kind, body } => (
            d("raft", COORD),
            reply(async move {
                let group = coord.group().ok_or_else(|| {
                    Error::BadRequest("this coordinator is not a member of a group".into())
                })?;
                Ok(CoordResponse::Raft(group.serve_rpc(kind, &body).await))
            }),
        ),
        CoordRequest::Coordinators => (
            d("coordinators", CLIENT),
            reply(async move {
                let group = coord.group().ok_or_else(|| {
                    Error::BadRequest(
                        "this is a single coordinator, not a group (started without --peers)"
                            .into(),
                    )
                })?;
                Ok(CoordResponse::Coordinators(group.status()))
            }),
        ),
        CoordRequest::Incidents { id } => (
            d("incidents", CLIENT),
            reply(async move { Ok(CoordResponse::Incidents(cmd::incidents::list(coord, id))) }),
        ),
        CoordRequest::Retag => (
            d("retag", ADMIN),
            reply(async move {
                crate::tags::retag_untagged(coord)
                    .await
                    .map(|(chunks, failed)| CoordResponse::Retagged { chunks, failed })
            }),
        ),
        CoordRequest::Ping => (
            d("ping", &[Access::Node, Access::Client]),
            reply(async move {
                Ok(CoordResponse::Pong {
                    cluster: coord.cluster(),
                    seq: coord.seq(),
                })
            }),
        ),
        CoordRequest::Rename { from, to, replace } => (
            d("rename", CLIENT),
            reply(async move {
                cmd::namespace::rename(coord, from, to, replace)
                    .await
                    .map(|_| CoordResponse::Done)
            }),
        ),
        CoordRequest::SetAttrs { name, attrs } => (
            d("set_attrs", CLIENT),
            reply(async move {
                cmd::namespace::set_attrs(coord, name, attrs)
                    .await
                    .map(|_| CoordResponse::Done)
            }),
        ),
        CoordRequest::MakeEntry { name, attrs } => (
            d("make_entry", CLIENT),
            reply(async move {
                cmd::namespace::make_entry(coord, name, attrs)
                    .await
                    .map(|_| CoordResponse::Done)
            }),
        ),
    }
}

/// Whether `peer` may send a request declaring `access`. Deny by default:
/// a request that declares nobody is refused, and so is a peer that matches
/// none of the declared roles. Without a secret the cluster is a trusted
/// loopback one and roles are only claimed: anyone is an operator.
fn permits(peer: &Peer, access: &[Access], secured: bool) -> std::result::Result<(), String> {
    let is_node = peer.role == Role::Node || peer.role == Role::Coord;
    let admin = !is_node && (!secured || peer.is(Role::Admin, true));
    let ok = |a: &Access| match a {
        Access::Node => peer.is(Role::Node, secured),
        Access::Client => !is_node,
        Access::Admin => admin,
        Access::Coord => peer.is(Role::Coord, secured),
    };
    if access.iter().any(ok) {
        return Ok(());
    }
    Err(if access.is_empty() {
        "this request is open to nobody".into()
    } else if access == NODE {
        "only a node holding the cluster secret may register".into()
    } else if access == COORD {
        "only a member of the coordinator group may send its messages".into()
    } else if is_node {
        "nodes may only register".into()
    } else {
        "this operation needs the cluster secret (--secret-file), not a client key".into()
    })
}

async fn handle(mut conn: Connection, coord: Arc<Coord>, mut stop: watch::Receiver<bool>) {
    let policy = Acceptor {
        secret: coord.config().secret.clone(),
        cluster: coord.cluster_known(),
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
    let secured = coord.config().secured();
    while let Some(req) = conn.next_request::<CoordRequest>(&mut stop).await {
        if let (Some(name), Some(proved)) = (peer.key_name.as_deref(), proved_key) {
            if cmd::keys::current(&coord, name) != proved {
                tracing::warn!(key = %name, "refused: the client key was revoked; closing its connection");
                let why = format!("client key {name} was revoked");
                let _ = conn.reply_err(Error::Forbidden(why).to_wire()).await;
                return;
            }
        }
        // A group member serves only while it leads (the group's own
        // messages and `Coordinators`/`Ping` aside), and only once a
        // majority has confirmed that it still does (a lease of half the
        // election timeout): a deposed leader answers nothing.
        let mut confirm = false;
        if let Some(group) = coord.group() {
            let own = matches!(
                req,
                CoordRequest::Raft { .. } | CoordRequest::Coordinators | CoordRequest::Ping
            );
            if !own && group.leading().is_none() {
                let r = CoordResponse::NotLeader {
                    leader: group.leader_addr(),
                };
                if conn.reply(&r).await.is_err() {
                    return;
                }
                continue;
            }
            confirm = !own && !matches!(req, CoordRequest::Register(_));
        }
        let (declared, handler) = route(&coord, &owner, req);
        if let Err(why) = permits(&peer, declared.access, secured) {
            tracing::warn!(role = ?peer.role, key = ?peer.key_name, op = declared.label, "refused: {why}");
            if conn
                .reply_err(Error::Forbidden(why).to_wire())
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        if confirm {
            if let Some(Err(e)) = match coord.group() {
                Some(g) => Some(g.confirm_leader().await),
                None => None,
            } {
                let sent = match e {
                    Error::NotLeader { leader } => {
                        conn.reply(&CoordResponse::NotLeader { leader }).await
                    }
                    e => conn.reply_err(e.to_wire()).await,
                };
                if sent.is_err() {
                    return;
                }
                continue;
            }
        }
        let started = Instant::now();
        let res = match handler {
            Handler::Session(reg) => {
                session::serve(coord.clone(), conn, *reg, Origin::Node, stop).await;
                return;
            }
            Handler::Reply(f) => f.await,
        };
        crate::metrics::request(declared.label, started, res.is_ok());
        let sent = match res {
            Ok(r) => conn.reply(&r).await,
            // Leadership moved while the request ran: nothing was done.
            Err(Error::NotLeader { leader }) => {
                conn.reply(&CoordResponse::NotLeader { leader }).await
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{ChunkId, CommitPut, FileName, NodeId, NodeStats, Register};

    /// One request of every kind. The match below has no wildcard, so a new
    /// request kind does not compile until it is listed here, and so until
    /// its declaration is checked against the trust table.
    fn every_request() -> Vec<CoordRequest> {
        let name = FileName::new("a").unwrap();
        let node = NodeId::new("n1").unwrap();
        let all = vec![
            CoordRequest::Register(Register {
                node_id: node.clone(),
                addr: String::new(),
                stats: NodeStats::default(),
                inventory: Vec::new(),
                domain: String::new(),
                spare: false,
                cluster: None,
                seq_seen: 0,
                set_aside: Vec::new(),
                node_uuid: None,
            }),
            CoordRequest::PlanPut {
                name: name.clone(),
                size: 0,
                force: false,
                scheme: None,
                fit: false,
            },
            CoordRequest::CommitPut(CommitPut {
                upload_id: 0,
                stripes: Vec::new(),
                attrs: Default::default(),
            }),
            CoordRequest::AbortPut { upload_id: 0 },
            CoordRequest::ReplaceTarget {
                upload_id: 0,
                chunk: ChunkId::random(),
                failed: node.clone(),
            },
            CoordRequest::Lookup { name: name.clone() },
            CoordRequest::List {
                prefix: String::new(),
            },
            CoordRequest::ListPage {
                prefix: String::new(),
                after: None,
                limit: 1,
            },
            CoordRequest::Remove { name: name.clone() },
            CoordRequest::Status,
            CoordRequest::Fsck {
                names: Vec::new(),
                what_if: Vec::new(),
            },
            CoordRequest::FsckPage {
                after: None,
                limit: 1,
                what_if: Vec::new(),
            },
            CoordRequest::Drain {
                node: node.clone(),
                cancel: false,
            },
            CoordRequest::Forget { node: node.clone() },
            CoordRequest::Scrub { node: None },
            CoordRequest::ReportBad {
                chunk: ChunkId::random(),
                node: node.clone(),
                reason: String::new(),
            },
            CoordRequest::KeyCreate {
                name: String::new(),
            },
            CoordRequest::KeyRevoke {
                name: String::new(),
            },
            CoordRequest::KeyList,
            CoordRequest::Concat {
                name: name.clone(),
                parts: Vec::new(),
                attrs: Default::default(),
            },
            CoordRequest::CopyFile {
                src: name.clone(),
                dst: name.clone(),
                range: None,
                attrs: None,
                force: false,
            },
            CoordRequest::Rebalance { start: false },
            CoordRequest::Ping,
            CoordRequest::Raft {
                kind: protocol::RaftKind::Vote,
                body: Vec::new(),
            },
            CoordRequest::Coordinators,
            CoordRequest::Incidents { id: None },
            CoordRequest::Rename {
                from: name.clone(),
                to: name.clone(),
                replace: false,
            },
            CoordRequest::SetAttrs {
                name: name.clone(),
                attrs: Default::default(),
            },
            CoordRequest::MakeEntry {
                name: name.clone(),
                attrs: Default::default(),
            },
            CoordRequest::Retag,
        ];
        for r in &all {
            match r {
                CoordRequest::Register(_)
                | CoordRequest::PlanPut { .. }
                | CoordRequest::CommitPut(_)
                | CoordRequest::AbortPut { .. }
                | CoordRequest::ReplaceTarget { .. }
                | CoordRequest::Lookup { .. }
                | CoordRequest::List { .. }
                | CoordRequest::ListPage { .. }
                | CoordRequest::Remove { .. }
                | CoordRequest::Status
                | CoordRequest::Fsck { .. }
                | CoordRequest::FsckPage { .. }
                | CoordRequest::Drain { .. }
                | CoordRequest::Forget { .. }
                | CoordRequest::Scrub { .. }
                | CoordRequest::ReportBad { .. }
                | CoordRequest::KeyCreate { .. }
                | CoordRequest::KeyRevoke { .. }
                | CoordRequest::KeyList
                | CoordRequest::Concat { .. }
                | CoordRequest::CopyFile { .. }
                | CoordRequest::Rebalance { .. }
                | CoordRequest::Ping
                | CoordRequest::Raft { .. }
                | CoordRequest::Coordinators
                | CoordRequest::Incidents { .. }
                | CoordRequest::Rename { .. }
                | CoordRequest::SetAttrs { .. }
                | CoordRequest::MakeEntry { .. }
                | CoordRequest::Retag => {}
            }
        }
        all
    }

    /// The name of a request kind as the trust table writes it.
    fn kind(r: &CoordRequest) -> String {
        let dbg = format!("{r:?}");
        dbg.split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_string()
    }

    /// ARCHITECTURE.md's "Coordinator requests" table: kind -> roles.
    fn trust_table(section: &str) -> std::collections::BTreeMap<String, Vec<String>> {
        let doc =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../ARCHITECTURE.md"))
                .unwrap();
        let start = doc.find(section).expect("the trust table section");
        doc[start..]
            .lines()
            .skip(1)
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let kind = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let roles = cells
                    .get(2)?
                    .split(',')
                    .map(|r| r.trim().to_string())
                    .collect();
                Some((kind.to_string(), roles))
            })
            .collect()
    }

    #[tokio::test]
    async fn every_request_declares_the_roles_of_the_trust_table() {
        let dir = tempfile::tempdir().unwrap();
        let coord = Coord::open(CoordConfig::new(dir.path().to_path_buf())).unwrap();
        let table = trust_table("**Coordinator requests**");
        let requests = every_request();
        assert_eq!(
            table.len(),
            requests.len(),
            "one row per request kind: {table:?}"
        );
        for r in requests {
            let k = kind(&r);
            let (declared, _) = route(&coord, "test", r);
            let roles: Vec<String> = declared
                .access
                .iter()
                .map(|a| a.name().to_string())
                .collect();
            assert_eq!(table.get(&k), Some(&roles), "{k}: declared {roles:?}");
        }
    }

    #[test]
    fn nothing_declared_means_nobody() {
        let peer = Peer {
            role: Role::Admin,
            key_name: None,
            proved: true,
            cluster: None,
        };
        assert!(permits(&peer, &[], false).is_err());
        assert!(permits(&peer, ADMIN, true).is_ok());
        assert!(permits(&peer, NODE, true).is_err());
    }
}
