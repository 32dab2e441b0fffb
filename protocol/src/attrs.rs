//! File attributes: small metadata kept with a file (S3 content type,
//! user metadata, ETag), in the catalog and in owner tags. Their own module
//! so that both `message` and `tag` use them without importing each other.

/// Free-form metadata of a file, as sorted key/value pairs.
pub type Attrs = std::collections::BTreeMap<String, String>;

/// Most bytes (keys plus values) of one file's [`Attrs`]: S3 allows 2 KiB of
/// user metadata; the rest is room for content type and ETag.
pub const MAX_ATTRS_BYTES: usize = 8 * 1024;

/// Refuses attrs that would bloat the catalog.
pub fn check_attrs(a: &Attrs) -> Result<(), String> {
    let total: usize = a.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_ATTRS_BYTES {
        return Err(format!(
            "file metadata is {total} bytes; the limit is {MAX_ATTRS_BYTES}"
        ));
    }
    Ok(())
}
