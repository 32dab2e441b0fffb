//! Which nodes exist, where they are, and whether they are alive.
//!
//! A node is *alive* while its heartbeats arrive, *suspect* once one is late
//! or its session dropped, and *dead* after `dead_after` heartbeat intervals
//! of silence. Only nodes with an open session and a recent heartbeat take
//! new chunks.

use crate::config::CoordConfig;
use protocol::{NodeAddr, NodeId, NodeState, NodeStats, SessionMsg};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

pub struct Member {
    pub id: NodeId,
    pub addr: String,
    pub last_heartbeat: Option<Instant>,
    pub stats: NodeStats,
    /// The open session: its generation (a newer registration supersedes an
    /// older one) and the channel to send commands down.
    pub session: Option<(u64, mpsc::Sender<SessionMsg>)>,
    /// Last state logged, to log transitions once.
    pub reported: NodeState,
    /// Failure domain as the node declared it (its id until it registers).
    pub domain: String,
    /// Registered as a hot spare.
    pub spare: bool,
    /// The node has seen a newer catalog than ours: nothing is deleted or
    /// set aside on it.
    pub behind: bool,
    /// Copies the node holds aside (orphans, quarantined corrupt copies):
    /// since when, and whether corrupt. Purged after the orphan grace.
    pub set_aside: std::collections::HashMap<protocol::ChunkId, (Instant, bool)>,
}

#[derive(Default)]
pub struct Membership {
    members: BTreeMap<NodeId, Member>,
    next_gen: u64,
}

impl Membership {
    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    pub fn get_mut(&mut self, id: &NodeId) -> Option<&mut Member> {
        self.members.get_mut(id)
    }

    pub fn contains(&self, id: &NodeId) -> bool {
        self.members.contains_key(id)
    }

