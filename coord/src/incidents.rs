//! Incident records: from a node's death (or a corrupt copy found) until
//! every chunk is fully protected again, what happened: when it started and
//! was noticed, which nodes failed, which were read and which received new
//! copies, chunks and bytes per scheme, bytes read per byte rebuilt,
//! failures and retries, and the time to repair (MTTR).
//!
//! Kept in a bounded file beside the catalog (`incidents.json`, the last
//! [`MAX_KEPT`]), rewritten durably (temp file, fsync, rename, fsync the
//! directory) when an incident opens or closes and at most once a
//! [`SAVE_EVERY`] while one is open, so the record survives a coordinator
//! restart. It is a report, not catalog state: losing the file loses
//! history, never data, which is why it is not journaled.
//!
//! Owned by the repair bookkeeping ([`crate::repair::Repairs`]), which
//! feeds it from the same paths that count repairs.

use protocol::{ChunkId, Incident, IncidentCause, IncidentNode, IncidentScheme, NodeId, Scheme};
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The file, in the coordinator's data directory.
pub const FILE: &str = "incidents.json";
/// Incidents kept; older ones are dropped from the file.
pub const MAX_KEPT: usize = protocol::MAX_INCIDENTS_LISTED;
/// Largest file read back: [`MAX_KEPT`] incidents of a few KiB each, with
/// room to spare. A bigger file is not ours (or damaged): it is ignored.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Nodes listed as sources or targets of one incident at most.
const MAX_NODES: usize = 1000;
/// An open incident's progress is saved at most this often.
pub const SAVE_EVERY: Duration = Duration::from_secs(1);
/// A corrupt copy is dropped from the catalog by a journal record; until
/// its repair is ordered the chunk does not look short, and the incident
/// must not close meanwhile. A report whose repair never comes (the record
/// failed) stops holding it open after this long.
const CORRUPT_PENDING: Duration = Duration::from_secs(10);

/// The incident records, oldest first; the last one may be open.
#[derive(Default)]
pub struct Incidents {
    kept: VecDeque<Incident>,
    next_id: u64,
    /// Chunks whose repair failed in the open incident: ordering one again
    /// is a retry.
    failed_chunks: HashSet<ChunkId>,
    /// Something changed since the last save; an open/close forces one.
    dirty: bool,
    urgent: bool,
    saved_at: Option<Instant>,
    /// Corrupt copies reported whose repair is not ordered yet.
    pending: HashMap<ChunkId, (NodeId, Instant)>,
}

/// Milliseconds since the Unix epoch.
pub fn wall_ms() -> u64 {
    crate::cmd::now_ms()
}

