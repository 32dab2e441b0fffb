//! Faults found by trying (issue 19), each on real processes: a careless
//! operator and a hostile tenant against a running cluster.
//!
//! 1. Concurrent `put --force` of one name: last writer wins, nothing leaks.
//! 2. A node whose data directory disappears reports itself failed.
//! 3. S3 keys XML 1.0 cannot carry are refused; listings stay valid XML.
//! 4. A second node claiming a live node's id is refused.
//! 5. Client mistakes through the S3 gateway are 4xx, not 500.
//! 7. A coordinator stopped and continued does not count its own pause
//!    against the nodes; a second coordinator on a held directory says at
//!    once that it waits for the lock.

mod common;

use common::*;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const MIB: u64 = 1024 * 1024;

/// Whether `tool args` runs; with `CI` set a missing tool is fatal.
fn have(tool: &str, args: &[&str]) -> bool {
    let ok = Command::new(tool)
        .args(args)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{tool} {args:?} is required with CI set (.ci/run installs it)");
        }
        eprintln!("NOTICE: {tool} {args:?} does not run; skipping this check");
    }
    ok
}

fn node_json(c: &Cluster, id: &str) -> Option<serde_json::Value> {
    c.status()?["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["id"] == id)
        .cloned()
}

// ------------------------------------------------------------------ item 1

/// Four clients overwrite one name in a loop. Every put is accepted (the
/// later commit simply wins, as on S3), the name holds one whole version,
/// no upload stays open, and once the delete grace has passed the nodes
/// hold exactly the chunk files the live files need. Puts of new names go
/// through afterwards (no stale upload counts against the per-address cap).
#[test]
fn concurrent_overwrites_last_writer_wins_and_leak_nothing() {
    let c = Cluster::builder()
        .nodes(4)
        .replication(2)
        .chunk_size(MIB)
        .delete_grace("2s")
        .start();
    const WRITERS: usize = 4;
    const ROUNDS: usize = 12;
    // Two chunks each (1 MiB + a short one).
    let versions: Vec<Vec<u8>> = (0..WRITERS)
        .map(|w| random_bytes(100 + w as u64, (MIB + MIB / 2) as usize))
        .collect();
    let inputs: Vec<PathBuf> = versions
        .iter()
        .enumerate()
        .map(|(w, d)| {
            let p = c.scratch(&format!("race-{w}"));
            std::fs::write(&p, d).unwrap();
            p
        })
        .collect();
    let refused: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|p| {
                let c = &c;
                s.spawn(move || {
                    let mut refused = Vec::new();
                    for _ in 0..ROUNDS {
                        let o = c.run(&["put", p.to_str().unwrap(), "--name", "race", "--force"]);
                        if !o.status.success() {
                            refused.push(stderr(&o));
                        }
                    }
                    refused
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        refused.is_empty(),
        "{} of {} overwrites were refused (last writer should win); first: {}",
        refused.len(),
        WRITERS * ROUNDS,
        refused[0]
    );
    let (o, got) = c.get_bytes("race");
    ok(o, "get race");
    let got = got.expect("get wrote a file");
    assert!(
        versions.contains(&got),
        "race holds one whole version ({} bytes, sha256 {})",
        got.len(),
        sha256_hex(&got)
    );
    wait_until(DEADLINE, "no upload left open", || {
        c.status()
            .is_some_and(|s| s["pending_uploads"].as_u64() == Some(0))
    });
    // After the grace: exactly the live file's copies on the nodes.
    wait_disks_match_catalog(&c);
    assert_eq!(
        disk_placement(&c).len(),
        4,
        "2 chunks x 2 copies of the live file"
    );
    for i in 0..3 {
        c.put_ok(&format!("new-{i}"), &random_bytes(200 + i, 10_000));
    }
}

// ------------------------------------------------------------------ item 2

/// `rm -rf` of a running node's data directory: the node notices (its
/// probe), reports itself failed, the coordinator stops counting it alive,
/// repair re-protects every chunk on the other nodes, and new puts avoid it.
#[test]
fn a_node_whose_data_directory_disappears_reports_failed_and_is_replaced() {
    let c = Cluster::builder()
        .nodes(4)
        .replication(2)
        .chunk_size(64 * 1024)
        .start();
    let data = random_bytes(7, 640 * 1024);
    c.put_ok("f", &data);
    let before = catalog_placement(&c);
    assert!(before.iter().any(|(n, _)| n == "n0"), "n0 holds copies");
    std::fs::remove_dir_all(c.node_data_dir(0)).expect("rm -rf the node's data directory");

    wait_until(
        Duration::from_secs(30),
        "n0 shown failed, with a reason",
        || {
            node_json(&c, "n0").is_some_and(|n| {
                n["state"] == "failed" && n["failed"].as_str().is_some_and(|r| !r.is_empty())
            })
        },
    );
    // Every chunk back at two copies, none on n0.
    wait_until(DEADLINE, "every copy re-protected off n0", || {
        let p = catalog_placement(&c);
        p.len() == before.len() && !p.iter().any(|(n, _)| n == "n0")
    });
    let fsck = ok(c.run(&["fsck"]), "fsck");
    assert!(
        fsck.contains("1 healthy, 0 degraded, 0 at-risk, 0 lost"),
        "fsck after repair: {fsck}"
    );
    c.get_exact("f", &data);
    // New puts go to the other nodes.
    c.put_ok("g", &random_bytes(8, 200_000));
    let st = c.stat("g");
    for s in st["stripes"].as_array().unwrap() {
        for ch in s["data"].as_array().unwrap() {
            assert!(!holders(ch).contains(&"n0".to_string()), "g placed on n0");
        }
    }
    assert!(
        c.node_log_text(0).contains("store failed"),
        "the node's log says why"
    );
}

// ------------------------------------------------------------------ item 3

const AK: &str = "DFSFAULTSACCESSKEY";
const SK: &str = "dfs-faults-secret-key-0123456789";

fn aws(dir: &Path, endpoint: &str, args: &[&str]) -> std::process::Output {
    Command::new("aws")
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
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("AWS_PAGER", "")
        .output()
        .expect("run aws")
}

/// Runs a boto3 script with `endpoint access secret` as arguments; None
/// when boto3 is missing (outside CI).
fn boto3(c: &Cluster, endpoint: &str, script: &str) -> Option<String> {
    if !have("python3", &["-c", "import boto3"]) {
        return None;
    }
    let path = c.scratch(&format!("script-{}.py", sha256_hex(script.as_bytes())));
    std::fs::write(&path, script).unwrap();
    let o = Command::new("python3")
        .arg(&path)
        .args([format!("http://{endpoint}").as_str(), AK, SK])
        .output()
        .expect("run python3");
    Some(ok(o, "boto3 script"))
}

const BOTO3_PRELUDE: &str = r#"
import sys, boto3, botocore
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[2],
                  aws_secret_access_key=sys.argv[3], region_name="us-east-1",
                  config=Config(retries={"max_attempts": 1, "mode": "standard"}))
def code(f):
    try:
        f()
        return "ok"
    except botocore.exceptions.ClientError as e:
        return "%s %s" % (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
"#;

/// A key with a NUL (or another character XML 1.0 cannot carry) is refused
/// at PUT with 400 InvalidArgument; the bucket's listings stay valid XML for
/// boto3 (with and without `EncodingType=url`) and the aws cli, including a
/// name with a control character written through the CLI.
#[test]
fn keys_xml_cannot_carry_are_refused_and_listings_stay_valid() {
    let mut c = Cluster::builder().nodes(3).replication(2).start();
    let ep = c.start_s3(AK, SK, &[]);
    // A name only the CLI can write: `%01` unescapes to U+0001 as a key.
    let script = format!(
        "{BOTO3_PRELUDE}{}",
        r#"
s3.create_bucket(Bucket="nulb")
s3.put_object(Bucket="nulb", Key="plain key+1", Body=b"x")
print("nul", code(lambda: s3.put_object(Bucket="nulb", Key="nul\x00key", Body=b"y")))
print("ctl", code(lambda: s3.put_object(Bucket="nulb", Key="ctl\x01key", Body=b"y")))
print("mpu", code(lambda: s3.create_multipart_upload(Bucket="nulb", Key="nul\x00mpu")))
"#
    );
    let Some(out) = boto3(&c, &ep, &script) else {
        return;
    };
    assert!(out.contains("nul 400 InvalidArgument"), "{out}");
    assert!(out.contains("ctl 400 InvalidArgument"), "{out}");
    assert!(out.contains("mpu 400 InvalidArgument"), "{out}");
    let ls = c.ls();
    assert!(
        !ls.iter().any(|n| n.contains("%00") || n.contains("%01")),
        "nothing of the refused keys was stored: {ls:?}"
    );
    // The CLI can still write such a name; listings must not break on it.
    c.put_ok("nulb/cli%01name", b"z");
    let list = format!(
        "{BOTO3_PRELUDE}{}",
        r#"
keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="nulb").get("Contents", []))
print("v2", keys)
keys = sorted(o["Key"] for o in s3.list_objects(Bucket="nulb").get("Contents", []))
print("v1", keys)
# Without EncodingType=url (botocore adds it by default): still valid XML.
from botocore.handlers import set_list_objects_encoding_type_url
s3.meta.events.unregister("before-parameter-build.s3.ListObjectsV2", set_list_objects_encoding_type_url)
r = s3.list_objects_v2(Bucket="nulb")
print("raw", r.get("EncodingType"), len(r.get("Contents", [])))
"#
    );
    let out = boto3(&c, &ep, &list).expect("boto3 ran before");
    assert!(
        out.contains("v2 ['cli\\x01name', 'plain key+1']"),
        "keys decoded exactly: {out}"
    );
    assert!(
        out.contains("v1 ['cli\\x01name', 'plain key+1']"),
        "keys decoded exactly: {out}"
    );
    assert!(out.contains("raw url 2"), "{out}");
    if have("aws", &["--version"]) {
        let o = aws(c.dir(), &ep, &["s3", "ls", "s3://nulb/"]);
        let text = ok(o, "aws s3 ls");
        assert!(text.contains("plain key+1"), "{text}");
    }
}

// ------------------------------------------------------------------ item 4

/// A second `node --id n1` with another data directory is refused while
/// the real n1 lives, with a line on both sides; the real n1 keeps its
/// address and stays alive; n1 moving address with its own directory is
/// still fine, and a directory from before identities gets one.
#[test]
fn a_second_node_claiming_a_live_id_is_refused() {
    let mut c = Cluster::builder().nodes(2).replication(2).start();
    c.put_ok("f", &random_bytes(3, 100_000));
    let real_addr = c.node_addr(1);
    let imp_dir = c.dir().join("impostor-n1");
    let imp = c.spawn_extra_node("n1", &imp_dir);
    let imp_addr = imp.addr().to_string();
    wait_until(DEADLINE, "the coordinator logs the refusal", || {
        c.coord_log_text()
            .lines()
            .any(|l| l.contains("refusing") && l.contains(&imp_addr) && l.contains("n1"))
    });
    wait_until(DEADLINE, "the impostor logs the refusal", || {
        imp.log_text()
            .lines()
            .any(|l| l.contains("refused") && l.contains("another node"))
    });
    let n1 = node_json(&c, "n1").expect("n1 in status");
    assert_eq!(n1["addr"], real_addr.as_str(), "n1's address unchanged");
    assert_eq!(n1["state"], "alive");
    drop(imp);
    // The real n1 is not disturbed by the impostor's exit: watch it for a
    // few heartbeat intervals.
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        assert_eq!(c.node_state(1).as_deref(), Some("alive"));
    }
    // Moving address with its own directory is fine.
    c.kill_node(1);
    c.restart_node(1);
    let new_addr = c.node_addr(1);
    wait_until(DEADLINE, "n1 alive at its new address", || {
        node_json(&c, "n1").is_some_and(|n| n["state"] == "alive" && n["addr"] == new_addr.as_str())
    });
    // A data directory from before node identities gets one.
    c.kill_node(0);
    let id_file = c.node_data_dir(0).join("node.uuid");
    assert!(id_file.exists(), "the node wrote its identity");
    std::fs::remove_file(&id_file).unwrap();
    c.restart_node(0);
    c.wait_node_state(0, "alive");
    assert!(id_file.exists(), "an old directory got an identity");
    c.get_exact("f", &random_bytes(3, 100_000));
}

