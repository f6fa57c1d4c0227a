//! Boot order: every server the bridge needs may come up after it, in any order (issue #28,
//! part 1). The bridge is started first, against a Redis Sentinel set or a broker that is not
//! up yet; it stays alive, says once what it waits for, and serves as soon as they are there.
//! A stop while it waits ends it at once with exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use nemo_testkit::{Mosquitto, RedisSentinelSet, RedisServer, SentinelPorts};
use support::nemo_db::{NemoDatabase, PluginQueue, table_config};
use support::*;

/// Lines of the bridge's log that announce a wait for Redis.
fn redis_waits(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("redis: cannot connect; retrying"))
        .count()
}

/// Push `n` items through `url` and check they all reach `sub`.
async fn push_and_receive(url: &str, sub: &mut nemo_mqtt::Subscriber, n: usize, log: &str) {
    let cfg = nemo_redis::RedisConfig {
        url: url.into(),
        key: KEY.into(),
        ..Default::default()
    };
    let redis = nemo_redis::Redis::connect(&cfg, &nemo_backoff::BackoffConfig::default())
        .await
        .unwrap();
    let items: Vec<String> = (0..n).map(|s| item(s % 4, s)).collect();
    redis.producer().enqueue_raw_many(&items).await.unwrap();
    let got = collect(sub, Duration::from_secs(20), |g| g.len() >= n).await;
    let mut arrived = Arrivals::new(n);
    for m in &got {
        arrived.note(seq_of(m));
    }
    assert!(
        arrived.complete(),
        "missing {:?}; bridge log:\n{log}",
        arrived.missing()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_started_before_its_sentinel_set_waits_then_serves() -> TestResult {
    let ports = SentinelPorts::free()?;
    let url = ports.url_db("nemo", 1);
    let broker = Mosquitto::start()?;
    let mut sub = subscriber(&broker.url(), "boot-sub", false).await;
    let setup = Setup::new();
    let cfg = setup.config("boot.toml", &url, &broker.url(), "", "");
    let mut bridge = setup.bridge(&cfg, "boot");

    // Nothing of the set runs: the bridge waits (50–500 ms apart: about ten attempts in 4 s),
    // and says so once.
    assert!(
        bridge.wait_log(Duration::from_secs(10), |l| l
            .contains("waiting for Redis Sentinel at 127.0.0.1:")),
        "{}",
        bridge.log()
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(bridge.alive(), "the bridge exited:\n{}", bridge.log());
    assert_eq!(redis_waits(&bridge.log()), 1, "{}", bridge.log());
    assert!(
        !matches!(bridge.get("/readyz"), Some((200, _))),
        "ready without Redis"
    );

    // The master, its replica and the sentinels come up: the bridge connects and serves.
    let t = Instant::now();
    let set = RedisSentinelSet::start_on("nemo", &ports)?;
    assert_eq!(set.url(), url);
    assert!(
        bridge.wait_ready(Duration::from_secs(30)),
        "not ready {:?} after the set came up:\n{}",
        t.elapsed(),
        bridge.log()
    );
    let log = bridge.log();
    assert!(log.contains("redis: reachable after"), "{log}");
    assert!(redis_waits(&log) <= 2, "{log}");
    push_and_receive(&set.url(), &mut sub, 20, &log).await;

    bridge.stop_cleanly(Duration::from_secs(10));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_waiting_for_sentinel_stops_at_once_on_sigterm() -> TestResult {
    let ports = SentinelPorts::free()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let cfg = setup.config("stop.toml", &ports.url_db("nemo", 1), &broker.url(), "", "");
    let mut bridge = setup.bridge(&cfg, "stop");
    assert!(
        bridge.wait_log(Duration::from_secs(10), |l| l
            .contains("waiting for Redis Sentinel")),
        "{}",
        bridge.log()
    );
    let t = Instant::now();
    bridge.signal("-TERM");
    let exit = bridge.wait_exit(Duration::from_secs(5));
    assert_eq!(exit, Some(Some(0)), "{}", bridge.log());
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        t.elapsed()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_with_only_its_sentinels_up_waits_for_their_master() -> TestResult {
    // The sentinels answer but the master they name is down (after a power cut, the
    // sentinels came back first): the bridge waits for that master and says so. (That it
    // serves once the master is there is the first test's last step.)
    let set = RedisSentinelSet::start("nemo")?;
    let master = set.master_port()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let cfg = setup.config("master.toml", &set.url(), &broker.url(), "", "");
    // The replica first, so that the sentinels have nothing to promote.
    for port in set.server_ports() {
        if port != master {
            let _ = set.cli(port, &["SHUTDOWN", "NOSAVE"]);
        }
    }
    let _ = set.cli(master, &["SHUTDOWN", "NOSAVE"]);
    let mut bridge = setup.bridge(&cfg, "master");
    assert!(
        bridge.wait_log(Duration::from_secs(10), |l| l
            .contains("waiting for the master the sentinels at 127.0.0.1:")),
        "{}",
        bridge.log()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(bridge.alive(), "the bridge exited:\n{}", bridge.log());
    assert_eq!(redis_waits(&bridge.log()), 1, "{}", bridge.log());
    bridge.stop_cleanly(Duration::from_secs(5));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_started_before_its_broker_waits_then_serves() -> TestResult {
    let redis = RedisServer::start()?;
    let mut broker = Mosquitto::start()?;
    broker.stop();
    let setup = Setup::new();
    let cfg = setup.config("broker.toml", &redis.url_db(1), &broker.url(), "", "");
    let mut bridge = setup.bridge(&cfg, "broker");

    std::thread::sleep(Duration::from_secs(4));
    assert!(bridge.alive(), "the bridge exited:\n{}", bridge.log());
    assert!(
        !matches!(bridge.get("/readyz"), Some((200, _))),
        "ready without a broker:\n{}",
        bridge.log()
    );
    // It says what it waits for: the broker's address is in the line.
    let port = broker.port().to_string();
    assert!(
        bridge
            .log()
            .lines()
            .any(|l| l.contains("connect failed; retrying") && l.contains(&port)),
        "{}",
        bridge.log()
    );

    broker.restart()?;
    let mut sub = subscriber(&broker.url(), "broker-sub", false).await;
    assert!(
        bridge.wait_ready(Duration::from_secs(20)),
        "not ready after the broker came up:\n{}",
        bridge.log()
    );
    let log = bridge.log();
    push_and_receive(&redis.url_db(1), &mut sub, 10, &log).await;
    assert_eq!(
        wait_drained(&redis, Duration::from_secs(10)),
        (0, 0),
        "{}",
        bridge.log()
    );
    bridge.stop_cleanly(Duration::from_secs(10));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_redis_credentials_still_end_the_bridge_at_once() -> TestResult {
    // Waiting is for servers that are not there yet; a wrong password is for a person to fix.
    let redis = RedisServer::builder().password("boot-order-pw").start()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let url = format!("redis://:not-the-password@127.0.0.1:{}/1", redis.port());
    let cfg = setup.config("auth.toml", &url, &broker.url(), "", "");
    let mut bridge = setup.bridge(&cfg, "auth");
    let exit = bridge.wait_exit(Duration::from_secs(10));
    assert_eq!(exit, Some(Some(1)), "{}", bridge.log());
    let log = bridge.log();
    assert!(log.contains("WRONGPASS"), "{log}");
    assert_eq!(redis_waits(&log), 0, "{log}");
    Ok(())
}

/// Plugin 2.x: the queue is NEMO's database, which comes up after the bridge. The bridge waits
/// (alive, not ready, saying so), then serves the rows queued meanwhile and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_started_before_its_table_queues_database_waits_then_serves() -> TestResult {
    const N: usize = 40;
    let mut db = NemoDatabase::postgres_v2();
    db.server().stop();
    let broker = Mosquitto::start()?;
    let mut sub = subscriber(&broker.url(), "table-boot-sub", false).await;
    let setup = Setup::new();
    let cfg = table_config(
        setup.dir.path(),
        "table-boot.toml",
        &db.url(),
        &broker.url(),
        setup.http,
        "",
    );
    let mut bridge = setup.bridge(&cfg, "table-boot");

    std::thread::sleep(Duration::from_secs(4));
    assert!(bridge.alive(), "the bridge exited:\n{}", bridge.log());
    assert!(
        !matches!(bridge.get("/readyz"), Some((200, _))),
        "ready without its queue:\n{}",
        bridge.log()
    );
    let waits = bridge.log();
    assert!(
        waits
            .lines()
            .any(|l| l.contains("retry") || l.contains("waiting")),
        "it does not say what it waits for:\n{waits}"
    );

    db.server().restart()?;
    let mut queue = PluginQueue::connect(&db.url()).await;
    for seq in 0..N / 2 {
        queue.publish_seq(seq).await;
    }
    assert!(
        bridge.wait_ready(Duration::from_secs(20)),
        "not ready after NEMO's database came up:\n{}",
        bridge.log()
    );
    for seq in N / 2..N {
        queue.publish_seq(seq).await;
    }
    let got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= N).await;
    let mut arrived = Arrivals::new(N);
    for m in &got {
        arrived.note(seq_of(m));
    }
    assert!(
        arrived.complete(),
        "missing {:?}:\n{}",
        arrived.missing(),
        bridge.log()
    );
    bridge.stop_cleanly(Duration::from_secs(10));
    Ok(())
}

/// Plugin 1.x with `[nemo] database_url`: NEMO's database comes up after the bridge, and the
/// broker is known only from NEMO's page (the file names a port nothing listens on). The
/// bridge waits, then takes the page's broker from the row and serves. With `redis_later`,
/// Redis comes up last, 3 s after NEMO's database.
async fn nemos_database_after_the_bridge(redis_later: bool) -> TestResult {
    const N: usize = 20;
    let tag = if redis_later {
        "nemo-db-redis-boot"
    } else {
        "nemo-db-boot"
    };
    let mut redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    let mut db = NemoDatabase::postgres();
    db.insert_configuration_with(broker.port(), None, false);
    db.server().stop();
    if redis_later {
        redis.stop();
    }
    let mut sub = subscriber(&broker.url(), &format!("{tag}-sub"), false).await;
    let setup = Setup::new();
    let cfg = setup.config(
        &format!("{tag}.toml"),
        &redis.url_db(1),
        "mqtt://127.0.0.1:9",
        "",
        // The first read gives up after 2 s: the bridge starts on the file's settings.
        &format!(
            "[nemo]\ndatabase_url = \"{}\"\npoll_s = 1\ntimeout_s = 2\n",
            db.url()
        ),
    );
    let mut bridge = setup.bridge(&cfg, tag);
    std::thread::sleep(Duration::from_secs(4));
    assert!(bridge.alive(), "the bridge exited:\n{}", bridge.log());

    db.server().restart()?;
    if redis_later {
        // NEMO's database is up, Redis still is not.
        std::thread::sleep(Duration::from_secs(3));
        assert!(bridge.alive(), "the bridge exited:\n{}", bridge.log());
        redis.restart()?;
    }
    assert!(
        bridge.wait_ready(Duration::from_secs(30)),
        "not ready after NEMO's database came up:\n{}",
        bridge.log()
    );
    let log = bridge.log();
    assert!(
        log.contains("using the file's settings"),
        "the first read did not give up:\n{log}"
    );
    push_and_receive(&redis.url_db(1), &mut sub, N, &log).await;
    bridge.stop_cleanly(Duration::from_secs(10));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_started_before_nemos_database_takes_the_pages_broker_once_it_is_up() -> TestResult {
    nemos_database_after_the_bridge(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nemos_database_then_redis_after_the_bridge_the_pages_broker_is_used() -> TestResult {
    nemos_database_after_the_bridge(true).await
}

/// An operator fixes the file's broker and sends SIGHUP while the bridge still waits for Redis:
/// the reload is kept and applied before the broker is connected, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_while_waiting_for_redis_is_applied_once_redis_is_up() -> TestResult {
    let mut redis = RedisServer::start()?;
    redis.stop();
    let broker = Mosquitto::start()?;
    let mut sub = subscriber(&broker.url(), "hup-boot-sub", false).await;
    let setup = Setup::new();
    let cfg = setup.config(
        "hup-boot.toml",
        &redis.url_db(1),
        "mqtt://127.0.0.1:9",
        "",
        "",
    );
    let mut bridge = setup.bridge(&cfg, "hup-boot");
    assert!(
        bridge.wait_log(Duration::from_secs(10), |l| l
            .contains("redis: cannot connect; retrying")),
        "{}",
        bridge.log()
    );
    let fixed = std::fs::read_to_string(&cfg)?.replace("mqtt://127.0.0.1:9", &broker.url());
    std::fs::write(&cfg, fixed)?;
    bridge.signal("-HUP");
    assert!(
        bridge.wait_log(Duration::from_secs(10), |l| l
            .contains("reload requested while connecting")),
        "{}",
        bridge.log()
    );
    redis.restart()?;
    assert!(
        bridge.wait_ready(Duration::from_secs(20)),
        "the fixed broker was not used:\n{}",
        bridge.log()
    );
    let log = bridge.log();
    push_and_receive(&redis.url_db(1), &mut sub, 10, &log).await;
    bridge.stop_cleanly(Duration::from_secs(10));
    Ok(())
}

/// A sentinel that refuses the bridge's credentials: fred reports it like sentinels that are
/// not up ("Failed to connect to all sentinel nodes"); the bridge asks the sentinel itself and
/// ends at once with the reason, instead of waiting forever. (The sentinel here is a
/// `redis-server` with `requirepass`: the same AUTH exchange a password-protected
/// `redis-sentinel` answers to a wrong password.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_refusing_the_credentials_ends_the_bridge_at_once() -> TestResult {
    let sentinel = RedisServer::builder().password("sentinel-pw").start()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let url = format!(
        "redis-sentinel://:not-the-password@127.0.0.1:{}/1?sentinelServiceName=nemo",
        sentinel.port()
    );
    let cfg = setup.config("sentinel-auth.toml", &url, &broker.url(), "", "");
    let t = Instant::now();
    let mut bridge = setup.bridge(&cfg, "sentinel-auth");
    let exit = bridge.wait_exit(Duration::from_secs(15));
    let log = bridge.log();
    assert_eq!(exit, Some(Some(1)), "{log}");
    assert!(
        log.contains("refuses the credentials") && log.contains("WRONGPASS"),
        "{log}"
    );
    assert!(
        !log.contains("not-the-password"),
        "a secret in the log: {log}"
    );
    assert_eq!(redis_waits(&log), 0, "it waited: {log}");
    println!(
        "a sentinel refusing the password: exit 1 after {:?}",
        t.elapsed()
    );
    Ok(())
}
