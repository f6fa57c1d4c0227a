//! The monitor's run: subscribe at the broker, read the bridge's queue statistics from Redis
//! every few seconds, and feed both into a [`View`] (and the recording) until the messages end,
//! the output closes or the program is told to stop.
//!
//! The loop itself, [`pump`], takes its messages from any [`Messages`] source, so it is tested
//! with a channel instead of a broker; [`run`] wires it to nemo-mqtt's subscriber, nemo-redis'
//! queue statistics ([`poll_queue`]) and the web dashboard.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nemo_backoff::BackoffConfig;
use nemo_mqtt::{MqttError, Subscriber};
use nemo_redis::RedisConfig;
use time::UtcOffset;
use tokio::sync::{mpsc, watch};

use crate::cli::Setup;
use crate::view::{Show, View};
use crate::web::{Hub, WebError};
use crate::{Board, FormatOptions, Formatter, QueueStats, RecordLine, Recorder};

/// Log target of the monitor's own lines (as when they were written by the `monitor` binary, so
/// `RUST_LOG=monitor=info` keeps selecting them).
const LOG: &str = "monitor";

/// What the monitor shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Readable lines (the default).
    Lines,
    /// Raw JSONL, the recording format (`--json`).
    Json,
    /// The tool board, redrawn every second (`monitor board`).
    Board,
    /// The web dashboard (`monitor web`).
    Web {
        /// Address to listen on.
        listen: SocketAddr,
        /// Token every request must carry; required for a non-loopback address.
        token: Option<String>,
    },
}

