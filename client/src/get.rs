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
use protocol::{ChunkInfo, FileInfo, FileName, StripeInfo};
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
}

impl Stats {
    fn suspect(&self, addr: &str) -> bool {
        self.suspects
            .lock()
            .map(|s| s.contains(addr))
            .unwrap_or(false)
    }
}

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
    let stats = Arc::new(Stats {
        failed: AtomicU64::new(0),
        rebuilt: AtomicU64::new(0),
        suspects: Default::default(),
        bad: Default::default(),
        rebuild_fetches: tokio::sync::Semaphore::new(REBUILD_FETCHES),
    });
    let mut sink = Sink::open(&out)?;
    let positions: Vec<(usize, usize)> = info
        .stripes
        .iter()
        .enumerate()
        .flat_map(|(si, s)| (0..s.data.len()).map(move |ci| (si, ci)))
        .collect();
    let chunks = positions.len() as u64;
    let offsets = chunk_offsets(&info);
    let res = match sink.positioned() {
        // A file is written at each chunk's offset as soon as the chunk is
        // verified, from blocking threads: writing (a copy into the page
        // cache) proceeds in parallel with fetching and decoding instead of
        // behind them.
        Some(file) => {
            let mut done = stream::iter(positions.into_iter().enumerate())
                .map(|(index, (si, ci))| {
                    let (pool, info, stats, file) =
                        (pool.clone(), info.clone(), stats.clone(), file.clone());
                    let offset = offsets[index];
                    async move {
                        let raw = read_chunk(&pool, &info, si, ci, &stats).await?;
                        write_at(file, raw, offset).await
                    }
                })
                .buffer_unordered(inflight.max(1));
            let mut written = 0u64;
            let mut res = Ok(());
            while let Some(n) = done.next().await {
                match n {
                    Ok(n) => {
                        written += n;
                        progress(n);
                    }
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
        // A stream must be written in order.
        None => {
            let mut fetched = stream::iter(positions)
                .map(|(si, ci)| {
                    let (pool, info, stats) = (pool.clone(), info.clone(), stats.clone());
                    async move { read_chunk(&pool, &info, si, ci, &stats).await }
                })
                .buffered(inflight.max(1));
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
            drop(fetched);
            res
        }
    };
    let bad = stats
        .bad
        .lock()
        .map(|mut b| std::mem::take(&mut *b))
        .unwrap_or_default();
    for (chunk, node, reason) in bad {
        if let Err(e) = coord.report_bad(chunk, node, reason).await {
            tracing::debug!(error = %e, "could not report a bad copy");
        }
    }
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
/// as a stream of verified pieces in order: only the chunks that overlap the
/// range are fetched, `inflight` at a time, each verified (and rebuilt from
/// parity if need be) exactly as `get` does. Memory stays at `inflight`
/// chunks whatever the range.
pub fn range_stream(
    pool: Arc<NodePool>,
    info: Arc<FileInfo>,
    inflight: usize,
    range: std::ops::Range<u64>,
) -> impl futures_util::Stream<Item = Result<Bytes>> + Send + 'static {
    let stats = Arc::new(Stats {
        failed: AtomicU64::new(0),
        rebuilt: AtomicU64::new(0),
        suspects: Default::default(),
        bad: Default::default(),
        rebuild_fetches: tokio::sync::Semaphore::new(REBUILD_FETCHES),
    });
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
        let res = match pool
            .fetch(&loc.node.addr, &c.header, c.token.as_ref())
            .await
        {
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
            Err(e) => Err(e.to_string()),
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
                let direct = directio::open_direct(&tmp, std::fs::OpenOptions::new().write(true))
                    .map(Arc::new);
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
