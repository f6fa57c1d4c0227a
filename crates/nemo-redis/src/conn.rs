//! Connections: building fred clients from the configuration, and the small
//! command helpers every module uses (scripts, option sets, reply parsing).
//!
//! Two rules from experience with fred 10 live here:
//! - fred only reconnects when a [`ReconnectPolicy`] is set, so one is always
//!   set, derived from the `[backoff]` table;
//! - a blocking command (`BLMOVE`, `XREADGROUP BLOCK`, `BRPOP`) holds its
//!   connection for the whole wait, and anything queued behind it on the same
//!   client waits too. So blocking reads get their **own** client
//!   ([`Redis::blocking_client`]), never the shared one.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fred::prelude::*;
use fred::types::CustomCommand;
use fred::types::config::UnresponsiveConfig;
use nemo_backoff::BackoffConfig;
use tokio::sync::Mutex;

use crate::config::RedisConfig;
use crate::error::RedisError;
use crate::keys::Keys;

/// A connected Redis handle: the shared client plus the configuration, from
/// which every part of this crate is made (sources, lease, status, control,
/// dead letters, producer, stats).
///
/// ```no_run
/// # async fn f() -> Result<(), nemo_redis::RedisError> {
/// let cfg = nemo_redis::RedisConfig::default();
/// let redis = nemo_redis::Redis::connect(&cfg, &nemo_backoff::BackoffConfig::default()).await?;
/// let mut source = redis.source().await?;      // list, stream or pubsub per `mode`
/// let stats = redis.stats();
/// println!("backlog: {}", stats.depth().await?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redis {
    pub(crate) client: Client,
    pub(crate) cfg: Arc<RedisConfig>,
    pub(crate) keys: Keys,
    backoff: BackoffConfig,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("cfg", &self.cfg)
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Validate `cfg`, connect, and check the server answers: one attempt (for tools, which
    /// should say at once that Redis cannot be reached).
    ///
    /// # Errors
    /// [`RedisError::Config`]/[`RedisError::InvalidUrl`]/[`RedisError::Tls`] for bad
    /// settings, [`RedisError::Connect`] when the server cannot be reached at first.
    /// After that, connections are re-established by fred with a policy derived
    /// from `backoff`, forever.
    pub async fn connect(cfg: &RedisConfig, backoff: &BackoffConfig) -> Result<Redis, RedisError> {
        Self::connect_with(cfg, backoff, false).await
    }

    /// [`connect`](Self::connect), but waiting for a Redis that is down, refusing, or cutting
    /// the TLS handshake off — through Sentinel also for sentinels that do not answer yet, a
    /// master they do not name yet, or one that does not answer or is still a replica: such
    /// transient failures are retried with the `backoff` delays (forever, unless it has
    /// `max_attempts`). One warning per outage says what it waits for (another when that
    /// changes), the attempts between are logged at debug level. For a service started before
    /// Redis. A certificate verdict, refused credentials or a bad URL still fail at once.
    ///
    /// # Errors
    /// As [`connect`](Self::connect), for the non-transient failures.
    pub async fn connect_retrying(
        cfg: &RedisConfig,
        backoff: &BackoffConfig,
    ) -> Result<Redis, RedisError> {
        Self::connect_with(cfg, backoff, true).await
    }

    async fn connect_with(
        cfg: &RedisConfig,
        backoff: &BackoffConfig,
        retry: bool,
    ) -> Result<Redis, RedisError> {
        cfg.validate()?;
        let mut delays = backoff.build();
        // One warning per outage (and one more when what it waits for changes, e.g. the
        // sentinels answer but their master is not up yet); the attempts in between are
        // logged at debug level only.
        let mut outage = nemo_backoff::Outage::default();
        let client = loop {
            let client = builder(cfg, backoff)?
                .build()
                .map_err(|e| invalid_url(cfg, &e))?;
            match init(&client, cfg).await {
                Ok(()) => break client,
                Err(e) if retry && e.is_transient() => match delays.next_delay() {
                    Some(d) => {
                        if no_sentinel_answers(&e)
                            && let Some(refused) = refused_by_a_sentinel(cfg).await
                        {
                            return Err(refused);
                        }
                        let what = waiting_for(cfg, &e);
                        let delay_ms = d.as_millis() as u64;
                        if outage.waiting_for(&what) {
                            tracing::warn!(url = %cfg.redacted_url(), error = %e, "redis: cannot connect; retrying with backoff ({} to {} ms apart) until it answers: waiting for {what}", backoff.initial_ms, backoff.max_ms);
                        } else {
                            tracing::debug!(error = %e, delay_ms, "redis: still waiting for {what}");
                        }
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(e),
                },
                Err(e) => return Err(e),
            }
        };
        if let Some(waited) = outage.ended() {
            tracing::info!(url = %cfg.redacted_url(), waited_ms = waited.as_millis() as u64, "redis: reachable after {:.1} s", waited.as_secs_f64());
        }
        tracing::info!(url = %cfg.redacted_url(), mode = %cfg.mode, key = %cfg.key, "redis: connected");
        Ok(Redis {
            client,
            cfg: Arc::new(cfg.clone()),
            keys: Keys::new(&cfg.key),
            backoff: backoff.clone(),
        })
    }

    /// The configuration this handle was made from.
    pub fn config(&self) -> &RedisConfig {
        &self.cfg
    }

    /// The key names in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The shared fred client (non-blocking commands only!).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// A new, separately connected client for blocking commands.
    ///
    /// # Errors
    /// [`RedisError::Connect`] when it cannot connect.
    pub async fn blocking_client(&self) -> Result<Client, RedisError> {
        let c = self.client.clone_new();
        init(&c, &self.cfg).await?;
        Ok(c)
    }

    /// A new subscriber client (pub/sub mode).
    pub(crate) async fn subscriber_client(
        &self,
    ) -> Result<fred::clients::SubscriberClient, RedisError> {
        let mut b = builder(&self.cfg, &self.backoff)?;
        b.with_performance_config(|p| {
            p.broadcast_channel_capacity = self.cfg.pubsub_buffer.clamp(64, 65_536)
        });
        let c = b
            .build_subscriber_client()
            .map_err(|e| invalid_url(&self.cfg, &e))?;
        init(&c, &self.cfg).await?;
        Ok(c)
    }

    /// Close the shared client.
    pub async fn quit(&self) {
        let _ = self.client.quit().await;
    }
}

/// fred's "Failed to connect to all sentinel nodes".
fn no_sentinel_answers(e: &RedisError) -> bool {
    matches!(e, RedisError::Connect { source, .. }
        if *source.kind() == fred::error::ErrorKind::Sentinel && source.details().contains("all sentinel"))
}

/// What a transient connect failure means the bridge waits for, in words for the log:
/// Redis itself, the cluster, or for a Sentinel URL the sentinels (none answers), their
/// master (not named yet, not up yet, or still a replica).
fn waiting_for(cfg: &RedisConfig, e: &RedisError) -> String {
    use fred::types::config::ServerConfig;
    let server = fred::types::config::Config::from_url(&cfg.url).map(|c| c.server);
    let (kind, details) = match e {
        RedisError::Connect { source, .. } => (Some(source.kind().clone()), source.details()),
        RedisError::TlsInterrupted { reason, .. } => (None, reason.as_str()),
        _ => (None, ""),
    };
    match server {
        Ok(ServerConfig::Sentinel {
            hosts,
            service_name,
            ..
        }) => {
            let hosts = hosts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            match kind {
                Some(fred::error::ErrorKind::Sentinel) if details.contains("all sentinel") => {
                    format!("Redis Sentinel at {hosts} (no sentinel answers)")
                }
                Some(fred::error::ErrorKind::Sentinel) if details.contains("Missing primary") => {
                    format!("the sentinels at {hosts} to name a master for \"{service_name}\"")
                }
                Some(fred::error::ErrorKind::Sentinel) => format!(
                    "the master the sentinels at {hosts} name for \"{service_name}\" to be a master ({details})"
                ),
                _ => format!(
                    "the master the sentinels at {hosts} name for \"{service_name}\" (sentinels answer; the master does not)"
                ),
            }
        }
        Ok(ServerConfig::Clustered { .. }) => {
            format!("the Redis cluster at {}", cfg.redacted_url())
        }
        _ => format!("Redis at {}", cfg.redacted_url()),
    }
}

fn invalid_url(cfg: &RedisConfig, e: &fred::error::Error) -> RedisError {
    RedisError::InvalidUrl {
        url: cfg.redacted_url(),
        reason: e.details().to_string(),
    }
}

async fn init<C: ClientLike>(c: &C, cfg: &RedisConfig) -> Result<(), RedisError> {
    c.init().await.map_err(|source| {
        if *source.kind() == fred::error::ErrorKind::Tls && tls_verdict(source.details()) {
            RedisError::TlsHandshake {
                url: cfg.redacted_url(),
                reason: tls_reason(source.details()),
            }
        } else if *source.kind() == fred::error::ErrorKind::Tls {
            RedisError::TlsInterrupted {
                url: cfg.redacted_url(),
                reason: tls_reason(source.details()),
            }
        } else {
            RedisError::Connect {
                url: cfg.redacted_url(),
                source,
            }
        }
    })?;
    Ok(())
}

/// True when a TLS error is the verdict on the server's certificate (not trusted, expired,
/// another host), not a handshake cut off by the network (reset, EOF) or a server that is not
/// speaking TLS yet.
pub(crate) fn tls_verdict(details: &str) -> bool {
    let x509_failed = details
        .find("X509VerifyResult")
        .map(|i| &details[i..])
        .is_some_and(|x| !x.contains("code: 0,"));
    x509_failed || details.contains("certificate verify failed")
}

/// One readable line from the TLS error fred passes on (a `Debug` dump of OpenSSL's error
/// stack and its `X509VerifyResult`), with a hint for the usual causes.
pub(crate) fn tls_reason(details: &str) -> String {
    // The text after `marker` in `hay`, up to `end`.
    fn after<'a>(hay: &'a str, marker: &str, end: char) -> Option<&'a str> {
        let rest = &hay[hay.find(marker)? + marker.len()..];
        Some(&rest[..rest.find(end)?])
    }
    let x509 = details.find("X509VerifyResult").map(|i| &details[i..]);
    let code = x509
        .and_then(|x| after(x, "code: ", ','))
        .and_then(|c| c.trim().parse::<i32>().ok());
    let verify = x509.and_then(|x| after(x, "error: \"", '"'));
    let hint = match code {
        Some(10) => " (check the server certificate's validity dates and the clock)",
        Some(18..=21) | Some(2) | Some(7) => {
            " (is the CA that signed the server certificate in redis.ca_file?)"
        }
        Some(62) => " (the server certificate is not issued for the host in redis.url)",
        _ => "",
    };
    match (verify, after(details, "reason: \"", '"')) {
        (Some(v), _) if v != "ok" => format!("certificate verify failed: {v}{hint}"),
        (_, Some(r)) => r.to_string(),
        _ => details.lines().next().unwrap_or(details).to_string(),
    }
}

