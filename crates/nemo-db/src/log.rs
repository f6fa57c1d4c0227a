//! The page's recent-message log: what the bridge writes to `nemo_mqtt_mqttmessagelog`.

use std::time::SystemTime;

/// The message-log table.
pub const MESSAGE_LOG_TABLE: &str = "nemo_mqtt_mqttmessagelog";

/// One publication as NEMO's page lists it.
///
/// ```
/// let e = nemo_db::LogEntry::confirmed("nemo/tools/1/enabled", "{}", 1, false);
/// assert!(e.success && e.error_message.is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The topic published to.
    pub topic: String,
    /// The payload as published (the envelope when signing), as text.
    pub payload: String,
    /// QoS.
    pub qos: u8,
    /// Retain flag.
    pub retained: bool,
    /// True when the broker confirmed it.
    pub success: bool,
    /// Why it failed, when it did.
    pub error_message: Option<String>,
    /// When it was sent. The constructors take the current time; the bridge's message log
    /// sets the time of the publication and keeps the times increasing in publication order
    /// (NEMO's page lists the newest by this column).
    pub sent_at: SystemTime,
}

impl LogEntry {
    /// A confirmed publication, now.
    pub fn confirmed(
        topic: impl Into<String>,
        payload: impl Into<String>,
        qos: u8,
        retained: bool,
    ) -> LogEntry {
        LogEntry {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retained,
            success: true,
            error_message: None,
            sent_at: SystemTime::now(),
        }
    }

    /// A failed publication, now.
    pub fn failed(
        topic: impl Into<String>,
        payload: impl Into<String>,
        qos: u8,
        retained: bool,
        error: impl Into<String>,
    ) -> LogEntry {
        LogEntry {
            success: false,
            error_message: Some(error.into()),
            ..LogEntry::confirmed(topic, payload, qos, retained)
        }
    }

    /// `sent_at` as Django writes a UTC datetime: `YYYY-MM-DD HH:MM:SS.ffffff`.
    pub(crate) fn sent_at_utc(&self) -> String {
        const DJANGO: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]"
        );
        time::OffsetDateTime::from(self.sent_at)
            .format(DJANGO)
            .unwrap_or_else(|_| "1970-01-01 00:00:00.000000".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn sent_at_is_written_like_django() {
        let mut e = LogEntry::confirmed("t", "p", 1, false);
        e.sent_at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_623_400_123_456);
        assert_eq!(e.sent_at_utc(), "2025-12-01 21:10:00.123456");
        e.sent_at = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(e.sent_at_utc(), "2000-02-29 00:00:00.000000");
    }
}
