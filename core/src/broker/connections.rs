//! Every open AMQP connection as the node sees it: enough to list it (the management API's
//! `/api/connections`) and to close it from outside (an operator's DELETE, a deleted vhost,
//! a deleted user).
//!
//! The connection task owns its state; what lives here is a copy of what does not change
//! after the handshake (peer, user, vhost, client properties, tuned limits) plus a request
//! to close, which the task watches (`ConnectionEntry::close_requested`). A registration is
//! removed when its [`Registered`] guard drops, so a task that ends however it ends leaves
//! nothing behind.
//!
//! Each connection also lists its open channels ([`ChannelEntry`], for `/api/channels` and
//! `/api/consumers`). A channel registers on `channel.open` and its [`ChannelRegistered`]
//! guard unregisters it. What the channel changes rarely (its prefetch, confirm or tx mode)
//! is copied into atomics where the channel already changes it; what changes per message
//! (unacked deliveries, consumers) is read from the channel's delivery state when asked, so
//! the delivery path does no extra work for the API. The per-connection channel map is
//! locked on channel open and close and by the API, never per message.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};

use amq_protocol::types::FieldTable;
use parking_lot::{Mutex, RwLock};
use rustc_hash::FxHashMap;
use tokio::sync::Notify;

use super::limits::{ConnectionLimit, Limits, reached};
use super::queue::{Consumer, DeliveryChannel};
use crate::stats::{Churn, Counters, Io, NodeStats, Snapshot, Stats};

/// What the handshake settled (filled in as it goes).
#[derive(Clone, Debug, Default)]
pub struct Handshake {
    /// The user who logged in (empty before `start-ok`).
    pub user: String,
    /// The vhost opened (empty before `connection.open`).
    pub vhost: String,
    /// The mechanism used (`PLAIN`, `AMQPLAIN`).
    pub mechanism: String,
    /// What the client said about itself.
    pub client_properties: FieldTable,
    /// Negotiated channel_max.
    pub channel_max: u16,
    /// Negotiated frame_max.
    pub frame_max: u32,
    /// Negotiated heartbeat (seconds).
    pub heartbeat: u16,
    /// Whether `connection.open` succeeded.
    pub open: bool,
}

/// A TLS connection's protocol and cipher, as `/api/connections` reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Encryption {
    /// The protocol version, e.g. `tlsv1.3`.
    pub protocol: Option<String>,
    /// The cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: Option<String>,
}

/// One connection.
#[derive(Debug)]
pub struct ConnectionEntry {
    /// The node's number for it.
    pub id: u64,
    /// RabbitMQ's name for it: `peer -> local`, e.g. `127.0.0.1:50012 -> 127.0.0.1:5672`.
    pub name: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The listener's address it came in on.
    pub local: SocketAddr,
    /// When it was accepted, in ms since the Unix epoch.
    pub connected_at: u64,
    /// On an AMQPS connection, what its TLS handshake settled.
    pub tls: Option<Encryption>,
    handshake: Mutex<Handshake>,
    /// Why it must close, once asked.
    close: Mutex<Option<String>>,
    closing: Notify,
    channels: Mutex<BTreeMap<u16, Arc<ChannelEntry>>>,
    /// What its closed channels counted (its `message_stats` is these plus its open ones').
    closed_channels: Counters,
    /// Bytes and socket operations (the writer counts into it too).
    pub io: Arc<Io>,
    /// The node's statistics, for churn.
    node: Arc<NodeStats>,
    /// Samples of [`ConnectionEntry::message_stats`], for its rates.
    pub sampled: Stats,
}

/// One open channel of a connection, as the management API shows it.
#[derive(Debug)]
pub struct ChannelEntry {
    /// The channel number.
    pub number: u16,
    /// `basic.qos(global=false)`: the prefetch new consumers get (RabbitMQ's
    /// `prefetch_count` of a channel).
    prefetch_count: AtomicU16,
    confirm: AtomicBool,
    transactional: AtomicBool,
    /// The delivery half, read for unacked counts, consumers and the global prefetch.
    delivery: Arc<DeliveryChannel>,
}

