//! Decompressed JSON lines, cut into chunks of whole lines that workers can parse in parallel.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::error::IoContext;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Zstd,
    Gzip,
}

impl Compression {
    /// From the file name: `.zst` / `.zstd`, `.gz`, anything else plain.
    pub fn of(path: &Path) -> Compression {
        match path.extension().and_then(|e| e.to_str()) {
            Some("zst" | "zstd") => Compression::Zstd,
            Some("gz") => Compression::Gzip,
            _ => Compression::None,
        }
    }
}

/// Counts the bytes read from the file itself (before decompression), for progress and ETA.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A buffered reader of the decompressed bytes of `path`; `counter` (if any) counts the bytes
/// read from the file. A UTF-8 byte-order mark at the start (editors on Windows write one) is
/// an encoding marker, not text: it is skipped, as Python's `utf-8-sig` does.
pub fn open_lines(path: &Path, counter: Option<Arc<AtomicU64>>) -> Result<Box<dyn BufRead + Send>> {
    let file = Counting {
        inner: File::open(path).at(path)?,
        counter: counter.unwrap_or_default(),
    };
    let inner: Box<dyn Read + Send> = match Compression::of(path) {
        Compression::None => Box::new(file),
        // Both decoders read every concatenated frame / member, as `zstd -d` and `gzip -d` do.
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(file).at(path)?),
        Compression::Gzip => {
            // The decoder reads a file that is not gzip at all (or is empty) as no data, so a
            // corrupt input would give no documents and no error: check the magic bytes.
            let mut file = BufReader::new(file);
            if !file.fill_buf().at(path)?.starts_with(&[0x1f, 0x8b]) {
                return Err(Error::corrupt(
                    path,
                    "not a gzip stream: empty, truncated or not gzip-compressed",
                ));
            }
            Box::new(flate2::read::MultiGzDecoder::new(file))
        }
    };
    let mut reader = BufReader::with_capacity(1 << 20, inner);
    // An error here (a corrupt stream) is left for the first read, which names the line.
    if reader
        .fill_buf()
        .is_ok_and(|b| b.starts_with(b"\xef\xbb\xbf"))
    {
        reader.consume(3);
    }
    Ok(Box::new(reader))
}

/// Whole lines of one file: `data[ends[i-1]..ends[i]]` is line `first_line + i` (1-based),
/// newline included when present.
#[derive(Default)]
pub struct LineChunk {
    pub file_index: usize,
    pub first_line: u64,
    pub data: Vec<u8>,
    pub ends: Vec<usize>,
}

