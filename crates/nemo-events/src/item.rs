//! The v1 Redis queue item.

use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::extra::{Extra, ObjectError, parse_object};
use crate::{EventError, ItemError, NemoEvent, Qos, Topic, pyjson};

/// Items longer than this (1 MiB) are rejected by [`QueueItem::parse`] before parsing.
///
/// An MQTT broker's default maximum packet is far larger, but nothing NEMO sends comes near a
/// megabyte; a bigger item is a bug or an attack and goes to the dead-letter list.
pub const MAX_ITEM_BYTES: usize = 1 << 20;

/// One item of the Redis list `nemo_mqtt_events`, as the NEMO plugin pushes it:
///
/// ```json
/// {"topic": "nemo/tools/12/enabled", "payload": "{\"event\": ...}", "qos": 1, "retain": false, "timestamp": 1760623352.94}
/// ```
///
/// `payload` is the *exact* string to publish: it is never re-serialized, because the HMAC
/// envelope and downstream consumers depend on its bytes. Members other than the five above are
/// kept (in order) so [`QueueItem::to_json`] reproduces a plugin item byte for byte.
///
/// ```
/// use nemo_events::{Qos, QueueItem};
///
/// let line = r#"{"topic": "nemo/tools/12/enabled", "payload": "{\"event\": \"tool_enabled\", \"tool_id\": 12}", "qos": 1, "retain": false, "timestamp": 1760623352.944572}"#;
/// let item = QueueItem::parse(line.as_bytes())?;
/// assert_eq!(item.topic.as_str(), "nemo/tools/12/enabled");
/// assert_eq!(item.payload, r#"{"event": "tool_enabled", "tool_id": 12}"#);
/// assert_eq!(item.qos, Qos::AtLeastOnce);
/// assert_eq!(item.to_json(), line);
/// assert_eq!(item.event()?.tool_id(), Some(12));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct QueueItem {
    /// Where to publish.
    pub topic: Topic,
    /// What to publish, byte for byte (usually an event as JSON text).
    pub payload: String,
    /// MQTT QoS to publish with. Defaults to 1 when the item has no `qos`.
    pub qos: Qos,
    /// MQTT retain flag. Defaults to `false` when the item has no `retain`.
    pub retain: bool,
    /// When the producer queued the item, epoch seconds; `None` if absent or not a number.
    pub timestamp: Option<f64>,
    /// The source text of `timestamp`, to write it back exactly while unchanged.
    timestamp_raw: Option<String>,
    extra: Extra,
}