    /// Every known node, in id order.
    pub fn iter(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Member> {
        self.members.values_mut()
    }

    pub fn ids(&self) -> impl Iterator<Item = &NodeId> {
        self.members.keys()
    }

    /// Removes a node from the table (`dfs-sim forget`).
    pub fn forget(&mut self, id: &NodeId) -> Option<Member> {
        self.members.remove(id)
    }

    /// Seeds the table with nodes known from the catalog, all dead until
    /// they register.
    pub fn seed(&mut self, known: &BTreeMap<NodeId, String>) {
        for (id, addr) in known {
            self.members.insert(
                id.clone(),
                Member {
                    id: id.clone(),
                    addr: addr.clone(),
                    last_heartbeat: None,
                    stats: NodeStats::default(),
                    session: None,
                    reported: NodeState::Dead,
                    domain: id.to_string(),
                    spare: false,
                    behind: false,
                    set_aside: Default::default(),
                },
            );
        }
    }

    /// Records a new session; returns its generation.
    pub fn register(
        &mut self,
        id: &NodeId,
        addr: &str,
        stats: NodeStats,
        domain: &str,
        spare: bool,
        tx: mpsc::Sender<SessionMsg>,
    ) -> u64 {
        self.next_gen += 1;
        let gen = self.next_gen;
        let m = self.members.entry(id.clone()).or_insert_with(|| Member {
            id: id.clone(),
            addr: addr.to_string(),
            last_heartbeat: None,
            stats: NodeStats::default(),
            session: None,
            reported: NodeState::Dead,
            domain: id.to_string(),
            spare: false,
            behind: false,
            set_aside: Default::default(),
        });
        m.addr = addr.to_string();
        m.domain = if domain.is_empty() {
            id.to_string()
        } else {
            domain.to_string()
        };
        m.spare = spare;
        m.last_heartbeat = Some(Instant::now());
        m.stats = stats;
        m.session = Some((gen, tx));
        if m.reported != NodeState::Alive {
            tracing::info!(node = %id, %addr, "node is alive");
            m.reported = NodeState::Alive;
        }
        gen
    }

    pub fn heartbeat(&mut self, id: &NodeId, stats: NodeStats) {
        if let Some(m) = self.members.get_mut(id) {
            m.last_heartbeat = Some(Instant::now());
            m.stats = stats;
        }
    }

    /// Forgets a session, unless a newer one replaced it already.
    pub fn session_closed(&mut self, id: &NodeId, gen: u64) {
        if let Some(m) = self.members.get_mut(id) {
            if matches!(m.session, Some((g, _)) if g == gen) {
                m.session = None;
                tracing::warn!(node = %id, "node session closed");
            }
        }
    }

    pub fn state(m: &Member, now: Instant, cfg: &CoordConfig) -> NodeState {
        let Some(last) = m.last_heartbeat else {
            return NodeState::Dead;
        };
        let silent = now.saturating_duration_since(last);
        if silent >= cfg.dead_timeout() {
            NodeState::Dead
        } else if m.session.is_none() || silent > cfg.heartbeat * 2 {
            NodeState::Suspect
        } else {
            NodeState::Alive
        }
    }

    /// Not yet declared dead: alive or suspect. Copies on such a node still
    /// count (a late heartbeat is not a lost disk), and readers may try it.
    pub fn not_dead(&self, id: &NodeId, now: Instant, cfg: &CoordConfig) -> bool {
        self.members
            .get(id)
            .is_some_and(|m| Self::state(m, now, cfg) != NodeState::Dead)
    }

    /// Alive in the strict sense of [`Membership::state`]: a session open
    /// and heartbeats on time. Work that should not start on a wavering
    /// node (a rebalance move) asks this.
    pub fn is_alive(&self, id: &NodeId, now: Instant, cfg: &CoordConfig) -> bool {
        self.members
            .get(id)
            .is_some_and(|m| Self::state(m, now, cfg) == NodeState::Alive)
    }

    /// Nodes fit to receive new chunks: session open, not dead, not being
    /// drained, and room for a whole chunk beyond the node's reserve (as of
    /// its last heartbeat). A heartbeat that is merely late (a loaded
    /// machine) does not take a node out of placement; a closed session
    /// does at once.
    pub fn writable(
        &self,
        now: Instant,
        cfg: &CoordConfig,
        draining: &std::collections::BTreeSet<NodeId>,
    ) -> Vec<NodeAddr> {
        self.members
            .values()
            .filter(|m| {
                m.session.is_some()
                    && Self::state(m, now, cfg) != NodeState::Dead
                    && !draining.contains(&m.id)
                    && m.stats.usable_bytes().is_none_or(|u| u >= cfg.chunk_size)
            })
            .map(|m| NodeAddr {
                id: m.id.clone(),
                addr: m.addr.clone(),
            })
            .collect()
    }

    /// Writable nodes as placement sees them. `used_spares` are spares that
    /// took over data and count as regular nodes now.
    pub fn candidates(
        &self,
        now: Instant,
        cfg: &CoordConfig,
        draining: &std::collections::BTreeSet<NodeId>,
        used_spares: &std::collections::HashSet<NodeId>,
    ) -> Vec<crate::placement::Candidate> {
        let mut v: Vec<crate::placement::Candidate> = self
            .writable(now, cfg, draining)
            .into_iter()
            .map(|n| {
                let m = &self.members[&n.id];
                crate::placement::Candidate {
                    domain: m.domain.clone(),
                    spare: m.spare && !used_spares.contains(&n.id),
                    node: n,
                }
            })
            .collect();
        v.sort_by(|a, b| a.node.id.cmp(&b.node.id));
        v
    }

    /// Failure domain of every known node.
    pub fn domains(&self) -> std::collections::HashMap<NodeId, String> {
        self.members
            .values()
            .map(|m| (m.id.clone(), m.domain.clone()))
            .collect()
    }

    pub fn addr_of(&self, id: &NodeId) -> String {
        self.members
            .get(id)
            .map(|m| m.addr.clone())
            .unwrap_or_else(|| "unknown".into())
    }

    /// Queues a command on a node's session; false if it has none.
    pub fn send(&self, id: &NodeId, msg: SessionMsg) -> bool {
        match self.members.get(id).and_then(|m| m.session.as_ref()) {
            Some((_, tx)) => tx.try_send(msg).is_ok(),
            None => false,
        }
    }

    pub fn node_addr(&self, id: &NodeId) -> NodeAddr {
        NodeAddr {
            id: id.clone(),
            addr: self.addr_of(id),
        }
    }

    /// Logs state transitions; returns the nodes newly declared dead with
    /// the time of their last heartbeat (when they actually died).
    pub fn check(&mut self, now: Instant, cfg: &CoordConfig) -> Vec<(NodeId, Instant)> {
        let mut dead = Vec::new();
        for m in self.members.values_mut() {
            let s = Self::state(m, now, cfg);
            if s == m.reported {
                continue;
            }
            let silent = m
                .last_heartbeat
                .map(|t| now.saturating_duration_since(t))
                .unwrap_or(Duration::ZERO);
            match s {
                NodeState::Dead => {
                    tracing::warn!(node = %m.id, silent_s = silent.as_secs_f64(), "node declared dead: missed {} heartbeats", cfg.dead_after);
                    dead.push((m.id.clone(), m.last_heartbeat.unwrap_or(now)));
                }
                NodeState::Suspect => {
                    tracing::warn!(node = %m.id, silent_s = silent.as_secs_f64(), "node suspect")
                }
                NodeState::Alive => tracing::info!(node = %m.id, "node is alive again"),
            }
            m.reported = s;
        }
        dead
    }
}
