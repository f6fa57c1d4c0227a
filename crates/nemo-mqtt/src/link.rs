//! One broker connection: building Paho's options from [`MqttConfig`],
//! connecting, classifying failures, and the reconnect supervisor.
//!
//! Paho can reconnect by itself, but then the program learns little about it
//! and cannot follow its own backoff policy. We turn Paho's automatic
//! reconnect off and run one supervisor task per connection instead:
//!
//! ```text
//!   connected --(connection-lost callback, C thread)--> disconnected
//!       ^                                                   |
//!       +---- connect OK: status/resubscribe ---- sleep(backoff.next_delay())
//! ```
//!
//! The connection-lost callback runs on a Paho C thread, so it only flips an
//! atomic, updates the `watch` channel and wakes the supervisor — nothing that
//! blocks. Every state change is one log line ("disconnected", "retrying in
//! N ms", "connected").

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nemo_backoff::Backoff;
use paho_mqtt as paho;
use tokio::sync::{Notify, watch};

use crate::config::{Protocol, WhenDisconnected};
use crate::state::{ConnState, ConnStatus};
use crate::{BrokerUrl, MqttConfig, MqttError};

/// What the connection is for: decides the will and what happens after each connect.
pub(crate) enum Role {
    /// Publishes status online after each connect; last will = offline.
    Publisher,
    /// Subscribes to these filters after each connect without a kept session.
    Subscriber { filters: Vec<String>, qos: i32 },
}

/// The parts the C-thread callbacks may touch. Holds no client (no cycle).
pub(crate) struct Signals {
    pub(crate) connected: AtomicBool,
    lost: Notify,
    state: watch::Sender<ConnState>,
}

impl Signals {
    fn on_lost(&self) {
        self.connected.store(false, Ordering::Release);
        self.state.send_if_modified(|s| {
            let changed = s.status == ConnStatus::Connected;
            if changed {
                s.status = ConnStatus::Disconnected;
            }
            changed
        });
        self.lost.notify_one();
    }
}

pub(crate) struct Link {
    pub(crate) client: paho::AsyncClient,
    pub(crate) cfg: Arc<MqttConfig>,
    urls: Vec<BrokerUrl>,
    /// The URL(s), for messages.
    servers: String,
    pub(crate) signals: Arc<Signals>,
    role: Role,
    closing: AtomicBool,
    shutdown: Notify,
}

impl Link {
    /// Validate, create the client and install the callbacks (before any connect).
    pub(crate) fn new(
        cfg: MqttConfig,
        role: Role,
        on_message: Option<Box<dyn FnMut(paho::Message) + Send + 'static>>,
    ) -> Result<Arc<Link>, MqttError> {
        cfg.validate()?;
        let urls = cfg.broker_urls()?;
        let servers = urls
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let publisher = matches!(role, Role::Publisher);
        let create = paho::CreateOptionsBuilder::new()
            .server_uri(urls[0].paho_uri())
            .client_id(cfg.client_id.clone())
            // Never Paho's default file persistence (it writes into the CWD).
            .persistence(paho::PersistenceType::None)
            .max_buffered_messages(i32::try_from(cfg.max_buffered).unwrap_or(i32::MAX))
            .send_while_disconnected(publisher && cfg.when_disconnected == WhenDisconnected::Wait)
            .mqtt_version(match cfg.protocol {
                Protocol::V311 => paho::MqttVersion::V3_1_1,
                Protocol::V5 => paho::MqttVersion::V5,
            });
        let client = paho::AsyncClient::new(create.finalize())
            .map_err(|e| MqttError::Client(format!("cannot create the MQTT client: {e}")))?;
        let (state, _) = watch::channel(ConnState {
            status: ConnStatus::Disconnected,
            reconnects: 0,
        });
        let signals = Arc::new(Signals {
            connected: AtomicBool::new(false),
            lost: Notify::new(),
            state,
        });
        let s = Arc::clone(&signals);
        client.set_connection_lost_callback(move |_| s.on_lost());
        let s = Arc::clone(&signals);
        // MQTT 5: the broker sent DISCONNECT.
        client.set_disconnected_callback(move |_, _, _| s.on_lost());
        if let Some(mut f) = on_message {
            client.set_message_callback(move |_, msg| {
                if let Some(m) = msg {
                    f(m);
                }
            });
        }
        Ok(Arc::new(Link {
            client,
            cfg: Arc::new(cfg),
            urls,
            servers,
            signals,
            role,
            closing: AtomicBool::new(false),
            shutdown: Notify::new(),
        }))
    }

