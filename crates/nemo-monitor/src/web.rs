//! The web dashboard: one page, the tool board as cards and the live feed,
//! pushed to the browser with Server-Sent Events.
//!
//! Routes:
//!
//! - `GET /` — the page. HTML, CSS and JavaScript are compiled into the binary
//!   (`include_str!`) and served as one document: no build step, no CDN, works on
//!   an air-gapped lab network.
//! - `GET /events` — the SSE stream. The first event (`snapshot`) carries the
//!   whole state (tools, bridge, queue figures, recent feed); every received message then
//!   becomes one `update` event (a queue figures document updates the queue line too). Updates carry a sequence number so the page can
//!   drop the (rare) duplicate that races with the snapshot. A client that falls
//!   behind gets a fresh snapshot instead of a gap.
//! - `GET /api/state` — the current state as JSON (tools, bridge status, the bridge's
//!   verified queue figures and the last ignored figures document, counters).
//!
//! Why SSE and not WebSocket: the data flows one way, SSE reconnects by itself in
//! every browser, and it needs no extra dependency or upgrade handling.
//!
//! **Access.** The dashboard shows who is using which tool, so it listens on
//! loopback by default. A non-loopback address is refused unless a token is set
//! ([`check_listen`]); with a token, every request must carry `?token=T` or
//! `Authorization: Bearer T` (compared in constant time). The page passes the
//! token from its own URL on to the event stream.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::broadcast;

use crate::RecordLine;
use crate::board::{Board, QueueStats};
use crate::format::{Formatter, Paint, clock};
use crate::record::rfc3339_utc;
use crate::view::{FIGURES_SUBJECT, Figures, figures_what};

/// How many feed lines the hub keeps for newly connected pages.
const FEED_KEEP: usize = 200;

