//! What runs while this bridge is the active one — the broker connection, the preparer, the
//! message log, the displays' feed — and the one place that applies a reload to it.
//!
//! A standby holds none of it: it has no broker connection, so that it never disturbs the
//! active bridge (two connections with one client id close each other), publishes no status and
//! feeds no display. [`Live::start`] connects when the bridge wins the lock; [`Live::close`]
//! ends it at a stop, or quietly when the lock was lost.
//!
//! A reload (SIGHUP, `reload_config`, a save on NEMO's page, a changed row found by the poll)
//! re-reads every layer of the configuration ([`Settings::load`]) and applies it between two
//! pipeline runs: a new broker is connected before the old one is closed (so no event waits on
//! a broker that does not exist), the preparer is rebuilt (topics, HMAC key, event filters),
//! the message log restarts, and the displays' feed restarts when its settings changed. What
//! cannot change live (`[redis]`, `[lease]`, `[nemo]
//! source` and `database_url`) is named in one warning: it takes effect at the next start.

use std::sync::Arc;
use std::time::Duration;

use nemo_db::NemoStore;
use nemo_mqtt::{ConnStatus, Publisher};
use nemo_redis::BridgeStatus;
use nemo_topics::TopicMapper;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::control::{ReloadReason, Waited};
use crate::http::{Health, Note};
use crate::message_log::{LogTap, LoggedSink, MessageLog};
use crate::pipeline::PipelineOptions;
use crate::prepare::ItemPreparer;
use crate::settings::{Phase, Settings};

/// Where the active bridge's parts report: `/readyz`, the status for NEMO's page, the
/// publisher in use (for the queue figures), the queue figures.
#[derive(Clone)]
pub(crate) struct Outlets {
    pub(crate) health: Arc<Health>,
    pub(crate) status_tx: watch::Sender<BridgeStatus>,
    pub(crate) publisher_tx: watch::Sender<Option<Publisher>>,
    pub(crate) figures: crate::figures::FigureBoard,
}

/// The parts of an active bridge that follow its configuration.
pub(crate) struct Live {
    pub(crate) cfg: Config,
    publisher: Publisher,
    mqtt_task: tokio::task::JoinHandle<()>,
    pub(crate) prep: ItemPreparer,
    msglog: Option<MessageLog>,
    display: Option<nemo_display::DisplayFeed>,
    out: Outlets,
}

/// How a [`Live::start`] ended.
pub(crate) enum Started {
    /// Connected and running.
    Live(Box<Live>),
    /// A stop came before the broker answered.
    Stopped,
    /// A reload came before the broker answered: re-read the configuration (it may name
    /// another broker, as when NEMO's database comes up after the bridge) and start again.
    Reload(ReloadReason),
}

impl Live {
    /// Connect the broker of `cfg` (waiting for it, until a stop or a reload comes first) and
    /// start what follows it: the preparer, the message log, the displays' feed.
    ///
    /// # Errors
    /// [`BridgeError`](crate::BridgeError) when the broker rejects the bridge, or the topics,
    /// the HMAC key or the `[display]` settings of `cfg` cannot be used.
    pub(crate) async fn start(
        cfg: Config,
        store: Option<Arc<dyn NemoStore>>,
        controls: &mut crate::control::Controls,
        out: &Outlets,
    ) -> Result<Started, crate::error::BridgeError> {
        let prep = preparer(&cfg)?;
        let connect = Publisher::connect(cfg.mqtt_config(), cfg.backoff.build());
        let publisher = match controls.until_stop_or_reload(connect).await {
            Waited::Done(connected) => connected?,
            Waited::Stop => {
                info!("stopped before the broker could be reached");
                return Ok(Started::Stopped);
            }
            Waited::Reload(why) => {
                info!(reason = %why, "reload requested while waiting for the broker; re-reading the configuration");
                return Ok(Started::Reload(why));
            }
        };
        let mqtt_task = watch_mqtt(publisher.state(), out.health.clone(), out.status_tx.clone());
        let msglog = message_log(&cfg, store);
        let display = start_display(&cfg, &out.health, &out.figures)?;
        out.publisher_tx.send_replace(Some(publisher.clone()));
        Ok(Started::Live(Box::new(Live {
            cfg,
            publisher,
            mqtt_task,
            prep,
            msglog,
            display,
            out: out.clone(),
        })))
    }

