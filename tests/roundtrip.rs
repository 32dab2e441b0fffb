//! Round trips through a real cluster (coordinator + 3 nodes as child
//! processes): `put` then `get` is byte-exact for sizes around the chunk
//! boundary (0, 1, C-1, C, C+1, several chunks), to a file and to stdout;
//! `ls`, `stat` and `rm` agree with what was stored; overwriting needs
//! `--force`; and path-like names are refused with a clear error.

mod common;

use common::*;

const C: usize = 64 * 1024;

fn cluster() -> Cluster {
    Cluster::builder()
        .nodes(3)
        .replication(2)
        .parity("xor")
        .chunk_size(C as u64)
        .start()
}

#[test]
fn sizes_around_chunk_boundaries_round_trip_exactly() {
    let c = cluster();
    let sizes = [0, 1, C - 1, C, C + 1, 2 * C, 5 * C + 123];
    for (i, &size) in sizes.iter().enumerate() {
        let name = format!("sizes/f{size}");
        let data = random_bytes(1000 + i as u64, size);
        let out = c.put_ok(&name, &data);
        assert!(out.contains(&format!("put {name}")), "put output: {out}");
        c.get_exact(&name, &data);

        let st = c.stat(&name);
        assert_eq!(st["name"], name.as_str());
        assert_eq!(
            st["size"].as_u64(),
            Some(size as u64),
            "stat size of {name}"
        );
        assert_eq!(st["health"], "healthy", "health of {name}: {st}");
        let chunks: usize = st["stripes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["data"].as_array().unwrap().len())
            .sum();
        assert_eq!(chunks, size.div_ceil(C), "chunk count of {name}");
    }
    let mut names = c.ls();
    names.sort();
    let mut want: Vec<String> = sizes.iter().map(|s| format!("sizes/f{s}")).collect();
    want.sort();
    assert_eq!(names, want);
}

#[test]
fn get_to_stdout_is_byte_exact() {
    let c = cluster();
    let data = random_bytes(7, 3 * C + 17);
    c.put_ok("stdout/blob", &data);
    let o = c.run(&["get", "stdout/blob", "--out", "-"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_same_bytes(&o.stdout, &data, "get --out -");
    // The summary goes to stderr so it cannot pollute the data.
    assert!(stderr(&o).contains("get stdout/blob"), "{}", stderr(&o));
}

#[test]
fn ls_stat_and_rm() {
    let c = cluster();
    let a = random_bytes(1, C + 5);
    let b = random_bytes(2, 10);
    let other = random_bytes(3, 2 * C);
    c.put_ok("dir/a", &a);
    c.put_ok("dir/b", &b);
    c.put_ok("other/x", &other);

    // Prefix filter, JSON and plain.
    let out = ok(c.run(&["ls", "dir/", "--json"]), "ls dir/");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let mut names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["dir/a", "dir/b"]);
    let a_entry = v
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "dir/a")
        .unwrap();
    assert_eq!(a_entry["size"].as_u64(), Some(a.len() as u64));
    assert_eq!(a_entry["chunks"].as_u64(), Some(2));
    let plain = ok(c.run(&["ls"]), "ls");
    for n in ["dir/a", "dir/b", "other/x"] {
        assert!(plain.contains(n), "plain ls lacks {n}: {plain}");
    }

    // Human stat output names the file and its health.
    let st = ok(c.run(&["stat", "dir/a"]), "stat dir/a");
    assert!(st.contains("dir/a") && st.contains("healthy"), "{st}");

    // rm: gone from ls, get and stat fail, others untouched.
    ok(c.run(&["rm", "dir/a"]), "rm dir/a");
    assert!(!c.ls().contains(&"dir/a".to_string()));
    let (o, data) = c.get_bytes("dir/a");
    fails_with(o, "no such file", "get after rm");
    assert!(data.is_none(), "failed get left an output file");
    fails_with(c.run(&["stat", "dir/a"]), "no such file", "stat after rm");
    fails_with(c.run(&["rm", "dir/a"]), "no such file", "second rm");
    c.get_exact("dir/b", &b);
    c.get_exact("other/x", &other);

    // The name can be reused after rm without --force.
    let a2 = random_bytes(4, 100);
    c.put_ok("dir/a", &a2);
    c.get_exact("dir/a", &a2);
}

#[test]
fn overwrite_requires_force() {
    let c = cluster();
    let v1 = random_bytes(10, 2 * C + 1);
    let v2 = random_bytes(11, C / 2);
    c.put_ok("ow", &v1);
    let err = fails_with(
        c.put_bytes("ow", &v2),
        "already exists",
        "put without --force",
    );
    assert!(
        err.contains("--force"),
        "error should hint at --force: {err}"
    );
    // The refused put changed nothing.
    c.get_exact("ow", &v1);

    let path = c.scratch("v2");
    std::fs::write(&path, &v2).unwrap();
    ok(
        c.run(&["put", path.to_str().unwrap(), "--name", "ow", "--force"]),
        "put --force",
    );
    c.get_exact("ow", &v2);
    assert_eq!(c.stat("ow")["size"].as_u64(), Some(v2.len() as u64));
    assert_eq!(c.ls(), ["ow"]);
}

#[test]
fn path_like_names_are_rejected() {
    let c = cluster();
    let path = c.scratch("small");
    std::fs::write(&path, b"hello").unwrap();
    for bad in ["../x", "/abs", "a//b", "a/../b", "a/", "."] {
        let o = c.run(&["put", path.to_str().unwrap(), "--name", bad]);
        let err = fails_with(o, "invalid name", &format!("put --name {bad:?}"));
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one-line error expected: {err}"
        );
        fails_with(
            c.run(&["get", bad, "--out", "-"]),
            "invalid name",
            &format!("get {bad:?}"),
        );
    }
    assert!(c.ls().is_empty(), "no bad name may have been stored");
    // A sane nested name is fine.
    ok(
        c.run(&["put", path.to_str().unwrap(), "--name", "ok/nested.name"]),
        "put ok/nested.name",
    );
    c.get_exact("ok/nested.name", b"hello");
}

#[test]
fn removed_and_overwritten_chunks_are_collected() {
    let c = cluster();
    let keep = random_bytes(20, 3 * C + 1);
    c.put_ok("gc/keep", &keep);
    c.put_ok("gc/rm", &random_bytes(21, 4 * C));
    c.put_ok("gc/over", &random_bytes(22, 5 * C));
    wait_disks_match_catalog(&c);
    let before = disk_placement(&c).len();
    assert!(before > 0);

    ok(c.run(&["rm", "gc/rm"]), "rm gc/rm");
    let path = c.scratch("over2");
    let over2 = random_bytes(23, 10);
    std::fs::write(&path, &over2).unwrap();
    ok(
        c.run(&[
            "put",
            path.to_str().unwrap(),
            "--name",
            "gc/over",
            "--force",
        ]),
        "put --force",
    );
    // The removed file's and the overwritten version's chunks go away.
    wait_disks_match_catalog(&c);
    assert!(disk_placement(&c).len() < before);
    c.get_exact("gc/keep", &keep);
    c.get_exact("gc/over", &over2);
}