impl Incidents {
    /// Reads the records kept in `dir`; a missing file is no history, a
    /// damaged or oversized one is set aside with a warning (history only).
    pub fn load(dir: &Path) -> Incidents {
        let path = dir.join(FILE);
        let mut me = Incidents::default();
        let text = match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_FILE_BYTES => {
                tracing::warn!(path = %path.display(), bytes = m.len(), "incident file too large; ignored");
                return me;
            }
            Ok(_) => match std::fs::read(&path) {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the incident file; starting without history");
                    return me;
                }
            },
            Err(_) => return me,
        };
        match serde_json::from_slice::<Vec<Incident>>(&text) {
            Ok(list) => {
                me.next_id = list.iter().map(|i| i.id).max().unwrap_or(0);
                me.kept = list.into_iter().rev().take(MAX_KEPT).rev().collect();
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "damaged incident file; starting without history");
            }
        }
        me
    }

    fn open(&mut self) -> Option<&mut Incident> {
        self.kept.back_mut().filter(|i| i.ended_ms.is_none())
    }

    pub fn is_open(&self) -> bool {
        self.kept.back().is_some_and(|i| i.ended_ms.is_none())
    }

    /// Opens an incident unless one is open; returns the open one.
    fn open_or_start(&mut self, cause: IncidentCause, started_ms: u64) -> &mut Incident {
        if !self.is_open() {
            self.next_id += 1;
            self.failed_chunks.clear();
            // The oldest goes once this one is known to be kept (at its
            // close): an empty incident must not push history out.
            self.kept.push_back(Incident {
                id: self.next_id,
                cause,
                started_ms,
                detected_ms: wall_ms(),
                ended_ms: None,
                failed_nodes: vec![],
                sources: vec![],
                targets: vec![],
                chunks: 0,
                read_bytes: 0,
                rebuilt_bytes: 0,
                schemes: vec![],
                failures: 0,
                retries: 0,
                stuck_chunks: 0,
            });
            self.urgent = true;
        }
        self.dirty = true;
        self.kept.back_mut().expect("just pushed or open")
    }

    /// A node was declared dead; it failed `ago` before now (its last
    /// heartbeat).
    pub fn node_died(&mut self, node: &NodeId, ago: Duration) {
        let started = wall_ms().saturating_sub(ago.as_millis() as u64);
        let i = self.open_or_start(IncidentCause::NodeDied(node.clone()), started);
        i.started_ms = i.started_ms.min(started);
        if !i.failed_nodes.contains(node) {
            i.failed_nodes.push(node.clone());
        }
    }

    /// A node holds a bad or missing copy of `chunk`.
    pub fn corrupt(&mut self, node: &NodeId, chunk: ChunkId) {
        self.pending.insert(chunk, (node.clone(), Instant::now()));
        let cause = IncidentCause::Corrupt {
            node: node.clone(),
            chunk,
        };
        let i = self.open_or_start(cause, wall_ms());
        if !i.failed_nodes.contains(node) {
            i.failed_nodes.push(node.clone());
        }
    }

    /// A repair order was sent.
    pub fn scheduled(&mut self, chunk: ChunkId) {
        let retry = self.failed_chunks.contains(&chunk);
        let cause = match self.pending.remove(&chunk) {
            Some((node, _)) => IncidentCause::Corrupt { node, chunk },
            None => IncidentCause::UnderProtected,
        };
        let i = self.open_or_start(cause, wall_ms());
        if retry {
            i.retries += 1;
        }
    }

    /// A repair order failed or timed out.
    pub fn failed(&mut self, chunk: ChunkId) {
        if let Some(i) = self.open() {
            i.failures += 1;
            self.failed_chunks.insert(chunk);
            self.dirty = true;
        }
    }

    /// Chunks that cannot be repaired now (no source left).
    pub fn stuck(&mut self, chunks: usize) {
        if let Some(i) = self.open() {
            if chunks as u64 > i.stuck_chunks {
                i.stuck_chunks = chunks as u64;
                self.dirty = true;
            }
        }
    }

    /// A repair completed: `target` wrote `bytes`, reading `sources`.
    pub fn repaired(
        &mut self,
        scheme: Scheme,
        replication: u32,
        sources: &[(NodeId, u64)],
        target: &NodeId,
        bytes: u64,
    ) {
        let Some(i) = self.open() else { return };
        let read: u64 = sources.iter().map(|(_, b)| b).sum();
        i.chunks += 1;
        i.read_bytes += read;
        i.rebuilt_bytes += bytes;
        match i
            .schemes
            .iter_mut()
            .find(|s| s.scheme == scheme && s.replication == replication)
        {
            Some(s) => {
                s.chunks += 1;
                s.read_bytes += read;
                s.rebuilt_bytes += bytes;
            }
            None => i.schemes.push(IncidentScheme {
                scheme,
                replication,
                chunks: 1,
                read_bytes: read,
                rebuilt_bytes: bytes,
            }),
        }
        for (n, b) in sources {
            add_node(&mut i.sources, n, *b);
        }
        add_node(&mut i.targets, target, bytes);
        self.dirty = true;
    }

    /// Every chunk is fully protected again: the open incident ends. One
    /// that repaired nothing and lost nothing (a node that held no data died,
    /// or a node still down when the coordinator restarted) is not kept.
    pub fn settled(&mut self) {
        let now = Instant::now();
        self.pending
            .retain(|_, (_, at)| now.saturating_duration_since(*at) < CORRUPT_PENDING);
        if !self.pending.is_empty() {
            return;
        }
        if self
            .open()
            .is_some_and(|i| i.chunks == 0 && i.failures == 0 && i.stuck_chunks == 0)
        {
            self.kept.pop_back();
            self.failed_chunks.clear();
            self.dirty = true;
            self.urgent = true;
            return;
        }
        while self.kept.len() > MAX_KEPT {
            self.kept.pop_front();
        }
        if let Some(i) = self.open() {
            i.ended_ms = Some(wall_ms().max(i.started_ms));
            tracing::info!(
                incident = i.id,
                mttr_ms = i.ended_ms.unwrap_or(0) - i.started_ms,
                chunks = i.chunks,
                "incident over"
            );
            self.failed_chunks.clear();
            self.dirty = true;
            self.urgent = true;
        }
    }

    /// Newest first, at most [`MAX_KEPT`]; or the one with `id`.
    pub fn list(&self, id: Option<u64>) -> Vec<Incident> {
        self.kept
            .iter()
            .rev()
            .filter(|i| id.is_none_or(|id| i.id == id))
            .take(MAX_KEPT)
            .cloned()
            .collect()
    }

    /// The records to write now, if a save is due: at once after an open or
    /// a close, else at most once a [`SAVE_EVERY`].
    pub fn take_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        let due = self.urgent
            || (self.dirty
                && self
                    .saved_at
                    .is_none_or(|t| now.saturating_duration_since(t) >= SAVE_EVERY));
        if !due {
            return None;
        }
        self.dirty = false;
        self.urgent = false;
        self.saved_at = Some(now);
        let list: Vec<&Incident> = self.kept.iter().collect();
        serde_json::to_vec_pretty(&list).ok()
    }
}

