//! A fast path for the common JSON line (`{"text": "...", "meta": {"pile_set_name": "..."}}`):
//! one pass over the bytes, the text unescaped 16 bytes at a time (64 where the CPU has
//! AVX-512 VBMI2) into a reused buffer.
//!
//! It is deliberately conservative: whenever a line is not well-formed JSON of a shape it
//! fully understands (a duplicate or missing text field, a lone surrogate, escapes in a key or
//! in the metadata, a number where the metadata path leads, deep nesting, any syntax error) it
//! answers None and the line goes to serde_json, which decides and words the error. So it can
//! only agree with serde_json, and the tests check that it does.
//!
//! Why: Pile text has an escape every ~30 bytes (mostly `\n`); serde_json's byte-at-a-time
//! scan plus our copy out of its scratch cost as much CPU as zstd on two cores.

use std::ops::Range;

use super::document::MetaFound;
use super::DocumentFields;

#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FastDocument<'a> {
    pub text: &'a str,
    pub meta: Option<String>,
}

/// Where the text is: a range of the line (it had no escapes) or all of the scratch buffer.
enum TextAt {
    Line(Range<usize>),
    Scratch,
}

/// Nesting deeper than this goes to serde_json (which refuses more than 128 levels).
const MAX_DEPTH: usize = 64;

