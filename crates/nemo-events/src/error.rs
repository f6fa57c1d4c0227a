//! Typed errors for queue items and event payloads.

use crate::TopicError;

/// Why a Redis queue item cannot be published. Every variant is "bad input": the caller should
/// dead-letter the raw bytes with this error's message, not retry.
///
/// ```
/// use nemo_events::{ItemError, QueueItem};
///
/// let err = QueueItem::parse(br#"{"topic": "nemo/#", "payload": "{}"}"#).unwrap_err();
/// assert!(matches!(err, ItemError::InvalidTopic(_)));
/// assert_eq!(err.field(), Some("topic"));
/// assert_eq!(err.to_string(), "invalid \"topic\": topic contains the wildcard '#', which is only allowed in subscriptions");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    /// The bytes are not UTF-8 (so not JSON).
    #[error("item is not valid UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// Length of the valid UTF-8 prefix.
        valid_up_to: usize,
    },
    /// The text is not JSON (syntax error, truncated, or nested deeper than 128 levels).
    #[error("item is not JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but not an object.
    #[error("item is JSON but not an object")]
    NotAnObject,
    /// A required member is absent (`topic` or `payload`).
    #[error("item has no \"{field}\"")]
    MissingField {
        /// The missing member.
        field: &'static str,
    },
    /// A member has the wrong JSON type.
    #[error("item \"{field}\" must be {expected}")]
    WrongType {
        /// The member.
        field: &'static str,
        /// What was expected, in words.
        expected: &'static str,
    },
    /// `topic` is a string but not a topic one can publish to.
    #[error("invalid \"topic\": {0}")]
    InvalidTopic(#[source] TopicError),
    /// `qos` is an integer other than 0, 1, 2.
    #[error("item \"qos\" is {value}, allowed: 0, 1, 2")]
    QosOutOfRange {
        /// The rejected number (saturated to `i64::MAX` when larger).
        value: i64,
    },
    /// The item is longer than the limit; it was not parsed.
    #[error("item is {len} bytes, more than the limit of {max}")]
    TooLarge {
        /// Size of the item in bytes.
        len: usize,
        /// The limit ([`crate::MAX_ITEM_BYTES`]).
        max: usize,
    },
}

impl ItemError {
    /// The item member this error is about, if it is about one.
    ///
    /// ```
    /// use nemo_events::ItemError;
    ///
    /// assert_eq!(ItemError::QosOutOfRange { value: 3 }.field(), Some("qos"));
    /// assert_eq!(ItemError::NotAnObject.field(), None);
    /// ```
    pub fn field(&self) -> Option<&'static str> {
        match self {
            ItemError::MissingField { field } | ItemError::WrongType { field, .. } => Some(field),
            ItemError::InvalidTopic(_) => Some("topic"),
            ItemError::QosOutOfRange { .. } => Some("qos"),
            ItemError::NotUtf8 { .. }
            | ItemError::NotJson(_)
            | ItemError::NotAnObject
            | ItemError::TooLarge { .. } => None,
        }
    }
}

/// Why an event payload cannot be read as a [`crate::NemoEvent`].
///
/// Parsing is lenient: unknown kinds, extra members and mistyped members are kept, so only a
/// payload that is not a JSON object with an `"event"` string fails.
///
/// ```
/// use nemo_events::{EventError, NemoEvent};
///
/// assert_eq!(NemoEvent::parse("[]"), Err(EventError::NotAnObject));
/// assert_eq!(NemoEvent::parse("{}"), Err(EventError::MissingKind));
/// assert_eq!(
///     NemoEvent::parse(r#"{"event": 3}"#),
///     Err(EventError::WrongType { field: "event", expected: "a string" })
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The payload is not JSON (syntax error, truncated, or nested deeper than 128 levels).
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    /// Valid JSON, but not an object.
    #[error("payload is JSON but not an object")]
    NotAnObject,
    /// The object has no `"event"` member.
    #[error("payload has no \"event\" kind")]
    MissingKind,
    /// A member has the wrong JSON type (only `"event"` can cause this).
    #[error("payload \"{field}\" must be {expected}")]
    WrongType {
        /// The member.
        field: &'static str,
        /// What was expected, in words.
        expected: &'static str,
    },
}
