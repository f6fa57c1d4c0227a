//! The queue figures the bridge publishes for the monitor ([`nemo_mqtt::QueueFigures`]).
//!
//! The queue's own tasks know the numbers (Redis: `LLEN`/`XINFO` of the queue, processing and
//! dead-letter keys; NEMO's table: unprocessed rows above the ack floor, the pipeline's rows in
//! flight and its dead letters) and [`FigureBoard::set`] them every few seconds. One task
//! publishes them, retained, when they changed — and again after the broker reconnects, whose
//! retained copy may be gone — at most once every [`MIN_GAP`]. An idle bridge whose numbers do
//! not move publishes nothing.

use std::time::Duration;

use nemo_mqtt::{Publisher, QueueFigures};
use tokio::sync::watch;
use tracing::debug;

/// The shortest time between two publications of the figures.
pub const MIN_GAP: Duration = Duration::from_secs(2);

/// The numbers, as the queue's tasks last read them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Waiting, not yet taken.
    pub pending: u64,
    /// Taken, not yet confirmed.
    pub processing: u64,
    /// Dead letters.
    pub dead: u64,
}

/// What the pipeline counts itself, for a queue whose server cannot say it (NEMO's table keeps
/// no state for rows in flight, and its dead letters are rows of the message log).
#[derive(Debug, Default)]
pub struct Flow {
    /// Items taken and not yet acked.
    pub in_flight: std::sync::atomic::AtomicU64,
    /// Items this bridge set aside as dead letters since it started.
    pub dead: std::sync::atomic::AtomicU64,
}

/// Where the queue's tasks put the latest [`Counts`], and the display feed its link state.
#[derive(Debug, Clone)]
pub struct FigureBoard {
    counts: watch::Sender<Option<Counts>>,
    display: watch::Sender<Option<bool>>,
    /// The pipeline's own counts ([`Flow`]).
    pub flow: std::sync::Arc<Flow>,
}

impl Default for FigureBoard {
    fn default() -> Self {
        FigureBoard {
            counts: watch::channel(None).0,
            display: watch::channel(None).0,
            flow: std::sync::Arc::default(),
        }
    }
}

impl FigureBoard {
    /// The latest numbers; wakes the publisher only when they changed.
    ///
    /// ```
    /// use nemo_bridge::figures::{Counts, FigureBoard};
    /// let board = FigureBoard::default();
    /// board.set(Counts { pending: 3, processing: 1, dead: 0 });
    /// assert_eq!(board.counts().map(|c| c.pending), Some(3));
    /// ```
    pub fn set(&self, c: Counts) {
        self.counts.send_if_modified(|old| {
            let changed = *old != Some(c);
            *old = Some(c);
            changed
        });
    }

    /// The numbers last set, if any.
    pub fn counts(&self) -> Option<Counts> {
        *self.counts.borrow()
    }

    /// Whether the displays' broker is connected (`None`: no display feed).
    pub fn set_display(&self, connected: Option<bool>) {
        self.display.send_if_modified(|old| {
            let changed = *old != connected;
            *old = connected;
            changed
        });
    }

    /// Publish the figures through the publisher in use — it changes at a reload that switches
    /// the broker, and is `None` while this bridge is a standby (which publishes nothing) —
    /// until the board's senders are dropped.
    pub(crate) fn spawn_publisher(
        &self,
        source: &'static str,
        mut publishers: watch::Receiver<Option<Publisher>>,
    ) -> tokio::task::JoinHandle<()> {
        let mut counts = self.counts.subscribe();
        let mut display = self.display.subscribe();
        tokio::spawn(async move {
            let mut last: Option<(Counts, Option<bool>)> = None;
            let mut publisher = publishers.borrow_and_update().clone();
            let (_none, idle) = watch::channel(nemo_mqtt::ConnState {
                status: nemo_mqtt::ConnStatus::Closed,
                reconnects: 0,
            });
            let mut conn = publisher
                .as_ref()
                .map_or_else(|| idle.clone(), Publisher::state);
            let mut reconnects = conn.borrow_and_update().reconnects;
            loop {
                let now = (*counts.borrow_and_update(), *display.borrow_and_update());
                if let (Some(p), (Some(c), shown)) = (&publisher, now)
                    && last != Some((c, shown))
                {
                    let figures = QueueFigures {
                        source: source.to_owned(),
                        pending: c.pending,
                        processing: c.processing,
                        dead: c.dead,
                        display_connected: shown,
                        at: time::OffsetDateTime::now_utc(),
                    };
                    if p.publish_figures(&figures).is_some() {
                        debug!(
                            pending = c.pending,
                            processing = c.processing,
                            dead = c.dead,
                            "queue figures published"
                        );
                        last = Some((c, shown));
                    }
                }
                tokio::time::sleep(MIN_GAP).await;
                tokio::select! {
                    r = counts.changed() => if r.is_err() { return },
                    r = display.changed() => if r.is_err() { return },
                    r = publishers.changed() => {
                        if r.is_err() { return }
                        publisher = publishers.borrow_and_update().clone();
                        conn = publisher.as_ref().map_or_else(|| idle.clone(), Publisher::state);
                        reconnects = conn.borrow_and_update().reconnects;
                        last = None;
                    }
                    r = conn.changed() => {
                        if r.is_err() {
                            // That publisher is gone; wait for the next one.
                            conn = idle.clone();
                            continue;
                        }
                        let s = *conn.borrow_and_update();
                        if s.is_connected() && s.reconnects != reconnects {
                            // The broker may have lost its retained copy: publish again.
                            reconnects = s.reconnects;
                            last = None;
                        }
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_a_change_wakes_the_publisher() {
        let board = FigureBoard::default();
        let mut rx = board.counts.subscribe();
        let c = Counts {
            pending: 1,
            processing: 0,
            dead: 0,
        };
        board.set(c);
        assert!(rx.has_changed().unwrap_or(false));
        rx.borrow_and_update();
        board.set(c);
        assert!(
            !rx.has_changed().unwrap_or(true),
            "same numbers: no wake-up"
        );
        board.set(Counts { dead: 1, ..c });
        assert!(rx.has_changed().unwrap_or(false));
    }
}
