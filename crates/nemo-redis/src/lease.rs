//! The single-active lease: one bridge consumes a queue, the others wait.
//!
//! Two bridges on one list both "work" and publish everything twice. The
//! lease is a Redis key `{key}:lease` holding the holder's random token with
//! an expiry (`SET key token NX PX ttl`). The holder renews it every third of
//! the TTL with a compare-and-`PEXPIRE` script (only if the value is still its
//! token) and deletes it on a clean stop with a compare-and-`DEL` script. A
//! standby polls `acquire` and takes over at most one TTL after the holder
//! died. A holder that cannot renew in time must assume it lost the lease and
//! stop taking at once: [`LeaseKeeper`] reports that through a `watch` channel.

use std::time::{Duration, Instant};

use fred::prelude::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::RedisError;
use crate::conn::{Script, int_of, once};

/// Take the lease if free (or already ours): ARGV = token, ttl ms.
static ACQUIRE: Script = Script::new(
    "lease-acquire",
    r#"local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0"#,
);

/// Compare-and-pexpire.
static RENEW: Script = Script::new(
    "lease-renew",
    r#"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0"#,
);

/// Compare-and-delete.
static RELEASE: Script = Script::new(
    "lease-release",
    r#"if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0"#,
);

/// A lease on one key. See the [module docs](self).
///
/// ```no_run
/// # async fn f(redis: nemo_redis::Redis) -> Result<(), nemo_redis::RedisError> {
/// let mut lease = redis.lease();
/// let token = nemo_redis::Lease::new_token();
/// lease.acquire_wait(&token, std::time::Duration::from_secs(1)).await?; // standby until ours
/// let keeper = nemo_redis::LeaseKeeper::spawn(lease);
/// let mut held = keeper.watch();
/// // ... consume while *held.borrow() is true ...
/// keeper.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Lease {
    client: Client,
    key: String,
    ttl: Duration,
    token: Option<String>,
}

impl Lease {
    /// A lease on `key` lasting `ttl` (not acquired yet).
    pub fn new(client: Client, key: String, ttl: Duration) -> Self {
        Lease {
            client,
            key,
            ttl,
            token: None,
        }
    }

    /// A random token: `hostname-pid-<16 hex digits>`.
    ///
    /// ```
    /// assert_ne!(nemo_redis::Lease::new_token(), nemo_redis::Lease::new_token());
    /// ```
    pub fn new_token() -> String {
        let cfg = crate::RedisConfig::default();
        format!("{}-{:016x}", cfg.consumer_name(), rand::random::<u64>())
    }

