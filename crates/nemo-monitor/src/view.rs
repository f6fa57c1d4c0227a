//! What the monitor shows for each message, queue reading and clock tick: readable lines, raw
//! JSONL, the tool board redrawn in place, or the web dashboard's hub.
//!
//! A [`View`] writes to any [`Write`], so what a person sees is tested against a `Vec<u8>`; the
//! `monitor` program hands it stdout and stderr. Every method returns `Ok(false)` once the output
//! is closed (`monitor | head`): the monitor then stops quietly instead of failing.

use std::fmt;
use std::io::{self, Write};
use std::sync::Arc;

use crate::web::Hub;
use crate::{Board, Formatter, QueueStats, RecordLine};

/// Which view, with what it needs.
#[derive(Debug)]
pub enum Show {
    /// One readable line per message (the default), and a queue line when the numbers change.
    Lines(Formatter),
    /// One recording line per message (`--json`); queue numbers go to the error output so the
    /// output stays pure JSONL.
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
/// let line = RecordLine {
///     received_at: time::macros::datetime!(2025-10-16 14:02:33 UTC),
///     topic: "nemo/tools/1/enabled".into(),
///     payload: br#"{"event": "tool_enabled"}"#.to_vec().into(),
///     qos: 1,
///     retain: false,
/// };
/// assert!(view.message(&line)?);
/// assert!(view.stats(QueueStats::now(3, 1, 0))?);
/// let (out, err) = view.into_outputs();
/// assert!(String::from_utf8(out)?.starts_with(r#"{"t":"2025-10-16T14:02:33Z","topic":"nemo/tools/1/enabled""#));
/// assert_eq!(String::from_utf8(err)?, "queue: depth 3 · processing 1 · dead 0\n");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct View<O, E> {
    show: Show,
    out: O,
    err: E,
    /// The queue numbers last written, so that a line appears only when they change.
    last_health: Option<(u64, u64, u64)>,
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

    /// Show fresh queue statistics. The board and the dashboard keep them for their health
    /// line; the line views write a line only when the numbers change, not on every reading.
    ///
    /// # Errors
    /// Writing failed (other than a closed pipe on `out`, which is `Ok(false)`).
    pub fn stats(&mut self, stats: QueueStats) -> io::Result<bool> {
        let formatter = match &mut self.show {
            Show::Board { board, .. } => {
                board.set_queue_stats(stats);
                return Ok(true);
            }
            Show::Web(hub) => {
                hub.set_queue_stats(stats);
                return Ok(true);
            }
            Show::Json => None,
            Show::Lines(f) => Some(&*f),
        };
        let numbers = (stats.depth, stats.processing, stats.dead);
        if self.last_health == Some(numbers) {
            return Ok(true);
        }
        self.last_health = Some(numbers);
        let Some(f) = formatter else {
            // Keep the output pure JSONL. A closed stderr is no reason to stop the stream.
            let note = format!(
                "queue: depth {} · processing {} · dead {}",
                stats.depth, stats.processing, stats.dead
            );
            return emit(&mut self.err, &note).map(|_| true);
        };
        let mut b = Board::new().with_offset(f.offset());
        b.set_queue_stats(stats);
        let text = b.health_line(f.options().color);
        // Only the queue part: the status topic has its own lines.
        let text = text
            .split_once(" | ")
            .map(|(_, q)| q.to_owned())
            .unwrap_or(text);
        emit(&mut self.out, &text)
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
    fn lines_show_queue_numbers_only_when_they_change() {
        let mut view = View::new(Show::Lines(formatter(false)), Vec::new(), Vec::new());
        for s in [(3, 1, 0), (3, 1, 0), (0, 0, 0), (0, 0, 0), (3, 1, 0)] {
            assert!(view.stats(QueueStats::now(s.0, s.1, s.2)).unwrap());
        }
        let (out, _) = view.into_outputs();
        let out = text(out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("queue"), "{out}");
        assert!(
            !lines[0].contains("bridge:"),
            "the status part is cut: {out}"
        );
        assert!(lines[0].contains('3') && lines[1].contains('0'), "{out}");
        assert!(!out.contains('\x1b'), "no colour asked: {out:?}");
    }

    #[test]
    fn json_keeps_stdout_pure_jsonl() {
        let mut view = View::new(Show::Json, Vec::new(), Vec::new());
        assert!(view.message(&enabled()).unwrap());
        assert!(view.stats(QueueStats::now(2, 0, 1)).unwrap());
        assert!(view.stats(QueueStats::now(2, 0, 1)).unwrap());
        let (out, err) = view.into_outputs();
        let out = text(out);
        assert_eq!(
            crate::RecordLine::parse(out.trim_end()).unwrap(),
            enabled(),
            "{out}"
        );
        assert_eq!(text(err), "queue: depth 2 · processing 0 · dead 1\n");
    }

    #[test]
    fn a_closed_stderr_does_not_stop_the_json_stream() {
        let mut view = View::new(Show::Json, Vec::new(), Closed);
        assert!(view.stats(QueueStats::now(2, 0, 1)).unwrap());
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
        assert!(view.stats(QueueStats::now(4, 0, 0)).unwrap());
        assert!(view.redraw().unwrap());
        let (out, err) = view.into_outputs();
        let out = text(out);
        assert!(out.contains("Jane Doe"), "{out}");
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
        assert!(view.stats(QueueStats::now(1, 2, 3)).unwrap());
        assert!(view.redraw().unwrap());
        let board = hub.board();
        assert!(board.tool("1").is_some());
        assert_eq!(board.queue_stats().map(|s| s.dead), Some(3));
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
