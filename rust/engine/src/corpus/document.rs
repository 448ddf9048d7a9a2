//! One JSON line → the document's text and, optionally, one metadata string (the Pile's
//! `meta.pile_set_name`), without building a full JSON tree: every other field is skipped.

use std::borrow::Cow;
use std::fmt;

use super::fast_document::parse_fast;
use super::python_json::parse_python_json;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Which fields to take from each JSON object.
#[derive(Clone, Debug)]
pub struct DocumentFields {
    pub text_key: String,
    /// A dotted path (`meta.pile_set_name`) split at the dots; empty for none.
    pub meta_path: Vec<String>,
    /// The top-level keys that start the path: its dotted prefixes, shortest first (`meta`,
    /// `meta.pile_set_name`). pandas' `json_normalize` and `datasets`' `flatten()` write the
    /// Pile's subset under the whole dotted name, and Parquet columns are read the same way.
    meta_prefixes: Vec<String>,
}

impl DocumentFields {
    pub fn new(text_key: &str, meta_key: Option<&str>) -> Self {
        let meta_path: Vec<String> = meta_key
            .filter(|k| !k.is_empty())
            .map(|k| k.split('.').map(str::to_string).collect())
            .unwrap_or_default();
        let meta_prefixes = (1..=meta_path.len())
            .map(|k| meta_path[..k].join("."))
            .collect();
        DocumentFields {
            text_key: text_key.to_string(),
            meta_path,
            meta_prefixes,
        }
    }

    /// How many parts of the metadata path a top-level key names (`meta` 1,
    /// `meta.pile_set_name` 2), or None when it names none.
    pub(crate) fn meta_parts(&self, key: &[u8]) -> Option<usize> {
        self.meta_prefixes
            .iter()
            .position(|p| p.as_bytes() == key)
            .map(|i| i + 1)
    }
}

/// The metadata one JSON object leads to. Each top-level key that starts the path keeps the
/// value of its last occurrence (as `json.loads` keeps a repeated key's last value); the
/// shortest such key that leads to a string wins. Parquet prefers the shortest column name
/// too, but for the whole file: there a row the nested column leaves null gets no subset.
#[derive(Default)]
pub(crate) struct MetaFound(Vec<(usize, Option<String>)>);

impl MetaFound {
    pub(crate) fn set(&mut self, parts: usize, value: Option<String>) {
        match self.0.iter_mut().find(|(k, _)| *k == parts) {
            Some(slot) => slot.1 = value,
            None => self.0.push((parts, value)),
        }
    }

    pub(crate) fn into_meta(self) -> Option<String> {
        let mut found = self.0;
        found.sort_by_key(|(k, _)| *k);
        found.into_iter().find_map(|(_, v)| v)
    }
}

#[derive(Debug)]
pub struct Document<'a> {
    pub text: Cow<'a, str>,
    /// The metadata string, None when the path is absent or not a string.
    pub meta: Option<String>,
}

/// Parse one line as Python's `json.loads` reads it (GPT-NeoX's reader): the fast path, else
/// serde_json, else, for what serde_json refuses, Python's extensions (`NaN`, escaped lone
/// surrogates, ...). The error is a message without file or line (the caller adds both).
/// `scratch` may receive the unescaped text: one buffer reused saves an allocation per line.
pub fn parse_document<'a>(
    line: &'a [u8],
    fields: &DocumentFields,
    scratch: &'a mut Vec<u8>,
) -> Result<Document<'a>, String> {
    if let Some(d) = parse_fast(line, fields, scratch) {
        return Ok(Document {
            text: Cow::Borrowed(d.text),
            meta: d.meta,
        });
    }
    parse_with_serde(line, fields).or_else(|e| match parse_python_json(line, fields) {
        Ok((text, meta)) => Ok(Document {
            text: Cow::Owned(text),
            meta,
        }),
        Err(better) => Err(better.unwrap_or(e)),
    })
}

/// The reference parser, which words every error; the fast path agrees with it or defers.
pub(crate) fn parse_with_serde<'a>(
    line: &'a [u8],
    fields: &DocumentFields,
) -> Result<Document<'a>, String> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let (text, meta) = DocSeed(fields)
        .deserialize(&mut de)
        .and_then(|r| de.end().map(|_| r))
        .map_err(|e| serde_message(&e, line))?;
    // serde_json checks the strings it keeps, not the ones it skips.
    if let Err(e) = std::str::from_utf8(line) {
        return Err(format!(
            "invalid JSON: invalid UTF-8 at byte {}",
            e.valid_up_to() + 1
        ));
    }
    match text {
        Field::Str(text) => Ok(Document { text, meta }),
        Field::Missing => Err(format!("no {:?} field", fields.text_key)),
        Field::Other(kind) => Err(format!(
            "the {:?} field is {kind}, not a string",
            fields.text_key
        )),
    }
}

