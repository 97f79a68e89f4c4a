//! A bounded window of lapin operations (publishes, acks) that are started but not yet
//! finished, so the hot loops never wait for one message's round trip before the next.
//!
//! Why: a lapin publish or ack future resolves only once lapin's I/O thread has written
//! the frame (and, with confirms, once the broker confirmed it). Awaiting each one in turn
//! costs two thread hand-offs per message and lets the I/O thread write one frame per
//! syscall. lapin enqueues the frames on a future's *first* poll, so polling each new
//! operation once and keeping it here lets frames pile up and go out in batches.
//!
//! Invariant: operations are started and finished in the order they were pushed, so
//! publishes keep their order on the wire and confirms are awaited oldest first (brokers
//! confirm in order, so the oldest is never waiting behind a later one).

use futures_lite::future::poll_once;
use std::collections::VecDeque;
use std::pin::Pin;

pub struct InFlight<F: Future> {
    started: VecDeque<Pin<Box<F>>>,
    limit: usize,
}

impl<F: Future> InFlight<F> {
    /// At most `limit` operations stay unfinished; the oldest is awaited to make room.
    pub fn new(limit: usize) -> Self {
        Self {
            started: VecDeque::with_capacity(limit.min(4096)),
            limit: limit.max(1),
        }
    }

    /// Starts `operation`, handing every operation that finishes meanwhile to `finished`
    /// (which may stop the caller with its error).
    pub async fn start<E>(
        &mut self,
        operation: F,
        mut finished: impl FnMut(F::Output) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut operation = Box::pin(operation);
        match poll_once(&mut operation).await {
            Some(output) => finished(output)?,
            None => self.started.push_back(operation),
        }
        while self.started.len() >= self.limit {
            if let Some(oldest) = self.started.pop_front() {
                finished(oldest.await)?;
            }
        }
        Ok(())
    }

    /// Awaits every started operation, oldest first.
    pub async fn finish<E>(
        &mut self,
        mut finished: impl FnMut(F::Output) -> Result<(), E>,
    ) -> Result<(), E> {
        while let Some(oldest) = self.started.pop_front() {
            finished(oldest.await)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[tokio::test]
    async fn operations_finish_in_start_order_and_stay_within_the_limit() {
        let done = RefCell::new(Vec::new());
        let mut in_flight = InFlight::new(3);
        for i in 0..10u32 {
            in_flight
                .start(
                    async move {
                        tokio::task::yield_now().await;
                        i
                    },
                    |i| {
                        done.borrow_mut().push(i);
                        Ok::<(), ()>(())
                    },
                )
                .await
                .unwrap();
            assert!(in_flight.started.len() < 3);
        }
        in_flight
            .finish(|i| {
                done.borrow_mut().push(i);
                Ok::<(), ()>(())
            })
            .await
            .unwrap();
        assert_eq!(done.into_inner(), (0..10).collect::<Vec<_>>());
    }
}
