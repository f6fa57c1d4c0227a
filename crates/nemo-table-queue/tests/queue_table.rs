//! The queue of plugin 2.x against a real PostgreSQL (started by nemo-testkit) made from the
//! plugin's exact DDL (migrations 0001–0006), with rows inserted the way the plugin inserts
//! them: an INSERT, then `SELECT pg_notify('nemo_mqtt_events', '<id>')`, each committed on its
//! own (Django autocommit), from a second connection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use nemo_db::{DbError, NemoConfig};
use nemo_source::{Delivery, DeliveryId, EventSource};
use nemo_table_queue::{QueueDb, SourceShared, TableSource, Wake};
use nemo_testkit::{PostgresServer, fixtures_dir};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

fn v2_database() -> PostgresServer {
    let pg = PostgresServer::start().unwrap();
    pg.psql_file(fixtures_dir().join("nemo-plugin-schema/v2-postgresql.sql"))
        .unwrap();
    pg
}

fn cfg(pg: &PostgresServer) -> NemoConfig {
    NemoConfig {
        database_url: pg.url(),
        poll_s: 30,
        ..NemoConfig::default()
    }
}

/// The plugin's `publish_event`: `MQTTEventQueue.objects.create(…)` then `pg_notify`.
async fn plugin_insert(conn: &mut PgConnection, tool: usize, seq: usize) -> i64 {
    let payload = format!("{{\"event\": \"tool_enabled\", \"tool_id\": {tool}, \"seq\": {seq}}}");
    let id: i32 = sqlx::query_scalar(
        "INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, created_at) \
         VALUES ($1, $2, 1, false, false, now()) RETURNING id",
    )
    .bind(format!("nemo/tools/{tool}/enabled"))
    .bind(payload)
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind("nemo_mqtt_events")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await
        .unwrap();
    i64::from(id)
}

async fn producer(pg: &PostgresServer) -> PgConnection {
    PgConnection::connect(&pg.url()).await.unwrap()
}

/// Win the lock and open the source (the listener must live as long as the source).
async fn open(db: &QueueDb, wake: Arc<Wake>) -> TableSource {
    let mut lock = db.lock();
    assert!(lock.try_acquire().await.unwrap(), "the lock is free");
    lock.into_source(wake, SourceShared::default()).unwrap()
}

/// Wait (up to 10 s) until the listener's connection is up.
async fn wait_listening(listener: &nemo_table_queue::Listener) {
    let until = Instant::now() + Duration::from_secs(10);
    while !listener.is_up() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(listener.is_up(), "the listener connects");
}

fn ids(ds: &[Delivery]) -> Vec<i64> {
    ds.iter()
        .map(|d| match d.id {
            DeliveryId::Row(id) => id,
            ref other => panic!("not a row: {other:?}"),
        })
        .collect()
}

