//! Appending the token file without the page cache. A tokenize run writes about half a byte
//! per byte of text and never reads it back; through the page cache every byte is copied by
//! the kernel into freshly allocated pages, which cost about 7 % of all CPU time on a 2-core
//! machine and left the whole output to be flushed by the final fsync. With `O_DIRECT` the
//! device reads straight from our buffer, and the output does not push the inputs out of the
//! cache.
//!
//! `O_DIRECT` needs block-aligned memory, offsets and lengths, so bytes gather in an aligned
//! buffer and go out in whole blocks; `flush` writes the partial last block padded and trims
//! the file back, keeping that block in the buffer to be rewritten once it fills. Where the
//! file system refuses `O_DIRECT` (or a platform lacks it) the same writes go through the page
//! cache instead.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::Result;

/// Alignment that every Linux block device and file system accepts for `O_DIRECT`.
const BLOCK: usize = 4096;
/// Bytes gathered before a write: large enough that a write's latency is small next to the
/// time taken to produce it, small enough to stay in cache while it fills.
const BUFFER_BLOCKS: usize = 1024;

#[repr(C, align(4096))]
struct Block([u8; BLOCK]);

pub(crate) struct DirectAppend {
    path: PathBuf,
    file: File,
    direct: bool,
    blocks: Vec<Block>,
    /// File offset of the buffer's first byte, a multiple of `BLOCK`.
    base: u64,
    /// Bytes of the buffer in use.
    filled: usize,
}

fn open(path: &Path, direct: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).truncate(false).write(true);
    #[cfg(target_os = "linux")]
    if direct {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_DIRECT);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = direct;
    options.open(path)
}

fn is_unsupported(e: &std::io::Error) -> bool {
    #[cfg(target_os = "linux")]
    if e.raw_os_error() == Some(libc::EINVAL) {
        return true;
    }
    e.kind() == std::io::ErrorKind::Unsupported
}

fn write_at(mut file: &File, bytes: &[u8], offset: u64) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)
}

impl DirectAppend {
    /// Open `path` (created if missing) cut to `len` bytes, to append after them; `direct`
    /// false always uses the page cache.
    pub fn open(path: &Path, len: u64, direct: bool) -> Result<Self> {
        let want_direct = direct && cfg!(target_os = "linux");
        let (file, direct) = match open(path, want_direct) {
            Ok(f) => (f, want_direct),
            Err(e) if want_direct && is_unsupported(&e) => (open(path, false).at(path)?, false),
            Err(e) => return Err(e).at(path),
        };
        file.set_len(len).at(path)?;
        let mut w = DirectAppend {
            path: path.to_path_buf(),
            file,
            direct,
            blocks: (0..BUFFER_BLOCKS).map(|_| Block([0; BLOCK])).collect(),
            base: len / BLOCK as u64 * BLOCK as u64,
            filled: (len % BLOCK as u64) as usize,
        };
        if w.filled > 0 {
            // The partial last block is rewritten whole by the next write: start from its bytes.
            let (base, filled) = (w.base, w.filled);
            File::open(path)
                .and_then(|mut f| {
                    f.seek(SeekFrom::Start(base))?;
                    f.read_exact(&mut w.buffer()[..filled])
                })
                .at(path)?;
        }
        Ok(w)
    }

    /// Whether writes bypass the page cache.
    #[cfg(test)]
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Bytes appended in all (the file's length once flushed).
    pub fn len(&self) -> u64 {
        self.base + self.filled as u64
    }

    fn buffer(&mut self) -> &mut [u8] {
        let len = self.blocks.len() * BLOCK;
        // SAFETY: `blocks` is one allocation of `len` initialised bytes (Block is a byte array,
        // repr(C) without padding), borrowed mutably for the slice's lifetime.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<u8>(), len) }
    }

    fn bytes(&self, len: usize) -> &[u8] {
        assert!(len <= self.blocks.len() * BLOCK);
        // SAFETY: as in `buffer`, shared.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<u8>(), len) }
    }

    pub fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        let capacity = self.blocks.len() * BLOCK;
        while !data.is_empty() {
            let n = data.len().min(capacity - self.filled);
            let at = self.filled;
            self.buffer()[at..at + n].copy_from_slice(&data[..n]);
            self.filled += n;
            data = &data[n..];
            if self.filled == capacity {
                self.write_out(capacity)?;
                self.base += capacity as u64;
                self.filled = 0;
            }
        }
        Ok(())
    }

