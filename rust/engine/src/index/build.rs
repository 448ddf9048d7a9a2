//! Building, saving and reusing a GPT2Dataset index under GPT-NeoX's own file names.
//!
//! The two shuffles are bound by random memory access. Their draws never depend on the data, so
//! a second thread makes the doc_idx shuffle's draws and hands them over in chunks (the first
//! thread only swaps, prefetching the targets), then goes on with the same generator to shuffle
//! shuffle_idx, while the first thread streams sample_idx to disk. Files appear only when all
//! three are complete.

use std::path::{Path, PathBuf};

use super::gpt2_index::{
    build_doc_idx, build_sample_idx, build_shuffle_idx, plan, shuffle_shuffle_idx, skip_doc_idx,
    unshuffled_doc_idx, unshuffled_shuffle_idx, IndexPlan, Sizes,
};
use super::idx_sizes::IdxSizes;
use super::npy::{NpyArray, NpyDType, NpyWriter};
use super::random_state::RandomState;
use super::random_state::{apply_swaps, shuffle_draws};
use crate::{Error, Result};

/// What to build: GPT2Dataset's parameters.
#[derive(Debug, Clone)]
pub struct IndexRequest {
    /// `train_0`, `valid_0`, `test_0`, ...
    pub name: String,
    pub num_samples: u64,
    pub seq_length: u64,
    pub seed: u64,
    /// Items `[start, stop)` of the dataset; None = all.
    pub documents: Option<(usize, usize)>,
    pub separate_last_epoch: bool,
}

/// The three files of one index.
#[derive(Debug, Clone)]
pub struct IndexPaths {
    pub doc_idx: PathBuf,
    pub sample_idx: PathBuf,
    pub shuffle_idx: PathBuf,
    /// Our record of the parameters, so a cache built differently is refused.
    pub meta: PathBuf,
}

/// `{prefix}_{name}_indexmap_{ns}ns_{sl}sl_{seed}s_*.npy`, exactly GPT-NeoX's names.
pub fn index_paths(
    cache_prefix: &Path,
    name: &str,
    num_samples: u64,
    seq_length: u64,
    seed: u64,
) -> IndexPaths {
    let base = format!(
        "{}_{name}_indexmap_{num_samples}ns_{seq_length}sl_{seed}s",
        cache_prefix.display()
    );
    IndexPaths {
        doc_idx: PathBuf::from(format!("{base}_doc_idx.npy")),
        sample_idx: PathBuf::from(format!("{base}_sample_idx.npy")),
        shuffle_idx: PathBuf::from(format!("{base}_shuffle_idx.npy")),
        meta: PathBuf::from(format!("{base}_meta.json")),
    }
}

#[derive(Debug, Clone)]
pub struct IndexSummary {
    pub plan: IndexPlan,
    pub paths: IndexPaths,
    /// True when matching files were already there and nothing was written.
    pub reused: bool,
}

/// Progress reports: (stage, done, total); returning false stops the build (Ctrl-C), leaving
/// no file behind.
pub type Progress<'a> = &'a (dyn Fn(&str, u64, u64) -> bool + Sync);

fn interrupted() -> Error {
    Error::invalid("interrupted: no index file was written")
}

fn meta_text(plan: &IndexPlan) -> String {
    format!(
        "{{\"format\": \"pythia-suite gpt2 index 1\", \"documents\": [{}, {}], \
         \"tokens_per_epoch\": {}, \"num_epochs\": {}, \"num_samples\": {}, \"seq_length\": {}, \
         \"seed\": {}, \"separate_last_epoch\": {}, \"sample_idx_dtype\": \"{}\", \
         \"shuffle_idx_dtype\": \"{}\", \"sizes_fnv1a\": \"{:016x}\", \"items\": {}}}\n",
        plan.documents.0,
        plan.documents.1,
        plan.tokens_per_epoch,
        plan.num_epochs,
        plan.num_samples,
        plan.seq_length,
        plan.seed,
        plan.separate_last_epoch,
        sample_dtype(plan).descr(),
        shuffle_dtype(plan).descr(),
        plan.sizes_hash,
        plan.items,
    )
}

