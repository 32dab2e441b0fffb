//! Every coordinator disk lost: `coord --rebuild-from-nodes` assembles the
//! catalog from the owner tags the nodes keep with their chunks (issue 21).
//! Real processes: a coordinator, nodes and an S3 gateway; the coordinator
//! is killed and its whole data directory deleted before each rebuild.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

const CHUNK: u64 = 128 * 1024;
const AK: &str = "DFSTESTACCESSKEY";
const SK: &str = "dfs-test-secret-key-0123456789";

/// Chunk files (live and set aside) on each node, by name: a rebuild
/// deletes none. (Repair may add copies while the nodes register with the
/// rebuilt coordinator; their excess is trimmed only after the delete
/// grace, so the sets are compared, not their sizes.)
fn chunk_ids(c: &Cluster) -> Vec<std::collections::BTreeSet<String>> {
    (0..c.node_count())
        .map(|i| {
            let mut ids: std::collections::BTreeSet<String> = c
                .chunk_files(i)
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().to_string())
                .collect();
            for d in ["orphans", "quarantine"] {
                if let Ok(rd) = std::fs::read_dir(c.node_data_dir(i).join(d)) {
                    ids.extend(
                        rd.flatten()
                            .map(|e| e.file_name().to_string_lossy().to_string()),
                    );
                }
            }
            ids
        })
        .collect()
}

fn node_list(c: &Cluster) -> String {
    (0..c.node_count())
        .map(|i| c.node_addr(i))
        .collect::<Vec<_>>()
        .join(",")
}

/// `coord --rebuild-from-nodes --dry-run --json` as a command.
fn dry_run(c: &Cluster, data: &Path, nodes: &str) -> Output {
    let data = data.display().to_string();
    let mut args = vec![
        "coord",
        "--listen",
        "127.0.0.1:0",
        "--data",
        &data,
        "--nodes",
        nodes,
        "--rebuild-from-nodes",
        "--dry-run",
        "--json",
    ];
    let secret = c.secret_file().map(|p| p.display().to_string());
    if let Some(s) = &secret {
        args.extend(["--secret-file", s]);
    }
    c.run_timeout(&args, DEADLINE)
}

fn aws(dir: &Path, endpoint: &str, args: &[&str]) -> String {
    let o = Command::new("aws")
        .arg("--endpoint-url")
        .arg(format!("http://{endpoint}"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SK)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", dir.join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            dir.join("no-aws-credentials"),
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_PAGER", "")
        .output()
        .expect("run aws");
    ok(o, &format!("aws {}", args.join(" ")))
}

fn have_aws() -> bool {
    let ok = Command::new("aws")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("aws is required with CI set (.ci/run installs it)");
        }
        eprintln!("NOTICE: aws not found; the S3 part of this test is skipped");
    }
    ok
}

fn fsck_healthy(c: &Cluster) -> bool {
    let o = c.run(&["fsck", "--json"]);
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&o.stdout) else {
        return false;
    };
    o.status.success()
        && v["files"]
            .as_array()
            .is_some_and(|f| f.iter().all(|f| f["health"] == "healthy"))
}

