//! A message and held store whose syncs the test drives: writes are kept (in a
//! [`MemoryStore`]) at once, but a write's mark becomes durable only when the test calls
//! [`FailingStore::sync_now`], and a sync can be made to fail — after which the store reports
//! `Durability { failed: true }` and refuses every write, as a disk store does after an I/O
//! error. For the broker's side of the contract: what it confirms, nacks and replies while
//! its store is slow or broken.
//!
//! Definitions stay in a plain [`MemoryStore`] ([`FailingStore::stores`]), so declares are
//! never held back by the test's store.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use warren::broker::Message;
use warren::store::memory::MemoryStore;
use warren::store::{
    Durability, Durable, ExchangeKey, HeldCursor, HeldId, HeldRecord, HeldStore, MessageId,
    MessageStore, QueueKey, Recovered, StoreError, StoreResult, Stores, SyncMark,
};

#[derive(Debug, Default)]
struct State {
    /// The last mark handed out.
    written: u64,
    /// The last mark made durable.
    synced: u64,
    /// The next sync fails.
    fail_next: bool,
    /// A sync failed: writes are refused.
    failed: bool,
}

/// Messages and held messages in memory, durable only when the test says so.
#[derive(Debug)]
pub struct FailingStore {
    inner: MemoryStore,
    state: Mutex<State>,
    durability: watch::Sender<Durability>,
}

impl FailingStore {
    /// A store with nothing synced until [`FailingStore::sync_now`].
    pub fn new() -> Arc<FailingStore> {
        Arc::new(FailingStore {
            inner: MemoryStore::default(),
            state: Mutex::default(),
            durability: watch::Sender::new(Durability::default()),
        })
    }

    /// Stores for a broker: definitions in plain memory, messages and held messages here.
    pub fn stores(self: &Arc<Self>) -> Stores {
        Stores::new(Arc::new(MemoryStore::default()), self.clone(), self.clone())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("not poisoned")
    }

    /// Syncs everything written so far: its marks become durable — or, if
    /// [`FailingStore::fail_next_sync`] was called, the sync fails and nothing written since
    /// the last good sync ever becomes durable.
    pub fn sync_now(&self) -> StoreResult<SyncMark> {
        let mut st = self.state();
        if st.fail_next || st.failed {
            st.fail_next = false;
            st.failed = true;
            self.durability.send_replace(Durability {
                synced: SyncMark(st.synced),
                failed: true,
            });
            return Err(StoreError::Failed("the test failed this sync".into()));
        }
        st.synced = st.written;
        self.durability.send_replace(Durability {
            synced: SyncMark(st.synced),
            failed: false,
        });
        Ok(SyncMark(st.synced))
    }

    /// Makes the next sync fail.
    pub fn fail_next_sync(&self) {
        self.state().fail_next = true;
    }

    /// How many writes the broker has made.
    pub fn written(&self) -> u64 {
        self.state().written
    }

    /// How many of them are durable.
    pub fn synced(&self) -> u64 {
        self.state().synced
    }

    /// Whether a sync failed.
    pub fn has_failed(&self) -> bool {
        self.state().failed
    }

    /// Waits (polling, up to `patience`) until the broker has made at least `writes` writes;
    /// false if it has not by then.
    pub async fn wait_for_writes(&self, writes: u64, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while self.written() < writes {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Runs `write` on the inner store unless this one failed, and hands out the next mark
    /// (under the one lock, so marks follow the order of the writes).
    fn write_marked<T>(
        &self,
        write: impl FnOnce(&MemoryStore) -> StoreResult<T>,
    ) -> StoreResult<(T, SyncMark)> {
        let mut st = self.state();
        if st.failed {
            return Err(StoreError::Failed("an earlier sync failed".into()));
        }
        let out = write(&self.inner)?;
        st.written += 1;
        Ok((out, SyncMark(st.written)))
    }
}

impl Durable for FailingStore {
    fn sync(&self) -> StoreResult<SyncMark> {
        self.sync_now()
    }

    fn durability(&self) -> watch::Receiver<Durability> {
        self.durability.subscribe()
    }
}

impl MessageStore for FailingStore {
    fn append(
        &self,
        message: &Message,
        queues: &[(&QueueKey, u64)],
    ) -> StoreResult<(MessageId, SyncMark)> {
        self.write_marked(|s| s.append(message, queues).map(|(id, _)| id))
    }

    fn remove(&self, queue: &QueueKey, id: MessageId) -> StoreResult<SyncMark> {
        self.write_marked(|s| s.remove(queue, id)).map(|(_, m)| m)
    }

    fn delivered(&self, queue: &QueueKey, id: MessageId) -> StoreResult<SyncMark> {
        self.write_marked(|s| s.delivered(queue, id))
            .map(|(_, m)| m)
    }

    fn forget_queue(&self, queue: &QueueKey) -> StoreResult<SyncMark> {
        self.write_marked(|s| s.forget_queue(queue)).map(|(_, m)| m)
    }

    fn recover(&self, queue: &QueueKey) -> StoreResult<Vec<Recovered>> {
        self.inner.recover(queue)
    }
}

impl HeldStore for FailingStore {
    fn hold(
        &self,
        exchange: &ExchangeKey,
        due: u64,
        message: &Message,
        keys: &[Vec<u8>],
    ) -> StoreResult<(HeldId, SyncMark)> {
        self.write_marked(|s| s.hold(exchange, due, message, keys).map(|(id, _)| id))
    }

    fn release(&self, exchange: &ExchangeKey, id: HeldId) -> StoreResult<SyncMark> {
        self.write_marked(|s| s.release(exchange, id))
            .map(|(_, m)| m)
    }

    fn page(
        &self,
        exchange: &ExchangeKey,
        after: HeldCursor,
        until: u64,
        limit: usize,
    ) -> StoreResult<Vec<HeldRecord>> {
        self.inner.page(exchange, after, until, limit)
    }

    fn count(&self, exchange: &ExchangeKey) -> StoreResult<u64> {
        self.inner.count(exchange)
    }

    fn forget_exchange(&self, exchange: &ExchangeKey) -> StoreResult<SyncMark> {
        self.write_marked(|s| s.forget_exchange(exchange))
            .map(|(_, m)| m)
    }
}
