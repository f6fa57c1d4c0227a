//! The bridge on the queue of NEMO's current plugin (2.x): the table `nemo_mqtt_mqtt_eventqueue`
//! in a real PostgreSQL (nemo-testkit) made from the plugin's exact DDL, rows inserted the way
//! the plugin inserts them (INSERT, then `pg_notify('nemo_mqtt_events', '<id>')`), a real
//! mosquitto, the bridge binary with `[nemo] source = "database"` and no `[redis]` section.
//!
//! Faults: PostgreSQL restarted mid-stream, the bridge `kill -9`ed, the broker killed; two
//! bridges on one queue. The bar: zero events lost, first deliveries in row order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use nemo_mqtt::Received;
use nemo_testkit::Mosquitto;
use support::nemo_db::{NemoDatabase, PluginQueue, is_python_isoformat_utc, table_config};
use support::{Arrivals, Bridge, Setup, TestResult, collect, http_get, seq_of, subscriber};

fn unprocessed(db: &NemoDatabase) -> usize {
    db.query("SELECT count(*) FROM nemo_mqtt_mqtt_eventqueue WHERE NOT processed")
        .trim()
        .parse()
        .unwrap()
}

/// Wait until every row is processed (the ack follows the broker's confirmation).
fn wait_processed(db: &NemoDatabase, limit: Duration) -> usize {
    let until = Instant::now() + limit;
    loop {
        let n = unprocessed(db);
        if n == 0 || Instant::now() > until {
            return n;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// First deliveries out of order (a later seq arrived before an earlier seq's first delivery).
fn order_violations(got: &[Received]) -> usize {
    let mut seen = std::collections::HashSet::new();
    let mut max_first: Option<usize> = None;
    let mut violations = 0;
    for s in got.iter().filter_map(seq_of) {
        if seen.insert(s) {
            if max_first.is_some_and(|m| s < m) {
                violations += 1;
            }
            max_first = Some(max_first.map_or(s, |m| m.max(s)));
        }
    }
    violations
}

/// The plugin at ~400 events/s: events `0..n`, 4 every 10 ms, each retried until the database
/// takes it.
fn plugin_stream(url: String, n: usize) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut q = PluginQueue::connect(&url).await;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for chunk in (0..n).collect::<Vec<_>>().chunks(4) {
            tick.tick().await;
            for seq in chunk {
                q.publish_seq(*seq).await;
            }
        }
    })
}

/// A time as the plugin's bridge writes it into the status row ([`is_python_isoformat_utc`]).
fn assert_isoformat(what: &str, v: &serde_json::Value) {
    assert!(
        v.as_str().is_some_and(is_python_isoformat_utc),
        "{what} = {v} is not Python's isoformat in UTC (microseconds only when not zero, +00:00)"
    );
}

#[test]
fn isoformat_is_python_s_and_nothing_else() {
    // The saved row's time from #28, and what the bridge wrote beside it then.
    assert!(is_python_isoformat_utc("2026-12-07T15:23:43.671579+00:00"));
    assert!(is_python_isoformat_utc("2026-12-07T15:23:43+00:00"));
    for bad in [
        "2026-12-07 15:23:43.671579+00",
        "2026-12-07T15:23:43.671579123Z",
        "2026-12-07T15:23:43.671579Z",
        "2026-12-07T15:23:43.000000+00:00",
    ] {
        assert!(!is_python_isoformat_utc(bad), "{bad}");
    }
}

/// `bridge_diagnostics` of the status row.
fn diagnostics(db: &NemoDatabase) -> serde_json::Value {
    let text = db.query(
        "SELECT bridge_diagnostics::text FROM nemo_mqtt_mqttbridgestatus WHERE key = 'default'",
    );
    serde_json::from_str(&text).unwrap()
}

fn start_bridge(setup: &Setup, db: &NemoDatabase, broker: &Mosquitto, tag: &str) -> Bridge {
    let cfg = table_config(
        setup.dir.path(),
        &format!("{tag}.toml"),
        &db.url(),
        &broker.url(),
        setup.http,
        "",
    );
    setup.ready_bridge(&cfg, tag)
}

