//! Validation: the simulator against closed forms, against `fsck --what-if`,
//! and proof that these checks can fail.

use crate::cluster::Base;
use crate::engine::{real_decodable, Decodable};
use crate::model::{Failures, Layout, Params, RepairModel, HOURS_PER_YEAR};
use crate::report::{run, run_with};
use codes::Code;
use protocol::health::{stripe_health, Health, StripeCopies};
use rand::SeedableRng;

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
        placement: "random".into(),
        scatter_width: crate::model::DEFAULT_SCATTER_WIDTH,
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

fn lambda(afr: f64) -> f64 {
    -(1.0 - afr).ln() / HOURS_PER_YEAR
}

/// Share of trials (of `years` each) that lost data, from the annual
/// figure the summary reports.
fn per_trial(annual: f64, years: f64) -> f64 {
    1.0 - (1.0 - annual).powf(years)
}

/// One group of `n` nodes (every stripe on the same nodes) tolerating `m`
/// failures, each failed node's data re-protected exactly `h` hours after
/// its failure: data is lost when `m` more of the other `n - 1` nodes fail
/// within those `h` hours, so losses arrive at the rate
/// `n λ C(n-1, m) (λ h)^m` (first order in λh). Returns P(loss within the
/// run) = 1 - exp(-rate · T).
fn closed_form(n: u64, m: u64, afr: f64, h: f64, years: f64) -> f64 {
    let lambda = lambda(afr);
    let rate = n as f64 * lambda * binom(n - 1, m) * (lambda * h).powi(m as i32);
    1.0 - (-rate * years * HOURS_PER_YEAR).exp()
}

/// The simulated share of trials with a loss agrees with the closed form
/// within the trial count's statistical tolerance (the 95% interval,
/// widened by 10% of the expected value for the first-order
/// approximation).
fn check_closed_form(parity: &str, r: u32, n: usize, m: u64, afr: f64, h: f64, years: f64) {
    let trials = 2000;
    let p = params(layout(n, n, parity, r, false), afr, h, years, trials);
    let s = run(&p, &|| {}).unwrap();
    let want = closed_form(n as u64, m, afr, h, years);
    let got = per_trial(s.loss_probability_per_year, years);
    let lo = per_trial(s.loss_probability_ci[0], years);
    let hi = per_trial(s.loss_probability_ci[1], years);
    let slack = 0.1 * want;
    assert!(
        lo - slack <= want && want <= hi + slack,
        "{parity} R={r} on {n} nodes: simulated {got:.4} per run (95% {lo:.4}..{hi:.4}), \
         closed form {want:.4}"
    );
    // Enough losses for the comparison to mean something.
    assert!(got > 0.05, "{got}");
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
        b.expected_loss_events > 2.5 * a.expected_loss_events,
        "{} vs {}",
        a.expected_loss_events,
        b.expected_loss_events
    );
}

/// The first case, at full scale: 20 nodes, replication 2, AFR
/// 20%, 24 h to re-protect, 4 TB at 50% (298,000 real stripes, ~1,570 on
/// every pair of nodes, so any second failure within a day loses data).
/// Classic MTTDL: losses at `N (N-1) λ² h` per hour. Returns (simulated
/// annual probability, its interval, closed form).
fn r2_20_nodes(sample: usize, trials: usize) -> (f64, [f64; 2], f64) {
    let mut l = layout(20, 20, "none", 2, false);
    l.capacity = "4TB".into();
    let mut p = params(l, 0.2, 24.0, 10.0, trials);
    p.sample_stripes = Some(sample);
    let s = run(&p, &|| {}).unwrap();
    assert!(s.real_stripes > 290_000.0 && s.real_stripes < 310_000.0);
    let lam = lambda(0.2);
    let rate = 20.0 * 19.0 * lam * lam * 24.0 * HOURS_PER_YEAR;
    (
        s.loss_probability_per_year,
        s.loss_probability_ci,
        1.0 - (-rate).exp(),
    )
}

