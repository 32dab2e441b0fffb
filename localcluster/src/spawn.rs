//! Starting one process of the binary and waiting for its ready line
//! ("coordinator listening on ADDR, data in DIR" / "node n1 listening on
//! ADDR, data in DIR"), which carries the real address when it asked for
//! port 0.

use crate::error::{Error, Result};
use crate::process::{flag, last_log_line};
use crate::state::{Proc, ProcState};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tokio::sync::oneshot;

/// How long a process may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A child that announced it was listening.
pub struct Started {
    pub child: Child,
    pub proc: Proc,
}

/// A spawned child whose ready line is still to come.
pub struct Pending {
    pub child: Child,
    pub proc: Proc,
    ready: oneshot::Receiver<String>,
}

/// Starts `argv` (program first) in its own process group, its stdout and
/// stderr appended to `log` (after a `--- dfs-sim <who>: argv` line); its pid
/// is pushed on `pids` at once, so a caller can clean up even if the ready
/// line never comes.
pub fn spawn(
    who: &str,
    id: &str,
    argv: Vec<String>,
    log: &Path,
    pids: &mut Vec<u32>,
) -> Result<Pending> {
    let mut out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .map_err(Error::io(format!("cannot open {}", log.display())))?;
    let _ = writeln!(out, "--- dfs-sim {who}: {}", argv.join(" "));
    let err = out
        .try_clone()
        .map_err(Error::io(format!("cannot open {}", log.display())))?;
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err));
    // Our own process group: Ctrl-C reaches only the parent, which then
    // stops the children in order.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = tokio::process::Command::from(cmd)
        .spawn()
        .map_err(Error::io(format!("cannot start {id} ({})", argv[0])))?;
    let Some(pid) = child.id() else {
        return Err(Error::Died {
            id: id.to_string(),
            status: "at once".into(),
            log: log.to_path_buf(),
            last: String::new(),
        });
    };
    pids.push(pid);
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = oneshot::channel();
    // Hand the first line over, and copy every line to the log.
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout).lines();
        let mut tx = Some(tx);
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(out, "{line}");
            if let Some(tx) = tx.take() {
                let _ = tx.send(line);
            }
        }
    });
    let (addr, data) = ready_fields(&argv);
    Ok(Pending {
        child,
        proc: Proc {
            id: id.to_string(),
            addr,
            data,
            log: log.to_path_buf(),
            state: ProcState::Running,
            pid: Some(pid),
            argv,
        },
        ready: rx,
    })
}

/// The `--listen` and `--data` values of a command line.
pub fn ready_fields(argv: &[String]) -> (String, PathBuf) {
    let value = |name| flag(argv, name).unwrap_or_default();
    (
        value("--listen").to_string(),
        PathBuf::from(value("--data")),
    )
}

impl Proc {
    /// The error for a process that exited before it was ready.
    pub fn died(&self, status: &str) -> Error {
        Error::Died {
            id: self.id.clone(),
            status: status.to_string(),
            log: self.log.clone(),
            last: last_log_line(&self.log)
                .map(|l| format!(": {l}"))
                .unwrap_or_default(),
        }
    }
}

impl Pending {
    /// Waits for "... listening on ADDR, data in DIR" and records the real
    /// address (it may have been port 0) in the command line too.
    pub async fn ready(mut self) -> Result<Started> {
        let line = tokio::select! {
            l = &mut self.ready => l.ok(),
            _ = tokio::time::sleep(READY_TIMEOUT) => {
                let _ = self.child.start_kill();
                return Err(Error::NotReady {
                    id: self.proc.id.clone(),
                    secs: READY_TIMEOUT.as_secs(),
                    log: self.proc.log.clone(),
                });
            }
        };
        let Some(line) = line else {
            // Stdout closed before a line: it exited.
            let status = self
                .child
                .wait()
                .await
                .map_err(Error::io(format!("cannot wait for {}", self.proc.id)))?;
            return Err(self.proc.died(&status.to_string()));
        };
        let addr = parse_ready(&line).ok_or_else(|| Error::BadReadyLine {
            id: self.proc.id.clone(),
            line: line.clone(),
        })?;
        if let Some(i) = self.proc.argv.iter().position(|a| a == "--listen") {
            self.proc.argv[i + 1] = addr.clone();
        }
        self.proc.addr = addr;
        Ok(Started {
            child: self.child,
            proc: self.proc,
        })
    }
}

/// The address in "coordinator listening on ADDR, data in DIR",
/// "node n1 listening on ADDR, data in DIR" or "S3 gateway listening on
/// ADDR, endpoint ...".
pub fn parse_ready(line: &str) -> Option<String> {
    let rest = line.split_once(" listening on ")?.1;
    let addr = rest.split_once(", ")?.0;
    (!addr.is_empty()).then(|| addr.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_lines() {
        assert_eq!(
            parse_ready("coordinator listening on 127.0.0.1:4000, data in /x/coord").as_deref(),
            Some("127.0.0.1:4000")
        );
        assert_eq!(
            parse_ready("node n1 listening on 127.0.0.1:39001, data in d, with comma").as_deref(),
            Some("127.0.0.1:39001")
        );
        assert_eq!(
            parse_ready("S3 gateway listening on 127.0.0.1:9000, endpoint http://127.0.0.1:9000")
                .as_deref(),
            Some("127.0.0.1:9000")
        );
        assert_eq!(parse_ready("something else"), None);
    }

    #[test]
    fn flags_of_a_command_line() {
        let argv: Vec<String> = ["x", "node", "--listen", "127.0.0.1:0", "--data", "/d/n1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (addr, data) = ready_fields(&argv);
        assert_eq!(addr, "127.0.0.1:0");
        assert_eq!(data, PathBuf::from("/d/n1"));
    }
}
