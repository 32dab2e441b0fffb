//! Where the chunks of a new file go.
//!
//! Per stripe, one node is chosen for the parity block, and every data chunk
//! of the stripe is placed on `replication` distinct nodes among the others,
//! so no node holds both a data chunk and the parity of its stripe: losing
//! any single node leaves every chunk readable, from a replica or by XOR of
//! the rest of the stripe. The starting node rotates with every stripe so
//! load spreads evenly over the cluster.

use crate::error::{Error, Result};
use protocol::{ChunkId, ChunkPlan, NodeAddr, StripePlan};

/// Largest stripe picked automatically: wider stripes cost less parity space
/// but make a rebuild read more chunks.
pub const MAX_AUTO_STRIPE: usize = 4;

pub struct Layout {
    pub replication: u32,
    pub parity: bool,
    pub stripe: Option<u32>,
}

/// Data chunks per stripe for `live` writable nodes.
pub fn stripe_width(layout: &Layout, live: usize) -> usize {
    if !layout.parity {
        return 1;
    }
    let others = live.saturating_sub(1).max(1);
    let want = layout
        .stripe
        .map(|k| k as usize)
        .unwrap_or(others.min(MAX_AUTO_STRIPE));
    // With a single copy, every chunk of a stripe must sit on its own node or
    // one node loss would take two chunks of the stripe, beyond XOR's reach.
    if layout.replication == 1 {
        want.clamp(1, others)
    } else {
        want.max(1)
    }
}

/// Plans `chunks` data chunks over `nodes` (sorted by id by the caller).
pub fn plan(
    nodes: &[NodeAddr],
    chunks: u64,
    layout: &Layout,
    rotation: &mut u64,
) -> Result<Vec<StripePlan>> {
    let r = layout.replication.max(1) as usize;
    let needed = r + usize::from(layout.parity);
    if nodes.len() < needed {
        return Err(Error::NotEnoughNodes {
            live: nodes.len(),
            needed,
            replication: layout.replication,
            parity: layout.parity,
        });
    }
    let n = nodes.len();
    let k = stripe_width(layout, n);
    let mut stripes = Vec::new();
    let mut left = chunks;
    while left > 0 {
        let count = (left as usize).min(k);
        left -= count as u64;
        let off = (*rotation % n as u64) as usize;
        *rotation = rotation.wrapping_add(1);
        let ring: Vec<&NodeAddr> = (0..n).map(|i| &nodes[(off + i) % n]).collect();
        let (parity_node, others) = if layout.parity {
            (Some(ring[0]), &ring[1..])
        } else {
            (None, &ring[..])
        };
        let m = others.len();
        let data = (0..count)
            .map(|i| ChunkPlan {
                id: ChunkId::random(),
                nodes: (0..r).map(|j| others[(i + j) % m].clone()).collect(),
                token: None,
            })
            .collect();
        stripes.push(StripePlan {
            data,
            parity: parity_node.map(|p| ChunkPlan {
                id: ChunkId::random(),
                nodes: vec![p.clone()],
                token: None,
            }),
        });
    }
    Ok(stripes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::NodeId;
    use std::collections::HashSet;

    fn nodes(n: usize) -> Vec<NodeAddr> {
        (0..n)
            .map(|i| NodeAddr {
                id: NodeId::new(&format!("n{i}")).unwrap(),
                addr: format!("127.0.0.1:{}", 4001 + i),
            })
            .collect()
    }

    /// The invariant that makes any single node loss recoverable.
    fn check(stripes: &[StripePlan], r: usize) {
        for s in stripes {
            let p = &s.parity.as_ref().unwrap().nodes[0].id;
            let mut seen_single = HashSet::new();
            for c in &s.data {
                let set: HashSet<_> = c.nodes.iter().map(|n| &n.id).collect();
                assert_eq!(set.len(), r, "replicas on distinct nodes");
                assert!(!set.contains(p), "parity node holds no data of its stripe");
                if r == 1 {
                    assert!(
                        seen_single.insert(c.nodes[0].id.clone()),
                        "R=1: one chunk per node"
                    );
                }
            }
        }
    }

    #[test]
    fn single_loss_is_always_recoverable() {
        for n in 2..8 {
            for r in 1..n {
                let layout = Layout {
                    replication: r as u32,
                    parity: true,
                    stripe: None,
                };
                let mut rot = 0;
                let s = plan(&nodes(n), 13, &layout, &mut rot).unwrap();
                assert_eq!(s.iter().map(|s| s.data.len()).sum::<usize>(), 13);
                check(&s, r);
            }
        }
    }

    /// R=2 + xor: any two failures leave every stripe rebuildable.
    #[test]
    fn two_copies_and_parity_survive_any_two_failures() {
        let layout = Layout {
            replication: 2,
            parity: true,
            stripe: None,
        };
        for n in 4..8 {
            let all = nodes(n);
            let s = plan(&all, 40, &layout, &mut 0).unwrap();
            for a in 0..n {
                for b in a + 1..n {
                    let dead = [&all[a].id, &all[b].id];
                    for st in &s {
                        let lost = st
                            .data
                            .iter()
                            .filter(|c| c.nodes.iter().all(|x| dead.contains(&&x.id)))
                            .count();
                        let parity_dead = dead.contains(&&st.parity.as_ref().unwrap().nodes[0].id);
                        assert!(
                            lost == 0 || (lost == 1 && !parity_dead),
                            "n={n}: losing {a},{b} loses {lost} chunks of a stripe"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn explicit_stripe_is_capped_for_single_copies() {
        let layout = Layout {
            replication: 1,
            parity: true,
            stripe: Some(10),
        };
        let s = plan(&nodes(3), 5, &layout, &mut 0).unwrap();
        assert!(s.iter().all(|s| s.data.len() <= 2));
        check(&s, 1);
    }

    #[test]
    fn too_few_nodes() {
        let layout = Layout {
            replication: 2,
            parity: true,
            stripe: None,
        };
        let e = plan(&nodes(2), 1, &layout, &mut 0).unwrap_err();
        assert_eq!(
            e.to_string(),
            "only 2 live nodes for replication 2 with xor parity (needs 3)"
        );
        assert!(plan(&nodes(2), 0, &layout, &mut 0).is_err());
    }

    #[test]
    fn rotation_spreads_parity() {
        let layout = Layout {
            replication: 1,
            parity: true,
            stripe: None,
        };
        let s = plan(&nodes(4), 30, &layout, &mut 0).unwrap();
        let parity: HashSet<_> = s
            .iter()
            .map(|s| s.parity.as_ref().unwrap().nodes[0].id.clone())
            .collect();
        assert_eq!(parity.len(), 4);
    }
}
