//! Stop and reload requests, and the bounds that make every stop end.
//!
//! The binary turns signals into [`Control`] messages; the queue's own channels (the Redis
//! control list `NEMO_mqtt_bridge_control`, `NOTIFY nemo_mqtt_reload`, the poll of NEMO's
//! configuration row) send [`Control::Reload`] with their [`ReloadReason`] into the same channel. [`Controls`] merges them
//! into the one receiver the lifecycle reads.
//!
//! A stop is bounded by its own steps: every step after the pipeline runs under one deadline
//! ([`best_effort`]), a connect at the start yields to a stop ([`Controls::until_stop`]). Behind them
//! stands the stop guard: a plain OS thread, armed by the first stop request, that ends the
//! process with [`FORCED_STOP_EXIT_CODE`] if the stop has not ended within
//! `shutdown.drain_timeout_s` + 5 s. A second stop request ends the process at once. Neither
//! loses anything: what the broker has not confirmed is still in the queue and is published
//! first at the next start.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! use nemo_bridge::control::{Control, Controls, ReloadReason};
//! let (tx, rx) = tokio::sync::mpsc::channel(4);
//! let mut controls = Controls::spawn(rx, Duration::from_secs(10));
//! controls.sender().send(Control::Reload(ReloadReason::Signal)).await.unwrap();
//! assert_eq!(controls.recv().await, Some(Control::Reload(ReloadReason::Signal)));
//! drop(tx); // the caller's channel closed: that is a stop
//! assert_eq!(controls.recv().await, Some(Control::Shutdown));
//! # }
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Why the configuration was (re)applied, in the words of the plugin's bridge
/// (`last_reload_reason`).
///
/// ```
/// use nemo_bridge::control::ReloadReason;
/// assert_eq!(ReloadReason::ConfigPoll.as_str(), "config_poll");
/// assert_eq!(ReloadReason::Signal.to_string(), "signal");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadReason {
    /// The bridge started (plugin: `startup`).
    Startup,
    /// A save of NEMO's MQTT page, announced by `NOTIFY nemo_mqtt_reload` (plugin: `notify`).
    Notify,
    /// The periodic look at the configuration row found it changed (plugin: `config_poll`).
    ConfigPoll,
    /// SIGHUP or the `reload_config` control command. The plugin's bridge has no such reload
    /// (its unnamed reload says `unknown`); `signal` says what happened.
    Signal,
}

impl ReloadReason {
    /// The word written into `last_reload_reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadReason::Startup => "startup",
            ReloadReason::Notify => "notify",
            ReloadReason::ConfigPoll => "config_poll",
            ReloadReason::Signal => "signal",
        }
    }
}

impl std::fmt::Display for ReloadReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request to the running bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Stop gracefully (SIGINT/SIGTERM).
    Shutdown,
    /// Re-read the configuration and apply it, for the reason given (SIGHUP, a save on NEMO's
    /// page announced by `reload_config` or `NOTIFY nemo_mqtt_reload`, the poll of NEMO's row).
    Reload(ReloadReason),
}

/// The exit status when a stop is cut short: a second stop request, or the stop guard.
pub const FORCED_STOP_EXIT_CODE: i32 = 1;

/// How long the steps of a stop that comes before the pipeline ran (while connecting) may take.
pub const TEARDOWN: Duration = Duration::from_millis(900);

/// When the steps after the pipeline must be done at the latest, for a stop requested at
/// `requested`: the drain, then at most 1 s for the final ack, the lock's release, the offline
/// status and the queue's last status together (less a margin for the process's exit); never
/// less than 300 ms from now, so that a healthy teardown after a long drain still runs.
pub fn stop_deadline(
    requested: tokio::time::Instant,
    drain_timeout: Duration,
) -> tokio::time::Instant {
    let bound = requested + drain_timeout + Duration::from_millis(900);
    bound.max(tokio::time::Instant::now() + Duration::from_millis(300))
}

/// The longest a stop may take before the guard ends the process: the drain, the final ack,
/// the lock's release and the teardown fit in it with a margin (`drain_timeout` + 5 s).
pub fn stop_limit(drain_timeout: Duration) -> Duration {
    drain_timeout + Duration::from_secs(5)
}