/// Replicated, XOR, RS and LRC files, an overwritten one, a removed one, a
/// copy, and S3 objects (one with metadata, one multipart): all back after
/// the catalog is gone, byte-exact with name, size and attributes; the
/// overwritten file at its newest content; the removed one absent; fsck
/// healthy; no chunk file deleted on any node.
#[test]
fn every_live_file_comes_back_from_the_nodes() {
    let mut c = Cluster::builder()
        .nodes(6)
        .replication(2)
        .chunk_size(CHUNK)
        // Removed files' copies are still on the nodes (tombstoned) when
        // the catalog is lost.
        .delete_grace("10m")
        // Copies the rebuilt catalog does not claim are set aside and wait
        // out the orphan grace like any unknown copy; none is deleted.
        .orphan_grace("24h")
        .start();
    let mut want: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for (i, (name, parity)) in [
        ("rep/a", "none"),
        ("xor/b", "xor:2"),
        ("rs/c", "rs:2+1"),
        ("lrc/d", "lrc:2+1+1"),
    ]
    .iter()
    .enumerate()
    {
        let data = random_bytes(10 + i as u64, 5 * CHUNK as usize + 777 * i);
        let p = c.scratch(&format!("f{i}"));
        std::fs::write(&p, &data).unwrap();
        ok(
            c.run(&[
                "put",
                &p.display().to_string(),
                "--name",
                name,
                "--parity",
                parity,
            ]),
            "put",
        );
        want.insert(name.to_string(), data);
    }
    c.put_ok("over", b"first version, to be overwritten");
    let newest = random_bytes(20, 3 * CHUNK as usize + 5);
    let p = c.scratch("over2");
    std::fs::write(&p, &newest).unwrap();
    ok(
        c.run(&["put", &p.display().to_string(), "--name", "over", "--force"]),
        "overwrite",
    );
    want.insert("over".into(), newest);
    c.put_ok("gone", &random_bytes(21, 200_000));
    ok(c.run(&["rm", "gone"]), "rm");
    ok(c.run(&["cp", "rs/c", "copy/c"]), "cp");
    want.insert("copy/c".into(), want["rs/c"].clone());

    let s3 = have_aws();
    let mut head = String::new();
    if s3 {
        let ep = c.start_s3(AK, SK, &[]);
        let d = c.dir().to_path_buf();
        aws(&d, &ep, &["s3", "mb", "s3://bkt"]);
        let small = random_bytes(30, 300_000);
        let sp = c.scratch("small");
        std::fs::write(&sp, &small).unwrap();
        aws(
            &d,
            &ep,
            &[
                "s3api",
                "put-object",
                "--bucket",
                "bkt",
                "--key",
                "meta.bin",
                "--body",
                &sp.display().to_string(),
                "--content-type",
                "text/x-rebuild",
                "--metadata",
                "who=rebuild-test",
            ],
        );
        want.insert("bkt/meta.bin".into(), small);
        // Over 8 MiB: the cli uploads it in parts, completed by Concat.
        let big = random_bytes(31, 9 * 1024 * 1024 + 4321);
        let bp = c.scratch("big");
        std::fs::write(&bp, &big).unwrap();
        aws(
            &d,
            &ep,
            &[
                "s3",
                "cp",
                "--no-progress",
                &bp.display().to_string(),
                "s3://bkt/multi.bin",
            ],
        );
        want.insert("bkt/multi.bin".into(), big);
        head = aws(
            &d,
            &ep,
            &[
                "s3api",
                "head-object",
                "--bucket",
                "bkt",
                "--key",
                "meta.bin",
            ],
        );
        assert!(head.contains("text/x-rebuild"), "{head}");
    }
    let names_before = c.ls();
    let stats_before: BTreeMap<String, serde_json::Value> = names_before
        .iter()
        .map(|n| (n.clone(), c.stat(n)))
        .collect();
    assert!(!names_before.contains(&"gone".to_string()));

    // Every coordinator disk is lost.
    c.kill_coord();
    let before = chunk_ids(&c);
    std::fs::remove_dir_all(c.coord_data()).unwrap();

    // A dry run reports and writes nothing.
    let nodes = node_list(&c);
    let o = dry_run(&c, &c.coord_data(), &nodes);
    let report: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(&o)));
    assert!(o.status.success(), "{}", describe(&o));
    assert!(
        !c.coord_data().exists(),
        "a dry run wrote {:?}",
        c.coord_data()
    );
    assert_eq!(report["files"], names_before.len(), "{report:#}");
    assert_eq!(report["incomplete_total"], 0, "{report:#}");
    assert_eq!(report["degraded_total"], 0, "{report:#}");
    assert!(
        report["unclaimed"]["tombstoned"].as_u64().unwrap() > 0,
        "the removed and overwritten files' copies are tombstoned: {report:#}"
    );
    let by_scheme: Vec<String> = report["schemes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["scheme"].as_str().unwrap().to_string())
        .collect();
    for s in ["none", "xor:2", "rs:2+1", "lrc:2+1+1"] {
        assert!(by_scheme.iter().any(|x| x == s), "{s} in {by_scheme:?}");
    }

    // The rebuild, then the coordinator serves the rebuilt catalog.
    c.restart_coord_with(None, &["--nodes", &nodes, "--rebuild-from-nodes"]);
    c.wait_nodes_alive(6);
    assert_eq!(c.ls(), names_before, "the same names");
    for (name, data) in &want {
        c.get_exact(name, data);
    }
    for (name, before) in &stats_before {
        let after = c.stat(name);
        for field in ["size", "attrs", "scheme", "replication"] {
            assert_eq!(after[field], before[field], "{name}: {field}");
        }
    }
    if s3 {
        let ep = c.start_s3(AK, SK, &[]);
        let d = c.dir().to_path_buf();
        let again = aws(
            &d,
            &ep,
            &[
                "s3api",
                "head-object",
                "--bucket",
                "bkt",
                "--key",
                "meta.bin",
            ],
        );
        let v: serde_json::Value = serde_json::from_str(&again).unwrap();
        let w: serde_json::Value = serde_json::from_str(&head).unwrap();
        for f in ["ContentType", "Metadata", "ETag", "ContentLength"] {
            assert_eq!(v[f], w[f], "{f}: {again}");
        }
    }
    wait_until(DEADLINE, "fsck healthy after the rebuild", || {
        fsck_healthy(&c)
    });
    for (i, (b, a)) in before.iter().zip(chunk_ids(&c)).enumerate() {
        let gone: Vec<&String> = b.difference(&a).collect();
        assert!(gone.is_empty(), "node {i} lost chunk files {gone:?}");
    }
    // A data directory that holds a catalog is never rebuilt into.
    c.kill_coord();
    let o = dry_run(&c, &c.coord_data(), &nodes);
    fails_with(o, "already holds a catalog", "rebuild into a catalog");
}

