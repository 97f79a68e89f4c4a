//! What must survive a restart, behind traits: the seam storage is written into.
//!
//! Three stores, each with one contract, so that an implementation can be checked against
//! it ([`conformance`]) and the broker never knows which one it has:
//!
//! - [`DefinitionStore`]: durable exchanges, queues and the bindings between them (later
//!   users, vhosts and permissions), put and deleted one at a time, loaded whole at start.
//! - [`MessageStore`]: persistent messages of durable queues — appended once whatever the
//!   fan-out, removed per queue when acked (or rejected, expired, dropped), marked when
//!   delivered so that a crash brings them back redelivered, recovered per queue in order. A
//!   [`SyncMark`] is how confirms wait: everything appended before a mark is durable once
//!   [`MessageStore::synced`] reaches it.
//! - [`HeldStore`]: messages held by delayed exchanges, read back by due time a page at a
//!   time, so a restart need not read the far future.
//!
//! Every time in a store is wall-clock epoch milliseconds ([`crate::clock`]): a deadline or a
//! due time means the same after a restart, and keeps running while the broker is down.
//!
//! [`data_dir`] claims the directory a disk store lives in (one broker at a time, a format
//! stamp). [`memory::MemoryStore`] keeps everything in the process (today's behaviour: gone with the
//! process, kept across a broker rebuilt in the same process). On disk,
//! [`definitions_disk::DefinitionsDb`] keeps definitions in one redb file and
//! [`held_disk::HeldLsm`] held messages in a fjall LSM tree, each syncing on a thread of its
//! own as its [`SyncPolicy`] says. Every method that writes may
//! block on I/O in a disk implementation, so the broker calls them off the async reactor.

pub mod codec;
pub mod conformance;
pub mod data_dir;
pub mod definitions_disk;
pub mod disk;
pub mod held_disk;
pub mod log;
pub mod memory;
#[cfg(test)]
pub(crate) mod scratch;
mod sync_policy;

pub use sync_policy::SyncPolicy;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::broker::message::Message;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file system refused.
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// A record could not be read back.
    #[error("stored record is damaged: {0}")]
    Corrupt(String),
    /// An earlier write failed; the store takes no more writes (its durability is unknown).
    #[error("the store refuses writes after an earlier failure: {0}")]
    Failed(String),
}

/// The result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// A durable exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExchangeDefinition {
    /// Its vhost.
    pub vhost: String,
    /// Its name.
    pub name: String,
    /// Its type (a plugin's name, or `x-delayed-message`).
    pub kind: String,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Cannot be published to directly.
    pub internal: bool,
    /// Declare arguments, as an encoded field table body.
    pub arguments: Bytes,
}

/// A durable queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueDefinition {
    /// Its vhost.
    pub vhost: String,
    /// Its name.
    pub name: String,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Declare arguments, as an encoded field table body.
    pub arguments: Bytes,
}

/// What a binding's destination is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DestinationKind {
    /// A queue.
    Queue,
    /// An exchange.
    Exchange,
}

/// A binding between durable objects.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BindingDefinition {
    /// Its vhost.
    pub vhost: String,
    /// The source exchange.
    pub source: String,
    /// What the destination is.
    pub destination_kind: DestinationKind,
    /// The destination's name.
    pub destination: String,
    /// Binding key.
    pub key: String,
    /// Binding arguments, as an encoded field table body.
    pub arguments: Bytes,
}

/// A virtual host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VHostDefinition {
    /// Its name.
    pub name: String,
    /// What it is for, as an operator wrote it.
    pub description: String,
    /// Free-form tags.
    pub tags: Vec<String>,
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserDefinition {
    /// Its name.
    pub name: String,
    /// Salt and digest as RabbitMQ keeps them (`salt(4) | hash(salt | password)`); empty for
    /// a user without a password, who cannot log in with one.
    pub password_hash: Bytes,
    /// RabbitMQ's name of the hash (`rabbit_password_hashing_sha256`, …).
    pub hashing_algorithm: String,
    /// Tags (`administrator`, `monitoring`, `management`, `policymaker`, or any other).
    pub tags: Vec<String>,
}

/// What a user may do in a vhost: three regular expressions over resource names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PermissionDefinition {
    /// The vhost.
    pub vhost: String,
    /// The user.
    pub user: String,
    /// Names the user may declare and delete.
    pub configure: String,
    /// Names the user may publish to (exchanges) or bind to (queues).
    pub write: String,
    /// Names the user may consume from (queues) or bind from (exchanges).
    pub read: String,
}

/// One durable definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Definition {
    /// A vhost.
    VHost(VHostDefinition),
    /// A user.
    User(UserDefinition),
    /// A user's permissions in a vhost.
    Permission(PermissionDefinition),
    /// An exchange.
    Exchange(ExchangeDefinition),
    /// A queue.
    Queue(QueueDefinition),
    /// A binding.
    Binding(BindingDefinition),
}

