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
    /// From the file name, in any case: `.zst` / `.zstd`, `.gz`, anything else plain.
    pub fn of(path: &Path) -> Compression {
        let ext = path.extension().and_then(|e| e.to_str());
        match ext.map(str::to_ascii_lowercase).as_deref() {
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

/// The magic bytes of compressed formats. No JSON line starts with any of them, and read as
/// text such a file would only give "invalid JSON" or "invalid UTF-8" errors.
const COMPRESSED: [(&[u8], &str); 7] = [
    (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
    (&[0x1f, 0x8b], "gzip"),
    (b"BZh", "bzip2"),
    (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
    (&[0x04, 0x22, 0x4d, 0x18], "lz4"),
    (b"PK\x03\x04", "zip"),
    (&[b'7', b'z', 0xbc, 0xaf, 0x27, 0x1c], "7z"),
];

/// Refuse a file whose first bytes say it holds other data than its name does (compressed
/// data named as plain text, gzip named `.zst`, plain JSON lines named `.gz`...), saying what
/// to do: read by the name's decoder, such a file gave "invalid JSON" or the decoder's own
/// words ("Unknown frame descriptor"), which name neither the cause nor the remedy.
fn refuse_misnamed(file: &File, path: &Path, named: Compression) -> Result<()> {
    // Room for a BOM and some blank lines before a JSON object's brace.
    let mut head = [0u8; 64];
    let n = read_at_most(file, path, &mut head, 0)?;
    let found = COMPRESSED
        .iter()
        .find(|(m, _)| head[..n].starts_with(m))
        .map(|(_, format)| *format);
    let name = match named {
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
        Compression::None => "plain text",
    };
    let rename = "rename it (the compression is chosen by the file's last suffix)";
    if named == Compression::None {
        if let Some(what) = not_json_lines(&head[..n], last_non_blank(file, path)?) {
            return Err(Error::corrupt(path, what));
        }
    }
    let what = match found {
        Some(format) if format == name => return Ok(()),
        Some(format @ ("zstd" | "gzip")) => {
            format!("{format}-compressed data in a file named as {name}: {rename}")
        }
        Some(other) => format!(
            "{other}-compressed data, which tokenize does not read: decompress it, or \
             recompress it with zstd (.jsonl.zst) or gzip (.jsonl.gz)"
        ),
        // Other first bytes are left to the decoder (zstd's skippable frames have magic
        // numbers of their own), except a JSON object's opening brace, after a BOM and blank
        // lines as JSON lines may have them.
        None if named != Compression::None && starts_like_json_lines(&head[..n]) => {
            format!("uncompressed JSON lines in a file named as {name}: {rename}")
        }
        None => return Ok(()),
    };
    Err(Error::corrupt(path, what))
}

/// What a plain file holds instead of JSON lines, by its first bytes, when that is clear:
/// read line by line, such files gave "invalid UTF-8" or "not a JSON object" at every line,
/// with the advice to skip them all.
fn not_json_lines(head: &[u8], last: Option<u8>) -> Option<&'static str> {
    let blank = |b: &&u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let mut opening = head.iter().skip_while(blank);
    // An array of objects, or one broken over lines: `[{` or `[` then a line break, and `]`
    // at the end. JSON lines whose first line only is an array (`[1, 2]`, `[{"text": "a"}]`)
    // end in an object: that line alone is wrong, and the others are read.
    let array = opening.next() == Some(&b'[')
        && matches!(
            opening.find(|b| !matches!(b, b' ' | b'\t')),
            Some(b'{' | b'\r' | b'\n')
        )
        && last == Some(b']');
    if head.starts_with(b"ARROW1") || head.starts_with(&[0xff, 0xff, 0xff, 0xff]) {
        Some(
            "an Arrow file, not JSON lines: give the folder that `datasets`' save_to_disk \
             wrote it in (with its state.json), or write the data as Parquet",
        )
    } else if head.starts_with(b"PAR1") {
        Some("a Parquet file, not JSON lines: rename it with the .parquet suffix")
    } else if head.starts_with(&[0xff, 0xfe]) || head.starts_with(&[0xfe, 0xff]) {
        Some("UTF-16 text, not UTF-8: convert it (for example iconv -f UTF-16 -t UTF-8)")
    } else if array {
        Some(
            "a JSON array, not JSON lines (one object per line): convert it, for example \
             with jq -c '.[]'",
        )
    } else {
        None
    }
}

/// Fill `buf` from `offset` on, or as much of it as the file holds; the bytes read.
fn read_at_most(file: &File, path: &Path, buf: &mut [u8], offset: u64) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], offset + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(n)
}

/// The file's last byte that is not JSON whitespace, if any in its last 4 kB.
fn last_non_blank(file: &File, path: &Path) -> Result<Option<u8>> {
    let len = file.metadata().at(path)?.len();
    let mut tail = vec![0u8; len.min(4096) as usize];
    let n = read_at_most(file, path, &mut tail, len - len.min(4096))?;
    Ok(tail[..n]
        .iter()
        .rev()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .copied())
}

/// Whether `head` opens like a JSON-lines file: a BOM and JSON whitespace at most, then `{`.
fn starts_like_json_lines(head: &[u8]) -> bool {
    let head = head.strip_prefix(BOM).unwrap_or(head);
    head.iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
        .is_some_and(|&b| b == b'{')
}

/// The decompressed bytes of `path`; `counter` (if any) counts the bytes read from the file.
pub fn open_decompressed(
    path: &Path,
    counter: Option<Arc<AtomicU64>>,
) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).at(path)?;
    let compression = Compression::of(path);
    // A compressed stream always has a header: an empty file is a failed download or copy,
    // which the decoders would only call truncated or corrupt.
    if compression != Compression::None && file.metadata().at(path)?.len() == 0 {
        let what = if compression == Compression::Zstd {
            "zstd"
        } else {
            "gzip"
        };
        return Err(Error::corrupt(
            path,
            format!("an empty file, not a {what} stream"),
        ));
    }
    refuse_misnamed(&file, path, compression)?;
    let file = Counting {
        inner: file,
        counter: counter.unwrap_or_default(),
    };
    Ok(match compression {
        Compression::None => Box::new(file),
        // Both decoders read every concatenated frame / member, as `zstd -d` and `gzip -d` do.
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(file).at(path)?;
            // Frames written with `zstd --long` have windows past the default limit (128 MB);
            // allow the format's largest, as `zstd -d --long=31` does. Only a frame that
            // declares such a window gets one (files are read one at a time).
            decoder.window_log_max(31).at(path)?;
            Box::new(decoder)
        }
        Compression::Gzip => {
            // The decoder reads a file that is not gzip at all (or is empty) as no data, so a
            // corrupt input would give no documents and no error: check the magic bytes.
            let mut file = BufReader::with_capacity(128 << 10, file);
            if !file.fill_buf().at(path)?.starts_with(&[0x1f, 0x8b]) {
                return Err(Error::corrupt(
                    path,
                    "not a gzip stream: empty, truncated or not gzip-compressed",
                ));
            }
            Box::new(GzMembers(Some(flate2::bufread::GzDecoder::new(file))))
        }
    })
}

