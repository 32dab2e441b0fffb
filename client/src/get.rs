//! `get`: fetch every data chunk from the first copy that verifies, decode
//! it from other members of its stripe (`codes`) when none does, and write the file under a
//! temp name that is renamed only once every byte is in place.

use crate::config::ClientConfig;
use crate::coord_client::CoordClient;
use crate::error::{Error, Result};
use crate::put::Progress;
use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use protocol::chunk;
use protocol::data_client::NodePool;
use protocol::handshake::Role;
use protocol::{BlockToken, ChunkInfo, FileInfo, FileName, StripeInfo};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the bytes go.
pub enum Output {
    File(PathBuf),
    Stdout,
    /// Verify and drop the bytes (benchmarks, deep checks).
    Discard,
}

#[derive(Debug, Clone)]
pub struct GetSummary {
    pub name: FileName,
    pub size: u64,
    pub chunks: u64,
    /// Copies that failed (unreachable, missing, corrupt) before another
    /// copy served the chunk.
    pub failed_copies: u64,
    /// Chunks rebuilt from parity.
    pub rebuilt: u64,
    pub elapsed: Duration,
}

/// The state one read of a looked-up file shares between its fetches:
/// suspects, bad copies to report, the degraded-read budget and the read
/// tokens, renewed while the read lasts.
struct Stats {
    failed: AtomicU64,
    rebuilt: AtomicU64,
    /// Nodes that failed during this get: tried last for the other chunks,
    /// so one hung or dead node costs one timeout, not one per chunk.
    suspects: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Copies that arrived but failed verification: reported to the
    /// coordinator, which has their node re-verify and repair them.
    bad: std::sync::Mutex<Vec<(protocol::ChunkId, protocol::NodeId, String)>>,
    /// Bounds the stripe members held by all rebuilds of this get at once.
    rebuild_fetches: tokio::sync::Semaphore,
    tokens: Tokens,
}

impl Stats {
    fn new(cfg: &ClientConfig, info: &FileInfo) -> Stats {
        Stats {
            failed: AtomicU64::new(0),
            rebuilt: AtomicU64::new(0),
            suspects: Default::default(),
            bad: Default::default(),
            rebuild_fetches: tokio::sync::Semaphore::new(REBUILD_FETCHES),
            tokens: Tokens {
                cfg: cfg.clone(),
                name: info.name.clone(),
                fresh: std::sync::Mutex::new(Fresh {
                    issued_ms: protocol::token::now_ms(),
                    ..Fresh::default()
                }),
                renewing: tokio::sync::Mutex::new(()),
            },
        }
    }

    fn suspect(&self, addr: &str) -> bool {
        self.suspects
            .lock()
            .map(|s| s.contains(addr))
            .unwrap_or(false)
    }

    fn take_bad(&self) -> Vec<(protocol::ChunkId, protocol::NodeId, String)> {
        self.bad
            .lock()
            .map(|mut b| std::mem::take(&mut *b))
            .unwrap_or_default()
    }

    /// Tells the coordinator of every copy that failed verification, so it
    /// has the node re-verify (and quarantine) it: whoever reads, `get` or
    /// an S3 GET of a range, the coordinator hears of it the same way.
    async fn report(&self, coord: &mut CoordClient) {
        for (chunk, node, reason) in self.take_bad() {
            if let Err(e) = coord.report_bad(chunk, node, reason).await {
                tracing::debug!(error = %e, "could not report a bad copy");
            }
        }
    }
}

/// Read tokens that outlive the lookup which granted them. Tokens live
/// minutes (the coordinator's `--read-token-ttl`), so that a revoked key
/// stops reading within that bound; a read that lasts longer asks the
/// coordinator again, over a new connection (a new handshake, where a
/// revoked key is refused), shortly before they expire or when a node
/// refuses one as expired.
struct Tokens {
    cfg: ClientConfig,
    name: FileName,
    fresh: std::sync::Mutex<Fresh>,
    /// One renewal at a time; the others wait for its tokens.
    renewing: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Fresh {
    /// Bumped by every renewal.
    generation: u64,
    /// Tokens of the newest renewal, by chunk (the lookup's before any).
    tokens: std::collections::HashMap<protocol::ChunkId, BlockToken>,
    /// When the tokens in use were granted (client clock), to judge how
    /// much of their life is left.
    issued_ms: u64,
    /// A renewal that failed (the key was revoked, the file replaced):
    /// every later fetch fails with it instead of asking again.
    failed: Option<String>,
}

/// Error of a fetch refused for an expired token, as the node words it.
fn expired_token(e: &protocol::Error) -> bool {
    matches!(e, protocol::Error::Remote(w)
        if w.kind == protocol::ErrorKind::Forbidden && w.message.contains("expired"))
}

impl Tokens {
    /// The newest token for `c` and the generation it belongs to.
    fn get(&self, c: &ChunkInfo) -> Result<(Option<BlockToken>, u64), String> {
        let f = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &f.failed {
            return Err(why.clone());
        }
        let t = f
            .tokens
            .get(&c.header.id)
            .cloned()
            .or_else(|| c.token.clone());
        Ok((t, f.generation))
    }

