//! The broker's own message log: a message store on disk, as an append-only log of
//! checksummed records in segment files (the store itself follows).

#![allow(dead_code)]

mod record;
mod segment;
