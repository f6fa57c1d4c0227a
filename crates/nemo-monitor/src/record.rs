//! JSONL recordings: one line per received MQTT message.
//!
//! A recording is what `monitor --record FILE` writes and what `replay` reads back.
//! Each line is a self-contained JSON object:
//!
//! ```text
//! {"t": "2025-10-16T14:02:32.944572Z", "topic": "nemo/tools/1/enabled", "payload": "{\"event\": ...}", "qos": 1, "retain": false}
//! ```
//!
//! - `t` is the time the monitor *received* the message, RFC 3339 in UTC with the
//!   fraction of a second.
//! - `payload` holds the payload bytes **verbatim** as a JSON string when they are
//!   UTF-8 (the HMAC signs the exact bytes, so a recording must give them back byte
//!   for byte). Payloads that are not UTF-8 are stored as standard base64 with
//!   `"payload_b64": true` next to them, so nothing that was on the wire is lost.
//! - `qos` is the QoS the message was delivered with (0, 1 or 2); `retain` says
//!   whether the broker delivered it as a retained message.
//!
//! Because every line stands alone, recordings can be concatenated, `grep`ed and
//! cut with ordinary tools.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// One received message, as stored in a recording.
///
/// ```
/// use nemo_monitor::RecordLine;
/// let line = RecordLine {
///     received_at: time::macros::datetime!(2025-10-16 14:02:32.944572 UTC),
///     topic: "nemo/tools/1/enabled".into(),
///     payload: bytes::Bytes::from_static(br#"{"event": "tool_enabled"}"#),
///     qos: 1,
///     retain: false,
/// };
/// let json = line.to_json_line();
/// assert_eq!(
///     json,
///     r#"{"t":"2025-10-16T14:02:32.944572Z","topic":"nemo/tools/1/enabled","payload":"{\"event\": \"tool_enabled\"}","qos":1,"retain":false}"#
/// );
/// assert_eq!(RecordLine::parse(&json).unwrap(), line);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    /// When the monitor received the message.
    pub received_at: OffsetDateTime,
    /// The MQTT topic.
    pub topic: String,
    /// The payload bytes, exactly as received.
    pub payload: Bytes,
    /// The QoS of the delivery (0, 1 or 2).
    pub qos: u8,
    /// Whether the broker delivered the message as retained.
    pub retain: bool,
}

/// Why a recording line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The line is not a JSON object with the expected fields.
    #[error("not a recording line: {0}")]
    Json(#[from] serde_json::Error),
    /// The `t` field is not an RFC 3339 time.
    #[error("field \"t\" is not an RFC 3339 time: {value:?}")]
    Time {
        /// The value found.
        value: String,
    },
    /// `payload_b64` is true but `payload` is not valid base64.
    #[error("field \"payload\" is marked payload_b64 but is not base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// `qos` is not 0, 1 or 2.
    #[error("field \"qos\" must be 0, 1 or 2, got {0}")]
    Qos(u8),
    /// Reading the recording failed.
    #[error("reading recording: {0}")]
    Io(#[from] io::Error),
}

#[derive(Serialize)]
struct WireOut<'a> {
    t: String,
    topic: &'a str,
    payload: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    payload_b64: bool,
    qos: u8,
    retain: bool,
}

#[derive(Deserialize)]
struct WireIn {
    t: String,
    topic: String,
    payload: String,
    #[serde(default)]
    payload_b64: bool,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
}

/// Format a time as RFC 3339 in UTC, keeping the fraction of a second.
pub(crate) fn rfc3339_utc(at: OffsetDateTime) -> String {
    let utc = at.to_offset(time::UtcOffset::UTC);
    // Formatting a UTC time with a four-digit year cannot fail; fall back to the
    // unix timestamp rather than panic if it ever does (year > 9999).
    utc.format(&Rfc3339)
        .unwrap_or_else(|_| utc.unix_timestamp().to_string())
}

