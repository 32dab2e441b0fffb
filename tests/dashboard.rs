//! The HTTP face of a real cluster: the API serves the same documents as
//! the CLI's `--json`, pages through the namespace, answers errors in JSON
//! with a fitting status, and both `/metrics` pass `promtool check metrics`.

mod common;

use common::{ok, random_bytes, Cluster};
use serde_json::Value;
use std::process::{Command, Stdio};

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn get_json(url: &str) -> Value {
    let (code, body) = Cluster::http_get(url);
    assert_eq!(code, 200, "GET {url}: {body}");
    json(&body)
}

/// Fields that change between two reads a moment apart.
fn without_volatile(mut v: Value) -> Value {
    for n in v["nodes"].as_array_mut().unwrap() {
        let n = n.as_object_mut().unwrap();
        n.remove("last_heartbeat_ms_ago");
        n.remove("free_bytes");
    }
    v
}

#[test]
fn api_serves_the_cli_documents() {
    let mut c = Cluster::builder().nodes(4).parity("xor").http().start();
    let base = c.http_url();
    let mut names = Vec::new();
    for i in 0..5 {
        let name = format!("dir/f{i}");
        c.put_ok(&name, &random_bytes(i, 100_000 + i as usize * 7_000));
        names.push(name);
    }
    c.put_ok("other", &random_bytes(9, 10));

    // Nodes report their own counts with each heartbeat: right after the
    // puts a report may land between the two reads, so compare until the
    // reports have settled (they must agree then).
    let start = std::time::Instant::now();
    loop {
        let cli = json(&ok(c.run(&["status", "--json"]), "status --json"));
        let api = get_json(&format!("{base}/api/status"));
        let (a, b) = (without_volatile(api), without_volatile(cli));
        if a == b {
            break;
        }
        assert!(
            start.elapsed() < common::DEADLINE,
            "API and CLI status differ: {a} vs {b}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let cli = json(&ok(c.run(&["stat", "dir/f3", "--json"]), "stat --json"));
    assert_eq!(get_json(&format!("{base}/api/files/dir/f3")), cli);

    let cli = json(&ok(
        c.run(&["fsck", "--json", "--what-if", "n1,n2"]),
        "fsck --what-if",
    ));
    assert_eq!(get_json(&format!("{base}/api/fsck?what_if=n1,n2")), cli);

    // Pages of two under the prefix, in name order, ending without a cursor.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let page = get_json(&format!(
            "{base}/api/files?prefix=dir/&limit=2&after={after}"
        ));
        let files = page["files"].as_array().unwrap();
        assert!(files.len() <= 2);
        for f in files {
            assert_eq!(f["health"], "healthy");
            seen.push(f["name"].as_str().unwrap().to_string());
        }
        match page["next_after"].as_str() {
            Some(a) => after = a.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, names);

    for (url, code, needle) in [
        ("/api/files/nope", 404, "no such file: nope"),
        ("/api/fsck?what_if=zz", 400, "no node zz"),
        ("/api/nothing", 404, "no such page"),
        ("/api/preview?file=other&chunk=00", 404, "has no chunk"),
    ] {
        let (got, body) = Cluster::http_get(&format!("{base}{url}"));
        assert_eq!(got, code, "{url}: {body}");
        let msg = json(&body)["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(msg.contains(needle), "{url}: {msg}");
    }

    // The hex preview: the first 64 KiB of a chunk, from a live copy.
    let stat = c.stat("dir/f1");
    let chunk = stat["stripes"][0]["data"][0]["id"].as_str().unwrap();
    let p = get_json(&format!("{base}/api/preview?file=dir/f1&chunk={chunk}"));
    let want = random_bytes(1, 107_000);
    assert_eq!(p["len"], 64 * 1024);
    assert_eq!(
        p["hex"].as_str().unwrap(),
        want[..64 * 1024]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
}

/// `promtool check metrics` on a scrape; `None` when promtool is missing
/// outside CI.
fn promtool(text: &str) -> Option<String> {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!("promtool is required in CI (Debian package prometheus): {e}");
            }
            eprintln!("NOTICE: promtool not found ({e}); skipping the lint of /metrics");
            return None;
        }
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool check metrics: {report}");
    Some(report)
}

