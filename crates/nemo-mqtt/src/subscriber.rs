//! [`Subscriber`]: receive messages (for the monitor and replay tools).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use nemo_backoff::{Backoff, BackoffConfig};
use nemo_events::Qos;
use paho_mqtt as paho;
use tokio::sync::{mpsc, watch};

use crate::link::{Link, Role};
use crate::{ConnState, MqttConfig, MqttError};

/// One message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// The topic it was published on.
    pub topic: String,
    /// The exact payload bytes.
    pub payload: Bytes,
    /// The QoS it was delivered with (the minimum of publish and subscribe QoS).
    pub qos: Qos,
    /// True when delivered from the broker's retained store (a message that
    /// was already there when we subscribed).
    pub retain: bool,
    /// When it arrived here (UTC).
    pub received_at: time::OffsetDateTime,
}

/// A subscription to topic filters, with reconnect.
///
/// The session is clean or persistent per `mqtt.clean_session`: with
/// `clean_session = false` (and a stable `client_id`) the broker queues QoS
/// 1/2 messages while we are away and delivers them after the reconnect.
/// After a reconnect without a kept session the filters are subscribed
/// again. Messages are handed over through an unbounded channel (the Paho
/// callback thread must never block), so a consumer that stops reading
/// grows memory; read promptly.
///
/// Use a `client_id` different from the bridge's: a broker disconnects the
/// older of two clients with the same id.
///
/// ```no_run
/// # async fn demo() -> Result<(), nemo_mqtt::MqttError> {
/// use nemo_mqtt::{MqttConfig, Subscriber};
/// let cfg = MqttConfig { client_id: "nemo-monitor".into(), ..MqttConfig::for_url("mqtt://127.0.0.1:1884") };
/// let mut sub = Subscriber::connect(cfg, &["nemo/tools/+/+", "nemo/tools/+"], nemo_events::Qos::AtLeastOnce).await?;
/// while let Some(msg) = sub.recv().await {
///     println!("{} {} bytes", msg.topic, msg.payload.len());
/// }
/// # Ok(()) }
/// ```
pub struct Subscriber {
    link: Arc<Link>,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl std::fmt::Debug for Subscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscriber")
            .field("url", &self.link.cfg.url)
            .field("client_id", &self.link.cfg.client_id)
            .field("connected", &self.link.is_connected())
            .finish_non_exhaustive()
    }
}

fn from_paho(q: paho::QoS) -> Qos {
    match q {
        paho::QoS::AtMostOnce => Qos::AtMostOnce,
        paho::QoS::AtLeastOnce => Qos::AtLeastOnce,
        paho::QoS::ExactlyOnce => Qos::ExactlyOnce,
    }
}

impl Subscriber {
    /// Connect and subscribe to `filters` at `qos`, reconnecting with the
    /// default backoff policy (200 ms .. 30 s, full jitter, unlimited).
    ///
    /// # Errors
    /// As [`Publisher::connect`](crate::Publisher::connect), plus
    /// [`MqttError::Rejected`] when the broker refuses a filter.
    pub async fn connect(
        cfg: MqttConfig,
        filters: &[&str],
        qos: Qos,
    ) -> Result<Subscriber, MqttError> {
        Self::connect_with_backoff(cfg, filters, qos, Backoff::new(&BackoffConfig::default())).await
    }

    /// [`connect`](Self::connect) with an explicit backoff policy.
    ///
    /// # Errors
    /// As [`connect`](Self::connect).
    pub async fn connect_with_backoff(
        cfg: MqttConfig,
        filters: &[&str],
        qos: Qos,
        backoff: Backoff,
    ) -> Result<Subscriber, MqttError> {
        if filters.is_empty() {
            return Err(MqttError::config(
                "subscribe",
                "[]",
                "needs at least one topic filter",
            ));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let on_message = Box::new(move |m: paho::Message| {
            let _ = tx.send(Received {
                topic: m.topic().to_string(),
                payload: Bytes::copy_from_slice(m.payload()),
                qos: from_paho(m.qos()),
                retain: m.retained(),
                received_at: time::OffsetDateTime::now_utc(),
            });
        });
        let role = Role::Subscriber {
            filters: filters.iter().map(|f| (*f).to_string()).collect(),
            qos: i32::from(qos.as_u8()),
        };
        let link = Link::new(cfg, role, Some(on_message))?;
        if let Err(e) = link.start(backoff).await {
            link.close();
            return Err(e);
        }
        Ok(Subscriber { link, rx })
    }

    /// The next message; `None` after [`shutdown`](Self::shutdown).
    /// Waits across reconnects.
    pub async fn recv(&mut self) -> Option<Received> {
        self.rx.recv().await
    }

    /// A message if one is waiting, without waiting.
    pub fn try_recv(&mut self) -> Option<Received> {
        self.rx.try_recv().ok()
    }

    /// The connection state; changes on every disconnect and reconnect.
    pub fn state(&self) -> watch::Receiver<ConnState> {
        self.link.subscribe_state()
    }

    /// Stop reconnecting and disconnect cleanly. Messages already received
    /// can still be read; then [`recv`](Self::recv) returns `None`.
    ///
    /// # Errors
    /// The disconnect failed or timed out; the connection is closed anyway.
    pub async fn shutdown(&mut self) -> Result<(), MqttError> {
        let was_connected = self.link.is_connected();
        self.link.close();
        let limit = self.link.cfg.connect_timeout();
        let res = tokio::time::timeout(limit, self.link.client.disconnect(None)).await;
        self.link.client.remove_message_callback();
        match res {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) if !was_connected => Ok(()),
            Ok(Err(e)) => Err(MqttError::Client(format!("disconnect failed: {e}"))),
            Err(_) => Err(MqttError::Timeout {
                what: "disconnect",
                after: limit,
            }),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.link.close();
    }
}

impl futures::Stream for Subscriber {
    type Item = Received;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Received>> {
        self.rx.poll_recv(cx)
    }
}