#[test]
fn r2_at_scale_matches_mttdl() {
    let (got, ci, want) = r2_20_nodes(300, 400);
    eprintln!(
        "R2 20 nodes: simulated {got:.4} ({:.4}..{:.4}), closed form {want:.4}",
        ci[0], ci[1]
    );
    assert!(got / want < 1.5 && want / got < 1.5, "{got} vs {want}");
    assert!(
        ci[0] * 0.95 <= want && want <= ci[1] * 1.05,
        "{ci:?} vs {want}"
    );
}

/// The answer does not move with `--sample-stripes` beyond its interval
/// (the old method's did: 1.4%, 2.1%, 2.6% for this layout).
#[test]
fn answer_does_not_depend_on_sample() {
    let (a, ca, _) = r2_20_nodes(40, 200);
    let (b, cb, _) = r2_20_nodes(2000, 200);
    eprintln!("sample 40: {a:.4} {ca:?}; sample 2000: {b:.4} {cb:?}");
    assert!(ca[0] <= b && b <= ca[1], "{b} outside {ca:?}");
    assert!(cb[0] <= a && a <= cb[1], "{a} outside {cb:?}");
}

/// Many nodes, R=2: 1,000 nodes, AFR 1%, 24 h, 3.7 million stripes
/// (7.5 per pair of nodes, so an overlap loses data with probability
/// 1 - e^-7.5). Expected lost stripes per year, closed form:
/// `N (N-1) λ² h · S / C(N, 2)`.
#[test]
fn r2_1000_nodes_matches_closed_form() {
    let mut p = params(layout(1000, 1000, "none", 2, false), 0.01, 24.0, 10.0, 100);
    p.sample_stripes = Some(2000);
    let s = run(&p, &|| {}).unwrap();
    let n = 1000.0;
    let lam = lambda(0.01);
    let overlaps = n * (n - 1.0) * lam * lam * 24.0 * HOURS_PER_YEAR;
    let per = s.real_stripes / binom(1000, 2);
    let want_lost = overlaps * per;
    let want_p = 1.0 - (-overlaps * (1.0 - (-per).exp())).exp();
    eprintln!(
        "R2 1000 nodes: lost/yr {:.3} ({:.3}..{:.3}) vs {want_lost:.3}; P/yr {:.4} ({:.4}..{:.4}) vs {want_p:.4}",
        s.expected_lost_stripes_per_year,
        s.expected_lost_stripes_ci[0],
        s.expected_lost_stripes_ci[1],
        s.loss_probability_per_year,
        s.loss_probability_ci[0],
        s.loss_probability_ci[1]
    );
    let r = s.expected_lost_stripes_per_year / want_lost;
    assert!((1.0 / 1.5..1.5).contains(&r), "lost ratio {r}");
    let r = s.loss_probability_per_year / want_p;
    assert!((1.0 / 1.5..1.5).contains(&r), "probability ratio {r}");
}

/// R=3 at 10^7 stripes: 1,000 nodes, 4 TB at 50%, AFR 10%, 24 h. A loss
/// needs a third failure while two others are impaired: triples at
/// `N λ (N-1)(N-2) λ² h²/2` per hour, each losing `S / C(N, 3)` stripes
/// on average.
#[test]
fn r3_ten_million_stripes_matches_closed_form() {
    let mut l = layout(1000, 1000, "none", 3, false);
    l.capacity = "4TB".into();
    let mut p = params(l, 0.1, 24.0, 5.0, 40);
    p.sample_stripes = Some(3000);
    let s = run(&p, &|| {}).unwrap();
    assert!(
        s.real_stripes > 9.9e6 && s.real_stripes < 1.0e7 + 1e5,
        "{}",
        s.real_stripes
    );
    let n = 1000.0;
    let lam = lambda(0.1);
    let triples = n * (n - 1.0) * (n - 2.0) * lam.powi(3) * 24.0f64.powi(2) / 2.0 * HOURS_PER_YEAR;
    let want = triples * s.real_stripes / binom(1000, 3);
    let got = s.expected_lost_stripes_per_year;
    eprintln!(
        "R3 1e7 stripes: lost/yr {got:.3} ({:.3}..{:.3}) vs closed form {want:.3}",
        s.expected_lost_stripes_ci[0], s.expected_lost_stripes_ci[1]
    );
    assert!(got / want < 1.5 && want / got < 1.5, "{got} vs {want}");
}