impl ChannelEntry {
    /// The per-consumer prefetch that new consumers get.
    pub fn prefetch_count(&self) -> u16 {
        self.prefetch_count.load(Ordering::Relaxed)
    }

    /// Records a `basic.qos(global=false)`.
    pub fn set_prefetch_count(&self, count: u16) {
        self.prefetch_count.store(count, Ordering::Relaxed);
    }

    /// Whether the channel is in confirm mode.
    pub fn confirm(&self) -> bool {
        self.confirm.load(Ordering::Relaxed)
    }

    /// Records `confirm.select`.
    pub fn set_confirm(&self) {
        self.confirm.store(true, Ordering::Relaxed);
    }

    /// Whether the channel is transactional.
    pub fn transactional(&self) -> bool {
        self.transactional.load(Ordering::Relaxed)
    }

    /// Records `tx.select`.
    pub fn set_transactional(&self) {
        self.transactional.store(true, Ordering::Relaxed);
    }

    /// The `basic.qos(global=true)` limit of the channel (0: none).
    pub fn global_prefetch_count(&self) -> u16 {
        self.delivery.state.lock().global_prefetch
    }

    /// Deliveries not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.delivery.state.lock().unacked.len()
    }

    /// The channel's consumers, by tag.
    pub fn consumers(&self) -> Vec<Arc<Consumer>> {
        let mut all: Vec<_> = self
            .delivery
            .state
            .lock()
            .consumers
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.tag.as_str().cmp(b.tag.as_str()));
        all
    }

    /// What the channel counted (kept on its delivery half, where deliveries are recorded).
    pub fn stats(&self) -> &crate::stats::Stats {
        &self.delivery.stats
    }

    /// How many consumers the channel has.
    pub fn consumer_count(&self) -> usize {
        self.delivery.state.lock().consumers.len()
    }
}

/// Keeps a channel listed on its connection; dropping it unlists.
#[derive(Debug)]
pub struct ChannelRegistered {
    entry: Arc<ChannelEntry>,
    connection: Arc<ConnectionEntry>,
}

impl ChannelRegistered {
    /// The listed entry.
    pub fn entry(&self) -> &Arc<ChannelEntry> {
        &self.entry
    }
}

impl Drop for ChannelRegistered {
    fn drop(&mut self) {
        let mut channels = self.connection.channels.lock();
        // A channel number reused after a close registers anew; only remove our own.
        if channels
            .get(&self.entry.number)
            .is_some_and(|c| Arc::ptr_eq(c, &self.entry))
        {
            channels.remove(&self.entry.number);
        }
        // Folded under the same lock the totals are read under: no reader sees the channel
        // both gone and not yet folded, or both.
        self.connection
            .closed_channels
            .absorb(&self.entry.stats().counters.snapshot());
        Churn::incr(&self.connection.node.churn.channels_closed);
    }
}

impl ConnectionEntry {
    /// What the handshake has settled so far.
    pub fn handshake(&self) -> Handshake {
        self.handshake.lock().clone()
    }

    /// Changes what the handshake settled.
    pub fn update(&self, change: impl FnOnce(&mut Handshake)) {
        change(&mut self.handshake.lock());
    }

    /// Asks the connection to close with 320 CONNECTION_FORCED and `reason`.
    pub fn close(&self, reason: impl Into<String>) {
        let mut close = self.close.lock();
        if close.is_none() {
            *close = Some(reason.into());
        }
        drop(close);
        self.closing.notify_one();
    }

