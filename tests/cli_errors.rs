//! The client's failure modes are clean: a non-zero exit and one
//! `error: ...` line that names the cause (no coordinator at the address,
//! no such file, not enough live nodes for the configured protection, a
//! missing local file, full disks), and a failed `get` never leaves an
//! output file or a temp file behind.

mod common;

use common::*;
use std::net::TcpListener;

const C: usize = 16 * 1024;

/// An address on which nothing listens (bound once, then released).
fn dead_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

#[test]
fn no_coordinator_at_the_address() {
    let addr = dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::write(&input, b"data").unwrap();
    let out = dir.path().join("out");
    let cmds: Vec<Vec<String>> = vec![
        vec!["ls".into()],
        vec!["status".into()],
        vec!["stat".into(), "x".into()],
        vec!["rm".into(), "x".into()],
        vec![
            "put".into(),
            input.display().to_string(),
            "--name".into(),
            "x".into(),
        ],
        vec![
            "get".into(),
            "x".into(),
            "--out".into(),
            out.display().to_string(),
        ],
    ];
    for args in cmds {
        // Via --coord ...
        let o = std::process::Command::new(BIN)
            .args(&args)
            .args(["--coord", &addr])
            .env_remove("DFS_COORD")
            .env_remove("DFS_SECRET")
            .output()
            .unwrap();
        let err = fails_with(o, "no coordinator at", &format!("{args:?} via --coord"));
        assert!(err.contains(&addr), "error should name {addr}: {err}");
        // ... and via DFS_COORD.
        let o = std::process::Command::new(BIN)
            .args(&args)
            .env("DFS_COORD", &addr)
            .env_remove("DFS_SECRET")
            .output()
            .unwrap();
        fails_with(o, "no coordinator at", &format!("{args:?} via DFS_COORD"));
    }
    assert!(!out.exists(), "failed get created {}", out.display());
}

#[test]
fn unknown_file_and_missing_input() {
    let c = Cluster::builder()
        .nodes(2)
        .replication(1)
        .parity("none")
        .chunk_size(C as u64)
        .start();
    let out = c.scratch("never");
    let o = c.run(&["get", "nope/never", "--out", out.to_str().unwrap()]);
    fails_with(o, "no such file", "get of an unknown file");
    assert!(!out.exists(), "failed get left {}", out.display());
    fails_with(c.run(&["stat", "nope"]), "no such file", "stat unknown");
    fails_with(c.run(&["rm", "nope"]), "no such file", "rm unknown");

    let missing = c.scratch("does-not-exist");
    let o = c.run(&["put", missing.to_str().unwrap(), "--name", "m"]);
    fails_with(o, "does-not-exist", "put of a missing local file");
    let o = c.run(&["put", c.dir().to_str().unwrap(), "--name", "m"]);
    fails_with(o, "not a regular file", "put of a directory");
    assert!(c.ls().is_empty());
}

#[test]
fn replication_beyond_live_nodes_is_refused() {
    let c = Cluster::builder()
        .nodes(2)
        .replication(3)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let o = c.put_bytes("too-many", &random_bytes(1, C + 1));
    let err = fails_with(o, "only 2 live", "put with R=3+xor on 2 nodes");
    assert!(
        err.contains("needs 4"),
        "error should say what is needed: {err}"
    );
    assert!(c.ls().is_empty(), "refused put must leave nothing");
}

#[test]
fn failed_get_leaves_no_output_or_temp_file() {
    let mut c = Cluster::builder()
        .nodes(2)
        .replication(1)
        .parity("none")
        .chunk_size(C as u64)
        .start();
    // Chunks alternate between the two nodes; with the holder of chunk 1
    // gone, the get writes chunk 0 and then cannot find chunk 1.
    let data = random_bytes(2, 6 * C + 5);
    c.put_ok("fragile", &data);
    let st = c.stat("fragile");
    let h0 = holders(chunk_of(&st, 0, Some(0)));
    let h1 = holders(chunk_of(&st, 1, Some(0)));
    assert_ne!(h0, h1, "chunks 0 and 1 on different nodes: {st}");
    let victim = Cluster::node_index(&h1[0]);
    c.kill_node(victim);

    let outdir = c.dir().join("getout");
    std::fs::create_dir_all(&outdir).unwrap();
    let dest = outdir.join("fragile.out");
    // An existing destination must be left untouched too.
    std::fs::write(&dest, b"previous contents").unwrap();
    let o = c.run(&["get", "fragile", "--out", dest.to_str().unwrap()]);
    fails_with(o, "fragile", "get with a chunk's only copy gone");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"previous contents",
        "failed get clobbered the destination"
    );
    std::fs::remove_file(&dest).unwrap();
    let o = c.run(&["get", "fragile", "--out", dest.to_str().unwrap()]);
    fails_with(o, "lost", "get with a chunk's only copy gone");
    let left: Vec<_> = std::fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "failed get left files behind: {left:?}");

    // Bring it back: the same get now succeeds.
    c.restart_node(victim);
    c.wait_nodes_alive(2);
    c.get_exact("fragile", &data);
}

/// A full disk: every node must keep more free space than it has. The put
/// is refused with an error that says so, nothing becomes visible, and no
/// chunk file is left behind.
#[test]
fn full_disks_refuse_a_put_cleanly() {
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .node_reserve("1PiB")
        .start();
    let input = c.scratch("full");
    std::fs::write(&input, random_bytes(77, 200_000)).unwrap();
    let o = c.run(&["put", input.to_str().unwrap(), "--name", "full"]);
    fails_with(o, "disk full", "put onto full disks");
    assert!(c.ls().is_empty(), "a refused put must leave no name");
    wait_until(DEADLINE, "no chunk files and no temp files left", || {
        (0..3).all(|i| c.chunk_files(i).is_empty())
            && (0..3).all(|i| {
                std::fs::read_dir(c.node_data_dir(i).join("tmp"))
                    .map(|d| d.count() == 0)
                    .unwrap_or(true)
            })
    });
}
