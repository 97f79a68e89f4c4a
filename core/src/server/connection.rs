//! One client connection: the handshake, then frames dispatched to channels until either
//! side closes.
//!
//! The task owns the socket's read half and every channel's state; the write half belongs to
//! the connection's writer task ([`Outbox`]). Reads are decoded in batches: everything that
//! arrived in one `read` is processed before publisher confirms are flushed, so a pipelining
//! publisher gets one `basic.ack multiple=true` per batch instead of one per message.
//! Between reads, a connection that looks like a client awaiting each publish polls its
//! socket for a moment instead of letting its worker sleep ([`Linger`]); that never holds a
//! frame back, it only spares the client a wake-up.
//!
//! Errors: a channel-level [`AmqpError`] closes that channel (`channel.close`, everything
//! but close/close-ok ignored until the client answers); a connection-level one or a
//! [`ProtocolError`](crate::protocol::ProtocolError) sends `connection.close` and ends the
//! connection. Nothing a client sends can panic the task; other connections never notice.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{AMQPClass, channel, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::{BufMut, BytesMut};
use rustc_hash::{FxHashMap, FxHashSet};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::Config;
use super::budget::Budget;
use super::channel::{Channel, ConnCtx, Outcome, Phase as ChannelPhase};
use super::outbox::{self, Outbox, OutboxStats};
use super::stream::{Incoming, ReadSide};
use crate::alarm::Raised;
use crate::auth::{Grants, User};
use crate::broker::connections::{Encryption, Registered};
use crate::broker::limits::ConnectionLimit;
use crate::broker::{Broker, Queue, replies};
use crate::error::AmqpError;
use crate::protocol::{CodecError, Frame, FrameCodec, PROTOCOL_HEADER, RawMethod, ReplyCode};
use crate::store::Stores;

/// How long a connection polls its socket before letting its worker sleep, when its reads
/// come this close together (see [`read_soon`]).
const LINGER: Duration = Duration::from_micros(200);
/// Reads at least this long do not linger: the client is already sending in bulk.
const SMALL_READ: usize = 16 * 1024;
/// The most one read takes from the socket. The read buffer is read into only when it holds
/// no complete frame (see `Connection::process`), so it never holds more than one partial
/// frame (at most frame_max) plus this.
pub const READ_MAX: usize = 64 * 1024;
/// The frame_max below which tune-ok is refused (RabbitMQ's minimum).
const MIN_FRAME_MAX: u32 = 8192;
/// How long the server waits for `connection.close-ok` after sending `connection.close`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
const HEARTBEAT_FRAME: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, 0xCE];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    ProtocolHeader,
    StartOk,
    TuneOk,
    Open,
    Running,
    Closing(Instant),
}

/// Bytes of stored messages (queued or held) not yet taken by the stores' writers above which
/// publishing connections stop reading until they catch up (about half a second of a fast
/// disk).
const MAX_STORE_BACKLOG: u64 = 64 << 20;

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Continue,
    Exit,
}

/// Serves one accepted socket until it closes.
pub async fn serve(
    socket: Incoming,
    peer: SocketAddr,
    id: u64,
    broker: Arc<Broker>,
    config: Arc<Config>,
    stats: Arc<OutboxStats>,
    shutdown: watch::Receiver<bool>,
) {
    let local = socket.local_addr().unwrap_or(peer);
    let outbox = Outbox::with_stats(stats);
    let Some(opened) = socket.open(peer, config.handshake_timeout, &outbox).await else {
        return;
    };
    let (mut reader, mut writer) = (opened.reader, opened.writer);
    let encryption = opened.tls.as_ref().map(|t| Encryption {
        protocol: t.protocol.clone(),
        cipher: t.cipher.clone(),
    });
    let registered = broker.connections().register(id, peer, local, encryption);
    outbox.count_io(registered.entry().io.clone());
    let mut conn = Connection {
        peer,
        ctx: ConnCtx {
            id,
            broker,
            vhost: None,
            outbox: outbox.clone(),
            frame_max: config.frame_max,
            max_message_size: config.max_message_size,
            cancel_notify: false,
            exclusive_queues: Vec::new(),
            published: false,
            holds: Vec::new(),
            grants: None,
            budget: Budget::new(config.max_message_size),
        },
        registered,
        config,
        codec: FrameCodec::new(),
        phase: Phase::ProtocolHeader,
        channels: FxHashMap::default(),
        awaiting_close_ok: FxHashSet::default(),
        blocked_notify: false,
        told_blocked: false,
        blocked: false,
        channel_max: 0,
        heartbeat: 0,
        user: None,
        last_read: Instant::now(),
        last_heartbeat_sent: Instant::now(),
        started: Instant::now(),
        tls: opened.tls,
        frames_left: false,
        paced: false,
        output_paused: false,
        seen_written: 0,
        delayed_refusal: None,
    };
    tracing::debug!(%peer, id, "connection accepted");
    conn.run(&mut reader, shutdown.clone()).await;
    if let Some((delay, refusal)) = conn.delayed_refusal.take() {
        let mut shutdown = shutdown;
        // A shutdown cuts the wait short: it closes the connection anyway.
        let _ = tokio::time::timeout(delay, shutdown.wait_for(|stop| *stop)).await;
        conn.close_connection(refusal);
    }
    conn.cleanup();
    conn.finish_holds().await;
    outbox.close();
    // A peer that stopped reading cannot hold the socket (and this task) forever.
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    tracing::debug!(%peer, id, "connection closed");
}

