//! The statistics sampler: one task per node that, every `stats_interval`, records a sample
//! of every object's counters (queues, exchanges, delayed exchanges, channels, connections,
//! vhosts), the node's message totals and its queue depths. Rates in the management API are
//! differences of these samples (see [`crate::stats::history`]), so the event paths only
//! ever do relaxed adds.
//!
//! The task holds the broker weakly and ends at shutdown (or when the broker is gone). A
//! tick costs a walk over the objects, taking each one's history lock once; the publish
//! path never takes those locks.

use std::sync::{Arc, Weak};

use tokio::sync::watch;

use super::Broker;
use crate::clock;

/// Starts the sampler for `broker`, stopping when `shutdown` turns true.
pub fn spawn(broker: &Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let weak: Weak<Broker> = Arc::downgrade(broker);
    let interval = broker.stats().interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                    continue;
                }
            }
            let Some(broker) = weak.upgrade() else {
                return;
            };
            sample(&broker, clock::now_ms());
        }
    });
}

/// Samples everything once, at `now_ms`.
pub fn sample(broker: &Broker, now_ms: u64) {
    let (mut ready, mut unacked) = (0u64, 0u64);
    for name in broker.vhost_names() {
        let Some(vhost) = broker.vhost(&name) else {
            continue;
        };
        for queue in vhost.queues() {
            queue.stats().sample(now_ms);
            let (r, u) = queue.sample_depth(now_ms);
            ready += r;
            unacked += u;
        }
        for exchange in vhost.exchanges() {
            exchange.stats().sample(now_ms);
            if let Some(delayed) = exchange.delayed() {
                delayed.stats().sample(now_ms);
            }
        }
        let mut totals = vhost.message_totals();
        totals.add(
            &broker
                .connections()
                .channel_totals(Some(&name))
                .from_source(crate::stats::Source::Channel),
        );
        vhost.sampled().record(now_ms, totals);
    }
    for connection in broker.connections().list() {
        connection.io.sample(now_ms);
        connection
            .sampled
            .record(now_ms, connection.message_stats());
        for channel in connection.channels() {
            channel.stats().sample(now_ms);
        }
    }
    let stats = broker.stats();
    stats.totals.record(now_ms, broker.message_totals());
    stats
        .queue_totals
        .record(now_ms, [ready, unacked, ready + unacked]);
    stats.churn_sampled.record(now_ms, stats.churn.read());
}
