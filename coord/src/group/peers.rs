//! The members of a coordinator group as the operator names them
//! (`--id`, `--peers`), and the group's settings.

use openraft::BasicNode;
use std::collections::BTreeMap;
use std::time::Duration;

/// The members, as every member is told them (`--peers`): names sorted,
/// each given the id of its position (1-based), so every member derives
/// the same ids from the same list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peers {
    pub(super) by_id: BTreeMap<u64, (String, String)>,
}

impl Peers {
    /// Parses `c1=host:port,c2=host:port,...`.
    pub fn parse(s: &str) -> std::result::Result<Peers, String> {
        let mut names = BTreeMap::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, addr) = part
                .split_once('=')
                .ok_or_else(|| format!("--peers: {part:?} is not NAME=HOST:PORT"))?;
            let (name, addr) = (name.trim(), addr.trim());
            if name.is_empty() || addr.is_empty() || name.len() > 64 {
                return Err(format!("--peers: {part:?} is not NAME=HOST:PORT"));
            }
            if names.insert(name.to_string(), addr.to_string()).is_some() {
                return Err(format!("--peers names {name} twice"));
            }
        }
        if names.len() < 2 {
            return Err("--peers needs at least two members (NAME=HOST:PORT,...); run without it for one coordinator".into());
        }
        Ok(Peers {
            by_id: names
                .into_iter()
                .enumerate()
                .map(|(i, (n, a))| (i as u64 + 1, (n, a)))
                .collect(),
        })
    }

    pub fn id_of(&self, name: &str) -> Option<u64> {
        self.by_id
            .iter()
            .find(|(_, (n, _))| n == name)
            .map(|(id, _)| *id)
    }

    pub fn name(&self, id: u64) -> String {
        self.by_id
            .get(&id)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| format!("#{id}"))
    }

    pub fn addr(&self, id: u64) -> Option<&str> {
        self.by_id.get(&id).map(|(_, a)| a.as_str())
    }

    pub(super) fn nodes(&self) -> BTreeMap<u64, BasicNode> {
        self.by_id
            .iter()
            .map(|(id, (_, a))| (*id, BasicNode { addr: a.clone() }))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// A member's group settings (`coord --id --peers`).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub me: String,
    pub peers: Peers,
    /// The leader's heartbeat to followers.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in
    /// `[election, 2 x election]` calls an election.
    pub election: Duration,
    /// Entries between snapshots.
    pub snapshot_every: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_numbered_by_sorted_name() {
        let a = Peers::parse("c2=h:2,c1=h:1,c3=h:3").unwrap();
        let b = Peers::parse("c1=h:1,c3=h:3,c2=h:2").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.id_of("c1"), Some(1));
        assert_eq!(a.addr(3), Some("h:3"));
        assert!(Peers::parse("c1=h:1").is_err());
        assert!(Peers::parse("c1=h:1,c1=h:2").is_err());
        assert!(Peers::parse("c1,c2=h").is_err());
    }
}
