//! The mount's side of the cluster: coordinator calls over a small pool of
//! connections, each bounded in time and retried while the cluster is
//! unreachable, so a dead cluster is `EIO` after `retry_for`, never a hung
//! mount. Bytes move through `client` (verified ranged reads, puts), as in
//! the S3 gateway.

use crate::error::{Error, Result};
use client::{ClientConfig, CoordClient};
use futures_util::StreamExt;
use protocol::data_client::NodePool;
use protocol::handshake::Role;
use protocol::{Attrs, ClusterStatus, FileInfo, FileName, FileSummary};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most idle coordinator connections kept.
const POOL_MAX: usize = 8;

pub struct Remote {
    cfg: ClientConfig,
    pool: Arc<NodePool>,
    idle: Mutex<Vec<CoordClient>>,
    /// How long an operation keeps trying while the cluster is unreachable.
    retry_for: Duration,
    /// How long one attempt may take before it counts as unreachable.
    attempt: Duration,
}

type Call<'a, T> = Pin<Box<dyn Future<Output = client::Result<T>> + Send + 'a>>;

impl Remote {
    pub fn new(cfg: ClientConfig, retry_for: Duration) -> Remote {
        Remote {
            cfg,
            pool: Arc::new(NodePool::new(Role::Client, None)),
            idle: Mutex::new(Vec::new()),
            retry_for,
            attempt: retry_for.clamp(Duration::from_secs(1), Duration::from_secs(30)),
        }
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    pub fn pool(&self) -> &Arc<NodePool> {
        &self.pool
    }

    fn take(&self) -> Option<CoordClient> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn give(&self, c: CoordClient) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL_MAX {
            idle.push(c);
        }
    }

    /// Runs `f` over a pooled connection, retrying transient failures with
    /// back-off until `retry_for` has passed. A connection that failed is
    /// dropped; one that answered (even with a refusal) goes back.
    pub async fn call<T, F>(&self, mut f: F) -> Result<T>
    where
        F: for<'a> FnMut(&'a mut CoordClient) -> Call<'a, T>,
    {
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let res: Result<T> = async {
                let mut c = match self.take() {
                    Some(c) => c,
                    None => tokio::time::timeout(self.attempt, CoordClient::connect(&self.cfg))
                        .await
                        .map_err(|_| Error::Unreachable(self.attempt))??,
                };
                match tokio::time::timeout(self.attempt, f(&mut c)).await {
                    Err(_) => Err(Error::Unreachable(self.attempt)),
                    Ok(Err(e)) => {
                        let e = Error::Client(e);
                        if !e.transient() {
                            self.give(c);
                        }
                        Err(e)
                    }
                    Ok(Ok(v)) => {
                        self.give(c);
                        Ok(v)
                    }
                }
            }
            .await;
            match res {
                Err(e) if e.transient() && Instant::now() + pause < deadline => {
                    tracing::debug!(error = %e, "cluster unreachable; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) if e.transient() => {
                    tracing::warn!(error = %e, "cluster unreachable; giving up");
                    return Err(Error::Unreachable(self.retry_for));
                }
                other => return other,
            }
        }
    }

    /// A pooled connection, or a new one, tried until `retry_for` passes.
    async fn connect(&self) -> Result<CoordClient> {
        if let Some(c) = self.take() {
            return Ok(c);
        }
        let deadline = Instant::now() + self.retry_for;
        let mut pause = Duration::from_millis(50);
        loop {
            let e = match tokio::time::timeout(self.attempt, CoordClient::connect(&self.cfg)).await
            {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => Error::Client(e),
                Err(_) => Error::Unreachable(self.attempt),
            };
            if !e.transient() {
                return Err(e);
            }
            if Instant::now() + pause >= deadline {
                return Err(Error::Unreachable(self.retry_for));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    pub async fn lookup(&self, name: &FileName) -> Result<FileInfo> {
        self.call(|c| Box::pin(c.lookup(name.clone()))).await
    }

    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FileSummary>> {
        self.call(|c| Box::pin(c.list_page(prefix.to_string(), after.map(str::to_string), limit)))
            .await
    }

    pub async fn remove(&self, name: &FileName) -> Result<()> {
        self.call(|c| Box::pin(c.remove(name.clone()))).await
    }

    pub async fn rename(&self, from: &FileName, to: &FileName, replace: bool) -> Result<()> {
        self.call(|c| Box::pin(c.rename(from.clone(), to.clone(), replace)))
            .await
    }

    pub async fn set_attrs(&self, name: &FileName, attrs: &Attrs) -> Result<()> {
        self.call(|c| Box::pin(c.set_attrs(name.clone(), attrs.clone())))
            .await
    }

    pub async fn make_entry(&self, name: &FileName, attrs: &Attrs) -> Result<()> {
        self.call(|c| Box::pin(c.make_entry(name.clone(), attrs.clone())))
            .await
    }

    pub async fn status(&self) -> Result<ClusterStatus> {
        self.call(|c| Box::pin(c.status())).await
    }

    /// Stores the local file `path` (`size` bytes) as `name`, replacing any
    /// previous version, with `attrs`: one atomic commit, acknowledged once
    /// durable. Not retried as a whole (a commit whose answer was lost may
    /// have taken effect); the put itself reads around dead nodes.
    pub async fn put_file(
        &self,
        path: &std::path::Path,
        size: u64,
        name: &FileName,
        attrs: Attrs,
    ) -> Result<()> {
        let file = std::fs::File::open(path)?;
        let mut c = self.connect().await?;
        let opts = client::put::PutOptions {
            inflight: self.cfg.inflight,
            force: true,
            scheme: self.cfg.scheme,
        };
        let src = client::put::Source {
            reader: Box::new(file),
            size,
        };
        let finish: client::put::Finish = Box::new(move || Ok(attrs));
        let res = client::put::put_source(
            &mut c,
            &self.pool,
            opts,
            src,
            name.clone(),
            Some(finish),
            Arc::new(|_| {}),
        )
        .await;
        match res {
            Ok(_) => {
                self.give(c);
                Ok(())
            }
            Err(e) => Err(Error::Client(e)),
        }
    }

    /// The verified bytes `range` of a looked-up file, appended to `out`.
    pub async fn read_range(
        &self,
        info: Arc<FileInfo>,
        range: std::ops::Range<u64>,
        mut out: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let budget = self.retry_for.max(Duration::from_secs(5)) * 4;
        let work = async {
            let mut s = std::pin::pin!(client::get::range_stream(
                &self.cfg,
                self.pool.clone(),
                info,
                range
            ));
            while let Some(piece) = s.next().await {
                out(&piece?)?;
            }
            Ok(())
        };
        match tokio::time::timeout(budget, work).await {
            Ok(r) => r,
            Err(_) => Err(Error::Unreachable(budget)),
        }
    }
}
