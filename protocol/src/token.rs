//! Block access tokens, after HDFS's: the coordinator grants a client the
//! right to one operation on one chunk, and nodes check the grant without
//! asking anyone.
//!
//! ```text
//! token = { chunk, op, max_len, expires_ms, mac }
//! mac   = HMAC-SHA256(token_key, "dfs-sim block token" | chunk | op | max_len | expires_ms)
//! token_key = HMAC-SHA256(internal secret, "dfs-sim block token key")
//! ```
//!
//! Only holders of the internal secret (the coordinator and the nodes) can
//! derive the token key, so a client holding only its client key can read or
//! write exactly the chunks it was granted, within the size bound and until
//! the expiry, and can never delete anything. Tokens exist only in a secured
//! cluster; without a secret nodes serve everyone (loopback development).

use crate::handshake::Secret;
use crate::ids::ChunkId;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockOp {
    Read,
    Write,
}

/// A signed grant for one operation on one chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockToken {
    pub chunk: ChunkId,
    pub op: BlockOp,
    /// Largest stored length a write may announce (unused for reads).
    pub max_len: u64,
    /// Milliseconds since the Unix epoch after which the token is void.
    pub expires_ms: u64,
    pub mac: [u8; 32],
}

/// The key tokens are signed with, derived from the internal secret.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Why a node refused a token; sent back as a one-line error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a block token is required for this operation (ask the coordinator)")]
    Missing,
    #[error("the block token's signature is invalid")]
    BadSignature,
    #[error("the block token is for chunk {granted}, not {asked}")]
    WrongChunk { granted: ChunkId, asked: ChunkId },
    #[error("the block token grants {granted:?}, not {asked:?}")]
    WrongOp { granted: BlockOp, asked: BlockOp },
    #[error("the block token allows {max} bytes, the request announces {len}")]
    TooLong { max: u64, len: u64 },
    #[error("the block token expired")]
    Expired,
}

impl TokenKey {
    pub fn from_secret(secret: &Secret) -> Self {
        TokenKey(secret.derive(b"dfs-sim block token key"))
    }

