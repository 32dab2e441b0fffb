//! The cluster heals itself. A node killed with SIGKILL is declared dead and
//! every chunk it held is re-protected from the survivors (replica copies or
//! XOR rebuilds) until `fsck` calls every file healthy without it and the
//! coordinator reports an MTTR; when the node comes back its stale copies,
//! the chunks of files removed meanwhile and planted orphans are deleted, so
//! the disks hold exactly what the catalog places and no chunk is above its
//! target. Corrupt chunk files (a replica, a parity block, a data chunk whose
//! only copy it was) are found by `scrub`, quarantined and rebuilt. A second
//! node dying in the middle of a repair costs no file that `fsck --what-if`
//! said would survive both failures. A drained node ends up holding nothing
//! and can be stopped with no loss. And `fsck --what-if` predicts exactly
//! which files a real failure (before any repair) makes unreadable.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Instant;

const C: usize = 16 * 1024;

/// `(name, contents)` of the files a test put.
type Files = Vec<(String, Vec<u8>)>;

/// Puts one file per size, named `PREFIX/fI`, with seeded contents.
fn put_files(c: &Cluster, prefix: &str, sizes: &[usize], seed: u64) -> Files {
    sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let name = format!("{prefix}/f{i}");
            let data = random_bytes(seed + i as u64, n);
            c.put_ok(&name, &data);
            (name, data)
        })
        .collect()
}

#[track_caller]
fn get_all_exact(c: &Cluster, files: &Files) {
    for (name, data) in files {
        c.get_exact(name, data);
    }
}

/// `fsck --json ARGS...`: the command's output and its parsed report.
fn fsck(c: &Cluster, args: &[&str]) -> (Output, Value) {
    let mut a = vec!["fsck", "--json"];
    a.extend_from_slice(args);
    let o = c.run(&a);
    let v = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("fsck --json printed no JSON ({e}): {}", describe(&o)));
    (o, v)
}

/// Health of every file in an fsck report.
fn healths(report: &Value) -> BTreeMap<String, String> {
    report["files"]
        .as_array()
        .expect("fsck files")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().expect("name").to_string(),
                f["health"].as_str().expect("health").to_string(),
            )
        })
        .collect()
}

/// fsck exits 0 and calls every file healthy, with no chunk below target.
fn fsck_all_healthy(c: &Cluster) -> bool {
    let (o, v) = fsck(c, &[]);
    o.status.success()
        && v["files"].as_array().expect("files").iter().all(|f| {
            f["health"] == "healthy" && f["chunks"].as_array().is_some_and(|a| a.is_empty())
        })
}

#[track_caller]
fn assert_fsck_all_healthy(c: &Cluster, what: &str) {
    let (o, v) = fsck(c, &[]);
    assert!(
        fsck_all_healthy(c),
        "{what}: fsck should call every file healthy: {v:#}\n{}",
        describe(&o)
    );
}

