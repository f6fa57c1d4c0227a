//! NEMO's event-filter and message-log pages work: the bridge applies the filter rows and
//! writes every publication to the message log, against a real PostgreSQL and a real SQLite
//! file made from the plugin's DDL and written by a second process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use nemo_mqtt::Received;
use nemo_testkit::{Mosquitto, RedisServer};
use support::nemo_db::NemoDatabase;
use support::{
    Bridge, DEAD, Setup, TestResult, collect, http_get, llen, producer, subscriber, wait_drained,
};

/// A plugin-format item of `kind` on `topic` whose payload carries `seq`, with names.
fn item(kind: &str, topic: &str, seq: usize) -> String {
    let payload = format!(
        "{{\"event\": \"{kind}\", \"tool_id\": {}, \"tool_name\": \"Zeiss Supra 55 SEM\", \"usage_id\": {seq}, \"user_name\": \"Jos\\u00e9 \\u00c1lvarez\", \"start_time\": \"2025-10-16T14:02:32.944572+00:00\", \"seq\": {seq}}}",
        seq % 5
    );
    serde_json::json!({"topic": topic, "payload": payload, "qos": 1, "retain": false}).to_string()
}

fn enabled(seq: usize) -> String {
    item(
        "tool_enabled",
        &format!("nemo/tools/{}/enabled", seq % 5),
        seq,
    )
}

fn operational(seq: usize) -> String {
    item(
        "tool_operational",
        &format!("nemo/tools/{}/operational", seq % 5),
        seq,
    )
}

fn payload_json(m: &Received) -> serde_json::Value {
    serde_json::from_slice(&m.payload).unwrap()
}

