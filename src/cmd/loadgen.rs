//! `dfs-sim loadgen`: many small puts or gets from one process, with N
//! concurrent workers each keeping its connections, to measure operations
//! per second without paying a process start per file.

use super::{file_name, ClientArgs};
use anyhow::{bail, Result};
use client::get::Output;
use client::put::{PutOptions, Source};
use client::CoordClient;
use protocol::data_client::NodePool;
use protocol::handshake::Role;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Op {
    Put,
    Get,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, value_enum)]
    pub op: Op,
    /// Files to put or get.
    #[arg(long, default_value_t = 1000)]
    pub count: u64,
    /// Bytes per file (put).
    #[arg(long, default_value_t = 4096)]
    pub size: usize,
    /// Concurrent workers.
    #[arg(long, default_value_t = 8)]
    pub concurrency: u64,
    /// Names are PREFIX/<i>.
    #[arg(long, default_value = "loadgen")]
    pub prefix: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> Result<()> {
    if a.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let cfg = a.client.config()?;
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..a.concurrency {
        let cfg = cfg.clone();
        let (op, count, size, conc, prefix) =
            (a.op, a.count, a.size, a.concurrency, a.prefix.clone());
        workers.spawn(async move {
            let mut coord = CoordClient::connect(&cfg).await?;
            let pool = Arc::new(NodePool::new(Role::Client, None));
            let mut i = w;
            while i < count {
                let name = file_name(&format!("{prefix}/{i}"))?;
                match op {
                    Op::Put => {
                        let data: Vec<u8> =
                            (0..size).map(|j| (i as usize * 31 + j) as u8).collect();
                        let src = Source {
                            size: data.len() as u64,
                            reader: Box::new(std::io::Cursor::new(data)),
                        };
                        let opts = PutOptions {
                            inflight: 1,
                            force: true,
                            scheme: None,
                        };
                        client::put::put_source(
                            &mut coord,
                            &pool,
                            opts,
                            src,
                            name,
                            None,
                            Arc::new(|_| {}),
                        )
                        .await?;
                    }
                    Op::Get => {
                        client::get::get_with(
                            &mut coord,
                            &pool,
                            1,
                            name,
                            Output::Discard,
                            Arc::new(|_| {}),
                        )
                        .await?;
                    }
                }
                i += conc;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = workers.join_next().await {
        r??;
    }
    let secs = start.elapsed().as_secs_f64();
    outln!(
        "loadgen op={} count={} concurrency={} secs={secs:.3} ops_per_s={:.0}",
        match a.op {
            Op::Put => "put",
            Op::Get => "get",
        },
        a.count,
        a.concurrency,
        a.count as f64 / secs
    );
    Ok(())
}
