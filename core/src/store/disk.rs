//! The disk stores of a data directory, opened together.
//!
//! ```text
//! <data-dir>/
//!   FORMAT, LOCK          the directory's stamp and holder (`data_dir`)
//!   definitions.redb      durable exchanges, queues, bindings (`definitions_disk`)
//!   messages/             the message log's segment files (`log`)
//!   held/                 delayed messages by due time (`held_disk`)
//! ```

use std::path::Path;
use std::sync::Arc;

use super::definitions_disk::DefinitionsDb;
use super::held_disk::HeldLsm;
use super::log::{LogOptions, MessageLog};
use super::{StoreResult, Stores, SyncPolicy};

/// Opens (creating them on first start) the three stores under `dir`, which the caller has
/// claimed with [`super::data_dir::DataDir`]. Blocking: call it off the async reactor.
/// Opening the message log recovers it (torn tails cut, damaged segments moved aside).
pub fn open(dir: &Path, sync: SyncPolicy) -> StoreResult<Stores> {
    let definitions = DefinitionsDb::open(&dir.join("definitions.redb"))?;
    let messages = MessageLog::open(
        &dir.join("messages"),
        LogOptions {
            sync,
            ..LogOptions::default()
        },
    )?;
    let held = HeldLsm::open(&dir.join("held"), sync)?;
    Ok(Stores::new(
        Arc::new(definitions),
        Arc::new(messages),
        Arc::new(held),
    ))
}