/// fred's reconnect policy from the `[backoff]` table: exponential from
/// `initial_ms` to `max_ms` (fred's base is an integer: the multiplier is
/// rounded, at least 2; 1.0 gives a constant delay), jitter up to
/// `initial_ms`, and retrying forever unless `max_attempts` is set.
///
/// ```
/// use fred::types::config::ReconnectPolicy;
/// let p = nemo_redis::reconnect_policy(&nemo_backoff::BackoffConfig::default());
/// assert!(matches!(p, ReconnectPolicy::Exponential { min_delay: 200, max_delay: 30_000, base: 2, max_attempts: 0, .. }));
/// ```
pub fn reconnect_policy(b: &BackoffConfig) -> ReconnectPolicy {
    let min = u32::try_from(b.initial_ms.max(1)).unwrap_or(u32::MAX);
    let max = u32::try_from(b.max_ms.max(b.initial_ms)).unwrap_or(u32::MAX);
    let attempts = b.max_attempts.unwrap_or(0);
    let mut p = if b.multiplier <= 1.0 || !b.multiplier.is_finite() {
        ReconnectPolicy::new_constant(attempts, min)
    } else {
        let base = (b.multiplier.round() as u32).max(2);
        ReconnectPolicy::new_exponential(attempts, min, max, base)
    };
    p.set_jitter(min.min(1_000));
    p
}

