//! Byte-level BPE: repeatedly merge the adjacent pair with the lowest merge rank, leftmost on
//! ties, exactly as Hugging Face `tokenizers`' `Word::merge_all`.
//!
//! Two shortcuts keep it fast without changing a single id: a pre-token that is itself a token
//! (most words) is looked up whole, but only for tokens verified at load time to encode to
//! themselves; and pieces up to [`SMALL`] bytes merge in stack arrays, while longer ones (1 MB of
//! one letter) use a heap over a linked list, so no input is quadratic.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::hash::FxHashMap;
use super::short_table::{self, ShortTable};

/// No merge for this pair.
const NONE: u64 = u64::MAX;
/// Pieces longer than this use the heap algorithm.
const SMALL: usize = 64;

pub struct Bpe {
    /// The token of each single byte (`u32::MAX` if the vocabulary has none: the byte is dropped,
    /// as the reference does without an unknown token).
    byte_ids: [u32; 256],
    /// (left id, right id) → rank << 32 | merged id.
    merges: FxHashMap<u64, u64>,
    /// Whole pre-tokens of up to 11 bytes (nearly all words).
    whole_tiny: ShortTable,
    /// Whole pre-tokens of 12 to 15 bytes that encode to one token, keyed by [`short_key`]:
    /// comparing one u128 is much cheaper than hashing and comparing a byte string.
    whole_short: FxHashMap<u128, u32>,
    /// The longer ones.
    whole_long: FxHashMap<Box<[u8]>, u32>,
}

/// Results of full BPE runs for pieces that are not one token, reused across calls on one
/// thread (the same identifiers and words recur all over a corpus).
#[derive(Default)]
pub struct BpeCache {
    map: FxHashMap<u128, u64>,
    /// Pieces of 16 to [`BpeCache::MAX_LONG`] bytes (long identifiers, URLs, rulers of `=`).
    long: FxHashMap<Box<[u8]>, u64>,
    ids: Vec<u32>,
    /// Bytes held by the keys of `long`.
    long_bytes: usize,
}

impl BpeCache {
    /// Bound the memory: about 30 MB at most per thread (4 MB of ids, and maps sized for up to
    /// a million 25-byte entries, pieces being two ids or more)...
    const MAX_IDS: usize = 1 << 20;
    const MAX_LONG: usize = 256;
    /// ...and the keys of long pieces: pieces of a few long tokens (rulers of `-` and `=`) hold
    /// up to 256 key bytes per handful of ids, 50 MB and more per thread under `MAX_IDS` alone.
    const MAX_LONG_BYTES: usize = 8 << 20;

    pub fn clear(&mut self) {
        self.map.clear();
        self.long.clear();
        self.ids.clear();
        self.long_bytes = 0;
    }

    /// Keep `out[before..]` as the ids of a piece; returns the (start << 8 | len) to store.
    fn store(&mut self, out: &[u32], before: usize) -> u64 {
        if self.ids.len() > Self::MAX_IDS || self.long_bytes > Self::MAX_LONG_BYTES {
            self.clear();
        }
        let start = self.ids.len();
        self.ids.extend_from_slice(&out[before..]);
        ((start as u64) << 8) | (out.len() - before) as u64
    }

    fn load(&self, at: u64, out: &mut Vec<u32>) {
        let (start, len) = ((at >> 8) as usize, (at & 0xFF) as usize);
        out.extend_from_slice(&self.ids[start..start + len]);
    }
}

/// A piece of at most 15 bytes packed with its length into one u128 (so "a" and "a\0" differ).
#[inline(always)]
fn short_key(piece: &[u8]) -> Option<u128> {
    if piece.len() > 15 {
        return None;
    }
    let mut buf = [0u8; 16];
    buf[..piece.len()].copy_from_slice(piece);
    buf[15] = piece.len() as u8;
    Some(u128::from_le_bytes(buf))
}

#[inline(always)]
fn pair_key(a: u32, b: u32) -> u64 {
    ((a as u64) << 32) | b as u64
}