    pub(crate) fn subscribe_state(&self) -> watch::Receiver<ConnState> {
        self.signals.state.subscribe()
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.signals.connected.load(Ordering::Acquire)
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Stop the supervisor (no more reconnects) and mark the state closed.
    pub(crate) fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.shutdown.notify_one();
        self.signals.connected.store(false, Ordering::Release);
        self.signals
            .state
            .send_modify(|s| s.status = ConnStatus::Closed);
    }

    /// First connect: retry transient failures with `backoff`, fail at once
    /// on permanent ones (TLS, credentials, configuration). Then start the
    /// reconnect supervisor.
    pub(crate) async fn start(self: &Arc<Self>, mut backoff: Backoff) -> Result<(), MqttError> {
        loop {
            match self.connect_once().await {
                Ok(session_present) => {
                    self.after_connect(session_present, true).await?;
                    backoff.reset();
                    let me = Arc::clone(self);
                    tokio::spawn(async move { me.supervise(backoff).await });
                    return Ok(());
                }
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => match backoff.next_delay() {
                    Some(d) => {
                        tracing::warn!(servers = %self.servers, error = %e, delay_ms = d.as_millis() as u64, "connect failed; retrying in {} ms", d.as_millis());
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(e),
                },
            }
        }
    }

    async fn supervise(self: Arc<Self>, mut backoff: Backoff) {
        loop {
            tokio::select! {
                _ = self.signals.lost.notified() => {}
                _ = self.shutdown.notified() => return,
            }
            if self.is_closing() {
                return;
            }
            if self.client.is_connected() {
                continue; // a stale wake-up
            }
            tracing::warn!(servers = %self.servers, client_id = %self.cfg.client_id, "disconnected");
            backoff.reset();
            loop {
                let Some(delay) = backoff.next_delay() else {
                    tracing::error!(servers = %self.servers, attempts = backoff.attempts(), "giving up reconnecting (backoff policy exhausted)");
                    self.signals
                        .state
                        .send_modify(|s| s.status = ConnStatus::Failed);
                    return;
                };
                tracing::info!(servers = %self.servers, delay_ms = delay.as_millis() as u64, "retrying in {} ms", delay.as_millis());
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = self.shutdown.notified() => return,
                }
                if self.is_closing() {
                    return;
                }
                match self.connect_once().await {
                    Ok(session_present) => {
                        if let Err(e) = self.after_connect(session_present, false).await {
                            tracing::warn!(error = %e, "after-connect step failed");
                        }
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(servers = %self.servers, error = %e, "reconnect failed")
                    }
                }
            }
        }
    }

    /// One connect attempt with fresh options (a fresh will timestamp).
    /// Returns whether the broker kept a session.
    async fn connect_once(&self) -> Result<bool, MqttError> {
        let opts = self.connect_options()?;
        if self.cfg.insecure_skip_verify && self.urls.iter().any(BrokerUrl::is_tls) {
            tracing::warn!(servers = %self.servers, "TLS server certificate and host name are NOT verified (mqtt.insecure_skip_verify = true); anyone on the path can read and forge this connection");
        }
        let limit = self.cfg.connect_timeout() + Duration::from_secs(5);
        match tokio::time::timeout(limit, self.client.connect(opts)).await {
            Err(_) => Err(MqttError::Timeout {
                what: "connect",
                after: limit,
            }),
            Ok(Ok(rsp)) => Ok(rsp.connect_response().is_some_and(|c| c.session_present)),
            Ok(Err(e)) => Err(self.classify(e).await),
        }
    }

    async fn after_connect(&self, session_present: bool, first: bool) -> Result<(), MqttError> {
        self.signals.connected.store(true, Ordering::Release);
        let mut result = Ok(());
        match &self.role {
            Role::Publisher => {
                if let Some(msg) = status_message(&self.cfg, "online") {
                    let tok = self.client.publish(msg);
                    tokio::spawn(async move {
                        if let Err(e) = tok.await {
                            tracing::warn!(error = %e, "publishing the online status failed");
                        }
                    });
                }
            }
            Role::Subscriber { filters, qos } => {
                if (!session_present || self.cfg.clean_session) && !filters.is_empty() {
                    let qos = vec![*qos; filters.len()];
                    let tok = self.client.subscribe_many(filters, &qos);
                    let limit = self.cfg.confirm_timeout();
                    result = match tokio::time::timeout(limit, tok).await {
                        Err(_) => Err(MqttError::Timeout {
                            what: "subscribe",
                            after: limit,
                        }),
                        Ok(Err(e)) => Err(MqttError::Rejected {
                            what: "subscribe",
                            reason: e.to_string(),
                        }),
                        Ok(Ok(_)) => Ok(()),
                    };
                }
            }
        }
        self.signals.state.send_modify(|s| {
            s.status = ConnStatus::Connected;
            if !first {
                s.reconnects += 1;
            }
        });
        tracing::info!(servers = %self.servers, client_id = %self.cfg.client_id, session_present, "connected");
        result
    }

