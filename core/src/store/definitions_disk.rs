//! [`DefinitionsDb`]: the [`DefinitionStore`] on disk, one [`redb`] file (e.g.
//! `<data-dir>/definitions.redb`).
//!
//! # Layout
//!
//! One table, `definitions`, of byte keys and values. Integers are big-endian; a field is
//! `u32 len | bytes`.
//!
//! - Key: `u8 kind | fields`, the kind telling what the fields are: `1` exchange (vhost,
//!   name), `2` queue (vhost, name), `3` binding (vhost, source, `u8` destination kind (`0`
//!   queue, `1` exchange), destination, routing key, arguments). The same definition always
//!   encodes to the same key, so a put under an existing key replaces it; `4` vhost (name),
//!   `5` user (name), `6` permission (vhost, user). New kinds take new tags and leave these
//!   keys as they are.
//! - Value: `u64 first-put order | u8 kind | the whole definition` (an exchange adds its
//!   type and a flags byte, `1` auto-delete, `2` internal; a queue a flags byte, `1`
//!   auto-delete; a vhost its description and tags (`u32 count | fields`); a user its hash,
//!   the hash's name and tags; a permission its three patterns). A replaced definition keeps
//!   its order, so [`DefinitionStore::load`] gives each rank in first-put order, as the
//!   memory store does.
//!
//! # Writes and durability
//!
//! Definitions are few and small: they are all kept in memory as well (read whole at open),
//! so [`DefinitionStore::load`] and the first-put order need no read. A put or delete
//! changes that copy, takes the next mark and queues the change for the writer thread
//! (`warren-definitions`), which commits everything queued since its last commit in one
//! redb write transaction with [`redb::Durability::Immediate`] (the fsync is its, never the
//! caller's), then publishes the last mark committed. A transaction is atomic: after a crash
//! a definition is there whole or not at all. A failed commit is published (`failed`) and
//! every later write is refused with [`StoreError::Failed`].

use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;

use bytes::{BufMut, Bytes};
use parking_lot::{Condvar, Mutex};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use super::{
    BindingDefinition, Definition, DefinitionKey, DefinitionStore, DestinationKind, Durability,
    Durable, ExchangeDefinition, QueueDefinition, StoreError, StoreResult, SyncMark,
};

/// Every definition, by its encoded key.
const DEFINITIONS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("definitions");

/// Key and value tags of each kind.
const EXCHANGE: u8 = 1;
const QUEUE: u8 = 2;
const BINDING: u8 = 3;
const VHOST: u8 = 4;
const USER: u8 = 5;
const PERMISSION: u8 = 6;

/// Durable definitions in one redb file.
pub struct DefinitionsDb {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// What the callers and the writer thread share.
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread.
    work: Condvar,
    /// Wakes `sync` callers after a commit.
    committed: Condvar,
    /// Why the store stopped taking writes, once it has.
    failure: OnceLock<String>,
    durability: watch::Sender<Durability>,
}

#[derive(Default)]
struct State {
    /// Every definition with its first-put order: what is on disk plus what is queued.
    definitions: FxHashMap<DefinitionKey, (u64, Definition)>,
    /// The last first-put order handed out.
    last_order: u64,
    /// The last mark handed out.
    written: u64,
    /// Everything at or before this mark is committed.
    committed: u64,
    /// Changes not yet handed to the writer thread, in order.
    queued: Vec<Change>,
    /// The store is being dropped: commit what is queued and stop.
    closing: bool,
}

/// A change for the writer thread: an encoded key, with the encoded value to put.
struct Change {
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl fmt::Debug for DefinitionsDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DefinitionsDb")
            .field("durability", &*self.shared.durability.borrow())
            .finish_non_exhaustive()
    }
}

