//! Properties of the delay sequence: bounds, exact geometric growth, jitter ranges, limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nemo_backoff::{Backoff, BackoffConfig, Clock, ConfigError, Jitter};
use proptest::prelude::*;

const ALL: [Jitter; 4] = [
    Jitter::None,
    Jitter::Full,
    Jitter::Equal,
    Jitter::Decorrelated,
];

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg(initial_ms: u64, max_ms: u64, multiplier: f64, jitter: Jitter) -> BackoffConfig {
    BackoffConfig {
        initial_ms,
        max_ms,
        multiplier,
        jitter,
        max_attempts: None,
        max_elapsed_ms: None,
    }
}

fn jitter_strategy() -> impl Strategy<Value = Jitter> {
    prop::sample::select(ALL.to_vec())
}

proptest! {
    /// The central invariant: every delay is within [floor, cap], for every strategy and config.
    #[test]
    fn every_delay_within_floor_and_cap(
        initial in 1u64..5_000,
        extra in 0u64..100_000,
        multiplier in 1.0f64..16.0,
        jitter in jitter_strategy(),
        seed in any::<u64>(),
        resets in prop::collection::vec(0usize..40, 0..3),
    ) {
        let c = cfg(initial, initial + extra, multiplier, jitter);
        prop_assert!(c.validate().is_ok());
        let mut b = c.build().with_seed(seed);
        for n in std::iter::once(60).chain(resets) {
            for _ in 0..n {
                let d = b.next_delay().unwrap();
                prop_assert!(d >= ms(initial) && d <= ms(initial + extra), "{:?} out of [{}, {}] ms", d, initial, initial + extra);
            }
            b.reset();
        }
    }

    /// Without jitter the sequence is exactly initial * k^n, capped (integer k: exact in f64).
    #[test]
    fn no_jitter_is_exactly_geometric(initial in 1u64..1_000, k in 1u32..6, extra in 0u64..1_000_000) {
        let cap = initial + extra;
        let got: Vec<Duration> = cfg(initial, cap, f64::from(k), Jitter::None).build().take(40).collect();
        let mut want = Vec::new();
        let mut d = u128::from(initial);
        for _ in 0..40 {
            want.push(ms(u64::try_from(d.min(u128::from(cap))).unwrap()));
            d = (d * u128::from(k)).min(u128::from(cap));
        }
        prop_assert_eq!(got, want);
    }

    /// Full and Equal stay inside their documented ranges around the un-jittered delay d_n;
    /// Decorrelated inside [floor, min(cap, 3 * prev)].
    #[test]
    fn jittered_delays_in_documented_ranges(
        initial in 1u64..2_000,
        extra in 0u64..200_000,
        multiplier in 1.0f64..8.0,
        seed in any::<u64>(),
    ) {
        let c = cfg(initial, initial + extra, multiplier, Jitter::None);
        let base: Vec<Duration> = c.build().take(50).collect();
        let floor = ms(initial);
        let cap = ms(initial + extra);

        let full: Vec<Duration> = BackoffConfig { jitter: Jitter::Full, ..c.clone() }.build().with_seed(seed).take(50).collect();
        for (d, j) in base.iter().zip(&full) {
            prop_assert!(*j >= floor && j <= d, "full: {:?} not in [{:?}, {:?}]", j, floor, d);
        }
        let equal: Vec<Duration> = BackoffConfig { jitter: Jitter::Equal, ..c.clone() }.build().with_seed(seed).take(50).collect();
        for (d, j) in base.iter().zip(&equal) {
            prop_assert!(*j >= (*d / 2).max(floor) && j <= d, "equal: {:?} not in [max(floor, {:?}/2), {:?}]", j, d, d);
        }
        let deco: Vec<Duration> = BackoffConfig { jitter: Jitter::Decorrelated, ..c.clone() }.build().with_seed(seed).take(50).collect();
        let mut prev = floor;
        for j in deco {
            prop_assert!(j >= floor && j <= (prev * 3).max(floor).min(cap), "decorrelated: {:?} prev {:?}", j, prev);
            prev = j;
        }
    }

    /// max_attempts ends the iterator after exactly that many delays; reset re-arms it.
    #[test]
    fn max_attempts_ends_iterator(max in 0u32..50, jitter in jitter_strategy(), seed in any::<u64>()) {
        let mut b = BackoffConfig { max_attempts: Some(max), ..cfg(10, 1_000, 2.0, jitter) }.build().with_seed(seed);
        prop_assert_eq!(b.by_ref().count(), max as usize);
        prop_assert_eq!(b.attempts(), max);
        prop_assert_eq!(b.next_delay(), None);
        b.reset();
        prop_assert_eq!(b.count(), max as usize);
    }
}

