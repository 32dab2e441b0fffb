//! Test harness shared by the integration tests: spawns a real cluster (one
//! coordinator and N nodes, each a separate `dfs-sim` child process on
//! `127.0.0.1:0`), runs client commands against it, kills and restarts
//! processes, and polls for conditions with deadlines (never fixed sleeps).
//!
//! Every child's stderr (its log) goes to a file in the cluster's temp dir;
//! when a test panics, the tail of each log is printed before the children
//! are killed, so a failure in CI comes with the cluster's side of the story.

#![allow(dead_code)]

pub mod netns;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dfs-sim");

/// Default deadline for anything the cluster should do "soon". Generous on
/// purpose: tests share 2 cores with other work.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Polls `cond` every 50 ms until it holds; panics naming `what` after
/// `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if cond() {
            return;
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Deterministic pseudo-random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut v = vec![0u8; len];
    rng.fill(&mut v[..]);
    v
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Asserts two byte strings are equal without dumping megabytes on failure.
#[track_caller]
pub fn assert_same_bytes(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let first_diff = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: content differs: got {} bytes (sha256 {}), want {} bytes (sha256 {}), first difference at {:?}",
            got.len(),
            sha256_hex(got),
            want.len(),
            sha256_hex(want),
            first_diff
        );
    }
}

/// Sends a signal with the `kill` command (libc is not a dev-dependency).
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(st.success(), "kill -{sig} {pid} failed");
}

/// Lossy stdout/stderr of a finished command, for messages.
pub fn describe(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", describe(&o));
    stdout(&o)
}

/// Asserts failure with a one-line `error: ...` on stderr that contains
/// `needle`; returns stderr.
#[track_caller]
pub fn fails_with(o: Output, needle: &str, what: &str) -> String {
    assert!(
        !o.status.success(),
        "{what} should have failed but succeeded: {}",
        describe(&o)
    );
    let err = stderr(&o);
    assert!(
        err.contains(needle),
        "{what}: stderr should mention {needle:?}: {}",
        describe(&o)
    );
    let last = err.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: "),
        "{what}: last stderr line should be 'error: ...': {}",
        describe(&o)
    );
    err
}

/// A child process whose first stdout line announced its address.
struct Proc {
    child: Child,
    addr: String,
    /// Stdout lines after the ready line (e.g. the `--http` address).
    /// (In a mutex so a `&Cluster` can be shared between threads.)
    lines: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL and reap.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Why a child did not come up.
enum SpawnError {
    /// It exited (or closed stdout) before printing its ready line.
    Exited(String),
}

/// Spawns `dfs-sim args...` with stderr appended to `log`, and waits for the
/// first stdout line, which must start with `prefix` and contain
/// `listening on ADDR,`.
fn spawn(args: &[String], log: &Path, prefix: &str) -> Result<Proc, SpawnError> {
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open log file");
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("DFS_COORD")
        .env_remove("DFS_SECRET")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .expect("spawn dfs-sim");
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    // Read the ready line, then keep draining stdout so the child never
    // blocks on a full pipe.
    std::thread::spawn(move || {
        let mut r = BufReader::new(out);
        loop {
            let mut line = String::new();
            let n = r.read_line(&mut line).unwrap_or(0);
            let _ = tx.send(line);
            if n == 0 {
                break;
            }
        }
        let mut sink = Vec::new();
        let _ = r.read_to_end(&mut sink);
    });
    let line = match rx.recv_timeout(DEADLINE) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{prefix}: no ready line within {DEADLINE:?}; log {}",
                log.display()
            );
        }
    };
    if line.is_empty() {
        let _ = child.wait();
        return Err(SpawnError::Exited(tail(log, 10)));
    }
    assert!(
        line.starts_with(prefix),
        "unexpected ready line {line:?}, wanted it to start with {prefix:?}"
    );
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_else(|| panic!("no address in ready line {line:?}"))
        .trim()
        .to_string();
    Ok(Proc {
        child,
        addr,
        lines: std::sync::Mutex::new(rx),
    })
}

/// Copies the contents of `from` into `to`, recursively.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for e in std::fs::read_dir(from).expect("read seed dir") {
        let e = e.expect("seed entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), &dst).expect("copy seed file");
        }
    }
}

