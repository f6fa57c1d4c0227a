//! Cost of the per-item work: parsing and writing queue items and events, HMAC sign/verify.
//!
//! Run: `cargo bench -p nemo-events --bench codec` (add `-- --quick` for a short run).
//! For scale: the bridge's target is ~60k items/s on 2 cores, i.e. ~16 µs per item in total.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use nemo_events::{NemoEvent, QueueItem};

const LINE: &str = r#"{"topic": "nemo/tools/12/enabled", "payload": "{\"event\": \"tool_enabled\", \"tool_id\": 12, \"tool_name\": \"Oxford ICP Etcher #2\", \"usage_id\": 3403, \"user_name\": \"Jos\\u00e9 \\u00c1lvarez\", \"start_time\": \"2025-10-16T14:19:31.001769+00:00\"}", "qos": 1, "retain": false, "timestamp": 1760624371.0017688}"#;

fn bench(c: &mut Criterion) {
    let item = QueueItem::parse(LINE.as_bytes()).expect("fixture item");
    let event = NemoEvent::parse(&item.payload).expect("fixture event");

    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("item_parse", |b| {
        b.iter(|| QueueItem::parse(black_box(LINE.as_bytes())).unwrap())
    });
    g.bench_function("item_to_json", |b| b.iter(|| black_box(&item).to_json()));
    g.bench_function("event_parse", |b| {
        b.iter(|| NemoEvent::parse(black_box(&item.payload)).unwrap())
    });
    g.bench_function("event_to_json", |b| b.iter(|| black_box(&event).to_json()));
    g.bench_function("event_occurred_at", |b| {
        b.iter(|| black_box(&event).occurred_at())
    });
    let key = b"nemo-fixture-secret";
    let envelope = nemo_events::hmac::sign(&item.payload, key);
    g.bench_function("hmac_sign", |b| {
        b.iter(|| nemo_events::hmac::sign(black_box(&item.payload), key))
    });
    g.bench_function("hmac_verify", |b| {
        b.iter(|| nemo_events::hmac::verify(black_box(envelope.as_bytes()), key).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
