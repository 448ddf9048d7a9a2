//! The output of a tokenize run, written so that a killed run can continue: tokens, sizes and
//! subset codes are appended to files in a work directory (`PREFIX.partial/`), and a checkpoint
//! records, atomically, how far the inputs were consumed and how long each file was then. A
//! restart truncates the files to those lengths and continues from that input position, so the
//! final output is byte-identical to an uninterrupted run. Only `finish` moves the results into
//! place, once all are written and synced (subsets, `.bin`, then `.idx` last), so nothing
//! half-written ever looks complete.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::direct_append::DirectAppend;
use super::lock::DirLock;
pub(crate) use crate::atomic::write_atomically;
use crate::error::IoContext;
use crate::indexed::{bin_path, idx_path, DType, IndexFile, MAGIC};
use memmap2::Mmap;

use super::read_subsets;
use crate::{Error, Result};

/// Token bytes handed to the output per call while a dataset is appended (tiny in tests, so
/// that they stop runs in the middle of an append).
const APPEND_WINDOW: u64 = if cfg!(test) { 64 } else { 16 << 20 };

/// Where the inputs stand: `line` lines of input `file` are consumed (files before it are done).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    pub file: usize,
    pub line: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub documents: u64,
    pub tokens: u64,
    pub empty_skipped: u64,
    pub errors_skipped: u64,
}

/// `PREFIX.subsets.npy` / `PREFIX.subsets.json`: a uint16 code per item and the code → name
/// table, for telling which subset a document came from.
pub fn subsets_npy_path(prefix: &Path) -> PathBuf {
    crate::indexed::with_suffix(prefix, ".subsets.npy")
}
pub fn subsets_json_path(prefix: &Path) -> PathBuf {
    crate::indexed::with_suffix(prefix, ".subsets.json")
}
pub fn work_dir(prefix: &Path) -> PathBuf {
    crate::indexed::with_suffix(prefix, ".partial")
}

/// Where the finished checkpoint of a complete output waits while its emptied work directory
/// is removed (`.NAME.partial-finished.json` beside it; hidden, so that no folder search takes
/// it for an input). The checkpoint cannot leave with the directory in one step, and an empty
/// work directory tells nothing: without this, a run killed between the two started over.
fn finished_record(prefix: &Path) -> PathBuf {
    let name = prefix.file_name().unwrap_or_default().to_string_lossy();
    prefix.with_file_name(format!(".{name}.partial-finished.json"))
}

/// Stream the `.idx` GPT-NeoX writes for one item per document (doc_idx = 0, 1, ..., len),
/// reading the item sizes from `sizes` (little-endian i32) twice instead of holding them: the
/// full Pile has 210 M documents, 5 GB of index arrays.
fn write_index(out: &mut impl Write, dtype: DType, sizes: &Path, len: u64) -> std::io::Result<()> {
    out.write_all(MAGIC)?;
    out.write_all(&1u64.to_le_bytes())?;
    out.write_all(&[dtype.code()])?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(&(len + 1).to_le_bytes())?;
    std::io::copy(&mut File::open(sizes)?, out)?;
    let mut reader = BufReader::with_capacity(1 << 20, File::open(sizes)?);
    let mut ptr: i64 = 0;
    let mut size = [0u8; 4];
    for _ in 0..len {
        reader.read_exact(&mut size)?;
        out.write_all(&ptr.to_le_bytes())?;
        ptr += i32::from_le_bytes(size) as i64 * dtype.itemsize() as i64;
    }
    for d in 0..=len as i64 {
        out.write_all(&d.to_le_bytes())?;
    }
    Ok(())
}

/// The header of a `.npy` file (format 1.0) holding `n` little-endian uint16.
pub fn npy_u16_header(n: usize) -> Vec<u8> {
    let mut header = format!("{{'descr': '<u2', 'fortran_order': False, 'shape': ({n},), }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces and a newline to
    // a multiple of 64 bytes.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len());
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}

/// A `.npy` file (format 1.0) of little-endian uint16 given as raw bytes.
pub fn npy_u16_bytes(values: &[u8]) -> Vec<u8> {
    let mut out = npy_u16_header(values.len() / 2);
    out.extend_from_slice(values);
    out
}

/// Write `path` (in the work directory, renamed into place later) and sync it.
fn write_synced(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<File>) -> std::io::Result<()>,
) -> Result<()> {
    let mut w = BufWriter::with_capacity(1 << 22, File::create(path).at(path)?);
    fill(&mut w).at(path)?;
    let f = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    f.sync_all().at(path)
}

