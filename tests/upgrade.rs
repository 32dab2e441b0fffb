//! Upgrade: a cluster written by round 1 (format 1: no cluster id, XOR
//! stripes with a single parity slot) is served by today's binary. The
//! data directories in `tests/fixtures/round1` were written by the round-1
//! binary itself (see the README there); the test starts today's
//! coordinator and nodes on a copy of them and checks every byte.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/round1")
}

/// `(name, size, sha256)` of every file the round-1 catalog holds.
fn expected() -> Vec<(String, usize, String)> {
    std::fs::read_to_string(fixture().join("expected.txt"))
        .expect("expected.txt")
        .lines()
        .map(|l| {
            let mut f = l.split(' ');
            let sha = f.next().unwrap().to_string();
            let size = f.next().unwrap().parse().unwrap();
            (f.next().unwrap().to_string(), size, sha)
        })
        .collect()
}

#[track_caller]
fn get_all(c: &Cluster, what: &str) {
    for (name, size, sha) in expected() {
        let (o, data) = c.get_bytes(&name);
        ok(o, &format!("{what}: get {name}"));
        let data = data.unwrap_or_else(|| panic!("{what}: get {name} wrote no file"));
        assert_eq!(data.len(), size, "{what}: size of {name}");
        assert_eq!(sha256_hex(&data), sha, "{what}: content of {name}");
    }
}

#[track_caller]
fn fsck_healthy(c: &Cluster) {
    wait_until(DEADLINE, "fsck reports every file healthy", || {
        let o = c.run(&["fsck", "--json"]);
        o.status.success()
            && serde_json::from_slice::<serde_json::Value>(&o.stdout).is_ok_and(|v| {
                v["files"].as_array().is_some_and(|fs| {
                    fs.len() == expected().len() && fs.iter().all(|f| f["health"] == "healthy")
                })
            })
    });
}

#[test]
fn a_round_one_cluster_is_served_after_the_upgrade() {
    let mut c = Cluster::builder()
        .seed(&fixture())
        .nodes(4)
        .replication(2)
        .parity("xor")
        .stripe(3)
        .chunk_size(65536)
        .start();

    // The namespace is exactly the round-1 one (removed and replaced files
    // stay removed and replaced) and every byte reads back.
    let mut want: Vec<String> = expected().into_iter().map(|(n, _, _)| n).collect();
    want.sort();
    let mut got = c.ls();
    got.sort();
    assert_eq!(got, want, "ls after the upgrade");
    get_all(&c, "after the upgrade");
    fsck_healthy(&c);
    // Nothing the catalog names was set aside or deleted on registration.
    wait_disks_hold_catalog(&c);

    // The upgrade is durable: the coordinator writes the new format and
    // comes back from it, and the nodes joined this cluster for good.
    c.kill_coord();
    c.restart_coord();
    c.wait_nodes_alive(4);
    get_all(&c, "after a coordinator restart");
    for i in 0..4 {
        assert!(
            c.node_data_dir(i).join("cluster.id").exists(),
            "node {i} records the cluster it joined"
        );
    }

    // Round-1 XOR stripes still decode with today's codes: any one node
    // may die.
    c.kill_node(1);
    get_all(&c, "with n1 dead");
    c.restart_node(1);
    c.wait_nodes_alive(4);

    // New files sit beside the old ones, in today's schemes.
    let data = random_bytes(9, 300_000);
    let path = c.scratch("new.bin");
    std::fs::write(&path, &data).unwrap();
    ok(
        c.run(&[
            "put",
            path.to_str().unwrap(),
            "--name",
            "new/rs.bin",
            "--parity",
            "rs:2+1",
        ]),
        "put with rs:2+1 after the upgrade",
    );
    c.get_exact("new/rs.bin", &data);
    get_all(&c, "after a new put");
}
