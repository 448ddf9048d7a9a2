//! Several input files tokenized at once, for machines with more cores than one zstd stream
//! can feed. The files are split into parts: runs of consecutive files of at least
//! `TokenizeOptions::part_bytes` (a Pile shard is a part of its own; a thousand small files are
//! not a thousand parts, each paying for its work directory and syncs). Each part is a complete
//! tokenized output written by the one-stream pipeline into `PREFIX.partial/parts/`; the caller's
//! thread appends each part to the output once every part before it has been appended, so the
//! output is byte-identical to a run that reads the files one after another.
//!
//! Resuming: a part keeps its own checkpoint, and a finished part a small report beside it
//! (`files-AAAAAA-BBBBBB.done.json`), so a killed run continues every part where it stopped. The
//! output itself is checkpointed after each part is appended, at a file boundary; a part is
//! deleted only after that. Parts are cut from the first file on, so every run of the same
//! command cuts the same ones; a checkpoint made inside a part by a one-stream run is continued
//! by a part that starts at that file and line (`TokenizeOptions::first_line`).
//!
//! Errors: bad input stops its part; the run reports it once every part before it is done, so
//! with `--on-error fail` the error is the first in input order, as in one stream.
//!
//! Workers: each lane (a thread taking parts one after another) starts its parts with its share
//! of the workers. A lane that finds no part left hands its workers to the parts still running,
//! which take them one at a time (up to [`PART_MAX_WORKERS`] each), so the last parts do not
//! run on a few cores while the others idle: three equal files on two lanes of one worker
//! took 2 × one file's time, and now about 1.5 ×.
//!
//! Cost: every token is written twice (part, then output), and at most `2 × parts at once`
//! finished parts wait on disk for a slow one before them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::output::write_atomically;
use super::{
    finish_run, prepare, subsets_json_path, subsets_npy_path, tokenize_stream, work_dir, Counts,
    Position, Prepared, Progress, SpareWorkers, TokenizeOptions, TokenizeReport, TokenizedOutput,
    INTERRUPTED,
};
use crate::indexed::{bin_path, idx_path, IndexFile};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Most workers one part takes over from lanes with no part left: workers reading one zstd
/// stream in turns stop gaining at about this many (docs/benchmarks.md, "Many cores").
const PART_MAX_WORKERS: usize = 8;

/// What a finished part holds besides its dataset.
#[derive(Clone, Debug, Default)]
struct PartReport {
    counts: Counts,
    skipped_examples: Vec<String>,
    resumed_documents: u64,
}

/// One file's progress as its part last reported it.
#[derive(Default)]
struct Live {
    documents: AtomicU64,
    tokens: AtomicU64,
    input_bytes_read: AtomicU64,
    text_bytes: AtomicU64,
}

impl Live {
    fn set(&self, p: &Progress) {
        self.documents.store(p.documents, Ordering::Relaxed);
        self.tokens.store(p.tokens, Ordering::Relaxed);
        self.input_bytes_read
            .store(p.input_bytes_read, Ordering::Relaxed);
        self.text_bytes.store(p.text_bytes, Ordering::Relaxed);
    }
}

/// Which parts may start next (indices into `Shared::parts`).
struct Schedule {
    /// The next part not started.
    next: usize,
    /// The first part not yet appended to the output.
    head: usize,
    /// The first part that failed: none after it is started.
    failed: Option<usize>,
    stop: bool,
}

struct Shared<'a> {
    tok: &'a Tokenizer,
    opts: &'a TokenizeOptions,
    /// Where the parts are written.
    dir: PathBuf,
    /// The input files of each part: `start..end`.
    parts: Vec<(usize, usize)>,
    /// The line of the first part's first file at which it starts (a resumed one-stream
    /// checkpoint; 0 otherwise).
    first_line: u64,
    /// How far past the head parts may run ahead.
    lookahead: usize,
    schedule: Mutex<Schedule>,
    wake: Condvar,
    /// Mirrors `schedule.stop` for the parts' progress calls, which must not wait on a lock.
    stop: AtomicBool,
    live: Vec<Live>,
    /// Workers of lanes that found no part left to start, for the parts still running.
    spare_workers: AtomicUsize,
}

