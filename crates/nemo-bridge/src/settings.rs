//! Where the running configuration comes from: the layers, NEMO's configuration page, reloads.
//!
//! Layers, weakest first: built-in defaults < the TOML file < **NEMO's active configuration
//! row** < `NEMO_<SECTION>__<KEY>` environment < command-line flags. The row is the enabled row
//! of `nemo_mqtt_mqttconfiguration` with the lowest id, read from NEMO's database when
//! `[nemo] database_url` is set (see [`nemo_db`]).
//!
//! [`Settings::load`] is the one place that decides what the configuration is, at the start
//! and on every reload (`reload_config`, SIGHUP, or a changed row found by the
//! [poller](Settings::spawn_poller)); the lifecycle ([`crate::run()`]) applies what changed.
//! What happens when the row cannot be used:
//!
//! | situation | at the start | on a reload |
//! |---|---|---|
//! | no enabled row | the file's settings, said once | the file's settings, said once |
//! | a bad column (port 0, empty host, `use_hmac` without key, …) | the file's settings; one line naming the column | the running configuration stays; one line |
//! | database unreachable, table missing | the file's settings; one line | the last good row over the current file; one line |
//!
//! None of these stops delivery: the row is read before the pipeline runs (at the start) or
//! between two pipeline runs (a reload), every read is bounded by `nemo.timeout_s`, and the
//! poll runs beside the pipeline without ever blocking it.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use figment::providers::Serialized;
use figment::value::{Dict, Map};
use figment::{Figment, Metadata, Profile, Provider};
use nemo_db::{ConfigurationRow, DbError, FilterRow, NemoConfig, NemoDb, NemoSettings, NemoStore};
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::control::Control;
use crate::filters::EventFilters;
use crate::http::{Health, Note};

/// Builds the layered figment; given NEMO's row, it puts the row between the file and the
/// environment (see [`crate::config::layered`]).
pub type Layering = Box<dyn Fn(Option<&RowLayer>) -> Figment + Send + Sync>;

/// Opens NEMO's database for a `[nemo]` section ([`NemoDb::open`] in the bridge; a mock in tests).
pub type Connect = Box<dyn Fn(&NemoConfig) -> Result<Arc<dyn NemoStore>, DbError> + Send + Sync>;

/// The real [`Connect`]: [`NemoDb::open`].
pub fn connect_nemo_db() -> Connect {
    Box::new(|cfg| Ok(Arc::new(NemoDb::open(cfg)?) as Arc<dyn NemoStore>))
}

/// The configuration values NEMO's active row supplies, as a figment provider named after the row.
///
/// ```
/// use nemo_bridge::settings::RowLayer;
/// let row = nemo_db::ConfigurationRow { id: 4, broker_host: Some("mqtt.lab".into()),
///     broker_port: Some(1884), keepalive: Some(30), reconnect_delay: Some(2),
///     use_hmac: Some(true), hmac_secret_key: Some("k".into()), ..Default::default() };
/// let layer = RowLayer::new(row.settings()?, &nemo_bridge::Config::default());
/// let fig = nemo_bridge::config::layered(None, Some(&layer));
/// let cfg = nemo_bridge::Config::from_figment(fig).unwrap();
/// assert_eq!(cfg.mqtt.url, ["mqtt://mqtt.lab:1884"]);
/// assert_eq!(cfg.mqtt.keep_alive_s, 30);
/// assert_eq!(cfg.backoff.initial_ms, 2_000);
/// assert_eq!(cfg.hmac.key.expose(), "k");
/// # Ok::<(), nemo_db::RowError>(())
/// ```
#[derive(Clone, PartialEq)]
pub struct RowLayer {
    settings: NemoSettings,
    values: serde_json::Value,
}

