//! The `S3` trait implemented on top of the `client` crate.
//!
//! Every request opens its own control connection to the coordinator (a
//! loopback connect and handshake, far below an HTTP request's cost) and
//! shares one pool of node connections; nothing is cached, so gateways stay
//! interchangeable.

use crate::names::{self, BUCKETS, PARTS, UPLOADS};
use crate::Config;
use bytes::Bytes;
use client::CoordClient;
use futures_util::{Stream, StreamExt};
use md5::{Digest, Md5};
use protocol::data_client::NodePool;
use protocol::handshake::Role;
use protocol::{Attrs, ErrorKind, FileInfo, FileName, FileSummary, Scheme};
use s3s::dto::*;
use s3s::{s3_error, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, S3};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, watch};

/// Attribute keys kept on files written through S3.
const ETAG: &str = "s3.etag";
const CONTENT_TYPE: &str = "s3.content-type";
const META: &str = "s3.meta.";
/// On an upload marker: the object key the upload will complete into.
const UPLOAD_KEY: &str = "s3.key";
/// On a bucket marker (and an upload marker): the protection scheme of
/// the bucket's objects, chosen at CreateBucket by `LocationConstraint`.
const SCHEME: &str = "s3.scheme";

/// Names asked of the coordinator per listing page.
const PAGE: u32 = 1000;

#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    pool: Arc<NodePool>,
}

impl Gateway {
    pub fn new(cfg: Config) -> Self {
        // Node connections carry block tokens the coordinator issues per
        // put and lookup, as for any client, not a credential of their own.
        let pool = Arc::new(NodePool::new(Role::Client, None));
        Gateway {
            inner: Arc::new(Inner { cfg, pool }),
        }
    }

    async fn coord(&self) -> S3Result<CoordClient> {
        let mut c = CoordClient::connect(&self.inner.cfg.client)
            .await
            .map_err(s3e)?;
        // Parts of 8 MiB (the aws cli's) and small objects fill a stripe
        // instead of making one short stripe each, whose parities would be
        // whole extra copies.
        c.fit_stripes(true);
        Ok(c)
    }

    fn inflight(&self) -> usize {
        self.inner.cfg.client.inflight
    }

    /// `NoSuchBucket` unless the bucket's marker exists; else the bucket's
    /// own protection scheme, if it has one.
    async fn check_bucket(&self, c: &mut CoordClient, bucket: &str) -> S3Result<Option<Scheme>> {
        let marker =
            names::bucket_marker(bucket).map_err(|e| s3_error!(InvalidBucketName, "{e}"))?;
        match c.lookup(marker).await {
            Ok(i) => Ok(scheme_of(&i.attrs)),
            Err(e) if e.coord_kind() == Some(ErrorKind::NoSuchFile) => {
                Err(s3_error!(NoSuchBucket, "no bucket {bucket}"))
            }
            Err(e) => Err(s3e(e)),
        }
    }

    /// Looks an object up; a missing one is `NoSuchBucket` or `NoSuchKey`.
    async fn lookup_object(
        &self,
        c: &mut CoordClient,
        bucket: &str,
        key: &str,
    ) -> S3Result<FileInfo> {
        let name = object_name(bucket, key)?;
        match c.lookup(name).await {
            Ok(i) => Ok(i),
            Err(e) if e.coord_kind() == Some(ErrorKind::NoSuchFile) => {
                self.check_bucket(c, bucket).await?;
                Err(s3_error!(NoSuchKey, "no key {key:?} in bucket {bucket}"))
            }
            Err(e) => Err(s3e(e)),
        }
    }

    /// Streams an HTTP body of `len` bytes into a file, computing its MD5 on
    /// the way; `Content-MD5`, when sent, must match or nothing is committed.
    /// Returns the MD5 as hex.
    #[allow(clippy::too_many_arguments)]
    async fn put_body(
        &self,
        c: &mut CoordClient,
        name: FileName,
        body: Option<StreamingBlob>,
        len: Option<i64>,
        content_md5: Option<String>,
        mut attrs: Attrs,
        force: bool,
        scheme: Option<Scheme>,
    ) -> S3Result<String> {
        let size = match len {
            Some(n) if n >= 0 => n as u64,
            Some(_) => return Err(s3_error!(InvalidArgument, "negative Content-Length")),
            None if body.is_none() => 0,
            None => return Err(s3_error!(MissingContentLength)),
        };
        let expected = match content_md5 {
            Some(b64) => {
                use base64::Engine;
                let d = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .ok()
                    .filter(|d| d.len() == 16)
                    .ok_or_else(|| s3_error!(InvalidDigest, "Content-MD5 is not a base64 MD5"))?;
                Some(d)
            }
            None => None,
        };
        let hasher = Arc::new(Mutex::new(Md5::new()));
        let etag = Arc::new(Mutex::new(String::new()));
        let h = hasher.clone();
        let stream = body
            .map(|b| b.boxed())
            .unwrap_or_else(|| futures_util::stream::empty().boxed())
            .map(move |r| match r {
                Ok(bytes) => {
                    if let Ok(mut h) = h.lock() {
                        h.update(&bytes);
                    }
                    Ok(bytes)
                }
                Err(e) => Err(std::io::Error::other(e)),
            });
        let reader = tokio_util::io::StreamReader::new(stream);
        let etag_out = etag.clone();
        let finish: client::put::Finish = Box::new(move || {
            let digest = hasher
                .lock()
                .map_err(|_| "digest lost".to_string())?
                .finalize_reset();
            if let Some(want) = expected {
                if want[..] != digest[..] {
                    return Err("BadDigest: the Content-MD5 sent does not match the body".into());
                }
            }
            let hex = hex::encode(digest);
            if let Ok(mut e) = etag_out.lock() {
                *e = hex.clone();
            }
            attrs.insert(ETAG.into(), hex);
            Ok(attrs)
        });
        let noop: client::put::Progress = Arc::new(|_| {});
        let src = client::put::Source {
            reader: Box::new(tokio_util::io::SyncIoBridge::new(reader)),
            size,
        };
        let opts = client::put::PutOptions {
            inflight: self.inflight(),
            force,
            scheme,
        };
        client::put::put_source(c, &self.inner.pool, opts, src, name, Some(finish), noop)
            .await
            .map_err(s3e)?;
        let e = etag.lock().map(|e| e.clone()).unwrap_or_default();
        Ok(e)
    }

