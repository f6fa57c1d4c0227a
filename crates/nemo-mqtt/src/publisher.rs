//! [`Publisher`]: confirmed publishing, status/LWT, reconnect.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use nemo_backoff::Backoff;
use nemo_events::Qos;
use paho_mqtt as paho;
use tokio::sync::watch;

use crate::config::WhenDisconnected;
use crate::link::{Link, Role, status_message};
use crate::{Confirm, ConnState, EventSink, MqttConfig, MqttError, OutMessage};

/// A broker connection that publishes with confirmation.
///
/// * **Confirms.** [`publish`](EventSink::publish) hands the message to the
///   client at once and returns a future that resolves when the broker
///   confirmed it (PUBACK for QoS 1, PUBCOMP for QoS 2, socket write for
///   QoS 0) — or with an error when it will not be confirmed: connection lost
///   with a clean session, buffer full, or no confirmation within
///   `mqtt.confirm_timeout_s`. So every publish resolves; none hangs.
///   Confirmations of one QoS resolve in publish order.
/// * **Status.** With `mqtt.status_topic` set, the last will is a retained
///   `{"state":"offline",...}`; after every (re)connect a retained
///   `{"state":"online","since":"<RFC 3339>","version":"..."}` is published,
///   and [`shutdown`](Self::shutdown) publishes `offline` before disconnecting
///   (a clean DISCONNECT makes the broker drop the will).
/// * **Reconnect.** On connection loss a supervisor task reconnects with the
///   given backoff policy; watch it with [`state`](Self::state).
/// * **While disconnected.** `when_disconnected = "wait"`: publishes are
///   buffered in the client (up to `max_buffered`) and sent after the
///   reconnect. `"fail"`: they fail at once with [`MqttError::NotConnected`].
///
/// Must be created inside a Tokio runtime.
///
/// ```no_run
/// # async fn demo() -> Result<(), nemo_mqtt::MqttError> {
/// use nemo_mqtt::{EventSink, MqttConfig, OutMessage, Publisher};
/// let cfg = MqttConfig::for_url("mqtt://127.0.0.1:1884");
/// let publisher = Publisher::connect(cfg, nemo_backoff::Backoff::new(&Default::default())).await?;
/// let confirm = publisher.publish(OutMessage {
///     topic: "nemo/tools/12/enabled".into(),
///     payload: bytes::Bytes::from_static(b"{\"tool_id\": 12}"),
///     qos: nemo_events::Qos::AtLeastOnce,
///     retain: false,
/// });
/// confirm.await?; // PUBACK received
/// publisher.shutdown().await?;
/// # Ok(()) }
/// ```
/// Clones share one connection; it closes when the last clone is dropped
/// (or at [`shutdown`](Self::shutdown)).
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    link: Arc<Link>,
    fail_fast: bool,
    confirm_timeout: Duration,
    max_buffered: usize,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Stops the supervisor, which drops the last `Link` and the client.
        self.link.close();
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("url", &self.inner.link.cfg.url)
            .field("client_id", &self.inner.link.cfg.client_id)
            .field("connected", &self.inner.link.is_connected())
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Validate `cfg`, connect, publish the online status and start the
    /// reconnect supervisor.
    ///
    /// Transient failures of the first connect (refused, timeout) are retried
    /// with `backoff` until its policy gives up; permanent ones return at once.
    ///
    /// # Errors
    /// [`MqttError::InvalidUrl`] / [`MqttError::Config`] for bad settings,
    /// [`MqttError::Tls`] (with the certificate problem, e.g. "certificate
    /// verify failed: certificate has expired"), [`MqttError::Auth`],
    /// [`MqttError::Connect`] or [`MqttError::Timeout`] once `backoff` gives up.
    pub async fn connect(cfg: MqttConfig, backoff: Backoff) -> Result<Publisher, MqttError> {
        let fail_fast = cfg.when_disconnected == WhenDisconnected::Fail;
        let confirm_timeout = cfg.confirm_timeout();
        let max_buffered = cfg.max_buffered;
        let link = Link::new(cfg, Role::Publisher, None)?;
        link.start(backoff).await?;
        Ok(Publisher {
            inner: Arc::new(Inner {
                link,
                fail_fast,
                confirm_timeout,
                max_buffered,
            }),
        })
    }

    /// The connection state; changes on every disconnect and reconnect.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.inner.link.subscribe_state()
    }

    /// The configuration in use.
    pub fn config(&self) -> &MqttConfig {
        &self.inner.link.cfg
    }

    /// Publish the bridge's queue figures, retained at QoS 1 on the sibling `queue` of the
    /// status topic ([`crate::figures_topic`]), signed with the status key when one is set.
    /// `None` (nothing sent) when no status topic is configured or the connection is closing.
    ///
    /// The returned confirmation may be dropped: the figures are refreshed, not queued.
    pub fn publish_figures(&self, figures: &crate::QueueFigures) -> Option<Confirm> {
        let cfg = &self.inner.link.cfg;
        let topic = crate::figures_topic(&cfg.status_topic)?;
        if self.inner.link.is_closing() || !self.inner.link.is_connected() {
            return None;
        }
        let key = cfg.status_hmac_key.as_ref().map(|k| k.expose().as_bytes());
        Some(self.publish(OutMessage {
            topic,
            payload: bytes::Bytes::from(figures.payload(key)),
            qos: Qos::AtLeastOnce,
            retain: true,
        }))
    }

    /// Stop: no more reconnects, publish the retained `offline` status (if
    /// connected and a status topic is set), then disconnect cleanly, waiting
    /// up to `confirm_timeout_s` for messages still in flight. Later publishes
    /// fail with [`MqttError::Closed`].
    ///
    /// # Errors
    /// The offline status was not confirmed or the disconnect failed; the
    /// connection is closed either way.
    pub async fn shutdown(&self) -> Result<(), MqttError> {
        self.close(true).await
    }

    /// Like [`shutdown`](Self::shutdown), but without the `offline` status: for a bridge that
    /// lost its single-active lock, whose successor may already have published `online` on
    /// the same topic. A clean DISCONNECT sends no last will either.
    ///
    /// # Errors
    /// The disconnect failed; the connection is closed either way.
    pub async fn shutdown_quietly(&self) -> Result<(), MqttError> {
        self.close(false).await
    }

    async fn close(&self, offline_status: bool) -> Result<(), MqttError> {
        let was_connected = self.inner.link.is_connected();
        self.inner.link.close();
        let mut result = Ok(());
        if was_connected
            && offline_status
            && let Some(msg) = status_message(&self.inner.link.cfg, "offline")
        {
            let tok = self.inner.link.client.publish(msg);
            result = confirm(tok, self.inner.confirm_timeout, self.inner.max_buffered).await;
        }
        let opts = paho::DisconnectOptionsBuilder::new()
            .timeout(self.inner.confirm_timeout)
            .finalize();
        let limit = self.inner.confirm_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, self.inner.link.client.disconnect(opts)).await {
            Ok(Ok(_)) => {}
            Ok(Err(paho::Error::Disconnected)) => {}
            Ok(Err(e)) if was_connected => {
                result = result.and(Err(MqttError::Client(format!("disconnect failed: {e}"))))
            }
            Ok(Err(_)) => {}
            Err(_) => {
                result = result.and(Err(MqttError::Timeout {
                    what: "disconnect",
                    after: limit,
                }))
            }
        }
        tracing::info!(client_id = %self.inner.link.cfg.client_id, "disconnected (shutdown)");
        result
    }
}