struct Connection {
    peer: SocketAddr,
    /// This connection in the node's list (unregistered when dropped).
    registered: Registered,
    config: Arc<Config>,
    ctx: ConnCtx,
    codec: FrameCodec,
    phase: Phase,
    channels: FxHashMap<u16, Channel>,
    /// Channels finished while the client still owes the close-ok for the server's
    /// `channel.close`: the two closes crossed (see [`Connection::channel_method`]).
    awaiting_close_ok: FxHashSet<u16>,
    /// The client announced the `connection.blocked` capability.
    blocked_notify: bool,
    /// `connection.blocked` was sent and not yet `connection.unblocked`.
    told_blocked: bool,
    /// Not read because of an alarm: its heartbeats are not watched meanwhile (as
    /// RabbitMQ pauses its heartbeat monitor for a blocked connection).
    blocked: bool,
    channel_max: u16,
    heartbeat: u16,
    /// Who logged in (after `start-ok`).
    user: Option<Arc<User>>,
    last_read: Instant,
    last_heartbeat_sent: Instant,
    started: Instant,
    /// On a TLS connection, who the client's certificate says it is.
    tls: Option<crate::tls::TlsPeer>,
    /// `process` stopped taking frames from the read buffer at a bound (output full,
    /// confirms outstanding): what is left is handled before the socket is read again.
    frames_left: bool,
    /// Not read because the broker is behind on this connection's work (confirms waiting
    /// for stores, stores' writers behind): its heartbeats are not watched meanwhile, as
    /// for an alarm — the silence is ours.
    paced: bool,
    /// Not read because the outbox is over its limit: the writer's progress then stands
    /// for the client's heartbeats, which are not read.
    output_paused: bool,
    /// The outbox's written-bytes count at the last tick.
    seen_written: u64,
    /// A refused login from an address that failed too often recently: the close is sent
    /// only after this delay, the socket unread meanwhile (see [`crate::auth::throttle`]).
    delayed_refusal: Option<(Duration, AmqpError)>,
}

impl Connection {
    async fn run(&mut self, reader: &mut ReadSide, mut shutdown: watch::Receiver<bool>) {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut shutting_down = *shutdown.borrow();
        if shutting_down {
            return;
        }
        let outbox = self.ctx.outbox.clone();
        // Set while a queue this connection publishes to is backlogged: the socket is not
        // read until it drains (flow control, see `broker::queue`).
        let mut paused: Option<Arc<Queue>> = None;
        let mut output_full = false;
        let mut linger = Linger::default();
        let mut stores = self.ctx.broker.stores().watches();
        let mut alarms = self.ctx.broker.alarms().subscribe();
        let mut was_blocked = false;
        let entry = self.registered.entry().clone();
        let close_requested = entry.close_requested();
        tokio::pin!(close_requested);
        let mut close_seen = false;
        loop {
            // A publisher whose messages the disk has not caught up with waits for it.
            let disk_behind = self.ctx.published && {
                let stores = self.ctx.broker.stores();
                stores.messages.backlog() + stores.held.backlog() > MAX_STORE_BACKLOG
            };
            let waiting = self.settle_store_waits() || disk_behind;
            let paced = disk_behind || self.unconfirmed_full();
            if self.paced && !paced {
                // The silence was ours, not the client's.
                self.last_read = Instant::now();
            }
            self.paced = paced;
            let blocked = self.blocked_by(*alarms.borrow_and_update());
            if was_blocked && !blocked {
                // The silence was ours, not the client's.
                self.last_read = Instant::now();
            }
            was_blocked = blocked;
            self.blocked = blocked;
            if buf.capacity() - buf.len() < 16 * 1024 {
                buf.reserve(64 * 1024);
            }
            let was_full = output_full;
            output_full = self.output_full();
            if output_full && !was_full {
                outbox.stats().count_read_pause();
            } else if was_full && !output_full {
                // The pause was ours, not the client's silence.
                self.last_read = Instant::now();
            }
            self.output_paused = output_full;
            let may_take = paused.is_none() && !output_full && !blocked && !paced;
            if may_take && self.frames_left {
                // Frames read before a pause come before anything read after it.
                if self.process(&mut buf) == Step::Exit {
                    return;
                }
                paused = self
                    .channels
                    .values_mut()
                    .find_map(Channel::take_backlogged);
                continue;
            }
            tokio::select! {
                read = read_soon(reader, &mut buf, &mut linger), if may_take && !self.frames_left => match read {
                    Ok(0) | Err(_) => return,
                    Ok(read) => {
                        entry.io.received(read);
                        self.last_read = Instant::now();
                        outbox.stats().record_read_buffer(buf.len());
                        let pushes = outbox::pushes_by_this_thread();
                        if self.process(&mut buf) == Step::Exit {
                            return;
                        }
                        let silent = outbox::pushes_by_this_thread() == pushes;
                        linger.after_read(read, silent);
                        paused = self.channels.values_mut().find_map(Channel::take_backlogged);
                    }
                },
                _ = wait_for_space(paused.as_deref()), if paused.is_some() => {
                    // A pause is bounded (see `Queue::wait_for_space`): a queue whose
                    // consumers are slow for their own reasons (prefetch, no acks) slows its
                    // publishers down but can never stop them, nor stall acks arriving on
                    // this same connection.
                    self.last_read = Instant::now();
                    paused = None;
                }
                reason = &mut close_requested, if !close_seen => {
                    // An operator (or a deleted vhost) closes this connection.
                    close_seen = true;
                    tracing::info!(peer = %self.peer, "closing connection: {reason}");
                    if self.phase == Phase::Running {
                        self.close_connection(AmqpError::new(ReplyCode::ConnectionForced, reason));
                    } else if !matches!(self.phase, Phase::Closing(_)) {
                        return;
                    }
                }
                changed = shutdown.changed(), if !shutting_down => {
                    shutting_down = true;
                    if changed.is_ok() {
                        if self.phase == Phase::Running {
                            self.close_connection(replies::shutting_down());
                        } else if !matches!(self.phase, Phase::Closing(_)) {
                            return;
                        }
                    }
                }
                _ = outbox.kicked() => {
                    if outbox.is_dead() {
                        return;
                    }
                    for channel in self.channels.values() {
                        channel.resume(&self.ctx);
                    }
                }
                () = Stores::changed(&mut stores), if waiting => {
                    // Looked at again at the top of the loop.
                }
                _ = alarms.changed() => {
                    // Looked at again at the top of the loop.
                }
                _ = tick.tick() => {
                    if self.on_tick() == Step::Exit {
                        return;
                    }
                }
            }
        }
    }

