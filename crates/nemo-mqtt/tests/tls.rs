//! TLS against a real mosquitto: trust, host name, expiry, client certificates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use nemo_events::Qos;
use nemo_mqtt::{EventSink, MqttConfig, MqttError, Publisher};
use nemo_testkit::{CertOptions, Certs, Mosquitto};

fn tls_cfg(broker: &Mosquitto, ca: &Certs, id: &str) -> MqttConfig {
    MqttConfig {
        ca_file: Some(ca.ca.clone()),
        ..cfg(&broker.tls_url().unwrap(), id)
    }
}

async fn tls_error(c: MqttConfig) -> String {
    let err = Publisher::connect(c, no_retry()).await.unwrap_err();
    println!("{err}");
    assert!(matches!(err, MqttError::Tls { .. }), "{err:?}");
    assert!(err.is_permanent());
    err.to_string()
}

#[tokio::test]
async fn tls_with_the_harness_ca_works() -> TestResult {
    let certs = Certs::generate()?;
    let broker = Mosquitto::builder().tls(certs.clone()).start()?;
    let publisher = Publisher::connect(tls_cfg(&broker, &certs, "tls-ok"), no_retry()).await?;
    publisher
        .publish(msg("tls/x", b"secret", Qos::AtLeastOnce, false))
        .await?;
    publisher.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn wrong_ca_fails_with_a_certificate_error() -> TestResult {
    let certs = Certs::generate()?;
    let other = Certs::generate()?;
    let broker = Mosquitto::builder().tls(certs).start()?;
    let e = tls_error(tls_cfg(&broker, &other, "tls-wrong-ca")).await;
    assert!(e.starts_with("TLS handshake with localhost:"), "{e}");
    assert!(e.contains("certificate verify failed"), "{e}");
    assert!(e.contains("mqtt.ca_file"), "{e}");
    Ok(())
}

#[tokio::test]
async fn system_trust_store_does_not_trust_a_private_ca() -> TestResult {
    let certs = Certs::generate()?;
    let broker = Mosquitto::builder().tls(certs).start()?;
    let c = cfg(&broker.tls_url().unwrap(), "tls-system-store");
    let e = tls_error(c).await;
    assert!(e.contains("certificate verify failed"), "{e}");
    Ok(())
}

#[tokio::test]
async fn hostname_mismatch_fails() -> TestResult {
    let certs = Certs::with_options(&CertOptions {
        server_names: vec!["otherhost".into()],
        expired: false,
    })?;
    let broker = Mosquitto::builder().tls(certs.clone()).start()?;
    let e = tls_error(tls_cfg(&broker, &certs, "tls-host")).await;
    assert!(e.contains("certificate verify failed"), "{e}");
    assert!(e.contains("not issued for 'localhost'"), "{e}");
    Ok(())
}

#[tokio::test]
async fn hostname_mismatch_is_accepted_only_with_insecure_skip_verify() -> TestResult {
    let certs = Certs::with_options(&CertOptions {
        server_names: vec!["otherhost".into()],
        expired: false,
    })?;
    let broker = Mosquitto::builder().tls(certs.clone()).start()?;
    let c = MqttConfig {
        insecure_skip_verify: true,
        ..tls_cfg(&broker, &certs, "tls-insecure")
    };
    let publisher = Publisher::connect(c, no_retry()).await?;
    publisher
        .publish(msg("tls/x", b"1", Qos::AtLeastOnce, false))
        .await?;
    publisher.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn expired_certificate_fails() -> TestResult {
    let certs = Certs::with_options(&CertOptions {
        expired: true,
        ..Default::default()
    })?;
    let broker = Mosquitto::builder().tls(certs.clone()).start()?;
    let e = tls_error(tls_cfg(&broker, &certs, "tls-expired")).await;
    assert!(e.contains("certificate has expired"), "{e}");
    Ok(())
}

#[tokio::test]
async fn client_certificate_works_and_is_required() -> TestResult {
    let certs = Certs::generate()?;
    let broker = Mosquitto::builder()
        .tls(certs.clone())
        .require_client_cert(true)
        .start()?;
    let with_cert = MqttConfig {
        client_cert: Some(certs.client_cert.clone()),
        client_key: Some(certs.client_key.clone()),
        ..tls_cfg(&broker, &certs, "tls-mutual")
    };
    let publisher = Publisher::connect(with_cert, no_retry()).await?;
    publisher
        .publish(msg("tls/m", b"1", Qos::ExactlyOnce, false))
        .await?;
    publisher.shutdown().await?;

    let e = tls_error(tls_cfg(&broker, &certs, "tls-no-client-cert")).await;
    assert!(e.contains("client certificate"), "{e}");
    Ok(())
}
