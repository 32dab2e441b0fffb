//! Monte-Carlo over trials and the summary users read.
//!
//! Trials run on worker threads, each from its own RNG stream (`seed`,
//! stream = trial number), and are summed in trial order, so the output is
//! the same bit for bit whatever the thread count or scheduling.

use crate::cluster::Base;
use crate::engine::{Decodable, Trial, TrialResult};
use crate::error::Result;
use crate::model::Params;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The answer to "how safe is my layout?".
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scheme: String,
    pub nodes: usize,
    pub domains: usize,
    pub spares: usize,
    pub ha: bool,
    /// Stored bytes per data byte.
    pub overhead: f64,
    pub trials: usize,
    pub years: f64,
    pub seed: u64,
    pub sample_stripes: usize,
    /// Real stripes per sample stripe.
    pub stripes_per_sample: f64,
    pub stored_bytes: f64,
    /// Probability of losing any data in a year, from the share of trials
    /// with a loss: `1 - (1 - p)^(1/years)`.
    pub loss_probability_per_year: f64,
    /// 95% Wilson interval of the same.
    pub loss_probability_ci: [f64; 2],
    pub trials_with_loss: usize,
    pub loss_events: u64,
    /// Simulated years per loss event; with no loss, the 95% lower bound
    /// (three events' worth: the rule of three) and `mttdl_is_bound`.
    pub mttdl_years: f64,
    pub mttdl_is_bound: bool,
    pub expected_bytes_lost_per_year: f64,
    /// Hours per year the average stripe spends below full protection.
    pub reduced_protection_hours_per_stripe_year: f64,
    pub node_failures_per_year: f64,
    /// Bytes read by repair (network), per year and per node failure.
    pub repair_bytes_per_year: f64,
    pub repair_bytes_per_failure: f64,
    pub repair_written_bytes_per_year: f64,
    /// Largest repair backlog seen, bytes: median over trials, and max.
    pub peak_repair_queue_bytes_median: f64,
    pub peak_repair_queue_bytes_max: f64,
    /// Hours from a permanent failure to full protection: percentiles.
    pub time_to_full_protection_hours: Percentiles,
    pub repairs_abandoned: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            count: v.len(),
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: v[v.len() - 1],
        }
    }
}

/// Runs every trial of `p` with the real decodability rule. `progress`
/// is called once per finished trial (from worker threads).
pub fn run(p: &Params, progress: &(dyn Fn() + Sync)) -> Result<Summary> {
    run_with(p, &crate::engine::real_decodable, progress)
}

/// [`run`] with a chosen decodability rule (tests feed a broken one).
pub fn run_with(
    p: &Params,
    decodable: &Decodable,
    progress: &(dyn Fn() + Sync),
) -> Result<Summary> {
    p.validate()?;
    let base = Base::new(&p.layout, p.sample_stripes)?;
    let results: Vec<Mutex<Option<TrialResult>>> =
        (0..p.trials).map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let threads = p.threads.clamp(1, p.trials);
    std::thread::scope(|sc| {
        for _ in 0..threads {
            sc.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= p.trials {
                    break;
                }
                let r = Trial::run_random(&base, p, decodable, i as u64);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(r);
                }
                progress();
            });
        }
    });
    let results: Vec<TrialResult> = results
        .into_iter()
        .map(|m| m.into_inner().ok().flatten().unwrap_or_default())
        .collect();
    Ok(summarize(p, &base, &results))
}

fn summarize(p: &Params, base: &Base, rs: &[TrialResult]) -> Summary {
    let n = rs.len() as f64;
    let total_years = n * p.years;
    let with_loss = rs.iter().filter(|r| r.loss_events > 0).count();
    let events: u64 = rs.iter().map(|r| r.loss_events as u64).sum();
    let annual = |pt: f64| 1.0 - (1.0 - pt.min(1.0)).powf(1.0 / p.years);
    let pt = with_loss as f64 / n;
    let (lo, hi) = wilson(with_loss as f64, n, 1.96);
    let sum = |f: &dyn Fn(&TrialResult) -> f64| rs.iter().map(f).sum::<f64>();
    let failures = sum(&|r| r.node_failures as f64);
    let read = sum(&|r| r.repair_read_bytes);
    let mut peaks: Vec<f64> = rs.iter().map(|r| r.peak_queue_bytes).collect();
    peaks.sort_by(|a, b| a.total_cmp(b));
    let ttf: Vec<f64> = rs
        .iter()
        .flat_map(|r| r.time_to_full.iter().copied())
        .collect();
    let scheme = base.code.scheme();
    Summary {
        scheme: scheme.to_string(),
        nodes: p.layout.nodes,
        domains: p.layout.domains,
        spares: p.layout.spares,
        ha: p.layout.ha,
        overhead: base.stored_bytes / base.data_bytes,
        trials: rs.len(),
        years: p.years,
        seed: p.seed,
        sample_stripes: base.sample(),
        stripes_per_sample: base.weight,
        stored_bytes: base.stored_bytes,
        loss_probability_per_year: annual(pt),
        loss_probability_ci: [annual(lo), annual(hi)],
        trials_with_loss: with_loss,
        loss_events: events,
        mttdl_years: if events > 0 {
            total_years / events as f64
        } else {
            total_years / 3.0
        },
        mttdl_is_bound: events == 0,
        expected_bytes_lost_per_year: sum(&|r| r.bytes_lost) / total_years,
        reduced_protection_hours_per_stripe_year: sum(&|r| r.reduced_stripe_hours)
            / (base.sample() as f64 * total_years),
        node_failures_per_year: failures / total_years,
        repair_bytes_per_year: read / total_years,
        repair_bytes_per_failure: if failures > 0.0 { read / failures } else { 0.0 },
        repair_written_bytes_per_year: sum(&|r| r.repair_write_bytes) / total_years,
        peak_repair_queue_bytes_median: peaks.get(peaks.len() / 2).copied().unwrap_or(0.0),
        peak_repair_queue_bytes_max: peaks.last().copied().unwrap_or(0.0),
        time_to_full_protection_hours: Percentiles::of(ttf),
        repairs_abandoned: rs.iter().map(|r| r.repairs_failed as u64).sum(),
    }
}

/// Wilson score interval for `k` successes in `n` trials.
pub fn wilson(k: f64, n: f64, z: f64) -> (f64, f64) {
    if n == 0.0 {
        return (0.0, 1.0);
    }
    let p = k / n;
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}