    /// Before the socket closes: replies held for store writes go out once those are durable
    /// (a client that closed right after a declare still gets its declare-ok), or are dropped
    /// if the writes fail or take too long.
    async fn finish_holds(&mut self) {
        if self.ctx.holds.is_empty() {
            return;
        }
        let mut stores = self.ctx.broker.stores().watches();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.ctx.holds.is_empty() {
            let broker = self.ctx.broker.clone();
            let mut failed = false;
            self.ctx
                .holds
                .retain(|write| match broker.stores().is_durable(*write) {
                    Some(durable) => {
                        failed |= !durable;
                        false
                    }
                    None => true,
                });
            if failed {
                self.ctx.holds.clear();
                self.ctx.outbox.discard_held();
                return;
            }
            if self.ctx.holds.is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, Stores::changed(&mut stores))
                .await
                .is_err()
            {
                self.ctx.outbox.discard_held();
                return;
            }
        }
        self.ctx.outbox.release();
    }

    /// Sends what store writes made decidable — confirms, held replies — and says whether
    /// anything still waits for a store. A held reply whose write failed closes the
    /// connection (541): it promised something the broker could not keep.
    fn settle_store_waits(&mut self) -> bool {
        let mut waiting = false;
        for channel in self.channels.values_mut() {
            if channel.confirms_waiting() {
                channel.flush_confirms(&self.ctx.outbox, self.ctx.broker.stores());
                waiting |= channel.confirms_waiting();
            }
        }
        if self.ctx.holds.is_empty() {
            return waiting;
        }
        let broker = self.ctx.broker.clone();
        let stores = broker.stores();
        let mut failed = false;
        self.ctx
            .holds
            .retain(|write| match stores.is_durable(*write) {
                Some(true) => false,
                Some(false) => {
                    failed = true;
                    false
                }
                None => true,
            });
        if failed {
            self.ctx.holds.clear();
            self.ctx.outbox.discard_held();
            if !matches!(self.phase, Phase::Closing(_)) {
                self.close_connection(AmqpError::internal(
                    "a write this reply depends on could not be stored",
                ));
            }
        } else if self.ctx.holds.is_empty() {
            self.ctx.outbox.release();
        }
        waiting || !self.ctx.holds.is_empty()
    }

    /// Whether reading must wait for the writer: everything a frame can cause (replies,
    /// returns, deliveries) is appended to the outbox, so past its limit the only bound on it
    /// is to read no more frames. The writer kicks the task once it has drained the buffer.
    /// While closing, reads go on: only close/close-ok are handled, and nothing else is sent.
    ///
    /// The heartbeat timeout keeps running during a pause, but the client's heartbeats wait
    /// unread behind it, so the writer's progress stands for them: a client that has not
    /// taken a byte of its backlog for twice the heartbeat interval is treated as gone (see
    /// `on_tick`). When the pause ends the timeout restarts.
    fn output_full(&self) -> bool {
        !matches!(self.phase, Phase::Closing(_)) && self.ctx.outbox.is_congested()
    }

    /// Whether reading must wait for stores to settle confirms: past the connection's bound
    /// on unconfirmed publishes (see [`crate::server::budget`]). Confirms drain it by
    /// themselves, so this paces the publisher and never closes it.
    fn unconfirmed_full(&self) -> bool {
        !matches!(self.phase, Phase::Closing(_)) && self.ctx.budget.unconfirmed_full()
    }

    /// Decodes and handles the complete frames in `buf`, up to a bound: once a frame has
    /// filled the outbox past its limit or left too many publishes unconfirmed, the rest
    /// stays in `buf` (`frames_left`) until the writer or the stores have caught up. So
    /// what one read produces is bounded by the limit plus one frame's output (a
    /// `basic.get-ok` or `basic.return` of one message), not by how many frames fit in a
    /// read.
    fn process(&mut self, buf: &mut BytesMut) -> Step {
        self.frames_left = false;
        loop {
            if self.output_full() || self.unconfirmed_full() {
                self.frames_left = !buf.is_empty();
                break;
            }
            match self.codec.decode(buf) {
                Ok(Some(frame)) => {
                    if self.handle_frame(frame) == Step::Exit {
                        return Step::Exit;
                    }
                }
                Ok(None) => break,
                Err(CodecError::Protocol(e)) => {
                    if e.replies_with_protocol_header() {
                        self.ctx
                            .outbox
                            .push(|out| out.extend_from_slice(&PROTOCOL_HEADER));
                        return Step::Exit;
                    }
                    tracing::debug!(peer = %self.peer, "protocol error: {e}");
                    let (class, method) = e.class_method();
                    if !matches!(self.phase, Phase::Closing(_)) {
                        self.close_connection(
                            AmqpError::new(e.reply_code(), e.to_string()).during(class, method),
                        );
                    }
                    // The stream is out of sync: nothing more can be read from it.
                    return Step::Exit;
                }
                Err(CodecError::Io(_)) => return Step::Exit,
            }
        }
        for channel in self.channels.values_mut() {
            if channel.phase == ChannelPhase::Open {
                channel.flush_confirms(&self.ctx.outbox, self.ctx.broker.stores());
            }
        }
        Step::Continue
    }

    fn on_tick(&mut self) -> Step {
        let now = Instant::now();
        match self.phase {
            Phase::Closing(deadline) => {
                if now >= deadline {
                    return Step::Exit;
                }
            }
            Phase::Running => {}
            _ => {
                if now.duration_since(self.started) > self.config.handshake_timeout {
                    tracing::debug!(peer = %self.peer, "handshake timed out");
                    return Step::Exit;
                }
            }
        }
        if self.heartbeat > 0 {
            let interval = Duration::from_secs(u64::from(self.heartbeat));
            if now.duration_since(self.last_heartbeat_sent) >= interval / 2 {
                self.last_heartbeat_sent = now;
                self.ctx
                    .outbox
                    .push(|out| out.extend_from_slice(&HEARTBEAT_FRAME));
            }
            let written = self.ctx.outbox.bytes_written();
            if written != self.seen_written {
                self.seen_written = written;
                if self.output_paused {
                    // The client is taking its backlog: alive, though its heartbeats wait
                    // unread behind the pause.
                    self.last_read = now;
                }
            }
            if !self.blocked && !self.paced && now.duration_since(self.last_read) > interval * 2 {
                tracing::info!(peer = %self.peer, "missed heartbeats from client, closing");
                return Step::Exit;
            }
        }
        Step::Continue
    }

    fn send(&self, channel: u16, method: AMQPClass) {
        self.ctx.send(channel, &method);
    }

    /// Sends `connection.close` and waits for close-ok (ignoring everything else).
    fn close_connection(&mut self, error: AmqpError) {
        tracing::debug!(peer = %self.peer, "closing connection: {error}");
        self.cleanup_channels();
        let (class_id, method_id) = error.class_method;
        self.send(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: error.code.code(),
                reply_text: error.reply_text().as_str().into(),
                class_id,
                method_id,
            })),
        );
        self.phase = Phase::Closing(Instant::now() + CLOSE_TIMEOUT);
    }

    fn cleanup_channels(&mut self) {
        for (_, mut channel) in self.channels.drain() {
            channel.close(&self.ctx);
        }
    }

    fn cleanup(&mut self) {
        self.cleanup_channels();
        let exclusive = std::mem::take(&mut self.ctx.exclusive_queues);
        if let Some(vhost) = &self.ctx.vhost {
            for queue in exclusive {
                vhost.delete_queue_now(&queue);
            }
        }
    }

    fn handle_frame(&mut self, frame: Frame) -> Step {
        match self.phase {
            Phase::Closing(_) => {
                if let Frame::Method { channel: 0, method } = &frame {
                    match method.ids() {
                        (10, 51) => return Step::Exit,
                        (10, 50) => {
                            self.send(
                                0,
                                AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                                    connection::CloseOk {},
                                )),
                            );
                            return Step::Exit;
                        }
                        _ => {}
                    }
                }
                Step::Continue
            }
            Phase::Running => match self.running_frame(frame) {
                Ok(step) => step,
                Err(e) => {
                    self.close_connection(e);
                    Step::Continue
                }
            },
            _ => match self.handshake_frame(frame) {
                Ok(()) => Step::Continue,
                Err(e) => {
                    tracing::info!(peer = %self.peer, "handshake failed: {e}");
                    match self.delayed_refusal.take() {
                        Some((delay, _)) => self.delayed_refusal = Some((delay, e)),
                        None => self.close_connection(e),
                    }
                    Step::Exit
                }
            },
        }
    }

    fn handshake_frame(&mut self, frame: Frame) -> Result<(), AmqpError> {
        let method = match (self.phase, frame) {
            (Phase::ProtocolHeader, Frame::ProtocolHeader) => {
                self.send(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::Start(start(
                        self.external_usable(),
                    ))),
                );
                self.phase = Phase::StartOk;
                return Ok(());
            }
            (_, Frame::Heartbeat) => return Ok(()),
            (_, Frame::Method { channel: 0, method }) => method,
            _ => {
                return Err(replies::unexpected_frame(
                    "unexpected frame during the connection handshake",
                ));
            }
        };
        let decoded = method.decode().map_err(|e| {
            let (c, m) = e.class_method();
            AmqpError::new(e.reply_code(), e.to_string()).during(c, m)
        })?;
        use connection::AMQPMethod as M;
        match (self.phase, decoded) {
            (Phase::StartOk, AMQPClass::Connection(M::StartOk(s))) => {
                self.read_capabilities(&s.client_properties);
                let user = self
                    .authenticate(s.mechanism.as_str(), s.response.as_bytes())
                    .map_err(|e| e.during(10, 11))?;
                self.registered.entry().update(|h| {
                    h.user = user.name.clone();
                    h.mechanism = s.mechanism.to_string();
                    h.client_properties = s.client_properties.clone();
                });
                self.user = Some(user);
                self.send(
                    0,
                    AMQPClass::Connection(M::Tune(connection::Tune {
                        channel_max: self.config.channel_max,
                        frame_max: self.config.frame_max,
                        heartbeat: self.config.heartbeat,
                    })),
                );
                self.phase = Phase::TuneOk;
            }
            (Phase::TuneOk, AMQPClass::Connection(M::TuneOk(t))) => {
                let server_max = self.config.frame_max;
                if t.frame_max == 0 || t.frame_max > server_max {
                    return Err(replies::tune_refused(format!(
                        "frame_max={} > {server_max} max size",
                        t.frame_max
                    ))
                    .during(10, 31));
                }
                if t.frame_max < MIN_FRAME_MAX {
                    return Err(replies::tune_refused(format!(
                        "frame_max={} < {MIN_FRAME_MAX} min size",
                        t.frame_max
                    ))
                    .during(10, 31));
                }
                if t.channel_max == 0 || t.channel_max > self.config.channel_max {
                    return Err(replies::tune_refused(format!(
                        "channel_max={} > {} max channels",
                        t.channel_max, self.config.channel_max
                    ))
                    .during(10, 31));
                }
                self.codec.set_frame_max(t.frame_max);
                self.ctx.frame_max = t.frame_max;
                self.channel_max = t.channel_max;
                self.heartbeat = t.heartbeat;
                self.registered.entry().update(|h| {
                    h.channel_max = t.channel_max;
                    h.frame_max = t.frame_max;
                    h.heartbeat = t.heartbeat;
                });
                self.phase = Phase::Open;
            }
            (Phase::Open, AMQPClass::Connection(M::Open(o))) => {
                let name = o.virtual_host.as_str();
                let vhost = self
                    .ctx
                    .broker
                    .vhost(name)
                    .ok_or_else(|| replies::no_vhost(name).during(10, 40))?;
                let user = self
                    .user
                    .as_ref()
                    .map(|u| u.name.as_str())
                    .unwrap_or_default();
                let grants = Grants::new(self.ctx.broker.auth(), name, user);
                if !grants.has_access() {
                    tracing::warn!(
                        peer = %self.peer,
                        "login refused: user '{user}' has no permissions in vhost '{name}'"
                    );
                    return Err(replies::vhost_access_refused(name, user).during(10, 40));
                }
                let limits = self.ctx.broker.limits();
                let connections = self.ctx.broker.connections();
                if let Err(limit) = connections.admit(self.ctx.id, name, user, &limits) {
                    tracing::warn!(
                        peer = %self.peer,
                        "connection to vhost '{name}' refused for user '{user}': {limit:?} \
                         connection limit reached"
                    );
                    let refusal = match limit {
                        ConnectionLimit::Node(n) => replies::node_connection_limit(name, user, n),
                        ConnectionLimit::Vhost(n) => replies::vhost_connection_limit(name, user, n),
                        ConnectionLimit::User(n) => replies::user_connection_limit(user, n),
                    };
                    return Err(refusal.during(10, 40));
                }
                self.ctx.grants = Some(grants);
                self.ctx.vhost = Some(vhost);
                self.send(0, AMQPClass::Connection(M::OpenOk(connection::OpenOk {})));
                self.phase = Phase::Running;
            }
            (_, AMQPClass::Connection(M::Close(_))) => {
                self.send(0, AMQPClass::Connection(M::CloseOk(connection::CloseOk {})));
                return Err(AmqpError::new(ReplyCode::ReplySuccess, "closed by client"));
            }
            _ => {
                return Err(replies::unexpected_method(
                    "method during the connection handshake",
                ));
            }
        }
        Ok(())
    }

    fn read_capabilities(&mut self, client_properties: &FieldTable) {
        if let Some(AMQPValue::FieldTable(caps)) = client_properties.inner().get("capabilities") {
            let has = |name: &str| matches!(caps.inner().get(name), Some(AMQPValue::Boolean(true)));
            self.ctx.cancel_notify = has("consumer_cancel_notify");
            self.blocked_notify = has("connection.blocked");
        }
    }

    /// Whether the socket must not be read because an alarm is raised and this connection
    /// publishes (RabbitMQ blocks a connection once it publishes during an alarm). Tells
    /// the client once, if it can hear it.
    fn blocked_by(&mut self, raised: Raised) -> bool {
        let block = raised.any() && self.ctx.published && self.phase == Phase::Running;
        if block && !self.told_blocked && self.blocked_notify {
            self.told_blocked = true;
            let reason = raised.reason();
            self.send(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Blocked(connection::Blocked {
                    reason: reason.into(),
                })),
            );
        }
        if !raised.any() && self.told_blocked {
            self.told_blocked = false;
            self.send(
                0,
                AMQPClass::Connection(connection::AMQPMethod::Unblocked(connection::Unblocked {})),
            );
        }
        block
    }

    /// Whether EXTERNAL can log in: a TLS client presented a verified certificate with a CN.
    fn external_usable(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.common_name.is_some())
    }

    /// Checks the client's credentials; the user they log in. Why a login failed goes to
    /// the log, the client only hears RabbitMQ's 403 text (or 502 for a malformed
    /// response). A failure from an address that failed often recently is answered late
    /// (see [`crate::auth::throttle`]).
    fn authenticate(&mut self, mechanism: &str, response: &[u8]) -> Result<Arc<User>, AmqpError> {
        if mechanism == "EXTERNAL" {
            return crate::tls::peer::login_external(
                &self.ctx.broker,
                self.tls.as_ref(),
                self.peer,
            );
        }
        let credentials = match mechanism {
            "PLAIN" => plain_credentials(response).ok_or_else(replies::malformed_plain),
            "AMQPLAIN" => amqplain_credentials(response).ok_or_else(replies::malformed_amqplain),
            other => return Err(replies::unknown_mechanism(other)),
        };
        let refused = |why: String| {
            tracing::warn!(peer = %self.peer, mechanism, "login refused: {why}");
        };
        let result = match credentials {
            Err(malformed) => {
                refused(format!("malformed {mechanism} response"));
                Err(malformed)
            }
            Ok((user, pass)) => match std::str::from_utf8(&user) {
                Err(_) => {
                    refused("the user name is not UTF-8".to_owned());
                    Err(replies::login_refused(mechanism))
                }
                Ok(user) => self
                    .ctx
                    .broker
                    .auth()
                    .login(user, &pass, self.peer.ip())
                    .map_err(|why| {
                        refused(why.to_string());
                        replies::login_refused(mechanism)
                    }),
            },
        };
        if result.is_err() {
            let delay = self.ctx.broker.auth().throttle().failed(self.peer.ip());
            if !delay.is_zero() {
                tracing::warn!(
                    peer = %self.peer,
                    delay_ms = delay.as_millis() as u64,
                    "repeated failed logins from this address: answering late"
                );
                self.delayed_refusal = Some((delay, replies::login_refused(mechanism)));
            }
        }
        result
    }

    fn running_frame(&mut self, frame: Frame) -> Result<Step, AmqpError> {
        match frame {
            Frame::Heartbeat => Ok(Step::Continue),
            Frame::ProtocolHeader => Err(replies::unexpected_frame("unexpected protocol header")),
            Frame::Method { channel: 0, method } => self.connection_method(&method),
            Frame::Method { channel, method } => {
                self.channel_method(channel, &method)?;
                Ok(Step::Continue)
            }
            Frame::Header { channel, header } => {
                let ctx = &mut self.ctx;
                let ch = open_channel(&mut self.channels, channel)?;
                if let Some(ch) = ch {
                    let result = ch.handle_header(ctx, header);
                    self.channel_result(channel, result.map(|()| Outcome::Continue))?;
                }
                Ok(Step::Continue)
            }
            Frame::Body { channel, payload } => {
                let ctx = &mut self.ctx;
                let ch = open_channel(&mut self.channels, channel)?;
                if let Some(ch) = ch {
                    let result = ch.handle_body(ctx, payload);
                    self.channel_result(channel, result.map(|()| Outcome::Continue))?;
                }
                Ok(Step::Continue)
            }
        }
    }

    fn connection_method(&mut self, method: &RawMethod) -> Result<Step, AmqpError> {
        use connection::AMQPMethod as M;
        let decoded = method.decode().map_err(|e| {
            let (c, m) = e.class_method();
            AmqpError::new(e.reply_code(), e.to_string()).during(c, m)
        })?;
        match decoded {
            AMQPClass::Connection(M::Close(_)) => {
                self.cleanup_channels();
                self.send(0, AMQPClass::Connection(M::CloseOk(connection::CloseOk {})));
                Ok(Step::Exit)
            }
            AMQPClass::Connection(M::CloseOk(_)) => Ok(Step::Exit),
            AMQPClass::Connection(M::Blocked(_) | M::Unblocked(_)) => Ok(Step::Continue),
            AMQPClass::Connection(M::UpdateSecret(_)) => {
                self.send(
                    0,
                    AMQPClass::Connection(M::UpdateSecretOk(connection::UpdateSecretOk {})),
                );
                Ok(Step::Continue)
            }
            other => Err(replies::unexpected_in_running()
                .during(other.get_amqp_class_id(), other.get_amqp_method_id())),
        }
    }

    /// A method on channel `number`. On a channel that does not exist only `channel.open`
    /// is valid (anything else is 504), except the one close-ok a client owes after its
    /// `channel.close` crossed the server's: that is dropped, as RabbitMQ does, until it
    /// arrives or the client opens the number again.
    fn channel_method(&mut self, number: u16, method: &RawMethod) -> Result<(), AmqpError> {
        let Some(ch) = self.channels.get_mut(&number) else {
            let late_close_ok = self.awaiting_close_ok.remove(&number);
            if late_close_ok && method.ids() == (20, 41) {
                return Ok(());
            }
            if method.ids() == (20, 10) {
                // RabbitMQ counts open channels against channel_max, whatever their numbers.
                if self.channels.len() >= usize::from(self.channel_max) {
                    return Err(replies::channel_limit(
                        self.channels.len(),
                        self.channel_max,
                    ));
                }
                self.channels
                    .insert(number, Channel::new(number, &self.ctx));
                self.send(
                    number,
                    AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
                );
                return Ok(());
            }
            return Err(replies::channel_not_open().during(method.class_id(), method.method_id()));
        };
        if ch.phase == ChannelPhase::Closing {
            match method.ids() {
                (20, 41) => {
                    self.channels.remove(&number);
                }
                (20, 40) => {
                    // The client's close crossed ours: it has sent close, so it will still
                    // answer ours with a close-ok, which arrives after the channel is gone
                    // and must be dropped, not taken for a frame on an unopened channel.
                    self.send(
                        number,
                        AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    );
                    self.channels.remove(&number);
                    self.awaiting_close_ok.insert(number);
                }
                _ => {}
            }
            return Ok(());
        }
        if let Some(text) = ch.content_expected() {
            return Err(AmqpError::new(ReplyCode::UnexpectedFrame, text)
                .during(method.class_id(), method.method_id()));
        }
        let result = ch.handle_method(&mut self.ctx, method);
        self.channel_result(number, result)
    }

    /// Applies a channel handler's result: channel errors close the channel, connection
    /// errors are passed up.
    fn channel_result(
        &mut self,
        number: u16,
        result: Result<Outcome, AmqpError>,
    ) -> Result<(), AmqpError> {
        match result {
            Ok(Outcome::Continue) => Ok(()),
            Ok(Outcome::Remove) => {
                self.channels.remove(&number);
                Ok(())
            }
            Err(e) if e.closes_connection() => Err(e),
            Err(e) => {
                tracing::debug!(peer = %self.peer, channel = number, "channel error: {e}");
                if let Some(ch) = self.channels.get_mut(&number) {
                    // Publishes completed before the error are confirmed before the close.
                    ch.flush_confirms(&self.ctx.outbox, self.ctx.broker.stores());
                    ch.close(&self.ctx);
                    ch.phase = ChannelPhase::Closing;
                }
                let (class_id, method_id) = e.class_method;
                self.send(
                    number,
                    AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
                        reply_code: e.code.code(),
                        reply_text: e.reply_text().as_str().into(),
                        class_id,
                        method_id,
                    })),
                );
                Ok(())
            }
        }
    }
}

