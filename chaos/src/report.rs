//! The end of a run: operations by kind and outcome, faults by kind, and
//! the four verdicts that must be 0.

use crate::cluster::Cluster;
use crate::history::Outcome;
use crate::model::Violation;
use crate::{Config, Shared};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub lost: u64,
    pub wrong: u64,
    pub resurrected: u64,
    pub orphans: u64,
}

impl Verdict {
    pub fn passed(&self) -> bool {
        self.lost + self.wrong + self.resurrected + self.orphans == 0
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub seconds: f64,
    pub nodes: usize,
    pub scheme: String,
    pub tolerance: usize,
    /// kind -> (ok, failed, indeterminate)
    pub ops: BTreeMap<String, [u64; 3]>,
    pub faults: BTreeMap<&'static str, u64>,
    pub verdict: Verdict,
    pub healed: bool,
    pub heal_secs: f64,
    pub examples: Vec<String>,
    pub notices: Vec<String>,
    pub history: PathBuf,
    pub run_dir: PathBuf,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        sh: &Shared,
        cfg: &Config,
        cluster: &Cluster,
        history: PathBuf,
        run_dir: &Path,
        healed: bool,
        heal_secs: f64,
        t0: Instant,
    ) -> Report {
        let mut ops: BTreeMap<String, [u64; 3]> = BTreeMap::new();
        for ((kind, o), n) in sh.ops.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let i = match o {
                Outcome::Ok => 0,
                Outcome::Failed => 1,
                Outcome::Indeterminate => 2,
            };
            ops.entry(kind.clone()).or_default()[i] += n;
        }
        let faults = sh
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        let v = sh
            .violations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let get = |k| v.get(&k).copied().unwrap_or(0);
        Report {
            seed: cfg.seed,
            seconds: t0.elapsed().as_secs_f64(),
            nodes: cluster.node_ids.len(),
            scheme: format!("R={} + {}", cfg.replication, cfg.parity),
            tolerance: sh.tolerance,
            ops,
            faults,
            verdict: Verdict {
                lost: get(Violation::Lost),
                wrong: get(Violation::Wrong),
                resurrected: get(Violation::Resurrected),
                orphans: get(Violation::Orphan),
            },
            healed,
            heal_secs,
            examples: sh
                .examples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            notices: sh.notices.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            history,
            run_dir: run_dir.to_path_buf(),
        }
    }

    pub fn passed(&self) -> bool {
        self.verdict.passed()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "chaos seed {}: {:.0} s, {} nodes, {}, at most {} node(s) impaired at once; healed: {} ({:.1} s)",
            self.seed,
            self.seconds,
            self.nodes,
            self.scheme,
            self.tolerance,
            if self.healed { "yes" } else { "NO" },
            self.heal_secs
        )?;
        writeln!(f)?;
        writeln!(f, "| operation  |     ok | failed | indeterminate |")?;
        writeln!(f, "|------------|-------:|-------:|--------------:|")?;
        let mut tot = [0u64; 3];
        for (k, n) in &self.ops {
            writeln!(f, "| {k:<10} | {:>6} | {:>6} | {:>13} |", n[0], n[1], n[2])?;
            for i in 0..3 {
                tot[i] += n[i];
            }
        }
        writeln!(
            f,
            "| total      | {:>6} | {:>6} | {:>13} |",
            tot[0], tot[1], tot[2]
        )?;
        writeln!(f)?;
        writeln!(f, "| fault         | injected |")?;
        writeln!(f, "|---------------|---------:|")?;
        for (k, n) in &self.faults {
            writeln!(f, "| {k:<13} | {n:>8} |")?;
        }
        writeln!(
            f,
            "| total         | {:>8} |",
            self.faults.values().sum::<u64>()
        )?;
        writeln!(f)?;
        writeln!(f, "| verdict                    | count |")?;
        writeln!(f, "|----------------------------|------:|")?;
        let v = &self.verdict;
        for (what, n) in [
            (Violation::Lost, v.lost),
            (Violation::Wrong, v.wrong),
            (Violation::Resurrected, v.resurrected),
            (Violation::Orphan, v.orphans),
        ] {
            writeln!(f, "| {:<26} | {n:>5} |", what.as_str())?;
        }
        if !self.examples.is_empty() {
            writeln!(f)?;
            for e in &self.examples {
                writeln!(f, "  {e}")?;
            }
        }
        writeln!(f)?;
        for n in &self.notices {
            writeln!(f, "notice: {n}")?;
        }
        writeln!(f, "history: {}", self.history.display())?;
        write!(
            f,
            "verdict: {} (lost={} wrong={} resurrected={} orphans={}); replay with --seed {}",
            if self.passed() { "PASS" } else { "FAIL" },
            v.lost,
            v.wrong,
            v.resurrected,
            v.orphans,
            self.seed
        )
    }
}
