//! The run's history: one JSON object per line, every operation (kind,
//! name, start, end, outcome, content hash) and every fault (start and end),
//! with times in seconds since the run began. Written as it happens, so a
//! run that is killed still leaves what it did.

use crate::error::{Error, Result};
use serde::Serialize;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

/// How an operation ended, in Jepsen's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged: its effect must be visible.
    Ok,
    /// Refused or failed before it could have had an effect.
    Failed,
    /// Unknown (the coordinator died while answering, a timeout): it may
    /// have taken effect or not, never anything else.
    Indeterminate,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Indeterminate => "indeterminate",
        }
    }
}

/// One finished operation.
#[derive(Debug, Clone, Serialize)]
pub struct OpRecord {
    #[serde(rename = "type")]
    pub ty: &'static str,
    pub client: usize,
    /// Index of the operation in its client's schedule.
    pub seq: u64,
    pub kind: &'static str,
    pub name: String,
    pub start: f64,
    pub end: f64,
    pub outcome: Outcome,
    /// SHA-256 of the bytes written (put) or read (get).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A violation this operation revealed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violation: Option<String>,
}

/// A fault injected or undone.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    #[serde(rename = "type")]
    pub ty: &'static str,
    /// Index in the fault schedule.
    pub seq: u64,
    pub kind: &'static str,
    pub target: String,
    /// "inject", "heal" (undone) or "healed" (the cluster is whole again).
    pub phase: &'static str,
    pub t: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub struct History {
    out: Mutex<BufWriter<File>>,
    t0: Instant,
}

impl History {
    pub fn create(path: &Path, t0: Instant) -> Result<History> {
        let f =
            File::create(path).map_err(Error::io(format!("cannot create {}", path.display())))?;
        Ok(History {
            out: Mutex::new(BufWriter::new(f)),
            t0,
        })
    }

    /// Seconds since the run began.
    pub fn now(&self) -> f64 {
        self.t0.elapsed().as_secs_f64()
    }

    pub fn write<T: Serialize>(&self, rec: &T) {
        let Ok(line) = serde_json::to_string(rec) else {
            return;
        };
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            tracing::warn!(error = %e, "cannot write the history");
        }
    }

    /// A free-form event (run start, heal phase, verdicts).
    pub fn note(&self, what: &str, detail: serde_json::Value) {
        self.write(
            &serde_json::json!({"type": "note", "t": self.now(), "what": what, "detail": detail}),
        );
    }
}
