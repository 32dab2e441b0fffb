//! The control-path connection to the coordinator.

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use protocol::handshake::{self, Role};
use protocol::{
    ChunkId, ClusterStatus, CommitPut, Connection, CoordRequest, CoordResponse, FileInfo, FileName,
    FileSummary, FsckReport, NodeAddr, NodeId, PutPlan,
};
use std::time::Duration;

pub struct CoordClient {
    conn: Connection,
    addr: String,
    /// How this connection was made: a read that outlives its tokens opens
    /// another like it to renew them.
    cfg: ClientConfig,
    /// Plan puts fitted to a stripe (`PlanPut { fit: true }`; see
    /// [`CoordClient::fit_stripes`]).
    fit_stripes: bool,
}

/// How long a request looks for a coordinator leader (an election after a
/// leader died takes a few seconds) before it gives up with one line.
const LEADER_WAIT: Duration = Duration::from_secs(10);
/// A group member that does not finish the handshake this soon is skipped.
const MEMBER_HANDSHAKE: Duration = Duration::from_secs(2);
/// A group member that does not answer a request this soon is given up.
const MEMBER_ANSWER: Duration = Duration::from_secs(10);

/// Whether a request may be sent again after its connection broke without
/// an answer: reads, and plans (a plan on a coordinator that died is gone
/// with it). A change that may have happened is not repeated.
fn retry_safe(req: &CoordRequest) -> bool {
    matches!(
        req,
        CoordRequest::PlanPut { .. }
            | CoordRequest::Lookup { .. }
            | CoordRequest::List { .. }
            | CoordRequest::ListPage { .. }
            | CoordRequest::Status
            | CoordRequest::Fsck { .. }
            | CoordRequest::FsckPage { .. }
            | CoordRequest::KeyList
            | CoordRequest::Ping
            | CoordRequest::Coordinators
            | CoordRequest::ReportBad { .. }
    )
}