/// P(absorbed in "lost") within `hours` of the birth-death chain of
/// failed nodes: from `i` failed, failures at `(n - i) λ`, repairs at
/// `i μ`; absorbed at `m + 1` failed. Integrated with RK4.
fn markov_loss(n: usize, m: usize, lambda: f64, mu: f64, hours: f64) -> f64 {
    let states = m + 2;
    let deriv = |p: &[f64]| {
        let mut d = vec![0.0; states];
        for i in 0..=m {
            let fail = (n - i) as f64 * lambda;
            let repair = i as f64 * mu;
            d[i] -= (fail + repair) * p[i];
            d[i + 1] += fail * p[i];
            if i > 0 {
                d[i - 1] += repair * p[i];
            }
        }
        d
    };
    let mut p = vec![0.0; states];
    p[0] = 1.0;
    let dt = 0.5;
    let steps = (hours / dt) as usize;
    for _ in 0..steps {
        let k1 = deriv(&p);
        let a: Vec<f64> = p.iter().zip(&k1).map(|(x, k)| x + dt / 2.0 * k).collect();
        let k2 = deriv(&a);
        let b: Vec<f64> = p.iter().zip(&k2).map(|(x, k)| x + dt / 2.0 * k).collect();
        let k3 = deriv(&b);
        let c: Vec<f64> = p.iter().zip(&k3).map(|(x, k)| x + dt * k).collect();
        let k4 = deriv(&c);
        for i in 0..states {
            p[i] += dt / 6.0 * (k1[i] + 2.0 * k2[i] + 2.0 * k3[i] + k4[i]);
        }
    }
    p[m + 1]
}

/// rs:6+3 on its 9 nodes against the Markov chain (exponential repair of
/// mean h, each failed node on its own): within 1.5x and inside the
/// interval widened by 10%.
#[test]
fn rs_6_3_matches_markov_chain() {
    let (afr, h, years) = (0.5, 600.0, 5.0);
    let p = params(layout(9, 9, "rs:6+3", 1, false), afr, h, years, 300);
    let s = run(&p, &|| {}).unwrap();
    let want = markov_loss(9, 3, lambda(afr), 1.0 / h, years * HOURS_PER_YEAR);
    let got = per_trial(s.loss_probability_per_year, years);
    let lo = per_trial(s.loss_probability_ci[0], years);
    let hi = per_trial(s.loss_probability_ci[1], years);
    eprintln!("rs:6+3: simulated {got:.4} ({lo:.4}..{hi:.4}) per run, Markov {want:.4}");
    assert!(got / want < 1.5 && want / got < 1.5, "{got} vs {want}");
    assert!(lo * 0.9 <= want && want <= hi * 1.1, "{lo}..{hi} vs {want}");
}