/// What ended a wait for a server at the start ([`Controls::until_stop_or_reload`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Waited<T> {
    /// The wait ended by itself, with this.
    Done(T),
    /// A stop request came first.
    Stop,
    /// A reload request came first: the configuration waited on may be out of date.
    Reload(ReloadReason),
}

/// The one channel of control requests the lifecycle reads: the caller's (signals), merged with
/// the queue's and the settings poll's reload requests ([`sender`](Self::sender)).
#[derive(Debug)]
pub struct Controls {
    rx: mpsc::Receiver<Control>,
    tx: mpsc::Sender<Control>,
    stop_limit_ms: Arc<AtomicU64>,
    deferred: Option<ReloadReason>,
}

impl Controls {
    /// Start forwarding `from_caller`. The first [`Control::Shutdown`] arms the stop guard with
    /// `stop_limit` (or the limit set since with [`set_stop_limit`](Self::set_stop_limit)); a
    /// second one exits the process at once; the caller's channel closing is a stop.
    pub fn spawn(mut from_caller: mpsc::Receiver<Control>, stop_limit: Duration) -> Controls {
        let (tx, rx) = mpsc::channel::<Control>(16);
        let stop_limit_ms = Arc::new(AtomicU64::new(millis(stop_limit)));
        let forward = tx.clone();
        let limit = stop_limit_ms.clone();
        tokio::spawn(async move {
            let mut stopping = false;
            while let Some(c) = from_caller.recv().await {
                if c == Control::Shutdown {
                    if stopping {
                        error!(
                            exit_code = FORCED_STOP_EXIT_CODE,
                            "second stop request: exiting now; events in flight stay queued and are published first at the next start"
                        );
                        std::process::exit(FORCED_STOP_EXIT_CODE);
                    }
                    stopping = true;
                    spawn_stop_guard(Duration::from_millis(limit.load(Ordering::Relaxed)));
                }
                if forward.send(c).await.is_err() {
                    return;
                }
            }
            let _ = forward.send(Control::Shutdown).await;
        });
        Controls {
            rx,
            tx,
            stop_limit_ms,
            deferred: None,
        }
    }

    /// Where the queue and the settings poll send their reload requests.
    pub fn sender(&self) -> mpsc::Sender<Control> {
        self.tx.clone()
    }

    /// The next request; `None` only when every sender is gone (never while the bridge runs).
    pub async fn recv(&mut self) -> Option<Control> {
        self.rx.recv().await
    }

    /// A reload changed `shutdown.drain_timeout_s`: the guard of a later stop uses the new limit.
    pub fn set_stop_limit(&self, limit: Duration) {
        self.stop_limit_ms.store(millis(limit), Ordering::Relaxed);
    }