    /// The lease key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The lease lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Try to take the lease with `token` (`SET NX PX`, or prolong it if `token`
    /// already holds it). `true` = ours now.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn acquire(&mut self, token: &str) -> Result<bool, RedisError> {
        let v = ACQUIRE
            .run(
                &self.client.with_options(&once(self.ttl)),
                vec![self.key.clone()],
                vec![token.into(), self.ttl_ms()],
            )
            .await?;
        let ok = int_of("lease-acquire", v)? == 1;
        if ok {
            self.token = Some(token.to_string());
            tracing::info!(key = %self.key, "redis: lease acquired");
        }
        Ok(ok)
    }

    /// Poll [`acquire`](Self::acquire) every `poll` until it succeeds (standby).
    /// Redis errors are logged and polling goes on.
    ///
    /// # Errors
    /// None in practice; the signature leaves room for cancellation by the caller (drop the future).
    pub async fn acquire_wait(&mut self, token: &str, poll: Duration) -> Result<(), RedisError> {
        let mut logged = false;
        loop {
            match self.acquire(token).await {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    if !logged {
                        tracing::info!(key = %self.key, "redis: another bridge holds the lease; standing by");
                        logged = true;
                    }
                }
                Err(e) => tracing::warn!(error = %e, key = %self.key, "redis: lease poll failed"),
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Prolong the lease (compare-and-`PEXPIRE`).
    ///
    /// # Errors
    /// [`RedisError::LeaseLost`] when the key no longer holds our token (or we never
    /// acquired it); [`RedisError::Command`] if Redis fails.
    pub async fn renew(&self) -> Result<(), RedisError> {
        let Some(token) = &self.token else {
            return Err(RedisError::LeaseLost {
                key: self.key.clone(),
            });
        };
        let v = RENEW
            .run(
                &self.client.with_options(&once(self.ttl)),
                vec![self.key.clone()],
                vec![token.as_str().into(), self.ttl_ms()],
            )
            .await?;
        if int_of("lease-renew", v)? == 1 {
            Ok(())
        } else {
            Err(RedisError::LeaseLost {
                key: self.key.clone(),
            })
        }
    }

    /// Give the lease up (compare-and-`DEL`). `true` if it was still ours.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn release(&mut self) -> Result<bool, RedisError> {
        let Some(token) = self.token.take() else {
            return Ok(false);
        };
        let v = RELEASE
            .run(
                &self.client.with_options(&once(self.ttl)),
                vec![self.key.clone()],
                vec![token.into()],
            )
            .await?;
        let ok = int_of("lease-release", v)? == 1;
        tracing::info!(key = %self.key, was_held = ok, "redis: lease released");
        Ok(ok)
    }

    /// The token currently stored in the lease key, if any.
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails.
    pub async fn holder(&self) -> Result<Option<String>, RedisError> {
        self.client
            .get(&self.key)
            .await
            .map_err(RedisError::cmd("GET"))
    }

    fn ttl_ms(&self) -> Value {
        Value::Integer(self.ttl.as_millis().min(i64::MAX as u128) as i64)
    }
}

/// Keeps a held lease alive in a background task: renews every `ttl/3` and
/// reports `false` through a `watch` channel **at once** when the lease is
/// lost, or when it could not be renewed for a whole TTL (then another bridge
/// may already hold it). Loss is final: acquire again to resume.
#[derive(Debug)]
pub struct LeaseKeeper {
    rx: watch::Receiver<bool>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<Lease>,
}

impl LeaseKeeper {
    /// Start renewing `lease` (which should be held).
    pub fn spawn(lease: Lease) -> Self {
        let (tx, rx) = watch::channel(true);
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let period = (lease.ttl / 3).max(Duration::from_millis(50));
            let mut last_ok = Instant::now();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return lease,
                    _ = tick.tick() => {}
                }
                match tokio::time::timeout(period, lease.renew()).await {
                    Ok(Ok(())) => last_ok = Instant::now(),
                    Ok(Err(RedisError::LeaseLost { key })) => {
                        tracing::error!(%key, "redis: lease lost; stop consuming");
                        let _ = tx.send(false);
                        return lease;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "redis: lease renewal failed; retrying")
                    }
                    Err(_) => tracing::warn!("redis: lease renewal timed out; retrying"),
                }
                if last_ok.elapsed() + period >= lease.ttl {
                    tracing::error!(key = %lease.key, "redis: lease not renewed for a whole TTL; assuming it is lost");
                    let _ = tx.send(false);
                    return lease;
                }
            }
        });
        LeaseKeeper {
            rx,
            stop: Some(stop_tx),
            task,
        }
    }

    /// `true` while the lease is held; turns `false` once, when it is lost.
    pub fn watch(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Whether the lease is still held.
    pub fn is_held(&self) -> bool {
        *self.rx.borrow()
    }

    /// Stop renewing and return the lease (still held until its TTL, unless lost).
    pub async fn stop(mut self) -> Option<Lease> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.ok()
    }

    /// Stop renewing and release the lease (`true` if it was still ours).
    ///
    /// # Errors
    /// [`RedisError::Command`] if Redis fails (the lease then lapses after its TTL).
    pub async fn release(self) -> Result<bool, RedisError> {
        match self.stop().await {
            Some(mut lease) => lease.release().await,
            None => Ok(false),
        }
    }
}