/// Parse `line`, unescaping the text into `scratch` when it has escapes.
pub(crate) fn parse_fast<'a>(
    line: &'a [u8],
    fields: &DocumentFields,
    scratch: &'a mut Vec<u8>,
) -> Option<FastDocument<'a>> {
    let mut p = Parser {
        s: line,
        i: 0,
        unused: Vec::new(),
    };
    p.ws();
    p.eat(b'{')?;
    p.ws();
    let mut text = None;
    let mut meta = MetaFound::default();
    if p.peek()? == b'}' {
        p.i += 1;
    } else {
        loop {
            let key = p.plain_string()?;
            p.ws();
            p.eat(b':')?;
            p.ws();
            if key == fields.text_key.as_bytes() {
                if text.is_some() {
                    return None;
                }
                text = Some(p.text(scratch)?);
            } else if let Some(k) = fields.meta_parts(key) {
                meta.set(k, p.meta(&fields.meta_path[k..], 1)?);
            } else {
                std::str::from_utf8(key).ok()?;
                p.skip_value(1)?;
            }
            p.ws();
            match p.next()? {
                b',' => p.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    p.ws();
    if p.i != line.len() {
        return None;
    }
    let text = match text? {
        TextAt::Line(range) => &line[range],
        TextAt::Scratch => &scratch[..],
    };
    // Escapes add whole characters only, so this checks exactly the string's raw bytes.
    let text = std::str::from_utf8(text).ok()?;
    Some(FastDocument {
        text,
        meta: meta.into_meta(),
    })
}

/// Bit `i` set where byte `i` is a quote, a backslash or a control character (below 0x20):
/// the bytes that end a run of plain string content.
#[cfg(target_arch = "x86_64")]
fn specials(block: &[u8; 16]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86_64; the load is unaligned and reads exactly `block`.
    unsafe {
        let v = _mm_loadu_si128(block.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn specials(block: &[u8; 16]) -> u32 {
    block
        .iter()
        .enumerate()
        .map(|(i, &b)| ((b == b'"' || b == b'\\' || b < 0x20) as u32) << i)
        .fold(0, |a, b| a | b)
}

/// Room kept in the unescape buffer past the line's length: a bulk block stores 64 bytes
/// wherever it ends.
const SLACK: usize = 64;

/// Unescapes whole 64-byte blocks of string content from `line[at..]` into `out`, returning
/// where it stopped: at the first block it cannot do alone (the string's end, a control
/// character, `\\`, `\u`, an escape split across blocks), which the scalar loop then takes.
type BulkUnescape = unsafe fn(line: &[u8], at: usize, out: &mut Vec<u8>) -> usize;

/// The bulk unescaper where the CPU has AVX-512 VBMI2 (byte compress), else None.
fn bulk_unescape() -> Option<BulkUnescape> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512vbmi2")
    {
        return Some(unescape_blocks_avx512);
    }
    None
}

/// Prose has an escape (mostly `\n`) every few dozen bytes, and a branch per escape
/// mispredicts about every time; this does a block of 64 bytes with no branch per escape:
/// translate the escaped characters in place, then compress the backslashes out.
///
/// # Safety
/// The CPU must have AVX-512 BW and VBMI2, and `out` spare capacity of at least
/// `line.len() - at + SLACK` bytes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi2,popcnt")]
unsafe fn unescape_blocks_avx512(line: &[u8], mut at: usize, out: &mut Vec<u8>) -> usize {
    use std::arch::x86_64::*;
    let splat = |b: u8| _mm512_set1_epi8(b as i8);
    while at + 64 <= line.len() {
        // SAFETY: `at + 64 <= line.len()`: the unaligned load reads inside `line`.
        let v = unsafe { _mm512_loadu_si512(line.as_ptr().add(at).cast()) };
        let backslash = _mm512_cmpeq_epi8_mask(v, splat(b'\\'));
        let quote = _mm512_cmpeq_epi8_mask(v, splat(b'"'));
        let control = _mm512_cmplt_epu8_mask(v, splat(0x20));
        let escaped = backslash << 1;
        let eq = |b: u8| _mm512_cmpeq_epi8_mask(v, splat(b));
        let (n, t, r, b, f) = (eq(b'n'), eq(b't'), eq(b'r'), eq(b'b'), eq(b'f'));
        let simple = n | t | r | b | f | quote | eq(b'/');
        let stop = control
            | (quote & !escaped)
            | (backslash & escaped) // `\\`: the scalar loop pairs them
            | (backslash >> 63) // the escaped character is in the next block
            | (escaped & !simple); // `\u` and invalid escapes
        if stop != 0 {
            break;
        }
        let mut w = v;
        for (mask, byte) in [(n, b'\n'), (t, b'\t'), (r, b'\r'), (b, 0x08), (f, 0x0c)] {
            w = _mm512_mask_mov_epi8(w, mask & escaped, splat(byte));
        }
        let keep = !backslash;
        let len = out.len();
        // SAFETY: the caller reserved SLACK bytes past all the unescaped text, and `len` only
        // counts bytes this and earlier blocks wrote.
        unsafe {
            _mm512_storeu_si512(
                out.as_mut_ptr().add(len).cast(),
                _mm512_maskz_compress_epi8(keep, w),
            );
            out.set_len(len + keep.count_ones() as usize);
        }
        at += 64;
    }
    at
}

fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// Where escapes of skipped strings are decoded (to check them), then dropped.
    unused: Vec<u8>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }
    fn eat(&mut self, b: u8) -> Option<()> {
        (self.next()? == b).then_some(())
    }
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// Move to the next quote, backslash or control character; None at the end of the line.
    fn skip_to_special(&mut self) -> Option<u8> {
        while let Some(block) = self.s.get(self.i..self.i + 16) {
            let m = specials(block.try_into().unwrap());
            if m != 0 {
                self.i += m.trailing_zeros() as usize;
                return Some(self.s[self.i]);
            }
            self.i += 16;
        }
        while !is_special(self.peek()?) {
            self.i += 1;
        }
        self.peek()
    }

    /// Copy to `out` up to the next quote, backslash or control character. Escapes come every
    /// few dozen bytes in prose, so whole blocks are copied and the excess trimmed, rather than
    /// a `memcpy` call per short run.
    fn copy_to_special(&mut self, out: &mut Vec<u8>) -> Option<u8> {
        while let Some(block) = self.s.get(self.i..self.i + 16) {
            let block: &[u8; 16] = block.try_into().unwrap();
            let m = specials(block);
            let len = out.len();
            out.extend_from_slice(block);
            if m != 0 {
                let k = m.trailing_zeros() as usize;
                out.truncate(len + k);
                self.i += k;
                return Some(self.s[self.i]);
            }
            self.i += 16;
        }
        loop {
            let b = self.peek()?;
            if is_special(b) {
                return Some(b);
            }
            out.push(b);
            self.i += 1;
        }
    }

    /// A string without escapes (keys, names), as raw bytes; None for anything else.
    fn plain_string(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        (self.skip_to_special()? == b'"').then_some(())?;
        self.i += 1;
        let s = self.s;
        Some(&s[start..self.i - 1])
    }

    /// The text value: in the line when it has no escapes, else unescaped into `scratch`.
    fn text(&mut self, scratch: &mut Vec<u8>) -> Option<TextAt> {
        self.eat(b'"')?;
        let start = self.i;
        if self.skip_to_special()? == b'"' {
            self.i += 1;
            return Some(TextAt::Line(start..self.i - 1));
        }
        scratch.clear();
        // The unescaped text is never longer than the rest of the line (+ a block of slack).
        scratch.reserve(self.s.len() - start + SLACK);
        scratch.extend_from_slice(&self.s[start..self.i]);
        let bulk = bulk_unescape();
        let mut at = self.s[self.i];
        loop {
            match at {
                b'"' => {
                    self.i += 1;
                    return Some(TextAt::Scratch);
                }
                // Most escapes in prose are newlines: decode those without the full match.
                b'\\' if self.s.get(self.i + 1) == Some(&b'n') => {
                    self.i += 2;
                    scratch.push(b'\n');
                }
                b'\\' => {
                    self.i += 1;
                    self.escape(scratch)?;
                }
                _ => return None, // a raw control character: serde_json's error
            }
            if let Some(bulk) = bulk {
                // SAFETY: `bulk` exists only where the CPU has its features; `scratch` has
                // SLACK bytes of room past everything the line can unescape to.
                self.i = unsafe { bulk(self.s, self.i, scratch) };
            }
            at = self.copy_to_special(scratch)?;
        }
    }

    /// The escape after a backslash, appended as UTF-8.
    fn escape(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let b = match self.next()? {
            b'n' => b'\n',
            b'"' => b'"',
            b'\\' => b'\\',
            b'/' => b'/',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'r' => b'\r',
            b't' => b'\t',
            b'u' => {
                let hi = self.hex4()?;
                let c = match hi {
                    0xd800..=0xdbff => {
                        self.eat(b'\\')?;
                        self.eat(b'u')?;
                        let lo = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&lo) {
                            return None;
                        }
                        char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))?
                    }
                    _ => char::from_u32(hi)?, // None for a lone low surrogate
                };
                out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                return Some(());
            }
            _ => return None,
        };
        out.push(b);
        Some(())
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.s.get(self.i..self.i + 4)?;
        let mut v = 0;
        for &d in digits {
            v = v * 16 + (d as char).to_digit(16)?;
        }
        self.i += 4;
        Some(v)
    }

    /// Follow `path` (the metadata key's remaining parts) into a value: Some(None) when it is
    /// not there or not a string, None when the line needs serde_json.
    fn meta(&mut self, path: &[String], depth: usize) -> Option<Option<String>> {
        match (path.first(), self.peek()?) {
            (None, b'"') => {
                let s = self.plain_string()?;
                Some(Some(std::str::from_utf8(s).ok()?.to_string()))
            }
            (Some(key), b'{') if depth < MAX_DEPTH => {
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(None);
                }
                let mut found = None;
                loop {
                    let k = self.plain_string()?;
                    std::str::from_utf8(k).ok()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    if k == key.as_bytes() {
                        found = self.meta(&path[1..], depth + 1)?;
                    } else {
                        self.skip_value(depth + 1)?;
                    }
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b'}' => return Some(found),
                        _ => return None,
                    }
                }
            }
            // serde_json reads a number on the path as a number (and refuses 1e400): its call.
            (_, b'-' | b'0'..=b'9') => None,
            _ => {
                self.skip_value(depth)?;
                Some(None)
            }
        }
    }

    /// Check and pass over one value of any kind.
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                let start = self.i;
                loop {
                    match self.skip_to_special()? {
                        b'"' => {
                            // Escapes are ASCII, so the raw bytes are valid exactly when the
                            // string is: a skipped field with bad UTF-8 still makes the line
                            // invalid JSON, as it is for Python's json.
                            std::str::from_utf8(&self.s[start..self.i]).ok()?;
                            self.i += 1;
                            return Some(());
                        }
                        b'\\' => {
                            self.i += 1;
                            let mut unused = std::mem::take(&mut self.unused);
                            self.escape(&mut unused)?;
                            unused.clear();
                            self.unused = unused;
                        }
                        _ => return None,
                    }
                }
            }
            b'{' | b'[' if depth >= MAX_DEPTH => None,
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    std::str::from_utf8(self.plain_string()?).ok()?;
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.number(),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        (self.s.get(self.i..self.i + word.len())? == word).then_some(())?;
        self.i += word.len();
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, JSON's number grammar.
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.digit()?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.digit()?;
            self.digits();
        }
        Some(())
    }
    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }
    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specials_marks_exactly_quotes_backslashes_and_controls() {
        for b in 0..=255u8 {
            for pos in [0, 7, 15] {
                let mut block = [b'a'; 16];
                block[pos] = b;
                let want = if is_special(b) { 1 << pos } else { 0 };
                assert_eq!(specials(&block), want, "byte {b:#x} at {pos}");
            }
        }
    }

    use crate::corpus::document::parse_with_serde;

    /// The property the fast path lives by: whatever it accepts, serde_json accepts with the
    /// same text and metadata. Returns whether the fast path took the line.
    fn agrees(line: &[u8], f: &DocumentFields) -> bool {
        let mut scratch = Vec::new();
        let Some(fast) = parse_fast(line, f, &mut scratch) else {
            return false;
        };
        let slow = parse_with_serde(line, f).unwrap_or_else(|e| {
            panic!("fast path accepted what serde_json refuses ({e}): {line:?}")
        });
        assert_eq!(fast.text, slow.text, "{:?}", String::from_utf8_lossy(line));
        assert_eq!(fast.meta, slow.meta, "{:?}", String::from_utf8_lossy(line));
        true
    }

    fn pile() -> DocumentFields {
        DocumentFields::new("text", Some("meta.pile_set_name"))
    }

    #[test]
    fn every_sample_line_takes_the_fast_path_and_agrees() {
        use std::io::BufRead;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../python/pythia_data/data/sample-pile.jsonl.zst"
        );
        let mut n = 0;
        for line in crate::corpus::open_lines(path.as_ref(), None)
            .unwrap()
            .split(b'\n')
        {
            assert!(agrees(&line.unwrap(), &pile()));
            n += 1;
        }
        assert!(n > 200);
    }

    #[test]
    fn hand_picked_lines() {
        let f = pile();
        let fast: &[&[u8]] = &[
            br#"{"text": "plain", "meta": {"pile_set_name": "Pile-CC"}}"#,
            br#"  {"text":"a\nb\"c\\d\/e\bf\fg\rh\ti","meta":{"pile_set_name":"x"}}  "#,
            br#"{"text": "\u00e9\u4e2d\ud83d\ude00\u0000 \uFFFF", "meta": {}}"#,
            "{\"text\": \"raw é 中 😀 and a long run of plain text past one block\"}\r\n".as_bytes(),
            br#"{"meta": {"a": [1, -2.5e+3, 0, true, false, null, {"b": "\u0041"}], "pile_set_name": "y"}, "text": "t"}"#,
            br#"{"text": "", "meta": {"pile_set_name": "Empty"}}"#,
            br#"{"id": -0.0E-0, "text": "x", "meta": "not an object"}"#,
            br#"{"text": "x", "meta": {"pile_set_name": 5e}}"#,
            br#"{"text": "x", "meta": {"pile_set_name": "a"}, "meta": {"other": 1}}"#,
            br#"{"text": "x", "meta": [{"pile_set_name": "in an array"}]}"#,
            br#"{"text": "x", "meta": {"o": 1}, "meta.pile_set_name": "flat"}"#,
            br#"{"text": "ends with an escape\n"}"#,
            br#"{"text": "\\\\\\\"\"\\"}"#,
        ];
        for line in fast {
            let took = agrees(line, &f);
            let invalid = parse_with_serde(line, &f).is_err();
            assert!(took || invalid, "{:?}", String::from_utf8_lossy(line));
        }
        let others: &[&[u8]] = &[
            b"",
            b"{}",
            b"[]",
            br#"{"text": 5}"#,
            br#"{"text": null}"#,
            br#"{"text": "a", "text": "b"}"#,
            br#"{"text": "lone \ud800 high"}"#,
            br#"{"text": "lone \udc00 low"}"#,
            br#"{"text": "bad \x escape"}"#,
            br#"{"text": "short \u12"}"#,
            "{\"text\": \"raw\tcontrol\"}".as_bytes(),
            b"{\"text\": \"bad utf8 \xff\"}",
            b"{\"te\xffxt\": \"x\", \"text\": \"y\"}",
            b"{\"text\": \"x\", \"junk\": \"\xff in a skipped string\"}",
            br#"{"text": "x"} trailing"#,
            br#"{"text": "x",}"#,
            br#"{"text": "x" "meta": 1}"#,
            br#"{"text": "unterminated}"#,
            br#"{"text": "x", "n": 01}"#,
            br#"{"text": "x", "n": 1.}"#,
            br#"{"text": "x", "n": .5}"#,
            br#"{"text": "x", "n": +1}"#,
            br#"{"text": "x", "n": tru}"#,
            br#"{"text": "x", "meta": {"pile_set_name": 1e400}}"#,
            br#"{"text": "x", "meta": {"pile_set_name": "esc\u0041ped"}}"#,
            br#"{"te\u0078t": "escaped key"}"#,
            br#"{"text": "x", "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
        ];
        for line in others {
            agrees(line, &f); // may or may not take it; never disagrees
        }
    }

    /// A reproducible random index below `n` per call (xorshift64).
    fn xorshift(mut seed: u64) -> impl FnMut(usize) -> usize {
        move |n| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        }
    }

    /// Long strings dense with escapes of every kind, at every offset from a 64-byte block
    /// boundary: the bulk unescaper (where the CPU has it) and the scalar loop hand over
    /// exactly, also when an escape straddles two blocks or a `\\` pair meets a boundary.
    #[test]
    fn long_escaped_texts_agree_at_every_block_offset() {
        let mut rand = xorshift(0x2545_f491_4f6c_dd1du64);
        let pieces: &[&str] = &[
            "a",
            "plain words ",
            "é",
            "中",
            "😀",
            "\\n",
            "\\n",
            "\\t",
            "\\r",
            "\\b",
            "\\f",
            "\\\"",
            "\\/",
            "\\\\",
            "\\\\\\\\",
            "\\u00e9",
            "\\ud83d\\ude00",
            "\\u005c",
        ];
        let f = pile();
        for case in 0..3_000 {
            let pad = "p".repeat(case % 130);
            let mut text = String::new();
            for _ in 0..rand(200) {
                text.push_str(pieces[rand(pieces.len())]);
            }
            let line = format!("{{\"id\": \"{pad}\", \"text\": \"{pad}{text}\"}}");
            assert!(agrees(line.as_bytes(), &f), "fast path refused {line:?}");
        }
    }

    /// Random documents and random damage to them: the fast path never disagrees.
    #[test]
    fn random_lines_never_disagree() {
        let mut rand = xorshift(0x9e37_79b9_7f4a_7c15u64);
        let pieces: &[&str] = &[
            "a",
            " ",
            "é",
            "中",
            "😀",
            "\\n",
            "\\\"",
            "\\\\",
            "\\/",
            "\\t",
            "\\u00e9",
            "\\ud83d\\ude00",
            "\\ud800",
            "\\udc00",
            "\\x",
            "\\u12",
            "\"",
            "\t",
            "\u{1f}",
            "{",
            "}",
            "[",
            "]",
            ":",
            ",",
            "0",
            "-",
            "1e5",
            ".",
            "true",
            "null",
            "text",
            "meta",
            "pile_set_name",
        ];
        let values: &[&str] = &[
            "1",
            "-0.5",
            "2e-3",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            "[1, \"a\", {\"b\": null}]",
            "{\"pile_set_name\": \"S\"}",
            "\"str\"",
        ];
        const DAMAGE: &[u8] = b"\"\\{}[],:0 \xff\x01";
        let fields = [
            pile(),
            DocumentFields::new("body", None),
            DocumentFields::new("text", Some("m.a.b")),
        ];
        let mut taken = 0;
        for case in 0..20_000 {
            let f = &fields[case % fields.len()];
            // Most strings from the well-formed pieces (the first 12), some from all of them.
            let range = if rand(4) == 0 { pieces.len() } else { 12 };
            let mut string = String::new();
            for _ in 0..rand(40) {
                string.push_str(pieces[rand(range)]);
            }
            let text_key = if rand(10) == 0 {
                "other"
            } else {
                f.text_key.as_str()
            };
            let mut line = format!("{{\"{text_key}\": \"{string}\"");
            for _ in 0..rand(3) {
                let key = ["meta", "m", "id", "pile_set_name"][rand(4)];
                line.push_str(&format!(", \"{key}\": {}", values[rand(values.len())]));
            }
            line.push('}');
            let mut bytes = line.into_bytes();
            if rand(3) == 0 {
                for _ in 0..1 + rand(3) {
                    let at = rand(bytes.len() + 1);
                    match rand(3) {
                        0 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        1 if at < bytes.len() => bytes[at] = DAMAGE[rand(DAMAGE.len())],
                        _ => bytes.insert(at, DAMAGE[rand(DAMAGE.len())]),
                    }
                }
            }
            taken += agrees(&bytes, f) as usize;
            // The parser for lines serde_json refuses reads what it accepts the same way.
            if let Ok(d) = parse_with_serde(&bytes, f) {
                let lenient = crate::corpus::python_json::parse_python_json(&bytes, f);
                assert_eq!(lenient, Ok((d.text.into_owned(), d.meta)), "{bytes:?}");
            }
        }
        assert!(
            taken > 5_000,
            "the fast path took only {taken} of 20000 lines"
        );
    }
}
