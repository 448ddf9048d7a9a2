//! Reading a Hugging Face `tokenizer.json`. Only what this family uses is accepted; anything
//! else (another model type, a template post-processor, dropout...) is refused with a message,
//! because silently ignoring it would produce ids that differ from the reference.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::byte_level::CharToByte;
use super::normalize;
use crate::{Error, Result};

/// Token ids index dense tables (16 bytes per id), so an id of 4e9 in a hand-edited vocab would
/// ask for 64 GB and abort the process. Real vocabularies stay far below 2^24.
const MAX_TOKEN_ID: u64 = (1 << 24) - 1;

pub struct AddedToken {
    pub id: u32,
    pub content: String,
    pub special: bool,
    pub normalized: bool,
}

pub struct TokenizerConfig {
    pub nfc: bool,
    /// (bytes, id) of every model token spelled in the byte-level alphabet.
    pub bpe_tokens: Vec<(Vec<u8>, u32)>,
    /// (left, right, result) ids, in rank order.
    pub merges: Vec<(u32, u32, u32)>,
    pub ignore_merges: bool,
    pub added: Vec<AddedToken>,
    /// id → bytes it decodes to, for every id below the vocabulary size.
    pub decoded: Vec<Option<Box<[u8]>>>,
    /// The id of `<|endoftext|>`: an added token's, else the vocab's, as `token_to_id` looks it up.
    pub eod_id: Option<u32>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(msg)
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

/// `v[key]` as `T`, None when absent. A value of the wrong type is refused with serde's message,
/// as the reference refuses it: read as absent, `"rstrip": "true"` would be silently false.
fn field<'a, T: Deserialize<'a>>(v: &'a Value, key: &str, what: &str) -> Result<Option<T>> {
    v.get(key)
        .map(|x| T::deserialize(x).map_err(|e| invalid(format!("{what} \"{key}\": {e}"))))
        .transpose()
}

/// A boolean field that may be absent (false). `null` is only accepted where the reference's
/// field is an `Option` (`nullable`).
fn flag(v: &Value, key: &str, what: &str, nullable: bool) -> Result<bool> {
    if nullable {
        Ok(field::<Option<bool>>(v, key, what)?
            .flatten()
            .unwrap_or(false))
    } else {
        Ok(field::<bool>(v, key, what)?.unwrap_or(false))
    }
}

/// A string field that may be absent or null.
fn opt_str<'a>(v: &'a Value, key: &str, what: &str) -> Result<Option<&'a str>> {
    Ok(field::<Option<&str>>(v, key, what)?.flatten())
}

fn check_normalizer(v: &Value) -> Result<bool> {
    match v {
        Value::Null => Ok(false),
        _ => match type_of(v) {
            Some("NFC") => Ok(true),
            Some("Sequence") => {
                let Some(items) = v.get("normalizers").and_then(Value::as_array) else {
                    return Err(invalid(
                        "normalizer Sequence has no \"normalizers\" list (a required field)",
                    ));
                };
                // The reference refuses a null inside a sequence, where it is no normalizer.
                if items.iter().any(Value::is_null) {
                    return Err(invalid(
                        "normalizer Sequence holds null (the reference refuses it)",
                    ));
                }
                // NFC applied twice is NFC: any number of them, or none, is one or none.
                let mut nfc = false;
                for item in items {
                    nfc |= check_normalizer(item)?;
                }
                Ok(nfc)
            }
            other => Err(invalid(format!(
                "unsupported normalizer {} (only NFC or none is supported)",
                named(other)
            ))),
        },
    }
}

/// The keys the reference reads at the top level; it refuses a file with any other, and a
/// version other than the one it writes.
const TOP_LEVEL_KEYS: [&str; 9] = [
    "version",
    "truncation",
    "padding",
    "added_tokens",
    "normalizer",
    "pre_tokenizer",
    "post_processor",
    "decoder",
    "model",
];

