//! The async retry helper, with a recording sleeper (no real sleeping) and paused tokio time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::Cell;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nemo_backoff::{BackoffConfig, Jitter, RetryDecision, RetryError, Sleeper, retry, retry_with};

/// Records every requested delay and returns at once.
#[derive(Debug, Default)]
struct RecordingSleeper(Mutex<Vec<Duration>>);

impl RecordingSleeper {
    fn delays(&self) -> Vec<Duration> {
        self.0.lock().unwrap().clone()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, delay: Duration) -> impl Future<Output = ()> + Send {
        self.0.lock().unwrap().push(delay);
        std::future::ready(())
    }
}

#[derive(Debug, PartialEq, Eq)]
enum OpError {
    Transient(u32),
    Fatal,
}

fn classify(e: &OpError) -> RetryDecision {
    match e {
        OpError::Transient(_) => RetryDecision::Retry,
        OpError::Fatal => RetryDecision::Stop,
    }
}

fn constant_30s(max_attempts: u32) -> BackoffConfig {
    BackoffConfig {
        initial_ms: 30_000,
        max_ms: 30_000,
        multiplier: 2.0,
        jitter: Jitter::None,
        max_attempts: Some(max_attempts),
        max_elapsed_ms: None,
    }
}

#[tokio::test]
async fn fifty_retries_of_30s_sleep_only_through_the_seam() {
    let sleeper = RecordingSleeper::default();
    let mut backoff = constant_30s(100).build();
    let calls = Cell::new(0u32);
    let wall = Instant::now();
    let out = retry_with(&mut backoff, &sleeper, classify, || {
        calls.set(calls.get() + 1);
        let n = calls.get();
        async move {
            if n <= 50 {
                Err(OpError::Transient(n))
            } else {
                Ok(n)
            }
        }
    })
    .await;
    // 50 × 30 s = 25 minutes of requested sleeping; the bound below is 1500× smaller, so it
    // can only fail if something really slept.
    assert!(
        wall.elapsed() < Duration::from_secs(1),
        "slept for real: {:?}",
        wall.elapsed()
    );
    assert_eq!(out.unwrap(), 51);
    assert_eq!(sleeper.delays(), vec![Duration::from_secs(30); 50]);
    assert_eq!(backoff.attempts(), 0, "success resets the backoff");
}

#[tokio::test]
async fn stop_returns_permanent_at_once() {
    let sleeper = RecordingSleeper::default();
    let mut backoff = constant_30s(10).build();
    let calls = Cell::new(0u32);
    let out: Result<(), _> = retry_with(&mut backoff, &sleeper, classify, || {
        calls.set(calls.get() + 1);
        async { Err(OpError::Fatal) }
    })
    .await;
    assert!(
        matches!(out, Err(RetryError::Permanent(OpError::Fatal))),
        "{out:?}"
    );
    assert_eq!(calls.get(), 1);
    assert!(sleeper.delays().is_empty());
    assert_eq!(backoff.attempts(), 0);
}

#[tokio::test]
async fn stop_after_some_transient_errors() {
    let sleeper = RecordingSleeper::default();
    let mut backoff = BackoffConfig {
        jitter: Jitter::None,
        ..Default::default()
    }
    .build();
    let calls = Cell::new(0u32);
    let out: Result<(), _> = retry_with(&mut backoff, &sleeper, classify, || {
        calls.set(calls.get() + 1);
        let n = calls.get();
        async move {
            Err(if n < 4 {
                OpError::Transient(n)
            } else {
                OpError::Fatal
            })
        }
    })
    .await;
    assert!(matches!(out, Err(RetryError::Permanent(OpError::Fatal))));
    assert_eq!(calls.get(), 4);
    let ms = |n| Duration::from_millis(n);
    assert_eq!(sleeper.delays(), [ms(200), ms(400), ms(800)]);
}

#[tokio::test]
async fn exhausted_after_max_attempts_with_last_error() {
    let sleeper = RecordingSleeper::default();
    let mut backoff = constant_30s(3).build();
    let calls = Cell::new(0u32);
    let out: Result<(), _> = retry_with(&mut backoff, &sleeper, classify, || {
        calls.set(calls.get() + 1);
        let n = calls.get();
        async move { Err(OpError::Transient(n)) }
    })
    .await;
    match out {
        Err(RetryError::Exhausted { last, attempts }) => {
            assert_eq!(last, OpError::Transient(4));
            assert_eq!(attempts, 4);
        }
        other => panic!("expected Exhausted, got {other:?}"),
    }
    assert_eq!(sleeper.delays().len(), 3);
}

#[tokio::test]
async fn zero_max_attempts_means_one_try() {
    let sleeper = RecordingSleeper::default();
    let mut backoff = constant_30s(0).build();
    let out: Result<(), _> = retry_with(&mut backoff, &sleeper, classify, || async {
        Err(OpError::Transient(1))
    })
    .await;
    assert!(matches!(
        out,
        Err(RetryError::Exhausted { attempts: 1, .. })
    ));
    assert!(sleeper.delays().is_empty());
}

/// The default `retry` sleeps with tokio: under paused time the virtual clock advances by
/// exactly the sum of the delays (and the test itself takes no real time).
#[tokio::test(start_paused = true)]
async fn default_retry_sleeps_with_tokio_time() {
    let mut backoff = BackoffConfig {
        jitter: Jitter::None,
        max_attempts: Some(5),
        ..Default::default()
    }
    .build();
    let start = tokio::time::Instant::now();
    let out: Result<(), _> = retry(&mut backoff, classify, || async {
        Err(OpError::Transient(0))
    })
    .await;
    assert!(matches!(
        out,
        Err(RetryError::Exhausted { attempts: 6, .. })
    ));
    // 200 + 400 + 800 + 1600 + 3200 ms
    assert_eq!(start.elapsed(), Duration::from_millis(6_200));
}

#[test]
fn retry_error_display_includes_the_cause() {
    let e: RetryError<std::io::Error> = RetryError::Permanent(std::io::Error::other("denied"));
    assert_eq!(e.to_string(), "permanent error: denied");
    let e: RetryError<&str> = RetryError::Exhausted {
        last: "refused",
        attempts: 7,
    };
    assert_eq!(e.to_string(), "gave up after 7 attempts: refused");
}

/// `retry` futures can be spawned on a multi-threaded runtime when the operation is `Send`.
#[tokio::test]
async fn retry_future_is_send_and_spawnable() {
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
    assert_traits::<nemo_backoff::Backoff>();
    let task = tokio::spawn(async {
        let mut backoff = BackoffConfig {
            initial_ms: 1,
            max_ms: 1,
            max_attempts: Some(3),
            ..Default::default()
        }
        .build();
        let mut n = 0u32;
        assert_send(retry(
            &mut backoff,
            |_: &u32| RetryDecision::Retry,
            move || {
                n += 1;
                let k = n;
                async move { if k < 3 { Err(k) } else { Ok(k) } }
            },
        ))
        .await
    });
    assert_eq!(task.await.unwrap().unwrap(), 3);
}
