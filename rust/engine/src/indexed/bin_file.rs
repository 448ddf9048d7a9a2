//! The `.bin` token file, whole or split into shards.
//!
//! Pythia ships its `.bin` files cut into shards at fixed byte counts, regardless of item (and
//! even token) boundaries: `NAME-00000-of-00082.bin`, ... Reading them in place saves users the
//! hours of concatenating hundreds of GB; only a read that spans two shards copies.

use std::borrow::Cow;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::IoContext;
use crate::{Error, Result};

#[derive(Debug)]
pub struct BinShard {
    pub path: PathBuf,
    /// Byte offset of the shard's first byte within the logical `.bin`.
    pub start: u64,
    pub map: Arc<Mmap>,
    /// (device, inode) of the file mapped, where the platform has them: a merge copies the
    /// file at `path` only while it is still this one.
    pub id: Option<FileId>,
}

#[derive(Debug)]
pub struct BinFile {
    shards: Vec<BinShard>,
    len: u64,
}

/// (device, inode): which file a path named when it was opened.
pub type FileId = (u64, u64);

/// The identity of an open file, where the platform has one.
pub(crate) fn file_id(file: &File) -> Option<FileId> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        file.metadata().ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        None
    }
}

fn map_file(path: &Path) -> Result<(Arc<Mmap>, Option<FileId>)> {
    let file = crate::files::open_regular(path)?;
    // SAFETY: read-only map; a file truncated underneath us by another process is outside what
    // any mmap reader can defend against (the same holds for numpy.memmap).
    let map = unsafe { Mmap::map(&file) }.at(path)?;
    #[cfg(unix)]
    {
        // Random row access is the common pattern; the kernel's default read-ahead wastes I/O.
        let _ = map.advise(memmap2::Advice::Random);
    }
    Ok((Arc::new(map), file_id(&file)))
}

/// Parse `STEM-00012-of-00082.bin` into (12, 82) when `STEM` is `stem`.
fn parse_shard_name(name: &str, stem: &str) -> Option<(usize, usize)> {
    let rest = name
        .strip_prefix(stem)?
        .strip_prefix('-')?
        .strip_suffix(".bin")?;
    let (i, n) = rest.split_once("-of-")?;
    if i.len() != n.len() || !i.bytes().chain(n.bytes()).all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((i.parse().ok()?, n.parse().ok()?))
}

/// The shard files of `prefix` in order, or an empty list when there are none.
pub fn find_shards(prefix: &Path) -> Result<Vec<PathBuf>> {
    let dir = match prefix.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stem = match prefix.file_name() {
        Some(s) => s.to_string_lossy().into_owned(),
        None => return Ok(Vec::new()),
    };
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&dir, e)),
    };
    let mut found: Vec<(usize, usize, PathBuf)> = Vec::new();
    for entry in entries {
        let entry = entry.at(&dir)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some((i, n)) = parse_shard_name(&name, &stem) {
            found.push((i, n, entry.path()));
        }
    }
    if found.is_empty() {
        return Ok(Vec::new());
    }
    found.sort();
    let count = found[0].1;
    if let Some(other) = found.iter().find(|f| f.1 != count) {
        return Err(Error::corrupt(
            &other.2,
            format!(
                "shard count disagrees with {} ({} vs {count}): shards of two different splits \
                 are mixed in one directory",
                found[0].2.display(),
                other.1
            ),
        ));
    }
    // The same index written with other zero padding (`-00007-of-00020` and `-000007-of-000020`)
    // would otherwise read as the next shard missing.
    if let Some(w) = found.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(Error::invalid(format!(
            "{} and {} are both shard {} of {}: remove the one that does not belong",
            w[0].2.display(),
            w[1].2.display(),
            w[0].0,
            prefix.display()
        )));
    }
    // Even Pythia's numbering ends at index N: a file past it is not part of this set, and
    // saying a shard before it is missing sent users looking for a file that never existed.
    // Checked before the gaps: `-00005-of-00002` after shards 0 to 2 is no sign of a shard 3.
    if let Some((_, _, path)) = found.iter().find(|f| f.0 > count) {
        return Err(Error::invalid(format!(
            "{} is numbered past the shards '-of-{count:05}' names (0 to {count} at most): it is \
             not one of them; move it away",
            path.display()
        )));
    }
    for (expected, (i, _, path)) in found.iter().enumerate() {
        if *i != expected {
            return Err(Error::invalid(format!(
                "shard {expected} of {} is missing (next found: {}); download it before reading",
                prefix.display(),
                path.display()
            )));
        }
    }
    // Two numberings exist: `-of-N` as the shard count (indices 0..N-1, as `pythia-data tokenize
    // --num-shards` and Hugging Face write), and Pythia's own, where N is the last index
    // (`document-00000-of-00020.bin` ... `document-00020-of-00020.bin`: 21 files). Both are
    // accepted; a missing last shard then shows up as a size mismatch against the .idx.
    let last = found.len() - 1;
    if last + 1 != count && last != count {
        return Err(Error::invalid(format!(
            "shards of {} end at index {last} but their names say '-of-{count:05}': shard {} is \
             missing",
            prefix.display(),
            last + 1
        )));
    }
    Ok(found.into_iter().map(|f| f.2).collect())
}