    fn connect_options(&self) -> Result<paho::ConnectOptions, MqttError> {
        let cfg = &self.cfg;
        let mut b = match cfg.protocol {
            Protocol::V311 => {
                paho::ConnectOptionsBuilder::with_mqtt_version(paho::MqttVersion::V3_1_1)
            }
            Protocol::V5 => paho::ConnectOptionsBuilder::new_v5(),
        };
        b.keep_alive_interval(cfg.keep_alive())
            .connect_timeout(cfg.connect_timeout())
            .max_inflight(i32::try_from(cfg.inflight).unwrap_or(65_535));
        match cfg.protocol {
            Protocol::V311 => {
                b.clean_session(cfg.clean_session);
            }
            Protocol::V5 => {
                b.clean_start(cfg.clean_session);
                if !cfg.clean_session {
                    // MQTT 5 ends the session at disconnect unless told otherwise.
                    let mut props = paho::Properties::new();
                    props
                        .push_int(paho::PropertyCode::SessionExpiryInterval, i32::MAX)
                        .map_err(|e| MqttError::Client(e.to_string()))?;
                    b.properties(props);
                }
            }
        }
        if self.urls.len() > 1 {
            let uris: Vec<String> = self.urls.iter().map(BrokerUrl::paho_uri).collect();
            b.server_uris(&uris);
        }
        if !cfg.username.is_empty() {
            b.user_name(cfg.username.clone());
            if !cfg.password.is_empty() {
                b.password(cfg.password.expose());
            }
        }
        // With several URIs Paho C prints "checking <uri>" to stdout for each
        // one unless TLS options are present; they are ignored for tcp:// and ws://.
        if self.urls.len() > 1 || self.urls.iter().any(BrokerUrl::is_tls) {
            b.ssl_options(ssl_options(cfg)?);
        }
        if matches!(self.role, Role::Publisher)
            && let Some(will) = status_message(cfg, "offline")
        {
            b.will_message(will);
        }
        Ok(b.finalize())
    }

