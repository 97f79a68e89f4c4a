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
//! connection ([`Outbox::is_congested`]) and the connection task stops reading its socket, so
//! that replies and returns (which no queue sees) stop too; when the writer has drained the
//! buffer it wakes the connection task ([`Outbox::kicked`]) to resume both. Only heartbeats
//! and the closing handshake are appended past the limit; the connection checks the limit
//! after every frame it handles, not only between reads. An outbox therefore holds at most
//! the limit plus what one frame produces (one message, in a `basic.get-ok` or
//! `basic.return`, or one delivery per queue routed to), and its writer one such buffer more.
//!
//! Holding: a reply that must not leave before a store write is durable (a `declare-ok`
//! for a durable queue) is pushed after [`Outbox::hold`]; the writer sends what came before
//! the hold and keeps everything after it until [`Outbox::release`]. Everything after it, not
//! only the reply, so the order of the connection's frames never changes.
//!
//! Lock order: the outbox lock is a leaf — nothing else is taken while it is held.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use bytes::BytesMut;
use parking_lot::Mutex;

use crate::broker::DeliverySink;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Buffered bytes beyond which deliveries to this connection pause.
pub const CONGESTED: usize = 256 << 10;
/// A drained buffer larger than this is released instead of kept for reuse.
const KEEP_CAPACITY: usize = 8 << 20;

/// What the outboxes of one server have held: how well the bound on buffered output holds,
/// for operators and tests. Shared by every connection of a server.
#[derive(Debug, Default)]
pub struct OutboxStats {
    high_water: AtomicUsize,
    read_pauses: AtomicU64,
    read_buffer_high_water: AtomicUsize,
}

impl OutboxStats {
    /// The most bytes any one outbox has held waiting for its writer.
    pub fn high_water(&self) -> usize {
        self.high_water.load(Ordering::Relaxed)
    }

    /// How many times a connection stopped reading its socket because its outbox was full.
    pub fn read_pauses(&self) -> u64 {
        self.read_pauses.load(Ordering::Relaxed)
    }

    /// The most bytes any one connection's read buffer has held after a read (frames not
    /// yet handled): its bound is one partial frame plus one read.
    pub fn read_buffer_high_water(&self) -> usize {
        self.read_buffer_high_water.load(Ordering::Relaxed)
    }

    pub(crate) fn record_read_buffer(&self, len: usize) {
        if len > self.read_buffer_high_water.load(Ordering::Relaxed) {
            self.read_buffer_high_water
                .fetch_max(len, Ordering::Relaxed);
        }
    }

    pub(crate) fn count_read_pause(&self) {
        self.read_pauses.fetch_add(1, Ordering::Relaxed);
    }

    fn record(&self, len: usize) {
        // A read first: the maximum rarely moves, so the shared line is rarely written.
        if len > self.high_water.load(Ordering::Relaxed) {
            self.high_water.fetch_max(len, Ordering::Relaxed);
        }
    }
}

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

/// The bytes waiting for the writer.
#[derive(Debug, Default)]
struct Pending {
    bytes: BytesMut,
    /// While held: how many of `bytes` may still be written (those pushed before the hold).
    held_from: Option<usize>,
}

/// The outgoing side of one connection.
#[derive(Debug, Default)]
pub struct Outbox {
    stats: Arc<OutboxStats>,
    buf: Mutex<Pending>,
    len: AtomicUsize,
    wake_writer: Notify,
    closed: AtomicBool,
    kick_wanted: AtomicBool,
    kick: Notify,
    dead: AtomicBool,
    written: AtomicU64,
    /// The connection's byte and write counts, once it is registered.
    io: std::sync::OnceLock<Arc<crate::stats::Io>>,
}

impl Outbox {
    /// A new, empty outbox.
    pub fn new() -> Arc<Outbox> {
        Arc::new(Outbox::default())
    }

    /// A new, empty outbox whose sizes are recorded in `stats`.
    pub fn with_stats(stats: Arc<OutboxStats>) -> Arc<Outbox> {
        Arc::new(Outbox {
            stats,
            ..Outbox::default()
        })
    }

    /// Counts every write from now on into `io` (the connection's, once registered).
    pub fn count_io(&self, io: Arc<crate::stats::Io>) {
        let _ = self.io.set(io);
    }

    /// The stats this outbox records into.
    pub fn stats(&self) -> &OutboxStats {
        &self.stats
    }