/// A run killed inside `finish`, after `tokens.bin` became `PREFIX.bin` but before the `.idx`
/// was written, would otherwise find its checkpoint without tokens and start over: move the
/// tokens back so the same command only has to finish. Not once the `.idx` exists: then the
/// output is whole, and moving its `.bin` away could lose it.
fn recover_finished_tokens(prefix: &Path, dir: &Path, saved: &Value) -> Result<()> {
    let bin = bin_path(prefix);
    let tokens = dir.join("tokens.bin");
    let recorded = saved["tokens_bytes"].as_u64();
    if saved["finished"].as_bool() == Some(true)
        && !tokens.exists()
        && !idx_path(prefix).exists()
        && std::fs::metadata(&bin).is_ok_and(|m| Some(m.len()) == recorded)
    {
        std::fs::rename(&bin, &tokens).at(&tokens)?;
    }
    Ok(())
}

/// Whether the work directory belongs to an output that a run killed inside `finish`, after the
/// `.idx` was written, already completed: the checkpoint says finished, the tokens have become
/// `PREFIX.bin` (at the recorded length) and the `.idx` exists. The old `.idx` is deleted before
/// the tokens move, so this `.idx` is the new one.
fn is_complete(prefix: &Path, dir: &Path, saved: &Value) -> bool {
    saved["finished"].as_bool() == Some(true)
        && !dir.join("tokens.bin").exists()
        && idx_path(prefix).exists()
        && std::fs::metadata(bin_path(prefix))
            .is_ok_and(|m| Some(m.len()) == saved["tokens_bytes"].as_u64())
}

/// What differs between the fingerprint of a checkpoint and this run's, in the user's terms. A
/// fingerprint is a line of options (`key=value ...`), then one line per input (its path, then
/// its size, time and digest, which hold only digits, hex and `:`), and for Parquet and saved
/// datasets a last `tokenizer=` line.
/// (the options, with a last `tokenizer=` line's in front; the input lines).
fn fingerprint_parts(fingerprint: &str) -> (String, Vec<&str>) {
    let mut lines: Vec<&str> = fingerprint.lines().collect();
    let mut options = if lines.is_empty() {
        String::new()
    } else {
        lines.remove(0).to_string()
    };
    if lines.last().is_some_and(|l| l.starts_with("tokenizer=")) {
        options = format!("{} {options}", lines.pop().unwrap());
    }
    (options, lines)
}

fn what_changed(old: &str, new: &str) -> String {
    let ((old_options, old_inputs), (new_options, new_inputs)) =
        (fingerprint_parts(old), fingerprint_parts(new));
    if old_options != new_options {
        // Parquet and saved datasets among the inputs make another kind of run.
        let arrow = |options: &str| options.split(' ').any(|w| w == "arrow");
        if arrow(&old_options) != arrow(&new_options) {
            return "inputs of another kind: Parquet files or saved datasets among them, or not"
                .to_string();
        }
        let option = old_options
            .split(' ')
            .zip(new_options.split(' '))
            .find(|(a, b)| a != b)
            .and_then(|(_, b)| b.split_once('=').map(|(key, _)| key));
        return match option {
            Some("dtype") => "another tokenizer vocabulary size".to_string(),
            Some(key) => format!("another --{}", key.replace('_', "-")),
            None => "other options".to_string(),
        };
    }
    let path_of = |line: &&str| {
        let mut words: Vec<&str> = line.split(' ').collect();
        while words.len() > 1
            && words.last().is_some_and(|w| {
                w.chars()
                    .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '-')
            })
        {
            words.pop();
        }
        words.join(" ")
    };
    let old_paths: Vec<String> = old_inputs.iter().map(path_of).collect();
    let new_paths: Vec<String> = new_inputs.iter().map(path_of).collect();
    if old_paths == new_paths {
        let changed = (0..new_paths.len()).find(|&k| old_inputs[k] != new_inputs[k]);
        return match changed {
            Some(k) => format!("{} changed since: its size, time or content", new_paths[k]),
            None => "other options".to_string(),
        };
    }
    if let Some(p) = new_paths.iter().find(|p| !old_paths.contains(p)) {
        return format!("input {p}, which it did not read");
    }
    if let Some(p) = old_paths.iter().find(|p| !new_paths.contains(p)) {
        return format!("no input {p}, which it read");
    }
    "the same inputs in another order or number".to_string()
}

/// How many skipped problems a report shows.
pub const MAX_EXAMPLES: usize = 10;

