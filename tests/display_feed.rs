//! The `[display]` feed against real servers: Redis, two private mosquitto brokers (the events'
//! and the displays'), and the `bridge` binary.
//!
//! The expected documents are written out by hand from the relay's rules
//! (NEMO-Tool-Display `vm_server/main.py`: field order, words, `json.dumps` with `\uXXXX`,
//! names cut at a trailing `(role)` and to the first name past 13 characters), with the two
//! corrections of the feed: the event's own time in the display zone, and `in_use` true
//! while the tool is in use. They were compared by hand with the relay's own output on the
//! same events (see docs/operator-guide.md, "Feeding the displays without the relay").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use nemo_events::Qos;
use nemo_mqtt::{EventSink, MqttConfig, OutMessage, Publisher, Subscriber};
use nemo_testkit::{Mosquitto, RedisServer};
use support::{Bridge, NO_STATE_TOPICS, Setup, TestResult, producer, wait_drained};

const HMAC_KEY: &str = "display-feed-test-key";

/// A plugin queue item (1.x): `payload` is the event's JSON as the plugin writes it.
fn item(tool: u32, kind: &str, payload: serde_json::Value) -> String {
    let payload = nemo_events::pyjson::to_string(&payload);
    nemo_events::pyjson::to_string(&serde_json::json!({
        "topic": format!("nemo/tools/{tool}/{kind}"),
        "payload": payload,
        "qos": 1,
        "retain": false,
        "timestamp": 1_760_623_352.94,
    }))
}

fn enabled(tool: u32, tool_name: &str, user: &str, at: &str) -> String {
    item(
        tool,
        "enabled",
        serde_json::json!({"event": "tool_enabled", "tool_id": tool, "tool_name": tool_name,
            "usage_id": 1, "user_name": user, "start_time": at}),
    )
}

fn disabled(tool: u32, tool_name: &str, user: &str, at: &str) -> String {
    item(
        tool,
        "disabled",
        serde_json::json!({"event": "tool_disabled", "tool_id": tool, "tool_name": tool_name,
            "usage_id": 1, "user_name": user, "end_time": at}),
    )
}

fn non_operational(tool: u32, tool_name: &str, at: &str) -> String {
    item(
        tool,
        "non-operational",
        serde_json::json!({"event": "tool_non_operational", "tool_id": tool,
            "tool_name": tool_name, "operational": false, "timestamp": at}),
    )
}

const SEM: &str = "Zeiss Supra 55 SEM";
const ETCHER: &str = "Oxford ICP Etcher #2";
const ALIGNER: &str = "Süss MA6 \"Aligner\"";
const ALD: &str = "New ALD / Cambridge";
const EVAP: &str = "Angstrom Evaporator";

/// Summer (PDT, -07:00) in Los Angeles.
const OCT: &str = "2025-10-16T14:02:32.944572+00:00";

/// Phase 1: every tool enabled in October, names with a role, accents, CJK and over-long.
fn phase_one() -> Vec<String> {
    vec![
        enabled(201, SEM, "Alex Denton (admin)", OCT),
        enabled(202, ETCHER, "José Álvarez (staff)", OCT),
        enabled(203, ALIGNER, "李雷", OCT),
        enabled(204, ALD, "Maximilian Featherstonehaugh", OCT),
        enabled(205, EVAP, "Wolfeschlegelsteinhausenbergerdorff", OCT),
    ]
}

/// Phase 2, in November (PST, -08:00): several changes per tool, and kinds not forwarded.
fn phase_two() -> Vec<String> {
    vec![
        disabled(201, SEM, "Alex Denton (admin)", "2025-11-03T18:30:00+00:00"),
        enabled(201, SEM, "Ada Lovelace", "2025-11-03T18:45:00+00:00"),
        disabled(
            202,
            ETCHER,
            "José Álvarez (staff)",
            "2025-11-03T18:30:00+00:00",
        ),
        disabled(203, ALIGNER, "李雷", "2025-11-03T18:30:00+00:00"),
        enabled(203, ALIGNER, "李雷", "2025-11-03T19:00:00.5+00:00"),
        non_operational(204, ALD, "2025-11-03T18:31:00+00:00"),
        disabled(
            205,
            EVAP,
            "Wolfeschlegelsteinhausenbergerdorff",
            "2025-11-03T18:30:00Z",
        ),
    ]
}

