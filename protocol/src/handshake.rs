//! The handshake that opens every connection: protocol version check and,
//! when the cluster has a shared secret, mutual HMAC-SHA256 proof of it.
//!
//! ```text
//! initiator                                   acceptor
//!   Hello { magic, version, role, nonce_i } ->
//!                                          <- Challenge { version, nonce_a, proof_a? }
//!   Auth { proof_i? }                      ->
//!                                          <- Result<(), WireError>
//! proof_a = HMAC(secret, "dfs-sim acceptor"  | nonce_i | nonce_a)
//! proof_i = HMAC(secret, "dfs-sim initiator" | nonce_a | nonce_i)
//! ```
//!
//! Fresh nonces on both sides mean a recorded proof cannot be replayed, and
//! the acceptor proves itself first so a client never talks to an impostor.
//! The secret itself never crosses the wire.

use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result, WireError};
use crate::PROTOCOL_VERSION;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::Path;
use std::time::Duration;

/// First bytes of every conversation, so a stray client of another protocol
/// is told apart from a dfs-sim peer of another version.
pub const MAGIC: [u8; 4] = *b"DFS1";

/// A peer that has not finished the handshake by then is disconnected, so
/// half-open or garbage connections cannot pin resources.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who opens the connection; logged by the acceptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Client,
    Node,
    Coord,
}

#[derive(Serialize, Deserialize)]
struct Hello {
    magic: [u8; 4],
    version: u16,
    role: Role,
    nonce: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct Challenge {
    version: u16,
    nonce: [u8; 32],
    proof: Option<[u8; 32]>,
}

#[derive(Serialize, Deserialize)]
struct Auth {
    proof: Option<[u8; 32]>,
}

/// The cluster's shared secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> std::result::Result<Self, String> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err("the shared secret is empty".into());
        }
        Ok(Secret(bytes))
    }

    /// Reads the secret from `--secret-file` if given, else from `DFS_SECRET`;
    /// `None` when neither is set. A trailing newline in the file is ignored.
    pub fn load(file: Option<&Path>) -> std::result::Result<Option<Secret>, String> {
        if let Some(path) = file {
            let mut bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
            while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                bytes.pop();
            }
            return Secret::new(bytes)
                .map(Some)
                .map_err(|e| format!("{e} ({})", path.display()));
        }
        match std::env::var("DFS_SECRET") {
            Ok(s) if !s.is_empty() => Ok(Some(Secret(s.into_bytes()))),
            _ => Ok(None),
        }
    }

    fn proof(&self, label: &[u8], a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
        self.mac(label, a, b).finalize().into_bytes().into()
    }

    fn verify(&self, label: &[u8], a: &[u8; 32], b: &[u8; 32], proof: &[u8; 32]) -> bool {
        self.mac(label, a, b).verify_slice(proof).is_ok()
    }

    fn mac(&self, label: &[u8], a: &[u8; 32], b: &[u8; 32]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(label);
        mac.update(a);
        mac.update(b);
        mac
    }
}

const LABEL_ACCEPTOR: &[u8] = b"dfs-sim acceptor";
const LABEL_INITIATOR: &[u8] = b"dfs-sim initiator";

/// Runs the initiator side. On success the connection is ready for requests.
pub async fn initiate(conn: &mut Connection, role: Role, secret: Option<&Secret>) -> Result<()> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, initiate_inner(conn, role, secret))
        .await
        .map_err(|_| Error::Timeout("waiting for the handshake"))?
}

