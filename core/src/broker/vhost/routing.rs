//! Routing across the exchanges of one vhost: a message published to an exchange, through
//! exchange-to-exchange bindings and alternate exchanges, to the distinct queues it reaches.
//!
//! The publish path's first half: it takes no catalogue lock, only each traversed exchange's
//! `RwLock` for reading (and the queue name map for the default exchange), and reuses the
//! caller's buffers so that routing one message after another allocates nothing.
//!
//! Each exchange a message passes through counts it (`publish_in`), and counts the queues
//! it found itself (`publish_out`): two relaxed adds per exchange, nothing per queue.

use std::sync::Arc;

use super::VHost;
use crate::broker::exchange::{Destination, Exchange};
use crate::broker::queue::Queue;
use crate::error::AmqpError;
use crate::plugin::RouteRequest;
use crate::stats::Counter;

/// Reusable buffers for routing one message after another.
#[derive(Debug, Default)]
pub struct RouteScratch {
    ids: Vec<u64>,
    dests: Vec<Destination>,
    visited: Vec<u64>,
}

impl VHost {
    /// Routes a message published to `exchange`; the distinct destination queues are left
    /// in `out` (cleared first).
    pub fn route(
        &self,
        exchange: &Arc<Exchange>,
        request: &RouteRequest<'_>,
        scratch: &mut RouteScratch,
        out: &mut Vec<Arc<Queue>>,
    ) -> Result<(), AmqpError> {
        self.route_counted(exchange, request, scratch, out, true)
    }

    /// Whether a message would reach a queue now, without counting it anywhere (a delayed
    /// exchange judging `mandatory` before it holds the message; it is counted when it fires).
    pub fn routable(
        &self,
        exchange: &Arc<Exchange>,
        request: &RouteRequest<'_>,
        scratch: &mut RouteScratch,
        out: &mut Vec<Arc<Queue>>,
    ) -> Result<bool, AmqpError> {
        self.route_counted(exchange, request, scratch, out, false)?;
        let routable = !out.is_empty();
        out.clear();
        Ok(routable)
    }

    fn route_counted(
        &self,
        exchange: &Arc<Exchange>,
        request: &RouteRequest<'_>,
        scratch: &mut RouteScratch,
        out: &mut Vec<Arc<Queue>>,
        count: bool,
    ) -> Result<(), AmqpError> {
        out.clear();
        scratch.dests.clear();
        scratch.visited.clear();
        self.route_exchange(exchange, request, scratch, out, count)?;
        if scratch.visited.len() > 1 && out.len() > 1 {
            out.sort_unstable_by_key(|q| q.id);
            out.dedup_by_key(|q| q.id);
        }
        Ok(())
    }

    fn route_exchange(
        &self,
        exchange: &Arc<Exchange>,
        request: &RouteRequest<'_>,
        scratch: &mut RouteScratch,
        out: &mut Vec<Arc<Queue>>,
        count: bool,
    ) -> Result<(), AmqpError> {
        scratch.visited.push(exchange.id);
        let found_before = out.len();
        let counters = &exchange.stats().counters;
        if count {
            counters.incr(Counter::PublishIn);
        }
        if exchange.is_default() {
            let queues = self.queues.read();
            for key in request.routing_keys {
                if let Some(q) = std::str::from_utf8(key).ok().and_then(|k| queues.get(k))
                    && !out.iter().any(|o| o.id == q.id)
                {
                    out.push(q.clone());
                }
            }
            if count && out.len() > found_before {
                counters.add(Counter::PublishOut, (out.len() - found_before) as u64);
            }
            return Ok(());
        }
        let start = scratch.dests.len();
        exchange.route(request, &mut scratch.ids, &mut scratch.dests)?;
        let end = scratch.dests.len();
        let mut found = 0;
        for i in start..end {
            match scratch.dests[i].clone() {
                Destination::Queue(q) => {
                    found += 1;
                    out.push(q);
                }
                Destination::Exchange(e) => {
                    if !scratch.visited.contains(&e.id) && !e.is_deleted() {
                        self.route_exchange(&e, request, scratch, out, count)?;
                    }
                }
            }
        }
        if count && found > 0 {
            counters.add(Counter::PublishOut, found);
        }
        scratch.dests.truncate(start);
        if out.len() == found_before
            && let Some(ae) = exchange
                .spec
                .alternate
                .as_deref()
                .and_then(|n| self.exchange(n))
            && !scratch.visited.contains(&ae.id)
        {
            self.route_exchange(&ae, request, scratch, out, count)?;
        }
        Ok(())
    }
}
