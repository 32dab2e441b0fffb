//! How members talk: each engine message is one `CoordRequest::Raft` over
//! the ordinary framed connection, after the ordinary handshake with role
//! `Coord` (the internal secret proves it in a secured cluster). The body
//! is postcard of `(sender's cluster id, engine message)`; the answer is
//! postcard of the engine's `Result`. A member of another cluster is
//! refused by the handshake when both know their cluster, and by the body
//! check when one has just started empty.

use super::types::TypeConfig;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use protocol::handshake::{self, Credential, Role};
use protocol::{ClusterId, Connection, CoordRequest, CoordResponse, RaftKind, Secret};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::sync::{Arc, Mutex};

/// The member's cluster as far as it knows it (empty until a fresh member
/// hears from its leader), shared with the coordinator.
pub type ClusterCell = Arc<Mutex<Option<ClusterId>>>;

#[derive(Clone)]
pub struct Network {
    pub secret: Option<Secret>,
    pub cluster: ClusterCell,
}

pub struct Peer {
    target: u64,
    addr: String,
    secret: Option<Secret>,
    cluster: ClusterCell,
    conn: Option<Connection>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer {
            target,
            addr: node.addr.clone(),
            secret: self.secret.clone(),
            cluster: self.cluster.clone(),
            conn: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(String);

type Rpc<T, E> = Result<T, RPCError<u64, BasicNode, RaftError<u64, E>>>;

impl Peer {
    fn cluster(&self) -> Option<ClusterId> {
        *self.cluster.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn exchange(&mut self, kind: RaftKind, body: Vec<u8>) -> Result<Vec<u8>, String> {
        if self.conn.is_none() {
            let mut conn = Connection::connect(self.addr.as_str())
                .await
                .map_err(|e| e.to_string())?;
            let cred = self.secret.clone().map(Credential::Internal);
            handshake::initiate(&mut conn, Role::Coord, cred.as_ref(), self.cluster())
                .await
                .map_err(|e| e.to_string())?;
            self.conn = Some(conn);
        }
        let conn = self.conn.as_mut().ok_or("not connected")?;
        let res = async {
            conn.send(&CoordRequest::Raft { kind, body }).await?;
            conn.recv_reply::<CoordResponse>().await
        }
        .await;
        match res {
            Ok(CoordResponse::Raft(bytes)) => Ok(bytes),
            Ok(_) => {
                self.conn = None;
                Err("unexpected answer to a group message".into())
            }
            Err(e) => {
                self.conn = None;
                Err(e.to_string())
            }
        }
    }

    async fn call<Req: Serialize, Resp: DeserializeOwned, E>(
        &mut self,
        kind: RaftKind,
        req: &Req,
        option: RPCOption,
    ) -> Rpc<Resp, E>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let body = postcard::to_allocvec(&(self.cluster(), req))
            .map_err(|e| RPCError::Network(NetworkError::new(&Failed(e.to_string()))))?;
        let out = tokio::time::timeout(option.hard_ttl(), self.exchange(kind, body)).await;
        let bytes = match out {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => return Err(RPCError::Unreachable(Unreachable::new(&Failed(e)))),
            Err(_) => {
                self.conn = None;
                return Err(RPCError::Unreachable(Unreachable::new(&Failed(format!(
                    "{}: no answer in {:?}",
                    self.addr,
                    option.hard_ttl()
                )))));
            }
        };
        let res: Result<Resp, RaftError<u64, E>> =
            match postcard::from_bytes::<Reply<Resp, E>>(&bytes) {
                Ok(Reply::Ok(r)) => Ok(r),
                Ok(Reply::Engine(e)) => Err(e),
                Ok(Reply::Refused(why)) => {
                    return Err(RPCError::Network(NetworkError::new(&Failed(why))));
                }
                Err(e) => return Err(RPCError::Network(NetworkError::new(&Failed(e.to_string())))),
            };
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A member's answer to a group message.
#[derive(serde::Serialize, serde::Deserialize)]
pub enum Reply<T, E> {
    Ok(T),
    Engine(RaftError<u64, E>),
    /// Not from this cluster, or not decodable.
    Refused(String),
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>, openraft::error::Infallible> {
        self.call(RaftKind::Append, &rpc, option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        self.call(RaftKind::Snapshot, &rpc, option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<u64>, openraft::error::Infallible> {
        self.call(RaftKind::Vote, &rpc, option).await
    }
}

/// Serves one group message on this member.
pub async fn serve(
    raft: &super::types::Raft,
    cluster: &ClusterCell,
    adopt: impl Fn(ClusterId) -> crate::Result<()>,
    kind: RaftKind,
    body: &[u8],
) -> Vec<u8> {
    fn enc<T: Serialize, E: Serialize>(r: Reply<T, E>) -> Vec<u8> {
        postcard::to_allocvec(&r).unwrap_or_default()
    }
    fn refused(why: String) -> Vec<u8> {
        enc::<(), openraft::error::Infallible>(Reply::Refused(why))
    }
    fn wrap<T: Serialize, E: Serialize>(r: Result<T, RaftError<u64, E>>) -> Vec<u8> {
        match r {
            Ok(t) => enc::<T, E>(Reply::Ok(t)),
            Err(e) => enc::<T, E>(Reply::Engine(e)),
        }
    }
    // Who sent it: refuse another cluster, adopt ours when still empty.
    macro_rules! decode {
        ($t:ty) => {
            match postcard::from_bytes::<(Option<ClusterId>, $t)>(body) {
                Ok((theirs, req)) => {
                    let ours = *cluster.lock().unwrap_or_else(|p| p.into_inner());
                    match (ours, theirs) {
                        (Some(a), Some(b)) if a != b => {
                            return refused(format!(
                                "group message from cluster {b}; this member belongs to cluster {a} (wrong --peers or --data?)"
                            ))
                        }
                        (None, Some(b)) => {
                            if let Err(e) = adopt(b) {
                                return refused(e.to_string());
                            }
                        }
                        _ => {}
                    }
                    req
                }
                Err(e) => return refused(format!("undecodable group message: {e}")),
            }
        };
    }
    match kind {
        RaftKind::Append => {
            let req = decode!(AppendEntriesRequest<TypeConfig>);
            wrap(raft.append_entries(req).await)
        }
        RaftKind::Vote => {
            let req = decode!(VoteRequest<u64>);
            wrap(raft.vote(req).await)
        }
        RaftKind::Snapshot => {
            let req = decode!(InstallSnapshotRequest<TypeConfig>);
            wrap(raft.install_snapshot(req).await)
        }
    }
}