    /// Re-read the configuration and apply it; `false` when it was rejected (the running one
    /// stays, `/readyz` says why).
    pub(crate) async fn reload(&mut self, settings: &mut Settings) -> bool {
        let Some(new) = reload_config(settings, &self.cfg, &self.out.health).await else {
            return false;
        };
        self.apply(new, settings.store()).await;
        true
    }

    /// Apply `new` (between two pipeline runs): connect the new broker when its settings
    /// changed, rebuild the preparer (topics, HMAC key, event filters), restart the message log.
    async fn apply(&mut self, new: Config, store: Option<Arc<dyn NemoStore>>) {
        if let Some(p) = self.switch_publisher(&new).await {
            self.publisher = p;
            self.out
                .publisher_tx
                .send_replace(Some(self.publisher.clone()));
        }
        match preparer(&new) {
            Ok(p) => self.prep = p,
            Err(e) => warn!(error = %e, "reload: keeping the old topic/hmac settings"),
        }
        if let Some(old) = self.msglog.take() {
            old.close(Duration::from_millis(500)).await;
        }
        self.msglog = message_log(&new, store);
        self.restart_display_if_changed(&new).await;
        self.cfg = new;
    }

    /// The displays' feed follows `[display]`, the events' broker it listens to, the HMAC key
    /// it verifies with and the backoff: when one of them changed, the old feed stops and a
    /// new one starts (it rebuilds every display from the retained tool state).
    async fn restart_display_if_changed(&mut self, new: &Config) {
        let old = &self.cfg;
        if new.display == old.display
            && new.mqtt_config() == old.mqtt_config()
            && new.hmac == old.hmac
            && new.backoff == old.backoff
        {
            return;
        }
        if let Some(feed) = self.display.take() {
            info!("reload: the displays' feed settings changed; restarting it");
            let until = tokio::time::Instant::now() + Duration::from_secs(2);
            crate::control::best_effort(until, "stop the display feed", feed.shutdown()).await;
            self.out.health.set_display(None);
            self.out.figures.set_display(None);
        }
        match start_display(new, &self.out.health, &self.out.figures) {
            Ok(feed) => self.display = feed,
            Err(e) => {
                error!(error = %e, "reload: the displays' feed cannot start with the new settings; it is off until the next reload")
            }
        }
    }

    /// The sink of the next pipeline run: the broker, logged when the message log is on.
    pub(crate) fn sink(&self) -> LoggedSink<Publisher> {
        let tap = self
            .msglog
            .as_ref()
            .map_or_else(LogTap::off, MessageLog::tap);
        let sink = LoggedSink::new(self.publisher.clone(), tap);
        // The tool-state documents are the bridge's own: NEMO's message log leaves them out.
        match TopicMapper::from_config(&self.cfg.topics) {
            Ok(mapper) => sink.without_state_documents(Arc::new(mapper)),
            Err(_) => sink,
        }
    }

    /// The options of the next pipeline run.
    pub(crate) fn pipeline_options(&self) -> PipelineOptions {
        // (final_timeout stays at its default, 0.5 s: a stop ends within the drain + 1 s.)
        PipelineOptions {
            window: self.cfg.mqtt.inflight as usize,
            drain_timeout: self.cfg.drain_timeout(),
            ..PipelineOptions::default()
        }
    }