/// Whether the next read lingers, and the socket state lingering changes.
///
/// A client that awaits each publish (lapin's `basic_publish(..).await` without confirms
/// resolves once its I/O thread's `send` returns) sends one publish at a time, tens of
/// microseconds apart, and nothing comes back. If the worker thread sleeps between them,
/// every publish has to wake it from the client's `send`: the kernel delivers the segment
/// in the sender's context and wakes the sleeper there, and waking an idle core costs an
/// inter-processor interrupt (on a virtual machine, an exit to the hypervisor). That wake-up
/// sits on the client's critical path; see docs/BENCHMARKS.md for the measurements.
///
/// So a connection whose small reads come close together and whose frames produce no output
/// (nothing for a consumer to receive, no confirm or reply: nobody else is waiting on this
/// work) keeps polling for the next read for up to [`LINGER`] before it parks. Meanwhile the
/// socket's receive low-water mark is raised so that an arriving publish wakes nobody, and
/// every poll yields to the worker's other tasks and to other threads on the core. Nothing is
/// delayed: each poll takes whatever has arrived.
#[derive(Debug, Default)]
struct Linger {
    last_read: Option<std::time::Instant>,
    wanted: bool,
    low_water_raised: bool,
}

impl Linger {
    fn after_read(&mut self, read: usize, silent: bool) {
        let now = std::time::Instant::now();
        let close = self.last_read.is_some_and(|at| now - at < LINGER);
        self.last_read = Some(now);
        self.wanted = close && silent && read < SMALL_READ;
    }
}