impl Bpe {
    /// `tokens`: (bytes, id) of the vocabulary; `merges`: pairs of ids in rank order with the id
    /// of their result. `ignore_merges`: the reference's flag that looks whole pieces up first.
    pub fn new(tokens: &[(Vec<u8>, u32)], merges: &[(u32, u32, u32)], ignore_merges: bool) -> Self {
        let mut byte_ids = [u32::MAX; 256];
        for (bytes, id) in tokens {
            if bytes.len() == 1 {
                byte_ids[bytes[0] as usize] = *id;
            }
        }
        let mut merge_map = FxHashMap::default();
        for (rank, &(a, b, out)) in merges.iter().enumerate() {
            // A pair listed twice takes its last rank: the reference collects the merges into a
            // HashMap, where the later insert overwrites the earlier one.
            merge_map.insert(pair_key(a, b), ((rank as u64) << 32) | out as u64);
        }
        let mut bpe = Bpe {
            byte_ids,
            merges: merge_map,
            whole_tiny: ShortTable::new(std::iter::empty()),
            whole_short: FxHashMap::default(),
            whole_long: FxHashMap::default(),
        };
        let mut whole_short = FxHashMap::default();
        let mut whole_long = FxHashMap::default();
        let mut scratch = Vec::new();
        for (bytes, id) in tokens {
            if bytes.is_empty() {
                continue;
            }
            let keep = ignore_merges || {
                scratch.clear();
                bpe.merge(bytes, &mut scratch);
                scratch.len() == 1 && scratch[0] == *id
            };
            if keep {
                match short_key(bytes) {
                    Some(k) => whole_short.insert(k, *id),
                    None => whole_long.insert(bytes.clone().into_boxed_slice(), *id),
                };
            }
        }
        bpe.whole_tiny = ShortTable::new(
            whole_short
                .iter()
                .map(|(k, &id)| {
                    let b = k.to_le_bytes();
                    (b[..b[15] as usize].to_vec(), id)
                })
                .filter(|(b, _)| b.len() <= short_table::MAX_LEN)
                .collect::<Vec<_>>()
                .into_iter(),
        );
        whole_short.retain(|k, _| k.to_le_bytes()[15] as usize > short_table::MAX_LEN);
        bpe.whole_short = whole_short;
        bpe.whole_long = whole_long;
        bpe
    }

    #[inline]
    fn rank(&self, a: u32, b: u32) -> u64 {
        match self.merges.get(&pair_key(a, b)) {
            Some(&v) => v,
            None => NONE,
        }
    }

    /// Append the ids of one pre-token.
    #[inline]
    pub fn encode_piece(&self, piece: &[u8], out: &mut Vec<u32>, cache: &mut BpeCache) {
        if piece.len() <= short_table::MAX_LEN {
            if let Some(id) = self.whole_tiny.get(piece) {
                out.push(id);
                return;
            }
        }
        match short_key(piece) {
            Some(key) => {
                if let Some(&id) = self.whole_short.get(&key) {
                    out.push(id);
                } else if let Some(&at) = cache.map.get(&key) {
                    cache.load(at, out);
                } else {
                    let before = out.len();
                    self.merge(piece, out);
                    let at = cache.store(out, before);
                    cache.map.insert(key, at);
                }
            }
            None => {
                if let Some(&id) = self.whole_long.get(piece) {
                    out.push(id);
                } else if piece.len() > BpeCache::MAX_LONG {
                    self.merge(piece, out);
                } else if let Some(&at) = cache.long.get(piece) {
                    cache.load(at, out);
                } else {
                    let before = out.len();
                    self.merge(piece, out);
                    // The stored length is one byte: a piece left as 256 ids is not kept.
                    if out.len() - before < 256 {
                        let at = cache.store(out, before);
                        cache.long_bytes += piece.len();
                        cache.long.insert(piece.into(), at);
                    }
                }
            }
        }
    }

    fn merge(&self, piece: &[u8], out: &mut Vec<u32>) {
        if piece.len() <= SMALL {
            self.merge_small(piece, out)
        } else {
            self.merge_heap(piece, out)
        }
    }