    /// Streams the bytes `range` of `src` into `dst` (node -> gateway ->
    /// node, verified on the way). Returns their MD5.
    async fn stream_range(
        &self,
        c: &mut CoordClient,
        src: FileInfo,
        range: std::ops::Range<u64>,
        dst: FileName,
        scheme: Option<Scheme>,
    ) -> S3Result<String> {
        let len = range.end - range.start;
        let body = self.body(src, range);
        self.put_body(
            c,
            dst,
            Some(body),
            Some(len as i64),
            None,
            Attrs::new(),
            true,
            scheme,
        )
        .await
    }

    /// Makes `dst` (a multipart part) the bytes `range` of `src`, as far
    /// as possible inside the cluster: the whole stripes the range covers
    /// are copied by the nodes holding them (`CopyFile`), and only the
    /// unaligned edges (less than a stripe at each end) stream through
    /// the gateway; the pieces are then joined by one `Concat`. A range
    /// inside a single stripe, or a bucket whose scheme differs from the
    /// source's, streams entirely. Returns the part's ETag: the MD5 of the
    /// bytes when they were streamed; for a part copied inside the cluster
    /// the source's MD5 when the part is the whole single-PUT source, else
    /// an MD5 naming the source version and range (the gateway never reads
    /// those bytes, so it cannot hash them).
    async fn copy_range(
        &self,
        c: &mut CoordClient,
        src: FileInfo,
        range: std::ops::Range<u64>,
        dst: FileName,
        scheme: Option<Scheme>,
    ) -> S3Result<String> {
        if scheme.is_some_and(|s| s != src.scheme) {
            return self.stream_range(c, src, range, dst, scheme).await;
        }
        let bounds = stripe_bounds(&src);
        let a = bounds.iter().copied().find(|b| *b >= range.start);
        let b = bounds.iter().copied().rev().find(|b| *b <= range.end);
        let (a, b) = match (a, b) {
            (Some(a), Some(b)) if a < b => (a, b),
            // Streamed whole: encoded like an UploadPart into this bucket.
            _ => return self.stream_range(c, src, range, dst, scheme).await,
        };
        let src_etag = etag_of(&src.attrs, src.created_ms, src.size)
            .value()
            .to_string();
        let etag = if range == (0..src.size) && is_md5(&src_etag) {
            src_etag
        } else {
            hex::encode(Md5::digest(format!(
                "copy of {}@{}:{}-{}",
                src.name, src_etag, range.start, range.end
            )))
        };
        let mut attrs = Attrs::new();
        attrs.insert(ETAG.into(), etag.clone());
        if a == range.start && b == range.end {
            c.copy(src.name.clone(), dst, Some((a, b)), Some(attrs), true)
                .await
                .map_err(s3e)?;
            return Ok(etag);
        }
        let piece = |suffix: &str| {
            FileName::new(&format!("{}.{suffix}", dst.as_str()))
                .map_err(|e| s3_error!(InternalError, "{e}"))
        };
        let (head, mid, tail) = (piece("head")?, piece("mid")?, piece("tail")?);
        tracing::info!(
            src = %src.name,
            streamed = (a - range.start) + (range.end - b),
            copied = b - a,
            "part copy: stripes copied by the nodes, unaligned edges streamed"
        );
        let mut pieces = Vec::new();
        let res: S3Result<()> = async {
            if range.start < a {
                let body = self.body(src.clone(), range.start..a);
                self.put_body(
                    c,
                    head.clone(),
                    Some(body),
                    Some((a - range.start) as i64),
                    None,
                    Attrs::new(),
                    true,
                    Some(src.scheme),
                )
                .await?;
                pieces.push(head.clone());
            }
            c.copy(src.name.clone(), mid.clone(), Some((a, b)), None, true)
                .await
                .map_err(s3e)?;
            pieces.push(mid.clone());
            if b < range.end {
                let body = self.body(src.clone(), b..range.end);
                self.put_body(
                    c,
                    tail.clone(),
                    Some(body),
                    Some((range.end - b) as i64),
                    None,
                    Attrs::new(),
                    true,
                    Some(src.scheme),
                )
                .await?;
                pieces.push(tail.clone());
            }
            c.concat(dst.clone(), pieces.clone(), attrs)
                .await
                .map_err(s3e)?;
            Ok(())
        }
        .await;
        if let Err(e) = res {
            for p in [head, mid, tail] {
                let _ = c.remove(p).await;
            }
            return Err(e);
        }
        Ok(etag)
    }

    /// The verified bytes `range` of a file as an HTTP body. A task drives
    /// the fetch pipeline and hands pieces over a small channel, so the body
    /// holds at most the pipeline's chunks and stops when the peer goes.
    fn body(&self, info: FileInfo, range: std::ops::Range<u64>) -> StreamingBlob {
        let (tx, rx) = mpsc::channel(2);
        let s = client::get::range_stream(
            &self.inner.cfg.client,
            self.inner.pool.clone(),
            Arc::new(info),
            range,
        );
        tokio::spawn(async move {
            let mut s = std::pin::pin!(s);
            while let Some(item) = s.next().await {
                let failed = item.is_err();
                if let Err(e) = &item {
                    tracing::warn!(error = %e, "S3 GET failed mid-body");
                }
                if tx.send(item).await.is_err() || failed {
                    return;
                }
            }
        });
        StreamingBlob::wrap(ChanStream(rx))
    }