/// Node `i`'s entry in a `status --json` value.
fn node_of(s: &Value, i: usize) -> &Value {
    let id = Cluster::node_id(i);
    s["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .find(|n| n["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no {id} in status: {s}"))
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The loss of the `dead` nodes was repaired completely: MTTR reported, no
/// incident open, nothing in flight, no chunk under-protected, and the dead
/// nodes dropped from the catalog (which the repair loop journals just after
/// it closes the incident, so this is polled for too).
fn healed(s: &Value, dead: &[usize]) -> bool {
    let r = &s["repair"];
    r["last_mttr_ms"].is_u64()
        && r["incident_open_ms"].is_null()
        && r["in_flight_chunks"] == 0
        && s["under_protected"]
            .as_array()
            .is_some_and(|a| a.is_empty())
        && dead.iter().all(|&i| node_of(s, i)["chunks"] == 0)
}

/// One chunk (data or parity) of a file, as `stat --json` shows it.
#[derive(Clone, Debug)]
struct ChunkRef {
    file: String,
    stripe: usize,
    /// Position in the stripe, None for the parity block.
    slot: Option<usize>,
    id: String,
    holders: Vec<String>,
}

impl ChunkRef {
    fn target(&self, replication: usize) -> usize {
        if self.slot.is_some() {
            replication
        } else {
            1
        }
    }
}

/// Every chunk of every file, from `ls` and `stat --json`.
fn all_chunks(c: &Cluster) -> Vec<ChunkRef> {
    let mut out = Vec::new();
    for name in c.ls() {
        let st = c.stat(&name);
        for (si, s) in st["stripes"]
            .as_array()
            .expect("stripes")
            .iter()
            .enumerate()
        {
            let data = s["data"].as_array().expect("data").iter().enumerate();
            let slots = data.map(|(i, ch)| (Some(i), ch)).chain(
                s["parity"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| (None, p)),
            );
            for (slot, ch) in slots {
                out.push(ChunkRef {
                    file: name.clone(),
                    stripe: si,
                    slot,
                    id: ch["id"].as_str().expect("id").to_string(),
                    holders: holders(ch),
                });
            }
        }
    }
    out
}

/// Chunks with more holders in the catalog than their target.
fn over_target(c: &Cluster, replication: usize) -> Vec<ChunkRef> {
    all_chunks(c)
        .into_iter()
        .filter(|ch| ch.holders.len() > ch.target(replication))
        .collect()
}

/// Every chunk has exactly its target of distinct holders, none of them one
/// of `not_on`.
#[track_caller]
fn assert_exact_targets(c: &Cluster, replication: usize, not_on: &[usize]) {
    for ch in all_chunks(c) {
        let distinct: BTreeSet<&String> = ch.holders.iter().collect();
        assert_eq!(
            distinct.len(),
            ch.holders.len(),
            "a node holds two copies of one chunk: {ch:?}"
        );
        assert_eq!(
            ch.holders.len(),
            ch.target(replication),
            "chunk not at its target number of copies: {ch:?}"
        );
        for &i in not_on {
            assert!(
                !ch.holders.contains(&Cluster::node_id(i)),
                "chunk still placed on n{i}: {ch:?}"
            );
        }
    }
}

/// The node holding the most catalog copies, and how many.
fn busiest(s: &Value) -> (usize, u64) {
    s["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                Cluster::node_index(n["id"].as_str().expect("id")),
                num(&n["chunks"]),
            )
        })
        .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
        .expect("some node")
}

#[test]
fn killed_node_is_reprotected_without_it() {
    let mut c = Cluster::builder()
        .nodes(4)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let files = put_files(&c, "k", &[9 * C + 5, 4 * C, C / 2, 13 * C + 999, 1], 100);
    let (victim, held) = busiest(&c.status().unwrap());
    assert!(held > 0, "the victim must hold data");

    let t = Instant::now();
    c.kill_node(victim);
    c.wait_node_state(victim, "dead");
    let detected = t.elapsed();
    wait_until(DEADLINE, "every chunk fully protected again", || {
        c.status().is_some_and(|s| healed(&s, &[victim]))
    });
    let protected_after = t.elapsed();
    assert_fsck_all_healthy(&c, "after repair");

    let s = c.status().unwrap();
    let n = node_of(&s, victim);
    assert_eq!(n["state"], "dead", "{s:#}");
    assert_eq!(
        n["chunks"], 0,
        "the dead node is dropped from the catalog: {s:#}"
    );
    let r = &s["repair"];
    let mttr = num(&r["last_mttr_ms"]);
    assert!(
        num(&r["done_chunks"]) >= held,
        "every copy the dead node held needs a repair ({held}): {r}"
    );
    assert!(num(&r["done_bytes"]) > 0, "{r}");
    // Measured from the last heartbeat: a few hundred ms of detection plus
    // the copies. Generous for a loaded machine, but bounded.
    assert!(mttr < 30_000, "MTTR {mttr} ms: {r}");
    assert_exact_targets(&c, 2, &[victim]);

    // Re-protected means: any one more failure costs nothing.
    for other in (0..4).filter(|&i| i != victim) {
        let id = Cluster::node_id(other);
        let (o, v) = fsck(&c, &["--what-if", &id]);
        assert!(
            o.status.success() && healths(&v).values().all(|h| h != "lost"),
            "after repair, losing {id} as well must lose nothing: {v:#}\n{}",
            describe(&o)
        );
    }
    get_all_exact(&c, &files);
    eprintln!(
        "n{victim} ({held} copies): dead after {detected:?}, fully protected after {protected_after:?}, coordinator MTTR {mttr} ms, {r}"
    );
}