    /// Whether `t` is in the last quarter of its life (at most
    /// [`RENEW_AHEAD`] before expiry): renew before using it.
    fn expiring(&self, t: &BlockToken) -> bool {
        let issued = self.fresh.lock().map(|f| f.issued_ms).unwrap_or_default();
        let now = protocol::token::now_ms();
        let life = t.expires_ms.saturating_sub(issued);
        let ahead = (life / 4).min(RENEW_AHEAD.as_millis() as u64);
        t.expires_ms <= now + ahead
    }

    /// Fetches fresh tokens for the whole file unless a renewal newer than
    /// `seen` already did.
    async fn renew(&self, seen: u64) -> Result<(), String> {
        let _one = self.renewing.lock().await;
        {
            let f = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(why) = &f.failed {
                return Err(why.clone());
            }
            if f.generation > seen {
                return Ok(());
            }
        }
        let issued_ms = protocol::token::now_ms();
        let res = async {
            let mut coord = CoordClient::connect(&self.cfg).await?;
            coord.lookup(self.name.clone()).await
        }
        .await;
        let mut f = self.fresh.lock().unwrap_or_else(|p| p.into_inner());
        match res {
            Ok(info) => {
                let tokens: std::collections::HashMap<_, _> = info
                    .stripes
                    .iter()
                    .flat_map(|s| s.data.iter().chain(s.parity.iter()))
                    .filter_map(|c| Some((c.header.id, c.token.clone()?)))
                    .collect();
                tracing::debug!(file = %self.name, tokens = tokens.len(), "read tokens renewed");
                f.tokens = tokens;
                f.generation += 1;
                f.issued_ms = issued_ms;
                Ok(())
            }
            Err(e) => {
                let why = format!("the read tokens expired and could not be renewed: {e}");
                tracing::warn!(file = %self.name, "{why}");
                f.failed = Some(why.clone());
                Err(why)
            }
        }
    }

