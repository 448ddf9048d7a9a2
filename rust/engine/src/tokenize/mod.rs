//! `pythia-data tokenize`: JSON-lines corpora → a GPT-NeoX indexed dataset, exactly what
//! `tools/preprocess_data.py --dataset-impl mmap --append-eod` writes (one item per document:
//! its tokens then EOD; empty texts skipped), plus the per-document subset codes.
//!
//! Worker threads take turns reading (decompressing the next chunk of whole lines), then parse
//! and tokenize the chunk they read; the caller's thread appends the results in input order, so
//! the output is byte-identical for any thread count or chunk size. Memory is bounded by the
//! number of chunks in flight, never by the input. With many cores and files, several files
//! are tokenized at once, each into a part appended in order (`parallel_files.rs`).

mod direct_append;
mod input_digest;
mod lock;
mod output;
mod parallel_files;
mod string_columns;
mod subsets;

pub use input_digest::sampled_digest;
pub use output::{
    npy_u16_bytes, npy_u16_header, subsets_json_path, subsets_npy_path, work_dir, Counts, Position,
    TokenizedOutput, MAX_EXAMPLES,
};
pub use string_columns::add_string_columns;
pub use subsets::{join_subsets, merge_subsets, read_subsets};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::corpus::{parse_document, DocumentFields, LineChunk, LineChunker};
use crate::indexed::DType;
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Stop at the first bad line or stream, naming the file and line; keep nothing.
    Fail,
    /// Skip bad lines (and the rest of a truncated stream), count them, carry on.
    Skip,
}

/// Bytes of input lines per work unit. Large on purpose: a worker alternates between
/// decompressing a chunk and tokenizing it, and each switch evicts the other's working set
/// from the core's caches (zstd's 8 MB window, the tokenizer's tables); with 1 MB chunks the
/// pipeline on two cores ran 10–15 % slower than with 8 MB.
pub const DEFAULT_CHUNK_BYTES: usize = 8 << 20;

#[derive(Clone, Debug)]
pub struct TokenizeOptions {
    pub inputs: Vec<PathBuf>,
    pub prefix: PathBuf,
    pub text_key: String,
    /// Dotted path of a per-document string to keep (`meta.pile_set_name`); None for none.
    pub meta_key: Option<String>,
    pub on_error: OnError,
    /// Worker threads; 0 for all cores.
    pub threads: usize,
    /// Bytes of input lines per work unit (the first and last few are smaller).
    pub chunk_bytes: usize,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Time between progress calls.
    pub progress_interval: Duration,
    /// Whether one thread of its own reads the input (decompression, line splitting) while
    /// the workers only tokenize, instead of the workers taking turns at reading; None chooses
    /// by the number of workers (see [`DEDICATED_READER_MIN_THREADS`]).
    pub dedicated_reader: Option<bool>,
    /// How many input files to tokenize at once, each (or each run of small ones) into a part
    /// appended to the output once the parts before it are (see `parallel_files.rs`); None
    /// chooses by the number of workers (see [`auto_parallel_files`]). The output does not
    /// depend on it.
    pub parallel_files: Option<usize>,
    /// Lines of the first input to skip, as if a run had consumed them: with files at once, the
    /// part that continues a file a run reading one stream had stopped inside.
    pub first_line: u64,
    /// Files tokenized at once go in parts of consecutive files of at least this many bytes
    /// (as stored): a part costs a work directory and a few syncs, too much for each of
    /// thousands of small files.
    pub part_bytes: u64,
}

/// From this many workers on, one thread of its own reads. With few workers, reading in turns
/// is faster: the chunk a worker has just decompressed is still in its cache when it tokenizes
/// it, and on two cores a third busy thread costs every switch its caches. With many, reading
/// one stream is the bottleneck, and it runs faster on a thread that keeps zstd's window and
/// tables in its own cache than passed from core to core.
pub const DEDICATED_READER_MIN_THREADS: usize = 6;

/// From this many workers on, a run over several files tokenizes several at once. One zstd
/// stream decompresses at 0.4–0.8 GB/s of text, so one file at a time leaves cores idle from
/// about 8 workers on; on a 16-core machine 8 files of 2 workers each tokenized 2–2.5× as fast
/// as one file of 16 (docs/benchmarks.md, "Many cores"), which is worth the extra copy of the
/// output that parts cost. Below this, one file at a time keeps every core busy, without it.
pub const PARALLEL_FILES_MIN_THREADS: usize = 12;
/// See [`TokenizeOptions::part_bytes`]: a part of 64 MB (about 200 MB of text) takes two
/// workers a second or more, next to milliseconds for its directory and syncs.
pub const DEFAULT_PART_BYTES: u64 = 64 << 20;
/// Workers per file when files are tokenized at once: two take turns reading, which on two
/// cores is the fastest way to tokenize one stream.
pub const THREADS_PER_PARALLEL_FILE: usize = 2;

impl TokenizeOptions {
    pub fn new(inputs: Vec<PathBuf>, prefix: PathBuf) -> Self {
        TokenizeOptions {
            inputs,
            prefix,
            text_key: "text".into(),
            meta_key: Some("meta.pile_set_name".into()),
            on_error: OnError::Fail,
            threads: 0,
            chunk_bytes: DEFAULT_CHUNK_BYTES,
            checkpoint_interval: Duration::from_secs(30),
            progress_interval: Duration::from_millis(100),
            dedicated_reader: None,
            parallel_files: None,
            first_line: 0,
            part_bytes: DEFAULT_PART_BYTES,
        }
    }
}

/// What the progress callback sees.
#[derive(Clone, Debug, Default)]
pub struct Progress {
    pub documents: u64,
    pub tokens: u64,
    /// Bytes of the input files (as stored, compressed) whose documents are written, this run
    /// and before a resume: read ahead of that is not counted, so that the total is reached
    /// only when the last document is written, however long it takes to tokenize.
    pub input_bytes_read: u64,
    pub input_bytes_total: u64,
    /// Decompressed bytes tokenized by this run.
    pub text_bytes: u64,
}

#[derive(Clone, Debug, Default)]
pub struct TokenizeReport {
    pub counts: Counts,
    /// Documents taken over from an interrupted run's checkpoint.
    pub resumed_documents: u64,
    /// Why a checkpoint in the work directory was not resumed from, if one was there.
    pub restart_note: Option<String>,
    /// The first few skipped problems, `PATH: line N: message`.
    pub skipped_examples: Vec<String>,
    pub dtype: Option<DType>,
}

enum Item {
    /// A chunk, and the input bytes this run had read once it was cut: what the progress shows
    /// as read when it is written (and not before, so that the bar stays short of the end
    /// while the last chunks, perhaps one huge document, are still being tokenized).
    Chunk(LineChunk, u64),
    /// Input `file` could not be read to its end.
    Failed { file: usize, error: Error },
}

/// The result of one chunk: tokens (little-endian, dtype-sized) of each document, back to back.
/// What each document adds is kept in flat arrays, 8 bytes a document: an (end offset, meta
/// string) pair took 32 bytes, and a heap allocation for the string, per document of every
/// chunk in flight, which for millions of documents of a few bytes came to several times the
/// chunks' text.
#[derive(Default)]
struct ChunkResult {
    tokens: Vec<u8>,
    /// Each document's size in tokens (EOD included), as the .idx stores it: little-endian i32.
    sizes: Vec<u8>,
    /// Each document's meta string, as its index in `metas`; empty without a meta key.
    meta_codes: Vec<u32>,
    /// The chunk's distinct meta strings (an absent one as ""), in order of first appearance:
    /// the order in which the writer gives them their codes, as it would one by one.
    metas: Vec<String>,
    /// The tokens of the first document too long for the .idx's int32 sizes.
    too_long: Option<usize>,
    empty: u64,
    /// (line, message) of lines skipped or, in `Fail` mode, the one that stopped the chunk.
    bad: Vec<(u64, String)>,
}

