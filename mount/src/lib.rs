//! `dfs-sim mount`: the cluster as a folder ordinary programs use, over
//! FUSE (`fuser`, its pure-Rust mount: only `fusermount3` is needed at run
//! time).
//!
//! The mount is a client of the cluster like the S3 gateway: it talks to
//! the coordinator and the nodes only through `client`, never to their
//! internals. See `fs` for the file system, `remote` for retries and
//! timeouts, `chunks` for the data cache.

pub mod chunks;
pub mod error;
pub mod fs;
pub mod meta;
pub mod names;
pub mod remote;

pub use error::{Error, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a mount runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The cluster and the credential to use.
    pub client: client::ClientConfig,
    /// Catalog names below this prefix are the mount's files (`photos/`);
    /// empty for the whole namespace.
    pub prefix: String,
    /// Refuse every change (EROFS).
    pub read_only: bool,
    /// Bytes of verified chunks kept in memory (the data cache).
    pub cache_size: u64,
    /// How long listings and attributes may be served from cache.
    pub meta_ttl: Duration,
    /// How long an operation keeps trying an unreachable cluster before it
    /// fails with EIO.
    pub retry_for: Duration,
    /// Where files being written are spilled until they are committed.
    pub spill_dir: PathBuf,
    /// Chunks a sequential reader prefetches.
    pub readahead: usize,
}

/// Mounts the cluster at `dir` and serves it until it is unmounted
/// (`fusermount3 -u`, `dfs-sim umount`) or the process gets SIGINT or
/// SIGTERM. `ready` runs once the mount is live.
pub fn run(cfg: Config, dir: &Path, ready: impl FnOnce()) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()?;
    std::fs::create_dir_all(&cfg.spill_dir)?;
    let read_only = cfg.read_only;
    let fs = fs::Fs::new(rt.handle().clone(), cfg);
    let mut opts = vec![
        fuser::MountOption::FSName("dfs-sim".into()),
        fuser::MountOption::Subtype("dfs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoAtime,
    ];
    if read_only {
        opts.push(fuser::MountOption::RO);
    }
    let mut config = fuser::Config::default();
    // As root, let every user in (permissions are checked by the kernel)
    // and have fusermount3 unmount when this process dies, even by
    // SIGKILL, rather than leave a dead mount behind.
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        config.acl = fuser::SessionACL::All;
        opts.push(fuser::MountOption::AutoUnmount);
    }
    config.mount_options = opts;
    config.n_threads = Some(4);
    let mut session = fuser::Session::new(fs, dir, &config)
        .map_err(|e| Error::Mount(format!("cannot mount {}: {e}", dir.display())))?;
    let mut unmounter = session.unmount_callable();
    let where_ = dir.to_path_buf();
    rt.spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("signal: unmounting");
        if let Err(e) = unmounter.unmount() {
            tracing::warn!(error = %e, "unmount failed");
        }
        // With auto_unmount, fuser leaves the unmount to fusermount3, which
        // waits for this process to exit: unmount (lazily) now, which ends
        // the session below.
        let _ = tokio::process::Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(&where_)
            .status()
            .await;
    });
    ready();
    session
        .run()
        .map_err(|e| Error::Mount(format!("serving {}: {e}", dir.display())))?;
    rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
