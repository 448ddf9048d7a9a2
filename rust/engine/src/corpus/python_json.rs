//! What Python's `json.loads` accepts beyond JSON, for the lines serde_json refuses:
//! `NaN`, `Infinity` and `-Infinity` (Python's `json.dumps` writes them for such floats),
//! numbers beyond f64 (`1e400` is `inf`) and escaped lone surrogates (`"\ud800"`), which Python
//! keeps in its `str`. GPT-NeoX reads every line with `json.loads`, so such a line is a
//! document when its text is a usable string, wherever else these appear.
//!
//! A lone surrogate in the text itself cannot be encoded by any tokenizer (Hugging Face's
//! refuses the `str`, and GPT-NeoX's run stops there): that is an error naming it. In the
//! metadata string each lone surrogate becomes U+FFFD; in a key it never matches a field name.
//!
//! Slow and simple on purpose: it only sees lines serde_json refused.

use super::document::MetaFound;
use super::DocumentFields;

/// Python's C scanner stops at its recursion limit (1,000 by default) a little before this.
const MAX_DEPTH: usize = 1000;

/// The outcome for a line serde_json refused: `Ok((text, meta))`, or `Err(Some(message))`
/// where this parser knows better, or `Err(None)` when Python refuses the line too (then
/// serde_json's message stands).
pub(crate) type Parsed = Result<(String, Option<String>), Option<String>>;

/// A decoded JSON string; `lone` when it held a lone surrogate (each kept as U+FFFD).
struct PyStr {
    s: String,
    lone: Option<u16>,
}