/// The most a buffer kept from chunk to chunk (a worker's, a chunk's or a result's) may hold,
/// in bytes: a chunk's text or tokens take a few times `chunk_bytes` at most, but one huge
/// document (a line of a gigabyte) grows every buffer it passes through to its own size, and
/// kept, those held a few times its size for the rest of the run, per worker.
fn keep_bytes(chunk_bytes: usize) -> usize {
    4 * chunk_bytes + (1 << 20)
}

/// Free `v`'s buffer (its contents are scratch) when it holds more than `max` bytes.
fn drop_if_grown<T>(v: &mut Vec<T>, max: usize) {
    if v.capacity() * std::mem::size_of::<T>() > max {
        *v = Vec::new();
    }
}

/// A worker's buffers, kept from chunk to chunk: allocating them per chunk cost page faults.
#[derive(Default)]
struct Scratch {
    ids: Vec<u32>,
    text: Vec<u8>,
    /// The index in the chunk's `metas` of each meta string seen in the chunk.
    meta_index: HashMap<String, u32>,
}

impl Scratch {
    fn drop_grown(&mut self, max: usize) {
        drop_if_grown(&mut self.ids, max);
        drop_if_grown(&mut self.text, max);
    }
}

impl ChunkResult {
    /// Free the buffers a huge document grew, before the result goes back for reuse.
    fn drop_grown(&mut self, max: usize) {
        drop_if_grown(&mut self.tokens, max);
        drop_if_grown(&mut self.sizes, max);
        drop_if_grown(&mut self.meta_codes, max);
    }
}

/// Tokenize `chunk` into `r`, whose buffers (those of a result already written) are reused;
/// `keep_meta`: whether the output keeps each document's meta string.
#[allow(clippy::too_many_arguments)]
fn process_chunk(
    chunk: &LineChunk,
    tok: &Tokenizer,
    fields: &DocumentFields,
    dtype: DType,
    eod: u32,
    on_error: OnError,
    keep_meta: bool,
    mut r: ChunkResult,
    scratch: &mut Scratch,
    writer_done: &AtomicBool,
) -> ChunkResult {
    r.tokens.clear();
    r.tokens.reserve(chunk.data.len() / 2);
    r.sizes.clear();
    r.meta_codes.clear();
    r.metas.clear();
    r.too_long = None;
    r.empty = 0;
    r.bad.clear();
    scratch.meta_index.clear();
    for (i, line) in chunk.lines().enumerate() {
        // Nothing reads the result once the writer is done (interrupted, or stopped by an
        // error): stop now rather than after up to a chunk of slow text (a second or so).
        if writer_done.load(Ordering::Relaxed) {
            break;
        }
        // Blank lines are not documents. Only JSON's whitespace makes a line blank: a line of
        // form feeds is no JSON value, and is invalid like one of vertical tabs.
        if line
            .iter()
            .all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            continue;
        }
        let line_no = chunk.first_line + i as u64;
        let doc = match parse_document(line, fields, &mut scratch.text) {
            Ok(d) => d,
            Err(msg) => {
                r.bad.push((line_no, msg));
                if on_error == OnError::Fail {
                    return r;
                }
                continue;
            }
        };
        if doc.text.is_empty() {
            r.empty += 1;
            continue;
        }
        document_bytes(tok, &doc.text, dtype, eod, &mut scratch.ids, &mut r.tokens);
        let n_tokens = scratch.ids.len();
        let size = i32::try_from(n_tokens).unwrap_or_else(|_| {
            r.too_long.get_or_insert(n_tokens);
            i32::MAX
        });
        r.sizes.extend_from_slice(&size.to_le_bytes());
        if keep_meta {
            let meta = doc.meta.unwrap_or_default();
            // Documents of one subset tend to come in runs: the last one's code first.
            let code = match r.meta_codes.last() {
                Some(&last) if r.metas[last as usize] == meta => last,
                _ => match scratch.meta_index.get(&meta) {
                    Some(&c) => c,
                    None => {
                        // At most one a document, which a chunk holds far fewer than 2^32 of.
                        let c = r.metas.len() as u32;
                        r.metas.push(meta.clone());
                        scratch.meta_index.insert(meta, c);
                        c
                    }
                },
            };
            r.meta_codes.push(code);
        }
    }
    r
}

/// Append one document's item to `out`: its tokens then `eod`, as little-endian `dtype` values
/// (`dtype` must hold every id: [`DType::best_fitting`] of the vocabulary size). `ids` is scratch.
pub fn document_bytes(
    tok: &Tokenizer,
    text: &str,
    dtype: DType,
    eod: u32,
    ids: &mut Vec<u32>,
    out: &mut Vec<u8>,
) {
    ids.clear();
    tok.encode_into(text, ids);
    ids.push(eod);
    match dtype {
        DType::U16 => out.extend(ids.iter().flat_map(|&t| (t as u16).to_le_bytes())),
        _ => {
            for &t in ids.iter() {
                dtype.write_le(t as i64, out);
            }
        }
    }
}

/// Every input from the resume position, as chunks. With few workers, they take turns calling
/// it (under a lock) rather than a reader thread feeding them: on two cores a third busy thread
/// cost every switch its caches, which made decompression twice as slow as alone and tokenizing
/// 10 % slower; this way the chunk a worker decompresses is still in its cache when it parses
/// it. From [`DEDICATED_READER_MIN_THREADS`] workers on, one thread of its own calls it.
struct InputReader<'a> {
    inputs: &'a [PathBuf],
    /// Each input's stamp when the run began, checked once it is read to its end.
    stamps: &'a [Stamp],
    start: Position,
    chunk_bytes: usize,
    threads: usize,
    on_error: OnError,
    /// Input bytes (compressed, as stored) read so far by this run.
    counter: Arc<AtomicU64>,
    /// Input bytes this run reads in all: what `counter` ends at.
    input_bytes: u64,
    /// Text bytes handed out, and the input bytes read for them: the compression ratio that
    /// turns the input left into text left.
    text_out: u64,
    input_for_text: u64,
    next_file: usize,
    current: Option<LineChunker>,
    stopped: bool,
    /// Items handed out so far: the next item's number.
    seq: u64,
}

/// Chunks smaller than this cost more in hand-offs than they save in balance.
const MIN_CHUNK_BYTES: usize = 256 << 10;

/// Text bytes for chunk `seq`. The first few are small, so that every worker has work within
/// milliseconds (the first chunks also pay for their fresh buffers), and near the end of the
/// input chunks shrink with the text left, so that the workers finish together instead of one
/// tokenizing a last full chunk alone: on 2 cores and 300 MB of text the two cost 3 % together.
fn chunk_size(full: usize, seq: u64, threads: usize, text_left: Option<u64>) -> usize {
    let ramp = if seq < 3 { full >> (3 - seq) } else { full };
    let tail = text_left.map_or(usize::MAX, |left| {
        usize::try_from(left / (2 * threads.max(1) as u64)).unwrap_or(usize::MAX)
    });
    ramp.min(tail).max(full.min(MIN_CHUNK_BYTES)).max(1)
}

