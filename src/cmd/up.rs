//! `dfs-sim up`: a whole local cluster (a coordinator and N nodes) as child
//! processes, in the foreground, until Ctrl-C.

use super::cluster_state::{
    last_log_line, pid_runs, stop_pids, ClusterState, ProcState, DEFAULT_DIR,
};
use super::shutdown_signal;
use anyhow::{bail, Context, Result};
use localcluster::{spawn, Started};
use std::fs::File;
#[cfg(feature = "s3")]
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// How long the nodes may take to be seen alive by the coordinator.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a process may take to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Number of nodes (ids n1..nN).
    #[arg(long, default_value_t = 4)]
    pub nodes: u32,
    /// Copies of each data chunk, on distinct nodes.
    #[arg(long, default_value_t = 2)]
    pub replication: u32,
    /// Erasure code of new files: none, xor, rs:K+M or lrc:K+L+G.
    #[arg(long, default_value = "xor", value_parser = super::coord::parse_scheme)]
    pub parity: protocol::Scheme,
    /// Spread the nodes over this many failure domains (rack1..rackD, node
    /// i in rack ((i-1) mod D)+1) [default: each node its own domain].
    #[arg(long, value_name = "D")]
    pub domains: Option<u32>,
    /// The last S of the nodes are hot spares.
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub spares: u32,
    /// Refuse puts whose stripes would not survive losing one domain.
    #[arg(long)]
    pub ha: bool,
    /// Where the cluster keeps its data, logs and cluster.json.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_DIR)]
    pub data: PathBuf,
    /// Chunk size (e.g. 64MiB, 1MiB, 4096) [default: the coordinator's].
    #[arg(long)]
    pub chunk_size: Option<String>,
    /// Heartbeat interval of nodes, in milliseconds [default: the
    /// coordinator's].
    #[arg(long)]
    pub heartbeat_ms: Option<u64>,
    /// Coordinator on port P, nodes on P+1..P+N; 0 lets the OS pick every
    /// port [default: coordinator on 4000 if free, else any; nodes on any].
    #[arg(long, value_name = "P")]
    pub base_port: Option<u16>,
    /// Coordinators: 1, or a group of 3 or 5 (c1..cN, the catalog
    /// replicated on Raft; clients and nodes are given every member).
    #[arg(long, default_value_t = 1)]
    pub coordinators: u32,
    /// Do not start an S3 gateway (by default one listens on 127.0.0.1:9000
    /// if free, else any port; with --base-port P on P+N+1).
    #[arg(long)]
    pub no_s3: bool,
}

/// The S3 gateway `up` runs next to the cluster.
#[cfg_attr(not(feature = "s3"), allow(dead_code))]
struct S3Info {
    addr: String,
    access: String,
    secret: String,
}

