//! Owner tags: what a chunk file says about the file it belongs to, so that
//! the catalog can be rebuilt from the nodes alone (`coord
//! --rebuild-from-nodes`) after every coordinator disk is lost.
//!
//! ```text
//! OwnerTag { name, generation, size, scheme, replication, chunk_size,
//!            stripes, stripe, data, member, attrs }
//! digest = SHA-256("dfs-sim owner tag" | postcard(tag with attrs emptied))
//! ```
//!
//! A write token for a tagged put is signed over `digest` (see
//! [`crate::token`]), so a client holding a grant for chunk X cannot store it
//! under a tag naming another file. Attributes are not covered: they are
//! decided after the bytes (an S3 ETag) and written by the coordinator once
//! the file is committed (`NodeRequest::Retag`).
//!
//! Why a generation rather than the commit time: the rebuild needs a total
//! order of the puts of one name that survives a coordinator restart. It is
//! a hybrid clock, `ms << 20 | counter` ([`GenClock`]), so it is also the
//! file's creation time to the millisecond.

use crate::attrs::{Attrs, MAX_ATTRS_BYTES};
use crate::ids::FileName;
use codes::Scheme;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits of a generation below the milliseconds.
pub const GEN_COUNTER_BITS: u32 = 20;

/// Largest encoded tag: a 4,096-byte name, attributes within
/// [`MAX_ATTRS_BYTES`] plus their varint lengths, and the fixed fields.
/// Bounds every tag read from disk or wire before it is decoded.
pub const MAX_TAG_LEN: usize =
    crate::ids::MAX_NAME_LEN + MAX_ATTRS_BYTES + 2048 + 10 * MAX_STRIPE_DATA;

/// Most data members a tagged stripe may have (bounds `lens`).
pub const MAX_STRIPE_DATA: usize = 256;

/// Who a chunk belongs to and where in that file it sits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerTag {
    pub name: FileName,
    /// Increases with every put of a name (a hybrid clock): of two complete
    /// versions of one name, the higher generation is the newer.
    pub generation: u64,
    /// The whole file's length.
    pub size: u64,
    pub scheme: Scheme,
    pub replication: u32,
    pub chunk_size: u64,
    /// Stripes of the whole file.
    pub stripes: u32,
    /// This chunk's stripe.
    pub stripe: u32,
    /// Data chunks of this stripe (fewer than K in a short stripe).
    pub data: u32,
    /// Member index in the stripe: data `i` is `i`, parity `j` is `K + j`.
    pub member: u32,
    /// Raw lengths of the stripe's data chunks, in order: what a rebuild
    /// needs to place a member none of whose copies answered (its offset,
    /// and the length a decode cuts it to; parities are as long as the
    /// longest).
    pub lens: Vec<u64>,
    /// The file's attributes (S3 content type, user metadata, ETag): kept
    /// on every member of the first stripe, empty elsewhere.
    pub attrs: Attrs,
}

impl OwnerTag {
    /// What a write token is signed over: everything but the attributes.
    pub fn digest(&self) -> [u8; 32] {
        let mut t = self.clone();
        t.attrs = Attrs::new();
        let mut h = Sha256::new();
        h.update(b"dfs-sim owner tag");
        // Encoding a tag cannot fail (no maps with non-string keys, no
        // unsized sequences); an empty encoding would still be signed.
        h.update(postcard::to_allocvec(&t).unwrap_or_default());
        h.finalize().into()
    }

    /// Checks the fields a decoder cannot: attribute size, member and
    /// stripe positions within the scheme and the file.
    pub fn check(&self) -> Result<(), String> {
        crate::attrs::check_attrs(&self.attrs)?;
        if self.stripes == 0 {
            // The name record of an empty file: no member to place.
            return if self.size == 0 {
                Ok(())
            } else {
                Err(format!(
                    "owner tag of {} has no stripes but {} bytes",
                    self.name, self.size
                ))
            };
        }
        let code = codes::Code::shared(self.scheme).map_err(|e| e.to_string())?;
        if self.stripe >= self.stripes
            || self.lens.len() != self.data as usize
            || self.data == 0
            || self.data as usize > code.k()
            || (self.member as usize) >= code.members()
            || (self.member < code.k() as u32 && self.member >= self.data)
        {
            return Err(format!(
                "owner tag of {} names member {} of stripe {} of {} ({} data): impossible under {}",
                self.name, self.member, self.stripe, self.stripes, self.data, self.scheme
            ));
        }
        Ok(())
    }