#[test]
fn returning_node_is_reconciled_and_orphans_deleted() {
    let mut c = Cluster::builder()
        .nodes(4)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let files = put_files(&c, "r", &[7 * C + 3, 3 * C, 11 * C], 200);
    c.put_ok("r/gone", &random_bytes(299, 5 * C + 1));
    let gone = c.stat("r/gone");
    let victim = Cluster::node_index(&holders(chunk_of(&gone, 0, Some(0)))[0]);
    let vid = Cluster::node_id(victim);

    c.kill_node(victim);
    c.wait_node_state(victim, "dead");
    wait_until(DEADLINE, "every chunk fully protected again", || {
        c.status().is_some_and(|s| healed(&s, &[victim]))
    });
    // While it is down, a file with a chunk on it is removed.
    ok(c.run(&["rm", "r/gone"]), "rm r/gone");

    let stale = c.chunk_files(victim);
    assert!(
        !catalog_placement(&c).iter().any(|(n, _)| *n == vid),
        "after repair the catalog places nothing on the dead {vid}"
    );
    let gone_id = chunk_of(&gone, 0, Some(0))["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        stale.contains(&c.chunk_path(victim, &gone_id)),
        "{vid} still has the removed file's chunk on disk: {stale:?}"
    );
    // An orphan nobody references: a real chunk file under a fresh id.
    let orphan_id: String = random_bytes(0x0afa, 16)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let orphan = c.chunk_path(victim, &orphan_id);
    std::fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    std::fs::copy(&stale[0], &orphan).unwrap();

    c.restart_node(victim);
    c.wait_node_state(victim, "alive");
    wait_until(DEADLINE, "no chunk above its target", || {
        over_target(&c, 2).is_empty()
    });
    wait_disks_match_catalog(&c);
    assert!(!orphan.exists(), "orphan {orphan_id} not deleted");
    let placed = catalog_placement(&c);
    for p in &stale {
        let id = p.file_stem().unwrap().to_str().unwrap().to_string();
        if !placed.contains(&(vid.clone(), id)) {
            assert!(!p.exists(), "stale copy {} not deleted", p.display());
        }
    }
    let over = over_target(&c, 2);
    assert!(over.is_empty(), "chunks above target: {over:?}");
    assert_exact_targets(&c, 2, &[]);
    assert_fsck_all_healthy(&c, "after reconciliation");
    get_all_exact(&c, &files);
    // The node is back in service: a new file can use it.
    let fresh = random_bytes(298, 6 * C);
    c.put_ok("r/fresh", &fresh);
    c.get_exact("r/fresh", &fresh);
}

/// Picks, over distinct stripes and distinct nodes, one parity block and
/// two data chunks to corrupt: `(node index, chunk)`.
fn pick_victims(chunks: &[ChunkRef]) -> Vec<(usize, ChunkRef)> {
    let mut stripes = BTreeSet::new();
    let mut nodes = BTreeSet::new();
    let mut picked = Vec::new();
    for want_parity in [true, false, false] {
        let found = chunks.iter().find_map(|ch| {
            if ch.slot.is_none() != want_parity || stripes.contains(&(ch.file.clone(), ch.stripe)) {
                return None;
            }
            let n = ch
                .holders
                .iter()
                .map(|h| Cluster::node_index(h))
                .find(|n| !nodes.contains(n))?;
            Some((n, ch.clone()))
        });
        let (n, ch) = found.expect("a chunk to corrupt on a fresh node and stripe");
        stripes.insert((ch.file.clone(), ch.stripe));
        nodes.insert(n);
        picked.push((n, ch));
    }
    picked
}

