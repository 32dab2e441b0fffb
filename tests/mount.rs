//! `dfs-sim mount`: a real FUSE mount of a real cluster (coordinator and
//! nodes as processes), used by ordinary programs (cp, diff, rsync, tar,
//! sha256sum) and checked against what they and `dfs-sim get` see.
//!
//! Skipped with a notice when /dev/fuse or fusermount3 is missing and `CI`
//! is unset; with `CI` set a missing tool fails. Heavier runs behind
//! environment variables: `DFS_MOUNT_FULL=1` copies the whole of
//! /usr/share/doc (not ~600 files of it), `DFS_MOUNT_BIG=1` writes a
//! 300 MiB file (not 16 MiB), `DFS_MOUNT_FSX_OPS=N` runs N random
//! operations (not 400).

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const CHUNK: u64 = 256 * 1024;

/// Whether FUSE can be used here; with `CI` set it must.
fn have_fuse() -> bool {
    let dev = Path::new("/dev/fuse").exists();
    let tool = Command::new("fusermount3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if dev && tool {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("/dev/fuse and fusermount3 are required with CI set (.ci/run installs fuse3)");
    }
    eprintln!("NOTICE: /dev/fuse or fusermount3 missing; skipping the mount test");
    false
}

fn env_on(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

/// Whether `dir` is a mount point now.
fn mounted(dir: &Path) -> bool {
    let Ok(canon) = std::fs::canonicalize(dir) else {
        return false;
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = canon.to_string_lossy().replace(' ', "\\040");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
}

/// One `dfs-sim mount --foreground` process; unmounted on drop.
struct Mount {
    child: Option<Child>,
    dir: PathBuf,
    log: PathBuf,
}

impl Mount {
    fn start(c: &Cluster, name: &str, extra: &[&str]) -> Mount {
        let dir = c.scratch(name);
        let spill = c.scratch(&format!("{name}-spill"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = c.scratch(&format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = c
            .cmd()
            .arg("mount")
            .arg(&dir)
            .arg("--foreground")
            .arg("--spill-dir")
            .arg(&spill)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start dfs-sim mount");
        let mut m = Mount {
            child: Some(child),
            dir,
            log,
        };
        let start = Instant::now();
        while !mounted(&m.dir) {
            if let Some(st) = m.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("mount exited ({st}): {}", tail(&m.log, 30));
            }
            if start.elapsed() > DEADLINE {
                panic!("not mounted within {DEADLINE:?}: {}", tail(&m.log, 30));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGKILL the mount process (its fusermount3 unmounts the folder).
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        lazy_unmount(&self.dir);
    }
}

fn lazy_unmount(dir: &Path) {
    let start = Instant::now();
    while mounted(dir) && start.elapsed() < DEADLINE {
        let _ = Command::new("fusermount3")
            .arg("-u")
            .arg("-z")
            .arg(dir)
            .stderr(Stdio::null())
            .status();
        if mounted(dir) {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), "TERM");
            let start = Instant::now();
            while c.try_wait().ok().flatten().is_none() && start.elapsed() < DEADLINE {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        lazy_unmount(&self.dir);
    }
}

/// Runs a program to completion within the deadline; kills it otherwise.
fn run(cmd: &mut Command) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("{cmd:?} did not finish within 300 s");
        }
    }
}

#[track_caller]
fn run_ok(cmd: &mut Command) -> String {
    let what = format!("{cmd:?}");
    ok(run(cmd), &what)
}

fn cluster() -> Cluster {
    Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(CHUNK)
        .start()
}

/// A few top-level folders of /usr/share/doc holding about `want` files
/// (all of it when `want` is 0), copied to `to` with `cp -a`.
fn doc_tree(to: &Path, want: usize) -> usize {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/share/doc")
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    std::fs::create_dir_all(to).unwrap();
    let mut n = 0;
    for d in dirs {
        if want > 0 && n >= want {
            break;
        }
        let out = run_ok(Command::new("find").arg(&d));
        n += out.lines().count();
        run_ok(Command::new("cp").arg("-a").arg(&d).arg(to));
    }
    n
}

fn errno_of(r: std::io::Result<impl Sized>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

/// A tree of real files in and out with cp -a, diff -r, rsync -c and tar;
/// a file written through the mount read by `dfs-sim get` and one put by
/// `dfs-sim put` read through the mount; the errors programs expect.
#[test]
fn real_programs_see_the_same_tree() {
    if !have_fuse() {
        return;
    }
    let c = cluster();
    let m = Mount::start(&c, "mnt", &[]);
    let src = c.scratch("src");
    let files = doc_tree(&src, if env_on("DFS_MOUNT_FULL") { 0 } else { 600 });
    assert!(files > 300, "only {files} entries under /usr/share/doc");

    // In with cp -a; diff (links compared as links: some point outside
    // the tree), rsync's checksums and times, tar back out.
    let tree = m.path("tree");
    run_ok(Command::new("cp").arg("-a").arg(&src).arg(&tree));
    run_ok(
        Command::new("diff")
            .arg("-r")
            .arg("--no-dereference")
            .arg(&src)
            .arg(&tree),
    );
    let changes = run_ok(
        Command::new("rsync")
            .args(["-a", "-c", "--dry-run", "--itemize-changes"])
            .arg(format!("{}/", src.display()))
            .arg(format!("{}/", tree.display())),
    );
    assert!(
        changes.trim().is_empty(),
        "rsync -c finds differences:\n{changes}"
    );
    let tar = c.scratch("tree.tar");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(m.path(""))
            .arg("-cf")
            .arg(&tar)
            .arg("tree"),
    );
    let back = c.scratch("back");
    std::fs::create_dir_all(&back).unwrap();
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(&back)
            .arg("-xf")
            .arg(&tar),
    );
    run_ok(
        Command::new("diff")
            .arg("-r")
            .arg("--no-dereference")
            .arg(&src)
            .arg(back.join("tree")),
    );

    // Mount -> dfs-sim get.
    let data = random_bytes(7, 3 * CHUNK as usize + 12345);
    std::fs::write(m.path("out.bin"), &data).unwrap();
    let (o, got) = c.get_bytes("out.bin");
    ok(o, "get out.bin");
    assert_same_bytes(
        &got.unwrap(),
        &data,
        "dfs-sim get of a file written through the mount",
    );

    // dfs-sim put -> mount (a name this mount never looked at).
    let data2 = random_bytes(8, 2 * CHUNK as usize + 1);
    c.put_ok("fromcli/data.bin", &data2);
    let p = m.path("fromcli/data.bin");
    wait_until(DEADLINE, "the put file to show in the mount", || p.exists());
    assert_same_bytes(
        &std::fs::read(&p).unwrap(),
        &data2,
        "mount read of a put file",
    );

    // The errors a program expects.
    let long = "x".repeat(300);
    assert_eq!(
        errno_of(std::fs::File::create(m.path(&long))),
        Some(libc::ENAMETOOLONG)
    );
    assert_eq!(
        errno_of(std::fs::hard_link(m.path("out.bin"), m.path("hard"))),
        Some(libc::EPERM)
    );
    assert_eq!(errno_of(std::fs::remove_dir(&tree)), Some(libc::ENOTEMPTY));
    assert_eq!(
        errno_of(std::fs::File::create(m.path("a\\b"))),
        Some(libc::EINVAL)
    );
    assert_eq!(
        errno_of(std::fs::read(m.path("no/such/file"))),
        Some(libc::ENOENT)
    );
    // An empty directory persists (a catalog entry), and goes with rmdir.
    std::fs::create_dir(m.path("empty")).unwrap();
    let ls = ok(c.run(&["ls"]), "ls");
    assert!(ls.lines().any(|l| l.trim_end().ends_with("empty")), "{ls}");
    std::fs::remove_dir(m.path("empty")).unwrap();
    assert!(!m.path("empty").exists());
}

/// A big file written sequentially and read back by sha256sum; seeded
/// random writes, appends and truncates against a local reference file,
/// compared after every fsync (through the mount, and through `dfs-sim
/// get` every few).
#[test]
fn random_writes_and_truncates_match_a_reference() {
    if !have_fuse() {
        return;
    }
    let c = cluster();
    let m = Mount::start(&c, "mnt", &[]);

    let size = if env_on("DFS_MOUNT_BIG") {
        300 << 20
    } else {
        16 << 20
    };
    let local = c.scratch("big.local");
    {
        let mut f = std::fs::File::create(&local).unwrap();
        let mut rng = StdRng::seed_from_u64(1);
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..size >> 20 {
            rng.fill(&mut buf[..]);
            f.write_all(&buf).unwrap();
        }
    }
    let want = sha2_of_file(&local);
    run_ok(Command::new("cp").arg(&local).arg(m.path("big")));
    let sum = run_ok(Command::new("sha256sum").arg(m.path("big")));
    assert_eq!(
        sum.split_whitespace().next(),
        Some(want.as_str()),
        "sha256sum of the big file"
    );

    // The fsx-style loop.
    let ops: usize = std::env::var("DFS_MOUNT_FSX_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400);
    let mut rng = StdRng::seed_from_u64(42);
    let mut reference: Vec<u8> = Vec::new();
    let path = m.path("fsx.bin");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let mut syncs = 0;
    for op in 0..ops {
        let max = 3 * CHUNK as usize;
        match rng.gen_range(0..10) {
            0..=5 => {
                let off = rng.gen_range(0..=reference.len().min(max));
                let len = rng.gen_range(1..64 * 1024);
                let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                f.write_all_at(&data, off as u64).unwrap();
                if reference.len() < off + len {
                    reference.resize(off + len, 0);
                }
                reference[off..off + len].copy_from_slice(&data);
            }
            6..=7 => {
                let len = rng.gen_range(0..=max);
                f.set_len(len as u64).unwrap();
                reference.resize(len, 0);
            }
            _ => {
                let len = rng.gen_range(1..16 * 1024);
                let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                f.write_all_at(&data, reference.len() as u64).unwrap();
                reference.extend_from_slice(&data);
            }
        }
        if op % 20 == 19 || op + 1 == ops {
            f.sync_all().unwrap();
            syncs += 1;
            let mut got = Vec::new();
            std::fs::File::open(&path)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            assert_same_bytes(&got, &reference, &format!("fsx.bin after op {op} (mount)"));
            if syncs % 5 == 0 {
                let (o, got) = c.get_bytes("fsx.bin");
                ok(o, "get fsx.bin");
                assert_same_bytes(
                    &got.unwrap(),
                    &reference,
                    &format!("fsx.bin after op {op} (dfs-sim get)"),
                );
            }
        }
    }
    drop(f);
    let (o, got) = c.get_bytes("fsx.bin");
    ok(o, "get fsx.bin");
    assert_same_bytes(
        &got.unwrap(),
        &reference,
        "fsx.bin after close (dfs-sim get)",
    );
}

fn sha2_of_file(p: &Path) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    let mut f = std::fs::File::open(p).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Two mounts of one cluster: a change is seen whole at the next open
/// after close, never half; data fsynced survives kill -9 of its mount; a
/// read completes though a node dies under it; an unreachable cluster is
/// EIO after the bounded retry, not a hang.
#[test]
fn two_mounts_close_to_open_and_failures() {
    if !have_fuse() {
        return;
    }
    let mut c = cluster();
    let mut a = Mount::start(&c, "a", &[]);
    // No metadata cache on the reader: close-to-open exactly.
    let b = Mount::start(&c, "b", &["--meta-ttl", "0", "--retry-for", "3s"]);

    let v1 = random_bytes(1, CHUNK as usize + 10);
    let v2 = random_bytes(2, 2 * CHUNK as usize + 20);
    std::fs::write(a.path("shared"), &v1).unwrap();
    assert_same_bytes(&std::fs::read(b.path("shared")).unwrap(), &v1, "b sees v1");
    std::fs::write(a.path("shared"), &v2).unwrap();
    assert_same_bytes(&std::fs::read(b.path("shared")).unwrap(), &v2, "b sees v2");
    // Written but not closed on a: b still sees all of v2, nothing mixed.
    let mut w = OpenOptions::new()
        .write(true)
        .open(a.path("shared"))
        .unwrap();
    w.write_all(&v1[..1000]).unwrap();
    assert_same_bytes(
        &std::fs::read(b.path("shared")).unwrap(),
        &v2,
        "b during a's write",
    );
    drop(w);
    let mut v3 = v2.clone();
    v3[..1000].copy_from_slice(&v1[..1000]);
    assert_same_bytes(
        &std::fs::read(b.path("shared")).unwrap(),
        &v3,
        "b after a's close",
    );
    // Namespace changes cross too.
    std::fs::create_dir(a.path("dir")).unwrap();
    std::fs::rename(a.path("shared"), a.path("dir/moved")).unwrap();
    assert!(b.path("dir").is_dir());
    assert!(!b.path("shared").exists());
    assert_same_bytes(
        &std::fs::read(b.path("dir/moved")).unwrap(),
        &v3,
        "b after rename",
    );

    // kill -9 after fsync: the data is in the cluster.
    let durable = random_bytes(3, CHUNK as usize * 2 + 7);
    let mut f = std::fs::File::create(a.path("durable")).unwrap();
    f.write_all(&durable).unwrap();
    f.sync_all().unwrap();
    a.kill9();
    drop(f);
    let (o, got) = c.get_bytes("durable");
    ok(o, "get durable after kill -9 of its mount");
    assert_same_bytes(&got.unwrap(), &durable, "fsynced data after kill -9");
    drop(a);

    // A node dies under a read: the read completes with the right bytes.
    let big = random_bytes(4, 16 * CHUNK as usize);
    c.put_ok("readme.bin", &big);
    let mut r = std::fs::File::open(b.path("readme.bin")).unwrap();
    let mut got = vec![0u8; CHUNK as usize];
    r.read_exact(&mut got).unwrap();
    c.kill_node(0);
    r.read_to_end(&mut got).unwrap();
    assert_same_bytes(&got, &big, "read across a node's death");

    // The cluster unreachable: EIO within the retry bound.
    c.kill_coord();
    let start = Instant::now();
    let e = std::fs::metadata(b.path("never-seen")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "EIO took {:?}",
        start.elapsed()
    );
    assert!(
        mounted(&b.dir),
        "the mount is still there: {}",
        tail(&b.log, 20)
    );

    // The journal kept the namespace: after a restart of the coordinator
    // the renamed file is under its new name with its bytes, the folder
    // made by mkdir is still there, the old name is gone.
    c.restart_coord_with(None, &[]);
    let mut got = None;
    wait_until(
        DEADLINE,
        "get dir/moved after a coordinator restart",
        || {
            let (o, bytes) = c.get_bytes("dir/moved");
            got = bytes.filter(|_| o.status.success());
            got.is_some()
        },
    );
    assert_same_bytes(
        &got.unwrap(),
        &v3,
        "renamed file after a coordinator restart",
    );
    let ls = ok(c.run(&["ls"]), "ls after a coordinator restart");
    assert!(ls.lines().any(|l| l.trim_end().ends_with(" dir")), "{ls}");
    assert!(
        !ls.lines().any(|l| l.trim_end().ends_with(" shared")),
        "{ls}"
    );
}

/// A cluster with no room gives ENOSPC at close, not EIO.
#[test]
fn a_full_cluster_gives_enospc() {
    if !have_fuse() {
        return;
    }
    let c = Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(CHUNK)
        .node_reserve("1000000GiB")
        .start();
    let m = Mount::start(&c, "mnt", &[]);
    let mut f = std::fs::File::create(m.path("nospace")).unwrap();
    f.write_all(&random_bytes(5, CHUNK as usize)).unwrap();
    let e = f.sync_all().unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
    let _ = m.pid();
}
