//! The feed task: read the events, keep each tool's status, publish it to the displays.
//!
//! ```text
//!  events' broker                        the feed (one task)                   displays' broker
//!  nemo/tools/+/+      ── subscribe ──►  verify HMAC (with a key)
//!  nemo/tools/overall                    project (crate::project)
//!  (retained: nemo/tools/{id}/state)     Board: latest status per tool  ── PUBLISH retained QoS 1 ──►
//!                                        ▲ changed? publish that tool          nemo/esp32/{id}/status
//!                                        └ (re)connected? publish every tool   nemo/esp32/overall
//! ```
//!
//! The board is all the feed keeps: one document per tool, the latest. A publish that fails
//! is not queued; the tool is marked and published again (its *current* document) when the
//! displays' broker is connected, and after every reconnect every tool is published again.
//! So an outage of the displays' broker costs no memory beyond the board and never reaches
//! the events' queue, and when it ends every display gets its tool's current status.
//!
//! At the start the board is filled from what the events' broker holds retained: the tool
//! state documents the bridge publishes (`topics.state_topics`, on by default) and any retained
//! event. Retained messages arrive in no particular order, so one replaces a tool's status only
//! when its event time is not older; live messages replace it in the order they arrive (the
//! bridge publishes in queue order).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use jiff::Timestamp;
use nemo_backoff::BackoffConfig;
use nemo_events::Qos;
use nemo_mqtt::{
    ConnState, ConnStatus, EventSink, MqttConfig, OutMessage, Publisher, Received, Subscriber,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::project::{Kind, project, project_state};
use crate::{DisplayConfig, DisplayError, DisplayZone};

/// How often tools whose last publish failed are tried again while connected.
const RETRY_EVERY: Duration = Duration::from_secs(2);
/// Pause before connecting again after a connect that failed for good (bad login, TLS).
const RECONNECT_PAUSE: Duration = Duration::from_secs(10);

/// One tool on the board.
#[derive(Debug, Clone)]
struct Entry {
    json: String,
    event_time: Option<Timestamp>,
}

/// The latest status of every tool, and the overall document.
#[derive(Debug)]
pub(crate) struct Board {
    tools_root: String,
    out_prefix: String,
    zone: DisplayZone,
    max_name_length: usize,
    tools: BTreeMap<String, Entry>,
    last_users: HashMap<String, String>,
    overall: Option<String>,
}

/// A retained message to publish: (topic, payload).
pub(crate) type Out = (String, String);

impl Board {
    pub(crate) fn new(cfg: &DisplayConfig, zone: DisplayZone) -> Board {
        Board {
            tools_root: format!("{}/tools/", cfg.events_prefix),
            out_prefix: cfg.topic_prefix.clone(),
            zone,
            max_name_length: cfg.max_name_length,
            tools: BTreeMap::new(),
            last_users: HashMap::new(),
            overall: None,
        }
    }

    fn status_topic(&self, tool_id: &str) -> String {
        format!("{}/{tool_id}/status", self.out_prefix)
    }

    fn overall_topic(&self) -> String {
        format!("{}/overall", self.out_prefix)
    }

    /// Take one message (payload already verified and unwrapped). `Some` = publish this,
    /// because the tool's (or the overall) document changed.
    pub(crate) fn apply(
        &mut self,
        topic: &str,
        payload: &str,
        retained: bool,
        received_at: Timestamp,
    ) -> Option<Out> {
        let rest = topic.strip_prefix(self.tools_root.as_str())?;
        if rest == "overall" {
            if self.overall.as_deref() == Some(payload) {
                return None;
            }
            self.overall = Some(payload.to_string());
            return Some((self.overall_topic(), payload.to_string()));
        }
        let (topic_id, level) = rest.split_once('/')?;
        if level.contains('/') {
            return None;
        }
        let last_user = self.last_users.get(topic_id).map(String::as_str);
        let projected = if level == "state" {
            project_state(
                topic_id,
                payload,
                &self.zone,
                self.max_name_length,
                last_user,
                received_at,
            )
        } else {
            let kind = Kind::from_level(level)?;
            project(
                kind,
                topic_id,
                payload,
                &self.zone,
                self.max_name_length,
                last_user,
                received_at,
            )
        }?;
        let existing = self.tools.get(&projected.tool_id);
        if retained
            && let Some(have) = existing
            && (projected.event_time.is_none() || projected.event_time < have.event_time)
        {
            // A retained message of unknown or older age does not undo what is known.
            return None;
        }
        if let Some(user) = &projected.user {
            self.last_users.insert(topic_id.to_string(), user.clone());
            if projected.tool_id != topic_id {
                self.last_users
                    .insert(projected.tool_id.clone(), user.clone());
            }
        }
        let json = projected.status.to_json();
        let unchanged = existing.is_some_and(|have| have.json == json);
        self.tools.insert(
            projected.tool_id.clone(),
            Entry {
                json: json.clone(),
                event_time: projected.event_time,
            },
        );
        if unchanged {
            return None;
        }
        Some((self.status_topic(&projected.tool_id), json))
    }

    /// Every document, for a (re)connect of the displays' broker.
    pub(crate) fn all(&self) -> Vec<Out> {
        let mut out: Vec<Out> = self
            .tools
            .iter()
            .map(|(id, e)| (self.status_topic(id), e.json.clone()))
            .collect();
        if let Some(o) = &self.overall {
            out.push((self.overall_topic(), o.clone()));
        }
        out
    }

    /// The current document on `topic`, if any (to retry a failed publish with what is
    /// current now, not what failed).
    pub(crate) fn current(&self, topic: &str) -> Option<String> {
        if topic == self.overall_topic() {
            return self.overall.clone();
        }
        let id = topic
            .strip_prefix(self.out_prefix.as_str())?
            .strip_prefix('/')?
            .strip_suffix("/status")?;
        self.tools.get(id).map(|e| e.json.clone())
    }
}

/// The running display feed (see the crate docs). Dropping it stops the task;
/// [`shutdown`](Self::shutdown) also disconnects cleanly.
#[derive(Debug)]
pub struct DisplayFeed {
    connected: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl DisplayFeed {
    /// Start the feed: `cfg` the `[display]` table (validated), `events` the `[mqtt]` table of
    /// the events' broker, `hmac_key` the `[hmac]` key (with it, only messages whose envelope
    /// verifies are shown), `backoff` the reconnect policy. Returns at once; the connections are
    /// made (and remade) in the background. Must be called inside a Tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), nemo_display::DisplayError> {
    /// let cfg = nemo_display::DisplayConfig { enabled: true, ..Default::default() };
    /// let events = nemo_mqtt::MqttConfig::for_url("mqtt://127.0.0.1:1883");
    /// let feed = nemo_display::DisplayFeed::spawn(&cfg, &events, None, Default::default())?;
    /// let mut up = feed.connected();
    /// up.wait_for(|c| *c).await.ok();
    /// feed.shutdown().await;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`DisplayError::Invalid`] when `cfg` does not validate.
    pub fn spawn(
        cfg: &DisplayConfig,
        events: &MqttConfig,
        hmac_key: Option<Vec<u8>>,
        backoff: BackoffConfig,
    ) -> Result<DisplayFeed, DisplayError> {
        cfg.validate()?;
        let zone = DisplayZone::parse(&cfg.timezone)?;
        info!(
            topic_prefix = %cfg.topic_prefix,
            timezone = %zone.name(),
            own_broker = !cfg.url.is_empty(),
            "display: feeding the tool displays"
        );
        let (connected_tx, connected) = watch::channel(false);
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = Task {
            board: Board::new(cfg, zone),
            out_cfg: cfg.displays_broker(events),
            in_cfg: cfg.events_broker(events),
            filters: vec![
                format!("{}/tools/+/+", cfg.events_prefix),
                format!("{}/tools/overall", cfg.events_prefix),
            ],
            hmac_key,
            backoff,
            connected: connected_tx,
            rejected: 0,
        };
        let task = tokio::spawn(task.run(stop_rx));
        Ok(DisplayFeed {
            connected,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// Whether the displays' broker is connected now; changes on every connect and loss.
    pub fn connected(&self) -> watch::Receiver<bool> {
        self.connected.clone()
    }

    /// Stop: disconnect from both brokers (each bounded by its `connect_timeout_s`).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for DisplayFeed {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Task {
    board: Board,
    out_cfg: MqttConfig,
    in_cfg: MqttConfig,
    filters: Vec<String>,
    hmac_key: Option<Vec<u8>>,
    backoff: BackoffConfig,
    connected: watch::Sender<bool>,
    rejected: u64,
}

/// Connect (again and again) until it works; a permanent error waits longer.
async fn connect_publisher(cfg: MqttConfig, backoff: BackoffConfig) -> Publisher {
    loop {
        match Publisher::connect(cfg.clone(), backoff.build()).await {
            Ok(p) => return p,
            Err(e) => {
                warn!(error = %e, "display: cannot connect to the displays' broker; trying again");
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

async fn connect_subscriber(
    cfg: MqttConfig,
    filters: Vec<String>,
    backoff: BackoffConfig,
) -> Subscriber {
    let filters: Vec<&str> = filters.iter().map(String::as_str).collect();
    loop {
        match Subscriber::connect_with_backoff(
            cfg.clone(),
            &filters,
            Qos::AtLeastOnce,
            backoff.build(),
        )
        .await
        {
            Ok(s) => return s,
            Err(e) => {
                warn!(error = %e, "display: cannot read the events' broker; trying again");
                tokio::time::sleep(RECONNECT_PAUSE).await;
            }
        }
    }
}

type Confirming = FuturesUnordered<
    futures::future::BoxFuture<'static, (String, Result<(), nemo_mqtt::MqttError>)>,
>;

impl Task {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut out_connect = Box::pin(connect_publisher(
            self.out_cfg.clone(),
            self.backoff.clone(),
        ));
        let mut in_connect = Box::pin(connect_subscriber(
            self.in_cfg.clone(),
            self.filters.clone(),
            self.backoff.clone(),
        ));
        let mut publisher: Option<Publisher> = None;
        let mut state: Option<watch::Receiver<ConnState>> = None;
        let mut reconnects = 0u64;
        let mut subscriber: Option<Subscriber> = None;
        let mut confirming = Confirming::new();
        let mut failed: BTreeSet<String> = BTreeSet::new();
        let mut retry = tokio::time::interval(RETRY_EVERY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                p = &mut out_connect, if publisher.is_none() => {
                    let st = p.state();
                    reconnects = st.borrow().reconnects;
                    info!("display: connected to the displays' broker; publishing every tool");
                    let _ = self.connected.send(st.borrow().is_connected());
                    for (topic, json) in self.board.all() {
                        publish(&p, &mut confirming, topic, json);
                    }
                    failed.clear();
                    state = Some(st);
                    publisher = Some(p);
                }
                s = &mut in_connect, if subscriber.is_none() => {
                    info!("display: reading the events");
                    subscriber = Some(s);
                }
                m = next_message(&mut subscriber) => match m {
                    Some(m) => {
                        if let Some((topic, json)) = self.take(&m) {
                            match &publisher {
                                Some(p) if p.is_connected() => {
                                    failed.remove(&topic);
                                    publish(p, &mut confirming, topic, json);
                                }
                                // Published with every tool when the broker is back.
                                _ => {}
                            }
                        }
                    }
                    None => {
                        warn!("display: the events' subscription ended; subscribing again");
                        subscriber = None;
                        in_connect = Box::pin(connect_subscriber(
                            self.in_cfg.clone(),
                            self.filters.clone(),
                            self.backoff.clone(),
                        ));
                    }
                },
                changed = state_changed(&mut state) => {
                    let Some(s) = changed else { continue };
                    let _ = self.connected.send(s.is_connected());
                    match s.status {
                        ConnStatus::Connected if s.reconnects != reconnects => {
                            reconnects = s.reconnects;
                            info!("display: the displays' broker is back; publishing every tool");
                            if let Some(p) = &publisher {
                                for (topic, json) in self.board.all() {
                                    publish(p, &mut confirming, topic, json);
                                }
                            }
                            failed.clear();
                        }
                        ConnStatus::Connected => {}
                        ConnStatus::Disconnected => {
                            warn!("display: lost the displays' broker; reconnecting");
                        }
                        ConnStatus::Failed | ConnStatus::Closed => {
                            warn!("display: the displays' broker connection gave up; connecting anew");
                            publisher = None;
                            state = None;
                            out_connect = Box::pin(connect_publisher(
                                self.out_cfg.clone(),
                                self.backoff.clone(),
                            ));
                        }
                    }
                }
                Some((topic, res)) = confirming.next(), if !confirming.is_empty() => {
                    if let Err(e) = res {
                        debug!(%topic, error = %e, "display: publish not confirmed; will publish again");
                        failed.insert(topic);
                    }
                }
                _ = retry.tick(), if !failed.is_empty() => {
                    if let Some(p) = publisher.as_ref().filter(|p| p.is_connected()) {
                        for topic in std::mem::take(&mut failed) {
                            if let Some(json) = self.board.current(&topic) {
                                publish(p, &mut confirming, topic, json);
                            }
                        }
                    }
                }
            }
        }
        let _ = self.connected.send(false);
        if let Some(p) = publisher {
            let _ = p.shutdown().await;
        }
        if let Some(mut s) = subscriber {
            let _ = s.shutdown().await;
        }
    }

    /// Verify, project, and update the board; `Some` = publish this.
    fn take(&mut self, m: &Received) -> Option<Out> {
        let payload = match &self.hmac_key {
            Some(key) => match nemo_events::hmac::verify(&m.payload, key) {
                Ok(p) => p,
                Err(e) => {
                    self.rejected += 1;
                    if self.rejected.is_power_of_two() {
                        warn!(topic = %m.topic, error = %e, rejected = self.rejected,
                            "display: ignored a message whose HMAC envelope does not verify");
                    }
                    return None;
                }
            },
            None => String::from_utf8_lossy(&m.payload).into_owned(),
        };
        let received_at = Timestamp::from_nanosecond(m.received_at.unix_timestamp_nanos())
            .unwrap_or_else(|_| Timestamp::now());
        self.board.apply(&m.topic, &payload, m.retain, received_at)
    }
}

fn publish(p: &Publisher, confirming: &mut Confirming, topic: String, json: String) {
    let confirm = p.publish(OutMessage {
        topic: topic.clone(),
        payload: bytes::Bytes::from(json),
        qos: Qos::AtLeastOnce,
        retain: true,
    });
    confirming.push(Box::pin(async move { (topic, confirm.await) }));
}

async fn next_message(sub: &mut Option<Subscriber>) -> Option<Received> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn state_changed(state: &mut Option<watch::Receiver<ConnState>>) -> Option<ConnState> {
    match state {
        Some(rx) => match rx.changed().await {
            Ok(()) => Some(*rx.borrow_and_update()),
            Err(_) => Some(ConnState {
                status: ConnStatus::Closed,
                reconnects: 0,
            }),
        },
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn board() -> Board {
        let cfg = DisplayConfig {
            timezone: "UTC".into(),
            ..Default::default()
        };
        Board::new(&cfg, DisplayZone::parse("UTC").unwrap())
    }

    fn now() -> Timestamp {
        "2026-01-02T03:04:05Z".parse().unwrap()
    }

    const ON: &str = r#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "SEM", "usage_id": 1, "user_name": "Jane Doe", "start_time": "2025-10-16T14:02:32+00:00"}"#;
    const OFF: &str = r#"{"event": "tool_disabled", "tool_id": 1, "tool_name": "SEM", "usage_id": 1, "user_name": "Jane Doe", "end_time": "2025-10-16T15:00:00+00:00"}"#;
    const STATE_ON: &str = r#"{"tool_id":1,"tool_name":"SEM","state":"in_use","user_name":"Jane Doe","since":"2025-10-16T14:02:32+00:00","event":"tool_enabled"}"#;
    const STATE_OFF: &str = r#"{"tool_id":1,"tool_name":"SEM","state":"idle","user_name":"Jane Doe","since":"2025-10-16T15:00:00+00:00","event":"tool_disabled"}"#;

    #[test]
    fn the_latest_event_wins_and_a_repeat_is_not_published_again() {
        let mut b = board();
        let (topic, json) = b.apply("nemo/tools/1/enabled", ON, false, now()).unwrap();
        assert_eq!(topic, "nemo/esp32/1/status");
        assert!(json.contains(r#""in_use": true"#), "{json}");
        // The bridge's state document right behind the event: the same status.
        assert_eq!(b.apply("nemo/tools/1/state", STATE_ON, false, now()), None);
        let (_, off) = b.apply("nemo/tools/1/disabled", OFF, false, now()).unwrap();
        assert!(off.contains(r#""event_type": "disabled""#));
        // A redelivery (at least once) of the older event, live: the stream's order counts.
        assert!(b.apply("nemo/tools/1/enabled", ON, false, now()).is_some());
        assert_eq!(b.all().len(), 1);
    }

    #[test]
    fn an_older_retained_message_does_not_undo_a_newer_one() {
        let mut b = board();
        b.apply("nemo/tools/1/state", STATE_OFF, true, now())
            .unwrap();
        assert_eq!(b.apply("nemo/tools/1/enabled", ON, true, now()), None);
        let all = b.all();
        assert!(all[0].1.contains("Disabled Since"), "{all:?}");
        // The other order: the newer one replaces.
        let mut b = board();
        b.apply("nemo/tools/1/enabled", ON, true, now()).unwrap();
        assert!(
            b.apply("nemo/tools/1/state", STATE_OFF, true, now())
                .is_some()
        );
    }

    #[test]
    fn other_types_and_topics_are_not_forwarded() {
        let mut b = board();
        for topic in [
            "nemo/tools/23/operational",
            "nemo/tools/23/non-operational",
            "nemo/tools/23/tasks",
            "nemo/tools/23",
            "nemo/areas/3",
            "other/tools/1/enabled",
            "nemo/tools/1/enabled/x",
        ] {
            assert_eq!(b.apply(topic, ON, false, now()), None, "{topic}");
        }
        assert!(b.all().is_empty());
    }

    #[test]
    fn overall_is_forwarded_verbatim() {
        let mut b = board();
        let doc = r#"{"tools_in_use": 3}"#;
        assert_eq!(
            b.apply("nemo/tools/overall", doc, false, now()),
            Some(("nemo/esp32/overall".into(), doc.into()))
        );
        assert_eq!(b.apply("nemo/tools/overall", doc, false, now()), None);
        assert_eq!(b.current("nemo/esp32/overall").as_deref(), Some(doc));
    }

    #[test]
    fn the_last_user_is_shown_when_an_event_names_none() {
        let mut b = board();
        b.apply("nemo/tools/5/enabled", r#"{"tool_id": 5, "user_name": "Ada Lovelace", "start_time": "2025-10-16T14:00:00+00:00"}"#, false, now()).unwrap();
        let (_, json) = b
            .apply(
                "nemo/tools/5/idle",
                r#"{"tool_id": 5, "timestamp": "2025-10-16T16:00:00+00:00"}"#,
                false,
                now(),
            )
            .unwrap();
        assert!(
            json.contains(r#""user_label": "Last User", "user_name": "Ada Lovelace""#),
            "{json}"
        );
        assert_eq!(
            b.current("nemo/esp32/5/status").as_deref(),
            Some(json.as_str())
        );
    }
}
