//! A Rust producer: queue two NEMO tool events for the bridge, exactly as the NEMO plugin would.
//!
//! ```sh
//! cargo run --example producer -- redis://127.0.0.1:6379/1 nemo_mqtt_events
//! NEMO_REDIS_URL=redis://127.0.0.1:6379/1 cargo run --example producer
//! ```
//!
//! It builds typed events with `nemo-events` ([`NemoEvent`], [`ToolUsage`]), wraps each in a
//! [`QueueItem`] with its topic, and `LPUSH`es the item JSON with the `nemo-redis`
//! [`Producer`](nemo_redis::Producer). The bytes are the plugin's (Python `json.dumps` style), so
//! the bridge, the monitor and the displays cannot tell the difference. A running bridge then
//! publishes `nemo/tools/12/enabled` and `nemo/tools/12/disabled`, in that order.
//!
//! `tests/examples.rs` runs [`run`] against a private `redis-server`, so this file cannot rot.

use anyhow::Context as _;
use nemo_events::{EventTime, NemoEvent, QueueItem, ToolUsage, Topic};
use nemo_redis::{Redis, RedisConfig};

/// The list the NEMO plugin writes to (in Redis database 1).
pub const DEFAULT_KEY: &str = "nemo_mqtt_events";
/// Where NEMO's Redis usually is: database 1 on the local host.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379/1";

/// One usage of a tool: the `tool_enabled` event when it starts, `tool_disabled` when it ends.
fn usage(tool_id: u64, tool_name: &str, usage_id: u64, user_name: &str) -> ToolUsage {
    ToolUsage {
        tool_id: Some(tool_id),
        tool_name: Some(tool_name.to_owned()),
        usage_id: Some(usage_id),
        user_name: Some(user_name.to_owned()),
        ..ToolUsage::default()
    }
}

/// The item for `event`, on the plugin's topic `nemo/tools/{tool_id}/{enabled|disabled}`.
///
/// (The `nemo-topics` crate knows the plugin's topic for every kind; for two kinds a `format!`
/// is clearer.)
fn item(event: &NemoEvent) -> anyhow::Result<QueueItem> {
    let tool_id = event.tool_id().context("a tool event needs a tool_id")?;
    let level = match event {
        NemoEvent::ToolEnabled(_) => "enabled",
        NemoEvent::ToolDisabled(_) => "disabled",
        other => anyhow::bail!("this example queues tool usage only, not {}", other.kind()),
    };
    let topic = Topic::new(format!("nemo/tools/{tool_id}/{level}"))?;
    Ok(QueueItem::new(topic, event))
}

/// Connect to `redis_url`, queue a `tool_enabled` and a `tool_disabled` event for tool 12 on the
/// list `key`, and return the two items in the order they were queued.
///
/// # Errors
///
/// A bad URL or key, Redis unreachable at the start, or a failed `LPUSH`.
pub async fn run(redis_url: &str, key: &str) -> anyhow::Result<Vec<QueueItem>> {
    let cfg = RedisConfig {
        url: redis_url.to_owned(),
        key: key.to_owned(),
        // A producer takes nothing from the queue, so it needs no single-consumer lease.
        lease: false,
        ..RedisConfig::default()
    };
    let redis = Redis::connect(&cfg, &nemo_backoff::BackoffConfig::default()).await?;
    let producer = redis.producer();

    // Django writes times with `isoformat()`; `EventTime::from_datetime` writes the same text.
    let started = time::OffsetDateTime::now_utc();
    let mut enabled = usage(12, "Oxford ICP Etcher #2", 3403, "José Álvarez");
    enabled.start_time = Some(EventTime::from_datetime(started));
    let mut disabled = usage(12, "Oxford ICP Etcher #2", 3403, "José Álvarez");
    disabled.end_time = Some(EventTime::from_datetime(time::OffsetDateTime::now_utc()));

    let mut queued = Vec::new();
    for event in [
        NemoEvent::ToolEnabled(enabled),
        NemoEvent::ToolDisabled(disabled),
    ] {
        let item = item(&event)?;
        producer.enqueue(&item).await?;
        println!("queued {} {}", item.topic, item.payload);
        queued.push(item);
    }
    redis.quit().await;
    Ok(queued)
}

/// `producer [REDIS_URL] [KEY]`; the URL defaults to `$NEMO_REDIS_URL`, then to [`DEFAULT_URL`].
#[allow(dead_code)] // tests/examples.rs includes this file and calls `run`, not `main`
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .or_else(|| std::env::var("NEMO_REDIS_URL").ok())
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let key = args.next().unwrap_or_else(|| DEFAULT_KEY.to_owned());
    run(&url, &key).await?;
    Ok(())
}
