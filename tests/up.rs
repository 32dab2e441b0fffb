//! `dfs-sim up` end to end: a 3-node cluster as a child process, put/get,
//! `kill` and `start` of a node, a refused second `up`, and a clean stop on
//! SIGTERM with every process gone.

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dfs-sim");

fn dfs(args: &[&str], coord: &str) -> Output {
    Command::new(BIN)
        .args(args)
        .env("DFS_COORD", coord)
        .env_remove("DFS_SECRET")
        .stdin(Stdio::null())
        .output()
        .expect("dfs-sim runs")
}

fn ok(args: &[&str], coord: &str) -> String {
    let out = dfs(args, coord);
    assert!(
        out.status.success(),
        "dfs-sim {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sha(p: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

/// Live and not a zombie (orphans may be left unreaped by pid 1).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let st = s[s.rfind(')').unwrap() + 1..].trim_start().chars().next();
            !matches!(st, Some('Z' | 'X'))
        }
        Err(_) => false,
    }
}

fn pids(dir: &Path) -> Vec<u32> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    std::iter::once(&v["coord"])
        .chain(v["nodes"].as_array().unwrap())
        .map(|p| p["pid"].as_u64().unwrap() as u32)
        .collect()
}

/// Stops `up` even if the test fails half-way.
struct Up(Child);

impl Drop for Up {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.0.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
        }
    }
}

#[test]
fn up_put_get_kill_start_and_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("cluster");
    let dir_s = dir.to_str().unwrap().to_string();
    let t0 = Instant::now();
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--nodes",
            "3",
            "--data",
            &dir_s,
            "--base-port",
            "0",
            "--chunk-size",
            "64KiB",
        ])
        .env_remove("DFS_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut up = Up(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("up: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let coord = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("up prints export DFS_COORD=");
        if let Some(addr) = line.strip_prefix("export DFS_COORD=") {
            break addr.to_string();
        }
    };
    eprintln!("cluster up after {:?}", t0.elapsed());
    // `up` runs an S3 gateway too and says how to reach it; an unsigned
    // request gets S3's AccessDenied.
    let s3 = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("up prints the S3 endpoint");
        if let Some(rest) = line.strip_prefix("S3 endpoint: http://") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    {
        use std::io::{Read, Write};
        let mut sock = std::net::TcpStream::connect(&s3).expect("S3 gateway reachable");
        write!(
            sock,
            "GET / HTTP/1.1\r\nHost: {s3}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut resp = String::new();
        sock.read_to_string(&mut resp).unwrap();
        assert!(
            resp.starts_with("HTTP/1.1 403") && resp.contains("AccessDenied"),
            "{resp}"
        );
    }

    // The address works at once.
    let src = tmp.path().join("src.bin");
    let data: Vec<u8> = (0..700_000u32).map(|_| rand::random::<u8>()).collect();
    std::fs::write(&src, &data).unwrap();
    ok(
        &["put", src.to_str().unwrap(), "--name", "t/src.bin"],
        &coord,
    );
    let out1 = tmp.path().join("out1");
    ok(
        &["get", "t/src.bin", "--out", out1.to_str().unwrap()],
        &coord,
    );
    assert_eq!(sha(&out1), sha(&src));

    // A second `up` on the same directory is refused.
    let second = dfs(
        &["up", "--nodes", "3", "--data", &dir_s, "--base-port", "0"],
        &coord,
    );
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("already running"), "{err}");

    // Kill a node: reads still work.
    let killed = ok(&["kill", "n1", "--data", &dir_s], &coord);
    assert!(killed.starts_with("n1 stopped"), "{killed}");
    let again = dfs(&["kill", "n1", "--data", &dir_s], &coord);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already stopped"));
    let unknown = dfs(&["kill", "n7", "--data", &dir_s], &coord);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown node"));
    let out2 = tmp.path().join("out2");
    ok(
        &["get", "t/src.bin", "--out", out2.to_str().unwrap()],
        &coord,
    );
    assert_eq!(sha(&out2), sha(&src));

    // Start it again: the coordinator sees it alive.
    let started = ok(&["start", "n1", "--data", &dir_s], &coord);
    assert!(started.starts_with("n1 started"), "{started}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(&["status", "--json"], &coord)).unwrap();
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert!(nodes.iter().all(|n| n["state"] == "alive"), "{status}");

    // SIGTERM to `up` stops everything, including the restarted n1.
    let all = pids(&dir);
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|p| alive(*p)), "{all:?}");
    let st = Command::new("kill")
        .args(["-TERM", &up.0.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = up.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "up did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "up exited with {status}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while all.iter().any(|p| alive(*p)) {
        assert!(
            Instant::now() < deadline,
            "still running: {:?}",
            all.iter().filter(|p| alive(**p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        std::net::TcpStream::connect(&s3).is_err(),
        "the S3 gateway stopped with the cluster"
    );
    // Nothing removed.
    for sub in ["coord", "n1", "n2", "n3", "logs/n1.log", "cluster.json"] {
        assert!(dir.join(sub).exists(), "{sub} missing");
    }
    let state = std::fs::read_to_string(dir.join("cluster.json")).unwrap();
    assert!(!state.contains("\"running\""), "{state}");
}

/// `up --coordinators 3`: a group of three members; put and get through the
/// member list it prints, the leader killed, put and get again.
#[test]
fn up_with_a_coordinator_group() {
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("cluster");
    let dir_s = dir.to_str().unwrap().to_string();
    let mut child = Command::new(BIN)
        .args([
            "up",
            "--coordinators",
            "3",
            "--nodes",
            "3",
            "--data",
            &dir_s,
            "--base-port",
            "0",
            "--no-s3",
            "--chunk-size",
            "64KiB",
            "--heartbeat-ms",
            "300",
        ])
        .env_remove("DFS_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _up = Up(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            eprintln!("up: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let coord = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("up prints export DFS_COORD=");
        if let Some(addr) = line.strip_prefix("export DFS_COORD=") {
            break addr.to_string();
        }
    };
    assert_eq!(coord.split(',').count(), 3, "every member listed: {coord}");
    let input = tmp.path().join("input");
    std::fs::write(&input, vec![42u8; 300_000]).unwrap();
    ok(&["put", input.to_str().unwrap(), "--name", "a"], &coord);
    let v: serde_json::Value =
        serde_json::from_str(&ok(&["coordinators", "--json"], &coord)).unwrap();
    let leader = v["leader"].as_str().expect("a leader").to_string();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let pid = std::iter::once(&state["coord"])
        .chain(state["members"].as_array().unwrap())
        .find(|p| p["id"] == leader.as_str())
        .and_then(|p| p["pid"].as_u64())
        .expect("the leader is in cluster.json") as u32;
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    let deadline = Instant::now() + Duration::from_secs(40);
    while !dfs(&["put", input.to_str().unwrap(), "--name", "b"], &coord)
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "no put after the leader died");
    }
    for name in ["a", "b"] {
        let out = tmp.path().join(name);
        ok(&["get", name, "-o", out.to_str().unwrap()], &coord);
        assert_eq!(sha(&out), sha(&input), "{name} byte-exact");
    }
}
