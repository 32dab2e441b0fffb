//! The data path seen from the side that opens it (a client, or a node
//! copying a chunk for repair): storing and fetching chunk streams, over a
//! small pool of handshaken connections reused across chunks.

use crate::chunk::check_bounds;
use crate::handshake::{self, Credential, Role};
use crate::{BlockToken, ChunkHeader, Connection, NodeRequest, NodeResponse};
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a node may stay silent in the middle of a transfer before it is
/// treated as failed: a hung node must not hang a put or a get forever.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A node that has not accepted and finished the handshake by then is
/// treated as down: a hung (not crashed) node must not stall every chunk
/// read for long. Generous for a loaded machine, short against a 64 MiB read.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection idle longer than this is not reused: nodes close
/// connections idle for [`crate::server::IDLE_TIMEOUT`], and a request sent
/// on a connection the node just closed would fail for nothing.
const POOL_MAX_IDLE: Duration = Duration::from_secs(20);

/// Idle connections per node address.
pub struct NodePool {
    role: Role,
    cred: Option<Credential>,
    idle: Mutex<HashMap<String, Vec<(Connection, Instant)>>>,
}

impl NodePool {
    /// A pool opening connections as `role`. Clients pass no credential:
    /// nodes take them anonymously and check a block token on every request.
    /// Nodes and the coordinator pass the internal secret.
    pub fn new(role: Role, cred: Option<Credential>) -> Self {
        NodePool {
            role,
            cred,
            idle: Mutex::new(HashMap::new()),
        }
    }