    /// Fetches `c`'s stored bytes from `addr` with the newest token,
    /// renewing it first when it is about to expire, and once more when
    /// the node refuses it as expired.
    async fn fetch(&self, pool: &NodePool, addr: &str, c: &ChunkInfo) -> Result<Bytes, String> {
        let (mut token, mut generation) = self.get(c)?;
        if token.as_ref().is_some_and(|t| self.expiring(t)) {
            self.renew(generation).await?;
            (token, generation) = self.get(c)?;
        }
        match pool.fetch(addr, &c.header, token.as_ref()).await {
            Err(e) if expired_token(&e) => {
                self.renew(generation).await?;
                let (token, _) = self.get(c)?;
                pool.fetch(addr, &c.header, token.as_ref())
                    .await
                    .map_err(|e| e.to_string())
            }
            r => r.map_err(|e| e.to_string()),
        }
    }
}

/// How long before a read token expires (at most; a quarter of its life
/// when that is shorter) the read asks for fresh ones.
const RENEW_AHEAD: Duration = Duration::from_secs(30);

pub async fn get(
    cfg: &ClientConfig,
    name: FileName,
    out: Output,
    progress: Progress,
) -> Result<GetSummary> {
    let mut coord = CoordClient::connect(cfg).await?;
    let pool = Arc::new(NodePool::new(Role::Client, None));
    get_with(&mut coord, &pool, cfg.inflight, name, out, progress).await
}

/// A get over an existing coordinator connection and node pool.
pub async fn get_with(
    coord: &mut CoordClient,
    pool: &Arc<NodePool>,
    inflight: usize,
    name: FileName,
    out: Output,
    progress: Progress,
) -> Result<GetSummary> {
    let start = Instant::now();
    let info = Arc::new(coord.lookup(name.clone()).await?);
    let stats = Arc::new(Stats::new(coord.config(), &info));
    let mut sink = Sink::open(&out)?;
    let chunks = info.stripes.iter().map(|s| s.data.len() as u64).sum();
    let res = match sink.positioned() {
        // A file is written at each chunk's offset as soon as the chunk is
        // verified, from blocking threads: writing (a copy into the page
        // cache) proceeds in parallel with fetching and decoding instead of
        // behind them.
        Some(file) => {
            probe_nodes(pool, &info, &stats).await;
            let fetches = Arc::new(tokio::sync::Semaphore::new(inflight.max(1)));
            let decoding = Arc::new(tokio::sync::Semaphore::new(1));
            let offsets = Arc::new(chunk_offsets(&info));
            let mut done = stream::iter(0..info.stripes.len())
                .map(|si| {
                    let job = StripeJob {
                        pool: pool.clone(),
                        info: info.clone(),
                        stats: stats.clone(),
                        file: file.clone(),
                        offsets: offsets.clone(),
                        fetches: fetches.clone(),
                        decoding: decoding.clone(),
                        progress: progress.clone(),
                        si,
                    };
                    job.run()
                })
                .buffer_unordered(STRIPES_IN_FLIGHT);
            let mut written = 0u64;
            let mut res = Ok(());
            while let Some(n) = done.next().await {
                match n {
                    Ok(n) => written += n,
                    Err(e) => {
                        res = Err(e);
                        break;
                    }
                }
            }
            drop(done);
            match res {
                Ok(()) if written != info.size => Err(Error::Unreadable(format!(
                    "{name}: assembled {written} bytes, catalog says {}",
                    info.size
                ))),
                Ok(()) => tokio::task::block_in_place(|| sink.finish()),
                Err(e) => Err(e),
            }
        }
        // A stream is written in order: the whole file is the range
        // 0..size of the ordered pipeline the S3 gateway reads ranges with.
        None => {
            let mut fetched = std::pin::pin!(ordered(
                pool.clone(),
                info.clone(),
                stats.clone(),
                inflight,
                0..info.size
            ));
            let mut written = 0u64;
            let res = async {
                while let Some(raw) = fetched.next().await {
                    let raw = raw?;
                    tokio::task::block_in_place(|| sink.write(&raw))?;
                    written += raw.len() as u64;
                    progress(raw.len() as u64);
                }
                if written != info.size {
                    return Err(Error::Unreadable(format!(
                        "{name}: assembled {written} bytes, catalog says {}",
                        info.size
                    )));
                }
                tokio::task::block_in_place(|| sink.finish())
            }
            .await;
            res
        }
    };
    stats.report(coord).await;
    res?;
    Ok(GetSummary {
        name,
        size: info.size,
        chunks,
        failed_copies: stats.failed.load(Ordering::Relaxed),
        rebuilt: stats.rebuilt.load(Ordering::Relaxed),
        elapsed: start.elapsed(),
    })
}

/// Where each data chunk starts in the file, in file order. From each
/// chunk's `raw_len`, not `index x chunk_size`: a file joined from S3
/// multipart parts has chunks of different lengths.
fn chunk_offsets(info: &FileInfo) -> Vec<u64> {
    let mut at = 0u64;
    info.stripes
        .iter()
        .flat_map(|s| s.data.iter())
        .map(|c| {
            let o = at;
            at += c.header.raw_len;
            o
        })
        .collect()
}

/// The bytes `range` (end exclusive, within the file) of a looked-up file,
/// as a stream of verified pieces in order, for the S3 gateway's GET: the
/// same pipeline as `get` (copies tried live-first, SHA-256 verified,
/// rebuilt from the stripe when no copy verifies, tokens renewed), fetching
/// only the chunks that overlap the range, `cfg.inflight` at a time, so
/// memory stays at `inflight` chunks whatever the range. Copies that failed
/// verification are reported to the coordinator (over a connection of its
/// own, opened only then) when the stream ends or is dropped.
pub fn range_stream(
    cfg: &ClientConfig,
    pool: Arc<NodePool>,
    info: Arc<FileInfo>,
    range: std::ops::Range<u64>,
) -> impl futures_util::Stream<Item = Result<Bytes>> + Send + 'static {
    let stats = Arc::new(Stats::new(cfg, &info));
    let report = ReportOnDrop(stats.clone());
    ordered(pool, info, stats, cfg.inflight, range).map(move |piece| {
        let _ = &report;
        piece
    })
}

/// Reports a stream's bad copies when it goes away, finished or not.
struct ReportOnDrop(Arc<Stats>);