/// Reads into `buf`, lingering first if `linger` says so.
async fn read_soon(
    reader: &mut ReadSide,
    buf: &mut BytesMut,
    linger: &mut Linger,
) -> std::io::Result<usize> {
    // Only plain TCP lingers: a TLS socket's bytes must go through the TLS reader.
    if let Some(socket) = reader.tcp().filter(|_| linger.wanted) {
        if !linger.low_water_raised {
            // Below this much queued data the kernel wakes no reader (tcp_data_ready); it
            // stays under the receive buffer, so the window is not clamped.
            linger.low_water_raised = set_receive_low_water(socket, SMALL_READ).is_ok();
        }
        // std's clock, not tokio's: real microseconds, even under a paused tokio clock.
        let since = std::time::Instant::now();
        loop {
            match receive_now(socket, buf, READ_MAX) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                read => return read,
            }
            if since.elapsed() >= LINGER {
                break;
            }
            std::thread::yield_now();
            YieldNow(false).await;
        }
        linger.wanted = false;
    }
    if let Some(socket) = reader.tcp().filter(|_| linger.low_water_raised) {
        // Lowering it wakes the driver at once if data is already queued (tcp_set_rcvlowat).
        let _ = set_receive_low_water(socket, 1);
        linger.low_water_raised = false;
    }
    reader.read_buf(&mut (&mut *buf).limit(READ_MAX)).await
}

