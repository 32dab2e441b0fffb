//! The chunk file format (written by `crate::store`). A chunk file of
//! format 2 is
//!
//! ```text
//! "DFSCHNK2" | header_len u32 LE | ChunkHeader | stored bytes | tag record*
//! tag record = "TAG1" | len u32 LE | crc32 u32 LE | postcard OwnerTag
//! ```
//!
//! The tag follows the stored bytes rather than sitting in the header so
//! that a chunk can be given a new owner (the file a `Concat` made, a
//! copy's name, attributes known only at commit, a chunk written before
//! tags) by appending one record and one fdatasync, never by rewriting its
//! bytes. The last record whose CRC holds wins; a record torn by a crash is
//! ignored, so the previous tag stays in force. Format-1 files (no tag)
//! stay readable and may be given a trailer the same way.

use protocol::chunk::check_bounds;
use protocol::tag::{OwnerTag, MAX_TAG_LEN};
use protocol::{ChunkHeader, ChunkId};
use std::os::unix::fs::FileExt;
use std::path::Path;

pub const FILE_MAGIC: &[u8; 8] = b"DFSCHNK2";
/// Chunk files from before owner tags.
pub const FILE_MAGIC_V1: &[u8; 8] = b"DFSCHNK1";
/// The encoded header is a few dozen bytes; anything longer is corruption.
pub const MAX_HEADER_LEN: u32 = 1024;

/// Parses the start of a chunk file: magic (either format), bounded header
/// length, header, id, bounds. Returns the header and where the stored
/// bytes begin.
pub fn parse_header(
    id: &ChunkId,
    first: &[u8],
) -> std::result::Result<(ChunkHeader, usize), String> {
    if first.len() < 12 {
        return Err("file shorter than its header".into());
    }
    if &first[..8] != FILE_MAGIC && &first[..8] != FILE_MAGIC_V1 {
        return Err("bad magic".into());
    }
    let hl = u32::from_le_bytes([first[8], first[9], first[10], first[11]]);
    if hl > MAX_HEADER_LEN {
        return Err(format!("header length {hl} too large"));
    }
    let body = 12 + hl as usize;
    if first.len() < body {
        return Err("truncated header".into());
    }
    let header: ChunkHeader =
        protocol::connection::decode(&first[12..body]).map_err(|e| format!("header: {e}"))?;
    if header.id != *id {
        return Err("header names another chunk".into());
    }
    check_bounds(&header).map_err(|e| e.to_string())?;
    Ok((header, body))
}

pub const RECORD_MAGIC: &[u8; 4] = b"TAG1";
/// Magic, length, CRC.
pub const RECORD_HEAD: usize = 12;
/// Most trailer bytes a chunk file may carry: a handful of retags. A retag
/// that would pass it is refused (the chunk keeps its tag).
pub const MAX_TRAILER: u64 = 8 * (MAX_TAG_LEN as u64 + RECORD_HEAD as u64);

/// One encoded tag record.
pub fn record(tag: &OwnerTag) -> Vec<u8> {
    let body = postcard::to_allocvec(tag).unwrap_or_default();
    let mut out = Vec::with_capacity(RECORD_HEAD + body.len());
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The tag a trailer holds: its last whole, CRC-checked, decodable record.
/// Anything after the last good record (a torn append) is ignored.
pub fn parse_trailer(mut t: &[u8]) -> Option<OwnerTag> {
    let mut last = None;
    while t.len() >= RECORD_HEAD && &t[..4] == RECORD_MAGIC {
        let len = u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize;
        let crc = u32::from_le_bytes([t[8], t[9], t[10], t[11]]);
        if len > MAX_TAG_LEN || t.len() < RECORD_HEAD + len {
            break;
        }
        let body = &t[RECORD_HEAD..RECORD_HEAD + len];
        if crc32fast::hash(body) != crc {
            break;
        }
        if let Ok(tag) = protocol::connection::decode::<OwnerTag>(body) {
            if tag.check().is_ok() {
                last = Some(tag);
            }
        }
        t = &t[RECORD_HEAD + len..];
    }
    last
}

/// Reads a chunk file's header and tag (blocking): one read for a small
/// chunk, two for a large one. `buf` is reused between calls.
pub fn read_tag(
    id: &ChunkId,
    path: &Path,
    buf: &mut Vec<u8>,
) -> std::io::Result<(ChunkHeader, Option<OwnerTag>)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let f = std::fs::File::open(path)?;
    let file_len = f.metadata()?.len();
    const FIRST: u64 = 64 * 1024;
    let first = file_len.min(FIRST) as usize;
    buf.resize(first, 0);
    f.read_exact_at(&mut buf[..first], 0)?;
    let (header, body) = parse_header(id, &buf[..first]).map_err(|e| bad(&e))?;
    let data_end = body as u64 + header.stored_len;
    if file_len < data_end || file_len - data_end > MAX_TRAILER {
        return Err(bad("file length does not match its header"));
    }
    let tlen = (file_len - data_end) as usize;
    if tlen == 0 {
        return Ok((header, None));
    }
    let tag = if file_len <= FIRST {
        parse_trailer(&buf[data_end as usize..first])
    } else {
        let mut t = vec![0u8; tlen];
        f.read_exact_at(&mut t, data_end)?;
        parse_trailer(&t)
    };
    Ok((header, tag))
}

/// Appends a tag record to a chunk file and makes it durable (blocking).
pub fn append_tag(path: &Path, data_end: u64, tag: &OwnerTag) -> std::io::Result<()> {
    let rec = record(tag);
    let f = std::fs::OpenOptions::new().append(true).open(path)?;
    let len = f.metadata()?.len();
    if len < data_end || len - data_end + rec.len() as u64 > MAX_TRAILER {
        return Err(std::io::Error::other(
            "the chunk's tag trailer is full; not retagged",
        ));
    }
    // One write: a crash leaves either the whole record or a torn one,
    // which readers ignore.
    std::io::Write::write_all(&mut &f, &rec)?;
    f.sync_data()
}
