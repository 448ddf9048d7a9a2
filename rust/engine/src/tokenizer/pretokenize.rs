//! The GPT-2 pre-tokenizer pattern, hand-written:
//! `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`.
//!
//! A regex engine spends most of its time on the lookahead and on alternation; here each branch
//! is one class-driven scan, so a piece is split in a single pass with no backtracking. The end of
//! the given text acts as the end of input for `(?!\S)`, as it does for each piece the reference
//! splits separately.

use super::classes::{CharClass, CharClasses};

/// Decode the char starting at `i` (valid UTF-8 guaranteed by `&str`): (code point, length).
#[inline(always)]
fn char_at(s: &[u8], i: usize) -> (u32, usize) {
    let b0 = s[i] as u32;
    if b0 < 0x80 {
        (b0, 1)
    } else if b0 < 0xE0 {
        (((b0 & 0x1F) << 6) | (s[i + 1] as u32 & 0x3F), 2)
    } else if b0 < 0xF0 {
        (
            ((b0 & 0x0F) << 12) | ((s[i + 1] as u32 & 0x3F) << 6) | (s[i + 2] as u32 & 0x3F),
            3,
        )
    } else {
        (
            ((b0 & 0x07) << 18)
                | ((s[i + 1] as u32 & 0x3F) << 12)
                | ((s[i + 2] as u32 & 0x3F) << 6)
                | (s[i + 3] as u32 & 0x3F),
            4,
        )
    }
}

#[inline(always)]
fn class_at(classes: &CharClasses, s: &[u8], i: usize) -> (CharClass, usize) {
    let b = s[i];
    if b < 0x80 {
        (classes.ascii(b), 1)
    } else {
        let (c, len) = char_at(s, i);
        (classes.of(c), len)
    }
}

/// End of the run of chars of class `class` starting at `i`.
#[inline(always)]
fn run_end(classes: &CharClasses, s: &[u8], mut i: usize, class: CharClass) -> usize {
    while i < s.len() {
        let (c, len) = class_at(classes, s, i);
        if c != class {
            break;
        }
        i += len;
    }
    i
}

/// Length of a contraction (`'s 't 're 've 'm 'll 'd`, lowercase only) starting at `i`, or 0.
#[inline(always)]
fn contraction_len(s: &[u8], i: usize) -> usize {
    match s.get(i + 1) {
        Some(b's' | b't' | b'm' | b'd') => 2,
        Some(b'r') if s.get(i + 2) == Some(&b'e') => 3,
        Some(b'v') if s.get(i + 2) == Some(&b'e') => 3,
        Some(b'l') if s.get(i + 2) == Some(&b'l') => 3,
        _ => 0,
    }
}

/// Call `emit` with each pre-token of `text`, in order; the pre-tokens concatenate to `text`.
#[inline]
pub fn split<'a>(classes: &CharClasses, text: &'a str, mut emit: impl FnMut(&'a [u8])) {
    let s = text.as_bytes();
    let n = s.len();
    let mut i = 0;
    while i < n {
        let (class, len) = class_at(classes, s, i);
        let end = match class {
            CharClass::Letter | CharClass::Number => run_end(classes, s, i + len, class),
            CharClass::Other => {
                if s[i] == b'\'' {
                    let k = contraction_len(s, i);
                    if k > 0 {
                        emit(&s[i..i + k]);
                        i += k;
                        continue;
                    }
                }
                run_end(classes, s, i + len, CharClass::Other)
            }
            CharClass::Space => {
                // ` ?X+`: a single space glued to the run of letters, numbers or others after it.
                if s[i] == b' ' && i + 1 < n {
                    let (next, next_len) = class_at(classes, s, i + 1);
                    if next != CharClass::Space {
                        let end = run_end(classes, s, i + 1 + next_len, next);
                        emit(&s[i..end]);
                        i = end;
                        continue;
                    }
                }
                // `\s+(?!\S)|\s+`: the whole run at the end of the text; before a non-space, the
                // run minus its last char (which then starts the next pre-token), unless the run
                // is that one char.
                let mut j = i + len;
                let mut last_start = i;
                while j < n {
                    let (c, l) = class_at(classes, s, j);
                    if c != CharClass::Space {
                        break;
                    }
                    last_start = j;
                    j += l;
                }
                if j == n || last_start == i {
                    j
                } else {
                    last_start
                }
            }
        };
        emit(&s[i..end]);
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(text: &str) -> Vec<String> {
        let classes = CharClasses::new();
        let mut out = Vec::new();
        split(&classes, text, |p| {
            out.push(String::from_utf8(p.to_vec()).unwrap())
        });
        out
    }

    #[test]
    fn gpt2_pattern_cases() {
        // Expected splits worked out by hand from the pattern's leftmost-first semantics.
        assert_eq!(pieces("Hello world"), ["Hello", " world"]);
        assert_eq!(pieces("I'm it's"), ["I", "'m", " it", "'s"]);
        assert_eq!(pieces("I'M"), ["I", "'", "M"]);
        assert_eq!(pieces(" 's"), [" '", "s"]);
        assert_eq!(pieces("a   b"), ["a", "  ", " b"]);
        assert_eq!(pieces("a \n\tb"), ["a", " \n", "\t", "b"]);
        assert_eq!(pieces("x  "), ["x", "  "]);
        assert_eq!(pieces("\n's"), ["\n", "'s"]);
        assert_eq!(pieces("12abc!!?"), ["12", "abc", "!!?"]);
        assert_eq!(pieces(" 12 !? é"), [" 12", " !?", " é"]);
        assert_eq!(pieces(""), Vec::<String>::new());
        assert_eq!(pieces(" "), [" "]);
    }
}