#[test]
fn default_sequence_matches_design_values() {
    let got: Vec<Duration> = BackoffConfig {
        jitter: Jitter::None,
        ..Default::default()
    }
    .build()
    .take(10)
    .collect();
    let want = [
        200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 30_000, 30_000,
    ]
    .map(ms);
    assert_eq!(got, want);
}

#[test]
fn fractional_multiplier_grows_and_caps() {
    let got: Vec<Duration> = cfg(100, 300, 1.5, Jitter::None).build().take(5).collect();
    assert_eq!(got, [100, 150, 225, 300, 300].map(ms));
}

#[test]
fn same_seed_same_delays_different_seed_differs() {
    for j in [Jitter::Full, Jitter::Equal, Jitter::Decorrelated] {
        let c = cfg(100, 60_000, 2.0, j);
        let a: Vec<Duration> = c.build().with_seed(9).take(30).collect();
        let b: Vec<Duration> = c.build().with_seed(9).take(30).collect();
        let other: Vec<Duration> = c.build().with_seed(10).take(30).collect();
        assert_eq!(a, b, "{j}");
        assert_ne!(
            a, other,
            "{j}: different seeds should give different sequences"
        );
    }
}

#[test]
fn full_jitter_actually_spreads() {
    // At the cap, full jitter draws from [100 ms, 10 s]: 200 draws should not all be equal and
    // should cover both the lower and the upper half.
    let delays: Vec<Duration> = cfg(100, 10_000, 2.0, Jitter::Full)
        .build()
        .with_seed(3)
        .skip(10)
        .take(200)
        .collect();
    assert!(delays.iter().any(|d| *d < ms(5_050)));
    assert!(delays.iter().any(|d| *d > ms(5_050)));
}

#[test]
fn reset_restarts_from_floor() {
    let mut b = cfg(50, 1_000, 3.0, Jitter::None).build();
    assert_eq!(
        b.by_ref().take(3).collect::<Vec<_>>(),
        [50, 150, 450].map(ms)
    );
    b.reset();
    assert_eq!(b.attempts(), 0);
    assert_eq!(b.next_delay(), Some(ms(50)));
}

/// A clock moved by hand.
#[derive(Debug)]
struct FakeClock {
    base: Instant,
    offset: Mutex<Duration>,
}

impl FakeClock {
    fn new() -> Arc<Self> {
        Arc::new(FakeClock {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        })
    }
    fn advance(&self, d: Duration) {
        *self.offset.lock().unwrap() += d;
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap()
    }
}

#[test]
fn max_elapsed_shortens_last_delay_then_ends() {
    let clock = FakeClock::new();
    let mut b = BackoffConfig {
        max_elapsed_ms: Some(1_000),
        ..cfg(100, 1_000, 2.0, Jitter::None)
    }
    .build()
    .with_clock(clock.clone());
    let mut got = Vec::new();
    while let Some(d) = b.next_delay() {
        got.push(d);
        clock.advance(d); // the caller sleeps exactly the delay
    }
    // 100 + 200 + 400 = 700 ms used; 300 ms left, so the 800 ms delay is shortened to 300 ms.
    assert_eq!(got, [100, 200, 400, 300].map(ms));
    assert_eq!(got.iter().sum::<Duration>(), ms(1_000));
    assert_eq!(b.next_delay(), None);

    // reset restarts the elapsed window
    b.reset();
    assert_eq!(b.next_delay(), Some(ms(100)));
}

#[test]
fn max_elapsed_ends_when_less_than_floor_left() {
    let clock = FakeClock::new();
    let mut b = BackoffConfig {
        max_elapsed_ms: Some(250),
        ..cfg(100, 1_000, 1.0, Jitter::None)
    }
    .build()
    .with_clock(clock.clone());
    assert_eq!(b.next_delay(), Some(ms(100)));
    clock.advance(ms(100));
    assert_eq!(b.next_delay(), Some(ms(100)));
    clock.advance(ms(100));
    // 50 ms left < floor of 100 ms: give up rather than break the floor
    assert_eq!(b.next_delay(), None);
}

#[test]
fn max_elapsed_with_jitter_never_overshoots() {
    for seed in 0..50 {
        for j in ALL {
            let clock = FakeClock::new();
            let mut b = BackoffConfig {
                max_elapsed_ms: Some(5_000),
                ..cfg(100, 2_000, 2.0, j)
            }
            .build()
            .with_seed(seed)
            .with_clock(clock.clone());
            let mut total = Duration::ZERO;
            while let Some(d) = b.next_delay() {
                assert!(d >= ms(100) && d <= ms(2_000));
                total += d;
                clock.advance(d);
            }
            assert!(total <= ms(5_000), "{j} seed {seed}: {total:?}");
            assert!(
                total > ms(4_900),
                "{j} seed {seed}: gave up early at {total:?}"
            );
        }
    }
}