#[test]
fn metrics_pass_promtool() {
    let mut c = Cluster::builder().nodes(3).parity("xor").http().start();
    let data = random_bytes(7, 300_000);
    c.put_ok("m", &data);
    c.get_exact("m", &data);

    let (code, coord) = Cluster::http_get(&format!("{}/metrics", c.http_url()));
    assert_eq!(code, 200);
    for name in [
        "dfs_coord_requests_total{op=\"plan\",outcome=\"ok\"}",
        "dfs_coord_request_duration_seconds_bucket{op=\"commit\"",
        "dfs_coord_requests_total{op=\"lookup\",outcome=\"ok\"}",
        "dfs_chunks{level=\"healthy\"}",
        "dfs_chunks{level=\"lost\"} 0",
        "dfs_node_up{node=\"n1\"} 1",
        "dfs_node_free_bytes{node=\"n2\"}",
        "dfs_repair_queue_chunks{state=\"waiting\"} 0",
        "dfs_repaired_bytes_total",
    ] {
        assert!(
            coord.contains(name),
            "coordinator /metrics lacks {name}:\n{coord}"
        );
    }
    promtool(&coord);

    // Every node that stored or served a chunk counts it.
    let mut node_text = String::new();
    for i in 0..3 {
        let (code, text) = Cluster::http_get(&format!("{}/metrics", c.node_http_url(i)));
        assert_eq!(code, 200);
        promtool(&text);
        node_text += &text;
    }
    for name in [
        "dfs_node_requests_total{op=\"put\",outcome=\"ok\"}",
        "dfs_node_request_duration_seconds_bucket{op=\"put\"",
        "dfs_node_received_bytes_total{op=\"put\"}",
        "dfs_node_sent_bytes_total{op=\"get\"}",
    ] {
        assert!(
            node_text.contains(name),
            "node /metrics lack {name}:\n{node_text}"
        );
    }
}

#[test]
fn off_loopback_needs_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::BIN)
        .args([
            "coord",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "0.0.0.0:0",
            "--data",
        ])
        .arg(dir.path())
        .env_remove("DFS_SECRET")
        .output()
        .unwrap();
    common::fails_with(out, "not a loopback address", "coord --http 0.0.0.0:0");
}

#[test]
fn a_token_guards_the_api_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    /// Kills the coordinator even when an assertion fails.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Command::new(common::BIN)
        .args(["coord", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--http-token-file")
        .arg(&token)
        .arg("--data")
        .arg(dir.path().join("coord"))
        .env_remove("DFS_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(stdout).lines();
    let url = lines
        .find_map(|l| {
            l.ok()?
                .strip_prefix("dashboard on ")
                .map(|u| u.trim_end_matches('/').to_string())
        })
        .expect("dashboard line");
    let (code, body) = Cluster::http_get(&format!("{url}/api/status"));
    assert_eq!(code, 401, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("token"));
    let (code, _) = Cluster::http_get(&format!("{url}/api/status?token=wrong"));
    assert_eq!(code, 401);
    let (code, body) = Cluster::http_get(&format!("{url}/api/status?token=s3cret-token"));
    assert_eq!(code, 200, "{body}");
    let (code, _) = Cluster::http_get(&format!("{url}/metrics?token=s3cret-token"));
    assert_eq!(code, 200);
}

/// A request with a method, headers and a body on a std socket: the status
/// and the body.
fn http_req(url: &str, method: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    head += "\r\n";
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// Reads server-sent events from `base/api/events` until `want` names one
/// whose data satisfies `ok`; returns its data.
fn wait_event(
    s: &mut std::io::BufReader<std::net::TcpStream>,
    want: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    use std::io::BufRead;
    let start = std::time::Instant::now();
    let mut event = String::new();
    loop {
        assert!(
            start.elapsed() < common::DEADLINE,
            "no {want} event in time"
        );
        let mut line = String::new();
        if s.read_line(&mut line).unwrap_or(0) == 0 {
            panic!("event stream closed while waiting for {want}");
        }
        let line = line.trim_end();
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            if event == want {
                let v = json(d);
                if ok(&v) {
                    return v;
                }
            }
        }
    }
}

fn open_events(base: &str) -> std::io::BufReader<std::net::TcpStream> {
    use std::io::Write;
    let host = base.strip_prefix("http://").unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(common::DEADLINE)).unwrap();
    write!(s, "GET /api/events HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    std::io::BufReader::new(s)
}

fn node<'a>(status: &'a Value, id: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id}"))
}

