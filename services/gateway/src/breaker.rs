//! A circuit breaker per upstream: after a run of failures it opens and calls fail at once,
//! without waiting on a service that is down; after a cool-down one probe is let through
//! (half-open), and its outcome closes the breaker or opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe is out; everyone else is refused until it answers.
    HalfOpen,
}

/// How a breaker is tuned.
#[derive(Debug, Clone, Copy)]
pub struct BreakerSettings {
    /// Failures in a row that open it.
    pub failures_to_open: u32,
    /// How long it stays open before a probe.
    pub cool_down: Duration,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures_to_open: 5,
            cool_down: Duration::from_secs(10),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Breaker {
    state: Mutex<State>,
    settings: BreakerSettings,
    /// `conveyor_gateway_breaker_open{service}` of the upstream it guards: 1 while calls are
    /// held back (open or half-open), so an alert can say so.
    open: prometheus::IntGauge,
}

/// `conveyor_gateway_breaker_open{service}`: 1 while the gateway holds calls to `service`
/// back (its breaker open or half-open), else 0.
static OPEN: std::sync::LazyLock<prometheus::IntGaugeVec> = std::sync::LazyLock::new(|| {
    conveyor::metrics::metrics().new_int_gauge(
        "conveyor_gateway_breaker_open",
        "1 while the gateway's circuit breaker holds calls to a service back.",
        &["service"],
    )
});

impl Breaker {
    pub(crate) fn new(service: &str, settings: BreakerSettings) -> Self {
        let open = OPEN.with_label_values(&[service]);
        open.set(0);
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            settings,
            open,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a call may go out now. When the cool-down has passed, this call is the probe.
    pub(crate) fn allow(&self) -> bool {
        let mut state = self.state();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                self.open.set(1);
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    /// What became of a call that [`Breaker::allow`] let out.
    pub(crate) fn record(&self, succeeded: bool) {
        let mut state = self.state();
        let open = State::Open {
            until: Instant::now() + self.settings.cool_down,
        };
        *state = match (*state, succeeded) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false)
                if failures + 1 < self.settings.failures_to_open =>
            {
                State::Closed {
                    failures: failures + 1,
                }
            }
            (State::Open { until }, false) => State::Open { until },
            (_, false) => open,
        };
        self.open
            .set(i64::from(!matches!(*state, State::Closed { .. })));
    }

    /// `closed`, `open` or `half-open`, for `/readyz`.
    pub(crate) fn describe(&self) -> &'static str {
        match *self.state() {
            State::Closed { .. } => "closed",
            State::Open { .. } => "open",
            State::HalfOpen => "half-open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(cool_down: Duration) -> Breaker {
        Breaker::new(
            "test-upstream",
            BreakerSettings {
                failures_to_open: 3,
                cool_down,
            },
        )
    }

    #[test]
    fn it_opens_after_the_failures_in_a_row_and_a_success_resets_the_count() {
        let breaker = breaker(Duration::from_secs(60));
        breaker.record(false);
        breaker.record(false);
        breaker.record(true);
        breaker.record(false);
        breaker.record(false);
        assert!(breaker.allow(), "two failures since the success");
        breaker.record(false);
        assert_eq!(breaker.describe(), "open");
        assert!(!breaker.allow());
    }

    #[test]
    fn after_the_cool_down_one_probe_decides() {
        let breaker = breaker(Duration::ZERO);
        for _ in 0..3 {
            breaker.record(false);
        }
        assert!(breaker.allow(), "the probe");
        assert_eq!(breaker.describe(), "half-open");
        assert!(!breaker.allow(), "only one probe at a time");
        breaker.record(false);
        assert_eq!(breaker.describe(), "open");
        assert!(breaker.allow(), "the next probe, the cool-down being zero");
        breaker.record(true);
        assert_eq!(breaker.describe(), "closed");
        assert!(breaker.allow());
    }

    #[test]
    fn the_open_gauge_says_when_calls_are_held_back() {
        let breaker = Breaker::new(
            "gauge-test",
            BreakerSettings {
                failures_to_open: 2,
                cool_down: Duration::from_secs(60),
            },
        );
        let open = || OPEN.with_label_values(&["gauge-test"]).get();
        assert_eq!(open(), 0);
        breaker.record(false);
        assert_eq!(open(), 0);
        breaker.record(false);
        assert_eq!(open(), 1);
        breaker.record(true);
        assert_eq!(open(), 0);
    }
}
