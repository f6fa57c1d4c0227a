//! The queue seam of nemo-mqtt: what the bridge pipeline needs from a queue.
//!
//! A queue hands out [`Delivery`]s (the producer's exact bytes plus an identity); the pipeline
//! publishes them and acks each one only after the broker confirmed it. The trait is the same
//! for every backend, so the pipeline, its order and ack rules, and its dead letters are one
//! code path:
//!
//! | backend | crate | [`DeliveryId`] |
//! |---|---|---|
//! | Redis list (plugin 1.x) | `nemo-redis` | [`DeliveryId::List`] |
//! | Redis stream | `nemo-redis` | [`DeliveryId::Stream`] |
//! | Redis pub/sub | `nemo-redis` | [`DeliveryId::PubSub`] |
//! | PostgreSQL table (plugin 2.x) | `nemo-table-queue` | [`DeliveryId::Row`] |
//!
//! Every implementation keeps its own typed error ([`EventSource::Error`]); [`boxed`] erases it
//! into [`SourceError`] where one program holds either kind.
//!
//! ```
//! use std::time::Duration;
//! use nemo_source::{Delivery, DeliveryId, EventSource, SourceError, boxed};
//!
//! /// A queue of two fixed items that never fails.
//! struct Two(Vec<Delivery>);
//!
//! #[async_trait::async_trait]
//! impl EventSource for Two {
//!     type Error = std::io::Error;
//!     async fn take(&mut self, max: usize, _wait: Duration) -> Result<Vec<Delivery>, Self::Error> {
//!         let n = max.min(self.0.len());
//!         Ok(self.0.drain(..n).collect())
//!     }
//!     async fn ack(&mut self, _d: &[Delivery]) -> Result<(), Self::Error> { Ok(()) }
//!     async fn nack(&mut self, d: &[Delivery]) -> Result<(), Self::Error> {
//!         self.0.splice(0..0, d.iter().cloned());
//!         Ok(())
//!     }
//!     async fn dead_letter(&mut self, _d: &Delivery, _why: &str) -> Result<(), Self::Error> { Ok(()) }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let items = (1..=2).map(|i| Delivery { id: DeliveryId::Row(i), raw: "x".into(), redelivered: false });
//! let mut q = boxed(Two(items.collect()));
//! let got = q.take(10, Duration::ZERO).await?;
//! assert_eq!(got.len(), 2);
//! q.nack(&got[1..]).await?;
//! assert_eq!(q.take(10, Duration::ZERO).await?[0].id, DeliveryId::Row(2));
//! # Ok::<(), SourceError>(())
//! # }).unwrap();
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Makes a source's waiting [`EventSource::take`] return early, losing and reordering nothing:
/// the take returns what it has (usually nothing) as if its `wait` had ended. For a stop that
/// is prompt while the queue is idle, however long an idle take waits.
///
/// An interrupt that comes before the take blocks may have no effect (the take then ends
/// within its `wait` as usual): a caller that must not wait repeats it until the take returned.
/// An interrupt must never block for long; it is safe to call at any time, also when no take
/// is running.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use nemo_source::Interrupter;
///
/// let fired = Arc::new(AtomicBool::new(false));
/// let f = fired.clone();
/// let interrupt = Interrupter::new(move || {
///     f.store(true, Ordering::Relaxed);
///     async {}
/// });
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// interrupt.interrupt().await;
/// # });
/// assert!(fired.load(Ordering::Relaxed));
/// ```
#[derive(Clone)]
pub struct Interrupter(Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>);

impl Interrupter {
    /// An interrupter that runs `f` (and awaits the future it returns) on each interrupt.
    pub fn new<F, Fut>(f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Interrupter(Arc::new(move || Box::pin(f())))
    }

    /// Interrupt the take that is waiting now, if any.
    pub fn interrupt(&self) -> impl Future<Output = ()> + Send + 'static {
        (self.0)()
    }
}

impl std::fmt::Debug for Interrupter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interrupter")
    }
}

/// Where a delivery came from, so that `ack`/`nack` can find it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryId {
    /// Redis list mode: the item sits in the processing list under its exact bytes.
    List,
    /// Redis stream mode: the stream entry id (e.g. `1760623352944-0`).
    Stream(String),
    /// Redis pub/sub mode: a local sequence number (nothing to ack).
    PubSub(u64),
    /// A row of NEMO's queue table (plugin 2.x): its `id`.
    Row(i64),
}