/// fred's configuration of `redis.url`, with the TLS files of `[redis]`.
fn fred_config(cfg: &RedisConfig) -> Result<fred::types::config::Config, RedisError> {
    let mut config =
        fred::types::config::Config::from_url(&cfg.url).map_err(|e| invalid_url(cfg, &e))?;
    if config.tls.is_some() && (cfg.ca_file.is_some() || cfg.client_cert.is_some()) {
        config.tls = Some(tls_connector(cfg)?.into());
    }
    Ok(config)
}

/// fred reports sentinels that refuse the credentials exactly like sentinels that are not up
/// yet ("Failed to connect to all sentinel nodes"), and a bridge would wait for them forever.
/// So when no sentinel answers, ask each one directly, with what fred gives them (the URL's
/// user, password and TLS): the refusal of one that refuses, if any. A sentinel that is down
/// or slow says nothing here.
async fn refused_by_a_sentinel(cfg: &RedisConfig) -> Option<RedisError> {
    use fred::types::config::ServerConfig;
    let config = fred_config(cfg).ok()?;
    let ServerConfig::Sentinel { hosts, .. } = &config.server else {
        return None;
    };
    let timeout = cfg.command_timeout().min(Duration::from_secs(2));
    let mut probes = tokio::task::JoinSet::new();
    for host in hosts.clone() {
        let mut config = config.clone();
        config.server = ServerConfig::Centralized {
            server: host.clone(),
        };
        config.database = None; // a sentinel has no databases: no SELECT

        probes.spawn(async move {
            let mut b = Builder::from_config(config);
            b.with_connection_config(|c| {
                c.connection_timeout = timeout;
                c.internal_command_timeout = timeout;
                c.max_command_attempts = 1;
            });
            let client = b.build().ok()?;
            let asked = async {
                client.init().await?;
                client.ping::<()>(None).await
            };
            let answer = tokio::time::timeout(timeout * 2, asked).await;
            let _ = tokio::time::timeout(timeout, client.quit()).await;
            match answer {
                Ok(Err(e)) if crate::error::refuses_credentials(&e) => {
                    Some(RedisError::SentinelAuth {
                        sentinel: host.to_string(),
                        source: e,
                    })
                }
                _ => None,
            }
        });
    }
    while let Some(probed) = probes.join_next().await {
        if let Ok(Some(refused)) = probed {
            return Some(refused);
        }
    }
    None
}

