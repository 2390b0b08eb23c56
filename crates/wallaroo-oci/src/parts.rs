//! A bundle's bytes as one file or as numbered parts (`release.tar.001`, `.002`, ...) read and
//! written as if they were one: every read and write at an offset of the whole goes to the
//! part (or parts) it falls in, so nothing is ever reassembled on disk.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::registry::BlobStream;

/// The files of a bundle and where each begins in the whole.
#[derive(Clone)]
pub struct Parts {
    paths: Vec<PathBuf>,
    /// The offset in the whole where each part begins, and its length.
    spans: Vec<(u64, u64)>,
    files: Arc<Vec<std::fs::File>>,
    /// Told of every write, to say when a part has all its bytes (see [`Parts::track`]).
    tracker: Option<Arc<Tracker>>,
}

/// Counts down the bytes each part is still to be written, and names a part when none are
/// left: so that it can be hashed while the others are still being written.
pub struct Tracker {
    remaining: Vec<std::sync::atomic::AtomicU64>,
    whole: std::sync::Mutex<Option<std::sync::mpsc::Sender<usize>>>,
}

impl Tracker {
    fn written(&self, part: usize, len: u64) {
        use std::sync::atomic::Ordering;
        let before = self.remaining[part].fetch_sub(len, Ordering::AcqRel);
        if before == len
            && let Some(tx) = self.whole.lock().expect("tracker lock").as_ref()
        {
            let _ = tx.send(part);
        }
    }

    /// No more writes: whoever waits for whole parts stops waiting.
    pub fn close(&self) {
        self.whole.lock().expect("tracker lock").take();
    }
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("paths", &self.paths)
            .field("spans", &self.spans)
            .finish()
    }
}

impl Parts {
    /// Opens `paths` for reading, in order, as one run of bytes.
    pub fn open(paths: &[PathBuf]) -> std::io::Result<Parts> {
        let files = paths
            .iter()
            .map(|p| {
                let f = std::fs::File::open(p)?;
                let len = f.metadata()?.len();
                Ok((f, len))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Parts::of(paths, files))
    }

    /// The parts `paths`, open as `files` with their lengths.
    fn of(paths: &[PathBuf], files: Vec<(std::fs::File, u64)>) -> Parts {
        let mut at = 0;
        let mut spans = Vec::new();
        for (_, len) in &files {
            spans.push((at, *len));
            at += len;
        }
        Parts {
            paths: paths.to_vec(),
            spans,
            files: Arc::new(files.into_iter().map(|(f, _)| f).collect()),
            tracker: None,
        }
    }

    /// Tracks writes: `to_write[i]` bytes will be written to part `i` (padding, never
    /// written, left out); each part is sent on the returned channel once they all are.
    pub fn track(&mut self, to_write: &[u64]) -> (Arc<Tracker>, std::sync::mpsc::Receiver<usize>) {
        let (tx, rx) = std::sync::mpsc::channel();
        for (i, n) in to_write.iter().enumerate() {
            if *n == 0 {
                let _ = tx.send(i);
            }
        }
        let tracker = Arc::new(Tracker {
            remaining: to_write
                .iter()
                .map(|n| std::sync::atomic::AtomicU64::new(*n))
                .collect(),
            whole: std::sync::Mutex::new(Some(tx)),
        });
        self.tracker = Some(tracker.clone());
        (tracker, rx)
    }

    /// Creates `paths` for writing, each with its length (and its disk space claimed).
    pub fn create(paths: &[PathBuf], lengths: &[u64]) -> std::io::Result<Parts> {
        let files = paths
            .iter()
            .zip(lengths)
            .map(|(p, &len)| {
                let f = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(p)?;
                crate::bundle::claim_space(&f, len)?;
                Ok((f, len))
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Parts::of(paths, files))
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// The length of the whole.
    pub fn len(&self) -> u64 {
        self.spans.last().map_or(0, |(at, len)| at + len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where `len` bytes from `at` lie: (part, offset in it, length) for each part touched.
    pub fn segments(&self, at: u64, len: u64) -> Vec<(usize, u64, u64)> {
        let end = at + len;
        self.spans
            .iter()
            .enumerate()
            .filter(|(_, (start, l))| *start < end && start + l > at)
            .map(|(i, &(start, l))| {
                let from = at.max(start);
                let to = end.min(start + l);
                (i, from - start, to - from)
            })
            .filter(|s| s.2 > 0)
            .collect()
    }

    /// The part that holds byte `at` of the whole.
    pub fn part_of(&self, at: u64) -> Option<usize> {
        self.spans
            .iter()
            .position(|(start, len)| at >= *start && at < start + len)
    }

    /// Reads at `at` of the whole (fewer bytes where a part ends or the whole does).
    pub fn read_at(&self, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
        let Some((i, off, len)) = self.segments(at, buf.len() as u64).into_iter().next() else {
            return Ok(0);
        };
        self.files[i].read_at(&mut buf[..len as usize], off)
    }

    /// Writes all of `bytes` at `at` of the whole, across parts where it must.
    pub fn write_all_at(&self, bytes: &[u8], at: u64) -> std::io::Result<()> {
        let mut done = 0usize;
        for (i, off, len) in self.segments(at, bytes.len() as u64) {
            self.files[i].write_all_at(&bytes[done..done + len as usize], off)?;
            done += len as usize;
            if let Some(t) = &self.tracker {
                t.written(i, len);
            }
        }
        if done < bytes.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "a write past the end of the bundle's parts",
            ));
        }
        Ok(())
    }

    /// Writes `chunks` one after another from `at` of the whole: one `pwritev` per part
    /// touched (and per 1,024 chunks), not one write per chunk.
    pub fn write_chunks_at(&self, chunks: &[bytes::Bytes], at: u64) -> std::io::Result<()> {
        let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        let (mut chunk, mut within) = (0usize, 0usize);
        let mut written = 0u64;
        for (i, off, len) in self.segments(at, total) {
            let mut slices: Vec<&[u8]> = Vec::new();
            let mut need = len as usize;
            while need > 0 {
                let c = &chunks[chunk][within..];
                let take = c.len().min(need);
                slices.push(&c[..take]);
                need -= take;
                if take == c.len() {
                    chunk += 1;
                    within = 0;
                } else {
                    within += take;
                }
            }
            pwritev_all(&self.files[i], &slices, off)?;
            written += len;
            if let Some(t) = &self.tracker {
                t.written(i, len);
            }
        }
        if written < total {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "a write past the end of the bundle's parts",
            ));
        }
        Ok(())
    }