impl fmt::Debug for RowLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RowLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl RowLayer {
    /// The values of `settings`, fitted to `below` (the file's layer): the broker URL is
    /// `mqtts://` when the file configures TLS (an `mqtts://`/`wss://` URL or a CA file),
    /// and the first reconnect delay is capped by the file's `backoff.max_ms`.
    pub fn new(settings: NemoSettings, below: &Config) -> RowLayer {
        let tls = below.mqtt.ca_file.is_some()
            || below.mqtt.url.first().is_some_and(|u| {
                u.parse::<nemo_mqtt::BrokerUrl>()
                    .is_ok_and(|b| b.transport().is_tls())
            });
        let host = if settings.broker_host.contains(':') {
            format!("[{}]", settings.broker_host)
        } else {
            settings.broker_host.clone()
        };
        let scheme = if tls { "mqtts" } else { "mqtt" };
        let mut mqtt = json!({
            "url": [format!("{scheme}://{host}:{}", settings.broker_port)],
            "keep_alive_s": settings.keepalive.as_secs(),
            "clean_session": settings.clean_session,
        });
        if let Some(id) = &settings.client_id {
            mqtt["client_id"] = json!(id);
        }
        if let Some((user, password)) = &settings.credentials {
            mqtt["username"] = json!(user);
            mqtt["password"] = json!(password);
        }
        let initial_ms = (settings.reconnect_delay.as_millis() as u64).min(below.backoff.max_ms);
        let mut values = json!({
            "mqtt": mqtt,
            "backoff": { "initial_ms": initial_ms },
            "nemo": { "message_log": settings.log_messages },
        });
        if let Some(key) = &settings.hmac_key {
            // The row's key replaces a key file of the file layer (both set is an error).
            values["hmac"] = json!({ "key": key, "key_file": "" });
        }
        RowLayer { settings, values }
    }

    /// The row's settings.
    pub fn settings(&self) -> &NemoSettings {
        &self.settings
    }

    /// How `--check-config` and the logs name this layer.
    pub fn name(&self) -> String {
        format!(
            "NEMO database ({} id={})",
            nemo_db::CONFIGURATION_TABLE,
            self.settings.id
        )
    }
}

impl Provider for RowLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::defaults(&self.values).data()
    }
}

/// Where NEMO's row stands, for the logs and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowState {
    /// `[nemo] database_url` is not set.
    Off,
    /// The row is applied.
    Applied {
        /// Its id.
        id: i64,
        /// Its `updated_at`.
        updated_at: String,
    },
    /// No enabled row: the file's settings are used.
    NoEnabledRow,
    /// The row could not be read or used; the text says what is used instead.
    Failed(String),
}

impl RowState {
    /// The note `/readyz` shows (without turning to 503); `None` when all is as configured.
    pub fn note(&self) -> Option<String> {
        match self {
            RowState::Off | RowState::Applied { .. } => None,
            RowState::NoEnabledRow => Some(format!(
                "nemo: no enabled row in {}; using the file's settings",
                nemo_db::CONFIGURATION_TABLE
            )),
            RowState::Failed(why) => Some(format!("nemo: {why}")),
        }
    }
}

/// A loaded configuration and how it was made.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration, validated.
    pub config: Config,
    /// The figment it was extracted from (for `--check-config`'s sources).
    pub figment: Figment,
    /// NEMO's row.
    pub state: RowState,
}

/// Start-up or reload: they differ in what a bad row does (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The first load: fall back to the file's settings.
    Start,
    /// A reload: keep the running configuration on a bad row.
    Reload,
}

/// What the poller needs; replaced on every load.
#[derive(Clone)]
struct PollPlan {
    store: Option<Arc<dyn NemoStore>>,
    interval: Option<Duration>,
}

