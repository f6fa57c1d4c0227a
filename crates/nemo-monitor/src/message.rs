//! Lenient reading of one received message: envelope, HMAC, JSON body, event kind.
//!
//! The monitor must show *whatever* arrives — that is its job when something is
//! wrong — so nothing here rejects input. A payload is classified as empty, JSON,
//! other text or binary; a JSON object that looks like an HMAC envelope
//! (`{"payload": "...", "hmac": "<hex>", "algo": "sha256"}`) is unwrapped and, when a
//! key is known, its signature checked against the exact inner bytes.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Result of checking a message's HMAC signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    /// The payload is not an HMAC envelope.
    Unsigned,
    /// An envelope, but no key was given to check it.
    Unchecked,
    /// An envelope whose HMAC matches the key.
    Valid,
    /// An envelope whose HMAC does not match (or is malformed / another algo).
    Invalid,
}

/// The body of a message after unwrapping a possible envelope.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    /// Zero bytes (a retained message being cleared).
    Empty,
    /// Parsed JSON.
    Json(Value),
    /// UTF-8 text that is not JSON.
    Text(String),
    /// Bytes that are not UTF-8.
    Binary(usize),
}

/// A decoded message.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub body: Body,
    pub signature: Signature,
    /// Length of the inner payload in bytes.
    pub len: usize,
}

fn classify(payload: &[u8]) -> Body {
    if payload.is_empty() {
        return Body::Empty;
    }
    match std::str::from_utf8(payload) {
        Err(_) => Body::Binary(payload.len()),
        Ok(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => Body::Json(v),
            Err(_) => Body::Text(text.to_owned()),
        },
    }
}

/// Decode a payload, unwrapping an HMAC envelope (checked when `key` is given).
///
/// Envelope parsing and verification are `nemo_events::hmac`'s, the same code the
/// relays' Rust consumers use, so "✓" here means what a relay would accept.
pub(crate) fn decode(payload: &[u8], key: Option<&[u8]>) -> Decoded {
    let Ok(envelope) = nemo_events::hmac::Envelope::parse(payload) else {
        return Decoded {
            body: classify(payload),
            signature: Signature::Unsigned,
            len: payload.len(),
        };
    };
    let signature = match key {
        None => Signature::Unchecked,
        Some(k) if envelope.verify(k).is_ok() => Signature::Valid,
        Some(_) => Signature::Invalid,
    };
    Decoded {
        body: classify(envelope.payload.as_bytes()),
        signature,
        len: envelope.payload.len(),
    }
}

/// A string field, or a number/bool rendered as text.
pub(crate) fn text_field(v: &Value, name: &str) -> Option<String> {
    match v.get(name)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A boolean field (accepting `true`/`false`, 0/1 and "true"/"false").
pub(crate) fn bool_field(v: &Value, name: &str) -> Option<bool> {
    match v.get(name)? {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Some(true),
            "false" | "0" | "no" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A time field: RFC 3339 / Django `isoformat()` (offset optional, then UTC),
/// or epoch seconds. Booleans (a known plugin bug) and garbage give `None`.
pub(crate) fn time_field(v: &Value, name: &str) -> Option<OffsetDateTime> {
    match v.get(name)? {
        Value::String(s) => parse_time(s),
        Value::Number(n) => {
            let secs = n.as_f64()?;
            if !secs.is_finite() {
                return None;
            }
            OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).ok()
        }
        _ => None,
    }
}

/// Parse an ISO-8601 time as written by Django, with or without an offset.
pub(crate) fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    // A space instead of `T`, or no offset (naive times are taken as UTC).
    let fixed = s.replacen(' ', "T", 1);
    if let Ok(t) = OffsetDateTime::parse(&fixed, &Rfc3339) {
        return Some(t);
    }
    let naive = time::macros::format_description!(
        version = 2,
        "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
    );
    time::PrimitiveDateTime::parse(&fixed, naive)
        .ok()
        .map(|p| p.assume_utc())
}

/// What a topic says about a message: `nemo/tools/{id}/{suffix}` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicInfo {
    /// Second level (`tools`, `areas`, `reservations`, `area_access`, `bridge`...).
    pub family: Option<String>,
    /// Third level (the id for `tools`/`areas`/...).
    pub id: Option<String>,
    /// Fourth level (`enabled`, `disabled`, `operational`, `non-operational`, `tasks`).
    pub suffix: Option<String>,
}

pub(crate) fn topic_info(topic: &str) -> TopicInfo {
    let mut levels = topic.split('/');
    let _prefix = levels.next();
    let family = levels.next().map(str::to_owned);
    let id = levels.next().map(str::to_owned);
    let suffix = levels.next().map(str::to_owned);
    TopicInfo { family, id, suffix }
}

/// The event kind: the payload's `event` field, else derived from the topic.
pub(crate) fn event_kind(topic: &TopicInfo, body: Option<&Value>) -> Option<String> {
    if let Some(kind) = body.and_then(|v| v.get("event")).and_then(Value::as_str) {
        return Some(kind.to_owned());
    }
    if topic.family.as_deref() != Some("tools") {
        return None;
    }
    match topic.suffix.as_deref() {
        Some("enabled") => Some("tool_enabled".into()),
        Some("disabled") => Some("tool_disabled".into()),
        Some("operational") => Some("tool_operational".into()),
        Some("non-operational") | Some("non_operational") => Some("tool_non_operational".into()),
        _ => None,
    }
}

/// The tool id: the payload's `tool_id`, else the topic's third level.
pub(crate) fn tool_id(topic: &TopicInfo, body: Option<&Value>) -> Option<String> {
    body.and_then(|v| text_field(v, "tool_id")).or_else(|| {
        if topic.family.as_deref() == Some("tools") {
            topic.id.clone().filter(|s| !s.is_empty())
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_django_times() {
        let a = parse_time("2025-10-16T14:02:32.944572+00:00").unwrap();
        let b = parse_time("2025-10-16 14:02:32.944572").unwrap();
        assert_eq!(a, b);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn envelope_checks_signature() {
        let inner = r#"{"event": "tool_enabled"}"#;
        let key = b"k";
        let env = nemo_events::hmac::sign(inner, key);
        assert_eq!(
            decode(env.as_bytes(), Some(key)).signature,
            Signature::Valid
        );
        assert_eq!(
            decode(env.as_bytes(), Some(b"other")).signature,
            Signature::Invalid
        );
        assert_eq!(decode(env.as_bytes(), None).signature, Signature::Unchecked);
        assert_eq!(
            decode(inner.as_bytes(), Some(key)).signature,
            Signature::Unsigned
        );
    }
}