/// The record's key for a digest of each array as this build wrote it: an array swapped in
/// from another build of the same shape (a shuffle_idx of another seed, a sample_idx of other
/// data of as many documents and tokens) passes every other check, and its rows would be read
/// as this record's. The digest is tokenize's of its inputs (`sampled_digest`: sixteen 64 KiB blocks,
/// the npy header among them, or a file of up to 1 MiB whole), so opening an index reads a few
/// dozen blocks, not its gigabytes. Records without it (written before) are taken as they are.
const DIGESTS: &str = "sampled_sha256";
const ARRAYS: [&str; 3] = ["doc_idx", "sample_idx", "shuffle_idx"];

fn array_paths(paths: &IndexPaths) -> [&Path; 3] {
    [&paths.doc_idx, &paths.sample_idx, &paths.shuffle_idx]
}

/// The record of a finished build: its parameters and its arrays' digests.
fn record_text(plan: &IndexPlan, paths: &IndexPaths) -> Result<String> {
    let mut digests = Vec::with_capacity(3);
    for (name, path) in ARRAYS.iter().zip(array_paths(paths)) {
        digests.push(format!(
            "\"{name}\": \"{}\"",
            crate::tokenize::sampled_digest(path)?
        ));
    }
    let meta = meta_text(plan);
    let body = meta.trim_end().strip_suffix('}').unwrap_or(&meta);
    Ok(format!(
        "{body}, \"{DIGESTS}\": {{{}}}}}\n",
        digests.join(", ")
    ))
}

/// Refuse an array whose digest is not the one its record holds (see [`DIGESTS`]).
fn check_digests(recorded: &str, paths: &IndexPaths) -> Result<()> {
    let Ok(serde_json::Value::Object(record)) = serde_json::from_str(recorded) else {
        return Ok(());
    };
    let Some(serde_json::Value::Object(digests)) = record.get(DIGESTS) else {
        return Ok(());
    };
    for (name, path) in ARRAYS.iter().zip(array_paths(paths)) {
        let Some(want) = digests.get(*name).and_then(|v| v.as_str()) else {
            continue;
        };
        if crate::tokenize::sampled_digest(path)? != want {
            return Err(Error::invalid(replaced_array(path, &paths.meta)));
        }
    }
    Ok(())
}

/// The error for an array that is not the one its record describes (GPTDataset says the same).
fn replaced_array(path: &Path, meta: &Path) -> String {
    format!(
        "{}: not the array the build recorded in {} wrote (its sampled digest differs): it was \
         replaced, e.g. by a copy from another build of the same shape; rebuild the index with \
         `pythia-data build-index ... --overwrite`, or put back the file that build wrote",
        path.display(),
        meta.display()
    )
}

/// The record that stands while a build puts its arrays in place: a build killed there leaves
/// arrays of two builds, which must be rebuilt, never reused (nor read).
const BUILDING: &str = "{\"format\": \"pythia-suite gpt2 index 1\", \"building\": true}\n";

/// Whether a recorded build is this plan's (its arrays' digests aside: `check_digests`).
/// Records written before `items` was recorded match on every other field.
fn same_record(recorded: &str, plan: &IndexPlan) -> bool {
    let this = meta_text(plan);
    if recorded == this {
        return true;
    }
    let parse = |t: &str| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t);
    match (parse(recorded), parse(&this)) {
        (Ok(mut old), Ok(mut new)) => {
            old.remove(DIGESTS);
            if !old.contains_key("items") {
                new.remove("items");
            }
            old == new
        }
        _ => false,
    }
}

