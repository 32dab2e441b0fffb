//! Which nodes exist, where they are, and whether they are alive.
//!
//! A node is *alive* while its heartbeats arrive, *suspect* once one is late
//! or its session dropped, and *dead* after `dead_after` heartbeat intervals
//! of silence, or at once while it reports its store failed (its copies
//! are gone). Only nodes with an open session and a recent heartbeat take
//! new chunks, and not those whose recent transfers keep failing (backed
//! off, as a full disk is).
//!
//! Silence is judged against the coordinator's own progress: if the
//! monitor itself did not run for a while (the process was stopped, the
//! machine suspended), no heartbeat could have been read either, so every
//! node's window starts again instead of all being declared dead.

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
    /// The identity its data directory carries (`node.uuid`), as sent at
    /// its last registration; None for nodes from before identities.
    pub identity: Option<String>,
    /// Transfers to this node that failed in a row (repair copies it was
    /// to store), and until when it takes none because of them.
    pub transfer_failures: u32,
    pub avoid_until: Option<Instant>,
    /// Until when a node without a session counts as suspect, not dead: a
    /// coordinator that just took over gives nodes time to find it.
    pub grace_until: Option<Instant>,
}

impl Member {
    fn new(id: &NodeId, addr: &str) -> Member {
        Member {
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
            identity: None,
            transfer_failures: 0,
            avoid_until: None,
            grace_until: None,
        }
    }
}

/// The least time nodes get to find a new leader before any is declared
/// dead: they notice a silent leader after a few heartbeats, then try the
/// members in turn.
const TAKEOVER_GRACE: Duration = Duration::from_secs(10);

