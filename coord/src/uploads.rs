//! Uploads planned and not yet committed, and the names being changed.
//!
//! Why here and not in `State` directly: the per-address cap, expiry and
//! reconciliation all ask the same few questions of the open uploads, and a
//! name being changed must be released on every return path, which only a
//! guard ([`NameGuard`]) makes sure of.

use crate::error::{Error, Result};
use protocol::{ChunkId, FileName, NodeId, PutPlan};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Instant;

/// A planned, not yet committed upload.
pub struct Upload {
    pub name: FileName,
    pub size: u64,
    pub force: bool,
    pub plan: PutPlan,
    pub expires: Instant,
    /// Nodes the client failed to write to during this upload: never
    /// offered again as replacements.
    pub failed: HashSet<NodeId>,
    /// Who planned it (client key name, or peer address), for the per-peer cap.
    pub owner: String,
}

impl Upload {
    pub fn chunk_ids(&self) -> impl Iterator<Item = ChunkId> + '_ {
        self.plan
            .stripes
            .iter()
            .flat_map(|s| s.data.iter().chain(s.parity.iter()).map(|c| c.id))
    }
}

/// The open uploads, by id.
pub struct Uploads {
    open: HashMap<u64, Upload>,
    /// Last id handed out; starts at a random value so ids of a restarted
    /// coordinator do not meet a client's stale ones.
    last_id: u64,
}

impl Default for Uploads {
    fn default() -> Self {
        Uploads {
            open: HashMap::new(),
            last_id: rand::random::<u32>() as u64,
        }
    }
}

impl Uploads {
    /// A fresh upload id (the plan carries it before the upload is opened).
    pub fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    pub fn open(&mut self, id: u64, upload: Upload) {
        self.open.insert(id, upload);
    }

    pub fn get(&self, id: u64) -> Option<&Upload> {
        self.open.get(&id)
    }

    pub fn get_mut(&mut self, id: u64) -> Option<&mut Upload> {
        self.open.get_mut(&id)
    }

    pub fn contains(&self, id: u64) -> bool {
        self.open.contains_key(&id)
    }

    /// Closes an upload (committed, aborted, expired or refused).
    pub fn close(&mut self, id: u64) -> Option<Upload> {
        self.open.remove(&id)
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Open uploads still within their deadline, for the global cap: one
    /// past it is dead weight until the monitor collects it and must not
    /// refuse new puts.
    pub fn live(&self, now: Instant) -> usize {
        self.open.values().filter(|u| u.expires > now).count()
    }

    /// Live uploads (see [`Uploads::live`]) planned by `owner`, for the
    /// per-peer cap.
    pub fn live_owned_by(&self, owner: &str, now: Instant) -> usize {
        self.open
            .values()
            .filter(|u| u.owner == owner && u.expires > now)
            .count()
    }

    /// Open uploads planned by `owner`, for the per-peer cap.
    pub fn owned_by(&self, owner: &str) -> usize {
        self.open.values().filter(|u| u.owner == owner).count()
    }

    /// Chunks the open uploads may still write, for the planned-chunks cap.
    pub fn planned_chunks(&self) -> u64 {
        self.open
            .values()
            .map(|u| u.size.div_ceil(u.plan.chunk_size.max(1)))
            .sum()
    }

    /// Ids of uploads whose time is up.
    pub fn expired(&self, now: Instant) -> Vec<u64> {
        self.open
            .iter()
            .filter(|(_, u)| u.expires <= now)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Every chunk id an open upload may still commit: reconciliation must
    /// not take them for orphans.
    pub fn chunk_ids(&self) -> HashSet<ChunkId> {
        self.open.values().flat_map(|u| u.chunk_ids()).collect()
    }
}

/// Names with a commit, copy, concat or remove in flight: a second change
/// to the same name waits its turn instead of racing the journal. Its own
/// lock, taken only briefly and never while waiting for another, so that a
/// [`NameGuard`] may release from any context (including while the state
/// lock is held) without a deadlock.
#[derive(Default)]
pub struct BusyNames(Mutex<HashSet<FileName>>);

impl BusyNames {
    /// Claims every name in `names`, or none: the first one already busy
    /// is the error. The claim lasts as long as the guard.
    pub fn claim(&self, names: Vec<FileName>) -> Result<NameGuard<'_>> {
        let mut busy = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = names.iter().find(|n| busy.contains(*n)) {
            return Err(Error::Busy(n.clone()));
        }
        busy.extend(names.iter().cloned());
        Ok(NameGuard { owner: self, names })
    }
}

/// Names claimed for a change; released when dropped, on every path.
#[must_use = "the names are released as soon as the guard is dropped"]
pub struct NameGuard<'a> {
    owner: &'a BusyNames,
    names: Vec<FileName>,
}

impl Drop for NameGuard<'_> {
    fn drop(&mut self) {
        let mut busy = self.owner.0.lock().unwrap_or_else(|p| p.into_inner());
        for n in &self.names {
            busy.remove(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> FileName {
        FileName::new(s).unwrap()
    }

    #[test]
    fn a_claimed_name_is_released_on_every_path() {
        let busy = BusyNames::default();
        {
            let _g = busy.claim(vec![name("a"), name("b")]).unwrap();
            assert!(matches!(busy.claim(vec![name("b")]), Err(Error::Busy(_))));
            // All or nothing: "c" is not left claimed by a failed claim.
            assert!(busy.claim(vec![name("c"), name("a")]).is_err());
        }
        let early = || -> Result<()> {
            let _g = busy.claim(vec![name("c")])?;
            Err(Error::BadRequest("early return".into()))
        };
        assert!(early().is_err());
        let _all = busy.claim(vec![name("a"), name("b"), name("c")]).unwrap();
    }
}