/// Errors from starting the web server.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// A non-loopback listen address without `--token`.
    #[error(
        "refusing to listen on {addr}: it is not a loopback address, and the dashboard shows who uses which tool; \
         pass --token <T> to require a token (then open http://{addr}/?token=<T>), or listen on 127.0.0.1"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token is empty.
    #[error("--token must not be empty")]
    EmptyToken,
    /// Binding or serving failed.
    #[error("web server on {addr}: {source}")]
    Io {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Check that `addr` may be served with this token: loopback needs none, any
/// other address requires a non-empty one.
///
/// ```
/// use nemo_monitor::web::check_listen;
/// assert!(check_listen("127.0.0.1:8088".parse().unwrap(), None).is_ok());
/// assert!(check_listen("0.0.0.0:8088".parse().unwrap(), None).is_err());
/// assert!(check_listen("0.0.0.0:8088".parse().unwrap(), Some("s3cret")).is_ok());
/// ```
///
/// # Errors
///
/// [`WebError::TokenRequired`] or [`WebError::EmptyToken`].
pub fn check_listen(addr: SocketAddr, token: Option<&str>) -> Result<(), WebError> {
    match token {
        Some("") => Err(WebError::EmptyToken),
        Some(_) => Ok(()),
        None if addr.ip().is_loopback() => Ok(()),
        None => Err(WebError::TokenRequired { addr }),
    }
}

/// One line of the live feed, as sent to the browser.
#[derive(Debug, Clone, Serialize)]
pub struct FeedItem {
    /// Sequence number of the message (1, 2, ...).
    pub seq: u64,
    /// Receive time, RFC 3339 UTC.
    pub t: String,
    /// Receive time as `HH:MM:SS` in the monitor's zone.
    pub time: String,
    /// The MQTT topic.
    pub topic: String,
    /// Tool name and id, area, ... or the topic.
    pub subject: String,
    /// What happened, in words.
    pub what: String,
    /// Tags such as `[retained]`, `[HMAC ✓]`.
    pub tags: Vec<String>,
    /// CSS class: `in_use`, `ok`, `alert`, `task`, `info` or `raw`.
    pub class: &'static str,
    /// Delivered as retained.
    pub retain: bool,
}

#[derive(Debug)]
struct HubState {
    board: Board,
    feed: VecDeque<FeedItem>,
    seq: u64,
}

/// Shared state of the dashboard: the board, the recent feed, and the channel
/// that pushes updates to connected pages. Feed it with [`Hub::ingest`].
///
/// ```
/// use nemo_monitor::{Board, FormatOptions, Formatter, web::Hub};
/// let hub = Hub::new(Formatter::new(FormatOptions::default()), Board::new());
/// hub.ingest("nemo/tools/1/enabled", br#"{"event": "tool_enabled", "tool_id": 1, "user_name": "Jane"}"#, false, time::OffsetDateTime::now_utc());
/// assert_eq!(hub.state_json()["tools"][0]["status"], "in_use");
/// ```
#[derive(Debug)]
pub struct Hub {
    state: Mutex<HubState>,
    formatter: Formatter,
    tx: broadcast::Sender<Arc<str>>,
    clients: AtomicUsize,
    messages: AtomicU64,
}

impl Hub {
    /// A hub around a formatter (for feed lines) and a board (its offset and
    /// status topic are kept).
    pub fn new(formatter: Formatter, board: Board) -> Arc<Hub> {
        let (tx, _) = broadcast::channel(1024);
        Arc::new(Hub {
            state: Mutex::new(HubState {
                board,
                feed: VecDeque::new(),
                seq: 0,
            }),
            formatter,
            tx,
            clients: AtomicUsize::new(0),
            messages: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        // A panic while holding the lock cannot leave the board inconsistent in a
        // way that matters for display; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take in one received message: update the board and feed, push to pages.
    pub fn ingest(&self, topic: &str, payload: &[u8], retain: bool, at: OffsetDateTime) {
        self.push(topic, payload, retain, at, None);
    }

    /// Take in a queue figures document (`line`) as the caller read it: the verified figures
    /// go to the queue line, a document that was not used is noted; both appear in the feed.
    pub fn ingest_figures(&self, line: &RecordLine, figures: Figures) {
        self.push(
            &line.topic,
            &line.payload,
            line.retain,
            line.received_at,
            Some(figures),
        );
    }

    fn push(
        &self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        at: OffsetDateTime,
        figures: Option<Figures>,
    ) {
        let mut parts = self.formatter.parts(topic, payload, retain, at);
        if let Some(f) = &figures {
            let (what, color) = figures_what(f, false);
            parts.subject = FIGURES_SUBJECT.to_owned();
            parts.what = what;
            parts.color = color;
        }
        let class = match parts.color {
            Paint::YELLOW => "in_use",
            Paint::GREEN => "ok",
            Paint::RED => "alert",
            Paint::MAGENTA => "task",
            Paint::BLUE | Paint::CYAN => "info",
            _ => "raw",
        };
        self.messages.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        let changed = match figures {
            None => st.board.apply(topic, payload, at),
            Some(Ok(q)) => {
                st.board.set_queue_stats(q);
                None
            }
            Some(Err(reason)) => {
                st.board.reject_queue_figures(reason, at);
                None
            }
        };
        st.seq += 1;
        let item = FeedItem {
            seq: st.seq,
            t: rfc3339_utc(at),
            time: clock(at, self.formatter.offset()),
            topic: topic.to_owned(),
            subject: parts.subject,
            what: parts.what,
            tags: parts.tags.into_iter().map(|(t, _)| t).collect(),
            class,
            retain,
        };
        let update = json!({
            "seq": st.seq,
            "feed": &item,
            "tool": changed.as_deref().and_then(|id| st.board.tool(id)),
            "bridge": st.board.bridge(),
            "queue": st.board.queue_stats(),
            "queue_rejected": st.board.rejected_figures(),
        });
        st.feed.push_back(item);
        while st.feed.len() > FEED_KEEP {
            st.feed.pop_front();
        }
        drop(st);
        // No page connected is not an error.
        let _ = self.tx.send(Arc::from(update.to_string()));
    }

    /// Record fresh verified queue figures (without a feed line) and push them to pages.
    pub fn set_queue_stats(&self, stats: QueueStats) {
        let mut st = self.lock();
        st.board.set_queue_stats(stats);
        let update =
            json!({ "seq": st.seq, "queue": st.board.queue_stats(), "queue_rejected": null });
        drop(st);
        let _ = self.tx.send(Arc::from(update.to_string()));
    }

    /// The current state: `{"tools": [...], "bridge": ..., "queue": ..., "queue_rejected":
    /// ..., "messages": n, "sse_clients": n}` (`queue`: the last verified figures;
    /// `queue_rejected`: the last ignored figures document, unless verified ones followed).
    pub fn state_json(&self) -> Value {
        let st = self.lock();
        json!({
            "tools": st.board.tools().collect::<Vec<_>>(),
            "bridge": st.board.bridge(),
            "queue": st.board.queue_stats(),
            "queue_rejected": st.board.rejected_figures(),
            "messages": self.messages.load(Ordering::Relaxed),
            "sse_clients": self.clients.load(Ordering::Relaxed),
        })
    }

    fn snapshot(&self) -> String {
        let mut v = self.state_json();
        let st = self.lock();
        v["seq"] = json!(st.seq);
        v["feed"] = json!(st.feed);
        v.to_string()
    }

    /// Number of pages currently connected to the event stream.
    pub fn sse_clients(&self) -> usize {
        self.clients.load(Ordering::Relaxed)
    }

    /// A copy of the board.
    pub fn board(&self) -> Board {
        self.lock().board.clone()
    }
}

#[derive(Clone)]
struct AppState {
    hub: Arc<Hub>,
    token: Option<Arc<str>>,
}

/// The dashboard's routes, with token checking when `token` is set.
pub fn router(hub: Arc<Hub>, token: Option<String>) -> Router {
    let state = AppState {
        hub,
        token: token.map(Arc::from),
    };
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/api/state", get(api_state))
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Serve the dashboard on `listener` until `shutdown` completes.
///
/// # Errors
///
/// [`WebError::Io`] when serving fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Arc<Hub>,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    let addr = listener.local_addr().map_err(|source| WebError::Io {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    check_listen(addr, token.as_deref())?;
    tracing::info!(%addr, token = token.is_some(), "web dashboard listening");
    axum::serve(listener, router(hub, token))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| WebError::Io { addr, source })
}

fn token_ok(expected: &str, headers: &HeaderMap, query: Option<&str>) -> bool {
    use subtle::ConstantTimeEq;
    let eq = |given: &str| bool::from(given.as_bytes().ct_eq(expected.as_bytes()));
    if let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        && let Some(given) = auth.strip_prefix("Bearer ")
        && eq(given.trim())
    {
        return true;
    }
    query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.strip_prefix("token="))
        .any(|given| eq(&percent_decode(given)))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(expected) = &state.token
        && !token_ok(expected, req.headers(), req.uri().query())
    {
        tracing::warn!(path = %req.uri().path(), "web request without a valid token");
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "token required: add ?token=<T> or Authorization: Bearer <T>\n",
        )
            .into_response();
    }
    next.run(req).await
}

const PAGE: &str = include_str!("web/index.html");
const CSS: &str = include_str!("web/app.css");
const JS: &str = include_str!("web/app.js");

async fn page() -> impl IntoResponse {
    let html = PAGE
        .replacen("/*APP_CSS*/", CSS, 1)
        .replacen("/*APP_JS*/", JS, 1);
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(html),
    )
}

