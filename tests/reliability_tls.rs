//! TLS (issue 10): the bridge over `mqtts://` with the harness CA delivers end to end; with a
//! wrong CA, an expired server certificate or a host-name mismatch it delivers nothing, says why
//! (a log line naming the certificate problem), keeps the event in Redis, and never falls back to
//! plaintext: the broker never sees the bridge connect, and a raw listener standing in for an
//! `mqtts://` broker only ever receives TLS handshakes (first byte 0x16), never an MQTT CONNECT
//! (0x10). `rediss://` with the harness CA works end to end too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nemo_testkit::{CertOptions, Certs, Mosquitto, RedisServer};
use support::*;

fn ca_line(ca: &Path) -> String {
    format!("ca_file = \"{}\"\n", ca.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_with_the_harness_ca_delivers_end_to_end() -> TestResult {
    let certs = Certs::generate()?;
    let broker = Mosquitto::builder().tls(certs.clone()).start()?;
    let redis = RedisServer::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), "reliability-tls-ok-sub", false).await;
    let url = format!("mqtts://localhost:{}", broker.tls_port().unwrap());
    let cfg = setup.config(
        "tls-ok.toml",
        &redis.url_db(1),
        &url,
        &ca_line(&certs.ca),
        "",
    );
    let bridge = setup.bridge(&cfg, "tls-ok");
    let items: Vec<String> = (0..50).map(|s| item(s % 3, s)).collect();
    producer(&redis).await.enqueue_raw_many(&items).await?;
    let got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= 50).await;
    let seqs: Vec<usize> = got.iter().filter_map(seq_of).collect();
    println!("mqtts ok: {} of 50 delivered over {url}", seqs.len());
    assert_eq!(
        seqs,
        (0..50).collect::<Vec<_>>(),
        "log:\n{}",
        bridge.tail(30)
    );
    assert!(
        broker.log().contains("as bridge-tls-ok.toml"),
        "the bridge connected over TLS"
    );
    Ok(())
}

