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
    // Every node must (still, or again) be alive: with R=2 + xor on three
    // nodes a put needs all of them, and a node whose heartbeat is merely
    // late is left out of placement (see the report on a one-off flake).
    c.wait_nodes_alive(c.node_count());
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

// ------------------------------------------------------------------------
// Hostile peers that get past the handshake. The frames are built by hand
// (postcard encoding of the protocol's types) so that the server's request
// loop, not just its handshake, meets bad input. A well-formed Put is sent
// first as a control, proving the hand encoding is right.

const TAG_MESSAGE: u8 = 0x01;
const TAG_DATA: u8 = 0x02;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut f = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    f.push(tag);
    f.extend_from_slice(body);
    f
}

/// Reads one frame (tag and body); None if the peer closed.
fn read_frame(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).ok()?;
    let len = u32::from_be_bytes(len) as usize;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    let tag = body.remove(0);
    Some((tag, body))
}

/// Connects and completes the handshake as a client without a secret.
fn handshaken(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut hello = b"DFS1".to_vec();
    varint(protocol::PROTOCOL_VERSION as u64, &mut hello); // protocol version
    varint(0, &mut hello); // Role::Client
    hello.extend_from_slice(&[7u8; 32]); // nonce
    hello.push(0); // key_name: None
    hello.push(0); // cluster: None
    s.write_all(&frame(TAG_MESSAGE, &hello)).unwrap();
    let (tag, _challenge) = read_frame(&mut s).expect("challenge");
    assert_eq!(tag, TAG_MESSAGE);
    s.write_all(&frame(TAG_MESSAGE, &[0x00])).unwrap(); // Auth { proof: None }
    let (tag, verdict) = read_frame(&mut s).expect("handshake verdict");
    assert_eq!(
        (tag, verdict.as_slice()),
        (TAG_MESSAGE, &[0x00][..]),
        "Ok(())"
    );
    s
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `NodeRequest::Put(ChunkHeader)` with a Raw codec.
fn put_header(id: [u8; 16], len: u64, crc: u32) -> Vec<u8> {
    let mut m = Vec::new();
    varint(0, &mut m); // NodeRequest::Put
    m.extend_from_slice(&id);
    varint(len, &mut m); // raw_len
    m.extend_from_slice(&[0u8; 32]); // raw_sha256 (nodes check the CRC)
    varint(0, &mut m); // Codec::Raw
    varint(len, &mut m); // stored_len
    varint(u64::from(crc), &mut m); // stored_crc
    m.push(0); // token: None
    frame(TAG_MESSAGE, &m)
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn tmp_files(c: &Cluster, i: usize) -> usize {
    std::fs::read_dir(c.node_data_dir(i).join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn malformed_requests_after_the_handshake_are_contained() {
    let mut c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let node = c.node_addr(0);

    // Control: a well-formed Put is stored, so the encoding above is right.
    let good_id = [0x11u8; 16];
    let payload = random_bytes(900, 1000);
    let mut s = handshaken(&node);
    s.write_all(&put_header(good_id, 1000, crc32(&payload)))
        .unwrap();
    s.write_all(&frame(TAG_DATA, &payload)).unwrap();
    let (_, reply) = read_frame(&mut s).expect("reply to a good put");
    assert_eq!(reply[0], 0x00, "Ok(Stored) expected, got {reply:?}");
    assert!(c.chunk_path(0, &hex(&good_id)).exists());
    drop(s);

    // A put whose bytes do not match its CRC is refused and not stored.
    let bad_crc = [0x22u8; 16];
    let mut s = handshaken(&node);
    s.write_all(&put_header(bad_crc, 1000, crc32(&payload) ^ 1))
        .unwrap();
    s.write_all(&frame(TAG_DATA, &payload)).unwrap();
    // An error reply, or closing the connection, are both refusals.
    if let Some((_, reply)) = read_frame(&mut s) {
        assert_eq!(reply[0], 0x01, "Err expected, got {reply:?}");
    }
    assert!(!c.chunk_path(0, &hex(&bad_crc)).exists());

    // More bytes than announced: refused, not stored.
    let too_long = [0x33u8; 16];
    let mut s = handshaken(&node);
    s.write_all(&put_header(too_long, 100, 0)).unwrap();
    send(&mut s, &frame(TAG_DATA, &random_bytes(901, 300)));
    expect_closed(s, DEADLINE, "node: more data than announced");
    assert!(!c.chunk_path(0, &hex(&too_long)).exists());

    // A chunk larger than any chunk can be: refused.
    let huge = [0x44u8; 16];
    let mut s = handshaken(&node);
    s.write_all(&put_header(huge, 1 << 40, 0)).unwrap();
    // An error reply, or closing the connection, are both refusals.
    if let Some((_, reply)) = read_frame(&mut s) {
        assert_eq!(reply[0], 0x01, "Err expected, got {reply:?}");
    }
    drop(s);

    // A put abandoned halfway: its temp file must not be left behind.
    let half = [0x55u8; 16];
    let mut s = handshaken(&node);
    s.write_all(&put_header(half, 1 << 20, 0)).unwrap();
    s.write_all(&frame(TAG_DATA, &random_bytes(902, 4096)))
        .unwrap();
    wait_until(DEADLINE, "the half put's temp file to appear", || {
        tmp_files(&c, 0) > 0
    });
    drop(s);
    wait_until(
        DEADLINE,
        "node n0 to remove the abandoned temp file",
        || tmp_files(&c, 0) == 0,
    );
    assert!(!c.chunk_path(0, &hex(&half)).exists());

    // Past the handshake, to both servers: a 4 GiB length prefix, a junk
    // message, an unknown tag. Each closes that connection only.
    let coord = c.coord_addr().to_string();
    for (who, addr) in [("node n0", &node), ("coordinator", &coord)] {
        let mut s = handshaken(addr);
        let mut b = u32::MAX.to_be_bytes().to_vec();
        b.extend(random_bytes(903, 1024));
        send(&mut s, &b);
        expect_closed(s, DEADLINE, &format!("{who}: huge frame after handshake"));

        let mut s = handshaken(addr);
        send(&mut s, &frame(TAG_MESSAGE, &[0xFF; 24]));
        expect_closed(s, DEADLINE, &format!("{who}: junk message after handshake"));

        let mut s = handshaken(addr);
        send(&mut s, &frame(0x7F, b"what"));
        expect_closed(s, DEADLINE, &format!("{who}: unknown tag after handshake"));
    }
    cluster_still_serves(&mut c, 1, "malformed requests after the handshake");
}
