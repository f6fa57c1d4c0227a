//! The monitor's run: subscribe at the broker and feed every message into a [`View`] (and the
//! recording) until the messages end, the output closes or the program is told to stop.
//!
//! The monitor only listens to the broker. The bridge's queue figures (pending, in
//! processing, dead, and whether the displays' broker is connected) arrive as a retained
//! document beside the bridge's status (`nemo/bridge/status` → `nemo/bridge/queue`), in both
//! queue modes (Redis or NEMO's database table). [`FiguresReader`] reads them with the
//! contract's own parser, `nemo_mqtt::QueueFigures::parse`: with an HMAC key, a document without
//! a valid signature is shown as not verified and its numbers are not used, as the bridge's
//! status is treated.
//!
//! The loop itself, [`pump`], takes its messages from any [`Messages`] source, so it is tested
//! with a channel instead of a broker; [`run`] wires it to nemo-mqtt's subscriber and the web
//! dashboard.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nemo_mqtt::{MqttError, QueueFigures, Subscriber};
use time::UtcOffset;
use tokio::sync::{mpsc, watch};

use crate::cli::Setup;
use crate::view::{Figures, Show, View};
use crate::web::{Hub, WebError};
use crate::{Board, FormatOptions, Formatter, QueueStats, RecordLine, Recorder};

/// Recognises and reads the bridge's queue figures documents.
///
/// ```
/// use nemo_monitor::app::FiguresReader;
/// let reader = FiguresReader::new("nemo/bridge/queue", Some(b"k".to_vec()));
/// let doc = r#"{"source":"database","pending":3,"processing":1,"dead":0,"at":"2026-12-07T16:00:00Z"}"#;
/// let signed = nemo_events::hmac::sign(doc, b"k");
/// let q = reader.read("nemo/bridge/queue", signed.as_bytes()).unwrap().unwrap();
/// assert_eq!((q.source.as_str(), q.pending), ("database", 3));
/// assert!(reader.read("nemo/bridge/queue", doc.as_bytes()).unwrap().is_err(), "unsigned");
/// assert!(reader.read("nemo/tools/1/enabled", doc.as_bytes()).is_none(), "another topic");
/// ```
#[derive(Clone)]
pub struct FiguresReader {
    topic: String,
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for FiguresReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FiguresReader")
            .field("topic", &self.topic)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl FiguresReader {
    /// Figures on `topic`, verified with `key` when one is given.
    pub fn new(topic: impl Into<String>, key: Option<Vec<u8>>) -> FiguresReader {
        FiguresReader {
            topic: topic.into(),
            key,
        }
    }

    /// The topic the figures are read from.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// `None` for a message on another topic; else the figures, or why they are not used (a
    /// missing or wrong signature when a key is given, a document of another shape). An empty
    /// payload (the retained document being cleared) is not a document.
    pub fn read(&self, topic: &str, payload: &[u8]) -> Option<Figures> {
        if topic != self.topic || payload.is_empty() {
            return None;
        }
        Some(
            QueueFigures::parse(payload, self.key.as_deref())
                .map(|f| QueueStats {
                    source: f.source,
                    pending: f.pending,
                    processing: f.processing,
                    dead: f.dead,
                    display_connected: f.display_connected,
                    at: f.at,
                })
                .map_err(|e| e.to_string()),
        )
    }
}

/// Whether the MQTT topic filter `filter` (`+` one level, `#` the rest) matches `topic`.
///
/// ```
/// use nemo_monitor::app::filter_matches;
/// assert!(filter_matches("nemo/#", "nemo/bridge/queue"));
/// assert!(filter_matches("nemo/+/queue", "nemo/bridge/queue"));
/// assert!(!filter_matches("nemo/tools/#", "nemo/bridge/queue"));
/// ```
pub fn filter_matches(filter: &str, topic: &str) -> bool {
    let mut levels = topic.split('/');
    for f in filter.split('/') {
        if f == "#" {
            return true;
        }
        match levels.next() {
            Some(level) if f == "+" || f == level => {}
            _ => return false,
        }
    }
    levels.next().is_none()
}

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

