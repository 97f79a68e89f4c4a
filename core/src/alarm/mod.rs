//! Resource alarms: conditions under which the broker stops taking new messages so that
//! what it holds can drain — RabbitMQ's disk and memory alarms.
//!
//! While any alarm is raised, every connection that publishes is blocked: it is sent
//! `connection.blocked` (if it announced the capability) and its socket is not read until
//! the alarm clears, then `connection.unblocked`. Connections that only consume keep being
//! read, so acks keep flowing and queues can drain. [`Alarms`] is a watch that connections
//! subscribe to; monitors raise and clear: [`disk`] (free space under the data directory)
//! and [`memory`] (what the process holds against `--memory-high-watermark`).

pub mod disk;
pub mod memory;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

pub use disk::{free_bytes, watch_disk};
pub use memory::{MemoryWatermark, watch_memory};

/// Which alarms are raised.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Raised {
    /// Free disk space under the data directory is below `--disk-free-limit`.
    pub disk: bool,
    /// The process holds more memory than `--memory-high-watermark`.
    pub memory: bool,
}

impl Raised {
    /// Whether any alarm is raised.
    pub fn any(&self) -> bool {
        self.disk || self.memory
    }

    /// The reason a `connection.blocked` gives: RabbitMQ's words, which join the resources
    /// in their sorted order ("low on disk & memory" when both are raised).
    pub fn reason(&self) -> &'static str {
        match (self.disk, self.memory) {
            (true, true) => "low on disk & memory",
            (true, false) => "low on disk",
            (false, true) => "low on memory",
            (false, false) => "",
        }
    }

    /// The raised alarms' resources as RabbitMQ's management API names them (`disk space`,
    /// `memory`), in RabbitMQ's order.
    pub fn resources(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.disk {
            names.push("disk space");
        }
        if self.memory {
            names.push("memory");
        }
        names
    }
}

/// What the memory monitor last saw: the process's figure and the watermark, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryUse {
    /// Resident memory of the process at the last sample.
    pub used: u64,
    /// The high watermark.
    pub limit: u64,
}

/// The broker's alarms.
#[derive(Debug)]
pub struct Alarms {
    raised: watch::Sender<Raised>,
    /// The memory watermark in bytes; `u64::MAX` while no memory monitor runs.
    memory_limit: AtomicU64,
    /// The last sampled resident memory in bytes.
    memory_used: AtomicU64,
}

impl Default for Alarms {
    fn default() -> Self {
        Alarms {
            raised: watch::Sender::new(Raised::default()),
            memory_limit: AtomicU64::new(u64::MAX),
            memory_used: AtomicU64::new(0),
        }
    }
}

impl Alarms {
    /// What is raised now.
    pub fn raised(&self) -> Raised {
        *self.raised.borrow()
    }

    /// A watch on the alarms, for a connection.
    pub fn subscribe(&self) -> watch::Receiver<Raised> {
        self.raised.subscribe()
    }

    /// The memory monitor's last figures (`None` while it does not run).
    pub fn memory(&self) -> Option<MemoryUse> {
        let limit = self.memory_limit.load(Ordering::Relaxed);
        (limit != u64::MAX).then(|| MemoryUse {
            used: self.memory_used.load(Ordering::Relaxed),
            limit,
        })
    }

    /// Raises or clears the disk alarm (logging each change once).
    pub fn set_disk(&self, low: bool, free: u64, limit: u64) {
        self.raised.send_if_modified(|r| {
            if r.disk == low {
                return false;
            }
            r.disk = low;
            if low {
                tracing::warn!(
                    free_bytes = free,
                    limit_bytes = limit,
                    "disk alarm raised: free disk space is below --disk-free-limit; publishing \
                     connections are blocked until it is back"
                );
            } else {
                tracing::info!(free_bytes = free, limit_bytes = limit, "disk alarm cleared");
            }
            true
        });
    }

    /// Records a memory sample and raises or clears the memory alarm accordingly: raised
    /// while `used` is above `limit`, cleared as soon as it is not (RabbitMQ's rule, no
    /// hysteresis). Each change is logged once.
    pub fn set_memory(&self, used: u64, limit: u64) {
        self.memory_used.store(used, Ordering::Relaxed);
        self.memory_limit.store(limit, Ordering::Relaxed);
        let high = used > limit;
        self.raised.send_if_modified(|r| {
            if r.memory == high {
                return false;
            }
            r.memory = high;
            if high {
                tracing::warn!(
                    used_bytes = used,
                    limit_bytes = limit,
                    "memory alarm raised: the broker holds {} MiB, above the high watermark of \
                     {} MiB (--memory-high-watermark); publishing connections are blocked until \
                     consumers drain the backlog",
                    used >> 20,
                    limit >> 20
                );
            } else {
                tracing::info!(
                    used_bytes = used,
                    limit_bytes = limit,
                    "memory alarm cleared: the broker holds {} MiB, below the high watermark \
                     of {} MiB",
                    used >> 20,
                    limit >> 20
                );
            }
            true
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_alarm_is_raised_and_cleared_once_each() {
        let alarms = Alarms::default();
        let mut rx = alarms.subscribe();
        alarms.set_disk(true, 10, 50);
        assert!(rx.has_changed().expect("open"));
        assert_eq!(rx.borrow_and_update().reason(), "low on disk");
        alarms.set_disk(true, 9, 50);
        assert!(!rx.has_changed().expect("open"), "no change, no wake-up");
        alarms.set_disk(false, 100, 50);
        assert!(!rx.borrow_and_update().any());
    }

    #[test]
    fn the_memory_alarm_is_raised_above_the_watermark_and_cleared_at_or_below_it() {
        let alarms = Alarms::default();
        assert_eq!(alarms.memory(), None, "no monitor, no figures");
        let mut rx = alarms.subscribe();
        alarms.set_memory(100, 100);
        assert!(
            !rx.has_changed().expect("open"),
            "at the watermark is not above it"
        );
        alarms.set_memory(101, 100);
        assert_eq!(rx.borrow_and_update().reason(), "low on memory");
        alarms.set_memory(150, 100);
        assert!(!rx.has_changed().expect("open"), "no change, no wake-up");
        assert_eq!(
            alarms.memory(),
            Some(MemoryUse {
                used: 150,
                limit: 100
            })
        );
        alarms.set_memory(99, 100);
        assert!(!rx.borrow_and_update().any());
    }

    #[test]
    fn both_alarms_give_rabbitmqs_combined_reason_and_resource_names() {
        let both = Raised {
            disk: true,
            memory: true,
        };
        assert_eq!(both.reason(), "low on disk & memory");
        assert_eq!(both.resources(), ["disk space", "memory"]);
        assert!(Raised::default().resources().is_empty());
    }
}
