//! The lookup that runs once per pre-token: "is this short piece a whole token?". A 16-byte
//! open-addressing slot holds the key (up to 11 bytes and the length) and the id together, so a
//! lookup touches one cache line, where a general hash map touches two (control bytes, then the
//! entry). The whole table for GPT-NeoX is 2 MB (131,072 slots, at most half full).

/// The longest piece the table holds.
pub const MAX_LEN: usize = 11;

pub struct ShortTable {
    /// (bytes 0..8, bytes 8..11 | len << 24 | id << 32); len = 0 marks an empty slot.
    slots: Vec<(u64, u64)>,
    mask: usize,
}

#[inline(always)]
fn key(piece: &[u8]) -> (u64, u32) {
    debug_assert!(!piece.is_empty() && piece.len() <= MAX_LEN);
    let len = piece.len();
    let le64 = |at: usize| u64::from_le_bytes(piece[at..at + 8].try_into().unwrap());
    let le32 = |at: usize| u32::from_le_bytes(piece[at..at + 4].try_into().unwrap()) as u64;
    // Overlapping loads instead of a copy into a buffer: the bytes where two loads overlap are
    // the same bytes at the same positions, so OR-ing them is exact.
    let (lo, rest) = if len >= 8 {
        let rest = if len > 8 {
            (le64(len - 8) >> (8 * (16 - len))) as u32
        } else {
            0
        };
        (le64(0), rest)
    } else if len >= 4 {
        (le32(0) | (le32(len - 4) << (8 * (len - 4))), 0)
    } else {
        let b = |i: usize| piece[i] as u64;
        (
            b(0) | (b(len / 2) << (8 * (len / 2))) | (b(len - 1) << (8 * (len - 1))),
            0,
        )
    };
    (lo, rest | ((len as u32) << 24))
}

#[inline(always)]
fn slot_of(lo: u64, hi: u32, mask: usize) -> usize {
    let h = (lo ^ (hi as u64).rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as usize & mask
}

impl ShortTable {
    pub fn new(entries: impl Iterator<Item = (Vec<u8>, u32)> + Clone) -> Self {
        let n = entries.clone().count();
        let size = (n * 2).next_power_of_two().max(16);
        let mut table = ShortTable {
            slots: vec![(0, 0); size],
            mask: size - 1,
        };
        for (piece, id) in entries {
            let (lo, hi) = key(&piece);
            let mut i = slot_of(lo, hi, table.mask);
            loop {
                let (slo, shi) = table.slots[i];
                if shi == 0 {
                    table.slots[i] = (lo, hi as u64 | ((id as u64) << 32));
                    break;
                }
                if slo == lo && shi as u32 == hi {
                    break; // keep the first
                }
                i = (i + 1) & table.mask;
            }
        }
        table
    }

    /// The id of `piece` (1..=MAX_LEN bytes), if it is a whole token.
    #[inline(always)]
    pub fn get(&self, piece: &[u8]) -> Option<u32> {
        let (lo, hi) = key(piece);
        let mut i = slot_of(lo, hi, self.mask);
        loop {
            let (slo, shi) = self.slots[i];
            if slo == lo && shi as u32 == hi {
                return Some((shi >> 32) as u32);
            }
            if shi == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_exactly_the_entries() {
        let entries: Vec<(Vec<u8>, u32)> = (0..5000u32)
            .map(|i| (format!("w{i}").into_bytes(), i))
            .chain([
                (b"a".to_vec(), 9000),
                (b"a\0".to_vec(), 9001),
                (b"exactly11by".to_vec(), 9002),
            ])
            .collect();
        let t = ShortTable::new(entries.iter().cloned());
        for (piece, id) in &entries {
            assert_eq!(t.get(piece), Some(*id));
        }
        assert_eq!(t.get(b"a\0\0"), None);
        assert_eq!(t.get(b"w5000"), None);
        assert_eq!(t.get(b"\0"), None);
    }
}