/// A non-blocking `recv` into `buf`'s spare capacity, bypassing tokio's readiness (which only
/// the I/O driver sets, and the driver is not polled while lingering).
fn receive_now(
    socket: &tokio::net::TcpStream,
    buf: &mut BytesMut,
    max: usize,
) -> std::io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let take = spare.len().min(max);
    let read = socket2::SockRef::from(socket).recv(&mut spare[..take])?;
    // SAFETY: `recv` initialised the first `read` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + read) };
    Ok(read)
}

#[cfg(target_os = "linux")]
fn set_receive_low_water(socket: &tokio::net::TcpStream, bytes: usize) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    // SAFETY: the descriptor is borrowed from a live socket for the call, and the option value
    // points at a c_int on the stack whose size is passed with it.
    let status = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&raw const value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere the low-water mark does not gate wake-ups the same way; lingering then only polls.
#[cfg(not(target_os = "linux"))]
fn set_receive_low_water(_: &tokio::net::TcpStream, _: usize) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Gives the worker's other tasks a turn: wakes itself and returns `Pending` once.
///
/// Not `tokio::task::yield_now`: that one defers the wake-up until the worker has run out of
/// work and gone searching for more, and a searching worker that finds work wakes another
/// worker to keep searching, so every poll would wake the runtime's other thread. Waking
/// itself puts the task back in the worker's LIFO slot; tokio moves it behind the other
/// queued tasks after a few polls in a row, so they still get their turn.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