    fn merge_small(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut syms = [0u32; SMALL];
        let mut n = 0;
        for &b in piece {
            let id = self.byte_ids[b as usize];
            if id != u32::MAX {
                syms[n] = id;
                n += 1;
            }
        }
        // ranks[k]: the merge of syms[k], syms[k+1] (rank << 32 | result), NONE if none.
        let mut ranks = [NONE; SMALL];
        for k in 0..n.saturating_sub(1) {
            ranks[k] = self.rank(syms[k], syms[k + 1]);
        }
        while n > 1 {
            let mut best = 0;
            for k in 1..n - 1 {
                // Strict `<` keeps the leftmost of equal ranks.
                if ranks[k] < ranks[best] {
                    best = k;
                }
            }
            let m = ranks[best];
            if m == NONE {
                break;
            }
            syms[best] = m as u32;
            syms.copy_within(best + 2..n, best + 1);
            ranks.copy_within(best + 2..n, best + 1);
            n -= 1;
            ranks[n - 1] = NONE;
            if best + 1 < n {
                ranks[best] = self.rank(syms[best], syms[best + 1]);
            } else {
                ranks[best] = NONE;
            }
            if best > 0 {
                ranks[best - 1] = self.rank(syms[best - 1], syms[best]);
            }
        }
        out.extend_from_slice(&syms[..n]);
    }

