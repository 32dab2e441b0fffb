//! Monte-Carlo over trials and the summary users read.
//!
//! Trials run on worker threads, each from its own RNG stream (`seed`,
//! stream = trial number), and are summed in trial order, so the output is
//! the same bit for bit whatever the thread count or scheduling.

use crate::cluster::Base;
use crate::engine::{Decodable, Trial, TrialResult};
use crate::error::Result;
use crate::exposure::Exposure;
use crate::model::Params;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// The answer to "how safe is my layout?". Every estimate comes with a
/// 95% interval over trials (percentile bootstrap, see [`bootstrap`]).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub scheme: String,
    pub nodes: usize,
    pub domains: usize,
    pub spares: usize,
    pub ha: bool,
    /// Placement policy (`random`, `copysets (scatter width S)`).
    pub placement: String,
    /// How loss was computed for this placement (`crate::exposure::Model`).
    pub loss_model: String,
    /// Stored bytes per data byte.
    pub overhead: f64,
    pub trials: usize,
    pub years: f64,
    pub seed: u64,
    pub sample_stripes: usize,
    /// Real stripes per sample stripe.
    pub stripes_per_sample: f64,
    pub real_stripes: f64,
    pub stored_bytes: f64,
    /// Probability of losing any data in a year: the trials' mean
    /// probability of a loss within the run, `1 - exp(-E[lost])` each,
    /// made annual as `1 - (1 - p)^(1/years)`. Interval: bootstrap, or
    /// when no trial was exposed at all, the zero-event bound on a trial
    /// being exposed.
    pub loss_probability_per_year: f64,
    pub loss_probability_ci: [f64; 2],
    /// Trials in which some failure had a non-zero chance of losing data.
    pub trials_exposed: usize,
    /// Expected real stripes lost per year.
    pub expected_lost_stripes_per_year: f64,
    pub expected_lost_stripes_ci: [f64; 2],
    /// Expected failure events that lose data, over all trials.
    pub expected_loss_events: f64,
    /// Simulated years per loss event (`None`: no failure could lose
    /// anything in any trial) and its interval (upper end `None`:
    /// unbounded).
    pub mttdl_years: Option<f64>,
    pub mttdl_ci: [Option<f64>; 2],
    pub expected_bytes_lost_per_year: f64,
    pub expected_bytes_lost_ci: [f64; 2],
    /// Correlated failures: power events simulated, and the probability
    /// that one loses data (mean over events of `1 - exp(-E[lost])`).
    pub power_events: usize,
    pub power_loss_probability_per_event: Option<f64>,
    pub power_loss_probability_ci: Option<[f64; 2]>,
    pub power_expected_lost_stripes_per_event: Option<f64>,
    /// Distinct nodes a failed node's repair reads from (median node).
    pub repair_scatter: usize,
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
    let exposure = base.exposure(decodable)?;
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
                let r = Trial::run_random(&base, &exposure, p, decodable, i as u64);
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
    Ok(summarize(p, &base, &exposure, &results))
}

