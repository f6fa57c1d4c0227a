//! From raw queue bytes to MQTT messages: validate, map topics, sign.
//!
//! [`ItemPreparer`] is the production [`Prepare`]: it parses the item
//! with [`QueueItem::parse`] (which rejects non-UTF-8, non-JSON, bad topics, QoS out of range,
//! oversize items), asks the [`TopicMapper`] for the publications, and wraps every payload in the
//! HMAC envelope when a key is configured. The original payload string is never re-serialized:
//! it goes out byte for byte, or byte for byte inside the envelope's `payload` member.
//!
//! ```
//! use nemo_bridge::pipeline::Prepare;
//! use nemo_bridge::prepare::ItemPreparer;
//!
//! let p = ItemPreparer::new(nemo_topics::TopicMapper::default(), None);
//! let line = br#"{"topic": "nemo/tools/1/enabled", "payload": "{\"event\": \"tool_enabled\"}", "qos": 1, "retain": false}"#;
//! let msgs = p.prepare(line).unwrap();
//! assert_eq!(msgs[0].topic, "nemo/tools/1/enabled");
//! assert_eq!(&msgs[0].payload[..], br#"{"event": "tool_enabled"}"#);
//! assert!(p.prepare(b"not json").is_err());
//! ```

use bytes::Bytes;
use nemo_events::QueueItem;
use nemo_mqtt::OutMessage;
use nemo_topics::TopicMapper;

use crate::filters::{EventFilters, Verdict};
use crate::pipeline::Prepare;

/// Validates, filters, maps and (optionally) signs queue items. Cheap to share; immutable.
#[derive(Clone)]
pub struct ItemPreparer {
    mapper: TopicMapper,
    hmac_key: Option<Vec<u8>>,
    filters: EventFilters,
}

impl std::fmt::Debug for ItemPreparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemPreparer")
            .field("mapper", &self.mapper)
            .field("hmac", &self.hmac_key.as_ref().map(|_| "***"))
            .field("filters", &self.filters)
            .finish()
    }
}

impl ItemPreparer {
    /// A preparer with `mapper`; payloads are signed when `hmac_key` is `Some` and not empty.
    pub fn new(mapper: TopicMapper, hmac_key: Option<Vec<u8>>) -> Self {
        ItemPreparer {
            mapper,
            hmac_key: hmac_key.filter(|k| !k.is_empty()),
            filters: EventFilters::default(),
        }
    }

    /// The same preparer applying the event filters of NEMO's page first (see
    /// [`crate::filters`]): a dropped item yields no message (the pipeline acks it in order).
    pub fn with_filters(mut self, filters: EventFilters) -> Self {
        self.filters = filters;
        self
    }

    /// True when payloads are wrapped in the HMAC envelope.
    pub fn signs(&self) -> bool {
        self.hmac_key.is_some()
    }
}

impl Prepare for ItemPreparer {
    fn prepare(&self, raw: &[u8]) -> Result<Vec<OutMessage>, String> {
        let mut item = QueueItem::parse(raw).map_err(|e| e.to_string())?;
        if let Verdict::Drop(event_type) = self.filters.apply(&mut item)? {
            metrics::counter!("nemo_bridge_filtered_total", "event_type" => event_type)
                .increment(1);
            return Ok(Vec::new());
        }
        let pubs = self
            .mapper
            .map_item(&item, None)
            .map_err(|e| e.to_string())?;
        Ok(pubs
            .into_iter()
            .map(|p| {
                let body = p.payload.resolve(&item.payload);
                let payload = match &self.hmac_key {
                    Some(key) => Bytes::from(nemo_events::hmac::sign(body, key)),
                    None => Bytes::copy_from_slice(body.as_bytes()),
                };
                OutMessage {
                    topic: p.topic.into_string(),
                    payload,
                    qos: item.qos,
                    retain: p.retain,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn fixture(name: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures")
            .join(name);
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn every_fixture_item_passes_through_byte_exact() {
        // The events alone: the default state documents have their own tests.
        let events_only = nemo_topics::TopicsConfig {
            state_topics: false,
            ..Default::default()
        };
        let p = ItemPreparer::new(TopicMapper::from_config(&events_only).unwrap(), None);
        let mut n = 0;
        for line in fixture("v1-queue-items.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let msgs = p.prepare(line.as_bytes()).unwrap();
            assert_eq!(msgs.len(), 1);
            assert_eq!(msgs[0].topic, v["topic"].as_str().unwrap());
            assert_eq!(
                &msgs[0].payload[..],
                v["payload"].as_str().unwrap().as_bytes()
            );
            n += 1;
        }
        assert!(n >= 80, "only {n} fixture items");
    }

    #[test]
    fn every_bad_fixture_item_is_rejected_with_a_reason() {
        let p = ItemPreparer::new(TopicMapper::default(), None);
        for line in fixture("bad-queue-items.jsonl")
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let raw = v["raw"].as_str().unwrap();
            let err = p
                .prepare(raw.as_bytes())
                .expect_err(v["why"].as_str().unwrap());
            assert!(!err.is_empty());
        }
    }

    #[test]
    fn hmac_envelopes_match_the_fixture_bytes() {
        let cases: Vec<serde_json::Value> =
            serde_json::from_str(&fixture("hmac-envelopes.json")).unwrap();
        assert!(!cases.is_empty());
        for case in cases {
            let key = case["key"].as_str().unwrap();
            let payload = case["payload"].as_str().unwrap();
            let p = ItemPreparer::new(TopicMapper::default(), Some(key.as_bytes().to_vec()));
            assert!(p.signs());
            let item = nemo_events::QueueItem::from_payload(
                nemo_events::Topic::new("nemo/tools/1/enabled").unwrap(),
                payload,
            );
            let msgs = p.prepare(item.to_json().as_bytes()).unwrap();
            assert_eq!(
                std::str::from_utf8(&msgs[0].payload).unwrap(),
                case["envelope"].as_str().unwrap()
            );
            assert_eq!(
                nemo_events::hmac::verify(&msgs[0].payload, key.as_bytes()).unwrap(),
                payload
            );
        }
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let p = ItemPreparer::new(TopicMapper::default(), Some(b"topsecret".to_vec()));
        assert!(!format!("{p:?}").contains("topsecret"));
    }
}