    /// Run `fut` (a connect at the start) unless a stop request comes first (`Ok(None)`). A
    /// reload request meanwhile does not end the wait (what is being connected cannot change
    /// live); it is kept, and [`take_deferred`](Self::take_deferred) gives it to the lifecycle,
    /// which applies it before it connects the broker.
    ///
    /// # Errors
    /// Whatever `fut` returns.
    pub async fn until_stop<T, E>(
        &mut self,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Result<Option<T>, E> {
        let mut fut = std::pin::pin!(fut);
        loop {
            tokio::select! {
                r = &mut fut => return r.map(Some),
                c = self.rx.recv() => match c {
                    Some(Control::Reload(why)) => {
                        info!(reason = %why, "reload requested while connecting; it is applied before the broker is connected");
                        self.deferred = Some(why);
                    }
                    _ => return Ok(None),
                },
            }
        }
    }

    /// Run `fut` (the wait for the broker) until it ends, or a stop or a reload request comes
    /// first: a reload may name another broker, so the wait for this one ends.
    pub async fn until_stop_or_reload<T>(&mut self, fut: impl Future<Output = T>) -> Waited<T> {
        tokio::select! {
            r = fut => Waited::Done(r),
            c = self.rx.recv() => match c {
                Some(Control::Reload(why)) => Waited::Reload(why),
                _ => Waited::Stop,
            },
        }
    }

    /// The reload request that came while [`until_stop`](Self::until_stop) waited, once.
    pub fn take_deferred(&mut self) -> Option<ReloadReason> {
        self.deferred.take()
    }
}

/// The process's stop and reload signals as [`Control`] requests: SIGTERM and SIGINT stop,
/// SIGHUP reloads. Feed the receiver to [`crate::run()`].
///
/// # Errors
/// A signal handler could not be installed.
pub fn signals() -> std::io::Result<mpsc::Receiver<Control>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let c = tokio::select! {
                _ = term.recv() => Control::Shutdown,
                _ = int.recv() => Control::Shutdown,
                _ = hup.recv() => Control::Reload(ReloadReason::Signal),
            };
            info!(request = ?c, "signal received");
            if tx.send(c).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Run `fut` until `deadline`; past it, say what was skipped and go on (`None`).
pub async fn best_effort<T>(
    deadline: tokio::time::Instant,
    what: &str,
    fut: impl Future<Output = T>,
) -> Option<T> {
    match tokio::time::timeout_at(deadline, fut).await {
        Ok(v) => Some(v),
        Err(_) => {
            warn!("stop: could not {what} in time (a server does not answer); skipped");
            None
        }
    }
}

/// End the process if the stop has not ended within `limit`: a plain OS thread, so it fires
/// even if the runtime is wedged. Nothing is lost: what was not confirmed is still queued.
fn spawn_stop_guard(limit: Duration) {
    let spawned = std::thread::Builder::new()
        .name("stop-guard".into())
        .spawn(move || {
            std::thread::sleep(limit);
            error!(
                limit_s = limit.as_secs_f64(),
                exit_code = FORCED_STOP_EXIT_CODE,
                "stop did not end within shutdown.drain_timeout_s + 5 s; exiting now; events in flight stay queued and are published first at the next start"
            );
            std::process::exit(FORCED_STOP_EXIT_CODE);
        });
    if let Err(e) = spawned {
        warn!(error = %e, "cannot start the stop guard; the stop is bounded by its steps only");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn until_stop_or_reload_ends_at_either_request() {
        let (tx, rx) = mpsc::channel(4);
        let mut c = Controls::spawn(rx, Duration::from_secs(3600));
        assert_eq!(c.until_stop_or_reload(async { 3 }).await, Waited::Done(3));
        tx.send(Control::Reload(ReloadReason::Notify))
            .await
            .unwrap();
        let never = std::future::pending::<()>();
        assert_eq!(
            c.until_stop_or_reload(never).await,
            Waited::Reload(ReloadReason::Notify)
        );
        tx.send(Control::Shutdown).await.unwrap();
        let never = std::future::pending::<()>();
        assert_eq!(c.until_stop_or_reload(never).await, Waited::Stop);
    }

    #[tokio::test]
    async fn until_stop_yields_to_a_stop_and_keeps_a_reload_for_later() {
        let (tx, rx) = mpsc::channel(4);
        let mut c = Controls::spawn(rx, Duration::from_secs(3600));
        c.sender()
            .send(Control::Reload(ReloadReason::Signal))
            .await
            .unwrap();
        let never = std::future::pending::<Result<(), ()>>();
        let waited = tokio::time::timeout(Duration::from_millis(100), c.until_stop(never)).await;
        assert!(waited.is_err(), "a reload must not end the wait");
        assert_eq!(c.take_deferred(), Some(ReloadReason::Signal));
        assert_eq!(c.take_deferred(), None, "given once");
        // A stop ends it (the guard thread is armed with an hour: the test ends first).
        tx.send(Control::Shutdown).await.unwrap();
        let never = std::future::pending::<Result<(), ()>>();
        assert_eq!(c.until_stop(never).await, Ok(None));
        assert_eq!(c.until_stop(async { Ok::<_, ()>(7) }).await, Ok(Some(7)));
    }

    #[tokio::test]
    async fn best_effort_gives_up_at_the_deadline() {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        let r = best_effort(deadline, "wait", std::future::pending::<()>()).await;
        assert_eq!(r, None);
        let r = best_effort(deadline, "answer", async { 1 }).await;
        assert_eq!(r, Some(1));
    }
}