/// Rows go out byte for byte, in row order, marked processed only once the broker has them;
/// the status row shows the bridge connected with a heartbeat and its diagnostics; a stop
/// writes `disconnected`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_published_byte_exact_in_order_and_status_row_kept() -> TestResult {
    const N: usize = 500;
    let db = NemoDatabase::postgres_v2();
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), "table-sub", false).await;
    let mut bridge = start_bridge(&setup, &db, &broker, "table");
    let (code, body) = http_get(setup.http, "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");

    let mut queue = PluginQueue::connect(&db.url()).await;
    let mut sent = Vec::new();
    for seq in 0..N {
        queue.publish_seq(seq).await;
        sent.push(format!(
            "{{\"event\": \"tool_enabled\", \"tool_id\": {}, \"seq\": {seq}}}",
            seq % 8
        ));
    }
    let got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= N).await;
    assert_eq!(got.len(), N, "{}", bridge.tail(30));
    let payloads: Vec<String> = got
        .iter()
        .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        .collect();
    assert_eq!(payloads, sent, "byte for byte, in row order");
    assert_eq!(got[7].topic, "nemo/tools/7/enabled");
    assert_eq!(wait_processed(&db, Duration::from_secs(10)), 0);

    // The status row NEMO's status view reads.
    let row = db.query(
        "SELECT status, last_heartbeat > now() - interval '30 seconds', \
         bridge_diagnostics->>'source', bridge_diagnostics->>'role', \
         bridge_diagnostics->>'last_reload_reason', bridge_diagnostics->>'version' \
         FROM nemo_mqtt_mqttbridgestatus WHERE key = 'default'",
    );
    assert_eq!(
        row,
        format!(
            "connected|t|database|active|startup|{}",
            env!("CARGO_PKG_VERSION")
        )
    );
    assert!(
        !bridge.log().contains("redis"),
        "no Redis in database mode: {}",
        bridge.log()
    );
    let d = diagnostics(&db);
    assert!(
        d["queue_pending"].is_u64(),
        "queue_pending is a number: {d}"
    );
    assert_isoformat("last_reload_at", &d["last_reload_at"]);
    assert_isoformat("diagnostics_updated_at", &d["diagnostics_updated_at"]);

    bridge.signal("-TERM");
    assert_eq!(bridge.wait_exit(Duration::from_secs(10)), Some(Some(0)));
    assert_eq!(
        db.query("SELECT status FROM nemo_mqtt_mqttbridgestatus"),
        "disconnected"
    );
    // What the plugin's own bridge finds and merges its keys into: only its own keys (no dead
    // pid beside `role: active`).
    let d = diagnostics(&db);
    let mut keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "applied_fingerprint",
            "diagnostics_updated_at",
            "last_error",
            "last_reload_at",
            "last_reload_reason"
        ],
        "{d}"
    );
    assert_eq!(d["last_reload_reason"], "startup");
    assert_isoformat("last_reload_at", &d["last_reload_at"]);
    assert_isoformat("diagnostics_updated_at", &d["diagnostics_updated_at"]);
    Ok(())
}

/// A 10,000-row backlog at start (the bridge was down for a day of a busy lab): every row, in
/// order, without reading the backlog into memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_of_ten_thousand_rows_in_order() -> TestResult {
    const N: usize = 10_000;
    let db = NemoDatabase::postgres_v2();
    db.exec(&format!(
        "INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, created_at) \
         SELECT 'nemo/tools/' || (s % 8) || '/enabled', \
         '{{\"event\": \"tool_enabled\", \"tool_id\": ' || (s % 8) || ', \"seq\": ' || s || '}}', \
         1, false, false, now() FROM generate_series(0, {}) s",
        N - 1
    ));
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), "backlog-sub", false).await;
    let bridge = start_bridge(&setup, &db, &broker, "backlog");
    let t0 = Instant::now();
    let got = collect(&mut sub, Duration::from_secs(60), |g| g.len() >= N).await;
    let took = t0.elapsed();
    let mut arrivals = Arrivals::new(N);
    for m in &got {
        arrivals.note(seq_of(m));
    }
    assert!(
        arrivals.complete(),
        "missing {:?}",
        &arrivals.missing()[..10.min(arrivals.missing().len())]
    );
    assert_eq!(order_violations(&got), 0);
    assert_eq!(wait_processed(&db, Duration::from_secs(10)), 0);
    let (rss, peak) = bridge.rss_kib().unwrap_or((0, 0));
    println!(
        "backlog: {N} rows in {:.2} s ({:.0}/s), RSS {rss} KiB, peak {peak} KiB",
        took.as_secs_f64(),
        N as f64 / took.as_secs_f64()
    );
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// PostgreSQL stopped (`kill -9`) and started again mid-stream.
    DatabaseRestart,
    /// The bridge `kill -9`ed and started again.
    BridgeKill,
    /// The broker `kill -9`ed and started again on its port.
    BrokerKill,
}