impl QueueItem {
    /// Parses one item, validating everything needed to publish it.
    ///
    /// Required: `topic` (a string that is a valid [`Topic`]) and `payload` (a string). Optional:
    /// `qos` (integer 0–2, default 1), `retain` (boolean, default false), `timestamp` (a number;
    /// anything else is kept for writing back but reads as `None`). Other members are kept.
    /// For a duplicated member the last one wins, like Python's `json.loads`.
    ///
    /// # Errors
    ///
    /// An [`ItemError`] for anything that cannot be published: over [`MAX_ITEM_BYTES`], not
    /// UTF-8, not JSON (including nesting deeper than 128), not an object, a missing or mistyped
    /// member, an invalid topic, a QoS out of range. Never panics, whatever the bytes.
    ///
    /// ```
    /// use nemo_events::{ItemError, QueueItem};
    ///
    /// assert_eq!(QueueItem::parse(b"\xff"), Err(ItemError::NotUtf8 { valid_up_to: 0 }));
    /// assert_eq!(
    ///     QueueItem::parse(br#"{"topic": "a", "payload": "{}", "qos": 3}"#),
    ///     Err(ItemError::QosOutOfRange { value: 3 })
    /// );
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<QueueItem, ItemError> {
        if bytes.len() > MAX_ITEM_BYTES {
            return Err(ItemError::TooLarge {
                len: bytes.len(),
                max: MAX_ITEM_BYTES,
            });
        }
        let text = std::str::from_utf8(bytes).map_err(|e| ItemError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let entries = parse_object(text).map_err(|e| match e {
            ObjectError::NotJson(m) => ItemError::NotJson(m),
            ObjectError::NotAnObject => ItemError::NotAnObject,
        })?;

        let (mut topic, mut payload, mut qos, mut retain, mut timestamp) =
            (None, None, None, None, None);
        let mut extra = Extra::default();
        for (key, raw) in entries {
            match &*key {
                "topic" => topic = Some(raw),
                "payload" => payload = Some(raw),
                "qos" => qos = Some(raw),
                "retain" => retain = Some(raw),
                "timestamp" => timestamp = Some(raw),
                _ => extra.push_value(key, raw),
            }
        }

        let topic = string_member(topic, "topic")?;
        let topic = Topic::new(topic).map_err(ItemError::InvalidTopic)?;
        let payload = string_member(payload, "payload")?;
        let qos = match qos {
            None => Qos::default(),
            Some(raw) => parse_qos(raw)?,
        };
        let retain = match retain.map(RawValue::get) {
            None => false,
            Some("true") => true,
            Some("false") => false,
            Some(_) => {
                return Err(ItemError::WrongType {
                    field: "retain",
                    expected: "a boolean",
                });
            }
        };
        let timestamp_raw = timestamp.map(|raw| raw.get().to_owned());
        let timestamp = timestamp_raw.as_deref().and_then(json_number);

        Ok(QueueItem {
            topic,
            payload,
            qos,
            retain,
            timestamp,
            timestamp_raw,
            extra,
        })
    }

    /// A new item carrying `event`, like the plugin makes it: payload `event.to_json()`,
    /// QoS 1, not retained, timestamp now.
    ///
    /// ```
    /// use nemo_events::{NemoEvent, QueueItem, Topic};
    ///
    /// let ev = NemoEvent::parse(r#"{"event": "tool_enabled", "tool_id": 1}"#)?;
    /// let item = QueueItem::new(Topic::new("nemo/tools/1/enabled")?, &ev);
    /// assert_eq!(item.event()?, ev);
    /// assert!(item.timestamp.is_some());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(topic: Topic, event: &NemoEvent) -> QueueItem {
        QueueItem::from_payload(topic, event.to_json())
    }