impl InputReader<'_> {
    /// Text left to read, estimated from the input left and the compression ratio so far.
    fn text_left(&self) -> Option<u64> {
        if self.input_for_text == 0 {
            return None;
        }
        let input_left = self
            .input_bytes
            .saturating_sub(self.counter.load(Ordering::Relaxed));
        let ratio = self.text_out as f64 / self.input_for_text as f64;
        Some((input_left as f64 * ratio) as u64)
    }

    fn open(&self, f: usize) -> Result<LineChunker> {
        let path = &self.inputs[f];
        let mut c = LineChunker::open(path, f, self.chunk_bytes, Some(self.counter.clone()))?;
        if f == self.start.file && self.start.line > 0 {
            c.skip_lines(self.start.line)?;
        }
        Ok(c)
    }

    /// The next item and its number; None once the inputs are done, or after a failure when
    /// failures stop the run. `recycled` lends its buffers to the next chunk.
    fn next(&mut self, recycled: LineChunk) -> Option<(u64, Item)> {
        let mut recycled = Some(recycled);
        let item = loop {
            if self.stopped {
                return None;
            }
            let size = chunk_size(self.chunk_bytes, self.seq, self.threads, self.text_left());
            let current = match &mut self.current {
                Some(c) => c,
                None => {
                    let f = self.next_file;
                    if f >= self.inputs.len() {
                        self.stopped = true;
                        return None;
                    }
                    self.next_file += 1;
                    match self.open(f) {
                        Ok(c) => self.current.insert(c),
                        Err(error) => break Item::Failed { file: f, error },
                    }
                }
            };
            current.set_chunk_bytes(size);
            let before = self.counter.load(Ordering::Relaxed);
            let next = current.next_chunk_in(recycled.take().unwrap_or_default());
            self.input_for_text += self.counter.load(Ordering::Relaxed) - before;
            match next {
                Ok(Some(chunk)) => {
                    self.text_out += chunk.data.len() as u64;
                    break Item::Chunk(chunk, self.counter.load(Ordering::Relaxed));
                }
                Ok(None) => {
                    let file = current.file_index();
                    self.current = None;
                    // Cut short or rewritten while it was read, a file gives lines of two
                    // versions, or fewer, with no read error to show it.
                    if let Some(error) = self.stamps[file].changed(&self.inputs[file]) {
                        break Item::Failed { file, error };
                    }
                }
                Err(error) => {
                    let file = current.file_index();
                    self.current = None;
                    let error = self.stamps[file]
                        .changed(&self.inputs[file])
                        .unwrap_or(error);
                    break Item::Failed { file, error };
                }
            }
        };
        if matches!(item, Item::Failed { .. }) && self.on_error == OnError::Fail {
            self.stopped = true;
        }
        self.seq += 1;
        Some((self.seq - 1, item))
    }
}

/// What a worker hands back for one item, tagged with the item's number.
enum Outcome {
    Done {
        file: usize,
        end_line: u64,
        text_bytes: usize,
        input_read: u64,
        result: ChunkResult,
    },
    Failed {
        file: usize,
        error: Error,
    },
}

/// What every worker shares: how to turn a read item into its outcome.
#[derive(Clone, Copy)]
struct Worker<'a> {
    tok: &'a Tokenizer,
    fields: &'a DocumentFields,
    dtype: DType,
    eod: u32,
    on_error: OnError,
    /// Whether the output keeps each document's meta string.
    keep_meta: bool,
    /// Results the writer is done with, for their buffers.
    results_back: &'a Mutex<Receiver<ChunkResult>>,
    /// Set once the writer has returned: results are no longer read.
    writer_done: &'a AtomicBool,
    /// See [`keep_bytes`].
    keep_bytes: usize,
}

impl Worker<'_> {
    /// The item's outcome, and its chunk, whose buffers the next read can reuse.
    fn process(&self, item: Item, scratch: &mut Scratch) -> (Outcome, Option<LineChunk>) {
        match item {
            Item::Chunk(mut c, input_read) => {
                let buffers = self
                    .results_back
                    .lock()
                    .unwrap()
                    .try_recv()
                    .unwrap_or_default();
                let result = process_chunk(
                    &c,
                    self.tok,
                    self.fields,
                    self.dtype,
                    self.eod,
                    self.on_error,
                    self.keep_meta,
                    buffers,
                    scratch,
                    self.writer_done,
                );
                let outcome = Outcome::Done {
                    file: c.file_index,
                    end_line: c.end_line(),
                    text_bytes: c.data.len(),
                    input_read,
                    result,
                };
                drop_if_grown(&mut c.data, self.keep_bytes);
                scratch.drop_grown(self.keep_bytes);
                (outcome, Some(c))
            }
            Item::Failed { file, error } => (Outcome::Failed { file, error }, None),
        }
    }
}

/// Why a run stopped early at the caller's request (the progress callback returned false).
pub const INTERRUPTED: &str =
    "interrupted; run the same command again to continue from the last checkpoint";

/// Tokenize `opts.inputs` into `opts.prefix`. `progress` is called about every 100 ms; if it
/// returns false the run checkpoints and stops with an error whose message is [`INTERRUPTED`].
///
/// Threads: `opts.threads` workers, each reading a chunk in turn (decompression, line
/// splitting), then parsing and tokenizing it (from [`DEDICATED_READER_MIN_THREADS`] workers
/// on, one more thread does all the reading), and the caller's thread, which puts results back
/// in input order and writes them. Reading one zstd stream caps a file's rate (about 0.4–0.8
/// GB/s of text), so with many workers and files several files are tokenized at once
/// (`opts.parallel_files`). A fixed number of chunks may be in flight at once, so memory stays
/// bounded however far a fast worker gets ahead of a slow one.
pub fn tokenize_files(
    tok: &Tokenizer,
    opts: &TokenizeOptions,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<TokenizeReport> {
    let prep = prepare(tok, opts)?;
    let at_once = opts
        .parallel_files
        .unwrap_or_else(|| auto_parallel_files(prep.threads))
        .min(opts.inputs.len());
    // Parts an interrupted run left are continued as parts, even one file at a time, rather
    // than tokenized again.
    if at_once > 1 || parallel_files::has_parts(&opts.prefix) {
        return parallel_files::tokenize(tok, opts, &prep, at_once, progress);
    }
    let mut out = prep.open_output(opts)?;
    let report = prep.report(&out);
    let result = tokenize_stream(tok, opts, &prep, &mut out, None, progress);
    finish_run(out, result, report, opts.inputs.len())
}

/// Move a run's output into place once `result` says every input was read, or else keep its
/// checkpoint (interrupted, or an operating-system error) or discard it (bad input).
fn finish_run(
    mut out: TokenizedOutput,
    result: Result<()>,
    mut report: TokenizeReport,
    inputs: usize,
) -> Result<TokenizeReport> {
    let finished = result.and_then(|()| {
        out.inputs_done(inputs);
        out.finish()
    });
    match finished {
        Ok(counts) => {
            report.counts = counts;
            report.skipped_examples = out.skipped_examples.clone();
            Ok(report)
        }
        Err(e) if e.to_string() == INTERRUPTED => Err(e), // checkpoint kept for a restart
        Err(e) => Err(out.abandon(e)),
    }
}

/// How many input files a run of `threads` workers tokenizes at once by default: one below
/// [`PARALLEL_FILES_MIN_THREADS`], else one per [`THREADS_PER_PARALLEL_FILE`] workers.
pub fn auto_parallel_files(threads: usize) -> usize {
    if threads >= PARALLEL_FILES_MIN_THREADS {
        threads / THREADS_PER_PARALLEL_FILE
    } else {
        1
    }
}

/// A command's checked inputs and what identifies it (for resuming only the same command).
struct Prepared {
    eod: u32,
    dtype: DType,
    fingerprint: String,
    /// Size of each input file, in bytes as stored.
    file_bytes: Vec<u64>,
    /// Each input's size and modification time when the run began.
    stamps: Vec<Stamp>,
    input_bytes_total: u64,
    /// Workers, 0 resolved to the number of cores.
    threads: usize,
}

/// What says a file is the one a run began with: its size and modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: u128,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        let mtime_ns = m
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        Stamp {
            len: m.len(),
            mtime_ns,
        }
    }

    /// The error for `path` when it is no longer as stamped (rewritten, cut short or grown
    /// since the run began), None while it is. A file deleted meanwhile was read whole
    /// through the descriptor the run holds, so it counts as unchanged.
    fn changed(&self, path: &std::path::Path) -> Option<Error> {
        let now = std::fs::metadata(path).ok().map(|m| Stamp::of(&m))?;
        let how = if now.len != self.len {
            format!("{} bytes when it began, {} now", self.len, now.len)
        } else {
            "the same size, a new modification time".to_string()
        };
        (now != *self).then(|| Error::Damaged {
            path: path.to_path_buf(),
            message: format!(
                "changed during the run ({how}): what was read may mix two versions; run the \
                 same command again to start over"
            ),
        })
    }
}

