//! An exact, fast reimplementation of Hugging Face `tokenizers` for byte-level BPE files of the
//! GPT-2 / GPT-NeoX family (facts: shared/spec/tokenizer.md). `encode` returns, for every input,
//! the ids of `tokenizers.Tokenizer.from_file(path).encode(text).ids`.
//!
//! Encode, in order: cut out the non-normalized added tokens (`<|endoftext|>`) → NFC with the
//! reference's Unicode 9.0 tables → cut out the normalized added tokens (NeoX's space runs) → the
//! GPT-2 pre-tokenizer pattern → byte-level BPE per pre-token.

mod added;
mod bpe;
mod byte_level;
mod classes;
mod config;
mod hash;
mod normalize;
mod pretokenize;
mod repeated_keys;
mod short_table;

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use added::{AddedMatcher, Segment};
use bpe::{Bpe, BpeCache};
use classes::CharClasses;

use crate::error::IoContext;
use crate::Result;

/// What one text costs a window of [`Tokenizer::encode_batch_flat`] besides its bytes: its id
/// vector's header and smallest allocation. Counted by bytes alone, two million empty texts
/// made one window, and their vectors 170 MB beside a 16 MB result.
const FLAT_BATCH_BYTES_PER_TEXT: usize = 64;

/// The end of the window that starts at text `start`: at least one text, then texts while the
/// window holds less than `window_bytes`.
fn window_end<T: AsRef<str>>(texts: &[T], start: usize, window_bytes: usize) -> usize {
    let mut end = start;
    let mut bytes = 0usize;
    while end < texts.len() && (end == start || bytes < window_bytes) {
        bytes = bytes.saturating_add(texts[end].as_ref().len() + FLAT_BATCH_BYTES_PER_TEXT);
        end += 1;
    }
    end
}

/// Text per parallel window of [`Tokenizer::encode_batch_flat`] (or 1 MB per thread, if more):
/// enough for every core to have many texts (a barrier per window costs little), small beside
/// the batches it is meant for.
pub const FLAT_BATCH_WINDOW_BYTES: usize = 8 << 20;

pub use config::TokenizerConfig;

/// The char-class table is the same for every tokenizer; build it once per process.
fn char_classes() -> &'static CharClasses {
    static CLASSES: OnceLock<CharClasses> = OnceLock::new();
    CLASSES.get_or_init(CharClasses::new)
}

/// Each thread keeps one BPE cache, for the tokenizer it last served (ids are the same for
/// instances loaded from the same bytes, whose BPE results are the same, and differ otherwise,
/// so switching tokenizers clears it instead of mixing vocabularies).
struct ThreadCache {
    owner: u64,
    cache: BpeCache,
}