fn parts_dir(prefix: &Path) -> PathBuf {
    work_dir(prefix).join("parts")
}

/// Whether an interrupted run of `prefix` left parts to continue.
pub(super) fn has_parts(prefix: &Path) -> bool {
    std::fs::read_dir(parts_dir(prefix)).is_ok_and(|mut d| d.next().is_some())
}

fn part_prefix(dir: &Path, (start, end): (usize, usize)) -> PathBuf {
    dir.join(format!("files-{start:06}-{end:06}"))
}

fn done_path(dir: &Path, files: (usize, usize)) -> PathBuf {
    crate::indexed::with_suffix(part_prefix(dir, files), ".done.json")
}

/// The parts of a run that continues at input `start`: runs of consecutive files of at least
/// `part_bytes` bytes (the last may be smaller), cut from the first file on whatever `start`
/// is, so that a resumed run finds the parts an earlier one began; the part holding `start`
/// begins there.
fn cut_parts(file_bytes: &[u64], part_bytes: u64, start: usize) -> Vec<(usize, usize)> {
    let mut parts = Vec::new();
    let (mut first, mut bytes) = (0, 0u64);
    for (f, &b) in file_bytes.iter().enumerate() {
        bytes = bytes.saturating_add(b);
        if bytes >= part_bytes || f + 1 == file_bytes.len() {
            if f >= start {
                parts.push((first.max(start), f + 1));
            }
            (first, bytes) = (f + 1, 0);
        }
    }
    parts
}

