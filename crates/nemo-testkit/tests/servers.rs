//! The harness against the real binaries: start, answer, kill, restart, TLS.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;
use std::process::Command;

use nemo_testkit::{Certs, Mosquitto, RedisServer};

#[test]
fn redis_starts_keeps_aof_data_across_kill_and_stops_on_drop() {
    let mut redis = RedisServer::builder().aof(true).start().unwrap();
    assert_ne!(redis.port(), 6379);
    assert_eq!(redis.cli(&["RPUSH", "k", "a"]).unwrap(), "1");
    redis.kill();
    assert!(TcpStream::connect(("127.0.0.1", redis.port())).is_err());
    redis.restart().unwrap();
    assert_eq!(redis.cli(&["LRANGE", "k", "0", "-1"]).unwrap(), "a");
    let pid = redis.pid().unwrap();
    drop(redis);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "killed on drop"
    );
}

#[test]
fn redis_with_password_refuses_without_it() {
    let redis = RedisServer::builder().password("s3cret").start().unwrap();
    assert_eq!(redis.cli(&["PING"]).unwrap(), "PONG");
    assert!(redis.url().contains(":s3cret@"));
}

#[test]
fn mosquitto_delivers_and_restarts_on_same_port() {
    let mut broker = Mosquitto::start().unwrap();
    assert_ne!(broker.port(), 1883);
    let port = broker.port().to_string();
    let sub = Command::new("mosquitto_sub")
        .args([
            "-p",
            &port,
            "-h",
            "127.0.0.1",
            "-t",
            "t/#",
            "-C",
            "1",
            "-W",
            "10",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Retained, so the subscriber sees it whether it subscribed before or after.
    let st = Command::new("mosquitto_pub")
        .args([
            "-p",
            &port,
            "-h",
            "127.0.0.1",
            "-t",
            "t/x",
            "-m",
            "hello",
            "-r",
            "-q",
            "1",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    let out = sub.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello");
    broker.kill();
    assert!(TcpStream::connect(("127.0.0.1", broker.port())).is_err());
    broker.restart().unwrap();
    assert!(TcpStream::connect(("127.0.0.1", broker.port())).is_ok());
}

#[test]
fn mosquitto_tls_listener_accepts_the_harness_ca() {
    let certs = Certs::generate().unwrap();
    let broker = Mosquitto::builder().tls(certs.clone()).start().unwrap();
    let tls_port = broker.tls_port().unwrap().to_string();
    let st = Command::new("mosquitto_pub")
        .args([
            "-p",
            &tls_port,
            "-h",
            "localhost",
            "-t",
            "t",
            "-m",
            "x",
            "-q",
            "1",
            "--cafile",
        ])
        .arg(&certs.ca)
        .status()
        .unwrap();
    assert!(st.success(), "{}", broker.log());
    let other = Certs::generate().unwrap();
    let st = Command::new("mosquitto_pub")
        .args([
            "-p",
            &tls_port,
            "-h",
            "localhost",
            "-t",
            "t",
            "-m",
            "x",
            "-q",
            "1",
            "--cafile",
        ])
        .arg(&other.ca)
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!st.success(), "a foreign CA must be refused");
}

#[test]
fn mosquitto_with_users_refuses_bad_password() {
    let broker = Mosquitto::builder().user("bridge", "pw").start().unwrap();
    let port = broker.port().to_string();
    let ok = Command::new("mosquitto_pub")
        .args([
            "-p",
            &port,
            "-h",
            "127.0.0.1",
            "-t",
            "t",
            "-m",
            "x",
            "-u",
            "bridge",
            "-P",
            "pw",
        ])
        .status()
        .unwrap();
    assert!(ok.success());
    let bad = Command::new("mosquitto_pub")
        .args([
            "-p",
            &port,
            "-h",
            "127.0.0.1",
            "-t",
            "t",
            "-m",
            "x",
            "-u",
            "bridge",
            "-P",
            "no",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!bad.success());
}
