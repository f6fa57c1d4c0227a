//! The retained per-tool state documents, on by default (`topics.state_topics`): a real Redis,
//! mosquitto and the bridge binary with the default `[topics]`, fed the plugin's own queue items
//! (tests/fixtures/v1-queue-items.jsonl).
//!
//! What a person sees must survive a restart of the monitor: a board built only from what a
//! late subscriber receives (the retained documents) equals the board built from the whole live
//! stream, tool by tool, times included.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use nemo_monitor::Board;
use nemo_monitor::board::Status;
use nemo_testkit::{Mosquitto, RedisServer, fixtures_dir};
use support::{NO_STATE_TOPICS, Setup, TestResult, collect, producer, subscriber, wait_drained};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_subscriber_rebuilds_the_board_from_retained_state() -> TestResult {
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let cfg = setup.config("state.toml", &redis.url(), &broker.url(), "", "");
    // The default [topics]: state documents on.
    let text = std::fs::read_to_string(&cfg)?.replace(NO_STATE_TOPICS, "");
    std::fs::write(&cfg, text)?;
    let mut live = subscriber(&broker.url(), "state-live", false).await;
    let _bridge = setup.ready_bridge(&cfg, "state");

    let items = std::fs::read_to_string(fixtures_dir().join("v1-queue-items.jsonl"))?;
    let items: Vec<&str> = items.lines().filter(|l| !l.trim().is_empty()).collect();
    let prod = producer(&redis).await;
    for item in &items {
        prod.enqueue_raw(item.as_bytes()).await?;
    }
    assert_eq!(wait_drained(&redis, Duration::from_secs(20)), (0, 0));

    // The live stream: every event, each state-changing one followed by its document.
    let got = collect(&mut live, Duration::from_secs(3), |_| false).await;
    let events = got.iter().filter(|m| !m.topic.ends_with("/state")).count();
    let states: Vec<_> = got.iter().filter(|m| m.topic.ends_with("/state")).collect();
    assert_eq!(events, items.len(), "every event once");
    assert!(
        !states.is_empty(),
        "state documents are published by default"
    );
    for m in &states {
        let v: serde_json::Value = serde_json::from_slice(&m.payload)?;
        assert!(v["state"].is_string() && v["event"].is_string(), "{v}");
        assert_eq!(
            m.topic,
            format!("nemo/tools/{}/state", v["tool_id"]),
            "one document per tool, under its id"
        );
    }
    let mut truth = Board::new();
    for m in &got {
        truth.apply(&m.topic, &m.payload, m.received_at);
    }

    // A monitor started now: only the retained documents arrive.
    let mut late = subscriber(&broker.url(), "state-late", false).await;
    let retained = collect(&mut late, Duration::from_secs(2), |_| false).await;
    assert!(
        retained
            .iter()
            .all(|m| m.retain && m.topic.ends_with("/state")),
        "only the state documents (and no event) are retained: {:?}",
        retained.iter().map(|m| &m.topic).collect::<Vec<_>>()
    );
    let mut rebuilt = Board::new();
    for m in &retained {
        rebuilt.apply(&m.topic, &m.payload, m.received_at);
    }
    // What a person sees of each tool: its state, and for a tool in use or down, who and since
    // when.
    let tools = |b: &Board| {
        b.tools()
            .map(|t| {
                let shown = match t.status {
                    Status::InUse => t.in_use.as_ref().map(|u| (u.user.clone(), u.since)),
                    Status::Down => t.down_since.map(|d| (String::new(), d)),
                    Status::Idle => None,
                };
                (t.id.clone(), t.status, shown)
            })
            .collect::<Vec<_>>()
    };
    let want: Vec<_> = tools(&truth)
        .into_iter()
        .filter(|(id, ..)| rebuilt.tool(id).is_some())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        tools(&rebuilt),
        want,
        "the late board shows what the live board shows"
    );
    // Times are the events' own: a usage started in October 2025 shows that start, not now.
    let in_use: Vec<_> = rebuilt.tools().filter_map(|t| t.in_use.clone()).collect();
    assert!(
        in_use
            .iter()
            .all(|u| !u.since_received && u.since.year() == 2025),
        "{in_use:?}"
    );
    Ok(())
}
