//! Repair and rebalance traffic per node, for the dashboard's tiles and
//! flows and for `status`: which nodes are being read and written right
//! now, and how fast.
//!
//! What is in flight is not kept here: it is read off the repair and
//! rebalance bookkeeping at each report (their in-flight maps are the one
//! truth, so an order dropped on any path can never linger as phantom
//! traffic). This module keeps only what completed within the last
//! [`TRAFFIC_WINDOW_MS`]: a repair of small chunks is over in milliseconds,
//! and a screen refreshed every half second would otherwise never show it.

use protocol::dashboard::TRAFFIC_WINDOW_MS;
use protocol::{Flow, FlowKind, NodeId, NodeTraffic};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Completed transfers remembered at most, whatever the rate: a flood of
/// tiny repairs costs bounded memory (the rates then undercount).
const MAX_REMEMBERED: usize = 50_000;

const WINDOW: Duration = Duration::from_millis(TRAFFIC_WINDOW_MS);

/// One order in flight, as the repair or rebalance bookkeeping holds it.
pub struct InFlight<'a> {
    pub kind: FlowKind,
    /// Nodes read and the bytes read from each.
    pub sources: Vec<(&'a NodeId, u64)>,
    pub target: &'a NodeId,
    /// Bytes of the new copy.
    pub bytes: u64,
}

struct Done {
    at: Instant,
    kind: FlowKind,
    sources: Vec<(NodeId, u64)>,
    target: NodeId,
    bytes: u64,
}

/// Recently completed transfers, kept in [`crate::state::State`].
#[derive(Default)]
pub struct Traffic {
    done: VecDeque<Done>,
}

impl Traffic {
    /// A repair or move completed at `now`: `target` wrote `bytes`, each
    /// source gave what it is listed with.
    pub fn completed(
        &mut self,
        kind: FlowKind,
        sources: Vec<(NodeId, u64)>,
        target: NodeId,
        bytes: u64,
        now: Instant,
    ) {
        self.expire(now);
        if self.done.len() >= MAX_REMEMBERED {
            self.done.pop_front();
        }
        self.done.push_back(Done {
            at: now,
            kind,
            sources,
            target,
            bytes,
        });
    }

    fn expire(&mut self, now: Instant) {
        while self
            .done
            .front()
            .is_some_and(|d| now.saturating_duration_since(d.at) > WINDOW)
        {
            self.done.pop_front();
        }
    }

    /// Per node (only nodes with any traffic, in id order) and per
    /// (kind, source, target): what `in_flight` holds now plus what
    /// completed within the window.
    pub fn report<'a>(
        &mut self,
        in_flight: impl IntoIterator<Item = InFlight<'a>>,
        now: Instant,
    ) -> (Vec<NodeTraffic>, Vec<Flow>) {
        self.expire(now);
        let mut nodes: BTreeMap<NodeId, NodeTraffic> = BTreeMap::new();
        let mut flows: BTreeMap<(FlowKind, NodeId, NodeId), Flow> = BTreeMap::new();
        for f in in_flight {
            let t = nodes
                .entry(f.target.clone())
                .or_insert_with(|| empty(f.target));
            match f.kind {
                FlowKind::Repair => {
                    t.repair_writes += 1;
                    t.repair_write_bytes += f.bytes;
                }
                FlowKind::Rebalance => {
                    t.rebalance_writes += 1;
                    t.rebalance_write_bytes += f.bytes;
                }
            }
            for (src, read) in f.sources {
                let s = nodes.entry(src.clone()).or_insert_with(|| empty(src));
                match f.kind {
                    FlowKind::Repair => {
                        s.repair_reads += 1;
                        s.repair_read_bytes += read;
                    }
                    FlowKind::Rebalance => {
                        s.rebalance_reads += 1;
                        s.rebalance_read_bytes += read;
                    }
                }
                let fl = flows
                    .entry((f.kind, src.clone(), f.target.clone()))
                    .or_insert_with(|| flow(f.kind, src, f.target));
                fl.in_flight += 1;
                fl.in_flight_bytes += read;
            }
        }
        for d in &self.done {
            let t = nodes
                .entry(d.target.clone())
                .or_insert_with(|| empty(&d.target));
            t.recent_write_bytes += d.bytes;
            if d.kind == FlowKind::Repair {
                t.recent_repair_write_bytes += d.bytes;
            }
            for (src, read) in &d.sources {
                let s = nodes.entry(src.clone()).or_insert_with(|| empty(src));
                s.recent_read_bytes += read;
                if d.kind == FlowKind::Repair {
                    s.recent_repair_read_bytes += read;
                }
                flows
                    .entry((d.kind, src.clone(), d.target.clone()))
                    .or_insert_with(|| flow(d.kind, src, &d.target))
                    .recent_bytes += read;
            }
        }
        let secs = WINDOW.as_secs_f64();
        for t in nodes.values_mut() {
            t.read_rate_bytes_per_s = (t.recent_read_bytes as f64 / secs) as u64;
            t.write_rate_bytes_per_s = (t.recent_write_bytes as f64 / secs) as u64;
        }
        (nodes.into_values().collect(), flows.into_values().collect())
    }
}