async fn api_state(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(state.hub.state_json()),
    )
}

/// Decrements the client count when the SSE stream is dropped.
struct ClientGuard(Arc<Hub>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let hub = state.hub;
    // Subscribe before taking the snapshot so nothing falls between them.
    let rx = hub.tx.subscribe();
    let snapshot = hub.snapshot();
    hub.clients.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(
        clients = hub.sse_clients(),
        "page connected to the event stream"
    );
    let guard = ClientGuard(hub.clone());
    let first = futures::stream::once(async move {
        Ok::<_, Infallible>(Event::default().event("snapshot").data(snapshot))
    });
    let rest = futures::stream::unfold((rx, guard), |(mut rx, guard)| async move {
        let ev = match rx.recv().await {
            Ok(update) => Event::default().event("update").data(&*update),
            Err(broadcast::error::RecvError::Lagged(skipped)) => {
                tracing::debug!(skipped, "slow page, sending a fresh snapshot");
                Event::default().event("snapshot").data(guard.0.snapshot())
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(ev), (rx, guard)))
    });
    use futures::StreamExt as _;
    Sse::new(first.chain(rest)).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_header_or_query() {
        let mut h = HeaderMap::new();
        assert!(!token_ok("abc", &h, None));
        assert!(token_ok("abc", &h, Some("x=1&token=abc")));
        assert!(!token_ok("abc", &h, Some("token=abd")));
        assert!(token_ok("a b%", &h, Some("token=a%20b%25")));
        h.insert(
            header::AUTHORIZATION,
            "Bearer abc".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert!(token_ok("abc", &h, None));
    }
}
