//! The control-path connection to the coordinator.

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use protocol::handshake::{self, Role};
use protocol::{
    ChunkId, ClusterStatus, CommitPut, Connection, CoordRequest, CoordResponse, FileInfo, FileName,
    FileSummary, FsckReport, NodeAddr, NodeId, PutPlan,
};

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

impl CoordClient {
    pub async fn connect(cfg: &ClientConfig) -> Result<Self> {
        let addr = cfg.coord.clone();
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
        handshake::initiate(&mut conn, role, cfg.cred.as_ref(), None)
            .await
            .map_err(|source| Error::Protocol {
                peer: format!("coordinator {addr}"),
                source,
            })?;
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

    async fn call(&mut self, req: CoordRequest) -> Result<CoordResponse> {
        let res = async {
            self.conn.send(&req).await?;
            self.conn.recv_reply::<CoordResponse>().await
        }
        .await;
        match res {
            Ok(r) => Ok(r),
            Err(protocol::Error::Remote(w)) => Err(Error::Coord(w)),
            Err(source) => Err(Error::Protocol {
                peer: format!("coordinator {}", self.addr),
                source,
            }),
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
}
