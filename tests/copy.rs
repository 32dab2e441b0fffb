//! `dfs-sim cp`: a file copied inside the cluster. Every node holding a
//! chunk of the source copies it on its own disk under a new id; the copy
//! is committed with the holders that confirmed, self-healing restores the
//! rest, and too few copies fail the copy cleanly.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeSet;

const C: usize = 256 * 1024;

/// Every chunk id of a file, from `stat --json`.
fn chunk_ids(stat: &Value) -> BTreeSet<String> {
    stat["stripes"]
        .as_array()
        .expect("stripes")
        .iter()
        .flat_map(|s| {
            let d = s["data"].as_array().expect("data").iter();
            d.chain(s["parity"].as_array().expect("parity").iter())
        })
        .map(|c| c["id"].as_str().expect("id").to_string())
        .collect()
}

#[test]
fn cp_copies_inside_the_cluster_and_survives_a_killed_node() {
    let mut c = Cluster::builder()
        .nodes(4)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let data = random_bytes(7, 9 * C + 1234);
    c.put_ok("src/a.bin", &data);

    let out = ok(c.run(&["cp", "src/a.bin", "dst/a.bin"]), "cp");
    assert!(out.contains("copied src/a.bin -> dst/a.bin"), "{out}");
    c.get_exact("dst/a.bin", &data);
    let (src, dst) = (c.stat("src/a.bin"), c.stat("dst/a.bin"));
    assert_eq!(dst["health"], "healthy", "{dst:#}");
    assert_eq!(src["scheme"], dst["scheme"]);
    let (a, b) = (chunk_ids(&src), chunk_ids(&dst));
    assert_eq!(a.len(), b.len());
    assert!(
        a.is_disjoint(&b),
        "a copy shares no chunk id with its source"
    );

    // The copy stands alone: removing the source takes nothing from it.
    ok(c.run(&["rm", "src/a.bin"]), "rm");
    c.get_exact("dst/a.bin", &data);

    // An existing destination is kept unless --force.
    let other = random_bytes(8, 3 * C);
    c.put_ok("src/b.bin", &other);
    fails_with(
        c.run(&["cp", "src/b.bin", "dst/a.bin"]),
        "already exists",
        "cp onto an existing file",
    );
    c.get_exact("dst/a.bin", &data);
    ok(
        c.run(&["cp", "--force", "src/b.bin", "dst/b.bin"]),
        "cp --force",
    );
    c.get_exact("dst/b.bin", &other);
    fails_with(
        c.run(&["cp", "no/such", "dst/x"]),
        "no such file",
        "cp of a missing file",
    );

    // A holder killed just before the copy (not yet declared dead, so it
    // is asked and does not answer): the copy is committed without its
    // copies, reads byte-exact, and self-healing makes it whole again.
    c.kill_node(0);
    let out = ok(c.run(&["cp", "dst/a.bin", "dst/c.bin"]), "cp with n0 down");
    assert!(out.contains("copied"), "{out}");
    c.get_exact("dst/c.bin", &data);
    wait_until(DEADLINE, "the copy to be healthy again", || {
        c.stat("dst/c.bin")["health"] == "healthy"
    });
    c.get_exact("dst/c.bin", &data);

    // With no holder left to answer, no stripe can be copied whole: the
    // copy fails with a clear error and nothing appears under its name.
    // (Killing all but one node is not enough: self-healing after n0's
    // death may well have left one node holding a decodable set of every
    // stripe, and then the copy rightly succeeds.)
    c.kill_node(1);
    c.kill_node(2);
    c.kill_node(3);
    let o = c.run(&["cp", "dst/a.bin", "dst/d.bin"]);
    assert!(!o.status.success(), "{}", describe(&o));
    assert!(
        stderr(&o).contains("could not be copied"),
        "{}",
        describe(&o)
    );
    assert!(!c.ls().iter().any(|n| n == "dst/d.bin"), "{:?}", c.ls());
}
