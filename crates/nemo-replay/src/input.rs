//! Input files as iterators of [`ReplayItem`]s with line numbers.
//!
//! Two line formats, one JSON document per line:
//! - [`InputFormat::Recording`]: the monitor's `--record` JSONL
//!   (`nemo_monitor::record::RecordLine`: receive time, topic, payload, qos, retain).
//! - [`InputFormat::QueueItems`]: v1 queue items as the NEMO plugin writes them
//!   to Redis (`{"topic": ..., "payload": "...", "qos": 1, "retain": false,
//!   "timestamp": 1760623352.94}`); `timestamp` is the item's time.
//!
//! Blank lines are ignored. A line that does not parse (or is not UTF-8) is
//! yielded as [`InputError::Bad`] with its 1-based number, and reading goes on
//! with the next line: the caller decides whether to skip or stop.

use std::io::BufRead;

use crate::ReplayItem;

/// The line format of an input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Monitor recording lines.
    Recording,
    /// v1 queue items.
    QueueItems,
}

/// A line that could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The line is not a valid item of the format; skip or stop.
    #[error("line {line}: {reason}")]
    Bad {
        /// 1-based line number.
        line: usize,
        /// What is wrong, in words.
        reason: String,
    },
    /// Reading the file failed; nothing more can be read.
    #[error("read failed after line {line}: {source}")]
    Io {
        /// Last line read successfully.
        line: usize,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl InputFormat {
    /// Guess the format from one line: a recording line has `t` (the receive
    /// time) and no `timestamp`.
    ///
    /// ```
    /// use nemo_replay::InputFormat;
    /// assert_eq!(InputFormat::detect(r#"{"topic": "a", "payload": "{}", "qos": 1}"#), InputFormat::QueueItems);
    /// assert_eq!(InputFormat::detect(r#"{"t": "2025-10-16T14:00:00Z", "topic": "a"}"#), InputFormat::Recording);
    /// ```
    pub fn detect(line: &str) -> InputFormat {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) if v.get("t").is_some() && v.get("timestamp").is_none() => InputFormat::Recording,
            _ => InputFormat::QueueItems,
        }
    }

    /// Parse one line (`line` is its number, kept in the item).
    ///
    /// # Errors
    /// A human-readable reason when the line is not a valid item.
    pub fn parse(self, line: usize, text: &str) -> Result<ReplayItem, String> {
        match self {
            InputFormat::Recording => crate::formats::parse_recording(line, text),
            InputFormat::QueueItems => crate::formats::parse_queue_item(line, text),
        }
    }
}

/// Items of a line-oriented input, with line numbers.
///
/// ```
/// use nemo_replay::{InputFormat, LineItems, InputError};
/// let text = "{\"topic\": \"nemo/tools/1\", \"payload\": \"{}\", \"qos\": 1, \"retain\": false, \"timestamp\": 1760623352.5}\n\nnot json\n";
/// let items: Vec<_> = LineItems::new(text.as_bytes(), InputFormat::QueueItems).collect();
/// assert_eq!(items.len(), 2);
/// assert_eq!(items[0].as_ref().unwrap().topic, "nemo/tools/1");
/// assert!(matches!(items[1], Err(InputError::Bad { line: 3, .. })));
/// ```
#[derive(Debug)]
pub struct LineItems<R> {
    reader: R,
    format: InputFormat,
    line: usize,
    buf: Vec<u8>,
    done: bool,
}

impl<R: BufRead> LineItems<R> {
    /// Read `reader` as lines of `format`.
    pub fn new(reader: R, format: InputFormat) -> Self {
        LineItems {
            reader,
            format,
            line: 0,
            buf: Vec::new(),
            done: false,
        }
    }
}