/// The configuration's sources and NEMO's row, across reloads.
pub struct Settings {
    layering: Layering,
    connect: Connect,
    store: Option<(NemoConfig, Arc<dyn NemoStore>)>,
    last_good: Option<RowLayer>,
    state: RowState,
    /// The page as last read (`None` = unknown: never read, or the last read failed), shared
    /// with the poller.
    last_seen: Arc<Mutex<Option<PageSnapshot>>>,
    last_filters: EventFilters,
    filters_absent: bool,
    filters_problem: Option<String>,
    plan: watch::Sender<PollPlan>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("state", &self.state)
            .field("last_good", &self.last_good)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Settings made by `layering`, reading NEMO's database through `connect`.
    pub fn new(layering: Layering, connect: Connect) -> Settings {
        let (plan, _) = watch::channel(PollPlan {
            store: None,
            interval: None,
        });
        Settings {
            layering,
            connect,
            store: None,
            last_good: None,
            state: RowState::Off,
            last_seen: Arc::new(Mutex::new(None)),
            last_filters: EventFilters::default(),
            filters_absent: false,
            filters_problem: None,
            plan,
        }
    }

    /// Where NEMO's row stands after the last load.
    pub fn state(&self) -> &RowState {
        &self.state
    }

    /// Load the configuration: file, NEMO's row, environment, flags; validated.
    ///
    /// # Errors
    /// [`ConfigError`] when the file, environment or flags are invalid (at the start the
    /// binary exits 2), or, on a [`Phase::Reload`], when NEMO's row gives an invalid
    /// configuration (the running one stays).
    pub async fn load(&mut self, phase: Phase) -> Result<Loaded, ConfigError> {
        let base_fig = (self.layering)(None);
        let base = Config::from_figment(base_fig.clone())?;
        base.validate()?;
        if !base.nemo.enabled() {
            self.store = None;
            self.last_good = None;
            self.last_filters = EventFilters::default();
            self.publish_plan(None, None);
            self.set_state(RowState::Off);
            return Ok(Loaded {
                config: base,
                figment: base_fig,
                state: RowState::Off,
            });
        }
        let store = self.store_for(&base.nemo)?;
        self.publish_plan(Some(store.clone()), base.nemo.poll_interval());
        let snapshot = match read_page(&*store).await {
            Ok(snapshot) => snapshot,
            Err(e) => return Ok(self.unreadable(e, phase, base, base_fig)),
        };
        *lock(&self.last_seen) = Some(snapshot.clone());
        let filters = self.filters_of(&snapshot);
        let Some(row) = snapshot.row else {
            self.last_good = None;
            self.set_state(RowState::NoEnabledRow);
            return Ok(Loaded {
                config: Config { filters, ..base },
                figment: base_fig,
                state: RowState::NoEnabledRow,
            });
        };
        let applied = row.settings().map_err(|e| e.to_string()).and_then(|s| {
            let layer = RowLayer::new(s, &base);
            match with_row(&self.layering, &layer) {
                Ok((c, f)) => Ok((c, f, layer)),
                Err(e) => Err(format!("{}: gives {e}", layer.name())),
            }
        });
        match applied {
            Ok((config, figment, layer)) => {
                let state = RowState::Applied {
                    id: row.id,
                    updated_at: layer.settings.updated_at.clone(),
                };
                self.last_good = Some(layer);
                self.set_state(state.clone());
                Ok(Loaded {
                    config: Config { filters, ..config },
                    figment,
                    state,
                })
            }
            Err(why) if phase == Phase::Reload => Err(ConfigError::Section(why)),
            Err(why) => {
                self.set_state(RowState::Failed(format!(
                    "{why}; using the file's settings"
                )));
                Ok(Loaded {
                    config: Config { filters, ..base },
                    figment: base_fig,
                    state: self.state.clone(),
                })
            }
        }
    }