fn summarize(p: &Params, base: &Base, exposure: &Exposure, rs: &[TrialResult]) -> Summary {
    let n = rs.len() as f64;
    let total_years = n * p.years;
    let annual = |pt: f64| 1.0 - (1.0 - pt.clamp(0.0, 1.0)).powf(1.0 / p.years);
    let seed = p.seed ^ 0xB007_57A9;
    let per_trial: Vec<f64> = rs.iter().map(|r| 1.0 - (-r.expected_lost).exp()).collect();
    let (pt, [lo, hi]) = bootstrap(&per_trial, seed);
    let lost: Vec<f64> = rs.iter().map(|r| r.expected_lost / p.years).collect();
    let (lost_mean, lost_ci) = bootstrap(&lost, seed + 1);
    let bytes: Vec<f64> = rs.iter().map(|r| r.bytes_lost / p.years).collect();
    let (bytes_mean, bytes_ci) = bootstrap(&bytes, seed + 2);
    let events: Vec<f64> = rs.iter().map(|r| r.loss_events).collect();
    let (ev_mean, [ev_lo, ev_hi]) = bootstrap(&events, seed + 3);
    let per = |e: f64| (e > 0.0).then(|| p.years / e);
    let power: Vec<f64> = rs
        .iter()
        .flat_map(|r| r.power_events.iter().copied())
        .collect();
    let power_p: Vec<f64> = power.iter().map(|e| 1.0 - (-e).exp()).collect();
    let (pp, pp_ci) = bootstrap(&power_p, seed + 4);
    let sum = |f: &dyn Fn(&TrialResult) -> f64| rs.iter().map(f).sum::<f64>();
    let failures = sum(&|r| r.node_failures as f64);
    let read = sum(&|r| r.repair_read_bytes);
    let mut peaks: Vec<f64> = rs.iter().map(|r| r.peak_queue_bytes).collect();
    peaks.sort_by(|a, b| a.total_cmp(b));
    let ttf: Vec<f64> = rs
        .iter()
        .flat_map(|r| r.time_to_full.iter().copied())
        .collect();
    let mut scatter: Vec<usize> = (0..base.nodes)
        .filter(|&i| !base.spare[i])
        .map(|i| base.scatter[i])
        .collect();
    scatter.sort();
    let scheme = base.code.scheme();
    Summary {
        scheme: scheme.to_string(),
        nodes: p.layout.nodes,
        domains: p.layout.domains,
        spares: p.layout.spares,
        ha: p.layout.ha,
        placement: p
            .layout
            .placement()
            .map(|x| x.to_string())
            .unwrap_or_default(),
        loss_model: exposure.model().to_string(),
        overhead: base.stored_bytes / base.data_bytes,
        trials: rs.len(),
        years: p.years,
        seed: p.seed,
        sample_stripes: base.sample(),
        stripes_per_sample: base.weight,
        real_stripes: base.weight * base.sample() as f64,
        stored_bytes: base.stored_bytes,
        loss_probability_per_year: annual(pt),
        // No trial had a failure pattern that could lose anything: the
        // bootstrap sees nothing, so bound the chance that a trial has
        // one (zero events in n trials: 1 - 0.05^(1/n)).
        loss_probability_ci: if rs.iter().all(|r| r.expected_lost <= 0.0) {
            [0.0, annual(1.0 - 0.05f64.powf(1.0 / n))]
        } else {
            [annual(lo), annual(hi)]
        },
        trials_exposed: rs.iter().filter(|r| r.expected_lost > 0.0).count(),
        expected_lost_stripes_per_year: lost_mean,
        expected_lost_stripes_ci: lost_ci,
        expected_loss_events: ev_mean * n,
        mttdl_years: per(ev_mean),
        mttdl_ci: [per(ev_hi), per(ev_lo)],
        expected_bytes_lost_per_year: bytes_mean,
        expected_bytes_lost_ci: bytes_ci,
        power_events: power.len(),
        power_loss_probability_per_event: (!power.is_empty()).then_some(pp),
        power_loss_probability_ci: (!power.is_empty()).then_some(pp_ci),
        power_expected_lost_stripes_per_event: (!power.is_empty())
            .then(|| power.iter().sum::<f64>() / power.len() as f64),
        repair_scatter: scatter.get(scatter.len() / 2).copied().unwrap_or(0),
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

/// Resamples the bootstrap draws.
const BOOTSTRAP_DRAWS: usize = 2000;

/// The mean of `v` and its 95% percentile-bootstrap interval (trials are
/// independent, values need not be normal: most trials contribute almost
/// nothing and a few contribute most). Seeded, so the same inputs give the
/// same interval.
pub fn bootstrap(v: &[f64], seed: u64) -> (f64, [f64; 2]) {
    if v.is_empty() {
        return (0.0, [0.0, 0.0]);
    }
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_DRAWS)
        .map(|_| (0..n).map(|_| v[rng.gen_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| means[((BOOTSTRAP_DRAWS - 1) as f64 * q).round() as usize];
    (mean, [at(0.025), at(0.975)])
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
