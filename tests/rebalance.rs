//! Rebalancing on real processes: fresh nodes join a cluster holding data,
//! copies move until every node is within 10% of the mean, every get is
//! byte-exact, `fsck` is healthy, no stripe ends up with two members on one
//! node or a worse spread over domains; and a node killed in the middle of
//! a rebalance costs nothing.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, HashSet};

const C: usize = 64 * 1024;

/// Random (incompressible) files, so every copy stores the same bytes and
/// usage is even in bytes once even in copies.
fn corpus() -> Vec<(String, Vec<u8>)> {
    (0..6)
        .map(|i| {
            (
                format!("f{i}"),
                random_bytes(300 + i, 12 * C + 1000 * i as usize),
            )
        })
        .collect()
}

fn fsck_healthy(c: &Cluster) -> bool {
    let o = c.run(&["fsck", "--json"]);
    o.status.success()
        && serde_json::from_slice::<Value>(&o.stdout).is_ok_and(|v| {
            v["files"]
                .as_array()
                .is_some_and(|fs| fs.iter().all(|f| f["health"] == "healthy"))
        })
}

/// One stripe as `stat` shows it: every member's holders and domains,
/// and how many of its members are parities (listed last).
struct Stripe {
    holders: Vec<Vec<String>>,
    domains: Vec<Vec<String>>,
    parities: usize,
}

