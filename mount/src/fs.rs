//! The FUSE file system: kernel requests turned into cluster calls.
//!
//! * Namespace: a directory is a name prefix (`a/b/` for `a/b`) or an
//!   explicit empty entry of type `dir`; symlinks are empty entries of type
//!   `link`; mode, owner and times are the entry's `fs.*` attributes.
//! * Reads: the file is looked up at `open` (close-to-open), then each read
//!   takes only the chunks it touches from the chunk cache, a sequential
//!   reader prefetching the next ones.
//! * Writes: go to a local spill file (copied from the cluster first when
//!   an existing file is changed in place) and are committed as a new
//!   version of the whole file on `close` (flush) and `fsync`: another
//!   client sees all of the old or all of the new content.
//! * Metadata: directory listings are cached for `meta_ttl`; this mount's
//!   own changes drop what they make stale, so `stat` after a write is
//!   fresh here.

use crate::chunks::{layout, ChunkCache};
use crate::error::{Error, Result};
use crate::meta::{self, Kind, Meta};
use crate::names;
use crate::remote::Remote;
use crate::Config;
use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use protocol::{ChunkId, FileInfo};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Names one listing request asks for.
const LIST_PAGE: u32 = 1000;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Inode numbers by path and back, for the mount's lifetime.
#[derive(Default)]
struct Inodes {
    paths: HashMap<u64, String>,
    inos: HashMap<String, u64>,
    next: u64,
}

impl Inodes {
    fn new() -> Inodes {
        let mut i = Inodes {
            next: 2,
            ..Default::default()
        };
        i.paths.insert(1, String::new());
        i.inos.insert(String::new(), 1);
        i
    }

    fn ino(&mut self, path: &str) -> u64 {
        if let Some(i) = self.inos.get(path) {
            return *i;
        }
        let i = self.next;
        self.next += 1;
        self.paths.insert(i, path.to_string());
        self.inos.insert(path.to_string(), i);
        i
    }

    fn path(&self, ino: u64) -> Option<String> {
        self.paths.get(&ino).cloned()
    }

    fn drop_path(&mut self, path: &str) {
        if let Some(i) = self.inos.remove(path) {
            self.paths.remove(&i);
        }
    }

    /// `from` (and everything below it) is now `to`.
    fn rename(&mut self, from: &str, to: &str) {
        self.drop_path(to);
        let below = format!("{from}/");
        let moved: Vec<(String, u64)> = self
            .inos
            .iter()
            .filter(|(p, _)| p.as_str() == from || p.starts_with(&below))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (p, i) in moved {
            let np = format!("{to}{}", &p[from.len()..]);
            self.inos.remove(&p);
            self.inos.remove(&np);
            self.inos.insert(np.clone(), i);
            self.paths.insert(i, np);
        }
    }
}

/// One file open for writing in this mount: where it is and whether it
/// was unlinked (readable without waiting for a commit in progress), and
/// its write state (locked while committing).
struct Slot {
    path: Mutex<String>,
    unlinked: AtomicBool,
    w: Mutex<Writer>,
}

impl Slot {
    fn new(path: &str, w: Writer) -> Slot {
        Slot {
            path: Mutex::new(path.to_string()),
            unlinked: AtomicBool::new(false),
            w: Mutex::new(w),
        }
    }

    fn path(&self) -> String {
        lock(&self.path).clone()
    }

    fn unlinked(&self) -> bool {
        self.unlinked.load(Ordering::Relaxed)
    }
}

/// The write side of one open file, shared by its handles in this mount.
struct Writer {
    meta: Meta,
    /// The committed version the spill starts from, if any.
    base: Option<Arc<FileInfo>>,
    /// The file's whole content once it is changed (a temp file).
    spill: Option<tempfile::NamedTempFile>,
    /// Data or attributes changed since the last commit.
    dirty: bool,
    handles: usize,
}

impl Writer {
    fn size(&self) -> u64 {
        match &self.spill {
            Some(f) => f.as_file().metadata().map(|m| m.len()).unwrap_or(0),
            None => self.base.as_ref().map_or(0, |b| b.size),
        }
    }
}

struct Handle {
    ino: u64,
    /// The version this handle reads when nothing was written.
    info: Option<Arc<FileInfo>>,
    chunks: Vec<(u64, ChunkId, u64)>,
    write: bool,
    /// Where the last read ended: the next read starting there is
    /// sequential and triggers read-ahead.
    last_end: AtomicU64,
}

/// One line of an open directory: inode, type, name.
type DirEntry = (u64, FileType, String);

/// A directory listing: child name -> what it is.
type Listing = Arc<BTreeMap<String, Meta>>;