fn kind(m: &Received) -> String {
    payload_json(m)["event"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A bridge reading NEMO's database (`poll_s = 1`), its broker from the page's row.
struct Rig {
    redis: RedisServer,
    broker: Mosquitto,
    setup: Setup,
    db: NemoDatabase,
}

impl Rig {
    fn new(db: NemoDatabase, log_messages: bool) -> Rig {
        let redis = RedisServer::start().unwrap();
        let broker = Mosquitto::start().unwrap();
        db.insert_configuration_with(broker.port(), None, log_messages);
        Rig {
            redis,
            broker,
            setup: Setup::new(),
            db,
        }
    }

    fn bridge(&self, nemo_extra: &str) -> Bridge {
        let cfg = self.setup.config(
            "filters.toml",
            &self.redis.url(),
            "mqtt://127.0.0.1:9",
            "",
            &format!(
                "\n[nemo]\ndatabase_url = \"{}\"\npoll_s = 1\n{nemo_extra}",
                self.db.url()
            ),
        );
        let bridge = self.setup.bridge(&cfg, "filters");
        assert!(
            bridge.wait_ready(Duration::from_secs(20)),
            "{}",
            bridge.log()
        );
        bridge
    }

    fn metric(&self, line_start: &str) -> f64 {
        let (_, body) = http_get(self.setup.http, "/metrics").unwrap();
        body.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

/// A filter disabled on the page (the row written, no reload pushed) is found by the poll
/// alone; its events are acked unpublished and counted while the others flow.
async fn filter_found_by_the_poll(db: NemoDatabase) -> TestResult {
    const N: usize = 200;
    let rig = Rig::new(db, false);
    let mut sub = subscriber(&rig.broker.url(), "filters-sub", false).await;
    let bridge = rig.bridge("");
    let prod = producer(&rig.redis).await;
    let batch = |from: usize| -> Vec<String> {
        (from..from + N)
            .map(|s| {
                if s % 2 == 0 {
                    enabled(s)
                } else {
                    operational(s)
                }
            })
            .collect()
    };
    prod.enqueue_raw_many(&batch(0)).await?;
    let first = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= N).await;
    assert_eq!(first.len(), N, "{}", bridge.log());

    rig.db
        .insert_filter(1, "usage_event_save", false, None, true);
    assert!(
        bridge.wait_log(Duration::from_secs(10), |l| l
            .contains("reload: configuration re-read")),
        "{}",
        bridge.log()
    );
    prod.enqueue_raw_many(&batch(N)).await?;
    let second = collect(&mut sub, Duration::from_secs(5), |_| false).await;
    let kinds: Vec<String> = second.iter().map(kind).collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "tool_operational").count(),
        N / 2,
        "the others flow: {kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "tool_enabled").count(),
        0,
        "a disabled type is not published"
    );
    assert_eq!(
        wait_drained(&rig.redis, Duration::from_secs(5)),
        (0, 0),
        "filtered items are acked"
    );
    assert_eq!(llen(&rig.redis, DEAD), 0);
    let filtered = rig.metric("nemo_bridge_filtered_total{event_type=\"usage_event_save\"}");
    assert_eq!(filtered, (N / 2) as f64);
    assert!(!bridge.log().contains("reload_config requested"));
    println!(
        "filter by poll: {} published after the change, {filtered} filtered",
        second.len()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_filter_disabled_on_the_page_is_found_by_the_poll_alone() -> TestResult {
    filter_found_by_the_poll(NemoDatabase::postgres()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_filter_disabled_on_the_page_is_found_by_the_poll_alone() -> TestResult {
    filter_found_by_the_poll(NemoDatabase::sqlite()).await
}

/// topic_override and include_payload = false, checked field by field; a bad override
/// dead-letters its events with the reason and is reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_override_reduced_payload_and_a_bad_override() -> TestResult {
    let rig = Rig::new(NemoDatabase::sqlite(), false);
    rig.db
        .insert_filter(1, "usage_event_save", true, Some("nemo/lab/usage"), false);
    rig.db
        .insert_filter(2, "tool_save", true, Some("nemo/+/bad"), true);
    rig.db.insert_filter(3, "no_such_signal", false, None, true);
    let mut sub = subscriber(&rig.broker.url(), "override-sub", false).await;
    let bridge = rig.bridge("");
    let prod = producer(&rig.redis).await;
    prod.enqueue_raw_many(&[
        enabled(7),
        item("tool_updated", "nemo/tools/3", 8),
        operational(9),
    ])
    .await?;
    let got = collect(&mut sub, Duration::from_secs(10), |g| g.len() >= 2).await;
    assert_eq!(got.len(), 2, "{}", bridge.log());
    let usage = got.iter().find(|m| kind(m) == "tool_enabled").unwrap();
    assert_eq!(usage.topic, "nemo/lab/usage");
    // Exactly the kind, the ids and the times, in the original order, values as they were.
    assert_eq!(
        std::str::from_utf8(&usage.payload)?,
        "{\"event\": \"tool_enabled\", \"tool_id\": 2, \"usage_id\": 7, \"start_time\": \"2025-10-16T14:02:32.944572+00:00\"}"
    );
    let v = payload_json(usage);
    for gone in ["tool_name", "user_name", "seq"] {
        assert!(v.get(gone).is_none(), "{gone} must not be published");
    }
    let op = got.iter().find(|m| kind(m) == "tool_operational").unwrap();
    assert_eq!(
        op.topic, "nemo/tools/4/operational",
        "no row names it: as is"
    );
    assert_eq!(payload_json(op)["tool_name"], "Zeiss Supra 55 SEM");

    assert_eq!(wait_drained(&rig.redis, Duration::from_secs(5)), (0, 0));
    assert_eq!(
        llen(&rig.redis, DEAD),
        1,
        "the tool_updated item is dead-lettered"
    );
    let dead = rig.redis.cli(&["LINDEX", DEAD, "0"])?;
    assert!(
        dead.contains("topic_override") && dead.contains("nemo/+/bad"),
        "{dead}"
    );
    let log = bridge.log();
    assert_eq!(
        log.matches("event_type = \"no_such_signal\"").count(),
        1,
        "reported once: {log}"
    );
    assert_eq!(log.matches("go to the dead letters").count(), 1, "{log}");
    Ok(())
}

/// Every confirmed publication is logged, in order, and the log is trimmed to
/// `message_log_keep`.
async fn message_log_filled_and_trimmed(db: NemoDatabase) -> TestResult {
    const N: usize = 120;
    const KEEP: usize = 50;
    let rig = Rig::new(db, true);
    let mut sub = subscriber(&rig.broker.url(), "log-sub", false).await;
    let bridge = rig.bridge(&format!("message_log_keep = {KEEP}\n"));
    let prod = producer(&rig.redis).await;
    prod.enqueue_raw_many(&(0..N).map(operational).collect::<Vec<_>>())
        .await?;
    let got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= N).await;
    assert_eq!(got.len(), N);
    // The writer runs behind the confirmations: wait (bounded) until it has caught up.
    let want: Vec<u64> = ((N - KEEP) as u64..N as u64).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let seqs = loop {
        let payloads = rig
            .db
            .query("SELECT payload FROM nemo_mqtt_mqttmessagelog ORDER BY id");
        let seqs: Vec<u64> = payloads
            .lines()
            .map(|p| {
                serde_json::from_str::<serde_json::Value>(p).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        if seqs == want || Instant::now() > deadline {
            break seqs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        seqs,
        want,
        "the newest {KEEP}, in publication order\n{}",
        bridge.log()
    );
    let rows: Vec<String> = rig
        .db
        .query("SELECT topic, success, qos, retained FROM nemo_mqtt_mqttmessagelog ORDER BY id")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(rows.len(), KEEP);
    for r in &rows {
        let cols: Vec<&str> = r.split('|').collect();
        assert!(matches!(cols[1], "t" | "1"), "success: {r}");
        assert_eq!(cols[2], "1", "qos: {r}");
        assert!(matches!(cols[3], "f" | "0"), "retained: {r}");
    }
    let written = rig.metric("nemo_bridge_message_log_written_total");
    assert!(written >= N as f64, "written {written}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_message_log_filled_in_order_and_trimmed() -> TestResult {
    message_log_filled_and_trimmed(NemoDatabase::postgres()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_message_log_filled_in_order_and_trimmed() -> TestResult {
    message_log_filled_and_trimmed(NemoDatabase::sqlite()).await
}

/// The database stops mid-run: delivery is unchanged, log entries are dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_stopped_mid_run_drops_log_entries_not_events() -> TestResult {
    const N: usize = 1_000;
    let mut rig = Rig::new(NemoDatabase::postgres(), true);
    let mut sub = subscriber(&rig.broker.url(), "stop-sub", false).await;
    let bridge = rig.bridge("timeout_s = 1\n");
    rig.db.kill();
    let prod = producer(&rig.redis).await;
    let t = Instant::now();
    prod.enqueue_raw_many(&(0..N).map(operational).collect::<Vec<_>>())
        .await?;
    let got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= N).await;
    let took = t.elapsed();
    assert_eq!(got.len(), N, "{}", bridge.log());
    assert_eq!(wait_drained(&rig.redis, Duration::from_secs(5)), (0, 0));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut dropped = 0.0;
    while Instant::now() < deadline {
        dropped = rig.metric("nemo_bridge_message_log_dropped_total");
        if dropped >= N as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(dropped >= N as f64, "dropped {dropped}\n{}", bridge.log());
    assert!(
        bridge.log().contains("message log: write failed"),
        "{}",
        bridge.log()
    );
    println!("database down: {N} of {N} delivered in {took:?}; {dropped} log entries dropped");
    Ok(())
}

/// NEMO writing the same SQLite file at the same time (a second process, waiting for locks
/// like Django's default 5 s) never sees "database is locked", nor does the bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_written_by_a_second_process_meanwhile_sees_no_lock_error() -> TestResult {
    const N: usize = 3_000;
    let rig = Rig::new(NemoDatabase::sqlite(), true);
    rig.db
        .exec("CREATE TABLE nemo_side (id integer PRIMARY KEY, note text)");
    let mut sub = subscriber(&rig.broker.url(), "lock-sub", false).await;
    let bridge = rig.bridge("message_log_keep = 200\n");
    let prod = producer(&rig.redis).await;
    let url = rig.db.url();
    let path = url.trim_start_matches("sqlite://").to_string();
    // NEMO's side: 300 short write transactions, each its own sqlite3 statement.
    let nemo = std::thread::spawn(move || {
        let script: String = (0..300)
            .map(|i| format!("INSERT INTO nemo_side (note) VALUES ('write {i}');\n"))
            .collect();
        let out = std::process::Command::new("sqlite3")
            .args(["-cmd", ".timeout 5000", &path])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                let mut stdin = c.stdin.take().expect("stdin");
                for line in script.lines() {
                    stdin.write_all(line.as_bytes())?;
                    stdin.write_all(b"\n")?;
                    std::thread::sleep(Duration::from_millis(2));
                }
                drop(stdin);
                c.wait_with_output()
            })
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    });
    prod.enqueue_raw_many(&(0..N).map(operational).collect::<Vec<_>>())
        .await?;
    let got = collect(&mut sub, Duration::from_secs(30), |g| g.len() >= N).await;
    assert_eq!(got.len(), N);
    let (ok, stderr) = nemo.join().unwrap();
    assert!(ok && !stderr.contains("locked"), "NEMO's writes: {stderr}");
    assert_eq!(rig.db.query("SELECT count(*) FROM nemo_side"), "300");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = bridge.log();
    assert!(!log.contains("locked"), "{log}");
    assert_eq!(
        rig.metric("nemo_bridge_message_log_dropped_total"),
        0.0,
        "{log}"
    );
    assert_eq!(
        rig.db
            .query("SELECT count(*) FROM nemo_mqtt_mqttmessagelog"),
        "200"
    );
    Ok(())
}

/// NEMO's message log holds the events the plugin queued, as the plugin's own bridge writes it:
/// the retained tool-state documents the bridge adds of its own are published, not logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_message_log_leaves_the_bridges_state_documents_out() -> TestResult {
    const N: usize = 20;
    let rig = Rig::new(NemoDatabase::sqlite(), true);
    let mut sub = subscriber(&rig.broker.url(), "state-log-sub", false).await;
    let cfg = rig.setup.config(
        "state-log.toml",
        &rig.redis.url(),
        "mqtt://127.0.0.1:9",
        "",
        &format!(
            "\n[nemo]\ndatabase_url = \"{}\"\npoll_s = 1\n",
            rig.db.url()
        ),
    );
    // This test is about the state documents: turn them back on.
    let text =
        std::fs::read_to_string(&cfg)?.replace("state_topics = false", "state_topics = true");
    std::fs::write(&cfg, text)?;
    let bridge = rig.setup.bridge(&cfg, "state-log");
    assert!(
        bridge.wait_ready(Duration::from_secs(20)),
        "{}",
        bridge.log()
    );
    let prod = producer(&rig.redis).await;
    let items: Vec<String> = (0..N)
        .map(|s| item("tool_enabled", &format!("nemo/tools/{}/enabled", s % 5), s))
        .collect();
    prod.enqueue_raw_many(&items).await?;
    let events = |g: &[Received]| g.iter().filter(|m| m.topic.ends_with("/enabled")).count();
    let got = collect(&mut sub, Duration::from_secs(20), |g| events(g) >= N).await;
    assert_eq!(events(&got), N, "{}", bridge.log());
    assert!(
        got.iter().any(|m| m.topic.ends_with("/state")),
        "the state documents are published: {}",
        bridge.log()
    );
    // The log catches up behind the confirmations: wait (bounded) for the N events.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let rows = rig
            .db
            .query("SELECT topic FROM nemo_mqtt_mqttmessagelog ORDER BY id");
        if rows.lines().count() >= N {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a state document that would follow its event a moment to be written too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let topics = rig
        .db
        .query("SELECT topic FROM nemo_mqtt_mqttmessagelog ORDER BY id")
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert_eq!(topics.len(), N, "only the events: {topics:?}");
    assert!(
        topics.iter().all(|t| t.ends_with("/enabled")),
        "no state document in NEMO's message log: {topics:?}"
    );
    Ok(())
}
