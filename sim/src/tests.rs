//! Validation: the simulator against closed forms, against `fsck --what-if`,
//! and proof that these checks can fail.

use crate::cluster::Base;
use crate::engine::{real_decodable, Decodable};
use crate::model::{Failures, Layout, Params, RepairModel, HOURS_PER_YEAR};
use crate::report::{run, run_with, wilson};
use codes::Code;
use protocol::health::{stripe_health, Health, StripeCopies};

fn layout(nodes: usize, domains: usize, parity: &str, r: u32, ha: bool) -> Layout {
    Layout {
        nodes,
        domains,
        spares: 0,
        parity: parity.into(),
        replication: r,
        ha,
        capacity: "1TB".into(),
        fill: "50%".into(),
        chunk: "64MiB".into(),
    }
}

fn params(layout: Layout, afr: f64, hours: f64, years: f64, trials: usize) -> Params {
    Params {
        layout,
        failures: Failures {
            afr,
            replace_days: 0.0,
            ..Failures::default()
        },
        repair: RepairModel {
            fixed_hours: Some(hours),
            ..RepairModel::default()
        },
        years,
        trials,
        seed: 11,
        sample_stripes: Some(4),
        threads: 2,
    }
}

fn binom(n: u64, k: u64) -> f64 {
    (0..k).fold(1.0, |a, i| a * (n - i) as f64 / (i + 1) as f64)
}

/// One group of `n` nodes (every stripe on the same nodes) tolerating `m`
/// failures, each failed node's data re-protected exactly `h` hours after
/// its failure: data is lost when `m` more of the other `n - 1` nodes fail
/// within those `h` hours, so losses arrive at the rate
/// `n λ C(n-1, m) (λ h)^m` (first order in λh). Returns P(loss within the
/// run) = 1 - exp(-rate · T).
fn closed_form(n: u64, m: u64, afr: f64, h: f64, years: f64) -> f64 {
    let lambda = -(1.0 - afr).ln() / HOURS_PER_YEAR;
    let rate = n as f64 * lambda * binom(n - 1, m) * (lambda * h).powi(m as i32);
    1.0 - (-rate * years * HOURS_PER_YEAR).exp()
}

/// The simulated share of trials with a loss agrees with the closed form
/// within the trial count's statistical tolerance (a 99.9% Wilson
/// interval, widened by 10% of the expected value for the first-order
/// approximation).
fn check_closed_form(parity: &str, r: u32, n: usize, m: u64, afr: f64, h: f64, years: f64) {
    let trials = 2000;
    let p = params(layout(n, n, parity, r, false), afr, h, years, trials);
    let s = run(&p, &|| {}).unwrap();
    let want = closed_form(n as u64, m, afr, h, years);
    let (lo, hi) = wilson(s.trials_with_loss as f64, trials as f64, 3.29);
    let slack = 0.1 * want;
    assert!(
        lo - slack <= want && want <= hi + slack,
        "{parity} R={r} on {n} nodes: simulated {} of {trials} trials lost data \
         (99.9% interval {lo:.4}..{hi:.4}), closed form {want:.4}",
        s.trials_with_loss
    );
    // Enough losses for the comparison to mean something.
    assert!(s.trials_with_loss >= 100, "{}", s.trials_with_loss);
}

#[test]
fn replication_2_matches_closed_form() {
    check_closed_form("none", 2, 2, 1, 0.5, 100.0, 20.0);
}

#[test]
fn replication_3_matches_closed_form() {
    check_closed_form("none", 3, 3, 2, 0.8, 250.0, 30.0);
}

#[test]
fn rs_4_2_matches_closed_form() {
    check_closed_form("rs:4+2", 1, 6, 2, 0.5, 150.0, 20.0);
}

/// The fixed repair time matters as the closed form says: doubling it
/// raises the loss rate of replication 2 about twofold (a simulator that
/// ignored repair time would fail this).
#[test]
fn repair_time_drives_losses() {
    let a = run(
        &params(layout(2, 2, "none", 2, false), 0.5, 50.0, 20.0, 2000),
        &|| {},
    )
    .unwrap();
    let b = run(
        &params(layout(2, 2, "none", 2, false), 0.5, 200.0, 20.0, 2000),
        &|| {},
    )
    .unwrap();
    assert!(
        b.trials_with_loss as f64 > 2.5 * a.trials_with_loss as f64,
        "{} vs {}",
        a.trials_with_loss,
        b.trials_with_loss
    );
}