async fn wait_for_space(queue: Option<&Queue>) {
    match queue {
        Some(queue) => queue.wait_for_space().await,
        None => std::future::pending().await,
    }
}

/// The open channel `number`: `None` if it is closing (the frame is ignored), 504 if it was
/// never opened.
fn open_channel(
    channels: &mut FxHashMap<u16, Channel>,
    number: u16,
) -> Result<Option<&mut Channel>, AmqpError> {
    match channels.get_mut(&number) {
        None => Err(replies::channel_not_open()),
        Some(ch) if ch.phase == ChannelPhase::Closing => Ok(None),
        Some(ch) => Ok(Some(ch)),
    }
}

/// `connection.start`; EXTERNAL is offered only when it can succeed (`external`).
fn start(external: bool) -> connection::Start {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    props.insert("product".into(), text("Warren"));
    props.insert("version".into(), text(env!("CARGO_PKG_VERSION")));
    props.insert("platform".into(), text("Rust"));
    props.insert("cluster_name".into(), text("warren"));
    props.insert(
        "information".into(),
        text("An AMQP 0-9-1 broker; see https://www.rabbitmq.com/amqp-0-9-1-reference"),
    );
    connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: props,
        mechanisms: if external {
            "PLAIN AMQPLAIN EXTERNAL".into()
        } else {
            "PLAIN AMQPLAIN".into()
        },
        locales: "en_US".into(),
    }
}

