//! [`HeldLsm`]: the [`HeldStore`] on disk, in an LSM tree ([`fjall`]), laid out so that a
//! restart reads only what is due soon.
//!
//! # Layout
//!
//! One fjall database in the store's directory, with three keyspaces. All integers are
//! big-endian, so byte order is number order. An exchange is named everywhere by its
//! *prefix*, `u16 vhost len | vhost | u16 exchange len | exchange`: the lengths keep `a`
//! and `ab` apart (no prefix is the start of another's).
//!
//! - `held`: the messages. Key `prefix | u64 due | u64 id`, so a range scan gives one
//!   exchange's messages in (due, id) order and stops at a horizon; value
//!   `u32 key count | (u16 len | CC/BCC key)* | message` ([`codec`]). Values above 1 KiB are
//!   kept apart from the keys (fjall's key-value separation), so a large body is written
//!   once rather than again at every compaction.
//! - `held-ids`: key `prefix | u64 id`, value `u64 due`, written in the same batch as the
//!   message. [`HeldStore::release`] has no due time: this finds the message's key with one
//!   point read, and [`HeldStore::forget_exchange`] walks it (8-byte values) rather than the
//!   messages. A map in memory would do the same but has to be rebuilt at open by reading an
//!   entry per held message; this costs nothing at open.
//! - `held-meta`: `[0]` → the highest id reserved (written once per 4096 ids; ids go on
//!   after it on reopen, so a restart skips the rest of a block), and
//!   `[1] | prefix` → how many messages the exchange holds (absent for none), both written
//!   in the batch that changes them. It has one entry per exchange, read whole at open into
//!   memory, so [`HeldStore::count`] reads nothing.
//!
//! Opening therefore reads `held-meta` and whatever fjall replays of its journal (writes not
//! yet flushed into tables), never the held messages as such; [`HeldStore::page`] reads the
//! keys and values it returns (and steps over the tombstones of released messages that
//! compaction has not yet dropped). The journal fjall replays is kept small whatever is held:
//! `held` flushes its memtable every 16 MiB, the two small keyspaces every 4 MiB (so neither
//! keeps an old journal alive), and fjall is told to keep at most 64 MiB of journal (its
//! smallest setting). With a million 200-byte messages held, an open took about 1 s in a
//! release build on two busy cores (the `a_million_held_messages_open_count_and_page` test).
//!
//! # Writes and durability
//!
//! A write is one atomic fjall batch. The caller's thread only builds it in memory, takes
//! the next mark (a dense counter) and queues it, under one mutex (a message count is read,
//! changed and written back); a release finds a hold that is still queued through a small
//! map of queued due times. The writer thread (`warren-held`) commits what is queued, in
//! mark order, to fjall's tables and journal; under [`SyncPolicy::Always`] it then syncs the
//! journal once for everything committed since its last sync (group commit) and publishes
//! the last mark it covered; under [`SyncPolicy::Interval`] a mark is published as durable
//! once committed (handed to the OS: a process crash loses nothing published) and the thread
//! syncs on a timer. A release of a committed message reads its due time from `held-ids`
//! (one point read), and a forget first waits for the queue to be committed, since both
//! read fjall. A failed commit or sync is published (`failed`), and every later write is
//! refused with [`StoreError::Failed`].
//!
//! So a hold never waits for the disk on the caller's thread; the writer thread may (fjall
//! holds its journal lock while it syncs, and stalls writes when its flushes fall behind).

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, KvSeparationOptions, PersistMode};
use parking_lot::{Condvar, Mutex};
use rustc_hash::FxHashMap;
use tokio::sync::watch;

use super::{
    Durability, Durable, ExchangeKey, HeldCursor, HeldId, HeldRecord, HeldStore, StoreError,
    StoreResult, SyncMark, SyncPolicy, codec,
};
use crate::broker::message::Message;

/// The messages, by exchange, due time and id.
const HELD: &str = "held";
/// Due time by exchange and id.
const IDS: &str = "held-ids";
/// The id high-water mark and the per-exchange counts.
const META: &str = "held-meta";
/// `held-meta` key of the highest id reserved: ids are handed out up to it.
const RESERVED_ID_KEY: [u8; 1] = [0];
/// How many ids one write of [`RESERVED_ID_KEY`] reserves, so that a hold need not write it
/// (every batch item is replayed from the journal at open).
const ID_BLOCK: u64 = 4096;
/// `held-meta` tag of an exchange's count.
const COUNT_TAG: u8 = 1;
/// How much journal fjall keeps before it flushes the keyspaces holding it back: what an
/// open after a crash replays at most (its smallest; 512 MiB by default).
const JOURNAL_LIMIT: u64 = 64 * 1024 * 1024;
/// The memtable (what is in memory and replayed from the journal at open, until it is
/// flushed into a table) of `held`: a quarter of fjall's default, so that an open after a
/// crash replays at most some 60 000 held messages of 200 bytes.
const HELD_MEMTABLE: u64 = 16 * 1024 * 1024;
/// The memtables of `held-ids` and `held-meta`, small enough that they are flushed at least
/// as often as `held` and never keep an old journal alive on their own.
const SMALL_MEMTABLE: u64 = 4 * 1024 * 1024;
/// How many messages one batch of [`HeldStore::forget_exchange`] removes, so that forgetting
/// a large exchange does not build one batch the size of everything it held.
const FORGET_CHUNK: usize = 10_000;

