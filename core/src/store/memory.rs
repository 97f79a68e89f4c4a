//! The in-memory store: every contract of [`crate::store`] kept in the process, behind one
//! mutex. Nothing survives the process; a broker rebuilt in the same process over the same
//! store (a clone of the `Arc`) finds everything — which is what the conformance suite's
//! "reopen" means for it. Every write is durable at once, so the synced mark is always the
//! last written.

use std::collections::{BTreeMap, BTreeSet};

use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use tokio::sync::watch;

use super::{
    Definition, DefinitionKey, DefinitionStore, Durability, Durable, ExchangeKey, HeldCursor,
    HeldId, HeldRecord, HeldStore, MessageId, MessageStore, QueueKey, Recovered, StoreResult,
    SyncMark,
};
use crate::broker::message::Message;

/// One queue's entry for a stored message.
#[derive(Debug)]
struct Entry {
    deadline: u64,
    delivered: bool,
}

#[derive(Debug)]
struct Held {
    message: Message,
    keys: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
struct State {
    /// Definitions with the order each was first put in.
    definitions: FxHashMap<DefinitionKey, (u64, Definition)>,
    next_definition: u64,
    /// Message bodies, shared by every queue entry that names them.
    messages: FxHashMap<MessageId, Message>,
    /// Per queue, entries in append order (ids grow with appends).
    queues: BTreeMap<QueueKey, BTreeMap<MessageId, Entry>>,
    /// Per exchange, held messages by (due, id).
    held: BTreeMap<ExchangeKey, BTreeMap<(u64, HeldId), Held>>,
    next_id: u64,
    written: u64,
}

impl State {
    fn write(&mut self) -> SyncMark {
        self.written += 1;
        SyncMark(self.written)
    }

    /// Drops a message body no queue names any more.
    fn collect(&mut self, id: MessageId) {
        if !self.queues.values().any(|q| q.contains_key(&id)) {
            self.messages.remove(&id);
        }
    }
}

/// Definitions, messages and held messages in memory.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    /// Always at the last write: nothing here waits for a disk.
    durability: watch::Sender<Durability>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            state: Mutex::default(),
            durability: watch::Sender::new(Durability::default()),
        }
    }
}

impl MemoryStore {
    /// Runs `write` on the state, then publishes its mark as durable.
    fn write<T>(&self, write: impl FnOnce(&mut State) -> T) -> (T, SyncMark) {
        let mut st = self.state.lock();
        let out = write(&mut st);
        let mark = st.write();
        self.durability.send_replace(Durability {
            synced: mark,
            failed: false,
        });
        (out, mark)
    }
}

impl Durable for MemoryStore {
    fn sync(&self) -> StoreResult<SyncMark> {
        Ok(SyncMark(self.state.lock().written))
    }

    fn durability(&self) -> watch::Receiver<Durability> {
        self.durability.subscribe()
    }
}

impl DefinitionStore for MemoryStore {
    fn put(&self, definition: Definition) -> StoreResult<SyncMark> {
        let ((), mark) = self.write(|st| {
            let key = definition.key();
            let order = match st.definitions.get(&key) {
                Some((order, _)) => *order,
                None => {
                    st.next_definition += 1;
                    st.next_definition
                }
            };
            st.definitions.insert(key, (order, definition));
        });
        Ok(mark)
    }

    fn delete(&self, key: &DefinitionKey) -> StoreResult<SyncMark> {
        let (_, mark) = self.write(|st| st.definitions.remove(key));
        Ok(mark)
    }

    fn load(&self) -> StoreResult<Vec<Definition>> {
        let st = self.state.lock();
        let mut all: Vec<&(u64, Definition)> = st.definitions.values().collect();
        all.sort_by_key(|(order, d)| (d.load_rank(), *order));
        Ok(all.into_iter().map(|(_, d)| d.clone()).collect())
    }
}

impl MessageStore for MemoryStore {
    fn append(
        &self,
        message: &Message,
        queues: &[(&QueueKey, u64)],
    ) -> StoreResult<(MessageId, SyncMark)> {
        Ok(self.write(|st| {
            st.next_id += 1;
            let id = MessageId(st.next_id);
            st.messages.insert(id, message.clone());
            for (queue, deadline) in queues {
                st.queues.entry((*queue).clone()).or_default().insert(
                    id,
                    Entry {
                        deadline: *deadline,
                        delivered: false,
                    },
                );
            }
            id
        }))
    }