impl Stripe {
    /// Most members the loss of one domain takes (every copy in it).
    fn worst_domain_loss(&self) -> usize {
        let all: HashSet<&String> = self.domains.iter().flatten().collect();
        all.iter()
            .map(|d| {
                self.domains
                    .iter()
                    .filter(|m| !m.is_empty() && m.iter().all(|x| x == *d))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// Data members whose copies sit on exactly the same nodes as another's.
    fn same_sets(&self) -> usize {
        let data = &self.holders[..self.holders.len() - self.parities];
        let sets: Vec<Vec<&String>> = data
            .iter()
            .map(|h| {
                let mut v: Vec<&String> = h.iter().collect();
                v.sort();
                v
            })
            .collect();
        (0..sets.len())
            .filter(|&i| (0..sets.len()).any(|j| j != i && sets[j] == sets[i]))
            .count()
    }
}

/// Every stripe of `names`, keyed by its first chunk's id.
fn layout(c: &Cluster, names: &[String]) -> BTreeMap<String, Stripe> {
    let mut out = BTreeMap::new();
    for n in names {
        let st = c.stat(n);
        for s in st["stripes"].as_array().unwrap() {
            let parity = s["parity"].as_array().unwrap();
            let members: Vec<&Value> = s["data"].as_array().unwrap().iter().chain(parity).collect();
            let domains = members
                .iter()
                .map(|m| {
                    m["locations"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|l| l["domain"].as_str().unwrap().to_string())
                        .collect()
                })
                .collect();
            out.insert(
                members[0]["id"].as_str().unwrap().to_string(),
                Stripe {
                    holders: members.iter().map(|m| holders(m)).collect(),
                    domains,
                    parities: parity.len(),
                },
            );
        }
    }
    out
}

/// The placement rules after rebalancing: a member's copies on distinct
/// nodes, a parity alone on its node, no more data chunks sharing all
/// their nodes than before, and no domain whose loss takes more members
/// than before.
fn check_layout(before: &BTreeMap<String, Stripe>, after: &BTreeMap<String, Stripe>) {
    assert_eq!(before.len(), after.len());
    for (k, s) in after {
        let old = &before[k];
        assert!(
            s.worst_domain_loss() <= old.worst_domain_loss(),
            "stripe {k}: a domain's loss now takes {} members, {} before",
            s.worst_domain_loss(),
            old.worst_domain_loss()
        );
        assert!(
            s.same_sets() <= old.same_sets(),
            "stripe {k}: {:?}",
            s.holders
        );
        let first_parity = s.holders.len() - s.parities;
        for (i, h) in s.holders.iter().enumerate() {
            let set: HashSet<&String> = h.iter().collect();
            assert_eq!(
                set.len(),
                h.len(),
                "stripe {k}: two copies of a member on one node"
            );
            if i >= first_parity {
                for (j, other) in s.holders.iter().enumerate() {
                    assert!(
                        j == i || other.iter().all(|n| !h.contains(n)),
                        "stripe {k}: a parity shares its node: {:?}",
                        s.holders
                    );
                }
            }
        }
    }
}

fn rebalance_of(c: &Cluster) -> Value {
    c.status().expect("status")["rebalance"].clone()
}

/// Stored bytes per node that takes data, as status reports them.
fn usage(r: &Value) -> BTreeMap<String, u64> {
    r["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["node"].as_str().unwrap().to_string(),
                u["bytes"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn within_tolerance(u: &BTreeMap<String, u64>) -> bool {
    let mean = u.values().sum::<u64>() as f64 / u.len() as f64;
    u.values().all(|&b| (b as f64 - mean).abs() <= 0.10 * mean)
}

/// Four nodes in four domains hold R=2 + xor files and an rs:2+1 file with
/// one copy; two empty nodes join (in domains that already hold data);
/// rebalancing evens usage out to within 10% of the mean without weakening
/// any stripe, and every byte reads back.
#[test]
fn fresh_nodes_join_and_usage_evens_out() {
    let mut c = Cluster::builder()
        .nodes(4)
        .domains(4)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let files = corpus();
    let mut names: Vec<String> = Vec::new();
    for (name, data) in &files {
        c.put_ok(name, data);
        names.push(name.clone());
    }
    let rs = random_bytes(400, 10 * C + 5);
    let path = c.scratch("rs.bin");
    std::fs::write(&path, &rs).unwrap();
    ok(
        c.run(&[
            "put",
            path.to_str().unwrap(),
            "--name",
            "rs",
            "--parity",
            "rs:2+1",
        ]),
        "put rs:2+1",
    );
    names.push("rs".into());
    let before = layout(&c, &names);
    assert!(fsck_healthy(&c));

    let a = c.add_node();
    let b = c.add_node();
    c.wait_nodes_alive(6);
    // The joins start a run on their own; `rebalance` waits for it (or
    // starts one) and returns when every node is within the tolerance.
    let out = ok(c.run_timeout(&["rebalance"], DEADLINE), "dfs-sim rebalance");
    assert!(out.contains("balanced"), "{out}");
    let r = rebalance_of(&c);
    assert_eq!(r["state"], "idle", "{r}");
    assert_eq!(r["stuck"], false, "{r}");
    let u = usage(&r);
    assert_eq!(u.len(), 6, "{r}");
    assert!(within_tolerance(&u), "usage {u:?}");
    assert!(r["moved_chunks"].as_u64().unwrap() > 0 || r["trigger"] != "operator");
    for i in [a, b] {
        assert!(
            u[&Cluster::node_id(i)] > 0,
            "the new node {i} took data: {u:?}"
        );
    }
    // The status line says so.
    let text = ok(c.run(&["status"]), "status");
    assert!(text.contains("rebalance: balanced"), "{text}");

    check_layout(&before, &layout(&c, &names));
    assert!(fsck_healthy(&c));
    for (name, data) in &files {
        c.get_exact(name, data);
    }
    c.get_exact("rs", &rs);
    // The sources' copies are deleted (grace 0 s here): what each node
    // stores on disk comes to what the catalog counts.
    wait_until(DEADLINE, "moved copies deleted from their sources", || {
        let s = c.status().unwrap();
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["chunks"] == n["stored_chunks"])
    });
}

/// A source node is killed with -9 while copies are moving (the rate limit
/// keeps the run long enough): repair comes first, the run resumes, and
/// nothing is lost.
#[test]
fn a_node_killed_mid_rebalance_loses_nothing() {
    let mut c = Cluster::builder()
        .nodes(4)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .coord_arg("--rebalance-rate")
        .coord_arg("1MiB")
        .start();
    let files = corpus();
    for (name, data) in &files {
        c.put_ok(name, data);
    }
    c.add_node();
    c.add_node();
    c.wait_nodes_alive(6);
    wait_until(DEADLINE, "rebalance under way", || {
        let r = rebalance_of(&c);
        r["state"] == "running" && r["moved_chunks"].as_u64().unwrap_or(0) >= 2
    });
    c.kill_node(0);
    c.wait_node_state(0, "dead");
    wait_until(DEADLINE, "fsck healthy after the kill", || fsck_healthy(&c));
    for (name, data) in &files {
        c.get_exact(name, data);
    }
    // The repair traffic of this incident (not since the start) is shown.
    wait_until(DEADLINE, "the repair incident to close", || {
        let i = &c.status().unwrap()["repair"]["incident"];
        i["open"] == false && i["rebuilt_bytes"].as_u64().unwrap_or(0) > 0
    });
    let i = c.status().unwrap()["repair"]["incident"].clone();
    assert!(i["read_per_rebuilt"].as_f64().unwrap() >= 1.0, "{i}");
    assert_eq!(i["schemes"][0]["replication"], 2, "{i}");
    let text = ok(c.run(&["status"]), "status");
    assert!(text.contains("repair traffic, last incident"), "{text}");
    // The run goes on after the repairs and ends balanced over the five
    // live nodes.
    let out = ok(c.run_timeout(&["rebalance"], DEADLINE), "dfs-sim rebalance");
    assert!(out.contains("balanced"), "{out}");
    let r = rebalance_of(&c);
    let u = usage(&r);
    assert_eq!(u.len(), 5, "{r}");
    assert!(within_tolerance(&u), "usage {u:?}");
    assert!(fsck_healthy(&c));
    for (name, data) in &files {
        c.get_exact(name, data);
    }
}

/// Only an operator may start a rebalance in a secured cluster.
#[test]
fn rebalance_needs_the_cluster_secret() {
    let c = Cluster::builder()
        .nodes(3)
        .secret("s3cr3t-rebalance-test-0123456789")
        .start();
    let key = ok(c.run(&["key", "create", "app"]), "key create");
    let o = c
        .cmd()
        .args(["rebalance", "--no-wait"])
        .env_remove("DFS_SECRET")
        .env("DFS_KEY", key.trim())
        .output()
        .unwrap();
    fails_with(o, "cluster secret", "rebalance with a client key");
    ok(c.run(&["rebalance"]), "rebalance as the operator");
}