pub async fn run(a: Args) -> Result<()> {
    let t0 = Instant::now();
    if a.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    if a.replication == 0 {
        bail!("--replication must be at least 1");
    }
    if a.domains == Some(0) {
        bail!("--domains must be at least 1");
    }
    if a.coordinators != 1
        && (a.coordinators < 3 || a.coordinators.is_multiple_of(2) || a.coordinators > 7)
    {
        bail!("--coordinators must be 1, or an odd number from 3 to 7 (a group needs a majority)");
    }
    if a.spares >= a.nodes {
        bail!(
            "--spares {} leaves no regular node (--nodes is {}); spares are counted among the nodes",
            a.spares,
            a.nodes
        );
    }
    if a.replication > a.nodes {
        bail!(
            "--replication {} needs at least {} nodes (--nodes is {})",
            a.replication,
            a.replication,
            a.nodes
        );
    }
    if let Some(p) = a.base_port {
        if p != 0 && u32::from(p) + a.nodes > u32::from(u16::MAX) {
            bail!("--base-port {p} leaves no room for {} nodes", a.nodes);
        }
    }
    let dir = prepare_dir(&a.data)?;
    // Held for as long as we run: a second `up` on DIR finds it taken.
    let _lock = lock_dir(&dir)?;
    refuse_leftovers(&dir)?;
    let log_dir = dir.join("logs");
    std::fs::create_dir_all(&log_dir)
        .with_context(|| format!("cannot create {}", log_dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the dfs-sim executable")?;
    let exe = exe.to_string_lossy().into_owned();

    let (exit_tx, mut exit_rx) = mpsc::unbounded_channel();
    let mut pids = Vec::new();
    let res = start_all(&a, &dir, &log_dir, &exe, &exit_tx, &mut pids).await;
    let state = match res {
        Ok(s) => s,
        Err(e) => {
            stop_pids(&pids, STOP_GRACE).await;
            return Err(e);
        }
    };
    if let Some(url) = localcluster::flag(&state.coord.argv, "--http-data-url") {
        if let Err(e) = start_data(&log_dir, &exe, &state.coord_list(), url, &mut pids).await {
            stop_pids(&pids, STOP_GRACE).await;
            return Err(e);
        }
    }
    // A build without the gateway (the demo's) runs the cluster without it.
    let s3 = if a.no_s3 || !cfg!(feature = "s3") {
        None
    } else {
        match start_s3(&a, &dir, &log_dir, &exe, &state.coord_list(), &mut pids).await {
            Ok(s) => Some(s),
            Err(e) => {
                stop_pids(&pids, STOP_GRACE).await;
                return Err(e);
            }
        }
    };
    let elapsed = t0.elapsed();
    let data_flag = if a.data == Path::new(DEFAULT_DIR) {
        String::new()
    } else {
        format!(" --data {}", a.data.display())
    };
    print_summary(&a, &dir, &state, elapsed, &data_flag);
    if let Some(s3) = &s3 {
        print_s3(s3);
    }

    // Foreground: report children that exit, until Ctrl-C or SIGTERM.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            Some((id, pid, status)) = exit_rx.recv() => child_exited(&dir, &id, pid, status, &data_flag),
        }
    }
    shutdown(&dir, &pids).await
}

/// The dashboard's admin token, `DIR/admin.token` (made on first use,
/// readable only by the owner).
fn admin_token(dir: &Path) -> Result<std::path::PathBuf> {
    let path = dir.join("admin.token");
    if !path.exists() {
        let token: String = (0..16)
            .map(|_| format!("{:02x}", rand::random::<u8>()))
            .collect();
        let tmp = dir.join("admin.token.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new();
            f.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut f, 0o600);
            let mut f = f
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(token.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
    }
    Ok(path)
}

/// Starts `dfs-sim data`, the dashboard's data endpoint, where the
/// coordinator's `--http-data-url` points. Like the gateway it is not in
/// cluster.json; `up` stops it on exit.
async fn start_data(
    log_dir: &Path,
    exe: &str,
    coord: &str,
    url: &str,
    pids: &mut Vec<u32>,
) -> Result<()> {
    let listen = url.trim_start_matches("http://").to_string();
    let argv = vec![
        exe.into(),
        "data".into(),
        "--listen".into(),
        listen,
        "--coord".into(),
        coord.into(),
    ];
    let started = spawn_ready("data", argv, &log_dir.join("data.log"), pids).await?;
    let mut child = started.child;
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => format!("cannot wait: {e}"),
        };
        super::announce(&format!(
            "dashboard data endpoint exited ({status}); its log is in the logs directory"
        ));
    });
    Ok(())
}

