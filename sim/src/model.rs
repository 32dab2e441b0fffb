//! What is simulated: the layout, the failure model, the repair model, and
//! the run parameters; plus parsers for the units users type.

use crate::error::{bad, Result};
use codes::Scheme;
use serde::{Deserialize, Serialize};

pub const HOURS_PER_YEAR: f64 = 365.25 * 24.0;

/// The cluster: how many nodes, in how many failure domains, how full.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layout {
    /// Nodes (drives), spares included.
    pub nodes: usize,
    /// Failure domains (enclosures); node `i` sits in domain `d{i % domains}`.
    pub domains: usize,
    /// Hot spares among the nodes: take no new writes, first repair targets.
    #[serde(default)]
    pub spares: usize,
    /// Erasure code of every stripe (`none`, `xor:K`, `rs:K+M`, `lrc:K+L+G`).
    pub parity: String,
    /// Copies of each data chunk.
    #[serde(default = "one")]
    pub replication: u32,
    /// Enclosure-level HA placement (`coord --ha`).
    #[serde(default)]
    pub ha: bool,
    /// Bytes per node (`16TB`).
    pub capacity: String,
    /// Share of regular nodes' capacity in use (`70%`).
    pub fill: String,
    /// Raw chunk size of the real system, to count real stripes (`64MiB`).
    #[serde(default = "default_chunk")]
    pub chunk: String,
    /// Placement policy of new stripes: `random` (the coordinator's
    /// default) or `copysets` (`coord --placement copysets`).
    #[serde(default = "default_placement")]
    pub placement: String,
    /// Scatter width of copyset placement (`--scatter-width`).
    #[serde(default = "default_scatter")]
    pub scatter_width: u32,
}

fn default_placement() -> String {
    "random".into()
}

/// The coordinator's default `--scatter-width`.
pub const DEFAULT_SCATTER_WIDTH: u32 = decide::placement::copysets::DEFAULT_SCATTER_WIDTH;

fn default_scatter() -> u32 {
    DEFAULT_SCATTER_WIDTH
}

fn one() -> u32 {
    1
}

fn default_chunk() -> String {
    "64MiB".into()
}

impl Layout {
    pub fn scheme(&self) -> Result<Scheme> {
        let s: Scheme = self.parity.parse()?;
        s.validate()?;
        Ok(s)
    }

    /// The placement policy, as `decide::placement` takes it.
    pub fn placement(&self) -> Result<decide::placement::Placement> {
        decide::placement::Placement::parse(&self.placement, self.scatter_width)
            .map_err(crate::Error::BadInput)
    }

    pub fn from_toml(text: &str) -> Result<Layout> {
        Ok(toml::from_str(text)?)
    }

    pub fn validate(&self) -> Result<()> {
        self.scheme()?;
        if self.nodes == 0 || self.domains == 0 {
            return bad("--nodes and --domains must be at least 1");
        }
        if self.domains > self.nodes {
            return bad(format!(
                "{} domains for {} nodes: every domain needs a node",
                self.domains, self.nodes
            ));
        }
        if self.spares >= self.nodes {
            return bad("--spares must leave regular nodes");
        }
        if self.replication == 0 {
            return bad("--replication must be at least 1");
        }
        parse_bytes(&self.capacity)?;
        parse_bytes(&self.chunk)?;
        self.placement()?;
        let f = parse_percent(&self.fill)?;
        if !(f > 0.0 && f <= 1.0) {
            return bad("--fill must be in (0%, 100%]");
        }
        Ok(())
    }
}

/// How things break.
#[derive(Debug, Clone, Serialize)]
pub struct Failures {
    /// Annual failure rate of a node (probability of failing within a year).
    pub afr: f64,
    /// Weibull shape of node lifetimes; `None` is exponential (memoryless).
    pub weibull_shape: Option<f64>,
    /// Whole-domain failures per domain per year (every node in it lost).
    pub domain_afr: f64,
    /// Transient outages per node per year (node back with its data).
    pub transient_per_year: f64,
    /// Mean length of a transient outage, hours.
    pub transient_hours: f64,
    /// Silence after which the coordinator declares a node dead and
    /// repairs its data, hours (shorter outages cost no repair).
    pub dead_after_hours: f64,
    /// Latent sector errors per node per year (one chunk unreadable, found
    /// by the next scrub).
    pub lse_per_year: f64,
    /// Scrub period: a latent error is found uniformly within it, days.
    pub scrub_days: f64,
    /// A failed node is replaced by an empty one after this many days (it
    /// joins as a spare when the layout has spares).
    pub replace_days: f64,
    /// Correlated failures: power events per year, each leaving
    /// `power_fraction` of all nodes dead at once (nodes that do not come
    /// back after a data-centre power outage).
    pub power_per_year: f64,
    pub power_fraction: f64,
}

impl Default for Failures {
    fn default() -> Self {
        Failures {
            afr: 0.02,
            weibull_shape: None,
            domain_afr: 0.0,
            transient_per_year: 0.0,
            transient_hours: 0.5,
            dead_after_hours: 10.0 / 3600.0,
            lse_per_year: 0.0,
            scrub_days: 14.0,
            replace_days: 3.0,
            power_per_year: 0.0,
            power_fraction: 0.01,
        }
    }
}