/// Last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// How to build a cluster.
#[derive(Clone, Debug)]
pub struct Builder {
    nodes: usize,
    replication: u32,
    parity: &'static str,
    stripe: Option<u32>,
    chunk_size: u64,
    heartbeat_ms: u64,
    dead_after: u32,
    secret: Option<String>,
    attach: bool,
    /// `--reserve` for every node (free space they must keep).
    reserve: Option<String>,
    /// `--domain` of node i is `domains[i % len]` when set.
    domains: Vec<String>,
    /// The last `spares` nodes start with `--spare`.
    spares: usize,
    /// `coord --ha`.
    ha: bool,
    /// `--http 127.0.0.1:0` on the coordinator and every node.
    http: bool,
    /// `--reserve` for one node, overriding `reserve`.
    reserve_for: Vec<(usize, String)>,
    /// `coord --delete-grace` and `--orphan-grace`: short by default so
    /// tests see deletes promptly; safety tests set them as they need.
    delete_grace: String,
    orphan_grace: String,
    /// Extra coordinator arguments.
    coord_args: Vec<String>,
    /// A directory whose contents (`coord/`, `node-n0/`, ...) are copied
    /// into the cluster's directory before anything starts.
    seed: Option<PathBuf>,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            nodes: 3,
            replication: 2,
            parity: "none",
            stripe: None,
            chunk_size: 64 * 1024,
            heartbeat_ms: 200,
            dead_after: 3,
            secret: None,
            attach: false,
            reserve: None,
            domains: Vec::new(),
            spares: 0,
            ha: false,
            http: false,
            reserve_for: Vec::new(),
            delete_grace: "0s".into(),
            orphan_grace: "1s".into(),
            coord_args: Vec::new(),
            seed: None,
        }
    }
}

impl Builder {
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    pub fn replication(mut self, r: u32) -> Self {
        self.replication = r;
        self
    }
    /// Node i gets `--domain rack{(i mod n) + 1}`.
    pub fn domains(mut self, n: usize) -> Self {
        self.domains = (1..=n).map(|d| format!("rack{d}")).collect();
        self
    }
    /// The last `n` nodes are hot spares.
    pub fn spares(mut self, n: usize) -> Self {
        self.spares = n;
        self
    }
    /// `coord --ha`.
    pub fn ha(mut self) -> Self {
        self.ha = true;
        self
    }
    /// `"none"`, `"xor"`, `"rs:K+M"`, `"lrc:K+L+G"`.
    pub fn parity(mut self, p: &'static str) -> Self {
        self.parity = p;
        self
    }
    pub fn stripe(mut self, k: u32) -> Self {
        self.stripe = Some(k);
        self
    }
    pub fn chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes;
        self
    }
    pub fn heartbeat_ms(mut self, ms: u64) -> Self {
        self.heartbeat_ms = ms;
        self
    }
    pub fn dead_after(mut self, n: u32) -> Self {
        self.dead_after = n;
        self
    }
    pub fn delete_grace(mut self, d: &str) -> Self {
        self.delete_grace = d.into();
        self
    }
    pub fn orphan_grace(mut self, d: &str) -> Self {
        self.orphan_grace = d.into();
        self
    }
    pub fn coord_arg(mut self, a: &str) -> Self {
        self.coord_args.push(a.into());
        self
    }
    /// Attach mode: nodes start without `--coord` and the coordinator is
    /// given their addresses with `--nodes`; restarted nodes keep their port.
    pub fn attach(mut self) -> Self {
        self.attach = true;
        self
    }
    /// Every node keeps this much free (`--reserve`), e.g. "1PiB" to make
    /// every disk "full".
    pub fn node_reserve_for(mut self, i: usize, r: &str) -> Self {
        self.reserve_for.push((i, r.to_string()));
        self
    }
    pub fn node_reserve(mut self, r: &str) -> Self {
        self.reserve = Some(r.to_string());
        self
    }
    /// Dashboard and metrics on ephemeral ports (see `Cluster::http_url`).
    pub fn http(mut self) -> Self {
        self.http = true;
        self
    }
    pub fn secret(mut self, s: &str) -> Self {
        self.secret = Some(s.to_string());
        self
    }

    /// Starts the coordinator, then the nodes, and waits until every node is
    /// alive in `status --json`.
    /// Starts the cluster on a copy of the data directories in `dir`
    /// (e.g. one written by an older version).
    pub fn seed(mut self, dir: &Path) -> Self {
        self.seed = Some(dir.to_path_buf());
        self
    }

    pub fn start(self) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("dfs-sim-test-")
            .tempdir()
            .expect("temp dir");
        if let Some(seed) = &self.seed {
            copy_tree(seed, dir.path());
        }
        let secret_file = self.secret.as_ref().map(|s| {
            let p = dir.path().join("secret");
            std::fs::write(&p, s).expect("write secret");
            p
        });
        let mut c = Cluster {
            coord: None,
            coord_addr: String::new(),
            nodes: Vec::new(),
            node_addrs: vec![None; self.nodes],
            secret_file,
            dir,
            cfg: self.clone(),
            http_urls: Default::default(),
            coord_data: None,
            gateways: Vec::new(),
        };
        if self.attach {
            for i in 0..self.nodes {
                c.nodes.push(None);
                c.spawn_node(i);
            }
            c.spawn_coord("127.0.0.1:0");
        } else {
            c.spawn_coord("127.0.0.1:0");
            for i in 0..self.nodes {
                c.nodes.push(None);
                c.spawn_node(i);
            }
        }
        c.wait_nodes_alive(self.nodes);
        c
    }
}

