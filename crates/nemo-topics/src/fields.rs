//! A borrowed view of a payload's top-level members, for templates and state documents.
//!
//! Parsing a payload into a `serde_json::Map` allocates every key and every value; templates
//! need two or three of them. This view keeps each member as the raw JSON text of its value
//! (`&RawValue`, borrowed from the payload) and decodes only what a template asks for.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The top-level members of a JSON object, borrowed from its text.
#[derive(Debug, Default)]
pub(crate) struct Fields<'a> {
    entries: Vec<(Cow<'a, str>, &'a RawValue)>,
}

/// A member value as a template sees it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    /// A JSON string, decoded.
    Str(Cow<'a, str>),
    /// A number or a boolean, as written.
    Other(&'a str),
}

impl<'a> Fields<'a> {
    /// Parses `text` as a JSON object; anything else (not JSON, an array, ...) is `None`.
    pub(crate) fn parse(text: &'a str) -> Option<Fields<'a>> {
        serde_json::from_str(text).ok()
    }

    /// The raw value of member `key` (the last one, like Python's `json.loads`, if duplicated).
    pub(crate) fn raw(&self, key: &str) -> Option<&'a RawValue> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| *v)
    }

    /// Member `key` as a scalar: `None` if absent, null, an object or an array.
    pub(crate) fn scalar(&self, key: &str) -> Option<Scalar<'a>> {
        let text = self.raw(key)?.get();
        match text.as_bytes().first()? {
            b'"' => decode_str(text).map(Scalar::Str),
            b'n' | b'{' | b'[' => None,
            _ => Some(Scalar::Other(text)),
        }
    }

    /// Member `key` if it is a JSON string, decoded.
    pub(crate) fn str(&self, key: &str) -> Option<Cow<'a, str>> {
        match self.scalar(key)? {
            Scalar::Str(s) => Some(s),
            Scalar::Other(_) => None,
        }
    }
}

/// Decodes a JSON string literal, borrowing when it has no escapes.
fn decode_str(text: &str) -> Option<Cow<'_, str>> {
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

/// An object key, borrowed when the JSON text has no escapes in it.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FieldsVisitor;
        impl<'de> Visitor<'de> for FieldsVisitor {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Key(k), v)) = map.next_entry::<Key<'de>, &'de RawValue>()? {
                    entries.push((k, v));
                }
                Ok(Fields { entries })
            }
        }
        d.deserialize_map(FieldsVisitor)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn reads_scalars_borrowed_and_escaped() {
        let text = r#"{"a": "x/y", "b": 12, "c": true, "d": null, "e": {"z": 1}, "f": [1], "g": "Jos\u00e9 \"Q\"", "a\u0062c": 1.50, "b": 13}"#;
        let f = Fields::parse(text).unwrap();
        assert_eq!(f.scalar("a"), Some(Scalar::Str(Cow::Borrowed("x/y"))));
        assert_eq!(
            f.scalar("b"),
            Some(Scalar::Other("13")),
            "last duplicate wins"
        );
        assert_eq!(f.scalar("c"), Some(Scalar::Other("true")));
        assert_eq!(f.scalar("d"), None);
        assert_eq!(f.scalar("e"), None);
        assert_eq!(f.scalar("f"), None);
        assert_eq!(f.str("g").as_deref(), Some("José \"Q\""));
        assert_eq!(
            f.scalar("abc"),
            Some(Scalar::Other("1.50")),
            "escaped key decoded"
        );
        assert_eq!(f.scalar("missing"), None);
        assert_eq!(f.raw("e").map(RawValue::get), Some(r#"{"z": 1}"#));
    }

    #[test]
    fn non_objects_are_none() {
        for text in ["", "[1]", "\"s\"", "12", "{", "not json", "{\"a\": }"] {
            assert!(Fields::parse(text).is_none(), "{text}");
        }
        assert!(Fields::parse("{}").is_some());
    }
}