    /// A new item with an arbitrary payload string (QoS 1, not retained, timestamp now).
    ///
    /// ```
    /// use nemo_events::{QueueItem, Topic};
    ///
    /// let item = QueueItem::from_payload(Topic::new("lab/raw")?, "hello");
    /// assert_eq!(QueueItem::parse(item.to_json().as_bytes())?, item);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_payload(topic: Topic, payload: impl Into<String>) -> QueueItem {
        let now = OffsetDateTime::now_utc().unix_timestamp_nanos();
        // f64 has ~0.2 µs resolution at today's epoch, like Python's time.time().
        let timestamp = now as f64 / 1e9;
        QueueItem {
            topic,
            payload: payload.into(),
            qos: Qos::AtLeastOnce,
            retain: false,
            timestamp: Some(timestamp),
            timestamp_raw: None,
            extra: Extra::default(),
        }
    }

    /// The item as JSON, exactly like the plugin's `json.dumps(item)`: members `topic`,
    /// `payload`, `qos`, `retain`, `timestamp` (omitted when `None` and absent in the source),
    /// then the extra members in source order.
    ///
    /// A `timestamp` unchanged since parsing is written with its source text; a non-finite one
    /// is written as `null`.
    ///
    /// ```
    /// use nemo_events::{QueueItem, Topic};
    ///
    /// let mut item = QueueItem::from_payload(Topic::new("nemo/tools/1")?, "{}");
    /// item.timestamp = Some(1760623352.5);
    /// assert_eq!(item.to_json(), r#"{"topic": "nemo/tools/1", "payload": "{}", "qos": 1, "retain": false, "timestamp": 1760623352.5}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.payload.len() + self.topic.as_str().len() + 96);
        out.push_str("{\"topic\": ");
        pyjson::write_str(&mut out, self.topic.as_str());
        out.push_str(", \"payload\": ");
        pyjson::write_str(&mut out, &self.payload);
        out.push_str(", \"qos\": ");
        out.push(char::from(b'0' + self.qos.as_u8()));
        out.push_str(if self.retain {
            ", \"retain\": true"
        } else {
            ", \"retain\": false"
        });
        let raw = self.timestamp_raw.as_deref();
        let raw_matches = match (raw, self.timestamp) {
            (Some(r), Some(t)) => json_number(r).is_some_and(|v| v.to_bits() == t.to_bits()),
            (Some(r), None) => json_number(r).is_none(),
            (None, _) => false,
        };
        match (raw, self.timestamp) {
            (Some(r), _) if raw_matches => {
                out.push_str(", \"timestamp\": ");
                out.push_str(r);
            }
            (_, Some(t)) => {
                out.push_str(", \"timestamp\": ");
                out.push_str(&if t.is_finite() {
                    pyjson::float_repr(t)
                } else {
                    "null".to_owned()
                });
            }
            (_, None) => {}
        }
        self.extra.write_members(&mut out);
        out.push('}');
        out
    }

    /// Parses the payload as a [`NemoEvent`].
    ///
    /// # Errors
    ///
    /// See [`NemoEvent::parse`]; a payload need not be an event, so this is not a reason to
    /// refuse publishing the item.
    ///
    /// ```
    /// use nemo_events::{EventError, QueueItem, Topic};
    ///
    /// let item = QueueItem::from_payload(Topic::new("a")?, "{}");
    /// assert_eq!(item.event(), Err(EventError::MissingKind));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event(&self) -> Result<NemoEvent, EventError> {
        NemoEvent::parse(&self.payload)
    }

    /// Members other than the five modelled ones, in source order.
    ///
    /// ```
    /// let item = nemo_events::QueueItem::parse(br#"{"topic": "a", "payload": "", "trace": "x1"}"#)?;
    /// assert_eq!(item.extra().get_as::<String>("trace").as_deref(), Some("x1"));
    /// # Ok::<(), nemo_events::ItemError>(())
    /// ```
    pub fn extra(&self) -> &Extra {
        &self.extra
    }

    /// Mutable access to the extra members (to add a trace id, say).
    ///
    /// ```
    /// let mut item = nemo_events::QueueItem::parse(br#"{"topic": "a", "payload": ""}"#)?;
    /// item.extra_mut().insert("hop", &1).unwrap();
    /// assert!(item.to_json().ends_with(r#""hop": 1}"#));
    /// # Ok::<(), nemo_events::ItemError>(())
    /// ```
    pub fn extra_mut(&mut self) -> &mut Extra {
        &mut self.extra
    }
}

impl PartialEq for QueueItem {
    /// Compares the modelled members and the extra members. A `timestamp` compares by value,
    /// whatever its source text (`1.0` equals `1`); a non-numeric one by its text.
    fn eq(&self, other: &Self) -> bool {
        let non_numeric = |item: &QueueItem| {
            item.timestamp_raw
                .as_deref()
                .filter(|r| json_number(r).is_none())
                .map(str::to_owned)
        };
        self.topic == other.topic
            && self.payload == other.payload
            && self.qos == other.qos
            && self.retain == other.retain
            && self.timestamp == other.timestamp
            && self.extra == other.extra
            && (self.timestamp.is_some() || non_numeric(self) == non_numeric(other))
    }
}

