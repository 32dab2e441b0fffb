//! `dfs-sim mount DIR` and `dfs-sim umount DIR`: the cluster as a folder
//! (FUSE, the `mount` crate).

use super::{announce, ClientArgs};
use crate::format::{parse_duration, parse_size};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The (empty) folder to mount the cluster on.
    pub dir: PathBuf,
    #[command(flatten)]
    pub client: ClientArgs,
    /// Show only the names under this prefix (`photos/`).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Refuse every change (EROFS).
    #[arg(long)]
    pub read_only: bool,
    /// Memory for verified chunks read from the cluster (the data cache).
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub cache_size: u64,
    /// How long listings and attributes are served from cache (0 for
    /// none); this mount's own changes are always seen at once.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub meta_ttl: Duration,
    /// How long an operation keeps trying an unreachable cluster before
    /// failing with EIO.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub retry_for: Duration,
    /// Where files being written are kept until committed (default: a new
    /// folder under the temporary directory).
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// Chunks a sequential reader prefetches.
    #[arg(long, default_value_t = 2)]
    pub readahead: usize,
    /// Stay in the foreground until unmounted or Ctrl-C (else the mount
    /// runs in the background once it is live).
    #[arg(long)]
    pub foreground: bool,
    /// Log file of a background mount.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct UmountArgs {
    /// The mounted folder.
    pub dir: PathBuf,
}

/// Whether `dir` is a mount point now.
fn mounted(dir: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(dir) else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

pub async fn run(a: Args) -> Result<()> {
    if !a.dir.is_dir() {
        bail!("{} is not a folder; create it first", a.dir.display());
    }
    if !a.prefix.is_empty() && !a.prefix.ends_with('/') {
        bail!("--prefix must end with '/' ({:?})", a.prefix);
    }
    if !a.foreground {
        return background(&a).await;
    }
    let spill = match &a.spill_dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("dfs-sim-mount-{}", std::process::id())),
    };
    let cfg = mount::Config {
        client: a.client.config()?,
        prefix: a.prefix.clone(),
        read_only: a.read_only,
        cache_size: a.cache_size,
        meta_ttl: a.meta_ttl,
        retry_for: a.retry_for,
        spill_dir: spill.clone(),
        readahead: a.readahead,
    };
    let dir = a.dir.clone();
    let coord = a.client.coord.clone();
    let res = tokio::task::spawn_blocking(move || {
        mount::run(cfg, &dir, || {
            announce(&format!(
                "mounted {} (coordinator {coord}); unmount with `dfs-sim umount {}` or Ctrl-C",
                dir.display(),
                dir.display()
            ))
        })
    })
    .await?;
    if a.spill_dir.is_none() {
        let _ = std::fs::remove_dir_all(&spill);
    }
    Ok(res?)
}

/// Starts `dfs-sim mount --foreground` as a session of its own and waits
/// until the folder is mounted (or the child fails).
async fn background(a: &Args) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let log = a
        .log
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("dfs-sim-mount.log"));
    let out = std::fs::File::create(&log).with_context(|| format!("log {}", log.display()))?;
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    args.push("--foreground".into());
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    // SAFETY: setsid is async-signal-safe; the child then leaves our
    // terminal's process group, so a Ctrl-C here does not unmount it.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if mounted(&a.dir) {
            announce(&format!(
                "mounted {} (pid {}, log {}); unmount with `dfs-sim umount {}`",
                a.dir.display(),
                child.id(),
                log.display(),
                a.dir.display()
            ));
            return Ok(());
        }
        if let Some(st) = child.try_wait()? {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("mount failed ({st}): {}", text.trim());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{} was not mounted within 60 s", a.dir.display());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn umount(a: UmountArgs) -> Result<()> {
    let out = std::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&a.dir)
        .output()
        .context("cannot run fusermount3 (Debian package fuse3)")?;
    if !out.status.success() {
        bail!(
            "cannot unmount {}: {}",
            a.dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