fn check_top_level(root: &Value) -> Result<()> {
    let Some(map) = root.as_object() else {
        return Err(invalid("not a tokenizer.json: not a JSON object"));
    };
    if let Some(key) = map.keys().find(|k| !TOP_LEVEL_KEYS.contains(&k.as_str())) {
        return Err(invalid(format!(
            "unknown top-level key {key:?} (the reference refuses it; its keys are {})",
            TOP_LEVEL_KEYS.join(", ")
        )));
    }
    match field::<&str>(root, "version", "tokenizer.json")? {
        None | Some("1.0") => Ok(()),
        Some(v) => Err(invalid(format!(
            "unknown tokenizer.json version {v:?} (the reference reads version \"1.0\")"
        ))),
    }
}

/// An id as a u32 below [`MAX_TOKEN_ID`], or a message saying which limit it breaks.
fn token_id(v: &Value, what: impl FnOnce() -> String) -> Result<u32> {
    match v.as_u64() {
        Some(id) if id <= MAX_TOKEN_ID => Ok(id as u32),
        Some(id) => Err(invalid(format!(
            "{} has id {id}, above {MAX_TOKEN_ID}, the largest id supported here",
            what()
        ))),
        None => Err(invalid(format!(
            "{} has id {v}, not a non-negative integer",
            what()
        ))),
    }
}

fn merge_form(m: &Value) -> &'static str {
    if m.is_string() {
        "an \"a b\" string"
    } else {
        "not a string"
    }
}

/// A component's `"type"` as the messages name it: quoted, or said to be missing.
fn named(type_name: Option<&str>) -> String {
    type_name.map_or_else(|| "without a \"type\"".to_string(), |t| format!("{t:?}"))
}

/// A ByteLevel component. Its flags change ids only in the pre-tokenizer: the reference's
/// ByteLevel post-processor uses them for offsets alone, and its decoder ignores them (GPT-2's own
/// file sets `add_prefix_space: true` on both), so there they are only type-checked.
fn check_byte_level(v: &Value, what: &str, allow_null: bool, flags_matter: bool) -> Result<()> {
    if v.is_null() && allow_null {
        return Ok(());
    }
    if v.is_null() {
        return Err(invalid(format!(
            "no {what} (this family needs the ByteLevel {what})"
        )));
    }
    if type_of(v) != Some("ByteLevel") {
        return Err(invalid(format!(
            "unsupported {what} {} (only ByteLevel is supported)",
            named(type_of(v))
        )));
    }
    // The reference has no defaults for these two and refuses a file without them.
    for key in ["add_prefix_space", "trim_offsets"] {
        if v.get(key).is_none() {
            return Err(invalid(format!(
                "{what} ByteLevel has no \"{key}\" (a required field)"
            )));
        }
    }
    let add_prefix_space = flag(v, "add_prefix_space", what, false)?;
    flag(v, "trim_offsets", what, false)?;
    let use_regex = field::<bool>(v, "use_regex", what)?;
    if !flags_matter {
        return Ok(());
    }
    if add_prefix_space {
        return Err(invalid(format!(
            "{what} ByteLevel with add_prefix_space=true is not supported"
        )));
    }
    if use_regex == Some(false) {
        return Err(invalid(format!(
            "{what} ByteLevel with use_regex=false is not supported"
        )));
    }
    Ok(())
}

/// A post-processor changes the ids `encode` gives only by adding special tokens: ByteLevel's
/// (offsets only), a template that adds none to a single text (what transformers'
/// `GPTNeoXTokenizerFast` installs unless asked to add BOS or EOS, so Pythia tokenizers saved
/// with `save_pretrained` have one) and sequences of those are accepted; a template that adds
/// tokens to a single text is refused.
fn check_post_processor(v: &Value) -> Result<()> {
    match type_of(v) {
        _ if v.is_null() => Ok(()),
        Some("TemplateProcessing") => check_plain_template(v),
        Some("Sequence") => {
            let Some(items) = v.get("processors").and_then(Value::as_array) else {
                return Err(invalid(
                    "post_processor Sequence has no \"processors\" list (a required field)",
                ));
            };
            items.iter().try_for_each(|item| {
                if item.is_null() {
                    return Err(invalid("post_processor Sequence holds null"));
                }
                check_post_processor(item)
            })
        }
        Some("ByteLevel") => check_byte_level(v, "post_processor", true, false),
        other => Err(invalid(format!(
            "unsupported post_processor {} (only ByteLevel, or a TemplateProcessing that adds \
             no tokens, is supported)",
            named(other)
        ))),
    }
}