/// Every gzip member of a stream, one after another, as `gzip -d` and Python's `gzip` read
/// them: zero bytes after a member (padding to a block size) are skipped, anything else there
/// must be another member. (flate2's `MultiGzDecoder` refuses the padding.)
struct GzMembers<R: BufRead>(Option<flate2::bufread::GzDecoder<R>>);

impl<R: BufRead> Read for GzMembers<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(member) = self.0.as_mut() else {
                return Ok(0);
            };
            let n = member.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // The member ended (the decoder read exactly its bytes): skip zeros, then stop at
            // the end of the input or start the next member.
            let input = member.get_mut();
            loop {
                let rest = input.fill_buf()?;
                if rest.is_empty() {
                    self.0 = None;
                    return Ok(0);
                }
                let zeros = rest.iter().take_while(|&&b| b == 0).count();
                if zeros == 0 {
                    break;
                }
                input.consume(zeros);
            }
            let input = self.0.take().map(|m| m.into_inner());
            self.0 = input.map(flate2::bufread::GzDecoder::new);
        }
    }
}

/// The size of every read from a decoder made by [`LineChunker`].
const DECODER_READ: usize = 128 << 10;

/// Reads from `inner` always with room for exactly [`DECODER_READ`] bytes, whatever the caller
/// asks for, so that what a decoder gives is the same for any chunk size. A decoder's output
/// on a corrupt stream depends on the buffers it is handed: zstd decodes a frame whose size it
/// knows straight into a buffer big enough for all of it, so one bad block loses the whole
/// frame, while into smaller buffers it first gives the blocks before the bad one; flate2
/// drops what it decoded in the read that fails. With reads of the chunk's size, the lines
/// kept before the error, and the line it names, changed with the chunk size.
struct FixedReads<R> {
    inner: R,
    /// What the last read from `inner` gave, not yet handed out: `buf[pos..len]`.
    buf: Vec<u8>,
    pos: usize,
    len: usize,
}