pub struct Fs {
    rt: tokio::runtime::Handle,
    remote: Arc<Remote>,
    cache: Arc<ChunkCache>,
    cfg: Config,
    inodes: Mutex<Inodes>,
    dirs: Mutex<HashMap<String, (Instant, Listing)>>,
    writers: Mutex<HashMap<u64, Arc<Slot>>>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    dir_handles: Mutex<HashMap<u64, Vec<DirEntry>>>,
    next_fh: AtomicU64,
    root: Mutex<Meta>,
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::File => FileType::RegularFile,
        Kind::Dir => FileType::Directory,
        Kind::Link => FileType::Symlink,
        Kind::Fifo => FileType::NamedPipe,
        Kind::Socket => FileType::Socket,
        Kind::CharDev => FileType::CharDevice,
        Kind::BlockDev => FileType::BlockDevice,
    }
}

impl Fs {
    pub fn new(rt: tokio::runtime::Handle, cfg: Config) -> Fs {
        let remote = Arc::new(Remote::new(cfg.client.clone(), cfg.retry_for));
        let mut root = Meta::derived_dir(0);
        root.mtime = meta::now_ns();
        root.ctime = root.mtime;
        // SAFETY: getuid/getgid cannot fail.
        root.uid = unsafe { libc::getuid() };
        root.gid = unsafe { libc::getgid() };
        Fs {
            rt,
            remote,
            cache: Arc::new(ChunkCache::new(cfg.cache_size)),
            cfg,
            inodes: Mutex::new(Inodes::new()),
            dirs: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
            dir_handles: Mutex::new(HashMap::new()),
            next_fh: AtomicU64::new(1),
            root: Mutex::new(root),
        }
    }

    fn block<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    fn path(&self, ino: INodeNo) -> Result<String> {
        lock(&self.inodes)
            .path(ino.0)
            .ok_or(Error::errno(libc::ENOENT))
    }

    fn name(&self, path: &str) -> Result<protocol::FileName> {
        names::catalog(&self.cfg.prefix, path)
    }

