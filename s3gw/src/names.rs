//! How S3 names map onto the dfs-sim namespace.
//!
//! - Bucket `b` is the marker file `.s3/buckets/b` (an empty file, durable in
//!   the catalog like any other) and its objects live under `b/`.
//! - Object key `k` in bucket `b` is the file `b/<escape(k)>`. The escape is
//!   the identity for ordinary keys, so `dfs-sim ls photos/` shows them as
//!   they are; it only rewrites what a [`FileName`] may not contain: `%`, `\`
//!   and control characters become `%XX` (per UTF-8 byte), an empty segment
//!   (`a//b`, a leading or trailing `/`) becomes `%`, and the segments `.` and
//!   `..` become `%2E` and `%2E%2E`. Escaping works per `/`-separated segment,
//!   so no key can produce a `..` segment or a leading `/`: every object name
//!   stays under its bucket's directory, and decoding gives back the exact key.
//! - Multipart uploads are hidden entries: `.s3/uploads/<bucket>/<upload id>`
//!   (the upload's key and metadata) and `.s3/parts/<upload id>/<part number>`.
//!
//! Listing is in escaped-name order, which is key order except around the
//! escaped characters (control characters, `\`, empty segments sort where `%`
//! sorts); ordinary keys list exactly in S3 order.

use protocol::FileName;

/// Where bucket markers live.
pub const BUCKETS: &str = ".s3/buckets/";
/// Where multipart upload markers live (then `<bucket>/<upload id>`).
pub const UPLOADS: &str = ".s3/uploads/";
/// Where multipart parts live (then `<upload id>/<part number>`).
pub const PARTS: &str = ".s3/parts/";

/// Longest S3 key accepted, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;

fn needs_escape(c: char) -> bool {
    c == '%' || c == '\\' || c.is_control()
}

fn escape_segment(seg: &str, out: &mut String) {
    match seg {
        "" => out.push('%'),
        "." => out.push_str("%2E"),
        ".." => out.push_str("%2E%2E"),
        _ => {
            for c in seg.chars() {
                if needs_escape(c) {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        out.push_str(&format!("%{b:02X}"));
                    }
                } else {
                    out.push(c);
                }
            }
        }
    }
}

/// The escaped form of a key (without the bucket).
pub fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for (i, seg) in key.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        escape_segment(seg, &mut out);
    }
    out
}

/// Inverse of [`escape_key`]. A name not made by it (a file put with the
/// CLI containing `%`) decodes best effort: invalid escapes stay literal.
pub fn unescape_key(name: &str) -> String {
    let mut segs = Vec::new();
    for seg in name.split('/') {
        if seg == "%" {
            segs.push(String::new());
            continue;
        }
        let b = seg.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit()
            {
                let hex = |x: u8| (x as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 3;
                continue;
            }
            out.push(b[i]);
            i += 1;
        }
        segs.push(String::from_utf8(out).unwrap_or_else(|_| seg.to_string()));
    }
    segs.join("/")
}

/// Whether XML 1.0 can carry `c` (its `Char` production: tab, newline,
/// carriage return, U+0020..U+D7FF, U+E000..U+FFFD, U+10000 and up; Rust
/// `char`s are never surrogates).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whether every character of `s` can appear in an XML 1.0 document. S3
/// responses are XML, so a key that fails this can be listed only
/// URL-encoded.
pub fn xml_safe(s: &str) -> bool {
    s.chars().all(xml_char)
}

/// `s` percent-encoded as S3's `EncodingType=url` does: every byte but the
/// unreserved ones (`A-Z a-z 0-9 - _ . ~`) and `/` becomes `%XX`, so what
/// clients decode (botocore with `unquote_plus`) is exactly `s`, `+` and
/// spaces included.
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The catalog name of an object, or why the key is not acceptable.
pub fn object_name(bucket: &str, key: &str) -> Result<FileName, String> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(format!("key must be 1 to {MAX_KEY_LEN} bytes"));
    }
    FileName::new(&format!("{bucket}/{}", escape_key(key)))
}

/// The catalog name of an object about to be written (PUT, copy target,
/// multipart upload): as [`object_name`], and a key with a character XML
/// 1.0 cannot carry (NUL, most control characters) is refused, since
/// every listing of its bucket would have to carry it. Reads and deletes
/// of such a name (one the CLI wrote) still work through `object_name`.
pub fn new_object_name(bucket: &str, key: &str) -> Result<FileName, String> {
    if let Some(c) = key.chars().find(|c| !xml_char(*c)) {
        return Err(format!(
            "key contains U+{:04X}, which XML 1.0 cannot carry (S3 listings are XML); use another key",
            c as u32
        ));
    }
    object_name(bucket, key)
}

/// The key of a catalog name under `bucket/`, if it is one.
pub fn key_of(bucket: &str, name: &str) -> Option<String> {
    let rest = name.strip_prefix(bucket)?.strip_prefix('/')?;
    Some(unescape_key(rest))
}

