//! Page-aligned buffers and direct (`O_DIRECT`) file I/O for chunk-sized
//! transfers.
//!
//! Why: profiling put and get of a 1 GiB file on the 2-core benchmark box
//! showed the biggest single CPU cost was not hashing or compression but
//! inserting pages into a full page cache (`copy_folio_from_iter_atomic`:
//! 73% of the nodes' CPU during a put, 48% of the client's during a get).
//! Direct I/O moves chunk bytes between a user buffer and the disk without
//! that copy. It needs the buffer address, the file offset and the length
//! to be multiples of [`ALIGN`]; [`AlignedBuf`] provides such buffers and
//! [`DirectWriter`] stages arbitrary appends into aligned blocks.
//!
//! Every entry point falls back to ordinary buffered I/O where direct I/O
//! is refused (tmpfs, some overlay file systems): correctness never depends
//! on it, only speed.

pub mod fsutil;

use bytes::Bytes;
use std::alloc::{self, Layout};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::ptr::NonNull;

/// Alignment of address, offset and length for direct I/O. 4 KiB is the
/// logical block size of every disk this runs on; a device with larger
/// blocks refuses the I/O and the caller falls back to buffered I/O.
pub const ALIGN: usize = 4096;

/// Rounds `n` up to a multiple of [`ALIGN`].
pub fn round_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// A zero-initialised heap buffer whose start is [`ALIGN`]-aligned and whose
/// capacity is a multiple of it. `len` bytes of it are in use.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    cap: usize,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared references only read the bytes.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A buffer of `len` zero bytes (capacity rounded up to [`ALIGN`]).
    pub fn zeroed(len: usize) -> AlignedBuf {
        let mut b = AlignedBuf::with_capacity(len);
        b.len = len;
        b
    }

    /// An empty buffer able to hold `cap` bytes (rounded up to [`ALIGN`]);
    /// its memory is zeroed, so every byte is always initialised.
    pub fn with_capacity(cap: usize) -> AlignedBuf {
        let cap = round_up(cap.max(1));
        let layout = Layout::from_size_align(cap, ALIGN).expect("aligned layout of a bounded size");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, cap, len: 0 }
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Room left before the buffer is full.
    pub fn spare(&self) -> usize {
        self.cap - self.len
    }

    /// Appends as much of `data` as fits; returns how much did.
    pub fn push(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.spare());
        // SAFETY: `len + n <= cap`, the regions do not overlap (we own ours).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), n);
        }
        self.len += n;
        n
    }

    /// Sets the length in use; bytes beyond the old length keep whatever
    /// they held (zeros or earlier contents), never uninitialised memory.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "length beyond capacity");
        self.len = len;
    }

    /// The whole capacity, for filling by a read.
    pub fn full_mut(&mut self) -> &mut [u8] {
        // SAFETY: `cap` bytes are allocated and initialised.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.cap) }
    }

    /// A cheap, shareable handle on the bytes in use (no copy).
    pub fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_capacity` with exactly this layout.
        unsafe {
            alloc::dealloc(
                self.ptr.as_ptr(),
                Layout::from_size_align_unchecked(self.cap, ALIGN),
            )
        }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `len <= cap` bytes are allocated and initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in Deref; we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Whether `data` may be the buffer of a direct I/O at `offset`.
pub fn is_aligned(data: &[u8], offset: u64) -> bool {
    (data.as_ptr() as usize).is_multiple_of(ALIGN)
        && offset.is_multiple_of(ALIGN as u64)
        && data.len().is_multiple_of(ALIGN)
}

/// Opens `path` with `opts`, with `O_DIRECT` when `direct` is asked and
/// the file system allows it; returns the file and whether it is direct.
/// The one direct-or-buffered open: the writer, the reader and the
/// client's output file all go through it, so a fallback fix reaches all.
///
/// With `create_new`, an existing file is an error either way. Some kernels
/// create the file before refusing `O_DIRECT` (the check comes after
/// `O_CREAT`): the file found by the buffered retry is then the one the
/// direct attempt just created exclusively, still empty, and it is opened
/// (truncated) instead of refused.
pub fn open(path: &Path, opts: &std::fs::OpenOptions, direct: bool) -> io::Result<(File, bool)> {
    let mut refused = false;
    if direct {
        match opts.clone().custom_flags(libc::O_DIRECT).open(path) {
            Ok(f) => return Ok((f, true)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(e),
            Err(_) => refused = true,
        }
    }
    match opts.open(path) {
        Ok(f) => Ok((f, false)),
        Err(e) if refused && e.kind() == io::ErrorKind::AlreadyExists => Ok((
            std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(path)?,
            false,
        )),
        Err(e) => Err(e),
    }
}

/// Writes `data` at `offset` of a file that has a direct handle and a
/// buffered one: the aligned part straight to disk, an unaligned tail (or
/// everything, when nothing is aligned or direct I/O fails) through the
/// page cache. Used for the client's output file, whose chunks start at
/// aligned offsets except in files joined from unequal parts.
pub fn write_all_at(
    direct: Option<&File>,
    buffered: &File,
    data: &[u8],
    offset: u64,
) -> io::Result<()> {
    let bulk = data.len() / ALIGN * ALIGN;
    if let Some(d) = direct {
        if bulk > 0
            && is_aligned(&data[..bulk], offset)
            && d.write_all_at(&data[..bulk], offset).is_ok()
        {
            return buffered.write_all_at(&data[bulk..], offset + bulk as u64);
        }
    }
    buffered.write_all_at(data, offset)
}

/// Appends bytes to a new file in [`ALIGN`]ed blocks written with direct
/// I/O, staging them in an aligned buffer; the last partial block is
/// written padded and the file then cut to its exact length. Falls back to
/// plain writes when the file system refuses direct I/O.
pub struct DirectWriter {
    file: File,
    direct: bool,
    stage: AlignedBuf,
    /// File offset of `stage[0]`.
    at: u64,
}

impl DirectWriter {
    /// Creates (exclusively) `path`; `stage` bytes are staged between
    /// writes. With `direct` false (small files, where a synchronous disk
    /// write per file costs more than the page cache), writes are plain.
    pub fn create(path: &Path, stage: usize, direct: bool) -> io::Result<DirectWriter> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        let (file, direct) = open(path, &opts, direct)?;
        Ok(DirectWriter {
            file,
            direct,
            stage: AlignedBuf::with_capacity(if direct { stage } else { 1 }),
            at: 0,
        })
    }

    /// Whether writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Appends `data`, writing every full stage as it fills. Blocking.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        if !self.direct {
            self.file.write_all_at(data, self.at)?;
            self.at += data.len() as u64;
            return Ok(());
        }
        while !data.is_empty() {
            let n = self.stage.push(data);
            data = &data[n..];
            if self.stage.spare() == 0 {
                self.flush_stage()?;
            }
        }
        Ok(())
    }

    fn flush_stage(&mut self) -> io::Result<()> {
        let n = self.stage.len();
        let padded = round_up(n);
        self.stage.set_len(padded);
        let res = self.file.write_all_at(&self.stage, self.at);
        self.stage.set_len(0);
        res?;
        self.at += n as u64;
        Ok(())
    }

    /// Writes what is staged (padded to a block, then the file is cut to
    /// its length) and returns the file, ready to be fsynced.
    pub fn finish(mut self) -> io::Result<File> {
        if self.direct && !self.stage.is_empty() {
            let n = self.stage.len();
            // Zero the padding so no stale bytes ever reach the disk.
            let padded = round_up(n);
            self.stage.set_len(padded);
            self.stage[n..].fill(0);
            self.stage.set_len(n);
            self.flush_stage()?;
            self.file.set_len(self.at)?;
        }
        Ok(self.file)
    }
}

/// Reads a file from its start in large blocks, directly from disk when
/// the file system allows it (so serving a chunk does not fill the page
/// cache), through the page cache otherwise.
pub struct BlockReader {
    file: File,
    direct: bool,
    at: u64,
    len: u64,
    block: usize,
}

impl BlockReader {
    /// Opens `path` (whose length is `len`) for reading in `block`-byte
    /// reads (rounded up to [`ALIGN`]); `direct` false reads through the
    /// page cache (small files, read often).
    pub fn open(path: &Path, len: u64, block: usize, direct: bool) -> io::Result<BlockReader> {
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true);
        let (file, direct) = open(path, &opts, direct)?;
        Ok(BlockReader {
            file,
            direct,
            at: 0,
            len,
            block: round_up(block),
        })
    }

    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Offset of the next block.
    pub fn position(&self) -> u64 {
        self.at
    }

    /// The next block (at most `block` bytes; `None` at the end). A file
    /// shorter than the `len` it was opened with is an `UnexpectedEof`
    /// error. Blocking.
    pub fn next_block(&mut self) -> io::Result<Option<Bytes>> {
        if self.at >= self.len {
            return Ok(None);
        }
        let want = ((self.len - self.at) as usize).min(self.block);
        let mut buf = AlignedBuf::with_capacity(want);
        let mut got = 0usize;
        let mut direct = self.direct;
        while got < want {
            let n = if direct {
                // Whole blocks only; the file's end makes the read short.
                let end = round_up(want);
                match self
                    .file
                    .read_at(&mut buf.full_mut()[got..end], self.at + got as u64)
                {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                        // Refused after all (e.g. an unaligned device): go buffered.
                        direct = false;
                        self.direct = false;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            } else {
                self.file
                    .read_at(&mut buf.full_mut()[got..want], self.at + got as u64)?
            };
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shorter than expected",
                ));
            }
            got += n;
            if direct && !got.is_multiple_of(ALIGN) && got < want {
                // A short read that is not block-aligned cannot continue
                // directly; the rest comes through the page cache.
                direct = false;
            }
        }
        buf.set_len(want);
        self.at += want as u64;
        Ok(Some(buf.into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buf_is_aligned_and_bounded() {
        let mut b = AlignedBuf::with_capacity(10);
        assert_eq!(b.capacity(), ALIGN);
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        assert_eq!(b.push(&[7u8; 5000]), ALIGN);
        assert_eq!(b.spare(), 0);
        let bytes = b.into_bytes();
        assert_eq!(bytes.len(), ALIGN);
        assert!(bytes.iter().all(|&x| x == 7));
    }

    #[test]
    fn writer_and_reader_round_trip_odd_lengths() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 1, 4095, 4096, 4097, 3 * 1024 * 1024 + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            let p = dir.path().join(format!("f{len}"));
            let mut w = DirectWriter::create(&p, 1 << 20, len % 2 == 0).unwrap();
            // Appends of uneven sizes, as frames arrive.
            for piece in data.chunks(12_345) {
                w.write_all(piece).unwrap();
            }
            let f = w.finish().unwrap();
            f.sync_all().unwrap();
            assert_eq!(std::fs::metadata(&p).unwrap().len(), len as u64);
            assert_eq!(std::fs::read(&p).unwrap(), data);
            let mut r = BlockReader::open(&p, len as u64, 1 << 20, len % 3 == 0).unwrap();
            let mut back = Vec::new();
            while let Some(b) = r.next_block().unwrap() {
                back.extend_from_slice(&b);
            }
            assert_eq!(back, data);
            // Claiming more than the file holds is an error, not a hang.
            let mut r = BlockReader::open(&p, len as u64 + 1, 1 << 20, true).unwrap();
            let mut res = Ok(None);
            for _ in 0..10 {
                res = r.next_block();
                if !matches!(res, Ok(Some(_))) {
                    break;
                }
            }
            assert!(res.is_err());
        }
    }

    #[test]
    fn write_all_at_mixes_direct_bulk_and_buffered_tail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out");
        let buffered = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        let direct = open(&p, std::fs::OpenOptions::new().write(true), true)
            .ok()
            .and_then(|(f, d)| d.then_some(f));
        let mut a = AlignedBuf::zeroed(2 * ALIGN + 100);
        a.iter_mut().enumerate().for_each(|(i, x)| *x = i as u8);
        let b = vec![9u8; 333];
        write_all_at(direct.as_ref(), &buffered, &a, 0).unwrap();
        write_all_at(direct.as_ref(), &buffered, &b, a.len() as u64).unwrap();
        buffered.sync_all().unwrap();
        let got = std::fs::read(&p).unwrap();
        assert_eq!(&got[..a.len()], &a[..]);
        assert_eq!(&got[a.len()..], &b[..]);
    }
}