    /// Whether this is a data member (else a parity).
    pub fn is_data(&self) -> bool {
        codes::Code::shared(self.scheme).is_ok_and(|c| (self.member as usize) < c.k())
    }
}

/// The coordinator's generation clock: `max(previous + 1, now_ms << 20)`,
/// so generations increase within a process and across restarts (as long
/// as the wall clock does not go back), and a rebuilt coordinator can be
/// moved past every generation it found ([`GenClock::observe`]).
#[derive(Debug, Default)]
pub struct GenClock(AtomicU64);

impl GenClock {
    pub const fn new() -> Self {
        GenClock(AtomicU64::new(0))
    }

    /// A generation newer than every one handed out or observed.
    pub fn next(&self) -> u64 {
        let now = crate::token::now_ms() << GEN_COUNTER_BITS;
        let mut prev = self.0.load(Ordering::Relaxed);
        loop {
            let g = now.max(prev + 1);
            match self
                .0
                .compare_exchange_weak(prev, g, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return g,
                Err(p) => prev = p,
            }
        }
    }

    /// Makes every later generation newer than `g`.
    pub fn observe(&self, g: u64) {
        self.0.fetch_max(g, Ordering::AcqRel);
    }
}

/// The creation time (ms since the epoch) a generation encodes.
pub fn created_ms(generation: u64) -> u64 {
    generation >> GEN_COUNTER_BITS
}

/// Most entries one `ListTags` page carries.
pub const MAX_TAG_PAGE: u32 = 8192;
/// Most encoded bytes of tags in one page, well inside a frame.
pub const MAX_TAG_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Most name records (empty files) a node keeps and lists.
pub const MAX_NAME_RECORDS: usize = 16_384;

/// The name record of an empty file (no chunk carries its tag).
pub fn empty_file(
    name: &FileName,
    generation: u64,
    scheme: Scheme,
    replication: u32,
    attrs: Attrs,
) -> OwnerTag {
    OwnerTag {
        name: name.clone(),
        generation,
        size: 0,
        scheme,
        replication,
        chunk_size: 0,
        stripes: 0,
        stripe: 0,
        data: 0,
        member: 0,
        lens: Vec::new(),
        attrs,
    }
}

/// Most tags one `Retag` carries.
pub const MAX_RETAG: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{ChunkPlan, PutPlan, StripePlan};

    fn plan(generation: u64) -> PutPlan {
        let c = || ChunkPlan {
            id: crate::ChunkId::random(),
            nodes: Vec::new(),
            token: None,
        };
        PutPlan {
            upload_id: 1,
            chunk_size: 100,
            replication: 1,
            scheme: "rs:2+1".parse().unwrap(),
            stripes: vec![StripePlan {
                data: vec![c(), c()],
                parity: vec![c()],
            }],
            generation,
        }
    }

    #[test]
    fn digest_covers_placement_but_not_attrs() {
        let name = FileName::new("a/b").unwrap();
        let t = plan(7).owner_tag(&name, 150, 0, 2);
        t.check().unwrap();
        let mut with_attrs = t.clone();
        with_attrs.attrs.insert("etag".into(), "x".into());
        assert_eq!(t.digest(), with_attrs.digest());
        let mut other = t.clone();
        other.name = FileName::new("a/c").unwrap();
        assert_ne!(t.digest(), other.digest());
        let mut other = t.clone();
        other.generation += 1;
        assert_ne!(t.digest(), other.digest());
        let mut other = t.clone();
        other.member = 1;
        assert_ne!(t.digest(), other.digest());
        // A parity member past the scheme, or a data member past the stripe.
        let mut bad = t.clone();
        bad.member = 3;
        assert!(bad.check().is_err());
        let mut bad = t;
        bad.data = 1;
        bad.member = 1;
        assert!(bad.check().is_err());
    }

    #[test]
    fn generations_increase_and_pass_what_was_observed() {
        let c = GenClock::new();
        let a = c.next();
        let b = c.next();
        assert!(b > a);
        assert!(created_ms(a) > 1_600_000_000_000);
        c.observe(u64::MAX / 2);
        assert!(c.next() > u64::MAX / 2);
    }

    #[test]
    fn a_largest_tag_fits_its_bound() {
        let mut t = plan(u64::MAX).owner_tag(
            &FileName::new(&"n".repeat(crate::ids::MAX_NAME_LEN)).unwrap(),
            u64::MAX,
            0,
            0,
        );
        t.attrs.insert("k".into(), "v".repeat(MAX_ATTRS_BYTES - 1));
        assert!(postcard::to_allocvec(&t).unwrap().len() <= MAX_TAG_LEN);
    }
}