/// The longest catalog-name prefix that every object whose key starts with
/// `prefix` is guaranteed to have: the escaped full segments, plus the
/// last partial segment when escaping cannot change it. Callers still
/// filter decoded keys by `prefix`.
pub fn list_prefix(bucket: &str, prefix: &str) -> String {
    let mut out = format!("{bucket}/");
    let (full, last) = match prefix.rfind('/') {
        Some(i) => (&prefix[..i], &prefix[i + 1..]),
        None => ("", prefix),
    };
    if prefix.contains('/') {
        out.push_str(&escape_key(full));
        out.push('/');
    }
    if !last.is_empty() && last != "." && last != ".." && !last.chars().any(needs_escape) {
        out.push_str(last);
    }
    out
}

pub fn bucket_marker(bucket: &str) -> Result<FileName, String> {
    FileName::new(&format!("{BUCKETS}{bucket}"))
}

pub fn upload_marker(bucket: &str, upload_id: &str) -> Result<FileName, String> {
    check_upload_id(upload_id)?;
    FileName::new(&format!("{UPLOADS}{bucket}/{upload_id}"))
}

pub fn part_name(upload_id: &str, part: i32) -> Result<FileName, String> {
    check_upload_id(upload_id)?;
    if !(1..=10_000).contains(&part) {
        return Err(format!("part number {part} is not within 1..=10000"));
    }
    FileName::new(&format!("{PARTS}{upload_id}/{part:05}"))
}

/// Upload ids are 32 hex digits made by the gateway; anything else is
/// refused before it can name a file.
fn check_upload_id(id: &str) -> Result<(), String> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(format!("{id:?} is not an upload id"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_stay_in_their_bucket() {
        let long = "é".repeat(512);
        let keys = [
            "a",
            "photos/2024/x.jpg",
            "../../etc/passwd",
            "..",
            ".",
            "a/./b/../c",
            "//double//slash//",
            "/leading",
            "trailing/",
            "with space/and\ttab",
            "back\\slash",
            "100% sure %2E",
            "ünïcödé/日本語/🎉",
            "ctl\u{1}\u{7f}\u{85}",
            long.as_str(),
        ];
        for k in keys {
            let name = object_name("bkt", k).unwrap_or_else(|e| panic!("{k:?}: {e}"));
            assert!(name.as_str().starts_with("bkt/"), "{k:?}");
            assert_eq!(key_of("bkt", name.as_str()).as_deref(), Some(k), "{k:?}");
        }
        assert!(object_name("bkt", "").is_err());
        assert!(object_name("bkt", &"x".repeat(1025)).is_err());
    }

    #[test]
    fn keys_xml_cannot_carry_are_refused_and_encode_for_listings() {
        for k in [
            "nul\u{0}key",
            "ctl\u{1}",
            "esc\u{1b}",
            "ff\u{c}",
            "\u{fffe}",
            "\u{ffff}",
        ] {
            let e = new_object_name("bkt", k).unwrap_err();
            assert!(e.contains("XML 1.0"), "{k:?}: {e}");
            assert!(!xml_safe(k));
            // Such a name the CLI wrote can still be read or deleted.
            assert!(object_name("bkt", k).is_ok(), "{k:?}");
        }
        for k in ["tab\tnl\ncr\r", "ünï", "🎉", "\u{fffd}", "del\u{7f}"] {
            assert!(xml_safe(k) && new_object_name("bkt", k).is_ok(), "{k:?}");
        }
        assert_eq!(url_encode("a b+c/d%e\u{0}é~"), "a%20b%2Bc/d%25e%00%C3%A9~");
    }

    #[test]
    fn ordinary_keys_are_unchanged_and_ordered() {
        assert_eq!(escape_key("iso/ubuntu.iso"), "iso/ubuntu.iso");
        let mut keys = vec!["b", "a/b", "a+", "a-z", "a/c/d", "A", "a b"];
        keys.sort();
        let mut names: Vec<String> = keys.iter().map(|k| escape_key(k)).collect();
        names.sort();
        let back: Vec<String> = names.iter().map(|n| unescape_key(n)).collect();
        assert_eq!(back, keys);
    }

    #[test]
    fn list_prefixes_are_prefixes_of_matching_names() {
        for (prefix, key) in [
            ("a/", "a//b"),
            ("a/.", "a/./x"),
            ("a/.", "a/.x"),
            ("photos/20", "photos/2024.jpg"),
            ("x%", "x%y"),
            ("", "anything"),
            ("d/", "d/"),
        ] {
            let p = list_prefix("b", prefix);
            let n = object_name("b", key).unwrap();
            assert!(
                n.as_str().starts_with(&p),
                "{prefix:?} {key:?}: {p:?} vs {n:?}"
            );
        }
    }

    #[test]
    fn upload_ids_and_parts_are_checked() {
        assert!(upload_marker("b", "../x").is_err());
        assert!(part_name(&"a".repeat(32), 0).is_err());
        assert_eq!(
            part_name(&"a".repeat(32), 7).unwrap().as_str(),
            format!(".s3/parts/{}/00007", "a".repeat(32))
        );
    }
}