impl<R: BufRead> Iterator for LineItems<R> {
    type Item = Result<ReplayItem, InputError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => self.done = true,
                Ok(_) => {
                    self.line += 1;
                    let line = self.line;
                    let Ok(text) = std::str::from_utf8(&self.buf) else {
                        return Some(Err(InputError::Bad {
                            line,
                            reason: "not UTF-8".into(),
                        }));
                    };
                    let text = text.trim();
                    if text.is_empty() {
                        continue;
                    }
                    return Some(
                        self.format
                            .parse(line, text)
                            .map_err(|reason| InputError::Bad { line, reason }),
                    );
                }
                Err(source) => {
                    self.done = true;
                    return Some(Err(InputError::Io {
                        line: self.line,
                        source,
                    }));
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(text: &str, format: InputFormat) -> Vec<Result<ReplayItem, InputError>> {
        LineItems::new(text.as_bytes(), format).collect()
    }

    #[test]
    fn fixture_queue_items_all_parse_with_times() -> Result<(), Box<dyn std::error::Error>> {
        let text = nemo_testkit::fixture("v1-queue-items.jsonl")?;
        let items = collect(&text, InputFormat::QueueItems);
        assert_eq!(
            items.len(),
            text.lines().filter(|l| !l.trim().is_empty()).count()
        );
        let mut lines = Vec::new();
        for item in items {
            let item = item?;
            assert!(item.queue_item.is_some());
            lines.push(item.line);
        }
        assert_eq!(lines, (1..=lines.len()).collect::<Vec<_>>());
        assert_eq!(
            InputFormat::detect(text.lines().next().unwrap_or("")),
            InputFormat::QueueItems
        );
        Ok(())
    }

    #[test]
    fn bad_lines_carry_their_numbers_and_reading_goes_on() {
        let good = r#"{"topic": "nemo/tools/1", "payload": "{}"}"#;
        let text =
            format!("{good}\nnot json\n\n{{\"topic\": \"a/#\", \"payload\": \"{{}}\"}}\n{good}\n");
        let items = collect(&text, InputFormat::QueueItems);
        let shape: Vec<Result<usize, usize>> = items
            .iter()
            .map(|r| match r {
                Ok(i) => Ok(i.line),
                Err(InputError::Bad { line, .. }) => Err(*line),
                Err(InputError::Io { .. }) => Err(0),
            })
            .collect();
        assert_eq!(shape, [Ok(1), Err(2), Err(4), Ok(5)]);
    }

    #[test]
    fn non_utf8_line_is_bad_not_a_panic() {
        let mut bytes = b"\xff\xfe\n".to_vec();
        bytes.extend_from_slice(br#"{"topic": "a", "payload": ""}"#);
        let items: Vec<_> = LineItems::new(&bytes[..], InputFormat::QueueItems).collect();
        assert!(
            matches!(&items[0], Err(InputError::Bad { line: 1, reason }) if reason.contains("UTF-8"))
        );
        assert!(items[1].is_ok());
    }

    #[test]
    fn every_fixture_bad_item_is_refused() -> Result<(), Box<dyn std::error::Error>> {
        let text = nemo_testkit::fixture("bad-queue-items.jsonl")?;
        for (n, line) in text.lines().enumerate() {
            let case: serde_json::Value = serde_json::from_str(line)?;
            let raw = case["raw"].as_str().unwrap_or_default();
            assert!(
                InputFormat::QueueItems.parse(n + 1, raw).is_err(),
                "accepted: {case}"
            );
        }
        Ok(())
    }

    #[test]
    fn recording_lines_keep_payload_bytes_and_time() -> Result<(), String> {
        let line = r#"{"t":"2025-10-16T14:02:32.944572Z","topic":"nemo/tools/1/enabled","payload":"{\"event\": \"tool_enabled\", \"user_name\": \"Jos\\u00e9\"}","qos":2,"retain":true}"#;
        assert_eq!(InputFormat::detect(line), InputFormat::Recording);
        let item = InputFormat::Recording.parse(7, line)?;
        assert_eq!(item.line, 7);
        // The payload's own \u escape is kept as the six bytes it is on the wire.
        assert_eq!(
            &item.payload[..],
            br#"{"event": "tool_enabled", "user_name": "Jos\u00e9"}"#
        );
        assert_eq!(item.qos, nemo_events::Qos::ExactlyOnce);
        assert!(item.retain);
        assert_eq!(
            item.at,
            Some(time::macros::datetime!(2025-10-16 14:02:32.944572 UTC))
        );
        assert!(
            InputFormat::Recording
                .parse(1, r#"{"t":"x","topic":"a","payload":""}"#)
                .is_err()
        );
        assert!(
            InputFormat::Recording
                .parse(
                    1,
                    r#"{"t":"2025-10-16T14:02:32Z","topic":"a/+","payload":""}"#
                )
                .is_err()
        );
        Ok(())
    }
}
