//! Scenario runs: a scripted sequence of failures, repair running in
//! between, and the cluster's health after each step — `fsck --what-if`
//! with time and repair.
//!
//! Syntax: steps separated by `;`, each `fail domain D at T`,
//! `fail node ID at T` or `fail N nodes at T` (N nodes picked with the
//! seeded RNG among those still working). Times are sums like `1d+1h`.

use crate::cluster::{node_id, node_index, Base};
use crate::engine::{Decodable, Trial};
use crate::error::{bad, Result};
use crate::model::{parse_time, Failures, Params};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Domain(String),
    Node(String),
    Nodes(usize),
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
            ["fail", n, "nodes" | "node"] => match n.parse::<usize>() {
                Ok(n) if n > 0 => Action::Nodes(n),
                _ => return bad(format!("{part:?}: {n:?} is not a node count")),
            },
            _ => {
                return bad(format!(
                    "{part:?}: expected `fail domain D`, `fail node ID` or `fail N nodes`"
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
    pub lost: f64,
    pub lost_bytes: f64,
    pub repairs_in_flight: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scheme: String,
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
    let mut t = Trial::new(&base, &p, decodable, ChaCha8Rng::seed_from_u64(p.seed));
    let mut out = Vec::new();
    let first = steps[0].at_hours;
    for st in &steps {
        t.run_until(st.at_hours);
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
            Action::Nodes(k) => {
                let mut live: Vec<usize> = (0..base.nodes).filter(|&i| !t.is_failed(i)).collect();
                live.shuffle(t.rng());
                live.truncate(*k);
                live.sort();
                live
            }
        };
        t.fail_nodes(&nodes);
        out.push(state(&t, &base, describe(&st.action), &nodes));
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
    }
}

fn state(t: &Trial, base: &Base, event: String, nodes: &[usize]) -> State {
    let [h, d, r, l] = t.health_counts();
    let w = base.weight;
    State {
        at_hours: t.now,
        event,
        failed: nodes.iter().map(|&i| node_id(i).to_string()).collect(),
        healthy: h as f64 * w,
        degraded: d as f64 * w,
        at_risk: r as f64 * w,
        lost: l as f64 * w,
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
        assert!(parse("fail node n1 at 2d; fail node n2 at 1d").is_err());
    }
}