    /// Lists channel `delivery.number` (just opened) until the guard drops.
    pub fn open_channel(self: &Arc<Self>, delivery: Arc<DeliveryChannel>) -> ChannelRegistered {
        let entry = Arc::new(ChannelEntry {
            number: delivery.number,
            prefetch_count: AtomicU16::new(0),
            confirm: AtomicBool::new(false),
            transactional: AtomicBool::new(false),
            delivery,
        });
        self.channels.lock().insert(entry.number, entry.clone());
        Churn::incr(&self.node.churn.channels_opened);
        ChannelRegistered {
            entry,
            connection: self.clone(),
        }
    }

    /// The sum of what its channels counted, closed ones included (the connection's
    /// `message_stats`).
    pub fn message_stats(&self) -> Snapshot {
        let channels = self.channels.lock();
        let mut sum = self.closed_channels.snapshot();
        for channel in channels.values() {
            sum.add(&channel.stats().counters.snapshot());
        }
        sum
    }

    /// The open channels, by number.
    pub fn channels(&self) -> Vec<Arc<ChannelEntry>> {
        self.channels.lock().values().cloned().collect()
    }

    /// Completes with the reason once [`close`](Self::close) was called.
    pub async fn close_requested(&self) -> String {
        loop {
            let notified = self.closing.notified();
            if let Some(reason) = self.close.lock().clone() {
                return reason;
            }
            notified.await;
        }
    }
}

/// The node's connections.
#[derive(Debug)]
pub struct Connections {
    all: RwLock<FxHashMap<u64, Arc<ConnectionEntry>>>,
    /// The node's statistics: closed connections' channel totals are folded into its
    /// `closed_channels`.
    stats: Arc<NodeStats>,
    /// The same per vhost, for the vhosts' own totals (dropped with the vhost).
    closed_by_vhost: Mutex<FxHashMap<String, Snapshot>>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections::with_stats(Arc::default())
    }
}

/// Keeps a connection registered; dropping it unregisters.
#[derive(Debug)]
pub struct Registered {
    entry: Arc<ConnectionEntry>,
    connections: Arc<Connections>,
}

impl Registered {
    /// The registered entry.
    pub fn entry(&self) -> &Arc<ConnectionEntry> {
        &self.entry
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let connections = &self.connections;
        let mut all = connections.all.write();
        all.remove(&self.entry.id);
        // Under the list's lock, as the totals are read: the node's and the vhost's totals
        // of channel events never go down when a connection leaves.
        let counted = self.entry.message_stats();
        connections.stats.closed_channels.absorb(&counted);
        let vhost = self.entry.handshake.lock().vhost.clone();
        if !vhost.is_empty() {
            connections
                .closed_by_vhost
                .lock()
                .entry(vhost)
                .or_default()
                .add(&counted);
        }
        drop(all);
        Churn::incr(&connections.stats.churn.connections_closed);
    }
}

impl Connections {
    /// An empty list that folds what closed connections counted into `stats`.
    pub fn with_stats(stats: Arc<NodeStats>) -> Connections {
        Connections {
            all: RwLock::default(),
            stats,
            closed_by_vhost: Mutex::default(),
        }
    }

    /// What channels counted, open and closed: on the whole node (`None`), or on the
    /// connections to one vhost.
    pub fn channel_totals(&self, vhost: Option<&str>) -> Snapshot {
        let all = self.all.read();
        let mut sum = match vhost {
            None => self.stats.closed_channels.snapshot(),
            Some(v) => self
                .closed_by_vhost
                .lock()
                .get(v)
                .copied()
                .unwrap_or_default(),
        };
        for c in all.values() {
            if vhost.is_none_or(|v| c.handshake.lock().vhost == v) {
                sum.add(&c.message_stats());
            }
        }
        sum
    }

    /// Forgets the closed connections' totals of a deleted vhost (the node keeps its own).
    pub fn forget_vhost(&self, vhost: &str) {
        self.closed_by_vhost.lock().remove(vhost);
    }

