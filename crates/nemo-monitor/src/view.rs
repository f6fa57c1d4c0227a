//! What the monitor shows for each message, queue figures document and clock tick: readable
//! lines, raw JSONL, the tool board redrawn in place, or the web dashboard's hub.
//!
//! A [`View`] writes to any [`Write`], so what a person sees is tested against a `Vec<u8>`; the
//! `monitor` program hands it stdout and stderr. Every method returns `Ok(false)` once the output
//! is closed (`monitor | head`): the monitor then stops quietly instead of failing.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use crate::format::{Paint, clock, pad};
use crate::web::Hub;
use crate::{Board, Formatter, QueueStats, RecordLine};

/// A queue figures document as the caller read it: the figures, or why they are not used
/// (with a key: a missing or wrong signature; without: a document of another shape).
pub type Figures = Result<QueueStats, String>;

/// Subject of the figures in the terminal lines and the web feed.
pub(crate) const FIGURES_SUBJECT: &str = "bridge queue";

/// What a figures document says, in words, and its colour.
pub(crate) fn figures_what(figures: &Figures, color: bool) -> (String, &'static str) {
    match figures {
        Ok(q) => {
            let code = if q.dead > 0 || q.display_connected == Some(false) {
                Paint::RED
            } else {
                Paint::BLUE
            };
            (q.summary(color), code)
        }
        Err(reason) => (format!("NOT VERIFIED, ignored ({reason})"), Paint::RED),
    }
}

/// Which view, with what it needs.
#[derive(Debug)]
pub enum Show {
    /// One readable line per message (the default); a queue figures document is shown in
    /// words when its numbers change or it does not verify.
    Lines(Formatter),
    /// One recording line per message (`--json`), figures documents included; the figures in
    /// words go to the error output (when they change) so the output stays pure JSONL.
    Json,
    /// The tool board, drawn on every [`View::redraw`] (`monitor board`).
    Board {
        /// The board messages are applied to.
        board: Board,
        /// Colour the board.
        color: bool,
        /// Clear the screen before each drawing (a terminal); otherwise drawings are separated
        /// by a `---` line (a pipe or a file).
        clear_screen: bool,
    },
    /// Everything goes to the web dashboard's hub; nothing is written (`monitor web`).
    Web(Arc<Hub>),
}

/// A view and its outputs: `out` for what the view shows, `err` for notes beside it.
///
/// ```
/// use nemo_monitor::view::{Show, View};
/// use nemo_monitor::{QueueStats, RecordLine};
///
/// let mut view = View::new(Show::Json, Vec::new(), Vec::new());
/// let at = time::macros::datetime!(2025-10-16 14:02:33 UTC);
/// let line = RecordLine {
///     received_at: at,
///     topic: "nemo/tools/1/enabled".into(),
///     payload: br#"{"event": "tool_enabled"}"#.to_vec().into(),
///     qos: 1,
///     retain: false,
/// };
/// assert!(view.message(&line)?);
/// let figures = RecordLine { topic: "nemo/bridge/queue".into(), ..line.clone() };
/// let q = QueueStats { source: "list".into(), pending: 3, processing: 1, dead: 0, display_connected: None, at };
/// assert!(view.figures(&figures, Ok(q))?);
/// let (out, err) = view.into_outputs();
/// assert!(String::from_utf8(out)?.starts_with(r#"{"t":"2025-10-16T14:02:33Z","topic":"nemo/tools/1/enabled""#));
/// assert_eq!(String::from_utf8(err)?, "queue (list): 3 pending · 1 in processing · 0 dead\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct View<O, E> {
    show: Show,
    out: O,
    err: E,
    /// The figures last written in words, so that a line appears only when they change.
    last_health: Option<String>,
}

impl<O, E> fmt::Debug for View<O, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("View")
            .field("show", &self.show)
            .field("last_health", &self.last_health)
            .finish_non_exhaustive()
    }
}