/// A TemplateProcessing that gives a single text as it is: `$A` alone, no special tokens
/// (its pair template, for two texts at once, is never used by `encode`).
fn check_plain_template(v: &Value) -> Result<()> {
    let single = v.get("single").and_then(Value::as_array).ok_or_else(|| {
        invalid("post_processor TemplateProcessing has no \"single\" list (a required field)")
    })?;
    let sequences: Option<Vec<&str>> = single
        .iter()
        .map(|piece| piece.get("Sequence")?.get("id")?.as_str())
        .collect();
    match sequences.as_deref() {
        Some(["A"]) => Ok(()),
        Some(_) => Err(invalid(
            "post_processor TemplateProcessing other than \"$A\" for a single text is not \
             supported",
        )),
        None => Err(invalid(
            "post_processor TemplateProcessing adds special tokens, which is not supported \
             (encode gives the text's ids only; add them yourself)",
        )),
    }
}

/// The refusal of two vocab tokens with one id: the reference decodes that id to either of them,
/// whichever its HashMap iteration happens to visit last, so no one answer can match it.
fn shared_id(ids: &HashMap<&str, u32>, id: u32) -> Error {
    let mut names: Vec<&str> = ids
        .iter()
        .filter(|(_, &i)| i == id)
        .map(|(t, _)| *t)
        .collect();
    names.sort_unstable();
    invalid(format!(
        "vocab tokens {:?} and {:?} share id {id} (the reference decodes it to either at random)",
        names[0], names[1]
    ))
}

/// The reference ignores the ids written in `added_tokens`: in listing order, a token whose
/// content is already in the vocab takes that id, and every other one the next id after the
/// vocab's entries (`len(vocab)`, then up). Files it saves agree; one that does not (ids edited
/// by hand, a vocab with gaps in its ids) would encode to ids other than its own, so it is
/// refused rather than followed. Empty and repeated contents, which the reference skips, are
/// refused too: the entry's id and flags would otherwise mean something it does not.
///
/// Two entries that get one id (a new token numbered `len(vocab)` where a vocab with a gap in
/// its ids already has that id, and that vocab token listed as an added token too) are refused:
/// the reference keeps only the later one in its id → token map, from which it builds its
/// matchers, so the earlier one is no longer cut out of the text at all (this crate matched
/// both, and gave that token's id where the reference gives BPE ids).
fn check_added_ids(added: &[AddedToken], vocab: &HashMap<&str, u32>) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    let mut by_id: HashMap<u64, &str> = HashMap::new();
    let mut next = vocab.len() as u64;
    for t in added {
        if t.content.is_empty() {
            return Err(invalid(format!(
                "added token {} has empty content (the reference ignores such an entry)",
                t.id
            )));
        }
        if !seen.insert(t.content.as_str()) {
            return Err(invalid(format!(
                "added token {:?} is listed twice (the reference ignores the second entry)",
                t.content
            )));
        }
        let expected = match vocab.get(t.content.as_str()) {
            Some(&id) => id as u64,
            None => {
                next += 1;
                next - 1
            }
        };
        if t.id as u64 != expected {
            return Err(invalid(format!(
                "added token {:?} has id {} but the reference gives it id {expected} \
                 (its vocab id, or the next id after the {} vocab entries, in listing order)",
                t.content,
                t.id,
                vocab.len()
            )));
        }
        if let Some(earlier) = by_id.insert(expected, &t.content) {
            return Err(invalid(format!(
                "added tokens {earlier:?} and {:?} both get id {expected} (the reference keeps \
                 only the later one and no longer matches {earlier:?} in the text)",
                t.content
            )));
        }
    }
    Ok(())
}