/// Same seed and inputs: the same document, bit for bit, whatever the
/// thread count.
#[test]
fn deterministic() {
    let mut p = Params {
        layout: layout(40, 5, "lrc:6+2+2", 1, true),
        failures: Failures {
            afr: 0.3,
            transient_per_year: 1.0,
            lse_per_year: 5.0,
            domain_afr: 0.05,
            ..Failures::default()
        },
        repair: RepairModel {
            node_mbps: 20.0,
            ..RepairModel::default()
        },
        years: 2.0,
        trials: 6,
        seed: 5,
        sample_stripes: Some(60),
        threads: 1,
    };
    let a = serde_json::to_string(&run(&p, &|| {}).unwrap()).unwrap();
    p.threads = 2;
    let b = serde_json::to_string(&run(&p, &|| {}).unwrap()).unwrap();
    assert_eq!(a, b);
    p.seed = 6;
    let c = serde_json::to_string(&run(&p, &|| {}).unwrap()).unwrap();
    assert_ne!(a, c, "the seed must matter");
}

/// What `fsck --what-if domain=D` computes: the health of every stripe
/// with the domain's copies gone (the same `protocol::health` function).
fn what_if_lost(base: &Base, domain: usize) -> usize {
    let gone: Vec<protocol::NodeId> = base
        .domain_nodes(domain)
        .into_iter()
        .map(|i| base.ids[i].clone())
        .collect();
    let count =
        |c: &decide::entry::ChunkEntry| c.nodes.iter().filter(|n| !gone.contains(n)).count() as u32;
    base.file
        .stripes
        .iter()
        .filter(|s| {
            let copies = StripeCopies {
                data: s.data.iter().map(count).collect(),
                parity: s.parity.iter().map(count).collect(),
            };
            stripe_health(&base.code, &copies, base.file.replication) == Health::Lost
        })
        .count()
}

/// Compares `fsck --what-if` after one domain failure with a scenario run
/// of the same failure (repair running): the two must agree on whether
/// data is lost.
fn what_if_agrees(p: &Params, domain: usize, decodable: &Decodable) -> Result<(), String> {
    let base = Base::new(&p.layout, p.sample_stripes).map_err(|e| e.to_string())?;
    let what_if = what_if_lost(&base, domain);
    let r = crate::scenario::run(p, &format!("fail domain d{domain} at 1d"), decodable)
        .map_err(|e| e.to_string())?;
    let sim_lost = r.steps[0].lost > 0.0 || r.settled.lost > 0.0;
    if (what_if > 0) == sim_lost {
        Ok(())
    } else {
        Err(format!(
            "fsck --what-if loses {what_if} stripes, the scenario run loses {} (settled {})",
            r.steps[0].lost, r.settled.lost
        ))
    }
}

fn ha_params() -> Params {
    Params {
        layout: layout(60, 6, "lrc:6+2+2", 1, true),
        failures: Failures::default(),
        repair: RepairModel::default(),
        years: 1.0,
        trials: 1,
        seed: 3,
        sample_stripes: Some(200),
        threads: 1,
    }
}

/// A layout `fsck --what-if` calls safe after any one domain failure is
/// never reported as losing data by a scenario run of that failure.
#[test]
fn what_if_safe_means_no_loss_in_scenario() {
    let p = ha_params();
    let base = Base::new(&p.layout, p.sample_stripes).unwrap();
    for d in 0..p.layout.domains {
        assert_eq!(what_if_lost(&base, d), 0, "HA placement is safe for d{d}");
        what_if_agrees(&p, d, &real_decodable).unwrap();
    }
}

/// The checks can fail: a broken decodability rule fed to the simulator
/// makes it disagree with `fsck --what-if`, and makes a random run lose
/// data the real rule keeps.
#[test]
fn broken_decodability_is_caught() {
    let broken = |_: &Code, _: usize, lost: &[usize]| lost.is_empty();
    let p = ha_params();
    let e = what_if_agrees(&p, 0, &broken).unwrap_err();
    assert!(e.contains("what-if loses 0"), "{e}");

    let mut q = params(layout(12, 4, "rs:4+2", 1, false), 0.3, 24.0, 2.0, 20);
    q.sample_stripes = Some(30);
    let real = run(&q, &|| {}).unwrap();
    let bad = run_with(&q, &broken, &|| {}).unwrap();
    assert_eq!(real.trials_with_loss, 0);
    assert!(bad.trials_with_loss > 0);
}

/// A placement without HA is caught by the same comparison: what-if says
/// a domain failure loses data, and the scenario run agrees.
#[test]
fn placement_without_ha_loses_a_domain() {
    let mut p = ha_params();
    p.layout = layout(12, 2, "rs:4+2", 1, false);
    let base = Base::new(&p.layout, p.sample_stripes).unwrap();
    assert!(what_if_lost(&base, 0) > 0);
    what_if_agrees(&p, 0, &real_decodable).unwrap();
}