impl RecordLine {
    /// The line as compact JSON, without the trailing newline.
    pub fn to_json_line(&self) -> String {
        let (payload, payload_b64) = match std::str::from_utf8(&self.payload) {
            Ok(text) => (std::borrow::Cow::Borrowed(text), false),
            Err(_) => (std::borrow::Cow::Owned(BASE64.encode(&self.payload)), true),
        };
        let wire = WireOut {
            t: rfc3339_utc(self.received_at),
            topic: &self.topic,
            payload,
            payload_b64,
            qos: self.qos,
            retain: self.retain,
        };
        // Serializing strings, bools and integers into a String cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    /// Parse one line of a recording (surrounding whitespace is ignored).
    ///
    /// # Errors
    ///
    /// [`RecordError`] when the line is not JSON, lacks `t`/`topic`/`payload`, has
    /// a bad time, bad base64 or a QoS above 2. `qos` and `retain` default to 0 and
    /// false when absent.
    pub fn parse(line: &str) -> Result<RecordLine, RecordError> {
        let wire: WireIn = serde_json::from_str(line.trim())?;
        let received_at =
            OffsetDateTime::parse(&wire.t, &Rfc3339).map_err(|_| RecordError::Time {
                value: wire.t.clone(),
            })?;
        if wire.qos > 2 {
            return Err(RecordError::Qos(wire.qos));
        }
        let payload = if wire.payload_b64 {
            Bytes::from(BASE64.decode(wire.payload.as_bytes())?)
        } else {
            Bytes::from(wire.payload.into_bytes())
        };
        Ok(RecordLine {
            received_at,
            topic: wire.topic,
            payload,
            qos: wire.qos,
            retain: wire.retain,
        })
    }
}

/// Appends [`RecordLine`]s to a file, one JSON line each, written through
/// immediately so that a crash or Ctrl-C loses at most the line being written.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("incident.jsonl");
/// let mut rec = nemo_monitor::Recorder::create(&path)?;
/// rec.write(&nemo_monitor::RecordLine {
///     received_at: time::OffsetDateTime::UNIX_EPOCH,
///     topic: "nemo/tools/1/enabled".into(),
///     payload: bytes::Bytes::from_static(b"{}"),
///     qos: 1,
///     retain: false,
/// })?;
/// let lines = nemo_monitor::record::read_file(&path)?;
/// assert_eq!(lines.len(), 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Recorder {
    file: File,
    lines: u64,
}

impl Recorder {
    /// Open `path` for recording. The file is created if missing and **appended
    /// to** if it exists: an earlier recording is never truncated by accident,
    /// and since every line stands alone, the result is still a valid recording.
    ///
    /// # Errors
    ///
    /// The I/O error from opening the file.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Recorder> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Recorder { file, lines: 0 })
    }

    /// Write one line (and its newline) with a single `write` call, unbuffered.
    ///
    /// # Errors
    ///
    /// The I/O error from writing (disk full, ...).
    pub fn write(&mut self, line: &RecordLine) -> io::Result<()> {
        let mut text = line.to_json_line();
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        self.lines += 1;
        Ok(())
    }

    /// How many lines this recorder has written.
    pub fn lines_written(&self) -> u64 {
        self.lines
    }
}

/// Read every line of a recording from a reader. Blank lines are skipped.
///
/// # Errors
///
/// The first line that does not parse, as `(line number starting at 1, error)`.
pub fn read_lines(reader: impl BufRead) -> Result<Vec<RecordLine>, (usize, RecordError)> {
    let mut out = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| (index + 1, RecordError::Io(e)))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(RecordLine::parse(&line).map_err(|e| (index + 1, e))?);
    }
    Ok(out)
}

/// Read a whole recording file.
///
/// # Errors
///
/// An [`io::Error`] for an unreadable file or a bad line (kind `InvalidData`,
/// message naming the line number).
pub fn read_file(path: impl AsRef<Path>) -> io::Result<Vec<RecordLine>> {
    let file = File::open(path)?;
    read_lines(io::BufReader::new(file)).map_err(|(n, e)| match e {
        RecordError::Io(io) => io,
        other => io::Error::new(io::ErrorKind::InvalidData, format!("line {n}: {other}")),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn non_utf8_payload_goes_base64_and_back() {
        let line = RecordLine {
            received_at: time::macros::datetime!(2026-01-02 03:04:05.5 +02:00),
            topic: "nemo/x".into(),
            payload: Bytes::from_static(&[0xff, 0x00, b'a', 0xc3]),
            qos: 2,
            retain: true,
        };
        let json = line.to_json_line();
        assert!(json.contains(r#""payload_b64":true"#), "{json}");
        assert!(json.contains(r#""t":"2026-01-02T01:04:05.5Z""#), "{json}");
        assert_eq!(RecordLine::parse(&json).unwrap(), line);
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(matches!(
            RecordLine::parse("nope"),
            Err(RecordError::Json(_))
        ));
        assert!(matches!(
            RecordLine::parse(r#"{"t":"yesterday","topic":"a","payload":""}"#),
            Err(RecordError::Time { .. })
        ));
        assert!(matches!(
            RecordLine::parse(r#"{"t":"2026-01-01T00:00:00Z","topic":"a","payload":"","qos":3}"#),
            Err(RecordError::Qos(3))
        ));
        assert!(matches!(
            RecordLine::parse(
                r#"{"t":"2026-01-01T00:00:00Z","topic":"a","payload":"!!","payload_b64":true}"#
            ),
            Err(RecordError::Base64(_))
        ));
    }
}