fn processed(pg: &PostgresServer) -> Vec<i64> {
    pg.psql("SELECT id FROM nemo_mqtt_mqtt_eventqueue WHERE processed ORDER BY id")
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Rows come in id order as queue items of plugin 1.x whose `payload` is the row's text byte
/// for byte; nothing is marked before `ack`; `nack` gives rows back first, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_in_order_marked_only_when_acked_and_given_back_in_order() {
    let pg = v2_database();
    let mut prod = producer(&pg).await;
    for seq in 0..10 {
        plugin_insert(&mut prod, seq % 3, seq).await;
    }
    // Non-ASCII and escapes survive byte for byte (json.dumps with ensure_ascii writes \u00e9,
    // a NEMO admin's manual insert might not).
    sqlx::query(
        "INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, created_at) \
         VALUES ('nemo/tools/9/enabled', $1, 1, true, false, now())",
    )
    .bind("{\"event\": \"tool_enabled\", \"user_name\": \"Jos\\u00e9 \u{e1}lvarez \\\"J\\\" 李雷\"}")
    .execute(&mut prod)
    .await
    .unwrap();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let mut src = open(&db, listener.wake()).await;

    let first = src.take(4, Duration::ZERO).await.unwrap();
    assert_eq!(ids(&first), vec![1, 2, 3, 4]);
    let item = nemo_events::QueueItem::parse(&first[0].raw).unwrap();
    assert_eq!(item.topic.as_str(), "nemo/tools/0/enabled");
    assert_eq!(
        item.payload,
        "{\"event\": \"tool_enabled\", \"tool_id\": 0, \"seq\": 0}"
    );
    assert!(
        processed(&pg).is_empty(),
        "nothing is marked before the ack"
    );

    src.ack(&first[..2]).await.unwrap();
    assert_eq!(processed(&pg), vec![1, 2]);
    src.nack(&first[2..]).await.unwrap();
    let again = src.take(100, Duration::ZERO).await.unwrap();
    assert_eq!(ids(&again), (3..=11).collect::<Vec<_>>());
    assert!(again[0].redelivered, "row 3 was handed out before");
    let last = nemo_events::QueueItem::parse(&again.last().unwrap().raw).unwrap();
    assert_eq!(
        last.payload,
        "{\"event\": \"tool_enabled\", \"user_name\": \"Jos\\u00e9 \u{e1}lvarez \\\"J\\\" 李雷\"}"
    );
    assert!(last.retain);
    src.ack(&again).await.unwrap();
    assert_eq!(processed(&pg), (1..=11).collect::<Vec<_>>());
    assert!(src.take(10, Duration::ZERO).await.unwrap().is_empty());
}

/// A waiting take wakes on the plugin's NOTIFY, not at the end of its wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_take_wakes_on_the_notify() {
    let pg = v2_database();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let mut src = open(&db, listener.wake()).await;
    assert!(src.take(10, Duration::ZERO).await.unwrap().is_empty());
    // Let the listener connect.
    wait_listening(&listener).await;
    let _ = src.take(10, Duration::from_millis(50)).await.unwrap(); // the start-up wake
    let mut prod = producer(&pg).await;
    let insert = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        plugin_insert(&mut prod, 1, 1).await
    });
    let t0 = Instant::now();
    let got = src.take(10, Duration::from_secs(10)).await.unwrap();
    let waited = t0.elapsed();
    assert_eq!(ids(&got), vec![insert.await.unwrap()]);
    assert!(
        waited < Duration::from_secs(3),
        "woke {waited:?} after the take started (the insert came at 0.3 s; the wait was 10 s)"
    );
}

/// A row whose transaction commits after later rows were taken (identity values are handed out
/// at INSERT, rows become visible at COMMIT) is still published: its NOTIFY, delivered at its
/// commit, moves the scan back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_commits_late_is_not_skipped() {
    let pg = v2_database();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let mut src = open(&db, listener.wake()).await;
    wait_listening(&listener).await;
    // A request in ATOMIC_REQUESTS: insert + notify inside a transaction that stays open.
    let mut slow = producer(&pg).await;
    let mut tx = slow.begin().await.unwrap();
    let late = plugin_insert(&mut tx, 1, 0).await;
    let mut fast = producer(&pg).await;
    let early = plugin_insert(&mut fast, 2, 1).await;
    assert!(late < early);
    let got = src.take(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(ids(&got), vec![early], "only the committed row is visible");
    src.ack(&got).await.unwrap();
    tx.commit().await.unwrap();
    let mut found = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while found.is_empty() && Instant::now() < until {
        found = src.take(10, Duration::from_millis(500)).await.unwrap();
    }
    assert_eq!(
        ids(&found),
        vec![late],
        "the late row is found by its notify"
    );
    src.ack(&found).await.unwrap();
    assert_eq!(processed(&pg), vec![late, early]);
}

