//! Network namespaces for multi-host tests: a private bridge in a "hub"
//! namespace and one namespace per host with its own address on it,
//! created by a test and removed on drop. Needs root and `ip` (iproute2).

use super::BIN;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

pub fn sh(args: &[&str]) -> Output {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

pub fn must(args: &[&str]) {
    let o = sh(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The namespaces and bridge of one test run; removed on drop.
pub struct Net {
    prefix: String,
    subnet: String,
    hosts: Vec<String>,
    /// Each host's namespace and its end of its link to the bridge.
    links: Vec<(String, String)>,
    children: Vec<Child>,
}

impl Net {
    pub fn available() -> Result<(), String> {
        if unsafe_geteuid() != 0 {
            return Err("not root".into());
        }
        match Command::new("ip").args(["netns", "list"]).output() {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
            Err(e) => Err(format!("no ip command: {e}")),
        }
    }

    pub fn new(hosts: &[&str]) -> Net {
        // Distinct per test of one process too (they run in parallel).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() + n * 53) % 200 + 20;
        let prefix = format!("dfs{id}");
        let subnet = format!("10.213.{id}");
        let hub = format!("{prefix}-hub");
        let mut net = Net {
            prefix: prefix.clone(),
            subnet: subnet.clone(),
            hosts: Vec::new(),
            links: Vec::new(),
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
            net.links.push((ns.clone(), a.clone()));
        }
        net
    }

    pub fn addr(&self, i: usize, port: u16) -> String {
        format!("{}.{}:{port}", self.subnet, i + 1)
    }

    pub fn cmd(&self, host: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{}-{host}", self.prefix), BIN])
            .env_remove("DFS_SECRET")
            .env_remove("DFS_KEY")
            .env_remove("DFS_COORD")
            .stdin(Stdio::null());
        c
    }

    /// Cuts host `i` off the network (its link down), or heals it.
    pub fn link(&self, i: usize, up: bool) {
        let (ns, dev) = &self.links[i];
        must(&[
            "ip",
            "-n",
            ns,
            "link",
            "set",
            dev,
            if up { "up" } else { "down" },
        ]);
    }

    /// Starts `dfs-sim args` on `host`; returns its index among the children.
    pub fn spawn(&mut self, host: &str, args: &[&str], log: &Path) -> usize {
        let f = std::fs::File::create(log).unwrap();
        let child = self
            .cmd(host)
            .args(args)
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    /// SIGKILLs a child started with [`Net::spawn`].
    pub fn kill(&mut self, child: usize) {
        let _ = self.children[child].kill();
        let _ = self.children[child].wait();
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