impl LineChunk {
    pub fn len(&self) -> usize {
        self.ends.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
    pub fn line(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }
    /// The number of lines of the file consumed once this chunk is done.
    pub fn end_line(&self) -> u64 {
        self.first_line - 1 + self.ends.len() as u64
    }
}

/// Reads a file as chunks of about `chunk_bytes` of whole lines.
pub struct LineChunker {
    path: PathBuf,
    file_index: usize,
    reader: Box<dyn BufRead + Send>,
    next_line: u64,
    chunk_bytes: usize,
    /// A read error met after some whole lines: those lines go out first, the error next call.
    pending: Option<Error>,
}

fn read_error(path: &Path, line: u64, e: std::io::Error) -> Error {
    let what = match Compression::of(path) {
        Compression::Zstd => "zstd stream",
        Compression::Gzip => "gzip stream",
        Compression::None => "file",
    };
    Error::corrupt(
        path,
        format!("reading line {line}: truncated or corrupt {what}: {e}"),
    )
}

impl LineChunker {
    pub fn open(
        path: &Path,
        file_index: usize,
        chunk_bytes: usize,
        counter: Option<Arc<AtomicU64>>,
    ) -> Result<Self> {
        Ok(LineChunker {
            path: path.to_path_buf(),
            file_index,
            reader: open_lines(path, counter)?,
            next_line: 1,
            chunk_bytes: chunk_bytes.max(1),
            pending: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Skip the first `lines` lines (resuming after a checkpoint).
    pub fn skip_lines(&mut self, lines: u64) -> Result<()> {
        let mut scratch = Vec::new();
        while self.next_line <= lines {
            scratch.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut scratch)
                .map_err(|e| read_error(&self.path, self.next_line, e))?;
            if n == 0 {
                return Err(Error::invalid(format!(
                    "{}: has only {} lines but the checkpoint is after line {lines}; the input \
                     changed since the interrupted run",
                    self.path.display(),
                    self.next_line - 1
                )));
            }
            self.next_line += 1;
        }
        Ok(())
    }

    /// The next chunk, or None at the end of the file. The lines before a read error (a
    /// truncated stream) are returned whatever the chunk size, so skipping the error keeps the
    /// same documents for any chunking.
    pub fn next_chunk(&mut self) -> Result<Option<LineChunk>> {
        self.next_chunk_in(LineChunk::default())
    }

    /// [`Self::next_chunk`] reusing the buffers of a chunk already processed: fresh megabyte
    /// buffers for every chunk cost page faults and, with several threads, TLB shootdowns.
    pub fn next_chunk_in(&mut self, recycled: LineChunk) -> Result<Option<LineChunk>> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        let mut chunk = LineChunk {
            file_index: self.file_index,
            first_line: self.next_line,
            data: recycled.data,
            ends: recycled.ends,
        };
        chunk.data.clear();
        chunk.ends.clear();
        chunk.data.reserve(self.chunk_bytes + (64 << 10));
        while chunk.data.len() < self.chunk_bytes {
            let before = chunk.data.len();
            match self.reader.read_until(b'\n', &mut chunk.data) {
                Ok(0) => break,
                Ok(_) => {
                    chunk.ends.push(chunk.data.len());
                    self.next_line += 1;
                }
                Err(e) => {
                    chunk.data.truncate(before);
                    let e = read_error(&self.path, self.next_line, e);
                    if chunk.is_empty() {
                        return Err(e);
                    }
                    self.pending = Some(e);
                    break;
                }
            }
        }
        Ok(if chunk.is_empty() { None } else { Some(chunk) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines_of(path: &Path, chunk_bytes: usize) -> (Vec<(u64, Vec<u8>)>, Option<String>) {
        let mut c = LineChunker::open(path, 0, chunk_bytes, None).unwrap();
        let mut out = Vec::new();
        loop {
            match c.next_chunk() {
                Ok(Some(chunk)) => {
                    for i in 0..chunk.len() {
                        out.push((chunk.first_line + i as u64, chunk.line(i).to_vec()));
                    }
                }
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn concatenated_frames_and_members_read_as_one_stream() {
        let dir = std::env::temp_dir().join(format!("pythia-lines-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let zst = dir.join("a.jsonl.zst");
        let mut bytes = zstd::encode_all(&b"one\ntwo\n"[..], 3).unwrap();
        bytes.extend(zstd::encode_all(&b"three\nfour"[..], 3).unwrap());
        std::fs::write(&zst, &bytes).unwrap();
        let gz = dir.join("a.jsonl.gz");
        let mut f = std::fs::File::create(&gz).unwrap();
        for part in [&b"one\ntwo\n"[..], &b"three\nfour"[..]] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part).unwrap();
            f.write_all(&e.finish().unwrap()).unwrap();
        }
        drop(f);
        let want: Vec<(u64, Vec<u8>)> = [&b"one\n"[..], b"two\n", b"three\n", b"four"]
            .iter()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.to_vec()))
            .collect();
        for path in [&zst, &gz] {
            for chunk_bytes in [1, 5, 1 << 20] {
                assert_eq!(lines_of(path, chunk_bytes), (want.clone(), None));
            }
        }
        // Cut inside the second frame: the same whole lines before the cut come out for any
        // chunk size (never the line being read), then an error naming the file.
        std::fs::write(&zst, &bytes[..bytes.len() - 4]).unwrap();
        let (first, _) = lines_of(&zst, 1 << 20);
        assert!(first.len() >= 2 && first.len() < 4 && want.starts_with(&first));
        for chunk_bytes in [1, 5, 1 << 20] {
            let (got, err) = lines_of(&zst, chunk_bytes);
            assert_eq!(got, first);
            let err = err.expect("a truncated stream is an error");
            assert!(
                err.contains("a.jsonl.zst") && err.contains("truncated or corrupt zstd"),
                "{err}"
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
