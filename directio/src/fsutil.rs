//! Durable-file helpers shared by the coordinator (journal, snapshot) and
//! the nodes (store directories, identity files), so both keep one
//! definition of "durable": the data fsynced, then the directory entry
//! that names it.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// Creates `dir` (and parents) and fsyncs the parent of every directory it
/// created, so the new directory entries survive a power loss. An existing
/// directory is left alone (nothing to make durable).
pub fn create_dir_durably(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_durably(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        // Another thread or process created it first: its creator syncs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// Replaces `dir/name` with `bytes` so that a crash leaves either the old
/// content or the new, never a mix: temp file (`name.tmp`), fsync, rename,
/// fsync the directory. The temp file is removed on every error path.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let res = (|| -> io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        File::open(dir)?.sync_all()
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_nested_dirs_and_replaces_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/b/c");
        create_dir_durably(&d).unwrap();
        create_dir_durably(&d).unwrap();
        assert!(d.is_dir());
        write_atomic(&d, "f", b"one").unwrap();
        write_atomic(&d, "f", b"two").unwrap();
        assert_eq!(std::fs::read(d.join("f")).unwrap(), b"two");
        assert!(!d.join("f.tmp").exists());
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file() {
        let t = tempfile::tempdir().unwrap();
        // The rename fails: the target is a non-empty directory.
        std::fs::create_dir_all(t.path().join("f/x")).unwrap();
        assert!(write_atomic(t.path(), "f", b"x").is_err());
        assert!(!t.path().join("f.tmp").exists());
    }
}