impl<R> FixedReads<R> {
    fn new(inner: R) -> Self {
        FixedReads {
            inner,
            buf: Vec::new(),
            pos: 0,
            len: 0,
        }
    }
}

impl<R: Read> Read for FixedReads<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.pos == self.len {
            if out.len() >= DECODER_READ {
                // Straight into the caller's buffer (no copy), in the same size as always.
                return self.inner.read(&mut out[..DECODER_READ]);
            }
            if self.buf.is_empty() {
                self.buf = vec![0; DECODER_READ];
            }
            self.len = self.inner.read(&mut self.buf)?;
            self.pos = 0;
        }
        let n = (self.len - self.pos).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

const BOM: &[u8] = b"\xef\xbb\xbf";

/// A buffered reader of the decompressed bytes of `path`; `counter` (if any) counts the bytes
/// read from the file. A UTF-8 byte-order mark at the start (editors on Windows write one) is
/// an encoding marker, not text: it is skipped, as Python's `utf-8-sig` does.
pub fn open_lines(path: &Path, counter: Option<Arc<AtomicU64>>) -> Result<Box<dyn BufRead + Send>> {
    let mut reader = BufReader::with_capacity(1 << 20, open_decompressed(path, counter)?);
    // An error here (a corrupt stream) is left for the first read, which names the line.
    if reader.fill_buf().is_ok_and(|b| b.starts_with(BOM)) {
        reader.consume(3);
    }
    Ok(Box::new(reader))
}

/// Whole lines of one file, from line `first_line` (1-based) on: `data` split after each
/// newline, the last line perhaps without one. Only their number is kept, not where each
/// ends: 8 bytes a line in every chunk in flight came to more than the text itself for lines
/// of a few bytes, and whoever reads the lines finds their ends as fast as a stored list.
#[derive(Default)]
pub struct LineChunk {
    pub file_index: usize,
    pub first_line: u64,
    pub data: Vec<u8>,
    lines: usize,
}

impl LineChunk {
    pub fn len(&self) -> usize {
        self.lines
    }
    pub fn is_empty(&self) -> bool {
        self.lines == 0
    }
    /// The lines in order, newline included when present.
    pub fn lines(&self) -> Lines<'_> {
        Lines { rest: &self.data }
    }
    /// The number of lines of the file consumed once this chunk is done.
    pub fn end_line(&self) -> u64 {
        self.first_line - 1 + self.lines as u64
    }
}

/// See [`LineChunk::lines`].
pub struct Lines<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    #[inline]
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.rest.is_empty() {
            return None;
        }
        let end = memchr::memchr(b'\n', self.rest).map_or(self.rest.len(), |i| i + 1);
        let (line, rest) = self.rest.split_at(end);
        self.rest = rest;
        Some(line)
    }
}