/// serde_json's error in the terms of one line of a file: the position as a column of the
/// line (serde_json counts lines within the line it was given, so its "line 1" would
/// contradict the caller's line number), and a line that is not an object named by its kind
/// rather than quoted whole (a line can be megabytes long).
fn serde_message(e: &serde_json::Error, line: &[u8]) -> String {
    let first = line.iter().find(|b| !b.is_ascii_whitespace());
    if e.classify() == serde_json::error::Category::Data && first != Some(&b'{') {
        let kind = match first {
            Some(b'[') => "an array",
            Some(b'"') => "a string",
            Some(b't' | b'f') => "a boolean",
            Some(b'n') => "null",
            _ => "a number",
        };
        return format!("not a JSON object: the line is {kind}");
    }
    let text = e.to_string();
    let what = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(w, _)| w);
    // Past the line's last character (serde_json's line 2 is the line break the line ends with).
    let at_end = e.is_eof() || e.line() > 1;
    let ends_in_string = what.ends_with("while parsing a string");
    match what.strip_prefix("EOF while parsing ") {
        Some("a value") => "invalid JSON: the line ends before a value".to_string(),
        Some(inside) => format!("invalid JSON: the line ends inside {inside}"),
        None if at_end && ends_in_string => "invalid JSON: the line ends inside a string".into(),
        None if at_end => format!("invalid JSON: {what} at the end of the line"),
        None => format!("invalid JSON: {what} at column {}", e.column()),
    }
}

enum Field<'a> {
    Missing,
    Str(Cow<'a, str>),
    Other(&'static str),
}

struct DocSeed<'f>(&'f DocumentFields);

impl<'de> DeserializeSeed<'de> for DocSeed<'_> {
    type Value = (Field<'de>, Option<String>);
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DocSeed<'_> {
    type Value = (Field<'de>, Option<String>);
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut text = Field::Missing;
        let mut meta = MetaFound::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.0.text_key.as_str() {
                text = map.next_value_seed(FieldSeed)?;
            } else if let Some(k) = self.0.meta_parts(key.as_bytes()) {
                meta.set(k, map.next_value_seed(MetaSeed(&self.0.meta_path[k..]))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok((text, meta.into_meta()))
    }
}

struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
    type Value = Field<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Other("null"))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Other("a boolean"))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Field::Other("a number"))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::Other("a number"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::Other("a number"))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Field::Other("an array"))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Field::Other("an object"))
    }
}

/// Follows the rest of the metadata path; anything that is not there gives None.
struct MetaSeed<'p>(&'p [String]);