    /// Asks the kernel to start writing `len` bytes from `at` to the disk.
    pub fn start_write_back(&self, at: u64, len: u64) {
        for (i, off, l) in self.segments(at, len) {
            crate::bundle::start_write_back(&self.files[i], off, l);
        }
    }

    pub fn sync_all(&self) -> std::io::Result<()> {
        for f in self.files.iter() {
            f.sync_all()?;
        }
        Ok(())
    }

    /// Tells the kernel each part will be read front to back.
    pub fn read_sequentially(&self) {
        for f in self.files.iter() {
            crate::bundle::read_sequentially(f);
        }
    }

    /// A `Read + Seek` over the whole (for the tar reader).
    pub fn reader(&self) -> PartsReader {
        PartsReader {
            parts: self.clone(),
            at: 0,
        }
    }

    /// `len` bytes from `at` as a stream of chunks, part after part.
    pub fn stream(&self, at: u64, len: u64) -> BlobStream {
        let pieces: Vec<(PathBuf, u64, u64)> = self
            .segments(at, len)
            .into_iter()
            .map(|(i, off, l)| (self.paths[i].clone(), off, l))
            .collect();
        Box::pin(
            futures_util::stream::iter(pieces)
                .then(|(path, off, l)| async move {
                    match tokio::fs::File::open(&path).await {
                        Ok(mut f) => match f.seek(SeekFrom::Start(off)).await {
                            Ok(_) => chunks(f.take(l)),
                            Err(e) => failed(e),
                        },
                        Err(e) => failed(e),
                    }
                })
                .flatten(),
        )
    }
}

