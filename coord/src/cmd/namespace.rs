//! `Rename`, `SetAttrs`, `MakeEntry`: the namespace operations a mounted
//! file system needs beyond put and remove (`dfs-sim mount`).
//!
//! Each is one journal record, so each is atomic for one name: a rename
//! moves a file's entry (its stripes and chunks, untouched) to a new name
//! in one durable step, replacing what was there; `SetAttrs` replaces a
//! file's attributes (a mount keeps mode, owner and times there);
//! `MakeEntry` creates an empty entry (no chunks) that carries only
//! attributes: a mount's explicit empty directory or symbolic link. A
//! directory rename is many file renames, made by the client: the catalog
//! has no directories, only names.

use super::now_ms;
use crate::catalog::{FileEntry, Record};
use crate::error::{Error, Result};
use crate::state::Coord;
use crate::uploads::NameGuard;
use protocol::{check_attrs, Attrs, FileName};
use std::time::{Duration, Instant};

/// How long a namespace change waits for a name another change holds (a
/// put's commit, a remove: each one journal write) before it is refused.
const BUSY_WAIT: Duration = Duration::from_secs(10);

/// Claims `names`, waiting while another change holds one of them.
async fn claim(coord: &Coord, names: Vec<FileName>) -> Result<NameGuard<'_>> {
    let deadline = Instant::now() + BUSY_WAIT;
    let mut pause = Duration::from_millis(1);
    loop {
        match coord.claim_names(names.clone()) {
            Ok(g) => return Ok(g),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Moves `from` to `to`; an existing `to` is replaced (its chunks become
/// garbage) unless `replace` is false, when it is refused.
pub async fn rename(coord: &Coord, from: FileName, to: FileName, replace: bool) -> Result<()> {
    if coord.config().read_only {
        return Err(Error::ReadOnly);
    }
    if from == to {
        return match coord.lock().catalog().files().contains_key(&from) {
            true => Ok(()),
            false => Err(Error::NoSuchFile(from)),
        };
    }
    let guard = claim(coord, vec![from.clone(), to.clone()]).await?;
    let entry = {
        let st = coord.lock();
        let files = st.catalog().files();
        if !replace && files.contains_key(&to) {
            return Err(Error::FileExists(to));
        }
        match files.get(&from) {
            Some(e) => e.clone(),
            None => return Err(Error::NoSuchFile(from)),
        }
    };
    let res = coord
        .commit(vec![Record::Rename {
            from: from.clone(),
            to: to.clone(),
            entry,
        }])
        .await;
    drop(guard);
    let garbage = res?;
    tracing::debug!(%from, %to, "renamed");
    coord.collect(garbage);
    Ok(())
}

/// Replaces the attributes of `name`.
pub async fn set_attrs(coord: &Coord, name: FileName, attrs: Attrs) -> Result<()> {
    if coord.config().read_only {
        return Err(Error::ReadOnly);
    }
    check_attrs(&attrs).map_err(Error::BadRequest)?;
    let guard = claim(coord, vec![name.clone()]).await?;
    if !coord.lock().catalog().files().contains_key(&name) {
        return Err(Error::NoSuchFile(name));
    }
    let res = coord.commit(vec![Record::SetAttrs { name, attrs }]).await;
    drop(guard);
    res.map(|_| ())
}

/// Creates `name` as an empty entry carrying `attrs`; refused if the name
/// exists.
pub async fn make_entry(coord: &Coord, name: FileName, attrs: Attrs) -> Result<()> {
    let cfg = coord.config();
    if cfg.read_only {
        return Err(Error::ReadOnly);
    }
    check_attrs(&attrs).map_err(Error::BadRequest)?;
    let guard = claim(coord, vec![name.clone()]).await?;
    if coord.lock().catalog().files().contains_key(&name) {
        return Err(Error::FileExists(name));
    }
    let entry = FileEntry {
        size: 0,
        created_ms: now_ms(),
        chunk_size: cfg.chunk_size,
        replication: cfg.replication,
        scheme: cfg.scheme,
        stripes: Vec::new(),
        attrs,
    };
    let res = coord.commit(vec![Record::PutFile { name, entry }]).await;
    drop(guard);
    res.map(|_| ())
}