/// Messages held by delayed exchanges, in a fjall database in one directory.
pub struct HeldLsm {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

/// What the callers and the writer thread share.
struct Shared {
    db: Database,
    held: Keyspace,
    ids: Keyspace,
    meta: Keyspace,
    policy: SyncPolicy,
    /// Serialises writes; what they read and change.
    state: Mutex<State>,
    /// The last mark handed out, for the writer thread.
    written: AtomicU64,
    /// Bytes of messages queued and not yet committed (the store's backlog).
    queued_bytes: AtomicU64,
    /// Between the writers, the writer thread and `sync` callers.
    sync: Mutex<SyncState>,
    /// Wakes the writer thread.
    bell: Condvar,
    /// Wakes `sync` callers after a sync.
    synced: Condvar,
    /// Why the store stopped taking writes, once it has.
    failure: OnceLock<String>,
    durability: watch::Sender<Durability>,
}

#[derive(Default)]
struct State {
    /// Messages held, by exchange prefix (exchanges holding none are absent).
    counts: FxHashMap<Vec<u8>, u64>,
    /// The highest id handed out.
    last_id: u64,
    /// The highest id reserved on disk (ids go on after it after a reopen).
    reserved: u64,
    /// The last mark handed out.
    written: u64,
    /// Writes handed out and not yet committed by the writer thread, in mark order.
    queued: Vec<Queued>,
    /// Due times of holds still queued, by their `held-ids` key: a release finds them here
    /// before they are in fjall.
    queued_due: FxHashMap<Vec<u8>, u64>,
}

/// One write waiting for the writer thread.
struct Queued {
    mark: u64,
    batch: fjall::OwnedWriteBatch,
    /// The `held-ids` key of the message it holds, if it is a hold.
    holds: Option<Vec<u8>>,
    /// Bytes of message it carries (its share of the backlog).
    bytes: u64,
}

#[derive(Default)]
struct SyncState {
    /// Everything at or before this mark has been committed to fjall.
    committed: u64,
    /// Everything written at or before this mark has been synced to disk.
    persisted: u64,
    /// A `sync` caller waits: sync now, whatever the policy.
    wanted: bool,
    /// The store is being dropped: sync what is left and stop.
    closing: bool,
    /// How many syncs the writer thread has made (tests check grouping with it).
    persists: u64,
}

impl fmt::Debug for HeldLsm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldLsm")
            .field("policy", &self.shared.policy)
            .field("durability", &*self.shared.durability.borrow())
            .finish_non_exhaustive()
    }
}

impl HeldLsm {
    /// Opens (or creates) the store in `dir`, syncing by `sync`. Reads the id high-water mark
    /// and the per-exchange counts, not the held messages.
    pub fn open(dir: &Path, sync: SyncPolicy) -> StoreResult<HeldLsm> {
        let db = Database::builder(dir)
            .max_journaling_size(JOURNAL_LIMIT)
            .open()
            .map_err(fjall_error)?;
        let held = db
            .keyspace(HELD, || {
                KeyspaceCreateOptions::default()
                    .max_memtable_size(HELD_MEMTABLE)
                    .with_kv_separation(Some(KvSeparationOptions::default()))
            })
            .map_err(fjall_error)?;
        let small = || KeyspaceCreateOptions::default().max_memtable_size(SMALL_MEMTABLE);
        let ids = db.keyspace(IDS, small).map_err(fjall_error)?;
        let meta = db.keyspace(META, small).map_err(fjall_error)?;
        let mut state = State::default();
        for entry in meta.iter() {
            let (key, value) = entry.into_inner().map_err(fjall_error)?;
            let value = be_u64(&value, "held-meta value")?;
            match key.split_first() {
                Some((&COUNT_TAG, prefix)) => {
                    state.counts.insert(prefix.to_vec(), value);
                }
                _ if *key == RESERVED_ID_KEY => {
                    state.last_id = value;
                    state.reserved = value;
                }
                _ => return Err(StoreError::Corrupt("unknown held-meta key".into())),
            }
        }
        let shared = Arc::new(Shared {
            db,
            held,
            ids,
            meta,
            policy: sync,
            state: Mutex::new(state),
            written: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            sync: Mutex::new(SyncState::default()),
            bell: Condvar::new(),
            synced: Condvar::new(),
            failure: OnceLock::new(),
            durability: watch::Sender::new(Durability::default()),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("warren-held".into())
                .spawn(move || shared.run_writer())?
        };
        Ok(HeldLsm {
            shared,
            writer: Some(writer),
        })
    }
}

impl Drop for HeldLsm {
    fn drop(&mut self) {
        self.shared.sync.lock().closing = true;
        self.shared.bell.notify_all();
        if let Some(writer) = self.writer.take() {
            // The thread never panics on an I/O error; nothing is left to report if it did.
            let _ = writer.join();
        }
    }
}

impl Shared {
    /// Refuses writes once the store has failed.
    fn check(&self) -> StoreResult<()> {
        match self.failure.get() {
            Some(why) => Err(StoreError::Failed(why.clone())),
            None => Ok(()),
        }
    }