fn builder(cfg: &RedisConfig, backoff: &BackoffConfig) -> Result<Builder, RedisError> {
    let mut b = Builder::from_config(fred_config(cfg)?);
    b.set_policy(reconnect_policy(backoff));
    b.with_connection_config(|c| {
        c.connection_timeout = cfg.command_timeout();
        c.internal_command_timeout = cfg.command_timeout();
        c.max_command_attempts = 3;
        c.tcp.nodelay = Some(true);
        c.unresponsive = UnresponsiveConfig {
            max_timeout: None,
            interval: Duration::from_secs(2),
        };
    });
    Ok(b)
}

fn tls_connector(cfg: &RedisConfig) -> Result<fred::types::config::TlsConnector, RedisError> {
    use fred::native_tls::{Certificate, Identity, TlsConnector};
    let read = |p: &std::path::Path| {
        std::fs::read(p).map_err(|e| RedisError::Tls(format!("{}: {e}", p.display())))
    };
    let mut b = TlsConnector::builder();
    if let Some(ca) = &cfg.ca_file {
        let pem = read(ca)?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| RedisError::Tls(format!("{}: {e}", ca.display())))?;
        b.add_root_certificate(cert);
    }
    if let (Some(cert), Some(key)) = (&cfg.client_cert, &cfg.client_key) {
        let id = Identity::from_pkcs8(&read(cert)?, &read(key)?)
            .map_err(|e| RedisError::Tls(format!("client certificate {}: {e}", cert.display())))?;
        b.identity(id);
    }
    let c = b.build().map_err(|e| RedisError::Tls(e.to_string()))?;
    Ok(c.into())
}