fn string_member(raw: Option<&RawValue>, field: &'static str) -> Result<String, ItemError> {
    let raw = raw.ok_or(ItemError::MissingField { field })?;
    if !raw.get().starts_with('"') {
        return Err(ItemError::WrongType {
            field,
            expected: "a string",
        });
    }
    // Fails only for escapes that are not Unicode, e.g. a lone surrogate "\ud800".
    serde_json::from_str(raw.get()).map_err(|e| ItemError::NotJson(format!("\"{field}\": {e}")))
}

fn parse_qos(raw: &RawValue) -> Result<Qos, ItemError> {
    const EXPECTED: &str = "an integer 0, 1 or 2";
    let n: serde_json::Number =
        serde_json::from_str(raw.get()).map_err(|_| ItemError::WrongType {
            field: "qos",
            expected: EXPECTED,
        })?;
    if let Some(v) = n.as_i64() {
        Qos::try_from(v).map_err(|_| ItemError::QosOutOfRange { value: v })
    } else if n.is_u64() {
        Err(ItemError::QosOutOfRange { value: i64::MAX })
    } else {
        Err(ItemError::WrongType {
            field: "qos",
            expected: EXPECTED,
        })
    }
}

/// The value of JSON number text, or `None` if `text` is not a JSON number.
fn json_number(text: &str) -> Option<f64> {
    match text.as_bytes().first()? {
        b'-' | b'0'..=b'9' => text.parse::<f64>().ok().filter(|v| v.is_finite()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_extras() -> Result<(), ItemError> {
        let src = r#"{"topic": "t", "payload": "p", "z": [1, {"a": null}], "timestamp": null}"#;
        let item = QueueItem::parse(src.as_bytes())?;
        assert_eq!(
            (item.qos, item.retain, item.timestamp),
            (Qos::AtLeastOnce, false, None)
        );
        assert_eq!(
            item.to_json(),
            r#"{"topic": "t", "payload": "p", "qos": 1, "retain": false, "timestamp": null, "z": [1, {"a": null}]}"#
        );
        Ok(())
    }

    #[test]
    fn timestamp_written_raw_until_changed() -> Result<(), ItemError> {
        let mut item =
            QueueItem::parse(br#"{"topic": "t", "payload": "", "timestamp": 1.7606E9}"#)?;
        assert_eq!(item.timestamp, Some(1.7606e9));
        assert!(item.to_json().ends_with(r#""timestamp": 1.7606E9}"#));
        item.timestamp = Some(2.5);
        assert!(item.to_json().ends_with(r#""timestamp": 2.5}"#));
        item.timestamp = None;
        assert!(item.to_json().ends_with(r#""retain": false}"#));
        item.timestamp = Some(f64::NAN);
        assert!(item.to_json().ends_with(r#""timestamp": null}"#));
        Ok(())
    }

    #[test]
    fn member_types() {
        let e = |s: &str| QueueItem::parse(s.as_bytes()).err();
        assert_eq!(
            e(r#"{"topic": "t", "payload": 1}"#),
            Some(ItemError::WrongType {
                field: "payload",
                expected: "a string"
            })
        );
        assert_eq!(
            e(r#"{"topic": "t", "payload": "", "retain": 1}"#),
            Some(ItemError::WrongType {
                field: "retain",
                expected: "a boolean"
            })
        );
        assert_eq!(
            e(r#"{"topic": "t", "payload": "", "qos": 1.0}"#).and_then(|e| e.field()),
            Some("qos")
        );
        assert_eq!(
            e(r#"{"topic": "t", "payload": "", "qos": -1}"#),
            Some(ItemError::QosOutOfRange { value: -1 })
        );
        assert_eq!(
            e(r#"{"topic": "t", "payload": "", "qos": 18446744073709551615}"#),
            Some(ItemError::QosOutOfRange { value: i64::MAX })
        );
        assert!(matches!(
            e(r#"{"topic": "t", "payload": "\ud800"}"#),
            Some(ItemError::NotJson(_))
        ));
        assert_eq!(
            e(r#"{"topic": "t", "payload": "", "qos": 2, "retain": true}"#),
            None
        );
    }
}