fn scrub_repairs_corruption(replication: u32, seed: u64) {
    let c = Cluster::builder()
        .nodes(4)
        .replication(replication)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let files = put_files(&c, "s", &[9 * C + 1, 6 * C, 4 * C + 100], seed);
    let victims = pick_victims(&all_chunks(&c));
    for (n, ch) in &victims {
        if replication == 1 && ch.slot.is_some() {
            assert_eq!(ch.holders.len(), 1, "R=1: the only copy: {ch:?}");
        }
        flip_byte_near_end(&c.chunk_path(*n, &ch.id), 7);
    }
    let out = ok(
        c.run_timeout(&["scrub", "--wait"], DEADLINE),
        "scrub --wait",
    );
    assert!(out.contains("scrub finished"), "{out}");

    let bad_nodes: BTreeSet<usize> = victims.iter().map(|(n, _)| *n).collect();
    wait_until(DEADLINE, "corrupt copies reported and repaired", || {
        let Some(s) = c.status() else { return false };
        let r = &s["repair"];
        bad_nodes
            .iter()
            .all(|&n| node_of(&s, n)["corrupt_found"].as_u64() >= Some(1))
            && num(&r["done_chunks"]) >= victims.len() as u64
            && r["in_flight_chunks"] == 0
            && s["under_protected"]
                .as_array()
                .is_some_and(|a| a.is_empty())
    });
    wait_until(DEADLINE, "fsck healthy after the scrub", || {
        fsck_all_healthy(&c)
    });
    let s = c.status().unwrap();
    for i in 0..4 {
        let found = num(&node_of(&s, i)["corrupt_found"]);
        if !bad_nodes.contains(&i) {
            assert_eq!(found, 0, "n{i} had no corrupt copy: {s:#}");
        }
    }
    for (n, ch) in &victims {
        let q = c
            .node_data_dir(*n)
            .join("quarantine")
            .join(format!("{}.chunk", ch.id));
        assert!(q.exists(), "{} not quarantined", q.display());
    }
    wait_disks_match_catalog(&c);
    assert_exact_targets(&c, replication as usize, &[]);
    // Every copy in the catalog reads back and verifies.
    let (o, v) = fsck(&c, &["--deep"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(
        v["deep"]["bad_copies"].as_array().map(Vec::len),
        Some(0),
        "{v:#}"
    );
    assert_eq!(
        num(&v["deep"]["verified_copies"]),
        catalog_placement(&c).len() as u64,
        "{v:#}"
    );
    for (name, data) in &files {
        let out = c.get_exact(name, data);
        assert!(
            !out.contains("rebuilt from parity"),
            "every chunk has its copies back; nothing to rebuild: {out}"
        );
    }
}

#[test]
fn scrub_quarantines_and_repairs_corrupt_replicas_and_parity() {
    scrub_repairs_corruption(2, 300);
}

#[test]
fn scrub_rebuilds_a_corrupt_only_copy_from_parity() {
    scrub_repairs_corruption(1, 400);
}

/// Files lost per `fsck --json --what-if NODES`, checking the exit code
/// and message agree with the report.
fn predicted_lost(c: &Cluster, nodes: &[usize]) -> BTreeSet<String> {
    let joined = nodes
        .iter()
        .map(|&i| Cluster::node_id(i))
        .collect::<Vec<_>>()
        .join(",");
    let (o, v) = fsck(c, &["--what-if", &joined]);
    let lost: BTreeSet<String> = healths(&v)
        .into_iter()
        .filter(|(_, h)| h == "lost")
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        o.status.success(),
        lost.is_empty(),
        "fsck --what-if {joined} exit code: {}",
        describe(&o)
    );
    if !lost.is_empty() {
        assert!(
            stderr(&o).contains(&format!("would be lost if {joined} failed")),
            "{}",
            describe(&o)
        );
    }
    lost
}

/// R=2 + xor on five nodes with a few MiB: n1 is killed, and once its
/// repair is under way, a second node (`pick` chooses it from the cluster)
/// too. Whatever `fsck --what-if n1,SECOND` predicted beforehand bounds the
/// outcome: files it called survivable end healthy and byte-exact, and no
/// other file is lost. Both nodes then return and are reconciled.
fn second_death_during_repair(pick: impl FnOnce(&Cluster) -> usize) {
    const C2: usize = 32 * 1024;
    let mut c = Cluster::builder()
        .nodes(5)
        .replication(2)
        .parity("xor")
        .chunk_size(C2 as u64)
        .start();
    let sizes = [
        64 * C2 + 17,
        48 * C2,
        40 * C2 + 1,
        32 * C2 + 5000,
        24 * C2,
        3 * C2,
        C2 / 3,
    ];
    let files = put_files(&c, "m", &sizes, 500);
    let second = pick(&c);
    assert!(second != 1 && second < 5);
    let predicted = predicted_lost(&c, &[1, second]);

    c.kill_node(1);
    c.wait_node_state(1, "dead");
    wait_until(DEADLINE, "repair of n1's chunks under way", || {
        c.status().is_some_and(|s| {
            num(&s["repair"]["in_flight_chunks"]) > 0 || num(&s["repair"]["done_chunks"]) > 0
        })
    });
    c.kill_node(second);
    let at_kill = c.status().unwrap()["repair"].clone();
    c.wait_node_state(second, "dead");

    // Settled: every file healthy or lost, nothing in flight.
    wait_until(DEADLINE, "repair settles after the second death", || {
        let (_, v) = fsck(&c, &[]);
        healths(&v).values().all(|h| h == "healthy" || h == "lost")
            && c.status()
                .is_some_and(|s| s["repair"]["in_flight_chunks"] == 0)
    });
    let (o, v) = fsck(&c, &[]);
    let lost: BTreeSet<String> = healths(&v)
        .into_iter()
        .filter(|(_, h)| h == "lost")
        .map(|(n, _)| n)
        .collect();
    // The repair between the deaths can only save files, never lose more.
    assert!(
        lost.is_subset(&predicted),
        "lost {lost:?}, but fsck --what-if n1,n{second} predicted only {predicted:?}: {v:#}"
    );
    assert_eq!(o.status.success(), lost.is_empty(), "{}", describe(&o));
    if lost.is_empty() {
        wait_until(DEADLINE, "every chunk fully protected again", || {
            c.status().is_some_and(|s| healed(&s, &[1, second]))
        });
        assert_exact_targets(&c, 2, &[1, second]);
    }
    for (name, data) in &files {
        if lost.contains(name) {
            let (o, got) = c.get_bytes(name);
            fails_with(o, "lost", &format!("get {name} (lost)"));
            assert!(got.is_none(), "a failed get must leave no output file");
        } else {
            c.get_exact(name, data);
        }
    }
    eprintln!(
        "n1 then n{second}: predicted lost {predicted:?}, lost {lost:?}; repair when n{second} was killed: {at_kill}; now {}",
        c.status().unwrap()["repair"]
    );

    // Both come back: stale copies reconciled, everything readable.
    c.restart_node(1);
    c.restart_node(second);
    c.wait_nodes_alive(5);
    wait_until(DEADLINE, "no chunk above its target", || {
        over_target(&c, 2).is_empty()
    });
    wait_until(DEADLINE, "fsck healthy with both nodes back", || {
        fsck_all_healthy(&c)
    });
    wait_disks_match_catalog(&c);
    get_all_exact(&c, &files);
}

#[test]
fn second_node_dies_during_repair() {
    second_death_during_repair(|_| 2);
}

/// The same with a second node whose loss together with n1's `fsck
/// --what-if` calls survivable: then nothing at all may be lost, and the
/// interrupted repair must complete with three nodes left.
#[test]
fn survivable_second_death_during_repair_loses_nothing() {
    second_death_during_repair(|c| {
        [2, 3, 4, 0]
            .into_iter()
            .find(|&x| predicted_lost(c, &[1, x]).is_empty())
            .expect("some node pair with n1 whose loss R=2 + xor survives")
    });
}

#[test]
fn drained_node_can_be_stopped_without_loss() {
    let mut c = Cluster::builder()
        .nodes(4)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start();
    let files = put_files(&c, "d", &[8 * C + 8, 5 * C, 2 * C + 1, 12 * C], 600);
    let held = num(&node_of(&c.status().unwrap(), 3)["chunks"]);
    assert!(held > 0, "n3 must hold data to drain");
    assert!(!c.chunk_files(3).is_empty());

    let out = ok(
        c.run_timeout(&["drain", "n3", "--wait"], DEADLINE),
        "drain n3 --wait",
    );
    assert!(out.contains("n3 is drained"), "{out}");
    // Still running: it cannot be forgotten yet.
    fails_with(
        c.run(&["forget", "n3"]),
        "is running",
        "forget a running node",
    );
    let s = c.status().unwrap();
    let n3 = node_of(&s, 3);
    assert_eq!(n3["draining"], true, "{s:#}");
    assert_eq!(n3["chunks"], 0, "{s:#}");
    assert!(
        !catalog_placement(&c).iter().any(|(n, _)| n == "n3"),
        "catalog still places copies on n3"
    );
    wait_until(DEADLINE, "n3 deletes its drained copies", || {
        c.chunk_files(3).is_empty()
            && c.status()
                .is_some_and(|s| node_of(&s, 3)["stored_chunks"] == 0)
    });
    assert_exact_targets(&c, 2, &[3]);
    wait_disks_match_catalog(&c);
    assert_fsck_all_healthy(&c, "after the drain");

    c.stop_node(3);
    get_all_exact(&c, &files);
    c.wait_node_state(3, "dead");
    let s = c.status().unwrap();
    assert!(
        s["under_protected"].as_array().unwrap().is_empty(),
        "the drained node's death leaves nothing under-protected: {s:#}"
    );
    assert_fsck_all_healthy(&c, "with the drained node dead");
    get_all_exact(&c, &files);

    // Stopped and empty: it can be removed from the cluster's records.
    ok(c.run(&["forget", "n3"]), "forget n3");
    let s = c.status().unwrap();
    assert!(
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["id"] != "n3"),
        "n3 is gone from status: {s:#}"
    );
    get_all_exact(&c, &files);
}