fn add_node(list: &mut Vec<IncidentNode>, node: &NodeId, bytes: u64) {
    if let Some(x) = list.iter_mut().find(|x| &x.node == node) {
        x.bytes += bytes;
        x.repairs += 1;
    } else if list.len() < MAX_NODES {
        list.push(IncidentNode {
            node: node.clone(),
            bytes,
            repairs: 1,
        });
    }
}

/// Writes `bytes` (from [`Incidents::take_due`]) as the incident file in
/// `dir`, durably.
pub fn save(dir: PathBuf, bytes: Vec<u8>) {
    if let Err(e) = directio::fsutil::write_atomic(&dir, FILE, &bytes) {
        tracing::warn!(dir = %dir.display(), error = %e, "cannot save the incident records");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn an_incident_from_death_to_full_protection_survives_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let mut inc = Incidents::default();
        inc.node_died(&n("n2"), Duration::from_millis(1500));
        let c = ChunkId([7; 16]);
        inc.scheduled(c);
        inc.failed(c);
        inc.scheduled(c);
        let xor = "xor:2".parse::<Scheme>().unwrap();
        inc.repaired(xor, 1, &[(n("n1"), 100), (n("n3"), 100)], &n("n4"), 100);
        inc.repaired(xor, 1, &[(n("n1"), 50)], &n("n3"), 50);
        assert!(inc.is_open());
        inc.settled();
        assert!(!inc.is_open());
        let bytes = inc.take_due(Instant::now()).expect("a close saves at once");
        save(dir.path().to_path_buf(), bytes);
        assert!(inc.take_due(Instant::now()).is_none());

        let back = Incidents::load(dir.path());
        let list = back.list(None);
        assert_eq!(list.len(), 1);
        let i = &list[0];
        assert_eq!(i.cause, IncidentCause::NodeDied(n("n2")));
        assert_eq!(i.failed_nodes, vec![n("n2")]);
        assert!(i.detected_ms >= i.started_ms + 1500 - 5);
        assert!(i.ended_ms.unwrap() >= i.detected_ms);
        assert_eq!((i.chunks, i.read_bytes, i.rebuilt_bytes), (2, 250, 150));
        assert_eq!((i.failures, i.retries), (1, 1));
        let n1 = i.sources.iter().find(|s| s.node == n("n1")).unwrap();
        assert_eq!((n1.bytes, n1.repairs), (150, 2));
        assert_eq!(i.targets.len(), 2);
        assert_eq!(i.schemes.len(), 1);
        // Ids go on after a reload.
        let mut back = back;
        back.corrupt(&n("n1"), c);
        assert_eq!(back.list(None)[0].id, 2);
        assert_eq!(back.list(Some(1)).len(), 1);
    }

    #[test]
    fn a_corrupt_copy_holds_its_incident_open_until_repaired() {
        let mut inc = Incidents::default();
        let c = ChunkId([9; 16]);
        inc.corrupt(&n("n3"), c);
        // A scan before the drop is journaled sees nothing short.
        inc.settled();
        assert!(inc.is_open());
        inc.scheduled(c);
        let xor = "xor:2".parse::<Scheme>().unwrap();
        inc.repaired(xor, 2, &[(n("n1"), 10)], &n("n2"), 10);
        inc.settled();
        let list = inc.list(None);
        assert_eq!(list.len(), 1);
        assert_eq!(
            list[0].cause,
            IncidentCause::Corrupt {
                node: n("n3"),
                chunk: c
            }
        );
        assert!(list[0].ended_ms.is_some());
    }

    #[test]
    fn bounded_and_damage_tolerant() {
        let dir = tempfile::tempdir().unwrap();
        let mut inc = Incidents::default();
        let xor = "xor:2".parse::<Scheme>().unwrap();
        for _ in 0..MAX_KEPT + 5 {
            inc.node_died(&n("n1"), Duration::ZERO);
            inc.repaired(xor, 1, &[(n("n2"), 1)], &n("n3"), 1);
            inc.settled();
        }
        // One that repaired nothing is not kept.
        inc.node_died(&n("n1"), Duration::ZERO);
        inc.settled();
        assert_eq!(inc.list(None).len(), MAX_KEPT);
        assert_eq!(inc.list(None)[0].id, (MAX_KEPT + 5) as u64);
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        assert!(Incidents::load(dir.path()).list(None).is_empty());
    }
}