enum Value {
    Str(PyStr),
    Other(&'static str),
}

pub(crate) fn parse_python_json(line: &[u8], fields: &DocumentFields) -> Parsed {
    // Python decodes the whole line first: invalid UTF-8 anywhere refuses it.
    if let Err(e) = std::str::from_utf8(line) {
        let at = e.valid_up_to() + 1;
        return Err(Some(format!("invalid JSON: invalid UTF-8 at byte {at}")));
    }
    let mut p = Parser { s: line, i: 0 };
    p.ws();
    p.eat(b'{').ok_or(None)?;
    let mut text = None;
    let mut meta = MetaFound::default();
    p.members(0, |p, key| {
        let meta_parts = key
            .lone
            .is_none()
            .then(|| fields.meta_parts(key.s.as_bytes()))
            .flatten();
        if key.lone.is_none() && key.s == fields.text_key {
            text = Some(p.value(1)?);
        } else if let Some(k) = meta_parts {
            meta.set(k, p.meta(&fields.meta_path[k..], 1)?);
        } else {
            p.skip(1)?;
        }
        Some(())
    })
    .ok_or(None)?;
    p.ws();
    if p.i != line.len() {
        return Err(None);
    }
    let key = &fields.text_key;
    match text {
        None => Err(Some(format!("no {key:?} field"))),
        Some(Value::Other(kind)) => Err(Some(format!("the {key:?} field is {kind}, not a string"))),
        Some(Value::Str(PyStr {
            lone: Some(unit), ..
        })) => Err(Some(format!(
            "the {key:?} field holds a lone surrogate (\\u{unit:04x}), which no tokenizer can \
             encode"
        ))),
        Some(Value::Str(PyStr { s, lone: None })) => Ok((s, meta.into_meta())),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
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
    fn word(&mut self, w: &[u8]) -> Option<()> {
        (self.s.get(self.i..self.i + w.len())? == w).then_some(())?;
        self.i += w.len();
        Some(())
    }
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// The members of an object whose `{` was just read, each handed to `member` with the
    /// parser at its value.
    fn members(
        &mut self,
        depth: usize,
        mut member: impl FnMut(&mut Self, PyStr) -> Option<()>,
    ) -> Option<()> {
        (depth < MAX_DEPTH).then_some(())?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.eat(b'"')?;
            let key = self.string()?;
            self.ws();
            self.eat(b':')?;
            self.ws();
            member(self, key)?;
            self.ws();
            match self.next()? {
                b',' => self.ws(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// One value, kept when it is a string.
    fn value(&mut self, depth: usize) -> Option<Value> {
        Some(match self.peek()? {
            b'"' => {
                self.i += 1;
                Value::Str(self.string()?)
            }
            b'{' => {
                self.skip(depth)?;
                Value::Other("an object")
            }
            b'[' => {
                self.skip(depth)?;
                Value::Other("an array")
            }
            b'n' => {
                self.word(b"null")?;
                Value::Other("null")
            }
            b't' | b'f' => {
                self.skip(depth)?;
                Value::Other("a boolean")
            }
            _ => {
                self.number()?;
                Value::Other("a number")
            }
        })
    }

    /// Follow the rest of the metadata path: the string there, or None.
    fn meta(&mut self, path: &[String], depth: usize) -> Option<Option<String>> {
        let Some(first) = path.first() else {
            return Some(match self.value(depth)? {
                Value::Str(s) => Some(s.s),
                Value::Other(_) => None,
            });
        };
        if self.peek()? != b'{' {
            self.skip(depth)?;
            return Some(None);
        }
        self.i += 1;
        let mut found = None;
        self.members(depth, |p, key| {
            if key.lone.is_none() && key.s == *first {
                found = p.meta(&path[1..], depth + 1)?;
            } else {
                p.skip(depth + 1)?;
            }
            Some(())
        })?;
        Some(found)
    }

    /// Check and pass over one value.
    fn skip(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string().map(drop)
            }
            b'{' => {
                self.i += 1;
                self.members(depth, |p, _| p.skip(depth + 1))
            }
            b'[' => {
                (depth < MAX_DEPTH).then_some(())?;
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            _ => self.number(),
        }
    }

    /// A number as Python reads it: JSON's grammar of any magnitude, `NaN`, `Infinity`,
    /// `-Infinity`.
    fn number(&mut self) -> Option<()> {
        if self.word(b"NaN").is_some() || self.word(b"Infinity").is_some() {
            return Some(());
        }
        if self.peek() == Some(b'-') {
            self.i += 1;
            if self.word(b"Infinity").is_some() {
                return Some(());
            }
        }
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        // Python's pattern takes a fraction or exponent only when digits follow; what is left
        // ("1." or "1e") then fails as the next token, as here.
        if self.peek() == Some(b'.') && self.s.get(self.i + 1).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            let sign = matches!(self.s.get(self.i + 1), Some(b'+' | b'-')) as usize;
            if self
                .s
                .get(self.i + 1 + sign)
                .is_some_and(u8::is_ascii_digit)
            {
                self.i += 1 + sign;
                self.digits();
            }
        }
        Some(())
    }
    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }

    /// The rest of a string whose opening quote was read. The line is valid UTF-8.
    fn string(&mut self) -> Option<PyStr> {
        let mut out = Vec::new();
        let mut lone = None;
        loop {
            match self.next()? {
                b'"' => break,
                b'\\' => match self.next()? {
                    b'"' => out.push(b'"'),
                    b'\\' => out.push(b'\\'),
                    b'/' => out.push(b'/'),
                    b'b' => out.push(0x08),
                    b'f' => out.push(0x0c),
                    b'n' => out.push(b'\n'),
                    b'r' => out.push(b'\r'),
                    b't' => out.push(b'\t'),
                    b'u' => {
                        let unit = self.hex4()?;
                        let c = match unit {
                            // A high surrogate joins a low one escaped right after it; any other
                            // escape there is read on its own.
                            0xd800..=0xdbff if self.s[self.i..].starts_with(b"\\u") => {
                                let at = self.i;
                                self.i += 2;
                                let low = self.hex4()?;
                                if (0xdc00..=0xdfff).contains(&low) {
                                    char::from_u32(
                                        0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00),
                                    )
                                } else {
                                    self.i = at;
                                    None
                                }
                            }
                            _ => char::from_u32(unit),
                        };
                        let c = c.unwrap_or_else(|| {
                            lone.get_or_insert(unit as u16);
                            char::REPLACEMENT_CHARACTER
                        });
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                    }
                    _ => return None,
                },
                b if b < 0x20 => return None,
                b => out.push(b),
            }
        }
        // Raw bytes are whole characters of a valid line, escapes add whole characters.
        Some(PyStr {
            s: String::from_utf8(out).ok()?,
            lone,
        })
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::document::parse_with_serde;

    fn pile() -> DocumentFields {
        DocumentFields::new("text", Some("meta.pile_set_name"))
    }

    /// On what serde_json accepts, this parser reads the same text and metadata; on what it
    /// refuses for a reason Python shares, this one refuses too.
    #[test]
    fn agrees_with_serde_json_on_strict_json() {
        let ok: &[&[u8]] = &[
            br#"{"text": "plain", "meta": {"pile_set_name": "Pile-CC"}}"#,
            br#"  {"text":"a\nb\"c\\d\/e\bf\fg\rh\ti","meta":{"pile_set_name":"x"}}  "#,
            br#"{"text": "\u00e9\u4e2d\ud83d\ude00\u0000 \uFFFF", "meta": {}}"#,
            br#"{"meta": {"a": [1, -2.5e+3, 0, true, false, null, {"b": "\u0041"}], "pile_set_name": "y"}, "text": "t"}"#,
            br#"{"te\u0078t": "escaped key", "meta": {"pile_set_n\u0061me": "esc\u0041ped"}}"#,
            br#"{"text": "a", "text": "b", "meta": {"pile_set_name": "a"}, "meta": 3}"#,
            br#"{"text": "x", "meta": [{"pile_set_name": "in an array"}], "big": 123456789012345678901234567890}"#,
            br#"{"text": "x", "skipped": "\ud800 lone", "meta": {"pile_set_name": 5}}"#,
            "{\"text\": \"raw é 中 😀\u{2028}\", \"meta\": {\"pile_set_name\": \"ü\"}}\r\n".as_bytes(),
            br#"{"text": 5}"#,
            br#"{"text": null}"#,
            br#"{"text": {"a": [1]}}"#,
            br#"{"text": [true]}"#,
            br#"{}"#,
        ];
        for line in ok {
            let want = parse_with_serde(line, &pile());
            let got = parse_python_json(line, &pile());
            match want {
                Ok(d) => assert_eq!(
                    got,
                    Ok((d.text.into_owned(), d.meta)),
                    "{}",
                    String::from_utf8_lossy(line)
                ),
                Err(e) => assert_eq!(got, Err(Some(e)), "{}", String::from_utf8_lossy(line)),
            }
        }
        let refused: &[&[u8]] = &[
            b"",
            b"[]",
            b"\"text\"",
            br#"{"text": "x",}"#,
            br#"{"text": "x" "meta": 1}"#,
            br#"{"text": "x"} trailing"#,
            br#"{"text": "unterminated}"#,
            br#"{"text": "x", "n": 01}"#,
            br#"{"text": "x", "n": 1.}"#,
            br#"{"text": "x", "n": 1e}"#,
            br#"{"text": "x", "n": .5}"#,
            br#"{"text": "x", "n": +1}"#,
            br#"{"text": "x", "n": -}"#,
            br#"{"text": "x", "n": tru}"#,
            br#"{"text": "x", "n": nan}"#,
            br#"{"text": "x", "n": -NaN}"#,
            br#"{"text": "x", "n": Infinit}"#,
            br#"{"text": "bad \x escape"}"#,
            br#"{"text": "short \u12"}"#,
            br#"{"text": "x", "s": "\ud800\u12"}"#,
            "{\"text\": \"raw\tcontrol\"}".as_bytes(),
        ];
        for line in refused {
            assert!(parse_with_serde(line, &pile()).is_err());
            assert_eq!(
                parse_python_json(line, &pile()),
                Err(None),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let err = parse_python_json(b"{\"text\": \"x\", \"n\": NaN, \"s\": \"\xff\"}", &pile());
        assert_eq!(
            err,
            Err(Some("invalid JSON: invalid UTF-8 at byte 31".into()))
        );
    }

    #[test]
    fn what_python_reads_beyond_json() {
        let f = pile();
        let doc = |t: &str, m: Option<&str>| Ok((t.to_string(), m.map(str::to_string)));
        let cases: &[(&[u8], Parsed)] = &[
            (br#"{"text": "a", "n": NaN}"#, doc("a", None)),
            (
                br#"{"n": [Infinity, -Infinity, {"x": NaN}], "text": "b", "meta": {"pile_set_name": "S"}}"#,
                doc("b", Some("S")),
            ),
            (
                br#"{"text": "c", "meta": {"pile_set_name": 1e400}}"#,
                doc("c", None),
            ),
            (br#"{"\ud800": "k", "text": "d"}"#, doc("d", None)),
            (
                br#"{"text": "e", "meta": {"pile_set_name": "a\udc00\ud83d\u0041\ud83d\ude00"}}"#,
                doc("e", Some("a\u{fffd}\u{fffd}A😀")),
            ),
            (
                br#"{"text": "x\ud800", "n": NaN}"#,
                Err(Some(
                    "the \"text\" field holds a lone surrogate (\\ud800), which no tokenizer \
                     can encode"
                        .into(),
                )),
            ),
            (
                br#"{"text": Infinity}"#,
                Err(Some("the \"text\" field is a number, not a string".into())),
            ),
            (
                br#"{"n": NaN}"#,
                Err(Some("no \"text\" field".into())),
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                &parse_python_json(line, &f),
                want,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    /// Deep nesting is read up to Python's depth, then refused, on a worker's stack.
    #[test]
    fn deep_nesting_within_a_worker_stack() {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                for (depth, ok) in [
                    (MAX_DEPTH - 2, true),
                    (MAX_DEPTH + 5, false),
                    (100_000, false),
                ] {
                    for (open, close) in [("[", "]"), ("{\"a\": ", "}")] {
                        let line = format!(
                            "{{\"text\": \"t\", \"n\": NaN, \"d\": {}1{}}}",
                            open.repeat(depth),
                            close.repeat(depth)
                        );
                        let got = parse_python_json(line.as_bytes(), &pile());
                        assert_eq!(got.is_ok(), ok, "{depth} {open}");
                    }
                }
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