/// A bridge that must fail TLS against `broker` (whose plain listener we watch).
async fn must_refuse(
    case: &str,
    broker: &Mosquitto,
    url: &str,
    ca: &Path,
    reasons: &[&str],
) -> TestResult {
    let redis = RedisServer::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), &format!("reliability-tls-{case}-sub"), false).await;
    let name = format!("tls-{case}.toml");
    let cfg = setup.config(&name, &redis.url_db(1), url, &ca_line(ca), "");
    let bridge = setup.bridge(&cfg, case);
    producer(&redis)
        .await
        .enqueue_raw(item(1, 0).as_bytes())
        .await?;
    // A line about TLS / the certificate that names the reason (not the config path).
    let explains = |l: &str| {
        let l = l.to_lowercase();
        (l.contains("certificate") || l.contains("tls"))
            && reasons.iter().any(|r| l.contains(&r.to_lowercase()))
            && !l.contains("starting config")
    };
    let said = bridge.wait_log(Duration::from_secs(20), |log| log.lines().any(explains));
    let log = bridge.log();
    let line = log
        .lines()
        .find(|l| explains(l))
        .unwrap_or("(none)")
        .to_string();
    println!("{case}: bridge says: {line}");
    assert!(
        said,
        "{case}: no log line naming {reasons:?}; log:\n{}",
        bridge.tail(30)
    );
    // It keeps retrying and never delivers: nothing on the broker, the event stays in Redis.
    let got = collect(&mut sub, Duration::from_secs(3), |g| !g.is_empty()).await;
    assert!(
        got.is_empty(),
        "{case}: delivered despite a bad certificate: {got:?}"
    );
    assert_eq!(
        llen(&redis, KEY) + llen(&redis, PROCESSING),
        1,
        "{case}: the event left Redis"
    );
    let connected = format!("as bridge-{name}");
    assert!(
        !broker.log().contains(&connected),
        "{case}: the broker saw the bridge connect:\n{}",
        broker.log()
    );
    // A certificate problem is permanent: the bridge may stop (non-zero) or keep retrying.
    let mut bridge = bridge;
    match bridge.child.try_wait()? {
        Some(st) => {
            println!("{case}: bridge exited with {st}");
            assert!(!st.success(), "{case}: exit 0 after a TLS failure");
        }
        None => println!("{case}: bridge still running (retrying)"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ca_is_refused_with_a_clear_error() -> TestResult {
    let certs = Certs::generate()?;
    let other = Certs::generate()?;
    let broker = Mosquitto::builder().tls(certs).start()?;
    let url = format!("mqtts://localhost:{}", broker.tls_port().unwrap());
    must_refuse(
        "wrong-ca",
        &broker,
        &url,
        &other.ca,
        &[
            "unable to get local issuer",
            "certificate verify failed",
            "self-signed",
            "self signed",
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_certificate_is_refused_with_a_clear_error() -> TestResult {
    let certs = Certs::with_options(&CertOptions {
        expired: true,
        ..Default::default()
    })?;
    let ca = certs.ca.clone();
    let broker = Mosquitto::builder().tls(certs).start()?;
    let url = format!("mqtts://localhost:{}", broker.tls_port().unwrap());
    must_refuse("expired", &broker, &url, &ca, &["expired"]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostname_mismatch_is_refused_with_a_clear_error() -> TestResult {
    let certs = Certs::with_options(&CertOptions {
        server_names: vec!["broker.elsewhere.example".into()],
        ..Default::default()
    })?;
    let ca = certs.ca.clone();
    let broker = Mosquitto::builder().tls(certs).start()?;
    let url = format!("mqtts://localhost:{}", broker.tls_port().unwrap());
    must_refuse(
        "hostname",
        &broker,
        &url,
        &ca,
        &["hostname mismatch", "host name mismatch", "hostname"],
    )
    .await
}

/// `mqtts://` pointed at a port that does not speak TLS: every connection starts with a TLS
/// ClientHello (0x16), never a plaintext MQTT CONNECT (0x10); the plain broker there never sees
/// the bridge and gets no event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtts_never_falls_back_to_plaintext() -> TestResult {
    let certs = Certs::generate()?;
    // 1. A raw listener records the first byte of every connection.
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let first_bytes = Arc::new(Mutex::new(Vec::<u8>::new()));
    {
        let first_bytes = first_bytes.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
                let mut b = [0u8; 1];
                if let Ok(1) = c.read(&mut b) {
                    first_bytes.lock().unwrap().push(b[0]);
                }
                // Dropping the connection: the handshake fails, the bridge retries.
            }
        });
    }
    let redis = RedisServer::start()?;
    let setup = Setup::new();
    let cfg = setup.config(
        "raw.toml",
        &redis.url_db(1),
        &format!("mqtts://localhost:{port}"),
        &ca_line(&certs.ca),
        "",
    );
    let bridge = setup.bridge(&cfg, "raw");
    producer(&redis)
        .await
        .enqueue_raw(item(1, 0).as_bytes())
        .await?;
    let t = Instant::now();
    let mut bridge = bridge;
    while first_bytes.lock().unwrap().len() < 3
        && t.elapsed() < Duration::from_secs(10)
        && bridge.alive()
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = first_bytes.lock().unwrap().clone();
    let exit = bridge.child.try_wait()?;
    println!(
        "no fallback: {} connections to the mqtts:// port, first bytes {:02x?}; bridge exit: {exit:?}",
        seen.len(),
        seen
    );
    assert!(
        !seen.is_empty(),
        "the bridge never connected; log:\n{}",
        bridge.tail(20)
    );
    assert!(
        exit.is_none_or(|st| !st.success()),
        "exit 0 after a failed TLS handshake"
    );
    assert!(
        seen.iter().all(|b| *b == 0x16),
        "a non-TLS first byte (0x10 = plaintext MQTT CONNECT): {seen:02x?}"
    );
    assert_eq!(
        llen(&redis, KEY) + llen(&redis, PROCESSING),
        1,
        "the event left Redis"
    );
    drop(bridge);

    // 2. A real plaintext broker on the mqtts:// port: it never sees the bridge, gets no event.
    let plain = Mosquitto::start()?;
    let mut sub = subscriber(&plain.url(), "reliability-tls-plain-sub", false).await;
    let setup2 = Setup::new();
    let url = format!("mqtts://localhost:{}", plain.port());
    let cfg2 = setup2.config(
        "plain.toml",
        &redis.url_db(1),
        &url,
        &ca_line(&certs.ca),
        "",
    );
    let bridge2 = setup2.bridge(&cfg2, "plain");
    let said = bridge2.wait_log(Duration::from_secs(20), |l| {
        let l = l.to_lowercase();
        l.contains("tls") || l.contains("ssl") || l.contains("handshake")
    });
    let got = collect(&mut sub, Duration::from_secs(3), |g| !g.is_empty()).await;
    println!(
        "no fallback: plain broker got {} events; bridge log line: {}",
        got.len(),
        bridge2
            .log()
            .lines()
            .find(|l| l.to_lowercase().contains("tls") || l.to_lowercase().contains("ssl"))
            .unwrap_or("(none)")
    );
    assert!(said, "no TLS error logged:\n{}", bridge2.tail(20));
    assert!(got.is_empty(), "event delivered in plaintext: {got:?}");
    assert!(
        !plain.log().contains("as bridge-plain.toml"),
        "plain broker saw the bridge:\n{}",
        plain.log()
    );
    assert_eq!(
        llen(&redis, KEY) + llen(&redis, PROCESSING),
        1,
        "the event left Redis"
    );
    Ok(())
}

/// `rediss://` with the harness CA: events flow end to end over a TLS-only redis-server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_the_harness_ca_delivers_end_to_end() -> TestResult {
    let certs = Certs::generate()?;
    let redis = RedisServer::builder().tls(certs.clone()).start()?;
    let url = redis.url_db(1);
    assert!(url.starts_with("rediss://"), "{url}");
    let broker = Mosquitto::start()?;
    let setup = Setup::new();
    let mut sub = subscriber(&broker.url(), "reliability-rediss-sub", false).await;
    let cfg = setup.config_with(
        "rediss.toml",
        &url,
        &ca_line(&certs.ca),
        &broker.url(),
        "",
        "",
    );
    let bridge = setup.bridge(&cfg, "rediss");
    let items: Vec<String> = (0..50).map(|s| item(s % 3, s)).collect();
    producer_url(&url, Some(certs.ca.clone()))
        .await
        .enqueue_raw_many(&items)
        .await?;
    let got = collect(&mut sub, Duration::from_secs(20), |g| g.len() >= 50).await;
    let seqs: Vec<usize> = got.iter().filter_map(seq_of).collect();
    println!("rediss ok: {} of 50 delivered from {url}", seqs.len());
    assert_eq!(
        seqs,
        (0..50).collect::<Vec<_>>(),
        "log:\n{}",
        bridge.tail(30)
    );
    assert_eq!(llen(&redis, KEY) + llen(&redis, PROCESSING), 0);

    // Without the CA the bridge does not trust the server: nothing is taken.
    let setup2 = Setup::new();
    let cfg2 = setup2.config("rediss-noca.toml", &url, &broker.url(), "", "");
    drop(bridge);
    let bridge2 = setup2.bridge(&cfg2, "rediss-noca");
    producer_url(&url, Some(certs.ca.clone()))
        .await
        .enqueue_raw(item(0, 99).as_bytes())
        .await?;
    let said = bridge2.wait_log(Duration::from_secs(20), |l| {
        let l = l.to_lowercase();
        l.contains("certificate") || l.contains("tls") || l.contains("ssl")
    });
    let got = collect(&mut sub, Duration::from_secs(2), |g| !g.is_empty()).await;
    println!(
        "rediss without CA: {}",
        bridge2
            .log()
            .lines()
            .find(|l| l.to_lowercase().contains("certificate") || l.to_lowercase().contains("tls"))
            .unwrap_or("(none)")
    );
    assert!(said, "no TLS error logged:\n{}", bridge2.tail(20));
    let log = bridge2.log();
    assert!(
        log.contains("redis: TLS handshake with rediss://localhost:")
            && log.contains("certificate verify failed: self-signed certificate in certificate chain (is the CA that signed the server certificate in redis.ca_file?)"),
        "one readable line naming the cause:\n{log}"
    );
    assert!(!log.contains("ErrorStack"), "no Debug dump:\n{log}");
    assert!(got.is_empty());
    assert_eq!(llen(&redis, KEY), 1);
    Ok(())
}