impl<'de> DeserializeSeed<'de> for MetaSeed<'_> {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        if self.0.is_empty() {
            Ok(match FieldSeed.deserialize(d)? {
                Field::Str(s) => Some(s.into_owned()),
                _ => None,
            })
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for MetaSeed<'_> {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == self.0[0].as_str() {
                found = map.next_value_seed(MetaSeed(&self.0[1..]))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(line: &'a [u8], f: &DocumentFields) -> Result<Document<'a>, String> {
        parse_document(line, f, Box::leak(Box::default()))
    }

    fn pile() -> DocumentFields {
        DocumentFields::new("text", Some("meta.pile_set_name"))
    }

    #[test]
    fn bad_utf8_anywhere_in_the_line_is_an_error() {
        // Python's json refuses these lines too; the fields we skip must not hide it.
        let lines: [&[u8]; 4] = [
            b"{\"text\": \"x\", \"junk\": \"\xff\"}",
            b"{\"text\": \"x\", \"junk\": [1, \"a\xc3\"]}",
            b"{\"junk\": {\"k\": \"\xe2\x82\"}, \"text\": \"x\", \"meta\": {}}",
            b"{\"text\": \"x\", \"meta\": {\"pile_set_name\": \"a\", \"o\": \"\xff\"}}",
        ];
        for line in lines {
            let err = parse(line, &pile()).expect_err("invalid UTF-8 must be refused");
            assert!(err.contains("invalid UTF-8"), "{err}");
        }
        // Valid multi-byte text in a skipped field is fine.
        let ok = "{\"text\": \"x\", \"junk\": \"é中😀\"}".as_bytes();
        assert_eq!(parse(ok, &pile()).unwrap().text, "x");
    }

    #[test]
    fn pile_lines() {
        let line =
            br#"{"text": "a\nb \u00e9", "meta": {"x": [1, {"y": 2}], "pile_set_name": "Pile-CC"}}"#;
        let d = parse(line, &pile()).unwrap();
        assert_eq!(d.text, "a\nb é");
        assert_eq!(d.meta.as_deref(), Some("Pile-CC"));
        let d = parse(br#"{"meta": 3, "text": "plain"}"#, &pile()).unwrap();
        assert!(matches!(d.text, Cow::Borrowed("plain")));
        assert_eq!(d.meta, None);
    }

    #[test]
    fn a_flattened_meta_key_is_the_subset() {
        // pandas' json_normalize writes {"meta.pile_set_name": ...}; every such document
        // used to get the empty subset. Where both spellings are there, the nested one wins.
        let lines: [(&[u8], Option<&str>); 7] = [
            (br#"{"text": "x", "meta.pile_set_name": "Flat"}"#, Some("Flat")),
            (
                br#"{"meta.pile_set_name": "Flat", "meta": {"pile_set_name": "Nested"}, "text": "x"}"#,
                Some("Nested"),
            ),
            (
                br#"{"text": "x", "meta": {"other": 1}, "meta.pile_set_name": "Flat"}"#,
                Some("Flat"),
            ),
            (
                br#"{"text": "x", "meta.pile_set_name": "A", "meta.pile_set_name": "B"}"#,
                Some("B"),
            ),
            (br#"{"text": "x", "meta.pile_set_name": 5}"#, None),
            (br#"{"text": "x", "meta.pile_set_name": {"pile_set_name": "no"}}"#, None),
            // Python's extensions (NaN) send the line to the third parser.
            (br#"{"text": "x", "n": NaN, "meta.pile_set_name": "Flat"}"#, Some("Flat")),
        ];
        for (line, want) in lines {
            let d = parse(line, &pile()).unwrap();
            assert_eq!(d.meta.as_deref(), want, "{}", String::from_utf8_lossy(line));
            if !line.windows(3).any(|w| w == b"NaN") {
                let serde = parse_with_serde(line, &pile()).unwrap();
                assert_eq!(serde.meta.as_deref(), want);
            }
        }
        let deeper = DocumentFields::new("text", Some("a.b.c"));
        let d = parse(br#"{"text": "x", "a.b": {"c": "two"}}"#, &deeper).unwrap();
        assert_eq!(d.meta.as_deref(), Some("two"));
    }

    #[test]
    fn bad_lines() {
        let f = pile();
        assert!(parse(b"{\"text\": \"x\"", &f)
            .unwrap_err()
            .starts_with("invalid JSON"));
        assert_eq!(
            parse(b"[1]", &f).unwrap_err(),
            "not a JSON object: the line is an array"
        );
        let long = format!("\"{}\"\n", "x".repeat(10_000));
        assert_eq!(
            parse(long.as_bytes(), &f).unwrap_err(),
            "not a JSON object: the line is a string"
        );
        // Positions are columns of the line: the caller names the line.
        assert_eq!(
            parse(b"{\"text\": \"a\", \"x\": tru}\n", &f).unwrap_err(),
            "invalid JSON: expected ident at column 23"
        );
        assert_eq!(
            parse(b"{\"text\": \"a\"\n", &f).unwrap_err(),
            "invalid JSON: the line ends inside an object"
        );
        assert_eq!(
            parse(b"{\"text\": \"a line cut short\n", &f).unwrap_err(),
            "invalid JSON: the line ends inside a string"
        );
        assert_eq!(parse(b"{}", &f).unwrap_err(), "no \"text\" field");
        assert_eq!(
            parse(br#"{"text": 5}"#, &f).unwrap_err(),
            "the \"text\" field is a number, not a string"
        );
        assert!(parse(b"{\"text\": \"\xff\"}", &f)
            .unwrap_err()
            .contains("invalid"));
        assert!(parse(br#"{"text": "x"} trailing"#, &f).is_err());
    }
}