    /// Map a failed connect to an error a person can act on.
    async fn classify(&self, e: paho::Error) -> MqttError {
        use paho::{ConnectReturnCode as C, ReasonCode as R};
        let server = self.servers.clone();
        let auth = |reason: &str| MqttError::Auth {
            server: server.clone(),
            reason: reason.into(),
        };
        match &e {
            paho::Error::ConnectReturn(C::BadUserNameOrPassword) => {
                auth("bad username or password")
            }
            paho::Error::ConnectReturn(C::NotAuthorized) => auth("not authorized"),
            paho::Error::ReasonCode(R::BadUserNameOrPassword, _) => {
                auth("bad username or password")
            }
            paho::Error::ReasonCode(R::NotAuthorized, _) => auth("not authorized"),
            paho::Error::ConnectReturn(rc) => MqttError::Connect {
                server,
                reason: format!("CONNACK: {rc}"),
            },
            paho::Error::ReasonCode(rc, _) => MqttError::Connect {
                server,
                reason: format!("CONNACK: {rc}"),
            },
            paho::Error::TcpConnectTimeout => MqttError::Timeout {
                what: "connect",
                after: self.cfg.connect_timeout(),
            },
            _ => {
                // Paho does not say which step failed (TCP, TLS, MQTT): find out.
                let url = self.urls[0].clone();
                let cfg = Arc::clone(&self.cfg);
                let timeout = self.cfg.connect_timeout().min(Duration::from_secs(5));
                let paho_error = e.to_string();
                match tokio::task::spawn_blocking(move || {
                    crate::diagnose::diagnose(&url, &cfg, timeout, &paho_error)
                })
                .await
                {
                    Ok(err) => err,
                    Err(_) => MqttError::Connect {
                        server,
                        reason: e.to_string(),
                    },
                }
            }
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.closing.store(true, Ordering::Release);
        self.shutdown.notify_one();
        // Paho trap: connect and subscribe tokens hold clones of the client,
        // and the C library drops its token reference on its own thread right
        // after the completion callback. If that is the last reference, the
        // client is destroyed on the Paho thread, which then deadlocks on its
        // own global mutex (seen in tests: `MQTTAsync_destroy` called from
        // `MQTTAsync_rcv`). So the last reference is dropped here, on a
        // short-lived thread of ours, a moment after every callback ended.
        let client = self.client.clone();
        let bury = move || {
            std::thread::sleep(Duration::from_millis(500));
            drop(client);
        };
        if let Err(e) = std::thread::Builder::new()
            .name("nemo-mqtt-drop".into())
            .spawn(bury)
        {
            tracing::warn!(error = %e, "cannot spawn the client drop thread; dropping the client here");
        }
    }
}

fn ssl_options(cfg: &MqttConfig) -> Result<paho::SslOptions, MqttError> {
    let mut b = paho::SslOptionsBuilder::new();
    if let Some(ca) = &cfg.ca_file {
        b.trust_store(ca).map_err(|e| {
            MqttError::config(
                "ca_file",
                format!("'{}'", ca.display()),
                format!("cannot be used: {e}"),
            )
        })?;
    }
    if let (Some(cert), Some(key)) = (&cfg.client_cert, &cfg.client_key) {
        b.key_store(cert).map_err(|e| {
            MqttError::config(
                "client_cert",
                format!("'{}'", cert.display()),
                format!("cannot be used: {e}"),
            )
        })?;
        b.private_key(key).map_err(|e| {
            MqttError::config(
                "client_key",
                format!("'{}'", key.display()),
                format!("cannot be used: {e}"),
            )
        })?;
    }
    // Paho checks the host name only with `verify(true)` (DESIGN §6): always
    // on, unless explicitly disabled (and then warned about at every connect).
    let verify = !cfg.insecure_skip_verify;
    b.enable_server_cert_auth(verify).verify(verify);
    Ok(b.finalize())
}

/// The retained status document: `{"state":"online","since":"<RFC 3339>","version":"x.y.z"}`.
pub(crate) fn status_payload(state: &str) -> String {
    let since = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let q = |v: &str| serde_json::Value::from(v).to_string();
    format!(
        r#"{{"state":{},"since":{},"version":{}}}"#,
        q(state),
        q(&since),
        q(env!("CARGO_PKG_VERSION"))
    )
}

pub(crate) fn status_message(cfg: &MqttConfig, state: &str) -> Option<paho::Message> {
    if cfg.status_topic.is_empty() {
        return None;
    }
    let doc = status_payload(state);
    let payload = match cfg.status_hmac_key.as_ref().filter(|k| !k.is_empty()) {
        Some(key) => nemo_events::hmac::sign(&doc, key.expose().as_bytes()),
        None => doc,
    };
    Some(paho::Message::new_retained(
        cfg.status_topic.clone(),
        payload,
        paho::QoS::AtLeastOnce,
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn status_document_shape() {
        let doc = status_payload("online");
        assert!(doc.starts_with(r#"{"state":"online","since":""#), "{doc}");
        assert!(
            doc.ends_with(&format!(r#"","version":"{}"}}"#, env!("CARGO_PKG_VERSION"))),
            "{doc}"
        );
        let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
        let since = v["since"].as_str().unwrap();
        time::OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339).unwrap();
    }

    #[test]
    fn status_message_is_retained_qos1_and_optional() {
        let m = status_message(&MqttConfig::default(), "offline").unwrap();
        assert_eq!(
            (m.topic(), m.retained(), m.qos()),
            ("nemo/bridge/status", true, paho::QoS::AtLeastOnce)
        );
        let off = MqttConfig {
            status_topic: String::new(),
            ..Default::default()
        };
        assert!(status_message(&off, "offline").is_none());
    }

    #[test]
    fn with_a_key_the_status_is_a_signed_envelope() {
        let cfg = MqttConfig {
            status_hmac_key: Some(crate::Secret::new("k")),
            ..Default::default()
        };
        let m = status_message(&cfg, "offline").unwrap();
        let inner = nemo_events::hmac::verify(m.payload(), b"k").unwrap();
        let v: serde_json::Value = serde_json::from_str(&inner).unwrap();
        assert_eq!(v["state"], "offline");
        assert!(nemo_events::hmac::verify(m.payload(), b"other").is_err());
    }
}