/// Starts `dfs-sim s3` for the cluster with the keys kept in `DIR/s3.keys`
/// (made on first use, readable only by the owner). The gateway is not in
/// cluster.json: `kill`/`start` manage nodes; `up` stops it on exit.
#[cfg(feature = "s3")]
async fn start_s3(
    a: &Args,
    dir: &Path,
    log_dir: &Path,
    exe: &str,
    coord: &str,
    pids: &mut Vec<u32>,
) -> Result<S3Info> {
    let keys = dir.join("s3.keys");
    if !keys.exists() {
        let hex = |n: usize| -> String {
            (0..n)
                .map(|_| format!("{:02x}", rand::random::<u8>()))
                .collect()
        };
        let line = format!("DFS{} {}\n", hex(8).to_uppercase(), hex(20));
        let tmp = dir.join("s3.keys.tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(line.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &keys)?;
    }
    let creds = super::s3::credentials(Some(&keys))?;
    let (access, secret) = creds.0[0].clone();
    let (listen, fallback) = match a.base_port {
        Some(0) => ("127.0.0.1:0".to_string(), false),
        Some(p) => (format!("127.0.0.1:{}", u32::from(p) + a.nodes + 1), false),
        None => match std::net::TcpListener::bind("127.0.0.1:9000") {
            Ok(l) => {
                drop(l);
                ("127.0.0.1:9000".to_string(), true)
            }
            Err(_) => ("127.0.0.1:0".to_string(), false),
        },
    };
    let argv = |listen: &str| -> Vec<String> {
        vec![
            exe.into(),
            "s3".into(),
            "--listen".into(),
            listen.into(),
            "--coord".into(),
            coord.into(),
            "--credentials-file".into(),
            keys.to_string_lossy().into_owned(),
        ]
    };
    let log = log_dir.join("s3.log");
    let started = match spawn_ready("s3", argv(&listen), &log, pids).await {
        Ok(s) => s,
        Err(_) if fallback => spawn_ready("s3", argv("127.0.0.1:0"), &log, pids).await?,
        Err(e) => return Err(e),
    };
    let addr = started.proc.addr.clone();
    let mut child = started.child;
    tokio::spawn(async move {
        let status = match child.wait().await {
            Ok(s) => s.to_string(),
            Err(e) => format!("cannot wait: {e}"),
        };
        super::announce(&format!(
            "S3 gateway exited ({status}); its log is in the logs directory"
        ));
    });
    Ok(S3Info {
        addr,
        access,
        secret,
    })
}

/// A build without the gateway never starts one (see `run`).
#[cfg(not(feature = "s3"))]
async fn start_s3(
    _a: &Args,
    _dir: &Path,
    _log_dir: &Path,
    _exe: &str,
    _coord: &str,
    _pids: &mut Vec<u32>,
) -> Result<S3Info> {
    bail!("this dfs-sim was built without the S3 gateway")
}

/// How to reach the gateway from aws cli, rclone and SDKs.
fn print_s3(s3: &S3Info) {
    let S3Info {
        addr,
        access,
        secret,
    } = s3;
    super::announce(&format!(
        "\nS3 endpoint: http://{addr}  access key: {access}  secret key: {secret}\n\
         export AWS_ACCESS_KEY_ID={access} AWS_SECRET_ACCESS_KEY={secret} AWS_DEFAULT_REGION=us-east-1\n\
         aws --endpoint-url http://{addr} s3 mb s3://photos\n\
         rclone config create dfs s3 provider Other endpoint http://{addr} access_key_id {access} secret_access_key {secret}"
    ));
}

/// Creates DIR and returns it absolute, so recorded command lines work from
/// any directory.
fn prepare_dir(data: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    data.canonicalize()
        .with_context(|| format!("cannot resolve {}", data.display()))
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("up.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => {
            let who = ClusterState::load(dir)
                .map(|s| {
                    format!(
                        " (dfs-sim up pid {}, coordinator at {})",
                        s.up_pid, s.coord.addr
                    )
                })
                .unwrap_or_default();
            bail!(
                "a cluster is already running in {}{who}; stop it first (Ctrl-C in its terminal)",
                dir.display()
            )
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Processes of an earlier `up` that was killed may still hold the ports
/// and data directories.
fn refuse_leftovers(dir: &Path) -> Result<()> {
    let Ok(old) = ClusterState::load(dir) else {
        return Ok(());
    };
    let left: Vec<String> = old
        .procs()
        .filter(|p| p.is_running())
        .map(|p| format!("{} (pid {})", p.id, p.pid.unwrap_or_default()))
        .collect();
    if !left.is_empty() {
        bail!(
            "processes of an earlier cluster in {} are still running: {}; stop them first",
            dir.display(),
            left.join(", ")
        );
    }
    Ok(())
}

type ExitTx = mpsc::UnboundedSender<(String, u32, String)>;

async fn start_all(
    a: &Args,
    dir: &Path,
    log_dir: &Path,
    exe: &str,
    exit_tx: &ExitTx,
    pids: &mut Vec<u32>,
) -> Result<ClusterState> {
    // The coordinator.
    let (coord_listen, fallback) = match a.base_port {
        Some(p) => (format!("127.0.0.1:{p}"), false),
        None => match std::net::TcpListener::bind(client::config::DEFAULT_COORD) {
            Ok(l) => {
                drop(l);
                (client::config::DEFAULT_COORD.to_string(), true)
            }
            Err(_) => ("127.0.0.1:0".to_string(), false),
        },
    };
    // The dashboard: port 4080 when free (as the README says), else any.
    let http = match a.base_port {
        None => match std::net::TcpListener::bind("127.0.0.1:4080") {
            Ok(l) => l.local_addr()?,
            Err(_) => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
        },
        Some(_) => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?,
    }
    .to_string();
    let mut coord_flags: Vec<String> = vec![
        "--replication".into(),
        a.replication.to_string(),
        "--parity".into(),
        a.parity.to_string(),
    ];
    if a.ha {
        coord_flags.push("--ha".into());
    }
    if let Some(s) = &a.chunk_size {
        coord_flags.extend(["--chunk-size".into(), s.clone()]);
    }
    if let Some(ms) = a.heartbeat_ms {
        coord_flags.extend(["--heartbeat-ms".into(), ms.to_string()]);
    }
    // A build without the HTTP faces (the demo's) has no dashboard.
    if cfg!(feature = "http") {
        coord_flags.extend(["--http".into(), http.clone()]);
        // The page's files go through `dfs-sim data` (started once the
        // coordinator is up, see `start_data`), its actions need the token
        // kept in DIR/admin.token.
        let data = match a.base_port {
            None => std::net::TcpListener::bind("127.0.0.1:4081")
                .or_else(|_| std::net::TcpListener::bind("127.0.0.1:0"))?,
            Some(_) => std::net::TcpListener::bind("127.0.0.1:0")?,
        }
        .local_addr()?;
        coord_flags.extend([
            "--http-data-url".into(),
            format!("http://{data}"),
            "--http-admin-token-file".into(),
            admin_token(dir)?.to_string_lossy().into_owned(),
        ]);
    }
    let mut start = localcluster::Starter {
        exe,
        dir,
        who: "up",
        pids,
    };
    let mut members = Vec::new();
    let coord = if a.coordinators > 1 {
        // A group: every member must know every address before any starts.
        let mut addrs = vec![match coord_listen.as_str() {
            "127.0.0.1:0" => free_addr()?,
            l => l.to_string(),
        }];
        for _ in 1..a.coordinators {
            addrs.push(free_addr()?);
        }
        let peers = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("c{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        // Only the first member serves the dashboard (one port).
        let first = start
            .coord_member("c1", &addrs[0], &peers, &coord_flags)
            .await?;
        let rest: Vec<String> = strip_http(&coord_flags);
        for (i, addr) in addrs.iter().enumerate().skip(1) {
            members.push(
                start
                    .coord_member(&format!("c{}", i + 1), addr, &peers, &rest)
                    .await?,
            );
        }
        first
    } else {
        match start.coord(&coord_listen, &coord_flags).await {
            Ok(s) => s,
            // Port 4000 was taken between our check and the coordinator's bind.
            Err(_) if fallback => start.coord("127.0.0.1:0", &coord_flags).await?,
            Err(e) => return Err(e.into()),
        }
    };
    let coord_addr = std::iter::once(&coord)
        .chain(members.iter())
        .map(|m| m.proc.addr.clone())
        .collect::<Vec<_>>()
        .join(",");

    // The nodes, all at once.
    let specs = (1..=a.nodes)
        .map(|i| {
            let mut extra = Vec::new();
            if let Some(d) = a.domains {
                extra.extend(["--domain".into(), format!("rack{}", (i - 1) % d + 1)]);
            }
            if i > a.nodes - a.spares {
                extra.push("--spare".into());
            }
            localcluster::NodeSpec {
                id: format!("n{i}"),
                listen: match a.base_port {
                    Some(p) if p != 0 => format!("127.0.0.1:{}", u32::from(p) + i),
                    _ => "127.0.0.1:0".to_string(),
                },
                coord: coord_addr.clone(),
                extra,
            }
        })
        .collect();
    let nodes = start.nodes(specs).await?;
    let state = start.record_group(&coord, &members, &nodes)?;

    // Wait until the coordinator has every node alive.
    let ids: Vec<&str> = state.nodes.iter().map(|n| n.id.as_str()).collect();
    let mut children: Vec<Started> = std::iter::once(coord).chain(members).chain(nodes).collect();
    let cred = super::client_credential(None, None)?;
    localcluster::wait_alive(
        &coord_addr,
        cred,
        &ids,
        &mut children,
        ALIVE_TIMEOUT,
        log_dir,
    )
    .await?;

    // From now on, only report exits.
    for Started { mut child, proc } in children {
        let tx = exit_tx.clone();
        let pid = proc.pid.unwrap_or_default();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(s) => s.to_string(),
                Err(e) => format!("cannot wait: {e}"),
            };
            let _ = tx.send((proc.id, pid, status));
        });
    }
    Ok(state)
}

/// A loopback address with a port free right now.
fn free_addr() -> Result<String> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .to_string())
}

