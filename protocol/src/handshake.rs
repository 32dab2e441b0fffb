//! The handshake that opens every connection: protocol version check, the
//! cluster identity check, and mutual HMAC-SHA256 proof of a key.
//!
//! ```text
//! initiator                                          acceptor
//!   Hello { magic, version, role, nonce_i, key_name?, cluster? } ->
//!                                 <- Challenge { version, nonce_a, proof_a?, cluster? }
//!   Auth { proof_i? }                                ->
//!                                 <- Result<(), WireError>
//! proof_a = HMAC(key, "dfs-sim acceptor"  | nonce_i | nonce_a)
//! proof_i = HMAC(key, "dfs-sim initiator" | nonce_a | nonce_i)
//! ```
//!
//! Which key is proved depends on the role the initiator claims:
//!
//! - `Coord`, `Node`, `Admin`: the cluster's internal secret (`--secret-file`),
//!   which only the coordinator, the nodes and their operator hold;
//! - `Client` with a `key_name`: that client key (`dfs-sim key create`), which
//!   only the coordinator can check (it keeps the keys);
//! - `Client` without a key: nothing. Nodes accept such anonymous clients
//!   because every data operation they serve to a client needs a block token
//!   signed by the coordinator (see [`crate::token`]); the coordinator refuses
//!   them in a secured cluster.
//!
//! Fresh nonces on both sides mean a recorded proof cannot be replayed, and
//! the acceptor proves itself first so a client never talks to an impostor.
//! Keys never cross the wire. Both sides name the cluster they belong to when
//! they know it; peers of different clusters refuse each other.

use crate::connection::Connection;
use crate::error::{Error, ErrorKind, Result, WireError};
use crate::ids::ClusterId;
use crate::PROTOCOL_VERSION;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// First bytes of every conversation, so a stray client of another protocol
/// is told apart from a dfs-sim peer of another version.
pub const MAGIC: [u8; 4] = *b"DFS1";

/// A peer that has not finished the handshake by then is disconnected, so
/// half-open or garbage connections cannot pin resources.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest client key name accepted (bounded before any lookup).
pub const MAX_KEY_NAME: usize = 64;

/// Who opens the connection. Authenticated in a secured cluster (see the
/// module comment); only claimed, and logged, without a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    Client,
    Node,
    Coord,
    /// An operator's command holding the internal secret (drain, keys...).
    Admin,
}

#[derive(Serialize, Deserialize)]
struct Hello {
    magic: [u8; 4],
    version: u16,
    role: Role,
    nonce: [u8; 32],
    key_name: Option<String>,
    cluster: Option<ClusterId>,
}

#[derive(Serialize, Deserialize)]
struct Challenge {
    version: u16,
    nonce: [u8; 32],
    proof: Option<[u8; 32]>,
    cluster: Option<ClusterId>,
}

#[derive(Serialize, Deserialize)]
struct Auth {
    proof: Option<[u8; 32]>,
}

/// A secret byte string: the cluster's internal secret or a client key.
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

    /// A key for another purpose, derived so that knowing it reveals nothing
    /// of this secret (block tokens are signed with one).
    pub fn derive(&self, label: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(label);
        mac.finalize().into_bytes().into()
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

/// What an initiator proves.
#[derive(Debug, Clone)]
pub enum Credential {
    /// The cluster's internal secret.
    Internal(Secret),
    /// A client key issued by `dfs-sim key create`.
    Client { name: String, key: Secret },
}

impl Credential {
    /// Parses a client key file's content: `NAME:HEX`.
    pub fn parse_client_key(text: &str) -> std::result::Result<Credential, String> {
        let text = text.trim();
        let (name, hexkey) = text
            .split_once(':')
            .ok_or("a client key looks like NAME:HEX (as printed by dfs-sim key create)")?;
        if name.is_empty() || name.len() > MAX_KEY_NAME {
            return Err(format!(
                "a client key name has 1 to {MAX_KEY_NAME} characters"
            ));
        }
        let key = hex::decode(hexkey).map_err(|_| "the client key is not hex".to_string())?;
        Ok(Credential::Client {
            name: name.to_string(),
            key: Secret::new(key)?,
        })
    }

    /// Reads a client key from `--key-file` if given, else from `DFS_KEY`.
    pub fn load_client_key(file: Option<&Path>) -> std::result::Result<Option<Credential>, String> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read key file {}: {e}", path.display()))?;
            return Credential::parse_client_key(&text)
                .map(Some)
                .map_err(|e| format!("{e} ({})", path.display()));
        }
        match std::env::var("DFS_KEY") {
            Ok(s) if !s.trim().is_empty() => Credential::parse_client_key(&s)
                .map(Some)
                .map_err(|e| format!("{e} (DFS_KEY)")),
            _ => Ok(None),
        }
    }
}

