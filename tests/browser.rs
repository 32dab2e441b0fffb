//! The dashboard in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) against a real 4-node cluster. Four alive tiles; a killed
//! node's tile turns dead and the repair view moves until every file is
//! healthy again; a file's stripe map and the hex view of a chunk; a node
//! marked failed in the what-if view changes the verdicts. Screenshots go to
//! the cluster's temp dir; any browser console error fails the test.
//!
//! Needs Debian `chromium` and `chromium-driver`: with `CI` set their absence
//! fails the test, otherwise it is skipped with a notice.

mod common;

use common::{random_bytes, Cluster, DEADLINE};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver, killed on drop; its browser session is ended first, since
/// a killed chromedriver leaves its Chromium running (a failed assertion must
/// not leak a browser).
struct Driver {
    child: Child,
    port: u16,
    session: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(id) = &self.session {
            use std::io::{Read, Write};
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let _ = write!(
                    s,
                    "DELETE /session/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
                );
                // The answer comes once the browser has quit.
                let _ = s.read(&mut [0u8; 512]);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tools_present() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{missing:?} missing: install Debian chromium and chromium-driver (.ci/run does)");
    }
    eprintln!("NOTICE: {missing:?} missing; skipping the browser test");
    false
}

fn start_driver(log: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .arg(format!("--log-path={}", log.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let d = Driver {
        child,
        port,
        session: None,
    };
    common::wait_until(DEADLINE, "chromedriver listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    d
}

async fn connect(d: &Driver, profile: &Path) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1400,1100",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
        "goog:loggingPrefs": { "browser": "ALL" },
    });
    let caps = match caps {
        Value::Object(m) => m,
        _ => unreachable!(),
    };
    ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.port))
        .await
        .expect("open a WebDriver session")
}

/// Evaluates `script` (a function body returning JSON) until `ok` holds.
async fn wait_js(c: &Client, script: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = c.execute(script, vec![]).await.expect("execute script");
        if ok(&v) {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}; last value {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks the element `css` selects. The page redraws its lists on every
/// poll, so an element found a moment ago may be gone: find it again.
async fn click(c: &Client, css: &str) {
    let start = Instant::now();
    loop {
        let res = match c.find(Locator::Css(css)).await {
            Ok(e) => e.click().await,
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => return,
            Err(_) if start.elapsed() < DEADLINE => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot click {css}: {e}"),
        }
    }
}

async fn shot(c: &Client, dir: &Path, name: &str) -> PathBuf {
    eprintln!("[{:?}] {name}", START.get_or_init(Instant::now).elapsed());
    let png = c.screenshot().await.expect("screenshot");
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {}", path.display());
    path
}

/// The browser's console log, from chromedriver's log endpoint (not part of
/// W3C WebDriver, hence the raw request).
fn console_log(port: u16, session: &str) -> Vec<Value> {
    use std::io::{Read, Write};
    let body = r#"{"type":"browser"}"#;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /session/{session}/se/log HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    // chromedriver keeps the connection open: read the head, then exactly
    // Content-Length bytes.
    let mut raw = Vec::new();
    let mut byte = [0u8; 1];
    while !raw.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).expect("read the log response head");
        raw.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no content-length in {head}"));
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("read the log response body");
    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "cannot read the console log ({e}): {}",
            String::from_utf8_lossy(&body)
        );
    });
    v["value"].as_array().cloned().unwrap_or_default()
}

