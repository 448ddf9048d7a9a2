//! The three Unicode classes the GPT-2 pre-tokenizer pattern distinguishes (`\p{L}`, `\p{N}`, `\s`),
//! as a two-stage lookup table. The ranges come from `regex-syntax`, whose Unicode 16 tables match
//! the reference (Oniguruma inside Hugging Face `tokenizers`) exactly; a table lookup replaces the
//! regex engine because the splitter is the hottest loop of encoding.

use regex_syntax::hir::{Class, HirKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CharClass {
    /// Neither a letter, a number nor white space: `[^\s\p{L}\p{N}]`.
    Other = 0,
    Letter = 1,
    Number = 2,
    Space = 3,
}

const BLOCK: usize = 256;
const NUM_BLOCKS: usize = 0x110000 / BLOCK;

pub struct CharClasses {
    /// Code point >> 8 → index of its 256-entry block in `blocks` (identical blocks shared).
    stage1: Vec<u16>,
    blocks: Vec<[u8; BLOCK]>,
    ascii: [CharClass; 128],
}

fn ranges(pattern: &str) -> Vec<(u32, u32)> {
    let hir = regex_syntax::parse(pattern).expect("a valid built-in class pattern");
    match hir.kind() {
        HirKind::Class(Class::Unicode(c)) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        other => unreachable!("{pattern} parsed to {other:?}"),
    }
}

impl CharClasses {
    pub fn new() -> Self {
        let mut flat = vec![CharClass::Other as u8; 0x110000];
        for (pattern, class) in [
            (r"\p{L}", CharClass::Letter),
            (r"\p{N}", CharClass::Number),
            (r"\s", CharClass::Space),
        ] {
            for (lo, hi) in ranges(pattern) {
                flat[lo as usize..=hi as usize].fill(class as u8);
            }
        }
        let mut stage1 = Vec::with_capacity(NUM_BLOCKS);
        let mut blocks: Vec<[u8; BLOCK]> = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for chunk in flat.chunks_exact(BLOCK) {
            let block: [u8; BLOCK] = chunk.try_into().unwrap();
            let id = *seen.entry(block).or_insert_with(|| {
                blocks.push(block);
                blocks.len() - 1
            });
            stage1.push(id as u16);
        }
        let mut ascii = [CharClass::Other; 128];
        for (b, slot) in ascii.iter_mut().enumerate() {
            *slot = decode_class(flat[b]);
        }
        CharClasses {
            stage1,
            blocks,
            ascii,
        }
    }

    #[inline(always)]
    pub fn ascii(&self, b: u8) -> CharClass {
        self.ascii[b as usize]
    }

    #[inline(always)]
    pub fn of(&self, c: u32) -> CharClass {
        if c < 128 {
            return self.ascii[c as usize];
        }
        let block = self.stage1[(c as usize) >> 8] as usize;
        decode_class(self.blocks[block][(c as usize) & 0xFF])
    }
}

impl Default for CharClasses {
    fn default() -> Self {
        Self::new()
    }
}

#[inline(always)]
fn decode_class(v: u8) -> CharClass {
    match v {
        1 => CharClass::Letter,
        2 => CharClass::Number,
        3 => CharClass::Space,
        _ => CharClass::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_known_characters() {
        let c = CharClasses::new();
        assert_eq!(c.of('a' as u32), CharClass::Letter);
        assert_eq!(c.of('é' as u32), CharClass::Letter);
        assert_eq!(c.of('中' as u32), CharClass::Letter);
        assert_eq!(c.of('7' as u32), CharClass::Number);
        assert_eq!(c.of('½' as u32), CharClass::Number);
        assert_eq!(c.of('٣' as u32), CharClass::Number);
        assert_eq!(c.of(' ' as u32), CharClass::Space);
        assert_eq!(c.of('\u{a0}' as u32), CharClass::Space);
        assert_eq!(c.of('\u{3000}' as u32), CharClass::Space);
        assert_eq!(c.of('\u{200b}' as u32), CharClass::Other); // zero-width space is not White_Space
        assert_eq!(c.of('\'' as u32), CharClass::Other);
        assert_eq!(c.of('😀' as u32), CharClass::Other);
        assert_eq!(c.of('\u{301}' as u32), CharClass::Other); // combining marks are \p{M}
        let spaces = (0..0x110000u32)
            .filter(|&u| c.of(u) == CharClass::Space)
            .count();
        assert_eq!(spaces, 25);
    }
}