    fn remove(&self, queue: &QueueKey, id: MessageId) -> StoreResult<SyncMark> {
        let ((), mark) = self.write(|st| {
            if let Some(q) = st.queues.get_mut(queue) {
                q.remove(&id);
            }
            st.collect(id);
        });
        Ok(mark)
    }

    fn delivered(&self, queue: &QueueKey, id: MessageId) -> StoreResult<SyncMark> {
        let ((), mark) = self.write(|st| {
            if let Some(entry) = st.queues.get_mut(queue).and_then(|q| q.get_mut(&id)) {
                entry.delivered = true;
            }
        });
        Ok(mark)
    }

    fn forget_queue(&self, queue: &QueueKey) -> StoreResult<SyncMark> {
        let ((), mark) = self.write(|st| {
            let ids: BTreeSet<MessageId> = st
                .queues
                .remove(queue)
                .map(|q| q.into_keys().collect())
                .unwrap_or_default();
            for id in ids {
                st.collect(id);
            }
        });
        Ok(mark)
    }

    fn recover(&self, queue: &QueueKey) -> StoreResult<Vec<Recovered>> {
        let st = self.state.lock();
        let Some(entries) = st.queues.get(queue) else {
            return Ok(Vec::new());
        };
        Ok(entries
            .iter()
            .filter_map(|(id, entry)| {
                Some(Recovered {
                    id: *id,
                    message: st.messages.get(id)?.clone(),
                    deadline: entry.deadline,
                    redelivered: entry.delivered,
                })
            })
            .collect())
    }
}

impl HeldStore for MemoryStore {
    fn hold(
        &self,
        exchange: &ExchangeKey,
        due: u64,
        message: &Message,
        keys: &[Vec<u8>],
    ) -> StoreResult<(HeldId, SyncMark)> {
        Ok(self.write(|st| {
            st.next_id += 1;
            let id = HeldId(st.next_id);
            st.held.entry(exchange.clone()).or_default().insert(
                (due, id),
                Held {
                    message: message.clone(),
                    keys: keys.to_vec(),
                },
            );
            id
        }))
    }

    fn release(&self, exchange: &ExchangeKey, id: HeldId) -> StoreResult<SyncMark> {
        let ((), mark) = self.write(|st| {
            if let Some(held) = st.held.get_mut(exchange) {
                held.retain(|(_, held_id), _| *held_id != id);
            }
        });
        Ok(mark)
    }

    fn page(
        &self,
        exchange: &ExchangeKey,
        after: HeldCursor,
        until: u64,
        limit: usize,
    ) -> StoreResult<Vec<HeldRecord>> {
        let st = self.state.lock();
        let Some(held) = st.held.get(exchange) else {
            return Ok(Vec::new());
        };
        let from = match after {
            Some(cursor) => std::ops::Bound::Excluded(cursor),
            None => std::ops::Bound::Unbounded,
        };
        Ok(held
            .range((from, std::ops::Bound::Unbounded))
            .take_while(|((due, _), _)| *due <= until)
            .take(limit)
            .map(|((due, id), h)| HeldRecord {
                id: *id,
                due: *due,
                message: h.message.clone(),
                keys: h.keys.clone(),
            })
            .collect())
    }

    fn count(&self, exchange: &ExchangeKey) -> StoreResult<u64> {
        Ok(self
            .state
            .lock()
            .held
            .get(exchange)
            .map_or(0, |h| h.len() as u64))
    }

    fn forget_exchange(&self, exchange: &ExchangeKey) -> StoreResult<SyncMark> {
        let (_, mark) = self.write(|st| st.held.remove(exchange));
        Ok(mark)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::conformance::{self, Reopen};

    /// "Reopening" the in-memory store is handing out the same one again.
    struct SameProcess(Arc<MemoryStore>);

    impl Reopen for SameProcess {
        type Store = MemoryStore;

        fn reopen(&mut self) -> Arc<MemoryStore> {
            self.0.clone()
        }
    }

    #[test]
    fn passes_the_conformance_suite() {
        conformance::run_all(&mut || SameProcess(Arc::new(MemoryStore::default())));
    }
}