/// A byte with no single-byte token is dropped from the text, as the reference drops it when the
/// model has no `unk_token` and no `byte_fallback`; with either, the reference emits other ids
/// there (the unknown token, `<0x..>` tokens, fused runs), which are not implemented.
fn check_byte_coverage(model: &Value, bpe_tokens: &[(Vec<u8>, u32)]) -> Result<()> {
    let unk = opt_str(model, "unk_token", "BPE")?;
    let byte_fallback = flag(model, "byte_fallback", "BPE", true)?;
    flag(model, "fuse_unk", "BPE", true)?;
    if unk.is_none() && !byte_fallback {
        return Ok(());
    }
    let mut covered = [false; 256];
    // Bytes that never occur in UTF-8 text need no token (GPT-NeoX's vocab has none for them).
    for b in [0xC0, 0xC1].into_iter().chain(0xF5..=0xFF) {
        covered[b] = true;
    }
    for (bytes, _) in bpe_tokens {
        if let [b] = bytes[..] {
            covered[b as usize] = true;
        }
    }
    match covered.iter().position(|&c| !c) {
        None => Ok(()),
        Some(b) => Err(invalid(format!(
            "the vocab has no token for byte 0x{b:02X} (\"{}\") and the model sets {}: \
             unknown-byte handling is not supported",
            super::byte_level::byte_to_char()[b],
            if unk.is_some() {
                "unk_token"
            } else {
                "byte_fallback"
            }
        ))),
    }
}

impl TokenizerConfig {
    pub fn parse(json: &[u8]) -> Result<Self> {
        let root: Value = serde_json::from_slice(json)
            .map_err(|e| invalid(format!("not a valid tokenizer.json: {e}")))?;
        super::repeated_keys::refuse_repeated_keys(json)?;
        check_top_level(&root)?;
        let model = root
            .get("model")
            .ok_or_else(|| invalid("not a tokenizer.json: no \"model\""))?;
        match model.get("type") {
            None => {}
            Some(Value::String(t)) if t == "BPE" => {}
            Some(Value::String(t)) => {
                return Err(invalid(format!("unsupported model type {t:?} (only BPE)")))
            }
            Some(t) => return Err(invalid(format!("model \"type\" {t} is not a string"))),
        }
        // Dropout 0 skips no merge: the reference encodes as without it.
        if field::<Option<f64>>(model, "dropout", "BPE")?
            .flatten()
            .is_some_and(|p| p != 0.0)
        {
            return Err(invalid(
                "BPE dropout is not supported (it makes encoding random)",
            ));
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if opt_str(model, key, "BPE")?.is_some_and(|s| !s.is_empty()) {
                return Err(invalid(format!("BPE {key} is not supported")));
            }
        }
        let ignore_merges = flag(model, "ignore_merges", "BPE", true)?;
        for key in ["truncation", "padding"] {
            if root.get(key).is_some_and(|v| !v.is_null()) {
                return Err(invalid(format!("{key} is not supported; set it to null")));
            }
        }
        let nfc = check_normalizer(root.get("normalizer").unwrap_or(&Value::Null))?;
        check_byte_level(
            root.get("pre_tokenizer").unwrap_or(&Value::Null),
            "pre_tokenizer",
            false,
            true,
        )?;
        check_post_processor(root.get("post_processor").unwrap_or(&Value::Null))?;
        check_byte_level(
            root.get("decoder").unwrap_or(&Value::Null),
            "decoder",
            false,
            false,
        )?;

        let vocab = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("BPE model has no \"vocab\" object"))?;
        let mut ids: HashMap<&str, u32> = HashMap::with_capacity(vocab.len());
        for (token, id) in vocab {
            let id = token_id(id, || format!("vocab token {token:?}"))?;
            ids.insert(token.as_str(), id);
        }

