//! Failed logins slowed down per source address, so a client guessing passwords gets a few
//! tries a second at most, while everyone else is unaffected.
//!
//! Each address that failed recently has a count of its failures; the first
//! [`FREE_FAILURES`] in a row are answered at once (a typo, a client retrying with stale
//! credentials), every further one only after [`FIRST_DELAY`], doubling up to
//! [`MAX_DELAY`]. The connection is not read meanwhile, so a brute-forcer on one connection
//! at a time is paced by the delay, and one opening many connections at once holds a socket
//! per guess for that long. A successful login is never delayed and does not clear the
//! count (a valid account must not buy fresh guesses at another); the count is forgotten
//! after [`QUIET_PERIOD`] without failures. At most [`MAX_TRACKED`] addresses are
//! remembered, the stalest evicted first, so spoofed or numerous sources cannot grow the map
//! without bound.
//!
//! RabbitMQ has no per-address throttle (it delays every refused handshake by a fixed
//! second or so); this one is Warren's.

use std::net::IpAddr;
use std::time::Duration;

use parking_lot::Mutex;
use rustc_hash::FxHashMap;
use tokio::time::Instant;

/// Failed logins in a row an address may make before its answers are delayed.
pub const FREE_FAILURES: u32 = 5;
/// The delay of the first failure past the free ones; each further one doubles it.
pub const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest a failed login waits for its answer.
pub const MAX_DELAY: Duration = Duration::from_secs(2);
/// How long an address must go without a failed login to be forgotten.
pub const QUIET_PERIOD: Duration = Duration::from_secs(60);
/// The most addresses remembered at once.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

/// The node's record of recent failed logins, by source address.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    by_address: Mutex<FxHashMap<IpAddr, Failures>>,
}

impl LoginThrottle {
    /// Records a failed login from `peer`; how long to wait before answering it.
    pub fn failed(&self, peer: IpAddr) -> Duration {
        self.failed_at(peer.to_canonical(), Instant::now())
    }

    /// How long the next failed login from `peer` would wait (for tests and diagnostics).
    pub fn delay_for(&self, peer: IpAddr) -> Duration {
        let now = Instant::now();
        let by_address = self.by_address.lock();
        match by_address.get(&peer.to_canonical()) {
            Some(f) if now.duration_since(f.last) < QUIET_PERIOD => delay(f.count + 1),
            _ => delay(1),
        }
    }

    fn failed_at(&self, peer: IpAddr, now: Instant) -> Duration {
        let mut by_address = self.by_address.lock();
        if !by_address.contains_key(&peer) && by_address.len() >= MAX_TRACKED {
            by_address.retain(|_, f| now.duration_since(f.last) < QUIET_PERIOD);
            if by_address.len() >= MAX_TRACKED {
                let stalest = by_address
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(address, _)| *address);
                if let Some(address) = stalest {
                    by_address.remove(&address);
                }
            }
        }
        let entry = by_address.entry(peer).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(entry.last) >= QUIET_PERIOD {
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        delay(entry.count)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.by_address.lock().len()
    }
}

/// The delay of the `count`th failure in a row.
fn delay(count: u32) -> Duration {
    if count <= FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (count - FREE_FAILURES - 1).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[tokio::test(start_paused = true)]
    async fn delays_start_after_the_free_failures_grow_and_stop_at_the_maximum() {
        let throttle = LoginThrottle::default();
        let delays: Vec<_> = (0..12).map(|_| throttle.failed(ip(1))).collect();
        assert!(
            delays[..FREE_FAILURES as usize]
                .iter()
                .all(Duration::is_zero)
        );
        assert_eq!(delays[FREE_FAILURES as usize], FIRST_DELAY);
        assert_eq!(delays[FREE_FAILURES as usize + 1], FIRST_DELAY * 2);
        assert_eq!(*delays.last().unwrap(), MAX_DELAY);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(throttle.delay_for(ip(2)), Duration::ZERO, "other addresses");
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_is_forgotten_after_a_quiet_period() {
        let throttle = LoginThrottle::default();
        for _ in 0..FREE_FAILURES {
            throttle.failed(ip(1));
        }
        assert_eq!(throttle.delay_for(ip(1)), FIRST_DELAY);
        tokio::time::advance(QUIET_PERIOD).await;
        assert_eq!(throttle.delay_for(ip(1)), Duration::ZERO);
        assert_eq!(throttle.failed(ip(1)), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn the_map_is_bounded_and_evicts_the_stalest_address() {
        let throttle = LoginThrottle::default();
        for _ in 0..=FREE_FAILURES {
            throttle.failed(ip(1));
        }
        tokio::time::advance(Duration::from_millis(1)).await;
        for n in 0..MAX_TRACKED as u32 {
            throttle.failed(IpAddr::from((n + 1_000_000).to_be_bytes()));
        }
        assert_eq!(throttle.tracked(), MAX_TRACKED);
        assert_eq!(
            throttle.delay_for(ip(1)),
            Duration::ZERO,
            "the stalest went"
        );
    }
}
