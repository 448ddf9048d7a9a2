//! NFC with the Unicode 9.0 tables the reference uses (`unicode-normalization-alignments`
//! 0.1.12): newer tables compose marks added since 9.0 differently, which would change ids.

use std::borrow::Cow;

use unicode_normalization_alignments::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// `text` in NFC; borrowed when it already is (the common case costs one byte scan).
pub fn nfc(text: &str) -> Cow<'_, str> {
    // A lead byte below 0xCC starts a char below U+0300, where every char is NFC_QC=Yes and
    // composes with nothing before it.
    if !has_byte_from_0xcc(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    if is_nfc_quick(text.chars()) == IsNormalized::Yes {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.nfc().map(|(c, _)| c).collect())
}

/// Whether any byte is ≥ 0xCC, eight bytes per step: `b & 0x7F` + 0x34 carries into bit 7
/// exactly when `b & 0x7F` ≥ 0x4C, and never into the next byte. A plain `any` ran a byte at a
/// time, over every whole document, and cost 4–6 % of encoding.
fn has_byte_from_0xcc(bytes: &[u8]) -> bool {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const ADD: u64 = 0x3434_3434_3434_3434;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let flags = |w: &[u8]| {
        let w = u64::from_le_bytes(w.try_into().unwrap());
        w & ((w & LOW7) + ADD) & HIGH
    };
    let mut blocks = bytes.chunks_exact(32);
    for block in &mut blocks {
        if block.chunks_exact(8).fold(0, |acc, w| acc | flags(w)) != 0 {
            return true;
        }
    }
    blocks.remainder().iter().any(|&b| b >= 0xCC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_every_byte_from_0xcc_at_every_position() {
        for b in 0..=255u8 {
            for len in [1, 7, 8, 31, 32, 33, 70] {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(
                        has_byte_from_0xcc(&bytes),
                        b >= 0xCC,
                        "{b:#x} at {at}/{len}"
                    );
                }
            }
        }
        assert!(!has_byte_from_0xcc(&[0xCB; 100]));
        assert!(!has_byte_from_0xcc(b""));
    }

    #[test]
    fn composes_and_keeps() {
        assert_eq!(nfc("e\u{301}"), "é");
        assert!(matches!(nfc("plain ascii"), Cow::Borrowed(_)));
        assert!(matches!(nfc("déjà vu"), Cow::Borrowed(_)));
        assert_eq!(nfc("\u{212b}"), "\u{c5}"); // ANGSTROM SIGN → Å
    }
}
