//! The clients: each follows its seeded schedule of put, overwrite (put
//! --force), get, rm, ls and stat on names of its own, checks every answer
//! against its model as it goes, and hands the model to the final check.

use crate::history::{OpRecord, Outcome};
use crate::model::{NameModel, Seen, Val, Violation};
use crate::schedule::{content, OpKind, OpPlan, OpSchedule};
use crate::Shared;
use client::get::Output;
use client::put::{PutOptions, Source};
use client::{CoordClient, Error as CError};
use protocol::data_client::NodePool;
use protocol::handshake::Role;
use protocol::{ErrorKind, FileName};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Names per client: few, so that overwrites, removes and reads of the same
/// name are frequent.
pub const NAMES: usize = 6;

/// An operation still running after this is abandoned as indeterminate.
const OP_TIMEOUT: Duration = Duration::from_secs(120);

pub fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// One client's names and models.
pub struct ClientState {
    pub id: usize,
    pub names: Vec<FileName>,
    pub models: Vec<NameModel>,
    pub pool: Arc<NodePool>,
    pub tmp: PathBuf,
}

impl ClientState {
    pub fn new(sh: &Shared, id: usize) -> crate::Result<ClientState> {
        let names = (0..NAMES)
            .map(|k| {
                FileName::new(&format!("{}c{id}/f{k}", sh.prefix))
                    .map_err(|e| crate::Error::Usage(format!("invalid name prefix: {e}")))
            })
            .collect::<crate::Result<Vec<_>>>()?;
        let tmp = sh.run_dir.join("tmp").join(format!("c{id}"));
        std::fs::create_dir_all(&tmp)
            .map_err(crate::Error::io(format!("cannot create {}", tmp.display())))?;
        Ok(ClientState {
            id,
            models: names.iter().map(|_| NameModel::absent()).collect(),
            names,
            // Nodes take clients anonymously, with block tokens from the
            // coordinator.
            pool: Arc::new(NodePool::new(Role::Client, None)),
            tmp,
        })
    }

    pub fn prefix(&self, sh: &Shared) -> String {
        format!("{}c{}/", sh.prefix, self.id)
    }
}