impl Drop for ReportOnDrop {
    fn drop(&mut self) {
        let bad = self.0.take_bad();
        if bad.is_empty() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let cfg = self.0.tokens.cfg.clone();
        rt.spawn(async move {
            match CoordClient::connect(&cfg).await {
                Ok(mut coord) => {
                    for (chunk, node, reason) in bad {
                        if let Err(e) = coord.report_bad(chunk, node, reason).await {
                            tracing::debug!(error = %e, "could not report a bad copy");
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not report bad copies"),
            }
        });
    }
}

/// The ordered pipeline: the verified pieces of `range`, in order, each
/// chunk read by `read_chunk`, `inflight` at once.
fn ordered(
    pool: Arc<NodePool>,
    info: Arc<FileInfo>,
    stats: Arc<Stats>,
    inflight: usize,
    range: std::ops::Range<u64>,
) -> impl futures_util::Stream<Item = Result<Bytes>> + Send + 'static {
    let offsets = chunk_offsets(&info);
    let wanted: Vec<(usize, usize, u64)> = info
        .stripes
        .iter()
        .enumerate()
        .flat_map(|(si, s)| {
            s.data
                .iter()
                .enumerate()
                .map(move |(ci, c)| (si, ci, c.header.raw_len))
        })
        .zip(offsets)
        .filter(|((_, _, len), off)| *off < range.end && off + len > range.start)
        .map(|((si, ci, _), off)| (si, ci, off))
        .collect();
    stream::iter(wanted)
        .map(move |(si, ci, off)| {
            let (pool, info, stats) = (pool.clone(), info.clone(), stats.clone());
            let range = range.clone();
            async move {
                let raw = read_chunk(&pool, &info, si, ci, &stats).await?;
                let from = range.start.saturating_sub(off) as usize;
                let to = ((range.end - off) as usize).min(raw.len());
                if from > to {
                    return Err(Error::Unreadable(format!(
                        "{}: chunk at {off} is shorter than the catalog says",
                        info.name
                    )));
                }
                Ok(raw.slice(from..to))
            }
        })
        .buffered(inflight.max(1))
}

/// Reads data chunk `ci` of stripe `si`: any verified copy, else parity.
async fn read_chunk(
    pool: &NodePool,
    info: &FileInfo,
    si: usize,
    ci: usize,
    stats: &Stats,
) -> Result<Bytes> {
    let stripe = &info.stripes[si];
    let c = &stripe.data[ci];
    let index = position(info, si, ci);
    match read_any(pool, c, &info.name, stats).await {
        Ok(raw) => Ok(raw),
        Err(why) => {
            if let Err(t) = stats.tokens.get(c) {
                // Without tokens no member can be read: say why at once.
                return Err(Error::Unreadable(format!(
                    "chunk {index} of {}: {t}",
                    info.name
                )));
            }
            tracing::warn!(
                file = %info.name,
                chunk = index,
                "no copy of chunk {index} is readable ({why}); rebuilding it from parity"
            );
            let raw = rebuild(pool, info, stripe, ci, stats).await.map_err(|e| {
                Error::Unreadable(format!(
                    "chunk {index} of {} is lost: {why}; parity rebuild failed: {e}",
                    info.name
                ))
            })?;
            stats.rebuilt.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(file = %info.name, chunk = index, "chunk {index} rebuilt from parity, SHA-256 verified");
            Ok(raw)
        }
    }
}

fn position(info: &FileInfo, si: usize, ci: usize) -> usize {
    info.stripes[..si]
        .iter()
        .map(|s| s.data.len())
        .sum::<usize>()
        + ci
}

/// Tries each copy in order (live nodes first) until one decodes and
/// verifies; returns every failure otherwise.
async fn read_any(
    pool: &NodePool,
    c: &ChunkInfo,
    file: &FileName,
    stats: &Stats,
) -> Result<Bytes, String> {
    let mut errors = Vec::new();
    let mut order: Vec<&protocol::Location> = c.locations.iter().collect();
    // Stable: live before dead (the coordinator's order), then nodes that
    // already failed during this get after the rest.
    order.sort_by_key(|l| stats.suspect(&l.node.addr));
    for loc in order {
        let res = match stats.tokens.fetch(pool, &loc.node.addr, c).await {
            Ok(stored) => {
                let h = c.header.clone();
                let res = tokio::task::spawn_blocking(move || chunk::decode(&h, stored))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| format!("copy failed verification: {e}")));
                if let Err(e) = &res {
                    if let Ok(mut b) = stats.bad.lock() {
                        b.push((c.header.id, loc.node.id.clone(), e.clone()));
                    }
                }
                res
            }
            // Tokens that cannot be renewed fail every copy alike: the
            // node is not to blame.
            Err(e) if stats.tokens.get(c).is_err() => return Err(e),
            Err(e) => Err(e),
        };
        match res {
            Ok(raw) => return Ok(raw),
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut s) = stats.suspects.lock() {
                    s.insert(loc.node.addr.clone());
                }
                tracing::warn!(%file, chunk = %c.header.id, node = %loc.node.id, addr = %loc.node.addr, error = %e, "copy unreadable, trying the next");
                errors.push(format!("{}: {e}", loc.node.id));
            }
        }
    }
    if errors.is_empty() {
        errors.push("no copies recorded".into());
    }
    Err(errors.join("; "))
}