    /// Records a failure (the first one is kept), publishes it, and wakes whoever waits.
    fn fail(&self, why: String) {
        let _ = self.failure.set(why);
        self.durability.send_modify(|d| d.failed = true);
        // Taking the lock orders this after a waiter's check of `failure`.
        drop(self.sync.lock());
        self.synced.notify_all();
    }

    /// Queues `batch` for the writer thread (under the write lock, which `state` is) and
    /// hands out its mark: the caller's thread builds batches in memory and never touches
    /// the disk.
    fn commit(
        &self,
        state: &mut State,
        batch: fjall::OwnedWriteBatch,
        holds: Option<Vec<u8>>,
        bytes: u64,
    ) -> StoreResult<SyncMark> {
        state.written += 1;
        let mark = state.written;
        self.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        state.queued.push(Queued {
            mark,
            batch,
            holds,
            bytes,
        });
        self.written.store(mark, Ordering::Release);
        drop(self.sync.lock());
        self.bell.notify_one();
        Ok(SyncMark(mark))
    }

    /// The writer thread's half of a write: commits what is queued, in order; returns the
    /// last mark committed, or `None` if nothing was queued or a commit failed.
    fn commit_queued(&self) -> Option<u64> {
        let queued = std::mem::take(&mut self.state.lock().queued);
        let last = queued.last()?.mark;
        let mut holds = Vec::new();
        for q in queued {
            self.queued_bytes.fetch_sub(q.bytes, Ordering::Relaxed);
            if let Err(e) = q.batch.commit() {
                self.fail(format!("writing held messages failed: {e}"));
                // Nothing queued will be written now: it is no backlog to wait for.
                self.queued_bytes.store(0, Ordering::Relaxed);
                return None;
            }
            holds.extend(q.holds);
        }
        let mut st = self.state.lock();
        for key in &holds {
            st.queued_due.remove(key);
        }
        drop(st);
        let mut s = self.sync.lock();
        s.committed = last;
        drop(s);
        self.synced.notify_all();
        Some(last)
    }

    /// Waits until everything queued before the call is committed (for the rare write that
    /// reads fjall's keys to find what to change).
    fn wait_committed(&self) -> StoreResult<()> {
        let target = self.written.load(Ordering::Acquire);
        let mut s = self.sync.lock();
        while s.committed < target && self.failure.get().is_none() {
            self.bell.notify_one();
            self.synced.wait(&mut s);
        }
        drop(s);
        self.check()
    }

    /// Publishes `mark` as synced (marks only grow, whoever publishes first).
    fn publish(&self, mark: u64) {
        self.durability.send_if_modified(|d| {
            let newer = mark > d.synced.0;
            if newer {
                d.synced = SyncMark(mark);
            }
            newer
        });
    }

    /// The writer thread: commits queued writes as they come, and syncs after them (or on a
    /// timer), until the store is dropped.
    fn run_writer(&self) {
        loop {
            let mut s = self.sync.lock();
            loop {
                if s.closing || s.wanted {
                    break;
                }
                let queued = self.written.load(Ordering::Acquire) > s.committed;
                match self.policy {
                    SyncPolicy::Always => {
                        if queued || s.committed > s.persisted {
                            break;
                        }
                        self.bell.wait(&mut s);
                    }
                    SyncPolicy::Interval(every) => {
                        if queued
                            || self
                                .bell
                                .wait_for(&mut s, every.max(Duration::from_millis(1)))
                                .timed_out()
                        {
                            break;
                        }
                    }
                }
            }
            s.wanted = false;
            let closing = s.closing;
            let from = s.persisted;
            drop(s);
            if self.failure.get().is_none()
                && let Some(committed) = self.commit_queued()
                && matches!(self.policy, SyncPolicy::Interval(_))
            {
                // Written to the OS: durable as this policy counts it.
                self.publish(committed);
            }
            let target = self.sync.lock().committed;
            if target > from && self.failure.get().is_none() {
                let result = self.db.persist(PersistMode::SyncData);
                let mut s = self.sync.lock();
                s.persists += 1;
                match result {
                    Ok(()) => {
                        s.persisted = target;
                        drop(s);
                        self.publish(target);
                    }
                    Err(e) => {
                        drop(s);
                        self.fail(format!("syncing held messages failed: {e}"));
                    }
                }
            }
            self.synced.notify_all();
            if closing {
                return;
            }
        }
    }
}

impl Durable for HeldLsm {
    fn sync(&self) -> StoreResult<SyncMark> {
        let shared = &*self.shared;
        shared.check()?;
        let target = shared.written.load(Ordering::Acquire);
        let mut s = shared.sync.lock();
        if s.persisted < target {
            s.wanted = true;
            shared.bell.notify_one();
            while s.persisted < target && shared.failure.get().is_none() {
                shared.synced.wait(&mut s);
            }
        }
        drop(s);
        shared.check()?;
        Ok(SyncMark(target))
    }