/// The coordinator flags without the dashboard's (`--http` and the flags
/// that go with it), for the members other than the first.
fn strip_http(flags: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        if f.starts_with("--http") {
            it.next();
        } else {
            out.push(f.clone());
        }
    }
    out
}

async fn spawn_ready(
    id: &str,
    argv: Vec<String>,
    log: &Path,
    pids: &mut Vec<u32>,
) -> Result<Started> {
    Ok(spawn("up", id, argv, log, pids)?.ready().await?)
}

fn print_summary(a: &Args, dir: &Path, st: &ClusterState, took: Duration, data_flag: &str) {
    let mut out = String::new();
    out += &format!(
        "cluster up in {:.2} s: {} node{}, {} replica{} + {}{}{}\n",
        took.as_secs_f64(),
        st.nodes.len(),
        if st.nodes.len() == 1 { "" } else { "s" },
        a.replication,
        if a.replication == 1 { "" } else { "s" },
        a.parity,
        a.domains
            .map(|d| format!(", {d} domains"))
            .unwrap_or_default(),
        if a.spares > 0 {
            format!(", {} spare(s)", a.spares)
        } else {
            String::new()
        }
    );
    for p in st.procs() {
        let name = if p.id == "coord" {
            "coordinator"
        } else {
            &p.id
        };
        out += &format!(
            "  {name:<12} {:<22} pid {}\n",
            p.addr,
            p.pid.unwrap_or_default()
        );
    }
    if let Some(http) = localcluster::flag(&st.coord.argv, "--http") {
        out += &format!("dashboard: http://{http}/\n");
        if let Some(f) = localcluster::flag(&st.coord.argv, "--http-admin-token-file") {
            let token = std::fs::read_to_string(f).unwrap_or_default();
            out += &format!(
                "  actions (drain, scrub, ...): open http://{http}/?admin={} once (token in {f})\n",
                token.trim()
            );
        }
    }
    out += &format!("logs:  {}\n", st.log_dir.display());
    out += &format!("state: {}\n", ClusterState::path(dir).display());
    out += &format!("\nexport DFS_COORD={}\n\n", st.coord_list());
    out += &format!(
        "try `dfs-sim kill n1{data_flag}` (--hard to crash it) and `dfs-sim start n1{data_flag}`\n"
    );
    out += "Ctrl-C stops the cluster (its data is kept).";
    super::announce(&out);
}