/// Most worker threads a run takes: far more than any machine's cores, few enough that a
/// mistyped count fails here rather than in spawning millions of threads (or aborting on the
/// memory for them).
pub const MAX_THREADS: usize = 4096;
/// Largest work unit: each chunk in flight holds about 1.5 times this much.
pub const MAX_CHUNK_BYTES: usize = 1 << 30;

fn prepare(tok: &Tokenizer, opts: &TokenizeOptions) -> Result<Prepared> {
    if opts.inputs.is_empty() {
        return Err(Error::invalid("no input files"));
    }
    for (name, value, most) in [
        ("threads", opts.threads, MAX_THREADS),
        (
            "parallel_files",
            opts.parallel_files.unwrap_or(0),
            MAX_THREADS,
        ),
        ("chunk_bytes", opts.chunk_bytes, MAX_CHUNK_BYTES),
    ] {
        if value > most {
            return Err(Error::invalid(format!(
                "{name} {value} is more than the most a run takes, {most}"
            )));
        }
    }
    let eod = tok.eod_id().ok_or_else(|| {
        Error::invalid("the tokenizer has no <|endoftext|> token to end documents with")
    })?;
    let dtype = DType::best_fitting(tok.vocab_size());
    let mut fingerprint = format!(
        "tokenizer={} text_key={:?} meta_key={:?} on_error={:?} dtype={}",
        tok.sha256(),
        opts.text_key,
        opts.meta_key,
        opts.on_error,
        dtype.numpy_name()
    );
    // Only when set, so that checkpoints made before the option existed still resume.
    if opts.first_line > 0 {
        fingerprint.push_str(&format!(" first_line={}", opts.first_line));
    }
    let mut file_bytes = Vec::with_capacity(opts.inputs.len());
    let mut stamps = Vec::with_capacity(opts.inputs.len());
    for p in &opts.inputs {
        let m = std::fs::metadata(p).map_err(|e| Error::io(p, e))?;
        if !m.is_file() {
            let what = if m.is_dir() {
                "a directory, not an input file: pass the files in it (pythia_data.tokenize's \
                 find_inputs lists them as `pythia-data tokenize` does)"
            } else {
                "not a regular file (a FIFO, socket or device): tokenize reads inputs it can \
                 measure and reopen to resume; save the stream to a file first"
            };
            return Err(Error::invalid(format!("{}: {what}", p.display())));
        }
        file_bytes.push(m.len());
        let stamp = Stamp::of(&m);
        stamps.push(stamp);
        let mtime = stamp.mtime_ns;
        // The canonical path: `in/a.jsonl`, `/data/in/a.jsonl`, `../in/a.jsonl` and a path
        // through a linked folder are the same input.
        fingerprint.push_str(&format!(
            "\n{} {} {} {}",
            std::fs::canonicalize(p)
                .unwrap_or_else(|_| p.clone())
                .display(),
            m.len(),
            mtime,
            sampled_digest(p)?
        ));
    }
    let threads = if opts.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        opts.threads
    };
    Ok(Prepared {
        eod,
        dtype,
        fingerprint,
        input_bytes_total: file_bytes.iter().sum(),
        file_bytes,
        stamps,
        threads,
    })
}

impl Prepared {
    fn open_output(&self, opts: &TokenizeOptions) -> Result<TokenizedOutput> {
        TokenizedOutput::open(
            &opts.prefix,
            self.dtype,
            &self.fingerprint,
            opts.meta_key.as_deref(),
        )
    }

    /// The report of a run on `out`, before its counts are known.
    fn report(&self, out: &TokenizedOutput) -> TokenizeReport {
        TokenizeReport {
            resumed_documents: out.resumed_documents,
            restart_note: out.restart_note.clone(),
            dtype: Some(self.dtype),
            ..Default::default()
        }
    }
}

/// Workers that may join a running stream: with files at once, the workers of a lane that has
/// no file left to start go to the files still being tokenized, so that the last ones do not
/// run on a few cores while the rest idle.
pub(super) struct SpareWorkers<'a> {
    /// Workers given up and not yet taken, shared by every stream of the run.
    pub free: &'a AtomicUsize,
    /// Most workers one stream may have.
    pub max: usize,
    /// Workers this stream took.
    pub joined: AtomicUsize,
}

/// The streams that workers joined, for tests to see that they did.
#[cfg(test)]
static JOINED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

#[cfg(test)]
pub(super) fn workers_joined(prefix: &std::path::Path) -> usize {
    JOINED
        .lock()
        .unwrap()
        .iter()
        .filter(|p| *p == prefix)
        .count()
}

impl SpareWorkers<'_> {
    fn take_one(&self) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// Read `opts.inputs` from `out`'s position (or line `opts.first_line` of the first input) to
