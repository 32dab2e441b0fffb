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
    fails_with(
        c.run(&["ls"]),
        "no coordinator at",
        "ls with coordinator down",
    );

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
    // 6 MiB in 16 KiB chunks: 384 chunks x 2 copies + parity, each
    // fsynced, so the put is still streaming when the node is killed (and
    // the test checks that it was).
    let data = random_bytes(77, 6 << 20);
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
    assert!(
        still_running,
        "the put finished before the kill: the test proved nothing (make the file bigger)"
    );
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
        assert!(err.contains("big"), "the error should name the file: {err}");
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
    // Whatever the interrupted put left on disk is collected: copies that
    // land after their delete are caught by the nodes' tombstones, and
    // restarting every node shows registration leaves nothing behind.
    wait_disks_hold_catalog(&c);
    for i in 0..4 {
        c.stop_node(i);
        c.restart_node(i);
        c.wait_nodes_alive(4);
    }
    wait_disks_match_catalog(&c);
    c.get_exact("big", &data);
}

/// After an aborted put, no chunk of it may remain on a live node, even one
/// that was still in flight when the abort's delete reached the node (nodes
/// keep tombstones of deleted ids and discard such late arrivals). Two nodes
/// with R=2 need both, so losing one leaves the client no replacement
/// target and the put must abort.
#[test]
fn aborted_put_leaves_no_garbage_on_live_nodes() {
    let mut aborted = 0;
    for attempt in 0..5 {
        let mut c = Cluster::builder()
            .nodes(2)
            .replication(2)
            .parity("none")
            .chunk_size(C as u64)
            .start();
        let input = c.scratch("big");
        std::fs::write(&input, random_bytes(78, 4 << 20)).unwrap();
        let mut put = c
            .cmd()
            .args(["put", input.to_str().unwrap(), "--name", "big"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_until(DEADLINE, "chunk files to appear", || {
            (0..2).map(|i| c.chunk_files(i).len()).sum::<usize>() >= 8
                || !matches!(put.try_wait(), Ok(None))
        });
        c.kill_node(1);
        let failed = !put.wait().unwrap().success();
        if !failed {
            continue;
        }
        aborted += 1;
        // The abort's deletes are sent at once; give them 10 s to land.
        let t = std::time::Instant::now();
        loop {
            let garbage: Vec<_> = [0].iter().flat_map(|&i| c.chunk_files(i)).collect();
            if garbage.is_empty() {
                break;
            }
            assert!(
                t.elapsed() < std::time::Duration::from_secs(10),
                "attempt {attempt}: 10 s after the abort, {} chunk file(s) of the aborted put are still on live nodes: {garbage:?}",
                garbage.len()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert!(
        aborted > 0,
        "no attempt made the put abort: the test proved nothing"
    );
}

#[test]
fn concurrent_puts_all_survive_a_crash() {
    let mut c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    // Eight clients at once: their commits share journal fsyncs (group
    // commit), and each acknowledged one must survive.
    let files: Vec<(String, Vec<u8>)> = (0..8)
        .map(|i| {
            (
                format!("conc/{i}"),
                random_bytes(500 + i, (i as usize + 1) * C / 2 + 7),
            )
        })
        .collect();
    std::thread::scope(|s| {
        for (name, data) in &files {
            let c = &c;
            s.spawn(move || c.put_ok(name, data));
        }
    });
    c.kill_coord();
    c.restart_coord();
    c.wait_nodes_alive(3);
    assert_eq!(c.ls().len(), files.len());
    for (name, data) in &files {
        c.get_exact(name, data);
    }
}

#[test]
fn torn_journal_tail_is_dropped_on_restart() {
    let mut c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("none")
        .chunk_size(C as u64)
        .start();
    let a = random_bytes(600, 2 * C + 3);
    let b = random_bytes(601, 5);
    c.put_ok("a", &a);
    c.put_ok("b", &b);
    c.kill_coord();
    // Simulate a crash in the middle of an append: a plausible length and
    // CRC header followed by fewer bytes than it announces.
    let journal = c.dir().join("coord").join("journal.log");
    let mut bytes = std::fs::read(&journal).expect("journal.log exists");
    assert!(!bytes.is_empty(), "the puts were journaled");
    bytes.extend_from_slice(&200u32.to_le_bytes());
    bytes.extend_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
    bytes.extend_from_slice(&random_bytes(602, 50));
    std::fs::write(&journal, &bytes).unwrap();

    c.restart_coord();
    c.wait_nodes_alive(3);
    c.get_exact("a", &a);
    c.get_exact("b", &b);
    // Appends after the truncation must replay on the next start too.
    let d = random_bytes(603, C + 1);
    c.put_ok("d", &d);
    c.kill_coord();
    c.restart_coord();
    c.wait_nodes_alive(3);
    let mut names = c.ls();
    names.sort();
    assert_eq!(names, ["a", "b", "d"]);
    c.get_exact("d", &d);
    c.get_exact("a", &a);
}

#[test]
fn catalog_survives_crash_after_a_snapshot() {
    let mut c = Cluster::builder()
        .nodes(2)
        .replication(1)
        .parity("none")
        .chunk_size(C as u64)
        .start();
    // The coordinator snapshots its catalog every 1024 journal records; an
    // empty file costs one record and no chunk traffic, so ~1100 puts cross
    // that line. Real files go in before and after it.
    let first = random_bytes(700, 3 * C + 1);
    c.put_ok("real/first", &first);
    let empty = c.scratch("empty");
    std::fs::write(&empty, b"").unwrap();
    let n = 1100;
    std::thread::scope(|s| {
        for t in 0..4 {
            let (c, empty) = (&c, &empty);
            s.spawn(move || {
                for i in (t..n).step_by(4) {
                    ok(
                        c.run(&[
                            "put",
                            empty.to_str().unwrap(),
                            "--name",
                            &format!("e/{i:04}"),
                        ]),
                        "put empty",
                    );
                }
            });
        }
    });
    let snap = c.dir().join("coord").join("catalog.snap");
    assert!(snap.exists(), "expected a snapshot after {n} records");
    let last = random_bytes(701, 2 * C + 9);
    c.put_ok("real/last", &last);
    ok(c.run(&["rm", "e/0000"]), "rm after the snapshot");

    c.kill_coord();
    c.restart_coord();
    c.wait_nodes_alive(2);
    let names = c.ls();
    assert_eq!(names.len(), n + 2 - 1, "files after restart");
    assert!(!names.contains(&"e/0000".to_string()));
    assert!(names.contains(&"e/1099".to_string()));
    c.get_exact("real/first", &first);
    c.get_exact("real/last", &last);
    let (o, got) = c.get_bytes("e/0500");
    ok(o, "get an empty file");
    assert_eq!(got.as_deref(), Some(&[][..]));
}

/// With nodes to spare, a node dying under a put costs a retry, not the put:
/// the client asks the coordinator for replacement targets for the copies
/// that failed, and the file commits byte-exact.
#[test]
fn put_survives_a_node_dying_under_it() {
    let mut c = Cluster::builder()
        .nodes(5)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let input = c.scratch("big");
    let data = random_bytes(91, 4 << 20);
    std::fs::write(&input, &data).unwrap();
    let put = c
        .cmd()
        .args(["put", input.to_str().unwrap(), "--name", "big"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut put = put;
    wait_until(DEADLINE, "chunk files to appear", || {
        (0..5).map(|i| c.chunk_files(i).len()).sum::<usize>() >= 8
            || !matches!(put.try_wait(), Ok(None))
    });
    c.kill_node(2);
    let o = put.wait_with_output().unwrap();
    assert!(o.status.success(), "put must survive: {}", describe(&o));
    c.get_exact("big", &data);
    wait_until(DEADLINE, "file fully protected again", || {
        c.stat("big")["health"] == "healthy"
    });
}