/// Write a line and flush; `Ok(false)` when the reader has gone (a broken pipe).
fn emit(out: &mut impl Write, text: &str) -> io::Result<bool> {
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

impl<O: Write, E: Write> View<O, E> {
    /// A view writing to `out` (and notes to `err`).
    pub fn new(show: Show, out: O, err: E) -> Self {
        View {
            show,
            out,
            err,
            last_health: None,
        }
    }

    /// True for the board, which wants [`redraw`](Self::redraw) called every second.
    pub fn redraws(&self) -> bool {
        matches!(self.show, Show::Board { .. })
    }

    /// Show one received message.
    ///
    /// # Errors
    /// Writing to `out` failed (other than a closed pipe, which is `Ok(false)`).
    pub fn message(&mut self, line: &RecordLine) -> io::Result<bool> {
        match &mut self.show {
            Show::Json => emit(&mut self.out, &line.to_json_line()),
            Show::Lines(f) => emit(
                &mut self.out,
                &f.line(&line.topic, &line.payload, line.retain, line.received_at),
            ),
            Show::Board { board, .. } => {
                board.apply(&line.topic, &line.payload, line.received_at);
                Ok(true)
            }
            Show::Web(hub) => {
                hub.ingest(&line.topic, &line.payload, line.retain, line.received_at);
                Ok(true)
            }
        }
    }

    /// Show a received queue figures document (`line`, on the figures topic) as the caller
    /// read it (`figures`). The board and the dashboard keep verified figures for their health
    /// line and say when a document was ignored (the dashboard's feed shows every document);
    /// the line views write the figures in words only when they change, not for every
    /// document, and every document that was not used.
    ///
    /// # Errors
    /// Writing failed (other than a closed pipe on `out`, which is `Ok(false)`).
    pub fn figures(&mut self, line: &RecordLine, figures: Figures) -> io::Result<bool> {
        match &mut self.show {
            Show::Board { board, .. } => {
                match figures {
                    Ok(q) => board.set_queue_stats(q),
                    Err(reason) => board.reject_queue_figures(reason, line.received_at),
                }
                Ok(true)
            }
            Show::Web(hub) => {
                hub.ingest_figures(line, figures);
                Ok(true)
            }
            Show::Json => {
                if !emit(&mut self.out, &line.to_json_line())? {
                    return Ok(false);
                }
                let (what, _) = figures_what(&figures, false);
                if figures.is_ok() && self.last_health.as_deref() == Some(what.as_str()) {
                    return Ok(true);
                }
                self.last_health = figures.is_ok().then(|| what.clone());
                // Keep the output pure JSONL. A closed stderr is no reason to stop the stream.
                emit(&mut self.err, &what).map(|_| true)
            }
            Show::Lines(f) => {
                let color = f.options().color;
                let (plain, _) = figures_what(&figures, false);
                if figures.is_ok() && self.last_health.as_deref() == Some(plain.as_str()) {
                    return Ok(true);
                }
                self.last_health = figures.is_ok().then_some(plain);
                let p = Paint { on: color };
                let (what, code) = figures_what(&figures, color);
                let mut text = format!(
                    "{}  {}  {}",
                    p.paint(Paint::DIM, &clock(line.received_at, f.offset())),
                    p.paint(Paint::BOLD, &pad(FIGURES_SUBJECT, 34)),
                    if color && figures.is_ok() {
                        what
                    } else {
                        p.paint(code, &what)
                    }
                );
                if let Ok(q) = &figures {
                    text.push_str(&format!(" (at {})", clock(q.at, f.offset())));
                }
                if line.retain {
                    text.push_str("  [retained]");
                }
                emit(&mut self.out, &text)
            }
        }
    }

    /// Draw the board again (its durations count up); the other views draw nothing.
    ///
    /// # Errors
    /// Writing to `out` failed (other than a closed pipe, which is `Ok(false)`).
    pub fn redraw(&mut self) -> io::Result<bool> {
        let Show::Board {
            board,
            color,
            clear_screen,
        } = &self.show
        else {
            return Ok(true);
        };
        let text = board.render(*color);
        if *clear_screen {
            // Clear the screen and home the cursor, then draw.
            emit(&mut self.out, &format!("\x1b[2J\x1b[H{text}"))
        } else {
            emit(&mut self.out, &format!("{text}---"))
        }
    }

    /// The outputs back (for a test to read what was written).
    pub fn into_outputs(self) -> (O, E) {
        (self.out, self.err)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::FormatOptions;
    use time::OffsetDateTime;
    use time::macros::datetime;

    const AT: OffsetDateTime = datetime!(2025-10-16 14:02:33 UTC);

    fn enabled() -> RecordLine {
        RecordLine {
            received_at: AT,
            topic: "nemo/tools/1/enabled".into(),
            payload: br#"{"event": "tool_enabled", "tool_id": 1, "tool_name": "Zeiss Supra 55 SEM", "user_name": "Jane Doe"}"#
                .to_vec()
                .into(),
            qos: 1,
            retain: true,
        }
    }

    fn queue(pending: u64, processing: u64, dead: u64) -> QueueStats {
        QueueStats {
            source: "database".into(),
            pending,
            processing,
            dead,
            display_connected: None,
            at: AT,
        }
    }

    fn figures_line() -> RecordLine {
        RecordLine {
            topic: "nemo/bridge/queue".into(),
            payload: br#"{"source":"database"}"#.to_vec().into(),
            ..enabled()
        }
    }

    fn formatter(color: bool) -> Formatter {
        Formatter::new(FormatOptions {
            color,
            hmac_key: None,
            utc: true,
        })
    }

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).unwrap()
    }

    /// A writer whose reader has gone.
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// A writer that fails for another reason.
    struct Full;
    impl Write for Full {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_show_the_formatters_line_per_message() {
        let mut view = View::new(Show::Lines(formatter(false)), Vec::new(), Vec::new());
        assert!(view.message(&enabled()).unwrap());
        assert!(!view.redraws());
        assert!(view.redraw().unwrap(), "no board, nothing drawn");
        let (out, err) = view.into_outputs();
        let expected = formatter(false).line(&enabled().topic, &enabled().payload, true, AT);
        assert_eq!(text(out), format!("{expected}\n"));
        assert!(err.is_empty());
    }

    #[test]
    fn lines_show_queue_figures_only_when_they_change_and_every_ignored_document() {
        let mut view = View::new(Show::Lines(formatter(false)), Vec::new(), Vec::new());
        let fl = figures_line();
        for s in [(3, 1, 0), (3, 1, 0), (0, 0, 0), (0, 0, 0), (3, 1, 0)] {
            assert!(view.figures(&fl, Ok(queue(s.0, s.1, s.2))).unwrap());
        }
        assert!(
            view.figures(&fl, Err("signature: mismatch".into()))
                .unwrap()
        );
        assert!(view.figures(&fl, Ok(queue(3, 1, 0))).unwrap());
        let (out, _) = view.into_outputs();
        let out = text(out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        assert_eq!(
            lines[0],
            "14:02:33  bridge queue                        queue (database): 3 pending · 1 in processing · 0 dead (at 14:02:33)  [retained]"
        );
        assert!(lines[1].contains("0 pending"), "{out}");
        assert!(
            lines[3].ends_with("NOT VERIFIED, ignored (signature: mismatch)  [retained]"),
            "{out}"
        );
        assert!(
            lines[4].contains("3 pending"),
            "shown again after an ignored one: {out}"
        );
        assert!(!out.contains('\x1b'), "no colour asked: {out:?}");
    }

    #[test]
    fn json_keeps_stdout_pure_jsonl() {
        let mut view = View::new(Show::Json, Vec::new(), Vec::new());
        assert!(view.message(&enabled()).unwrap());
        assert!(view.figures(&figures_line(), Ok(queue(2, 0, 1))).unwrap());
        assert!(view.figures(&figures_line(), Ok(queue(2, 0, 1))).unwrap());
        let (out, err) = view.into_outputs();
        let out = text(out);
        let lines: Vec<RecordLine> = out
            .lines()
            .map(|l| crate::RecordLine::parse(l).unwrap())
            .collect();
        assert_eq!(
            lines,
            [enabled(), figures_line(), figures_line()],
            "every message recorded: {out}"
        );
        assert_eq!(
            text(err),
            "queue (database): 2 pending · 0 in processing · 1 dead\n"
        );
    }

    #[test]
    fn a_closed_stderr_does_not_stop_the_json_stream() {
        let mut view = View::new(Show::Json, Vec::new(), Closed);
        assert!(view.figures(&figures_line(), Ok(queue(2, 0, 1))).unwrap());
        assert!(view.message(&enabled()).unwrap());
    }

    #[test]
    fn the_board_collects_and_draws_on_ticks() {
        let show = Show::Board {
            board: Board::new(),
            color: false,
            clear_screen: false,
        };
        let mut view = View::new(show, Vec::new(), Vec::new());
        assert!(view.redraws());
        assert!(view.message(&enabled()).unwrap());
        assert!(view.figures(&figures_line(), Ok(queue(4, 0, 0))).unwrap());
        assert!(view.redraw().unwrap());
        let (out, err) = view.into_outputs();
        let out = text(out);
        assert!(out.contains("Jane Doe"), "{out}");
        assert!(
            out.contains("| queue (database): 4 pending · 0 in processing · 0 dead (at 14:02:33, "),
            "{out}"
        );
        assert!(out.ends_with("---\n"), "{out}");
        assert!(!out.contains('\x1b'), "{out:?}");
        assert!(err.is_empty());
    }

    #[test]
    fn on_a_terminal_the_board_clears_the_screen_first() {
        let show = Show::Board {
            board: Board::new(),
            color: true,
            clear_screen: true,
        };
        let mut view = View::new(show, Vec::new(), Vec::new());
        assert!(view.redraw().unwrap());
        let (out, _) = view.into_outputs();
        assert!(text(out).starts_with("\x1b[2J\x1b[H"));
    }

    #[test]
    fn web_feeds_the_hub_and_writes_nothing() {
        let hub = Hub::new(formatter(false), Board::new());
        let mut view = View::new(Show::Web(hub.clone()), Vec::new(), Vec::new());
        assert!(view.message(&enabled()).unwrap());
        assert!(view.figures(&figures_line(), Ok(queue(1, 2, 3))).unwrap());
        assert!(view.redraw().unwrap());
        let board = hub.board();
        assert!(board.tool("1").is_some());
        assert_eq!(board.queue_stats().map(|s| s.dead), Some(3));
        assert_eq!(
            hub.state_json()["messages"],
            2,
            "the document is in the feed"
        );
        assert!(view.figures(&figures_line(), Err("bad".into())).unwrap());
        assert_eq!(
            hub.board().rejected_figures().map(|r| r.reason.as_str()),
            Some("bad")
        );
        let (out, err) = view.into_outputs();
        assert!(out.is_empty() && err.is_empty());
    }

    #[test]
    fn a_closed_output_stops_a_failing_one_errs() {
        let mut view = View::new(Show::Lines(formatter(false)), Closed, Vec::new());
        assert!(!view.message(&enabled()).unwrap());
        let mut view = View::new(Show::Json, Full, Vec::new());
        assert_eq!(
            view.message(&enabled()).unwrap_err().to_string(),
            "disk full"
        );
    }
}