/// Where an acceptor looks up client keys (the coordinator's catalog).
pub trait KeyStore: Send + Sync {
    /// The key of that name, `None` when unknown or revoked.
    fn client_key(&self, name: &str) -> Option<Secret>;
}

/// How an acceptor authenticates its peers.
#[derive(Clone, Default)]
pub struct Acceptor {
    /// The internal secret; `None` runs an unsecured (loopback) cluster in
    /// which roles are only claimed.
    pub secret: Option<Secret>,
    /// Our cluster, when known: peers of another cluster are refused.
    pub cluster: Option<ClusterId>,
    /// Client keys (coordinator only).
    pub keys: Option<Arc<dyn KeyStore>>,
    /// Whether clients without a key may connect (nodes: yes, every data
    /// operation then needs a block token).
    pub anonymous_clients: bool,
}

/// Who is on the other end, as established by the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub role: Role,
    /// The client key used, if any.
    pub key_name: Option<String>,
    /// Whether the role was proved (always false without a secret).
    pub proved: bool,
    pub cluster: Option<ClusterId>,
}

impl Peer {
    /// Whether this peer may act as `role`: proved in a secured cluster,
    /// claimed in an unsecured one.
    pub fn is(&self, role: Role, secured: bool) -> bool {
        self.role == role && (self.proved || !secured)
    }
}

const LABEL_ACCEPTOR: &[u8] = b"dfs-sim acceptor";
const LABEL_INITIATOR: &[u8] = b"dfs-sim initiator";

fn cluster_clash(ours: Option<ClusterId>, theirs: Option<ClusterId>) -> Option<String> {
    match (ours, theirs) {
        (Some(a), Some(b)) if a != b => Some(format!(
            "peer belongs to cluster {b}, we belong to cluster {a} (wrong --coord, --nodes or --data?)"
        )),
        _ => None,
    }
}

/// Runs the initiator side. On success the connection is ready for
/// requests; returns the acceptor's cluster, if it named one.
pub async fn initiate(
    conn: &mut Connection,
    role: Role,
    cred: Option<&Credential>,
    cluster: Option<ClusterId>,
) -> Result<Option<ClusterId>> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, initiate_inner(conn, role, cred, cluster))
        .await
        .map_err(|_| Error::Timeout("waiting for the handshake"))?
}

async fn initiate_inner(
    conn: &mut Connection,
    role: Role,
    cred: Option<&Credential>,
    cluster: Option<ClusterId>,
) -> Result<Option<ClusterId>> {
    let nonce_i: [u8; 32] = rand::random();
    let (key_name, secret) = match cred {
        Some(Credential::Internal(s)) => (None, Some(s)),
        Some(Credential::Client { name, key }) => (Some(name.clone()), Some(key)),
        None => (None, None),
    };
    conn.send(&Hello {
        magic: MAGIC,
        version: PROTOCOL_VERSION,
        role,
        nonce: nonce_i,
        key_name,
        cluster,
    })
    .await?;
    let ch: Challenge = conn.recv().await?;
    if ch.version != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: ch.version,
        });
    }
    if let Some(msg) = cluster_clash(cluster, ch.cluster) {
        return Err(Error::Auth(msg));
    }
    let what = match cred {
        Some(Credential::Client { .. }) => "our client key (unknown or revoked?)",
        _ => "our shared secret (check --secret-file / DFS_SECRET)",
    };
    let proof = match (secret, ch.proof) {
        (Some(s), Some(p)) => {
            if !s.verify(LABEL_ACCEPTOR, &nonce_i, &ch.nonce, &p) {
                return Err(Error::Auth(format!("peer does not know {what}")));
            }
            Some(s.proof(LABEL_INITIATOR, &ch.nonce, &nonce_i))
        }
        (Some(_), None) => {
            return Err(Error::Auth(
                "peer runs without a shared secret but we have one (check --secret-file / DFS_SECRET / DFS_KEY)"
                    .into(),
            ))
        }
        (None, Some(_)) => {
            return Err(Error::Auth(
                "peer requires a shared secret: pass --key-file or set DFS_KEY (a client key from dfs-sim key create), or --secret-file / DFS_SECRET (operators, nodes)".into(),
            ))
        }
        (None, None) => None,
    };
    conn.send(&Auth { proof }).await?;
    match conn.recv::<std::result::Result<(), WireError>>().await? {
        Ok(()) => Ok(ch.cluster),
        Err(e) => Err(Error::Auth(e.message)),
    }
}