/// What names a definition: putting a definition with the key of an existing one replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DefinitionKey {
    /// A vhost, by name.
    VHost(String),
    /// A user, by name.
    User(String),
    /// A user's permissions, by vhost and user.
    Permission(String, String),
    /// An exchange, by vhost and name.
    Exchange(String, String),
    /// A queue, by vhost and name.
    Queue(String, String),
    /// A binding, by everything it is.
    Binding(BindingDefinition),
}

impl Definition {
    /// The key that names this definition.
    pub fn key(&self) -> DefinitionKey {
        match self {
            Definition::VHost(v) => DefinitionKey::VHost(v.name.clone()),
            Definition::User(u) => DefinitionKey::User(u.name.clone()),
            Definition::Permission(p) => DefinitionKey::Permission(p.vhost.clone(), p.user.clone()),
            Definition::Exchange(x) => DefinitionKey::Exchange(x.vhost.clone(), x.name.clone()),
            Definition::Queue(q) => DefinitionKey::Queue(q.vhost.clone(), q.name.clone()),
            Definition::Binding(b) => DefinitionKey::Binding(b.clone()),
        }
    }

    /// Where it comes in [`DefinitionStore::load`]: what others refer to first (vhosts,
    /// users, then permissions naming both; exchanges and queues, then bindings naming them).
    pub fn load_rank(&self) -> u8 {
        match self {
            Definition::VHost(_) => 0,
            Definition::User(_) => 1,
            Definition::Permission(_) => 2,
            Definition::Exchange(_) | Definition::Queue(_) => 3,
            Definition::Binding(_) => 4,
        }
    }
}

/// How far a store's writes are durable: what a confirm (or a `declare-ok`) waits for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Durability {
    /// Everything written at or before this mark is durable.
    pub synced: SyncMark,
    /// A write or sync failed: no mark above `synced` will ever become durable, so whatever
    /// waits on one is refused (a nack), and the store takes no more writes.
    pub failed: bool,
}

/// What every store shares: writes return a [`SyncMark`] at once (a disk store queues them
/// for its own writer thread, so no caller blocks on I/O), and this says when they are
/// durable. One sync covers every write before it, whoever made it (group commit).
pub trait Durable: Send + Sync + fmt::Debug {
    /// Makes everything written so far durable and returns the mark now synced (blocks; for
    /// shutdown, tests and the rare caller that must wait in place).
    fn sync(&self) -> StoreResult<SyncMark>;
    /// The store's durability, updated after every sync; `borrow()` it for the current
    /// state, `changed()` to wait for the next.
    fn durability(&self) -> tokio::sync::watch::Receiver<Durability>;
    /// Bytes written to the store and not yet taken by its writer: how far callers are ahead
    /// of the disk. Publishers pause above a bound (see `server::connection`), so a disk
    /// slower than the network cannot make this grow without limit.
    fn backlog(&self) -> u64 {
        0
    }
}

/// A write a reply or confirm waits for: which store, and its mark there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durably {
    /// A definition write.
    Definitions(SyncMark),
    /// A message written to the message store (it reached a durable queue).
    Messages(SyncMark),
    /// A message written to the held store (a durable delayed exchange holds it).
    Held(SyncMark),
}

impl Stores {
    /// Whether `write` is durable: `Some(true)` yes, `Some(false)` never (its store failed),
    /// `None` not yet.
    pub fn is_durable(&self, write: Durably) -> Option<bool> {
        let (watch, mark) = match write {
            Durably::Definitions(m) => (&self.watches[0], m),
            Durably::Messages(m) => (&self.watches[1], m),
            Durably::Held(m) => (&self.watches[2], m),
        };
        let now = *watch.borrow();
        if now.synced >= mark {
            Some(true)
        } else if now.failed {
            Some(false)
        } else {
            None
        }
    }

    /// Completes when any of the three stores' durability changes (or one goes away).
    pub async fn changed(watches: &mut [tokio::sync::watch::Receiver<Durability>; 3]) {
        let [a, b, c] = watches;
        tokio::select! {
            _ = a.changed() => {}
            _ = b.changed() => {}
            _ = c.changed() => {}
        }
    }

    /// Watches on the definitions, messages and held stores, for [`Stores::changed`].
    pub fn watches(&self) -> [tokio::sync::watch::Receiver<Durability>; 3] {
        self.watches.clone()
    }
}

/// Waits until `mark` is durable on the store `durability` watches: `true` then, `false` if
/// the store failed first (or went away).
pub async fn durable_at(
    mut durability: tokio::sync::watch::Receiver<Durability>,
    mark: SyncMark,
) -> bool {
    match durability.wait_for(|d| d.synced >= mark || d.failed).await {
        Ok(d) => d.synced >= mark,
        Err(_) => false,
    }
}

/// Durable definitions.
pub trait DefinitionStore: Durable {
    /// Records `definition` (replacing one with the same key); durable at the mark.
    fn put(&self, definition: Definition) -> StoreResult<SyncMark>;
    /// Forgets the definition named `key` (nothing if there is none); durable at the mark.
    fn delete(&self, key: &DefinitionKey) -> StoreResult<SyncMark>;
    /// Every definition by [`Definition::load_rank`] (vhosts, users, permissions, exchanges
    /// and queues, bindings), each rank in the order its definitions were first put.
    fn load(&self) -> StoreResult<Vec<Definition>>;
}