    fn durability(&self) -> watch::Receiver<Durability> {
        self.shared.durability.subscribe()
    }

    fn backlog(&self) -> u64 {
        self.shared.queued_bytes.load(Ordering::Relaxed)
    }
}

impl HeldStore for HeldLsm {
    fn hold(
        &self,
        exchange: &ExchangeKey,
        due: u64,
        message: &Message,
        keys: &[Vec<u8>],
    ) -> StoreResult<(HeldId, SyncMark)> {
        let shared = &*self.shared;
        let prefix = exchange_prefix(exchange)?;
        let value = held_value(message, keys)?;
        let bytes = value.len() as u64;
        let mut st = shared.state.lock();
        shared.check()?;
        let id = st.last_id + 1;
        let count = st.counts.get(&prefix).copied().unwrap_or(0) + 1;
        let mut batch = shared.db.batch();
        batch.insert(&shared.held, held_key(&prefix, due, id), value);
        batch.insert(&shared.ids, id_key(&prefix, id), due.to_be_bytes());
        batch.insert(&shared.meta, count_key(&prefix), count.to_be_bytes());
        let reserve = (id > st.reserved).then(|| id + ID_BLOCK - 1);
        if let Some(reserve) = reserve {
            batch.insert(&shared.meta, RESERVED_ID_KEY, reserve.to_be_bytes());
        }
        let by_id = id_key(&prefix, id);
        st.queued_due.insert(by_id.clone(), due);
        let mark = shared.commit(&mut st, batch, Some(by_id), bytes)?;
        st.last_id = id;
        st.reserved = reserve.unwrap_or(st.reserved);
        st.counts.insert(prefix, count);
        Ok((HeldId(id), mark))
    }

    fn release(&self, exchange: &ExchangeKey, id: HeldId) -> StoreResult<SyncMark> {
        let shared = &*self.shared;
        let prefix = exchange_prefix(exchange)?;
        let by_id = id_key(&prefix, id.0);
        let mut st = shared.state.lock();
        shared.check()?;
        let due = match st.queued_due.remove(&by_id) {
            Some(due) => due,
            None => {
                let Some(due) = shared.ids.get(&by_id).map_err(fjall_error)? else {
                    // Not held (fired, cancelled or forgotten already): nothing to write,
                    // and the writes that made it so are durable at the last mark.
                    return Ok(SyncMark(st.written));
                };
                be_u64(&due, "held-ids value")?
            }
        };
        let count = st
            .counts
            .get(&prefix)
            .copied()
            .unwrap_or(0)
            .saturating_sub(1);
        let mut batch = shared.db.batch();
        batch.remove(&shared.held, held_key(&prefix, due, id.0));
        batch.remove(&shared.ids, by_id);
        set_count(&mut batch, &shared.meta, &prefix, count);
        let mark = shared.commit(&mut st, batch, None, 0)?;
        if count == 0 {
            st.counts.remove(&prefix);
        } else {
            st.counts.insert(prefix, count);
        }
        Ok(mark)
    }

    fn page(
        &self,
        exchange: &ExchangeKey,
        after: HeldCursor,
        until: u64,
        limit: usize,
    ) -> StoreResult<Vec<HeldRecord>> {
        let prefix = exchange_prefix(exchange)?;
        let last = held_key(&prefix, until, u64::MAX);
        let first = match after {
            Some((due, id)) => held_key(&prefix, due, id.0),
            None => held_key(&prefix, 0, 0),
        };
        let mut out = Vec::new();
        if limit == 0 || first > last {
            return Ok(out);
        }
        let range = self.shared.held.range(first.clone()..=last);
        for entry in range {
            let (key, value) = entry.into_inner().map_err(fjall_error)?;
            if after.is_some() && *key == *first {
                continue;
            }
            out.push(held_record(&prefix, &key, &value)?);
            if out.len() == limit {
                break;
            }
        }
        Ok(out)
    }

    fn count(&self, exchange: &ExchangeKey) -> StoreResult<u64> {
        let prefix = exchange_prefix(exchange)?;
        Ok(self
            .shared
            .state
            .lock()
            .counts
            .get(&prefix)
            .copied()
            .unwrap_or(0))
    }

