//! `Remove`: journal the removal, then ask nodes to delete the copies.

use crate::catalog::Record;
use crate::error::{Error, Result};
use crate::state::Coord;
use protocol::FileName;

pub async fn remove(coord: &Coord, name: FileName) -> Result<()> {
    {
        let mut st = coord.lock();
        if !st.catalog.files.contains_key(&name) {
            return Err(Error::NoSuchFile(name));
        }
        if !st.busy.insert(name.clone()) {
            return Err(Error::Busy(name));
        }
    }
    let res = coord
        .commit(vec![Record::RemoveFile { name: name.clone() }])
        .await;
    coord.lock().busy.remove(&name);
    let garbage = res?;
    tracing::info!(%name, "file removed");
    coord.collect(garbage);
    Ok(())
}
