//! A Redis stream range as replay input (`--stream KEY --from-id A --to-id B`).
//!
//! Stream entries carry a v1 queue item in the field `item` (the bridge's stream
//! mode). Each entry becomes a [`ReplayItem`] whose `line` is its 1-based
//! position in the range; its time is the item's `timestamp`, or the entry id's
//! milliseconds when the item has none. An entry without `item` or with a bad
//! item is an [`InputError::Bad`] naming the entry id.

use std::collections::HashMap;

use bytes::Bytes;
use fred::prelude::*;

use crate::{InputError, ReplayItem};

/// Entries read per `XRANGE` call.
const PAGE: u64 = 1_000;

/// Read entries `from_id..=to_id` (`-` and `+` for the ends) of stream `key`,
/// oldest first, at most `limit` of them. Loads the range into memory.
///
/// # Errors
/// [`InputError::Io`] when Redis fails (the message names the command).
pub async fn read_stream_range(
    client: &Client,
    key: &str,
    from_id: &str,
    to_id: &str,
    limit: Option<u64>,
) -> Result<Vec<Result<ReplayItem, InputError>>, InputError> {
    let mut out = Vec::new();
    let mut start = from_id.to_owned();
    loop {
        let want = match limit {
            Some(l) => (l - out.len() as u64).min(PAGE),
            None => PAGE,
        };
        if want == 0 {
            break;
        }
        let page: Vec<(String, HashMap<String, Bytes>)> = client
            .xrange(key, start.as_str(), to_id, Some(want))
            .await
            .map_err(|e| InputError::Io {
                line: out.len(),
                source: std::io::Error::other(format!("XRANGE {key}: {e}")),
            })?;
        let n = page.len() as u64;
        for (id, fields) in page {
            let line = out.len() + 1;
            out.push(entry(line, &id, fields.get("item")));
            start = format!("({id}");
        }
        if n < want {
            break;
        }
    }
    Ok(out)
}

fn entry(line: usize, id: &str, raw: Option<&Bytes>) -> Result<ReplayItem, InputError> {
    let bad = |reason: String| InputError::Bad {
        line,
        reason: format!("entry {id}: {reason}"),
    };
    let raw = raw.ok_or_else(|| bad("no field \"item\"".into()))?;
    let q = nemo_events::QueueItem::parse(raw).map_err(|e| bad(e.to_string()))?;
    let mut item = crate::formats::item_from_queue(line, q);
    if item.at.is_none() {
        item.at = id_time(id);
    }
    Ok(item)
}

/// The time in a stream id `<ms>-<seq>`.
fn id_time(id: &str) -> Option<time::OffsetDateTime> {
    let ms: i128 = id.split('-').next()?.parse().ok()?;
    time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_time_falls_back_to_the_id() -> Result<(), InputError> {
        let raw = Bytes::from_static(br#"{"topic": "a/b", "payload": "{}", "timestamp": true}"#);
        let item = entry(3, "1760623352944-0", Some(&raw))?;
        assert_eq!(item.line, 3);
        assert_eq!(
            item.at,
            Some(time::macros::datetime!(2025-10-16 14:02:32.944 UTC))
        );
        let raw = Bytes::from_static(br#"{"topic": "a/b", "payload": "{}", "timestamp": 1.5}"#);
        assert_eq!(
            entry(1, "9-0", Some(&raw))?.at,
            Some(time::macros::datetime!(1970-01-01 0:00:01.5 UTC))
        );
        Ok(())
    }

    #[test]
    fn entry_without_item_is_bad_with_its_id() {
        let e = entry(2, "5-1", None);
        assert!(
            matches!(e, Err(InputError::Bad { line: 2, ref reason }) if reason.contains("5-1")),
            "{e:?}"
        );
    }
}
