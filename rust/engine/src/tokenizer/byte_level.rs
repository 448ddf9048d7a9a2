//! GPT-2's byte ↔ unicode alphabet: byte-level BPE vocabularies spell every byte as a printable
//! character (`Ġ` for the space byte...), so token strings in `tokenizer.json` must be mapped back
//! to the raw bytes they stand for.

/// `bytes_to_unicode()` of GPT-2: printable Latin-1 bytes map to themselves, the other 68 bytes to
/// U+0100 onwards, in byte order.
pub fn byte_to_char() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut next = 0u32;
    for b in 0..256u32 {
        let printable = (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        table[b as usize] = if printable {
            char::from_u32(b).unwrap()
        } else {
            let c = char::from_u32(256 + next).unwrap();
            next += 1;
            c
        };
    }
    table
}

/// The inverse of [`byte_to_char`] as a lookup from a char to its byte, if it is in the alphabet.
pub struct CharToByte {
    table: std::collections::HashMap<char, u8>,
}

impl CharToByte {
    pub fn new() -> Self {
        let table = byte_to_char()
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        CharToByte { table }
    }

    /// The bytes a token string stands for, or None if some char is outside the alphabet.
    pub fn token_bytes(&self, token: &str) -> Option<Vec<u8>> {
        token.chars().map(|c| self.table.get(&c).copied()).collect()
    }
}

impl Default for CharToByte {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_alphabet() {
        let t = byte_to_char();
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[b'\n' as usize], 'Ċ');
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[0], 'Ā');
        assert_eq!(t[0xA0], 'ł');
        assert_eq!(t[0xAD], 'Ń');
        let inv = CharToByte::new();
        assert_eq!(inv.token_bytes("Ġthe"), Some(b" the".to_vec()));
        assert_eq!(inv.token_bytes(" "), None);
    }
}