/// One consumer per queue: the second lock attempt fails while the first holds it, and wins
/// once the holder's session ends (its process died: the connection closes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_admits_one_consumer_and_passes_on_when_it_dies() {
    let pg = v2_database();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let active = open(&db, listener.wake()).await;
    let mut standby = db.lock();
    assert!(!standby.try_acquire().await.unwrap());
    assert!(!standby.try_acquire().await.unwrap());
    drop(active); // the process dies: its connection closes
    let until = Instant::now() + Duration::from_secs(5);
    let mut won = false;
    while !won && Instant::now() < until {
        won = standby.try_acquire().await.unwrap();
        if !won {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert!(won, "the standby takes over");
}

/// The backend of the lock's connection terminated while the source makes no call (the
/// bridge waits for its broker): the source notices within a few seconds on its own
/// (`held()` turns false), and a standby wins the lock meanwhile; a source that is busy
/// (took and acked a moment ago) keeps its lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_lost_while_idle_is_noticed_within_seconds() {
    let pg = v2_database();
    let mut prod = producer(&pg).await;
    plugin_insert(&mut prod, 1, 0).await;
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let mut src = open(&db, listener.wake()).await;
    let held = src.held();
    let got = src.take(10, Duration::ZERO).await.unwrap();
    src.ack(&got).await.unwrap();
    // Idle, but nothing broke: the checks (one every 2 s) find the lock still ours.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        *held.borrow(),
        "an idle source keeps a lock that is its own"
    );
    // Terminate the session that holds the lock, as a server or a network would.
    let pids: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = 1836151924 AND granted",
    )
    .fetch_all(&mut prod)
    .await
    .unwrap();
    assert_eq!(pids.len(), 1, "one session holds the lock");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pids[0])
        .fetch_one(&mut prod)
        .await
        .unwrap();
    assert!(killed);
    let t = Instant::now();
    let mut standby = db.lock();
    let mut won = false;
    while !won && t.elapsed() < Duration::from_secs(5) {
        won = standby.try_acquire().await.unwrap();
    }
    assert!(won, "the lock is free for a standby");
    let mut lost = held.clone();
    tokio::time::timeout(Duration::from_secs(6), lost.wait_for(|h| !*h))
        .await
        .expect("the lost lock is noticed without any call of the pipeline")
        .unwrap();
    let took = t.elapsed();
    assert!(took < Duration::from_secs(6), "{took:?}");
    // No query of the first source reaches the table any more.
    assert!(matches!(
        src.take(1, Duration::ZERO).await.unwrap_err(),
        DbError::LockLost { .. }
    ));
}

/// Until its first query ran, a source announces that its next take may block long (the
/// first look at a large table); afterwards its takes are bounded as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_take_is_announced_as_long() {
    let pg = v2_database();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let mut src = open(&db, listener.wake()).await;
    let longest = src.longest_take().expect("the first take is announced");
    assert!(longest >= Duration::from_secs(300), "{longest:?}");
    assert!(src.take(10, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(src.longest_take(), None);
}

/// PostgreSQL killed and restarted under an active source: the source reports the lock lost
/// (its session is gone) and errors instead of acking; unacked rows are still unprocessed, and
/// a new lock and source publish them again first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_loses_the_lock_and_nothing_else() {
    let mut pg = v2_database();
    let mut prod = producer(&pg).await;
    for seq in 0..5 {
        plugin_insert(&mut prod, 1, seq).await;
    }
    drop(prod);
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let mut src = open(&db, listener.wake()).await;
    let held = src.held();
    let got = src.take(3, Duration::ZERO).await.unwrap();
    assert_eq!(ids(&got), vec![1, 2, 3]);
    src.ack(&got[..1]).await.unwrap();
    pg.restart().unwrap();
    let e = src.ack(&got[1..]).await.unwrap_err();
    assert!(e.is_transient(), "{e}");
    assert!(!*held.borrow(), "the lock is reported lost");
    assert!(matches!(
        src.take(1, Duration::ZERO).await.unwrap_err(),
        DbError::LockLost { .. }
    ));
    drop(src);
    let mut src = open(&db, listener.wake()).await;
    let again = ids(&src.take(10, Duration::ZERO).await.unwrap());
    // The ack of row 1 was committed asynchronously (synchronous_commit = off): a crash
    // right after it may forget it, and row 1 comes again (at least once). Rows 2 to 5 were
    // never acked: they always come again, first and in order.
    assert!(
        again == vec![2, 3, 4, 5] || again == vec![1, 2, 3, 4, 5],
        "unacked rows first, in order: {again:?}"
    );
}

