//! NEMO's MQTT configuration page drives the bridge: the settings come from NEMO's database
//! (a real PostgreSQL started by nemo-testkit, a real SQLite file), both made from the plugin's
//! exact DDL and written the way the page does (a second process updating the row).
//!
//! The central case: under a steady stream, the page's save changes the broker port and the
//! HMAC key; the bridge moves to the second broker and signs with the new key, with zero
//! events lost — triggered by `reload_config` (what the page pushes) or found by the poll alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use nemo_mqtt::Received;
use nemo_testkit::{Mosquitto, RedisServer};
use support::nemo_db::NemoDatabase;
use support::{Arrivals, Setup, TestResult, collect, http_get, producer, run_bridge, subscriber};

/// An item whose payload carries `seq`.
fn item(seq: usize) -> String {
    format!(
        "{{\"topic\": \"nemo/tools/{}/enabled\", \"payload\": \"{{\\\"event\\\": \\\"tool_enabled\\\", \\\"seq\\\": {seq}}}\", \"qos\": 1, \"retain\": false, \"timestamp\": 1760623352.94}}",
        seq % 8
    )
}

/// The `seq` of a message signed with `key`; `None` if the signature does not verify.
fn seq_signed(m: &Received, key: &str) -> Option<usize> {
    let payload = nemo_events::hmac::verify(&m.payload, key.as_bytes()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&payload).ok()?;
    v["seq"].as_u64().map(|s| s as usize)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    /// The page's `post_save`: `reload_config` on the Redis control list.
    ReloadConfig,
    /// Nothing pushed: the poll must find the changed row.
    PollAlone,
}