/// What each display shows after phase 1.
fn after_phase_one() -> BTreeMap<String, String> {
    let doc = |user: &str, tool: &str| {
        format!(
            r#"{{"event_type": "enabled", "in_use": true, "timestamp": "Oct 16, 07:02 AM", "time_label": "Enabled Since", "user_label": "User", "user_name": "{user}", "tool_name": "{tool}"}}"#
        )
    };
    BTreeMap::from([
        ("201".into(), doc("Alex Denton", SEM)),
        ("202".into(), doc(r"Jos\u00e9 \u00c1lvarez", ETCHER)),
        (
            "203".into(),
            doc(r"\u674e\u96f7", r#"S\u00fcss MA6 \"Aligner\""#),
        ),
        ("204".into(), doc("Maximilian", ALD)),
        ("205".into(), doc("Wolfeschlegel", EVAP)),
    ])
}

/// What each display shows after phase 2: each tool's latest usage event.
fn after_phase_two() -> BTreeMap<String, String> {
    let mut want = after_phase_one();
    want.insert(
        "201".into(),
        r#"{"event_type": "enabled", "in_use": true, "timestamp": "Nov 03, 10:45 AM", "time_label": "Enabled Since", "user_label": "User", "user_name": "Ada Lovelace", "tool_name": "Zeiss Supra 55 SEM"}"#.into(),
    );
    want.insert(
        "202".into(),
        r#"{"event_type": "disabled", "in_use": false, "timestamp": "Nov 03, 10:30 AM", "time_label": "Disabled Since", "user_label": "Last User", "user_name": "Jos\u00e9 \u00c1lvarez", "tool_name": "Oxford ICP Etcher #2"}"#.into(),
    );
    want.insert(
        "203".into(),
        r#"{"event_type": "enabled", "in_use": true, "timestamp": "Nov 03, 11:00 AM", "time_label": "Enabled Since", "user_label": "User", "user_name": "\u674e\u96f7", "tool_name": "S\u00fcss MA6 \"Aligner\""}"#.into(),
    );
    // 204: non-operational is not forwarded (as the relay): still the October usage.
    want.insert(
        "205".into(),
        r#"{"event_type": "disabled", "in_use": false, "timestamp": "Nov 03, 10:30 AM", "time_label": "Disabled Since", "user_label": "Last User", "user_name": "Wolfeschlegel", "tool_name": "Angstrom Evaporator"}"#.into(),
    );
    want
}

/// A config with the feed on: the events' broker `events`, the displays' `displays`,
/// Los Angeles time, the tool-state documents on (the default), and `extra` TOML.
fn config(
    setup: &Setup,
    name: &str,
    redis: &str,
    events: &str,
    displays: &str,
    extra: &str,
) -> std::path::PathBuf {
    let path = setup.config(
        name,
        redis,
        events,
        "",
        &format!(
            "[display]\nenabled = true\nurl = \"{displays}\"\nclient_id = \"feed-{name}\"\n\
             timezone = \"America/Los_Angeles\"\n\n{extra}"
        ),
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(NO_STATE_TOPICS, "");
    std::fs::write(&path, text).unwrap();
    path
}

/// Subscribe `nemo/esp32/#` on the displays' broker and gather the status documents (by tool
/// id) until they equal `want` or `limit` passes. With `retained_only`, a live message is
/// ignored: what a display that connects now gets.
async fn statuses(
    url: &str,
    id: &str,
    want: &BTreeMap<String, String>,
    retained_only: bool,
    limit: Duration,
) -> BTreeMap<String, String> {
    let cfg = MqttConfig {
        client_id: id.into(),
        ..MqttConfig::for_url(url)
    };
    let mut sub = Subscriber::connect(cfg, &["nemo/esp32/#"], Qos::AtLeastOnce)
        .await
        .unwrap();
    let mut got = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + limit;
    while &got != want {
        match tokio::time::timeout_at(deadline, sub.recv()).await {
            Ok(Some(m)) => {
                if retained_only && !m.retain {
                    continue;
                }
                let tool = m
                    .topic
                    .strip_prefix("nemo/esp32/")
                    .and_then(|t| t.strip_suffix("/status"))
                    .map(str::to_string);
                if let Some(tool) = tool {
                    got.insert(tool, String::from_utf8_lossy(&m.payload).into_owned());
                }
            }
            _ => break,
        }
    }
    let _ = sub.shutdown().await;
    got
}

/// The displays on `url` show `want` ([`statuses`]), or the test fails saying `why`, with the
/// tail of `bridge`'s log as it is then.
async fn assert_displays(
    url: &str,
    id: &str,
    want: &BTreeMap<String, String>,
    retained_only: bool,
    limit: Duration,
    bridge: &Bridge,
    why: &str,
) {
    let got = statuses(url, id, want, retained_only, limit).await;
    assert_eq!(&got, want, "displays via {id}: {why}\n{}", bridge.tail(40));
}

/// A bridge with the feed on (`config` named `name`), ready, and the events of phase one sent;
/// every display on `displays` is checked to show them. The bridge and the producer.
async fn running_with_phase_one(
    setup: &Setup,
    name: &str,
    redis: &RedisServer,
    events: &Mosquitto,
    displays: &Mosquitto,
) -> (support::Bridge, nemo_redis::Producer, std::path::PathBuf) {
    let cfg = config(
        setup,
        name,
        &redis.url(),
        &events.url(),
        &displays.url(),
        "",
    );
    let bridge = setup.ready_bridge(&cfg, name);
    let prod = producer(redis).await;
    for it in phase_one() {
        prod.enqueue_raw(it.as_bytes()).await.unwrap();
    }
    let want = after_phase_one();
    assert_displays(
        &displays.url(),
        &format!("{name}-first"),
        &want,
        false,
        Duration::from_secs(20),
        &bridge,
        "",
    )
    .await;
    (bridge, prod, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_displays_broker_dies_while_events_flow_and_every_display_is_right_after() -> TestResult
{
    let redis = RedisServer::start()?;
    let events = Mosquitto::start()?;
    // No persistence: after the restart the displays' broker holds nothing but what the feed
    // publishes again.
    let mut displays = Mosquitto::builder().persistence(false).start()?;
    let setup = Setup::new();
    let (bridge, prod, _) =
        running_with_phase_one(&setup, "outage", &redis, &events, &displays).await;

    // The displays' broker dies; the events keep flowing and the queue keeps draining: the
    // feed never holds it back.
    displays.kill();
    for it in phase_two() {
        prod.enqueue_raw(it.as_bytes()).await?;
    }
    assert_eq!(
        wait_drained(&redis, Duration::from_secs(20)),
        (0, 0),
        "the events' queue drains while the displays' broker is down"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Back, empty: every tool's retained status equals its latest event.
    displays.restart()?;
    let want = after_phase_two();
    assert_displays(
        &displays.url(),
        "late-2",
        &want,
        false,
        Duration::from_secs(30),
        &bridge,
        "",
    )
    .await;
    assert_displays(
        &displays.url(),
        "late-3",
        &want,
        true,
        Duration::from_secs(5),
        &bridge,
        "a display that connects now gets its tool's status, retained",
    )
    .await;
    assert!(
        bridge
            .log()
            .contains("display: the displays' broker is back"),
        "{}",
        bridge.tail(40)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_bridge_rebuilds_every_display_from_the_retained_tool_state() -> TestResult {
    let redis = RedisServer::start()?;
    let events = Mosquitto::start()?;
    let mut displays = Mosquitto::builder().persistence(false).start()?;
    let setup = Setup::new();
    let key_file = setup.dir.path().join("hmac.key");
    std::fs::write(&key_file, format!("{HMAC_KEY}\n"))?;
    let extra = format!("[hmac]\nkey_file = \"{}\"\n", key_file.display());
    let cfg = config(
        &setup,
        "restart.toml",
        &redis.url(),
        &events.url(),
        &displays.url(),
        &extra,
    );
    let mut bridge = setup.ready_bridge(&cfg, "restart-1");
    let prod = producer(&redis).await;
    for it in phase_one().into_iter().chain(phase_two()) {
        prod.enqueue_raw(it.as_bytes()).await?;
    }
    let want = after_phase_two();
    assert_displays(
        &displays.url(),
        "first",
        &want,
        false,
        Duration::from_secs(20),
        &bridge,
        "",
    )
    .await;

    // The bridge stops, the displays' broker loses everything, and someone without the key
    // publishes on the events' broker: neither a bare payload nor a forged envelope may reach
    // a display.
    // Every event acked first: the next bridge has nothing to deliver again, so what the
    // displays get after the restart comes from the retained tool state alone.
    assert_eq!(
        wait_drained(&redis, Duration::from_secs(20)),
        (0, 0),
        "{}",
        bridge.tail(30)
    );
    bridge.kill9();
    displays.restart()?;
    let forger = Publisher::connect(
        MqttConfig {
            client_id: "forger".into(),
            status_topic: String::new(),
            ..MqttConfig::for_url(events.url())
        },
        nemo_backoff::Backoff::new(&Default::default()),
    )
    .await?;
    let bare = r#"{"event": "tool_disabled", "tool_id": 201, "tool_name": "Zeiss Supra 55 SEM", "user_name": "Mallory", "end_time": "2030-01-01T00:00:00+00:00"}"#;
    let forged = nemo_events::hmac::sign(bare, b"not-the-key");
    for (topic, payload) in [
        ("nemo/tools/201/disabled", bare.to_string()),
        ("nemo/tools/202/enabled", forged.replace("201", "202")),
        ("nemo/tools/206/enabled", forged.replace("201", "206")),
    ] {
        forger
            .publish(OutMessage {
                topic: topic.into(),
                payload: payload.into(),
                qos: Qos::AtLeastOnce,
                retain: true,
            })
            .await?;
    }
    forger.shutdown().await?;

    // Started again with no new event: every display gets its tool's latest status from the
    // retained tool-state documents, with the events' own times.
    let bridge = setup.ready_bridge(&cfg, "restart-2");
    // 204's latest event is `tool_non_operational`: its tool-state document says `down` and
    // carries no usage (the latest event wins, docs/events.md), so with the displays' broker
    // emptied and nothing delivered again, 204's display is rebuilt only by its next usage
    // event. Every other display is rebuilt.
    let mut want = want;
    want.remove("204");
    assert_displays(
        &displays.url(),
        "after",
        &want,
        false,
        Duration::from_secs(20),
        &bridge,
        "",
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_displays(
        &displays.url(),
        "after-2",
        &want,
        true,
        Duration::from_secs(3),
        &bridge,
        "retained for a late display; nothing forged arrived later",
    )
    .await;
    assert!(
        bridge.log().contains("does not verify"),
        "the forgeries are reported: {}",
        bridge.tail(30)
    );
    Ok(())
}

#[test]
fn the_displays_password_is_never_printed() {
    let setup = Setup::new();
    let cfg = setup.config(
        "secret.toml",
        "redis://127.0.0.1:1/1",
        "mqtt://127.0.0.1:1",
        "",
        "[display]\nenabled = true\nurl = \"mqtt://127.0.0.1:2\"\nusername = \"feed\"\npassword = \"display-pw\"\n",
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bridge"))
        .args(["--check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("[display]") && text.contains("username = \"feed\""),
        "{text}"
    );
    assert!(!text.contains("display-pw"), "{text}");
}

/// The displays move to another broker: `[display] url` changed and SIGHUP. The feed restarts
/// on the new broker and rebuilds every display there from the retained tool state, with no new
/// event; events after the reload reach the new broker too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_displays_to_another_broker() -> TestResult {
    let redis = RedisServer::start()?;
    let events = Mosquitto::start()?;
    let first = Mosquitto::start()?;
    let second = Mosquitto::start()?;
    let setup = Setup::new();
    let (bridge, prod, cfg) = running_with_phase_one(&setup, "move", &redis, &events, &first).await;
    let want = after_phase_one();

    let moved = std::fs::read_to_string(&cfg)?.replace(&first.url(), &second.url());
    std::fs::write(&cfg, moved)?;
    bridge.signal("-HUP");
    assert_displays(
        &second.url(),
        "move-2",
        &want,
        false,
        Duration::from_secs(20),
        &bridge,
        "the new broker gets every display",
    )
    .await;
    assert_displays(
        &second.url(),
        "move-2-late",
        &want,
        true,
        Duration::from_secs(5),
        &bridge,
        "retained there for a display that connects later",
    )
    .await;
    assert!(
        bridge
            .log()
            .contains("the displays' feed settings changed; restarting it"),
        "{}",
        bridge.tail(30)
    );

    for it in phase_two() {
        prod.enqueue_raw(it.as_bytes()).await?;
    }
    let want = after_phase_two();
    assert_displays(
        &second.url(),
        "move-3",
        &want,
        false,
        Duration::from_secs(20),
        &bridge,
        "",
    )
    .await;
    Ok(())
}
