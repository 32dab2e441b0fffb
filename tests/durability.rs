//! What was acknowledged stays: files put (and removed, and overwritten)
//! before the coordinator is `kill -9`ed are all there, byte-exact, after it
//! restarts on the same data dir and the nodes re-register. A put during
//! which a node dies either succeeds with a byte-exact file or fails cleanly
//! (non-zero exit, name not visible); it never leaves a half-file behind.

mod common;

use common::*;
use std::process::Stdio;

const C: usize = 16 * 1024;

#[test]
fn catalog_survives_coordinator_kill_9() {
    let mut c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let files: Vec<(String, Vec<u8>)> = [0, 1, C, 3 * C + 5, 10 * C + 1]
        .iter()
        .enumerate()
        .map(|(i, &n)| (format!("d/f{i}"), random_bytes(300 + i as u64, n)))
        .collect();
    for (name, data) in &files {
        c.put_ok(name, data);
    }
    // Also a removal and an overwrite, which must survive too.
    c.put_ok("gone", &random_bytes(9, 100));
    ok(c.run(&["rm", "gone"]), "rm gone");
    let v2 = random_bytes(10, 2 * C + 9);
    let p = c.scratch("v2");
    std::fs::write(&p, &v2).unwrap();
    c.put_ok("over", &random_bytes(11, C));
    ok(
        c.run(&["put", p.to_str().unwrap(), "--name", "over", "--force"]),
        "put --force",
    );

    let before = c.ls();
    c.kill_coord();
    // With the coordinator gone, clients fail cleanly.
    fails_with(c.run(&["ls"]), "no coordinator at", "ls with coordinator down");

    c.restart_coord();
    c.wait_nodes_alive(3);

    let after = c.ls();
    assert_eq!(after, before, "listing changed across a coordinator crash");
    assert!(!after.contains(&"gone".to_string()));
    for (name, data) in &files {
        c.get_exact(name, data);
        assert_eq!(c.stat(name)["health"], "healthy");
    }
    c.get_exact("over", &v2);

    // A second crash right after a put: that put was acknowledged, so it
    // must be there as well.
    let late = random_bytes(12, 4 * C + 3);
    c.put_ok("late", &late);
    c.kill_coord();
    c.restart_coord();
    c.wait_nodes_alive(3);
    c.get_exact("late", &late);
    for (name, data) in &files {
        c.get_exact(name, data);
    }
    // And the cluster still takes new files.
    let fresh = random_bytes(13, C + 1);
    c.put_ok("fresh", &fresh);
    c.get_exact("fresh", &fresh);
}

#[test]
fn put_while_a_node_dies_succeeds_or_fails_cleanly() {
    let mut c = Cluster::builder()
        .nodes(4)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    // 4 MiB in 16 KiB chunks: 256 chunks x 2 copies + parity, each fsynced,
    // so the put is still streaming when the node is killed.
    let data = random_bytes(77, 4 << 20);
    let input = c.scratch("big");
    std::fs::write(&input, &data).unwrap();
    let victim = 1;
    let mut put = c
        .cmd()
        .args(["put", input.to_str().unwrap(), "--name", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn put");
    wait_until(DEADLINE, "chunk files to appear on disk", || {
        let stored: usize = (0..4).map(|i| c.chunk_files(i).len()).sum();
        stored >= 8 || !matches!(put.try_wait(), Ok(None))
    });
    let still_running = matches!(put.try_wait(), Ok(None));
    c.kill_node(victim);
    wait_until(DEADLINE, "the put to finish", || {
        !matches!(put.try_wait(), Ok(None))
    });
    let o = put.wait_with_output().unwrap();
    eprintln!(
        "put with n{victim} killed (put still running at kill: {still_running}): {}",
        describe(&o)
    );

    if o.status.success() {
        assert!(c.ls().contains(&"big".to_string()));
        c.get_exact("big", &data);
    } else {
        let err = stderr(&o);
        assert!(
            err.lines().last().unwrap_or("").starts_with("error: "),
            "failure must end in one error line: {err}"
        );
        assert!(
            err.contains("big"),
            "the error should name the file: {err}"
        );
        assert!(
            !c.ls().contains(&"big".to_string()),
            "a failed put must not leave the name visible"
        );
        let (g, out) = c.get_bytes("big");
        fails_with(g, "no such file", "get of a failed put");
        assert!(out.is_none());
        // The cluster is still usable: the same put now succeeds on the
        // nodes that are left.
        ok(
            c.run(&["put", input.to_str().unwrap(), "--name", "big"]),
            "retry of the put",
        );
        c.get_exact("big", &data);
    }

    // Either way the file stays readable when the node comes back.
    c.restart_node(victim);
    c.wait_nodes_alive(4);
    c.get_exact("big", &data);
}
