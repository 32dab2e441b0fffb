//! Erasure codes on real processes: Reed-Solomon survives any two dead
//! nodes byte-exact, an LRC cluster with `--ha` survives a whole failure
//! domain and repairs onto hot spares, and puts that cannot be placed are
//! refused with errors that say what is missing.

mod common;

use common::*;

const C: usize = 64 * 1024;

/// Files covering full stripes, a short last stripe and a 1-byte file.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("multi", random_bytes(91, 9 * C + 1234)),
        ("one-stripe", random_bytes(92, 4 * C)),
        ("tiny", vec![0x5a]),
        ("two-chunks", random_bytes(93, C + 17)),
    ]
}

/// rs:4+2 with one copy on 6 nodes: every pair of nodes killed with -9 in
/// turn (restarted between), every get byte-exact. Nodes are declared dead
/// only after 20 s, so no repair moves members around between rounds: each
/// round reads the placement the put chose, with two members gone.
#[test]
fn rs_4_2_survives_every_pair_of_dead_nodes() {
    let mut c = Cluster::builder()
        .nodes(6)
        .replication(1)
        .dead_after(100)
        .parity("rs:4+2")
        .chunk_size(C as u64)
        .start();
    let files = corpus();
    for (name, data) in &files {
        c.put_ok(name, data);
    }
    // Placement: the 6 members of a full stripe on 6 distinct nodes, and
    // a 1-byte file costs one data chunk plus two parities.
    let st = c.stat("one-stripe");
    assert_eq!(st["scheme"], "rs:4+2");
    let s0 = &st["stripes"][0];
    let mut nodes: Vec<String> = s0["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(s0["parity"].as_array().unwrap())
        .flat_map(holders)
        .collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 6, "members on distinct nodes: {nodes:?}");
    let tiny = c.stat("tiny");
    assert_eq!(tiny["stripes"][0]["data"].as_array().unwrap().len(), 1);
    assert_eq!(tiny["stripes"][0]["parity"].as_array().unwrap().len(), 2);
    assert_eq!(tiny["stripes"][0]["parity"][0]["role"], "global parity 0");

    let mut rebuilt = 0;
    for a in 0..6 {
        for b in a + 1..6 {
            c.kill_node(a);
            c.kill_node(b);
            for (name, data) in &files {
                let out = c.get_exact(name, data);
                if out.contains("rebuilt") {
                    rebuilt += 1;
                }
            }
            c.restart_node(a);
            c.restart_node(b);
            c.wait_nodes_alive(6);
        }
    }
    assert!(rebuilt > 0, "some gets must have decoded lost chunks");
}

/// Not enough nodes for the scheme: refused before any byte is sent, with
/// a line that says what would work.
#[test]
fn put_refused_without_enough_nodes() {
    let c = Cluster::builder()
        .nodes(5)
        .replication(1)
        .parity("rs:4+2")
        .chunk_size(C as u64)
        .start();
    let o = c.put_bytes("f", &random_bytes(1, 3 * C));
    let err = fails_with(
        o,
        "only 5 live non-spare nodes for rs:4+2",
        "rs:4+2 on 5 nodes",
    );
    assert!(err.contains("needs 6"), "{err}");
    // A scheme that fits is accepted per put.
    let path = c.scratch("small");
    let data = random_bytes(2, 3 * C + 5);
    std::fs::write(&path, &data).unwrap();
    ok(
        c.run(&[
            "put",
            path.to_str().unwrap(),
            "--name",
            "g",
            "--parity",
            "rs:3+1",
        ]),
        "put --parity rs:3+1",
    );
    c.get_exact("g", &data);
    assert_eq!(c.stat("g")["scheme"], "rs:3+1");
    // Impossible schemes are refused by the parser.
    let o = c.run(&[
        "put",
        path.to_str().unwrap(),
        "--name",
        "h",
        "--parity",
        "lrc:6+4+2",
    ]);
    let err = stderr(&o);
    assert!(
        !o.status.success()
            && err.contains("L=4 does not divide K=6")
            && err.contains("L could be 1, 2, 3"),
        "{err}"
    );
}

/// lrc:6+2+2 over 4 domains with --ha and 3 spares: a whole domain dies,
/// every get is byte-exact, repair rebuilds onto the spares and fsck is
/// healthy again; a scheme the domains cannot carry is refused.
#[test]
fn lrc_ha_survives_a_domain_and_repairs_onto_spares() {
    // Nodes 0..12 in rack{i%4+1}; 10, 11, 12 are spares (rack3, rack4,
    // rack1). Regular: rack1 0,4,8; rack2 1,5,9; rack3 2,6; rack4 3,7.
    let mut c = Cluster::builder()
        .nodes(13)
        .replication(1)
        .parity("lrc:6+2+2")
        .domains(4)
        .spares(3)
        .ha()
        .chunk_size(C as u64)
        .start();
    let files = corpus();
    for (name, data) in &files {
        c.put_ok(name, data);
    }
    // Spares got nothing.
    for i in 10..13 {
        assert!(c.chunk_files(i).is_empty(), "spare {i} took a new write");
    }
    let st = c.status().unwrap();
    let spares: Vec<&serde_json::Value> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["spare"] == true)
        .collect();
    assert_eq!(spares.len(), 3);
    // What if rack2 died? Readable everywhere.
    let out = ok(
        c.run(&["fsck", "--what-if", "domain=rack2", "--json"]),
        "fsck --what-if domain=rack2",
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["what_if"].as_array().unwrap().len(), 3);
    for f in v["files"].as_array().unwrap() {
        assert_ne!(f["health"], "lost", "{f}");
    }
    // A scheme the 4 domains cannot carry is refused, naming the domains.
    let path = c.scratch("wide");
    std::fs::write(&path, random_bytes(3, 2 * C)).unwrap();
    let o = c.run(&[
        "put",
        path.to_str().unwrap(),
        "--name",
        "wide",
        "--parity",
        "rs:8+1",
    ]);
    let err = fails_with(o, "--ha", "rs:8+1 under --ha on 4 domains");
    assert!(
        err.contains("4 failure domains") && err.contains("needs at least 9"),
        "{err}"
    );

    // rack2 dies.
    for i in [1, 5, 9] {
        c.kill_node(i);
    }
    for (name, data) in &files {
        c.get_exact(name, data);
    }
    for i in [1, 5, 9] {
        c.wait_node_state(i, "dead");
    }
    // Repair onto the spares brings every file back to healthy.
    wait_until(DEADLINE, "fsck healthy after losing rack2", || {
        let o = c.run(&["fsck", "--json"]);
        o.status.success()
            && serde_json::from_slice::<serde_json::Value>(&o.stdout).is_ok_and(|v| {
                v["files"]
                    .as_array()
                    .is_some_and(|fs| fs.iter().all(|f| f["health"] == "healthy"))
            })
    });
    let used: usize = (10..13).filter(|&i| !c.chunk_files(i).is_empty()).count();
    assert!(used > 0, "repair should have used the spares");
    let st = c.status().unwrap();
    assert!(
        st["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["was_spare"] == true),
        "status says a spare took over: {st}"
    );
    for (name, data) in &files {
        c.get_exact(name, data);
    }
}
