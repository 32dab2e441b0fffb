//! Hostile input does not take the cluster down: raw TCP connections to a
//! node and to the coordinator carrying random garbage, a ~4 GiB length
//! prefix, a well-formed frame of junk, a truncated frame, or nothing at all
//! are closed by the server, which keeps serving everyone else (a put/get
//! through the cluster works after each, and no process dies or balloons).
//! A chunk file corrupted on disk is read around (other replica, or parity
//! rebuild), and a client with the wrong shared secret is turned away with
//! an error that says so while the right secret works.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const C: usize = 16 * 1024;

/// Waits until the server closes `s` (EOF or reset); panics after `timeout`.
/// Whatever the server sends before closing is ignored.
fn expect_closed(mut s: TcpStream, timeout: Duration, what: &str) {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Reset / aborted: closed as well.
            Err(_) => return,
        }
        if start.elapsed() > timeout {
            panic!("{what}: server kept the connection open for {timeout:?}");
        }
    }
}

/// Writes, tolerating the server having closed already (that is the point).
fn send(s: &mut TcpStream, bytes: &[u8]) {
    let _ = s.write_all(bytes);
    let _ = s.flush();
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A normal put/get round trip still works, and every process still runs.
fn cluster_still_serves(c: &mut Cluster, round: u64, what: &str) {
    let data = random_bytes(round, 3 * C + 11);
    let name = format!("after/{round}");
    c.put_ok(&name, &data);
    c.get_exact(&name, &data);
    assert!(c.coord_running(), "coordinator died after {what}");
    for i in 0..c.node_count() {
        assert!(c.node_running(i), "node {i} died after {what}");
    }
    for pid in (0..c.node_count())
        .map(|i| c.node_pid(i))
        .chain([c.coord_pid()])
    {
        if let Some(kib) = rss_kib(pid) {
            assert!(
                kib < 512 * 1024,
                "process {pid} uses {kib} KiB after {what}: did it allocate for a hostile length?"
            );
        }
    }
}

#[test]
fn garbage_and_huge_frames_are_dropped_and_service_continues() {
    let mut c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let targets = [
        ("node n0", c.node_addr(0)),
        ("coordinator", c.coord_addr().to_string()),
    ];
    // A connection that never says anything must be dropped by the
    // handshake deadline; checked at the end, once that has passed.
    let idle: Vec<(String, TcpStream)> = targets
        .iter()
        .map(|(who, addr)| (who.to_string(), TcpStream::connect(addr).unwrap()))
        .collect();

    let mut round = 0;
    for (who, addr) in &targets {
        // (a) random garbage.
        let mut s = TcpStream::connect(addr).unwrap();
        send(&mut s, &random_bytes(0xBAD, 64 * 1024));
        expect_closed(s, DEADLINE, &format!("{who}: garbage"));
        round += 1;
        cluster_still_serves(&mut c, round, &format!("garbage to {who}"));

        // (b) a length prefix of 4 GiB - 1, then junk: must be refused
        // before allocating, and the connection closed.
        for len in [u32::MAX, 1 << 31, 9 << 20] {
            let mut s = TcpStream::connect(addr).unwrap();
            let mut bytes = len.to_be_bytes().to_vec();
            bytes.extend(random_bytes(u64::from(len), 8192));
            send(&mut s, &bytes);
            expect_closed(s, DEADLINE, &format!("{who}: length prefix {len}"));
        }
        round += 1;
        cluster_still_serves(&mut c, round, &format!("huge length prefix to {who}"));

        // (c) a valid-looking length with a truncated body, then close;
        // the cluster is used while that connection is still open.
        let mut s = TcpStream::connect(addr).unwrap();
        let mut bytes = 100u32.to_be_bytes().to_vec();
        bytes.push(0x01);
        bytes.extend(random_bytes(3, 10));
        send(&mut s, &bytes);
        round += 1;
        cluster_still_serves(&mut c, round, &format!("half frame open to {who}"));
        drop(s);
        round += 1;
        cluster_still_serves(&mut c, round, &format!("truncated frame to {who}"));

        // (d) a complete, well-framed message whose body is junk, and a
        // frame with an unknown tag.
        for tag in [0x01u8, 0x02, 0x7F] {
            let mut s = TcpStream::connect(addr).unwrap();
            let body = random_bytes(u64::from(tag), 40);
            let mut bytes = (body.len() as u32 + 1).to_be_bytes().to_vec();
            bytes.push(tag);
            bytes.extend(&body);
            send(&mut s, &bytes);
            expect_closed(s, DEADLINE, &format!("{who}: junk frame with tag {tag}"));
        }
        round += 1;
        cluster_still_serves(&mut c, round, &format!("junk frames to {who}"));

        // (e) many hostile connections at once.
        let many: Vec<TcpStream> = (0..32)
            .map(|i| {
                let mut s = TcpStream::connect(addr).unwrap();
                send(&mut s, &random_bytes(100 + i, 1024));
                s
            })
            .collect();
        round += 1;
        cluster_still_serves(&mut c, round, &format!("32 garbage connections to {who}"));
        for s in many {
            expect_closed(s, DEADLINE, &format!("{who}: one of many"));
        }
    }

    for (who, s) in idle {
        expect_closed(s, DEADLINE, &format!("{who}: silent connection"));
    }
    round += 1;
    cluster_still_serves(&mut c, round, "everything");
    // Every file written along the way is still there.
    assert_eq!(c.ls().len() as u64, round);
}

/// Flips a byte near the end of every chunk file on node `i`; returns how
/// many were corrupted.
fn corrupt_all_chunks(c: &Cluster, i: usize) -> usize {
    let files = c.chunk_files(i);
    for f in &files {
        flip_byte_near_end(f, 3);
    }
    files.len()
}

#[test]
fn corrupt_replica_is_read_around() {
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("none")
        .chunk_size(C as u64)
        .start();
    let data = random_bytes(55, 10 * C + 300);
    c.put_ok("victim", &data);
    let st = c.stat("victim");
    let first_on_n0 = st["stripes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["data"][0]["locations"][0]["node"] == "n0")
        .count();
    assert!(
        first_on_n0 > 0,
        "n0 should be the first copy of some chunk: {st}"
    );
    assert!(corrupt_all_chunks(&c, 0) > 0, "n0 holds chunks");

    let out = c.get_exact("victim", &data);
    assert!(
        out.contains("unreadable copies skipped"),
        "get should report the corrupt copies it skipped: {out}"
    );
    // The node noticed and quarantined its bad copies.
    let q = c.node_data_dir(0).join("quarantine");
    let quarantined = std::fs::read_dir(&q).map(|d| d.count()).unwrap_or(0);
    assert!(quarantined > 0, "nothing in {}", q.display());
    // And reading again still works.
    c.get_exact("victim", &data);
}

#[test]
fn corrupt_single_copy_is_rebuilt_from_parity() {
    let c = Cluster::builder()
        .nodes(4)
        .replication(1)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let data = random_bytes(56, 3 * C);
    c.put_ok("single", &data);
    let st = c.stat("single");
    let chunk = chunk_of(&st, 0, Some(1));
    let node = Cluster::node_index(&holders(chunk)[0]);
    let path = c.chunk_path(node, chunk["id"].as_str().unwrap());
    assert!(path.exists(), "{} should exist", path.display());
    flip_byte_near_end(&path, 0);

    let out = c.get_exact("single", &data);
    assert!(
        out.contains("rebuilt from parity"),
        "the corrupt only copy must be rebuilt from parity: {out}"
    );
}

/// Kills a stray child when dropped.
struct Stray(Child);

impl Drop for Stray {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn wrong_shared_secret_is_refused() {
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .secret("correct horse battery staple")
        .start();
    let data = random_bytes(57, 2 * C + 1);
    let input = c.scratch("in");
    std::fs::write(&input, &data).unwrap();
    let wrong = c.scratch("wrong-secret");
    std::fs::write(&wrong, "tr0ub4dor&3\n").unwrap();

    // Wrong secret: every command refused, naming the secret.
    let o = c
        .cmd()
        .args(["put", input.to_str().unwrap(), "--name", "s"])
        .arg("--secret-file")
        .arg(&wrong)
        .output()
        .unwrap();
    fails_with(o, "secret", "put with the wrong secret");
    let o = c
        .cmd()
        .args(["ls", "--secret-file", wrong.to_str().unwrap()])
        .output()
        .unwrap();
    fails_with(o, "secret", "ls with the wrong secret");
    // No secret at all.
    let o = c.cmd().args(["status"]).output().unwrap();
    fails_with(o, "secret", "status without a secret");
    // The secret from DFS_SECRET works like the file (and a wrong one
    // fails like it).
    let o = c
        .cmd()
        .args(["ls"])
        .env("DFS_SECRET", "nope")
        .output()
        .unwrap();
    fails_with(o, "secret", "ls with a wrong DFS_SECRET");

    assert!(c.ls().is_empty(), "the refused put stored nothing");

    // Right secret: works end to end (client <-> coordinator and nodes).
    ok(
        c.run(&["put", input.to_str().unwrap(), "--name", "s"]),
        "put with the right secret",
    );
    c.get_exact("s", &data);
    let o = c
        .cmd()
        .args(["get", "s", "--out", "-"])
        .env("DFS_SECRET", "correct horse battery staple")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", describe(&o));
    assert_same_bytes(&o.stdout, &data, "get with DFS_SECRET");

    // A node with the wrong secret cannot join the cluster.
    let log = c.dir().join("intruder.log");
    let intruder = Stray(
        Command::new(BIN)
            .args(["node", "--id", "intruder", "--listen", "127.0.0.1:0"])
            .arg("--data")
            .arg(c.dir().join("intruder"))
            .args(["--coord", c.coord_addr()])
            .arg("--secret-file")
            .arg(&wrong)
            .env_remove("DFS_SECRET")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until(DEADLINE, "intruder to log its refusal", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("secret"))
    });
    let status = c.status().unwrap();
    let ids: Vec<&str> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert!(!ids.contains(&"intruder"), "intruder joined: {status}");
    drop(intruder);
    c.get_exact("s", &data);
}