/// Runs a client until the run stops.
pub async fn run(sh: Arc<Shared>, mut cs: ClientState) -> ClientState {
    let mut sched = OpSchedule::new(sh.seed, cs.id, NAMES, sh.chunk_size);
    while !sh.stop.load(Ordering::Relaxed) {
        let op = sched.next_op();
        if execute(&sh, &mut cs, &op).await == Outcome::Failed {
            // The coordinator is down or refusing: do not spin (timing only;
            // the schedule stays the same).
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    cs
}

/// What one operation did, before it is recorded.
pub struct Done {
    outcome: Outcome,
    hash: Option<String>,
    size: Option<u64>,
    error: Option<String>,
    violation: Option<String>,
}

impl Done {
    fn new(outcome: Outcome) -> Done {
        Done {
            outcome,
            hash: None,
            size: None,
            error: None,
            violation: None,
        }
    }
    fn err(outcome: Outcome, e: &dyn std::fmt::Display) -> Done {
        let mut d = Done::new(outcome);
        d.error = Some(e.to_string());
        d
    }
}

async fn execute(sh: &Shared, cs: &mut ClientState, op: &OpPlan) -> Outcome {
    let start = sh.history.now();
    let name = cs.names[op.name].clone();
    let done = match op.kind {
        OpKind::Put | OpKind::Overwrite => put(sh, cs, op, &name).await,
        OpKind::Get => {
            let (d, seen) = get(sh, cs, &name).await;
            observe(sh, cs, op.name, seen, d, "get")
        }
        OpKind::Stat => stat(sh, cs, op.name, &name).await,
        OpKind::Rm => rm(sh, cs, op.name, &name).await,
        OpKind::Ls => ls(sh, cs).await,
    };
    sh.count(op.kind.as_str(), done.outcome);
    sh.history.write(&OpRecord {
        ty: "op",
        client: cs.id,
        seq: op.seq,
        kind: op.kind.as_str(),
        name: name.to_string(),
        start,
        end: sh.history.now(),
        outcome: done.outcome,
        hash: done.hash,
        size: done.size,
        error: done.error,
        violation: done.violation,
    });
    done.outcome
}

/// Checks an observation against the model; records a violation.
fn observe(
    sh: &Shared,
    cs: &mut ClientState,
    idx: usize,
    seen: Option<Seen>,
    mut d: Done,
    what: &str,
) -> Done {
    let Some(seen) = seen else { return d };
    let before = cs.models[idx].describe();
    if let Some(v) = cs.models[idx].observe(&seen) {
        let msg = format!(
            "{}: {what} of {} saw {seen:?}, allowed {before}",
            v.as_str(),
            cs.names[idx]
        );
        sh.violation(v, &msg);
        d.violation = Some(msg);
    }
    d
}

async fn connect(sh: &Shared) -> client::Result<CoordClient> {
    CoordClient::connect(&sh.client_config()).await
}

async fn put(sh: &Shared, cs: &mut ClientState, op: &OpPlan, name: &FileName) -> Done {
    let data = content(op.content_seed, op.size);
    let hash = sha256_hex(&data);
    let force = op.kind == OpKind::Overwrite;
    cs.models[op.name].writing(&hash, op.size);
    let pool = cs.pool.clone();
    let res = tokio::time::timeout(OP_TIMEOUT, async {
        let mut c = connect(sh).await?;
        let src = Source {
            reader: Box::new(std::io::Cursor::new(data)),
            size: op.size,
        };
        let opts = PutOptions {
            inflight: 3,
            force,
            scheme: None,
        };
        client::put::put_source(
            &mut c,
            &pool,
            opts,
            src,
            name.clone(),
            None,
            Arc::new(|_| {}),
        )
        .await
    })
    .await;
    let mut d = match res {
        Ok(Ok(_)) => {
            cs.models[op.name].effect(Val::Content(hash.clone()), true);
            Done::new(Outcome::Ok)
        }
        Ok(Err(e)) => match &e {
            CError::Coord(w) if w.kind == ErrorKind::FileExists => {
                let mut d = Done::err(Outcome::Failed, &e);
                d.hash = Some(hash);
                d.size = Some(op.size);
                return observe(sh, cs, op.name, Some(Seen::Present(None)), d, "put");
            }
            CError::CommitUnknown { .. } => {
                cs.models[op.name].effect(Val::Content(hash.clone()), false);
                Done::err(Outcome::Indeterminate, &e)
            }
            _ => Done::err(Outcome::Failed, &e),
        },
        Err(_) => {
            cs.models[op.name].effect(Val::Content(hash.clone()), false);
            Done::err(Outcome::Indeterminate, &"timed out")
        }
    };
    d.hash = Some(hash);
    d.size = Some(op.size);
    d
}

/// Reads a name; `Some(seen)` when the answer tells something.
pub async fn get(sh: &Shared, cs: &ClientState, name: &FileName) -> (Done, Option<Seen>) {
    let out = cs.tmp.join("get");
    let pool = cs.pool.clone();
    let res = tokio::time::timeout(OP_TIMEOUT, async {
        let mut c = connect(sh).await?;
        client::get::get_with(
            &mut c,
            &pool,
            3,
            name.clone(),
            Output::File(out.clone()),
            Arc::new(|_| {}),
        )
        .await
    })
    .await;
    match res {
        Ok(Ok(_)) => match read_hash(&out) {
            Ok((hash, size)) => {
                let mut d = Done::new(Outcome::Ok);
                d.hash = Some(hash.clone());
                d.size = Some(size);
                (d, Some(Seen::Content(hash)))
            }
            Err(e) => (Done::err(Outcome::Failed, &e), None),
        },
        Ok(Err(e)) if e.coord_kind() == Some(ErrorKind::NoSuchFile) => {
            (Done::err(Outcome::Ok, &e), Some(Seen::Absent))
        }
        Ok(Err(e)) => (Done::err(Outcome::Failed, &e), None),
        Err(_) => (Done::err(Outcome::Failed, &"timed out"), None),
    }
}

fn read_hash(p: &Path) -> std::io::Result<(String, u64)> {
    let b = std::fs::read(p)?;
    let _ = std::fs::remove_file(p);
    Ok((sha256_hex(&b), b.len() as u64))
}

async fn stat(sh: &Shared, cs: &mut ClientState, idx: usize, name: &FileName) -> Done {
    let res = tokio::time::timeout(OP_TIMEOUT, async {
        connect(sh).await?.lookup(name.clone()).await
    })
    .await;
    let (d, seen) = match res {
        Ok(Ok(info)) => {
            let mut d = Done::new(Outcome::Ok);
            d.size = Some(info.size);
            (d, Some(Seen::Present(Some(info.size))))
        }
        Ok(Err(e)) if e.coord_kind() == Some(ErrorKind::NoSuchFile) => {
            (Done::err(Outcome::Ok, &e), Some(Seen::Absent))
        }
        Ok(Err(e)) => (Done::err(Outcome::Failed, &e), None),
        Err(_) => (Done::err(Outcome::Failed, &"timed out"), None),
    };
    observe(sh, cs, idx, seen, d, "stat")
}

async fn rm(sh: &Shared, cs: &mut ClientState, idx: usize, name: &FileName) -> Done {
    let res = tokio::time::timeout(OP_TIMEOUT, async {
        let mut c = connect(sh).await?;
        // Sent: from here on a lost answer leaves the outcome unknown.
        Ok::<_, CError>(c.remove(name.clone()).await)
    })
    .await;
    match res {
        Ok(Ok(Ok(()))) => {
            // It existed a moment ago.
            let d = observe(
                sh,
                cs,
                idx,
                Some(Seen::Present(None)),
                Done::new(Outcome::Ok),
                "rm",
            );
            cs.models[idx].effect(Val::Absent, true);
            d
        }
        Ok(Ok(Err(e))) if e.coord_kind() == Some(ErrorKind::NoSuchFile) => observe(
            sh,
            cs,
            idx,
            Some(Seen::Absent),
            Done::err(Outcome::Ok, &e),
            "rm",
        ),
        Ok(Ok(Err(e @ CError::Coord(_)))) => Done::err(Outcome::Failed, &e),
        Ok(Ok(Err(e))) => {
            cs.models[idx].effect(Val::Absent, false);
            Done::err(Outcome::Indeterminate, &e)
        }
        // Not connected: nothing was sent.
        Ok(Err(e)) => Done::err(Outcome::Failed, &e),
        Err(_) => {
            cs.models[idx].effect(Val::Absent, false);
            Done::err(Outcome::Indeterminate, &"timed out")
        }
    }
}

async fn ls(sh: &Shared, cs: &mut ClientState) -> Done {
    let prefix = cs.prefix(sh);
    let res =
        tokio::time::timeout(OP_TIMEOUT, async { connect(sh).await?.list(prefix).await }).await;
    match res {
        Ok(Ok(files)) => {
            let mut d = Done::new(Outcome::Ok);
            d.size = Some(files.len() as u64);
            for idx in 0..cs.names.len() {
                let seen = match files.iter().find(|f| f.name == cs.names[idx]) {
                    Some(f) => Seen::Present(Some(f.size)),
                    None => Seen::Absent,
                };
                d = observe(sh, cs, idx, Some(seen), d, "ls");
            }
            d
        }
        Ok(Err(e)) => Done::err(Outcome::Failed, &e),
        Err(_) => Done::err(Outcome::Failed, &"timed out"),
    }
}

/// How long the final read of a name keeps retrying before it is judged:
/// a read racing the last repairs may fail once or twice.
const FINAL_READ_DEADLINE: Duration = Duration::from_secs(5);

/// The final read of one name, after the cluster healed: retried (short,
/// growing pauses) until it reads or [`FINAL_READ_DEADLINE`] passes, then
/// judged.
pub async fn final_check(sh: &Shared, cs: &mut ClientState, idx: usize) {
    let name = cs.names[idx].clone();
    let start = sh.history.now();
    let deadline = tokio::time::Instant::now() + FINAL_READ_DEADLINE;
    let mut pause = Duration::from_millis(100);
    let mut last = None;
    loop {
        if last.is_some() {
            if tokio::time::Instant::now() + pause > deadline {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
        let (d, seen) = get(sh, cs, &name).await;
        if seen.is_some() {
            let d = observe(sh, cs, idx, seen, d, "final get");
            sh.count("final-get", d.outcome);
            write_final(sh, cs.id, &name, start, d);
            return;
        }
        last = Some(d);
    }
    // Unreadable after healing: whatever it held is lost.
    let mut d = last.unwrap_or_else(|| Done::new(Outcome::Failed));
    if sh.beyond {
        sh.notice(&format!(
            "{name} unreadable after healing ({}); allowed with --beyond-tolerance",
            d.error.as_deref().unwrap_or("?")
        ));
        sh.count("final-get", d.outcome);
        write_final(sh, cs.id, &name, start, d);
        return;
    }
    let msg = format!(
        "{}: final get of {name} failed ({}), allowed {}",
        Violation::Lost.as_str(),
        d.error.as_deref().unwrap_or("?"),
        cs.models[idx].describe()
    );
    sh.violation(Violation::Lost, &msg);
    d.violation = Some(msg);
    sh.count("final-get", d.outcome);
    write_final(sh, cs.id, &name, start, d);
}

fn write_final(sh: &Shared, client: usize, name: &FileName, start: f64, d: Done) {
    sh.history.write(&OpRecord {
        ty: "op",
        client,
        seq: 0,
        kind: "final-get",
        name: name.to_string(),
        start,
        end: sh.history.now(),
        outcome: d.outcome,
        hash: d.hash,
        size: d.size,
        error: d.error,
        violation: d.violation,
    });
}