impl Shared<'_> {
    fn request_stop(&self) {
        let mut s = self.schedule.lock().unwrap();
        s.stop = true;
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_all();
    }

    /// The next file to tokenize, waiting while it is too far ahead of the head; None when
    /// there is none left or the run is stopping.
    fn claim(&self) -> Option<usize> {
        let mut s = self.schedule.lock().unwrap();
        loop {
            let past_failure = s.failed.is_some_and(|f| s.next > f);
            if s.stop || s.next >= self.parts.len() || past_failure {
                return None;
            }
            if s.next < s.head + self.lookahead {
                s.next += 1;
                return Some(s.next - 1);
            }
            s = self.wake.wait(s).unwrap();
        }
    }

    fn advance_head(&self, head: usize) {
        self.schedule.lock().unwrap().head = head;
        self.wake.notify_all();
    }

    /// Parts of `threads` workers, one after another, until none is left; then the workers go
    /// to the parts still running.
    fn lane(&self, mut threads: usize, results: Sender<(usize, Result<PartReport>)>) {
        while let Some(part) = self.claim() {
            let spare = SpareWorkers {
                free: &self.spare_workers,
                max: PART_MAX_WORKERS,
                joined: AtomicUsize::new(0),
            };
            let result = self.part(part, threads, &spare);
            threads += spare.joined.load(Ordering::Relaxed);
            let stopped = self.stop.load(Ordering::Relaxed);
            if let Err(e) = &result {
                if stopped && e.to_string() == INTERRUPTED {
                    return;
                }
                let mut s = self.schedule.lock().unwrap();
                s.failed = Some(s.failed.map_or(part, |f| f.min(part)));
            }
            if results.send((part, result)).is_err() || stopped {
                return;
            }
        }
        self.spare_workers.fetch_add(threads, Ordering::AcqRel);
    }

    /// Show what an interrupted run left in the parts from the start: each part reports only
    /// once it runs, so a resumed run's progress began at the parts it took up first and then
    /// jumped as each later one started (which made the bar's rate and ETA wrong). A part
    /// whose checkpoint turns out not to resume reports its own figures once it runs.
    fn credit_earlier_work(&self, file_bytes: &[u64]) {
        for (part, &files) in self.parts.iter().enumerate() {
            let first_line = if part == 0 { self.first_line } else { 0 };
            let prefix = part_prefix(&self.dir, files);
            // The part's files before file `to` (an input's index), as stored.
            let bytes_to = |to: usize| -> u64 { file_bytes[files.0..to.min(files.1)].iter().sum() };
            let (documents, tokens, input_bytes_read) =
                if let Some(r) = read_done(&done_path(&self.dir, files), &prefix, first_line) {
                    (r.counts.documents, r.counts.tokens, bytes_to(files.1))
                } else if let Some((documents, tokens, file)) = read_checkpoint_counts(&prefix) {
                    let to = files
                        .0
                        .saturating_add(usize::try_from(file).unwrap_or(usize::MAX));
                    (documents, tokens, bytes_to(to))
                } else {
                    continue;
                };
            self.live[part].set(&Progress {
                documents,
                tokens,
                input_bytes_read,
                ..Default::default()
            });
        }
    }

    /// Tokenize part `part`, or take the one a killed run finished.
    fn part(&self, part: usize, threads: usize, spare: &SpareWorkers) -> Result<PartReport> {
        let files = self.parts[part];
        let first_line = if part == 0 { self.first_line } else { 0 };
        let prefix = part_prefix(&self.dir, files);
        let done = done_path(&self.dir, files);
        let inputs = &self.opts.inputs[files.0..files.1];
        if let Some(report) = read_done(&done, &prefix, first_line) {
            let input_bytes_read = inputs
                .iter()
                .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
                .sum();
            self.live[part].set(&Progress {
                documents: report.counts.documents,
                tokens: report.counts.tokens,
                input_bytes_read,
                ..Default::default()
            });
            return Ok(report);
        }
        let mut opts = self.opts.clone();
        opts.inputs = inputs.to_vec();
        opts.prefix = prefix;
        opts.threads = threads;
        opts.parallel_files = Some(1);
        opts.first_line = first_line;
        // The parts' progress only feeds the run's: frequent enough to stop promptly.
        opts.progress_interval = opts.progress_interval.min(Duration::from_millis(100));
        let prep = prepare(self.tok, &opts)?;
        let mut out = prep.open_output(&opts)?;
        // A part's restart note is left out: a part restarts when the line it starts at
        // changed (a run one file at a time continued inside it), which the note would
        // misreport as a different command.
        let mut report = PartReport {
            resumed_documents: out.resumed_documents,
            ..Default::default()
        };
        let live = &self.live[part];
        // On failure the part is left as it is: the run keeps or discards the whole work
        // directory, parts included (see `tokenize`).
        tokenize_stream(self.tok, &opts, &prep, &mut out, Some(spare), &mut |p| {
            live.set(p);
            !self.stop.load(Ordering::Relaxed)
        })?;
        out.inputs_done(opts.inputs.len());
        report.counts = out.finish()?;
        report.skipped_examples = out.skipped_examples.clone();
        let saved = json!({
            "first_line": first_line,
            "documents": report.counts.documents,
            "tokens": report.counts.tokens,
            "empty_skipped": report.counts.empty_skipped,
            "errors_skipped": report.counts.errors_skipped,
            "skipped_examples": report.skipped_examples,
        });
        write_atomically(&done, &serde_json::to_vec_pretty(&saved).unwrap())?;
        Ok(report)
    }
}

/// The report of a part a killed run finished, if it is there whole and started at `first_line`.
/// Documents, tokens and the input file (within the part) of a part's checkpoint, if any.
fn read_checkpoint_counts(prefix: &Path) -> Option<(u64, u64, u64)> {
    let path = work_dir(prefix).join("checkpoint.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    Some((
        v["documents"].as_u64()?,
        v["tokens"].as_u64()?,
        v["file"].as_u64()?,
    ))
}

