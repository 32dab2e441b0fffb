//! What a mount keeps about a name: its kind, size, mode, owner and times,
//! read from and written to the file's catalog attributes (`fs.*` keys), so
//! that `chmod`, `chown` and `utimens` persist with the file and files put
//! by `dfs-sim put` or S3 get sensible defaults.

use protocol::{Attrs, FileSummary};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Attribute keys. Files without them are regular files.
pub const TYPE: &str = "fs.type";
pub const MODE: &str = "fs.mode";
pub const UID: &str = "fs.uid";
pub const GID: &str = "fs.gid";
pub const MTIME: &str = "fs.mtime";
pub const ATIME: &str = "fs.atime";
pub const CTIME: &str = "fs.ctime";
pub const TARGET: &str = "fs.target";
pub const RDEV: &str = "fs.rdev";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Link,
    /// FIFOs, sockets and device nodes: only a name and attributes here;
    /// the kernel implements what they do.
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    fn tag(self) -> Option<&'static str> {
        match self {
            Kind::File => None,
            Kind::Dir => Some("dir"),
            Kind::Link => Some("link"),
            Kind::Fifo => Some("fifo"),
            Kind::Socket => Some("sock"),
            Kind::CharDev => Some("chr"),
            Kind::BlockDev => Some("blk"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    /// Permission bits (07777).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    /// Nanoseconds since the epoch.
    pub mtime: u64,
    pub atime: u64,
    pub ctime: u64,
    /// A symbolic link's target.
    pub target: Option<String>,
    /// A device node's device number.
    pub rdev: u32,
    /// Whether a catalog entry of this exact name exists (a directory may
    /// be only derived from the names below it).
    pub explicit: bool,
    /// Other attributes of the entry (S3 content type, ETag...), kept
    /// when the mount rewrites the `fs.*` ones.
    pub other: Attrs,
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub fn to_time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

pub fn from_time(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Meta {
    /// A new name of `kind` made by this mount.
    pub fn new(kind: Kind, perm: u16, uid: u32, gid: u32) -> Meta {
        let now = now_ns();
        Meta {
            kind,
            size: 0,
            perm,
            uid,
            gid,
            mtime: now,
            atime: now,
            ctime: now,
            target: None,
            rdev: 0,
            explicit: false,
            other: Attrs::new(),
        }
    }

    /// A directory known only from the names below it.
    pub fn derived_dir(created_ms: u64) -> Meta {
        let t = created_ms.saturating_mul(1_000_000);
        Meta {
            kind: Kind::Dir,
            size: 0,
            perm: 0o755,
            uid: 0,
            gid: 0,
            mtime: t,
            atime: t,
            ctime: t,
            target: None,
            rdev: 0,
            explicit: false,
            other: Attrs::new(),
        }
    }

    /// The entry of a listing or lookup.
    pub fn from_summary(s: &FileSummary) -> Meta {
        Meta::from_attrs(s.size, s.created_ms, &s.attrs)
    }

    pub fn from_attrs(size: u64, created_ms: u64, a: &Attrs) -> Meta {
        let kind = match a.get(TYPE).map(String::as_str) {
            Some("dir") => Kind::Dir,
            Some("link") => Kind::Link,
            Some("fifo") => Kind::Fifo,
            Some("sock") => Kind::Socket,
            Some("chr") => Kind::CharDev,
            Some("blk") => Kind::BlockDev,
            _ => Kind::File,
        };
        let num = |k: &str| a.get(k).and_then(|v| v.parse::<u64>().ok());
        let created = created_ms.saturating_mul(1_000_000);
        let mtime = num(MTIME).unwrap_or(created);
        let default_perm = if kind == Kind::Dir { 0o755 } else { 0o644 };
        let target = a.get(TARGET).cloned();
        Meta {
            kind,
            size: match kind {
                Kind::File => size,
                Kind::Dir => 0,
                Kind::Link => target.as_ref().map_or(0, |t| t.len() as u64),
                _ => 0,
            },
            perm: a
                .get(MODE)
                .and_then(|v| u16::from_str_radix(v, 8).ok())
                .map_or(default_perm, |m| m & 0o7777),
            uid: num(UID).map_or(0, |v| v as u32),
            gid: num(GID).map_or(0, |v| v as u32),
            mtime,
            atime: num(ATIME).unwrap_or(mtime),
            ctime: num(CTIME).unwrap_or(mtime),
            target,
            rdev: num(RDEV).map_or(0, |v| v as u32),
            explicit: true,
            other: a
                .iter()
                .filter(|(k, _)| !k.starts_with("fs."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }

    /// The attributes to store with the entry.
    pub fn to_attrs(&self) -> Attrs {
        let mut a = self.other.clone();
        if let Some(t) = self.kind.tag() {
            a.insert(TYPE.into(), t.into());
        }
        if self.rdev != 0 {
            a.insert(RDEV.into(), self.rdev.to_string());
        }
        a.insert(MODE.into(), format!("{:o}", self.perm));
        a.insert(UID.into(), self.uid.to_string());
        a.insert(GID.into(), self.gid.to_string());
        a.insert(MTIME.into(), self.mtime.to_string());
        a.insert(ATIME.into(), self.atime.to_string());
        a.insert(CTIME.into(), self.ctime.to_string());
        if let Some(t) = &self.target {
            a.insert(TARGET.into(), t.clone());
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_round_trip_and_default() {
        let mut m = Meta::new(Kind::Link, 0o777, 1000, 100);
        m.target = Some("../x".into());
        m.other.insert("content-type".into(), "text/plain".into());
        let back = Meta::from_attrs(0, 0, &m.to_attrs());
        assert_eq!(back.kind, Kind::Link);
        assert_eq!((back.perm, back.uid, back.gid), (0o777, 1000, 100));
        assert_eq!((back.mtime, back.ctime), (m.mtime, m.ctime));
        assert_eq!(back.size, 4);
        assert_eq!(back.other, m.other);
        // A file put by the CLI: a regular file, 0644, its creation time.
        let plain = Meta::from_attrs(10, 5, &Attrs::new());
        assert_eq!(
            (plain.kind, plain.perm, plain.size),
            (Kind::File, 0o644, 10)
        );
        assert_eq!(plain.mtime, 5_000_000);
        // A device node keeps its type and number.
        let mut dev = Meta::new(Kind::CharDev, 0o600, 0, 0);
        dev.rdev = 0x0103;
        let back = Meta::from_attrs(0, 0, &dev.to_attrs());
        assert_eq!((back.kind, back.rdev), (Kind::CharDev, 0x0103));
    }
}
