//! Ordered JSON objects: parsing without losing key order, and the fields we do not model.

use std::borrow::Cow;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::pyjson;

/// The members of a JSON object in source order, values as borrowed raw JSON text.
pub(crate) type RawEntries<'a> = Vec<(Cow<'a, str>, &'a RawValue)>;

/// Why [`parse_object`] failed.
pub(crate) enum ObjectError {
    /// Not JSON at all (syntax error, truncated, trailing garbage, too deeply nested).
    NotJson(String),
    /// Valid JSON, but not an object.
    NotAnObject,
}

/// Parses a JSON object keeping member order, without building a tree.
///
/// Values stay raw text, so this costs one scan and no recursion: serde_json skips nested
/// values iteratively, and anything it does recurse into is capped by its limit of 128 levels.
pub(crate) fn parse_object(text: &str) -> Result<RawEntries<'_>, ObjectError> {
    match serde_json::from_str::<ObjectEntries<'_>>(text) {
        Ok(o) => Ok(o.0),
        Err(e) if e.is_data() => Err(ObjectError::NotAnObject),
        Err(e) => Err(ObjectError::NotJson(e.to_string())),
    }
}

struct ObjectEntries<'a>(RawEntries<'a>);

impl<'de> Deserialize<'de> for ObjectEntries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ObjectEntries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Key(k)) = map.next_key()? {
                    let v: &'de RawValue = map.next_value()?;
                    out.push((k, v));
                }
                Ok(ObjectEntries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// Members of a JSON object that this crate does not model, kept in their original order and
/// with their original bytes, so that parsing and writing again loses nothing.
///
/// Inside events it also remembers *where* each modelled field stood in the source object, so
/// a re-serialized event keeps the producer's key order even when unknown fields sit between
/// known ones. Values are raw JSON text ([`RawValue`]); nested whitespace is preserved as-is.
///
/// Equality compares the extra members (keys, order and raw text); it ignores layout: the
/// remembered positions of modelled fields, and whether an absent one was written as `null`.
///
/// ```
/// use nemo_events::NemoEvent;
///
/// let ev = NemoEvent::parse(r#"{"event": "tool_enabled", "tool_id": 1, "site": {"b": 1}}"#)?;
/// let NemoEvent::ToolEnabled(usage) = &ev else { panic!() };
/// assert_eq!(usage.extra.get("site").map(|v| v.get()), Some(r#"{"b": 1}"#));
/// assert_eq!(usage.extra.len(), 1);
/// # Ok::<(), nemo_events::EventError>(())
/// ```
#[derive(Clone, Default)]
pub struct Extra {
    entries: Vec<Entry>,
}

#[derive(Clone)]
pub(crate) enum Entry {
    /// Where a modelled field (or `"event"`) stood; `null` if the source had `null` there.
    Known { key: &'static str, null: bool },
    /// A member we do not model (or a modelled key whose value had an unexpected type).
    Value {
        key: String,
        raw: Box<RawValue>,
        text: Decoded,
    },
}

impl Extra {
    /// Number of extra members (modelled fields do not count).
    ///
    /// ```
    /// assert!(nemo_events::Extra::default().is_empty());
    /// ```
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// `true` if there are no extra members.
    ///
    /// ```
    /// assert_eq!(nemo_events::Extra::default().len(), 0);
    /// ```
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The raw JSON of the first extra member named `key`.
    ///
    /// ```
    /// let mut x = nemo_events::Extra::default();
    /// x.insert("room", &"B12")?;
    /// assert_eq!(x.get("room").map(|v| v.get()), Some(r#""B12""#));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn get(&self, key: &str) -> Option<&RawValue> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The extra member `key` if it is a JSON string, decoded (escapes resolved).
    ///
    /// ```
    /// let ev = nemo_events::NemoEvent::parse(r#"{"event": "x", "room": "B\u00e9"}"#)?;
    /// assert_eq!(ev.extra().get_str("room"), Some("Bé"));
    /// # Ok::<(), nemo_events::EventError>(())
    /// ```
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.entries.iter().find_map(|e| match e {
            Entry::Value { key: k, raw, text } if k == key => Some(text.get(raw)),
            _ => None,
        })?
    }

    /// The extra member `key` deserialized as `T`; `None` if absent or of another shape.
    ///
    /// ```
    /// let mut x = nemo_events::Extra::default();
    /// x.insert("floor", &3)?;
    /// assert_eq!(x.get_as::<u32>("floor"), Some(3));
    /// assert_eq!(x.get_as::<String>("floor"), None);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn get_as<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<T> {
        serde_json::from_str(self.get(key)?.get()).ok()
    }

    /// Iterates over the extra members in order, as `(key, raw JSON)`.
    ///
    /// ```
    /// let mut x = nemo_events::Extra::default();
    /// x.insert("a", &1)?;
    /// x.insert("b", &[true])?;
    /// let v: Vec<_> = x.iter().map(|(k, v)| (k, v.get())).collect();
    /// assert_eq!(v, [("a", "1"), ("b", "[true]")]);
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, &RawValue)> + '_ {
        self.entries.iter().filter_map(|e| match e {
            Entry::Value { key, raw, .. } => Some((key.as_str(), &**raw)),
            Entry::Known { .. } => None,
        })
    }

    /// Sets member `key` to `value` serialized Python-style ([`pyjson`]), replacing an existing
    /// member of that name in place, or appending.
    ///
    /// A key that names a modelled field of the event (or `"event"`) is only written while
    /// that typed field is `None`; the typed field wins.
    ///
    /// # Errors
    ///
    /// `value`'s `Serialize` impl failed (e.g. a map with non-string keys).
    ///
    /// ```
    /// let mut x = nemo_events::Extra::default();
    /// x.insert("n", &1)?;
    /// x.insert("n", &2)?;
    /// assert_eq!(x.get("n").map(|v| v.get()), Some("2"));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn insert<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<String>,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let raw = RawValue::from_string(pyjson::try_to_string(value)?)?;
        self.insert_raw(key, raw);
        Ok(())
    }

    /// Like [`Extra::insert`] with a value that already is JSON text.
    ///
    /// ```
    /// let mut x = nemo_events::Extra::default();
    /// x.insert_raw("n", serde_json::value::RawValue::from_string("[1,2]".into())?);
    /// assert_eq!(x.get("n").map(|v| v.get()), Some("[1,2]"));
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn insert_raw(&mut self, key: impl Into<String>, raw: Box<RawValue>) {
        let key = key.into();
        for e in &mut self.entries {
            if let Entry::Value {
                key: k,
                raw: r,
                text,
            } = e
                && *k == key
            {
                *r = raw;
                *text = Decoded::default();
                return;
            }
        }
        self.entries.push(Entry::Value {
            key,
            raw,
            text: Decoded::default(),
        });
    }

    /// Removes the extra member(s) named `key`, returning the first value.
    ///
    /// ```
    /// let mut x = nemo_events::Extra::default();
    /// x.insert("n", &1)?;
    /// assert!(x.remove("n").is_some());
    /// assert!(x.is_empty());
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn remove(&mut self, key: &str) -> Option<Box<RawValue>> {
        let mut first = None;
        let mut kept = Vec::with_capacity(self.entries.len());
        for e in std::mem::take(&mut self.entries) {
            match e {
                Entry::Value { key: k, raw, .. } if k == key => {
                    if first.is_none() {
                        first = Some(raw);
                    }
                }
                other => kept.push(other),
            }
        }
        self.entries = kept;
        first
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Drop every entry (modelled slot or raw member) named `key`.
    pub(crate) fn forget(&mut self, key: &str) {
        self.entries.retain(|e| match e {
            Entry::Known { key: k, .. } => *k != key,
            Entry::Value { key: k, .. } => k != key,
        });
    }

    pub(crate) fn push_known(&mut self, key: &'static str, null: bool) {
        for e in &mut self.entries {
            if let Entry::Known { key: k, null: n } = e
                && *k == key
            {
                *n = null;
                return;
            }
        }
        self.entries.push(Entry::Known { key, null });
    }

    pub(crate) fn push_value(&mut self, key: Cow<'_, str>, raw: &RawValue) {
        self.entries.push(Entry::Value {
            key: key.into_owned(),
            raw: raw.to_owned(),
            text: Decoded::default(),
        });
    }

    /// Writes the extra members as `, "k": v` pairs (for queue items: after the fixed fields).
    pub(crate) fn write_members(&self, out: &mut String) {
        for (k, v) in self.iter() {
            out.push_str(", ");
            pyjson::write_str(out, k);
            out.push_str(": ");
            out.push_str(v.get());
        }
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Self) -> bool {
        self.iter()
            .map(|(k, v)| (k, v.get()))
            .eq(other.iter().map(|(k, v)| (k, v.get())))
    }
}

impl Eq for Extra {}

/// The decoded text of a raw JSON string value, computed on first use.
#[derive(Clone, Default)]
pub(crate) struct Decoded(OnceLock<Option<String>>);

impl Decoded {
    fn get<'a>(&'a self, raw: &RawValue) -> Option<&'a str> {
        self.0
            .get_or_init(|| {
                let t = raw.get();
                if t.starts_with('"') {
                    serde_json::from_str(t).ok()
                } else {
                    None
                }
            })
            .as_deref()
    }
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (k, v.get())))
            .finish()
    }
}
