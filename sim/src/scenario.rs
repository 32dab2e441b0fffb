//! Scenario runs: a scripted sequence of failures, repair running in
//! between, and the cluster's health after each step — `fsck --what-if`
//! with time and repair.
//!
//! Syntax: steps separated by `;`, each `fail domain D at T`,
//! `fail node ID at T`, `fail N nodes at T` or `fail P% of nodes at T`
//! (nodes picked with the seeded RNG among those still working: a rack-row
//! power outage, the nodes that do not come back). Times are sums like
//! `1d+1h`.
//!
//! Losses are the exposure method's (`crate::exposure`): the expected
//! number of real stripes made undecodable, `P(loss) = 1 - exp(-E)`, and a
//! 95% range of the lost count (Poisson).

use crate::cluster::{node_id, node_index, Base};
use crate::engine::{Decodable, Trial};
use crate::error::{bad, Result};
use crate::model::{parse_time, Failures, Params};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Domain(String),
    Node(String),
    Nodes(usize),
    /// A share of all nodes, `(0, 1]`.
    Fraction(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub at_hours: f64,
    pub action: Action,
}

pub fn parse(s: &str) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let words: Vec<&str> = part.split_whitespace().collect();
        let (what, at) = match words.iter().position(|w| *w == "at") {
            Some(i) if i + 1 < words.len() => (&words[..i], words[i + 1..].join("")),
            _ => return bad(format!("{part:?}: expected `fail ... at TIME`")),
        };
        let action = match what {
            ["fail", "domain", d] => Action::Domain(d.to_string()),
            ["fail", "node", n] => Action::Node(n.to_string()),
            ["fail", n, "of", "nodes"] | ["fail", n, "nodes" | "node"] if n.ends_with('%') => {
                match crate::model::parse_percent(n) {
                    Ok(f) if f > 0.0 && f <= 1.0 => Action::Fraction(f),
                    _ => return bad(format!("{part:?}: {n:?} is not a share of nodes")),
                }
            }
            ["fail", n, "nodes" | "node"] => match n.parse::<usize>() {
                Ok(n) if n > 0 => Action::Nodes(n),
                _ => return bad(format!("{part:?}: {n:?} is not a node count")),
            },
            _ => {
                return bad(format!(
                    "{part:?}: expected `fail domain D`, `fail node ID`, `fail N nodes` or `fail P% of nodes`"
                ))
            }
        };
        steps.push(Step {
            at_hours: parse_time(&at)?,
            action,
        });
    }
    if steps.is_empty() {
        return bad("the scenario has no steps (try \"fail domain d3 at 1d\")");
    }
    if steps.windows(2).any(|w| w[1].at_hours < w[0].at_hours) {
        return bad("scenario steps must be in time order");
    }
    Ok(steps)
}

/// Health of the cluster at one moment, in real stripes.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub at_hours: f64,
    pub event: String,
    pub failed: Vec<String>,
    pub healthy: f64,
    pub degraded: f64,
    pub at_risk: f64,
    /// Expected real stripes lost so far (every real stripe counted, see
    /// `crate::exposure`), and by this step alone.
    pub lost: f64,
    pub lost_by_step: f64,
    /// Probability that this step lost any data, `1 - exp(-lost_by_step)`.
    pub loss_probability: f64,
    /// 95% range of the number of real stripes this step lost (Poisson).
    pub lost_range: [u64; 2],
    pub lost_bytes: f64,
    pub repairs_in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scheme: String,
    pub placement: String,
    /// How loss was computed (`crate::exposure::Model`).
    pub loss_model: String,
    pub nodes: usize,
    pub domains: usize,
    pub sample_stripes: usize,
    pub stripes_per_sample: f64,
    pub steps: Vec<State>,
    /// Once repair has nothing left to do.
    pub settled: State,
    /// Hours from the first failure until every stripe is fully protected
    /// again (`None`: never, within a year after the last step).
    pub full_protection_hours: Option<f64>,
    pub repair_read_bytes: f64,
}

