//! A small, fast, non-cryptographic hash (the Fx hash of rustc) for the tokenizer's lookup
//! tables: keys are token ids and short byte strings that no adversary chooses, so SipHash's
//! DoS resistance buys nothing and costs a large share of encode time.

use std::hash::{BuildHasherDefault, Hasher};

#[derive(Default, Clone, Copy)]
pub struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline(always)]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 8 {
            self.add(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
            bytes = &bytes[8..];
        }
        if bytes.len() >= 4 {
            self.add(u32::from_le_bytes(bytes[..4].try_into().unwrap()) as u64);
            bytes = &bytes[4..];
        }
        for &b in bytes {
            self.add(b as u64);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
    /// Mixed once more, high bits into low: hashbrown picks the bucket from the low bits, and
    /// the low bits of a product depend only on the low bits of what was multiplied. Keys that
    /// differ only in later bytes (the digits of " 1234567", the left id of a merge pair) shared
    /// a handful of buckets, and filling the BPE cache with such pieces was quadratic.
    #[inline]
    fn finish(&self) -> u64 {
        (self.hash ^ (self.hash >> 29))
            .wrapping_mul(SEED)
            .rotate_left(26)
    }
}

pub type FxHashMap<K, V> = std::collections::HashMap<K, V, BuildHasherDefault<FxHasher>>;
pub type FxHashSet<K> = std::collections::HashSet<K, BuildHasherDefault<FxHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::hash::{BuildHasher, Hash};

    /// How many of the 2^16 buckets of a table of that size `keys` start in.
    fn buckets<K: Hash>(keys: impl Iterator<Item = K>) -> usize {
        let build = BuildHasherDefault::<FxHasher>::default();
        keys.map(|k| build.hash_one(k) & 0xFFFF)
            .collect::<HashSet<_>>()
            .len()
    }

    #[test]
    fn keys_differing_in_later_bytes_spread_over_the_buckets() {
        // Pieces as the BPE cache keys them: bytes, then the length in the last byte. All of
        // " 1000000".." 1065535" landed in 320 buckets, pair keys of one right id in one.
        let pieces = (0..1u32 << 16).map(|i| {
            let mut buf = [0u8; 16];
            let s = format!(" {}", 1_000_000 + i);
            buf[..s.len()].copy_from_slice(s.as_bytes());
            buf[15] = s.len() as u8;
            u128::from_le_bytes(buf)
        });
        assert!(buckets(pieces) > 30_000);
        let pairs = (0..1u64 << 16).map(|left| (left << 32) | 198);
        assert!(buckets(pairs) > 30_000);
    }
}