pub struct TokenizedOutput {
    prefix: PathBuf,
    dir: PathBuf,
    dtype: DType,
    fingerprint: String,
    meta_key: Option<String>,
    /// Most of the output: written past the page cache (see `direct_append`).
    tokens: DirectAppend,
    sizes: BufWriter<File>,
    subsets: BufWriter<File>,
    tokens_bytes: u64,
    names: Vec<String>,
    codes: HashMap<String, u16>,
    pub counts: Counts,
    pub position: Position,
    /// Documents already written when this run started (resumed from a checkpoint).
    pub resumed_documents: u64,
    /// Why a checkpoint found in the work directory was not used, for the user.
    pub restart_note: Option<String>,
    /// The first few skipped problems (`PATH: line N: message`; `row N` for Parquet), kept in
    /// the checkpoint so that a resumed run reports the same ones as an uninterrupted run.
    pub skipped_examples: Vec<String>,
    /// Whether the output was already moved into place by a run killed while it deleted its
    /// work directory: `finish` then only has to delete it.
    complete: bool,
    /// Whether the work directory holds a checkpoint to continue from.
    checkpointed: bool,
    /// Held while this run owns the work directory.
    /// Folders this run created above its work directory, deepest first.
    made_parents: Vec<PathBuf>,
    _lock: Option<DirLock>,
}

/// Lock the work directory so that a second run writing the same output stops with a clear
/// error instead of both appending to the same files. Filesystems without locks (some network
/// mounts) run unlocked, as before.
fn lock_work_dir(prefix: &Path, dir: &Path) -> Result<Option<DirLock>> {
    let file = File::open(dir).at(dir)?;
    match DirLock::try_lock(file) {
        Ok(lock) => Ok(Some(lock)),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::invalid(format!(
            "{}: another run is writing this output (its work directory {} is locked); wait \
             for it to finish or stop it first",
            prefix.display(),
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(_)) => Ok(None),
    }
}

const CHECKPOINT: &str = "checkpoint.json";
/// Marks a work directory as ours: only such a directory is ever emptied or deleted, so an
/// output named after a user's own `NAME.partial/` folder (an input folder, say) never costs
/// them its files.
const MARKER: &str = ".pythia-data-tokenize";

/// Create `dir` as this output's work directory, or check that an existing one is ours.
/// The folders above `dir` that do not exist yet, deepest first: a failed run removes those it
/// made, so `-o new/folder/x` on bad input leaves nothing behind.
fn missing_parents(dir: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .take_while(|p| std::fs::symlink_metadata(p).is_err())
        .map(Path::to_path_buf)
        .collect()
}

fn claim_work_dir(dir: &Path, output: &str) -> Result<()> {
    let refuse = |why: &str| {
        Err(Error::invalid(format!(
            "{}: this is in the way of the run's work directory ({why}), so it is left alone: \
             move it away or choose another --output",
            dir.display()
        )))
    };
    match std::fs::symlink_metadata(dir) {
        Err(_) => std::fs::create_dir_all(dir).map_err(|e| Error::creating(output, dir, e))?,
        // Through a link, finishing would delete only the link and leave our files behind.
        Ok(m) if m.file_type().is_symlink() => return refuse("a symbolic link"),
        Ok(_) => {
            let entries = std::fs::read_dir(dir).at(dir)?.count();
            // Work directories of earlier versions have no marker but always a checkpoint.
            let ours = dir.join(MARKER).exists() || is_checkpoint(&dir.join(CHECKPOINT));
            if !ours && entries > 0 {
                return refuse(&format!(
                    "a folder not made by pythia-data tokenize: no {MARKER} in it"
                ));
            }
        }
    }
    let marker = dir.join(MARKER);
    if !marker.exists() {
        File::create(&marker).at(&marker)?;
    }
    Ok(())
}

/// Whether `path` holds a checkpoint this module wrote (of any version).
fn is_checkpoint(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
        .is_some_and(|v| v["format"].is_u64() && v["fingerprint"].is_string())
}

/// Put back the finished checkpoint that a run of this command, killed while removing its work
/// directory, left beside it (see [`finished_record`]): the output is then recognised as
/// complete, as it is while the checkpoint is still inside. Another command's, or one found
/// beside a checkpoint of a later run, is stale: deleted, before this run can change the output
/// it describes.
fn take_finished_record(prefix: &Path, checkpoint: &Path, fingerprint: &str) -> Result<()> {
    let record = finished_record(prefix);
    if std::fs::symlink_metadata(&record).is_err() {
        return Ok(());
    }
    let ours = !checkpoint.exists()
        && std::fs::read(&record)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .is_some_and(|v| {
                v["finished"].as_bool() == Some(true)
                    && v["fingerprint"].as_str() == Some(fingerprint)
            });
    if ours {
        std::fs::rename(&record, checkpoint).at(checkpoint)
    } else {
        remove_if_present(&record)
    }
}

/// Remove `path`; one already gone is no error.
fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// The error for a document of `n_tokens` tokens, more than the .idx's sizes hold.
pub(crate) fn too_long(n_tokens: usize) -> Error {
    Error::invalid(format!(
        "a document of {n_tokens} tokens does not fit the .idx int32 sizes"
    ))
}

fn open_truncated(path: &Path, len: u64) -> Result<BufWriter<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)?;
    f.set_len(len).at(path)?;
    // Small next to a chunk's tokens, which skip it (see `add_documents`).
    let mut w = BufWriter::with_capacity(256 << 10, f);
    std::io::Seek::seek(&mut w, std::io::SeekFrom::Start(len)).at(path)?;
    Ok(w)
}