fn sample_dtype(plan: &IndexPlan) -> NpyDType {
    if plan.sample_idx_i64 {
        NpyDType::I64
    } else {
        NpyDType::I32
    }
}

fn shuffle_dtype(plan: &IndexPlan) -> NpyDType {
    if plan.shuffle_idx_i64 {
        NpyDType::I64
    } else {
        NpyDType::U32
    }
}

/// Check existing files against the plan. Ok(true): reusable; Ok(false): none there.
fn check_existing(plan: &IndexPlan, paths: &IndexPaths) -> Result<bool> {
    let present = [&paths.doc_idx, &paths.sample_idx, &paths.shuffle_idx]
        .iter()
        .filter(|p| p.exists())
        .count();
    if present == 0 {
        return Ok(false);
    }
    if present < 3 {
        // GPT-NeoX rebuilds in this case too; a half-written set is never trusted.
        return Ok(false);
    }
    // A build killed while putting its arrays in place: whatever their shapes, rebuilt.
    if std::fs::read_to_string(&paths.meta).is_ok_and(|t| t == BUILDING) {
        return Ok(false);
    }
    let refuse = |what: String| {
        Error::invalid(format!(
            "an index already exists at {} but {what}: it was built with other parameters or from \
             other data. Delete its files, or rebuild it with --overwrite (overwrite=True in \
             Python); if it is another dataset's of the same file name (one --cache-dir for \
             both), give each dataset its own --cache-dir instead",
            paths.doc_idx.display()
        ))
    };
    let expect = [
        (&paths.doc_idx, NpyDType::I32, vec![plan.doc_idx_len()]),
        (
            &paths.sample_idx,
            sample_dtype(plan),
            vec![plan.n as usize + 1, 2],
        ),
        (
            &paths.shuffle_idx,
            shuffle_dtype(plan),
            vec![plan.n as usize],
        ),
    ];
    for (path, dtype, shape) in expect {
        let a = NpyArray::open(path)?;
        if a.dtype() != dtype || a.shape() != shape.as_slice() {
            return Err(refuse(format!(
                "{} is {} of shape {:?} where these parameters give {} of shape {:?}",
                path.display(),
                a.dtype().descr(),
                a.shape(),
                dtype.descr(),
                shape
            )));
        }
    }
    match std::fs::read_to_string(&paths.meta) {
        Ok(text) if same_record(&text, plan) => check_digests(&text, paths).map(|()| true),
        Ok(text) => Err(refuse(format!(
            "its record {} differs: {}",
            paths.meta.display(),
            record_differences(&text, &meta_text(plan))
        ))),
        // Built by GPT-NeoX itself: shapes match; only the default variant can be assumed.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !plan.separate_last_epoch => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(refuse(
            "it has no record of being built with the separate-last-epoch variant".into(),
        )),
        // Binary, a directory, unreadable: not taken for "built by GPT-NeoX".
        Err(e) => Err(refuse(format!(
            "its record {} cannot be read ({})",
            paths.meta.display(),
            crate::error::os_text(&e)
        ))),
    }
}

/// What differs between a recorded build and this one, field by field (`name: recorded A, this
/// build B`), or both records whole when the recorded one is not a JSON object.
fn record_differences(recorded: &str, this: &str) -> String {
    let parse = |t: &str| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t);
    let (Ok(mut old), Ok(new)) = (parse(recorded), parse(this)) else {
        return format!(
            "it says {} where this build is {}",
            recorded.trim(),
            this.trim()
        );
    };
    // Not a parameter: `this` has none, and arrays are checked only once the rest matches.
    old.remove(DIGESTS);
    let absent = serde_json::Value::String("(none)".into());
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let differences: Vec<String> = keys
        .into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| {
            let (a, b) = (old.get(k).unwrap_or(&absent), new.get(k).unwrap_or(&absent));
            format!("{k}: recorded {a}, this build {b}")
        })
        .collect();
    if differences.is_empty() {
        // The same fields written differently (by hand, or by another version).
        return format!(
            "it says {} where this build is {}",
            recorded.trim(),
            this.trim()
        );
    }
    differences.join("; ")
}