/// Transfers failing in a row before a node is backed off.
const FAILURES_BEFORE_BACKOFF: u32 = 3;
/// First back-off; it doubles with every further failure, up to the max.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Membership {
    members: BTreeMap<NodeId, Member>,
    next_gen: u64,
    /// When [`Membership::check`] last ran: a gap far longer than its
    /// period means the coordinator itself was not running.
    last_check: Option<Instant>,
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
            self.members.insert(id.clone(), Member::new(id, addr));
        }
    }

    /// Adds nodes known from the catalog that the table lacks (a snapshot
    /// received from the leader, a member that just became leader).
    pub fn seed_missing(&mut self, known: &BTreeMap<NodeId, String>) {
        for (id, addr) in known {
            if !self.members.contains_key(id) {
                self.members.insert(id.clone(), Member::new(id, addr));
            }
        }
    }

    /// A coordinator that just took over has the catalog but no liveness:
    /// every node without a session here counts as last heard now (suspect,
    /// not dead), so none is declared dead and no repair is planned for it
    /// before it has had a whole dead-after window to register.
    pub fn grace(&mut self, now: Instant, cfg: &CoordConfig) {
        let until = now + cfg.dead_timeout().max(TAKEOVER_GRACE);
        for m in self.members.values_mut() {
            if m.session.is_none() {
                m.last_heartbeat = Some(now);
                m.grace_until = Some(until);
                m.reported = NodeState::Suspect;
            }
        }
    }

    /// Drops every session's command channel (a deposed leader): no order
    /// goes out from here any more; the sessions end at their next beat.
    pub fn close_sessions(&mut self) {
        for m in self.members.values_mut() {
            m.session = None;
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
        let m = self
            .members
            .entry(id.clone())
            .or_insert_with(|| Member::new(id, addr));
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
        // A node whose store is gone holds none of its copies: dead for
        // repair and placement, though it still heartbeats (to say so).
        if m.stats.failed.is_some() {
            return NodeState::Dead;
        }
        let silent = now.saturating_duration_since(last);
        if m.session.is_none() && m.grace_until.is_some_and(|g| now < g) {
            NodeState::Suspect
        } else if silent >= cfg.dead_timeout() {
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
                    && m.avoid_until.is_none_or(|t| t <= now)
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

    /// A transfer to `id` failed (a repair copy it could not store): after
    /// [`FAILURES_BEFORE_BACKOFF`] in a row it takes no new copies for a
    /// while, doubling with each further failure, so repair and placement
    /// choose another node instead of the same failing one again and
    /// again. A full disk is avoided the same way by its free space; this
    /// covers every other cause (a broken disk the node has not noticed,
    /// an old node without a store probe).
    pub fn transfer_failed(&mut self, id: &NodeId, now: Instant) {
        let Some(m) = self.members.get_mut(id) else {
            return;
        };
        m.transfer_failures = m.transfer_failures.saturating_add(1);
        if m.transfer_failures >= FAILURES_BEFORE_BACKOFF {
            let doublings = (m.transfer_failures - FAILURES_BEFORE_BACKOFF).min(6);
            let pause = (BACKOFF_MIN * 2u32.pow(doublings)).min(BACKOFF_MAX);
            m.avoid_until = Some(now + pause);
            tracing::warn!(node = %id, failures = m.transfer_failures, pause_s = pause.as_secs(), "transfers to this node keep failing; choosing other nodes for a while");
        }
    }

    /// A transfer to `id` succeeded: its failure count starts over.
    pub fn transfer_ok(&mut self, id: &NodeId) {
        if let Some(m) = self.members.get_mut(id) {
            if m.avoid_until.take().is_some() {
                tracing::info!(node = %id, "node takes transfers again");
            }
            m.transfer_failures = 0;
        }
    }

    /// Logs state transitions; returns the nodes newly declared dead with
    /// the time of their last heartbeat (when they actually died).
    ///
    /// If this has not run for longer than a heartbeat interval (the
    /// monitor runs every quarter interval), the coordinator itself was not
    /// running (stopped, suspended, starved): heartbeats sent meanwhile
    /// were not read either, so that time says nothing about the nodes.
    /// It is not counted: every live node's window moves forward by the
    /// gap (a node silent before the pause keeps the silence it had; one
    /// that really died during the pause is declared dead one dead timeout
    /// after the resume).
    pub fn check(&mut self, now: Instant, cfg: &CoordConfig) -> Vec<(NodeId, Instant)> {
        let gap = self
            .last_check
            .map(|t| now.saturating_duration_since(t))
            .unwrap_or_default();
        self.last_check = Some(now);
        if gap > cfg.heartbeat {
            tracing::warn!(
                paused_s = gap.as_secs_f64(),
                "the coordinator itself did not run for a while; not counting that time against the nodes"
            );
            for m in self.members.values_mut() {
                if m.reported == NodeState::Dead {
                    continue;
                }
                if let Some(t) = m.last_heartbeat {
                    m.last_heartbeat = Some((t + gap).min(now));
                }
            }
        }
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
                NodeState::Dead if m.stats.failed.is_some() => {
                    let why = m.stats.failed.as_deref().unwrap_or_default();
                    tracing::error!(node = %m.id, reason = %why, "node reports its store failed: counting its copies lost");
                    dead.push((m.id.clone(), now));
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> CoordConfig {
        let mut c = CoordConfig::new("/nonexistent".into());
        c.heartbeat = Duration::from_millis(100);
        c.dead_after = 3;
        c.chunk_size = 1;
        c
    }

    fn cluster(n: usize) -> (Membership, Vec<mpsc::Receiver<SessionMsg>>) {
        let mut m = Membership::default();
        let mut rxs = Vec::new();
        for i in 0..n {
            let (tx, rx) = mpsc::channel(1);
            let id = NodeId::new(&format!("n{i}")).unwrap();
            m.register(&id, "127.0.0.1:1", NodeStats::default(), "", false, tx);
            rxs.push(rx);
        }
        (m, rxs)
    }

    fn writable_ids(m: &Membership, now: Instant, c: &CoordConfig) -> Vec<String> {
        m.writable(now, c, &Default::default())
            .into_iter()
            .map(|n| n.id.to_string())
            .collect()
    }

    #[test]
    fn a_failed_store_is_dead_at_once_and_takes_nothing() {
        let c = cfg();
        let (mut m, _rx) = cluster(2);
        let n0 = NodeId::new("n0").unwrap();
        let now = Instant::now();
        m.check(now, &c);
        m.heartbeat(
            &n0,
            NodeStats {
                failed: Some("data directory gone".into()),
                ..Default::default()
            },
        );
        assert_eq!(Membership::state(&m.members[&n0], now, &c), NodeState::Dead);
        assert!(!m.is_alive(&n0, now, &c));
        let dead = m.check(now, &c);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].0, n0);
        assert_eq!(writable_ids(&m, now, &c), vec!["n1"]);
    }

    #[test]
    fn a_node_whose_transfers_keep_failing_is_backed_off_then_tried_again() {
        let mut c = cfg();
        // Heartbeats are not the point here: nobody goes silent.
        c.heartbeat = Duration::from_secs(600);
        let (mut m, _rx) = cluster(2);
        let n0 = NodeId::new("n0").unwrap();
        let now = Instant::now();
        m.transfer_failed(&n0, now);
        m.transfer_failed(&n0, now);
        assert_eq!(
            writable_ids(&m, now, &c).len(),
            2,
            "two failures: still tried"
        );
        m.transfer_failed(&n0, now);
        assert_eq!(writable_ids(&m, now, &c), vec!["n1"], "backed off");
        let later = now + BACKOFF_MIN + Duration::from_millis(1);
        assert!(writable_ids(&m, later, &c).contains(&"n0".to_string()));
        // Each further failure doubles the pause, up to the maximum.
        m.transfer_failed(&n0, later);
        assert!(!writable_ids(&m, later + BACKOFF_MIN, &c).contains(&"n0".to_string()));
        for _ in 0..20 {
            m.transfer_failed(&n0, later);
        }
        let until = m.members[&n0].avoid_until.unwrap();
        assert!(until <= later + BACKOFF_MAX);
        m.transfer_ok(&n0);
        assert_eq!(writable_ids(&m, later, &c).len(), 2, "a success resets");
    }

    #[test]
    fn time_the_coordinator_did_not_run_is_not_counted_against_nodes() {
        let c = cfg();
        let (mut m, _rx) = cluster(2);
        let t0 = Instant::now();
        assert!(m.check(t0, &c).is_empty());
        // The monitor did not run for 5 s (SIGSTOP): nobody is dead.
        let t1 = t0 + Duration::from_secs(5);
        assert!(m.check(t1, &c).is_empty());
        assert!(m
            .members
            .values()
            .all(|x| Membership::state(x, t1, &c) == NodeState::Alive));
        // Once it runs again, real silence counts as before.
        let mut t = t1;
        let mut dead = Vec::new();
        while t < t1 + Duration::from_secs(1) {
            t += Duration::from_millis(25);
            dead.extend(m.check(t, &c));
        }
        assert_eq!(
            dead.len(),
            2,
            "silent nodes die one dead timeout after the resume"
        );
    }
}