/// A running cluster; every child is killed when it is dropped.
pub struct Cluster {
    coord: Option<Proc>,
    coord_addr: String,
    nodes: Vec<Option<Proc>>,
    /// Last address of each node (reused on restart in attach mode).
    node_addrs: Vec<Option<String>>,
    secret_file: Option<PathBuf>,
    dir: tempfile::TempDir,
    cfg: Builder,
    /// `--http` URLs announced so far (coordinator under `usize::MAX`).
    http_urls: std::collections::HashMap<usize, String>,
    /// Set by [`Cluster::restart_coord_with`].
    coord_data: Option<PathBuf>,
    /// S3 gateways started with [`Cluster::start_s3`].
    gateways: Vec<Proc>,
}

impl Cluster {
    /// Starts an S3 gateway (`dfs-sim s3`) for this cluster accepting the
    /// key pair; returns its `host:port`.
    pub fn start_s3(&mut self, access: &str, secret: &str, extra: &[&str]) -> String {
        let keys = self
            .dir
            .path()
            .join(format!("s3-{}.keys", self.gateways.len()));
        std::fs::write(&keys, format!("{access} {secret}\n")).expect("write keys");
        let mut args: Vec<String> = vec![
            "s3".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--coord".into(),
            self.coord_addr.clone(),
            "--credentials-file".into(),
            keys.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        if let Some(f) = &self.secret_file {
            args.extend(["--secret-file".into(), f.display().to_string()]);
        }
        let log = self
            .dir
            .path()
            .join(format!("s3-{}.log", self.gateways.len()));
        let p = match spawn(&args, &log, "S3 gateway listening on") {
            Ok(p) => p,
            Err(SpawnError::Exited(why)) => panic!("S3 gateway did not start:\n{why}"),
        };
        let addr = p.addr.clone();
        self.gateways.push(p);
        addr
    }

    /// Pid of the `i`th gateway started.
    pub fn s3_pid(&self, i: usize) -> u32 {
        self.gateways[i].pid()
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The temp dir holding data dirs, logs and scratch files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A fresh path for scratch files (inputs, outputs) inside the temp dir.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join("scratch");
        std::fs::create_dir_all(&d).expect("scratch dir");
        d.join(name)
    }

    pub fn coord_addr(&self) -> &str {
        &self.coord_addr
    }

    pub fn secret_file(&self) -> Option<&Path> {
        self.secret_file.as_deref()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_id(i: usize) -> String {
        format!("n{i}")
    }

    /// Index of the node with id `id` (as in `stat --json`).
    pub fn node_index(id: &str) -> usize {
        id.strip_prefix('n')
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("not a harness node id: {id}"))
    }

    pub fn node_data_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{}", Self::node_id(i)))
    }

    pub fn node_addr(&self, i: usize) -> String {
        self.nodes[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"))
            .addr
            .clone()
    }

    pub fn node_pid(&self, i: usize) -> u32 {
        self.nodes[i]
            .as_ref()
            .unwrap_or_else(|| panic!("node {i} is not running"))
            .pid()
    }

    pub fn coord_pid(&self) -> u32 {
        self.coord.as_ref().expect("coordinator not running").pid()
    }

    fn coord_log(&self) -> PathBuf {
        self.dir.path().join("coord.log")
    }

    fn node_log(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("node-{}.log", Self::node_id(i)))
    }