    fn mac(
        &self,
        chunk: &ChunkId,
        op: BlockOp,
        max_len: u64,
        expires_ms: u64,
        tag: Option<&[u8; 32]>,
    ) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        mac.update(b"dfs-sim block token");
        mac.update(&chunk.0);
        mac.update(&[op as u8]);
        mac.update(&max_len.to_le_bytes());
        mac.update(&expires_ms.to_le_bytes());
        // A token signed over an owner tag's digest has a different MAC
        // from one signed without: neither passes for the other.
        if let Some(d) = tag {
            mac.update(b"owner tag");
            mac.update(d);
        }
        mac
    }

    pub fn sign(&self, chunk: ChunkId, op: BlockOp, max_len: u64, expires_ms: u64) -> BlockToken {
        self.sign_tagged(chunk, op, max_len, expires_ms, None)
    }

    /// [`TokenKey::sign`] over an owner tag's digest
    /// ([`crate::tag::OwnerTag::digest`]): the grant of a tagged put.
    pub fn sign_tagged(
        &self,
        chunk: ChunkId,
        op: BlockOp,
        max_len: u64,
        expires_ms: u64,
        tag: Option<&[u8; 32]>,
    ) -> BlockToken {
        let mac = self
            .mac(&chunk, op, max_len, expires_ms, tag)
            .finalize()
            .into_bytes()
            .into();
        BlockToken {
            chunk,
            op,
            max_len,
            expires_ms,
            mac,
        }
    }

    /// Checks that `token` grants `op` on `chunk` for `len` stored bytes at
    /// `now_ms`. The signature is checked first (in constant time), so a
    /// forged token learns nothing from which field was wrong.
    pub fn check(
        &self,
        token: Option<&BlockToken>,
        chunk: &ChunkId,
        op: BlockOp,
        len: u64,
        now_ms: u64,
    ) -> Result<(), TokenError> {
        self.check_tagged(token, chunk, op, len, now_ms, None)
    }

    /// [`TokenKey::check`] of a grant signed over an owner tag's digest:
    /// a tag other than the one signed fails as a bad signature.
    pub fn check_tagged(
        &self,
        token: Option<&BlockToken>,
        chunk: &ChunkId,
        op: BlockOp,
        len: u64,
        now_ms: u64,
        tag: Option<&[u8; 32]>,
    ) -> Result<(), TokenError> {
        let t = token.ok_or(TokenError::Missing)?;
        self.mac(&t.chunk, t.op, t.max_len, t.expires_ms, tag)
            .verify_slice(&t.mac)
            .map_err(|_| TokenError::BadSignature)?;
        if t.chunk != *chunk {
            return Err(TokenError::WrongChunk {
                granted: t.chunk,
                asked: *chunk,
            });
        }
        if t.op != op {
            return Err(TokenError::WrongOp {
                granted: t.op,
                asked: op,
            });
        }
        if op == BlockOp::Write && len > t.max_len {
            return Err(TokenError::TooLong {
                max: t.max_len,
                len,
            });
        }
        if now_ms > t.expires_ms {
            return Err(TokenError::Expired);
        }
        Ok(())
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> TokenKey {
        TokenKey::from_secret(&Secret::new(s).unwrap())
    }

    #[test]
    fn grants_exactly_what_was_signed() {
        let k = key("cluster secret");
        let c = ChunkId::random();
        let t = k.sign(c, BlockOp::Write, 1000, 5_000);
        assert_eq!(k.check(Some(&t), &c, BlockOp::Write, 1000, 4_000), Ok(()));
        assert_eq!(
            k.check(Some(&t), &c, BlockOp::Write, 1001, 4_000),
            Err(TokenError::TooLong {
                max: 1000,
                len: 1001
            })
        );
        assert!(matches!(
            k.check(Some(&t), &c, BlockOp::Read, 0, 4_000),
            Err(TokenError::WrongOp { .. })
        ));
        let other = ChunkId::random();
        assert!(matches!(
            k.check(Some(&t), &other, BlockOp::Write, 10, 4_000),
            Err(TokenError::WrongChunk { .. })
        ));
        assert_eq!(
            k.check(Some(&t), &c, BlockOp::Write, 10, 5_001),
            Err(TokenError::Expired)
        );
        assert_eq!(
            k.check(None, &c, BlockOp::Write, 10, 0),
            Err(TokenError::Missing)
        );
    }

    #[test]
    fn a_tagged_grant_holds_only_for_its_tag() {
        let k = key("cluster secret");
        let c = ChunkId::random();
        let (mine, theirs) = ([1u8; 32], [2u8; 32]);
        let t = k.sign_tagged(c, BlockOp::Write, 10, 5_000, Some(&mine));
        assert_eq!(
            k.check_tagged(Some(&t), &c, BlockOp::Write, 10, 0, Some(&mine)),
            Ok(())
        );
        for other in [Some(&theirs), None] {
            assert_eq!(
                k.check_tagged(Some(&t), &c, BlockOp::Write, 10, 0, other),
                Err(TokenError::BadSignature)
            );
        }
        // An untagged grant cannot carry a tag either.
        let u = k.sign(c, BlockOp::Write, 10, 5_000);
        assert_eq!(
            k.check_tagged(Some(&u), &c, BlockOp::Write, 10, 0, Some(&mine)),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn forged_or_altered_tokens_fail() {
        let k = key("cluster secret");
        let c = ChunkId::random();
        // Signed with another cluster's key.
        let t = key("another secret").sign(c, BlockOp::Read, 0, u64::MAX);
        assert_eq!(
            k.check(Some(&t), &c, BlockOp::Read, 0, 0),
            Err(TokenError::BadSignature)
        );
        // A read grant turned into a write grant, or stretched in time.
        let mut t = k.sign(c, BlockOp::Read, 0, 10);
        t.op = BlockOp::Write;
        assert_eq!(
            k.check(Some(&t), &c, BlockOp::Write, 0, 0),
            Err(TokenError::BadSignature)
        );
        let mut t = k.sign(c, BlockOp::Read, 0, 10);
        t.expires_ms = u64::MAX;
        assert_eq!(
            k.check(Some(&t), &c, BlockOp::Read, 0, 100),
            Err(TokenError::BadSignature)
        );
    }
}
