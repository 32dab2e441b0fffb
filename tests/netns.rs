//! A secured cluster across "hosts": the coordinator, three nodes and a
//! client each run in a network namespace of their own, with their own
//! address on a private bridge that this test creates (and removes). Real
//! processes, real (virtual) network, nothing on loopback.
//!
//! Needs root and `ip` (iproute2). Where they are missing the test prints a
//! notice and passes, unless `CI` is set, in which case it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dfs-sim");
const DEADLINE: Duration = Duration::from_secs(60);

fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The namespaces and bridge of one test run; removed on drop.
struct Net {
    prefix: String,
    subnet: String,
    hosts: Vec<String>,
    children: Vec<Child>,
}

impl Net {
    fn available() -> Result<(), String> {
        if unsafe_geteuid() != 0 {
            return Err("not root".into());
        }
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => Err(format!("no ip command: {e}")),
        }
    }

    fn new(hosts: &[&str]) -> Net {
        let id = std::process::id() % 200 + 20;
        let prefix = format!("dfs{id}");
        let subnet = format!("10.213.{id}");
        let hub = format!("{prefix}-hub");
        let mut net = Net {
            prefix: prefix.clone(),
            subnet: subnet.clone(),
            hosts: Vec::new(),
            children: Vec::new(),
        };
        must(&["ip", "netns", "add", &hub]);
        net.hosts.push(hub.clone());
        must(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"]);
        must(&["ip", "-n", &hub, "link", "set", "br0", "up"]);
        for (i, h) in hosts.iter().enumerate() {
            let ns = format!("{prefix}-{h}");
            must(&["ip", "netns", "add", &ns]);
            net.hosts.push(ns.clone());
            let a = format!("v{id}{i}a");
            let b = format!("v{id}{i}b");
            must(&["ip", "link", "add", &a, "type", "veth", "peer", "name", &b]);
            must(&["ip", "link", "set", &a, "netns", &ns]);
            must(&["ip", "link", "set", &b, "netns", &hub]);
            must(&["ip", "-n", &hub, "link", "set", &b, "master", "br0"]);
            must(&["ip", "-n", &hub, "link", "set", &b, "up"]);
            let addr = format!("{subnet}.{}/24", i + 1);
            must(&["ip", "-n", &ns, "addr", "add", &addr, "dev", &a]);
            must(&["ip", "-n", &ns, "link", "set", &a, "up"]);
            must(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
        }
        net
    }

    fn addr(&self, i: usize, port: u16) -> String {
        format!("{}.{}:{port}", self.subnet, i + 1)
    }

    fn cmd(&self, host: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{host}", self.prefix), BIN])
            .env_remove("DFS_SECRET")
            .env_remove("DFS_KEY")
            .env_remove("DFS_COORD")
            .stdin(Stdio::null());
        c
    }

    fn spawn(&mut self, host: &str, args: &[&str], log: &Path) {
        let f = std::fs::File::create(log).unwrap();
        let child = self
            .cmd(host)
            .args(args)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        self.children.push(child);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for h in &self.hosts {
            let _ = sh(&["ip", "netns", "del", h]);
        }
    }
}

fn unsafe_geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() }
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

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