impl TokenizedOutput {
    /// Start, or continue the interrupted run recorded in `PREFIX.partial/` if its fingerprint
    /// (inputs, options, tokenizer) equals `fingerprint`; a work directory from a different
    /// command is discarded.
    pub fn open(
        prefix: &Path,
        dtype: DType,
        fingerprint: &str,
        meta_key: Option<&str>,
    ) -> Result<Self> {
        crate::indexed::check_output_prefix(prefix)?;
        let dir = work_dir(prefix);
        let made_parents = missing_parents(&dir);
        let output = format!("{}.bin/.idx", prefix.display());
        claim_work_dir(&dir, &output)?;
        let lock = lock_work_dir(prefix, &dir)?;
        let checkpoint_path = dir.join(CHECKPOINT);
        take_finished_record(prefix, &checkpoint_path, fingerprint)?;
        let found = checkpoint_path.exists();
        let saved: Option<Value> = std::fs::read(&checkpoint_path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        let same_command = saved
            .as_ref()
            .is_some_and(|v| v["fingerprint"].as_str() == Some(fingerprint));
        if same_command {
            recover_finished_tokens(prefix, &dir, saved.as_ref().unwrap())?;
        }
        let complete = same_command && is_complete(prefix, &dir, saved.as_ref().unwrap());
        // Resume only the same command, and only if every file still holds what the checkpoint
        // counted (subset codes are only written with a meta key).
        let subset_bytes = if meta_key.is_some_and(|k| !k.is_empty()) {
            2
        } else {
            0
        };
        let has_files = |v: &Value| {
            let need = |key: &str, scale: u64| v[key].as_u64().unwrap_or(0) * scale;
            let has = |name: &str, len: u64| {
                std::fs::metadata(dir.join(name)).is_ok_and(|m| m.len() >= len)
            };
            has("tokens.bin", need("tokens_bytes", 1))
                && has("sizes.i32", need("documents", 4))
                && has("subsets.u16", need("documents", subset_bytes))
        };
        let restart_note = match &saved {
            None if found => Some(format!(
                "the checkpoint in {} could not be read, so this run starts over",
                dir.display()
            )),
            None => None,
            Some(v) if !same_command => Some(format!(
                "the checkpoint in {} was made by a different command ({}), so this run starts \
                 over",
                dir.display(),
                what_changed(v["fingerprint"].as_str().unwrap_or(""), fingerprint)
            )),
            Some(v) if !complete && !has_files(v) => Some(format!(
                "the checkpoint in {} no longer matches the files beside it, so this run starts \
                 over",
                dir.display()
            )),
            Some(_) => None,
        };
        let saved = saved.filter(|_| restart_note.is_none());
        if saved.is_none() {
            // Emptied, not removed: the lock is on the directory itself.
            for entry in std::fs::read_dir(&dir).at(&dir)? {
                let path = entry.at(&dir)?.path();
                if path.file_name() == Some(std::ffi::OsStr::new(MARKER)) {
                    continue;
                }
                if path.is_dir() {
                    std::fs::remove_dir_all(&path).at(&path)?;
                } else {
                    std::fs::remove_file(&path).at(&path)?;
                }
            }
        }
        let get = |key: &str| saved.as_ref().and_then(|v| v[key].as_u64()).unwrap_or(0);
        let counts = Counts {
            documents: get("documents"),
            tokens: get("tokens"),
            empty_skipped: get("empty_skipped"),
            errors_skipped: get("errors_skipped"),
        };
        let tokens_bytes = get("tokens_bytes");
        let skipped_examples = saved
            .as_ref()
            .and_then(|v| v["skipped_examples"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        let names: Vec<String> = saved
            .as_ref()
            .and_then(|v| v["subset_names"].as_array().cloned())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| n.as_str().map(str::to_string))
            .collect();
        let codes = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u16))
            .collect();
        let position = Position {
            file: get("file") as usize,
            line: get("line"),
        };
        let n = counts.documents;
        // A complete output's work files may be gone already: opened empty, never written.
        let (kept_tokens, kept_documents) = if complete { (0, 0) } else { (tokens_bytes, n) };
        // Failing here (a full disk) keeps the checkpoint, as a failure later does.
        let hint = |e: Error| match &saved {
            Some(_) => with_resume_hint(e, &dir),
            None => e,
        };
        let tokens =
            DirectAppend::open(&dir.join("tokens.bin"), kept_tokens, true).map_err(hint)?;
        let sizes = open_truncated(&dir.join("sizes.i32"), 4 * kept_documents).map_err(hint)?;
        let subsets = open_truncated(&dir.join("subsets.u16"), subset_bytes * kept_documents)
            .map_err(hint)?;
        let out = TokenizedOutput {
            prefix: prefix.to_path_buf(),
            tokens,
            sizes,
            subsets,
            dir,
            dtype,
            fingerprint: fingerprint.to_string(),
            meta_key: meta_key.filter(|k| !k.is_empty()).map(str::to_string),
            tokens_bytes,
            names,
            codes,
            resumed_documents: n,
            restart_note,
            skipped_examples,
            complete,
            checkpointed: saved.is_some(),
            counts,
            position,
            made_parents,
            _lock: lock,
        };
        if complete {
            // Unlinked at once (the handles stay usable): a `tokens.bin` left by a run killed
            // before `finish` would make the complete output look unfinished to the next one.
            for name in ["tokens.bin", "sizes.i32", "subsets.u16"] {
                remove_if_present(&out.dir.join(name))?;
            }
        }
        Ok(out)
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// `PREFIX.partial/`, which `finish` deletes with whatever else is in it.
    pub fn work_dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a subset code is kept per document (a meta key was given).
    pub fn has_subsets(&self) -> bool {
        self.meta_key.is_some()
    }

    /// Append one document: its tokens as little-endian bytes of the dtype (EOD included).
    pub fn add_document(&mut self, token_bytes: &[u8], meta: Option<&str>) -> Result<()> {
        self.add_documents(token_bytes, &[(token_bytes.len(), meta)])
    }

    /// Append documents whose tokens lie back to back in `token_bytes`: `ends[i]` is the
    /// end offset of document `i` and its metadata.
    pub fn add_documents(
        &mut self,
        token_bytes: &[u8],
        ends: &[(usize, Option<&str>)],
    ) -> Result<()> {
        let itemsize = self.dtype.itemsize();
        let mut sizes = Vec::with_capacity(4 * ends.len());
        let mut codes = Vec::with_capacity(2 * ends.len());
        let mut start = 0;
        for &(end, meta) in ends {
            let n_tokens = (end - start) / itemsize;
            let size = i32::try_from(n_tokens).map_err(|_| too_long(n_tokens))?;
            sizes.extend_from_slice(&size.to_le_bytes());
            if self.meta_key.is_some() {
                codes.extend_from_slice(&self.code(meta.unwrap_or(""))?.to_le_bytes());
            }
            start = end;
        }
        let token_bytes = &token_bytes[..start];
        self.tokens.write_all(token_bytes)?;
        self.sizes
            .write_all(&sizes)
            .at(self.dir.join("sizes.i32"))?;
        self.subsets
            .write_all(&codes)
            .at(self.dir.join("subsets.u16"))?;
        self.tokens_bytes += token_bytes.len() as u64;
        self.counts.documents += ends.len() as u64;
        self.counts.tokens += (token_bytes.len() / itemsize) as u64;
        Ok(())
    }

    /// Append documents whose tokens lie back to back in `token_bytes`: `sizes` holds each
    /// one's size in tokens as the .idx does (little-endian i32) and, when this output keeps
    /// subsets, `meta_codes` its meta string's index in `metas`.
    pub fn add_sized_documents(
        &mut self,
        token_bytes: &[u8],
        sizes: &[u8],
        metas: &[String],
        meta_codes: &[u32],
    ) -> Result<()> {
        let documents = sizes.len() / 4;
        let mut subsets = Vec::new();
        if self.meta_key.is_some() {
            debug_assert_eq!(meta_codes.len(), documents);
            let codes = metas
                .iter()
                .map(|m| self.code(m))
                .collect::<Result<Vec<u16>>>()?;
            subsets.extend(
                meta_codes
                    .iter()
                    .flat_map(|&c| codes[c as usize].to_le_bytes()),
            );
        }
        self.tokens.write_all(token_bytes)?;
        self.sizes.write_all(sizes).at(self.dir.join("sizes.i32"))?;
        self.subsets
            .write_all(&subsets)
            .at(self.dir.join("subsets.u16"))?;
        self.tokens_bytes += token_bytes.len() as u64;
        self.counts.documents += documents as u64;
        self.counts.tokens += (token_bytes.len() / self.dtype.itemsize()) as u64;
        Ok(())
    }

    /// Append the finished dataset `prefix` (its subsets too, when this output keeps them), a
    /// window at a time, calling `keep_going` with the counts so far between windows; false
    /// when it said stop (the output then ends inside that dataset: its checkpoint does not).
    /// Once all of it is in, the documents its run skipped (`skipped`: empty, errors; and
    /// `examples`) are counted and the position becomes `end`, for the next checkpoint.
    pub fn append_dataset(
        &mut self,
        prefix: &Path,
        skipped: (u64, u64),
        examples: Vec<String>,
        end: Position,
        keep_going: &mut dyn FnMut(&Counts) -> bool,
    ) -> Result<bool> {
        let idx_file = idx_path(prefix);
        let idx = IndexFile::open(&idx_file)?;
        if idx.dtype() != self.dtype {
            return Err(Error::invalid(format!(
                "{}: {} tokens, where this output holds {}",
                idx_file.display(),
                idx.dtype().numpy_name(),
                self.dtype.numpy_name()
            )));
        }
        let bin_file = bin_path(prefix);
        let file = File::open(&bin_file).at(&bin_file)?;
        // SAFETY: read-only map of a finished dataset that nothing else writes.
        let bin = unsafe { Mmap::map(&file) }.at(&bin_file)?;
        // Read once, front to back: the kernel's read-ahead should run far ahead.
        let _ = bin.advise(memmap2::Advice::Sequential);
        if bin.len() as u64 != idx.bin_bytes() {
            return Err(Error::corrupt(
                &bin_file,
                format!(
                    "{} bytes where its .idx counts {}",
                    bin.len(),
                    idx.bin_bytes()
                ),
            ));
        }
        let subsets = if self.has_subsets() {
            let (_, names, codes) = read_subsets(prefix)?;
            if codes.len() != idx.len() || codes.iter().any(|&c| c as usize >= names.len()) {
                return Err(Error::corrupt(
                    subsets_npy_path(prefix),
                    format!(
                        "does not match {} ({} documents, names in {})",
                        idx_file.display(),
                        idx.len(),
                        subsets_json_path(prefix).display()
                    ),
                ));
            }
            Some((names, codes))
        } else {
            None
        };
        let itemsize = self.dtype.itemsize() as u64;
        let (mut doc, mut start) = (0usize, 0u64);
        let mut ends: Vec<(usize, Option<&str>)> = Vec::new();
        while doc < idx.len() {
            ends.clear();
            let mut end = start;
            while doc < idx.len() && (ends.is_empty() || end - start < APPEND_WINDOW) {
                end += idx.size(doc) as u64 * itemsize;
                let meta = subsets
                    .as_ref()
                    .map(|(names, codes)| names[codes[doc] as usize].as_str());
                ends.push(((end - start) as usize, meta));
                doc += 1;
            }
            self.add_documents(&bin[start as usize..end as usize], &ends)?;
            start = end;
            if !keep_going(&self.counts) {
                return Ok(false);
            }
        }
        self.counts.empty_skipped += skipped.0;
        self.counts.errors_skipped += skipped.1;
        for example in examples {
            self.add_skipped_example(|| example);
        }
        self.position = end;
        Ok(true)
    }

    fn code(&mut self, name: &str) -> Result<u16> {
        if let Some(&c) = self.codes.get(name) {
            return Ok(c);
        }
        let c = u16::try_from(self.names.len()).map_err(|_| {
            Error::invalid(format!(
                "more than 65,536 distinct values of the meta key {:?} (it names a subset per \
                 document, such as meta.pile_set_name): choose another --meta-key, or none with \
                 --meta-key ''",
                self.meta_key.as_deref().unwrap_or("")
            ))
        })?;
        self.names.push(name.to_string());
        self.codes.insert(name.to_string(), c);
        Ok(c)
    }

    fn sync(&mut self) -> Result<()> {
        self.tokens.sync_data()?;
        for (w, name) in [
            (&mut self.sizes, "sizes.i32"),
            (&mut self.subsets, "subsets.u16"),
        ] {
            let p = self.dir.join(name);
            w.flush().at(&p)?;
            w.get_ref().sync_data().at(&p)?;
        }
        Ok(())
    }

    fn checkpoint_json(&self, finished: bool) -> Value {
        json!({
            "format": 1,
            "finished": finished,
            "fingerprint": self.fingerprint,
            "file": self.position.file,
            "line": self.position.line,
            "documents": self.counts.documents,
            "tokens": self.counts.tokens,
            "empty_skipped": self.counts.empty_skipped,
            "errors_skipped": self.counts.errors_skipped,
            "tokens_bytes": self.tokens_bytes,
            "subset_names": self.names,
            "skipped_examples": self.skipped_examples,
        })
    }

    /// Note a skipped problem for the report, if it is among the first few.
    /// `message` is only called for the first few: a corpus with millions of bad lines should
    /// not format millions of messages.
    pub fn add_skipped_example(&mut self, message: impl FnOnce() -> String) {
        if self.skipped_examples.len() < MAX_EXAMPLES {
            self.skipped_examples.push(message());
        }
    }

    /// Make everything written so far durable and record `position` as the restart point.
    pub fn checkpoint(&mut self, position: Position) -> Result<()> {
        if self.complete {
            // The checkpoint on disk already records the finished output; an unfinished one
            // would make the next run tokenize everything again.
            return Ok(());
        }
        self.position = position;
        self.write_checkpoint(false)
    }

    fn write_checkpoint(&mut self, finished: bool) -> Result<()> {
        self.sync()?;
        let bytes = serde_json::to_vec_pretty(&self.checkpoint_json(finished)).unwrap();
        write_atomically(&self.dir.join(CHECKPOINT), &bytes)?;
        self.checkpointed = true;
        Ok(())
    }

    /// Every one of `inputs` input files is consumed: a restart after a crash inside `finish`
    /// then reads nothing again.
    pub fn inputs_done(&mut self, inputs: usize) {
        self.position = Position {
            file: inputs,
            line: 0,
        };
    }

    /// Move the dataset into place and delete the work directory. On failure the work
    /// directory is left for the caller to keep or discard.
    pub fn finish(&mut self) -> Result<Counts> {
        if self.complete {
            self.remove_work_dir()?;
            return Ok(self.counts.clone());
        }
        // Recorded first, so that a run killed between the renames below can be finished.
        self.write_checkpoint(true)?;
        let n = self.counts.documents;
        // Every file is written and synced in the work directory before any is renamed, so
        // that a full disk or a write error leaves nothing at a final name; the renames then
        // put the subsets, the `.bin` and the `.idx` last in place within moments.
        let mut renames = Vec::new();
        if let Some(key) = &self.meta_key {
            let codes = self.dir.join("subsets.u16");
            let npy = self.dir.join("subsets.npy");
            write_synced(&npy, |w| {
                w.write_all(&npy_u16_header(n as usize))?;
                std::io::copy(&mut File::open(&codes)?, w).map(|_| ())
            })?;
            renames.push((npy, subsets_npy_path(&self.prefix)));
            let table = json!({"key": key, "names": self.names});
            let mut text = serde_json::to_vec_pretty(&table).unwrap();
            text.push(b'\n');
            let json_file = self.dir.join("subsets.json");
            write_synced(&json_file, |w| w.write_all(&text))?;
            renames.push((json_file, subsets_json_path(&self.prefix)));
        }
        let idx = self.dir.join("final.idx");
        let sizes = self.dir.join("sizes.i32");
        let dtype = self.dtype;
        write_synced(&idx, |w| write_index(w, dtype, &sizes, n))?;
        let idx_dest = idx_path(&self.prefix);
        // A stale .idx must not pair with the new .bin if we die between the renames.
        remove_if_present(&idx_dest)?;
        if self.meta_key.is_none() {
            // Subsets of an earlier run with this prefix would describe other documents.
            for p in [
                subsets_npy_path(&self.prefix),
                subsets_json_path(&self.prefix),
            ] {
                remove_if_present(&p)?;
            }
        }
        renames.push((self.dir.join("tokens.bin"), bin_path(&self.prefix)));
        renames.push((idx, idx_dest));
        for (from, to) in renames {
            // Temporaries earlier versions left beside the output when killed.
            crate::atomic::remove_stale_temps(&to);
            std::fs::rename(&from, &to).at(&to)?;
        }
        self.remove_work_dir()?;
        Ok(self.counts.clone())
    }

    /// Delete the work directory of a complete output: the marker, then the checkpoint last, so
    /// that a run killed in between leaves a directory the same command recognises as its own
    /// (by the checkpoint, with or without the marker) and finishes (see [`is_complete`]); a
    /// marker alone would make it start over. The checkpoint is moved out, not deleted, and
    /// deleted only once the directory is gone: an empty work directory would make the same
    /// command start over too (see [`finished_record`]).
    fn remove_work_dir(&self) -> Result<()> {
        let last = [MARKER, CHECKPOINT];
        for entry in std::fs::read_dir(&self.dir).at(&self.dir)? {
            let path = entry.at(&self.dir)?.path();
            if path
                .file_name()
                .is_some_and(|n| last.iter().any(|l| n == *l))
            {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path).at(&path)?;
            } else {
                std::fs::remove_file(&path).at(&path)?;
            }
        }
        remove_if_present(&self.dir.join(MARKER))?;
        let record = finished_record(&self.prefix);
        match std::fs::rename(self.dir.join(CHECKPOINT), &record) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(&record, e));
            }
            _ => {}
        }
        std::fs::remove_dir(&self.dir).at(&self.dir)?;
        remove_if_present(&record)
    }

    /// Give up for good (a data error): nothing of this run is kept.
    pub fn discard(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for parent in &self.made_parents {
            // Only while empty: the first one holding anything else stops the climb.
            if std::fs::remove_dir(parent).is_err() {
                break;
            }
        }
    }

    /// Stop after an operating-system error (a full disk, a lost mount, a permission): hours of
    /// work are not thrown away for a cause outside the data, so with a checkpoint to continue
    /// from the work directory stays and the returned text says so; without one it is deleted.
    pub fn keep_if_resumable(self) -> Option<String> {
        if !self.checkpointed {
            self.discard();
            return None;
        }
        Some(resume_hint(&self.dir))
    }

    /// Stop after `error`: [`Self::keep_if_resumable`] for an operating-system error (its
    /// message then ends with what to do), [`Self::discard`] for any other.
    pub fn abandon(self, error: Error) -> Error {
        match error {
            Error::Io { .. } if self.checkpointed => {
                let dir = self.dir.clone();
                with_resume_hint(error, &dir)
            }
            Error::Io { .. } => {
                self.discard();
                error
            }
            other => {
                self.discard();
                other
            }
        }
    }
}