/// Decodes data chunk `lost` of a stripe from the members the code's read
/// plan names (LRC: its local group; RS: K members), skipping members
/// whose every holder is down or already failed in this get. A member that
/// fails to arrive joins the lost set and the plan is made again. At most
/// [`REBUILD_FETCHES`] members are in memory at once across every rebuild
/// of the get (a permit is held from fetch until the member is folded into
/// its output), so memory stays bounded whatever the stripe width.
/// Stripe members held at once by the degraded reads of one get.
const REBUILD_FETCHES: usize = 3;

async fn rebuild(
    pool: &NodePool,
    info: &FileInfo,
    stripe: &StripeInfo,
    lost: usize,
    stats: &Stats,
) -> Result<Bytes, String> {
    let code = codes::Code::new(info.scheme).map_err(|e| e.to_string())?;
    let k = code.k();
    let data = stripe.data.len();
    let member_info = |m: usize| -> Option<&ChunkInfo> {
        if m < k {
            stripe.data.get(m)
        } else {
            stripe.parity.get(m - k)
        }
    };
    // Members already known unreadable: no live holder left to try.
    let mut gone: Vec<usize> = code
        .real_members(data)
        .filter(|&m| {
            m == lost
                || member_info(m).is_none_or(|c| {
                    c.locations
                        .iter()
                        .all(|l| !l.alive || stats.suspect(&l.node.addr))
                })
        })
        .collect();
    let parity_len = stripe
        .data
        .iter()
        .map(|c| c.header.raw_len)
        .max()
        .unwrap_or(0) as usize;
    let want = stripe.data[lost].header.clone();
    'plan: loop {
        let read = code
            .read_plan(data, &gone, &[lost])
            .map_err(|e| format!("{} stripe cannot be decoded: {e}", info.scheme))?;
        let dec = code
            .decoder(data, &read, &[lost])
            .map_err(|e| e.to_string())?;
        let mut out = directio::AlignedBuf::zeroed(parity_len);
        let mut fetched = stream::iter(read.iter().copied().enumerate())
            .map(|(r, m)| async move {
                let c = member_info(m).ok_or("member missing from the stripe")?;
                let permit = stats
                    .rebuild_fetches
                    .acquire()
                    .await
                    .map_err(|e| e.to_string())?;
                let res = read_any(pool, c, &info.name, stats).await;
                Ok::<_, String>((r, m, res, permit))
            })
            .buffer_unordered(REBUILD_FETCHES);
        while let Some(next) = fetched.next().await {
            let (r, m, res, _permit) = next?;
            match res {
                Ok(raw) => {
                    if raw.len() > out.len() {
                        return Err(format!("member {m} is longer than the stripe's parity"));
                    }
                    let dec = dec.clone();
                    out = tokio::task::spawn_blocking(move || {
                        dec.add(r, &raw, &mut [&mut out[..]]);
                        out
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                }
                Err(e) => {
                    tracing::warn!(file = %info.name, member = m, error = %e, "stripe member unreadable; planning the rebuild again without it");
                    gone.push(m);
                    continue 'plan;
                }
            }
        }
        return tokio::task::spawn_blocking(move || {
            out.set_len((want.raw_len as usize).min(out.len()));
            if chunk::sha256(&out) != want.raw_sha256 {
                return Err("rebuilt bytes fail SHA-256 verification".to_string());
            }
            Ok(out.into_bytes())
        })
        .await
        .map_err(|e| e.to_string())?;
    }
}

/// Stripes fetched at once by a get to a file; their chunk fetches share
/// the get's `inflight` permits.
const STRIPES_IN_FLIGHT: usize = 2;

/// How long the liveness probe at the start of a get waits for a node: a
/// refused connection answers at once; a node that is merely slow is not
/// judged by it.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Connects to every node holding a part of the file, all at once, before
/// the first fetch: a node that refuses is remembered as a suspect for the
/// whole get, so stripes that need it are planned as degraded from the
/// start (each member fetched once) instead of finding out chunk by chunk.
/// The connections stay in the pool for the fetches.
async fn probe_nodes(pool: &NodePool, info: &FileInfo, stats: &Stats) {
    let mut addrs: Vec<&str> = info
        .stripes
        .iter()
        .flat_map(|s| s.data.iter().chain(s.parity.iter()))
        .flat_map(|c| c.locations.iter())
        .map(|l| l.node.addr.as_str())
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    let results = futures_util::future::join_all(
        addrs
            .iter()
            .map(|a| tokio::time::timeout(PROBE_TIMEOUT, pool.probe(a))),
    )
    .await;
    for (addr, r) in addrs.into_iter().zip(results) {
        if let Ok(Err(e)) = r {
            tracing::warn!(%addr, error = %e, "node does not answer; its copies are read last");
            if let Ok(mut s) = stats.suspects.lock() {
                s.insert(addr.to_string());
            }
        }
    }
}

/// One stripe of a get to a file.
struct StripeJob {
    pool: Arc<NodePool>,
    info: Arc<FileInfo>,
    stats: Arc<Stats>,
    file: Positioned,
    offsets: Arc<Vec<u64>>,
    /// Chunk fetches in flight across the whole get.
    fetches: Arc<tokio::sync::Semaphore>,
    /// Degraded stripes decoding at once (each holds one output per lost
    /// chunk), so memory stays bounded whatever the pattern of losses.
    decoding: Arc<tokio::sync::Semaphore>,
    progress: Progress,
    si: usize,
}

impl StripeJob {
    /// Writes every data chunk of the stripe; returns the bytes written.
    ///
    /// When data chunks have no usable copy (every holder dead or already
    /// failed in this get), the stripe is decoded in one pass: each member
    /// the read plan names is fetched once and folded into the outputs of
    /// all lost chunks as it arrives, and the data members among them are
    /// written out as well, so a lost chunk costs its parity fetches
    /// rather than K or K/L extra fetches. If anything fails on the way,
    /// the lost chunks fall back to the per-chunk path (`read_chunk`).
    async fn run(self) -> Result<u64> {
        let stripe = &self.info.stripes[self.si];
        let usable = |c: &ChunkInfo| {
            c.locations
                .iter()
                .any(|l| l.alive && !self.stats.suspect(&l.node.addr))
        };
        let lost: Vec<usize> = (0..stripe.data.len())
            .filter(|&ci| !usable(&stripe.data[ci]))
            .collect();
        if lost.is_empty() {
            let all: Vec<usize> = (0..stripe.data.len()).collect();
            return self.plain(&all).await;
        }
        let _decoding = self
            .decoding
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Unreadable(e.to_string()))?;
        match self.decode_pass(&lost).await {
            Ok(n) => Ok(n),
            Err(Fallback { written, left }) => {
                tracing::warn!(
                    file = %self.info.name,
                    stripe = self.si,
                    "one-pass decode of the stripe failed; rebuilding its chunks one by one"
                );
                Ok(written + self.plain(&left).await?)
            }
        }
    }

    /// Reads data chunks `cis` one by one (each with its own fallbacks).
    async fn plain(&self, cis: &[usize]) -> Result<u64> {
        let mut done = stream::iter(cis.iter().copied())
            .map(|ci| async move {
                let _permit = self
                    .fetches
                    .acquire()
                    .await
                    .map_err(|e| Error::Unreadable(e.to_string()))?;
                let raw = read_chunk(&self.pool, &self.info, self.si, ci, &self.stats).await?;
                let n = write_at(self.file.clone(), raw, self.offset(ci)).await?;
                (self.progress)(n);
                Ok::<_, Error>(n)
            })
            .buffer_unordered(cis.len().max(1));
        let mut written = 0;
        while let Some(n) = done.next().await {
            written += n?;
        }
        Ok(written)
    }

    fn offset(&self, ci: usize) -> u64 {
        self.offsets[position(&self.info, self.si, ci)]
    }

    /// The one-pass decode of a stripe whose data chunks `lost` have no
    /// usable copy.
    async fn decode_pass(&self, lost: &[usize]) -> Result<u64, Fallback> {
        let stripe = &self.info.stripes[self.si];
        let data = stripe.data.len();
        let everything = |written| Fallback {
            written,
            left: (0..data).collect(),
        };
        let Ok(code) = codes::Code::new(self.info.scheme) else {
            return Err(everything(0));
        };
        let k = code.k();
        let member_info = |m: usize| -> Option<&ChunkInfo> {
            if m < k {
                stripe.data.get(m)
            } else {
                stripe.parity.get(m - k)
            }
        };
        let gone: Vec<usize> = code
            .real_members(data)
            .filter(|&m| {
                member_info(m).is_none_or(|c| {
                    c.locations
                        .iter()
                        .all(|l| !l.alive || self.stats.suspect(&l.node.addr))
                })
            })
            .collect();
        let Ok(read) = code.read_plan(data, &gone, lost) else {
            return Err(everything(0));
        };
        let Ok(dec) = code.decoder(data, &read, lost) else {
            return Err(everything(0));
        };
        let parity_len = stripe
            .data
            .iter()
            .map(|c| c.header.raw_len)
            .max()
            .unwrap_or(0) as usize;
        let outs: Vec<directio::AlignedBuf> = lost
            .iter()
            .map(|_| directio::AlignedBuf::zeroed(parity_len))
            .collect();
        let outs = Arc::new(std::sync::Mutex::new(outs));
        let dec = Arc::new(dec);
        // Every member read for the decode, and every data chunk that is
        // not lost (needed in the output anyway), fetched once each.
        let mut fetch: Vec<usize> = read.clone();
        fetch.extend((0..data).filter(|ci| !lost.contains(ci) && !read.contains(ci)));
        let mut done = stream::iter(fetch)
            .map(|m| {
                let (outs, dec, read) = (outs.clone(), dec.clone(), &read);
                async move {
                    let _permit = self.fetches.acquire().await.ok()?;
                    let c = member_info(m)?;
                    let raw = read_any(&self.pool, c, &self.info.name, &self.stats)
                        .await
                        .ok()?;
                    if raw.len() > parity_len {
                        return None;
                    }
                    let mut n = 0;
                    if let Some(r) = read.iter().position(|&x| x == m) {
                        let raw = raw.clone();
                        tokio::task::spawn_blocking(move || {
                            let mut outs = outs.lock().unwrap_or_else(|p| p.into_inner());
                            let mut refs: Vec<&mut [u8]> =
                                outs.iter_mut().map(|o| &mut o[..]).collect();
                            dec.add(r, &raw, &mut refs);
                        })
                        .await
                        .ok()?;
                    }
                    if m < data {
                        n = write_at(self.file.clone(), raw, self.offset(m))
                            .await
                            .ok()?;
                        (self.progress)(n);
                    }
                    Some((m, n))
                }
            })
            .buffer_unordered(read.len() + data);
        let mut written = 0u64;
        let mut arrived: Vec<usize> = Vec::new();
        let mut failed = false;
        while let Some(r) = done.next().await {
            match r {
                Some((m, n)) => {
                    written += n;
                    arrived.push(m);
                }
                None => failed = true,
            }
        }
        drop(done);
        if failed {
            // Data chunks not yet written, and every lost one, take the
            // per-chunk path.
            let left = (0..data).filter(|ci| !arrived.contains(ci)).collect();
            return Err(Fallback { written, left });
        }
        let outs = match Arc::try_unwrap(outs) {
            Ok(m) => m.into_inner().unwrap_or_else(|p| p.into_inner()),
            Err(_) => return Err(everything(written)),
        };
        let mut left = Vec::new();
        for (out, &ci) in outs.into_iter().zip(lost) {
            let want = &stripe.data[ci].header;
            let (want_len, want_sha) = (want.raw_len as usize, want.raw_sha256);
            let verified = tokio::task::spawn_blocking(move || {
                let mut out = out;
                out.set_len(want_len.min(out.len()));
                (chunk::sha256(&out) == want_sha).then(|| out.into_bytes())
            })
            .await
            .ok()
            .flatten();
            match verified {
                Some(raw) => {
                    let n = match write_at(self.file.clone(), raw, self.offset(ci)).await {
                        Ok(n) => n,
                        Err(_) => {
                            left.push(ci);
                            continue;
                        }
                    };
                    (self.progress)(n);
                    written += n;
                    self.stats.rebuilt.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        file = %self.info.name,
                        chunk = position(&self.info, self.si, ci),
                        "chunk rebuilt from its stripe, SHA-256 verified"
                    );
                }
                None => left.push(ci),
            }
        }
        if left.is_empty() {
            Ok(written)
        } else {
            Err(Fallback { written, left })
        }
    }
}

