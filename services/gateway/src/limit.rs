//! Request rates per client and route class: a token bucket each (governor's GCRA), keyed by
//! the token's subject, or by the address for requests without one.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::routes::RouteClass;

/// Requests per second each client may send to each class of route; a client may burst up
/// to one second's worth at once.
#[derive(Debug, Clone)]
pub struct RateSettings {
    pub per_second: BTreeMap<RouteClass, NonZeroU32>,
}

impl Default for RateSettings {
    fn default() -> Self {
        let rate = |value: u32| NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN);
        Self {
            per_second: BTreeMap::from([
                (RouteClass::Auth, rate(10)),
                (RouteClass::Read, rate(200)),
                (RouteClass::Write, rate(100)),
            ]),
        }
    }
}

pub(crate) struct Limits {
    limiters: BTreeMap<RouteClass, DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

impl Limits {
    pub(crate) fn new(settings: &RateSettings) -> Self {
        let limiters = settings
            .per_second
            .iter()
            .map(|(class, rate)| (*class, RateLimiter::keyed(Quota::per_second(*rate))))
            .collect();
        Self {
            limiters,
            clock: DefaultClock::default(),
        }
    }

    /// Takes a token from `client`'s bucket for `class`, or says how long until one is there.
    ///
    /// # Errors
    /// The wait, when the bucket is empty.
    pub(crate) fn check(&self, class: RouteClass, client: &str) -> Result<(), Duration> {
        let Some(limiter) = self.limiters.get(&class) else {
            return Ok(());
        };
        limiter
            .check_key(&client.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the buckets of clients that are full again, so memory follows the clients of
    /// the last few seconds, not every client ever seen.
    pub(crate) fn forget_idle(&self) {
        for limiter in self.limiters.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_burst_waits_and_others_do_not() {
        let limits = Limits::new(&RateSettings {
            per_second: BTreeMap::from([(RouteClass::Write, NonZeroU32::new(3).unwrap())]),
        });
        for _ in 0..3 {
            limits.check(RouteClass::Write, "alice").unwrap();
        }
        let wait = limits.check(RouteClass::Write, "alice").unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(334),
            "{wait:?}"
        );
        limits.check(RouteClass::Write, "bob").unwrap();
        limits.check(RouteClass::Read, "alice").unwrap();
    }
}
