//! A stop that never needs its guard: SIGTERM ends the bridge with exit status 0 within
//! `shutdown.drain_timeout_s` + 1 s whatever is down (broker, Redis, a stalled Redis, both;
//! NEMO's database gone or stalled, as the plugin 2.x queue or as the page's store beside
//! Redis; everything at once) —
//! the stop guard (drain + 5 s, exit 1) never fires — a second signal ends it at once,
//! and after the servers are back a new bridge delivers every event: nothing is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use nemo_testkit::{Mosquitto, RedisServer};
use support::nemo_db::{NemoDatabase, PluginQueue, table_config};
use support::*;

/// `shutdown.drain_timeout_s` in `Setup::config`.
const DRAIN_S: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    BrokerGone,
    RedisGone,
    RedisStalled,
    BothGone,
}

async fn stop_with(fault: Fault) -> TestResult {
    const N: usize = 4_000;
    let tag = format!("{fault:?}").to_lowercase();
    let mut redis = RedisServer::builder().aof(true).start()?;
    let mut broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), &format!("stop-sub-{tag}"), true).await;
    // Let the broker's autosave (1 s) persist the subscriber's session before the fault.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let cfg = setup.config("stop.toml", &redis.url(), &broker.url(), "", "");
    let mut bridge = setup.ready_bridge(&cfg, &tag);
    let prod = producer(&redis).await;
    prod.enqueue_raw_many(&(0..N / 2).map(|s| item(s % 7, s)).collect::<Vec<_>>())
        .await?;
    let mut got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= N / 8).await;

    match fault {
        Fault::BrokerGone => broker.stop(),
        Fault::RedisGone => redis.kill(),
        Fault::RedisStalled => redis.freeze()?,
        Fault::BothGone => {
            broker.stop();
            redis.kill();
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    bridge.signal("-TERM");
    let t = Instant::now();
    let status = bridge.wait_exit(Duration::from_secs(DRAIN_S + 20));
    let took = t.elapsed();
    let log = bridge.log();
    println!(
        "{fault:?}: exit status {status:?} {took:?} after SIGTERM (bound {} s + 1 s)",
        DRAIN_S
    );
    assert!(
        status.is_some(),
        "{fault:?}: still running {took:?} after SIGTERM:\n{log}"
    );
    assert_eq!(
        status,
        Some(Some(0)),
        "{fault:?}: the stop guard or an error ended the bridge:\n{log}"
    );
    // The bridge's own bound is the drain + 1 s from the signal; 250 ms for the test's poll
    // of the process and the process's exit.
    assert!(
        took <= Duration::from_secs(DRAIN_S + 1) + Duration::from_millis(250),
        "{fault:?}: took {took:?}:\n{log}"
    );

    // Back to normal: every event arrives through a new bridge.
    match fault {
        Fault::BrokerGone => broker.restart()?,
        Fault::RedisGone => redis.restart()?,
        Fault::RedisStalled => redis.thaw()?,
        Fault::BothGone => {
            redis.restart()?;
            broker.restart()?;
        }
    }
    let prod = producer(&redis).await;
    prod.enqueue_raw_many(&(N / 2..N).map(|s| item(s % 7, s)).collect::<Vec<_>>())
        .await?;
    let again = setup.bridge(&cfg, &format!("{tag}-again"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut arrived = Arrivals::new(N);
    loop {
        for m in &got {
            arrived.note(seq_of(m));
        }
        got.clear();
        if arrived.complete() || Instant::now() > deadline {
            break;
        }
        got = collect(&mut sub, Duration::from_secs(1), |g| g.len() >= 1_000).await;
    }
    let unique = arrived.unique;
    println!("{fault:?}: {unique} of {N} delivered after the restart");
    assert_eq!(
        unique,
        N,
        "{fault:?}: lost {}; first bridge:\n{log}\nsecond bridge:\n{}",
        N - unique,
        again.tail(30)
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_broker_gone_ends_in_time_and_loses_nothing() -> TestResult {
    stop_with(Fault::BrokerGone).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_redis_gone_ends_in_time_and_loses_nothing() -> TestResult {
    stop_with(Fault::RedisGone).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_redis_stalled_ends_in_time_and_loses_nothing() -> TestResult {
    stop_with(Fault::RedisStalled).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_broker_and_redis_gone_ends_in_time_and_loses_nothing() -> TestResult {
    stop_with(Fault::BothGone).await
}

/// SIGTERM after `fault`: exit status 0 within the drain + 1 s (+ 250 ms for the test's
/// poll), never the guard.
fn assert_stopped_in_time(bridge: &mut Bridge, what: &str) {
    bridge.signal("-TERM");
    let t = Instant::now();
    let status = bridge.wait_exit(Duration::from_secs(DRAIN_S + 20));
    let took = t.elapsed();
    let log = bridge.log();
    println!("{what}: exit status {status:?} {took:?} after SIGTERM (bound {DRAIN_S} s + 1 s)");
    assert_eq!(
        status,
        Some(Some(0)),
        "{what}: still running, the stop guard or an error ({took:?}):\n{log}"
    );
    assert!(
        took <= Duration::from_secs(DRAIN_S + 1) + Duration::from_millis(250),
        "{what}: took {took:?}:\n{log}"
    );
}

/// Receive until every `seq` of `0..n` arrived (at least once) or a minute passed; how many did.
async fn delivered(
    sub: &mut nemo_mqtt::Subscriber,
    mut got: Vec<nemo_mqtt::Received>,
    n: usize,
) -> usize {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut arrived = Arrivals::new(n);
    loop {
        for m in &got {
            arrived.note(seq_of(m));
        }
        got.clear();
        if arrived.complete() || Instant::now() > deadline {
            return arrived.unique;
        }
        got = collect(sub, Duration::from_secs(1), |g| g.len() >= 1_000).await;
    }
}

/// A new bridge on `cfg` (the first one, `first`, has stopped) delivers every `seq` of `0..n`.
#[allow(clippy::too_many_arguments)]
async fn delivered_by_the_next_bridge(
    setup: &Setup,
    cfg: &Path,
    tag: &str,
    first: &Bridge,
    sub: &mut nemo_mqtt::Subscriber,
    got: Vec<nemo_mqtt::Received>,
    n: usize,
    what: &str,
) {
    let again = setup.bridge(cfg, &format!("{tag}-again"));
    let unique = delivered(sub, got, n).await;
    println!("{what}: {unique} of {n} delivered after the restart");
    assert_eq!(
        unique,
        n,
        "first bridge:\n{}\nsecond:\n{}",
        first.log(),
        again.tail(30)
    );
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DbFault {
    Gone,
    Stalled,
}

fn inflict(db: &mut NemoDatabase, fault: DbFault) {
    match fault {
        DbFault::Gone => db.server().kill(),
        DbFault::Stalled => db.server().freeze().unwrap(),
    }
}

fn heal(db: &mut NemoDatabase, fault: DbFault) {
    match fault {
        DbFault::Gone => db.server().restart().unwrap(),
        DbFault::Stalled => db.server().thaw().unwrap(),
    }
}

/// Plugin 2.x: the queue is NEMO's database. It goes away (or stalls) while rows flow; a stop
/// still ends in time, and a new bridge delivers every row once the database is back.
async fn table_stop_with(fault: DbFault) -> TestResult {
    const N: usize = 1_000;
    let tag = format!("table-{fault:?}").to_lowercase();
    let mut db = NemoDatabase::postgres_v2();
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), &format!("stop-sub-{tag}"), true).await;
    let cfg = table_config(
        setup.dir.path(),
        "stop-table.toml",
        &db.url(),
        &broker.url(),
        setup.http,
        "",
    );
    let mut bridge = setup.ready_bridge(&cfg, &tag);
    let mut queue = PluginQueue::connect(&db.url()).await;
    for seq in 0..N / 2 {
        queue.publish_seq(seq).await;
    }
    let got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= N / 8).await;
    inflict(&mut db, fault);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let what = format!("NEMO's database (the queue) {fault:?}");
    assert_stopped_in_time(&mut bridge, &what);

    heal(&mut db, fault);
    for seq in N / 2..N {
        queue.publish_seq(seq).await;
    }
    delivered_by_the_next_bridge(&setup, &cfg, &tag, &bridge, &mut sub, got, N, &what).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_table_queues_database_gone_ends_in_time_and_loses_nothing() -> TestResult
{
    table_stop_with(DbFault::Gone).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_the_table_queues_database_stalled_ends_in_time_and_loses_nothing()
-> TestResult {
    table_stop_with(DbFault::Stalled).await
}

/// Plugin 1.x with `[nemo] database_url`: NEMO's database holds the page's configuration and the
/// message log (on), the queue is Redis. The database goes away (or stalls) while events flow;
/// a stop still ends in time. With `everything`, Redis and the broker go too.
async fn nemo_db_stop_with(fault: DbFault, everything: bool) -> TestResult {
    const N: usize = 2_000;
    let tag = format!("nemo-db-{fault:?}-{everything}").to_lowercase();
    let mut redis = RedisServer::builder().aof(true).start()?;
    let mut broker = Mosquitto::start()?;
    let mut db = NemoDatabase::postgres();
    db.insert_configuration_with(broker.port(), None, true);
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), &format!("stop-sub-{tag}"), true).await;
    // Let the broker's autosave (1 s) persist the subscriber's session before the fault.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let cfg = setup.config(
        "stop-nemo-db.toml",
        &redis.url(),
        "mqtt://127.0.0.1:9",
        "",
        &format!("[nemo]\ndatabase_url = \"{}\"\npoll_s = 1\n", db.url()),
    );
    let mut bridge = setup.ready_bridge(&cfg, &tag);
    let prod = producer(&redis).await;
    prod.enqueue_raw_many(&(0..N / 2).map(|s| item(s % 7, s)).collect::<Vec<_>>())
        .await?;
    let got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= N / 8).await;
    inflict(&mut db, fault);
    if everything {
        broker.stop();
        redis.kill();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let what = if everything {
        format!("NEMO's database {fault:?}, Redis and the broker gone")
    } else {
        format!("NEMO's database (the page's store) {fault:?}")
    };
    assert_stopped_in_time(&mut bridge, &what);

    heal(&mut db, fault);
    if everything {
        redis.restart()?;
        broker.restart()?;
    }
    let prod = producer(&redis).await;
    prod.enqueue_raw_many(&(N / 2..N).map(|s| item(s % 7, s)).collect::<Vec<_>>())
        .await?;
    delivered_by_the_next_bridge(&setup, &cfg, &tag, &bridge, &mut sub, got, N, &what).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nemos_database_gone_ends_in_time_and_loses_nothing() -> TestResult {
    nemo_db_stop_with(DbFault::Gone, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_nemos_database_stalled_ends_in_time_and_loses_nothing() -> TestResult {
    nemo_db_stop_with(DbFault::Stalled, false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_everything_gone_ends_in_time_and_loses_nothing() -> TestResult {
    nemo_db_stop_with(DbFault::Stalled, true).await
}

/// A second SIGTERM while a stop waits (here for a stalled Redis) ends the process at once,
/// with a line saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() -> TestResult {
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let cfg = setup.config("second.toml", &redis.url(), &broker.url(), "", "");
    let mut bridge = setup.ready_bridge(&cfg, "second");
    redis.freeze()?;
    bridge.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(bridge.alive(), "the first stop waits for the stalled Redis");
    let t = Instant::now();
    bridge.signal("-INT");
    let status = bridge.wait_exit(Duration::from_secs(5));
    redis.thaw()?;
    let took = t.elapsed();
    assert_eq!(status, Some(Some(1)), "{}", bridge.log());
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(
        bridge.log().contains("second stop request: exiting now"),
        "{}",
        bridge.log()
    );
    println!("second signal: exited {took:?} after it");
    Ok(())
}

/// Redis down when the bridge starts: it waits (retrying with backoff, saying so), and a stop
/// request meanwhile ends it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_redis_at_the_start_and_a_stop_meanwhile() -> TestResult {
    let broker = Mosquitto::start()?;
    let port = nemo_testkit::free_port()?;
    let setup = Setup::new();
    let cfg = setup.config(
        "early.toml",
        &format!("redis://127.0.0.1:{port}/1"),
        &broker.url(),
        "",
        "",
    );
    let mut bridge = setup.bridge(&cfg, "early");
    assert!(
        bridge.wait_log(Duration::from_secs(10), |l| l
            .contains("redis: cannot connect; retrying")),
        "{}",
        bridge.log()
    );
    assert!(bridge.alive(), "it waits for Redis: {}", bridge.log());
    let t = Instant::now();
    bridge.signal("-TERM");
    let status = bridge.wait_exit(Duration::from_secs(5));
    assert_eq!(status, Some(Some(0)), "{}", bridge.log());
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(
        bridge
            .log()
            .contains("stopped before Redis could be reached")
    );
    Ok(())
}

/// An idle bridge waits for events in long blocking reads (`block_ms`, 5 s by default; here a
/// minute): a stop interrupts the wait instead of waiting for it to end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_idle_interrupts_the_waiting_read() -> TestResult {
    let redis = RedisServer::start()?;
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let cfg = setup.config_with(
        "idle.toml",
        &redis.url(),
        "block_ms = 60000\n",
        &broker.url(),
        "",
        "",
    );
    let mut bridge = setup.ready_bridge(&cfg, "idle");
    // Long enough for the pipeline to be inside its blocking read.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    bridge.signal("-TERM");
    let status = bridge.wait_exit(Duration::from_secs(30));
    let took = t.elapsed();
    assert_eq!(status, Some(Some(0)), "{}", bridge.log());
    assert!(
        took < Duration::from_secs(2),
        "the stop waited for the blocking read: {took:?}\n{}",
        bridge.log()
    );
    println!("stop while idle: {took:?}");
    Ok(())
}