fn errors_in(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

const TILES: &str =
    "return [...document.querySelectorAll('.tile')].map(t => [t.dataset.node, t.dataset.state]);";
const HEALTH: &str = "return [...document.querySelectorAll('#file-table td[data-health]')].map(t => t.dataset.health);";

fn tiles_in(v: &Value, state: &str) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .filter(|t| t[1] == state)
        .map(|t| t[0].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    START.get_or_init(Instant::now);
    if !tools_present() {
        return;
    }
    let mut cl = Cluster::builder()
        .nodes(4)
        .replication(2)
        .parity("xor")
        .heartbeat_ms(200)
        .http()
        .start();
    let base = cl.http_url();
    for i in 0..3u64 {
        cl.put_ok(
            &format!("docs/f{i}"),
            &random_bytes(i, 150_000 + i as usize * 40_000),
        );
    }
    // Screenshots outlive the cluster's temp dir: target/tmp/browser/.
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut driver = start_driver(&dir.join("chromedriver.log"));
    let c = connect(&driver, &dir.join("chrome-profile")).await;
    let session = c.session_id().await.unwrap().expect("a session id");
    driver.session = Some(session.clone());

    // First load: how long until the first paint and until the tiles show.
    c.goto(&format!("{base}/")).await.unwrap();
    let tiles = wait_js(&c, TILES, "four alive tiles", |v| {
        tiles_in(v, "alive").len() == 4
    })
    .await;
    assert_eq!(tiles.as_array().unwrap().len(), 4);
    let timing = c
        .execute(
            "const p = performance.getEntriesByName('first-contentful-paint')[0];\
             const n = performance.getEntriesByType('navigation')[0];\
             return {fcp: p ? p.startTime : null, dom: n.domContentLoadedEventEnd, load: n.loadEventEnd};",
            vec![],
        )
        .await
        .unwrap();
    eprintln!("page timing (ms): {timing}");
    if let Some(fcp) = timing["fcp"].as_f64() {
        // Generous against a loaded 2-core box; the README quotes the
        // measured figure.
        assert!(fcp < 2000.0, "first paint after {fcp} ms");
    }
    wait_js(&c, HEALTH, "three healthy files", |v| {
        v.as_array().unwrap().len() == 3 && v.as_array().unwrap().iter().all(|h| h == "healthy")
    })
    .await;
    shot(&c, &dir, "1-healthy").await;

    // Kill the second node: its tile turns dead, repair runs, every file healthy again.
    let done_before: u64 = c
        .execute(
            "return +document.getElementById('repair-view').dataset.done;",
            vec![],
        )
        .await
        .unwrap()
        .as_u64()
        .unwrap_or(0);
    let victim = Cluster::node_id(1);
    cl.kill_node(1);
    wait_js(&c, TILES, "the killed node's tile dead", |v| {
        tiles_in(v, "dead") == [victim.clone()]
    })
    .await;
    shot(&c, &dir, "2-node-dead").await;
    wait_js(
        &c,
        "return +document.getElementById('repair-view').dataset.done;",
        "the repair view to count repairs",
        |v| v.as_u64().unwrap_or(0) > done_before,
    )
    .await;
    wait_js(
        &c,
        "return +document.getElementById('repair-view').dataset.under;",
        "nothing under-protected",
        |v| v.as_u64() == Some(0),
    )
    .await;
    wait_js(&c, HEALTH, "every file healthy again", |v| {
        v.as_array().unwrap().iter().all(|h| h == "healthy")
    })
    .await;
    shot(&c, &dir, "3-repaired").await;

    // A file's page: the stripe map, then the hex view of its first chunk.
    click(&c, "tr.file-row[data-name='docs/f1']").await;
    let members = wait_js(
        &c,
        "return [...document.querySelectorAll('#stripe-map tr.member')].map(r => r.innerText);",
        "the stripe map",
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let text = members.to_string();
    assert!(text.contains("parity") && text.contains("data 0"), "{text}");
    click(&c, "#stripe-map tr.member .hex-btn").await;
    let hex = wait_js(
        &c,
        "return document.getElementById('hex-view').textContent;",
        "the hex view",
        |v| v.as_str().is_some_and(|s| s.starts_with("00000000")),
    )
    .await;
    // The first 16 bytes of docs/f1, as the page shows them.
    let want: String = random_bytes(1, 190_000)[..8]
        .iter()
        .map(|b| format!("{b:02x} "))
        .collect();
    assert!(
        hex.as_str()
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .contains(want.trim_end()),
        "hex view does not start with {want}: {}",
        &hex.as_str().unwrap()[..200]
    );
    let last = hex.as_str().unwrap().lines().last().unwrap().to_string();
    assert!(
        last.starts_with("0000fff0"),
        "64 KiB shown, last line {last}"
    );
    shot(&c, &dir, "4-file").await;

    // What-if: mark two of the three live nodes; the verdicts change.
    c.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
    let (a, b) = (Cluster::node_id(0), Cluster::node_id(2));
    for n in [&a, &b] {
        click(&c, &format!(".tile[data-node='{n}']")).await;
    }
    wait_js(
        &c,
        "return document.getElementById('health-col').textContent;",
        "the what-if header",
        |v| v.as_str().is_some_and(|s| s.contains(&a) && s.contains(&b)),
    )
    .await;
    let verdicts = wait_js(&c, HEALTH, "what-if verdicts", |v| {
        v.as_array()
            .unwrap()
            .iter()
            .any(|h| h == "lost" || h == "at-risk")
    })
    .await;
    eprintln!("what-if {a},{b}: {verdicts}");
    let marked = c
        .execute(
            "return [...document.querySelectorAll('.tile.marked')].map(t => t.dataset.node);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(marked, json!([a, b]));
    shot(&c, &dir, "5-what-if").await;
    if let Some(to) = std::env::var_os("DFS_DASHBOARD_PNG") {
        std::fs::copy(dir.join("4-file.png"), &to).unwrap();
        eprintln!("copied the dashboard screenshot to {to:?}");
    }

    eprintln!("[{:?}] console", START.get_or_init(Instant::now).elapsed());
    let errors = errors_in(&console_log(driver.port, &session));
    eprintln!("[{:?}] close", START.get_or_init(Instant::now).elapsed());
    c.close().await.unwrap();
    driver.session = None;
    eprintln!("[{:?}] closed", START.get_or_init(Instant::now).elapsed());
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}

/// A child process killed on drop (the data endpoint).
struct Child2(Child);

impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `dfs-sim data` on `port` for the cluster; returns once it listens.
fn start_data(cl: &Cluster, port: u16, log: &Path) -> Child2 {
    let log = std::fs::File::create(log).unwrap();
    let child = cl
        .cmd()
        .args(["data", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start dfs-sim data");
    let c = Child2(child);
    common::wait_until(DEADLINE, "the data endpoint listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    c
}

/// Runs an async script (a promise) in the page and returns its value.
async fn run_async(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.expect("execute script")
}

const TRAFFIC: &str = "return [...document.querySelectorAll('.tile')].map(t => [t.dataset.node, t.dataset.source, t.dataset.target]);";

/// What a user does from the page: upload two files (then `dfs-sim get`
/// returns them byte-exact), download one (its SHA-256, computed in the
/// browser after the page checked every chunk against the catalog, equals
/// the original's computed here), watch a killed node's data rebuilt (a
/// tile marked as a repair source and another as a target while it runs,
/// then the incident with bytes rebuilt and an MTTR), drain a node from its
/// action panel and see it empty; an action without the admin token is
/// refused (401) and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn working_from_the_page() {
    START.get_or_init(Instant::now);
    if !tools_present() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-work");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let admin = dir.join("admin-token");
    std::fs::write(&admin, "page-admin-7").unwrap();
    let data_port = free_port();
    let data_url = format!("http://127.0.0.1:{data_port}");
    let mut cl = Cluster::builder()
        .nodes(5)
        .replication(1)
        .parity("xor")
        .stripe(2)
        .heartbeat_ms(200)
        .coord_arg("--http-admin-token-file")
        .coord_arg(admin.to_str().unwrap())
        .coord_arg("--http-data-url")
        .coord_arg(&data_url)
        .http()
        .start();
    let base = cl.http_url();
    let _data = start_data(&cl, data_port, &dir.join("data.log"));
    // Some data already there, so the kill below has something to rebuild.
    for i in 0..4u64 {
        cl.put_ok(&format!("pre/f{i}"), &random_bytes(40 + i, 260_000));
    }
    let mut driver = start_driver(&dir.join("chromedriver.log"));
    let c = connect(&driver, &dir.join("chrome-profile")).await;
    let session = c.session_id().await.unwrap().expect("a session id");
    driver.session = Some(session.clone());
    c.goto(&format!("{base}/?admin=page-admin-7"))
        .await
        .unwrap();
    wait_js(&c, TILES, "five alive tiles", |v| {
        tiles_in(v, "alive").len() == 5
    })
    .await;

    // Upload two files through the page's file picker.
    let files: Vec<(String, Vec<u8>)> = vec![
        ("alpha.bin".into(), random_bytes(71, 180_000)),
        ("beta.bin".into(), random_bytes(72, 333_333)),
    ];
    let paths: Vec<String> = files
        .iter()
        .map(|(n, d)| {
            let p = dir.join(n);
            std::fs::write(&p, d).unwrap();
            p.display().to_string()
        })
        .collect();
    c.find(Locator::Css("#upload-prefix"))
        .await
        .unwrap()
        .send_keys("up/")
        .await
        .unwrap();
    c.find(Locator::Css("#upload-files"))
        .await
        .unwrap()
        .send_keys(&paths.join("\n"))
        .await
        .unwrap();
    click(&c, "#upload-btn").await;
    let done = wait_js(
        &c,
        "return [...document.querySelectorAll('#upload-list .up')].map(r => [r.dataset.name, r.dataset.done || '']);",
        "both uploads done",
        |v| v.as_array().unwrap().iter().filter(|r| r[1] != "").count() == 2,
    )
    .await;
    assert_eq!(done, json!([["up/alpha.bin", "ok"], ["up/beta.bin", "ok"]]));
    for (n, d) in &files {
        cl.get_exact(&format!("up/{n}"), d);
    }
    shot(&c, &dir, "1-uploaded").await;

    // Download one through the page: checked there, compared here.
    click(&c, "tr.file-row[data-name='up/beta.bin'] .dl-btn").await;
    let got = wait_js(
        &c,
        "const s = document.getElementById('download-status'); return [s.dataset.verified || '', s.dataset.sha256 || '', s.textContent];",
        "the download verified",
        |v| v[0] != "",
    )
    .await;
    assert_eq!(got[0], "ok", "{got}");
    assert_eq!(got[1], common::sha256_hex(&files[1].1).as_str());
    let dl = run_async(&c, "return window.dfsLastDownload;").await;
    assert_eq!(dl["size"], files[1].1.len());
    assert!(dl["chunks"].as_u64().unwrap() >= 5, "{dl}");

    // Kill a node holding data: sources and a target light up while it runs.
    let victim = Cluster::node_id(1);
    cl.kill_node(1);
    let lit = wait_js(
        &c,
        TRAFFIC,
        "a repair source and a repair target tile",
        |v| {
            let a = v.as_array().unwrap();
            a.iter().any(|t| t[1] == "1") && a.iter().any(|t| t[2] == "1")
        },
    )
    .await;
    eprintln!("traffic tiles: {lit}");
    for t in lit.as_array().unwrap() {
        if t[1] == "1" || t[2] == "1" {
            assert_ne!(
                t[0],
                victim.as_str(),
                "the dead node reads or writes: {lit}"
            );
        }
    }
    let flows = run_async(
        &c,
        "return document.querySelectorAll('#flows path.repair').length;",
    )
    .await;
    shot(&c, &dir, "2-rebuild").await;
    assert!(flows.as_u64().unwrap() > 0, "no flow drawn");
    if let Some(to) = std::env::var_os("DFS_REBUILD_PNG") {
        std::fs::copy(dir.join("2-rebuild.png"), &to).unwrap();
    }
    let inc = wait_js(
        &c,
        "return [...document.querySelectorAll('#incident-table tr.incident-row')].map(r => [r.dataset.id, r.dataset.open, +r.dataset.rebuilt, r.dataset.mttr]);",
        "the incident closed",
        |v| v.as_array().unwrap().first().is_some_and(|r| r[1] == "0"),
    )
    .await;
    let first = &inc[0];
    assert!(first[2].as_u64().unwrap() > 0, "nothing rebuilt: {inc}");
    assert!(
        first[3].as_str().unwrap().parse::<u64>().unwrap() > 0,
        "no MTTR: {inc}"
    );
    click(
        &c,
        &format!("tr.incident-row[data-id='{}']", first[0].as_str().unwrap()),
    )
    .await;
    let report = wait_js(
        &c,
        "return document.getElementById('inc-report').innerText;",
        "the incident report",
        |v| v.as_str().is_some_and(|s| s.contains("MTTR")),
    )
    .await;
    assert!(report.as_str().unwrap().contains(&victim), "{report}");
    shot(&c, &dir, "3-incident").await;

    // An action without the admin token: 401, nothing changed.
    let target = Cluster::node_id(2);
    let code = run_async(
        &c,
        &format!(
            "return fetch('/api/nodes/{target}/drain', {{method: 'POST'}}).then(r => r.status);"
        ),
    )
    .await;
    assert_eq!(code, 401);
    let (_, body) = Cluster::http_get(&format!("{base}/api/status"));
    let s: Value = serde_json::from_str(&body).unwrap();
    let n = s["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == target.as_str())
        .unwrap()
        .clone();
    assert_eq!(n["draining"], false);

    // Drain it from its action panel, confirmed; it empties.
    c.execute("window.scrollTo(0, 0);", vec![]).await.unwrap();
    click(&c, &format!(".tile[data-node='{target}'] .act-btn")).await;
    click(&c, "#node-panel button[data-action='drain']").await;
    click(&c, "#confirm-yes").await;
    wait_js(&c, TILES, "the drained tile", |v| {
        tiles_in(v, "draining") == [target.clone()]
    })
    .await;
    common::wait_until(DEADLINE, "the drained node empty", || {
        let (_, body) = Cluster::http_get(&format!("{base}/api/status"));
        let s: Value = serde_json::from_str(&body).unwrap();
        s["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == target.as_str() && n["chunks"] == 0)
    });
    let log = wait_js(
        &c,
        "return document.getElementById('events').innerText;",
        "the drain in the events",
        |v| v.as_str().is_some_and(|s| s.contains("drain")),
    )
    .await;
    eprintln!("events: {log}");
    shot(&c, &dir, "4-drained").await;
    for (n, d) in &files {
        cl.get_exact(&format!("up/{n}"), d);
    }

    let errors = errors_in(&console_log(driver.port, &session));
    c.close().await.unwrap();
    driver.session = None;
    // The refused action above is a 401 the console reports; nothing else.
    let errors: Vec<&String> = errors.iter().filter(|e| !e.contains("401")).collect();
    assert!(errors.is_empty(), "browser console errors: {errors:#?}");
}

/// Every tile's box lies inside the viewport (no scrolling needed), and
/// how many tiles there are.
const TILES_IN_VIEW: &str = "const w = innerWidth, h = innerHeight; const t = [...document.querySelectorAll('.tile')];\
    const out = t.filter(e => { const r = e.getBoundingClientRect(); return r.top < 0 || r.left < 0 || r.bottom > h || r.right > w; });\
    return {tiles: t.length, outside: out.map(e => e.dataset.node), w, h, groups: document.querySelectorAll('.domain').length};";

async fn hundred_tiles(domains: usize, dir: &Path, name: &str) {
    let mut b = Cluster::builder()
        .nodes(100)
        .replication(1)
        .parity("xor")
        .stripe(2)
        .http();
    if domains > 0 {
        b = b.domains(domains);
    }
    let t0 = Instant::now();
    let mut cl = b.start();
    eprintln!("100 nodes ({domains} domains) up in {:?}", t0.elapsed());
    let base = cl.http_url();
    let mut driver = start_driver(&dir.join(format!("chromedriver-{name}.log")));
    let c = connect(&driver, &dir.join(format!("chrome-profile-{name}"))).await;
    driver.session = c.session_id().await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    // A 1400x1000 viewport: the window is that plus the browser's frame.
    let frame = run_async(
        &c,
        "return [outerWidth - innerWidth, outerHeight - innerHeight];",
    )
    .await;
    let (fw, fh) = (
        frame[0].as_u64().unwrap() as u32,
        frame[1].as_u64().unwrap() as u32,
    );
    c.set_window_size(1400 + fw, 1000 + fh).await.unwrap();
    wait_js(&c, TILES, "100 alive tiles", |v| {
        tiles_in(v, "alive").len() == 100
    })
    .await;
    let v = run_async(&c, TILES_IN_VIEW).await;
    shot(&c, dir, name).await;
    eprintln!("{name}: {v}");
    assert_eq!(v["tiles"], 100);
    assert_eq!(
        v["outside"],
        json!([]),
        "tiles outside {}x{}: {v}",
        v["w"],
        v["h"]
    );
    assert_eq!(
        (v["w"].as_u64(), v["h"].as_u64()),
        (Some(1400), Some(1000)),
        "{v}"
    );
    let groups = v["groups"].as_u64().unwrap();
    assert_eq!(groups, if domains > 0 { domains as u64 } else { 1 }, "{v}");
    // The check can fail: on a screen too small for 100 tiles it does.
    c.set_window_size(700 + fw, 450 + fh).await.unwrap();
    let small = wait_js(&c, TILES_IN_VIEW, "the small window", |v| v["h"] == 450).await;
    assert!(!small["outside"].as_array().unwrap().is_empty(), "{small}");
    c.close().await.unwrap();
    driver.session = None;
}

/// 100 nodes in 10 domains, and 100 without domains (one group of one-node
/// domains), each fit a 1400x1000 screen: every tile visible, no scrolling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_nodes_fit_one_screen() {
    START.get_or_init(Instant::now);
    if !tools_present() {
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-100");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    hundred_tiles(10, &dir, "100-nodes-10-domains").await;
    hundred_tiles(0, &dir, "100-nodes-no-domains").await;
}