fn resume_hint(dir: &Path) -> String {
    format!(
        "the work up to the last checkpoint is kept in {}: fix the cause and run the same \
         command again to continue from there, or delete that directory to start over",
        dir.display()
    )
}

/// An operating-system error whose message ends with how to continue from the checkpoint in
/// `dir`; any other error as it is.
fn with_resume_hint(error: Error, dir: &Path) -> Error {
    match error {
        Error::Io { path, source } => Error::Io {
            path,
            source: std::io::Error::new(
                source.kind(),
                format!("{}; {}", crate::error::os_text(&source), resume_hint(dir)),
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::what_changed;

    #[test]
    fn what_changed_names_the_option_or_input() {
        let json = "tokenizer=ab text_key=\"text\" meta_key=None on_error=Fail dtype=uint16";
        let a = format!("{json}\n/d/a b.jsonl 10 5 00ff\n/d/c.jsonl 3 4 beef");
        let other_key = a.replace("text_key=\"text\"", "text_key=\"body\"");
        assert_eq!(what_changed(&a, &other_key), "another --text-key");
        let int32 = a.replace("uint16", "int32");
        assert_eq!(
            what_changed(&a, &int32),
            "another tokenizer vocabulary size"
        );
        let edited = a.replace(" 10 5 ", " 10 6 ");
        assert_eq!(
            what_changed(&a, &edited),
            "/d/a b.jsonl changed since: its size, time or content"
        );
        let moved = a.replace("/d/c.jsonl", "/e/c.jsonl");
        assert_eq!(
            what_changed(&a, &moved),
            "input /e/c.jsonl, which it did not read"
        );
        let fewer = format!("{json}\n/d/a b.jsonl 10 5 00ff");
        assert_eq!(
            what_changed(&a, &fewer),
            "no input /d/c.jsonl, which it read"
        );
        let swapped = format!("{json}\n/d/c.jsonl 3 4 beef\n/d/a b.jsonl 10 5 00ff");
        assert_eq!(
            what_changed(&a, &swapped),
            "the same inputs in another order or number"
        );
        // Parquet and saved datasets: stamps of several files, the tokenizer on a last line.
        let arrow =
            "arrow text_key='text' meta_key=None on_error=fail\n/d/s 1:2:ab 3:4:-\ntokenizer=ab";
        let other_tokenizer = arrow.replace("tokenizer=ab", "tokenizer=cd");
        assert_eq!(what_changed(arrow, &other_tokenizer), "another --tokenizer");
        let mixed = arrow.replace("/d/s 1:2:ab 3:4:-", "/d/a b.jsonl 10:5:00ff");
        assert!(what_changed(&a, &mixed).starts_with("inputs of another kind"));
        let resaved = arrow.replace("3:4:-", "3:5:-");
        assert_eq!(
            what_changed(arrow, &resaved),
            "/d/s changed since: its size, time or content"
        );
    }
}