async fn initiate_inner(conn: &mut Connection, role: Role, secret: Option<&Secret>) -> Result<()> {
    let nonce_i: [u8; 32] = rand::random();
    conn.send(&Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        role,
        nonce: nonce_i,
    })
    .await?;
    let ch: Challenge = conn.recv().await?;
    if ch.version != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: ch.version,
        });
    }
    let proof = match (secret, ch.proof) {
        (Some(s), Some(p)) => {
            if !s.verify(LABEL_ACCEPTOR, &nonce_i, &ch.nonce, &p) {
                return Err(Error::Auth(
                    "peer does not know our shared secret (check --secret-file / DFS_SECRET)"
                        .into(),
                ));
            }
            Some(s.proof(LABEL_INITIATOR, &ch.nonce, &nonce_i))
        }
        (Some(_), None) => return Err(Error::Auth(
            "peer runs without a shared secret but we have one (check --secret-file / DFS_SECRET)"
                .into(),
        )),
        (None, Some(_)) => {
            return Err(Error::Auth(
                "peer requires a shared secret: pass --secret-file or set DFS_SECRET".into(),
            ))
        }
        (None, None) => None,
    };
    conn.send(&Auth { proof }).await?;
    match conn.recv::<std::result::Result<(), WireError>>().await? {
        Ok(()) => Ok(()),
        Err(e) => Err(Error::Auth(e.message)),
    }
}

/// Runs the acceptor side; returns the initiator's role.
pub async fn accept(conn: &mut Connection, secret: Option<&Secret>) -> Result<Role> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_inner(conn, secret))
        .await
        .map_err(|_| Error::Timeout("waiting for the handshake"))?
}

async fn accept_inner(conn: &mut Connection, secret: Option<&Secret>) -> Result<Role> {
    let hello: Hello = conn.recv().await?;
    if hello.magic != MAGIC {
        return Err(Error::Auth("not a dfs-sim peer (bad magic)".into()));
    }
    let nonce_a: [u8; 32] = rand::random();
    conn.send(&Challenge {
        version: PROTOCOL_VERSION,
        nonce: nonce_a,
        proof: secret.map(|s| s.proof(LABEL_ACCEPTOR, &hello.nonce, &nonce_a)),
    })
    .await?;
    if hello.version != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: hello.version,
        });
    }
    let auth: Auth = conn.recv().await?;
    let verdict = match (secret, auth.proof) {
        (Some(s), Some(p)) if s.verify(LABEL_INITIATOR, &nonce_a, &hello.nonce, &p) => Ok(()),
        (Some(_), Some(_)) => Err("wrong shared secret"),
        (Some(_), None) => Err("a shared secret is required"),
        (None, Some(_)) => Err("this peer runs without a shared secret"),
        (None, None) => Ok(()),
    };
    match verdict {
        Ok(()) => {
            conn.send(&Ok::<(), WireError>(())).await?;
            Ok(hello.role)
        }
        Err(msg) => {
            let _ = conn
                .send(&Err::<(), WireError>(WireError::new(
                    ErrorKind::BadRequest,
                    msg,
                )))
                .await;
            Err(Error::Auth(msg.into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    async fn run(a: Option<Secret>, b: Option<Secret>) -> (Result<()>, Result<Role>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut c = Connection::new(l.accept().await.unwrap().0);
            accept(&mut c, b.as_ref()).await
        });
        let mut c = Connection::new(TcpStream::connect(addr).await.unwrap());
        let r = initiate(&mut c, Role::Client, a.as_ref()).await;
        drop(c);
        (r, server.await.unwrap())
    }

    fn s(x: &str) -> Option<Secret> {
        Some(Secret::new(x).unwrap())
    }

    #[tokio::test]
    async fn matrix() {
        let (a, b) = run(None, None).await;
        assert!(a.is_ok() && b.is_ok());
        let (a, b) = run(s("k"), s("k")).await;
        assert!(a.is_ok() && b.unwrap() == Role::Client);
        let (a, b) = run(s("k"), s("other")).await;
        assert!(a.unwrap_err().to_string().contains("shared secret"));
        assert!(b.is_err());
        let (a, b) = run(None, s("k")).await;
        assert!(a
            .unwrap_err()
            .to_string()
            .contains("requires a shared secret"));
        assert!(b.is_err());
        let (a, b) = run(s("k"), None).await;
        assert!(a.is_err() && b.is_err());
    }
}