    /// NEMO's database could not be read: the last good row and filters over the current file
    /// on a reload, the file alone at the start.
    fn unreadable(&mut self, e: DbError, phase: Phase, base: Config, base_fig: Figment) -> Loaded {
        // Unknown now: the poller reloads as soon as it can read the page again.
        *lock(&self.last_seen) = None;
        let kept = match (&self.last_good, phase) {
            (Some(layer), Phase::Reload) => with_row(&self.layering, layer)
                .ok()
                .map(|r| (r, layer.name())),
            _ => None,
        };
        let filters = match phase {
            Phase::Reload => self.last_filters.clone(),
            Phase::Start => EventFilters::default(),
        };
        match kept {
            Some(((config, figment), name)) => {
                self.set_state(RowState::Failed(format!(
                    "{e}; keeping the last good settings of {name}"
                )));
                Loaded {
                    config: Config { filters, ..config },
                    figment,
                    state: self.state.clone(),
                }
            }
            None => {
                self.last_good = None;
                self.set_state(RowState::Failed(format!("{e}; using the file's settings")));
                Loaded {
                    config: Config { filters, ..base },
                    figment: base_fig,
                    state: self.state.clone(),
                }
            }
        }
    }

    /// The filters of a snapshot; problems are logged once (not on every reload).
    fn filters_of(&mut self, snapshot: &PageSnapshot) -> EventFilters {
        let filters = match &snapshot.filters {
            Some(rows) => EventFilters::from_rows(rows),
            None => EventFilters::default(),
        };
        let absent = snapshot.filters.is_none();
        if absent != self.filters_absent || snapshot.filters_problem != self.filters_problem {
            match &snapshot.filters_problem {
                Some(why) => error!("nemo: cannot read the event filters ({why}); filters are off"),
                None if absent => info!(
                    "nemo: no event-filter table ({}) in NEMO's database (plugin 2.x has none); filters are off",
                    nemo_db::FILTER_TABLE
                ),
                None => {}
            }
            self.filters_absent = absent;
            self.filters_problem = snapshot.filters_problem.clone();
        }
        if filters != self.last_filters {
            for problem in filters.problems() {
                warn!("nemo: {problem}");
            }
            if !filters.is_empty() || !self.last_filters.is_empty() {
                info!(
                    rows = snapshot.filters.as_ref().map_or(0, Vec::len),
                    "nemo: event filters of NEMO's page in use"
                );
            }
        }
        self.last_filters = filters.clone();
        filters
    }

    /// The store, when NEMO's database is configured (for the message log).
    pub fn store(&self) -> Option<Arc<dyn NemoStore>> {
        self.store.as_ref().map(|(_, s)| s.clone())
    }

    /// The store for `nemo`, reopened when the URL or timeout changed.
    fn store_for(&mut self, nemo: &NemoConfig) -> Result<Arc<dyn NemoStore>, ConfigError> {
        if let Some((cfg, store)) = &self.store
            && cfg.database_url == nemo.database_url
            && cfg.timeout_s == nemo.timeout_s
        {
            return Ok(store.clone());
        }
        let store = (self.connect)(nemo).map_err(|e| ConfigError::Invalid {
            key: "nemo.database_url".into(),
            value: format!("{:?}", nemo.redacted_url()),
            allowed: e.to_string(),
        })?;
        info!(database = %nemo.redacted_url(), poll_s = nemo.poll_s, "nemo: reading the MQTT configuration page's settings from NEMO's database");
        self.store = Some((nemo.clone(), store.clone()));
        *lock(&self.last_seen) = None;
        Ok(store)
    }

    fn publish_plan(&self, store: Option<Arc<dyn NemoStore>>, interval: Option<Duration>) {
        self.plan.send_replace(PollPlan { store, interval });
    }

    /// Log a change of state once (not on every reload or poll).
    fn set_state(&mut self, state: RowState) {
        if state != self.state {
            match &state {
                RowState::Off => {}
                RowState::Applied { id, updated_at } => {
                    info!(id, updated_at = %updated_at, "nemo: using the settings of NEMO's configuration page (row id={id})")
                }
                RowState::NoEnabledRow => {
                    warn!(
                        "nemo: no enabled configuration on NEMO's MQTT page; using the file's settings"
                    )
                }
                RowState::Failed(why) => error!("nemo: {why}"),
            }
        }
        self.state = state;
    }

