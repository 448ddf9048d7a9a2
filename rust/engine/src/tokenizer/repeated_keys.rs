//! A key written twice in one JSON object of a `tokenizer.json`, found before the file is read.

use super::hash::FxHashSet;
use crate::{Error, Result};

/// Refuse a key written twice in one object. The reference refuses that in some objects (added
/// tokens, the model's type) and keeps the first or the last copy in others, by rules of its
/// deserializers; `serde_json::Value` keeps the last everywhere. No saved file repeats a key, so
/// refusing every repeat costs no real file and rules out reading one otherwise than the reference.
pub(super) fn refuse_repeated_keys(json: &[u8]) -> Result<()> {
    use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
    use std::fmt;

    /// A key, borrowed from the file unless it holds escapes.
    struct Key;
    impl<'de> DeserializeSeed<'de> for Key {
        type Value = std::borrow::Cow<'de, str>;
        fn deserialize<D: Deserializer<'de>>(
            self,
            d: D,
        ) -> std::result::Result<Self::Value, D::Error> {
            d.deserialize_str(Key)
        }
    }
    impl<'de> Visitor<'de> for Key {
        type Value = std::borrow::Cow<'de, str>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a key")
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
            Ok(v.into())
        }
        fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
            Ok(v.to_owned().into())
        }
    }

    struct Walk;
    impl<'de> DeserializeSeed<'de> for Walk {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
            d.deserialize_any(Walk)
        }
    }
    impl<'de> Visitor<'de> for Walk {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> std::result::Result<(), E> {
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
            while seq.next_element_seed(Walk)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
            let mut seen = FxHashSet::default();
            while let Some(key) = map.next_key_seed(Key)? {
                if seen.contains(&key) {
                    return Err(A::Error::custom(format!(
                        "key {key:?} is written twice in one object (keep one)"
                    )));
                }
                map.next_value_seed(Walk)?;
                seen.insert(key);
            }
            Ok(())
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    Walk.deserialize(&mut de)
        .map_err(|e| Error::invalid(format!("not a valid tokenizer.json: {e}")))
}
