//! Time as Warren keeps it: wall-clock milliseconds since the Unix epoch, read through a
//! monotonic clock.
//!
//! Every deadline (message TTL, `x-expires`) and due time (delayed messages) is an epoch
//! millisecond, so it means the same thing after a restart and can be stored as it is. The
//! wall clock is read once per process; after that time advances with the monotonic clock,
//! so a step of the system clock (NTP, a manual change) never fires a timer early or makes
//! one wait twice. The monotonic clock is tokio's, so `tokio::time::pause` drives every timer
//! in tests; outside a runtime it is the standard one.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// A deadline that never comes.
pub const NEVER: u64 = u64::MAX;

const NANOS_PER_MS: u64 = 1_000_000;

/// The wall-clock time of one monotonic instant, taken at first use. Nanoseconds fit a `u64`
/// until the year 2554, and `u64` arithmetic keeps reading the clock cheap (it is read on
/// every delivery).
struct Base {
    epoch_ns: u64,
    instant: std::time::Instant,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| Base {
        epoch_ns: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        instant: std::time::Instant::now(),
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Now, in nanoseconds since the Unix epoch.
fn now_ns() -> u64 {
    let base = base();
    let now = Instant::now().into_std();
    // A paused test clock may start a little before the base was taken.
    match now.checked_duration_since(base.instant) {
        Some(after) => base.epoch_ns.saturating_add(nanos(after)),
        None => base
            .epoch_ns
            .saturating_sub(nanos(base.instant.duration_since(now))),
    }
}

/// Now, in epoch milliseconds, rounded down: what has fully elapsed, so firing everything
/// due at or before it is never early.
pub fn now_ms() -> u64 {
    now_ns() / NANOS_PER_MS
}

/// Now, in epoch milliseconds, rounded up: the base a delay is added to, so that it is never
/// shortened.
pub fn now_ms_ceil() -> u64 {
    now_ns().div_ceil(NANOS_PER_MS)
}

/// The runtime instant at which epoch millisecond `at` has passed, capped at `cap` from now:
/// far deadlines are re-armed rather than handed to the runtime's timer whole.
pub fn instant_of(at: u64, cap: Duration) -> Instant {
    let base = base();
    let limit = Instant::now() + cap;
    let after_base = at
        .saturating_mul(NANOS_PER_MS)
        .saturating_sub(base.epoch_ns);
    base.instant
        .checked_add(Duration::from_nanos(after_base))
        .map(Instant::from_std)
        .map_or(limit, |t| t.min(limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_wall_clock_milliseconds() {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64;
        let now = now_ms();
        assert!(now.abs_diff(wall) < 5_000, "{now} vs {wall}");
        assert!(now_ms_ceil() >= now);
    }

    #[test]
    fn far_instants_are_capped_and_near_ones_are_not() {
        let cap = Duration::from_secs(3600);
        assert!(instant_of(NEVER - 1, cap) <= Instant::now() + cap);
        let soon = instant_of(now_ms() + 10, cap);
        assert!(soon <= Instant::now() + Duration::from_millis(11));
    }
}