/// How fast data is re-protected.
#[derive(Debug, Clone, Serialize)]
pub struct RepairModel {
    /// Repair bytes a target node takes in per second (what it reads to
    /// build a copy: one chunk for a copy, the read plan for a rebuild).
    pub node_mbps: f64,
    /// Cap on repair bytes per second across the cluster.
    pub cluster_mbps: Option<f64>,
    /// Fixed time from a failure to its data being re-protected, hours;
    /// overrides the bandwidth model (for closed-form comparisons).
    pub fixed_hours: Option<f64>,
}

impl Default for RepairModel {
    fn default() -> Self {
        RepairModel {
            node_mbps: 200.0,
            cluster_mbps: None,
            fixed_hours: None,
        }
    }
}

/// One simulation run.
#[derive(Debug, Clone, Serialize)]
pub struct Params {
    pub layout: Layout,
    pub failures: Failures,
    pub repair: RepairModel,
    pub years: f64,
    pub trials: usize,
    pub seed: u64,
    /// Sample stripes placed and simulated; `None`: about 32 members per
    /// regular node.
    pub sample_stripes: Option<usize>,
    /// Worker threads over trials (results do not depend on it).
    pub threads: usize,
}

impl Params {
    pub fn validate(&self) -> Result<()> {
        self.layout.validate()?;
        let f = &self.failures;
        if !(0.0..1.0).contains(&f.afr) {
            return bad("--afr must be in [0%, 100%)");
        }
        if f.weibull_shape.is_some_and(|k| k <= 0.0) {
            return bad("--weibull must be positive");
        }
        for (v, what) in [
            (f.domain_afr, "--domain-afr"),
            (f.transient_per_year, "--transients"),
            (f.lse_per_year, "--lse"),
            (f.replace_days, "--replace-days"),
            (f.power_per_year, "--power-events"),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("{what} must be a non-negative number"));
            }
        }
        if !(f.power_fraction > 0.0 && f.power_fraction <= 1.0) {
            return bad("--power-fraction must be in (0%, 100%]");
        }
        if self.repair.node_mbps.is_nan() || self.repair.node_mbps <= 0.0 {
            return bad("--repair-mbps must be positive");
        }
        if self
            .repair
            .fixed_hours
            .is_some_and(|h| h.is_nan() || h <= 0.0)
        {
            return bad("--repair-hours must be positive");
        }
        if !(self.years > 0.0 && self.years <= 1000.0) {
            return bad("--years must be in (0, 1000]");
        }
        if self.trials == 0 {
            return bad("--trials must be at least 1");
        }
        Ok(())
    }
}

/// `16TB`, `500GiB`, `4096` (bytes); decimal and binary suffixes.
pub fn parse_bytes(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let Ok(v) = num.parse::<f64>() else {
        return bad(format!("{s:?} is not a size (try 16TB)"));
    };
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "pb" | "p" => 1e15,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0f64.powi(3),
        "tib" => 1024.0f64.powi(4),
        _ => return bad(format!("{s:?}: unknown size unit (try 16TB)")),
    };
    let b = v * mult;
    if !(1.0..1e20).contains(&b) {
        return bad(format!("{s:?} is out of range"));
    }
    Ok(b as u64)
}

/// `2%` or `0.02`.
pub fn parse_percent(s: &str) -> Result<f64> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => bad(format!("{s:?} is not a rate (try 2% or 0.02)")),
    }
}

/// `1d+1h`, `30m`, `90s`, `2w`: a point in simulated time, in hours.
pub fn parse_time(s: &str) -> Result<f64> {
    let mut total = 0.0;
    for part in s.split('+') {
        let p = part.trim();
        let split = p
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(p.len());
        let (num, unit) = p.split_at(split);
        let Ok(v) = num.parse::<f64>() else {
            return bad(format!("{s:?} is not a time (try 1d+1h)"));
        };
        let h = match unit.trim() {
            "s" => v / 3600.0,
            "m" | "min" => v / 60.0,
            "h" | "" => v,
            "d" => v * 24.0,
            "w" => v * 24.0 * 7.0,
            "y" => v * HOURS_PER_YEAR,
            _ => return bad(format!("{s:?}: unknown time unit (s, m, h, d, w, y)")),
        };
        total += h;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_bytes("16TB").unwrap(), 16_000_000_000_000);
        assert_eq!(parse_bytes("64MiB").unwrap(), 64 << 20);
        assert!(parse_bytes("16XB").is_err());
        assert!((parse_percent("2%").unwrap() - 0.02).abs() < 1e-12);
        assert!((parse_percent("0.7").unwrap() - 0.7).abs() < 1e-12);
        assert!((parse_time("1d+1h").unwrap() - 25.0).abs() < 1e-12);
        assert!((parse_time("30m").unwrap() - 0.5).abs() < 1e-12);
        assert!(parse_time("soon").is_err());
    }
}