    // The bridge's status and figures topics are subscribed to even when the filters leave
    // them out (a `[status] topic` outside `nemo/#`, or `--filter nemo/tools/#`).
    let figures = setup
        .figures_topic
        .as_ref()
        .map(|t| FiguresReader::new(t.clone(), setup.hmac_key.clone()));
    let mut filters: Vec<&str> = setup.filters.iter().map(String::as_str).collect();
    for t in [
        Some(setup.status_topic.as_str()),
        setup.figures_topic.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter(|t| !t.is_empty())
    {
        if !filters.iter().any(|f| filter_matches(f, t)) {
            filters.push(t);
        }
    }
    let mut sub = Subscriber::connect(setup.mqtt.clone(), &filters, nemo_events::Qos::ExactlyOnce)
        .await
        .map_err(RunError::Mqtt)?;
    tracing::info!(target: LOG, ?filters, "subscribed");

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
    let result = pump(
        &mut sub,
        figures.as_ref(),
        &mut view,
        recorder.as_mut(),
        shutdown,
    )
    .await;
    let _ = stop_web.send(true);
    let _ = sub.shutdown().await;
    result
}

/// Feed `messages` (each also appended to `recorder`) and, for the board, a tick every second
/// into `view`, until the messages end, the view's output is closed, or `shutdown` completes.
/// A message that `figures` recognises goes to [`View::figures`] as read.
///
/// # Errors
/// Writing the recording or the view's output failed.
pub async fn pump<O, E>(
    messages: &mut impl Messages,
    figures: Option<&FiguresReader>,
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
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            line = messages.next_message() => {
                let Some(line) = line else { break };
                if let Some(rec) = recorder.as_deref_mut() {
                    rec.write(&line).map_err(RunError::RecordWrite)?;
                }
                let read = figures.and_then(|f| f.read(&line.topic, &line.payload));
                if let Some(Err(reason)) = &read {
                    tracing::debug!(target: LOG, topic = %line.topic, %reason, "queue figures ignored");
                }
                let go_on = match read {
                    Some(figures) => view.figures(&line, figures)?,
                    None => view.message(&line)?,
                };
                if !go_on {
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
        let mut view = View::new(Show::Json, Vec::new(), Vec::new());
        pump(&mut rx, None, &mut view, Some(&mut recorder), never())
            .await
            .unwrap();
        assert_eq!(recorder.lines_written(), 3);
        let (out, _) = view.into_outputs();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out, std::fs::read_to_string(&path).unwrap());
        assert_eq!(out.lines().count(), 3);
    }

    fn figures(payload: String) -> RecordLine {
        RecordLine {
            topic: "nemo/bridge/queue".into(),
            payload: payload.into_bytes().into(),
            ..line(0)
        }
    }

    #[tokio::test]
    async fn signed_figures_reach_the_view_and_badly_signed_ones_are_ignored() {
        let doc = QueueFigures {
            source: "database".into(),
            pending: 7,
            processing: 0,
            dead: 2,
            display_connected: Some(false),
            at: datetime!(2025-10-16 14:02:30 UTC),
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<RecordLine>();
        tx.send(figures(doc.payload(Some(b"k")))).unwrap();
        tx.send(figures(doc.payload(Some(b"wrong")))).unwrap();
        tx.send(figures(doc.payload(None))).unwrap();
        tx.send(line(3)).unwrap();
        drop(tx);
        let reader = FiguresReader::new("nemo/bridge/queue", Some(b"k".to_vec()));
        let mut view = View::new(Show::Json, Vec::new(), Vec::new());
        pump(&mut rx, Some(&reader), &mut view, None, never())
            .await
            .unwrap();
        let (out, err) = view.into_outputs();
        assert_eq!(
            String::from_utf8(out).unwrap().lines().count(),
            4,
            "all recorded"
        );
        let err = String::from_utf8(err).unwrap();
        let notes: Vec<&str> = err.lines().collect();
        assert_eq!(notes.len(), 3, "{err}");
        assert_eq!(
            notes[0],
            "queue (database): 7 pending · 0 in processing · 2 dead · displays' broker NOT connected"
        );
        assert!(
            notes[1].starts_with("NOT VERIFIED, ignored (queue figures: signature"),
            "{err}"
        );
        assert!(
            notes[2].starts_with("NOT VERIFIED, ignored (queue figures: signature"),
            "unsigned: {err}"
        );
    }

    #[test]
    fn filters_match_like_a_broker() {
        assert!(filter_matches("nemo/bridge/queue", "nemo/bridge/queue"));
        assert!(filter_matches("#", "nemo/bridge/queue"));
        assert!(filter_matches("nemo/+/+", "nemo/bridge/queue"));
        assert!(!filter_matches("nemo/+", "nemo/bridge/queue"));
        assert!(!filter_matches("nemo/bridge/queue/+", "nemo/bridge/queue"));
        assert!(filter_matches("nemo/bridge/queue/#", "nemo/bridge/queue"));
    }

    #[tokio::test]
    async fn shutdown_stops_the_loop() {
        let (_tx, mut rx) = mpsc::unbounded_channel::<RecordLine>();
        let mut view = View::new(Show::Json, Vec::new(), Vec::new());
        tokio::time::timeout(
            Duration::from_secs(5),
            pump(&mut rx, None, &mut view, None, async {}),
        )
        .await
        .expect("the loop ignored the shutdown")
        .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_board_is_drawn_every_second() {
        let (tx, mut rx) = mpsc::unbounded_channel::<RecordLine>();
        tx.send(line(4)).unwrap();
        let show = Show::Board {
            board: Board::new(),
            color: false,
            clear_screen: false,
        };
        let mut view = View::new(show, Vec::new(), Vec::new());
        let stop = tokio::time::sleep(Duration::from_millis(2500));
        pump(&mut rx, None, &mut view, None, stop).await.unwrap();
        let (out, _) = view.into_outputs();
        let out = String::from_utf8(out).unwrap();
        // At 0 s, 1 s and 2 s.
        assert_eq!(out.matches("---\n").count(), 3, "{out}");
        assert!(out.contains("#4"), "{out}");
    }
}
