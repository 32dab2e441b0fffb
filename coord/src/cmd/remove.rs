//! `Remove`: journal the removal, then ask nodes to delete the copies.

use crate::catalog::Record;
use crate::error::{Error, Result};
use crate::state::Coord;
use protocol::FileName;

pub async fn remove(coord: &Coord, name: FileName) -> Result<()> {
    if !coord.lock().catalog().files().contains_key(&name) {
        return Err(Error::NoSuchFile(name));
    }
    let claim = coord.claim_names(vec![name.clone()])?;
    let res = coord
        .commit(vec![Record::RemoveFile { name: name.clone() }])
        .await;
    drop(claim);
    let garbage = res?;
    tracing::info!(%name, "file removed");
    coord.collect(garbage);
    Ok(())
}
