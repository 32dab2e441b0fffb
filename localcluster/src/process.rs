//! Signals and liveness of processes, by pid.

use crate::error::{Error, Result};
use crate::POLL;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Whether `pid` is a live (not zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    if Path::new("/proc/self/stat").exists() {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // "pid (comm) S ...": the state follows the last ')'.
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].trim_start().chars().next());
        return !matches!(state, Some('Z' | 'X') | None);
    }
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `pid` is alive and (where `/proc` tells) still runs the command
/// of `argv`, so a recycled pid is not mistaken for ours. The subcommand and
/// the `--data` directory identify a cluster process (`--listen` may have
/// been port 0 when it started, and `argv` records the real port).
pub fn pid_runs(pid: u32, argv: &[String]) -> bool {
    if !pid_alive(pid) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(raw) => {
            let args: Vec<String> = raw
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.get(1) == argv.get(1) && flag(&args, "--data") == flag(argv, "--data")
        }
        Err(_) => true,
    }
}

/// The value after `name` in a command line.
pub fn flag<'a>(argv: &'a [String], name: &str) -> Option<&'a str> {
    argv.iter()
        .position(|a| a == name)
        .and_then(|i| argv.get(i + 1))
        .map(|s| s.as_str())
}

/// Sends `signal` (e.g. "TERM", "KILL", "STOP", "CONT") to `pid`.
pub fn send_signal(pid: u32, signal: &str) -> Result<()> {
    let kill = if Path::new("/bin/kill").exists() {
        "/bin/kill"
    } else {
        "kill"
    };
    let out = Command::new(kill)
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(Error::io(format!("cannot run {kill}")))?;
    if !out.status.success() && pid_alive(pid) {
        return Err(Error::Signal {
            signal: signal.to_string(),
            pid,
            reason: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Waits until none of `pids` is alive; returns those still alive at the
/// deadline.
pub async fn wait_gone(pids: &[u32], within: Duration) -> Vec<u32> {
    let deadline = Instant::now() + within;
    loop {
        let alive: Vec<u32> = pids.iter().copied().filter(|p| pid_alive(*p)).collect();
        if alive.is_empty() || Instant::now() >= deadline {
            return alive;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SIGTERM, a grace period, then SIGKILL for whatever is left. Returns the
/// pids that had to be killed.
pub async fn stop_pids(pids: &[u32], grace: Duration) -> Vec<u32> {
    for &pid in pids {
        if let Err(e) = send_signal(pid, "TERM") {
            tracing::warn!("{e}");
        }
    }
    let left = wait_gone(pids, grace).await;
    for &pid in &left {
        let _ = send_signal(pid, "KILL");
    }
    wait_gone(&left, Duration::from_secs(2)).await;
    left
}

/// The last non-empty line of a log, to explain why a process died.
pub fn last_log_line(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
}

/// Node ids and their states as the coordinator at `coord` sees them.
pub async fn node_states(
    coord: &str,
    cred: Option<protocol::Credential>,
) -> Result<Vec<(String, protocol::NodeState)>> {
    let mut cfg = client::ClientConfig::new(coord);
    cfg.cred = cred;
    let s = client::CoordClient::connect(&cfg).await?.status().await?;
    Ok(s.nodes
        .into_iter()
        .map(|n| (n.id.as_str().to_string(), n.state))
        .collect())
}

/// Whether the coordinator reports every one of `ids` alive.
pub async fn all_alive(coord: &str, cred: Option<protocol::Credential>, ids: &[&str]) -> bool {
    match node_states(coord, cred).await {
        Ok(states) => ids.iter().all(|id| {
            states
                .iter()
                .any(|(n, s)| n == id && *s == protocol::NodeState::Alive)
        }),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness() {
        let me = std::process::id();
        assert!(pid_alive(me));
        let argv: Vec<String> = std::env::args().collect();
        assert!(pid_runs(me, &argv));
        assert!(!pid_runs(me, &["x".into(), "node".into()]));
        // sh -c SCRIPT NAME ARGS: "--data /d/n1" stays in its command line.
        let mut sleeper = Command::new("sh")
            .args(["-c", "sleep 30; true", "--data", "/d/n1"])
            .spawn()
            .unwrap();
        let id = sleeper.id();
        let mut argv: Vec<String> = ["sh", "-c", "--listen", "x:1", "--data", "/d/n1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Right after fork the child still shows our own command line until
        // it execs: wait for the exec, with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !pid_runs(id, &argv) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            pid_runs(id, &argv),
            "{:?} {:?}",
            std::fs::read_to_string(format!("/proc/{id}/cmdline")),
            std::fs::read_to_string(format!("/proc/{id}/stat"))
        );
        argv[5] = "/d/n2".into();
        assert!(!pid_runs(id, &argv));
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        // A reaped child is gone.
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        assert!(!pid_alive(pid));
    }
}
