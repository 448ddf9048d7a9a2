//! Reading a Hugging Face `tokenizer.json`. Only what this family uses is accepted; anything
//! else (another model type, a template post-processor, dropout...) is refused with a message,
//! because silently ignoring it would produce ids that differ from the reference.

use std::collections::HashMap;

use serde_json::Value;

use super::byte_level::CharToByte;
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
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::invalid(msg)
}

fn type_of(v: &Value) -> Option<&str> {
    v.get("type").and_then(Value::as_str)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn check_normalizer(v: &Value) -> Result<bool> {
    match v {
        Value::Null => Ok(false),
        _ => match type_of(v) {
            Some("NFC") => Ok(true),
            Some("Sequence") => {
                let items = v.get("normalizers").and_then(Value::as_array);
                match items.map(|a| a.as_slice()) {
                    Some([]) => Ok(false),
                    Some([one]) => check_normalizer(one),
                    _ => Err(invalid(
                        "unsupported normalizer sequence (only NFC is supported)",
                    )),
                }
            }
            other => Err(invalid(format!(
                "unsupported normalizer {other:?} (only NFC or none is supported)"
            ))),
        },
    }
}

fn check_byte_level(v: &Value, what: &str, allow_null: bool) -> Result<()> {
    if v.is_null() && allow_null {
        return Ok(());
    }
    if type_of(v) != Some("ByteLevel") {
        return Err(invalid(format!(
            "unsupported {what} {:?} (only ByteLevel is supported)",
            type_of(v)
        )));
    }
    if flag(v, "add_prefix_space") {
        return Err(invalid(format!(
            "{what} ByteLevel with add_prefix_space=true is not supported"
        )));
    }
    if v.get("use_regex").and_then(Value::as_bool) == Some(false) {
        return Err(invalid(format!(
            "{what} ByteLevel with use_regex=false is not supported"
        )));
    }
    Ok(())
}

impl TokenizerConfig {
    pub fn parse(json: &[u8]) -> Result<Self> {
        let root: Value = serde_json::from_slice(json)
            .map_err(|e| invalid(format!("not a valid tokenizer.json: {e}")))?;
        let model = root
            .get("model")
            .ok_or_else(|| invalid("not a tokenizer.json: no \"model\""))?;
        if let Some(t) = type_of(model) {
            if t != "BPE" {
                return Err(invalid(format!("unsupported model type {t:?} (only BPE)")));
            }
        }
        if model.get("dropout").is_some_and(|d| !d.is_null()) {
            return Err(invalid(
                "BPE dropout is not supported (it makes encoding random)",
            ));
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if model
                .get(key)
                .and_then(Value::as_str)
                .is_some_and(|s| !s.is_empty())
            {
                return Err(invalid(format!("BPE {key} is not supported")));
            }
        }
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
        )?;
        check_byte_level(
            root.get("post_processor").unwrap_or(&Value::Null),
            "post_processor",
            true,
        )?;
        check_byte_level(
            root.get("decoder").unwrap_or(&Value::Null),
            "decoder",
            false,
        )?;

        let vocab = model
            .get("vocab")
            .and_then(Value::as_object)
            .ok_or_else(|| invalid("BPE model has no \"vocab\" object"))?;
        let mut ids: HashMap<&str, u32> = HashMap::with_capacity(vocab.len());
        for (token, id) in vocab {
            let id = id
                .as_u64()
                .filter(|&i| i <= MAX_TOKEN_ID)
                .ok_or_else(|| invalid(format!("vocab id of {token:?} is not a valid id")))?
                as u32;
            ids.insert(token.as_str(), id);
        }

        let merge_list = model
            .get("merges")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid("BPE model has no \"merges\" list"))?;
        let mut merges = Vec::with_capacity(merge_list.len());
        for (rank, m) in merge_list.iter().enumerate() {
            let (a, b) = match m {
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
        for t in root
            .get("added_tokens")
            .and_then(Value::as_array)
            .map(|a| a.as_slice())
            .unwrap_or(&[])
        {
            let content = t
                .get("content")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("an added token has no \"content\""))?;
            let id = t
                .get("id")
                .and_then(Value::as_u64)
                .filter(|&i| i <= MAX_TOKEN_ID)
                .ok_or_else(|| invalid(format!("added token {content:?} has no valid id")))?
                as u32;
            for key in ["lstrip", "rstrip", "single_word"] {
                if flag(t, key) {
                    return Err(invalid(format!(
                        "added token {content:?}: {key}=true is not supported"
                    )));
                }
            }
            added.push(AddedToken {
                id,
                content: content.to_string(),
                special: flag(t, "special"),
                // The reference's default for added tokens is normalized = !special.
                normalized: t
                    .get("normalized")
                    .and_then(Value::as_bool)
                    .unwrap_or(!flag(t, "special")),
            });
        }

        let alphabet = CharToByte::new();
        let bpe_tokens: Vec<(Vec<u8>, u32)> = ids
            .iter()
            .filter_map(|(t, &id)| alphabet.token_bytes(t).map(|b| (b, id)))
            .collect();

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
            decoded[id as usize] = Some(spell(t));
        }
        // Added tokens win over the model's spelling of the same id, as in `id_to_token`.
        for t in &added {
            decoded[t.id as usize] = Some(spell(&t.content));
        }

        Ok(TokenizerConfig {
            nfc,
            bpe_tokens,
            merges,
            ignore_merges: flag(model, "ignore_merges"),
            added,
            decoded,
        })
    }
}