/// One raw item taken from the queue, not yet confirmed.
///
/// `raw` is the exact bytes of a queue item in the format of plugin 1.x (a JSON object with
/// `topic`, `payload`, `qos`, `retain`, `timestamp`); they may be anything (not UTF-8, not
/// JSON): validation is the caller's job, and bad items go to [`EventSource::dead_letter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Identity for ack/nack.
    pub id: DeliveryId,
    /// The exact bytes of the item.
    pub raw: bytes::Bytes,
    /// True if this item may have been delivered before (recovered from a previous run).
    pub redelivered: bool,
}

/// A reliable queue of raw items: take, then ack after the broker confirmed.
///
/// Contract:
/// - `take` returns at most `max` items, oldest first, waiting at most `wait`
///   for the first one; an empty `Vec` means "nothing yet" (not an error).
///   It never reads further ahead than `max`.
/// - `ack` removes exactly the given deliveries (they were confirmed).
/// - `nack` gives the given deliveries back so that the next `take` returns
///   them first, in the order given (used on a stop with unconfirmed items).
/// - `dead_letter` removes one delivery and records it with the reason where the backend keeps
///   its dead letters.
#[cfg_attr(any(test, feature = "mock"), mockall::automock(type Error = SourceError;))]
#[async_trait::async_trait]
pub trait EventSource: Send {
    /// The backend's error.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Take up to `max` items, oldest first, waiting up to `wait` for the first.
    async fn take(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, Self::Error>;
    /// Remove confirmed deliveries from the queue.
    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), Self::Error>;
    /// Return unconfirmed deliveries to the head of the queue, order kept.
    async fn nack(&mut self, deliveries: &[Delivery]) -> Result<(), Self::Error>;
    /// Move one bad delivery to the dead letters with a reason.
    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), Self::Error>;
    /// Items waiting to be taken, if the source can tell (for metrics).
    async fn depth(&mut self) -> Result<Option<u64>, Self::Error> {
        Ok(None)
    }
    /// A handle that ends a waiting `take` early (see [`Interrupter`]); `None` (the default)
    /// when the source has none, and its takes end within their `wait`.
    fn interrupter(&self) -> Option<Interrupter> {
        None
    }
    /// The longest the next `take` may legitimately block when that is longer than the
    /// source's usual bound (e.g. a first query that must read a large table); `None` (the
    /// default) when the next take is bounded as usual. A caller that watches its own progress
    /// (the bridge's watchdog) allows that much more for that one take.
    fn longest_take(&self) -> Option<Duration> {
        None
    }
}

/// A backend's error with its type erased (what a [`BoxedSource`] returns). `Display` and
/// `source()` are the backend error's own; [`SourceError::downcast_ref`] gets it back.
///
/// ```
/// let e = nemo_source::SourceError::new(std::io::Error::other("connection reset"));
/// assert_eq!(e.to_string(), "connection reset");
/// assert!(e.downcast_ref::<std::io::Error>().is_some());
/// ```
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct SourceError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl SourceError {
    /// Wrap a backend error.
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SourceError(Box::new(e))
    }

    /// The backend error, if it is a `T`.
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

/// Any source, its error erased: what a program holds when the backend is chosen at run time.
pub type BoxedSource = Box<dyn EventSource<Error = SourceError>>;

/// Erase the error type of `source` (see [`BoxedSource`]).
pub fn boxed<S: EventSource + 'static>(source: S) -> BoxedSource {
    Box::new(Erased(source))
}

struct Erased<S>(S);

#[async_trait::async_trait]
impl<S: EventSource> EventSource for Erased<S> {
    type Error = SourceError;
    async fn take(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, SourceError> {
        self.0.take(max, wait).await.map_err(SourceError::new)
    }
    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), SourceError> {
        self.0.ack(deliveries).await.map_err(SourceError::new)
    }
    async fn nack(&mut self, deliveries: &[Delivery]) -> Result<(), SourceError> {
        self.0.nack(deliveries).await.map_err(SourceError::new)
    }
    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), SourceError> {
        self.0
            .dead_letter(delivery, error)
            .await
            .map_err(SourceError::new)
    }
    async fn depth(&mut self) -> Result<Option<u64>, SourceError> {
        self.0.depth().await.map_err(SourceError::new)
    }
    fn interrupter(&self) -> Option<Interrupter> {
        self.0.interrupter()
    }
    fn longest_take(&self) -> Option<Duration> {
        self.0.longest_take()
    }
}