    /// At a stop (`offline_status`): the displays' feed, the offline status, the disconnect,
    /// the message log's last entries, all within `deadline`. When the lock was lost, the same
    /// without the offline status: the successor may already have published `online`.
    pub(crate) async fn close(mut self, deadline: tokio::time::Instant, offline_status: bool) {
        self.out.publisher_tx.send_replace(None);
        if let Some(feed) = self.display.take() {
            crate::control::best_effort(deadline, "stop the display feed", feed.shutdown()).await;
            self.out.health.set_display(None);
            self.out.figures.set_display(None);
        }
        let shutdown = if offline_status {
            let bye = self.publisher.shutdown();
            crate::control::best_effort(deadline, "publish the offline status and disconnect", bye)
                .await
        } else {
            let bye = self.publisher.shutdown_quietly();
            crate::control::best_effort(deadline, "disconnect", bye).await
        };
        if let Some(Err(e)) = shutdown {
            warn!(error = %e, "mqtt: shutdown was not clean");
        }
        self.mqtt_task.abort();
        if let Some(log) = self.msglog.take() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            log.close(left.min(Duration::from_secs(1))).await;
        }
        let _ = self.out.status_tx.send(BridgeStatus::Disconnected);
        self.out.health.set_mqtt(false);
    }

    /// Connect the new broker when `[mqtt]`/`[status]`/`[backoff]` changed; `None`: keep the
    /// running one (unchanged, or the new one did not answer).
    ///
    /// The new broker gets `mqtt.connect_timeout_s` + 5 s to answer (a typo on NEMO's page must
    /// not leave the bridge retrying a broker that does not exist while events wait); past that
    /// the old connection stays, `/readyz` says so in its note, and the next reload tries again.
    async fn switch_publisher(&mut self, new: &Config) -> Option<Publisher> {
        if self.publisher.config() == &new.mqtt_config() && self.cfg.backoff == new.backoff {
            return None;
        }
        info!("reload: broker settings changed; connecting the new broker");
        let limit = Duration::from_secs(new.mqtt.connect_timeout_s) + Duration::from_secs(5);
        let connect = Publisher::connect(new.mqtt_config(), new.backoff.build());
        let result = match tokio::time::timeout(limit, connect).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no connection within {} s", limit.as_secs())),
        };
        match result {
            Ok(p) => {
                self.mqtt_task.abort();
                if let Err(e) = self.publisher.shutdown().await {
                    warn!(error = %e, "mqtt: old connection did not close cleanly");
                }
                self.mqtt_task = watch_mqtt(
                    p.state(),
                    self.out.health.clone(),
                    self.out.status_tx.clone(),
                );
                self.out.health.set_note(Note::Broker, None);
                Some(p)
            }
            Err(e) => {
                let urls = new.redacted().mqtt.url.join(", ");
                error!(error = %e, new = %urls, "reload: cannot connect the new broker; keeping the old one");
                self.out.health.set_note(
                    Note::Broker,
                    Some(format!(
                        "mqtt: the new broker {urls} did not answer ({e}); still on the previous one"
                    )),
                );
                None
            }
        }
    }
}

/// Start the tool displays' feed when `[display] enabled`: it reads the events back from the
/// broker, keeps each tool's latest status and publishes it to the displays' broker, never
/// holding the pipeline back. Whether that broker is connected goes to `/readyz` (a remark),
/// the `nemo_display_connected` gauge and the queue figures (the monitor). Started once: a
/// reload does not change it (a restart does).
///
/// # Errors
/// [`ConfigError`] when the `[display]` or `[hmac]` settings cannot be used.
fn start_display(
    cfg: &Config,
    health: &Arc<Health>,
    figures: &crate::figures::FigureBoard,
) -> Result<Option<nemo_display::DisplayFeed>, ConfigError> {
    if !cfg.display.enabled {
        return Ok(None);
    }
    let feed = nemo_display::DisplayFeed::spawn(
        &cfg.display,
        &cfg.mqtt_config(),
        cfg.hmac.key_bytes()?,
        cfg.backoff.clone(),
    )
    .map_err(|e| ConfigError::Section(e.to_string()))?;
    let mut connected = feed.connected();
    let health = health.clone();
    let figures = figures.clone();
    tokio::spawn(async move {
        loop {
            let up = *connected.borrow_and_update();
            health.set_display(Some(up));
            figures.set_display(Some(up));
            if connected.changed().await.is_err() {
                return;
            }
        }
    });
    Ok(Some(feed))
}

