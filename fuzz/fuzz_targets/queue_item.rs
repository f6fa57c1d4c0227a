//! `QueueItem::parse` on arbitrary bytes.
//!
//! Asserts: never panics; an accepted item writes back (`to_json`) to JSON that parses again
//! to an equal item, and writing that one again gives the same bytes (the writer is stable);
//! `event()` on an accepted item never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nemo_events::QueueItem;

fuzz_target!(|data: &[u8]| {
    let Ok(item) = QueueItem::parse(data) else {
        return;
    };
    let json = item.to_json();
    let again = match QueueItem::parse(json.as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!("to_json of an accepted item does not parse: {e}\njson: {json:?}"),
    };
    assert_eq!(again, item, "round trip changed the item; json: {json:?}");
    assert_eq!(again.to_json(), json, "to_json is not stable");
    let _ = item.event();
});
