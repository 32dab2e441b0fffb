//! Which cluster this node belongs to, how new a catalog it has seen, and
//! which data directory it is.
//!
//! ```text
//! <data>/cluster.id    hex cluster id, written once when the node first joins
//! <data>/cluster.seq   highest catalog sequence number a coordinator showed it
//! <data>/node.uuid     random 128-bit hex identity of this data directory,
//!                      written once at first start (like HDFS's datanode UUID)
//! <data>/cluster.term  highest coordinator-group term a leader showed it
//! ```
//!
//! `cluster.term` fences a deposed leader: a coordinator group's leader
//! sends its term with every registration, and the node refuses a
//! coordinator, and every order on a session, whose term is below the
//! highest it has recorded. A leader that was paused or cut off and comes
//! back therefore cannot delete, set aside or move anything here.
//!
//! All are written temp + fsync + rename + directory fsync. A node refuses
//! a coordinator (or peer) of another cluster, and its `cluster.seq` tells a
//! coordinator whose catalog is older than the node's data (a stale copy of
//! its directory) that it must not delete anything here. `node.uuid` goes
//! with every registration: the operator-given `--id` names the node, the
//! UUID tells two directories apart, so a second process started with a
//! live node's `--id` (and its own directory) is refused rather than taking
//! the id over, while the node itself may move address freely. A directory
//! from before identities gets one at its next start.

use crate::error::{Error, Result};
use directio::fsutil::write_atomic;
use protocol::ClusterId;
use std::path::{Path, PathBuf};

const ID_FILE: &str = "cluster.id";
const SEQ_FILE: &str = "cluster.seq";
const NODE_FILE: &str = "node.uuid";
const TERM_FILE: &str = "cluster.term";

#[derive(Debug, Clone)]
pub struct Identity {
    dir: PathBuf,
    pub cluster: Option<ClusterId>,
    pub seq_seen: u64,
    /// Highest coordinator-group term seen (0: only single coordinators).
    pub term_seen: u64,
    /// This data directory's identity (32 hex digits).
    pub node: String,
}

/// Reads the directory's `node.uuid`, creating it (durably) if missing.
fn node_identity(dir: &Path) -> Result<String> {
    let path = dir.join(NODE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let s = s.trim();
            if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(s.to_ascii_lowercase())
            } else {
                Err(Error::BadRequest(format!(
                    "{} is not a node identity (32 hex digits); refusing to guess which node this directory belongs to",
                    path.display()
                )))
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id: String = rand::random::<[u8; 16]>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            write_atomic(dir, NODE_FILE, id.as_bytes())?;
            tracing::info!(identity = %id, dir = %dir.display(), "data directory given a node identity");
            Ok(id)
        }
        Err(e) => Err(e.into()),
    }
}

impl Identity {
    pub fn load(dir: &Path) -> Result<Identity> {
        let cluster = match std::fs::read_to_string(dir.join(ID_FILE)) {
            Ok(s) => Some(ClusterId::from_hex(&s).ok_or_else(|| {
                Error::BadRequest(format!(
                    "{} is not a cluster id; refusing to guess which cluster this node belongs to",
                    dir.join(ID_FILE).display()
                ))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        let seq_seen = std::fs::read_to_string(dir.join(SEQ_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let term_seen = std::fs::read_to_string(dir.join(TERM_FILE))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let node = node_identity(dir)?;
        Ok(Identity {
            term_seen,
            dir: dir.to_path_buf(),
            cluster,
            seq_seen,
            node,
        })
    }

    /// Checks a coordinator's answer against what this node knows, records
    /// the cluster on first join and the newest catalog seen.
    pub fn accept(&mut self, cluster: ClusterId, seq: u64) -> Result<()> {
        match self.cluster {
            Some(mine) if mine != cluster => {
                return Err(Error::WrongCluster {
                    mine,
                    theirs: cluster,
                })
            }
            Some(_) => {}
            None => {
                write_atomic(&self.dir, ID_FILE, cluster.to_string().as_bytes())?;
                tracing::info!(%cluster, "joined cluster");
                self.cluster = Some(cluster);
            }
        }
        if seq > self.seq_seen {
            write_atomic(&self.dir, SEQ_FILE, seq.to_string().as_bytes())?;
            self.seq_seen = seq;
        }
        Ok(())
    }

    /// Checks a coordinator's term against the highest seen, recording a
    /// higher one durably before the session runs: a lower term is a
    /// deposed leader, refused.
    pub fn accept_term(&mut self, term: u64) -> Result<()> {
        if term < self.term_seen {
            return Err(Error::Deposed {
                term,
                seen: self.term_seen,
            });
        }
        if term > self.term_seen {
            write_atomic(&self.dir, TERM_FILE, term.to_string().as_bytes())?;
            self.term_seen = term;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lower_term_is_refused_and_the_highest_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let mut id = Identity::load(dir.path()).unwrap();
        id.accept_term(0).unwrap();
        id.accept_term(3).unwrap();
        let mut again = Identity::load(dir.path()).unwrap();
        assert_eq!(again.term_seen, 3);
        let err = again.accept_term(2).unwrap_err();
        assert!(err.to_string().contains("deposed"), "{err}");
        again.accept_term(3).unwrap();
        again.accept_term(5).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap().term_seen, 5);
    }

    #[test]
    fn joins_once_and_refuses_another_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let mut id = Identity::load(dir.path()).unwrap();
        assert!(id.cluster.is_none());
        let a = ClusterId::random();
        id.accept(a, 10).unwrap();
        let mut again = Identity::load(dir.path()).unwrap();
        assert_eq!(again.cluster, Some(a));
        assert_eq!(again.seq_seen, 10);
        // An older catalog of the same cluster is accepted (the coordinator
        // decides not to delete), and does not lower what was seen.
        again.accept(a, 3).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap().seq_seen, 10);
        let err = again.accept(ClusterId::random(), 99).unwrap_err();
        assert!(err.to_string().contains("another cluster"), "{err}");
        assert_eq!(Identity::load(dir.path()).unwrap().cluster, Some(a));
    }

    #[test]
    fn a_directory_keeps_its_node_identity_and_an_old_one_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let first = Identity::load(dir.path()).unwrap().node;
        assert_eq!(first.len(), 32);
        assert_eq!(Identity::load(dir.path()).unwrap().node, first);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(Identity::load(other.path()).unwrap().node, first);
        // A directory from before identities (no node.uuid) gets a new one.
        std::fs::remove_file(dir.path().join(NODE_FILE)).unwrap();
        let again = Identity::load(dir.path()).unwrap().node;
        assert_eq!(again.len(), 32);
        assert_ne!(again, first);
        // A damaged one is refused, not replaced.
        std::fs::write(dir.path().join(NODE_FILE), "junk").unwrap();
        assert!(Identity::load(dir.path()).is_err());
    }
}