impl BinFile {
    /// Map `PREFIX.bin`, or its shards when there is no single file.
    pub fn open(prefix: &Path) -> Result<Self> {
        let single = super::bin_path(prefix);
        if single.exists() {
            return Self::from_paths(vec![single]);
        }
        let shards = find_shards(prefix)?;
        if shards.is_empty() {
            return Err(Error::io(
                &single,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file, and no shards named PREFIX-NNNNN-of-NNNNN.bin beside it",
                ),
            ));
        }
        Self::from_paths(shards)
    }

    pub fn from_paths(paths: Vec<PathBuf>) -> Result<Self> {
        let mut shards = Vec::with_capacity(paths.len());
        let mut start = 0u64;
        for path in paths {
            let (map, id) = map_file(&path)?;
            let len = map.len() as u64;
            shards.push(BinShard {
                path,
                start,
                map,
                id,
            });
            start += len;
        }
        Ok(BinFile { shards, len: start })
    }

    /// Total bytes over all shards.
    pub fn len(&self) -> u64 {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn shards(&self) -> &[BinShard] {
        &self.shards
    }
    pub fn is_sharded(&self) -> bool {
        self.shards.len() > 1
    }

    /// Index of the shard holding byte `pos` (`pos < len`).
    fn shard_of(&self, pos: u64) -> usize {
        // The last shard whose start is <= pos; empty shards are skipped by taking the last.
        self.shards.partition_point(|s| s.start <= pos) - 1
    }

    /// Bytes `[start, end)` of the logical file: borrowed unless they span shards.
    pub fn slice(&self, start: u64, end: u64) -> Result<Cow<'_, [u8]>> {
        if start > end || end > self.len {
            return Err(Error::invalid(format!(
                "bytes [{start}, {end}) are outside the {} bytes of {}",
                self.len,
                self.shards
                    .first()
                    .map(|s| s.path.display().to_string())
                    .unwrap_or_default()
            )));
        }
        if start == end {
            return Ok(Cow::Borrowed(&[]));
        }
        let s = &self.shards[self.shard_of(start)];
        let local = (start - s.start) as usize;
        if end - s.start <= s.map.len() as u64 {
            return Ok(Cow::Borrowed(&s.map[local..local + (end - start) as usize]));
        }
        let mut out = vec![0u8; (end - start) as usize];
        self.read_into(start, &mut out)?;
        Ok(Cow::Owned(out))
    }

    /// Copy bytes `[start, start + out.len())` into `out`, across shards as needed.
    pub fn read_into(&self, start: u64, out: &mut [u8]) -> Result<()> {
        let end = start + out.len() as u64;
        if end > self.len {
            return Err(Error::invalid(format!(
                "bytes [{start}, {end}) are beyond the end of the {} bytes of token data",
                self.len
            )));
        }
        if out.is_empty() {
            return Ok(());
        }
        let mut pos = start;
        let mut written = 0usize;
        let mut k = self.shard_of(start);
        while written < out.len() {
            let s = &self.shards[k];
            let local = (pos - s.start) as usize;
            let take = (s.map.len() - local).min(out.len() - written);
            out[written..written + take].copy_from_slice(&s.map[local..local + take]);
            written += take;
            pos += take as u64;
            k += 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        assert_eq!(
            parse_shard_name("document-00003-of-00020.bin", "document"),
            Some((3, 20))
        );
        assert_eq!(
            parse_shard_name("document-3-of-00020.bin", "document"),
            None
        );
        assert_eq!(parse_shard_name("document.bin", "document"), None);
        assert_eq!(
            parse_shard_name("documents-00003-of-00020.bin", "document"),
            None
        );
    }

    #[test]
    fn pythia_numbering_counts_from_zero_to_n() {
        let dir = std::env::temp_dir().join(format!("pythia-binfile-n-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..=2 {
            std::fs::write(
                dir.join(format!("document-{k:05}-of-00002.bin")),
                [k as u8; 3],
            )
            .unwrap();
        }
        let bin = BinFile::open(&dir.join("document")).unwrap();
        assert_eq!(bin.shards().len(), 3);
        assert_eq!(&*bin.slice(2, 7).unwrap(), &[0, 1, 1, 1, 2]);
        std::fs::remove_file(dir.join("document-00002-of-00002.bin")).unwrap();
        std::fs::remove_file(dir.join("document-00001-of-00002.bin")).unwrap();
        let err = BinFile::open(&dir.join("document"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("shard 1 is missing"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn extra_and_doubled_shards_are_named() {
        let dir = std::env::temp_dir().join(format!("pythia-binfile-x-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for k in 0..=3 {
            std::fs::write(dir.join(format!("document-{k:05}-of-00002.bin")), [1u8]).unwrap();
        }
        // It said "shard 4 is missing": the fault is shard 3, past the set.
        let err = BinFile::open(&dir.join("document"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("document-00003-of-00002.bin is numbered past the shards"),
            "{err}"
        );
        // Not right after the set either: it said "shard 3 is missing; download it".
        std::fs::rename(
            dir.join("document-00003-of-00002.bin"),
            dir.join("document-00005-of-00002.bin"),
        )
        .unwrap();
        let err = BinFile::open(&dir.join("document"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("document-00005-of-00002.bin is numbered past the shards"),
            "{err}"
        );
        std::fs::remove_file(dir.join("document-00005-of-00002.bin")).unwrap();
        std::fs::write(dir.join("document-000001-of-000002.bin"), [1u8]).unwrap();
        let err = BinFile::open(&dir.join("document"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("are both shard 1 of"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reads_across_shards() {
        let dir = std::env::temp_dir().join(format!("pythia-binfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let cuts = [0usize, 333, 333, 700, 1000]; // includes an empty shard
        let n = cuts.len() - 1;
        for k in 0..n {
            std::fs::write(
                dir.join(format!("d-{k:05}-of-{n:05}.bin")),
                &data[cuts[k]..cuts[k + 1]],
            )
            .unwrap();
        }
        let bin = BinFile::open(&dir.join("d")).unwrap();
        assert_eq!(bin.len(), 1000);
        for (a, b) in [
            (0, 10),
            (330, 340),
            (333, 700),
            (699, 701),
            (0, 1000),
            (999, 1000),
        ] {
            assert_eq!(&*bin.slice(a, b).unwrap(), &data[a as usize..b as usize]);
        }
        assert!(matches!(bin.slice(10, 20).unwrap(), Cow::Borrowed(_)));
        assert!(matches!(bin.slice(330, 340).unwrap(), Cow::Owned(_)));
        assert!(bin.slice(990, 1001).is_err());
        std::fs::remove_file(dir.join("d-00002-of-00004.bin")).unwrap();
        let err = BinFile::open(&dir.join("d")).unwrap_err().to_string();
        assert!(err.contains("shard 2 of"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