// ------------------------------------------------------------------ item 5

/// Through the gateway, a revoked cluster key answers 403 AccessDenied and
/// 16 KiB of user metadata 400 MetadataTooLarge (AWS allows 2 KiB), not 500.
#[test]
fn client_mistakes_through_the_gateway_are_4xx() {
    let mut c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .secret("faults-cluster-secret")
        .start();
    let key = ok(c.run(&["key", "create", "gw"]), "key create");
    let kf = c.scratch("gw.key");
    std::fs::write(&kf, key.trim()).unwrap();
    let ep = c.start_s3(AK, SK, &["--key-file", kf.to_str().unwrap()]);
    let script = format!(
        "{BOTO3_PRELUDE}{}",
        r#"
s3.create_bucket(Bucket="metab")
print("small", code(lambda: s3.put_object(Bucket="metab", Key="a", Body=b"x", Metadata={"m": "v" * 1500})))
print("big", code(lambda: s3.put_object(Bucket="metab", Key="b", Body=b"x", Metadata={"m": "v" * 16000})))
print("mpu", code(lambda: s3.create_multipart_upload(Bucket="metab", Key="c", Metadata={"m": "v" * 16000})))
"#
    );
    let Some(out) = boto3(&c, &ep, &script) else {
        return;
    };
    assert!(out.contains("small ok"), "{out}");
    assert!(out.contains("big 400 MetadataTooLarge"), "{out}");
    assert!(out.contains("mpu 400 MetadataTooLarge"), "{out}");
    ok(c.run(&["key", "revoke", "gw"]), "key revoke");
    let script = format!(
        "{BOTO3_PRELUDE}{}",
        r#"
print("get", code(lambda: s3.get_object(Bucket="metab", Key="a")))
print("put", code(lambda: s3.put_object(Bucket="metab", Key="d", Body=b"x")))
print("list", code(lambda: s3.list_objects_v2(Bucket="metab")))
"#
    );
    let out = boto3(&c, &ep, &script).expect("boto3 ran before");
    for op in ["get", "put", "list"] {
        assert!(out.contains(&format!("{op} 403 AccessDenied")), "{out}");
    }
}