fn empty(id: &NodeId) -> NodeTraffic {
    NodeTraffic {
        node: id.clone(),
        repair_reads: 0,
        repair_read_bytes: 0,
        repair_writes: 0,
        repair_write_bytes: 0,
        rebalance_reads: 0,
        rebalance_read_bytes: 0,
        rebalance_writes: 0,
        rebalance_write_bytes: 0,
        read_rate_bytes_per_s: 0,
        write_rate_bytes_per_s: 0,
        recent_read_bytes: 0,
        recent_write_bytes: 0,
        recent_repair_read_bytes: 0,
        recent_repair_write_bytes: 0,
    }
}

fn flow(kind: FlowKind, source: &NodeId, target: &NodeId) -> Flow {
    Flow {
        kind,
        source: source.clone(),
        target: target.clone(),
        in_flight: 0,
        in_flight_bytes: 0,
        recent_bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> NodeId {
        NodeId::new(s).unwrap()
    }

    #[test]
    fn in_flight_and_recent_traffic_per_node_and_flow() {
        let mut t = Traffic::default();
        let t0 = Instant::now();
        // A rebuild reading 100 from n1 and 50 from n2, writing 120 on n3.
        t.completed(
            FlowKind::Repair,
            vec![(n("n1"), 100), (n("n2"), 50)],
            n("n3"),
            120,
            t0,
        );
        let (n2, target) = (n("n2"), n("n4"));
        let (nodes, flows) = t.report(
            [InFlight {
                kind: FlowKind::Rebalance,
                sources: vec![(&n2, 30)],
                target: &target,
                bytes: 30,
            }],
            t0 + Duration::from_millis(10),
        );
        let by = |id: &str| nodes.iter().find(|x| x.node == n(id)).unwrap().clone();
        assert_eq!(nodes.len(), 4);
        assert_eq!(by("n1").recent_read_bytes, 100);
        assert_eq!(by("n1").read_rate_bytes_per_s, 20); // 100 B over 5 s
        assert_eq!(by("n2").recent_read_bytes, 50);
        assert_eq!(
            (by("n2").rebalance_reads, by("n2").rebalance_read_bytes),
            (1, 30)
        );
        assert_eq!(by("n3").recent_write_bytes, 120);
        assert_eq!(
            (by("n4").rebalance_writes, by("n4").rebalance_write_bytes),
            (1, 30)
        );
        assert_eq!(flows.len(), 3);
        let f = flows
            .iter()
            .find(|f| f.source == n("n2") && f.target == n("n4"))
            .unwrap();
        assert_eq!(
            (f.kind, f.in_flight, f.in_flight_bytes),
            (FlowKind::Rebalance, 1, 30)
        );
        // After the window only what is in flight remains.
        let (nodes, flows) = t.report([], t0 + WINDOW + Duration::from_millis(1));
        assert!(nodes.is_empty() && flows.is_empty());
    }

    #[test]
    fn memory_is_bounded() {
        let mut t = Traffic::default();
        let now = Instant::now();
        for _ in 0..MAX_REMEMBERED + 10 {
            t.completed(FlowKind::Repair, vec![(n("a"), 1)], n("b"), 1, now);
        }
        assert_eq!(t.done.len(), MAX_REMEMBERED);
    }
}