/// their end, one at a time, and append every document to `out` in input order; `out` is left
/// unfinished. Stops with [`INTERRUPTED`] after a checkpoint once `progress` returns false.
/// With `spare`, workers given up by other streams join this one (workers reading in turns
/// only: a dedicated reader feeds a fixed pool).
fn tokenize_stream(
    tok: &Tokenizer,
    opts: &TokenizeOptions,
    prep: &Prepared,
    out: &mut TokenizedOutput,
    spare: Option<&SpareWorkers>,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<()> {
    let (eod, dtype, threads) = (prep.eod, prep.dtype, prep.threads);
    let input_bytes_total = prep.input_bytes_total;
    let fields = DocumentFields::new(&opts.text_key, opts.meta_key.as_deref());
    if out.position == Position::default() && opts.first_line > 0 {
        out.position.line = opts.first_line;
    }
    let start = out.position;
    // Two chunks per worker (one being tokenized, one waiting to be written behind a slower
    // one) keep every worker busy; memory is about 1.5 × chunk_bytes per chunk in flight.
    let in_flight = 2 * threads + 2;
    let dedicated_reader = opts
        .dedicated_reader
        .unwrap_or(threads >= DEDICATED_READER_MIN_THREADS);
    let spare = spare.filter(|s| !dedicated_reader && s.max > threads);
    // Room for the permits of the workers that may join (two each, as for the first ones).
    let most_in_flight = in_flight + spare.map_or(0, |s| 2 * (s.max - threads));
    // Bytes of files finished before the resume point count as read, for an honest ETA.
    let already: u64 = prep.file_bytes[..start.file.min(opts.inputs.len())]
        .iter()
        .sum();
    let reader = InputReader {
        inputs: &opts.inputs,
        stamps: &prep.stamps,
        start,
        chunk_bytes: opts.chunk_bytes,
        threads,
        on_error: opts.on_error,
        counter: Arc::new(AtomicU64::new(0)),
        input_bytes: input_bytes_total - already,
        text_out: 0,
        input_for_text: 0,
        next_file: start.file,
        current: None,
        stopped: false,
        seq: 0,
    };
    let (outcome_tx, outcome_rx) = std::sync::mpsc::channel::<(u64, Outcome)>();
    // What a joining worker sends its outcomes with; dropped by the first worker to find the
    // input done, since the writer only ends once every sender is gone.
    let joining_tx = Mutex::new(spare.map(|_| outcome_tx.clone()));
    // Permits bound the items between reading and writing; the writer returns one per item
    // it has written.
    let (permit_tx, permit_rx) = sync_channel::<()>(most_in_flight);
    // Written results go back to the workers, for their buffers.
    let (results_back_tx, results_back_rx) = std::sync::mpsc::channel::<ChunkResult>();
    let results_back_rx = Mutex::new(results_back_rx);
    for _ in 0..in_flight {
        permit_tx.send(()).unwrap();
    }
    // Set once the writer is done (finished, failed or interrupted): the dedicated reader still
    // holds permits then, and would read on with them, delaying a Ctrl-C by that many chunks;
    // workers stop tokenizing what nobody will read.
    let writer_done = AtomicBool::new(false);
    let worker = Worker {
        tok,
        fields: &fields,
        dtype,
        eod,
        on_error: opts.on_error,
        keep_meta: opts.meta_key.is_some(),
        results_back: &results_back_rx,
        writer_done: &writer_done,
        keep_bytes: keep_bytes(opts.chunk_bytes),
    };

    let (reader, permit_rx) = (Mutex::new(reader), Mutex::new(permit_rx));
    // With a dedicated reader: read chunks go to whichever worker is free, tokenized ones come
    // back to the reader for their buffers. Each side stops once the other's end is dropped.
    let (item_tx, item_rx) = std::sync::mpsc::channel::<(u64, Item)>();
    let item_rx = Mutex::new(item_rx);
    let (spare_tx, spare_rx) = std::sync::mpsc::channel::<LineChunk>();

    let result = std::thread::scope(|scope| {
        let (reader, permit_rx, item_rx) = (&reader, &permit_rx, &item_rx);
        let writer_done = &writer_done;
        if dedicated_reader {
            scope.spawn(move || {
                let (mut reader, permit_rx) = (reader.lock().unwrap(), permit_rx.lock().unwrap());
                while permit_rx.recv().is_ok() && !writer_done.load(Ordering::Relaxed) {
                    let spare = spare_rx.try_recv().unwrap_or_default();
                    let Some(item) = reader.next(spare) else {
                        return;
                    };
                    if item_tx.send(item).is_err() {
                        return;
                    }
                }
            });
            for _ in 0..threads {
                let (outcome_tx, spare_tx) = (outcome_tx.clone(), spare_tx.clone());
                scope.spawn(move || {
                    tok.with_pooled_cache(|| {
                        let mut scratch = Scratch::default();
                        loop {
                            let Ok((seq, item)) = item_rx.lock().unwrap().recv() else {
                                return;
                            };
                            if writer_done.load(Ordering::Relaxed) {
                                return;
                            }
                            let (outcome, spare) = worker.process(item, &mut scratch);
                            if let Some(spare) = spare {
                                let _ = spare_tx.send(spare);
                            }
                            if outcome_tx.send((seq, outcome)).is_err() {
                                return;
                            }
                        }
                    })
                });
            }
        } else {
            drop((item_tx, spare_tx));
        }
        let joining_tx = &joining_tx;
        let start_worker = move |outcome_tx: Sender<(u64, Outcome)>| {
            scope.spawn(move || {
                tok.with_pooled_cache(|| {
                    let mut spare = LineChunk::default();
                    let mut scratch = Scratch::default();
                    loop {
                        if permit_rx.lock().unwrap().recv().is_err() {
                            return;
                        }
                        let next = reader.lock().unwrap().next(std::mem::take(&mut spare));
                        let Some((seq, item)) = next else {
                            drop(joining_tx.lock().unwrap().take());
                            return;
                        };
                        let (outcome, used) = worker.process(item, &mut scratch);
                        spare = used.unwrap_or_default();
                        if outcome_tx.send((seq, outcome)).is_err() {
                            return;
                        }
                    }
                })
            });
        };
        if !dedicated_reader {
            for _ in 0..threads {
                start_worker(outcome_tx.clone());
            }
        }
        drop(outcome_tx);
        let more_permits = permit_tx.clone();
        let mut workers = threads;
        // A worker joins between results; one per call, so that the workers given up are
        // shared out between the streams still running.
        let mut join_one = move || {
            let Some(spare) = spare else { return };
            if workers >= spare.max || !spare.take_one() {
                return;
            }
            let Some(tx) = joining_tx.lock().unwrap().clone() else {
                // The input is done: nothing left for a worker to do.
                spare.free.fetch_add(1, Ordering::AcqRel);
                return;
            };
            workers += 1;
            spare.joined.fetch_add(1, Ordering::Relaxed);
            reader.lock().unwrap().threads = workers;
            for _ in 0..2 {
                let _ = more_permits.try_send(());
            }
            start_worker(tx);
            #[cfg(test)]
            JOINED.lock().unwrap().push(opts.prefix.clone());
        };
        // The channels' other ends are moved in and dropped on any early return, which stops
        // the workers (no permits, nowhere to send).
        let written = write_in_order(
            outcome_rx,
            permit_tx,
            results_back_tx,
            out,
            opts,
            &prep.stamps,
            input_bytes_total - already,
            |docs_progress| {
                join_one();
                let p = Progress {
                    input_bytes_read: already + docs_progress.input_bytes_read,
                    input_bytes_total,
                    ..docs_progress
                };
                progress(&p)
            },
        );
        writer_done.store(true, Ordering::Relaxed);
        written
    });
    result
}

/// What a run stopped by bad input can do instead (the skipped examples go without it).
const SKIP_LINES_HINT: &str = "skip such lines with --on-error skip";
const SKIP_REST_HINT: &str = "skip the unreadable rest of such files with --on-error skip";

/// Progress is reported when results were written, and at least this often while a chunk is
/// being tokenized (with slow text or one worker, a chunk can take a second), so that a stop
/// asked for through the progress call takes effect promptly.
const PROGRESS_HEARTBEAT: Duration = Duration::from_millis(100);

/// Write the workers' outcomes in input order to `out`, reporting progress as it goes;
/// `input_bytes` is what this run reads of the inputs (as stored), what the last call shows.
#[allow(clippy::too_many_arguments)]
fn write_in_order(
    outcomes: Receiver<(u64, Outcome)>,
    permits: SyncSender<()>,
    results_back: std::sync::mpsc::Sender<ChunkResult>,
    out: &mut TokenizedOutput,
    opts: &TokenizeOptions,
    stamps: &[Stamp],
    input_bytes: u64,
    mut progress: impl FnMut(Progress) -> bool,
) -> Result<()> {
    let mut last_progress = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut checkpointed = out.position;
    let mut text_bytes = 0u64;
    let mut input_written = 0u64;
    let mut waiting: BTreeMap<u64, Outcome> = BTreeMap::new();
    let mut next = 0u64;
    let mut finished = false;
    while !finished {
        match outcomes.recv_timeout(
            opts.progress_interval
                .clamp(Duration::from_millis(1), PROGRESS_HEARTBEAT),
        ) {
            Ok((seq, outcome)) => {
                waiting.insert(seq, outcome);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => finished = true,
        }
        let before = next;
        while let Some(outcome) = waiting.remove(&next) {
            next += 1;
            let _ = permits.send(());
            match outcome {
                Outcome::Done {
                    file,
                    end_line,
                    text_bytes: n,
                    input_read,
                    result: mut r,
                } => {
                    let path = &opts.inputs[file];
                    if opts.on_error == OnError::Fail {
                        if let Some((line, msg)) = r.bad.first() {
                            // A file cut short in a line ends in invalid JSON: say why.
                            if let Some(changed) = stamps[file].changed(path) {
                                return Err(changed);
                            }
                            return Err(Error::corrupt(
                                path,
                                format!("line {line}: {msg}; {SKIP_LINES_HINT}"),
                            ));
                        }
                    }
                    for (line, msg) in &r.bad {
                        out.counts.errors_skipped += 1;
                        out.add_skipped_example(|| {
                            format!("{}: line {line}: {msg}", path.display())
                        });
                    }
                    if let Some(n_tokens) = r.too_long {
                        return Err(output::too_long(n_tokens));
                    }
                    out.add_sized_documents(&r.tokens, &r.sizes, &r.metas, &r.meta_codes)?;
                    out.counts.empty_skipped += r.empty;
                    r.drop_grown(keep_bytes(opts.chunk_bytes));
                    let _ = results_back.send(r);
                    text_bytes += n as u64;
                    input_written = input_written.max(input_read);
                    out.position = Position {
                        file,
                        line: end_line,
                    };
                }
                Outcome::Failed { file, error } => {
                    if opts.on_error == OnError::Fail || matches!(error, Error::Damaged { .. }) {
                        return Err(match error {
                            Error::Corrupt { path, message } if opts.on_error == OnError::Fail => {
                                Error::Corrupt {
                                    path,
                                    message: format!("{message}; {SKIP_REST_HINT}"),
                                }
                            }
                            other => other,
                        });
                    }
                    out.counts.errors_skipped += 1;
                    out.add_skipped_example(|| error.to_string());
                    // The rest of this file is unreadable: resume after it.
                    out.position = Position {
                        file: file + 1,
                        line: 0,
                    };
                }
            }
        }
        if finished && !waiting.is_empty() {
            return Err(Error::invalid(
                "internal error: a tokenize worker stopped early",
            ));
        }
        if finished {
            // Every input is read, this run's `input_bytes`: the chunks only count what was
            // read when they were cut, so the last files that hold no line (an empty zstd or
            // gzip stream, a byte-order mark alone) or a resume at a file's end left the
            // last call short of the total.
            input_written = input_bytes;
        }
        let moved = next > before;
        let since = last_progress.elapsed();
        let heartbeat = since >= opts.progress_interval.max(PROGRESS_HEARTBEAT);
        if finished || (moved && since >= opts.progress_interval) || heartbeat {
            last_progress = Instant::now();
            let keep_going = progress(Progress {
                documents: out.counts.documents,
                tokens: out.counts.tokens,
                input_bytes_read: input_written,
                text_bytes,
                ..Default::default()
            });
            if !keep_going {
                out.checkpoint(out.position)?;
                return Err(Error::invalid(INTERRUPTED));
            }
        }
        // Only once something was written since the last one: an empty checkpoint is no
        // progress to keep.
        if last_checkpoint.elapsed() >= opts.checkpoint_interval && out.position != checkpointed {
            out.checkpoint(out.position)?;
            checkpointed = out.position;
            last_checkpoint = Instant::now();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indexed::{IndexedDataset, IndexedDatasetBuilder};
    use std::io::Write;

    /// Run `opts` and stop it, as Ctrl-C does, at its `stop_at`-th progress call; the run must
    /// end interrupted, its checkpoint kept.
    pub(super) fn interrupt_at(tok: &Tokenizer, opts: &TokenizeOptions, stop_at: u64) {
        let mut calls = 0u64;
        let result = tokenize_files(tok, opts, &mut |_| {
            calls += 1;
            calls < stop_at
        });
        assert_eq!(result.unwrap_err().to_string(), INTERRUPTED);
        assert!(work_dir(&opts.prefix).join("checkpoint.json").exists());
    }

    #[test]
    fn chunks_ramp_up_then_shrink_with_the_text_left() {
        let full = 8 << 20;
        // The first three: an eighth, a quarter, a half.
        assert_eq!(chunk_size(full, 0, 2, None), 1 << 20);
        assert_eq!(chunk_size(full, 1, 2, None), 2 << 20);
        assert_eq!(chunk_size(full, 2, 2, None), 4 << 20);
        assert_eq!(chunk_size(full, 3, 2, None), full);
        assert_eq!(chunk_size(full, 9, 2, Some(1 << 40)), full);
        // Near the end, a quarter of what is left on 2 workers, an eighth on 4...
        assert_eq!(chunk_size(full, 9, 2, Some(20 << 20)), 5 << 20);
        assert_eq!(chunk_size(full, 9, 4, Some(20 << 20)), (20 << 20) / 8);
        // ...but never below the floor, nor above a small configured size.
        assert_eq!(chunk_size(full, 9, 2, Some(1000)), MIN_CHUNK_BYTES);
        assert_eq!(chunk_size(0, 9, 2, Some(0)), 1);
        assert_eq!(chunk_size(100, 0, 2, Some(1 << 30)), 100);
    }

    fn neox() -> Tokenizer {
        Tokenizer::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../python/pythia_data/data/20B_tokenizer.json"
        ))
        .unwrap()
    }

    fn corpus(dir: &std::path::Path) -> (Vec<PathBuf>, Vec<String>) {
        let texts: Vec<String> = (0..300)
            .map(|i| match i % 7 {
                0 => String::new(),
                1 => format!("doc {i} <|endoftext|> with  spaces\r\n"),
                _ => format!(
                    "Document number {i}: {}",
                    "words and more words. ".repeat(i % 13)
                ),
            })
            .collect();
        let mut paths = Vec::new();
        for (f, part) in texts.chunks(100).enumerate() {
            let p = dir.join(format!("part{f}.jsonl.zst"));
            let mut enc =
                zstd::stream::write::Encoder::new(std::fs::File::create(&p).unwrap(), 3).unwrap();
            for (i, t) in part.iter().enumerate() {
                let line = serde_json::json!({"text": t, "meta": {"pile_set_name": format!("set{}", i % 3)}});
                writeln!(enc, "{line}").unwrap();
            }
            enc.finish().unwrap();
            paths.push(p);
        }
        (paths, texts)
    }

    fn read(prefix: &std::path::Path) -> Vec<u8> {
        let mut all = std::fs::read(crate::indexed::bin_path(prefix)).unwrap();
        all.extend(std::fs::read(crate::indexed::idx_path(prefix)).unwrap());
        all.extend(std::fs::read(subsets_npy_path(prefix)).unwrap());
        all.extend(std::fs::read(subsets_json_path(prefix)).unwrap());
        all
    }

    /// A document far larger than a chunk grows the buffers it passes through to its size;
    /// they are freed once it is done, not kept for the rest of the run (in every worker, a
    /// gigabyte's line held several gigabytes until the end).
    #[test]
    fn buffers_grown_by_a_huge_document_are_not_kept() {
        let dir = std::env::temp_dir().join(format!("pythia-tok-grown-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.jsonl");
        // Escapes, so that the text is unescaped into the worker's scratch buffer.
        let huge = "a few words\\n".repeat(300_000);
        // Then more small lines than the reads past the chunk size take with the huge one.
        let small = "{\"text\": \"b\"}\n".repeat(10_000);
        std::fs::write(&path, format!("{{\"text\": \"{huge}\"}}\n{small}")).unwrap();
        let tok = neox();
        let fields = DocumentFields::new("text", None);
        let (_back_tx, back_rx) = std::sync::mpsc::channel::<ChunkResult>();
        let (back_rx, done) = (Mutex::new(back_rx), AtomicBool::new(false));
        let chunk_bytes = 1000;
        let keep = keep_bytes(chunk_bytes);
        assert!(huge.len() > 3 * keep);
        let worker = Worker {
            tok: &tok,
            fields: &fields,
            dtype: DType::U16,
            eod: 0,
            on_error: OnError::Fail,
            keep_meta: false,
            results_back: &back_rx,
            writer_done: &done,
            keep_bytes: keep,
        };
        let mut lines = LineChunker::open(&path, 0, chunk_bytes, None).unwrap();
        let mut scratch = Scratch::default();
        let chunk = lines.next_chunk().unwrap().unwrap();
        assert!(chunk.len() < 10_000);
        let (outcome, spare) = worker.process(Item::Chunk(chunk, 0), &mut scratch);
        let Outcome::Done { mut result, .. } = outcome else {
            panic!("the huge line failed")
        };
        assert!(result.tokens.len() > keep);
        result.drop_grown(keep);
        let spare = spare.unwrap();
        for (what, bytes) in [
            ("chunk", spare.data.capacity()),
            ("text", scratch.text.capacity()),
            ("ids", 4 * scratch.ids.capacity()),
            ("tokens", result.tokens.capacity()),
        ] {
            assert!(bytes <= keep, "{what}: {bytes} bytes kept");
        }
        // The freed buffers still serve the next chunk.
        let chunk = lines.next_chunk_in(spare).unwrap().unwrap();
        let (outcome, _) = worker.process(Item::Chunk(chunk, 0), &mut scratch);
        let Outcome::Done { result, .. } = outcome else {
            panic!("the small line failed")
        };
        assert!(!result.tokens.is_empty());
        assert!(result.tokens.chunks(4).all(|t| t == [67, 0, 0, 0])); // "b", then the EOD
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn same_bytes_as_the_builder_for_any_threads_and_chunks() {
        let dir = std::env::temp_dir().join(format!("pythia-tok-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (paths, texts) = corpus(&dir);
        let tok = neox();
        // Reference: GPT-NeoX's layout through the indexed builder, one document at a time.
        let reference = dir.join("reference");
        let mut b = IndexedDatasetBuilder::create(&reference, DType::U16).unwrap();
        for t in texts.iter().filter(|t| !t.is_empty()) {
            let mut ids = tok.encode(t);
            ids.push(0);
            b.add_document_u32(&ids).unwrap();
        }
        b.finish().unwrap();
        let mut outputs = Vec::new();
        for (threads, chunk_bytes, dedicated_reader) in [
            (1, 1 << 20, false),
            (2, 100, false),
            (3, 1, false),
            (1, 1 << 20, true),
            (2, 100, true),
            (7, 1, true),
        ] {
            let prefix = dir.join(format!("out-{threads}-{chunk_bytes}-{dedicated_reader}"));
            let mut opts = TokenizeOptions::new(paths.clone(), prefix.clone());
            opts.threads = threads;
            opts.chunk_bytes = chunk_bytes;
            opts.dedicated_reader = Some(dedicated_reader);
            let report = tokenize_files(&tok, &opts, &mut |_| true).unwrap();
            assert_eq!(report.counts.empty_skipped, 43);
            assert_eq!(report.counts.documents, 257);
            let got = IndexedDataset::open(&prefix).unwrap();
            assert_eq!(got.len(), 257);
            assert_eq!(
                std::fs::read(crate::indexed::bin_path(&prefix)).unwrap(),
                std::fs::read(crate::indexed::bin_path(&reference)).unwrap()
            );
            assert_eq!(
                std::fs::read(crate::indexed::idx_path(&prefix)).unwrap(),
                std::fs::read(crate::indexed::idx_path(&reference)).unwrap()
            );
            assert!(!work_dir(&prefix).exists());
            outputs.push(read(&prefix));
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tiny_documents_keep_their_sizes_and_subsets_for_any_threads_and_chunks() {
        // Each chunk keeps a document's size and subset in flat arrays, its subsets numbered
        // by the chunk and renumbered by the writer: runs of one subset, subsets that come
        // back, absent and empty ones, empty texts and blank lines between.
        let dir = std::env::temp_dir().join(format!("pythia-tok-tiny-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tok = neox();
        let mut text = String::new();
        let mut want = Vec::new();
        for i in 0..5000 {
            let meta = match i % 11 {
                0 => None,
                1 => Some(String::new()),
                2..=5 => Some(format!("run{}", i / 500)),
                _ => Some(format!("set{}", i % 5)),
            };
            let doc = if i % 13 == 0 {
                String::new()
            } else {
                format!("{}", i % 7)
            };
            let line = match &meta {
                Some(m) => serde_json::json!({"text": doc, "meta": {"pile_set_name": m}}),
                None => serde_json::json!({"text": doc}),
            };
            text.push_str(&format!("{line}\n"));
            if i % 17 == 0 {
                text.push_str(" \n");
            }
            if !doc.is_empty() {
                let ids = tok.encode(&doc).into_iter().map(|t| t as i64).chain([0]);
                want.push((ids.collect::<Vec<i64>>(), meta.unwrap_or_default()));
            }
        }
        let path = dir.join("tiny.jsonl");
        std::fs::write(&path, &text).unwrap();
        let mut outputs = Vec::new();
        for (threads, chunk_bytes, dedicated_reader) in [
            (1, 8 << 20, false),
            (2, 1000, false),
            (3, 1, false),
            (2, 333, true),
        ] {
            let prefix = dir.join(format!("out-{threads}-{chunk_bytes}"));
            let mut opts = TokenizeOptions::new(vec![path.clone()], prefix.clone());
            opts.threads = threads;
            opts.chunk_bytes = chunk_bytes;
            opts.dedicated_reader = Some(dedicated_reader);
            tokenize_files(&tok, &opts, &mut |_| true).unwrap();
            let got = IndexedDataset::open(&prefix).unwrap();
            let (_, names, codes) = read_subsets(&prefix).unwrap();
            assert_eq!(got.len(), want.len());
            for (i, (ids, meta)) in want.iter().enumerate() {
                assert_eq!(&got.get_i64(i, 0, None).unwrap(), ids, "document {i}");
                assert_eq!(&names[codes[i] as usize], meta, "document {i}");
            }
            outputs.push(read(&prefix));
        }
        assert!(outputs.windows(2).all(|w| w[0] == w[1]));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The test corpus in `dir`, the tokenizer, and the prefix of an uninterrupted run over it.
    fn corpus_and_full_run(dir: &std::path::Path) -> (Vec<PathBuf>, Tokenizer, PathBuf) {
        std::fs::create_dir_all(dir).unwrap();
        let (paths, _) = corpus(dir);
        let tok = neox();
        let full = dir.join("full");
        let opts = TokenizeOptions::new(paths.clone(), full.clone());
        tokenize_files(&tok, &opts, &mut |_| true).unwrap();
        (paths, tok, full)
    }

    #[test]
    fn interrupted_run_resumes_to_identical_output() {
        let dir = std::env::temp_dir().join(format!("pythia-tok-resume-{}", std::process::id()));
        let (paths, tok, full) = corpus_and_full_run(&dir);
        for (threads, dedicated_reader) in [(1, false), (3, true)] {
            let prefix = dir.join(format!("resumed-{threads}"));
            let mut opts = TokenizeOptions::new(paths.clone(), prefix.clone());
            opts.threads = threads;
            opts.dedicated_reader = Some(dedicated_reader);
            opts.chunk_bytes = 500;
            opts.checkpoint_interval = Duration::ZERO;
            opts.progress_interval = Duration::ZERO;
            // Stop after a few progress calls, then again later, then run to the end.
            for stop_after in [3u64, 8] {
                let mut calls = 0u64;
                let err = tokenize_files(&tok, &opts, &mut |p| {
                    calls += 1;
                    assert!(p.documents > 0);
                    calls < stop_after
                });
                assert_eq!(err.unwrap_err().to_string(), INTERRUPTED);
                assert!(!crate::indexed::idx_path(&prefix).exists());
                assert!(work_dir(&prefix).join("checkpoint.json").exists());
                std::thread::sleep(Duration::from_millis(1));
            }
            // Finished in the other reading design, with another thread count: a checkpoint
            // does not depend on either.
            opts.dedicated_reader = Some(!dedicated_reader);
            opts.threads = if dedicated_reader { 2 } else { 7 };
            let report = tokenize_files(&tok, &opts, &mut |_| true).unwrap();
            assert!(report.resumed_documents > 0);
            assert_eq!(read(&prefix), read(&full));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn progress_stays_short_of_the_end_until_the_last_document_is_written() {
        // Small documents, then 1 MB of one letter, which BPE takes about half a second over:
        // the input is all read long before that document is written.
        let dir = std::env::temp_dir().join(format!("pythia-tok-bar-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text: String = (0..200)
            .map(|i| format!("{{\"text\": \"document {i}\"}}\n"))
            .collect();
        text.push_str(&format!("{{\"text\": \"{}\"}}\n", "a".repeat(1 << 20)));
        let path = dir.join("in.jsonl");
        std::fs::write(&path, &text).unwrap();
        let mut opts = TokenizeOptions::new(vec![path], dir.join("out"));
        opts.threads = 2;
        opts.chunk_bytes = 4096;
        opts.progress_interval = Duration::ZERO;
        let mut calls = Vec::new();
        tokenize_files(&neox(), &opts, &mut |p| {
            calls.push((p.documents, p.input_bytes_read, p.input_bytes_total));
            true
        })
        .unwrap();
        let &(documents, read, total) = calls.last().unwrap();
        assert_eq!((documents, read), (201, total));
        let waiting: Vec<_> = calls.iter().filter(|c| c.0 == 200).collect();
        assert!(
            !waiting.is_empty(),
            "no progress while the long document was tokenized"
        );
        assert!(
            calls.iter().filter(|c| c.0 < 201).all(|c| c.1 < c.2),
            "{waiting:?}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_last_progress_call_shows_every_input_read() {
        // Inputs that hold no line give no chunk, and a chunk carries the bytes read when it
        // was cut: those files at the end left the last call short of the total.
        let dir = std::env::temp_dir().join(format!("pythia-tok-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text = dir.join("a.jsonl");
        std::fs::write(&text, "{\"text\": \"a b\"}\n{\"text\": \"c\"}\n").unwrap();
        let empty_zst = dir.join("b.jsonl.zst");
        std::fs::write(&empty_zst, zstd::encode_all(&b""[..], 3).unwrap()).unwrap();
        let bom = dir.join("c.jsonl");
        std::fs::write(&bom, b"\xef\xbb\xbf").unwrap();
        let last_call = |inputs: Vec<PathBuf>, stop_at: Option<u64>| {
            let mut opts = TokenizeOptions::new(inputs, dir.join("out"));
            opts.threads = 2;
            opts.progress_interval = Duration::ZERO;
            opts.checkpoint_interval = Duration::ZERO;
            let mut calls = Vec::new();
            let result = tokenize_files(&neox(), &opts, &mut |p| {
                calls.push((p.documents, p.input_bytes_read, p.input_bytes_total));
                stop_at.is_none_or(|n| p.documents < n)
            });
            (result.map(|r| r.counts.documents), calls.last().copied())
        };
        for (inputs, want) in [
            (vec![empty_zst.clone()], 0),
            (vec![text.clone(), empty_zst.clone(), bom.clone()], 2),
        ] {
            let (documents, last) = last_call(inputs, None);
            let (_, read, total) = last.unwrap();
            assert_eq!((documents.unwrap(), read), (want, total));
        }
        // Stopped once the first file was written, a run resumes at its end: nothing of it is
        // read again, yet it counts as read.
        let inputs = vec![text.clone(), text.clone()];
        let (stopped, _) = last_call(inputs.clone(), Some(2));
        assert_eq!(stopped.unwrap_err().to_string(), INTERRUPTED);
        let (documents, last) = last_call(inputs, None);
        let (_, read, total) = last.unwrap();
        assert_eq!((documents.unwrap(), read), (4, total));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn counts_past_any_machine_are_refused_before_work() {
        // 2^40 threads aborted the process on the memory for their handles.
        let dir = std::env::temp_dir().join(format!("pythia-tok-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("in.jsonl");
        std::fs::write(&path, "{\"text\": \"a\"}\n").unwrap();
        let base = TokenizeOptions::new(vec![path], dir.join("out"));
        type Set = fn(&mut TokenizeOptions);
        let cases: [(&str, Set); 3] = [
            ("threads 1099511627776 is more", |o| o.threads = 1 << 40),
            ("parallel_files 5000 is more", |o| {
                o.parallel_files = Some(5000)
            }),
            ("chunk_bytes 2147483648 is more", |o| {
                o.chunk_bytes = 2 << 30
            }),
        ];
        for (message, set) in cases {
            let mut opts = base.clone();
            set(&mut opts);
            let err = tokenize_files(&neox(), &opts, &mut |_| true).unwrap_err();
            assert!(err.to_string().starts_with(message), "{err}");
            assert!(!work_dir(&opts.prefix).exists());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_input_changed_during_the_run_stops_it_whatever_on_error() {
        // A JSON-lines input cut short at a line's end, grown or rewritten while it was read
        // gave a dataset of two versions or fewer documents, and no error; cut inside a line,
        // "invalid JSON" instead of the cause.
        let dir = std::env::temp_dir().join(format!("pythia-tok-changed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let text: String = (0..3000)
            .map(|i| format!("{{\"text\": \"document number {i} of the input\"}}\n"))
            .collect();
        let path = dir.join("in.jsonl");
        let tok = neox();
        type Change = fn(&std::path::Path, &str);
        let changes: [(&str, Change); 4] = [
            ("cut at a line's end", |p, t| {
                let end = t[..t.len() / 2].rfind('\n').unwrap() + 1;
                std::fs::write(p, &t[..end]).unwrap();
            }),
            ("cut inside a line", |p, t| {
                std::fs::write(p, &t[..t.len() / 2 + 7]).unwrap()
            }),
            ("grown", |p, t| {
                std::fs::write(p, format!("{t}{t}")).unwrap()
            }),
            ("rewritten, same size", |p, t| {
                std::fs::write(p, t.replace("number", "NUMBER")).unwrap()
            }),
        ];
        for (what, change) in changes {
            for on_error in [OnError::Fail, OnError::Skip] {
                std::fs::write(&path, &text).unwrap();
                // An old time, so that any rewrite gives a new one whatever the clock's step.
                let old = std::time::UNIX_EPOCH + Duration::from_secs(1 << 30);
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .unwrap()
                    .set_modified(old)
                    .unwrap();
                let prefix = dir.join("out");
                let mut opts = TokenizeOptions::new(vec![path.clone()], prefix.clone());
                opts.threads = 1;
                opts.chunk_bytes = 4096;
                opts.on_error = on_error;
                opts.progress_interval = Duration::ZERO;
                let mut changed = false;
                let result = tokenize_files(&tok, &opts, &mut |_| {
                    if !changed {
                        change(&path, &text);
                        changed = true;
                    }
                    true
                });
                let err = result.expect_err(what).to_string();
                assert!(
                    err.contains("in.jsonl: changed during the run"),
                    "{what}: {err}"
                );
                assert!(!prefix.with_extension("bin").exists(), "{what}");
                assert!(!work_dir(&prefix).exists(), "{what}");
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_os_error_reopening_a_checkpoint_keeps_it_and_says_how_to_continue() {
        let dir = std::env::temp_dir().join(format!("pythia-tok-reopen-{}", std::process::id()));
        let (paths, tok, full) = corpus_and_full_run(&dir);
        let prefix = dir.join("out");
        let mut opts = TokenizeOptions::new(paths, prefix.clone());
        opts.chunk_bytes = 500;
        opts.checkpoint_interval = Duration::ZERO;
        opts.progress_interval = Duration::ZERO;
        interrupt_at(&tok, &opts, 4);
        // A work file that cannot be opened (here a folder in its place; a full disk or lost
        // permissions elsewhere) stops the next run before any work, with the way back.
        let sizes = work_dir(&prefix).join("sizes.i32");
        let saved = std::fs::read(&sizes).unwrap();
        std::fs::remove_file(&sizes).unwrap();
        std::fs::create_dir(&sizes).unwrap();
        std::fs::write(sizes.join("x"), vec![0u8; 1 << 16]).unwrap();
        let err = tokenize_files(&tok, &opts, &mut |_| true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("run the same command again"), "{err}");
        assert!(work_dir(&prefix).join("checkpoint.json").exists());
        std::fs::remove_dir_all(&sizes).unwrap();
        std::fs::write(&sizes, saved).unwrap();
        let report = tokenize_files(&tok, &opts, &mut |_| true).unwrap();
        assert!(report.resumed_documents > 0);
        assert_eq!(read(&prefix), read(&full));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_run_on_the_same_output_is_refused_while_the_first_runs() {
        let dir = std::env::temp_dir().join(format!("pythia-tok-lock-{}", std::process::id()));
        let prefix = dir.join("out");
        let first = TokenizedOutput::open(&prefix, DType::U16, "f", None).unwrap();
        let err = TokenizedOutput::open(&prefix, DType::U16, "f", None)
            .err()
            .expect("the output is locked")
            .to_string();
        assert!(err.contains("another run is writing this output"), "{err}");
        first.discard();
        TokenizedOutput::open(&prefix, DType::U16, "f", None)
            .unwrap()
            .discard();
        // The folder the run made for its output goes with it.
        assert!(!dir.exists());
    }
}
