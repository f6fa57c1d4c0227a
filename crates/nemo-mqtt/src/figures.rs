//! [`QueueFigures`]: what the bridge tells the broker about its queue.
//!
//! The monitor shows how many events wait, how many a bridge has taken and not yet seen
//! confirmed, and how many went to the dead letters. Only the bridge can read those numbers
//! (from Redis, or from NEMO's queue table of plugin 2.x), so the bridge publishes them, and
//! every other program only listens to the broker: the monitor needs neither Redis nor the
//! database. The document is retained (a monitor started later sees the last figures at once)
//! and signed like the bridge's status (with the HMAC key when one is configured). Its topic is
//! the sibling `queue` of the status topic ([`figures_topic`]): `nemo/bridge/status` →
//! `nemo/bridge/queue`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The bridge's queue figures, as published on [`figures_topic`].
///
/// ```
/// use nemo_mqtt::QueueFigures;
/// let f = QueueFigures {
///     source: "list".into(),
///     pending: 3,
///     processing: 1,
///     dead: 0,
///     display_connected: None,
///     at: time::macros::datetime!(2026-12-07 16:00 UTC),
/// };
/// let json = f.to_json();
/// assert!(json.contains(r#""pending":3"#));
/// assert_eq!(QueueFigures::parse(json.as_bytes(), None).unwrap(), f);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFigures {
    /// Which queue the bridge reads: `list`, `stream`, `pubsub` (Redis, plugin 1.x) or
    /// `database` (NEMO's queue table, plugin 2.x).
    pub source: String,
    /// Events waiting in the queue, not yet taken.
    pub pending: u64,
    /// Events taken by a bridge and not yet confirmed by the broker.
    pub processing: u64,
    /// Events set aside as dead letters (Redis' dead-letter list, or the failed rows of NEMO's
    /// message log).
    pub dead: u64,
    /// Whether the displays' broker (`[display]`) is connected; absent when that feed is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_connected: Option<bool>,
    /// When the bridge read these numbers.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Why a figures document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FiguresError {
    /// A key is configured and the document is not a validly signed envelope.
    #[error("queue figures: signature: {0}")]
    Signature(#[from] nemo_events::hmac::HmacError),
    /// The document is not the JSON this module writes.
    #[error("queue figures: {0}")]
    Json(#[from] serde_json::Error),
}

impl QueueFigures {
    /// The JSON document (unsigned).
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and a formatted time always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The payload to publish: the JSON document, as a signed envelope when `key` is given.
    ///
    /// ```
    /// # use nemo_mqtt::QueueFigures;
    /// # let f = QueueFigures { source: "database".into(), pending: 0, processing: 0, dead: 2,
    /// #     display_connected: Some(true), at: time::OffsetDateTime::UNIX_EPOCH };
    /// let signed = f.payload(Some(b"k"));
    /// assert_eq!(QueueFigures::parse(signed.as_bytes(), Some(b"k")).unwrap(), f);
    /// assert!(QueueFigures::parse(signed.as_bytes(), Some(b"other")).is_err());
    /// ```
    pub fn payload(&self, key: Option<&[u8]>) -> String {
        let doc = self.to_json();
        match key.filter(|k| !k.is_empty()) {
            Some(k) => nemo_events::hmac::sign(&doc, k),
            None => doc,
        }
    }

    /// Read a figures document. With `key`, the payload must be an envelope signed with it;
    /// without, a plain document or an envelope (whose signature is then not checked) is read.
    ///
    /// # Errors
    /// [`FiguresError::Signature`] for a missing or wrong signature when a key is given,
    /// [`FiguresError::Json`] for a document of another shape.
    pub fn parse(payload: &[u8], key: Option<&[u8]>) -> Result<QueueFigures, FiguresError> {
        match key.filter(|k| !k.is_empty()) {
            Some(k) => {
                let inner = nemo_events::hmac::verify(payload, k)?;
                Ok(serde_json::from_str(&inner)?)
            }
            None => match nemo_events::hmac::Envelope::parse(payload) {
                Ok(envelope) => Ok(serde_json::from_str(&envelope.payload)?),
                Err(_) => Ok(serde_json::from_slice(payload)?),
            },
        }
    }
}

/// The topic of the queue figures beside a status topic: its last level replaced by `queue`
/// (`nemo/bridge/status` → `nemo/bridge/queue`, `status` → `queue`). `None` when the status
/// topic is empty (no status, no figures) or already ends in `queue`.
///
/// ```
/// assert_eq!(nemo_mqtt::figures_topic("nemo/bridge/status").as_deref(), Some("nemo/bridge/queue"));
/// assert_eq!(nemo_mqtt::figures_topic("lab/bridge").as_deref(), Some("lab/queue"));
/// assert_eq!(nemo_mqtt::figures_topic(""), None);
/// ```
pub fn figures_topic(status_topic: &str) -> Option<String> {
    if status_topic.is_empty() {
        return None;
    }
    let t = match status_topic.rsplit_once('/') {
        Some((parent, _)) => format!("{parent}/queue"),
        None => "queue".to_owned(),
    };
    (t != status_topic).then_some(t)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sample() -> QueueFigures {
        QueueFigures {
            source: "stream".into(),
            pending: 10,
            processing: 2,
            dead: 1,
            display_connected: Some(false),
            at: time::macros::datetime!(2026-12-07 16:00:01.5 UTC),
        }
    }

    #[test]
    fn a_signed_document_needs_the_key_and_a_plain_one_is_refused_when_a_key_is_set() {
        let f = sample();
        let plain = f.payload(None);
        assert!(QueueFigures::parse(plain.as_bytes(), Some(b"k")).is_err());
        assert_eq!(QueueFigures::parse(plain.as_bytes(), None).unwrap(), f);
        let signed = f.payload(Some(b"k"));
        assert_eq!(QueueFigures::parse(signed.as_bytes(), None).unwrap(), f);
        assert!(QueueFigures::parse(b"{\"pending\":1}", None).is_err());
    }

    #[test]
    fn no_display_key_when_the_feed_is_off() {
        let f = QueueFigures {
            display_connected: None,
            ..sample()
        };
        assert!(!f.to_json().contains("display"), "{}", f.to_json());
        assert!(sample().to_json().contains(r#""display_connected":false"#));
    }

    #[test]
    fn the_topic_never_equals_the_status_topic() {
        assert_eq!(figures_topic("a/queue"), None);
        assert_eq!(figures_topic("queue"), None);
        assert_eq!(figures_topic("a/b/c").as_deref(), Some("a/b/queue"));
    }
}