    fn take_idle(&self, addr: &str) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(addr)?;
        while let Some((c, since)) = list.pop() {
            if since.elapsed() < POOL_MAX_IDLE {
                return Some(c);
            }
        }
        None
    }

    async fn conn(&self, addr: &str) -> crate::Result<Connection> {
        if let Some(c) = self.take_idle(addr) {
            return Ok(c);
        }
        tokio::time::timeout(OPEN_TIMEOUT, async {
            let mut c = Connection::connect(addr).await?;
            handshake::initiate(&mut c, self.role, self.cred.as_ref(), None).await?;
            Ok(c)
        })
        .await
        .map_err(|_| crate::Error::Timeout("opening a connection to the node"))?
    }

    fn put_back(&self, addr: &str, c: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(addr.to_string())
            .or_default()
            .push((c, Instant::now()));
    }

    /// Opens (or reuses) a connection to `addr` and keeps it for the next
    /// request: tells early whether the node answers at all, and saves the
    /// handshake later.
    pub async fn probe(&self, addr: &str) -> crate::Result<()> {
        let c = self.conn(addr).await?;
        self.put_back(addr, c);
        Ok(())
    }

    /// Stores one copy; returns once the node has it durably.
    pub async fn store(
        &self,
        addr: &str,
        header: &ChunkHeader,
        stored: &Bytes,
        token: Option<&BlockToken>,
    ) -> crate::Result<()> {
        self.store_tagged(addr, header, stored, token, None).await
    }

    /// [`NodePool::store`] with the chunk's owner tag (`PutTagged`); an
    /// untagged `Put` when `tag` is `None`.
    pub async fn store_tagged(
        &self,
        addr: &str,
        header: &ChunkHeader,
        stored: &Bytes,
        token: Option<&BlockToken>,
        tag: Option<&crate::tag::OwnerTag>,
    ) -> crate::Result<()> {
        let mut c = self.conn(addr).await?;
        let req = match tag {
            Some(t) => NodeRequest::PutTagged {
                header: header.clone(),
                token: token.cloned(),
                tag: Box::new(t.clone()),
            },
            None => NodeRequest::Put {
                header: header.clone(),
                token: token.cloned(),
            },
        };
        let sent = tokio::time::timeout(IO_TIMEOUT * 4, async {
            c.send(&req).await?;
            c.send_data(stored).await
        })
        .await
        .unwrap_or(Err(crate::Error::Timeout("sending a chunk")));
        if let Err(e) = sent {
            // The node may have refused early (disk full) and closed: its
            // answer names the real cause better than a broken pipe does.
            return match tokio::time::timeout(
                Duration::from_secs(1),
                c.recv_reply::<NodeResponse>(),
            )
            .await
            {
                Ok(Err(remote @ crate::Error::Remote(_))) => Err(remote),
                _ => Err(e),
            };
        }
        match tokio::time::timeout(IO_TIMEOUT, c.recv_reply::<NodeResponse>()).await {
            Ok(Ok(NodeResponse::Stored { id })) if id == header.id => {
                self.put_back(addr, c);
                Ok(())
            }
            Ok(Ok(_)) => Err(crate::Error::Unexpected {
                expected: "Stored",
                got: "another response",
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(crate::Error::Timeout(
                "waiting for the node to store a chunk",
            )),
        }
    }

    /// Fetches the stored bytes of a chunk whose header the catalog gave us.
    /// The node's header must match it; lengths are bounded by it; the
    /// node's own CRC verdict is honoured. The caller still decodes and
    /// checks SHA-256.
    pub async fn fetch(
        &self,
        addr: &str,
        want: &ChunkHeader,
        token: Option<&BlockToken>,
    ) -> crate::Result<Bytes> {
        check_bounds(want).map_err(|e| bad(e.to_string()))?;
        let mut c = self.conn(addr).await?;
        let io = |what| crate::Error::Timeout(what);
        tokio::time::timeout(
            IO_TIMEOUT,
            c.send(&NodeRequest::Get {
                id: want.id,
                token: token.cloned(),
            }),
        )
        .await
        .map_err(|_| io("sending a read request"))??;
        let got = match tokio::time::timeout(IO_TIMEOUT, c.recv_reply::<NodeResponse>())
            .await
            .map_err(|_| io("waiting for a chunk"))??
        {
            NodeResponse::Chunk(h) => h,
            _ => return Err(bad("expected a chunk header".into())),
        };
        if got != *want {
            return Err(bad(format!(
                "node holds another version of chunk {}",
                want.id
            )));
        }
        // Page-aligned (stored bytes of a raw chunk are the file's bytes,
        // which the reader may write to disk directly); bounded above.
        let mut buf = directio::AlignedBuf::with_capacity(want.stored_len as usize);
        while (buf.len() as u64) < want.stored_len {
            let d = tokio::time::timeout(IO_TIMEOUT, c.recv_data())
                .await
                .map_err(|_| io("receiving chunk data"))??;
            if buf.len() as u64 + d.len() as u64 > want.stored_len {
                return Err(bad("node sent more bytes than the chunk holds".into()));
            }
            buf.push(&d);
        }
        match tokio::time::timeout(IO_TIMEOUT, c.recv_reply::<NodeResponse>())
            .await
            .map_err(|_| io("waiting for the end of a chunk"))??
        {
            NodeResponse::End { ok: true } => {
                self.put_back(addr, c);
                Ok(buf.into_bytes())
            }
            NodeResponse::End { ok: false } => Err(crate::Error::Remote(crate::WireError::new(
                crate::ErrorKind::Corrupt,
                "node found its copy corrupt (CRC mismatch) and quarantined it",
            ))),
            _ => Err(bad("expected the end of a chunk".into())),
        }
    }
}

impl NodePool {
    /// The owner tag a node keeps with its copy of `id` (`None`: an
    /// untagged chunk).
    pub async fn get_tag(
        &self,
        addr: &str,
        id: crate::ChunkId,
        token: Option<&BlockToken>,
    ) -> crate::Result<Option<crate::tag::OwnerTag>> {
        let mut c = self.conn(addr).await?;
        let io = |what| crate::Error::Timeout(what);
        tokio::time::timeout(
            IO_TIMEOUT,
            c.send(&NodeRequest::GetTag {
                id,
                token: token.cloned(),
            }),
        )
        .await
        .map_err(|_| io("sending a tag request"))??;
        match tokio::time::timeout(IO_TIMEOUT, c.recv_reply::<NodeResponse>())
            .await
            .map_err(|_| io("waiting for a tag"))??
        {
            NodeResponse::Tag(t) => {
                self.put_back(addr, c);
                Ok(t.map(|b| *b))
            }
            _ => Err(bad("expected an owner tag".into())),
        }
    }

    /// Fetches the verified first bytes of a chunk (at most
    /// [`crate::PREVIEW_MAX`]): the node checks the whole copy, this side
    /// checks the header against the catalog's, the length bound and the
    /// CRC of what arrived, and when the preview is the whole chunk, its
    /// SHA-256 as well.
    pub async fn preview(
        &self,
        addr: &str,
        want: &ChunkHeader,
        max_len: u32,
    ) -> crate::Result<Vec<u8>> {
        let max_len = max_len.min(crate::PREVIEW_MAX);
        let mut c = self.conn(addr).await?;
        let io = |what| crate::Error::Timeout(what);
        tokio::time::timeout(
            IO_TIMEOUT,
            c.send(&NodeRequest::Preview {
                id: want.id,
                max_len,
            }),
        )
        .await
        .map_err(|_| io("sending a preview request"))??;
        let (header, bytes, crc) =
            match tokio::time::timeout(IO_TIMEOUT, c.recv_reply::<NodeResponse>())
                .await
                .map_err(|_| io("waiting for a preview"))??
            {
                NodeResponse::Preview { header, bytes, crc } => (header, bytes, crc),
                _ => return Err(bad("expected a chunk preview".into())),
            };
        if header != *want {
            return Err(bad(format!(
                "node holds another version of chunk {}",
                want.id
            )));
        }
        let expect = want.raw_len.min(u64::from(max_len));
        if bytes.len() as u64 != expect {
            return Err(bad(format!(
                "preview of {} bytes, expected {expect}",
                bytes.len()
            )));
        }
        if crc32fast::hash(&bytes) != crc {
            return Err(bad("preview CRC mismatch".into()));
        }
        if expect == want.raw_len && crate::chunk::sha256(&bytes) != want.raw_sha256 {
            return Err(bad("preview SHA-256 mismatch".into()));
        }
        self.put_back(addr, c);
        Ok(bytes)
    }
}

fn bad(msg: String) -> crate::Error {
    crate::Error::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, msg))
}