/// Runs the acceptor side; returns who the initiator is.
pub async fn accept(conn: &mut Connection, policy: &Acceptor) -> Result<Peer> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, accept_inner(conn, policy))
        .await
        .map_err(|_| Error::Timeout("waiting for the handshake"))?
}

async fn accept_inner(conn: &mut Connection, policy: &Acceptor) -> Result<Peer> {
    let hello: Hello = conn.recv().await?;
    if hello.magic != MAGIC {
        return Err(Error::Auth("not a dfs-sim peer (bad magic)".into()));
    }
    // Which key this initiator must prove, or why it is refused outright.
    let key: std::result::Result<Option<Secret>, String> = match (&policy.secret, hello.role) {
        (None, _) => Ok(None),
        (Some(s), Role::Coord | Role::Node | Role::Admin) => Ok(Some(s.clone())),
        (Some(_), Role::Client) => match &hello.key_name {
            Some(name) if name.len() > MAX_KEY_NAME => Err("client key name too long".into()),
            Some(name) => match policy.keys.as_ref().and_then(|k| k.client_key(name)) {
                Some(k) => Ok(Some(k)),
                None if policy.keys.is_none() && policy.anonymous_clients => Ok(None),
                None => Err(format!("unknown or revoked client key {name:?}")),
            },
            None if policy.anonymous_clients => Ok(None),
            None => Err(
                "this cluster requires a client key: ask its operator for one (dfs-sim key create NAME) and pass --key-file or set DFS_KEY"
                    .into(),
            ),
        },
    };
    let nonce_a: [u8; 32] = rand::random();
    let proof = match &key {
        Ok(Some(k)) => Some(k.proof(LABEL_ACCEPTOR, &hello.nonce, &nonce_a)),
        // An unknown key name gets a random proof, which fails on the
        // initiator's side exactly like a wrong key: names are not revealed.
        Err(_) if policy.secret.is_some() => Some(rand::random()),
        _ => None,
    };
    conn.send(&Challenge {
        version: PROTOCOL_VERSION,
        nonce: nonce_a,
        proof,
        cluster: policy.cluster,
    })
    .await?;
    if hello.version != PROTOCOL_VERSION {
        return Err(Error::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: hello.version,
        });
    }
    // The initiator sees our cluster in the challenge and gives up by itself;
    // an unknown key fails its check of our (random) proof the same way.
    if let Some(msg) = cluster_clash(policy.cluster, hello.cluster) {
        return Err(Error::Auth(msg));
    }
    if let (Err(msg), Some(_)) = (&key, &policy.secret) {
        return Err(Error::Auth(msg.clone()));
    }
    let auth: Auth = conn.recv().await?;
    let verdict: std::result::Result<bool, String> = {
        match (key, auth.proof) {
            (Err(msg), _) => Err(msg),
            (Ok(Some(k)), Some(p)) if k.verify(LABEL_INITIATOR, &nonce_a, &hello.nonce, &p) => {
                Ok(true)
            }
            (Ok(Some(_)), Some(_)) => Err("wrong shared secret or client key".into()),
            (Ok(Some(_)), None) => Err("a shared secret is required".into()),
            // A keyed client talking to a node: the node cannot check the
            // key, and needs not (tokens), but the client learns nothing.
            (Ok(None), Some(_)) if policy.secret.is_some() => Ok(false),
            (Ok(None), Some(_)) => Err("this peer runs without a shared secret".into()),
            (Ok(None), None) => Ok(false),
        }
    };
    match verdict {
        Ok(proved) => {
            conn.send(&Ok::<(), WireError>(())).await?;
            Ok(Peer {
                role: hello.role,
                key_name: hello.key_name,
                proved,
                cluster: hello.cluster,
            })
        }
        Err(msg) => {
            let _ = conn
                .send(&Err::<(), WireError>(WireError::new(
                    ErrorKind::BadRequest,
                    msg.clone(),
                )))
                .await;
            Err(Error::Auth(msg))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    struct Keys;
    impl KeyStore for Keys {
        fn client_key(&self, name: &str) -> Option<Secret> {
            (name == "alice").then(|| Secret::new("alice-key").unwrap())
        }
    }

    async fn run(
        role: Role,
        cred: Option<Credential>,
        their_cluster: Option<ClusterId>,
        policy: Acceptor,
    ) -> (Result<Option<ClusterId>>, Result<Peer>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut c = Connection::new(l.accept().await.unwrap().0);
            accept(&mut c, &policy).await
        });
        let mut c = Connection::new(TcpStream::connect(addr).await.unwrap());
        let r = initiate(&mut c, role, cred.as_ref(), their_cluster).await;
        drop(c);
        (r, server.await.unwrap())
    }

    fn s(x: &str) -> Option<Secret> {
        Some(Secret::new(x).unwrap())
    }

    fn internal(x: &str) -> Option<Credential> {
        Some(Credential::Internal(Secret::new(x).unwrap()))
    }

    fn secured(x: &str) -> Acceptor {
        Acceptor {
            secret: s(x),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn internal_secret_matrix() {
        let (a, b) = run(Role::Client, None, None, Acceptor::default()).await;
        assert!(a.is_ok() && !b.unwrap().proved);
        let (a, b) = run(Role::Node, internal("k"), None, secured("k")).await;
        let peer = b.unwrap();
        assert!(a.is_ok() && peer.role == Role::Node && peer.proved);
        let (a, b) = run(Role::Node, internal("k"), None, secured("other")).await;
        assert!(a.unwrap_err().to_string().contains("shared secret"));
        assert!(b.is_err());
        let (a, b) = run(Role::Coord, None, None, secured("k")).await;
        assert!(a
            .unwrap_err()
            .to_string()
            .contains("requires a shared secret"));
        assert!(b.is_err());
        let (a, b) = run(Role::Node, internal("k"), None, Acceptor::default()).await;
        assert!(a.is_err() && b.is_err());
    }

    #[tokio::test]
    async fn client_keys_and_anonymous_clients() {
        let coord = Acceptor {
            secret: s("k"),
            keys: Some(Arc::new(Keys)),
            ..Default::default()
        };
        let alice = Credential::Client {
            name: "alice".into(),
            key: Secret::new("alice-key").unwrap(),
        };
        let (a, b) = run(Role::Client, Some(alice.clone()), None, coord.clone()).await;
        assert!(a.is_ok());
        let peer = b.unwrap();
        assert!(peer.proved && peer.key_name.as_deref() == Some("alice"));
        // Wrong key for a known name; unknown (revoked) name; no key at all.
        let mallory = Credential::Client {
            name: "alice".into(),
            key: Secret::new("guess").unwrap(),
        };
        let (a, b) = run(Role::Client, Some(mallory), None, coord.clone()).await;
        assert!(a.is_err() && b.is_err());
        let bob = Credential::Client {
            name: "bob".into(),
            key: Secret::new("alice-key").unwrap(),
        };
        let (a, b) = run(Role::Client, Some(bob), None, coord.clone()).await;
        assert!(a.unwrap_err().to_string().contains("revoked"));
        assert!(b.unwrap_err().to_string().contains("revoked"));
        let (a, b) = run(Role::Client, None, None, coord.clone()).await;
        assert!(a.unwrap_err().to_string().contains("client key"));
        assert!(b.is_err());
        // A client key does not make anyone a node.
        let alice_as_node = Credential::Client {
            name: "alice".into(),
            key: Secret::new("alice-key").unwrap(),
        };
        let (a, _) = run(Role::Node, Some(alice_as_node), None, coord).await;
        assert!(a.is_err());
        // Nodes take anonymous clients (tokens gate every operation), unproved.
        let node = Acceptor {
            secret: s("k"),
            anonymous_clients: true,
            ..Default::default()
        };
        let (a, b) = run(Role::Client, None, None, node).await;
        assert!(a.is_ok() && !b.unwrap().proved);
    }

    #[tokio::test]
    async fn clusters_must_match() {
        let x = ClusterId::random();
        let y = ClusterId::random();
        let policy = Acceptor {
            cluster: Some(x),
            ..Default::default()
        };
        let (a, b) = run(Role::Node, None, Some(x), policy.clone()).await;
        assert_eq!(a.unwrap(), Some(x));
        assert_eq!(b.unwrap().cluster, Some(x));
        let (a, b) = run(Role::Node, None, Some(y), policy.clone()).await;
        assert!(a.unwrap_err().to_string().contains("cluster"));
        assert!(b.unwrap_err().to_string().contains("cluster"));
        // A peer that does not know its cluster yet (a new node) is let in.
        let (a, _) = run(Role::Node, None, None, policy).await;
        assert_eq!(a.unwrap(), Some(x));
    }

    #[test]
    fn client_key_file_format() {
        let c = Credential::parse_client_key("ci:00ff\n").unwrap();
        assert!(matches!(c, Credential::Client { ref name, .. } if name == "ci"));
        assert!(Credential::parse_client_key("nocolon").is_err());
        assert!(Credential::parse_client_key("x:zz").is_err());
    }
}