impl DefinitionsDb {
    /// Opens (or creates) the store in the file at `path`, reading every definition.
    pub fn open(path: &Path) -> StoreResult<DefinitionsDb> {
        let db = Database::create(path).map_err(redb_error)?;
        let mut state = State::default();
        {
            let read = db.begin_read().map_err(redb_error)?;
            match read.open_table(DEFINITIONS) {
                Ok(table) => {
                    for entry in table.iter().map_err(redb_error)? {
                        let (key, value) = entry.map_err(redb_error)?;
                        let (order, definition) = decode_value(value.value())?;
                        let named = definition.key();
                        if encode_key(&named) != key.value() {
                            return Err(StoreError::Corrupt(
                                "a definition is stored under another key".into(),
                            ));
                        }
                        state.last_order = state.last_order.max(order);
                        state.definitions.insert(named, (order, definition));
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(redb_error(e)),
            }
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            work: Condvar::new(),
            committed: Condvar::new(),
            failure: OnceLock::new(),
            durability: watch::Sender::new(Durability::default()),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("warren-definitions".into())
                .spawn(move || shared.run_writer(db))?
        };
        Ok(DefinitionsDb {
            shared,
            writer: Some(writer),
        })
    }

    /// Queues `change` (when there is one) and hands out a mark for it.
    fn change(&self, change: impl FnOnce(&mut State) -> Option<Change>) -> StoreResult<SyncMark> {
        let shared = &*self.shared;
        let mut st = shared.state.lock();
        if let Some(why) = shared.failure.get() {
            return Err(StoreError::Failed(why.clone()));
        }
        if let Some(change) = change(&mut st) {
            st.queued.push(change);
            st.written += 1;
            shared.work.notify_one();
        }
        // Nothing to change (deleting what is not there): the writes that made it so are
        // durable at the last mark.
        Ok(SyncMark(st.written))
    }
}

impl Drop for DefinitionsDb {
    fn drop(&mut self) {
        self.shared.state.lock().closing = true;
        self.shared.work.notify_all();
        if let Some(writer) = self.writer.take() {
            // The thread never panics on an I/O error; nothing is left to report if it did.
            let _ = writer.join();
        }
    }
}

impl Shared {
    /// The writer thread: commits what is queued, one transaction at a time, until the
    /// store is dropped (and what was queued then is committed).
    fn run_writer(&self, db: Database) {
        loop {
            let mut st = self.state.lock();
            while st.queued.is_empty() && !st.closing {
                self.work.wait(&mut st);
            }
            if st.queued.is_empty() || self.failure.get().is_some() {
                return;
            }
            let changes = std::mem::take(&mut st.queued);
            let mark = st.written;
            drop(st);
            match commit(&db, &changes) {
                Ok(()) => {
                    self.state.lock().committed = mark;
                    self.durability.send_modify(|d| d.synced = SyncMark(mark));
                }
                Err(e) => {
                    let _ = self.failure.set(format!("writing definitions failed: {e}"));
                    self.durability.send_modify(|d| d.failed = true);
                }
            }
            // Taking the lock orders this after a waiter's check.
            drop(self.state.lock());
            self.committed.notify_all();
        }
    }
}

/// Writes `changes` in one durable transaction.
fn commit(db: &Database, changes: &[Change]) -> StoreResult<()> {
    let mut tx = db.begin_write().map_err(redb_error)?;
    tx.set_durability(redb::Durability::Immediate)
        .map_err(redb_error)?;
    {
        let mut table = tx.open_table(DEFINITIONS).map_err(redb_error)?;
        for change in changes {
            match &change.value {
                Some(value) => table.insert(change.key.as_slice(), value.as_slice()),
                None => table.remove(change.key.as_slice()),
            }
            .map_err(redb_error)?;
        }
    }
    tx.commit().map_err(redb_error)
}

impl Durable for DefinitionsDb {
    fn sync(&self) -> StoreResult<SyncMark> {
        let shared = &*self.shared;
        let mut st = shared.state.lock();
        let target = st.written;
        while st.committed < target && shared.failure.get().is_none() {
            shared.committed.wait(&mut st);
        }
        match shared.failure.get() {
            Some(why) => Err(StoreError::Failed(why.clone())),
            None => Ok(SyncMark(target)),
        }
    }

    fn durability(&self) -> watch::Receiver<Durability> {
        self.shared.durability.subscribe()
    }
}

impl DefinitionStore for DefinitionsDb {
    fn put(&self, definition: Definition) -> StoreResult<SyncMark> {
        let key = definition.key();
        let encoded_key = encode_key(&key);
        self.change(|st| {
            let order = match st.definitions.get(&key) {
                Some((order, _)) => *order,
                None => {
                    st.last_order += 1;
                    st.last_order
                }
            };
            let value = encode_value(order, &definition);
            st.definitions.insert(key, (order, definition));
            Some(Change {
                key: encoded_key,
                value: Some(value),
            })
        })
    }

    fn delete(&self, key: &DefinitionKey) -> StoreResult<SyncMark> {
        self.change(|st| {
            st.definitions.remove(key)?;
            Some(Change {
                key: encode_key(key),
                value: None,
            })
        })
    }

    fn load(&self) -> StoreResult<Vec<Definition>> {
        let st = self.shared.state.lock();
        let mut all: Vec<&(u64, Definition)> = st.definitions.values().collect();
        // Bindings last, then first-put order.
        all.sort_by_key(|(order, d)| (d.load_rank(), *order));
        Ok(all.into_iter().map(|(_, d)| d.clone()).collect())
    }
}

/// A redb error as the store reports it.
fn redb_error(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(e) => StoreError::Io(e),
        redb::Error::Corrupted(why) => StoreError::Corrupt(format!("definitions file: {why}")),
        other => StoreError::Failed(format!("definitions file: {other}")),
    }
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) {
    // Names are shortstrs and arguments a frame's field table: far below 4 GiB.
    out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.put_slice(bytes);
}

fn destination_tag(kind: DestinationKind) -> u8 {
    match kind {
        DestinationKind::Queue => 0,
        DestinationKind::Exchange => 1,
    }
}

fn put_binding(out: &mut Vec<u8>, b: &BindingDefinition) {
    put_field(out, b.vhost.as_bytes());
    put_field(out, b.source.as_bytes());
    out.put_u8(destination_tag(b.destination_kind));
    put_field(out, b.destination.as_bytes());
    put_field(out, b.key.as_bytes());
    put_field(out, &b.arguments);
}

/// The table key of a definition.
fn encode_key(key: &DefinitionKey) -> Vec<u8> {
    let mut out = Vec::new();
    match key {
        DefinitionKey::Exchange(vhost, name) => {
            out.put_u8(EXCHANGE);
            put_field(&mut out, vhost.as_bytes());
            put_field(&mut out, name.as_bytes());
        }
        DefinitionKey::Queue(vhost, name) => {
            out.put_u8(QUEUE);
            put_field(&mut out, vhost.as_bytes());
            put_field(&mut out, name.as_bytes());
        }
        DefinitionKey::Binding(b) => {
            out.put_u8(BINDING);
            put_binding(&mut out, b);
        }
        DefinitionKey::VHost(name) => {
            out.put_u8(VHOST);
            put_field(&mut out, name.as_bytes());
        }
        DefinitionKey::User(name) => {
            out.put_u8(USER);
            put_field(&mut out, name.as_bytes());
        }
        DefinitionKey::Permission(vhost, user) => {
            out.put_u8(PERMISSION);
            put_field(&mut out, vhost.as_bytes());
            put_field(&mut out, user.as_bytes());
        }
    }
    out
}

fn put_list(out: &mut Vec<u8>, items: &[String]) {
    out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
    for item in items {
        put_field(out, item.as_bytes());
    }
}

/// The table value of a definition first put as `order`.
fn encode_value(order: u64, definition: &Definition) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u64(order);
    match definition {
        Definition::Exchange(x) => {
            out.put_u8(EXCHANGE);
            put_field(&mut out, x.vhost.as_bytes());
            put_field(&mut out, x.name.as_bytes());
            put_field(&mut out, x.kind.as_bytes());
            out.put_u8(u8::from(x.auto_delete) | (u8::from(x.internal) << 1));
            put_field(&mut out, &x.arguments);
        }
        Definition::Queue(q) => {
            out.put_u8(QUEUE);
            put_field(&mut out, q.vhost.as_bytes());
            put_field(&mut out, q.name.as_bytes());
            out.put_u8(u8::from(q.auto_delete));
            put_field(&mut out, &q.arguments);
        }
        Definition::Binding(b) => {
            out.put_u8(BINDING);
            put_binding(&mut out, b);
        }
        Definition::VHost(v) => {
            out.put_u8(VHOST);
            put_field(&mut out, v.name.as_bytes());
            put_field(&mut out, v.description.as_bytes());
            put_list(&mut out, &v.tags);
        }
        Definition::User(u) => {
            out.put_u8(USER);
            put_field(&mut out, u.name.as_bytes());
            put_field(&mut out, &u.password_hash);
            put_field(&mut out, u.hashing_algorithm.as_bytes());
            put_list(&mut out, &u.tags);
        }
        Definition::Permission(p) => {
            out.put_u8(PERMISSION);
            for field in [&p.vhost, &p.user, &p.configure, &p.write, &p.read] {
                put_field(&mut out, field.as_bytes());
            }
        }
    }
    out
}

