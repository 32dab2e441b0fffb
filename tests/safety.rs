//! Issue 8: the store loses nothing to an operator's mistake, a flipped bit
//! or a stranger. Each test reproduces one way round 1 lost or exposed data
//! and shows that it no longer does, on real processes.

mod common;

use common::*;
use protocol::handshake::{self, Credential, Role};
use protocol::{BlockOp, ChunkId, Connection, CoordRequest, NodeRequest, Register, TokenKey};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const C: usize = 64 * 1024;

/// Every chunk file on every node, wherever it sits (live, set aside or in
/// quarantine): nothing may ever disappear from this set by mistake.
fn all_copies(c: &Cluster) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for i in 0..c.node_count() {
        let d = c.node_data_dir(i);
        let mut dirs: Vec<PathBuf> = vec![d.join("orphans"), d.join("quarantine")];
        if let Ok(rd) = std::fs::read_dir(d.join("chunks")) {
            dirs.extend(rd.flatten().map(|e| e.path()));
        }
        for dir in dirs {
            for f in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.ends_with(".chunk") {
                    set.insert(format!("{}/{name}", Cluster::node_id(i)));
                }
            }
        }
    }
    set
}

fn put_some(c: &Cluster, prefix: &str, n: usize, seed: u64) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let name = format!("{prefix}/{i}");
            let data = random_bytes(seed + i as u64, 3 * C + 17 * i);
            c.put_ok(&name, &data);
            (name, data)
        })
        .collect()
}

/// Runs a client command without the harness's cluster secret.
fn bare(c: &Cluster, args: &[&str]) -> std::process::Output {
    c.cmd().args(args).output().expect("run dfs-sim")
}

/// Case 1: a coordinator started on an empty (or another cluster's) data
/// directory next to populated nodes. Round 1: every node deleted every
/// chunk within milliseconds. Now the nodes refuse it, nothing moves, and
/// the right coordinator serves every byte again.
#[test]
fn coordinator_on_an_empty_data_dir_loses_nothing() {
    let mut c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .orphan_grace("1s")
        .start();
    let files = put_some(&c, "f", 4, 100);
    let before = all_copies(&c);
    assert!(!before.is_empty());
    c.kill_coord();
    let empty = c.scratch("wrong-dir");
    c.restart_coord_with(Some(&empty), &[]);
    wait_until(
        DEADLINE,
        "the nodes and the foreign coordinator to refuse each other",
        || {
            std::fs::read_to_string(c.dir().join("coord.log"))
                .is_ok_and(|s| s.matches("belongs to cluster").count() >= 3)
        },
    );
    let st = c.status().expect("status");
    assert_eq!(st["files"], 0);
    assert_eq!(all_copies(&c), before, "nothing moved or deleted");
    // Longer than the orphan grace: still nothing.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(all_copies(&c), before);
    c.kill_coord();
    c.restart_coord_with(None, &[]);
    c.wait_nodes_alive(3);
    for (name, data) in &files {
        c.get_exact(name, data);
    }
}