/// Under a steady stream of `N` events at ~1,000/s, NEMO's page moves the bridge from broker A
/// (key K1) to broker B (key K2). Every event arrives, each signed with the key of the broker
/// it went through.
async fn page_moves_the_bridge(db: NemoDatabase, trigger: Trigger) -> TestResult {
    const N: usize = 4_000;
    let redis = RedisServer::start()?;
    let broker_a = Mosquitto::start()?;
    let broker_b = Mosquitto::start()?;
    db.insert_configuration(broker_a.port(), "key-one");
    let setup = Setup::new();
    let poll_s = if trigger == Trigger::PollAlone { 1 } else { 0 };
    // The file points at a broker that does not exist: only the row can make this work.
    let cfg = setup.config(
        "page.toml",
        &redis.url(),
        "mqtt://127.0.0.1:9",
        "",
        &format!(
            "\n[nemo]\ndatabase_url = \"{}\"\npoll_s = {poll_s}\n",
            db.url()
        ),
    );
    let mut sub_a = subscriber(&broker_a.url(), "page-sub-a", false).await;
    let mut sub_b = subscriber(&broker_b.url(), "page-sub-b", false).await;
    let bridge = setup.ready_bridge(&cfg, "page");
    let (code, body) = http_get(setup.http, "/readyz").unwrap();
    assert_eq!((code, body.contains("reason")), (200, false), "{body}");

    // The steady stream: 10 items every 10 ms.
    let prod = producer(&redis).await;
    let stream = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        for chunk in (0..N).collect::<Vec<_>>().chunks(10) {
            tick.tick().await;
            let items: Vec<String> = chunk.iter().map(|&s| item(s)).collect();
            prod.enqueue_raw_many(&items).await.unwrap();
        }
    });

    let mut got_a = collect(&mut sub_a, Duration::from_secs(20), |g| g.len() >= N / 4).await;
    assert!(got_a.len() >= N / 4, "{}", bridge.log());
    db.save(broker_b.port(), "key-two");
    let saved = Instant::now();
    if trigger == Trigger::ReloadConfig {
        redis.cli(&["LPUSH", "NEMO_mqtt_bridge_control", "reload_config"])?;
    }
    let mut got_b: Vec<Received> = Vec::new();
    let mut moved_after = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    // Each message must verify with the key of the broker it went through.
    let seq_checked = |m: &Received, key: &str| {
        seq_signed(m, key).unwrap_or_else(|| {
            panic!(
                "not signed with {key}: {:?}",
                String::from_utf8_lossy(&m.payload)
            )
        })
    };
    let mut arrived = Arrivals::new(N);
    for m in &got_a {
        arrived.note(Some(seq_checked(m, "key-one")));
    }
    while !arrived.complete() && Instant::now() < deadline {
        let more_a = collect(&mut sub_a, Duration::from_millis(100), |_| false).await;
        let more_b = collect(&mut sub_b, Duration::from_millis(300), |g| g.len() >= 500).await;
        if moved_after.is_none() && !more_b.is_empty() {
            moved_after = Some(saved.elapsed());
        }
        for m in &more_a {
            arrived.note(Some(seq_checked(m, "key-one")));
        }
        for m in &more_b {
            arrived.note(Some(seq_checked(m, "key-two")));
        }
        got_a.extend(more_a);
        got_b.extend(more_b);
    }
    let unique = arrived.unique;
    stream.await?;
    let dups = got_a.len() + got_b.len() - unique;
    println!(
        "{trigger:?}: sent {N}, unique {unique} ({} via A with key-one, {} via B with key-two), duplicates {dups}, moved {:?} after the save",
        got_a.len(),
        got_b.len(),
        moved_after
    );
    assert_eq!(unique, N, "lost {}; log:\n{}", N - unique, bridge.log());
    assert!(!got_b.is_empty(), "nothing went through the new broker");
    let log = bridge.log();
    match trigger {
        Trigger::ReloadConfig => assert!(log.contains("reload_config requested"), "{log}"),
        Trigger::PollAlone => {
            assert!(log.contains("on NEMO's page changed; reloading"), "{log}");
            assert!(!log.contains("reload_config requested"), "{log}");
        }
    }
    assert!(log.contains("broker settings changed"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_page_save_with_reload_config_moves_broker_and_key_zero_lost() -> TestResult {
    page_moves_the_bridge(NemoDatabase::postgres(), Trigger::ReloadConfig).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_page_save_found_by_the_poll_alone_zero_lost() -> TestResult {
    page_moves_the_bridge(NemoDatabase::postgres(), Trigger::PollAlone).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_page_save_with_reload_config_moves_broker_and_key_zero_lost() -> TestResult {
    page_moves_the_bridge(NemoDatabase::sqlite(), Trigger::ReloadConfig).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_page_save_found_by_the_poll_alone_zero_lost() -> TestResult {
    page_moves_the_bridge(NemoDatabase::sqlite(), Trigger::PollAlone).await
}

/// NEMO's database stops mid-run: delivery goes on with the settings in use, `/readyz` stays
/// 200 and says why in its note, and a `reload_config` meanwhile keeps the last good row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_gone_mid_run_changes_nothing_for_delivery() -> TestResult {
    const N: usize = 2_000;
    let mut db = NemoDatabase::postgres();
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    db.insert_configuration(broker.port(), "key-one");
    let setup = Setup::new();
    let cfg = setup.config(
        "gone.toml",
        &redis.url(),
        "mqtt://127.0.0.1:9",
        "",
        &format!(
            "\n[nemo]\ndatabase_url = \"{}\"\npoll_s = 1\ntimeout_s = 1\n",
            db.url()
        ),
    );
    let mut sub = subscriber(&broker.url(), "gone-sub", false).await;
    let bridge = setup.ready_bridge(&cfg, "gone");

    db.kill();
    let prod = producer(&redis).await;
    prod.enqueue_raw_many(&(0..N / 2).map(item).collect::<Vec<_>>())
        .await?;
    redis.cli(&["LPUSH", "NEMO_mqtt_bridge_control", "reload_config"])?;
    prod.enqueue_raw_many(&(N / 2..N).map(item).collect::<Vec<_>>())
        .await?;
    let got = collect(&mut sub, Duration::from_secs(30), |g| g.len() >= N).await;
    let mut seqs: Vec<usize> = got
        .iter()
        .map(|m| seq_signed(m, "key-one").expect("signed with the last good key"))
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs.len(),
        N,
        "lost {}; log:\n{}",
        N - seqs.len(),
        bridge.log()
    );

    assert!(
        bridge.wait_log(Duration::from_secs(10), |l| l
            .contains("cannot read NEMO's database")),
        "{}",
        bridge.log()
    );
    let (code, body) = http_get(setup.http, "/readyz").unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        body.contains("nemo: database postgres://postgres@127.0.0.1:"),
        "{body}"
    );
    let log = bridge.log();
    assert!(log.contains("keeping the last good settings"), "{log}");
    println!("database gone: {N} of {N} delivered; /readyz: {body}");
    Ok(())
}

fn check_config_with_db(db: &NemoDatabase) -> (i32, String, String) {
    let out = run_bridge(
        &["--check-config", "--nemo-database-url", &db.url()],
        &[("NEMO_MQTT__CLIENT_ID", "from-env")],
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `--check-config` reads the database and names the layer of every value; bad input in the
/// row is one line naming the column, and the file's settings are used.
#[test]
fn check_config_shows_where_each_value_came_from_and_reports_bad_rows() {
    let db = NemoDatabase::sqlite();
    let (code, _, err) = check_config_with_db(&db);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("no enabled row in nemo_mqtt_mqttconfiguration"),
        "{err}"
    );

    db.insert_configuration(1884, "page-secret-key");
    let (code, out, err) = check_config_with_db(&db);
    assert_eq!(code, 0, "{err}");
    for want in [
        "url = [\"mqtt://127.0.0.1:1884\"]  # NEMO database (nemo_mqtt_mqttconfiguration id=1)",
        "client_id = \"from-env\"  # environment NEMO_MQTT__CLIENT_ID",
        "key = \"***\"  # NEMO database (nemo_mqtt_mqttconfiguration id=1)",
        "qos = 1  # built-in default",
        "# command line",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("page-secret-key") && !err.contains("page-secret-key"));

    db.exec("UPDATE nemo_mqtt_mqttconfiguration SET broker_port = 0");
    let (code, out, err) = check_config_with_db(&db);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("nemo_mqtt_mqttconfiguration id=1: broker_port = 0: must be a TCP port in 1..=65535; using the file's settings"),
        "{err}"
    );
    assert!(
        out.contains("url = [\"mqtt://127.0.0.1:1883\"]  # built-in default"),
        "{out}"
    );

    db.exec("UPDATE nemo_mqtt_mqttconfiguration SET broker_port = 1884, use_hmac = TRUE, hmac_secret_key = NULL");
    let (_, _, err) = check_config_with_db(&db);
    assert!(
        err.contains("hmac_secret_key = NULL: must hold the key when use_hmac is on"),
        "{err}"
    );
    db.exec("UPDATE nemo_mqtt_mqttconfiguration SET hmac_secret_key = 'k', broker_host = ''");
    let (_, _, err) = check_config_with_db(&db);
    assert!(err.contains("broker_host = \"\""), "{err}");
}

#[test]
fn check_config_with_an_unusable_database_says_so_and_uses_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A SQLite file that does not exist (and must not be created).
    let missing = dir.path().join("missing.sqlite3");
    let out = run_bridge(
        &[
            "--check-config",
            "--nemo-database-url",
            &format!("sqlite://{}", missing.display()),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("unreachable") && err.contains("using the file's settings"),
        "{err}"
    );
    assert!(!missing.exists());
    // A database without the plugin's tables.
    let empty = NemoDatabase::Sqlite(tempfile::tempdir().unwrap());
    empty.exec("CREATE TABLE other (x integer)");
    let (code, _, err) = check_config_with_db(&empty);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("table nemo_mqtt_mqttconfiguration does not exist"),
        "{err}"
    );
    // A URL of an unsupported kind is a configuration error (exit 2) naming the key.
    let out = run_bridge(
        &[
            "--check-config",
            "--nemo-database-url",
            "mysql://root:pw@db/nemo",
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nemo.database_url") && !err.contains(":pw@"),
        "{err}"
    );
}