/// A node dies during a repair-able load: the API shows which nodes the
/// repair reads and which it writes, then one incident whose rebuilt bytes
/// equal the stored bytes the catalog listed on the dead node (summed here
/// from `stat` before the kill), with an MTTR; the CLI prints the same
/// documents and they survive a coordinator restart. An action without
/// the admin token is refused and changes nothing; with it, the drained
/// node empties, and the event stream shows the action.
#[test]
fn incidents_traffic_and_actions() {
    let keys = tempfile::tempdir().unwrap();
    let admin = keys.path().join("admin");
    std::fs::write(&admin, "admin-secret-1").unwrap();
    let mut c = Cluster::builder()
        .nodes(5)
        .replication(1)
        .parity("xor")
        .stripe(2)
        .heartbeat_ms(200)
        .coord_arg("--http-admin-token-file")
        .coord_arg(admin.to_str().unwrap())
        .http()
        .start();
    let base = c.http_url();
    let files: Vec<(String, Vec<u8>)> = (0..6u64)
        .map(|i| {
            (
                format!("inc/f{i}"),
                random_bytes(100 + i, 300_000 + i as usize * 11_000),
            )
        })
        .collect();
    for (name, data) in &files {
        c.put_ok(name, data);
    }
    let names: Vec<&String> = files.iter().map(|(n, _)| n).collect();
    // What the dead node held, from the catalog before the kill.
    let victim = Cluster::node_id(1);
    let mut want_rebuilt = 0u64;
    for n in &names {
        let st = c.stat(n);
        for s in st["stripes"].as_array().unwrap() {
            for ch in s["data"]
                .as_array()
                .unwrap()
                .iter()
                .chain(s["parity"].as_array().unwrap())
            {
                if common::holders(ch).contains(&victim) {
                    want_rebuilt += ch["stored_len"].as_u64().unwrap();
                }
            }
        }
    }
    assert!(want_rebuilt > 0, "the victim holds nothing");
    let (code, _) = http_req(&format!("{base}/api/incidents"), "GET", &[], b"");
    assert_eq!(code, 200);
    assert_eq!(
        get_json(&format!("{base}/api/incidents")),
        serde_json::json!([])
    );

    c.kill_node(1);
    // While it runs (or within the traffic window after): sources and targets.
    let mut sources = Vec::new();
    let mut targets = Vec::new();
    common::wait_until(
        common::DEADLINE,
        "a repair source and a repair target",
        || {
            let s = get_json(&format!("{base}/api/status"));
            for n in s["nodes"].as_array().unwrap() {
                let id = n["id"].as_str().unwrap().to_string();
                if n["traffic"]["repair_source"] == true && !sources.contains(&id) {
                    sources.push(id.clone());
                }
                if n["traffic"]["repair_target"] == true && !targets.contains(&id) {
                    targets.push(id);
                }
            }
            !sources.is_empty() && !targets.is_empty()
        },
    );
    assert!(!sources.contains(&victim) && !targets.contains(&victim));
    // Everything protected again: the incident is closed.
    common::wait_until(common::DEADLINE, "a closed incident", || {
        let v = get_json(&format!("{base}/api/incidents"));
        v.as_array()
            .unwrap()
            .first()
            .is_some_and(|i| i["open"] == false)
    });
    let list = get_json(&format!("{base}/api/incidents"));
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let inc = &list[0];
    assert_eq!(inc["cause"], "node-died");
    assert_eq!(inc["failed_nodes"], serde_json::json!([victim]));
    assert_eq!(
        inc["rebuilt_bytes"].as_u64().unwrap(),
        want_rebuilt,
        "{inc}"
    );
    // xor over two data chunks: a rebuild reads two members per member lost.
    let per = inc["read_per_rebuilt"].as_f64().unwrap();
    assert!((1.5..=2.5).contains(&per), "read per rebuilt {per}");
    let mttr = inc["mttr_ms"].as_u64().unwrap();
    assert!(
        mttr > 0 && inc["detection_ms"].as_u64().unwrap() <= mttr,
        "{inc}"
    );
    assert!(!inc["sources"].as_array().unwrap().is_empty());
    assert!(!inc["targets"].as_array().unwrap().is_empty());
    let id = inc["id"].as_u64().unwrap();
    // The CLI prints the same documents.
    let cli = json(&ok(c.run(&["incidents", "--json"]), "incidents --json"));
    assert_eq!(cli, list);
    let one = get_json(&format!("{base}/api/incidents/{id}"));
    assert_eq!(one, *inc);
    let cli = json(&ok(
        c.run(&["incidents", &id.to_string(), "--json"]),
        "incidents ID",
    ));
    assert_eq!(cli, one);
    let text = ok(c.run(&["incidents"]), "incidents");
    assert!(text.contains(&format!("node {victim} died")), "{text}");
    let (code, _) = http_req(&format!("{base}/api/incidents/999"), "GET", &[], b"");
    assert_eq!(code, 404);

    // A coordinator restart keeps the record, once it is on disk (it is
    // written just after the close is decided).
    let file = c.coord_data().join("incidents.json");
    common::wait_until(common::DEADLINE, "the closed incident saved", || {
        std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|v| v[0]["ended_ms"].is_u64())
    });
    c.kill_coord();
    c.restart_coord();
    let base = c.http_url();
    assert_eq!(get_json(&format!("{base}/api/incidents/{id}")), one);

    // Actions: refused without (or with a wrong) admin token, changing nothing.
    c.wait_nodes_alive(4);
    let target = Cluster::node_id(2);
    let drain = format!("{base}/api/nodes/{target}/drain");
    for hdr in [vec![], vec![("X-DFS-Admin", "wrong")]] {
        let (code, body) = http_req(&drain, "POST", &hdr, b"");
        assert_eq!(code, 401, "{body}");
    }
    let s = get_json(&format!("{base}/api/status"));
    assert_eq!(node(&s, &target)["draining"], false);
    let mut events = open_events(&base);
    wait_event(&mut events, "status", |_| true);
    let (code, body) = http_req(&drain, "POST", &[("X-DFS-Admin", "admin-secret-1")], b"");
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["action"], "drain");
    let ev = wait_event(&mut events, "action", |v| v["action"] == "drain");
    assert_eq!(ev["node"], target.as_str());
    common::wait_until(common::DEADLINE, "the drained node empty", || {
        let s = get_json(&format!("{base}/api/status"));
        let n = node(&s, &target);
        n["draining"] == true && n["chunks"] == 0
    });
    // The stream carries the change as a delta of that node.
    let d = wait_event(&mut events, "delta", |v| {
        v["nodes"].as_array().is_some_and(|a| {
            a.iter()
                .any(|n| n["id"] == target.as_str() && n["draining"] == true)
        })
    });
    assert!(d["order"].as_array().unwrap().len() == 5);
    for (name, data) in &files {
        c.get_exact(name, data);
    }
    let (code, _) = http_req(
        &format!("{base}/api/nodes/{target}/nonsense"),
        "POST",
        &[("X-DFS-Admin", "admin-secret-1")],
        b"",
    );
    assert_eq!(code, 404);
}