fn to_paho(q: Qos) -> paho::QoS {
    match q {
        Qos::AtMostOnce => paho::QoS::AtMostOnce,
        Qos::AtLeastOnce => paho::QoS::AtLeastOnce,
        Qos::ExactlyOnce => paho::QoS::ExactlyOnce,
    }
}

async fn confirm(
    tok: paho::DeliveryToken,
    after: Duration,
    max_buffered: usize,
) -> Result<(), MqttError> {
    match tokio::time::timeout(after, tok).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(publish_error(e, max_buffered)),
        Err(_) => Err(MqttError::Timeout {
            what: "publish",
            after,
        }),
    }
}

fn publish_error(e: paho::Error, max_buffered: usize) -> MqttError {
    match e {
        paho::Error::MaxBufferedMessages => MqttError::BufferFull { max: max_buffered },
        paho::Error::Disconnected => MqttError::NotConnected,
        paho::Error::OperationIncomplete | paho::Error::Failure | paho::Error::SocketError(_) => {
            MqttError::ConnectionLost
        }
        paho::Error::ReasonCode(rc, _) => MqttError::Rejected {
            what: "publish",
            reason: rc.to_string(),
        },
        paho::Error::BadQos | paho::Error::BadUtf8String | paho::Error::TopicNameTruncated => {
            MqttError::Rejected {
                what: "publish",
                reason: e.to_string(),
            }
        }
        other => MqttError::Client(other.to_string()),
    }
}

impl EventSink for Publisher {
    fn publish(&self, msg: OutMessage) -> Confirm {
        if self.inner.link.is_closing() {
            return futures::future::ready(Err(MqttError::Closed)).boxed();
        }
        if self.inner.fail_fast && !self.inner.link.is_connected() {
            return futures::future::ready(Err(MqttError::NotConnected)).boxed();
        }
        let OutMessage {
            topic,
            payload,
            qos,
            retain,
        } = msg;
        // `Vec::from(Bytes)` reuses the buffer when it is uniquely owned.
        let payload = Vec::from(payload);
        let m = if retain {
            paho::Message::new_retained(topic, payload, to_paho(qos))
        } else {
            paho::Message::new(topic, payload, to_paho(qos))
        };
        let tok = self.inner.link.client.publish(m);
        confirm(tok, self.inner.confirm_timeout, self.inner.max_buffered).boxed()
    }

    fn is_connected(&self) -> bool {
        self.inner.link.is_connected()
    }

    fn connection_state(&self) -> Option<watch::Receiver<ConnState>> {
        Some(self.state())
    }
}