/// The preparer (topics, HMAC key, event filters) of a configuration.
fn preparer(cfg: &Config) -> Result<ItemPreparer, ConfigError> {
    let mapper =
        TopicMapper::from_config(&cfg.topics).map_err(|e| ConfigError::Section(e.to_string()))?;
    Ok(ItemPreparer::new(mapper, cfg.hmac.key_bytes()?).with_filters(cfg.filters.clone()))
}

/// The message-log writer a configuration asks for: `nemo.message_log` on (the page's "log
/// messages") and NEMO's database configured.
fn message_log(cfg: &Config, store: Option<Arc<dyn NemoStore>>) -> Option<MessageLog> {
    let store = store.filter(|_| cfg.nemo.message_log)?;
    info!(
        keep = cfg.nemo.message_log_keep,
        "message log: writing every publication to NEMO's message log"
    );
    Some(MessageLog::spawn(store, cfg.nemo.message_log_keep))
}

/// Follow the broker connection: health, metrics, the status for NEMO, one log line per change.
fn watch_mqtt(
    mut state: watch::Receiver<nemo_mqtt::ConnState>,
    health: Arc<Health>,
    status: watch::Sender<BridgeStatus>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last: Option<nemo_mqtt::ConnState> = None;
        loop {
            let s = *state.borrow_and_update();
            if last != Some(s) {
                let up = s.is_connected();
                health.set_mqtt(up);
                let _ = status.send(if up {
                    BridgeStatus::Connected
                } else {
                    BridgeStatus::Disconnected
                });
                if let Some(prev) = last
                    && s.reconnects > prev.reconnects
                {
                    metrics::counter!("nemo_bridge_reconnects_total")
                        .increment(s.reconnects - prev.reconnects);
                }
                match s.status {
                    ConnStatus::Connected => info!(reconnects = s.reconnects, "mqtt: connected"),
                    ConnStatus::Disconnected => warn!("mqtt: disconnected; reconnecting"),
                    ConnStatus::Failed => error!("mqtt: reconnect policy gave up"),
                    ConnStatus::Closed => info!("mqtt: closed"),
                }
                last = Some(s);
            }
            if state.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Load every layer again; `None` when the result is rejected (the running configuration
/// stays, `/readyz` says why). A standby applies what it gets when it becomes active.
pub(crate) async fn reload_config(
    settings: &mut Settings,
    old: &Config,
    health: &Health,
) -> Option<Config> {
    match settings.load(Phase::Reload).await {
        Ok(loaded) => {
            health.set_note(Note::Page, loaded.state.note());
            health.set_note(Note::Reload, None);
            let new = loaded.config;
            let fixed = fixed_keys_changed(old, &new);
            if !fixed.is_empty() {
                warn!(
                    keys = %fixed.join(", "),
                    "reload: these settings cannot change while the bridge runs; they take effect at the next restart"
                );
            }
            info!("reload: configuration re-read");
            Some(new)
        }
        Err(e) => {
            error!(error = %e, "reload: rejected; keeping the running configuration");
            health.set_note(
                Note::Reload,
                Some(format!("reload rejected ({e}); running configuration kept")),
            );
            None
        }
    }
}

/// The sections and keys a reload read anew but that only a restart applies.
fn fixed_keys_changed(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if new.redis != old.redis {
        keys.push("[redis]");
    }
    if new.lease != old.lease {
        keys.push("[lease]");
    }
    if new.nemo.source != old.nemo.source {
        keys.push("nemo.source");
    }
    if new.nemo.database_url != old.nemo.database_url {
        keys.push("nemo.database_url");
    }
    if new.http != old.http {
        keys.push("[http]");
    }
    keys
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_key_that_needs_a_restart_is_named() {
        let old = Config::default();
        assert!(fixed_keys_changed(&old, &old.clone()).is_empty());
        let mut new = old.clone();
        new.redis.key = "other".into();
        new.nemo.database_url = "postgres://db/nemo2".into();
        assert_eq!(
            fixed_keys_changed(&old, &new),
            vec!["[redis]", "nemo.database_url"]
        );
    }
}