    /// One page of an object listing: keys under `prefix` after the catalog
    /// name `cursor`, common prefixes rolled up at `delimiter`.
    async fn list(
        &self,
        c: &mut CoordClient,
        bucket: &str,
        prefix: &str,
        delimiter: Option<&str>,
        max_keys: usize,
        mut cursor: Option<String>,
    ) -> S3Result<Listing> {
        let coord_prefix = names::list_prefix(bucket, prefix);
        let delimiter = delimiter.filter(|d| !d.is_empty());
        let mut out = Listing::default();
        if max_keys == 0 {
            return Ok(out);
        }
        let mut count = 0usize;
        'pages: loop {
            let page = c
                .list_page(coord_prefix.clone(), cursor.clone(), PAGE)
                .await
                .map_err(s3e)?;
            if page.is_empty() {
                break;
            }
            for f in page {
                let Some(key) = names::key_of(bucket, f.name.as_str()) else {
                    continue;
                };
                let here = f.name.as_str().to_string();
                cursor = Some(here.clone());
                if !key.starts_with(prefix) {
                    continue;
                }
                if let Some(d) = delimiter {
                    if let Some(i) = key[prefix.len()..].find(d) {
                        let cp = key[..prefix.len() + i + d.len()].to_string();
                        if out.prefixes.last() == Some(&cp) {
                            continue;
                        }
                        if count == max_keys {
                            out.truncated = true;
                            break 'pages;
                        }
                        count += 1;
                        out.prefixes.push(cp.clone());
                        // Skip the rest of this common prefix: every name
                        // under it starts with its escaped form when it
                        // ends with '/'; otherwise keep scanning.
                        if cp.ends_with('/') {
                            let skip = format!("{}\u{10FFFF}", names::list_prefix(bucket, &cp));
                            out.next = Some(skip.clone());
                            cursor = Some(skip);
                            continue 'pages;
                        }
                        out.next = Some(here);
                        continue;
                    }
                }
                if count == max_keys {
                    out.truncated = true;
                    break 'pages;
                }
                count += 1;
                out.next = Some(here);
                out.objects.push((key, f));
            }
        }
        if !out.truncated {
            out.next = None;
        }
        Ok(out)
    }

    /// Every file under a catalog prefix, page by page.
    async fn list_all(&self, c: &mut CoordClient, prefix: &str) -> S3Result<Vec<FileSummary>> {
        let mut all = Vec::new();
        let mut after = None;
        loop {
            let page = c
                .list_page(prefix.to_string(), after.clone(), PAGE)
                .await
                .map_err(s3e)?;
            let Some(last) = page.last() else { break };
            after = Some(last.name.as_str().to_string());
            all.extend(page);
        }
        Ok(all)
    }

    /// The attrs of an upload marker, or `NoSuchUpload`.
    async fn upload(
        &self,
        c: &mut CoordClient,
        bucket: &str,
        upload_id: &str,
    ) -> S3Result<(FileName, FileInfo)> {
        let marker =
            names::upload_marker(bucket, upload_id).map_err(|e| s3_error!(NoSuchUpload, "{e}"))?;
        match c.lookup(marker.clone()).await {
            Ok(i) => Ok((marker, i)),
            Err(e) if e.coord_kind() == Some(ErrorKind::NoSuchFile) => {
                Err(s3_error!(NoSuchUpload, "no upload {upload_id}"))
            }
            Err(e) => Err(s3e(e)),
        }
    }

    /// Removes an upload's parts and marker; missing pieces are fine.
    async fn drop_upload(&self, c: &mut CoordClient, marker: FileName, upload_id: &str) {
        let parts = self
            .list_all(c, &format!("{PARTS}{upload_id}/"))
            .await
            .unwrap_or_default();
        for p in parts {
            let _ = c.remove(p.name).await;
        }
        let _ = c.remove(marker).await;
    }

    /// Aborts multipart uploads older than the TTL and removes parts whose
    /// upload is gone.
    async fn collect_abandoned(&self) -> S3Result<()> {
        let mut c = self.coord().await?;
        let ttl = self.inner.cfg.upload_ttl.as_millis() as u64;
        let now = now_ms();
        let uploads = self.list_all(&mut c, UPLOADS).await?;
        let mut live = std::collections::HashSet::new();
        for u in uploads {
            let id = u.name.base_name().to_string();
            if now.saturating_sub(u.created_ms) > ttl {
                tracing::info!(upload = %id, "aborting an abandoned multipart upload");
                self.drop_upload(&mut c, u.name.clone(), &id).await;
            } else {
                live.insert(id);
            }
        }
        for p in self.list_all(&mut c, PARTS).await? {
            let id = p
                .name
                .as_str()
                .strip_prefix(PARTS)
                .and_then(|r| r.split('/').next())
                .unwrap_or_default()
                .to_string();
            if !live.contains(&id) && now.saturating_sub(p.created_ms) > ttl {
                let _ = c.remove(p.name).await;
            }
        }
        Ok(())
    }
}

/// Runs [`Gateway::collect_abandoned`] every `gc_every` until stopped.
pub async fn gc_loop(gw: Gateway, mut stop: watch::Receiver<bool>) {
    let every = gw.inner.cfg.gc_every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = gw.collect_abandoned().await {
            tracing::warn!(error = %e, "multipart garbage collection failed");
        }
    }
}

#[derive(Default)]
struct Listing {
    objects: Vec<(String, FileSummary)>,
    prefixes: Vec<String>,
    truncated: bool,
    /// Catalog name to resume after.
    next: Option<String>,
}

/// An mpsc receiver as a body stream (`Sync`, as s3s requires).
struct ChanStream(mpsc::Receiver<client::Result<Bytes>>);