    /// Look at NEMO's row every `nemo.poll_s` and ask for a [`Control::Reload`] when it
    /// changed since it was last read (a save on the page, an edit in SQL, a row enabled or
    /// disabled). Read errors are logged once and shown in `/readyz`'s note; the settings in
    /// use stay. Follows reloads (a new URL or interval); idles when polling is off.
    pub fn spawn_poller(
        &self,
        reload: mpsc::Sender<Control>,
        health: Arc<Health>,
    ) -> tokio::task::JoinHandle<()> {
        let mut plan_rx = self.plan.subscribe();
        let last_seen = self.last_seen.clone();
        tokio::spawn(async move {
            let mut failing: Option<String> = None;
            loop {
                let plan = plan_rx.borrow_and_update().clone();
                let (Some(store), Some(every)) = (plan.store, plan.interval) else {
                    if plan_rx.changed().await.is_err() {
                        return;
                    }
                    continue;
                };
                tokio::select! {
                    changed = plan_rx.changed() => {
                        if changed.is_err() { return; }
                        continue;
                    }
                    _ = tokio::time::sleep(every) => {}
                }
                match read_page(&*store).await {
                    Ok(page) => {
                        if failing.take().is_some() {
                            info!("nemo: NEMO's database answers again");
                            health.set_note(Note::Poll, None);
                        }
                        let changed = {
                            let mut seen = lock(&last_seen);
                            // Never read since the last load (it failed): reload to apply it.
                            let changed = seen.as_ref().is_none_or(|s| *s != page);
                            *seen = Some(page.clone());
                            changed
                        };
                        if changed {
                            info!(
                                id = page.row.as_ref().map(|r| r.id),
                                updated_at = page.row.as_ref().and_then(|r| r.updated_at.clone()),
                                "nemo: the configuration or event filters on NEMO's page changed; reloading"
                            );
                            if reload
                                .send(Control::Reload(crate::control::ReloadReason::ConfigPoll))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let why = e.to_string();
                        if failing.as_deref() != Some(why.as_str()) {
                            warn!(error = %why, "nemo: cannot read NEMO's database; keeping the settings in use");
                            health.set_note(
                                Note::Poll,
                                Some(format!("nemo: {why}; keeping the settings in use")),
                            );
                            failing = Some(why);
                        }
                    }
                }
            }
        })
    }
}

/// What the poll compares: the active row and the filter rows.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PageSnapshot {
    /// The active configuration row; `None` = no row enabled.
    row: Option<ConfigurationRow>,
    /// The filter rows; `None` = no filter table, or it cannot be read (`filters_problem`).
    filters: Option<Vec<FilterRow>>,
    /// Why the filter table cannot be read (other than an outage).
    filters_problem: Option<String>,
}