// ------------------------------------------------------------------ item 7

/// SIGSTOP the coordinator for several dead timeouts, then SIGCONT: no node
/// is declared dead for the coordinator's own pause, and no MTTR is made up.
#[test]
fn a_paused_coordinator_does_not_blame_the_nodes() {
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .heartbeat_ms(200)
        .dead_after(3)
        .start();
    c.put_ok("f", &random_bytes(11, 300_000));
    let pid = c.coord_pid();
    signal(pid, "STOP");
    // The fault itself: paused for about seven dead timeouts (0.6 s).
    std::thread::sleep(Duration::from_secs(4));
    signal(pid, "CONT");
    c.wait_nodes_alive(3);
    // Watch a dozen heartbeat intervals after the resume: the monitor and
    // the repair scan run several times in that window.
    let until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < until {
        let s = c.status().expect("status");
        assert!(
            s["repair"]["last_mttr_ms"].is_null(),
            "no repair happened, so no MTTR: {}",
            s["repair"]
        );
    }
    let log = c.coord_log_text();
    assert!(
        !log.contains("declared dead"),
        "a node was declared dead for the coordinator's own pause"
    );
    assert!(
        log.contains("coordinator itself did not run"),
        "the coordinator says it noticed its pause"
    );
}

/// A second `dfs-sim coord` on a directory a live coordinator holds says
/// at once that it is waiting for the lock, and for how long; then refuses.
#[test]
fn a_second_coordinator_says_it_waits_for_the_lock() {
    let c = Cluster::builder().nodes(1).replication(1).start();
    let mut child = Command::new(BIN)
        .args(["coord", "--listen", "127.0.0.1:0", "--data"])
        .arg(c.coord_data())
        .env("RUST_LOG", "info")
        .env_remove("DFS_SECRET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a second coordinator");
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let err = child.stderr.take().unwrap();
    let mut child = Kill(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut seen = Vec::new();
    let waiting = loop {
        match rx.recv_timeout(Duration::from_secs(5).saturating_sub(start.elapsed())) {
            Ok(l) if l.contains("waiting") => break l,
            Ok(l) => seen.push(l),
            Err(_) => panic!(
                "no 'waiting' line within 5 s of starting (the lock wait is 10 s); got: {seen:?}"
            ),
        }
    };
    assert!(
        waiting.contains("coord.lock") && waiting.contains("10"),
        "says which lock and how long: {waiting}"
    );
    wait_until(
        Duration::from_secs(30),
        "the second coordinator gives up",
        || matches!(child.0.try_wait(), Ok(Some(_))),
    );
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "the second coordinator must refuse");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter()
            .any(|l| l.contains("in use by another coordinator")),
        "{rest:?}"
    );
    assert!(c.status().is_some(), "the first coordinator still serves");
}
