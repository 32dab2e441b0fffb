//! `dfs-sim chaos` end to end: a short run against a real local cluster
//! passes, and the same checker fails a coordinator with a known bug (the
//! test-only `DFS_TEST_BUG=ack-before-fsync`), so a pass means something.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dfs-sim");

fn chaos(args: &[&str], envs: &[(&str, &str)]) -> (Output, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run");
    let mut cmd = Command::new(BIN);
    cmd.arg("chaos")
        .args(args)
        .arg("--run-dir")
        .arg(&run_dir)
        // Generous: a loaded 2-core box heals slowly; a pass never waits
        // for this unless the cluster is stuck.
        .args(["--heal-timeout", "90s"])
        .env_remove("DFS_TEST_BUG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text, dir)
}

/// The counts of the final "verdict: ... (lost=N wrong=N resurrected=N
/// orphans=N)" line.
fn verdict(text: &str) -> [u64; 4] {
    let line = text
        .lines()
        .find(|l| l.starts_with("verdict: "))
        .unwrap_or_else(|| panic!("no verdict line in:\n{text}"));
    let mut out = [0u64; 4];
    for (i, key) in ["lost=", "wrong=", "resurrected=", "orphans="]
        .iter()
        .enumerate()
    {
        let rest = &line[line.find(key).unwrap() + key.len()..];
        let n: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        out[i] = n.parse().unwrap();
    }
    out
}

fn assert_passes(seed: &str, duration: &str) {
    let (out, text, dir) = chaos(&["--duration", duration, "--seed", seed], &[]);
    assert!(
        out.status.success(),
        "chaos --seed {seed} failed (replay: dfs-sim chaos --duration {duration} --seed {seed}):\n{text}"
    );
    assert_eq!(verdict(&text), [0, 0, 0, 0], "{text}");
    // It did something: faults were injected and operations acknowledged.
    assert!(text.contains("| total         |"), "{text}");
    let history = std::fs::read_to_string(dir.path().join("run/history.jsonl")).unwrap();
    assert!(
        history.contains("\"type\":\"fault\""),
        "no fault in the history"
    );
    assert!(
        history.contains("\"outcome\":\"ok\""),
        "no ok op in the history"
    );
}

#[test]
fn short_run_with_a_fixed_seed_passes() {
    assert_passes("42", "20s");
}

#[test]
fn short_run_with_a_random_seed_passes() {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        ^ u64::from(std::process::id());
    println!("chaos random seed {seed} (replay: dfs-sim chaos --duration 10s --seed {seed})");
    assert_passes(&seed.to_string(), "10s");
}

#[test]
fn catches_a_coordinator_that_acks_before_its_journal_is_durable() {
    let (out, text, _dir) = chaos(
        &["--duration", "8s", "--seed", "7", "--faults", "coord-kill"],
        &[("DFS_TEST_BUG", "ack-before-fsync")],
    );
    assert!(!out.status.success(), "the bug went unnoticed:\n{text}");
    let [lost, wrong, ..] = verdict(&text);
    assert!(lost > 0, "no lost write reported:\n{text}");
    assert_eq!(wrong, 0, "{text}");
    assert!(text.contains("found violations"), "{text}");
}
