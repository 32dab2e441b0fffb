//! The servers are libraries: a coordinator and three nodes run in this test
//! process (`coord::run`, `node::run` on `127.0.0.1:0` listeners with a
//! shutdown future), the client library stores and fetches a file through
//! them byte-exact, and shutdown returns every server cleanly.

use client::get::Output;
use client::ClientConfig;
use protocol::{FileName, NodeId, NodeState};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.changed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let (stop, rx) = watch::channel(false);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let coord_addr = listener.local_addr().unwrap().to_string();
    let mut cfg = coord::CoordConfig::new(dir.path().join("coord"));
    cfg.chunk_size = 64 * 1024;
    cfg.heartbeat = Duration::from_millis(100);
    let mut servers = vec![tokio::spawn(async move {
        coord::run(listener, cfg, stopped(rx))
            .await
            .map_err(|e| e.to_string())
    })];
    for i in 0..3 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let id = NodeId::new(&format!("n{i}")).unwrap();
        let mut ncfg = node::NodeConfig::new(id, dir.path().join(format!("n{i}")), addr);
        ncfg.coord = Some(coord_addr.clone());
        let rx = stop.subscribe();
        servers.push(tokio::spawn(async move {
            node::run(listener, ncfg, stopped(rx))
                .await
                .map_err(|e| e.to_string())
        }));
    }

    let ccfg = ClientConfig::new(coord_addr.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut c) = client::CoordClient::connect(&ccfg).await {
            if let Ok(s) = c.status().await {
                if s.nodes
                    .iter()
                    .filter(|n| n.state == NodeState::Alive)
                    .count()
                    == 3
                {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "nodes never registered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
    let input = dir.path().join("input.bin");
    std::fs::write(&input, &data).unwrap();
    let name = FileName::new("in/process.bin").unwrap();
    let put = client::put::put(&ccfg, &input, name.clone(), false, Arc::new(|_| {}))
        .await
        .unwrap();
    assert_eq!(put.size, data.len() as u64);
    assert_eq!(put.chunks, 5);
    let out = dir.path().join("output.bin");
    client::get::get(&ccfg, name, Output::File(out.clone()), Arc::new(|_| {}))
        .await
        .unwrap();
    assert!(std::fs::read(&out).unwrap() == data, "bytes differ");

    // A plan for an absurd size is refused, not allocated.
    let mut cc = client::CoordClient::connect(&ccfg).await.unwrap();
    let err = cc
        .plan_put(FileName::new("huge").unwrap(), u64::MAX, false, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("limit"), "{err}");

    stop.send(true).unwrap();
    for s in servers {
        let res = tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .expect("server did not stop")
            .unwrap();
        assert_eq!(res, Ok(()));
    }
}