fn read_done(done: &Path, prefix: &Path, first_line: u64) -> Option<PartReport> {
    let v: Value = serde_json::from_slice(&std::fs::read(done).ok()?).ok()?;
    if v["first_line"].as_u64() != Some(first_line) {
        return None;
    }
    let counts = Counts {
        documents: v["documents"].as_u64()?,
        tokens: v["tokens"].as_u64()?,
        empty_skipped: v["empty_skipped"].as_u64()?,
        errors_skipped: v["errors_skipped"].as_u64()?,
    };
    let idx = IndexFile::open(idx_path(prefix)).ok()?;
    let bin_len = std::fs::metadata(bin_path(prefix)).ok()?.len();
    if idx.len() as u64 != counts.documents || idx.bin_bytes() != bin_len {
        return None;
    }
    let skipped_examples = v["skipped_examples"]
        .as_array()?
        .iter()
        .map(|e| e.as_str().map(str::to_string))
        .collect::<Option<_>>()?;
    Some(PartReport {
        resumed_documents: counts.documents,
        counts,
        skipped_examples,
    })
}

fn remove_part(dir: &Path, files: (usize, usize)) {
    let prefix = part_prefix(dir, files);
    for p in [
        bin_path(&prefix),
        idx_path(&prefix),
        subsets_npy_path(&prefix),
        subsets_json_path(&prefix),
        done_path(dir, files),
    ] {
        // What is left goes with the work directory when the run finishes.
        let _ = std::fs::remove_file(p);
    }
}