/// A bad row is marked processed and recorded in the message log with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_marked_and_recorded_with_its_reason() {
    let pg = v2_database();
    pg.psql(
        "INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, created_at) \
         VALUES ('nemo/tools/1/enabled', 'not json', 7, false, false, now())",
    )
    .unwrap();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let shared = SourceShared::default();
    let mut lock = db.lock();
    assert!(lock.try_acquire().await.unwrap());
    let mut src = lock.into_source(listener.wake(), shared.clone()).unwrap();
    let got = src.take(1, Duration::ZERO).await.unwrap();
    src.dead_letter(&got[0], "qos 7 is not 0, 1 or 2")
        .await
        .unwrap();
    assert_eq!(processed(&pg), vec![1]);
    let log = pg
        .psql("SELECT topic, payload, qos, success, error_message FROM nemo_mqtt_mqttmessagelog")
        .unwrap();
    assert_eq!(
        log.trim(),
        "nemo/tools/1/enabled|not json|7|f|qos 7 is not 0, 1 or 2"
    );
    assert_eq!(
        shared.last_error.lock().unwrap().as_deref(),
        Some("row 1: qos 7 is not 0, 1 or 2")
    );
}

/// The status row is upserted (one row, key 'default'); retention deletes only processed rows
/// past the age, never unprocessed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_row_and_retention() {
    let pg = v2_database();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    db.write_status("connected", &serde_json::json!({"source": "database"}))
        .await
        .unwrap();
    db.write_status("disconnected", &serde_json::json!({"source": "database"}))
        .await
        .unwrap();
    let rows = pg
        .psql("SELECT key, status, last_heartbeat IS NOT NULL, bridge_diagnostics->>'source' FROM nemo_mqtt_mqttbridgestatus")
        .unwrap();
    assert_eq!(rows.trim(), "default|disconnected|t|database");

    pg.psql(
        "INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, created_at) \
         SELECT 'nemo/tools/1/enabled', '{}', 1, false, i % 2 = 0, now() - interval '10 days' \
         FROM generate_series(1, 12000) i; \
         INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, created_at) \
         VALUES ('nemo/tools/1/enabled', '{}', 1, false, true, now())",
    )
    .unwrap();
    let gone = db
        .purge_processed(Duration::from_secs(7 * 86_400))
        .await
        .unwrap();
    assert_eq!(gone, 6_000);
    let left = pg
        .psql("SELECT count(*) FILTER (WHERE processed), count(*) FILTER (WHERE NOT processed) FROM nemo_mqtt_mqtt_eventqueue")
        .unwrap();
    assert_eq!(
        left.trim(),
        "1|6000",
        "the recent processed row and every unprocessed row stay"
    );
    assert_eq!(db.pending(0).await.unwrap(), 6_000);
}