/// Writes all of `slices` at `offset` of `file`, in as few `pwritev` calls as it takes.
fn pwritev_all(file: &std::fs::File, slices: &[&[u8]], mut offset: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut iov: Vec<libc::iovec> = slices
        .iter()
        .filter(|s| !s.is_empty())
        .map(|s| libc::iovec {
            iov_base: s.as_ptr() as *mut libc::c_void,
            iov_len: s.len(),
        })
        .collect();
    let mut rest = &mut iov[..];
    while !rest.is_empty() {
        let count = rest.len().min(1024);
        // SAFETY: the iovecs point into `slices`, which outlive the call; the fd is open.
        let n = unsafe {
            libc::pwritev(
                file.as_raw_fd(),
                rest.as_ptr(),
                count as libc::c_int,
                offset as libc::off_t,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let mut n = n as usize;
        offset += n as u64;
        while n > 0 {
            if n >= rest[0].iov_len {
                n -= rest[0].iov_len;
                rest = &mut rest[1..];
            } else {
                rest[0].iov_base = (rest[0].iov_base as usize + n) as *mut libc::c_void;
                rest[0].iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

fn failed(e: std::io::Error) -> BlobStream {
    Box::pin(futures_util::stream::once(async move { Err(e) }))
}

/// A file region as a stream of 256 KiB chunks.
pub(crate) fn chunks(reader: tokio::io::Take<tokio::fs::File>) -> BlobStream {
    Box::pin(futures_util::stream::unfold(reader, |mut r| async move {
        let mut buf = vec![0u8; 256 << 10];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), r))
            }
            Err(e) => Some((Err(e), r)),
        }
    }))
}

/// [`Parts::reader`].
pub struct PartsReader {
    parts: Parts,
    at: u64,
}

impl Read for PartsReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.parts.read_at(buf, self.at)?;
        self.at += n as u64;
        Ok(n)
    }
}

impl Seek for PartsReader {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let to = match pos {
            SeekFrom::Start(n) => n as i128,
            SeekFrom::End(d) => self.parts.len() as i128 + d as i128,
            SeekFrom::Current(d) => self.at as i128 + d as i128,
        };
        if to < 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a seek before the start of the bundle",
            ));
        }
        self.at = to as u64;
        Ok(self.at)
    }
}

/// The numbered part files of a split bundle `base` (`base.001`, `base.002`, ...).
pub fn part_path(base: &Path, n: usize) -> PathBuf {
    PathBuf::from(format!("{}.{n:03}", base.display()))
}

/// Parses a size as `--split` takes it: `4GiB`, `4.7GB`, `700MB`, `512MiB`, `1000000`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (write e.g. 4GiB, 4.7GB, 700MB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(format!(
                "`{text}`: unknown unit `{other}` (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)"
            ));
        }
    };
    let bytes = (n * mult as f64).floor() as u64;
    if bytes < 64 << 10 {
        return Err(format!("`{text}` is under 64 KiB: too small for a part"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_media_are_labelled() {
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("4.7GB").unwrap(), 4_700_000_000);
        assert_eq!(parse_size("700 MB").unwrap(), 700_000_000);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("10KiB").is_err());
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
    }

    #[test]
    fn reads_and_writes_cross_part_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (1..=3)
            .map(|n| part_path(&dir.path().join("b"), n))
            .collect();
        let parts = Parts::create(&paths, &[5, 5, 3]).unwrap();
        parts.write_all_at(b"hello ", 0).unwrap();
        parts
            .write_chunks_at(
                &[
                    bytes::Bytes::from_static(b"wor"),
                    bytes::Bytes::from_static(b"ld!!"),
                ],
                6,
            )
            .unwrap();
        parts.sync_all().unwrap();
        assert_eq!(std::fs::read(&paths[1]).unwrap(), b" worl");
        let parts = Parts::open(&paths).unwrap();
        assert_eq!(parts.len(), 13);
        let mut all = String::new();
        parts.reader().read_to_string(&mut all).unwrap();
        assert_eq!(all, "hello world!!");
        let mut r = parts.reader();
        r.seek(SeekFrom::Start(4)).unwrap();
        let mut four = [0u8; 4];
        r.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"o wo");
        assert_eq!(parts.part_of(10), Some(2));
        let rt = tokio::runtime::Runtime::new().unwrap();
        let got: Vec<u8> = rt.block_on(async {
            let mut s = parts.stream(3, 8);
            let mut out = Vec::new();
            while let Some(c) = s.next().await {
                out.extend_from_slice(&c.unwrap());
            }
            out
        });
        assert_eq!(got, b"lo world");
    }
}