/// Case 1b: a stale copy of the coordinator's own directory (same cluster,
/// older catalog). Nodes that have seen a newer catalog get no deletes at
/// all; copies it does not know are only set aside, and are reclaimed once
/// the right catalog is back.
#[test]
fn a_stale_copy_of_the_coordinator_dir_deletes_nothing() {
    let mut c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .orphan_grace("1h")
        .start();
    let old = put_some(&c, "old", 2, 200);
    c.kill_coord();
    let stale = c.scratch("stale-coord");
    copy_dir(&c.coord_data(), &stale);
    c.restart_coord();
    c.wait_nodes_alive(3);
    let new = put_some(&c, "new", 2, 300);
    let before = all_copies(&c);
    // The stale catalog knows "old" only.
    c.kill_coord();
    c.restart_coord_with(Some(&stale), &[]);
    c.wait_nodes_alive(3);
    let st = c.status().expect("status");
    assert_eq!(st["files"], 2, "{st}");
    // Its orphans are set aside, not deleted: every copy still exists.
    wait_until(DEADLINE, "new files' copies set aside", || {
        (0..3).any(|i| {
            std::fs::read_dir(c.node_data_dir(i).join("orphans")).is_ok_and(|d| d.count() > 0)
        })
    });
    assert_eq!(all_copies(&c), before, "nothing deleted");
    c.kill_coord();
    c.restart_coord_with(None, &[]);
    c.wait_nodes_alive(3);
    for (name, data) in old.iter().chain(&new) {
        c.get_exact(name, data);
    }
    wait_until(DEADLINE, "set-aside copies reclaimed", || {
        (0..3).all(|i| {
            std::fs::read_dir(c.node_data_dir(i).join("orphans")).is_ok_and(|d| d.count() == 0)
        })
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Case 2: one flipped bit in the middle of the journal. Round 1 truncated
/// there and deleted the chunks of every later file. Now the coordinator
/// refuses to start, naming the offset; `--recover` keeps every valid record,
/// and the chunks of the one damaged record are set aside, not deleted.
#[test]
fn a_flipped_bit_mid_journal_stops_the_coordinator_and_loses_nothing() {
    let mut c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .orphan_grace("1h")
        .start();
    let files = put_some(&c, "j", 8, 400);
    c.kill_coord();
    let before = all_copies(&c);
    let log = c.coord_data().join("journal.log");
    let mut bytes = std::fs::read(&log).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x08;
    std::fs::write(&log, &bytes).unwrap();
    let out = c
        .cmd()
        .args(["coord", "--listen", "127.0.0.1:0", "--data"])
        .arg(c.coord_data())
        .output()
        .unwrap();
    let err = fails_with(
        out,
        "damaged at byte offset",
        "coordinator on a damaged journal",
    );
    assert!(err.contains("--recover"), "{err}");
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "journal left as it was"
    );
    c.restart_coord_with(None, &["--recover"]);
    c.wait_nodes_alive(3);
    let names = c.ls();
    assert!(
        names.len() >= 7,
        "at most the damaged record is lost: {names:?}"
    );
    for (name, data) in &files {
        if names.contains(name) {
            c.get_exact(name, data);
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(all_copies(&c), before, "no chunk file deleted");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn dial(addr: &str, role: Role, cred: Option<Credential>) -> protocol::Result<Connection> {
    let mut conn = Connection::connect(addr).await?;
    handshake::initiate(&mut conn, role, cred.as_ref(), None).await?;
    Ok(conn)
}

/// A chunk id held by node 0, read from its disk.
fn some_chunk(c: &Cluster) -> (ChunkId, PathBuf) {
    let p = c.chunk_files(0).into_iter().next().expect("a chunk on n1");
    let hex = p.file_stem().unwrap().to_str().unwrap().to_string();
    (ChunkId::from_hex(&hex).unwrap(), p)
}

/// Case 3: strangers and clients. No one but the coordinator may delete on
/// a node; a client key cannot register a node; chunks are read and written
/// only with the coordinator's block tokens; a revoked key is refused.
#[test]
fn strangers_and_clients_cannot_delete_register_or_read_ungranted_chunks() {
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .secret("cluster-secret-for-tests")
        .start();
    let key = ok(c.run(&["key", "create", "alice"]), "key create");
    let key_file = c.scratch("alice.key");
    std::fs::write(&key_file, key.trim()).unwrap();
    let kf = key_file.to_str().unwrap().to_string();
    let data = random_bytes(7, 3 * C);
    let input = c.scratch("in");
    std::fs::write(&input, &data).unwrap();
    ok(
        bare(
            &c,
            &[
                "put",
                input.to_str().unwrap(),
                "--name",
                "a",
                "--key-file",
                &kf,
            ],
        ),
        "put with a client key",
    );
    let out = ok(
        bare(&c, &["get", "a", "--out", "-", "--key-file", &kf]),
        "get with a client key",
    );
    let _ = out;
    // Without any credential the coordinator refuses.
    fails_with(bare(&c, &["ls"]), "client key", "ls without a key");
    // A client key is not the operator's secret.
    fails_with(
        bare(&c, &["drain", "n1", "--key-file", &kf]),
        "cluster secret",
        "drain with a client key",
    );
    let (id, path) = some_chunk(&c);
    let node = c.node_addr(0);
    let coord = c.coord_addr().to_string();
    let alice = Credential::parse_client_key(key.trim()).unwrap();
    rt().block_on(async {
        // Anonymous peer -> node: Delete refused.
        let mut conn = dial(&node, Role::Client, None).await.unwrap();
        conn.send(&NodeRequest::Delete(vec![id])).await.unwrap();
        let r = conn.recv_reply::<protocol::NodeResponse>().await;
        assert!(format!("{:?}", r.unwrap_err()).contains("only the coordinator"));
        // Claiming to be the coordinator without the secret: no handshake.
        assert!(dial(&node, Role::Coord, None).await.is_err());
        // Reading without a token, or with a forged one.
        let mut conn = dial(&node, Role::Client, None).await.unwrap();
        conn.send(&NodeRequest::Get { id, token: None })
            .await
            .unwrap();
        let r = conn.recv_reply::<protocol::NodeResponse>().await;
        assert!(format!("{:?}", r.unwrap_err()).contains("token"));
        let forged = TokenKey::from_secret(&protocol::Secret::new("guess").unwrap()).sign(
            id,
            BlockOp::Read,
            0,
            u64::MAX,
        );
        conn.send(&NodeRequest::Get {
            id,
            token: Some(forged),
        })
        .await
        .unwrap();
        let r = conn.recv_reply::<protocol::NodeResponse>().await;
        assert!(format!("{:?}", r.unwrap_err()).contains("signature"));
        // A client key cannot register as a node.
        let reg = Register {
            node_id: protocol::NodeId::new("n1").unwrap(),
            addr: "127.0.0.1:1".into(),
            stats: Default::default(),
            inventory: Vec::new(),
            cluster: None,
            seq_seen: 0,
            set_aside: Vec::new(),
            domain: String::new(),
            spare: false,
            node_uuid: None,
        };
        let mut conn = dial(&coord, Role::Client, Some(alice.clone()))
            .await
            .unwrap();
        conn.send(&CoordRequest::Register(reg.clone()))
            .await
            .unwrap();
        let r = conn.recv_reply::<protocol::CoordResponse>().await;
        assert!(format!("{:?}", r.unwrap_err()).contains("only a node"));
        assert!(dial(&coord, Role::Node, Some(alice.clone())).await.is_err());
    });
    assert!(path.exists(), "the chunk survived every attempt");
    c.wait_nodes_alive(3);
    let o = bare(&c, &["get", "a", "--out", "-", "--key-file", &kf]);
    assert!(
        o.status.success() && o.stdout == data,
        "get after the attacks"
    );
    ok(c.run(&["key", "revoke", "alice"]), "key revoke");
    fails_with(
        bare(&c, &["ls", "--key-file", &kf]),
        "revoked",
        "ls with a revoked key",
    );
}

/// Case 4: floods. Idle connections, plan floods, repeated bad-copy
/// reports and a huge fsck name list leave a legitimate client served.
#[test]
fn floods_leave_a_legitimate_client_served() {
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .secret("flood-secret")
        .start();
    let mut keys = Vec::new();
    for name in ["good", "bad"] {
        let k = ok(c.run(&["key", "create", name]), "key create");
        let f = c.scratch(&format!("{name}.key"));
        std::fs::write(&f, k.trim()).unwrap();
        keys.push((f.to_str().unwrap().to_string(), k.trim().to_string()));
    }
    let good = keys[0].0.clone();
    let bad = Credential::parse_client_key(&keys[1].1).unwrap();
    let data = random_bytes(9, 2 * C);
    let input = c.scratch("in");
    std::fs::write(&input, &data).unwrap();
    ok(
        bare(
            &c,
            &[
                "put",
                input.to_str().unwrap(),
                "--name",
                "x",
                "--key-file",
                &good,
            ],
        ),
        "put",
    );
    let (id, _) = some_chunk(&c);
    let node = c.node_addr(0);
    let coord = c.coord_addr().to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut idle = Vec::new();
    rt.block_on(async {
        // 600 idle, handshaken connections to a node (its cap is 512) and
        // 1100 to the coordinator (cap 1024).
        for _ in 0..600 {
            if let Ok(c) = dial(&node, Role::Client, None).await {
                idle.push(c);
            }
        }
        for _ in 0..1100 {
            if let Ok(c) = dial(&coord, Role::Client, Some(bad.clone())).await {
                idle.push(c);
            }
        }
        // Plans of 32 GiB until refused.
        let mut conn = dial(&coord, Role::Client, Some(bad.clone())).await.unwrap();
        let mut refused = 0;
        for i in 0..300 {
            conn.send(&CoordRequest::PlanPut {
                name: protocol::FileName::new(&format!("flood/{i}")).unwrap(),
                size: 32 << 30,
                force: false,
                scheme: None,
                fit: false,
            })
            .await
            .unwrap();
            if conn.recv_reply::<protocol::CoordResponse>().await.is_err() {
                refused += 1;
            }
        }
        assert!(refused > 0, "the plan flood must hit a cap");
        // 300 reports of the same bad copy; a fsck naming one file 100,000 times.
        for _ in 0..300 {
            conn.send(&CoordRequest::ReportBad {
                chunk: id,
                node: protocol::NodeId::new("n0").unwrap(),
                reason: "flood".into(),
            })
            .await
            .unwrap();
            let _ = conn.recv_reply::<protocol::CoordResponse>().await;
        }
        let names = vec![protocol::FileName::new("x").unwrap(); 100_000];
        let t = Instant::now();
        conn.send(&CoordRequest::Fsck {
            names,
            what_if: Vec::new(),
        })
        .await
        .ok();
        let _ = conn.recv_reply::<protocol::CoordResponse>().await;
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "fsck flood answered quickly"
        );
    });
    // With every flood in place, the legitimate client is served at once.
    let small = c.scratch("small");
    std::fs::write(&small, random_bytes(10, 4096)).unwrap();
    let small = small.to_str().unwrap().to_string();
    for what in [
        vec!["status", "--json"],
        vec!["get", "x", "--out", "-"],
        vec!["put", &small, "--name", "legit"],
    ] {
        let mut args: Vec<&str> = what.clone();
        args.extend(["--key-file", &good]);
        let t = Instant::now();
        ok(bare(&c, &args), "legitimate request under flood");
        let took = t.elapsed();
        eprintln!("under the floods: {what:?} answered in {took:?}");
        assert!(
            took < Duration::from_secs(1),
            "{what:?} took {took:?} under the floods"
        );
    }
    let verifies = std::fs::read_to_string(c.dir().join("coord.log"))
        .unwrap_or_default()
        .matches("reader reported a bad copy")
        .count();
    assert_eq!(verifies, 1, "one report verified, not 300");
    drop(idle);
}

/// Case 5: missing copies are bad. Chunk files deleted behind a node's back
/// are found by `fsck --deep`, repaired, and a file with no readable copy is
/// reported lost with a non-zero exit.
#[test]
fn missing_copies_are_found_repaired_or_reported_lost() {
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("none")
        .start();
    let data = random_bytes(11, 4 * C);
    c.put_ok("m", &data);
    // Remove one copy of every chunk on n1.
    let gone: Vec<PathBuf> = c.chunk_files(0);
    assert!(!gone.is_empty());
    for p in &gone {
        std::fs::remove_file(p).unwrap();
    }
    let out = c.run(&["fsck", "--deep"]);
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("bad"), "{text}");
    wait_until(DEADLINE, "missing copies repaired", || {
        let o = c.run(&["fsck", "--deep"]);
        o.status.success() && stdout(&o).contains("0 bad")
    });
    c.get_exact("m", &data);
    // Every copy of another file gone: lost, and said so.
    let d2 = random_bytes(12, C);
    c.put_ok("all-gone", &d2);
    let info = c.stat("all-gone");
    let _ = info;
    for i in 0..3 {
        for p in c.chunk_files(i) {
            let _ = std::fs::remove_file(p);
        }
    }
    let o = c.run(&["fsck", "--deep", "all-gone"]);
    fails_with(o, "lost", "fsck --deep of a file with no copy left");
}

/// Case 7: `put --force` while a reader is fetching the old version: the
/// old chunks stay for the delete grace, so the reader finishes byte-exact.
#[test]
fn a_reader_finishes_byte_exact_across_put_force() {
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .delete_grace("60s")
        .start();
    let old = random_bytes(21, 300 * C);
    let new = random_bytes(22, 300 * C);
    c.put_ok("doc", &old);
    let out = c.scratch("read");
    let mut reader = c
        .cmd()
        .args(["get", "doc", "--out"])
        .arg(&out)
        .spawn()
        .unwrap();
    // Overwrite as soon as the reader has looked the file up (its temp
    // file appears once the lookup is answered).
    let dir = out.parent().unwrap().to_path_buf();
    wait_until(DEADLINE, "the reader to start", || {
        std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("read"))
    });
    let input = c.scratch("new");
    std::fs::write(&input, &new).unwrap();
    ok(
        c.run(&["put", input.to_str().unwrap(), "--name", "doc", "--force"]),
        "put --force",
    );
    assert!(reader.wait().unwrap().success(), "the reader finished");
    let got = std::fs::read(&out).unwrap();
    assert!(got == old || got == new, "the reader got one whole version");
    c.get_exact("doc", &new);
}

/// Case 6: full disks. A node (n4) with no room beyond its reserve is never
/// chosen, neither for new chunks nor for repair.
#[test]
fn a_full_node_is_never_chosen() {
    let mut c = Cluster::builder()
        .nodes(5)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .node_reserve_for(4, "1PiB")
        .start();
    let files = put_some(&c, "full", 6, 500);
    assert!(
        c.chunk_files(4).is_empty(),
        "the full node n4 took new chunks"
    );
    c.kill_node(0);
    wait_until(DEADLINE, "every file healthy again after n0 died", || {
        files.iter().all(|(n, _)| c.stat(n)["health"] == "healthy")
    });
    assert!(c.chunk_files(4).is_empty(), "repair chose the full node n4");
    // Not even tried: a refused transfer would be in its log.
    let log = std::fs::read_to_string(c.dir().join("node-n4.log")).unwrap_or_default();
    assert!(!log.contains("disk full"), "n4 was asked to store: {log}");
    let st = c.status().expect("status");
    assert_eq!(
        st["repair"]["failed"], 0,
        "no transfer to a full node: {st}"
    );
    for (name, data) in &files {
        c.get_exact(name, data);
    }
}