    fn forget_exchange(&self, exchange: &ExchangeKey) -> StoreResult<SyncMark> {
        let shared = &*self.shared;
        let prefix = exchange_prefix(exchange)?;
        // It walks the ids in fjall: what is still queued must be there first.
        shared.wait_committed()?;
        let mut st = shared.state.lock();
        shared.check()?;
        let mut left = st.counts.get(&prefix).copied().unwrap_or(0);
        // The ids keyspace names every held message of the exchange with its due time, so
        // the messages themselves are not read. Big exchanges go in several batches, each
        // leaving the count right for what it leaves.
        let mut batch = shared.db.batch();
        let mut in_batch = 0;
        for entry in shared.ids.prefix(&prefix) {
            let (key, due) = entry.into_inner().map_err(fjall_error)?;
            let id = be_u64(key.get(prefix.len()..).unwrap_or_default(), "held-ids key")?;
            let due = be_u64(&due, "held-ids value")?;
            batch.remove(&shared.held, held_key(&prefix, due, id));
            batch.remove(&shared.ids, key);
            in_batch += 1;
            left = left.saturating_sub(1);
            if in_batch == FORGET_CHUNK {
                set_count(&mut batch, &shared.meta, &prefix, left);
                if let Err(e) = batch.commit() {
                    shared.fail(format!("forgetting held messages failed: {e}"));
                    return Err(fjall_error(e));
                }
                batch = shared.db.batch();
                in_batch = 0;
            }
        }
        batch.remove(&shared.meta, count_key(&prefix));
        let mark = shared.commit(&mut st, batch, None, 0)?;
        st.counts.remove(&prefix);
        Ok(mark)
    }
}

/// Writes an exchange's count into `batch` (removing it at zero).
fn set_count(batch: &mut fjall::OwnedWriteBatch, meta: &Keyspace, prefix: &[u8], count: u64) {
    if count == 0 {
        batch.remove(meta, count_key(prefix));
    } else {
        batch.insert(meta, count_key(prefix), count.to_be_bytes());
    }
}

/// A fjall error as the store reports it.
fn fjall_error(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(e) => StoreError::Io(e),
        other => StoreError::Failed(format!("held message store: {other}")),
    }
}

/// A value too long for its length prefix: refused, and the store goes on.
fn too_long(what: &str, len: usize) -> StoreError {
    StoreError::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{what} of {len} bytes is too long to store"),
    ))
}

fn put_u16_prefixed(out: &mut Vec<u8>, bytes: &[u8], what: &str) -> StoreResult<()> {
    let len = u16::try_from(bytes.len()).map_err(|_| too_long(what, bytes.len()))?;
    out.put_u16(len);
    out.put_slice(bytes);
    Ok(())
}

/// `u16 vhost len | vhost | u16 exchange len | exchange`, with room for a key's tail.
fn exchange_prefix(exchange: &ExchangeKey) -> StoreResult<Vec<u8>> {
    let mut out = Vec::with_capacity(4 + exchange.vhost.len() + exchange.exchange.len() + 16);
    put_u16_prefixed(&mut out, exchange.vhost.as_bytes(), "a vhost name")?;
    put_u16_prefixed(&mut out, exchange.exchange.as_bytes(), "an exchange name")?;
    Ok(out)
}

/// `held` key: `prefix | due | id`.
fn held_key(prefix: &[u8], due: u64, id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 16);
    key.put_slice(prefix);
    key.put_u64(due);
    key.put_u64(id);
    key
}

/// `held-ids` key: `prefix | id`.
fn id_key(prefix: &[u8], id: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(prefix.len() + 8);
    key.put_slice(prefix);
    key.put_u64(id);
    key
}

/// `held-meta` key of an exchange's count.
fn count_key(prefix: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + prefix.len());
    key.put_u8(COUNT_TAG);
    key.put_slice(prefix);
    key
}

/// `held` value: `u32 key count | (u16 len | key)* | message`.
fn held_value(message: &Message, keys: &[Vec<u8>]) -> StoreResult<Vec<u8>> {
    let keys_len: usize = keys.iter().map(|k| 2 + k.len()).sum();
    let mut out = Vec::with_capacity(4 + keys_len + codec::encoded_len(message));
    let count = u32::try_from(keys.len()).map_err(|_| too_long("a key list", keys.len()))?;
    out.put_u32(count);
    for key in keys {
        put_u16_prefixed(&mut out, key, "a CC key")?;
    }
    codec::encode(message, &mut out);
    Ok(out)
}

fn be_u64(bytes: &[u8], what: &str) -> StoreResult<u64> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 8 bytes")))
}