    fn attr(&self, ino: u64, m: &Meta) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: m.size,
            blocks: m.size.div_ceil(512),
            atime: meta::to_time(m.atime),
            mtime: meta::to_time(m.mtime),
            ctime: meta::to_time(m.ctime),
            crtime: meta::to_time(m.ctime),
            kind: file_type(m.kind),
            perm: m.perm,
            nlink: if m.kind == Kind::Dir { 2 } else { 1 },
            uid: m.uid,
            gid: m.gid,
            rdev: m.rdev,
            blksize: 128 * 1024,
            flags: 0,
        }
    }

    fn ttl(&self) -> Duration {
        self.cfg.meta_ttl
    }

    fn writer_of(&self, ino: u64) -> Option<Arc<Slot>> {
        lock(&self.writers).get(&ino).cloned()
    }

    fn writable(&self) -> Result<()> {
        if self.cfg.read_only {
            return Err(Error::errno(libc::EROFS));
        }
        Ok(())
    }

    /// This mount's changes make the listing of `dir` stale.
    fn touched(&self, dir: &str) {
        lock(&self.dirs).remove(dir);
    }

    // ------------------------------------------------------------ metadata

    /// What `path` is, or `None`. `fresh` bypasses the listing cache.
    fn stat(&self, path: &str, fresh: bool) -> Result<Option<Meta>> {
        if path.is_empty() {
            return Ok(Some(lock(&self.root).clone()));
        }
        let ino = lock(&self.inodes).inos.get(path).copied();
        if let Some(slot) = ino.and_then(|i| self.writer_of(i)) {
            if !slot.unlinked() {
                let w = lock(&slot.w);
                let mut m = w.meta.clone();
                m.size = w.size();
                return Ok(Some(m));
            }
        }
        if !fresh {
            let parent = names::parent(path);
            if let Some((at, l)) = lock(&self.dirs).get(parent) {
                if at.elapsed() < self.ttl() {
                    return Ok(l.get(names::base(path)).cloned());
                }
            }
        }
        self.block(self.stat_remote(path))
    }

    async fn stat_remote(&self, path: &str) -> Result<Option<Meta>> {
        let name = self.name(path)?;
        // The first name with this prefix answers most lookups in one
        // request: none (absent), the name itself, or a name below it.
        let page = self.remote.list_page(name.as_str(), None, 1).await?;
        let Some(first) = page.first() else {
            return Ok(None);
        };
        if first.name == name {
            return Ok(Some(Meta::from_summary(first)));
        }
        if first.name.as_str().as_bytes().get(name.as_str().len()) == Some(&b'/') {
            return Ok(Some(Meta::derived_dir(first.created_ms)));
        }
        // Only longer names (`a.txt` for `a`) came first: ask for the names
        // below it.
        let below = self
            .remote
            .list_page(&names::dir_prefix(&self.cfg.prefix, path), None, 1)
            .await?;
        Ok(below.first().map(|f| Meta::derived_dir(f.created_ms)))
    }

    /// The children of directory `path`, from the cache when fresh.
    fn list(&self, path: &str, fresh: bool) -> Result<Listing> {
        if !fresh {
            if let Some((at, l)) = lock(&self.dirs).get(path) {
                if at.elapsed() < self.ttl() {
                    return Ok(l.clone());
                }
            }
        }
        let mut out = self.block(self.list_remote(path))?;
        // Files created here and not yet committed are listed too.
        // One being committed right now is skipped (not waited for).
        let pending: Vec<Arc<Slot>> = lock(&self.writers).values().cloned().collect();
        for slot in pending {
            let wp = slot.path();
            if slot.unlinked() || names::parent(&wp) != path || wp.is_empty() {
                continue;
            }
            if let Ok(w) = slot.w.try_lock() {
                let mut m = w.meta.clone();
                m.size = w.size();
                out.insert(names::base(&wp).to_string(), m);
            }
        }
        let l = Arc::new(out);
        lock(&self.dirs).insert(path.to_string(), (Instant::now(), l.clone()));
        Ok(l)
    }

    /// Pages through the names below `path`, keeping only its direct
    /// children: when a page ends inside a subdirectory, the next page
    /// starts after that subdirectory's names, so a listing costs about one
    /// request per page of children, not per name below.
    async fn list_remote(&self, path: &str) -> Result<BTreeMap<String, Meta>> {
        let prefix = names::dir_prefix(&self.cfg.prefix, path);
        let mut out: BTreeMap<String, Meta> = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let page = self
                .remote
                .list_page(&prefix, after.as_deref(), LIST_PAGE)
                .await?;
            let full = page.len() as u32 >= LIST_PAGE;
            let Some(last) = page.last().map(|f| f.name.to_string()) else {
                break;
            };
            for f in &page {
                let Some(rel) = f.name.as_str().strip_prefix(&prefix) else {
                    continue;
                };
                match rel.split_once('/') {
                    Some((dir, _)) => {
                        let e = out
                            .entry(dir.to_string())
                            .or_insert_with(|| Meta::derived_dir(f.created_ms));
                        if e.kind != Kind::Dir {
                            // A file and names below it: the file wins.
                            continue;
                        }
                    }
                    None => {
                        let m = Meta::from_summary(f);
                        match out.get(rel) {
                            Some(old) if old.kind == Kind::Dir && m.kind != Kind::Dir => {}
                            _ => {
                                out.insert(rel.to_string(), m);
                            }
                        }
                    }
                }
            }
            if !full {
                break;
            }
            let rel = &last[prefix.len().min(last.len())..];
            after = Some(match rel.split_once('/') {
                // Skip the rest of this subdirectory.
                Some((dir, _)) => format!("{prefix}{dir}/\u{10FFFF}"),
                None => last,
            });
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- data

    /// Makes the writer's spill hold the whole current content (truncated
    /// to `trunc` bytes when given, which avoids copying what goes away).
    fn materialize(&self, w: &mut Writer, trunc: Option<u64>) -> Result<()> {
        if w.spill.is_some() {
            return Ok(());
        }
        let spill = tempfile::NamedTempFile::new_in(&self.cfg.spill_dir)?;
        if let Some(base) = w.base.clone() {
            let keep = trunc.map_or(base.size, |t| t.min(base.size));
            if keep > 0 {
                let f = spill.as_file();
                let mut at = 0u64;
                self.block(self.remote.read_range(base, 0..keep, |piece| {
                    f.write_all_at(piece, at)?;
                    at += piece.len() as u64;
                    Ok(())
                }))?;
            }
        }
        w.spill = Some(spill);
        Ok(())
    }

    /// Commits the writer's content as the new version of its file.
    fn commit(&self, slot: &Slot, w: &mut Writer) -> Result<()> {
        if !w.dirty || slot.unlinked() {
            w.dirty = false;
            return Ok(());
        }
        let path = slot.path();
        let name = self.name(&path)?;
        if w.spill.is_none() && w.base.is_some() {
            // Only attributes changed.
            self.block(self.remote.set_attrs(&name, &w.meta.to_attrs()))?;
        } else {
            self.materialize(w, None)?;
            let spill = w.spill.as_ref().ok_or(Error::errno(libc::EIO))?;
            spill.as_file().sync_data()?;
            let size = w.size();
            self.block(
                self.remote
                    .put_file(spill.path(), size, &name, w.meta.to_attrs()),
            )?;
            w.base = None;
        }
        w.dirty = false;
        w.meta.explicit = true;
        self.touched(names::parent(&path));
        tracing::debug!(%path, "committed");
        Ok(())
    }

    fn read_ahead(&self, h: &Handle, end: u64) {
        let Some(info) = h.info.clone() else { return };
        let i = h.chunks.partition_point(|c| c.0 + c.2 <= end);
        let n = self.cfg.readahead;
        for &c in h.chunks.iter().skip(i).take(n) {
            let (cache, remote, info) = (self.cache.clone(), self.remote.clone(), info.clone());
            self.rt.spawn(async move {
                if let Err(e) = cache.chunk(&remote, &info, c).await {
                    tracing::debug!(error = %e, "read-ahead failed");
                }
            });
        }
    }

    // ------------------------------------------------------- the operations

    fn do_lookup(&self, parent: INodeNo, name: &OsStr) -> Result<(u64, Meta)> {
        let dir = self.path(parent)?;
        let path = names::child(&dir, name.as_bytes())?;
        match self.stat(&path, false)? {
            Some(m) => Ok((lock(&self.inodes).ino(&path), m)),
            None => Err(Error::errno(libc::ENOENT)),
        }
    }

    fn do_getattr(&self, ino: INodeNo) -> Result<Meta> {
        let path = self.path(ino)?;
        self.stat(&path, false)?.ok_or(Error::errno(libc::ENOENT))
    }

    fn new_meta(&self, req: &Request, kind: Kind, mode: u32, umask: u32) -> Meta {
        Meta::new(kind, (mode & !umask & 0o7777) as u16, req.uid(), req.gid())
    }

    /// Creates an entry (directory, symlink). The parent is not checked:
    /// the kernel resolved it to a directory just before asking.
    fn make(&self, parent: INodeNo, name: &OsStr, m: Meta) -> Result<(u64, Meta)> {
        self.writable()?;
        let dir = self.path(parent)?;
        let path = names::child(&dir, name.as_bytes())?;
        // The kernel looked the name up just before (EEXIST is its answer
        // to a name that exists); the coordinator refuses an existing
        // entry too.
        let cat = self.name(&path)?;
        self.block(self.remote.make_entry(&cat, &m.to_attrs()))?;
        self.touched(&dir);
        let mut m = m;
        m.explicit = true;
        Ok((lock(&self.inodes).ino(&path), m))
    }

    fn do_create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> Result<(u64, u64, Meta)> {
        self.writable()?;
        let dir = self.path(parent)?;
        let path = names::child(&dir, name.as_bytes())?;
        self.name(&path)?;
        // The kernel looked the name up just before and found nothing;
        // across mounts, two creates of one name: the last close wins.
        let ino = lock(&self.inodes).ino(&path);
        let meta = self.new_meta(req, Kind::File, mode, umask);
        let spill = tempfile::NamedTempFile::new_in(&self.cfg.spill_dir)?;
        let w = Writer {
            meta: meta.clone(),
            base: None,
            spill: Some(spill),
            dirty: true,
            handles: 1,
        };
        lock(&self.writers).insert(ino, Arc::new(Slot::new(&path, w)));
        self.touched(&dir);
        let fh = self.add_handle(Handle {
            ino,
            info: None,
            chunks: Vec::new(),
            write: true,
            last_end: AtomicU64::new(0),
        });
        Ok((ino, fh, meta))
    }

    fn add_handle(&self, h: Handle) -> u64 {
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, Arc::new(h));
        fh
    }

    fn do_open(&self, ino: INodeNo, flags: OpenFlags) -> Result<u64> {
        let path = self.path(ino)?;
        let acc = flags.0 & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        let trunc = flags.0 & libc::O_TRUNC != 0;
        if write || trunc {
            self.writable()?;
        }
        // Another handle of this mount has it open for writing: share it.
        if let Some(slot) = self.writer_of(ino.0) {
            let mut g = lock(&slot.w);
            if write {
                g.handles += 1;
                if trunc {
                    self.truncate(&mut g, 0)?;
                }
            }
            let info = g.base.clone();
            drop(g);
            let chunks = info.as_deref().map(layout).unwrap_or_default();
            return Ok(self.add_handle(Handle {
                ino: ino.0,
                info,
                chunks,
                write,
                last_end: AtomicU64::new(0),
            }));
        }
        // Close-to-open: every open looks the file up again.
        let name = self.name(&path)?;
        let info = Arc::new(self.block(self.remote.lookup(&name))?);
        let m = Meta::from_attrs(info.size, info.created_ms, &info.attrs);
        if m.kind == Kind::Dir {
            return Err(Error::errno(libc::EISDIR));
        }
        if write {
            let mut w = Writer {
                meta: m,
                base: Some(info.clone()),
                spill: None,
                dirty: false,
                handles: 1,
            };
            if trunc {
                self.truncate(&mut w, 0)?;
            }
            lock(&self.writers).insert(ino.0, Arc::new(Slot::new(&path, w)));
        }
        let chunks = layout(&info);
        Ok(self.add_handle(Handle {
            ino: ino.0,
            info: Some(info),
            chunks,
            write,
            last_end: AtomicU64::new(0),
        }))
    }

    fn truncate(&self, w: &mut Writer, size: u64) -> Result<()> {
        self.materialize(w, Some(size))?;
        if let Some(s) = &w.spill {
            s.as_file().set_len(size)?;
        }
        let now = meta::now_ns();
        w.meta.mtime = now;
        w.meta.ctime = now;
        w.dirty = true;
        Ok(())
    }

    fn handle(&self, fh: FileHandle) -> Result<Arc<Handle>> {
        lock(&self.handles)
            .get(&fh.0)
            .cloned()
            .ok_or(Error::errno(libc::EBADF))
    }

    fn do_read(&self, fh: FileHandle, offset: u64, size: u32) -> Result<Vec<u8>> {
        let h = self.handle(fh)?;
        if let Some(slot) = self.writer_of(h.ino) {
            let g = lock(&slot.w);
            if let Some(s) = &g.spill {
                let len = g.size();
                let end = (offset + size as u64).min(len);
                if offset >= end {
                    return Ok(Vec::new());
                }
                let mut buf = vec![0u8; (end - offset) as usize];
                let mut got = 0;
                while got < buf.len() {
                    let n = s.as_file().read_at(&mut buf[got..], offset + got as u64)?;
                    if n == 0 {
                        break;
                    }
                    got += n;
                }
                buf.truncate(got);
                return Ok(buf);
            }
        }
        let Some(info) = &h.info else {
            return Ok(Vec::new());
        };
        let sequential = h.last_end.swap(offset + size as u64, Ordering::Relaxed) == offset;
        let out =
            self.block(
                self.cache
                    .read(&self.remote, info, &h.chunks, offset, size as u64),
            )?;
        if sequential || offset == 0 {
            self.read_ahead(&h, offset + size as u64);
        }
        Ok(out)
    }

    fn do_write(&self, fh: FileHandle, offset: u64, data: &[u8]) -> Result<u32> {
        let h = self.handle(fh)?;
        if !h.write {
            return Err(Error::errno(libc::EBADF));
        }
        let slot = self.writer_of(h.ino).ok_or(Error::errno(libc::EBADF))?;
        let mut g = lock(&slot.w);
        self.materialize(&mut g, None)?;
        let s = g.spill.as_ref().ok_or(Error::errno(libc::EIO))?;
        s.as_file().write_all_at(data, offset)?;
        let now = meta::now_ns();
        g.meta.mtime = now;
        g.meta.ctime = now;
        g.dirty = true;
        Ok(data.len() as u32)
    }

    fn do_flush(&self, fh: FileHandle) -> Result<()> {
        let h = self.handle(fh)?;
        if let Some(slot) = self.writer_of(h.ino) {
            let mut g = lock(&slot.w);
            self.commit(&slot, &mut g)?;
        }
        Ok(())
    }

    fn do_release(&self, fh: FileHandle) -> Result<()> {
        let Some(h) = lock(&self.handles).remove(&fh.0) else {
            return Ok(());
        };
        if !h.write {
            return Ok(());
        }
        let Some(slot) = self.writer_of(h.ino) else {
            return Ok(());
        };
        let mut g = lock(&slot.w);
        let res = self.commit(&slot, &mut g);
        g.handles = g.handles.saturating_sub(1);
        if g.handles == 0 {
            let dir = names::parent(&slot.path()).to_string();
            drop(g);
            lock(&self.writers).remove(&h.ino);
            self.touched(&dir);
        }
        res
    }

    #[allow(clippy::too_many_arguments)]
    fn do_setattr(
        &self,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
    ) -> Result<Meta> {
        self.writable()?;
        let path = self.path(ino)?;
        let now = meta::now_ns();
        let t = |x: TimeOrNow| match x {
            TimeOrNow::Now => now,
            TimeOrNow::SpecificTime(s) => meta::from_time(s),
        };
        let apply = |m: &mut Meta| {
            if let Some(mode) = mode {
                m.perm = (mode & 0o7777) as u16;
            }
            if let Some(u) = uid {
                m.uid = u;
            }
            if let Some(g) = gid {
                m.gid = g;
            }
            if let Some(a) = atime {
                m.atime = t(a);
            }
            if let Some(x) = mtime {
                m.mtime = t(x);
            }
            m.ctime = now;
        };
        // Open for writing here: change the pending version.
        if let Some(slot) = self.writer_of(ino.0) {
            let mut g = lock(&slot.w);
            if let Some(s) = size {
                self.truncate(&mut g, s)?;
            }
            apply(&mut g.meta);
            g.dirty = true;
            let mut m = g.meta.clone();
            m.size = g.size();
            return Ok(m);
        }
        if path.is_empty() {
            let mut r = lock(&self.root);
            apply(&mut r);
            return Ok(r.clone());
        }
        let mut m = self.stat(&path, true)?.ok_or(Error::errno(libc::ENOENT))?;
        let name = self.name(&path)?;
        if let Some(s) = size {
            match m.kind {
                Kind::File => {}
                Kind::Dir => return Err(Error::errno(libc::EISDIR)),
                _ => return Err(Error::errno(libc::EINVAL)),
            }
            let info = Arc::new(self.block(self.remote.lookup(&name))?);
            // Not open here: a writer for this change only.
            let slot = Slot::new(
                &path,
                Writer {
                    meta: m.clone(),
                    base: Some(info),
                    spill: None,
                    dirty: false,
                    handles: 0,
                },
            );
            let mut w = lock(&slot.w);
            self.truncate(&mut w, s)?;
            apply(&mut w.meta);
            self.commit(&slot, &mut w)?;
            let mut m = w.meta.clone();
            m.size = s;
            return Ok(m);
        }
        apply(&mut m);
        if m.explicit {
            self.block(self.remote.set_attrs(&name, &m.to_attrs()))?;
        } else {
            // A directory known only from its names becomes explicit to
            // keep its attributes.
            self.block(self.remote.make_entry(&name, &m.to_attrs()))?;
            m.explicit = true;
        }
        self.touched(names::parent(&path));
        Ok(m)
    }

    /// Whether any name lies below directory `path` (here or committed).
    fn has_children(&self, path: &str) -> Result<bool> {
        let prefix = names::dir_prefix(&self.cfg.prefix, path);
        let below = format!("{path}/");
        let pending = lock(&self.writers)
            .values()
            .any(|s| !s.unlinked() && s.path().starts_with(&below));
        if pending {
            return Ok(true);
        }
        Ok(!self
            .block(self.remote.list_page(&prefix, None, 1))?
            .is_empty())
    }

    /// After the last name below a directory known only from its names
    /// went away, the directory stays: it becomes an explicit entry.
    fn keep_dir(&self, dir: &str) -> Result<()> {
        if dir.is_empty() {
            return Ok(());
        }
        if let Some(m) = self.stat(dir, true)? {
            if !m.explicit && !self.has_children(dir)? {
                let name = self.name(dir)?;
                match self.block(self.remote.make_entry(&name, &m.to_attrs())) {
                    Ok(()) => {}
                    Err(e) if e.code() == libc::EEXIST => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn do_unlink(&self, parent: INodeNo, name: &OsStr) -> Result<()> {
        self.writable()?;
        let dir = self.path(parent)?;
        let path = names::child(&dir, name.as_bytes())?;
        let m = self.stat(&path, true)?.ok_or(Error::errno(libc::ENOENT))?;
        if m.kind == Kind::Dir {
            return Err(Error::errno(libc::EISDIR));
        }
        let ino = lock(&self.inodes).inos.get(&path).copied();
        if let Some(slot) = ino.and_then(|i| self.writer_of(i)) {
            slot.unlinked.store(true, Ordering::Relaxed);
        }
        if m.explicit {
            let cat = self.name(&path)?;
            match self.block(self.remote.remove(&cat)) {
                Ok(()) => {}
                // Created here and never committed.
                Err(e) if e.code() == libc::ENOENT && ino.is_some() => {}
                Err(e) => return Err(e),
            }
        }
        lock(&self.inodes).drop_path(&path);
        self.touched(&dir);
        self.keep_dir(&dir)?;
        Ok(())
    }

    fn do_rmdir(&self, parent: INodeNo, name: &OsStr) -> Result<()> {
        self.writable()?;
        let dir = self.path(parent)?;
        let path = names::child(&dir, name.as_bytes())?;
        let m = self.stat(&path, true)?.ok_or(Error::errno(libc::ENOENT))?;
        if m.kind != Kind::Dir {
            return Err(Error::errno(libc::ENOTDIR));
        }
        if self.has_children(&path)? {
            return Err(Error::errno(libc::ENOTEMPTY));
        }
        if m.explicit {
            self.block(self.remote.remove(&self.name(&path)?))?;
        }
        lock(&self.inodes).drop_path(&path);
        self.touched(&dir);
        self.touched(&path);
        self.keep_dir(&dir)?;
        Ok(())
    }

    fn do_rename(
        &self,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        self.writable()?;
        if flags.bits() & libc::RENAME_EXCHANGE != 0 {
            return Err(Error::errno(libc::EINVAL));
        }
        let noreplace = flags.bits() & libc::RENAME_NOREPLACE != 0;
        let (sdir, ddir) = (self.path(parent)?, self.path(newparent)?);
        let src = names::child(&sdir, name.as_bytes())?;
        let dst = names::child(&ddir, newname.as_bytes())?;
        let sm = self.stat(&src, true)?.ok_or(Error::errno(libc::ENOENT))?;
        let dm = self.stat(&dst, true)?;
        if src == dst {
            return Ok(());
        }
        if dm.is_some() && noreplace {
            return Err(Error::errno(libc::EEXIST));
        }
        let (sname, dname) = (self.name(&src)?, self.name(&dst)?);
        if sm.kind == Kind::Dir {
            if dst.starts_with(&format!("{src}/")) {
                return Err(Error::errno(libc::EINVAL));
            }
            if let Some(d) = &dm {
                if d.kind != Kind::Dir {
                    return Err(Error::errno(libc::ENOTDIR));
                }
                if self.has_children(&dst)? {
                    return Err(Error::errno(libc::ENOTEMPTY));
                }
                if d.explicit {
                    self.block(self.remote.remove(&dname))?;
                }
            }
            // Many names, one rename each: not atomic as a whole.
            self.block(self.rename_below(&src, &dst))?;
            if sm.explicit {
                self.block(self.remote.rename(&sname, &dname, true))?;
            }
        } else {
            if let Some(d) = &dm {
                if d.kind == Kind::Dir {
                    return Err(Error::errno(libc::EISDIR));
                }
            }
            let ino = lock(&self.inodes).inos.get(&src).copied();
            let w = ino.and_then(|i| self.writer_of(i));
            let committed = match &w {
                Some(slot) => {
                    let g = lock(&slot.w);
                    g.base.is_some() || !g.dirty || g.meta.explicit
                }
                None => true,
            };
            if committed {
                self.block(self.remote.rename(&sname, &dname, true))?;
            } else if dm.is_some() {
                // Created here, not yet committed: it replaces `dst` at
                // its commit; until then `dst` must be gone.
                match self.block(self.remote.remove(&dname)) {
                    Ok(()) => {}
                    Err(e) if e.code() == libc::ENOENT => {}
                    Err(e) => return Err(e),
                }
            }
            if let Some(slot) = w {
                *lock(&slot.path) = dst.clone();
                lock(&slot.w).meta.ctime = meta::now_ns();
            }
        }
        // Every writer below a renamed directory follows it.
        for slot in lock(&self.writers).values() {
            let mut p = lock(&slot.path);
            if let Some(rest) = p.strip_prefix(&format!("{src}/")) {
                *p = format!("{dst}/{rest}");
            }
        }
        lock(&self.inodes).rename(&src, &dst);
        self.touched(&sdir);
        self.touched(&ddir);
        self.touched(&src);
        self.touched(&dst);
        self.keep_dir(&sdir)?;
        Ok(())
    }

    /// Renames every committed name below `src` to the same name below
    /// `dst`, a page at a time.
    async fn rename_below(&self, src: &str, dst: &str) -> Result<()> {
        let sp = names::dir_prefix(&self.cfg.prefix, src);
        let dp = names::dir_prefix(&self.cfg.prefix, dst);
        loop {
            // Each round renames what it found, so the next starts over.
            let page = self.remote.list_page(&sp, None, LIST_PAGE).await?;
            if page.is_empty() {
                return Ok(());
            }
            for f in page {
                let rest = &f.name.as_str()[sp.len()..];
                let to = protocol::FileName::new(&format!("{dp}{rest}"))
                    .map_err(|_| Error::errno(libc::ENAMETOOLONG))?;
                self.remote.rename(&f.name, &to, true).await?;
            }
        }
    }

    fn do_statfs(&self) -> Result<(u64, u64, u64)> {
        let st = self.block(self.remote.status())?;
        let (mut used, mut free) = (0u64, 0u64);
        for n in &st.nodes {
            if n.state == protocol::NodeState::Dead {
                continue;
            }
            used += n.stats.bytes;
            free += n.stats.usable_bytes().unwrap_or(0);
        }
        // Raw capacity shared by every copy: a file of N bytes takes about
        // N x its protection overhead.
        Ok((used + free, free, st.files))
    }

    fn do_opendir(&self, ino: INodeNo) -> Result<u64> {
        let path = self.path(ino)?;
        match self.stat(&path, false)? {
            Some(m) if m.kind == Kind::Dir => {}
            Some(_) => return Err(Error::errno(libc::ENOTDIR)),
            None => return Err(Error::errno(libc::ENOENT)),
        }
        let l = self.list(&path, false)?;
        let parent_ino = {
            let mut i = lock(&self.inodes);
            i.ino(names::parent(&path))
        };
        let mut entries = vec![
            (ino.0, FileType::Directory, ".".to_string()),
            (parent_ino, FileType::Directory, "..".to_string()),
        ];
        let mut inodes = lock(&self.inodes);
        for (name, m) in l.iter() {
            let child = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            entries.push((inodes.ino(&child), file_type(m.kind), name.clone()));
        }
        drop(inodes);
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        lock(&self.dir_handles).insert(fh, entries);
        Ok(fh)
    }
}

macro_rules! or_reply {
    ($reply:ident, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!(error = %e, "request failed");
                return $reply.error(e.to_errno());
            }
        }
    };
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let _ = config.set_max_write(1024 * 1024);
        let _ = config.set_max_readahead(1024 * 1024);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let (ino, m) = or_reply!(reply, self.do_lookup(parent, name));
        reply.entry(&self.ttl(), &self.attr(ino, &m), Generation(0));
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let m = or_reply!(reply, self.do_getattr(ino));
        reply.attr(&self.ttl(), &self.attr(ino.0, &m));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<std::time::SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<std::time::SystemTime>,
        _chgtime: Option<std::time::SystemTime>,
        _bkuptime: Option<std::time::SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let m = or_reply!(
            reply,
            self.do_setattr(ino, mode, uid, gid, size, atime, mtime)
        );
        reply.attr(&self.ttl(), &self.attr(ino.0, &m));
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let m = or_reply!(reply, self.do_getattr(ino));
        match m.target {
            Some(t) if m.kind == Kind::Link => reply.data(t.as_bytes()),
            _ => reply.error(fuser::Errno::EINVAL),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // FIFOs, sockets and device nodes are entries with a type (the
        // kernel implements them); a regular file is a create.
        let kind = match mode & libc::S_IFMT {
            libc::S_IFREG => None,
            libc::S_IFIFO => Some(Kind::Fifo),
            libc::S_IFSOCK => Some(Kind::Socket),
            libc::S_IFCHR => Some(Kind::CharDev),
            libc::S_IFBLK => Some(Kind::BlockDev),
            _ => return reply.error(fuser::Errno::EINVAL),
        };
        if let Some(kind) = kind {
            let mut m = self.new_meta(req, kind, mode, umask);
            m.rdev = rdev;
            let (ino, m) = or_reply!(reply, self.make(parent, name, m));
            return reply.entry(&self.ttl(), &self.attr(ino, &m), Generation(0));
        }
        let (ino, fh, m) = or_reply!(reply, self.do_create(req, parent, name, mode, umask));
        let res = self.do_release(FileHandle(fh));
        or_reply!(reply, res);
        reply.entry(&self.ttl(), &self.attr(ino, &m), Generation(0));
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let m = self.new_meta(req, Kind::Dir, mode, umask);
        let (ino, m) = or_reply!(reply, self.make(parent, name, m));
        reply.entry(&self.ttl(), &self.attr(ino, &m), Generation(0));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        or_reply!(reply, self.do_unlink(parent, name));
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        or_reply!(reply, self.do_rmdir(parent, name));
        reply.ok();
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let Some(t) = target.to_str() else {
            return reply.error(fuser::Errno::EINVAL);
        };
        if t.len() > libc::PATH_MAX as usize {
            return reply.error(fuser::Errno::ENAMETOOLONG);
        }
        let mut m = Meta::new(Kind::Link, 0o777, req.uid(), req.gid());
        m.target = Some(t.to_string());
        m.size = t.len() as u64;
        let (ino, m) = or_reply!(reply, self.make(parent, link_name, m));
        reply.entry(&self.ttl(), &self.attr(ino, &m), Generation(0));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        or_reply!(
            reply,
            self.do_rename(parent, name, newparent, newname, flags)
        );
        reply.ok();
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // A catalog name is one file: no second name for the same chunks.
        reply.error(fuser::Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fh = or_reply!(reply, self.do_open(ino, flags));
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let data = or_reply!(reply, self.do_read(fh, offset, size));
        reply.data(&data);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let n = or_reply!(reply, self.do_write(fh, offset, data));
        reply.written(n);
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        or_reply!(reply, self.do_flush(fh));
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        or_reply!(reply, self.do_release(fh));
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        or_reply!(reply, self.do_flush(fh));
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fh = or_reply!(reply, self.do_opendir(ino));
        reply.opened(FileHandle(fh), FopenFlags::empty());
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let handles = lock(&self.dir_handles);
        let Some(entries) = handles.get(&fh.0) else {
            return reply.error(fuser::Errno::EBADF);
        };
        for (i, (ino, kind, name)) in entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(*ino), (i + 1) as u64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        lock(&self.dir_handles).remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Every namespace change is journaled before it is answered.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let (total, free, files) = or_reply!(reply, self.do_statfs());
        const BS: u64 = 4096;
        reply.statfs(
            total / BS,
            free / BS,
            free / BS,
            files + 1_000_000,
            1_000_000,
            BS as u32,
            names::NAME_MAX as u32,
            BS as u32,
        );
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: fuser::ReplyXattr,
    ) {
        // No extended attributes are kept (nor ACLs): none exists.
        reply.error(fuser::Errno::from_i32(libc::ENODATA));
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: fuser::ReplyXattr) {
        if size == 0 {
            reply.size(0);
        } else {
            reply.data(&[]);
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(fuser::Errno::from_i32(libc::ENOTSUP));
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(fuser::Errno::from_i32(libc::ENODATA));
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions (default_permissions); this only
        // says whether the name exists.
        or_reply!(reply, self.do_getattr(ino));
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let (ino, fh, m) = or_reply!(reply, self.do_create(req, parent, name, mode, umask));
        reply.created(
            &self.ttl(),
            &self.attr(ino, &m),
            Generation(0),
            FileHandle(fh),
            FopenFlags::empty(),
        );
    }
}