mockall::mock! {
    pub Clk {}
    impl Clock for Clk {
        fn now(&self) -> Instant;
    }
}

#[test]
fn max_elapsed_reads_the_injected_clock() {
    let t0 = Instant::now();
    let mut seq = mockall::Sequence::new();
    let mut clock = MockClk::new();
    // first call opens the window at t0, second is still inside, third is past the deadline
    for t in [t0, t0 + ms(900), t0 + ms(1_000)] {
        clock
            .expect_now()
            .times(1)
            .in_sequence(&mut seq)
            .return_const(t);
    }
    let mut b = BackoffConfig {
        max_elapsed_ms: Some(1_000),
        ..cfg(10, 10, 1.0, Jitter::None)
    }
    .build()
    .with_clock(Arc::new(clock));
    assert_eq!(b.next_delay(), Some(ms(10)));
    assert_eq!(b.next_delay(), Some(ms(10)));
    assert_eq!(b.next_delay(), None);
    // the mock verifies on drop that `now` was called exactly three times
}

#[test]
fn no_clock_reads_without_max_elapsed() {
    let mut clock = MockClk::new();
    clock.expect_now().never();
    let mut b = cfg(10, 100, 2.0, Jitter::Full)
        .build()
        .with_clock(Arc::new(clock));
    assert_eq!(b.by_ref().take(20).count(), 20);
}

#[test]
fn config_from_backoff_table() {
    #[derive(serde::Deserialize)]
    struct Root {
        backoff: BackoffConfig,
    }
    let root: Root = toml::from_str(
        "[backoff]\ninitial_ms = 200\nmax_ms = 30000\nmultiplier = 2.0\njitter = \"full\"\n",
    )
    .unwrap();
    assert_eq!(root.backoff, BackoffConfig::default());

    let root: Root = toml::from_str(
        "[backoff]\njitter = \"decorrelated\"\nmax_attempts = 5\nmax_elapsed_ms = 60000\n",
    )
    .unwrap();
    assert_eq!(root.backoff.jitter, Jitter::Decorrelated);
    assert_eq!(root.backoff.max_attempts, Some(5));
    assert_eq!(root.backoff.max_elapsed_ms, Some(60_000));
    assert_eq!(
        root.backoff.initial_ms, 200,
        "missing keys take the defaults"
    );

    for jitter in ["none", "full", "equal", "decorrelated"] {
        let r: Root = toml::from_str(&format!("[backoff]\njitter = \"{jitter}\"\n")).unwrap();
        assert_eq!(r.backoff.jitter.as_str(), jitter);
    }
    let err = toml::from_str::<Root>("[backoff]\njitter = \"random\"\n")
        .err()
        .unwrap();
    assert!(err.to_string().contains("random"), "{err}");
    let err = toml::from_str::<Root>("[backoff]\ninitial = 5\n")
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("initial"),
        "unknown key rejected: {err}"
    );
}

#[test]
fn validate_names_key_value_and_allowed() {
    let cases: [(BackoffConfig, &str); 5] = [
        (
            BackoffConfig {
                initial_ms: 0,
                ..Default::default()
            },
            "invalid backoff.initial_ms = 0: must be > 0",
        ),
        (
            BackoffConfig {
                max_ms: 100,
                ..Default::default()
            },
            "invalid backoff.max_ms = 100: must be >= initial_ms (200)",
        ),
        (
            BackoffConfig {
                multiplier: 0.5,
                ..Default::default()
            },
            "invalid backoff.multiplier = 0.5: must be a finite number >= 1.0",
        ),
        (
            BackoffConfig {
                multiplier: f64::NAN,
                ..Default::default()
            },
            "invalid backoff.multiplier = NaN: must be a finite number >= 1.0",
        ),
        (
            BackoffConfig {
                multiplier: f64::INFINITY,
                ..Default::default()
            },
            "invalid backoff.multiplier = inf: must be a finite number >= 1.0",
        ),
    ];
    for (c, want) in cases {
        let err: ConfigError = c.validate().unwrap_err();
        assert_eq!(err.to_string(), want);
    }
    assert!(
        BackoffConfig {
            initial_ms: 5,
            max_ms: 5,
            multiplier: 1.0,
            ..Default::default()
        }
        .validate()
        .is_ok()
    );
}

#[test]
fn debug_output_is_readable() {
    let b: Backoff = BackoffConfig::default().build();
    let s = format!("{b:?}");
    assert!(s.contains("floor: 200ms") && s.contains("cap: 30s"), "{s}");
}
