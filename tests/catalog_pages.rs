//! A whole-namespace `fsck` walks the catalog in bounded pages
//! (`FsckPage`), as `ls` does with `ListPage`: pages come in name order,
//! an empty page ends the walk, and every file is seen once. The catalog
//! that answers is reloaded from background snapshots and the journal, so
//! the pages also show that a restart keeps every file.
//!
//! In one process (`coord::run`, `node::run` on `127.0.0.1:0`), like
//! `in_process.rs`: the pages are the coordinator's, not the CLI's.

use protocol::{FileName, NodeId, NodeState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

type Server = JoinHandle<Result<(), String>>;

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.changed().await;
}

/// Starts a coordinator on `dir` (a snapshot due every 4 records, so that
/// background snapshots and journal rotations happen during the test).
async fn start_coord(dir: &std::path::Path, stop: &watch::Sender<bool>) -> (String, Server) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut cfg = coord::CoordConfig::new(dir.to_path_buf());
    cfg.chunk_size = 64 * 1024;
    cfg.heartbeat = Duration::from_millis(100);
    cfg.replication = 1;
    cfg.scheme = protocol::Scheme::None;
    cfg.snapshot_every = 4;
    let rx = stop.subscribe();
    let server = tokio::spawn(async move {
        coord::run(listener, cfg, stopped(rx))
            .await
            .map_err(|e| e.to_string())
    });
    (addr, server)
}

async fn wait_alive(ccfg: &client::ClientConfig) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = client::CoordClient::connect(ccfg).await {
            if let Ok(s) = c.status().await {
                if s.nodes.iter().any(|n| n.state == NodeState::Alive) {
                    return;
                }
            }
        }
        assert!(Instant::now() < deadline, "the node never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every page of a whole-namespace fsck with `limit` files per page.
async fn walk(cc: &mut client::CoordClient, limit: u32) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut after = None;
    loop {
        let page = cc
            .fsck_page(after.clone(), limit, Vec::new())
            .await
            .unwrap();
        let Some(last) = page.files.last() else {
            return pages;
        };
        after = Some(last.name.clone());
        assert!(
            page.files
                .iter()
                .all(|f| f.health == protocol::health::Health::Healthy),
            "{page:?}"
        );
        pages.push(page.files.iter().map(|f| f.name.to_string()).collect());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_pages_through_a_reloaded_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, _) = watch::channel(false);
    let (coord_stop, _) = watch::channel(false);
    let (coord_addr, coord) = start_coord(&dir.path().join("coord"), &coord_stop).await;

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut ncfg = node::NodeConfig::new(NodeId::new("n1").unwrap(), dir.path().join("n1"), addr);
    ncfg.coord = Some(coord_addr.clone());
    let rx = stop.subscribe();
    let node = tokio::spawn(async move {
        node::run(listener, ncfg, stopped(rx))
            .await
            .map_err(|e| e.to_string())
    });
    let ccfg = client::ClientConfig::new(coord_addr.clone());
    wait_alive(&ccfg).await;

    let input = dir.path().join("small");
    std::fs::write(&input, b"a small file").unwrap();
    let mut names: Vec<String> = (0..11).map(|i| format!("d/{i:02}")).collect();
    for n in &names {
        let name = FileName::new(n).unwrap();
        client::put::put(&ccfg, &input, name, false, Arc::new(|_| {}))
            .await
            .unwrap();
    }
    names.sort();

    // Restart the coordinator on the same directory: the catalog comes
    // back from its snapshot and journal(s).
    coord_stop.send(true).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(30), coord)
        .await
        .expect("coordinator did not stop")
        .unwrap();
    assert_eq!(res, Ok(()));
    let (coord_stop, _) = watch::channel(false);
    // Same address: the node's session reconnects to it.
    let listener = loop {
        match TcpListener::bind(&coord_addr).await {
            Ok(l) => break l,
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let mut cfg = coord::CoordConfig::new(dir.path().join("coord"));
    cfg.chunk_size = 64 * 1024;
    cfg.heartbeat = Duration::from_millis(100);
    cfg.replication = 1;
    cfg.scheme = protocol::Scheme::None;
    let rx = coord_stop.subscribe();
    let coord = tokio::spawn(async move {
        coord::run(listener, cfg, stopped(rx))
            .await
            .map_err(|e| e.to_string())
    });
    wait_alive(&ccfg).await;

    let mut cc = client::CoordClient::connect(&ccfg).await.unwrap();
    let pages = walk(&mut cc, 4).await;
    let sizes: Vec<usize> = pages.iter().map(|p| p.len()).collect();
    assert_eq!(sizes, vec![4, 4, 3]);
    assert_eq!(pages.concat(), names, "every file once, in name order");
    // A limit of 0 still makes progress (one file per page).
    assert_eq!(walk(&mut cc, 0).await.len(), names.len());
    // An unknown what-if node is a clear error, not an empty page.
    let err = cc
        .fsck_page(None, 4, vec![NodeId::new("zz").unwrap()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no node zz"), "{err}");

    coord_stop.send(true).unwrap();
    stop.send(true).unwrap();
    for s in [coord, node] {
        let res = tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .expect("server did not stop")
            .unwrap();
        assert_eq!(res, Ok(()));
    }
}