/// One build at a time in a process: temporaries are named by process (see
/// `atomic::shared_temp_path`), so two threads building one index wrote the same temporary files
/// (and a build is parallel inside already).
static ONE_BUILD_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Build (or reuse) the index of `sizes` for `req`, writing GPT-NeoX's three `.npy` files.
pub fn build_index_files(
    sizes: Sizes<'_>,
    req: &IndexRequest,
    paths: &IndexPaths,
    overwrite: bool,
    progress: Progress<'_>,
) -> Result<IndexSummary> {
    // A build that failed in another thread left nothing this one relies on: go on.
    let _one = ONE_BUILD_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let documents = req.documents.unwrap_or((0, sizes.len()));
    let plan = plan(
        sizes,
        documents,
        req.num_samples,
        req.seq_length,
        req.seed,
        req.separate_last_epoch,
    )?;
    // A build killed (SIGKILL, SIGTERM, a lost node) after its files were put in place by an
    // earlier one left hidden temporaries as large as the index, which a reuse never cleaned.
    for p in [
        &paths.doc_idx,
        &paths.sample_idx,
        &paths.shuffle_idx,
        &paths.meta,
    ] {
        crate::atomic::remove_stale_temps(p);
    }
    if !overwrite {
        let _lock = lock_folder(paths, false)?;
        if check_existing(&plan, paths)? {
            return Ok(IndexSummary {
                plan,
                paths: paths.clone(),
                reused: true,
            });
        }
    }
    if let Some(dir) = paths.doc_idx.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::creating(&paths.doc_idx, dir, e))?;
    }
    check_folder_accepts_files(&paths.doc_idx)?;
    let rng = RandomState::from_u32(plan.seed);
    let t0 = std::time::Instant::now();
    let timing = std::env::var_os("PYTHIA_INDEX_TIMING").is_some();
    let lap = |what: &str| {
        if timing {
            eprintln!(
                "[build-index] {:>8.3} s  {what}",
                t0.elapsed().as_secs_f64()
            );
        }
    };
    // Megatron-LM's variant shuffles twice; it is rare and keeps the simple path.
    let offload = !plan.separate_last_epoch && plan.doc_idx_len() >= 2;
    const DRAW_CHUNK: usize = 1 << 20;
    let (draw_tx, draw_rx) = std::sync::mpsc::sync_channel::<Vec<u32>>(4);
    let (spare_tx, spare_rx) = std::sync::mpsc::channel::<Vec<u32>>();
    let (doc_w, sample_w, shuffle_w) = std::thread::scope(|s| -> Result<_> {
        // Owned here, so that leaving early (a stop, an error) drops it before the scope joins
        // the shuffle thread: held outside, it kept that thread blocked on a full channel and
        // the join waited for ever (build-index hung on Ctrl-C or SIGTERM during doc_idx).
        let draw_rx = draw_rx;
        let (plan2, rng2, lap2) = (&plan, &rng, &lap);
        let shuffle_job = s.spawn(move || -> Result<NpyWriter> {
            let (plan, lap) = (plan2, lap2);
            let mut rng2 = rng2.clone();
            // Allocated now, while the first thread allocates doc_idx: faulting in fresh pages
            // is a large share of the work, and this way it overlaps.
            let mut shuffle32 = if plan.shuffle_idx_i64 {
                None
            } else {
                Some(unshuffled_shuffle_idx::<u32>(plan)?)
            };
            if offload {
                let mut i = plan.doc_idx_len() - 1;
                while i >= 1 {
                    let count = i.min(DRAW_CHUNK);
                    let mut buf = spare_rx
                        .try_recv()
                        .unwrap_or_else(|_| Vec::with_capacity(DRAW_CHUNK));
                    shuffle_draws(&mut rng2, i, count, &mut buf);
                    if draw_tx.send(buf).is_err() {
                        break; // the first thread failed; its error is reported
                    }
                    i -= count;
                }
                drop(draw_tx);
            } else {
                drop(draw_tx);
                skip_doc_idx(plan, &mut rng2);
            }
            lap("thread 2: doc_idx draws made");
            let shape = [plan.n as usize];
            let mut w = NpyWriter::create(&paths.shuffle_idx, shuffle_dtype(plan), &shape)?;
            if let Some(v) = shuffle32.as_mut() {
                shuffle_shuffle_idx(plan, v, &mut rng2);
                lap("thread 2: shuffle_idx shuffled");
                w.write(&v[..])?;
            } else {
                w.write(&build_shuffle_idx::<i64>(plan, &mut rng2)?)?;
            }
            lap("thread 2: shuffle_idx written");
            Ok(w)
        });
        let _ = progress("doc_idx", 0, plan.doc_idx_len() as u64);
        let doc_idx = if offload {
            let mut doc_idx = unshuffled_doc_idx(&plan)?;
            let total = doc_idx.len() as u64;
            let mut i = doc_idx.len() - 1;
            for draws in draw_rx.iter() {
                apply_swaps(&mut doc_idx, i, &draws);
                i -= draws.len();
                let _ = spare_tx.send(draws);
                if !progress("doc_idx", total - i as u64, total) {
                    return Err(interrupted());
                }
            }
            doc_idx
        } else {
            build_doc_idx(&plan, &mut rng.clone())?
        };
        lap("thread 1: doc_idx shuffled");
        let rows = plan.n + 1;
        let mut sample_w =
            NpyWriter::create(&paths.sample_idx, sample_dtype(&plan), &[rows as usize, 2])?;
        // Writing doc_idx mostly waits on the kernel's page cache and dirty-page throttling:
        // a third thread does it while sample_idx is computed from the same (read-only) array.
        let doc_w = std::thread::scope(|s2| -> Result<NpyWriter> {
            let doc_ref: &[i32] = &doc_idx;
            let doc_job = s2.spawn(move || -> Result<NpyWriter> {
                let mut w = NpyWriter::create(&paths.doc_idx, NpyDType::I32, &[doc_ref.len()])?;
                w.write(doc_ref)?;
                lap("thread 3: doc_idx written");
                Ok(w)
            });
            let mut done = 0u64;
            let mut narrow: Vec<i32> = Vec::new();
            build_sample_idx(&plan, sizes, doc_ref, |chunk| {
                if plan.sample_idx_i64 {
                    sample_w.write(chunk.as_flattened())?;
                } else {
                    narrow.clear();
                    narrow.extend(chunk.as_flattened().iter().map(|&v| v as i32));
                    sample_w.write(&narrow)?;
                }
                done += chunk.len() as u64;
                if progress("sample_idx", done, rows) {
                    Ok(())
                } else {
                    Err(interrupted())
                }
            })?;
            doc_job
                .join()
                .map_err(|_| Error::invalid("internal error: the doc_idx writer panicked"))?
        })?;
        drop(doc_idx);
        lap("thread 1: sample_idx streamed");
        let _ = progress("shuffle_idx", 0, plan.n);
        let shuffle_w = shuffle_job
            .join()
            .map_err(|_| Error::invalid("internal error: the shuffle thread panicked"))??;
        let _ = progress("shuffle_idx", plan.n, plan.n);
        Ok((doc_w, sample_w, shuffle_w))
    })?;
    // The record says "building" until the three arrays are in place, then says what they are.
    let _lock = lock_folder(paths, true)?;
    write_text_atomically(&paths.meta, BUILDING)?;
    doc_w.finish()?;
    sample_w.finish()?;
    shuffle_w.finish()?;
    write_text_atomically(&paths.meta, &record_text(&plan, paths)?)?;
    lap("files synced and renamed");
    Ok(IndexSummary {
        plan,
        paths: paths.clone(),
        reused: false,
    })
}

