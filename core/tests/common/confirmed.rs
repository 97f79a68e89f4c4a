//! Publishing with confirms, one window at a time, with an id in each body: how the
//! memory tests tell afterwards that every message the broker confirmed was delivered.

// Every test crate that has `mod common;` compiles this; not every one uses it.
#![allow(dead_code)]

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use lapin::options::BasicPublishOptions;
use lapin::publisher_confirm::Confirmation;
use lapin::{BasicProperties, Channel};

/// Publishes one message per id of `ids` to `queue` through the default exchange, each a
/// `body_len`-byte body starting with the id (big-endian), counting each publish in
/// `published`; then waits for their confirms. The ids the broker acked, or `None` once the
/// channel failed (the connection closed).
pub async fn publish_window(
    ch: &Channel,
    queue: &str,
    ids: Range<u64>,
    body_len: usize,
    published: &AtomicU64,
) -> Option<Vec<u64>> {
    let mut window = Vec::with_capacity(ids.clone().count());
    for id in ids {
        let mut body = vec![0u8; body_len.max(8)];
        body[..8].copy_from_slice(&id.to_be_bytes());
        let confirm = ch
            .basic_publish(
                "",
                queue,
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .ok()?;
        published.fetch_add(1, Ordering::Relaxed);
        window.push((id, confirm));
    }
    let mut acked = Vec::with_capacity(window.len());
    for (id, confirm) in window {
        if let Confirmation::Ack(_) = confirm.await.ok()? {
            acked.push(id);
        }
    }
    Some(acked)
}

/// The id a [`publish_window`] body starts with.
pub fn id_of(body: &[u8]) -> u64 {
    u64::from_be_bytes(body[..8].try_into().expect("an id"))
}