impl Stream for ChanStream {
    type Item = client::Result<Bytes>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn timestamp(ms: u64) -> Timestamp {
    Timestamp::from(UNIX_EPOCH + Duration::from_millis(ms))
}

fn object_name(bucket: &str, key: &str) -> S3Result<FileName> {
    if key.len() > names::MAX_KEY_LEN {
        return Err(s3_error!(KeyTooLongError));
    }
    names::object_name(bucket, key).map_err(|e| s3_error!(InvalidArgument, "key {key:?}: {e}"))
}

/// [`object_name`] for a key about to be written: one XML 1.0 cannot carry
/// is refused with `InvalidArgument` (see [`names::new_object_name`]).
fn new_object_name(bucket: &str, key: &str) -> S3Result<FileName> {
    if key.len() > names::MAX_KEY_LEN {
        return Err(s3_error!(KeyTooLongError));
    }
    names::new_object_name(bucket, key).map_err(|e| s3_error!(InvalidArgument, "key {key:?}: {e}"))
}

/// ETag of a file: the MD5 (or multipart form) stored at put; files written
/// by the CLI get a stable tag from their creation time and size.
fn etag_of(attrs: &Attrs, created_ms: u64, size: u64) -> ETag {
    ETag::Strong(
        attrs
            .get(ETAG)
            .cloned()
            .unwrap_or_else(|| format!("dfs-{created_ms:x}-{size:x}")),
    )
}

fn user_meta(attrs: &Attrs) -> Option<Metadata> {
    let m: Metadata = attrs
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(META)?.to_string(), v.clone())))
        .collect();
    (!m.is_empty()).then_some(m)
}

/// Most bytes of user metadata an object may carry (keys and values, as
/// UTF-8), AWS's limit for a PUT's `x-amz-meta-*` headers.
const MAX_USER_META: usize = 2048;

/// Refuses user metadata above [`MAX_USER_META`] with `MetadataTooLarge`
/// (400), before any byte is stored, rather than letting the catalog's
/// own, larger attribute limit fail the commit as an internal error.
fn check_user_meta(meta: Option<&Metadata>) -> S3Result<()> {
    let total: usize = meta
        .into_iter()
        .flatten()
        .map(|(k, v)| k.len() + v.len())
        .sum();
    if total > MAX_USER_META {
        return Err(s3_error!(
            MetadataTooLarge,
            "user metadata is {total} bytes; the limit is {MAX_USER_META}"
        ));
    }
    Ok(())
}

fn attrs_from(content_type: Option<&str>, meta: Option<&Metadata>) -> Attrs {
    let mut a = Attrs::new();
    if let Some(ct) = content_type {
        a.insert(CONTENT_TYPE.into(), ct.to_string());
    }
    for (k, v) in meta.into_iter().flatten() {
        a.insert(format!("{META}{}", k.to_ascii_lowercase()), v.clone());
    }
    a
}

/// A bucket's or upload's own protection scheme, if it has one.
fn scheme_of(attrs: &Attrs) -> Option<Scheme> {
    attrs.get(SCHEME).and_then(|s| s.parse().ok())
}

/// The scheme a CreateBucket `LocationConstraint` asks for: a dfs-sim
/// scheme (`rs:6+3`, `lrc:12+2+2`, `xor:4`, `none`) or nothing for an AWS
/// region name (`us-west-2`, `EU`), which S3 clients send by habit.
fn bucket_scheme(constraint: Option<&str>) -> S3Result<Option<Scheme>> {
    let Some(c) = constraint.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let looks_like_scheme = ["none", "xor", "rs:", "lrc:"]
        .iter()
        .any(|p| c.to_ascii_lowercase().starts_with(p));
    if !looks_like_scheme {
        return Ok(None);
    }
    let scheme: Scheme = c.to_ascii_lowercase().parse().map_err(|e| {
        s3_error!(
            InvalidLocationConstraint,
            "{c}: {e} (a dfs-sim scheme: none, xor:K, rs:K+M, lrc:K+L+G)"
        )
    })?;
    scheme
        .validate()
        .map_err(|e| s3_error!(InvalidLocationConstraint, "{c}: {e}"))?;
    Ok(Some(scheme))
}

/// Byte offsets where a file's stripes start, and its size: the only
/// places a copy inside the cluster may cut it.
fn stripe_bounds(info: &FileInfo) -> Vec<u64> {
    let mut out = vec![0];
    let mut off = 0;
    for s in &info.stripes {
        off += s.data.iter().map(|c| c.header.raw_len).sum::<u64>();
        out.push(off);
    }
    out
}

fn is_md5(etag: &str) -> bool {
    etag.len() == 32 && etag.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A client error as the S3 error a client understands.
fn s3e(e: client::Error) -> S3Error {
    let msg = e.to_string();
    match (&e, e.coord_kind()) {
        (_, Some(ErrorKind::NoSuchFile)) => S3Error::with_message(S3ErrorCode::NoSuchKey, msg),
        (_, Some(ErrorKind::NotEnoughNodes | ErrorKind::DiskFull))
        | (client::Error::NoCoordinator { .. }, _) => {
            S3Error::with_message(S3ErrorCode::ServiceUnavailable, msg)
        }
        (_, Some(ErrorKind::FileExists)) => {
            S3Error::with_message(S3ErrorCode::OperationAborted, msg)
        }
        (_, Some(ErrorKind::InvalidName | ErrorKind::BadRequest)) => {
            S3Error::with_message(S3ErrorCode::InvalidArgument, msg)
        }
        // The gateway's cluster key was refused (revoked, unknown): the
        // caller may not do this, and retrying will not help.
        (_, Some(ErrorKind::Forbidden))
        | (
            client::Error::Protocol {
                source: protocol::Error::Auth(_),
                ..
            },
            _,
        ) => S3Error::with_message(S3ErrorCode::AccessDenied, msg),
        (
            client::Error::Protocol {
                source: protocol::Error::Remote(w),
                ..
            },
            _,
        ) if w.kind == ErrorKind::Forbidden => {
            S3Error::with_message(S3ErrorCode::AccessDenied, msg)
        }
        (_, Some(ErrorKind::Overloaded)) => S3Error::with_message(S3ErrorCode::SlowDown, msg),
        (client::Error::Rejected(m), _) if m.starts_with("BadDigest") => {
            S3Error::with_message(S3ErrorCode::BadDigest, msg)
        }
        (client::Error::PutFailed { cause, .. }, _)
            if cause.contains("early eof") || cause.contains("input file") =>
        {
            S3Error::with_message(S3ErrorCode::IncompleteBody, msg)
        }
        _ => S3Error::with_message(S3ErrorCode::InternalError, msg),
    }
}

/// A listing token is the hex of the catalog name to resume after, so any
/// gateway can continue another's listing.
fn token_to_cursor(t: &str) -> S3Result<String> {
    hex::decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| s3_error!(InvalidArgument, "bad continuation token"))
}