/// Read the page: the row, then the filters. An outage is an error; a filter table that
/// cannot be read for another reason (permissions) only turns the filters off.
async fn read_page(store: &dyn NemoStore) -> Result<PageSnapshot, DbError> {
    let row = store.active_configuration().await?;
    let (filters, filters_problem) = match store.event_filters().await {
        Ok(f) => (f, None),
        Err(e) if e.is_transient() => return Err(e),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(PageSnapshot {
        row,
        filters,
        filters_problem,
    })
}

/// The configuration of `layering` with `layer` in it, validated.
fn with_row(layering: &Layering, layer: &RowLayer) -> Result<(Config, Figment), ConfigError> {
    let fig = layering(Some(layer));
    let cfg = Config::from_figment(fig.clone())?;
    cfg.validate()?;
    Ok((cfg, fig))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
    use std::collections::VecDeque;

    use super::*;
    use crate::config::flag;
    use figment::providers::{Format, Toml};
    use nemo_db::MockNemoStore;

    #[test]
    fn nemo_row_sits_between_file_and_environment_and_sources_are_named() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "bridge.toml",
                "[mqtt]\nurl = \"mqtt://file:1883\"\nclient_id = \"file\"\nusername = \"file-user\"\n",
            )?;
            jail.set_env("NEMO_MQTT__CLIENT_ID", "env");
            let row = nemo_db::ConfigurationRow {
                id: 9,
                broker_host: Some("row-broker".into()),
                broker_port: Some(1884),
                keepalive: Some(15),
                client_id: Some("row".into()),
                reconnect_delay: Some(1),
                ..Default::default()
            };
            let layer = RowLayer::new(row.settings().unwrap(), &Config::default());
            let fig =
                crate::config::layered(Some(std::path::Path::new("bridge.toml")), Some(&layer));
            let cfg = Config::from_figment(fig.clone()).unwrap();
            assert_eq!(cfg.mqtt.url, ["mqtt://row-broker:1884"], "row over file");
            assert_eq!(cfg.mqtt.client_id, "env", "environment over row");
            assert_eq!(
                cfg.mqtt.username, "file-user",
                "a row without a user keeps the file's"
            );
            let text = cfg.to_toml_with_sources(&fig);
            assert!(
                text.contains("client_id = \"env\"  # environment NEMO_MQTT__CLIENT_ID"),
                "{text}"
            );
            assert!(
                text.contains("username = \"file-user\"  # TOML file "),
                "{text}"
            );
            assert!(
                text.contains(
                    "keep_alive_s = 15  # NEMO database (nemo_mqtt_mqttconfiguration id=9)"
                ),
                "{text}"
            );
            Ok(())
        });
    }

    fn row(id: i64, port: i64, key: Option<&str>) -> ConfigurationRow {
        ConfigurationRow {
            id,
            name: Some("default".into()),
            enabled: Some(true),
            broker_host: Some("broker.lab".into()),
            broker_port: Some(port),
            keepalive: Some(42),
            client_id: Some("from-row".into()),
            username: Some("row-user".into()),
            password: Some("row-pw".into()),
            use_hmac: Some(key.is_some()),
            hmac_secret_key: key.map(str::to_string),
            hmac_algorithm: Some("sha256".into()),
            clean_session: Some(true),
            reconnect_delay: Some(3),
            updated_at: Some(format!("2026-12-01 10:00:0{id}+00")),
            ..ConfigurationRow::default()
        }
    }

    /// A store answering from a script: each read takes the next answer; the last one repeats.
    fn scripted(answers: Vec<Result<Option<ConfigurationRow>, DbError>>) -> Connect {
        let answers = Arc::new(Mutex::new(VecDeque::from(answers)));
        Box::new(move |_cfg| {
            let answers = answers.clone();
            let mut store = MockNemoStore::new();
            store.expect_event_filters().returning(|| Ok(None));
            store.expect_active_configuration().returning(move || {
                let mut a = lock(&answers);
                if a.len() > 1 {
                    a.pop_front().expect("non-empty")
                } else {
                    a.front().cloned().expect("at least one answer")
                }
            });
            Ok(Arc::new(store) as Arc<dyn NemoStore>)
        })
    }

    /// Defaults < `file` < row < `flags` (standing in for the environment and the flags).
    fn layering(file: impl Into<String>, flags: Vec<(&'static str, &'static str)>) -> Layering {
        let file = file.into();
        Box::new(move |row| {
            let mut fig =
                Figment::from(Serialized::defaults(Config::default())).merge(Toml::string(&file));
            if let Some(row) = row {
                fig = fig.merge(row.clone());
            }
            for (k, v) in &flags {
                fig = fig.merge(flag(k, *v));
            }
            fig
        })
    }

    const FILE: &str = "[mqtt]\nurl = \"mqtt://file-broker:1883\"\nclient_id = \"from-file\"\n[nemo]\ndatabase_url = \"postgres://bridge:pw@db/nemo\"\n";

    fn unreachable() -> DbError {
        DbError::Unreachable {
            url: "postgres://bridge:***@db/nemo".into(),
            reason: "connection refused".into(),
        }
    }

    #[tokio::test]
    async fn without_a_database_url_the_file_alone_counts() {
        let mut s = Settings::new(
            layering("[mqtt]\nurl = \"mqtt://file-broker:1883\"\n", vec![]),
            Box::new(|_| panic!("must not connect without a database_url")),
        );
        let l = s.load(Phase::Start).await.unwrap();
        assert_eq!(l.config.mqtt.url, ["mqtt://file-broker:1883"]);
        assert_eq!(l.state, RowState::Off);
        assert_eq!(l.state.note(), None);
    }

    #[tokio::test]
    async fn the_row_sits_above_the_file_and_below_env_and_flags() {
        let mut s = Settings::new(
            layering(FILE, vec![("mqtt.client_id", "from-flag")]),
            scripted(vec![Ok(Some(row(1, 1884, Some("row-key"))))]),
        );
        let l = s.load(Phase::Start).await.unwrap();
        let c = &l.config;
        assert_eq!(c.mqtt.url, ["mqtt://broker.lab:1884"], "row over file");
        assert_eq!(c.mqtt.client_id, "from-flag", "flag over row");
        assert_eq!(c.mqtt.username, "row-user");
        assert_eq!(c.mqtt.password.expose(), "row-pw");
        assert_eq!(c.mqtt.keep_alive_s, 42);
        assert_eq!(c.hmac.key.expose(), "row-key");
        assert_eq!(c.backoff.initial_ms, 3_000);
        assert_eq!(
            l.state,
            RowState::Applied {
                id: 1,
                updated_at: "2026-12-01 10:00:01+00".into()
            }
        );
        let text = c.to_toml_with_sources(&l.figment);
        assert!(
            text.contains("keep_alive_s = 42  # NEMO database (nemo_mqtt_mqttconfiguration id=1)"),
            "{text}"
        );
        assert!(
            text.contains("client_id = \"from-flag\"  # command line"),
            "{text}"
        );
        assert!(
            !text.contains("row-pw") && !text.contains("row-key"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn tls_in_the_file_makes_the_row_url_mqtts() {
        let mut s = Settings::new(
            layering(
                "[mqtt]\nurl = \"mqtts://file-broker:8883\"\n[nemo]\ndatabase_url = \"sqlite:///x\"\n",
                vec![],
            ),
            scripted(vec![Ok(Some(row(1, 8884, None)))]),
        );
        let l = s.load(Phase::Start).await.unwrap();
        assert_eq!(l.config.mqtt.url, ["mqtts://broker.lab:8884"]);
        assert!(l.config.hmac.key.is_empty(), "use_hmac off supplies no key");
    }

    #[tokio::test]
    async fn a_bad_row_falls_back_to_the_file_at_start_and_keeps_the_running_config_on_reload() {
        let mut bad = row(3, 0, None);
        bad.broker_port = Some(0);
        let mut s = Settings::new(
            layering(FILE, vec![]),
            scripted(vec![
                Ok(Some(bad.clone())),
                Ok(Some(row(3, 1884, None))),
                Ok(Some(bad)),
            ]),
        );
        let l = s.load(Phase::Start).await.unwrap();
        assert_eq!(l.config.mqtt.url, ["mqtt://file-broker:1883"]);
        let note = l.state.note().unwrap();
        assert!(
            note.contains("nemo_mqtt_mqttconfiguration id=3: broker_port = 0")
                && note.contains("using the file's settings"),
            "{note}"
        );
        let good = s.load(Phase::Reload).await.unwrap();
        assert_eq!(good.config.mqtt.url, ["mqtt://broker.lab:1884"]);
        let err = s.load(Phase::Reload).await.unwrap_err().to_string();
        assert!(err.contains("broker_port = 0"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[tokio::test]
    async fn a_row_that_makes_the_whole_config_invalid_is_refused_naming_the_row() {
        // clean_session off with the file's client id empty: the row has a client id, but
        // a flag empties it; the layered result is invalid and the row is named.
        let mut r = row(5, 1884, None);
        r.clean_session = Some(false);
        let mut s = Settings::new(
            layering(FILE, vec![("mqtt.client_id", "")]),
            scripted(vec![Ok(Some(r))]),
        );
        let l = s.load(Phase::Start).await.unwrap();
        let note = l.state.note().unwrap();
        assert!(
            note.contains("nemo_mqtt_mqttconfiguration id=5") && note.contains("mqtt.client_id"),
            "{note}"
        );
        assert_eq!(l.config.mqtt.url, ["mqtt://file-broker:1883"]);
    }

    #[tokio::test]
    async fn no_enabled_row_uses_the_file_and_says_so_in_readyz() {
        let mut s = Settings::new(layering(FILE, vec![]), scripted(vec![Ok(None)]));
        let l = s.load(Phase::Start).await.unwrap();
        assert_eq!(l.config.mqtt.client_id, "from-file");
        assert_eq!(l.state, RowState::NoEnabledRow);
        assert_eq!(
            l.state.note().unwrap(),
            "nemo: no enabled row in nemo_mqtt_mqttconfiguration; using the file's settings"
        );
    }

    #[tokio::test]
    async fn an_unreachable_database_keeps_the_last_good_row_on_reload() {
        let mut s = Settings::new(
            layering(FILE, vec![]),
            scripted(vec![
                Err(unreachable()),
                Ok(Some(row(1, 1884, Some("k1")))),
                Err(unreachable()),
            ]),
        );
        let start = s.load(Phase::Start).await.unwrap();
        assert_eq!(start.config.mqtt.url, ["mqtt://file-broker:1883"]);
        assert!(
            start
                .state
                .note()
                .unwrap()
                .contains("connection refused; using the file's settings")
        );
        let applied = s.load(Phase::Reload).await.unwrap();
        assert_eq!(applied.config.mqtt.url, ["mqtt://broker.lab:1884"]);
        let kept = s.load(Phase::Reload).await.unwrap();
        assert_eq!(kept.config.mqtt.url, ["mqtt://broker.lab:1884"]);
        assert_eq!(kept.config.hmac.key.expose(), "k1");
        let note = kept.state.note().unwrap();
        assert!(
            note.contains(
                "keeping the last good settings of NEMO database (nemo_mqtt_mqttconfiguration id=1)"
            ),
            "{note}"
        );
        assert!(!note.contains("pw@"), "{note}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_poller_asks_for_a_reload_only_when_the_row_changed() {
        let mut s = Settings::new(
            layering(format!("{FILE}poll_s = 5\n"), vec![]),
            scripted(vec![
                Ok(Some(row(1, 1884, None))), // the load
                Ok(Some(row(1, 1884, None))), // poll 1: same
                Err(unreachable()),           // poll 2: down, nothing to do
                Ok(Some(row(1, 1885, None))), // poll 3: changed
                Ok(Some(row(1, 1885, None))), // then the same for ever
            ]),
        );
        s.load(Phase::Start).await.unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let health = Arc::new(Health::default());
        let task = s.spawn_poller(tx, health.clone());
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert!(
            rx.try_recv().is_err(),
            "no reload for an unchanged row or an outage"
        );
        assert!(health.note().unwrap().contains("connection refused"));
        let got = tokio::time::timeout(Duration::from_secs(6), rx.recv()).await;
        assert_eq!(
            got.unwrap(),
            Some(Control::Reload(crate::control::ReloadReason::ConfigPoll))
        );
        assert_eq!(
            health.note(),
            None,
            "the note clears when the database answers"
        );
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(rx.try_recv().is_err(), "one reload per change");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_database_down_at_start_is_applied_by_the_poll_when_it_comes_back() {
        let mut s = Settings::new(
            layering(format!("{FILE}poll_s = 5\n"), vec![]),
            scripted(vec![Err(unreachable()), Ok(Some(row(1, 1884, None)))]),
        );
        s.load(Phase::Start).await.unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let task = s.spawn_poller(tx, Arc::new(Health::default()));
        let got = tokio::time::timeout(Duration::from_secs(6), rx.recv()).await;
        assert_eq!(
            got.unwrap(),
            Some(Control::Reload(crate::control::ReloadReason::ConfigPoll))
        );
        task.abort();
    }
}