/// A child ended. `kill` marks what it stops; anything else exited on its
/// own: say so once, record it, restart nothing.
fn child_exited(dir: &Path, id: &str, pid: u32, status: String, data_flag: &str) {
    let res = ClusterState::update(dir, |s| -> Result<_> {
        let p = if id == "coord" || s.coord.id == id {
            &mut s.coord
        } else if let Some(m) = s.members.iter_mut().find(|m| m.id == id) {
            m
        } else {
            s.node_mut(id)?
        };
        if p.pid != Some(pid) || p.state != ProcState::Running {
            return Ok(None);
        }
        p.state = ProcState::Exited;
        Ok(Some(p.log.clone()))
    });
    match res {
        Ok(None) => super::announce(&format!("{id} (pid {pid}) stopped (dfs-sim kill)")),
        Ok(Some(log)) => {
            let last = last_log_line(&log)
                .map(|l| format!("; last log line: {l}"))
                .unwrap_or_default();
            let hint = if id.starts_with('c') && id[1..].parse::<u32>().is_ok() {
                "a coordinator group member: the others go on while a majority runs".to_string()
            } else if id == "coord" {
                "the cluster has no coordinator now; Ctrl-C and `dfs-sim up` again".to_string()
            } else {
                format!("`dfs-sim start {id}{data_flag}` restarts it")
            };
            super::announce(&format!(
                "warning: {id} (pid {pid}) exited on its own ({status}); log {}{last}; {hint}",
                log.display()
            ));
        }
        Err(e) => tracing::warn!("{id} (pid {pid}) exited ({status}): {e:#}"),
    }
}