    fn spawn_coord(&mut self, listen: &str) {
        self.http_urls.remove(&usize::MAX);
        let mut args: Vec<String> = vec![
            "coord".into(),
            "--listen".into(),
            listen.into(),
            "--data".into(),
            self.coord_data().display().to_string(),
            "--replication".into(),
            self.cfg.replication.to_string(),
            "--parity".into(),
            self.cfg.parity.into(),
            "--chunk-size".into(),
            self.cfg.chunk_size.to_string(),
            "--heartbeat-ms".into(),
            self.cfg.heartbeat_ms.to_string(),
            "--dead-after".into(),
            self.cfg.dead_after.to_string(),
            "--delete-grace".into(),
            self.cfg.delete_grace.clone(),
            "--orphan-grace".into(),
            self.cfg.orphan_grace.clone(),
        ];
        args.extend(self.cfg.coord_args.iter().cloned());
        if let Some(k) = self.cfg.stripe {
            args.extend(["--stripe".into(), k.to_string()]);
        }
        if self.cfg.ha {
            args.push("--ha".into());
        }
        if self.cfg.attach {
            let addrs: Vec<String> = self.node_addrs.iter().flatten().cloned().collect();
            args.extend(["--nodes".into(), addrs.join(",")]);
        }
        if let Some(f) = &self.secret_file {
            args.extend(["--secret-file".into(), f.display().to_string()]);
        }
        if self.cfg.http {
            args.extend(["--http".into(), "127.0.0.1:0".into()]);
        }
        // Restarting on a fixed port may race the old socket's release:
        // retry a few times, waiting on the child rather than on a clock.
        let start = Instant::now();
        let p = loop {
            match spawn(&args, &self.coord_log(), "coordinator listening on") {
                Ok(p) => break p,
                Err(SpawnError::Exited(why)) => {
                    if start.elapsed() > DEADLINE {
                        panic!("coordinator would not start on {listen}:\n{why}");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        self.coord_addr = p.addr.clone();
        self.coord = Some(p);
    }

    fn spawn_node(&mut self, i: usize) {
        self.http_urls.remove(&i);
        // In attach mode the coordinator only knows the addresses it was
        // started with, so a restarted node comes back on the same one.
        let listen = match (&self.node_addrs[i], self.cfg.attach) {
            (Some(a), true) => a.clone(),
            _ => "127.0.0.1:0".into(),
        };
        let mut args: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            Self::node_id(i),
            "--listen".into(),
            listen.clone(),
            "--data".into(),
            self.node_data_dir(i).display().to_string(),
        ];
        if !self.cfg.attach {
            args.extend(["--coord".into(), self.coord_addr.clone()]);
        }
        if let Some(f) = &self.secret_file {
            args.extend(["--secret-file".into(), f.display().to_string()]);
        }
        let reserve = self
            .cfg
            .reserve_for
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, r)| r)
            .or(self.cfg.reserve.as_ref());
        if let Some(r) = reserve {
            args.extend(["--reserve".into(), r.clone()]);
        }
        if !self.cfg.domains.is_empty() {
            let d = self.cfg.domains[i % self.cfg.domains.len()].clone();
            args.extend(["--domain".into(), d]);
        }
        // Nodes added later (`add_node`) are regular nodes.
        if i < self.cfg.nodes && i + self.cfg.spares >= self.cfg.nodes {
            args.push("--spare".into());
        }
        if self.cfg.http {
            args.extend(["--http".into(), "127.0.0.1:0".into()]);
        }
        let log = self.node_log(i);
        let start = Instant::now();
        let p = loop {
            match spawn(&args, &log, "node ") {
                Ok(p) => break p,
                Err(SpawnError::Exited(why)) => {
                    // Only a fixed port (attach-mode restart) is worth retrying.
                    if listen.ends_with(":0") || start.elapsed() > DEADLINE {
                        panic!("node {i} failed to start on {listen}:\n{why}");
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        self.node_addrs[i] = Some(p.addr.clone());
        self.nodes[i] = Some(p);
    }

    /// A GET against an `http://` URL: the status code and the body. A
    /// plain HTTP/1.1 exchange on a std socket, so the tests need no HTTP
    /// client crate.
    pub fn http_get(url: &str) -> (u16, String) {
        use std::io::Write;
        let rest = url.strip_prefix("http://").expect("http:// URL");
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let mut s = std::net::TcpStream::connect(host).expect("connect to the http server");
        s.set_read_timeout(Some(DEADLINE)).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read the http response");
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("an http response");
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("a status code");
        assert!(
            !head
                .to_ascii_lowercase()
                .contains("transfer-encoding: chunked"),
            "chunked responses are not handled by this helper"
        );
        (code, body.to_string())
    }

    /// The `http://ADDR` a process announced after its ready line (`--http`).
    fn announced_url(p: &mut Proc, cache: &mut Option<String>) -> String {
        if let Some(u) = cache {
            return u.clone();
        }
        let line = p
            .lines
            .lock()
            .unwrap()
            .recv_timeout(DEADLINE)
            .expect("no --http line after the ready line");
        let url = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .map(|a| format!("http://{a}"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        *cache = Some(url.clone());
        url
    }

    /// The coordinator's dashboard, e.g. `http://127.0.0.1:34567`.
    pub fn http_url(&mut self) -> String {
        let mut cache = self.http_urls.remove(&usize::MAX);
        let p = self.coord.as_mut().expect("coordinator not running");
        let u = Self::announced_url(p, &mut cache);
        self.http_urls.insert(usize::MAX, u.clone());
        u
    }

    /// Node `i`'s metrics server, e.g. `http://127.0.0.1:34568`.
    pub fn node_http_url(&mut self, i: usize) -> String {
        let mut cache = self.http_urls.remove(&i);
        let p = self.nodes[i].as_mut().expect("node not running");
        let u = Self::announced_url(p, &mut cache);
        self.http_urls.insert(i, u.clone());
        u
    }

    /// A client command with `DFS_COORD` set to this cluster (and no secret
    /// from the environment).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env("DFS_COORD", &self.coord_addr)
            .env_remove("DFS_SECRET")
            .env_remove("DFS_KEY")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .current_dir(self.dir.path());
        c
    }

    /// Runs a client command; passes the cluster's secret file, if any.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Output {
        let mut c = self.cmd();
        c.args(args.iter().map(|a| a.as_ref()));
        if let Some(f) = &self.secret_file {
            c.arg("--secret-file").arg(f);
        }
        c.output().expect("run dfs-sim client")
    }

    /// Like [`Cluster::run`], for commands that wait on the cluster (`scrub
    /// --wait`, `drain --wait`): kills the client and panics if it has not
    /// exited within `timeout`.
    pub fn run_timeout<S: AsRef<str>>(&self, args: &[S], timeout: Duration) -> Output {
        let mut c = self.cmd();
        c.args(args.iter().map(|a| a.as_ref()));
        if let Some(f) = &self.secret_file {
            c.arg("--secret-file").arg(f);
        }
        let child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run dfs-sim client");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(timeout) {
            Ok(o) => o.expect("wait for dfs-sim client"),
            Err(_) => {
                let _ = Command::new("kill")
                    .arg("-KILL")
                    .arg(pid.to_string())
                    .status();
                let what: Vec<&str> = args.iter().map(|a| a.as_ref()).collect();
                panic!(
                    "`dfs-sim {}` did not finish within {timeout:?}",
                    what.join(" ")
                );
            }
        }
    }

    /// Writes `data` to a scratch file and puts it as `name`.
    pub fn put_bytes(&self, name: &str, data: &[u8]) -> Output {
        let path = self.scratch(&format!("in-{}", sanitize(name)));
        std::fs::write(&path, data).expect("write input");
        self.run(&["put", path.to_str().unwrap(), "--name", name])
    }

    /// `put` that must succeed.
    #[track_caller]
    pub fn put_ok(&self, name: &str, data: &[u8]) -> String {
        ok(self.put_bytes(name, data), &format!("put {name}"))
    }

    /// Gets `name` into a scratch file; returns the command output and the
    /// bytes (None if no output file appeared).
    pub fn get_bytes(&self, name: &str) -> (Output, Option<Vec<u8>>) {
        let path = self.scratch(&format!("out-{}-{}", sanitize(name), unique()));
        let o = self.run(&["get", name, "--out", path.to_str().unwrap()]);
        let data = std::fs::read(&path).ok();
        let _ = std::fs::remove_file(&path);
        (o, data)
    }

    /// `get` that must succeed and return exactly `want`; returns stdout.
    #[track_caller]
    /// `get_exact` with extra client arguments (e.g. `--key-file F`).
    pub fn get_exact_with(&self, name: &str, want: &[u8], extra: &[&str]) {
        let path = self.scratch(&format!("out-{}-{}", sanitize(name), unique()));
        let mut args = vec!["get", name, "--out", path.to_str().unwrap()];
        args.extend_from_slice(extra);
        ok(self.run(&args), &format!("get {name}"));
        let data = std::fs::read(&path).expect("get wrote no file");
        let _ = std::fs::remove_file(&path);
        assert_same_bytes(&data, want, &format!("get {name}"));
    }

    pub fn get_exact(&self, name: &str, want: &[u8]) -> String {
        let (o, data) = self.get_bytes(name);
        let out = ok(o, &format!("get {name}"));
        let data = data.unwrap_or_else(|| panic!("get {name} succeeded but wrote no file"));
        assert_same_bytes(&data, want, &format!("get {name}"));
        out
    }

    /// `status --json`, or None if the coordinator did not answer.
    pub fn status(&self) -> Option<serde_json::Value> {
        let o = self.run(&["status", "--json"]);
        if !o.status.success() {
            return None;
        }
        serde_json::from_slice(&o.stdout).ok()
    }

    /// State of node `i` (`alive`, `suspect`, `dead`) per `status --json`.
    pub fn node_state(&self, i: usize) -> Option<String> {
        let s = self.status()?;
        let id = Self::node_id(i);
        s["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == id.as_str())
            .and_then(|n| n["state"].as_str())
            .map(str::to_string)
    }

    /// Waits until at least `n` nodes are `alive`.
    pub fn wait_nodes_alive(&self, n: usize) {
        wait_until(DEADLINE, &format!("{n} nodes alive in status"), || {
            self.status().is_some_and(|s| {
                s["nodes"]
                    .as_array()
                    .is_some_and(|a| a.iter().filter(|x| x["state"] == "alive").count() >= n)
            })
        });
    }

    /// Waits until node `i` shows `state` in `status --json`.
    pub fn wait_node_state(&self, i: usize, state: &str) {
        wait_until(
            DEADLINE,
            &format!("node {} to be {state}", Self::node_id(i)),
            || self.node_state(i).as_deref() == Some(state),
        );
    }

    /// `stat NAME --json`.
    #[track_caller]
    pub fn stat(&self, name: &str) -> serde_json::Value {
        let out = ok(self.run(&["stat", name, "--json"]), &format!("stat {name}"));
        serde_json::from_str(&out).expect("stat --json is JSON")
    }

    /// Names from `ls --json`.
    #[track_caller]
    pub fn ls(&self) -> Vec<String> {
        let out = ok(self.run(&["ls", "--json"]), "ls --json");
        let v: serde_json::Value = serde_json::from_str(&out).expect("ls --json is JSON");
        v.as_array()
            .expect("ls --json is an array")
            .iter()
            .map(|f| f["name"].as_str().expect("name").to_string())
            .collect()
    }

    pub fn node_running(&mut self, i: usize) -> bool {
        self.nodes[i].as_mut().is_some_and(Proc::running)
    }

    pub fn coord_running(&mut self) -> bool {
        self.coord.as_mut().is_some_and(Proc::running)
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill_node(&mut self, i: usize) {
        let mut p = self.nodes[i].take().expect("node already down");
        p.kill();
    }

    /// SIGTERM node `i` and wait for it to exit on its own.
    pub fn stop_node(&mut self, i: usize) {
        let mut p = self.nodes[i].take().expect("node already down");
        signal(p.pid(), "TERM");
        wait_until(DEADLINE, "node to exit after SIGTERM", || !p.running());
    }

    /// Starts a new, empty node (the next index); returns its index.
    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        self.nodes.push(None);
        self.node_addrs.push(None);
        self.spawn_node(i);
        i
    }

    /// Starts node `i` again: same id and data dir, new port.
    pub fn restart_node(&mut self, i: usize) {
        assert!(self.nodes[i].is_none(), "node {i} is still running");
        self.spawn_node(i);
    }

    /// SIGKILL the coordinator and reap it.
    pub fn kill_coord(&mut self) {
        let mut p = self.coord.take().expect("coordinator already down");
        p.kill();
    }

    /// The coordinator's data directory (see [`Cluster::restart_coord_with`]).
    pub fn coord_data(&self) -> PathBuf {
        self.coord_data
            .clone()
            .unwrap_or_else(|| self.dir.path().join("coord"))
    }

    /// Restarts the coordinator on another data dir (`None`: the usual one)
    /// with extra arguments for this start only.
    pub fn restart_coord_with(&mut self, data: Option<&Path>, extra: &[&str]) {
        assert!(self.coord.is_none(), "coordinator is still running");
        self.coord_data = data.map(Path::to_path_buf);
        let saved = self.cfg.coord_args.clone();
        self.cfg
            .coord_args
            .extend(extra.iter().map(|s| s.to_string()));
        let addr = self.coord_addr.clone();
        self.spawn_coord(&addr);
        self.cfg.coord_args = saved;
    }

    /// Starts the coordinator again on the same data dir and address, so
    /// nodes (which keep redialling) register with it again.
    pub fn restart_coord(&mut self) {
        assert!(self.coord.is_none(), "coordinator is still running");
        let addr = self.coord_addr.clone();
        self.spawn_coord(&addr);
        assert_eq!(self.coord_addr, addr, "coordinator came back elsewhere");
    }

    /// Paths of every chunk file stored by node `i`.
    pub fn chunk_files(&self, i: usize) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let root = self.node_data_dir(i).join("chunks");
        let Ok(subs) = std::fs::read_dir(&root) else {
            return files;
        };
        for sub in subs.flatten() {
            if let Ok(entries) = std::fs::read_dir(sub.path()) {
                for e in entries.flatten() {
                    if e.path().extension().is_some_and(|x| x == "chunk") {
                        files.push(e.path());
                    }
                }
            }
        }
        files.sort();
        files
    }

    /// Path of chunk `id_hex` on node `i` (which need not exist).
    pub fn chunk_path(&self, i: usize, id_hex: &str) -> PathBuf {
        self.node_data_dir(i)
            .join("chunks")
            .join(&id_hex[..2])
            .join(format!("{id_hex}.chunk"))
    }

    /// Prints the tail of every log; called on panic.
    pub fn dump_logs(&self) {
        let mut logs = vec![("coordinator".to_string(), self.coord_log())];
        for i in 0..self.nodes.len() {
            logs.push((format!("node {}", Self::node_id(i)), self.node_log(i)));
        }
        for i in 0..self.gateways.len() {
            logs.push((
                format!("S3 gateway {i}"),
                self.dir.path().join(format!("s3-{i}.log")),
            ));
        }
        for (who, path) in logs {
            eprintln!(
                "===== last lines of {who} log ({}) =====\n{}",
                path.display(),
                tail(&path, 40)
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for p in self.gateways.iter_mut() {
            p.kill();
        }
        for p in self.nodes.iter_mut().flatten() {
            p.kill();
        }
        if let Some(p) = self.coord.as_mut() {
            p.kill();
        }
    }
}

/// Chunk `data[pos]` of stripe `stripe` (or its first parity if `pos` is
/// None) from a `stat --json` value.
pub fn chunk_of(stat: &serde_json::Value, stripe: usize, pos: Option<usize>) -> &serde_json::Value {
    let s = &stat["stripes"][stripe];
    match pos {
        Some(p) => &s["data"][p],
        None => &s["parity"][0],
    }
}

/// Node ids holding a chunk (from its `locations`).
pub fn holders(chunk: &serde_json::Value) -> Vec<String> {
    chunk["locations"]
        .as_array()
        .expect("locations")
        .iter()
        .map(|l| l["node"].as_str().expect("node").to_string())
        .collect()
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Flips one byte `from_end` bytes before the end of the stored bytes of
/// the chunk file `path` (owner tag records after them are left alone).
pub fn flip_byte_near_end(path: &Path, from_end: u64) {
    let mut data = std::fs::read(path).expect("read chunk file");
    // The end of the stored bytes: owner tag records may follow them.
    let hl = u32::from_le_bytes(data[8..12].try_into().expect("chunk header")) as usize;
    let header: protocol::ChunkHeader =
        protocol::connection::decode(&data[12..12 + hl]).expect("chunk header");
    let len = (12 + hl) as u64 + header.stored_len;
    assert!(len > from_end, "{} too short to corrupt", path.display());
    let at = (len - 1 - from_end) as usize;
    data[at] ^= 0xA5;
    std::fs::write(path, &data).expect("write corrupted chunk file");
}

/// Reads a whole file, or None.
pub fn read_opt(path: &Path) -> Option<Vec<u8>> {
    let mut f = File::open(path).ok()?;
    let mut v = Vec::new();
    f.read_to_end(&mut v).ok()?;
    Some(v)
}

/// Every `(node id, chunk id hex)` the catalog places, over all files (data
/// and parity), from `ls` and `stat --json`.
pub fn catalog_placement(c: &Cluster) -> std::collections::BTreeSet<(String, String)> {
    let mut set = std::collections::BTreeSet::new();
    for name in c.ls() {
        let st = c.stat(&name);
        for s in st["stripes"].as_array().expect("stripes") {
            let chunks = s["data"]
                .as_array()
                .expect("data")
                .iter()
                .chain(s["parity"].as_array().into_iter().flatten());
            for ch in chunks {
                let id = ch["id"].as_str().expect("id").to_string();
                for n in holders(ch) {
                    set.insert((n, id.clone()));
                }
            }
        }
    }
    set
}

/// Every `(node id, chunk id hex)` found on the nodes' disks.
pub fn disk_placement(c: &Cluster) -> std::collections::BTreeSet<(String, String)> {
    let mut set = std::collections::BTreeSet::new();
    for i in 0..c.node_count() {
        for f in c.chunk_files(i) {
            let id = f
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("chunk file name")
                .to_string();
            set.insert((Cluster::node_id(i), id));
        }
    }
    set
}

/// Waits until every copy the catalog places is on disk (garbage allowed).
pub fn wait_disks_hold_catalog(c: &Cluster) {
    let start = Instant::now();
    loop {
        let want = catalog_placement(c);
        let have = disk_placement(c);
        let missing: Vec<_> = want.difference(&have).collect();
        if missing.is_empty() {
            return;
        }
        if start.elapsed() > DEADLINE {
            panic!("copies the catalog places are missing on disk: {missing:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the disks hold exactly what the catalog places: no chunk
/// missing, no garbage left.
pub fn wait_disks_match_catalog(c: &Cluster) {
    let start = Instant::now();
    loop {
        let want = catalog_placement(c);
        let have = disk_placement(c);
        if want == have {
            return;
        }
        let missing: Vec<_> = want.difference(&have).collect();
        let garbage: Vec<_> = have.difference(&want).collect();
        if start.elapsed() > DEADLINE {
            // Where the missing copies went, if anywhere.
            let aside: Vec<String> = missing
                .iter()
                .flat_map(|(n, id)| {
                    let d = c.node_data_dir(Cluster::node_index(n));
                    ["orphans", "quarantine"]
                        .into_iter()
                        .filter(move |sub| d.join(sub).join(format!("{id}.chunk")).exists())
                        .map(move |sub| format!("{n}/{sub}/{id}"))
                })
                .collect();
            c.dump_logs();
            panic!("disks never matched the catalog: missing on disk: {missing:?} (set aside: {aside:?}); garbage on disk: {garbage:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A process started beside a cluster rather than as one of its members
/// (a second node claiming an id, a second coordinator): its log is a file
/// of its own, and it is killed when dropped.
pub struct Extra {
    proc: Proc,
    pub log: PathBuf,
}

impl Extra {
    pub fn addr(&self) -> &str {
        &self.proc.addr
    }
    pub fn running(&mut self) -> bool {
        self.proc.running()
    }
    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Extra {
    fn drop(&mut self) {
        self.proc.kill();
    }
}

impl Cluster {
    /// Everything the coordinator logged so far (all its runs).
    pub fn coord_log_text(&self) -> String {
        std::fs::read_to_string(self.coord_log()).unwrap_or_default()
    }

    /// Everything node `i` logged so far (all its runs).
    pub fn node_log_text(&self, i: usize) -> String {
        std::fs::read_to_string(self.node_log(i)).unwrap_or_default()
    }

    /// Starts a node that is not one of the cluster's own: `--id id`, data
    /// in `data` (created if missing), registering with this coordinator;
    /// returns once it announced its address.
    pub fn spawn_extra_node(&self, id: &str, data: &Path) -> Extra {
        let log = self
            .dir
            .path()
            .join(format!("extra-node-{id}-{}.log", unique()));
        let mut args: Vec<String> = vec![
            "node".into(),
            "--id".into(),
            id.into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data".into(),
            data.display().to_string(),
            "--coord".into(),
            self.coord_addr.clone(),
        ];
        if let Some(f) = &self.secret_file {
            args.extend(["--secret-file".into(), f.display().to_string()]);
        }
        match spawn(&args, &log, "node ") {
            Ok(proc) => Extra { proc, log },
            Err(SpawnError::Exited(why)) => panic!("extra node {id} did not start:\n{why}"),
        }
    }
}
