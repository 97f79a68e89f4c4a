//! Start-up: what the stores kept, read in one blocking step ([`Kept::read`], run off the
//! async reactor), then applied to a fresh broker ([`Broker::restore`]) before any listener
//! accepts a client.
//!
//! Order matters and is the store's: vhosts, users and permissions first, then exchanges
//! and queues before bindings, so every binding finds its ends; the vhosts' drivers wait until all is back, so that nothing
//! expires or fires into a half-restored vhost; each queue gets its messages back in their stored order; each
//! durable delayed exchange its held messages. What cannot be restored is logged with what
//! and why, and the start goes on — a damaged definition never keeps the broker down, and
//! is never deleted silently (only a binding whose ends are both gone is forgotten).

use rustc_hash::FxHashMap;

use super::Broker;
use super::delayed::DELAYED_TYPE;
use crate::store::{
    Definition, DefinitionKey, ExchangeKey, HeldRecord, QueueKey, Recovered, StoreResult, Stores,
};

/// How many held messages are read per page.
const HELD_PAGE: usize = 10_000;

/// Everything the stores kept, as read at start.
#[derive(Debug, Default)]
pub struct Kept {
    definitions: Vec<Definition>,
    messages: FxHashMap<QueueKey, Vec<Recovered>>,
    held: FxHashMap<ExchangeKey, Vec<HeldRecord>>,
}

/// What a start restored, for its log line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    /// Vhosts recorded (not counting `/` when it was never recorded).
    pub vhosts: usize,
    /// Users restored.
    pub users: usize,
    /// Exchanges re-created.
    pub exchanges: usize,
    /// Queues re-created.
    pub queues: usize,
    /// Bindings replayed.
    pub bindings: usize,
    /// Messages put back into queues.
    pub messages: usize,
    /// Messages put back into delayed exchanges.
    pub held: usize,
    /// Definitions that could not be restored (each logged).
    pub failed: usize,
}

impl Kept {
    /// Reads every definition, the messages of every stored queue and the held messages of
    /// every stored delayed exchange. Blocking I/O: call it off the reactor.
    pub fn read(stores: &Stores) -> StoreResult<Kept> {
        let definitions = stores.definitions.load()?;
        let mut kept = Kept::default();
        for d in &definitions {
            match d {
                Definition::Queue(q) => {
                    let key = QueueKey {
                        vhost: q.vhost.as_str().into(),
                        queue: q.name.as_str().into(),
                    };
                    let messages = stores.messages.recover(&key)?;
                    kept.messages.insert(key, messages);
                }
                Definition::Exchange(x) if x.kind == DELAYED_TYPE => {
                    let key = ExchangeKey {
                        vhost: x.vhost.clone(),
                        exchange: x.name.clone(),
                    };
                    let mut all = Vec::new();
                    let mut cursor = None;
                    loop {
                        let page = stores.held.page(&key, cursor, u64::MAX, HELD_PAGE)?;
                        let Some(last) = page.last() else {
                            break;
                        };
                        cursor = Some((last.due, last.id));
                        let full = page.len() == HELD_PAGE;
                        all.extend(page);
                        if !full {
                            break;
                        }
                    }
                    kept.held.insert(key, all);
                }
                _ => {}
            }
        }
        kept.definitions = definitions;
        Ok(kept)
    }
}

impl Broker {
    /// Re-creates what `kept` holds (see the module docs).
    pub fn restore(&self, mut kept: Kept) -> Restored {
        let mut done = Restored::default();
        let mut restoring = Vec::new();
        for d in &kept.definitions {
            let vhost_name = match d {
                Definition::VHost(v) => {
                    match self.add_vhost_as(v.clone()) {
                        Ok(_) => done.vhosts += 1,
                        Err(e) => {
                            tracing::error!(vhost = %v.name, "stored vhost not restored: {e}");
                            done.failed += 1;
                        }
                    }
                    continue;
                }
                Definition::User(u) => {
                    self.auth
                        .restore_user(crate::auth::User::from_definition(u));
                    done.users += 1;
                    continue;
                }
                Definition::Permission(p) => {
                    if let Err(e) = self.auth.restore_permission(p) {
                        tracing::error!(vhost = %p.vhost, user = %p.user, "stored permissions not restored: {e}");
                        done.failed += 1;
                    }
                    continue;
                }
                Definition::Exchange(x) => &x.vhost,
                Definition::Queue(q) => &q.vhost,
                Definition::Binding(b) => &b.vhost,
            };
            let vhost = match self.add_vhost(vhost_name) {
                Ok(vhost) => {
                    if !restoring
                        .iter()
                        .any(|v: &std::sync::Arc<super::VHost>| std::sync::Arc::ptr_eq(v, &vhost))
                    {
                        // Its drivers wait until everything is back.
                        vhost.set_open(false);
                        restoring.push(vhost.clone());
                    }
                    vhost
                }
                Err(e) => {
                    tracing::error!(vhost = %vhost_name, "stored vhost not restored: {e}");
                    done.failed += 1;
                    continue;
                }
            };
            let result = match d {
                Definition::Exchange(x) => {
                    let key = ExchangeKey {
                        vhost: x.vhost.clone(),
                        exchange: x.name.clone(),
                    };
                    let held = kept.held.remove(&key).unwrap_or_default();
                    let count = held.len();
                    vhost.restore_exchange(x, held).map(|()| {
                        done.exchanges += 1;
                        done.held += count;
                    })
                }
                Definition::Queue(q) => {
                    let key = QueueKey {
                        vhost: q.vhost.as_str().into(),
                        queue: q.name.as_str().into(),
                    };
                    let messages = kept.messages.remove(&key).unwrap_or_default();
                    let count = messages.len();
                    vhost.restore_queue(q, messages).map(|_| {
                        done.queues += 1;
                        done.messages += count;
                    })
                }
                Definition::Binding(b) => vhost.restore_binding(b).map(|()| done.bindings += 1),
                // Applied above, before any vhost is looked up.
                Definition::VHost(_) | Definition::User(_) | Definition::Permission(_) => Ok(()),
            };
            if let Err(e) = result {
                done.failed += 1;
                tracing::error!(vhost = %vhost_name, definition = ?d.key(), "not restored: {e}");
                if let Definition::Binding(b) = d
                    && vhost.exchange(&b.source).is_none()
                {
                    // Its source is gone for good: nothing could ever use it again.
                    let _ = self
                        .stores
                        .definitions
                        .delete(&DefinitionKey::Binding(b.clone()));
                }
            }
        }
        for vhost in restoring {
            vhost.set_open(true);
        }
        done
    }
}
