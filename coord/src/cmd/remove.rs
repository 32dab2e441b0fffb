//! `Remove`: journal the removal, then ask nodes to delete the copies.

use crate::catalog::Record;
use crate::error::{Error, Result};
use crate::state::Coord;
use protocol::FileName;

pub async fn remove(coord: &Coord, name: FileName) -> Result<()> {
    let empty = match coord.lock().catalog().files().get(&name) {
        None => return Err(Error::NoSuchFile(name)),
        Some(f) => f.size == 0,
    };
    let claim = coord.claim_names(vec![name.clone()])?;
    let res = coord
        .commit(vec![Record::RemoveFile { name: name.clone() }])
        .await;
    drop(claim);
    let garbage = res?;
    tracing::info!(%name, "file removed");
    if empty {
        // An empty file's only trace on the nodes is its name record.
        crate::tags::broadcast(
            coord,
            protocol::SessionMsg::DropName {
                name: name.clone(),
                upto: crate::tags::next_generation(),
            },
        );
    }
    coord.collect(garbage);
    Ok(())
}