    /// Registers a connection just accepted.
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        peer: SocketAddr,
        local: SocketAddr,
        tls: Option<Encryption>,
    ) -> Registered {
        let connected_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let entry = Arc::new(ConnectionEntry {
            id,
            name: format!("{peer} -> {local}"),
            peer,
            local,
            connected_at,
            tls,
            handshake: Mutex::default(),
            close: Mutex::new(None),
            closing: Notify::new(),
            channels: Mutex::default(),
            closed_channels: Counters::default(),
            io: Arc::default(),
            node: self.stats.clone(),
            sampled: Stats::default(),
        });
        self.all.write().insert(id, entry.clone());
        Churn::incr(&self.stats.churn.connections_opened);
        Registered {
            entry,
            connections: self.clone(),
        }
    }

    /// Every connection, oldest first.
    pub fn list(&self) -> Vec<Arc<ConnectionEntry>> {
        let mut all: Vec<_> = self.all.read().values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// The connection numbered `id`.
    pub fn by_id(&self, id: u64) -> Option<Arc<ConnectionEntry>> {
        self.all.read().get(&id).cloned()
    }

    /// The connection named `name`.
    pub fn by_name(&self, name: &str) -> Option<Arc<ConnectionEntry>> {
        self.all.read().values().find(|c| c.name == name).cloned()
    }

    /// Opens connection `id` on `vhost` for `user` (recorded in its handshake) unless that
    /// would exceed one of `limits`' connection limits: the node's, then the vhost's, then
    /// the user's (RabbitMQ checks the vhost's before the user's). Only open connections
    /// count, and admissions are serialised under the registry's write lock, so two
    /// connections racing for the last slot cannot both get it.
    pub fn admit(
        &self,
        id: u64,
        vhost: &str,
        user: &str,
        limits: &Limits,
    ) -> Result<(), ConnectionLimit> {
        let all = self.all.write();
        let limited = limits.max_connections != 0
            || limits.max_connections_per_vhost != 0
            || limits.max_connections_per_user != 0;
        if limited {
            let (mut node, mut in_vhost, mut of_user) = (0, 0, 0);
            for c in all.values().filter(|c| c.id != id) {
                let h = c.handshake.lock();
                if h.open {
                    node += 1;
                    in_vhost += usize::from(h.vhost == vhost);
                    of_user += usize::from(h.user == user);
                }
            }
            if reached(node, limits.max_connections) {
                return Err(ConnectionLimit::Node(limits.max_connections));
            }
            if reached(in_vhost, limits.max_connections_per_vhost) {
                return Err(ConnectionLimit::Vhost(limits.max_connections_per_vhost));
            }
            if reached(of_user, limits.max_connections_per_user) {
                return Err(ConnectionLimit::User(limits.max_connections_per_user));
            }
        }
        if let Some(entry) = all.get(&id) {
            let mut h = entry.handshake.lock();
            h.vhost = vhost.to_owned();
            h.open = true;
        }
        Ok(())
    }

    /// Asks every connection for which `which` holds to close with `reason`; how many.
    pub fn close_where(&self, which: impl Fn(&Handshake) -> bool, reason: &str) -> usize {
        let chosen: Vec<_> = self
            .all
            .read()
            .values()
            .filter(|c| which(&c.handshake.lock()))
            .cloned()
            .collect();
        for c in &chosen {
            c.close(reason);
        }
        chosen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_close_request_is_seen_and_a_dropped_guard_unregisters() {
        let connections = Arc::new(Connections::default());
        let a = connections.register(
            1,
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:5672".parse().unwrap(),
            None,
        );
        let b = connections.register(
            2,
            "127.0.0.1:1001".parse().unwrap(),
            "127.0.0.1:5672".parse().unwrap(),
            None,
        );
        a.entry().update(|h| h.vhost = "dev".into());
        assert_eq!(a.entry().name, "127.0.0.1:1000 -> 127.0.0.1:5672");
        assert_eq!(
            connections.close_where(|h| h.vhost == "dev", "vhost 'dev' is deleted"),
            1
        );
        assert_eq!(a.entry().close_requested().await, "vhost 'dev' is deleted");
        drop(b);
        let names: Vec<_> = connections.list().iter().map(|c| c.id).collect();
        assert_eq!(names, vec![1]);
    }

    #[test]
    fn admission_counts_open_connections_per_node_vhost_and_user_and_frees_on_drop() {
        let connections = Arc::new(Connections::default());
        let addr = |port| format!("127.0.0.1:{port}").parse().unwrap();
        let limits = Limits {
            max_connections: 3,
            max_connections_per_vhost: 2,
            max_connections_per_user: 1,
            ..Limits::default()
        };
        let register = |id: u64, user: &str| {
            let r = connections.register(id, addr(1000 + id as u16), addr(5672), None);
            r.entry().update(|h| h.user = user.to_owned());
            r
        };
        let a = register(1, "a");
        assert_eq!(connections.admit(1, "/", "a", &limits), Ok(()));
        let a2 = register(2, "a");
        assert_eq!(
            connections.admit(2, "/", "a", &limits),
            Err(ConnectionLimit::User(1))
        );
        assert!(
            !a2.entry().handshake().open,
            "a refused connection is not open"
        );
        let b = register(3, "b");
        assert_eq!(connections.admit(3, "/", "b", &limits), Ok(()));
        let c = register(4, "c");
        assert_eq!(
            connections.admit(4, "/", "c", &limits),
            Err(ConnectionLimit::Vhost(2))
        );
        assert_eq!(connections.admit(4, "dev", "c", &limits), Ok(()));
        let d = register(5, "d");
        assert_eq!(
            connections.admit(5, "dev", "d", &limits),
            Err(ConnectionLimit::Node(3))
        );
        drop(a);
        assert_eq!(connections.admit(5, "dev", "d", &limits), Ok(()));
        drop((a2, b, c, d));
    }

    /// Swallows deliveries: the listing never delivers.
    #[derive(Debug)]
    struct Nowhere;

    impl crate::broker::DeliverySink for Nowhere {
        fn accepts_deliveries(&self) -> bool {
            true
        }
        fn push_frames(&self, _write: &mut dyn FnMut(&mut bytes::BytesMut)) {}
    }

    #[test]
    fn a_channel_is_listed_until_its_guard_drops_and_a_reused_number_keeps_the_new_one() {
        let connections = Arc::new(Connections::default());
        let conn = connections.register(
            7,
            "127.0.0.1:1000".parse().unwrap(),
            "127.0.0.1:5672".parse().unwrap(),
            None,
        );
        let entry = connections.by_id(7).expect("registered");
        let delivery = |n| DeliveryChannel::new(n, 4096, 7, false, Arc::new(Nowhere));
        let one = entry.open_channel(delivery(1));
        let two = entry.open_channel(delivery(2));
        one.entry().set_prefetch_count(7);
        two.entry().set_confirm();
        let listed: Vec<_> = entry
            .channels()
            .iter()
            .map(|c| (c.number, c.prefetch_count(), c.confirm(), c.transactional()))
            .collect();
        assert_eq!(listed, vec![(1, 7, false, false), (2, 0, true, false)]);
        // Channel 1 closes and reopens before the old guard is dropped.
        let reopened = entry.open_channel(delivery(1));
        drop(one);
        let numbers: Vec<_> = entry.channels().iter().map(|c| c.number).collect();
        assert_eq!(
            numbers,
            vec![1, 2],
            "the reopened channel 1 is still listed"
        );
        assert_eq!(entry.channels()[0].prefetch_count(), 0, "the new channel 1");
        drop(reopened);
        drop(two);
        assert!(entry.channels().is_empty());
        drop(conn);
        assert!(connections.by_id(7).is_none());
    }
}
