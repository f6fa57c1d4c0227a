//! Boot order: every server the bridge needs may come up after it, in any order (issue #28,
//! part 1). The bridge is started first, against a Redis Sentinel set or a broker that is not
//! up yet; it stays alive, says once what it waits for, and serves as soon as they are there.
//! A stop while it waits ends it at once with exit 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use nemo_testkit::{Mosquitto, RedisSentinelSet, RedisServer, SentinelPorts};
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

    bridge.signal("-TERM");
    assert_eq!(
        bridge.wait_exit(Duration::from_secs(10)),
        Some(Some(0)),
        "{}",
        bridge.log()
    );
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
    bridge.signal("-TERM");
    assert_eq!(
        bridge.wait_exit(Duration::from_secs(5)),
        Some(Some(0)),
        "{}",
        bridge.log()
    );
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
    bridge.signal("-TERM");
    assert_eq!(
        bridge.wait_exit(Duration::from_secs(10)),
        Some(Some(0)),
        "{}",
        bridge.log()
    );
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