/// A durable queue, as stores name it. Shared strings: a queue keeps its key and hands out
/// references on every write, so naming it costs no allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct QueueKey {
    /// Its vhost.
    pub vhost: Arc<str>,
    /// Its name.
    pub queue: Arc<str>,
}

/// A stored message, unique within its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// A position in a store's write order. Increases with every write; everything written at
/// or before a mark is durable once the store's synced mark reaches it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct SyncMark(pub u64);

/// A message recovered for one queue.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// Its id.
    pub id: MessageId,
    /// The message, every property and header byte for byte.
    pub message: Message,
    /// Its deadline in this queue (epoch ms, or `clock::NEVER`).
    pub deadline: u64,
    /// It had been delivered from this queue and not acknowledged.
    pub redelivered: bool,
}

/// Persistent messages of durable queues.
pub trait MessageStore: Durable {
    /// Appends `message` for each of `queues` with its deadline there (the body is written
    /// once); returns its id and the mark a confirm for it waits on.
    fn append(
        &self,
        message: &Message,
        queues: &[(&QueueKey, u64)],
    ) -> StoreResult<(MessageId, SyncMark)>;
    /// The message left `queue` for good (acked, rejected, expired, dropped or purged).
    fn remove(&self, queue: &QueueKey, id: MessageId) -> StoreResult<SyncMark>;
    /// The message was delivered from `queue`: if it is recovered, it is redelivered.
    fn delivered(&self, queue: &QueueKey, id: MessageId) -> StoreResult<SyncMark>;
    /// Forgets everything of `queue` (it was deleted).
    fn forget_queue(&self, queue: &QueueKey) -> StoreResult<SyncMark>;
    /// The messages `queue` still has, in append order.
    fn recover(&self, queue: &QueueKey) -> StoreResult<Vec<Recovered>>;
}

/// A delayed exchange, as stores name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExchangeKey {
    /// Its vhost.
    pub vhost: String,
    /// Its name.
    pub exchange: String,
}

/// A held message, unique within its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HeldId(pub u64);

/// Where a page of held messages starts: after this due time and id (`None`: the first).
pub type HeldCursor = Option<(u64, HeldId)>;

/// A held message read back.
#[derive(Clone, Debug)]
pub struct HeldRecord {
    /// Its id.
    pub id: HeldId,
    /// When it is due (epoch ms).
    pub due: u64,
    /// The message as published.
    pub message: Message,
    /// Its extra routing keys (`CC` and `BCC`).
    pub keys: Vec<Vec<u8>>,
}

/// Messages held by delayed exchanges.
pub trait HeldStore: Durable {
    /// Holds `message` for `exchange` until `due`; returns its id and the mark a confirm
    /// waits on.
    fn hold(
        &self,
        exchange: &ExchangeKey,
        due: u64,
        message: &Message,
        keys: &[Vec<u8>],
    ) -> StoreResult<(HeldId, SyncMark)>;
    /// Forgets a held message (it fired into durable queues, or was cancelled).
    fn release(&self, exchange: &ExchangeKey, id: HeldId) -> StoreResult<SyncMark>;
    /// Up to `limit` held messages of `exchange` due at or before `until`, in (due, id)
    /// order, starting after `after`.
    fn page(
        &self,
        exchange: &ExchangeKey,
        after: HeldCursor,
        until: u64,
        limit: usize,
    ) -> StoreResult<Vec<HeldRecord>>;
    /// How many messages `exchange` holds.
    fn count(&self, exchange: &ExchangeKey) -> StoreResult<u64>;
    /// Forgets everything `exchange` holds (it was deleted).
    fn forget_exchange(&self, exchange: &ExchangeKey) -> StoreResult<SyncMark>;
}

/// The three stores a broker runs on.
#[derive(Clone, Debug)]
pub struct Stores {
    /// Definitions.
    pub definitions: Arc<dyn DefinitionStore>,
    /// Messages of durable queues.
    pub messages: Arc<dyn MessageStore>,
    /// Messages held by delayed exchanges.
    pub held: Arc<dyn HeldStore>,
    /// Their durability, watched once (checking a confirm reads it, subscribes nothing).
    watches: [tokio::sync::watch::Receiver<Durability>; 3],
}

impl Stores {
    /// The three stores.
    pub fn new(
        definitions: Arc<dyn DefinitionStore>,
        messages: Arc<dyn MessageStore>,
        held: Arc<dyn HeldStore>,
    ) -> Stores {
        let watches = [
            definitions.durability(),
            messages.durability(),
            held.durability(),
        ];
        Stores {
            definitions,
            messages,
            held,
            watches,
        }
    }

    /// All three kept in memory, by one [`memory::MemoryStore`].
    pub fn memory() -> Stores {
        Stores::from_one(Arc::new(memory::MemoryStore::default()))
    }

    /// All three from one implementation.
    pub fn from_one<S: DefinitionStore + MessageStore + HeldStore + 'static>(
        store: Arc<S>,
    ) -> Stores {
        Stores::new(store.clone(), store.clone(), store)
    }
}