/// A held message from its `held` key and value.
fn held_record(prefix: &[u8], key: &[u8], value: &[u8]) -> StoreResult<HeldRecord> {
    let tail = key
        .strip_prefix(prefix)
        .filter(|tail| tail.len() == 16)
        .ok_or_else(|| StoreError::Corrupt("held key of another exchange or length".into()))?;
    let (due, id) = tail.split_at(8);
    let (due, id) = (be_u64(due, "held due")?, be_u64(id, "held id")?);
    // The message owns one copy of the value (a fjall slice would pin its whole block).
    let value = Bytes::copy_from_slice(value);
    let corrupt = || StoreError::Corrupt("held value runs past its record".into());
    let count = value.get(..4).ok_or_else(corrupt)?;
    let count = u32::from_be_bytes([count[0], count[1], count[2], count[3]]);
    let mut at = 4;
    let mut keys = Vec::new();
    for _ in 0..count {
        let len = value.get(at..at + 2).ok_or_else(corrupt)?;
        let len = u16::from_be_bytes([len[0], len[1]]) as usize;
        at += 2;
        keys.push(value.get(at..at + len).ok_or_else(corrupt)?.to_vec());
        at += len;
    }
    let (message, used) = codec::decode(&value.slice(at..))?;
    if at + used != value.len() {
        return Err(StoreError::Corrupt(
            "held value has bytes after its message".into(),
        ));
    }
    Ok(HeldRecord {
        id: HeldId(id),
        due,
        message,
        keys,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::clock::NEVER;
    use crate::protocol::{Properties, ShortStr};
    use crate::store::conformance::{self, Reopen};

    use crate::store::scratch::Scratch;

    /// "Reopening" is dropping the store and opening it again over the same directory.
    struct OnDisk {
        dir: Scratch,
        policy: SyncPolicy,
    }

    impl OnDisk {
        fn new(name: &str, policy: SyncPolicy) -> OnDisk {
            OnDisk {
                dir: Scratch::new(name),
                policy,
            }
        }
    }

    impl Reopen for OnDisk {
        type Store = HeldLsm;

        fn reopen(&mut self) -> Arc<HeldLsm> {
            Arc::new(HeldLsm::open(&self.dir.0, self.policy).expect("opens"))
        }
    }

    fn exchange(vhost: &str, name: &str) -> ExchangeKey {
        ExchangeKey {
            vhost: vhost.into(),
            exchange: name.into(),
        }
    }

    fn message(routing_key: &str, body: Vec<u8>) -> Message {
        Message::new(
            &ShortStr::copy_from_str("delayed").expect("short"),
            &ShortStr::copy_from_str(routing_key).expect("short"),
            &Properties::parse(Bytes::from_static(&[0x00, 0x00])).expect("empty"),
            &Bytes::from(body),
        )
    }

    fn ids(records: &[HeldRecord]) -> Vec<HeldId> {
        records.iter().map(|r| r.id).collect()
    }

    #[test]
    fn passes_the_held_conformance_suite_syncing_always() {
        conformance::run_held(&mut || OnDisk::new("always", SyncPolicy::Always));
    }

    #[test]
    fn passes_the_held_conformance_suite_syncing_on_a_timer() {
        let every = SyncPolicy::Interval(Duration::from_millis(5));
        conformance::run_held(&mut || OnDisk::new("interval", every));
    }

    #[test]
    fn a_hundred_thousand_held_messages_count_and_page_right_after_reopen() {
        let mut disk = OnDisk::new("100k", SyncPolicy::Always);
        let (x, other) = (exchange("/", "x"), exchange("/", "other"));
        let store = disk.reopen();
        const N: u64 = 100_000;
        let started = Instant::now();
        let mut held = Vec::new();
        for i in 0..N {
            // Due times out of hold order, with ties.
            let due = 1_000 + (i * 7_919) % (N / 2);
            let (id, _) = store
                .hold(&x, due, &message("k", i.to_be_bytes().to_vec()), &[])
                .expect("hold");
            held.push((due, id));
        }
        store
            .hold(&other, 0, &message("o", b"o".to_vec()), &[])
            .expect("hold");
        store.sync().expect("sync");
        let filled = started.elapsed();
        drop(store);
        let started = Instant::now();
        let store = disk.reopen();
        let opened = started.elapsed();
        let count = store.count(&x).expect("count");
        let first = store.page(&x, None, NEVER, 100).expect("page");
        let reopened = started.elapsed();
        eprintln!(
            "100k held: filled in {filled:?}, reopen {opened:?}, + count + first page {reopened:?}"
        );
        assert_eq!(count, N);
        assert_eq!(store.count(&other).expect("count"), 1);
        held.sort();
        let want: Vec<HeldId> = held.iter().take(100).map(|(_, id)| *id).collect();
        assert_eq!(ids(&first), want, "the 100 due first, in (due, id) order");
        assert_eq!(first[0].due, held[0].0);
    }

    #[test]
    fn exchanges_whose_names_are_prefixes_of_each_other_are_kept_apart() {
        let mut disk = OnDisk::new("prefixes", SyncPolicy::Always);
        let store = disk.reopen();
        // Same bytes once joined, told apart only by the length prefixes.
        let (a, ab, joined) = (exchange("v", "a"), exchange("v", "ab"), exchange("va", "b"));
        let mut in_a = Vec::new();
        for due in [30, 10, 20] {
            in_a.push(
                store
                    .hold(&a, due, &message("a", vec![due as u8]), &[])
                    .expect("hold")
                    .0,
            );
            store
                .hold(&ab, due, &message("ab", vec![due as u8]), &[])
                .expect("hold");
            store
                .hold(&joined, due, &message("vab", vec![]), &[])
                .expect("hold");
        }
        store.sync().expect("sync");
        drop(store);
        let store = disk.reopen();
        for x in [&a, &ab, &joined] {
            assert_eq!(store.count(x).expect("count"), 3, "{x:?}");
        }
        let first = store.page(&a, None, 20, 10).expect("page");
        assert_eq!(ids(&first), [in_a[1], in_a[2]], "due by 20, in due order");
        assert!(first.iter().all(|r| r.message.routing_key() == "a"));
        let cursor = first.last().map(|r| (r.due, r.id));
        let rest = store.page(&a, cursor, NEVER, 10).expect("page");
        assert_eq!(ids(&rest), [in_a[0]], "after the cursor, none of ab's");
        assert!(store.page(&a, cursor, 20, 10).expect("page").is_empty());
        // Releasing under the wrong exchange does nothing.
        store.release(&ab, in_a[0]).expect("release elsewhere");
        assert_eq!(store.count(&a).expect("count"), 3);
        store.forget_exchange(&a).expect("forget");
        store.sync().expect("sync");
        drop(store);
        let store = disk.reopen();
        assert_eq!(store.count(&a).expect("count"), 0);
        assert!(store.page(&a, None, NEVER, 10).expect("page").is_empty());
        assert_eq!(store.page(&ab, None, NEVER, 10).expect("page").len(), 3);
        assert_eq!(store.page(&joined, None, NEVER, 10).expect("page").len(), 3);
    }

    #[test]
    fn due_times_beyond_two_to_the_32_keep_their_order() {
        let mut disk = OnDisk::new("far", SyncPolicy::Always);
        let store = disk.reopen();
        let x = exchange("/", "x");
        let dues = [NEVER, 1 << 32, (1 << 32) - 1, u64::MAX - 1, 1 << 63, 5];
        for due in dues {
            store
                .hold(&x, due, &message("k", due.to_be_bytes().to_vec()), &[])
                .expect("hold");
        }
        store.sync().expect("sync");
        drop(store);
        let store = disk.reopen();
        let back: Vec<u64> = store
            .page(&x, None, NEVER, 10)
            .expect("page")
            .iter()
            .map(|r| r.due)
            .collect();
        let mut sorted = dues.to_vec();
        sorted.sort_unstable();
        assert_eq!(back, sorted);
        assert_eq!(
            store.page(&x, None, 1 << 32, 10).expect("page").len(),
            3,
            "the horizon compares all 64 bits"
        );
    }

    #[test]
    fn holds_from_several_threads_share_syncs_and_get_dense_marks() {
        let mut disk = OnDisk::new("group", SyncPolicy::Always);
        let store = disk.reopen();
        const THREADS: usize = 4;
        const EACH: usize = 300;
        let marks: Vec<u64> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let store = &store;
                    s.spawn(move || {
                        let x = exchange("/", &format!("x{t}"));
                        (0..EACH)
                            .map(|i| {
                                let (_, mark) = store
                                    .hold(&x, i as u64, &message("k", vec![0; 200]), &[])
                                    .expect("hold");
                                mark.0
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().expect("no panic"))
                .collect()
        });
        let mut sorted = marks.clone();
        sorted.sort_unstable();
        let writes = (THREADS * EACH) as u64;
        assert_eq!(
            sorted,
            (1..=writes).collect::<Vec<_>>(),
            "one mark per write"
        );
        assert_eq!(store.sync().expect("sync"), SyncMark(writes));
        assert_eq!(store.durability().borrow().synced, SyncMark(writes));
        let persists = store.shared.sync.lock().persists;
        eprintln!("{writes} concurrent holds, {persists} syncs");
        assert!(persists < writes, "{persists} syncs for {writes} writes");
        for t in 0..THREADS {
            let x = exchange("/", &format!("x{t}"));
            assert_eq!(store.count(&x).expect("count"), EACH as u64);
        }
    }

    #[test]
    fn ids_go_on_after_a_reopen_even_when_nothing_is_held() {
        let mut disk = OnDisk::new("ids", SyncPolicy::Always);
        let x = exchange("/", "x");
        let store = disk.reopen();
        let (first, _) = store.hold(&x, 1, &message("k", vec![]), &[]).expect("hold");
        let (second, _) = store.hold(&x, 1, &message("k", vec![]), &[]).expect("hold");
        store.release(&x, first).expect("release");
        store.release(&x, second).expect("release");
        let again = store.release(&x, second).expect("releasing twice is fine");
        assert_eq!(
            again,
            store.sync().expect("sync"),
            "nothing more was written"
        );
        drop(store);
        let store = disk.reopen();
        assert_eq!(store.count(&x).expect("count"), 0);
        let (third, _) = store.hold(&x, 1, &message("k", vec![]), &[]).expect("hold");
        assert!(third > second, "{third:?} after {second:?}");
    }

    /// Waits (bounded) until `store` reports `mark` durable.
    fn durable(store: &HeldLsm, mark: SyncMark) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.durability().borrow().synced < mark {
            assert!(Instant::now() < deadline, "{mark:?} never became durable");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn on_a_timer_a_write_counts_as_durable_once_written_and_is_kept_on_drop() {
        let mut disk = OnDisk::new("timer", SyncPolicy::Interval(Duration::from_secs(3600)));
        let x = exchange("/", "x");
        let store = disk.reopen();
        let (_, mark) = store
            .hold(&x, 7, &message("k", vec![1]), &[b"cc".to_vec()])
            .expect("hold");
        // Durable as this policy counts it once the writer thread has committed it, long
        // before the hour's sync.
        durable(&store, mark);
        drop(store);
        let store = disk.reopen();
        let back = store.page(&x, None, NEVER, 10).expect("page");
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].keys, [b"cc".to_vec()]);
        assert_eq!(back[0].message.body(), &[1]);
    }

    #[test]
    fn after_a_failure_writes_are_refused_and_the_failure_is_published() {
        let mut disk = OnDisk::new("failed", SyncPolicy::Always);
        let x = exchange("/", "x");
        let store = disk.reopen();
        let (_, mark) = store.hold(&x, 1, &message("k", vec![]), &[]).expect("hold");
        store.sync().expect("sync");
        store.shared.fail("the disk went away".into());
        let now = *store.durability().borrow();
        assert!(now.failed);
        assert_eq!(now.synced, mark, "what was synced stays synced");
        let err = store
            .hold(&x, 1, &message("k", vec![]), &[])
            .expect_err("refused");
        assert!(matches!(err, StoreError::Failed(_)), "{err}");
        assert!(matches!(store.sync(), Err(StoreError::Failed(_))));
        assert_eq!(store.count(&x).expect("reads still work"), 1);
    }

    /// Where the child of [`a_process_crash_loses_nothing_reported_durable_even_unsynced`] writes.
    const CRASH_DIR: &str = "WARREN_HELD_CRASH_DIR";
    const CRASH_HOLDS: u64 = 3_000;

    /// The child's part of [`a_process_crash_loses_nothing_reported_durable_even_unsynced`]:
    /// holds, waits until it is reported durable, then aborts.
    fn holds_then_aborts(dir: &std::ffi::OsStr) -> ! {
        // Never synced by the store: only what was handed to the OS survives.
        let store = HeldLsm::open(
            Path::new(&dir),
            SyncPolicy::Interval(Duration::from_secs(3600)),
        )
        .expect("open");
        let (a, ab) = (exchange("/", "a"), exchange("/", "ab"));
        let mut last = SyncMark::default();
        for i in 0..CRASH_HOLDS {
            let (id, _) = store
                .hold(&a, i, &message("a", vec![1; 100]), &[])
                .expect("hold");
            (_, last) = store
                .hold(&ab, i, &message("ab", vec![2; 100]), &[])
                .expect("hold");
            if i % 3 == 0 {
                last = store.release(&a, id).expect("release");
            }
        }
        // Everything reported durable (committed to the OS, never synced) must survive.
        durable(&store, last);
        std::process::abort();
    }

    #[test]
    fn a_process_crash_loses_nothing_reported_durable_even_unsynced() {
        // Runs itself again as the child (with `CRASH_DIR` set), then reads what it left.
        if let Some(dir) = std::env::var_os(CRASH_DIR) {
            holds_then_aborts(&dir);
        }
        let dir = Scratch::new("crash");
        let status = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "store::held_disk::tests::a_process_crash_loses_nothing_reported_durable_even_unsynced",
                "--test-threads=1",
            ])
            .env(CRASH_DIR, &dir.0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("child runs");
        assert!(!status.success(), "the child aborted: {status}");
        let store = HeldLsm::open(&dir.0, SyncPolicy::Always).expect("opens after the crash");
        let (a, ab) = (exchange("/", "a"), exchange("/", "ab"));
        let kept = CRASH_HOLDS - CRASH_HOLDS.div_ceil(3);
        assert_eq!(store.count(&a).expect("count"), kept);
        assert_eq!(store.count(&ab).expect("count"), CRASH_HOLDS);
        let in_a = store.page(&a, None, NEVER, 10_000).expect("page");
        assert_eq!(
            in_a.len() as u64,
            kept,
            "the count agrees with what is held"
        );
        assert!(
            in_a.iter().all(|r| r.due % 3 != 0),
            "released ones stay released"
        );
        let (fresh, _) = store.hold(&a, 0, &message("a", vec![]), &[]).expect("hold");
        let highest = in_a.iter().map(|r| r.id).max().expect("some");
        assert!(
            fresh > highest,
            "ids go on after a crash: {fresh:?} > {highest:?}"
        );
    }
}
