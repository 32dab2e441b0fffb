//! Read tokens live minutes, not an hour (issue 19, item 6): a read that
//! outlasts its tokens renews them, and a revoked client key stops reading
//! once the tokens it was granted expire (`coord --read-token-ttl`, 5 min by
//! default; 2 s here). Real processes: a secured cluster, `dfs-sim get` to a
//! pipe the test reads, paused to make the read outlast its tokens.

mod common;

use common::*;
use std::io::Read;
use std::process::{Child, ChildStdout, Stdio};
use std::time::{Duration, Instant};

const C: u64 = 256 * 1024;
const TTL: Duration = Duration::from_secs(2);
const CHUNKS: usize = 40;

/// A secured cluster with short read tokens, a client key (its file) and a
/// file of [`CHUNKS`] chunks written with it.
fn setup() -> (Cluster, String, Vec<u8>) {
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(C)
        .secret("cluster-secret-for-token-tests")
        .coord_arg("--read-token-ttl")
        .coord_arg(&format!("{}s", TTL.as_secs()))
        .start();
    let key = ok(c.run(&["key", "create", "reader"]), "key create");
    let key_file = c.scratch("reader.key");
    std::fs::write(&key_file, key.trim()).unwrap();
    let kf = key_file.display().to_string();
    let data = random_bytes(19, CHUNKS * C as usize);
    let input = c.scratch("big.in");
    std::fs::write(&input, &data).unwrap();
    ok(
        c.cmd()
            .args(["put", &input.display().to_string(), "--name", "big"])
            .args(["--key-file", &kf])
            .output()
            .unwrap(),
        "put with the client key",
    );
    (c, kf, data)
}

/// A `dfs-sim get big --out -` whose output the test reads at its own pace;
/// killed when dropped.
struct SlowGet {
    child: Child,
    out: ChildStdout,
    got: Vec<u8>,
    stderr: std::path::PathBuf,
}

impl SlowGet {
    fn start(c: &Cluster, kf: &str) -> SlowGet {
        let stderr = c.scratch("get.stderr");
        let mut child = c
            .cmd()
            .args(["get", "big", "--out", "-", "--key-file", kf])
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("spawn get");
        let out = child.stdout.take().unwrap();
        SlowGet {
            child,
            out,
            got: Vec::new(),
            stderr,
        }
    }

    /// Reads `n` more bytes (fewer at the end of the output).
    fn read(&mut self, n: usize) {
        let mut buf = vec![0u8; n];
        let mut at = 0;
        while at < n {
            match self.out.read(&mut buf[at..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => at += k,
            }
        }
        self.got.extend_from_slice(&buf[..at]);
    }

    /// Reads to the end; returns whether the get succeeded and its stderr.
    fn finish(&mut self) -> (bool, String) {
        let mut rest = Vec::new();
        let _ = self.out.read_to_end(&mut rest);
        self.got.extend_from_slice(&rest);
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "get did not exit");
            std::thread::sleep(Duration::from_millis(20));
        };
        (
            status.success(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }
}

impl Drop for SlowGet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A read paused for three token lifetimes still completes byte-exact: the
/// client asks the coordinator for fresh tokens when its own expire.
#[test]
fn a_read_longer_than_its_tokens_renews_them() {
    let (c, kf, data) = setup();
    let mut g = SlowGet::start(&c, &kf);
    g.read(C as usize);
    // The pause is the scenario (the read outlives its tokens), not a wait
    // for some condition.
    std::thread::sleep(3 * TTL);
    let (ok, err) = g.finish();
    assert!(ok, "the paused get failed: {err}");
    assert_same_bytes(&g.got, &data, "a read that outlived its tokens");
}

/// A key revoked in the middle of a read: once the tokens granted before
/// the revocation expire, no further chunk is served, the renewal is
/// refused, and the get fails saying so.
#[test]
fn a_revoked_key_stops_reading_within_the_token_lifetime() {
    let (c, kf, data) = setup();
    let mut g = SlowGet::start(&c, &kf);
    g.read(C as usize);
    ok(c.run(&["key", "revoke", "reader"]), "key revoke");
    // A new request with the key is refused at once.
    fails_with(
        c.cmd()
            .args(["stat", "big", "--key-file", &kf])
            .output()
            .unwrap(),
        "",
        "stat with a revoked key",
    );
    // The tokens the read holds outlive the revocation by at most their
    // lifetime; then the read stops.
    std::thread::sleep(TTL + Duration::from_secs(1));
    let (ok, err) = g.finish();
    assert!(
        !ok,
        "a revoked key read all {} bytes after its tokens expired",
        g.got.len()
    );
    assert!(
        err.contains("could not be renewed"),
        "the get should say why it stopped: {err}"
    );
    assert!(
        g.got.len() < data.len(),
        "a revoked key read the whole file"
    );
    assert_eq!(&g.got[..], &data[..g.got.len()], "what was read is exact");
    eprintln!(
        "read {} of {} bytes before the revocation took effect",
        g.got.len(),
        data.len()
    );
}