/// What a failed one-pass decode leaves to the per-chunk path.
struct Fallback {
    /// Bytes already written.
    written: u64,
    /// Data chunks not written yet.
    left: Vec<usize>,
}

/// An output file and, when the file system allows it, a direct handle on it.
type Positioned = (Arc<std::fs::File>, Option<Arc<std::fs::File>>);

/// The output: stdout, or a temp file renamed into place by `finish`.
enum Sink {
    Discard,
    Stdout(std::io::Stdout),
    File {
        file: Arc<std::fs::File>,
        /// The same file opened for direct I/O, when the file system allows
        /// it: chunk-sized writes skip the page cache (see `directio`).
        direct: Option<Arc<std::fs::File>>,
        tmp: PathBuf,
        dest: PathBuf,
        done: bool,
        /// Bytes written so far, to start writeback of each new range.
        written: u64,
    },
}

impl Sink {
    fn open(out: &Output) -> Result<Sink> {
        match out {
            Output::Stdout => Ok(Sink::Stdout(std::io::stdout())),
            Output::Discard => Ok(Sink::Discard),
            Output::File(dest) => {
                let dir = match dest.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                    _ => PathBuf::from("."),
                };
                let base = dest
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| {
                        Error::Usage(format!("{} is not a file path", dest.display()))
                    })?;
                let tmp = dir.join(format!(".{base}.dfs-part-{:08x}", rand::random::<u32>()));
                let file = std::fs::File::create(&tmp).map_err(|source| Error::Local {
                    path: tmp.display().to_string(),
                    source,
                })?;
                // A second handle on the same file, kept only if it is
                // direct: the buffered one takes unaligned tails.
                let direct = directio::open(&tmp, std::fs::OpenOptions::new().write(true), true)
                    .ok()
                    .and_then(|(f, direct)| direct.then(|| Arc::new(f)));
                Ok(Sink::File {
                    file: Arc::new(file),
                    direct,
                    tmp,
                    dest: dest.clone(),
                    done: false,
                    written: 0,
                })
            }
        }
    }

    /// The file (and its direct handle), when output can be written at any
    /// offset.
    fn positioned(&self) -> Option<Positioned> {
        match self {
            Sink::File { file, direct, .. } => Some((file.clone(), direct.clone())),
            _ => None,
        }
    }

    fn write(&mut self, data: &[u8]) -> Result<()> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Stdout(s) => s.write_all(data).map_err(|source| Error::Local {
                path: "stdout".into(),
                source,
            }),
            Sink::File {
                file, tmp, written, ..
            } => {
                (&**file).write_all(data).map_err(|source| Error::Local {
                    path: tmp.display().to_string(),
                    source,
                })?;
                start_writeback(file, *written, data.len() as u64);
                *written += data.len() as u64;
                Ok(())
            }
        }
    }

    /// fsync, then rename over the destination, then fsync the directory.
    fn finish(&mut self) -> Result<()> {
        match self {
            Sink::Discard => Ok(()),
            Sink::Stdout(s) => s.flush().map_err(|source| Error::Local {
                path: "stdout".into(),
                source,
            }),
            Sink::File {
                file,
                tmp,
                dest,
                done,
                ..
            } => {
                let local = |p: &Path, source| Error::Local {
                    path: p.display().to_string(),
                    source,
                };
                file.sync_all().map_err(|e| local(tmp, e))?;
                std::fs::rename(&tmp, &dest).map_err(|e| local(dest, e))?;
                *done = true;
                if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
                    let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
                }
                Ok(())
            }
        }
    }
}

/// Writes a verified chunk at its offset on a blocking thread and starts
/// its writeback; returns its length.
async fn write_at((file, direct): Positioned, raw: Bytes, offset: u64) -> Result<u64> {
    tokio::task::spawn_blocking(move || {
        directio::write_all_at(direct.as_deref(), &file, &raw, offset)?;
        start_writeback(&file, offset, raw.len() as u64);
        Ok(raw.len() as u64)
    })
    .await
    .map_err(|e| Error::Unreadable(format!("writer failed: {e}")))?
    .map_err(|source: std::io::Error| Error::Local {
        path: "output file".into(),
        source,
    })
}

/// Asks the kernel to start writing a just-written range to disk now, so
/// the final fsync finds little left to do instead of the whole file: the
/// disk works while the next chunks are fetched.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call, and
    // sync_file_range only reads its integer arguments. Failure (e.g. a file
    // system without support) is harmless: the final fsync still runs.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        if let Sink::File {
            tmp, done: false, ..
        } = self
        {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