/// Runs `scenario` on `p`'s layout and repair model (random failures off).
pub fn run(p: &Params, scenario: &str, decodable: &Decodable) -> Result<Report> {
    let steps = parse(scenario)?;
    p.layout.validate()?;
    let mut p = p.clone();
    p.failures = Failures {
        afr: 0.0,
        domain_afr: 0.0,
        transient_per_year: 0.0,
        lse_per_year: 0.0,
        ..p.failures.clone()
    };
    let base = Base::new(&p.layout, p.sample_stripes)?;
    let exposure = base.exposure(decodable)?;
    let mut t = Trial::new(
        &base,
        &exposure,
        &p,
        decodable,
        ChaCha8Rng::seed_from_u64(p.seed),
    );
    let mut out = Vec::new();
    let first = steps[0].at_hours;
    for st in &steps {
        t.run_until(st.at_hours);
        let mut domain = None;
        let nodes: Vec<usize> = match &st.action {
            Action::Domain(d) => {
                let Some(di) = d
                    .strip_prefix('d')
                    .and_then(|x| x.parse::<usize>().ok())
                    .filter(|&x| x < base.layout.domains)
                else {
                    return bad(format!(
                        "no domain {d:?}: domains are d0..d{}",
                        base.layout.domains - 1
                    ));
                };
                domain = Some(di);
                base.domain_nodes(di)
            }
            Action::Node(n) => match protocol::NodeId::new(n)
                .ok()
                .and_then(|id| node_index(&id))
                .filter(|&i| i < base.nodes)
            {
                Some(i) => vec![i],
                None => {
                    return bad(format!(
                        "no node {n:?}: nodes are {}..{}",
                        node_id(0),
                        node_id(base.nodes - 1)
                    ))
                }
            },
            Action::Nodes(k) => t.random_live(*k),
            Action::Fraction(f) => t.random_live(((f * base.nodes as f64).round() as usize).max(1)),
        };
        let e = match domain {
            Some(d) => {
                let nodes: Vec<usize> =
                    nodes.iter().copied().filter(|&i| !t.is_failed(i)).collect();
                t.fail_domain(d, &nodes)
            }
            None => t.fail_nodes(&nodes),
        };
        let mut s = state(&t, &base, describe(&st.action), &nodes);
        s.lost_by_step = e;
        s.loss_probability = 1.0 - (-e).exp();
        s.lost_range = poisson_range(e);
        out.push(s);
    }
    // Let repair finish (at most a year of simulated time).
    let mut horizon = t.now;
    let mut full = None;
    while horizon < first + 366.0 * 24.0 + t.now {
        if t.reduced_count() == 0 && t.in_flight() == 0 {
            full = Some(t.now - first);
            break;
        }
        match t.next_event() {
            Some(next) if next.is_finite() => {
                horizon = next;
                t.run_until(next);
            }
            _ => break,
        }
    }
    let settled = state(&t, &base, "repair settled".into(), &[]);
    Ok(Report {
        scheme: base.code.scheme().to_string(),
        placement: p.layout.placement()?.to_string(),
        loss_model: exposure.model().to_string(),
        nodes: base.nodes,
        domains: base.layout.domains,
        sample_stripes: base.sample(),
        stripes_per_sample: base.weight,
        steps: out,
        settled,
        full_protection_hours: full,
        repair_read_bytes: t.out.repair_read_bytes,
    })
}

fn describe(a: &Action) -> String {
    match a {
        Action::Domain(d) => format!("fail domain {d}"),
        Action::Node(n) => format!("fail node {n}"),
        Action::Nodes(k) => format!("fail {k} nodes"),
        Action::Fraction(f) => format!("fail {}% of nodes", f * 100.0),
    }
}

/// The 2.5% and 97.5% quantiles of a Poisson count with mean `m`.
pub fn poisson_range(m: f64) -> [u64; 2] {
    if m <= 0.0 {
        return [0, 0];
    }
    if m > 1000.0 {
        let s = m.sqrt();
        return [(m - 1.96 * s).max(0.0) as u64, (m + 1.96 * s).ceil() as u64];
    }
    let mut cdf = 0.0;
    let mut pmf = (-m).exp();
    let (mut lo, mut k) = (None, 0u64);
    loop {
        cdf += pmf;
        if lo.is_none() && cdf >= 0.025 {
            lo = Some(k);
        }
        if cdf >= 0.975 {
            return [lo.unwrap_or(k), k];
        }
        k += 1;
        pmf *= m / k as f64;
    }
}

fn state(t: &Trial, base: &Base, event: String, nodes: &[usize]) -> State {
    let [h, d, r, _] = t.health_counts();
    let w = base.weight;
    State {
        at_hours: t.now,
        event,
        failed: nodes.iter().map(|&i| node_id(i).to_string()).collect(),
        healthy: h as f64 * w,
        degraded: d as f64 * w,
        at_risk: r as f64 * w,
        lost: t.out.expected_lost,
        lost_by_step: 0.0,
        loss_probability: 0.0,
        lost_range: [0, 0],
        lost_bytes: t.out.bytes_lost,
        repairs_in_flight: t.in_flight(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_steps() {
        let s = parse("fail domain d3 at 1d; fail 2 nodes at 1d+1h").unwrap();
        assert_eq!(s[0].action, Action::Domain("d3".into()));
        assert_eq!(s[1].action, Action::Nodes(2));
        assert!((s[1].at_hours - 25.0).abs() < 1e-9);
        assert!(parse("explode at 1d").is_err());
        let s = parse("fail 1% of nodes at 2h; fail 0.5% nodes at 3h").unwrap();
        assert_eq!(s[0].action, Action::Fraction(0.01));
        assert_eq!(s[1].action, Action::Fraction(0.005));
        assert!(parse("fail 0% of nodes at 1h").is_err());
        assert_eq!(poisson_range(15.0), [8, 23]);
        assert!(parse("fail node n1 at 2d; fail node n2 at 1d").is_err());
    }
}
