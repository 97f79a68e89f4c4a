//! The task that does a queue's time-driven work: expiring messages whose deadline passed
//! (wherever they sit, nobody consuming), dead-lettering them, and deleting the queue once
//! it has gone unused for its `x-expires`.
//!
//! One task per queue, parked on the queue's wake signal until the queue first has a
//! deadline, so a queue without TTLs costs one idle task and no timer. It holds the queue
//! and the vhost weakly and neither while sleeping: a deleted queue is freed at once and its
//! task ends at the next wake-up (deletion wakes it). The queue wakes it when something is
//! due earlier than planned; `Notify` keeps that wake-up even if it comes before the task
//! waits.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::broker::queue::{NEVER, Queue, Visit};
use crate::broker::vhost::VHost;
use crate::clock;

/// The longest single sleep: far deadlines are re-armed rather than handed to the runtime's
/// timer whole.
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Starts the driver of `queue`; does nothing outside a tokio runtime (unit tests), where
/// deadlines are then honoured only when the queue is next used.
pub fn spawn(queue: &Arc<Queue>, vhost: Weak<VHost>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let weak = Arc::downgrade(queue);
    let wake = queue.driver_wake();
    let opened = vhost.upgrade().map(|v| v.opened());
    runtime.spawn(async move {
        // Nothing expires while the vhost is being restored (its dead-letter targets may
        // not be back yet).
        if let Some(mut opened) = opened {
            let _ = opened.wait_for(|open| *open).await;
        }
        loop {
            let next = {
                let (Some(queue), Some(vhost)) = (weak.upgrade(), vhost.upgrade()) else {
                    return;
                };
                let (visit, deaths) = queue.tick();
                vhost.bury(&queue, deaths);
                match visit {
                    Visit::Deleted => return,
                    Visit::Unused => {
                        vhost.expire_unused_queue(&queue);
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
                    () = tokio::time::sleep_until(clock::instant_of(next, MAX_SLEEP)) => {}
                    () = wake.notified() => {}
                }
            }
        }
    });
}
