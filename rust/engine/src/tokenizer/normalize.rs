//! NFC with the Unicode 9.0 tables the reference uses (`unicode-normalization-alignments`
//! 0.1.12): newer tables compose marks added since 9.0 differently, which would change ids.

use std::borrow::Cow;

use unicode_normalization_alignments::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// `text` in NFC; borrowed when it already is (the common case costs one byte scan).
pub fn nfc(text: &str) -> Cow<'_, str> {
    // A lead byte below 0xCC starts a char below U+0300, where every char is NFC_QC=Yes and
    // composes with nothing before it.
    if !text.bytes().any(|b| b >= 0xCC) {
        return Cow::Borrowed(text);
    }
    if is_nfc_quick(text.chars()) == IsNormalized::Yes {
        return Cow::Borrowed(text);
    }
    Cow::Owned(text.nfc().map(|(c, _)| c).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composes_and_keeps() {
        assert_eq!(nfc("e\u{301}"), "é");
        assert!(matches!(nfc("plain ascii"), Cow::Borrowed(_)));
        assert!(matches!(nfc("déjà vu"), Cow::Borrowed(_)));
        assert_eq!(nfc("\u{212b}"), "\u{c5}"); // ANGSTROM SIGN → Å
    }
}
