//! `dfs-sim coordinators`: the coordinator group — members, leader, term,
//! commit index and each follower's lag.

use super::{print_json, ClientArgs};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub async fn run(a: Args) -> Result<()> {
    let cfg = a.client.config()?;
    // Ask the leader when one answers (only it knows the followers' lag);
    // otherwise the first member that answers at all, with what it knows.
    let mut seen = None;
    let mut last_err = None;
    for addr in cfg.coord_addrs() {
        let mut one = cfg.clone();
        one.coord = addr.clone();
        match client::CoordClient::connect(&one).await {
            Ok(mut c) => match c.coordinators().await {
                Ok(g) => {
                    let leads = g.leader.as_deref() == Some(g.me.as_str());
                    seen = Some(g);
                    if leads {
                        break;
                    }
                }
                Err(e) => last_err = Some(e),
            },
            Err(e) => last_err = Some(e),
        }
    }
    let Some(g) = seen else {
        return Err(last_err
            .map(anyhow::Error::from)
            .unwrap_or_else(|| anyhow::anyhow!("no coordinator address given")));
    };
    if a.json {
        print_json(&g);
        return Ok(());
    }
    outln!(
        "leader {} in term {}, log committed to {}, applied {} (as seen by {})",
        g.leader.as_deref().unwrap_or("NONE"),
        g.term,
        g.committed,
        g.applied,
        g.me
    );
    if g.last_change_ms > 0 {
        let ago = protocol::token::now_ms().saturating_sub(g.last_change_ms) / 1000;
        outln!("last leadership change seen {ago} s ago");
    }
    outln!("{:<10} {:<22} {:<9} {:>8}", "MEMBER", "ADDR", "ROLE", "LAG");
    for m in &g.members {
        outln!(
            "{:<10} {:<22} {:<9} {:>8}",
            m.name,
            m.addr,
            if m.leader { "leader" } else { "follower" },
            m.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into())
        );
    }
    Ok(())
}