/// Per-command options: no automatic re-send after a reconnect (the caller
/// resynchronises instead, so a command that did run is never run twice) and
/// a client-side timeout.
pub(crate) fn once(timeout: Duration) -> Options {
    Options {
        max_attempts: Some(1),
        timeout: Some(timeout),
        ..Default::default()
    }
}

/// A Lua script run with `EVALSHA`, loaded on first use and reloaded after
/// `NOSCRIPT` (a restarted server forgets its script cache).
#[derive(Debug)]
pub(crate) struct Script {
    name: &'static str,
    lua: &'static str,
    sha: Mutex<Option<String>>,
}

impl Script {
    pub(crate) const fn new(name: &'static str, lua: &'static str) -> Self {
        Script {
            name,
            lua,
            sha: Mutex::const_new(None),
        }
    }

    async fn load<C: ClientLike + Send + Sync>(
        &self,
        client: &C,
        slot: u16,
    ) -> Result<String, RedisError> {
        let cmd =
            CustomCommand::new_static("SCRIPT", fred::types::ClusterHash::Custom(slot), false);
        let v: Value = client
            .custom(cmd, vec![Value::from("LOAD"), Value::from(self.lua)])
            .await
            .map_err(RedisError::cmd("SCRIPT LOAD"))?;
        let sha = bytes_of(v)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .ok_or(RedisError::Protocol {
                cmd: "SCRIPT LOAD",
                detail: "no sha".into(),
            })?;
        *self.sha.lock().await = Some(sha.clone());
        Ok(sha)
    }

    /// Run with `EVALSHA` on `client` (use [`once`] options for commands that change the queue).
    pub(crate) async fn run<C>(
        &self,
        client: &C,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, RedisError>
    where
        C: ClientLike + Send + Sync,
    {
        let slot = keys
            .first()
            .map(|k| fred::util::redis_keyslot(k.as_bytes()))
            .unwrap_or(0);
        let cached = self.sha.lock().await.clone(); // guard dropped here: `load` locks again
        let sha = match cached {
            Some(s) => s,
            None => self.load(client, slot).await?,
        };
        let cmd =
            CustomCommand::new_static("EVALSHA", fred::types::ClusterHash::Custom(slot), false);
        let mut full = Vec::with_capacity(2 + keys.len() + args.len());
        full.push(Value::Null); // sha placeholder
        full.push(Value::Integer(keys.len() as i64));
        full.extend(keys.into_iter().map(Value::from));
        full.extend(args);
        full[0] = Value::from(sha);
        match client
            .custom::<Value, Value>(cmd.clone(), full.clone())
            .await
        {
            Err(e) if e.details().starts_with("NOSCRIPT") => {
                full[0] = Value::from(self.load(client, slot).await?);
                client
                    .custom(cmd, full)
                    .await
                    .map_err(RedisError::cmd(self.name))
            }
            r => r.map_err(RedisError::cmd(self.name)),
        }
    }
}

/// An [`Interrupter`](crate::Interrupter) for the blocking reads (`BLMOVE`, `XREADGROUP BLOCK`)
/// of `client`, a client of its own: `CLIENT UNBLOCK <its connection id> TIMEOUT`, sent over
/// fred's back channel, makes the waiting read return as if its timeout had passed — a nil
/// reply, nothing moved, nothing ambiguous. With nothing blocked it does nothing. It is
/// bounded by the command timeout (the back channel's), so a caller that must not wait for a
/// stalled Redis runs it in a task of its own.
pub(crate) fn unblocker(client: &Client) -> crate::Interrupter {
    let client = client.clone();
    crate::Interrupter::new(move || {
        let client = client.clone();
        async move {
            if let Err(e) = client
                .unblock_self(Some(fred::types::ClientUnblockFlag::Timeout))
                .await
            {
                tracing::debug!(error = %e, "redis: interrupt found no blocked read");
            }
        }
    })
}

/// A custom (possibly blocking) command; the cluster slot is taken from the first key.
pub(crate) fn custom(name: &'static str, blocking: bool) -> CustomCommand {
    CustomCommand::new_static(name, fred::types::ClusterHash::FirstKey, blocking)
}

/// The bytes of a bulk-string reply (`None` for nil or non-strings).
pub(crate) fn bytes_of(v: Value) -> Option<Bytes> {
    match v {
        Value::Bytes(b) => Some(b),
        Value::String(s) => Some(s.into_inner()),
        _ => None,
    }
}

/// An array reply of bulk strings (nil → empty).
pub(crate) fn bytes_array(cmd: &'static str, v: Value) -> Result<Vec<Bytes>, RedisError> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .into_iter()
            .map(|i| {
                bytes_of(i).ok_or_else(|| RedisError::Protocol {
                    cmd,
                    detail: "array of non-strings".into(),
                })
            })
            .collect(),
        other => Err(RedisError::Protocol {
            cmd,
            detail: format!("expected an array, got {:?}", other.kind()),
        }),
    }
}