/// The second case: 5,000 nodes, replication 3, 1 TB at 64%
/// (15.9 million stripes), 50 nodes failing at once. Expected stripes
/// with all three copies on failed nodes: `S C(50,3) / C(5000,3)`, about
/// 15; the scenario must say so within 2x, and P(loss) near 1.
#[test]
fn fifty_of_five_thousand_nodes() {
    let mut l = layout(5000, 5000, "none", 3, false);
    l.fill = "64%".into();
    let mut p = params(l, 0.0, 24.0, 1.0, 1);
    p.sample_stripes = Some(1500);
    let r = crate::scenario::run(&p, "fail 50 nodes at 1d", &real_decodable).unwrap();
    let stripes = 5000.0 * 1e12 * 0.64 / (3.0 * 64.0 * 1024.0 * 1024.0);
    let want = stripes * binom(50, 3) / binom(5000, 3);
    let got = r.steps[0].lost_by_step;
    eprintln!(
        "50 of 5000: {got:.2} expected lost stripes vs {want:.2}; range {:?}",
        r.steps[0].lost_range
    );
    assert!(got / want < 2.0 && want / got < 2.0, "{got} vs {want}");
    assert!(r.steps[0].loss_probability > 0.999);
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
            power_per_year: 0.5,
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
    let sim_lost = r.steps[0].lost > 1e-9 || r.settled.lost > 1e-9;
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
    assert!(
        real.loss_probability_per_year < 0.01,
        "{}",
        real.loss_probability_per_year
    );
    assert!(
        bad.loss_probability_per_year > 0.5,
        "{}",
        bad.loss_probability_per_year
    );
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

/// The default placement spreads stripes over node sets: every pair of a
/// 20-node R=2 cluster is used, and a large cluster's stripes do not
/// repeat sets (before the tie-break fix they sat on 10 pairs and on 432
/// sets for 924 lrc:12+2+2 stripes over 484 nodes).
#[test]
fn default_placement_spreads_over_node_sets() {
    let distinct = |b: &Base| {
        b.file
            .stripes
            .iter()
            .map(|s| {
                let mut v: Vec<String> = s
                    .members()
                    .flat_map(|(_, c)| c.nodes.iter().map(|x| x.to_string()))
                    .collect();
                v.sort();
                v
            })
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let b = Base::new(&layout(20, 20, "none", 2, false), Some(2000)).unwrap();
    assert_eq!(distinct(&b), 190);
    let b = Base::new(&layout(484, 11, "lrc:12+2+2", 1, false), Some(924)).unwrap();
    assert!(distinct(&b) > 900, "{}", distinct(&b));
    let e = b.exposure(&real_decodable).unwrap();
    assert_eq!(*e.model(), crate::exposure::Model::Spread);
}

fn copyset_layout(placement: &str) -> Layout {
    let mut l = layout(500, 500, "none", 3, false);
    l.capacity = "4TB".into();
    l.placement = placement.into();
    l.scatter_width = 10;
    l
}

/// Mean P(loss) over `events` power events failing `k` of the 500 nodes
/// at once (each in a fresh cluster), and the copyset count.
fn power_events(placement: &str, k: usize, events: u64) -> (f64, usize) {
    let p = params(copyset_layout(placement), 0.0, 24.0, 1.0, 1);
    let mut p = p;
    p.sample_stripes = Some(600);
    let base = Base::new(&p.layout, p.sample_stripes).unwrap();
    let ex = base.exposure(&real_decodable).unwrap();
    let mut sum = 0.0;
    for i in 0..events {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(100 + i);
        rng.set_stream(i);
        let mut t = crate::engine::Trial::new(&base, &ex, &p, &real_decodable, rng);
        let nodes = t.random_live(k);
        sum += 1.0 - (-t.fail_nodes(&nodes)).exp();
    }
    (
        sum / events as f64,
        base.copysets.as_ref().map_or(0, |c| c.len()),
    )
}

/// Copysets make a correlated failure lose data far less often: 25 of
/// 500 nodes (5%) at once, R=3, scatter width 10. Closed forms computed
/// here: random placement loses `S C(25,3)/C(500,3)` ≈ 550 stripes
/// (P ≈ 1); with C copysets P = 1 - (1 - C(25,3)/C(500,3))^C.
#[test]
fn copysets_make_power_events_rarer() {
    let (random, _) = power_events("random", 25, 20);
    assert!(random > 0.999, "{random}");
    let (cs, sets) = power_events("copysets", 25, 400);
    let pc = binom(25, 3) / binom(500, 3);
    let want = 1.0 - (1.0 - pc).powi(sets as i32);
    eprintln!("25 of 500 nodes: random {random:.4}, copysets {cs:.4} vs closed form {want:.4} ({sets} copysets)");
    assert!(cs / want < 1.5 && want / cs < 1.5, "{cs} vs {want}");
}

/// Copysets' cost, measured by the same simulator: a failed node's
/// repair reads from its few copyset mates, so re-protection is slower.
#[test]
fn copysets_repair_is_slower() {
    let run_one = |placement: &str| {
        let mut p = params(copyset_layout(placement), 0.0, 24.0, 1.0, 1);
        p.repair.fixed_hours = None;
        p.sample_stripes = Some(600);
        let r = crate::scenario::run(&p, "fail 1 node at 1d", &real_decodable).unwrap();
        r.full_protection_hours.unwrap()
    };
    let (random, cs) = (run_one("random"), run_one("copysets"));
    eprintln!("re-protection after one failure: random {random:.2} h, copysets {cs:.2} h");
    assert!(cs > 5.0 * random, "{cs} vs {random}");
}
