//! A secured cluster across "hosts": the coordinator, three nodes and a
//! client each run in a network namespace of their own, with their own
//! address on a private bridge that this test creates (and removes). Real
//! processes, real (virtual) network, nothing on loopback.
//!
//! Needs root and `ip` (iproute2). Where they are missing the test prints a
//! notice and passes, unless `CI` is set, in which case it fails.

mod common;

use common::netns::Net;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(60);

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_secured_cluster_across_network_namespaces() {
    if let Err(why) = Net::available() {
        if std::env::var_os("CI").is_some() {
            panic!("network namespaces are needed in CI: {why}");
        }
        eprintln!("NOTICE: skipping the network-namespace test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = d.join("secret");
    std::fs::write(&secret, "a secret shared by the coordinator and the nodes").unwrap();
    let s = secret.to_str().unwrap();
    let hosts = ["coord", "n1", "n2", "n3", "client"];
    let mut net = Net::new(&hosts);
    let coord = net.addr(0, 4000);

    // A node on a non-loopback address without a secret refuses to start.
    let o = net
        .cmd("n1")
        .args(["node", "--id", "n1", "--listen", &net.addr(1, 4001)])
        .args(["--data", d.join("bad").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("without a secret"), "{}", text(&o));

    let data_c = d.join("coord");
    net.spawn(
        "coord",
        &[
            "coord",
            "--listen",
            &coord,
            "--data",
            data_c.to_str().unwrap(),
            "--secret-file",
            s,
            "--heartbeat-ms",
            "300",
            "--chunk-size",
            "256KiB",
        ],
        &d.join("coord.log"),
    );
    for i in 1..=3 {
        let id = format!("n{i}");
        let listen = net.addr(i, 4000 + i as u16);
        let data: PathBuf = d.join(&id);
        net.spawn(
            &id,
            &[
                "node",
                "--id",
                &id,
                "--listen",
                &listen,
                "--coord",
                &coord,
                "--data",
                data.to_str().unwrap(),
                "--secret-file",
                s,
                "--reserve",
                "0",
            ],
            &d.join(format!("{id}.log")),
        );
    }
    let admin = |args: &[&str]| -> Output {
        net.cmd("client")
            .args(args)
            .args(["--coord", &coord, "--secret-file", s])
            .output()
            .unwrap()
    };
    wait_until("three live nodes", || {
        let o = admin(&["status", "--json"]);
        o.status.success()
            && serde_json::from_slice::<serde_json::Value>(&o.stdout).is_ok_and(|v| {
                v["nodes"]
                    .as_array()
                    .is_some_and(|n| n.iter().filter(|n| n["state"] == "alive").count() == 3)
            })
    });
    let o = admin(&["key", "create", "app"]);
    assert!(o.status.success(), "{}", text(&o));
    let key_file = d.join("app.key");
    std::fs::write(&key_file, &o.stdout).unwrap();
    let k = key_file.to_str().unwrap();
    let client = |args: &[&str], key: Option<&str>| -> Output {
        let mut c = net.cmd("client");
        c.args(args).args(["--coord", &coord]);
        if let Some(k) = key {
            c.args(["--key-file", k]);
        }
        c.output().unwrap()
    };
    let input = d.join("input");
    let bytes: Vec<u8> = (0..1_500_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    std::fs::write(&input, &bytes).unwrap();
    let o = client(
        &["put", input.to_str().unwrap(), "--name", "across/hosts"],
        Some(k),
    );
    assert!(o.status.success(), "put with a key: {}", text(&o));
    let out = d.join("out");
    let o = client(
        &["get", "across/hosts", "--out", out.to_str().unwrap()],
        Some(k),
    );
    assert!(o.status.success(), "get with a key: {}", text(&o));
    assert!(
        std::fs::read(&out).unwrap() == bytes,
        "byte-exact across hosts"
    );

    let o = client(&["ls"], None);
    assert!(
        !o.status.success() && text(&o).contains("client key"),
        "{}",
        text(&o)
    );
    let o = admin(&["key", "revoke", "app"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = client(&["ls"], Some(k));
    assert!(
        !o.status.success() && text(&o).contains("revoked"),
        "{}",
        text(&o)
    );
}

/// A coordinator group across hosts: three members, three nodes and a
/// client, each in its own namespace. The leader's link goes down: clients
/// and nodes keep working through the majority side; healed, the old
/// leader rejoins as a follower and nothing is lost.
#[test]
fn a_cut_off_leader_is_replaced_and_rejoins_as_follower() {
    if let Err(why) = Net::available() {
        if std::env::var_os("CI").is_some() {
            panic!("network namespaces are needed in CI: {why}");
        }
        eprintln!("NOTICE: skipping the network-namespace group test: {why}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let secret = d.join("secret");
    std::fs::write(&secret, "the group's shared secret, long enough").unwrap();
    let s = secret.to_str().unwrap();
    let hosts = ["c1", "c2", "c3", "n1", "n2", "n3", "client"];
    let mut net = Net::new(&hosts);
    let members: Vec<String> = (0..3).map(|i| net.addr(i, 4000)).collect();
    let peers: String = (0..3)
        .map(|i| format!("c{}={}", i + 1, members[i]))
        .collect::<Vec<_>>()
        .join(",");
    let list = members.join(",");
    for (i, listen) in members.iter().enumerate() {
        let name = format!("c{}", i + 1);
        let data = d.join(&name);
        net.spawn(
            &name,
            &[
                "coord",
                "--id",
                &name,
                "--peers",
                &peers,
                "--listen",
                listen,
                "--data",
                data.to_str().unwrap(),
                "--secret-file",
                s,
                "--heartbeat-ms",
                "300",
                "--chunk-size",
                "256KiB",
            ],
            &d.join(format!("{name}.log")),
        );
    }
    for i in 0..3 {
        let id = format!("n{}", i + 1);
        let listen = net.addr(3 + i, 4100);
        let data: PathBuf = d.join(&id);
        net.spawn(
            &id,
            &[
                "node",
                "--id",
                &id,
                "--listen",
                &listen,
                "--coord",
                &list,
                "--data",
                data.to_str().unwrap(),
                "--secret-file",
                s,
                "--reserve",
                "0",
            ],
            &d.join(format!("{id}.log")),
        );
    }
    let client = |args: &[&str]| -> Output {
        net.cmd("client")
            .args(args)
            .args(["--coord", &list, "--secret-file", s])
            .output()
            .unwrap()
    };
    let view = |i: usize| -> Option<serde_json::Value> {
        let o = net
            .cmd("client")
            .args([
                "coordinators",
                "--json",
                "--coord",
                &members[i],
                "--secret-file",
                s,
            ])
            .output()
            .ok()?;
        serde_json::from_slice(&o.stdout).ok()
    };
    let alive = |n: usize| {
        let o = client(&["status", "--json"]);
        o.status.success()
            && serde_json::from_slice::<serde_json::Value>(&o.stdout).is_ok_and(|v| {
                v["nodes"]
                    .as_array()
                    .is_some_and(|a| a.iter().filter(|x| x["state"] == "alive").count() >= n)
            })
    };
    wait_until("three live nodes through the group", || alive(3));
    let input = d.join("input");
    let bytes: Vec<u8> = (0..700_000u32).map(|i| (i * 13 + i / 97) as u8).collect();
    std::fs::write(&input, &bytes).unwrap();
    let o = client(&["put", input.to_str().unwrap(), "--name", "before"]);
    assert!(o.status.success(), "put: {}", text(&o));

    let mut leader = None;
    wait_until("a leader", || {
        leader = (0..3).find(|&i| {
            view(i).is_some_and(|v| v["leader"].as_str() == Some(&format!("c{}", i + 1)))
        });
        leader.is_some()
    });
    let old = leader.unwrap();
    net.link(old, false);
    let cut = Instant::now();
    wait_until("a put through the majority side", || {
        client(&[
            "put",
            input.to_str().unwrap(),
            "--name",
            "during",
            "--force",
        ])
        .status
        .success()
    });
    eprintln!(
        "leader c{} cut off: next put after {:.1} s",
        old + 1,
        cut.elapsed().as_secs_f64()
    );
    wait_until("the nodes with the new leader", || alive(3));
    net.link(old, true);
    wait_until("the old leader follows", || {
        view(old).is_some_and(|v| {
            v["leader"]
                .as_str()
                .is_some_and(|l| l != format!("c{}", old + 1))
        })
    });
    let out = d.join("out");
    for name in ["before", "during"] {
        let o = client(&["get", name, "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "get {name}: {}", text(&o));
        assert!(std::fs::read(&out).unwrap() == bytes, "{name} byte-exact");
    }
}