/// Refuse a folder that does not accept files (read-only, out of inodes) before the work: the
/// arrays are first created once doc_idx is built and shuffled, minutes to an hour into a build
/// of Pythia's size. The probe bears the name of this process's temporary of `dest`, so that
/// other jobs' cleanup and folder searches pass over it as over a live build's; it is made new
/// (a file already there under that name is not this probe's to remove) and gone at once.
fn check_folder_accepts_files(dest: &Path) -> Result<()> {
    let probe = super::npy::shared_temp_path(dest);
    match std::fs::File::create_new(&probe) {
        Ok(_) => std::fs::remove_file(&probe).map_err(|e| Error::creating(dest, &probe, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::creating(dest, &probe, e)),
    }
}

/// An exclusive lock on the index's folder, held while its files are checked or put in place:
/// two builds of one index with different parameters (both with --overwrite) interleaved their
/// renames and left one's arrays beside the other's record. Building itself runs unlocked;
/// the last build to finish leaves its whole set. None when the folder does not exist yet and
/// `must_exist` is false (there is nothing to check).
fn lock_folder(paths: &IndexPaths, must_exist: bool) -> Result<Option<std::fs::File>> {
    let dir = match paths.doc_idx.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let folder = match std::fs::File::open(dir) {
        Ok(f) => f,
        Err(e) if !must_exist && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        // A folder one may write but not list (mode 0333) cannot be opened to lock: the build
        // goes on unlocked rather than refusing a folder it can write.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Ok(None),
        Err(e) => return Err(Error::io(dir, e)),
    };
    folder.lock().map_err(|e| Error::io(dir, e))?;
    Ok(Some(folder))
}

fn write_text_atomically(dest: &Path, text: &str) -> Result<()> {
    let mut w = NpyWriterText::new(dest)?;
    w.write(text)?;
    w.finish()
}

/// Text files through the same temp-and-rename path as the arrays.
struct NpyWriterText {
    dest: PathBuf,
    tmp: PathBuf,
    /// Open (and locked) until renamed, as the arrays' temporaries.
    file: Option<std::fs::File>,
}

impl NpyWriterText {
    fn new(dest: &Path) -> Result<Self> {
        crate::atomic::remove_stale_temps(dest);
        Ok(NpyWriterText {
            dest: dest.to_path_buf(),
            tmp: super::npy::shared_temp_path(dest),
            file: None,
        })
    }
    fn write(&mut self, text: &str) -> Result<()> {
        use std::io::Write;
        // Named by the folder and `dest`, as the arrays' errors: never the hidden temporary.
        let mut file = std::fs::File::create(&self.tmp)
            .map_err(|e| Error::creating(&self.dest, &self.tmp, e))?;
        crate::atomic::hold_temp_lock(&file);
        let written = file.write_all(text.as_bytes());
        self.file = Some(file);
        written.map_err(|e| Error::io(&self.dest, e))
    }
    fn finish(mut self) -> Result<()> {
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| Error::io(&self.dest, e))?;
        self.file = None;
        Ok(())
    }
}