/// `tokenize_files` with up to `at_once` parts tokenized at a time.
pub(super) fn tokenize(
    tok: &Tokenizer,
    opts: &TokenizeOptions,
    prep: &Prepared,
    at_once: usize,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<TokenizeReport> {
    let mut out = prep.open_output(opts)?;
    let mut report = prep.report(&out);
    let result = append_parts(tok, opts, prep, at_once, &mut out, &mut report, progress);
    finish_run(out, result, report, opts.inputs.len())
}

#[allow(clippy::too_many_arguments)]
fn append_parts(
    tok: &Tokenizer,
    opts: &TokenizeOptions,
    prep: &Prepared,
    at_once: usize,
    out: &mut TokenizedOutput,
    report: &mut TokenizeReport,
    progress: &mut dyn FnMut(&Progress) -> bool,
) -> Result<()> {
    let start = out.position;
    // Recorded at once, so that an operating-system error keeps the parts' work to resume.
    out.checkpoint(start)?;
    let parts = cut_parts(&prep.file_bytes, opts.part_bytes, start.file);
    let n = parts.len();
    // Never more parts at once than workers: each needs one.
    let lanes = at_once.min(n).min(prep.threads).max(1);
    let shared = Shared {
        tok,
        opts,
        dir: parts_dir(&opts.prefix),
        parts,
        first_line: start.line,
        lookahead: 2 * lanes,
        schedule: Mutex::new(Schedule {
            next: 0,
            head: 0,
            failed: None,
            stop: false,
        }),
        wake: Condvar::new(),
        stop: AtomicBool::new(false),
        live: (0..n).map(|_| Live::default()).collect(),
        spare_workers: AtomicUsize::new(0),
    };
    shared.credit_earlier_work(&prep.file_bytes);
    let (results_tx, results) = channel::<(usize, Result<PartReport>)>();
    std::thread::scope(|scope| {
        for lane in 0..lanes {
            // The workers shared out, the first lanes taking what does not divide evenly.
            let threads = prep.threads / lanes + usize::from(lane < prep.threads % lanes);
            let (shared, results_tx) = (&shared, results_tx.clone());
            scope.spawn(move || shared.lane(threads, results_tx));
        }
        drop(results_tx);
        let result = (|| -> Result<()> {
            let mut finished: BTreeMap<usize, Result<PartReport>> = BTreeMap::new();
            let mut head = 0;
            let mut last_progress = Instant::now();
            let interval = opts.progress_interval;
            let tick = interval.clamp(Duration::from_millis(1), Duration::from_millis(100));
            let total_before = |head: usize| {
                let files = shared
                    .parts
                    .get(head)
                    .map_or(prep.file_bytes.len(), |p| p.0);
                prep.file_bytes[..files].iter().sum::<u64>()
            };
            // What the run has done: the output up to the head, the parts from it on.
            let now = |out_docs: u64, out_tokens: u64, head: usize| {
                let sum = |f: fn(&Live) -> &AtomicU64, from: usize| {
                    shared.live[from..]
                        .iter()
                        .map(|l| f(l).load(Ordering::Relaxed))
                        .sum::<u64>()
                };
                Progress {
                    documents: out_docs + sum(|l| &l.documents, head),
                    tokens: out_tokens + sum(|l| &l.tokens, head),
                    input_bytes_read: total_before(head) + sum(|l| &l.input_bytes_read, head),
                    input_bytes_total: prep.input_bytes_total,
                    text_bytes: sum(|l| &l.text_bytes, 0),
                }
            };
            let mut base = (out.counts.documents, out.counts.tokens);
            while head < n {
                match results.recv_timeout(tick) {
                    Ok((part, result)) => {
                        finished.insert(part, result);
                    }
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) if finished.contains_key(&head) => {}
                    Err(RecvTimeoutError::Disconnected) => {
                        return Err(Error::invalid(
                            "internal error: the parts stopped before the last one",
                        ))
                    }
                }
                while let Some(result) = finished.remove(&head) {
                    let part = result?;
                    let files = shared.parts[head];
                    let prefix = part_prefix(&shared.dir, files);
                    let end = Position {
                        file: files.1,
                        line: 0,
                    };
                    let skipped = (part.counts.empty_skipped, part.counts.errors_skipped);
                    let examples = part.skipped_examples;
                    let appended =
                        out.append_dataset(&prefix, skipped, examples, end, &mut |_| {
                            if last_progress.elapsed() < interval {
                                return true;
                            }
                            last_progress = Instant::now();
                            progress(&now(base.0, base.1, head))
                        })?;
                    if !appended {
                        // The output now ends inside this part: its last checkpoint, at the
                        // part's start, is where the next run continues.
                        return Err(Error::invalid(INTERRUPTED));
                    }
                    report.resumed_documents += part.resumed_documents;
                    head += 1;
                    out.checkpoint(end)?;
                    remove_part(&shared.dir, files);
                    base = (out.counts.documents, out.counts.tokens);
                    shared.advance_head(head);
                }
                if head == n || last_progress.elapsed() >= interval {
                    last_progress = Instant::now();
                    if !progress(&now(base.0, base.1, head)) {
                        return Err(Error::invalid(INTERRUPTED));
                    }
                }
            }
            // Resumed after the last part was appended (stopped at the last progress call),
            // a run has no part left and made no call: the caller's bar stayed empty.
            if n == 0 && !progress(&now(base.0, base.1, head)) {
                return Err(Error::invalid(INTERRUPTED));
            }
            Ok(())
        })();
        // Whatever ended the run, the parts still running checkpoint and stop.
        shared.request_stop();
        result
    })
}

#[cfg(test)]
mod tests {
    use super::super::{tokenize_files, OnError};
    use super::*;
    use std::fs::File;
    use std::io::Write;