/// Reads a stored value, every length checked.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, len: usize) -> StoreResult<&[u8]> {
        if self.0.len() < len {
            return Err(StoreError::Corrupt("stored definition is cut short".into()));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> StoreResult<u8> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> StoreResult<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_be_bytes(bytes.try_into().unwrap_or_default()))
    }

    fn field(&mut self) -> StoreResult<&[u8]> {
        let len = self.take(4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        self.take(len)
    }

    fn string(&mut self) -> StoreResult<String> {
        String::from_utf8(self.field()?.to_vec())
            .map_err(|_| StoreError::Corrupt("stored definition name is not UTF-8".into()))
    }

    fn bytes(&mut self) -> StoreResult<Bytes> {
        Ok(Bytes::copy_from_slice(self.field()?))
    }

    fn list(&mut self) -> StoreResult<Vec<String>> {
        let count = self.take(4)?;
        let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]);
        (0..count).map(|_| self.string()).collect()
    }

    fn binding(&mut self) -> StoreResult<BindingDefinition> {
        Ok(BindingDefinition {
            vhost: self.string()?,
            source: self.string()?,
            destination_kind: match self.u8()? {
                0 => DestinationKind::Queue,
                1 => DestinationKind::Exchange,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "unknown binding destination kind {other}"
                    )));
                }
            },
            destination: self.string()?,
            key: self.string()?,
            arguments: self.bytes()?,
        })
    }
}