thread_local! {
    static CACHE: RefCell<ThreadCache> = RefCell::new(ThreadCache { owner: 0, cache: BpeCache::default() });
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The cache id of the tokenizer loaded from the bytes with this sha256: the same for every
/// instance of one file (an unpickled copy in a worker, two loads of one path), so that
/// alternating between them keeps each thread's cache.
fn cache_id(sha256: &str) -> u64 {
    static IDS: OnceLock<std::sync::Mutex<std::collections::HashMap<String, u64>>> =
        OnceLock::new();
    let mut ids = IDS.get_or_init(Default::default).lock().unwrap();
    *ids.entry(sha256.to_string())
        .or_insert_with(|| NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

pub struct Tokenizer {
    /// Identifies this tokenizer for the per-thread caches (see [`cache_id`]).
    id: u64,
    classes: &'static CharClasses,
    bpe: Bpe,
    /// Added tokens matched on the raw text (`normalized: false`).
    raw_added: AddedMatcher,
    /// Added tokens matched after normalization (`normalized: true`).
    normalized_added: AddedMatcher,
    nfc: bool,
    /// id → the bytes it decodes to (None: no such id).
    decoded: Vec<Option<Box<[u8]>>>,
    special: Vec<bool>,
    eod_id: Option<u32>,
    /// Warm caches of worker threads that have finished, for the next job's workers.
    spare_caches: std::sync::Mutex<Vec<BpeCache>>,
    /// sha256 of the `tokenizer.json` bytes: identifies the tokenizer in resume checkpoints.
    sha256: String,
}

impl Tokenizer {
    /// Load a Hugging Face `tokenizer.json`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        use std::io::Read;
        let path = path.as_ref();
        let mut file = std::fs::File::open(path).at(path)?;
        // A tokenizer.json is a JSON object, so a file that does not start with "{" is refused
        // from its first bytes: read whole first, a data file given by mistake (a dataset's
        // .bin, a .zst) took its size in memory to say "expected value at line 1 column 1",
        // and one larger than memory failed as "out of memory".
        // Past any real tokenizer.json (GPT-NeoX's is 2 MB, the largest vocabularies' tens of
        // MB): a JSON-lines corpus given by mistake starts with "{" too, and was read whole.
        const MOST_BYTES: u64 = 1 << 30;
        let len = file.metadata().at(path)?.len();
        if len > MOST_BYTES {
            return Err(crate::Error::corrupt(
                path,
                format!(
                    "not a tokenizer.json: {len} bytes, past the 1 GiB read at most (a \
                     tokenizer.json takes a few MB)"
                ),
            ));
        }
        let mut bytes = Vec::new();
        file.by_ref().take(4096).read_to_end(&mut bytes).at(path)?;
        if let Some(&first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            if bytes.starts_with(b"\xef\xbb\xbf") {
                return Err(crate::Error::corrupt(
                    path,
                    "not a valid tokenizer.json: it starts with a UTF-8 byte order mark, which \
                     the reference refuses too; save it without one",
                ));
            }
            if first != b'{' {
                return Err(crate::Error::corrupt(
                    path,
                    "not a tokenizer.json: it does not start with \"{\" as a JSON object does",
                ));
            }
        }
        file.read_to_end(&mut bytes).at(path)?;
        Self::from_json(&bytes).map_err(|e| match e {
            crate::Error::Invalid(msg) => crate::Error::corrupt(path, msg),
            other => other,
        })
    }

    /// Load from the bytes of a `tokenizer.json`.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        use sha2::{Digest, Sha256};
        let sha256 = format!("{:x}", Sha256::digest(json));
        Self::from_config(TokenizerConfig::parse(json)?, sha256)
    }

    fn from_config(cfg: TokenizerConfig, sha256: String) -> Result<Self> {
        let bpe = Bpe::new(&cfg.bpe_tokens, &cfg.merges, cfg.ignore_merges);
        let (normalized, raw): (Vec<_>, Vec<_>) = cfg.added.iter().partition(|t| t.normalized);
        let to_pairs = |v: Vec<&config::AddedToken>, nfc: bool| -> Vec<(String, u32)> {
            v.iter()
                .map(|t| {
                    let content = if nfc {
                        normalize::nfc(&t.content).into_owned()
                    } else {
                        t.content.clone()
                    };
                    (content, t.id)
                })
                .collect()
        };
        let raw_added = AddedMatcher::new(&to_pairs(raw, false))?;
        let normalized_added = AddedMatcher::new(&to_pairs(normalized, cfg.nfc))?;
        let mut special = vec![false; cfg.decoded.len()];
        for t in &cfg.added {
            special[t.id as usize] = t.special;
        }
        Ok(Tokenizer {
            id: cache_id(&sha256),
            classes: char_classes(),
            bpe,
            raw_added,
            normalized_added,
            nfc: cfg.nfc,
            decoded: cfg.decoded,
            special,
            eod_id: cfg.eod_id,
            spare_caches: Default::default(),
            sha256,
        })
    }

    /// sha256 (hex) of the `tokenizer.json` this was loaded from.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The number of ids (the largest id + 1, added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.decoded.len()
    }

    /// The id of `<|endoftext|>`, which GPT-NeoX appends to every document.
    pub fn eod_id(&self) -> Option<u32> {
        self.eod_id
    }

    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        self.encode_into(text, &mut out);
        out
    }

    /// Append the ids of `text` to `out`.
    pub fn encode_into(&self, text: &str, out: &mut Vec<u32>) {
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.owner != self.id {
                c.cache.clear();
                c.owner = self.id;
            }
            let cache = &mut c.cache;
            self.raw_added.split(text, |segment| match segment {
                Segment::Token(id) => out.push(id),
                Segment::Text(piece) => self.encode_normalized(piece, out, cache),
            });
        })
    }

    fn encode_normalized(&self, piece: &str, out: &mut Vec<u32>, cache: &mut BpeCache) {
        let normalized = if self.nfc {
            normalize::nfc(piece)
        } else {
            std::borrow::Cow::Borrowed(piece)
        };
        self.normalized_added
            .split(&normalized, |segment| match segment {
                Segment::Token(id) => out.push(id),
                Segment::Text(text) => pretokenize::split(self.classes, text, |pre| {
                    self.bpe.encode_piece(pre, out, cache)
                }),
            });
    }

    /// The ids of all `texts` back to back, and offsets: text i is `ids[offsets[i]..offsets[i +
    /// 1]]`. Encoded in parallel (rayon: call it through [`crate::in_pool`]) a window of about
    /// [`FLAT_BATCH_WINDOW_BYTES`] of text at a time, so that the per-text id vectors of one
    /// window, not of the whole batch, live beside the flat result: memory peaks near the
    /// result's size, not twice it. The result is reserved at once from the first window's ids
    /// per byte (with a margin), so that it is rarely moved; reserved pages that stay unused
    /// cost address space, not memory.
    pub fn encode_batch_flat<T: AsRef<str> + Sync>(&self, texts: &[T]) -> (Vec<u32>, Vec<i64>) {
        let window = FLAT_BATCH_WINDOW_BYTES.max(rayon::current_num_threads() << 20);
        self.encode_batch_flat_in_windows(texts, window)
    }

    fn encode_batch_flat_in_windows<T: AsRef<str> + Sync>(
        &self,
        texts: &[T],
        window_bytes: usize,
    ) -> (Vec<u32>, Vec<i64>) {
        use rayon::prelude::*;
        let total_bytes: usize = texts.iter().map(|t| t.as_ref().len()).sum();
        let mut ids: Vec<u32> = Vec::new();
        let mut offsets = Vec::with_capacity(texts.len() + 1);
        offsets.push(0i64);
        fn append(window: Vec<Vec<u32>>, ids: &mut Vec<u32>, offsets: &mut Vec<i64>) {
            for text_ids in window {
                ids.extend_from_slice(&text_ids);
                offsets.push(ids.len() as i64);
            }
        }
        // Each window is appended on this thread while the pool encodes the next: appended
        // after its own encoding, it left the other cores idle (2 cores: 13 % of the time).
        let mut encoded: Option<Vec<Vec<u32>>> = None;
        let mut start = 0;
        while start < texts.len() {
            let end = window_end(texts, start, window_bytes);
            let (_, window) = rayon::join(
                || {
                    if let Some(done) = encoded.take() {
                        if offsets.len() == 1 {
                            // The first window: the result reserved from its ids per byte.
                            let first: usize = done.iter().map(Vec::len).sum();
                            let first_bytes: usize =
                                texts[..start].iter().map(|t| t.as_ref().len()).sum();
                            let per_byte = first as f64 / first_bytes.max(1) as f64;
                            ids.reserve((per_byte * 1.125 * total_bytes as f64) as usize + 1024);
                        }
                        append(done, &mut ids, &mut offsets);
                    }
                },
                || {
                    texts[start..end]
                        .par_iter()
                        .map(|t| self.encode(t.as_ref()))
                        .collect::<Vec<_>>()
                },
            );
            encoded = Some(window);
            start = end;
        }
        if let Some(done) = encoded {
            append(done, &mut ids, &mut offsets);
        }
        (ids, offsets)
    }

    /// Run `f` on this thread with a warm BPE cache left by an earlier worker of this tokenizer,
    /// and keep this thread's cache for a later one: a job that starts fresh threads (each
    /// `tokenize_files` call) would otherwise redo every BPE merge.
    pub fn with_pooled_cache<T>(&self, f: impl FnOnce() -> T) -> T {
        let spare = self.spare_caches.lock().unwrap().pop().unwrap_or_default();
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            c.owner = self.id;
            c.cache = spare;
        });
        let result = f();
        let used = CACHE.with(|c| {
            let mut c = c.borrow_mut();
            c.owner = 0;
            std::mem::take(&mut c.cache)
        });
        self.spare_caches.lock().unwrap().push(used);
        result
    }

    /// Text of `ids`: bytes of each token (added tokens as their text), special tokens dropped
    /// when `skip_special_tokens`, ids outside the vocabulary ignored, invalid UTF-8 replaced.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        self.decode_iter(ids.iter().copied(), skip_special_tokens)
    }

    /// `decode` of ids in any form, taken one by one: ids held wider (a caller's int64) need no
    /// narrowed copy first.
    pub fn decode_iter(
        &self,
        ids: impl ExactSizeIterator<Item = u32>,
        skip_special_tokens: bool,
    ) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for id in ids {
            let id = id as usize;
            if let Some(Some(b)) = self.decoded.get(id) {
                if !(skip_special_tokens && self.special[id]) {
                    bytes.extend_from_slice(b);
                }
            }
        }
        match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neox() -> Tokenizer {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../python/pythia_data/data/20B_tokenizer.json"
        );
        Tokenizer::from_file(path).unwrap()
    }

    #[test]
    fn flat_batch_is_the_texts_ids_back_to_back_for_any_window() {
        let t = neox();
        let texts: Vec<String> = (0..200)
            .map(|i| format!("doc {i}: {}", "Hello world, it's me. ".repeat(i % 17)))
            .chain(["".to_string(), "<|endoftext|>\r\n  x".to_string()])
            .collect();
        let mut want = (Vec::new(), vec![0i64]);
        for text in &texts {
            want.0.extend(t.encode(text));
            want.1.push(want.0.len() as i64);
        }
        for window in [1, 7, 1000, usize::MAX] {
            assert_eq!(
                t.encode_batch_flat_in_windows(&texts, window),
                want,
                "{window}"
            );
        }
        assert_eq!(t.encode_batch_flat(&texts), want);
        assert_eq!(t.encode_batch_flat::<&str>(&[]), (vec![], vec![0]));
    }

    #[test]
    fn flat_batch_windows_count_each_text_as_well_as_its_bytes() {
        let empty = vec![""; 1000];
        let ends: Vec<usize> = std::iter::successors(Some(0), |&s| {
            (s < empty.len()).then(|| window_end(&empty, s, 100 * FLAT_BATCH_BYTES_PER_TEXT))
        })
        .skip(1)
        .collect();
        assert_eq!(ends, (1..=10).map(|k| 100 * k).collect::<Vec<_>>());
        // Long texts: one more text once the window is full, at least one per window.
        let long = vec!["x".repeat(1000); 5];
        assert_eq!(window_end(&long, 0, 1500), 2);
        assert_eq!(window_end(&long, 4, 1), 5);
    }

    #[test]
    fn spec_examples() {
        // Values from shared/spec/tokenizer.md, produced by the reference.
        let t = neox();
        assert_eq!(t.vocab_size(), 50277);
        assert_eq!(t.eod_id(), Some(0));
        assert_eq!(t.encode("Hello world"), [12092, 1533]);
        assert_eq!(t.encode("hello  world"), [25521, 50276, 10186]);
        let s = format!("a{}b", " ".repeat(25));
        assert_eq!(t.encode(&s), [66, 50254, 270]);
        assert_eq!(t.decode(&[12092, 1533, 0], true), "Hello world");
        assert_eq!(
            t.decode(&[12092, 1533, 0], false),
            "Hello world<|endoftext|>"
        );
        assert_eq!(
            t.decode(&[25521, 50276, 10186, 60000], true),
            "hello  world"
        );
    }

    #[test]
    fn eod_id_from_the_model_vocab() {
        // `<|endoftext|>` listed only in the model vocab still has an id, as in the reference.
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../python/pythia_data/data/20B_tokenizer.json"
        );
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
        cfg["added_tokens"] = serde_json::json!([]);
        let t = Tokenizer::from_json(cfg.to_string().as_bytes()).unwrap();
        assert_eq!(t.eod_id(), Some(0));
    }

    #[test]
    fn special_tokens_inside_text() {
        let t = neox();
        let ids = t.encode("a<|endoftext|>b<|padding|>");
        assert_eq!(ids[1], 0);
        assert_eq!(*ids.last().unwrap(), 1);
        assert_eq!(t.decode(&ids, false), "a<|endoftext|>b<|padding|>");
    }

    #[test]
    fn long_runs_are_not_quadratic() {
        let t = neox();
        for unit in ["a", "7", "\n", " ", "é"] {
            let text = unit.repeat(1 << 20);
            let start = std::time::Instant::now();
            let ids = t.encode(&text);
            assert!(
                start.elapsed().as_secs_f64() < 5.0,
                "{unit:?} took too long"
            );
            assert_eq!(t.decode(&ids, true), text);
        }
    }
}