impl Drop for NpyWriterText {
    /// Not renamed (a full disk, an error): the temporary must not stay behind.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Build the index of the dataset whose `.idx` is `idx_path`; the cache files go beside
/// `cache_prefix` (GPT-NeoX: the data prefix itself).
pub fn build_index_for(
    idx_path: &Path,
    cache_prefix: &Path,
    req: &IndexRequest,
    overwrite: bool,
    progress: Progress<'_>,
) -> Result<IndexSummary> {
    let idx = IdxSizes::open(idx_path)?;
    let paths = index_paths(
        cache_prefix,
        &req.name,
        req.num_samples,
        req.seq_length,
        req.seed,
    );
    build_index_files(idx.sizes(), req, &paths, overwrite, progress).map_err(|e| match e {
        Error::Invalid(m) if m.contains("no tokens") || m.contains("negative size") => {
            Error::corrupt(idx.path(), m)
        }
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/gpt-neox-v1.0")
    }

    /// GPT-NeoX v1.0's own cache files, byte for byte (more cases in tests/test_index_build.py).
    #[test]
    fn golden_cases_are_byte_identical() {
        let cases = [
            ("toy_e2", 9, 4, 1234),
            ("zero_len_docs", 20, 5, 7),
            ("seed_max", 1200, 128, 4_294_967_295),
            ("lognormal_e3", 4000, 512, 0),
        ];
        let out = std::env::temp_dir().join(format!("golden-index-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        for (name, ns, sl, seed) in cases {
            let idx = fixtures().join(format!("{name}.idx"));
            let req = IndexRequest {
                name: "train_0".into(),
                num_samples: ns,
                seq_length: sl,
                seed,
                documents: None,
                separate_last_epoch: false,
            };
            let s = build_index_for(&idx, &out.join(name), &req, false, &|_, _, _| true).unwrap();
            let golden = index_paths(&fixtures().join(name), "train_0", ns, sl, seed);
            for (ours, theirs) in [
                (&s.paths.doc_idx, &golden.doc_idx),
                (&s.paths.sample_idx, &golden.sample_idx),
                (&s.paths.shuffle_idx, &golden.shuffle_idx),
            ] {
                assert_eq!(
                    std::fs::read(ours).unwrap(),
                    std::fs::read(theirs).unwrap(),
                    "{name}: {}",
                    theirs.display()
                );
            }
        }
        std::fs::remove_dir_all(&out).unwrap();
    }

    /// A shuffle_idx of another seed has the same shape: only the recorded digest tells.
    #[test]
    fn an_array_swapped_in_from_another_build_is_refused() {
        let out = std::env::temp_dir().join(format!("swapped-index-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let idx = fixtures().join("lognormal_e3.idx");
        let build = |seed, dir: &str, overwrite| {
            let req = IndexRequest {
                name: "train_0".into(),
                num_samples: 4000,
                seq_length: 512,
                seed,
                documents: None,
                separate_last_epoch: false,
            };
            build_index_for(
                &idx,
                &out.join(dir).join("d"),
                &req,
                overwrite,
                &|_, _, _| true,
            )
            .unwrap()
        };
        let a = build(1, "a", false);
        let record = std::fs::read_to_string(&a.paths.meta).unwrap();
        assert!(record.contains(DIGESTS), "{record}");
        // Rebuilt, the arrays are the same bytes, so the record is too.
        build(1, "a", true);
        assert_eq!(std::fs::read_to_string(&a.paths.meta).unwrap(), record);
        let b = build(2, "b", false);
        std::fs::copy(&b.paths.shuffle_idx, &a.paths.shuffle_idx).unwrap();
        let req = IndexRequest {
            name: "train_0".into(),
            num_samples: 4000,
            seq_length: 512,
            seed: 1,
            documents: None,
            separate_last_epoch: false,
        };
        let err = build_index_for(&idx, &out.join("a/d"), &req, false, &|_, _, _| true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("shuffle_idx.npy: not the array the build recorded"),
            "{err}"
        );
        assert!(
            err.contains("--overwrite") && err.contains("put back"),
            "{err}"
        );
        // A record from before digests were kept is still reused as it was.
        let without = record.replace(
            &record[record.find(", \"sampled_sha256\"").unwrap()..record.len() - 2],
            "",
        );
        std::fs::write(&a.paths.meta, &without).unwrap();
        let s = build_index_for(&idx, &out.join("a/d"), &req, false, &|_, _, _| true).unwrap();
        assert!(s.reused);
        assert_eq!(std::fs::read_to_string(&a.paths.meta).unwrap(), without);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
