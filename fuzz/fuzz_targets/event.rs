//! `NemoEvent::parse` on arbitrary UTF-8.
//!
//! Asserts: never panics; an accepted event writes (`to_json`) JSON that parses again to an
//! equal event, and `to_json` of that is the same text (stable); the accessors never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nemo_events::NemoEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = NemoEvent::parse(text) else {
        return;
    };
    let json = event.to_json();
    let again = match NemoEvent::parse(&json) {
        Ok(again) => again,
        Err(e) => panic!("to_json of an accepted event does not parse: {e}\njson: {json:?}"),
    };
    let json2 = again.to_json();
    assert_eq!(json2, json, "to_json -> parse -> to_json is not stable");
    assert_eq!(again, event, "round trip changed the event; json: {json:?}");
    assert_eq!(again.kind(), event.kind());
    let _ = (
        event.tool_id(),
        event.tool_name(),
        event.user_name(),
        event.occurred_at(),
        event.extra(),
    );
});
