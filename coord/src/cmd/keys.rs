//! `KeyCreate`, `KeyRevoke`, `KeyList`: client keys, kept in the catalog.
//!
//! A client key lets its holder use the cluster as a client (put, get, ls,
//! rm...) and nothing more: it is proved to the coordinator only, never
//! to nodes, which serve clients only against block tokens the
//! coordinator signs. Issuing and revoking keys needs the cluster secret.

use crate::catalog::Record;
use crate::error::{Error, Result};
use crate::state::Coord;
use protocol::handshake::MAX_KEY_NAME;

fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_KEY_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::BadRequest(format!(
            "a key name has 1 to {MAX_KEY_NAME} characters among a-z A-Z 0-9 - _ ."
        )))
    }
}

/// The key a client key name stands for now (`None` once revoked): a
/// connection checks it before each request against the key it proved at
/// its handshake, so revoking a key also ends the connections already open
/// with it, and no request of theirs can renew a read token.
pub fn current(coord: &Coord, name: &str) -> Option<[u8; 32]> {
    coord.lock().catalog().keys().get(name).copied()
}

/// Issues a new key; returns it as `NAME:HEX`, the content of a key file.
pub async fn create(coord: &Coord, name: String) -> Result<String> {
    check_name(&name)?;
    if !coord.config().secured() {
        return Err(Error::BadRequest(
            "client keys need a secured cluster: start the coordinator and nodes with --secret-file"
                .into(),
        ));
    }
    if coord.lock().catalog().keys().contains_key(&name) {
        return Err(Error::BadRequest(format!(
            "a key named {name} exists; revoke it first (dfs-sim key revoke {name})"
        )));
    }
    let key: [u8; 32] = rand::random();
    coord
        .commit(vec![Record::KeyCreate {
            name: name.clone(),
            key,
        }])
        .await?;
    tracing::info!(key = %name, "client key created");
    Ok(format!("{name}:{}", hex::encode(key)))
}

pub async fn revoke(coord: &Coord, name: String) -> Result<()> {
    if !coord.lock().catalog().keys().contains_key(&name) {
        return Err(Error::BadRequest(format!("no key named {name}")));
    }
    coord
        .commit(vec![Record::KeyRevoke { name: name.clone() }])
        .await?;
    tracing::info!(key = %name, "client key revoked");
    Ok(())
}

pub fn list(coord: &Coord) -> Vec<String> {
    coord.lock().catalog().keys().keys().cloned().collect()
}
