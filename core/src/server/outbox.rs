//! A connection's outgoing bytes: one buffer that every producer appends encoded frames to,
//! drained by one writer task per connection.
//!
//! Why this shape: deliveries are encoded by whichever task routed the message (a publisher's
//! connection task, an ack that freed credit), so many producers write to one socket. A
//! mutex-protected `BytesMut` lets each append whole frames (per-channel order is the order of
//! appends) and lets the writer take everything accumulated since its last write in one
//! swap, so a burst of small deliveries becomes one `write` syscall. Two buffers ping-pong
//! between producers and writer, so steady state allocates nothing.
//!
//! Back-pressure: past [`CONGESTED`] buffered bytes, queues stop delivering to this
//! connection ([`Outbox::is_congested`]); when the writer has drained below it again it wakes
//! the connection task ([`Outbox::kicked`]) to resume them.
//!
//! Lock order: the outbox lock is a leaf — nothing else is taken while it is held.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::BytesMut;
use parking_lot::Mutex;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Buffered bytes beyond which deliveries to this connection pause.
pub const CONGESTED: usize = 256 << 10;
/// A drained buffer larger than this is released instead of kept for reuse.
const KEEP_CAPACITY: usize = 8 << 20;

thread_local! {
    /// Pushes made by this thread into any outbox (see [`pushes_by_this_thread`]).
    static PUSHES: Cell<u64> = const { Cell::new(0) };
}

/// How many times this thread has pushed frames into any outbox. Compared before and after a
/// synchronous piece of work (a connection handling what it read), it tells whether that work
/// produced output anywhere: a delivery to a consumer, a confirm, a reply.
pub fn pushes_by_this_thread() -> u64 {
    PUSHES.with(Cell::get)
}

/// The outgoing side of one connection.
#[derive(Debug, Default)]
pub struct Outbox {
    buf: Mutex<BytesMut>,
    len: AtomicUsize,
    wake_writer: Notify,
    closed: AtomicBool,
    kick_wanted: AtomicBool,
    kick: Notify,
    dead: AtomicBool,
}

impl Outbox {
    /// A new, empty outbox.
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox::default())
    }

    /// Appends frames written by `write`.
    pub fn push(&self, write: impl FnOnce(&mut BytesMut)) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        PUSHES.with(|pushes| pushes.set(pushes.get() + 1));
        let mut buf = self.buf.lock();
        let was_empty = buf.is_empty();
        write(&mut buf);
        self.len.store(buf.len(), Ordering::Relaxed);
        drop(buf);
        if was_empty {
            self.wake_writer.notify_one();
        }
    }

    /// Whether producers should hold back; records that a resume is wanted.
    pub fn is_congested(&self) -> bool {
        if self.len.load(Ordering::Relaxed) > CONGESTED {
            self.kick_wanted.store(true, Ordering::Relaxed);
            true
        } else {
            false
        }
    }

    /// Whether the socket has failed or the connection finished (nothing more is sent).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Completes when the writer drained a congested buffer: consumers may resume.
    pub async fn kicked(&self) {
        self.kick.notified().await
    }

    /// Stops accepting frames; the writer flushes what is buffered and ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake_writer.notify_one();
    }

    /// The writer task: drains the buffer into `socket` until closed (or the socket fails).
    pub async fn run_writer<W: AsyncWrite + Unpin>(self: Arc<Self>, mut socket: W) {
        let mut spare = BytesMut::with_capacity(64 * 1024);
        loop {
            {
                let mut buf = self.buf.lock();
                if !buf.is_empty() {
                    std::mem::swap(&mut *buf, &mut spare);
                    self.len.store(0, Ordering::Relaxed);
                }
            }
            if spare.is_empty() {
                if self.closed.load(Ordering::Relaxed) && self.buf.lock().is_empty() {
                    break;
                }
                self.wake_writer.notified().await;
                continue;
            }
            if let Err(e) = socket.write_all(&spare).await {
                tracing::debug!("write failed: {e}");
                break;
            }
            if spare.capacity() > KEEP_CAPACITY {
                spare = BytesMut::with_capacity(64 * 1024);
            } else {
                spare.clear();
            }
            if self.kick_wanted.swap(false, Ordering::Relaxed) {
                self.kick.notify_one();
            }
        }
        self.dead.store(true, Ordering::Relaxed);
        self.closed.store(true, Ordering::Relaxed);
        let _ = socket.flush().await;
        let _ = socket.shutdown().await;
        // Wake a connection task that may wait for credit to come back.
        self.kick.notify_one();
    }
}