/// A boxed source is a source (e.g. `Box<dyn EventSource<Error = E>>`).
#[async_trait::async_trait]
impl<S: EventSource + ?Sized> EventSource for Box<S> {
    type Error = S::Error;
    async fn take(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, S::Error> {
        (**self).take(max, wait).await
    }
    async fn ack(&mut self, deliveries: &[Delivery]) -> Result<(), S::Error> {
        (**self).ack(deliveries).await
    }
    async fn nack(&mut self, deliveries: &[Delivery]) -> Result<(), S::Error> {
        (**self).nack(deliveries).await
    }
    async fn dead_letter(&mut self, delivery: &Delivery, error: &str) -> Result<(), S::Error> {
        (**self).dead_letter(delivery, error).await
    }
    async fn depth(&mut self) -> Result<Option<u64>, S::Error> {
        (**self).depth().await
    }
    fn interrupter(&self) -> Option<Interrupter> {
        (**self).interrupter()
    }
    fn longest_take(&self) -> Option<Duration> {
        (**self).longest_take()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The mock is usable behind the boxed trait object (how the bridge holds a source) and
    /// also mocks the default `depth` method.
    #[tokio::test]
    async fn mock_source_behind_the_trait_object() {
        let mut mock = MockEventSource::new();
        let d = Delivery {
            id: DeliveryId::Row(7),
            raw: bytes::Bytes::from_static(b"x"),
            redelivered: false,
        };
        let d2 = d.clone();
        mock.expect_take()
            .returning(move |max, _| Ok(vec![d2.clone(); max.min(1)]));
        mock.expect_ack()
            .withf(|ds| ds.len() == 1)
            .times(1)
            .returning(|_| Ok(()));
        mock.expect_depth().returning(|| Ok(Some(7)));
        mock.expect_nack()
            .returning(|_| Err(SourceError::new(std::io::Error::other("gone"))));
        let mut src: BoxedSource = Box::new(mock);
        let got = src.take(5, Duration::ZERO).await.unwrap();
        assert_eq!(got, vec![d]);
        src.ack(&got).await.unwrap();
        assert_eq!(src.depth().await.unwrap(), Some(7));
        let e = src.nack(&got).await.unwrap_err();
        assert_eq!(e.to_string(), "gone");
    }

    /// `boxed` keeps the backend error readable and recoverable.
    #[tokio::test]
    async fn boxed_keeps_the_backend_error() {
        #[derive(Debug, thiserror::Error)]
        #[error("backend says no")]
        struct No;
        struct Failing;
        #[async_trait::async_trait]
        impl EventSource for Failing {
            type Error = No;
            async fn take(&mut self, _: usize, _: Duration) -> Result<Vec<Delivery>, No> {
                Err(No)
            }
            async fn ack(&mut self, _: &[Delivery]) -> Result<(), No> {
                Err(No)
            }
            async fn nack(&mut self, _: &[Delivery]) -> Result<(), No> {
                Err(No)
            }
            async fn dead_letter(&mut self, _: &Delivery, _: &str) -> Result<(), No> {
                Err(No)
            }
        }
        let mut s = boxed(Failing);
        let e = s.take(1, Duration::ZERO).await.unwrap_err();
        assert_eq!(e.to_string(), "backend says no");
        assert!(e.downcast_ref::<No>().is_some());
        assert_eq!(s.depth().await.unwrap(), None);
        assert!(s.interrupter().is_none());
        assert_eq!(s.longest_take(), None);
    }

    /// The interrupter of a source survives boxing and erasing (the bridge holds a
    /// `BoxedSource` of a `Box<dyn EventSource>`).
    #[tokio::test]
    async fn boxed_forwards_the_interrupter() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let mut mock = MockEventSource::new();
        mock.expect_interrupter().returning(move || {
            let h = h.clone();
            Some(Interrupter::new(move || {
                h.fetch_add(1, Ordering::Relaxed);
                async {}
            }))
        });
        let inner: Box<dyn EventSource<Error = SourceError>> = Box::new(mock);
        let s = boxed(inner);
        let i = s.interrupter().expect("forwarded");
        i.interrupt().await;
        i.clone().interrupt().await;
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