/// A corrupt copy found by a scrub is an incident too: cause `corrupt`,
/// the node that held it, and exactly that copy's stored bytes rebuilt.
#[test]
fn a_corrupt_copy_is_an_incident() {
    let mut c = Cluster::builder()
        .nodes(4)
        .replication(2)
        .parity("xor")
        .heartbeat_ms(200)
        .http()
        .start();
    let base = c.http_url();
    let data = random_bytes(5, 150_000);
    c.put_ok("bad/f", &data);
    let st = c.stat("bad/f");
    let ch = common::chunk_of(&st, 0, Some(0));
    let holder = common::holders(ch)[0].clone();
    let id = ch["id"].as_str().unwrap();
    let stored = ch["stored_len"].as_u64().unwrap();
    common::flip_byte_near_end(&c.chunk_path(Cluster::node_index(&holder), id), 7);
    let out = ok(
        c.run_timeout(&["scrub", "--node", &holder, "--wait"], common::DEADLINE),
        "scrub --wait",
    );
    assert!(out.contains("scrub finished"), "{out}");
    common::wait_until(common::DEADLINE, "a closed corrupt-copy incident", || {
        let v = get_json(&format!("{base}/api/incidents"));
        v.as_array()
            .unwrap()
            .first()
            .is_some_and(|i| i["open"] == false && i["cause"] == "corrupt")
    });
    let inc = &get_json(&format!("{base}/api/incidents"))[0];
    assert_eq!(inc["failed_nodes"], serde_json::json!([holder]), "{inc}");
    assert_eq!(inc["rebuilt_bytes"].as_u64(), Some(stored), "{inc}");
    assert_eq!(inc["chunks"], 1, "{inc}");
    assert!(inc["summary"].as_str().unwrap().contains(id), "{inc}");
    c.get_exact("bad/f", &data);
}