/// The step of reads that continue a line longer than a chunk.
const MIN_READ: usize = 64 << 10;

/// Reads a file as chunks of about `chunk_bytes` of whole lines.
///
/// The decoder writes straight into the chunk's buffer (in reads of a fixed size, see
/// [`FixedReads`]) and lines are found afterwards with
/// `memchr`: going through a `BufRead` line by line cost a second copy of every byte and, on
/// two cores, about a fifth of the time the tokenizer needs.
pub struct LineChunker {
    path: PathBuf,
    file_index: usize,
    reader: Box<dyn Read + Send>,
    /// The start of a line read past the end of the last chunk.
    carry: Vec<u8>,
    at_start: bool,
    eof: bool,
    next_line: u64,
    chunk_bytes: usize,
    /// A chunk already read (the rest of one cut by `skip_lines`), returned first.
    ready: Option<LineChunk>,
    /// A read error met after some whole lines: those lines go out first, the error next call.
    pending: Option<Error>,
}

/// How zstd and flate2 report a checksum that does not match the data they produced.
const CHECKSUM_MESSAGES: [&str; 2] = [
    "doesn't match checksum",
    "does not have a matching checksum",
];

fn read_error(path: &Path, line: u64, e: std::io::Error) -> Error {
    let what = match Compression::of(path) {
        Compression::Zstd => "zstd stream",
        Compression::Gzip => "gzip stream",
        Compression::None => "file",
    };
    let text = e.to_string();
    if CHECKSUM_MESSAGES.iter().any(|m| text.contains(m)) {
        // flate2 words a gzip member's header checksum like its data's: "a checksum" covers both.
        let earlier = if line > 1 {
            ", so lines already read from it may be wrong"
        } else {
            ""
        };
        return Error::Damaged {
            path: path.to_path_buf(),
            message: format!(
                "reading line {line}: the {what} fails a checksum ({text}){earlier}; this cannot \
                 be skipped: replace the file with an intact copy"
            ),
        };
    }
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
            reader: Box::new(FixedReads::new(open_decompressed(path, counter)?)),
            carry: Vec::new(),
            at_start: true,
            eof: false,
            next_line: 1,
            chunk_bytes: chunk_bytes.max(1),
            ready: None,
            pending: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn file_index(&self) -> usize {
        self.file_index
    }

    /// Change the size of the chunks read from now on.
    pub fn set_chunk_bytes(&mut self, chunk_bytes: usize) {
        self.chunk_bytes = chunk_bytes.max(1);
    }

    /// Skip the first `lines` lines (resuming after a checkpoint).
    pub fn skip_lines(&mut self, lines: u64) -> Result<()> {
        let mut skipped = 0;
        let mut scratch = LineChunk::default();
        while skipped < lines {
            let Some(mut chunk) = self.next_chunk_in(scratch)? else {
                return Err(Error::invalid(format!(
                    "{}: has only {skipped} lines but the checkpoint is after line {lines}; the \
                     input changed since the interrupted run",
                    self.path.display(),
                )));
            };
            let n = chunk.len() as u64;
            if skipped + n <= lines {
                skipped += n;
                scratch = chunk;
                continue;
            }
            // Lines `keep` and later stay; line `keep` is not the chunk's last, so it ends in
            // a newline.
            let keep = (lines - skipped) as usize;
            let cut: usize = chunk.lines().take(keep).map(<[u8]>::len).sum();
            chunk.data.drain(..cut);
            chunk.lines -= keep;
            chunk.first_line += keep as u64;
            self.ready = Some(chunk);
            break;
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
        if let Some(chunk) = self.ready.take() {
            return Ok(Some(chunk));
        }
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        // The recycled buffer keeps its length, so its bytes need no zeroing before a read.
        let mut data = recycled.data;
        let mut filled = self.carry.len();
        if data.len() < filled {
            data.resize(filled, 0);
        }
        data[..filled].copy_from_slice(&self.carry);
        self.carry.clear();
        // Read until the chunk is full and holds a whole line, or the input ends.
        let mut whole_lines = memchr::memrchr(b'\n', &data[..filled]).is_some();
        let mut error = None;
        while !self.eof && (filled < self.chunk_bytes || !whole_lines) {
            // Past the chunk size (a line longer than a chunk), read on in smaller steps.
            let want =
                (self.chunk_bytes.saturating_sub(filled)).max(self.chunk_bytes.min(MIN_READ));
            if data.len() < filled + want {
                data.resize(filled + want, 0);
            }
            match self.reader.read(&mut data[filled..filled + want]) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    whole_lines =
                        whole_lines || memchr::memrchr(b'\n', &data[filled..filled + n]).is_some();
                    filled += n;
                    // Only the stream's first bytes can be a byte-order mark. The question is
                    // settled as soon as they differ from one, or once there are three: a
                    // first line of one or two bytes must not leave it open, or with tiny
                    // chunks a mark starting line 2 would be dropped too.
                    if self.at_start {
                        let k = filled.min(BOM.len());
                        if data[..k] != BOM[..k] {
                            self.at_start = false;
                        } else if filled >= BOM.len() {
                            data.drain(..BOM.len());
                            filled -= BOM.len();
                            self.at_start = false;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
        }
        data.truncate(filled);
        // Up to the last newline are whole lines; the rest starts the next chunk, except at
        // the end of the input, where it is the last line (without a newline).
        let complete = match memchr::memrchr(b'\n', &data) {
            Some(i) => i + 1,
            None => 0,
        };
        if error.is_none() && !self.eof {
            self.carry.extend_from_slice(&data[complete..]);
            data.truncate(complete);
        } else if error.is_some() {
            data.truncate(complete); // the line being read when the stream broke is lost
        }
        let lines = memchr::memchr_iter(b'\n', &data).count() + usize::from(!data.ends_with(b"\n"));
        let chunk = LineChunk {
            file_index: self.file_index,
            first_line: self.next_line,
            lines: if data.is_empty() { 0 } else { lines },
            data,
        };
        self.next_line += chunk.len() as u64;
        if let Some(e) = error {
            let e = read_error(&self.path, self.next_line, e);
            if chunk.is_empty() {
                return Err(e);
            }
            self.pending = Some(e);
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
                    for (i, line) in chunk.lines().enumerate() {
                        out.push((chunk.first_line + i as u64, line.to_vec()));
                    }
                }
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn a_recycled_buffer_does_not_make_chunks_larger_than_asked() {
        let dir = std::env::temp_dir().join(format!("pythia-lines-size-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.jsonl");
        let line = format!("{{\"text\": \"{}\"}}\n", "x".repeat(90)); // 103 bytes
        std::fs::write(&path, line.repeat(2000)).unwrap();
        let mut c = LineChunker::open(&path, 0, 100_000, None).unwrap();
        let big = c.next_chunk().unwrap().unwrap();
        // The lines that end within the first 100,000 bytes; the cut one waits for the next.
        assert_eq!(big.len(), 970);
        c.set_chunk_bytes(1000);
        let small = c.next_chunk_in(big).unwrap().unwrap();
        // 90 carried bytes and a read of 1000: the 10 lines that end within those 1090.
        assert_eq!((small.first_line, small.len()), (971, 10));
        std::fs::remove_dir_all(&dir).unwrap();
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

    /// A corrupt block in a zstd frame that declares its size: the lines before the error and
    /// the error are the same for any chunk size. With chunks of the frame's size or more,
    /// zstd decoded the frame in one go and nothing came out before the error; with smaller
    /// ones, the blocks before the bad one did.
    #[test]
    fn a_corrupt_frame_gives_the_same_lines_for_any_chunk_size() {
        let dir = std::env::temp_dir().join(format!("pythia-corrupt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // Compressible text, so that the whole frame fits zstd's input buffer (128 kB).
        let words = [
            "alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta",
        ];
        let mut state = 1u64;
        let text: String = (0..3000)
            .map(|i| {
                let line: Vec<&str> = (0..40)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        words[(state >> 61) as usize]
                    })
                    .collect();
                format!("{{\"text\": \"{} {i}\"}}\n", line.join(" "))
            })
            .collect();
        assert!(text.len() > 4 * DECODER_READ);
        // bulk compression writes the content size into the frame header.
        let frame = zstd::bulk::compress(text.as_bytes(), 3).unwrap();
        assert!(frame.len() < DECODER_READ, "{}", frame.len());
        let path = dir.join("c.jsonl.zst");
        let mut errors = 0;
        for at in (frame.len() / 2..frame.len() - 16).step_by(frame.len() / 40) {
            let mut bytes = frame.clone();
            bytes[at] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            let whole = lines_of(&path, 64 << 20);
            errors += whole.1.is_some() as usize;
            for chunk_bytes in [1, 4096, 100_000, 1 << 20] {
                assert_eq!(
                    lines_of(&path, chunk_bytes),
                    whole,
                    "flip at {at}, {chunk_bytes}"
                );
            }
        }
        assert!(errors > 0, "no flip made the frame fail to decode");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Lines as `str::split_inclusive` sees them, for files of many shapes: a byte-order mark,
    /// no final newline, blank lines, CRLF, lines far longer than a chunk; read in chunks of
    /// many sizes, whole and after skipping some lines.
    #[test]
    fn chunks_hold_exactly_the_files_lines() {
        let dir = std::env::temp_dir().join(format!("pythia-chunks-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let long = "x".repeat(200_000);
        let contents: Vec<String> = vec![
            String::new(),
            "\n".into(),
            "no newline".into(),
            "\u{feff}after a BOM\nsecond".into(),
            "\u{feff}".into(),
            // A mark that starts a later line is text, also after a first line of 1–2 bytes.
            "\n\u{feff}second\n".into(),
            "a\n\u{feff}\n".into(),
            "\r\n\u{feff}".into(),
            format!("a\r\n\n\nb\n{long}\nc\n{long}"),
            (0..5000)
                .map(|i| format!("line {i}{}\n", "y".repeat(i % 97)))
                .collect(),
        ];
        for (k, text) in contents.iter().enumerate() {
            let body = text.strip_prefix('\u{feff}').unwrap_or(text);
            let want: Vec<(u64, Vec<u8>)> = body
                .split_inclusive('\n')
                .enumerate()
                .map(|(i, l)| (i as u64 + 1, l.as_bytes().to_vec()))
                .collect();
            for (name, bytes) in [
                ("plain.jsonl", text.as_bytes().to_vec()),
                ("z.jsonl.zst", zstd::encode_all(text.as_bytes(), 3).unwrap()),
            ] {
                let path = dir.join(format!("{k}-{name}"));
                std::fs::write(&path, bytes).unwrap();
                for chunk_bytes in [1, 7, 4096, 1 << 20] {
                    assert_eq!(
                        lines_of(&path, chunk_bytes),
                        (want.clone(), None),
                        "{k} {name}"
                    );
                    for skip in [1, 2, want.len() as u64 / 2, want.len() as u64] {
                        if skip == 0 || skip > want.len() as u64 {
                            continue;
                        }
                        let mut c = LineChunker::open(&path, 0, chunk_bytes, None).unwrap();
                        c.skip_lines(skip).unwrap();
                        let mut got = Vec::new();
                        while let Some(chunk) = c.next_chunk().unwrap() {
                            for (i, line) in chunk.lines().enumerate() {
                                got.push((chunk.first_line + i as u64, line.to_vec()));
                            }
                        }
                        assert_eq!(
                            got,
                            want[skip as usize..],
                            "{k} {name} {chunk_bytes} {skip}"
                        );
                    }
                }
                let mut c = LineChunker::open(&path, 0, 1 << 20, None).unwrap();
                let err = c.skip_lines(want.len() as u64 + 1).unwrap_err().to_string();
                assert!(err.contains("the input changed"), "{err}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