/// 3,000 events at ~400/s through a fault: every one arrives, first deliveries in row order,
/// every row processed.
async fn through(fault: Fault) -> TestResult {
    const N: usize = 3_000;
    let mut db = NemoDatabase::postgres_v2();
    let mut broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), "fault-sub", true).await;
    let mut bridge = start_bridge(&setup, &db, &broker, "fault");
    let producer = plugin_stream(db.url(), N);
    let mut arrivals = Arrivals::new(N);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut faulted = false;
    while !arrivals.complete() && Instant::now() < deadline {
        if !faulted && arrivals.unique >= N / 3 {
            faulted = true;
            match fault {
                Fault::DatabaseRestart => {
                    db.server().kill();
                    tokio::time::sleep(Duration::from_millis(1_000)).await;
                    db.server().restart()?;
                }
                Fault::BridgeKill => {
                    bridge.kill9();
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    bridge = start_bridge(&setup, &db, &broker, "fault-2");
                }
                Fault::BrokerKill => {
                    broker.kill();
                    tokio::time::sleep(Duration::from_millis(1_000)).await;
                    broker.restart()?;
                }
            }
        }
        match tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
            Ok(Some(m)) => {
                arrivals.note(seq_of(&m));
                got.push(m);
            }
            Ok(None) => {
                // The subscriber's broker restarted: its session (persistent) resumes.
                sub = subscriber(&broker.url(), "fault-sub", true).await;
            }
            Err(_) => {}
        }
    }
    producer.await?;
    assert!(faulted, "the fault happened");
    assert!(
        arrivals.complete(),
        "{fault:?}: lost {:?}\n{}",
        arrivals.missing(),
        bridge.tail(40)
    );
    assert_eq!(
        order_violations(&got),
        0,
        "{fault:?}: first deliveries in row order"
    );
    assert_eq!(wait_processed(&db, Duration::from_secs(10)), 0);
    println!(
        "{fault:?}: {N} of {N} delivered, {} duplicates, longest wait for a new event {:.2} s",
        got.len() - N,
        arrivals.longest_gap.as_secs_f64()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_mid_stream_loses_nothing() -> TestResult {
    through(Fault::DatabaseRestart).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_kill9_mid_stream_loses_nothing_and_keeps_order() -> TestResult {
    through(Fault::BridgeKill).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_kill_mid_stream_loses_nothing() -> TestResult {
    through(Fault::BrokerKill).await
}

/// Two bridges on one queue: one is active, the other a standby (`/readyz` 503 with the
/// reason); the active one is `kill -9`ed mid-stream and the standby takes over. Nothing is
/// lost, first deliveries stay in row order, and the duplicates are the killed bridge's
/// unconfirmed window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_one_queue_standby_takes_over() -> TestResult {
    const N: usize = 2_000;
    let db = NemoDatabase::postgres_v2();
    let broker = Mosquitto::start()?;
    let setup_a = Setup::new();
    let setup_b = Setup::new();
    let mut sub = subscriber(&broker.url(), "two-sub", false).await;
    let mut a = start_bridge(&setup_a, &db, &broker, "a");
    let cfg_b = table_config(
        setup_b.dir.path(),
        "b.toml",
        &db.url(),
        &broker.url(),
        setup_b.http,
        "",
    );
    let b = setup_b.bridge(&cfg_b, "b");
    assert!(
        b.wait_log(Duration::from_secs(20), |l| l
            .contains("waiting as standby")),
        "{}",
        b.log()
    );
    let (code, body) = http_get(setup_b.http, "/readyz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("another bridge holds the queue's lock"),
        "{body}"
    );

    let producer = plugin_stream(db.url(), N);
    let mut arrivals = Arrivals::new(N);
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut killed = false;
    while !arrivals.complete() && Instant::now() < deadline {
        if !killed && arrivals.unique >= N / 3 {
            killed = true;
            a.kill9();
        }
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.recv()).await {
            arrivals.note(seq_of(&m));
            got.push(m);
        }
    }
    producer.await?;
    assert!(
        arrivals.complete(),
        "lost {:?}\n{}",
        arrivals.missing(),
        b.tail(30)
    );
    assert!(
        b.log().contains("won; this bridge is active"),
        "{}",
        b.log()
    );
    assert_eq!(order_violations(&got), 0);
    assert_eq!(wait_processed(&db, Duration::from_secs(10)), 0);
    let (code, _) = http_get(setup_b.http, "/readyz").unwrap();
    assert_eq!(code, 200);
    println!(
        "two bridges: {N} of {N}, {} duplicates (the killed bridge's window), longest wait {:.2} s",
        got.len() - N,
        arrivals.longest_gap.as_secs_f64()
    );
    Ok(())
}

/// The broker is down, so the active bridge makes no query (nothing it took can be
/// confirmed), when its lock's connection is terminated: the first bridge reports the lost lock
/// within seconds on its own — still while the broker is down, so two bridges never publish
/// the same window — and a bridge wins the freed lock. Once the broker is back, the rows are
/// published by the active bridge and nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_lost_while_the_broker_is_away_is_noticed_within_seconds() -> TestResult {
    const N: usize = 20;
    let db = NemoDatabase::postgres_v2();
    let mut broker = Mosquitto::start()?;
    let setup_a = Setup::new();
    let setup_b = Setup::new();
    let a = start_bridge(&setup_a, &db, &broker, "a");
    let cfg_b = table_config(
        setup_b.dir.path(),
        "b.toml",
        &db.url(),
        &broker.url(),
        setup_b.http,
        "",
    );
    let b = setup_b.bridge(&cfg_b, "b");
    assert!(
        b.wait_log(Duration::from_secs(20), |l| l
            .contains("waiting as standby")),
        "{}",
        b.log()
    );
    broker.stop();
    plugin_stream(db.url(), N).await?;
    // The active bridge took what it could and now waits for the broker.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let killed = db.query(
        "SELECT pg_terminate_backend(pid) FROM pg_locks \
         WHERE locktype = 'advisory' AND objid = 1836151924 AND granted",
    );
    assert_eq!(killed.trim(), "t", "one session held the lock");
    let t = Instant::now();
    assert!(
        a.wait_log(Duration::from_secs(10), |l| l.contains("lock lost")),
        "{}",
        a.tail(30)
    );
    let noticed = t.elapsed();
    assert!(
        noticed < Duration::from_secs(6),
        "noticed after {noticed:?}\n{}",
        a.tail(30)
    );
    // The lock is free: a bridge wins it. Usually the standby (it tries every second), but the
    // first bridge competes again as soon as it gave up, and may win it back; either is right.
    let won = |l: &str| l.contains("won; this bridge is active");
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until
        && !b.log().lines().any(won)
        && a.log().lines().filter(|l| won(l)).count() < 2
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b_won = b.log().lines().any(won);
    assert!(
        b_won || a.log().lines().filter(|l| won(l)).count() == 2,
        "nobody took over\n{}\n--- a:\n{}",
        b.log(),
        a.tail(20)
    );
    // Nothing was published meanwhile: the broker is still down.
    assert_eq!(unprocessed(&db), N);
    broker.restart()?;
    assert_eq!(
        wait_processed(&db, Duration::from_secs(30)),
        0,
        "{}",
        b.tail(30)
    );
    println!(
        "lock lost while the broker was away: noticed after {:.2} s; taken over by {}",
        noticed.as_secs_f64(),
        if b_won {
            "the standby"
        } else {
            "the first bridge again"
        }
    );
    Ok(())
}