#[test]
fn what_if_predicts_real_failures() {
    // A long dead-after: killed nodes stay `suspect`, so no repair runs and
    // what the reads see is exactly the failure fsck was asked about.
    let mut c = Cluster::builder()
        .nodes(4)
        .replication(1)
        .parity("xor")
        .chunk_size(C as u64)
        .heartbeat_ms(200)
        .dead_after(1000)
        .start();
    let files = put_files(&c, "w", &[1, C / 2, C + 7, 2 * C, 3 * C, 7 * C + 3, 0], 700);
    // Cases chosen from the placement so both outcomes occur: the two
    // nodes of a one-chunk file's stripe (it is lost), the other two (it
    // survives, a full stripe does not), and single nodes.
    let st = c.stat("w/f0");
    let mut pair: Vec<usize> = [Some(0), None]
        .iter()
        .map(|&p| Cluster::node_index(&holders(chunk_of(&st, 0, p))[0]))
        .collect();
    pair.sort();
    let rest: Vec<usize> = (0..4).filter(|i| !pair.contains(i)).collect();
    let cases: Vec<Vec<usize>> = vec![pair.clone(), rest.clone(), vec![pair[0]], vec![rest[1]]];

    let (mut seen_lost, mut seen_survived) = (0, 0);
    for case in &cases {
        let ids: Vec<String> = case.iter().map(|&i| Cluster::node_id(i)).collect();
        let joined = ids.join(",");
        let (o, v) = fsck(&c, &["--what-if", &joined]);
        assert_eq!(v["what_if"], serde_json::json!(ids), "{v:#}");
        let predicted = healths(&v);
        assert_eq!(predicted.len(), files.len(), "{v:#}");
        let lost: BTreeSet<&String> = predicted
            .iter()
            .filter(|(_, h)| *h == "lost")
            .map(|(n, _)| n)
            .collect();
        assert_eq!(o.status.success(), lost.is_empty(), "{}", describe(&o));
        if lost.is_empty() {
            assert_eq!(case.len(), 1, "R=1+xor: two nodes of a full stripe: {v:#}");
        } else {
            assert_eq!(case.len(), 2, "R=1+xor survives any one node: {v:#}");
            assert!(
                stderr(&o).contains(&format!("would be lost if {joined} failed")),
                "{}",
                describe(&o)
            );
        }

        for &i in case {
            c.kill_node(i);
        }
        for (name, data) in &files {
            let (o, got) = c.get_bytes(name);
            if lost.contains(name) {
                assert!(
                    !o.status.success(),
                    "fsck predicted {name} lost without {joined}, yet get succeeded: {}",
                    describe(&o)
                );
                assert!(got.is_none(), "a failed get must leave no output file");
                assert!(
                    stderr(&o)
                        .lines()
                        .last()
                        .unwrap_or("")
                        .starts_with("error: "),
                    "{}",
                    describe(&o)
                );
                seen_lost += 1;
            } else {
                ok(
                    o,
                    &format!("get {name} without {joined} (predicted readable)"),
                );
                assert_same_bytes(
                    &got.expect("output file"),
                    data,
                    &format!("get {name} without {joined}"),
                );
                if case.len() == 2 {
                    seen_survived += 1;
                }
            }
        }
        for &i in case {
            c.restart_node(i);
        }
        c.wait_nodes_alive(4);
    }
    assert!(
        seen_lost > 0 && seen_survived > 0,
        "the cases should include both lost and surviving files ({seen_lost} lost, {seen_survived} survived)"
    );
    // Nothing was repaired or changed by all this.
    assert_eq!(c.status().unwrap()["repair"]["done_chunks"], 0);
    assert_fsck_all_healthy(&c, "after the what-if cases");
    get_all_exact(&c, &files);
}
