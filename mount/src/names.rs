//! Paths of the mount and the catalog names they stand for.
//!
//! A path is relative to the mount's root, `""` for the root itself; the
//! catalog name is `--prefix` followed by the path. The catalog refuses
//! some names a POSIX file system allows; they are refused here first with
//! the errno a program expects.

use crate::error::{Error, Result};
use protocol::FileName;

/// Longest name of one path component (NAME_MAX), as most file systems.
pub const NAME_MAX: usize = 255;

/// `parent/name`, after checking `name` as one component.
pub fn child(parent: &str, name: &[u8]) -> Result<String> {
    if name.len() > NAME_MAX {
        return Err(Error::errno(libc::ENAMETOOLONG));
    }
    let name = std::str::from_utf8(name).map_err(|_| Error::errno(libc::EINVAL))?;
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(Error::errno(libc::EINVAL));
    }
    Ok(if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    })
}

/// The parent of a path (the root's parent is the root).
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(p, _)| p)
}

/// The last component of a path.
pub fn base(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, b)| b)
}

/// The catalog name of a path under `prefix`; the root has none.
pub fn catalog(prefix: &str, path: &str) -> Result<FileName> {
    let full = format!("{prefix}{path}");
    if full.len() > protocol::ids::MAX_NAME_LEN {
        return Err(Error::errno(libc::ENAMETOOLONG));
    }
    FileName::new(&full).map_err(|_| Error::errno(libc::EINVAL))
}

/// The listing prefix of a directory's children.
pub fn dir_prefix(prefix: &str, path: &str) -> String {
    if path.is_empty() {
        prefix.to_string()
    } else {
        format!("{prefix}{path}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_like_a_posix_file_system() {
        assert_eq!(child("", b"a").unwrap(), "a");
        assert_eq!(child("a/b", b"c").unwrap(), "a/b/c");
        assert_eq!(
            child("", &[b'x'; 256]).unwrap_err().code(),
            libc::ENAMETOOLONG
        );
        assert_eq!(child("", b"..").unwrap_err().code(), libc::EINVAL);
        assert_eq!(child("", b"a\\b").unwrap(), "a\\b");
        assert_eq!(catalog("", "a\\b").unwrap_err().code(), libc::EINVAL);
        assert_eq!(parent("a/b/c"), "a/b");
        assert_eq!(parent("a"), "");
        assert_eq!(base("a/b/c"), "c");
        assert_eq!(catalog("photos/", "x").unwrap().as_str(), "photos/x");
        assert_eq!(dir_prefix("p/", ""), "p/");
        assert_eq!(dir_prefix("p/", "d"), "p/d/");
    }
}
