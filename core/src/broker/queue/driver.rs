//! The task that does a queue's time-driven work: expiring messages whose deadline passed
//! (wherever they sit, nobody consuming) and deleting the queue once it has gone unused for
//! its `x-expires`.
//!
//! One task per queue, started by the queue the first time it has something to wait for, so
//! queues without TTLs or `x-expires` cost nothing. It holds the queue weakly and never
//! while sleeping: a deleted queue is freed at once and its task ends at the next wake-up
//! (deletion wakes it). The queue tells it when something is due earlier than planned
//! (`Queue::schedule`); `Notify` keeps that wake-up even if it comes before the task waits.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{NEVER, Queue, epoch};

/// The longest single sleep: far deadlines are re-armed rather than handed to the runtime's
/// timer whole.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Messages expired per visit at most (give or take one millisecond's worth): a backlog
/// that came due at once is expired and dead-lettered in slices, with a yield to the
/// runtime between them, so neither the queue's lock nor a worker thread is held for long
/// and publishers keep going while it drains.
pub(super) const SLICE: usize = 1024;

/// What a visit found.
pub(super) enum Visit {
    /// The queue is gone: stop.
    Deleted,
    /// More is due already: yield, then visit again.
    Again,
    /// Unused for its `x-expires`: delete it, then stop.
    Unused,
    /// Come back at this time (queue clock), or when woken if [`NEVER`].
    Next(u64),
}

/// Starts the driver of `queue`; false outside a tokio runtime (unit tests), where deadlines
/// are then honoured only when the queue is next used.
pub(super) fn spawn(queue: &Arc<Queue>) -> bool {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return false;
    };
    let weak = Arc::downgrade(queue);
    let wake = queue.wake.clone();
    runtime.spawn(async move {
        loop {
            let next = {
                let Some(queue) = weak.upgrade() else {
                    return;
                };
                match queue.tick() {
                    Visit::Deleted => return,
                    Visit::Unused => {
                        if let Some(broker) = queue.broker.upgrade() {
                            broker.expire_unused_queue(&queue);
                        }
                        return;
                    }
                    Visit::Again => None,
                    Visit::Next(next) => Some(next),
                }
            };
            let Some(next) = next else {
                tokio::task::yield_now().await;
                continue;
            };
            if next == NEVER {
                wake.notified().await;
            } else {
                tokio::select! {
                    () = tokio::time::sleep_until(instant_of(next)) => {}
                    () = wake.notified() => {}
                }
            }
        }
    });
    true
}

/// The runtime instant of a queue-clock time, capped at [`MAX_SLEEP`] from now.
fn instant_of(at: u64) -> Instant {
    let cap = Instant::now() + MAX_SLEEP;
    epoch()
        .checked_add(Duration::from_millis(at))
        .map(Instant::from_std)
        .map_or(cap, |t| t.min(cap))
}

#[cfg(test)]
mod tests {
    use super::super::now_ms;
    use super::*;

    #[test]
    fn far_deadlines_are_capped() {
        let far = instant_of(u64::MAX - 1);
        assert!(far <= Instant::now() + MAX_SLEEP);
        let soon = instant_of(now_ms() + 10);
        assert!(soon <= Instant::now() + Duration::from_millis(11));
    }
}
