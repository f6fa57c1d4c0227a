//! Cost of mapping one event: the pass-through hot path, a rewrite, a template, state topics.
//!
//! Run: `cargo bench -p nemo-topics --bench map` (add `-- --quick` for a short run).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use nemo_events::{NemoEvent, QueueItem};
use nemo_topics::{Rewrite, TopicMapper, TopicsConfig};

const LINE: &str = r#"{"topic": "nemo/tools/12/enabled", "payload": "{\"event\": \"tool_enabled\", \"tool_id\": 12, \"tool_name\": \"Oxford ICP Etcher #2\", \"usage_id\": 3403, \"user_name\": \"Jos\\u00e9 \\u00c1lvarez\", \"start_time\": \"2025-10-16T14:19:31.001769+00:00\"}", "qos": 1, "retain": false, "timestamp": 1760624371.0017688}"#;

fn bench(c: &mut Criterion) {
    let item = QueueItem::parse(LINE.as_bytes()).expect("fixture item");
    let event = NemoEvent::parse(&item.payload).expect("fixture event");

    // Pass-through without the (default) state documents: the bridge's hot path when they are off.
    let plain = TopicMapper::from_config(&TopicsConfig {
        state_topics: false,
        ..Default::default()
    })
    .expect("valid config");
    let rewrite = TopicMapper::from_config(&TopicsConfig {
        rewrites: vec![Rewrite {
            from: "nemo".into(),
            to: "site-a/nemo".into(),
        }],
        state_topics: false,
        ..Default::default()
    })
    .expect("config");
    let mut routed_cfg = TopicsConfig {
        state_topics: false,
        ..Default::default()
    };
    routed_cfg.routes.insert(
        "tool_enabled".into(),
        "{prefix}/in-use/{tool_id}/{tool_name}".into(),
    );
    let routed = TopicMapper::from_config(&routed_cfg).expect("config");
    let state = TopicMapper::from_config(&TopicsConfig {
        state_topics: true,
        ..Default::default()
    })
    .expect("config");

    let mut g = c.benchmark_group("map");
    g.bench_function("item_pass_through", |b| {
        b.iter(|| plain.map_item(black_box(&item), None).unwrap())
    });
    g.bench_function("item_rewrite", |b| {
        b.iter(|| rewrite.map_item(black_box(&item), None).unwrap())
    });
    g.bench_function("item_route_parse_payload", |b| {
        b.iter(|| routed.map_item(black_box(&item), None).unwrap())
    });
    g.bench_function("item_state_topic_parse_payload", |b| {
        b.iter(|| state.map_item(black_box(&item), None).unwrap())
    });
    g.bench_function("event_template", |b| {
        b.iter(|| plain.map_event(black_box(&event)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