    /// Appends frames written by `write`.
    pub fn push(&self, write: impl FnOnce(&mut BytesMut)) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        PUSHES.with(|pushes| pushes.set(pushes.get() + 1));
        let mut buf = self.buf.lock();
        let was_empty = buf.bytes.is_empty();
        write(&mut buf.bytes);
        let len = buf.bytes.len();
        self.len.store(len, Ordering::Relaxed);
        drop(buf);
        self.stats.record(len);
        if was_empty {
            self.wake_writer.notify_one();
        }
    }

    /// Whether producers should hold back; records that a resume is wanted.
    ///
    /// The length is read again after the request is recorded, and the writer empties the
    /// buffer before it looks for requests (all `SeqCst`): so either this sees the drained
    /// length, or the writer sees the request and kicks. A `true` is always followed by a kick.
    pub fn is_congested(&self) -> bool {
        if self.len.load(Ordering::SeqCst) <= CONGESTED {
            return false;
        }
        self.kick_wanted.store(true, Ordering::SeqCst);
        self.len.load(Ordering::SeqCst) > CONGESTED
    }

    /// How many bytes the writer has handed to the socket so far: while the connection does
    /// not read (its output is full), progress here is the sign of a live client.
    pub fn bytes_written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Whether the socket has failed or the connection finished (nothing more is sent).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Completes when the writer drained a congested buffer: consumers may resume.
    pub async fn kicked(&self) {
        self.kick.notified().await
    }

    /// Keeps everything pushed from now on from the socket until [`Outbox::release`].
    pub fn hold(&self) {
        let mut buf = self.buf.lock();
        if buf.held_from.is_none() {
            buf.held_from = Some(buf.bytes.len());
        }
    }

    /// Drops what was held (it promised a write that failed).
    pub fn discard_held(&self) {
        let mut buf = self.buf.lock();
        if let Some(free) = buf.held_from.take() {
            buf.bytes.truncate(free);
            self.len.store(buf.bytes.len(), Ordering::SeqCst);
        }
        drop(buf);
        self.wake_writer.notify_one();
    }

    /// Lets the writer send what was held.
    pub fn release(&self) {
        self.buf.lock().held_from = None;
        self.wake_writer.notify_one();
    }

    /// Stops accepting frames; the writer flushes what is buffered and ends.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.wake_writer.notify_one();
    }

    /// The writer task: drains the buffer into `socket` (a TCP or TLS write half) until
    /// closed (or the socket fails).
    pub async fn run_writer<W: AsyncWrite + Unpin>(self: Arc<Self>, mut socket: W) {
        let mut spare = BytesMut::with_capacity(64 * 1024);
        loop {
            {
                let mut buf = self.buf.lock();
                match buf.held_from {
                    None if !buf.bytes.is_empty() => {
                        std::mem::swap(&mut buf.bytes, &mut spare);
                        self.len.store(0, Ordering::SeqCst);
                    }
                    Some(free) if free > 0 => {
                        spare.extend_from_slice(&buf.bytes[..free]);
                        let _ = buf.bytes.split_to(free);
                        buf.held_from = Some(0);
                        self.len.store(buf.bytes.len(), Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
            if spare.is_empty() {
                let closed = self.closed.load(Ordering::Relaxed);
                if closed && self.buf.lock().bytes.is_empty() {
                    break;
                }
                if closed && self.buf.lock().held_from.is_some() {
                    // Closing drops what was held: it waited for a write that failed.
                    break;
                }
                self.wake_writer.notified().await;
                continue;
            }
            // The flush is free on TCP (nothing is buffered there); over TLS a write can
            // leave encrypted records in the session when the socket is full, and only a
            // flush (or the next write, which may never come) sends them.
            if let Err(e) = self.write_counted(&mut socket, &spare).await {
                tracing::debug!("write failed: {e}");
                break;
            }
            if let Err(e) = socket.flush().await {
                tracing::debug!("write failed: {e}");
                break;
            }
            if spare.capacity() > KEEP_CAPACITY {
                spare = BytesMut::with_capacity(64 * 1024);
            } else {
                spare.clear();
            }
            if self.kick_wanted.swap(false, Ordering::SeqCst) {
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

impl Outbox {
    /// `write_all`, counting each piece the socket takes in [`Outbox::bytes_written`].
    async fn write_counted<W: AsyncWrite + Unpin>(
        &self,
        socket: &mut W,
        mut bytes: &[u8],
    ) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let n = socket.write(bytes).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            self.written.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(io) = self.io.get() {
                io.sent(n);
            }
            bytes = &bytes[n..];
        }
        Ok(())
    }
}

/// Queues deliver into a channel's outbox: they hold back while it is congested (which asks
/// for a kick once it drains) or dead.
impl DeliverySink for Outbox {
    fn accepts_deliveries(&self) -> bool {
        !self.is_congested() && !self.is_dead()
    }

    fn push_frames(&self, write: &mut dyn FnMut(&mut BytesMut)) {
        self.push(write);
    }
}