    fn merge_heap(&self, piece: &[u8], out: &mut Vec<u32>) {
        let mut syms: Vec<u32> = Vec::with_capacity(piece.len());
        for &b in piece {
            let id = self.byte_ids[b as usize];
            if id != u32::MAX {
                syms.push(id);
            }
        }
        let n = syms.len();
        const END: u32 = u32::MAX;
        let mut next: Vec<u32> = (1..=n as u32).collect();
        if n > 0 {
            next[n - 1] = END;
        }
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        // (rank, position of the left symbol): the heap pops the lowest rank, then the leftmost.
        // An entry goes stale when a side is merged away; a rank names one pair, so the entry
        // still holds when the pair now at its position has its rank. Eight bytes an entry,
        // not sixteen with both ids: a 100 MB piece needs a heap of its size.
        let mut heap = BinaryHeap::with_capacity(n);
        for k in 0..n.saturating_sub(1) {
            let m = self.rank(syms[k], syms[k + 1]);
            if m != NONE {
                heap.push(Reverse(((m >> 32) as u32, k as u32)));
            }
        }
        while let Some(Reverse((rank, pos))) = heap.pop() {
            let p = pos as usize;
            let q = next[p];
            if syms[p] == END || q == END {
                continue;
            }
            let q = q as usize;
            let m = self.rank(syms[p], syms[q]);
            if m == NONE || (m >> 32) as u32 != rank {
                continue;
            }
            let merged = m as u32;
            syms[p] = merged;
            syms[q] = END; // dead
            let after = next[q];
            next[p] = after;
            if after != END {
                prev[after as usize] = p as u32;
                let m = self.rank(merged, syms[after as usize]);
                if m != NONE {
                    heap.push(Reverse(((m >> 32) as u32, pos)));
                }
            }
            let before = prev[p];
            if before != u32::MAX {
                let m = self.rank(syms[before as usize], merged);
                if m != NONE {
                    heap.push(Reverse(((m >> 32) as u32, before)));
                }
            }
        }
        if n > 0 {
            // Merges always remove the right symbol, so position 0 survives to the end.
            let mut k = 0;
            loop {
                out.push(syms[k]);
                if next[k] == END {
                    break;
                }
                k = next[k] as usize;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy vocabulary: bytes a, b, c; merges (a,a)→aa, (aa,b)→aab, (b,c)→bc, (a,bc)→abc.
    fn toy() -> Bpe {
        let tokens = vec![
            (b"a".to_vec(), 0),
            (b"b".to_vec(), 1),
            (b"c".to_vec(), 2),
            (b"aa".to_vec(), 3),
            (b"aab".to_vec(), 4),
            (b"bc".to_vec(), 5),
            (b"abc".to_vec(), 6),
        ];
        Bpe::new(
            &tokens,
            &[(0, 0, 3), (3, 1, 4), (1, 2, 5), (0, 5, 6)],
            false,
        )
    }

    fn both(bpe: &Bpe, piece: &[u8]) -> Vec<u32> {
        let mut small = Vec::new();
        bpe.merge_small(piece, &mut small);
        let mut heap = Vec::new();
        bpe.merge_heap(piece, &mut heap);
        assert_eq!(small, heap, "small and heap merges differ on {piece:?}");
        small
    }

    #[test]
    fn lowest_rank_leftmost_first() {
        let bpe = toy();
        assert_eq!(both(&bpe, b"aaa"), [3, 0]); // leftmost (a,a) first
        assert_eq!(both(&bpe, b"aab"), [4]);
        assert_eq!(both(&bpe, b"abc"), [6]); // (b,c) before (a,bc)
        assert_eq!(both(&bpe, b"aabc"), [4, 2]); // (a,a) ranks before (b,c)
        assert_eq!(both(&bpe, b"aaaa"), [3, 3]);
        assert_eq!(both(&bpe, b"cab"), [2, 0, 1]);
        assert_eq!(both(&bpe, b""), Vec::<u32>::new());
    }

    #[test]
    fn whole_lookup_only_for_reachable_tokens() {
        // "abc" encodes to itself; a token that BPE cannot reach must not be looked up whole.
        let tokens = vec![
            (b"a".to_vec(), 0),
            (b"b".to_vec(), 1),
            (b"ab".to_vec(), 2),
            (b"ba".to_vec(), 3),
            (b"aba".to_vec(), 4),
        ];
        // (a,b) ranks first, so "aba" → [ab, a] although "aba" = ba+... is in the vocabulary.
        let bpe = Bpe::new(&tokens, &[(0, 1, 2), (1, 0, 3), (0, 3, 4)], false);
        let mut out = Vec::new();
        let mut cache = BpeCache::default();
        bpe.encode_piece(b"aba", &mut out, &mut cache);
        assert_eq!(out, [2, 0]);
        bpe.encode_piece(b"aba", &mut out, &mut cache); // from the cache this time
        assert_eq!(out, [2, 0, 2, 0]);
        let bpe = Bpe::new(&tokens, &[(0, 1, 2), (1, 0, 3), (0, 3, 4)], true);
        out.clear();
        bpe.encode_piece(b"aba", &mut out, &mut BpeCache::default());
        assert_eq!(out, [4]);
    }

    #[test]
    fn long_piece_keys_stay_bounded() {
        // Bytes a, b and their runs of 2..64 (ids 0..13): a piece a^i b^j a^k b^l merges into
        // one token per bit of i, j, k, l, so 60,000 distinct pieces of ~200 bytes hold few ids
        // (far under MAX_IDS) but 12 MB of keys.
        let mut tokens = vec![(b"a".to_vec(), 0), (b"b".to_vec(), 1)];
        let mut merges = Vec::new();
        for (c, first) in [(b'a', 0u32), (b'b', 1)] {
            let mut prev = first;
            for k in 1..7 {
                let id = tokens.len() as u32;
                tokens.push((vec![c; 1 << k], id));
                merges.push((prev, prev, id));
                prev = id;
            }
        }
        let bpe = Bpe::new(&tokens, &merges, false);
        let mut cache = BpeCache::default();
        let mut out = Vec::new();
        let mut most = 0;
        for n in 0..60_000usize {
            let (i, j, k, l) = (40 + n % 31, 30 + n / 31 % 41, 30 + n / 1271 % 47, 64);
            let piece: Vec<u8> = [(b'a', i), (b'b', j), (b'a', k), (b'b', l)]
                .iter()
                .flat_map(|&(c, r)| std::iter::repeat_n(c, r))
                .collect();
            out.clear();
            bpe.encode_piece(&piece, &mut out, &mut cache);
            assert_eq!(
                out.iter()
                    .map(|&t| tokens[t as usize].0.len())
                    .sum::<usize>(),
                piece.len()
            );
            if n % 1000 == 999 {
                most = most.max(cache.long.keys().map(|k| k.len()).sum::<usize>());
            }
        }
        assert!(cache.ids.len() < BpeCache::MAX_IDS);
        assert!(
            most <= BpeCache::MAX_LONG_BYTES + BpeCache::MAX_LONG,
            "{most} key bytes"
        );
    }

    #[test]
    fn pair_listed_twice_takes_its_last_rank() {
        // (b,c) first ranks above (a,b), then again below it: "abc" → [ab, c], not [a, bc].
        let tokens = vec![
            (b"a".to_vec(), 0),
            (b"b".to_vec(), 1),
            (b"c".to_vec(), 2),
            (b"ab".to_vec(), 3),
            (b"bc".to_vec(), 4),
        ];
        let bpe = Bpe::new(&tokens, &[(1, 2, 4), (0, 1, 3), (1, 2, 4)], false);
        assert_eq!(both(&bpe, b"abc"), [3, 2]);
    }
}