fn max_keys(m: Option<i32>) -> usize {
    m.map(|m| m.clamp(0, 1000) as usize).unwrap_or(1000)
}

/// Where a listing starts for a key marker (`start-after`, V1 `marker`).
fn cursor_after_key(bucket: &str, key: &str, delimiter: Option<&str>) -> String {
    if delimiter == Some("/") && key.ends_with('/') {
        // A common prefix returned as a marker: skip everything under it.
        format!("{}\u{10FFFF}", names::list_prefix(bucket, key))
    } else {
        format!("{bucket}/{}", names::escape_key(key))
    }
}

/// Whether a listing goes out URL-encoded: when the client asked
/// (`EncodingType=url`, which botocore and so the aws cli send by
/// default), or when a key or prefix in it holds a character XML 1.0
/// cannot carry (only the CLI can still write such a name; PUT refuses
/// it). Then the response says `EncodingType=url`, so the XML is always
/// well-formed and a client that decodes gets the exact keys.
fn encode_listing(asked: Option<&EncodingType>, l: &Listing, echoed: &[Option<&str>]) -> bool {
    asked.is_some_and(|e| e.as_str().eq_ignore_ascii_case(EncodingType::URL))
        || l.objects.iter().any(|(k, _)| !names::xml_safe(k))
        || l.prefixes.iter().any(|p| !names::xml_safe(p))
        || echoed.iter().flatten().any(|s| !names::xml_safe(s))
}

/// A key, prefix or marker as a listing carries it.
fn listed(s: &str, url: bool) -> String {
    if url {
        names::url_encode(s)
    } else {
        s.to_string()
    }
}