    /// Write the first `len` bytes of the buffer (a multiple of `BLOCK`) at `base`.
    fn write_out(&mut self, len: usize) -> Result<()> {
        match write_at(&self.file, self.bytes(len), self.base) {
            Ok(()) => Ok(()),
            // Some file systems accept the flag at open and refuse the first write.
            Err(e) if self.direct && is_unsupported(&e) => {
                self.file = open(&self.path, false).at(&self.path)?;
                self.direct = false;
                self.write_out(len)
            }
            Err(e) => Err(e).at(&self.path),
        }
    }

    /// Put every byte appended so far in the file, which then has exactly `len()` bytes.
    pub fn flush(&mut self) -> Result<()> {
        if self.filled == 0 {
            return Ok(());
        }
        let padded = self.filled.div_ceil(BLOCK) * BLOCK;
        let filled = self.filled;
        self.buffer()[filled..padded].fill(0);
        self.write_out(padded)?;
        if padded != filled {
            self.file.set_len(self.len()).at(&self.path)?;
        }
        // Keep only the partial block, which later bytes complete.
        let whole = filled / BLOCK * BLOCK;
        self.buffer().copy_within(whole..filled, 0);
        self.base += whole as u64;
        self.filled -= whole;
        Ok(())
    }

    /// `flush`, then make the file's data durable.
    pub fn sync_data(&mut self) -> Result<()> {
        self.flush()?;
        self.file.sync_data().at(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("direct-append-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Deterministic bytes and piece sizes (xorshift), so a failure is reproducible.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    fn check(direct: bool) {
        let dir = temp_dir(if direct { "direct" } else { "cached" });
        let path = dir.join("tokens.bin");
        let mut rng = Rng(0x9e3779b97f4a7c15);
        let mut expected = Vec::new();
        let mut w = DirectAppend::open(&path, 0, direct).unwrap();
        let capacity = BUFFER_BLOCKS * BLOCK;
        let sizes = [
            0,
            1,
            BLOCK - 1,
            BLOCK,
            BLOCK + 1,
            capacity - 3,
            capacity,
            2 * capacity + 7,
        ];
        for round in 0..60 {
            let n = if round < sizes.len() {
                sizes[round]
            } else {
                (rng.next() % (3 * BLOCK as u64)) as usize
            };
            let piece: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
            w.write_all(&piece).unwrap();
            expected.extend_from_slice(&piece);
            assert_eq!(w.len(), expected.len() as u64);
            if rng.next().is_multiple_of(3) {
                w.flush().unwrap();
                assert_eq!(std::fs::read(&path).unwrap(), expected, "round {round}");
            }
            if rng.next().is_multiple_of(7) {
                // A restart from a checkpoint: reopen at a shorter, unaligned length.
                w.flush().unwrap();
                let keep = expected.len() - (rng.next() % 5000) as usize % (expected.len() + 1);
                expected.truncate(keep);
                w = DirectAppend::open(&path, keep as u64, direct).unwrap();
                assert_eq!(w.len(), keep as u64);
            }
        }
        w.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), expected);
        if !direct {
            assert!(!w.is_direct());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn appends_read_back_exactly_through_direct_io() {
        check(true);
    }

    #[test]
    fn appends_read_back_exactly_through_the_page_cache() {
        check(false);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn bypasses_the_page_cache_where_the_file_system_allows() {
        // The temp directory of CI machines is on ext4, xfs or tmpfs (which since Linux 6.6
        // accepts the flag); where it is refused, the writer must have fallen back.
        let dir = temp_dir("probe");
        let aligned = Block([1; BLOCK]);
        let works = open(&dir.join("probe"), true)
            .and_then(|f| write_at(&f, &aligned.0, 0))
            .is_ok();
        let path = dir.join("f");
        let mut w = DirectAppend::open(&path, 0, true).unwrap();
        w.write_all(&[7; 10 * BLOCK + 3]).unwrap();
        w.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), vec![7; 10 * BLOCK + 3]);
        assert_eq!(w.is_direct(), works);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
