//! Turning Paho's "TCP/TLS connect failure" into a cause a person can act on.
//!
//! The Paho C library reports every failed TCP or TLS connect with the same
//! generic code and does not expose the OpenSSL verification result. When a
//! connect fails that way we repeat the first steps ourselves, once, off the
//! async threads: a TCP connect (refused? unreachable?) and, for `mqtts://` /
//! `wss://`, a TLS handshake with the same trust store, client certificate and
//! host-name check. OpenSSL then tells us *why* ("certificate has expired",
//! "Hostname mismatch", "unable to get local issuer certificate", an alert
//! about a missing client certificate...). This runs only on the failure path.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use openssl::ssl::{HandshakeError, SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::X509VerifyResult;

use crate::{BrokerUrl, MqttConfig, MqttError};

/// Find out why connecting to `url` failed. Blocking; call from
/// `spawn_blocking`.
pub(crate) fn diagnose(
    url: &BrokerUrl,
    cfg: &MqttConfig,
    timeout: Duration,
    paho_error: &str,
) -> MqttError {
    let server = url.to_string();
    let addr = match (url.host(), url.port())
        .to_socket_addrs()
        .map(|mut a| a.next())
    {
        Ok(Some(a)) => a,
        Ok(None) => {
            return MqttError::Connect {
                server,
                reason: format!("host '{}' has no address", url.host()),
            };
        }
        Err(e) => {
            return MqttError::Connect {
                server,
                reason: format!("cannot resolve host '{}': {e}", url.host()),
            };
        }
    };
    let tcp = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => {
            return MqttError::Connect {
                server,
                reason: e.to_string(),
            };
        }
    };
    if !url.is_tls() {
        return MqttError::Connect {
            server,
            reason: format!(
                "TCP connected but the MQTT handshake failed: {paho_error} (if this is a TLS or WebSocket port, use mqtts:// or ws://)"
            ),
        };
    }
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let tls = |reason: String| MqttError::Tls {
        server: url.host_port(),
        reason,
    };
    match probe(url, cfg, tcp) {
        Ok(reason) | Err(reason) => tls(reason),
    }
}

/// `Err` = could not even set up the probe; `Ok` = the cause found.
fn probe(url: &BrokerUrl, cfg: &MqttConfig, tcp: TcpStream) -> Result<String, String> {
    let mut b = SslConnector::builder(SslMethod::tls_client())
        .map_err(|e| format!("OpenSSL setup failed: {e}"))?;
    if let Some(ca) = &cfg.ca_file {
        b.set_ca_file(ca)
            .map_err(|e| format!("cannot load mqtt.ca_file '{}': {e}", ca.display()))?;
    }
    if let (Some(cert), Some(key)) = (&cfg.client_cert, &cfg.client_key) {
        b.set_certificate_chain_file(cert)
            .map_err(|e| format!("cannot load mqtt.client_cert '{}': {e}", cert.display()))?;
        b.set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| format!("cannot load mqtt.client_key '{}': {e}", key.display()))?;
    }
    if cfg.insecure_skip_verify {
        b.set_verify(SslVerifyMode::NONE);
    }
    let connector = b.build();
    let conf = connector
        .configure()
        .map_err(|e| format!("OpenSSL setup failed: {e}"))?
        .verify_hostname(!cfg.insecure_skip_verify);
    match conf.connect(url.host(), tcp) {
        Ok(mut stream) => {
            // TLS 1.3: a missing client certificate is reported by the server
            // after the handshake, on the first read.
            let mut buf = [0u8; 1];
            match stream.read(&mut buf) {
                Err(e) if cfg.client_cert.is_none() => Ok(format!(
                    "the broker closed the TLS session ({e}); it probably requires a client certificate (set mqtt.client_cert and mqtt.client_key)"
                )),
                Err(e) => Ok(format!("the broker closed the TLS session: {e} (is the client certificate signed by a CA the broker trusts?)")),
                Ok(_) => Ok("the handshake succeeds in a diagnostic probe but failed in the client; check the broker log".into()),
            }
        }
        Err(HandshakeError::Failure(mid)) => {
            let vr = mid.ssl().verify_result();
            if vr != X509VerifyResult::OK {
                let hint = match vr.as_raw() {
                    // X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH
                    62 | 64 => format!(
                        " (the server certificate is not issued for '{}')",
                        url.host()
                    ),
                    // X509_V_ERR_CERT_HAS_EXPIRED / CERT_NOT_YET_VALID
                    10 | 9 => {
                        " (check the server certificate's validity dates and the clock)".to_string()
                    }
                    // unable to get (local) issuer, bad signature (another CA of the same
                    // name), self-signed in chain, untrusted, ...
                    2 | 4 | 7 | 18 | 19 | 20 | 21 | 27 => match &cfg.ca_file {
                        Some(ca) => {
                            format!(" (not signed by a CA in mqtt.ca_file '{}')", ca.display())
                        }
                        None => " (not signed by a CA in the system trust store; set mqtt.ca_file)"
                            .to_string(),
                    },
                    _ => String::new(),
                };
                Ok(format!(
                    "certificate verify failed: {}{hint}",
                    vr.error_string()
                ))
            } else {
                Ok(format!("{}", mid.error()))
            }
        }
        Err(HandshakeError::SetupFailure(e)) => Err(format!("OpenSSL setup failed: {e}")),
        Err(HandshakeError::WouldBlock(_)) => Ok("the TLS handshake timed out".into()),
    }
}