impl CoordClient {
    /// Connects to the coordinator, or to the first member of a group
    /// (`cfg.coord` = `a,b,c`) that answers; requests then follow the
    /// group's pointer to its leader.
    pub async fn connect(cfg: &ClientConfig) -> Result<Self> {
        let addrs = cfg.coord_addrs();
        let mut last = None;
        for addr in &addrs {
            match Self::connect_to(cfg, addr).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::Usage("no coordinator address given (--coord or DFS_COORD)".into())
        }))
    }

    async fn connect_to(cfg: &ClientConfig, addr: &str) -> Result<Self> {
        let addr = addr.to_string();
        let mut conn = match Connection::connect(addr.as_str()).await {
            Ok(c) => c,
            Err(source) => return Err(Error::NoCoordinator { addr, source }),
        };
        // The cluster secret makes an operator (drain, keys...); a client
        // key, or nothing on an unsecured cluster, a client.
        let role = match cfg.cred {
            Some(protocol::Credential::Internal(_)) => Role::Admin,
            _ => Role::Client,
        };
        // A member of a group may be paused (its socket accepts, nothing
        // answers): give up on it soon and try the next.
        let wait = if cfg.coord_addrs().len() > 1 {
            MEMBER_HANDSHAKE
        } else {
            handshake::HANDSHAKE_TIMEOUT
        };
        match tokio::time::timeout(
            wait,
            handshake::initiate(&mut conn, role, cfg.cred.as_ref(), None),
        )
        .await
        {
            Ok(r) => r.map_err(|source| Error::Protocol {
                peer: format!("coordinator {addr}"),
                source,
            })?,
            Err(_) => {
                return Err(Error::Protocol {
                    peer: format!("coordinator {addr}"),
                    source: protocol::Error::Timeout("in the handshake (a paused coordinator?)"),
                })
            }
        };
        Ok(CoordClient {
            conn,
            addr,
            cfg: cfg.clone(),
            fit_stripes: false,
        })
    }

    /// The configuration this connection was made with.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// From now on, plan puts of files smaller than a full stripe over the
    /// stripe's data chunks (`PlanPut { fit: true }`) instead of one short stripe: the
    /// S3 gateway's parts and small objects then cost the scheme's overhead,
    /// not a whole parity per chunk.
    pub fn fit_stripes(&mut self, on: bool) {
        self.fit_stripes = on;
    }

    async fn exchange(&mut self, req: &CoordRequest) -> Result<CoordResponse> {
        let exchange = async {
            self.conn.send(req).await?;
            self.conn.recv_reply::<CoordResponse>().await
        };
        // With a group to fall back on, a member that stops answering (a
        // paused leader) is given up after MEMBER_ANSWER.
        let res = if self.cfg.coord_addrs().len() > 1 {
            match tokio::time::timeout(MEMBER_ANSWER, exchange).await {
                Ok(r) => r,
                Err(_) => Err(protocol::Error::Timeout(
                    "waiting for the coordinator's answer",
                )),
            }
        } else {
            exchange.await
        };
        match res {
            Ok(r) => Ok(r),
            Err(protocol::Error::Remote(w)) => Err(Error::Coord(w)),
            Err(source) => Err(Error::Protocol {
                peer: format!("coordinator {}", self.addr),
                source,
            }),
        }
    }

    /// Sends `req` to the leader: a follower's `NotLeader` sends it on to
    /// the leader it names (or the next member), and a member that went
    /// away mid-request is replaced by another when the request may be
    /// repeated, until [`LEADER_WAIT`]. A leader that cannot reach a
    /// majority says so, and that is the answer.
    async fn call(&mut self, req: CoordRequest) -> Result<CoordResponse> {
        let addrs = self.cfg.coord_addrs();
        let deadline = tokio::time::Instant::now() + LEADER_WAIT;
        let mut pause = Duration::from_millis(50);
        let mut next = addrs.iter().position(|a| *a == self.addr).unwrap_or(0);
        // Members that answered at all (for the final one-line refusal).
        let mut reachable: std::collections::BTreeSet<String> = Default::default();
        loop {
            let mut target = match self.exchange(&req).await {
                Ok(CoordResponse::NotLeader { leader }) => {
                    reachable.insert(self.addr.clone());
                    leader
                }
                Ok(r) => return Ok(r),
                Err(Error::Protocol { .. }) if addrs.len() > 1 && retry_safe(&req) => {
                    reachable.remove(&self.addr);
                    None
                }
                Err(e) => return Err(e),
            };
            // Find the next member to try: the named leader first.
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(Error::NoLeader(format!(
                        "{} of {} members reachable ({}); a majority is needed",
                        reachable.len(),
                        addrs.len(),
                        reachable.iter().cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
                let addr = match target.as_ref().filter(|t| **t != self.addr) {
                    Some(t) => t.clone(),
                    None => {
                        next = (next + 1) % addrs.len().max(1);
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_millis(500));
                        addrs.get(next).cloned().unwrap_or_default()
                    }
                };
                match Self::connect_to(&self.cfg, &addr).await {
                    Ok(c) => {
                        let fit = self.fit_stripes;
                        *self = c;
                        self.fit_stripes = fit;
                        break;
                    }
                    Err(_) => {
                        reachable.remove(&addr);
                        // A named leader that is not reachable: try the rest.
                        target = None;
                    }
                }
            }
        }
    }

    fn unexpected(&self) -> Error {
        Error::Protocol {
            peer: format!("coordinator {}", self.addr),
            source: protocol::Error::Unexpected {
                expected: "a matching response",
                got: "another response",
            },
        }
    }

    pub async fn plan_put(
        &mut self,
        name: FileName,
        size: u64,
        force: bool,
        scheme: Option<protocol::Scheme>,
    ) -> Result<PutPlan> {
        let req = CoordRequest::PlanPut {
            name,
            size,
            force,
            scheme,
            fit: self.fit_stripes,
        };
        match self.call(req).await? {
            CoordResponse::Plan(p) => Ok(p),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn commit(&mut self, c: CommitPut) -> Result<FileSummary> {
        match self.call(CoordRequest::CommitPut(c)).await? {
            CoordResponse::Committed(s) => Ok(s),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn replace_target(
        &mut self,
        upload_id: u64,
        chunk: ChunkId,
        failed: NodeId,
    ) -> Result<NodeAddr> {
        match self
            .call(CoordRequest::ReplaceTarget {
                upload_id,
                chunk,
                failed,
            })
            .await?
        {
            CoordResponse::Target(n) => Ok(n),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn abort(&mut self, upload_id: u64) -> Result<()> {
        self.call(CoordRequest::AbortPut { upload_id })
            .await
            .map(|_| ())
    }

    pub async fn lookup(&mut self, name: FileName) -> Result<FileInfo> {
        match self.call(CoordRequest::Lookup { name }).await? {
            CoordResponse::File(f) => Ok(f),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn list(&mut self, prefix: String) -> Result<Vec<FileSummary>> {
        match self.call(CoordRequest::List { prefix }).await? {
            CoordResponse::Files(f) => Ok(f),
            _ => Err(self.unexpected()),
        }
    }

    /// One page of names with `prefix` after `after`, in name order.
    pub async fn list_page(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<FileSummary>> {
        match self
            .call(CoordRequest::ListPage {
                prefix,
                after,
                limit,
            })
            .await?
        {
            CoordResponse::Files(f) => Ok(f),
            _ => Err(self.unexpected()),
        }
    }

    /// Makes `name` the concatenation of `parts` (which disappear).
    pub async fn concat(
        &mut self,
        name: FileName,
        parts: Vec<FileName>,
        attrs: protocol::Attrs,
    ) -> Result<FileSummary> {
        match self
            .call(CoordRequest::Concat { name, parts, attrs })
            .await?
        {
            CoordResponse::Committed(s) => Ok(s),
            _ => Err(self.unexpected()),
        }
    }

    /// Copies `src` to `dst` inside the cluster (nodes copy their chunks
    /// locally; no bytes pass this client). `range` must cover whole
    /// stripes; `attrs` replace the source's when given.
    pub async fn copy(
        &mut self,
        src: FileName,
        dst: FileName,
        range: Option<(u64, u64)>,
        attrs: Option<protocol::Attrs>,
        force: bool,
    ) -> Result<FileSummary> {
        match self
            .call(CoordRequest::CopyFile {
                src,
                dst,
                range,
                attrs,
                force,
            })
            .await?
        {
            CoordResponse::Committed(s) => Ok(s),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn remove(&mut self, name: FileName) -> Result<()> {
        match self.call(CoordRequest::Remove { name }).await? {
            CoordResponse::Removed => Ok(()),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn fsck(&mut self, names: Vec<FileName>, what_if: Vec<NodeId>) -> Result<FsckReport> {
        match self.call(CoordRequest::Fsck { names, what_if }).await? {
            CoordResponse::Fsck(r) => Ok(r),
            _ => Err(self.unexpected()),
        }
    }

    /// One page of a whole-namespace fsck: files after `after`, in name
    /// order; an empty page ends the walk.
    pub async fn fsck_page(
        &mut self,
        after: Option<FileName>,
        limit: u32,
        what_if: Vec<NodeId>,
    ) -> Result<FsckReport> {
        match self
            .call(CoordRequest::FsckPage {
                after,
                limit,
                what_if,
            })
            .await?
        {
            CoordResponse::Fsck(r) => Ok(r),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn key_create(&mut self, name: String) -> Result<String> {
        match self.call(CoordRequest::KeyCreate { name }).await? {
            CoordResponse::Key(k) => Ok(k),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn key_revoke(&mut self, name: String) -> Result<()> {
        self.call(CoordRequest::KeyRevoke { name })
            .await
            .map(|_| ())
    }

    pub async fn key_list(&mut self) -> Result<Vec<String>> {
        match self.call(CoordRequest::KeyList).await? {
            CoordResponse::Keys(k) => Ok(k),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn drain(&mut self, node: NodeId, cancel: bool) -> Result<()> {
        self.call(CoordRequest::Drain { node, cancel })
            .await
            .map(|_| ())
    }

    pub async fn forget(&mut self, node: NodeId) -> Result<()> {
        self.call(CoordRequest::Forget { node }).await.map(|_| ())
    }

    pub async fn scrub(&mut self, node: Option<NodeId>) -> Result<()> {
        self.call(CoordRequest::Scrub { node }).await.map(|_| ())
    }

    pub async fn report_bad(&mut self, chunk: ChunkId, node: NodeId, reason: String) -> Result<()> {
        self.call(CoordRequest::ReportBad {
            chunk,
            node,
            reason,
        })
        .await
        .map(|_| ())
    }

    /// Starts rebalancing (`start`) or only asks how it goes.
    pub async fn rebalance(&mut self, start: bool) -> Result<protocol::RebalanceStatus> {
        match self.call(CoordRequest::Rebalance { start }).await? {
            CoordResponse::Rebalance(s) => Ok(s),
            _ => Err(self.unexpected()),
        }
    }

    /// The coordinator group as the member this client talks to sees it
    /// (asked of that member, not forwarded to the leader).
    pub async fn coordinators(&mut self) -> Result<protocol::GroupStatus> {
        match self.exchange(&CoordRequest::Coordinators).await? {
            CoordResponse::Coordinators(g) => Ok(g),
            _ => Err(self.unexpected()),
        }
    }

    /// Incident records, newest first (or the one with `id`).
    pub async fn incidents(&mut self, id: Option<u64>) -> Result<Vec<protocol::Incident>> {
        match self.call(CoordRequest::Incidents { id }).await? {
            CoordResponse::Incidents(v) => Ok(v),
            _ => Err(self.unexpected()),
        }
    }

    /// Operator: has nodes tag every copy written before owner tags;
    /// returns the chunks walked and the copies that could not be tagged.
    pub async fn retag(&mut self) -> Result<(u64, u64)> {
        match self.call(CoordRequest::Retag).await? {
            CoordResponse::Retagged { chunks, failed } => Ok((chunks, failed)),
            _ => Err(self.unexpected()),
        }
    }

    pub async fn status(&mut self) -> Result<ClusterStatus> {
        match self.call(CoordRequest::Status).await? {
            CoordResponse::Status(s) => Ok(*s),
            _ => Err(self.unexpected()),
        }
    }

    /// Moves `from` to `to` in one journaled step (no bytes move),
    /// replacing an existing `to` unless `replace` is false.
    pub async fn rename(&mut self, from: FileName, to: FileName, replace: bool) -> Result<()> {
        match self
            .call(CoordRequest::Rename { from, to, replace })
            .await?
        {
            CoordResponse::Done => Ok(()),
            _ => Err(self.unexpected()),
        }
    }

    /// Replaces the attributes of `name`.
    pub async fn set_attrs(&mut self, name: FileName, attrs: protocol::Attrs) -> Result<()> {
        match self.call(CoordRequest::SetAttrs { name, attrs }).await? {
            CoordResponse::Done => Ok(()),
            _ => Err(self.unexpected()),
        }
    }

    /// Creates `name` as an empty entry carrying only `attrs`; refused if
    /// it exists.
    pub async fn make_entry(&mut self, name: FileName, attrs: protocol::Attrs) -> Result<()> {
        match self.call(CoordRequest::MakeEntry { name, attrs }).await? {
            CoordResponse::Done => Ok(()),
            _ => Err(self.unexpected()),
        }
    }
}