/// Why the monitor stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The dashboard may not listen there (a public address without a token).
    #[error(transparent)]
    Web(#[from] WebError),
    /// The dashboard's address cannot be bound.
    #[error("cannot listen on {addr}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The recording cannot be opened.
    #[error("--record {}: cannot open", path.display())]
    RecordOpen {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing to the recording failed (the monitor stops rather than record with holes).
    #[error("--record: write failed: {0}")]
    RecordWrite(std::io::Error),
    /// Connecting or subscribing at the broker failed.
    #[error("MQTT: {0}")]
    Mqtt(MqttError),
    /// Writing the output failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A source of received messages.
pub trait Messages {
    /// The next message; `None` when there will be no more.
    fn next_message(&mut self) -> impl Future<Output = Option<RecordLine>>;
}

impl Messages for Subscriber {
    async fn next_message(&mut self) -> Option<RecordLine> {
        let msg = self.recv().await?;
        Some(RecordLine {
            received_at: msg.received_at,
            topic: msg.topic,
            payload: msg.payload,
            qos: msg.qos.as_u8(),
            retain: msg.retain,
        })
    }
}

impl Messages for mpsc::UnboundedReceiver<RecordLine> {
    async fn next_message(&mut self) -> Option<RecordLine> {
        self.recv().await
    }
}

/// Run the monitor with this setup until `shutdown` completes (Ctrl-C), the subscription
/// ends, or stdout is closed. Writes to stdout and stderr; `offset` is the local UTC offset,
/// determined by the caller while the process was still single-threaded.
///
/// # Errors
/// [`RunError`]: the dashboard's address, the recording, the broker, or the output.
pub async fn run(
    setup: Setup,
    output: Output,
    offset: UtcOffset,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let color = !setup.no_color && std::io::stdout().is_terminal();
    let offset = if setup.utc { UtcOffset::UTC } else { offset };
    let formatter = Formatter::with_offset(
        FormatOptions {
            color,
            hmac_key: setup.hmac_key.clone(),
            utc: setup.utc,
        },
        offset,
    );
    let board = Board::new()
        .with_offset(offset)
        .with_status_topic(setup.status_topic.clone())
        .with_hmac_key(setup.hmac_key.clone());

    // Refuse a public web listener without a token before connecting anywhere.
    let web = match &output {
        Output::Web { listen, token } => {
            crate::web::check_listen(*listen, token.as_deref())?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|source| RunError::Listen {
                    addr: *listen,
                    source,
                })?;
            Some((listener, token.clone()))
        }
        _ => None,
    };
    let mut recorder = match &setup.record {
        Some(path) => Some(
            Recorder::create(path).map_err(|source| RunError::RecordOpen {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };

    let filters: Vec<&str> = setup.filters.iter().map(String::as_str).collect();
    let mut sub = Subscriber::connect(setup.mqtt.clone(), &filters, nemo_events::Qos::ExactlyOnce)
        .await
        .map_err(RunError::Mqtt)?;
    tracing::info!(target: LOG, filters = ?setup.filters, "subscribed");

    let (stats_tx, stats_rx) = watch::channel::<Option<QueueStats>>(None);
    if let Some(redis) = setup.redis.clone() {
        let every = setup.health_interval;
        tokio::spawn(poll_queue(redis, setup.backoff.clone(), every, stats_tx));
    }

    let (stop_web, web_stopped) = watch::channel(false);
    let show = match (web, &output) {
        (Some((listener, token)), _) => {
            let hub = Hub::new(formatter, board);
            let addr = listener.local_addr()?;
            let shown = if token.is_some() {
                format!("http://{addr}/?token=<token>")
            } else {
                format!("http://{addr}/")
            };
            eprintln!("monitor: web dashboard on {shown}");
            let serve_hub = hub.clone();
            let mut stopped = web_stopped;
            tokio::spawn(async move {
                let stop = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(e) = crate::web::serve(listener, serve_hub, token, stop).await {
                    tracing::error!(target: LOG, error = %e, "web server stopped");
                }
            });
            Show::Web(hub)
        }
        (None, Output::Board) => Show::Board {
            board,
            color,
            clear_screen: std::io::stdout().is_terminal(),
        },
        (None, Output::Json) => Show::Json,
        (None, _) => Show::Lines(formatter),
    };
    let mut view = View::new(show, std::io::stdout(), std::io::stderr());
    let result = pump(&mut sub, stats_rx, &mut view, recorder.as_mut(), shutdown).await;
    let _ = stop_web.send(true);
    let _ = sub.shutdown().await;
    result
}

/// Feed `messages` (each also appended to `recorder`), the queue statistics arriving on
/// `stats` and, for the board, a tick every second into `view`, until the messages end, the
/// view's output is closed, or `shutdown` completes. A `stats` sender that is dropped only
/// stops the statistics.
///
/// # Errors
/// Writing the recording or the view's output failed.
pub async fn pump<O, E>(
    messages: &mut impl Messages,
    mut stats: watch::Receiver<Option<QueueStats>>,
    view: &mut View<O, E>,
    mut recorder: Option<&mut Recorder>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError>
where
    O: std::io::Write,
    E: std::io::Write,
{
    tokio::pin!(shutdown);
    let redraws = view.redraws();
    let mut stats_open = true;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            line = messages.next_message() => {
                let Some(line) = line else { break };
                if let Some(rec) = recorder.as_deref_mut() {
                    rec.write(&line).map_err(RunError::RecordWrite)?;
                }
                if !view.message(&line)? {
                    break;
                }
            }
            changed = stats.changed(), if stats_open => {
                // Err: the poller ended; stop polling this branch.
                stats_open = changed.is_ok();
                let reading = *stats.borrow_and_update();
                if let Some(reading) = reading
                    && !view.stats(reading)?
                {
                    break;
                }
            }
            _ = tick.tick(), if redraws => {
                if !view.redraw()? {
                    break;
                }
            }
            () = &mut shutdown => break,
        }
    }
    Ok(())
}

/// Read the queue's depth, processing and dead-letter counts every `every` and send them on
/// `tx`, reconnecting (and saying so in the log) when Redis is away. Returns when nobody
/// listens on `tx` any more.
pub async fn poll_queue(
    redis_cfg: RedisConfig,
    backoff: BackoffConfig,
    every: Duration,
    tx: watch::Sender<Option<QueueStats>>,
) {
    loop {
        let redis = match nemo_redis::Redis::connect(&redis_cfg, &backoff).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target: LOG, url = %redis_cfg.redacted_url(), error = %e, "redis: cannot connect for queue statistics; retrying");
                tokio::time::sleep(every).await;
                continue;
            }
        };
        let stats = redis.stats();
        loop {
            let read = async {
                Ok::<_, nemo_redis::RedisError>(QueueStats::now(
                    stats.depth().await?,
                    stats.processing_len().await?,
                    stats.dead_len().await?,
                ))
            };
            match read.await {
                Ok(s) => {
                    if tx.send(Some(s)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::warn!(target: LOG, error = %e, "redis: reading queue statistics failed");
                }
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use time::macros::datetime;

    fn line(n: u64) -> RecordLine {
        RecordLine {
            received_at: datetime!(2025-10-16 14:02:33 UTC),
            topic: format!("nemo/tools/{n}/enabled"),
            payload: format!(r#"{{"event": "tool_enabled", "tool_id": {n}}}"#).into(),
            qos: 1,
            retain: false,
        }
    }

    fn never() -> impl Future<Output = ()> {
        std::future::pending()
    }

    #[tokio::test]
    async fn messages_are_shown_and_recorded_until_they_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.jsonl");
        let mut recorder = Recorder::create(&path).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        for n in 1..=3 {
            tx.send(line(n)).unwrap();
        }
        drop(tx);
        let (_stats_tx, stats_rx) = watch::channel(None);
        let mut view = View::new(Show::Json, Vec::new(), Vec::new());
        pump(&mut rx, stats_rx, &mut view, Some(&mut recorder), never())
            .await
            .unwrap();
        assert_eq!(recorder.lines_written(), 3);
        let (out, _) = view.into_outputs();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, std::fs::read_to_string(&path).unwrap());
        assert_eq!(out.lines().count(), 3);
    }

    #[tokio::test]
    async fn queue_readings_reach_the_view_and_a_gone_poller_is_fine() {
        let (tx, mut rx) = mpsc::unbounded_channel::<RecordLine>();
        let (stats_tx, stats_rx) = watch::channel(None);
        stats_tx.send(Some(QueueStats::now(7, 0, 2))).unwrap();
        drop(stats_tx);
        let mut view = View::new(Show::Json, Vec::new(), Vec::new());
        let pumping = pump(&mut rx, stats_rx, &mut view, None, never());
        // The reading arrives, the poller's end is noticed, then the messages end.
        let ending = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(tx);
        };
        let (result, ()) = tokio::join!(pumping, ending);
        result.unwrap();
        let (out, err) = view.into_outputs();
        assert!(out.is_empty());
        assert_eq!(
            String::from_utf8(err).unwrap(),
            "queue: depth 7 · processing 0 · dead 2\n"
        );
    }

    #[tokio::test]
    async fn shutdown_stops_the_loop() {
        let (_tx, mut rx) = mpsc::unbounded_channel::<RecordLine>();
        let (_stats_tx, stats_rx) = watch::channel(None);
        let mut view = View::new(Show::Json, Vec::new(), Vec::new());
        tokio::time::timeout(
            Duration::from_secs(5),
            pump(&mut rx, stats_rx, &mut view, None, async {}),
        )
        .await
        .expect("the loop ignored the shutdown")
        .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_board_is_drawn_every_second() {
        let (tx, mut rx) = mpsc::unbounded_channel::<RecordLine>();
        tx.send(line(4)).unwrap();
        let (_stats_tx, stats_rx) = watch::channel(None);
        let show = Show::Board {
            board: Board::new(),
            color: false,
            clear_screen: false,
        };
        let mut view = View::new(show, Vec::new(), Vec::new());
        let stop = tokio::time::sleep(Duration::from_millis(2500));
        pump(&mut rx, stats_rx, &mut view, None, stop)
            .await
            .unwrap();
        let (out, _) = view.into_outputs();
        let out = String::from_utf8(out).unwrap();
        // At 0 s, 1 s and 2 s.
        assert_eq!(out.matches("---\n").count(), 3, "{out}");
        assert!(out.contains("#4"), "{out}");
    }
}