/// One node is dead while the rebuild runs: files still decodable come
/// back (degraded; members whose only copy was there are described again
/// by a node decoding them), and repair then heals them.
#[test]
fn a_node_dead_during_the_rebuild_costs_copies_not_files() {
    let mut c = Cluster::builder()
        .nodes(7)
        .replication(2)
        .chunk_size(CHUNK)
        .heartbeat_ms(300)
        .start();
    let mut want = BTreeMap::new();
    for (i, (name, parity)) in [
        ("rep", "none"),
        ("xor", "xor:2"),
        ("rs", "rs:2+1"),
        ("lrc", "lrc:2+1+1"),
    ]
    .iter()
    .enumerate()
    {
        let data = random_bytes(40 + i as u64, 4 * CHUNK as usize + 99 * i);
        let p = c.scratch(name);
        std::fs::write(&p, &data).unwrap();
        ok(
            c.run(&[
                "put",
                &p.display().to_string(),
                "--name",
                name,
                "--parity",
                parity,
            ]),
            "put",
        );
        want.insert(name.to_string(), data);
    }
    let nodes = node_list(&c);
    c.kill_coord();
    c.kill_node(0);
    std::fs::remove_dir_all(c.coord_data()).unwrap();
    let o = dry_run(&c, &c.coord_data(), &nodes);
    assert!(o.status.success(), "{}", describe(&o));
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(report["files"], 4, "{report:#}");
    assert!(report["degraded_total"].as_u64().unwrap() > 0, "{report:#}");
    assert!(
        report["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| !n["error"].is_null()),
        "the dead node is reported: {report:#}"
    );
    c.restart_coord_with(None, &["--nodes", &nodes, "--rebuild-from-nodes"]);
    for (name, data) in &want {
        c.get_exact(name, data);
    }
    wait_until(DEADLINE * 2, "repair heals the rebuilt files", || {
        fsck_healthy(&c)
    });
    for (name, data) in &want {
        c.get_exact(name, data);
    }
}

/// Nodes of two clusters: the rebuild stops and names them.
#[test]
fn disagreeing_cluster_ids_stop_a_rebuild() {
    let mut a = Cluster::builder().nodes(2).replication(1).start();
    let b = Cluster::builder().nodes(1).replication(1).start();
    a.put_ok("x", b"x");
    b.put_ok("y", b"y");
    a.kill_coord();
    let nodes = format!("{},{}", node_list(&a), node_list(&b));
    let fresh = a.scratch("fresh");
    let o = dry_run(&a, &fresh, &nodes);
    let err = fails_with(o, "disagree on their cluster", "mixed clusters");
    assert!(err.contains(&b.node_addr(0)), "{err}");
    assert!(err.contains(&a.node_addr(0)), "{err}");
    assert!(!fresh.exists());
}

/// A client holding a valid write token for a chunk cannot store it under
/// an owner tag naming another file: the node checks the tag against the
/// token, which the coordinator signed over the tag.
#[test]
fn a_forged_owner_tag_is_refused_by_the_node() {
    use protocol::handshake::{self, Credential, Role};
    use protocol::{Connection, CoordRequest, CoordResponse, FileName, NodeRequest, NodeResponse};
    let c = Cluster::builder()
        .nodes(1)
        .replication(1)
        .secret("rebuild test secret")
        .start();
    let secret = protocol::Secret::new("rebuild test secret").unwrap();
    let coord = c.coord_addr().to_string();
    let node = c.node_addr(0);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut cc = Connection::connect(&coord).await.unwrap();
        handshake::initiate(
            &mut cc,
            Role::Admin,
            Some(&Credential::Internal(secret.clone())),
            None,
        )
        .await
        .unwrap();
        let name = FileName::new("mine").unwrap();
        cc.send(&CoordRequest::PlanPut {
            name: name.clone(),
            size: 5,
            force: false,
            scheme: Some("none".parse().unwrap()),
            fit: false,
        })
        .await
        .unwrap();
        let CoordResponse::Plan(plan) = cc.recv_reply::<CoordResponse>().await.unwrap() else {
            panic!("expected a plan");
        };
        let cp = plan.stripes[0].data[0].clone();
        let (header, stored) = protocol::chunk::encode(cp.id, bytes::Bytes::from_static(b"hello"));
        let honest = plan.owner_tag(&name, 5, 0, 0);
        let mut forged = honest.clone();
        forged.name = FileName::new("someone/else").unwrap();
        let mut newer = honest.clone();
        newer.generation += 1;
        let put = |tag: protocol::OwnerTag| {
            let (node, header, stored, token) = (
                node.clone(),
                header.clone(),
                stored.clone(),
                cp.token.clone(),
            );
            async move {
                let mut n = Connection::connect(&node).await.unwrap();
                handshake::initiate(&mut n, Role::Client, None, None)
                    .await
                    .unwrap();
                n.send(&NodeRequest::PutTagged {
                    header,
                    token,
                    tag: Box::new(tag),
                })
                .await
                .unwrap();
                // A refused put is answered at once and the connection
                // closed: the data may not all get through.
                let _ = n.send_data(&stored).await;
                n.recv_reply::<NodeResponse>().await
            }
        };
        for bad in [forged, newer] {
            let e = put(bad).await.expect_err("a forged tag is refused");
            assert!(e.to_string().contains("signature"), "{e}");
        }
        // The tag the token was signed over is accepted.
        assert!(matches!(
            put(honest).await.unwrap(),
            NodeResponse::Stored { .. }
        ));
    });
}

