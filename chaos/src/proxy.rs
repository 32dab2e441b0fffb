//! A TCP proxy between a node and the coordinator, so that a partition can
//! be cut and healed without privileges (network namespaces need root and
//! a kernel that allows them; a proxy works everywhere). Nodes that chaos
//! starts reach the coordinator only through their proxy.

use crate::error::{Error, Result};
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    pub addr: String,
    /// `true` while partitioned.
    cut: watch::Sender<bool>,
}

impl Proxy {
    /// Listens on an ephemeral loopback port and forwards every connection
    /// to `target` (read at each connection, so a coordinator that comes
    /// back on the same address is found).
    pub async fn start(target: Arc<std::sync::Mutex<String>>) -> Result<Proxy> {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(Error::io("cannot start a proxy"))?;
        let addr = l
            .local_addr()
            .map_err(Error::io("cannot start a proxy"))?
            .to_string();
        let (cut, rx) = watch::channel(false);
        tokio::spawn(accept(l, target, rx));
        Ok(Proxy { addr, cut })
    }

    /// Cuts every connection through this proxy and refuses new ones until
    /// `heal`.
    pub fn partition(&self) {
        let _ = self.cut.send(true);
    }

    pub fn heal(&self) {
        let _ = self.cut.send(false);
    }
}

async fn accept(l: TcpListener, target: Arc<std::sync::Mutex<String>>, cut: watch::Receiver<bool>) {
    loop {
        let Ok((inbound, _)) = l.accept().await else {
            continue;
        };
        if *cut.borrow() {
            // Refused: the node sees its connection closed and retries.
            drop(inbound);
            continue;
        }
        let to = target.lock().map(|t| t.clone()).unwrap_or_default();
        let mut cut = cut.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(&to).await else {
                return;
            };
            let (mut ri, mut wi) = inbound.into_split();
            let (mut ro, mut wo) = outbound.into_split();
            let pipe = async {
                tokio::select! {
                    _ = tokio::io::copy(&mut ri, &mut wo) => {}
                    _ = tokio::io::copy(&mut ro, &mut wi) => {}
                }
            };
            // Both halves are dropped when either direction ends or the
            // partition starts, which closes both sockets.
            tokio::select! {
                _ = pipe => {}
                _ = cut.wait_for(|c| *c) => {}
            }
        });
    }
}