/// Takes and acks walk the primary key from the scan position: on a table of 50,000 rows they
/// add index scans and no sequential scan (one at the first take finds the first unprocessed
/// row). A query ordered by the wrong expression, or a generic plan, would scan the table on
/// every take.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takes_and_acks_use_the_primary_key_not_a_table_scan() {
    let pg = v2_database();
    pg.psql(
        "INSERT INTO nemo_mqtt_mqtt_eventqueue (topic, payload, qos, retain, processed, created_at) \
         SELECT 'nemo/tools/1/enabled', '{}', 1, false, s <= 25000, now() \
         FROM generate_series(1, 50000) s; ANALYZE nemo_mqtt_mqtt_eventqueue",
    )
    .unwrap();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let mut src = open(&db, listener.wake()).await;
    let first = src.take(256, Duration::ZERO).await.unwrap();
    assert_eq!(ids(&first)[0], 25_001);
    src.ack(&first).await.unwrap();
    let scans = || {
        // The statistics collector reports with a delay: force a fresh snapshot.
        pg.psql(
            "SELECT pg_stat_clear_snapshot(); SELECT seq_scan FROM pg_stat_user_tables \
             WHERE relname = 'nemo_mqtt_mqtt_eventqueue'",
        )
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse::<i64>()
        .unwrap()
    };
    // PostgreSQL 15 reports a backend's table statistics at the end of a transaction at most
    // once a second: wait over a second, then one more take makes the source's backend report
    // everything before it.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let flush = src.take(1, Duration::ZERO).await.unwrap();
    src.nack(&flush).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = scans();
    for _ in 0..20 {
        let got = src.take(256, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 256);
        src.ack(&got).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let flush = src.take(1, Duration::ZERO).await.unwrap();
    src.nack(&flush).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(scans(), before, "no sequential scan of the queue table");
    assert_eq!(
        db.pending(25_000 + 21 * 256).await.unwrap(),
        25_000 - 21 * 256
    );
}

/// A late row is not hidden behind a notification of a row in flight: row 1 is taken (not
/// acked), row 3 taken too, then a late notification for row 1 and the commit of row 2 (with
/// its notification) arrive together. The next take returns row 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_row_is_found_even_behind_a_notification_of_a_row_in_flight() {
    let pg = v2_database();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    let listener = db.listen();
    let mut src = open(&db, listener.wake()).await;
    wait_listening(&listener).await;
    let _ = src.take(10, Duration::from_millis(100)).await.unwrap(); // the start-up wake
    let mut first = producer(&pg).await;
    let one = plugin_insert(&mut first, 1, 1).await;
    let mut slow = producer(&pg).await;
    let mut tx = slow.begin().await.unwrap();
    let two = plugin_insert(&mut tx, 2, 2).await;
    let three = plugin_insert(&mut first, 3, 3).await;
    let mut got = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while got.len() < 2 && Instant::now() < until {
        got.extend(ids(&src
            .take(10, Duration::from_millis(200))
            .await
            .unwrap()));
    }
    assert_eq!(got, vec![one, three]);
    // A duplicate notification of row 1 (in flight), then row 2's commit and notification.
    sqlx::query("SELECT pg_notify('nemo_mqtt_events', $1)")
        .bind(one.to_string())
        .execute(&mut first)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    // Let both notifications arrive before the next take, so that one take sees them together
    // (the case where only the lowest notified id was kept, and dropped for being in flight).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut late = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while late.is_empty() && Instant::now() < until {
        late = ids(&src.take(10, Duration::from_millis(500)).await.unwrap());
    }
    assert_eq!(late, vec![two], "row 2 is found");
}

/// The last status of a stopping bridge does not overwrite the row of a bridge that took over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_status_leaves_another_bridges_row_alone() {
    let pg = v2_database();
    let db = QueueDb::open(&cfg(&pg)).unwrap();
    db.write_status("connected", &serde_json::json!({"instance": "new"}))
        .await
        .unwrap();
    let wrote = db
        .write_final_status(
            "disconnected",
            &serde_json::json!({"instance": "old"}),
            "old",
        )
        .await
        .unwrap();
    assert!(!wrote);
    assert_eq!(
        pg.psql("SELECT status FROM nemo_mqtt_mqttbridgestatus")
            .unwrap()
            .trim(),
        "connected"
    );
    let wrote = db
        .write_final_status(
            "disconnected",
            &serde_json::json!({"instance": "new"}),
            "new",
        )
        .await
        .unwrap();
    assert!(wrote);
    assert_eq!(
        pg.psql("SELECT status FROM nemo_mqtt_mqttbridgestatus")
            .unwrap()
            .trim(),
        "disconnected"
    );
}