/// Chunks written before owner tags (the round-1 fixture) are reported as
/// untagged; `dfs-sim retag` tags them in place, and then a rebuild finds
/// every file of that cluster, byte-exact.
#[test]
fn retag_makes_old_chunks_rebuildable() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/round1");
    let expected: Vec<(String, String)> = std::fs::read_to_string(fixture.join("expected.txt"))
        .unwrap()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let sha = f.next()?.to_string();
            let _size = f.next()?;
            Some((f.next()?.to_string(), sha))
        })
        .collect();
    let mut c = Cluster::builder()
        .seed(&fixture)
        .nodes(4)
        .replication(2)
        .parity("xor")
        .stripe(3)
        .chunk_size(65536)
        .orphan_grace("24h")
        .start();
    let nodes = node_list(&c);
    let fresh = c.scratch("fresh");
    let report = |c: &Cluster| -> serde_json::Value {
        let o = dry_run(c, &fresh, &nodes);
        assert!(o.status.success(), "{}", describe(&o));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let r = report(&c);
    assert_eq!(r["files"], 0, "{r:#}");
    assert!(r["unclaimed"]["untagged"].as_u64().unwrap() > 0, "{r:#}");
    let out = ok(c.run(&["retag"]), "retag");
    assert!(out.contains("chunks walked"), "{out}");
    wait_until(DEADLINE, "every file found after retag", || {
        report(&c)["files"] == expected.len()
    });
    let r = report(&c);
    assert_eq!(r["unclaimed"]["untagged"], 0, "{r:#}");
    c.kill_coord();
    std::fs::remove_dir_all(c.coord_data()).unwrap();
    c.restart_coord_with(None, &["--nodes", &nodes, "--rebuild-from-nodes"]);
    let mut names: Vec<String> = expected.iter().map(|(n, _)| n.clone()).collect();
    names.sort();
    assert_eq!(c.ls(), names);
    for (name, sha) in &expected {
        let (o, data) = c.get_bytes(name);
        let data = data.unwrap_or_else(|| panic!("get {name}: {}", describe(&o)));
        assert_eq!(&sha256_hex(&data), sha, "{name}");
    }
}