/// Stops the nodes (ours and those `start` launched), then the
/// coordinator, and records them stopped. Removes nothing.
async fn shutdown(dir: &Path, our_pids: &[u32]) -> Result<()> {
    super::announce("stopping the cluster...");
    let state = ClusterState::load(dir).ok();
    let mut nodes: Vec<u32> = Vec::new();
    let mut coord: Vec<u32> = Vec::new();
    match &state {
        Some(s) => {
            nodes.extend(
                s.nodes
                    .iter()
                    .filter(|p| p.is_running())
                    .filter_map(|p| p.pid),
            );
            coord.extend(
                std::iter::once(&s.coord)
                    .filter(|p| p.is_running())
                    .filter_map(|p| p.pid),
            );
        }
        None => nodes.extend(our_pids.iter().copied()),
    }
    let mut forced = stop_pids(&nodes, STOP_GRACE).await;
    forced.extend(stop_pids(&coord, STOP_GRACE).await);
    // Anything of ours the state file did not list (it should not happen).
    let rest: Vec<u32> = our_pids
        .iter()
        .copied()
        .filter(|p| !nodes.contains(p) && !coord.contains(p))
        .filter(|p| super::cluster_state::pid_alive(*p))
        .collect();
    forced.extend(stop_pids(&rest, STOP_GRACE).await);
    if state.is_some() {
        ClusterState::update(dir, |s| -> Result<_> {
            for p in std::iter::once(&mut s.coord).chain(s.nodes.iter_mut()) {
                if p.state == ProcState::Running && !p.pid.is_some_and(|pid| pid_runs(pid, &p.argv))
                {
                    p.state = ProcState::Stopped;
                }
            }
            Ok(())
        })?;
    }
    if forced.is_empty() {
        super::announce(&format!("cluster stopped; data kept in {}", dir.display()));
    } else {
        super::announce(&format!(
            "cluster stopped (pids {forced:?} needed SIGKILL); data kept in {}",
            dir.display()
        ));
    }
    Ok(())
}