/// A stored value: its first-put order and the definition.
fn decode_value(value: &[u8]) -> StoreResult<(u64, Definition)> {
    let mut r = Reader(value);
    let order = r.u64()?;
    let definition = match r.u8()? {
        EXCHANGE => {
            let (vhost, name, kind) = (r.string()?, r.string()?, r.string()?);
            let flags = r.u8()?;
            Definition::Exchange(ExchangeDefinition {
                vhost,
                name,
                kind,
                auto_delete: flags & 1 != 0,
                internal: flags & 2 != 0,
                arguments: r.bytes()?,
            })
        }
        QUEUE => {
            let (vhost, name) = (r.string()?, r.string()?);
            let flags = r.u8()?;
            Definition::Queue(QueueDefinition {
                vhost,
                name,
                auto_delete: flags & 1 != 0,
                arguments: r.bytes()?,
            })
        }
        BINDING => Definition::Binding(r.binding()?),
        VHOST => Definition::VHost(crate::store::VHostDefinition {
            name: r.string()?,
            description: r.string()?,
            tags: r.list()?,
        }),
        USER => Definition::User(crate::store::UserDefinition {
            name: r.string()?,
            password_hash: r.bytes()?,
            hashing_algorithm: r.string()?,
            tags: r.list()?,
        }),
        PERMISSION => Definition::Permission(crate::store::PermissionDefinition {
            vhost: r.string()?,
            user: r.string()?,
            configure: r.string()?,
            write: r.string()?,
            read: r.string()?,
        }),
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown stored definition kind {other}"
            )));
        }
    };
    if !r.0.is_empty() {
        return Err(StoreError::Corrupt(
            "stored definition has bytes after its end".into(),
        ));
    }
    Ok((order, definition))
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::store::conformance::{self, Reopen};

    use crate::store::scratch::Scratch;

    impl Reopen for Scratch {
        type Store = DefinitionsDb;

        fn reopen(&mut self) -> Arc<DefinitionsDb> {
            Arc::new(DefinitionsDb::open(&self.0).expect("opens"))
        }
    }

    fn queue(name: &str, arguments: Vec<u8>) -> Definition {
        Definition::Queue(QueueDefinition {
            vhost: "/".into(),
            name: name.into(),
            auto_delete: false,
            arguments: Bytes::from(arguments),
        })
    }

    #[test]
    fn passes_the_definitions_conformance_suite() {
        conformance::run_definitions(&mut || Scratch::new("conformance"));
    }

    #[test]
    fn every_field_of_every_kind_reads_back() {
        let mut file = Scratch::new("fields");
        let all = vec![
            Definition::VHost(crate::store::VHostDefinition {
                name: "v".into(),
                description: "a vhost".into(),
                tags: vec!["prod".into(), "eu".into()],
            }),
            Definition::User(crate::store::UserDefinition {
                name: "bob".into(),
                password_hash: Bytes::from_static(b"salt-and-digest"),
                hashing_algorithm: "rabbit_password_hashing_sha256".into(),
                tags: vec!["administrator".into()],
            }),
            Definition::Permission(crate::store::PermissionDefinition {
                vhost: "v".into(),
                user: "bob".into(),
                configure: "^$".into(),
                write: ".*".into(),
                read: "^amq\\.".into(),
            }),
            Definition::Exchange(ExchangeDefinition {
                vhost: "v".into(),
                name: "x".into(),
                kind: "x-delayed-message".into(),
                auto_delete: true,
                internal: true,
                arguments: Bytes::from_static(b"\x0ax-delayed-typeS\0\0\0\x06direct"),
            }),
            Definition::Exchange(ExchangeDefinition {
                vhost: "v".into(),
                name: "y".into(),
                kind: "topic".into(),
                auto_delete: false,
                internal: true,
                arguments: Bytes::new(),
            }),
            Definition::Queue(QueueDefinition {
                vhost: "v".into(),
                name: "q".into(),
                auto_delete: true,
                arguments: Bytes::from_static(b"args"),
            }),
            Definition::Binding(BindingDefinition {
                vhost: "v".into(),
                source: "x".into(),
                destination_kind: DestinationKind::Exchange,
                destination: "y".into(),
                key: "a.#".into(),
                arguments: Bytes::from_static(b"more"),
            }),
        ];
        let store = file.reopen();
        for definition in &all {
            store.put(definition.clone()).expect("put");
        }
        drop(store);
        assert_eq!(
            file.reopen().load().expect("load"),
            all,
            "kept on a clean drop"
        );
    }

    #[test]
    fn first_put_order_goes_on_after_a_reopen() {
        let mut file = Scratch::new("order");
        let store = file.reopen();
        store.put(queue("a", vec![])).expect("put");
        store.put(queue("b", vec![])).expect("put");
        store.sync().expect("sync");
        drop(store);
        let store = file.reopen();
        store.put(queue("c", vec![])).expect("put");
        store.delete(&queue("a", vec![]).key()).expect("delete");
        store.put(queue("a", vec![1])).expect("put again, as new");
        store.put(queue("b", vec![2])).expect("replace, in place");
        store.sync().expect("sync");
        drop(store);
        assert_eq!(
            file.reopen().load().expect("load"),
            [queue("b", vec![2]), queue("c", vec![]), queue("a", vec![1])]
        );
    }

    #[test]
    fn deleting_what_is_not_there_writes_nothing() {
        let mut file = Scratch::new("nothing");
        let store = file.reopen();
        let put = store.put(queue("a", vec![])).expect("put");
        let none = store.delete(&queue("b", vec![]).key()).expect("delete");
        assert_eq!(none, put, "no new write, so no new mark");
        assert_eq!(store.sync().expect("sync"), put);
    }

    #[test]
    fn after_a_failed_commit_writes_are_refused_and_the_failure_is_published() {
        let mut file = Scratch::new("failed");
        let store = file.reopen();
        let mark = store.put(queue("a", vec![])).expect("put");
        store.sync().expect("sync");
        // What the writer thread does when a commit fails.
        let _ = store.shared.failure.set("the disk went away".into());
        store.shared.durability.send_modify(|d| d.failed = true);
        let now = *store.durability().borrow();
        assert!(now.failed);
        assert_eq!(now.synced, mark, "what was committed stays committed");
        let err = store.put(queue("b", vec![])).expect_err("refused");
        assert!(matches!(err, StoreError::Failed(_)), "{err}");
        assert!(matches!(store.sync(), Err(StoreError::Failed(_))));
    }

    /// Written by the child of [`a_crash_never_leaves_half_a_definition`].
    const CRASH_FILE: &str = "WARREN_DEFINITIONS_CRASH_FILE";
    /// How many queues the child puts (the first `CRASH_SYNCED` of them synced) before it
    /// aborts.
    const CRASH_PUTS: usize = 400;
    const CRASH_SYNCED: usize = 100;

    /// Each queue's arguments are large, so that a commit spans many pages.
    fn crash_queue(i: usize) -> Definition {
        queue(&format!("q{i}"), vec![i as u8; 32 * 1024])
    }

    /// The child's part of [`a_crash_never_leaves_half_a_definition`]: puts, then aborts.
    fn puts_then_aborts(path: &std::ffi::OsStr) -> ! {
        let store = DefinitionsDb::open(Path::new(&path)).expect("open");
        for i in 0..CRASH_PUTS {
            store.put(crash_queue(i)).expect("put");
            if i + 1 == CRASH_SYNCED {
                store.sync().expect("sync");
            } else if i % 16 == 0 {
                // Let the writer get going, so that the abort finds it committing.
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        // No sync, no drop: the writer thread is somewhere in its commits.
        std::process::abort();
    }

    /// Runs itself again as a child process (with `CRASH_FILE` set) that puts and aborts
    /// mid-commit, then reads what the child left.
    #[test]
    fn a_crash_never_leaves_half_a_definition() {
        if let Some(path) = std::env::var_os(CRASH_FILE) {
            puts_then_aborts(&path);
        }
        let file = Scratch::new("crash");
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "store::definitions_disk::tests::a_crash_never_leaves_half_a_definition",
                "--test-threads=1",
            ])
            .env(CRASH_FILE, &file.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("child runs");
        assert!(!status.success(), "the child aborted: {status}");
        let loaded = DefinitionsDb::open(&file.0)
            .expect("opens after the crash")
            .load()
            .expect("load");
        assert!(
            loaded.len() >= CRASH_SYNCED,
            "what was synced is there ({} of {CRASH_SYNCED})",
            loaded.len()
        );
        let want: Vec<Definition> = (0..loaded.len()).map(crash_queue).collect();
        assert!(
            loaded == want,
            "a prefix of the puts, each whole ({} loaded)",
            loaded.len()
        );
    }
}
