//! `dfs-sim`: one binary for every role. It parses arguments, sets up
//! logging and hands over to the `node`, `coord` and `client` crates.

/// `println!` that ignores a closed stdout (`dfs-sim ls | head`): SIGPIPE
/// stays ignored, as a client writing to a node that just died must get
/// EPIPE and abort its upload cleanly, not be killed by the signal.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// See Cargo.toml for why: the coordinator's catalog is millions of small
/// long-lived allocations, which glibc's arenas fragment.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (v2 and v3): how
/// long freed memory stays committed before it is returned to the OS.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Clients, nodes and gateways free 64 MiB chunk buffers all the time:
/// mimalloc's default 10 ms purge delay (x10 for arenas) keeps several of
/// them resident, which took a 1 GiB put from 400 to 625 MiB peak RSS
/// (limit 600). The coordinator's catalog allocations stay with the
/// default, which is what they were measured with.
fn purge_freed_memory_at_once() {
    // SAFETY: sets a plain integer option; mimalloc reads it at each purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) }
}

mod cmd;
mod format;
mod progress;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "dfs-sim",
    version,
    about = "A GFS-style distributed file store: chunked, replicated, XOR-parity protected"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a chunkserver.
    Node(cmd::node::Args),
    /// Run the coordinator.
    Coord(cmd::coord::Args),
    /// Store a local file under a name.
    Put(cmd::put::Args),
    /// Fetch a file (rebuilding lost chunks from parity if needed).
    Get(cmd::get::Args),
    /// List files, optionally under a prefix.
    Ls(cmd::ls::Args),
    /// Show a file's chunks, where each copy lives, and its health.
    Stat(cmd::stat::Args),
    /// Remove a file.
    Rm(cmd::rm::Args),
    /// Copy a file inside the cluster (nodes copy their chunks locally).
    Cp(cmd::cp::Args),
    /// Show nodes, liveness, usage and under-protected chunks.
    Status(cmd::status::Args),
    /// Show the coordinator group: members, leader, term, commit index, lag.
    Coordinators(cmd::coordinators::Args),
    /// Check every file's health; `--deep` verifies every copy,
    /// `--what-if n1,n2` tells what a failure of those nodes would lose.
    Fsck(cmd::fsck::Args),
    /// Incidents (a node's death or a corrupt copy, until full protection):
    /// what failed, what was read and rebuilt, MTTR.
    Incidents(cmd::incidents::Args),
    /// Move every chunk off a node so it can be removed.
    Drain(cmd::drain::Args),
    /// Remove a stopped node that holds nothing from the cluster's records.
    Forget(cmd::drain::ForgetArgs),
    /// Move copies until every node's usage is within 10% of the mean.
    Rebalance(cmd::rebalance::Args),
    /// Tag every copy written before owner tags (needs the secret), so a
    /// rebuild from the nodes can place it.
    Retag(cmd::retag::Args),
    /// Issue, revoke or list client keys (secured clusters; needs the secret).
    Key(cmd::key::Args),
    /// Verify every stored copy now (corrupt ones are repaired).
    Scrub(cmd::scrub::Args),
    /// Measure small-file operations per second.
    Loadgen(cmd::loadgen::Args),
    /// Run a local cluster (a coordinator and N nodes) until Ctrl-C.
    Up(cmd::up::Args),
    /// Stop a node of a cluster started with `up`.
    Kill(cmd::kill::Args),
    /// Restart a node stopped with `kill`.
    Start(cmd::start::Args),
    /// How safe is a layout? Years of failures in simulated time, with the
    /// real placement, decodability and repair planner.
    Sim(cmd::sim::Args),
    /// Throw seeded faults at a cluster while clients work, then check that
    /// nothing acknowledged was lost and no wrong byte was returned.
    Chaos(cmd::chaos::Args),
    /// Serve the cluster over S3 (aws cli, rclone, boto3, ...).
    S3(cmd::s3::Args),
    /// Serve the dashboard's file uploads and downloads (a client of the
    /// cluster; the coordinator never touches chunk bytes).
    Data(cmd::data::Args),
    /// Mount the cluster as a folder (FUSE; needs fusermount3).
    Mount(cmd::mount::Args),
    /// Unmount a folder mounted with `mount`.
    Umount(cmd::mount::UmountArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Coord(_)) {
        purge_freed_memory_at_once();
    }
    let server = matches!(
        cli.command,
        Command::Node(_)
            | Command::Coord(_)
            | Command::Up(_)
            | Command::S3(_)
            | Command::Data(_)
            | Command::Mount(_)
    );
    // chaos's own clients retry through faults on purpose: only errors
    // (violations among them) go to its stderr; the live line says the rest.
    let chaos = matches!(cli.command, Command::Chaos(_));
    init_tracing(if server {
        "info"
    } else if chaos {
        "error"
    } else {
        "warn"
    });
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let res = rt.block_on(async move {
        match cli.command {
            Command::Node(a) => cmd::node::run(a).await,
            Command::Coord(a) => cmd::coord::run(a).await,
            Command::Put(a) => cmd::put::run(a).await,
            Command::Get(a) => cmd::get::run(a).await,
            Command::Ls(a) => cmd::ls::run(a).await,
            Command::Stat(a) => cmd::stat::run(a).await,
            Command::Rm(a) => cmd::rm::run(a).await,
            Command::Cp(a) => cmd::cp::run(a).await,
            Command::Status(a) => cmd::status::run(a).await,
            Command::Coordinators(a) => cmd::coordinators::run(a).await,
            Command::Loadgen(a) => cmd::loadgen::run(a).await,
            Command::Fsck(a) => cmd::fsck::run(a).await,
            Command::Incidents(a) => cmd::incidents::run(a).await,
            Command::Drain(a) => cmd::drain::run(a).await,
            Command::Forget(a) => cmd::drain::forget(a).await,
            Command::Rebalance(a) => cmd::rebalance::run(a).await,
            Command::Retag(a) => cmd::retag::run(a).await,
            Command::Key(a) => cmd::key::run(a).await,
            Command::Scrub(a) => cmd::scrub::run(a).await,
            Command::Up(a) => cmd::up::run(a).await,
            Command::Kill(a) => cmd::kill::run(a).await,
            Command::Start(a) => cmd::start::run(a).await,
            Command::Sim(a) => cmd::sim::run(a).await,
            Command::Chaos(a) => cmd::chaos::run(a).await,
            Command::S3(a) => cmd::s3::run(a).await,
            Command::Data(a) => cmd::data::run(a).await,
            Command::Mount(a) => cmd::mount::run(a).await,
            Command::Umount(a) => cmd::mount::umount(a).await,
        }
    });
    // Do not wait for blocking tasks (e.g. a reader thread of a failed put).
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` overrides the per-role default.
fn init_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}