        let merge_list = model
            .get("merges")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("BPE model has no \"merges\" list"))?;
        let mut merges = Vec::with_capacity(merge_list.len());
        // The reference reads the list as all "a b" strings or all [a, b] pairs, never a mix.
        let strings = merge_list.first().is_some_and(Value::is_string);
        for (rank, m) in merge_list.iter().enumerate() {
            if m.is_string() != strings {
                return Err(invalid(format!(
                    "merge {rank} is {} but merge 0 is {} (the reference reads one form per list)",
                    merge_form(m),
                    merge_form(&merge_list[0])
                )));
            }
            let (a, b) = match m {
                // As in a `merges.txt`, the reference skips a "#version" line.
                Value::String(s) if s.starts_with("#version") => continue,
                Value::String(s) => {
                    let mut parts = s.split(' ');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some(a), Some(b), None) => (a, b),
                        _ => return Err(invalid(format!("merge {rank} {s:?} is not \"a b\""))),
                    }
                }
                Value::Array(pair) if pair.len() == 2 => match (pair[0].as_str(), pair[1].as_str())
                {
                    (Some(a), Some(b)) => (a, b),
                    _ => return Err(invalid(format!("merge {rank} is not a pair of strings"))),
                },
                _ => {
                    return Err(invalid(format!(
                        "merge {rank} is neither \"a b\" nor [a, b]"
                    )))
                }
            };
            let lookup = |t: &str| {
                ids.get(t).copied().ok_or_else(|| {
                    invalid(format!(
                        "merge {rank} ({a:?}, {b:?}) uses {t:?}, not in the vocab"
                    ))
                })
            };
            let joined = format!("{a}{b}");
            merges.push((lookup(a)?, lookup(b)?, lookup(&joined)?));
        }

        let mut added = Vec::new();
        let added_list: Option<Vec<Value>> = field(&root, "added_tokens", "tokenizer.json")?;
        for (i, t) in added_list.unwrap_or_default().iter().enumerate() {
            // The reference requires every field of an added token, with its type.
            let required = |key: &str| {
                t.get(key).ok_or_else(|| {
                    invalid(format!(
                        "added token {i} has no \"{key}\" (a required field)"
                    ))
                })
            };
            let what = format!("added token {i}");
            let content = <&str>::deserialize(required("content")?)
                .map_err(|e| invalid(format!("{what} \"content\": {e}")))?;
            let what = format!("added token {content:?}");
            let id = token_id(required("id")?, || what.clone())?;
            let mut flags = [false; 5];
            for (key, value) in ["special", "normalized", "lstrip", "rstrip", "single_word"]
                .iter()
                .zip(&mut flags)
            {
                required(key)?;
                *value = flag(t, key, &what, false)?;
            }
            let [special, normalized, lstrip, rstrip, single_word] = flags;
            for (key, on) in [
                ("lstrip", lstrip),
                ("rstrip", rstrip),
                ("single_word", single_word),
            ] {
                if on {
                    return Err(invalid(format!("{what}: {key}=true is not supported")));
                }
            }
            // The reference keeps such a token's NFC form as its text: it decodes to that, and
            // is not dropped as special. Saved files hold NFC already.
            if normalized && nfc && normalize::nfc(content) != content {
                return Err(invalid(format!(
                    "{what}: normalized=true with content not in NFC is not supported \
                     (write the content in NFC)"
                )));
            }
            added.push(AddedToken {
                id,
                content: content.to_string(),
                special,
                normalized,
            });
        }

        let alphabet = CharToByte::new();
        let bpe_tokens: Vec<(Vec<u8>, u32)> = ids
            .iter()
            .filter_map(|(t, &id)| alphabet.token_bytes(t).map(|b| (b, id)))
            .collect();
        check_byte_coverage(model, &bpe_tokens)?;

        // The reference's ByteLevel decoder: a token whose chars are all in the byte alphabet
        // stands for those bytes; any other token (the space runs) for its own UTF-8.
        let size = ids
            .values()
            .copied()
            .chain(added.iter().map(|t| t.id))
            .max()
            .map_or(0, |m| m as usize + 1);
        let mut decoded: Vec<Option<Box<[u8]>>> = vec![None; size];
        let spell = |t: &str| -> Box<[u8]> {
            alphabet
                .token_bytes(t)
                .unwrap_or_else(|| t.as_bytes().to_vec())
                .into_boxed_slice()
        };
        for (t, &id) in &ids {
            let slot = &mut decoded[id as usize];
            if slot.is_some() {
                return Err(shared_id(&ids, id));
            }
            *slot = Some(spell(t));
        }
        check_added_ids(&added, &ids)?;
        // Added tokens win over the model's spelling of the same id, as in `id_to_token`.
        for t in &added {
            decoded[t.id as usize] = Some(spell(&t.content));
        }

        const EOD: &str = "<|endoftext|>";
        let eod_id = added
            .iter()
            .find(|t| t.content == EOD)
            .map(|t| t.id)
            .or_else(|| ids.get(EOD).copied());
        Ok(TokenizerConfig {
            nfc,
            bpe_tokens,
            merges,
            ignore_merges,
            added,
            decoded,
            eod_id,
        })
    }
}