/// An integer reply.
pub(crate) fn int_of(cmd: &'static str, v: Value) -> Result<i64, RedisError> {
    match v {
        Value::Null => Ok(0),
        v => v.as_i64().ok_or_else(|| RedisError::Protocol {
            cmd,
            detail: format!("expected an integer, got {:?}", v.kind()),
        }),
    }
}

/// A bytes argument.
pub(crate) fn arg(b: &[u8]) -> Value {
    Value::Bytes(Bytes::copy_from_slice(b))
}

/// Seconds since the Unix epoch, as a float (like Python's `time.time()`).
pub(crate) fn epoch_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_follows_backoff_config() {
        let b = BackoffConfig {
            initial_ms: 100,
            max_ms: 5_000,
            multiplier: 1.0,
            max_attempts: Some(4),
            ..Default::default()
        };
        assert!(matches!(
            reconnect_policy(&b),
            ReconnectPolicy::Constant {
                delay: 100,
                max_attempts: 4,
                ..
            }
        ));
        let b = BackoffConfig {
            multiplier: 3.4,
            ..Default::default()
        };
        assert!(matches!(
            reconnect_policy(&b),
            ReconnectPolicy::Exponential {
                base: 3,
                max_attempts: 0,
                ..
            }
        ));
        let b = BackoffConfig {
            multiplier: 1.2,
            ..Default::default()
        };
        assert!(
            matches!(
                reconnect_policy(&b),
                ReconnectPolicy::Exponential { base: 2, .. }
            ),
            "grows at least x2"
        );
    }

    #[test]
    fn tls_errors_become_one_readable_line() {
        let untrusted = r#"Ssl(Error { code: ErrorCode(1), cause: Some(Ssl(ErrorStack([Error { code: 167772294, library: "SSL routines", function: "tls_post_process_server_certificate", reason: "certificate verify failed", file: "../ssl/statem/statem_clnt.c", line: 1889 }]))) }, X509VerifyResult { code: 19, error: "self-signed certificate in certificate chain" })"#;
        assert_eq!(
            tls_reason(untrusted),
            "certificate verify failed: self-signed certificate in certificate chain (is the CA that signed the server certificate in redis.ca_file?)"
        );
        let expired = untrusted.replace("code: 19", "code: 10").replace(
            "self-signed certificate in certificate chain",
            "certificate has expired",
        );
        assert!(tls_reason(&expired).ends_with(
            "has expired (check the server certificate's validity dates and the clock)"
        ));
        let no_verify = r#"Ssl(Error { code: ErrorCode(1), cause: Some(Ssl(ErrorStack([Error { reason: "wrong version number" }]))) }, X509VerifyResult { code: 0, error: "ok" })"#;
        assert_eq!(tls_reason(no_verify), "wrong version number");
        assert_eq!(tls_reason("handshake eof"), "handshake eof");
        assert!(tls_verdict(untrusted) && tls_verdict(&expired));
        assert!(!tls_verdict(no_verify));
        assert!(!tls_verdict(
            "Io(Os { code: 104, kind: ConnectionReset, message: \"Connection reset by peer\" })"
        ));
    }

    #[test]
    fn once_disables_resend() {
        let o = once(Duration::from_millis(250));
        assert_eq!(
            (o.max_attempts, o.timeout),
            (Some(1), Some(Duration::from_millis(250)))
        );
    }
}
