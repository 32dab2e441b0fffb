//! The mount's error type, and the one place cluster errors become errnos.

use fuser::Errno;
use protocol::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Client(#[from] client::Error),
    /// The cluster did not answer within the retry budget.
    #[error("the cluster did not answer within {0:?}")]
    Unreachable(std::time::Duration),
    #[error("spill file: {0}")]
    Spill(#[from] std::io::Error),
    /// A POSIX answer decided by the mount itself (ENOENT, ENOTEMPTY...).
    #[error("errno {0}")]
    Errno(i32),
    #[error("mount: {0}")]
    Mount(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn errno(e: i32) -> Error {
        Error::Errno(e)
    }

    /// Whether trying again could help: the coordinator or a node could
    /// not be reached, or asked to come back later.
    pub fn transient(&self) -> bool {
        match self {
            Error::Client(e) => client_transient(e),
            Error::Unreachable(_) => true,
            _ => false,
        }
    }

    /// What a program sees.
    pub fn to_errno(&self) -> Errno {
        Errno::from_i32(self.code())
    }

    pub fn code(&self) -> i32 {
        match self {
            Error::Errno(e) => *e,
            Error::Unreachable(_) | Error::Mount(_) => libc::EIO,
            Error::Spill(e) => match e.raw_os_error() {
                Some(libc::ENOSPC) => libc::ENOSPC,
                _ => libc::EIO,
            },
            Error::Client(e) => client_code(e),
        }
    }
}

fn client_transient(e: &client::Error) -> bool {
    match e {
        client::Error::NoCoordinator { .. } | client::Error::Protocol { .. } => true,
        client::Error::Coord(w) => w.kind == ErrorKind::Overloaded,
        _ => false,
    }
}

/// A full cluster is `ENOSPC` whether the coordinator found no room to
/// place the chunks or a node refused them for lack of space.
fn sounds_full(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("no space") || m.contains("disk full") || m.contains("enospc")
}

fn client_code(e: &client::Error) -> i32 {
    match e {
        client::Error::Coord(w) => match w.kind {
            ErrorKind::NoSuchFile => libc::ENOENT,
            ErrorKind::FileExists => libc::EEXIST,
            ErrorKind::InvalidName => {
                if w.message.contains("longer than") {
                    libc::ENAMETOOLONG
                } else {
                    libc::EINVAL
                }
            }
            ErrorKind::DiskFull => libc::ENOSPC,
            // Too few live nodes to place a file: the cluster is (partly)
            // unavailable, not full.
            ErrorKind::NotEnoughNodes => libc::EIO,
            ErrorKind::BadRequest if sounds_full(&w.message) => libc::ENOSPC,
            ErrorKind::Forbidden => libc::EACCES,
            ErrorKind::BadRequest if w.message.contains("longer than") => libc::ENAMETOOLONG,
            ErrorKind::BadRequest if w.message.contains("metadata") => libc::E2BIG,
            ErrorKind::BadRequest => libc::EINVAL,
            ErrorKind::Overloaded => libc::EAGAIN,
            _ => libc::EIO,
        },
        client::Error::PutFailed { cause, .. } if sounds_full(cause) => libc::ENOSPC,
        client::Error::Rejected(_) => libc::EIO,
        _ => libc::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::WireError;

    #[test]
    fn cluster_errors_become_posix_errors() {
        let coord = |k, m: &str| Error::Client(client::Error::Coord(WireError::new(k, m)));
        assert_eq!(coord(ErrorKind::NoSuchFile, "x").code(), libc::ENOENT);
        assert_eq!(coord(ErrorKind::FileExists, "x").code(), libc::EEXIST);
        assert_eq!(coord(ErrorKind::NotEnoughNodes, "x").code(), libc::EIO);
        assert_eq!(
            coord(ErrorKind::BadRequest, "only 0 live: disk full on n1, n2").code(),
            libc::ENOSPC
        );
        assert_eq!(coord(ErrorKind::Forbidden, "x").code(), libc::EACCES);
        assert_eq!(
            coord(
                ErrorKind::InvalidName,
                "file name is longer than 4096 bytes"
            )
            .code(),
            libc::ENAMETOOLONG
        );
        assert_eq!(coord(ErrorKind::InvalidName, "bad").code(), libc::EINVAL);
        let full = client::Error::PutFailed {
            name: "a".into(),
            cause: "n1: disk full".into(),
        };
        assert_eq!(Error::Client(full).code(), libc::ENOSPC);
        assert_eq!(Error::Unreachable(Default::default()).code(), libc::EIO);
        assert!(Error::Unreachable(Default::default()).transient());
        assert!(!coord(ErrorKind::NoSuchFile, "x").transient());
    }
}