#[cfg(test)]
mod tests {
    /// A ByteLevel component as the reference writes it (it requires both flags).
    const BL: &str = r#"{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true}"#;

    fn minimal(extra: &str, pre_tokenizer: &str) -> String {
        format!(
            r#"{{"model": {{"type": "BPE", "vocab": {{"a": 0}}, "merges": []}},
                 "pre_tokenizer": {pre_tokenizer}, "decoder": {BL}{extra}}}"#
        )
    }

    fn refusal_of(json: &str) -> String {
        TokenizerConfig::parse(json.as_bytes())
            .err()
            .expect("refused")
            .to_string()
    }

    #[test]
    fn files_the_reference_refuses_are_refused() {
        assert!(TokenizerConfig::parse(minimal("", BL).as_bytes()).is_ok());
        assert!(TokenizerConfig::parse(minimal(r#", "version": "1.0""#, BL).as_bytes()).is_ok());
        let err = refusal_of(&minimal(r#", "version": "2.0""#, BL));
        assert!(
            err.contains("unknown tokenizer.json version \"2.0\""),
            "{err}"
        );
        let err = refusal_of(&minimal(r#", "version": 1"#, BL));
        assert!(err.contains("\"version\": invalid type"), "{err}");
        let err = refusal_of(&minimal(r#", "extra": null"#, BL));
        assert!(err.contains("unknown top-level key \"extra\""), "{err}");
        for missing in ["add_prefix_space", "trim_offsets"] {
            let pre = BL.replace(&format!(r#", "{missing}": "#), r#", "x": "#);
            let pre = pre.replace(r#""x": false"#, "").replace(r#""x": true"#, "");
            let pre = pre.replace(", ,", ",").replace(", }", "}");
            let err = refusal_of(&minimal("", &pre));
            assert!(
                err.contains(&format!("pre_tokenizer ByteLevel has no \"{missing}\"")),
                "{pre}: {err}"
            );
        }
        assert_eq!(refusal_of("[1]"), "not a tokenizer.json: not a JSON object");
        let twice = minimal(r#", "version": "1.0", "version": "1.0""#, BL);
        let err = refusal_of(&twice);
        assert!(
            err.contains("key \"version\" is written twice in one object"),
            "{err}"
        );
        let mixed = minimal("", BL).replace(
            r#""vocab": {"a": 0}, "merges": []"#,
            r#""vocab": {"a": 0, "aa": 1}, "merges": ["a a", ["a", "a"]]"#,
        );
        let err = refusal_of(&mixed);
        assert!(
            err.contains("merge 1 is not a string but merge 0 is"),
            "{err}"
        );
    }

    use super::*;

    fn token(id: u32, content: &str) -> AddedToken {
        AddedToken {
            id,
            content: content.to_string(),
            special: true,
            normalized: false,
        }
    }

    fn refusal(added: &[AddedToken], vocab: &HashMap<&str, u32>) -> String {
        check_added_ids(added, vocab).err().unwrap().to_string()
    }

    #[test]
    fn added_ids_follow_the_reference_numbering() {
        let vocab = HashMap::from([("a", 0), ("b", 1), ("<s>", 2)]);
        // In the vocab: its id; new: 3, 4... in listing order.
        let ok = [token(3, "<x>"), token(2, "<s>"), token(4, "<y>")];
        assert!(check_added_ids(&ok, &vocab).is_ok());
        let swapped = [token(4, "<x>"), token(3, "<y>")];
        assert!(
            refusal(&swapped, &vocab).contains("\"<x>\" has id 4 but the reference gives it id 3")
        );
        let moved = [token(7, "<s>")];
        assert!(
            refusal(&moved, &vocab).contains("\"<s>\" has id 7 but the reference gives it id 2")
        );
        assert!(refusal(&[token(3, "")], &vocab).contains("empty content"));
        let twice = [token(3, "<x>"), token(3, "<x>")];
        assert!(refusal(&twice, &vocab).contains("listed twice"));
        // A vocab with a gap (ids 0, 1, 3): a new token gets len(vocab) = 3, "<s>"'s id.
        let gap = HashMap::from([("a", 0), ("b", 1), ("<s>", 3)]);
        assert!(check_added_ids(&[token(3, "<x>")], &gap).is_ok());
        for pair in [
            [token(3, "<x>"), token(3, "<s>")],
            [token(3, "<s>"), token(3, "<x>")],
        ] {
            let err = refusal(&pair, &gap);
            assert!(
                err.contains(&format!(
                    "{:?} and {:?} both get id 3",
                    pair[0].content, pair[1].content
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn shared_vocab_id_is_refused() {
        let json = |vocab: &str| {
            format!(
                r#"{{"model": {{"type": "BPE", "vocab": {vocab}, "merges": []}},
                     "pre_tokenizer": {BL}, "decoder": {BL}}}"#
            )
        };
        assert!(TokenizerConfig::parse(json(r#"{"a": 0, "b": 1}"#).as_bytes()).is_ok());
        let err = TokenizerConfig::parse(json(r#"{"a": 0, "c": 1, "b": 1}"#).as_bytes())
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("\"b\" and \"c\" share id 1"),
            "{err}"
        );
    }

    #[test]
    fn unsupported_components_are_named_in_plain_words() {
        // They were named as Rust's Debug dump: `unsupported normalizer Some("Lowercase")`.
        let json = |normalizer: &str, decoder: &str| {
            format!(
                r#"{{"model": {{"type": "BPE", "vocab": {{"a": 0}}, "merges": []}},
                     "normalizer": {normalizer}, "pre_tokenizer": {BL},
                     "decoder": {decoder}}}"#
            )
        };
        let refusal = |normalizer: &str, decoder: &str| {
            TokenizerConfig::parse(json(normalizer, decoder).as_bytes())
                .err()
                .unwrap()
                .to_string()
        };
        let byte_level = BL;
        assert_eq!(
            refusal(r#"{"type": "Lowercase"}"#, byte_level),
            "unsupported normalizer \"Lowercase\" (only NFC or none is supported)"
        );
        assert_eq!(
            refusal(r#"{"lowercase": true}"#, byte_level),
            "unsupported normalizer without a \"type\" (only NFC or none is supported)"
        );
        let err = refusal("null", r#"{"type": "WordPiece"}"#);
        assert!(
            err.ends_with(" \"WordPiece\" (only ByteLevel is supported)"),
            "{err}"
        );
    }
}