fn objects(l: &Listing, url: bool) -> (Option<Vec<Object>>, Option<Vec<CommonPrefix>>) {
    let contents = l
        .objects
        .iter()
        .map(|(k, f)| Object {
            key: Some(listed(k, url)),
            size: Some(f.size as i64),
            e_tag: Some(etag_of(&f.attrs, f.created_ms, f.size)),
            last_modified: Some(timestamp(f.created_ms)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect();
    let prefixes = l
        .prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(listed(p, url)),
        })
        .collect::<Vec<_>>();
    (Some(contents), (!prefixes.is_empty()).then_some(prefixes))
}

#[async_trait::async_trait]
impl S3 for Gateway {
    async fn list_buckets(
        &self,
        _req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        let mut c = self.coord().await?;
        let buckets = self
            .list_all(&mut c, BUCKETS)
            .await?
            .into_iter()
            .map(|f| Bucket {
                name: Some(f.name.base_name().to_string()),
                creation_date: Some(timestamp(f.created_ms)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListBucketsOutput {
            buckets: Some(buckets),
            owner: Some(Owner {
                display_name: Some("dfs-sim".into()),
                id: Some("dfs-sim".into()),
            }),
            ..Default::default()
        }))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        let bucket = &req.input.bucket;
        let marker =
            names::bucket_marker(bucket).map_err(|e| s3_error!(InvalidBucketName, "{e}"))?;
        let constraint = req
            .input
            .create_bucket_configuration
            .as_ref()
            .and_then(|c| c.location_constraint.as_ref())
            .map(|l| l.as_str().to_string());
        let mut attrs = Attrs::new();
        if let Some(scheme) = bucket_scheme(constraint.as_deref())? {
            attrs.insert(SCHEME.into(), scheme.to_string());
        }
        let mut c = self.coord().await?;
        match self
            .put_body(
                &mut c,
                marker,
                None,
                Some(0),
                None,
                attrs.clone(),
                false,
                None,
            )
            .await
        {
            Ok(_) => {}
            Err(e) if *e.code() == S3ErrorCode::OperationAborted => {
                return Err(s3_error!(BucketAlreadyOwnedByYou))
            }
            Err(e) => return Err(e),
        }
        tracing::info!(%bucket, scheme = ?attrs.get(SCHEME), "bucket created");
        Ok(S3Response::new(CreateBucketOutput {
            location: Some(format!("/{bucket}")),
        }))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        let bucket = &req.input.bucket;
        let mut c = self.coord().await?;
        self.check_bucket(&mut c, bucket).await?;
        let any = c
            .list_page(format!("{bucket}/"), None, 1)
            .await
            .map_err(s3e)?;
        if !any.is_empty() {
            return Err(s3_error!(BucketNotEmpty));
        }
        let marker =
            names::bucket_marker(bucket).map_err(|e| s3_error!(InvalidBucketName, "{e}"))?;
        c.remove(marker).await.map_err(s3e)?;
        tracing::info!(%bucket, "bucket deleted");
        Ok(S3Response::new(DeleteBucketOutput {}))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        let mut c = self.coord().await?;
        self.check_bucket(&mut c, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        let mut c = self.coord().await?;
        let scheme = self.check_bucket(&mut c, &req.input.bucket).await?;
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: scheme.map(|s| BucketLocationConstraint::from(s.to_string())),
        }))
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let i = req.input;
        let name = new_object_name(&i.bucket, &i.key)?;
        check_user_meta(i.metadata.as_ref())?;
        let mut c = self.coord().await?;
        let scheme = self.check_bucket(&mut c, &i.bucket).await?;
        let attrs = attrs_from(i.content_type.as_deref(), i.metadata.as_ref());
        let etag = self
            .put_body(
                &mut c,
                name,
                i.body,
                i.content_length,
                i.content_md5,
                attrs,
                true,
                scheme,
            )
            .await?;
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        let i = req.input;
        let mut c = self.coord().await?;
        let info = self.lookup_object(&mut c, &i.bucket, &i.key).await?;
        let size = info.size;
        let range =
            match i.range {
                Some(r) => Some(r.check(size).map_err(|_| {
                    s3_error!(InvalidRange, "range not satisfiable for {size} bytes")
                })?),
                None => None,
            };
        let (start, end) = range
            .as_ref()
            .map(|r| (r.start, r.end))
            .unwrap_or((0, size));
        let out = GetObjectOutput {
            content_length: Some((end - start) as i64),
            content_range: range
                .as_ref()
                .map(|r| format!("bytes {}-{}/{size}", r.start, r.end - 1)),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag_of(&info.attrs, info.created_ms, size)),
            last_modified: Some(timestamp(info.created_ms)),
            content_type: info.attrs.get(CONTENT_TYPE).cloned(),
            metadata: user_meta(&info.attrs),
            ..Default::default()
        };
        let body = self.body(info, start..end);
        Ok(S3Response::new(GetObjectOutput {
            body: Some(body),
            ..out
        }))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        let i = req.input;
        let mut c = self.coord().await?;
        let info = self.lookup_object(&mut c, &i.bucket, &i.key).await?;
        Ok(S3Response::new(HeadObjectOutput {
            content_length: Some(info.size as i64),
            accept_ranges: Some("bytes".into()),
            e_tag: Some(etag_of(&info.attrs, info.created_ms, info.size)),
            last_modified: Some(timestamp(info.created_ms)),
            content_type: info.attrs.get(CONTENT_TYPE).cloned(),
            metadata: user_meta(&info.attrs),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let i = req.input;
        let name = object_name(&i.bucket, &i.key)?;
        let mut c = self.coord().await?;
        match c.remove(name).await {
            Ok(()) => {}
            Err(e) if e.coord_kind() == Some(ErrorKind::NoSuchFile) => {
                self.check_bucket(&mut c, &i.bucket).await?;
            }
            Err(e) => return Err(s3e(e)),
        }
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let i = req.input;
        if i.delete.objects.len() > 1000 {
            return Err(s3_error!(MalformedXML, "at most 1000 keys per request"));
        }
        let mut c = self.coord().await?;
        self.check_bucket(&mut c, &i.bucket).await?;
        let quiet = i.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in i.delete.objects {
            let res = match names::object_name(&i.bucket, &o.key) {
                Err(e) => Err(("InvalidArgument", e)),
                Ok(name) => match c.remove(name).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.coord_kind() == Some(ErrorKind::NoSuchFile) => Ok(()),
                    Err(e) => Err(("InternalError", e.to_string())),
                },
            };
            match res {
                Ok(()) if !quiet => deleted.push(DeletedObject {
                    key: Some(o.key),
                    ..Default::default()
                }),
                Ok(()) => {}
                Err((code, msg)) => errors.push(s3s::dto::Error {
                    code: Some(code.into()),
                    key: Some(o.key),
                    message: Some(msg),
                    version_id: None,
                }),
            }
        }
        Ok(S3Response::new(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: (!errors.is_empty()).then_some(errors),
            ..Default::default()
        }))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let i = req.input;
        let (sb, sk) = match &i.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => return Err(s3_error!(NotImplemented, "only bucket/key copy sources")),
        };
        let dest = new_object_name(&i.bucket, &i.key)?;
        let replace = i
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if replace {
            check_user_meta(i.metadata.as_ref())?;
        }
        let mut c = self.coord().await?;
        let scheme = self.check_bucket(&mut c, &i.bucket).await?;
        let src = self.lookup_object(&mut c, &sb, &sk).await?;
        let mut attrs = if replace {
            attrs_from(i.content_type.as_deref(), i.metadata.as_ref())
        } else {
            src.attrs.clone()
        };
        let etag = if scheme.is_some_and(|s| s != src.scheme) {
            // The destination bucket protects its objects differently: the
            // bytes are re-encoded, node -> gateway -> node (verified on the
            // way; the S3 client sends and receives none of them).
            attrs.remove(ETAG);
            let size = src.size;
            let body = self.body(src, 0..size);
            self.put_body(
                &mut c,
                dest,
                Some(body),
                Some(size as i64),
                None,
                attrs,
                true,
                scheme,
            )
            .await?
        } else {
            // Same bytes, same ETag; nodes copy their chunks locally.
            let etag = etag_of(&src.attrs, src.created_ms, src.size)
                .value()
                .to_string();
            if src.attrs.contains_key(ETAG) {
                attrs.insert(ETAG.into(), etag.clone());
            }
            let s = c
                .copy(src.name.clone(), dest, None, Some(attrs), true)
                .await
                .map_err(s3e)?;
            etag_of(&s.attrs, s.created_ms, s.size).value().to_string()
        };
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(timestamp(now_ms())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let i = req.input;
        let mut c = self.coord().await?;
        self.check_bucket(&mut c, &i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let cursor = match (&i.continuation_token, &i.start_after) {
            (Some(t), _) => Some(token_to_cursor(t)?),
            (None, Some(k)) => Some(cursor_after_key(&i.bucket, k, i.delimiter.as_deref())),
            (None, None) => None,
        };
        let mk = max_keys(i.max_keys);
        let l = self
            .list(
                &mut c,
                &i.bucket,
                &prefix,
                i.delimiter.as_deref(),
                mk,
                cursor,
            )
            .await?;
        let url = encode_listing(
            i.encoding_type.as_ref(),
            &l,
            &[
                Some(prefix.as_str()),
                i.delimiter.as_deref(),
                i.start_after.as_deref(),
            ],
        );
        let (contents, common_prefixes) = objects(&l, url);
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(i.bucket),
            prefix: Some(listed(&prefix, url)),
            delimiter: i.delimiter.map(|d| listed(&d, url)),
            max_keys: Some(mk as i32),
            key_count: Some((l.objects.len() + l.prefixes.len()) as i32),
            continuation_token: i.continuation_token,
            start_after: i.start_after.map(|k| listed(&k, url)),
            is_truncated: Some(l.truncated),
            next_continuation_token: l.next.as_ref().map(hex::encode),
            contents,
            common_prefixes,
            encoding_type: url.then(|| EncodingType::from_static(EncodingType::URL)),
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let i = req.input;
        let mut c = self.coord().await?;
        self.check_bucket(&mut c, &i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let cursor = i
            .marker
            .as_ref()
            .filter(|m| !m.is_empty())
            .map(|k| cursor_after_key(&i.bucket, k, i.delimiter.as_deref()));
        let mk = max_keys(i.max_keys);
        let l = self
            .list(
                &mut c,
                &i.bucket,
                &prefix,
                i.delimiter.as_deref(),
                mk,
                cursor,
            )
            .await?;
        let next_marker = if l.truncated {
            let last_key = l.objects.last().map(|(k, _)| k.clone());
            let last_cp = l.prefixes.last().cloned();
            match (last_key, last_cp) {
                (Some(k), Some(p)) => Some(k.max(p)),
                (k, p) => k.or(p),
            }
        } else {
            None
        };
        let url = encode_listing(
            i.encoding_type.as_ref(),
            &l,
            &[
                Some(prefix.as_str()),
                i.delimiter.as_deref(),
                i.marker.as_deref(),
            ],
        );
        let (contents, common_prefixes) = objects(&l, url);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(i.bucket),
            prefix: Some(listed(&prefix, url)),
            delimiter: i.delimiter.map(|d| listed(&d, url)),
            marker: i.marker.map(|m| listed(&m, url)),
            max_keys: Some(mk as i32),
            is_truncated: Some(l.truncated),
            next_marker: next_marker.map(|m| listed(&m, url)),
            contents,
            common_prefixes,
            encoding_type: url.then(|| EncodingType::from_static(EncodingType::URL)),
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let i = req.input;
        new_object_name(&i.bucket, &i.key)?;
        check_user_meta(i.metadata.as_ref())?;
        let mut c = self.coord().await?;
        let scheme = self.check_bucket(&mut c, &i.bucket).await?;
        let upload_id = hex::encode(rand::random::<[u8; 16]>());
        let marker = names::upload_marker(&i.bucket, &upload_id)
            .map_err(|e| s3_error!(InternalError, "{e}"))?;
        let mut attrs = attrs_from(i.content_type.as_deref(), i.metadata.as_ref());
        attrs.insert(UPLOAD_KEY.into(), i.key.clone());
        if let Some(s) = scheme {
            attrs.insert(SCHEME.into(), s.to_string());
        }
        protocol::check_attrs(&attrs).map_err(|e| s3_error!(MetadataTooLarge, "{e}"))?;
        self.put_body(&mut c, marker, None, Some(0), None, attrs, false, None)
            .await?;
        Ok(S3Response::new(CreateMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(upload_id),
            ..Default::default()
        }))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let i = req.input;
        let mut c = self.coord().await?;
        let (_, up) = self.upload(&mut c, &i.bucket, &i.upload_id).await?;
        if up.attrs.get(UPLOAD_KEY) != Some(&i.key) {
            return Err(s3_error!(
                NoSuchUpload,
                "upload {} is for another key",
                i.upload_id
            ));
        }
        let part = names::part_name(&i.upload_id, i.part_number)
            .map_err(|e| s3_error!(InvalidArgument, "{e}"))?;
        let etag = self
            .put_body(
                &mut c,
                part,
                i.body,
                i.content_length,
                i.content_md5,
                Attrs::new(),
                true,
                scheme_of(&up.attrs),
            )
            .await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        let i = req.input;
        let (sb, sk) = match &i.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => return Err(s3_error!(NotImplemented, "only bucket/key copy sources")),
        };
        let mut c = self.coord().await?;
        let (_, up) = self.upload(&mut c, &i.bucket, &i.upload_id).await?;
        if up.attrs.get(UPLOAD_KEY) != Some(&i.key) {
            return Err(s3_error!(
                NoSuchUpload,
                "upload {} is for another key",
                i.upload_id
            ));
        }
        let part = names::part_name(&i.upload_id, i.part_number)
            .map_err(|e| s3_error!(InvalidArgument, "{e}"))?;
        let src = self.lookup_object(&mut c, &sb, &sk).await?;
        let size = src.size;
        // `x-amz-copy-source-range: bytes=first-last` (inclusive).
        let range = match &i.copy_source_range {
            Some(r) => {
                let r = Range::parse(r)
                    .map_err(|_| s3_error!(InvalidArgument, "bad x-amz-copy-source-range"))?;
                r.check(size)
                    .map_err(|_| s3_error!(InvalidRange, "copy range outside {size} bytes"))?
            }
            None => 0..size,
        };
        let etag = self
            .copy_range(&mut c, src, range, part, scheme_of(&up.attrs))
            .await?;
        Ok(S3Response::new(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(ETag::Strong(etag)),
                last_modified: Some(timestamp(now_ms())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let i = req.input;
        let mut c = self.coord().await?;
        self.upload(&mut c, &i.bucket, &i.upload_id).await?;
        let max = i.max_parts.map(|m| m.clamp(1, 1000)).unwrap_or(1000) as usize;
        let after = i
            .part_number_marker
            .filter(|m| *m > 0)
            .and_then(|m| names::part_name(&i.upload_id, m).ok())
            .map(|n| n.as_str().to_string());
        let page = c
            .list_page(format!("{PARTS}{}/", i.upload_id), after, max as u32 + 1)
            .await
            .map_err(s3e)?;
        let truncated = page.len() > max;
        let parts: Vec<Part> = page
            .iter()
            .take(max)
            .filter(|f| f.name.base_name().parse::<i32>().is_ok())
            .map(|f| Part {
                part_number: f.name.base_name().parse().ok(),
                size: Some(f.size as i64),
                e_tag: Some(etag_of(&f.attrs, f.created_ms, f.size)),
                last_modified: Some(timestamp(f.created_ms)),
                ..Default::default()
            })
            .collect();
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            upload_id: Some(i.upload_id),
            is_truncated: Some(truncated),
            next_part_number_marker: parts.last().and_then(|p| p.part_number),
            max_parts: Some(max as i32),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let i = req.input;
        let name = object_name(&i.bucket, &i.key)?;
        let mut c = self.coord().await?;
        let (marker, up) = self.upload(&mut c, &i.bucket, &i.upload_id).await?;
        if up.attrs.get(UPLOAD_KEY) != Some(&i.key) {
            return Err(s3_error!(
                NoSuchUpload,
                "upload {} is for another key",
                i.upload_id
            ));
        }
        let wanted = i
            .multipart_upload
            .and_then(|m| m.parts)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| s3_error!(MalformedXML, "no parts listed"))?;
        let stored: std::collections::HashMap<String, FileSummary> = self
            .list_all(&mut c, &format!("{PARTS}{}/", i.upload_id))
            .await?
            .into_iter()
            .map(|f| (f.name.as_str().to_string(), f))
            .collect();
        let mut names = Vec::with_capacity(wanted.len());
        let mut md5s = Vec::with_capacity(wanted.len() * 16);
        let mut last = 0;
        for p in &wanted {
            let n = p.part_number.unwrap_or(0);
            if n <= last {
                return Err(s3_error!(InvalidPartOrder));
            }
            last = n;
            let pn =
                names::part_name(&i.upload_id, n).map_err(|e| s3_error!(InvalidPart, "{e}"))?;
            let f = stored
                .get(pn.as_str())
                .ok_or_else(|| s3_error!(InvalidPart, "part {n} was not uploaded"))?;
            let have = f.attrs.get(ETAG).cloned().unwrap_or_default();
            if let Some(e) = &p.e_tag {
                if e.value().trim_matches('"') != have {
                    return Err(s3_error!(InvalidPart, "part {n}: ETag does not match"));
                }
            }
            md5s.extend(hex::decode(&have).unwrap_or_default());
            names.push(pn);
        }
        let etag = format!("{}-{}", hex::encode(Md5::digest(&md5s)), names.len());
        let mut attrs = up.attrs.clone();
        attrs.remove(UPLOAD_KEY);
        attrs.remove(SCHEME);
        attrs.insert(ETAG.into(), etag.clone());
        c.concat(name, names.clone(), attrs).await.map_err(s3e)?;
        // Parts uploaded but not listed, then the marker.
        for (n, f) in stored {
            if !names.iter().any(|x| x.as_str() == n) {
                let _ = c.remove(f.name).await;
            }
        }
        let _ = c.remove(marker).await;
        tracing::info!(bucket = %i.bucket, key = %i.key, parts = names.len(), "multipart upload completed");
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(i.bucket),
            key: Some(i.key),
            e_tag: Some(ETag::Strong(etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        let i = req.input;
        let mut c = self.coord().await?;
        let (marker, _) = self.upload(&mut c, &i.bucket, &i.upload_id).await?;
        self.drop_upload(&mut c, marker, &i.upload_id).await;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        let i = req.input;
        let mut c = self.coord().await?;
        self.check_bucket(&mut c, &i.bucket).await?;
        let prefix = i.prefix.clone().unwrap_or_default();
        let max = i.max_uploads.map(|m| m.clamp(1, 1000)).unwrap_or(1000) as usize;
        let mut uploads: Vec<MultipartUpload> = self
            .list_all(&mut c, &format!("{UPLOADS}{}/", i.bucket))
            .await?
            .into_iter()
            .filter_map(|f| {
                let key = f.attrs.get(UPLOAD_KEY)?.clone();
                key.starts_with(&prefix).then(|| MultipartUpload {
                    key: Some(key),
                    upload_id: Some(f.name.base_name().to_string()),
                    initiated: Some(timestamp(f.created_ms)),
                    ..Default::default()
                })
            })
            .collect();
        uploads.sort_by(|a, b| (&a.key, &a.upload_id).cmp(&(&b.key, &b.upload_id)));
        let truncated = uploads.len() > max;
        uploads.truncate(max);
        Ok(S3Response::new(ListMultipartUploadsOutput {
            bucket: Some(i.bucket),
            prefix: Some(prefix),
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            uploads: Some(uploads),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_constraints_name_schemes_or_regions() {
        let s = |c| bucket_scheme(Some(c)).map(|s| s.map(|s| s.to_string()));
        assert_eq!(s("rs:6+3").unwrap().as_deref(), Some("rs:6+3"));
        assert_eq!(s(" LRC:12+2+2 ").unwrap().as_deref(), Some("lrc:12+2+2"));
        assert_eq!(s("none").unwrap().as_deref(), Some("none"));
        // Region names mean the cluster's default.
        for region in ["us-west-2", "EU", "eu-central-1", ""] {
            assert_eq!(s(region).unwrap(), None, "{region}");
        }
        assert_eq!(bucket_scheme(None).unwrap(), None);
        // A scheme that does not make sense is refused, not ignored.
        for bad in ["rs:0+9", "rs:6", "lrc:1+9+9+9", "xor:0"] {
            let e = s(bad).unwrap_err();
            assert_eq!(*e.code(), S3ErrorCode::InvalidLocationConstraint, "{bad}");
        }
    }
}