    fn neox() -> Tokenizer {
        Tokenizer::from_file(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../python/pythia_data/data/20B_tokenizer.json"
        ))
        .unwrap()
    }

    /// Seven files of unequal sizes: zstd and plain, one of only empty texts, one empty file.
    /// `bad` puts an invalid line into these files.
    fn corpus(dir: &Path, bad: &[usize]) -> Vec<PathBuf> {
        let sizes = [120, 7, 300, 40, 0, 90, 15];
        let mut paths = Vec::new();
        for (f, &n) in sizes.iter().enumerate() {
            let mut lines = Vec::new();
            for i in 0..n {
                let text = match (f, i % 5) {
                    (3, _) | (_, 4) => String::new(),
                    (_, 1) => format!("file {f} doc {i} <|endoftext|> with  spaces\r\n"),
                    _ => format!("File {f}, document {i}: {}", "more words. ".repeat(i % 11)),
                };
                let set = format!("set{}", (f + i) % 4);
                lines.push(
                    serde_json::json!({"text": text, "meta": {"pile_set_name": set}}).to_string(),
                );
                if bad.contains(&f) && i == n / 2 {
                    lines.push(format!("{{\"text\": \"broken in file {f}\""));
                }
            }
            let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
            let p = if f % 2 == 0 {
                let p = dir.join(format!("part{f}.jsonl.zst"));
                let mut enc =
                    zstd::stream::write::Encoder::new(File::create(&p).unwrap(), 3).unwrap();
                enc.write_all(text.as_bytes()).unwrap();
                enc.finish().unwrap();
                p
            } else {
                let p = dir.join(format!("part{f}.jsonl"));
                std::fs::write(&p, text).unwrap();
                p
            };
            paths.push(p);
        }
        paths
    }

    fn read(prefix: &Path) -> Vec<Vec<u8>> {
        [
            bin_path(prefix),
            idx_path(prefix),
            subsets_npy_path(prefix),
            subsets_json_path(prefix),
        ]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect()
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pythia-par-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn options(
        paths: &[PathBuf],
        prefix: &Path,
        at_once: usize,
        threads: usize,
    ) -> TokenizeOptions {
        let mut opts = TokenizeOptions::new(paths.to_vec(), prefix.to_path_buf());
        opts.parallel_files = Some(at_once);
        opts.threads = threads;
        opts.chunk_bytes = 700;
        // Files of 0.1–10 kB: some parts of one file, some of several.
        opts.part_bytes = 3000;
        opts
    }

    #[test]
    fn parts_are_cut_from_the_first_file_whatever_the_start() {
        let bytes = [5, 1, 1, 9, 0, 0, 2, 2, 2];
        assert_eq!(
            cut_parts(&bytes, 4, 0),
            [(0, 1), (1, 4), (4, 8), (8, 9)].to_vec()
        );
        // A resumed run keeps the same cuts; the part holding the start begins there.
        assert_eq!(cut_parts(&bytes, 4, 2), [(2, 4), (4, 8), (8, 9)].to_vec());
        assert_eq!(cut_parts(&bytes, 4, 4), [(4, 8), (8, 9)].to_vec());
        assert_eq!(cut_parts(&bytes, 4, 9), [].to_vec());
        // One part per file, or all in one.
        assert_eq!(cut_parts(&bytes, 0, 7), [(7, 8), (8, 9)].to_vec());
        assert_eq!(cut_parts(&bytes, u64::MAX, 3), [(3, 9)].to_vec());
    }

    #[test]
    fn files_at_once_write_what_one_at_a_time_writes() {
        let dir = temp("same");
        let paths = corpus(&dir, &[]);
        let tok = neox();
        let one = dir.join("one");
        let expected = tokenize_files(&tok, &options(&paths, &one, 1, 2), &mut |_| true).unwrap();
        // Every line is a document or an empty text.
        assert_eq!(
            expected.counts.documents + expected.counts.empty_skipped,
            572
        );
        for (at_once, threads, part_bytes) in [
            (2, 2, 3000),
            (3, 7, 3000),
            (7, 3, 0),
            (20, 9, 0),
            (20, 1, 3000),
            (4, 4, u64::MAX),
        ] {
            let prefix = dir.join(format!("at-once-{at_once}-{threads}-{part_bytes}"));
            let mut calls = 0;
            let mut opts = options(&paths, &prefix, at_once, threads);
            opts.part_bytes = part_bytes;
            let report = tokenize_files(&tok, &opts, &mut |p| {
                calls += 1;
                assert!(p.input_bytes_read <= p.input_bytes_total);
                true
            })
            .unwrap();
            assert!(calls > 0);
            assert_eq!(report.counts, expected.counts);
            assert_eq!(
                read(&prefix),
                read(&one),
                "{at_once} files at once, {threads} threads"
            );
            assert!(!work_dir(&prefix).exists());
        }
        // Without a meta key there are no subsets files, and the tokens are the same.
        let mut opts = options(&paths, &dir.join("no-meta"), 3, 3);
        opts.meta_key = None;
        tokenize_files(&tok, &opts, &mut |_| true).unwrap();
        assert_eq!(
            std::fs::read(bin_path(&opts.prefix)).unwrap(),
            read(&one)[0]
        );
        assert!(!subsets_npy_path(&opts.prefix).exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn workers_of_lanes_with_no_file_left_join_the_files_still_running() {
        let dir = temp("join");
        let tok = neox();
        // A one-line file, then a long one: the first lane finishes at once, finds no file
        // to start, and gives its workers to the second file.
        let short = dir.join("short.jsonl");
        std::fs::write(&short, "{\"text\": \"a short one\"}\n").unwrap();
        let long = dir.join("long.jsonl");
        let lines: String = (0..30000)
            .map(|i| {
                format!(
                    "{{\"text\": \"document {i}: {}\"}}\n",
                    "words ".repeat(i % 40)
                )
            })
            .collect();
        std::fs::write(&long, lines).unwrap();
        let paths = [short, long];
        let one = dir.join("one");
        let mut opts = options(&paths, &one, 1, 1);
        opts.meta_key = None;
        tokenize_files(&tok, &opts, &mut |_| true).unwrap();
        for threads in [2, 4] {
            let prefix = dir.join(format!("at-once-{threads}"));
            let mut opts = options(&paths, &prefix, 2, threads);
            opts.meta_key = None;
            opts.chunk_bytes = 300;
            opts.part_bytes = 0;
            opts.progress_interval = Duration::ZERO;
            tokenize_files(&tok, &opts, &mut |_| true).unwrap();
            let long_part = part_prefix(&parts_dir(&prefix), (1, 2));
            // Each joins on its own call, up to the lane's workers.
            assert_eq!(super::super::workers_joined(&long_part), threads / 2);
            for (a, b) in [
                (bin_path(&prefix), bin_path(&one)),
                (idx_path(&prefix), idx_path(&one)),
            ] {
                assert_eq!(std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn skipped_lines_are_counted_and_reported_as_in_one_stream() {
        let dir = temp("skip");
        let paths = corpus(&dir, &[0, 2, 5]);
        let tok = neox();
        let mut reports = Vec::new();
        for at_once in [1, 4] {
            let prefix = dir.join(format!("out-{at_once}"));
            let mut opts = options(&paths, &prefix, at_once, 4);
            opts.on_error = OnError::Skip;
            let report = tokenize_files(&tok, &opts, &mut |_| true).unwrap();
            assert_eq!(report.counts.errors_skipped, 3);
            reports.push((report.counts, report.skipped_examples, read(&prefix)));
        }
        assert_eq!(reports[0], reports[1]);
        assert!(
            reports[1].1[0].contains("part0.jsonl.zst: line 62:"),
            "{:?}",
            reports[1].1
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_first_bad_file_in_input_order_stops_the_run_and_nothing_is_left() {
        let dir = temp("fail");
        // File 5 is small and fails early; file 2, before it, fails later: file 2 is reported.
        let paths = corpus(&dir, &[2, 5]);
        let tok = neox();
        for at_once in [1, 3, 7] {
            let prefix = dir.join(format!("out-{at_once}"));
            let err = tokenize_files(&tok, &options(&paths, &prefix, at_once, 7), &mut |_| true)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("part2.jsonl.zst") && err.contains("line 152"),
                "{err}"
            );
            assert!(!work_dir(&prefix).exists());
            assert!(!idx_path(&prefix).exists());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_resumed_run_shows_the_parts_earlier_work_from_its_first_progress_call() {
        // Each part reported only once it ran: a resumed run one part at a time began at the
        // first part's figures, and jumped at each later part that held earlier work.
        let dir = temp("credit");
        let paths = corpus(&dir, &[]);
        let tok = neox();
        let prefix = dir.join("out");
        let mut opts = options(&paths, &prefix, 3, 3);
        opts.part_bytes = 0;
        opts.chunk_bytes = 300;
        opts.checkpoint_interval = Duration::ZERO;
        opts.progress_interval = Duration::ZERO;
        super::super::tests::interrupt_at(&tok, &opts, 12);
        let mut seen = Vec::new();
        let mut opts = options(&paths, &prefix, 1, 1);
        opts.part_bytes = 0;
        opts.progress_interval = Duration::ZERO;
        let report = tokenize_files(&tok, &opts, &mut |p| {
            seen.push((p.documents, p.input_bytes_read));
            true
        })
        .unwrap();
        assert!(report.resumed_documents > 0);
        let first = seen[0];
        assert!(first.0 >= report.resumed_documents, "{first:?}, {report:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_run_resumed_with_no_part_left_still_reports_its_totals() {
        // Stopped at its last progress call, after the last part was appended, a run resumed
        // with no part to run, and the caller heard nothing of it. With a long interval, the
        // last call is the only one.
        let dir = temp("nothing-left");
        let paths = corpus(&dir, &[]);
        let tok = neox();
        let mut opts = options(&paths, &dir.join("out"), 2, 2);
        opts.progress_interval = Duration::from_secs(3600);
        opts.checkpoint_interval = Duration::ZERO;
        super::super::tests::interrupt_at(&tok, &opts, 1);
        let mut calls = Vec::new();
        let report = tokenize_files(&tok, &opts, &mut |p| {
            calls.push((p.documents, p.input_bytes_read, p.input_bytes_total));
            true
        })
        .unwrap();
        let total = paths.iter().map(|p| p.metadata().unwrap().len()).sum();
        assert_eq!(report.resumed_documents, report.counts.documents);
        assert_eq!(calls, [(report.counts.documents, total, total)]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn interrupted_runs_resume_in_either_mode_to_identical_output() {
        let dir = temp("resume");
        let paths = corpus(&dir, &[]);
        let tok = neox();
        let full = dir.join("full");
        tokenize_files(&tok, &options(&paths, &full, 1, 1), &mut |_| true).unwrap();
        // (files at once, stop after this many progress calls) for each interrupted run, then
        // a last run to the end.
        let plans: [&[(usize, u64)]; 5] = [
            &[(3, 2), (3, 4), (2, 3)],
            &[(1, 5), (4, 3), (1, 6)],
            &[(4, 1), (1, 4), (3, 5)],
            &[(7, 6), (7, 6), (7, 6)],
            // Later stops, some while a part is being appended.
            &[(3, 30), (4, 60), (2, 45)],
        ];
        let mut resumed = Vec::new();
        for (k, plan) in plans.iter().enumerate() {
            let prefix = dir.join(format!("resumed-{k}"));
            for &(at_once, stop_after) in plan.iter() {
                let mut opts = options(&paths, &prefix, at_once, 3);
                opts.chunk_bytes = 300;
                opts.part_bytes = [3000, 0, 1000, 3000, 0][k];
                opts.checkpoint_interval = Duration::ZERO;
                opts.progress_interval = Duration::ZERO;
                super::super::tests::interrupt_at(&tok, &opts, stop_after);
                assert!(!idx_path(&prefix).exists());
            }
            let mut opts = options(&paths, &prefix, 1 + k % 3, 2);
            opts.part_bytes = [3000, 0, 1000, 3000, 0][k];
            let report = tokenize_files(&tok, &opts, &mut |_| true).unwrap();
            resumed.push(report.resumed_documents);
            assert_eq!(read(&prefix), read(&full), "plan {k}");
            assert!(!work_dir(&prefix).exists());
        }
        assert!(resumed.iter().all(|&r| r > 0), "{resumed:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