/// The user and password of a SASL PLAIN response, parsed as RabbitMQ does: exactly
/// `NUL user NUL password`. An authorisation identity before the first NUL, a missing NUL
/// or a further one (`admin\0guest\0guest`, `guest\0guest`, `\0guest\0guest\0`) is
/// malformed.
fn plain_credentials(response: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let rest = response.strip_prefix(&[0])?;
    let nul = rest.iter().position(|b| *b == 0)?;
    let (user, pass) = (&rest[..nul], &rest[nul + 1..]);
    if pass.contains(&0) {
        return None;
    }
    Some((user.to_vec(), pass.to_vec()))
}

/// The `LOGIN` and `PASSWORD` of an AMQPLAIN response (a field table without its length), as
/// RabbitMQ takes them: both present as long strings, other fields ignored. A table that
/// does not parse, or either field missing or of another type, is malformed.
fn amqplain_credentials(response: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let length = u32::try_from(response.len()).ok()?;
    let mut framed = Vec::with_capacity(response.len() + 4);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(response);
    let (rest, table) = amq_protocol::types::parsing::parse_field_table(&framed[..]).ok()?;
    if !rest.is_empty() {
        return None;
    }
    let field = |key: &str| match table.inner().get(key) {
        Some(AMQPValue::LongString(s)) => Some(s.as_bytes().to_vec()),
        _ => None,
    };
    Some((field("LOGIN")?, field("PASSWORD")?))
}

#[cfg(test)]
mod credential_tests {
    use super::*;

    #[test]
    fn plain_takes_exactly_nul_user_nul_password() {
        let ok = |user: &[u8], pass: &[u8]| Some((user.to_vec(), pass.to_vec()));
        assert_eq!(plain_credentials(b"\0guest\0guest"), ok(b"guest", b"guest"));
        assert_eq!(plain_credentials(b"\0guest\0"), ok(b"guest", b""));
        assert_eq!(plain_credentials(b"\0\0"), ok(b"", b""));
        for malformed in [
            &b"admin\0guest\0guest"[..],
            b"guest\0guest",
            b"\0guest\0guest\0",
            b"\0guest\0guest\0x",
            b"\0guest",
            b"guest",
            b"",
        ] {
            assert_eq!(plain_credentials(malformed), None, "{malformed:?}");
        }
    }

    #[test]
    fn amqplain_takes_long_string_login_and_password_only() {
        // Table entries as the wire has them: short-string key, type tag, value.
        let entry = |key: &str, tag: u8, value: &[u8]| {
            let mut out = vec![key.len() as u8];
            out.extend_from_slice(key.as_bytes());
            out.push(tag);
            if tag == b'S' {
                out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            } else {
                out.push(value.len() as u8);
            }
            out.extend_from_slice(value);
            out
        };
        let login = entry("LOGIN", b'S', b"guest");
        let good = [login.clone(), entry("PASSWORD", b'S', b"pw")].concat();
        assert_eq!(
            amqplain_credentials(&good),
            Some((b"guest".to_vec(), b"pw".to_vec()))
        );
        let short = [login.clone(), entry("PASSWORD", b's', b"pw")].concat();
        assert_eq!(amqplain_credentials(&short), None, "a short string");
        assert_eq!(amqplain_credentials(&login), None, "no password");
        assert_eq!(amqplain_credentials(&[0xff, 1, 2]), None, "not a table");
    }
}