/// A save on NEMO's MQTT page (plugin 2.x: `NOTIFY nemo_mqtt_reload`) moves the bridge to the
/// page's new broker at once: the poll is off, so only the notification can do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_notify_reloads_the_configuration() -> TestResult {
    let db = NemoDatabase::postgres_v2();
    let broker_a = Mosquitto::start()?;
    let broker_b = Mosquitto::start()?;
    db.insert_configuration_with(broker_a.port(), None, false);
    let setup = Setup::new();
    let cfg = table_config(
        setup.dir.path(),
        "notify.toml",
        &db.url(),
        "mqtt://127.0.0.1:9",
        setup.http,
        "",
    );
    // poll_s = 0: only a reload request re-reads the page.
    let text = std::fs::read_to_string(&cfg)?.replace("poll_s = 5", "poll_s = 0");
    std::fs::write(&cfg, text)?;
    let mut sub_a = subscriber(&broker_a.url(), "notify-a", false).await;
    let mut sub_b = subscriber(&broker_b.url(), "notify-b", false).await;
    let bridge = setup.ready_bridge(&cfg, "notify");
    let mut q = PluginQueue::connect(&db.url()).await;
    q.publish_seq(0).await;
    let got = collect(&mut sub_a, Duration::from_secs(10), |g| !g.is_empty()).await;
    assert_eq!(got.len(), 1, "{}", bridge.tail(20));

    // The page's save: the row, then (on commit) the notification.
    db.exec(&format!(
        "UPDATE nemo_mqtt_mqttconfiguration SET broker_port = {}, updated_at = now() WHERE id = 1; \
         SELECT pg_notify('nemo_mqtt_reload', '')",
        broker_b.port()
    ));
    let t0 = Instant::now();
    let mut moved = false;
    let mut seq = 1;
    while !moved && t0.elapsed() < Duration::from_secs(15) {
        q.publish_seq(seq).await;
        seq += 1;
        moved = !collect(&mut sub_b, Duration::from_millis(200), |g| !g.is_empty())
            .await
            .is_empty();
    }
    assert!(moved, "{}", bridge.tail(30));
    println!(
        "moved to the page's new broker {:.2} s after the save",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        bridge.log().contains("NOTIFY nemo_mqtt_reload"),
        "{}",
        bridge.log()
    );
    // The status row is written right after the reload, not at the next heartbeat (15 s):
    // within a second of the move to the new broker, which comes after the reload.
    let until = Instant::now() + Duration::from_secs(1);
    let mut d = diagnostics(&db);
    while d["last_reload_reason"] != "notify" && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
        d = diagnostics(&db);
    }
    assert_eq!(d["last_reload_reason"], "notify", "{d}");
    // The applied row's `updated_at`, as the plugin writes it (isoformat), the saved time.
    let fingerprint = &d["applied_fingerprint"];
    assert_eq!(fingerprint["id"], 1, "{d}");
    assert_isoformat("applied_fingerprint.updated_at", &fingerprint["updated_at"]);
    assert_eq!(
        db.query(
            "SELECT CAST(bridge_diagnostics->'applied_fingerprint'->>'updated_at' AS timestamptz) \
             = (SELECT updated_at FROM nemo_mqtt_mqttconfiguration WHERE id = 1) \
             FROM nemo_mqtt_mqttbridgestatus"
        ),
        "t",
        "{d}"
    );
    assert_isoformat("last_reload_at", &d["last_reload_at"]);
    Ok(())
}

/// Bad input from the table: a row that cannot be published is marked processed, recorded in
/// the message log with its reason, and does not hold up the rows behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_row_is_recorded_and_the_rest_flow() -> TestResult {
    let db = NemoDatabase::postgres_v2();
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), "bad-sub", false).await;
    let bridge = start_bridge(&setup, &db, &broker, "bad");
    let mut q = PluginQueue::connect(&db.url()).await;
    q.publish_seq(0).await;
    q.publish("nemo/tools/+/enabled", "{\"event\": \"tool_enabled\"}")
        .await?;
    q.publish_seq(2).await;
    let got = collect(&mut sub, Duration::from_secs(10), |g| g.len() >= 2).await;
    let seqs: Vec<_> = got.iter().filter_map(seq_of).collect();
    assert_eq!(seqs, vec![0, 2], "{}", bridge.tail(20));
    assert_eq!(wait_processed(&db, Duration::from_secs(10)), 0);
    let log =
        db.query("SELECT topic, success, error_message IS NOT NULL FROM nemo_mqtt_mqttmessagelog");
    assert_eq!(log, "nemo/tools/+/enabled|f|t");
    Ok(())
}
