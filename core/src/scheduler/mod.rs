//! The scheduler: a hierarchical timer wheel that holds pending delayed messages (and, later,
//! anything else that must happen at a millisecond) and hands them back in due order.
//!
//! # Why a wheel, and why this one
//!
//! The delayed exchange keeps up to millions of pending entries, inserts at publish rate, must
//! cancel by id (admin `cancel`, exchange deletion) and fires with millisecond lateness. A
//! `BinaryHeap` cannot cancel in less than O(n); a `BTreeMap<(due, seq), _>` is O(log n) per
//! insert with node allocations and poor locality. A hierarchical wheel (the Linux kernel /
//! tokio design) makes insert and cancel O(1) and firing proportional to the entries fired,
//! at the price of re-filing ("cascading") an entry down a level each time time gets within
//! that level's range — at most once per level, so a 10-year delay is moved six times.
//!
//! The shape, and the reason for each part:
//!
//! - **Injected time.** [`TimerWheel`] never reads a clock: callers pass `u64` millisecond ticks
//!   from an epoch of their choosing to [`TimerWheel::insert`] and [`TimerWheel::advance`].
//!   Tests drive it deterministically; the server drives it from a tokio sleep-until
//!   [`TimerWheel::next_due`].
//! - **11 levels × 64 slots.** Level `L` has slots of `64^L` ms; 11 levels are 66 bits, which
//!   covers every `u64` due time. So there is no overflow list and no clamping: any delay
//!   (10 years is ~2^38 ms, level 6) is filed directly, and the extra top levels cost only
//!   slot heads (~5.6 KiB per wheel), never anything per entry.
//! - **Occupancy bitmaps.** One `u64` per level. The slots still occupied at a level are
//!   always *ahead* of the cursor (an entry is cascaded when the cursor reaches its slot), so
//!   the next slot to visit is a `trailing_zeros` away; advancing ten years in one call visits
//!   only occupied slots, never empty milliseconds.
//! - **Slab + intrusive lists.** Entries live in one `Vec` with a free list; each slot is a
//!   doubly-linked list threaded through the entries by `u32` indices. Insert and cancel are
//!   O(1) with no per-entry allocation, and an entry with an 8-byte payload (a `u64`, an
//!   `Arc`, the delayed exchange's one-pointer packed message) is 32 bytes. The payload is
//!   the caller's; the wheel never allocates for it.
//! - **Generation-checked ids.** A [`TimerId`] is a slab index plus the generation of that
//!   slot; freeing bumps the generation, and a slot whose generation is exhausted is retired
//!   rather than reused, so a stale id can never cancel or read someone else's entry.
//! - **Publish order for equal due times, without sequence numbers.** The slot an entry is
//!   filed in depends only on (cursor, due) and a slot is cascaded the moment the cursor
//!   reaches it, so all pending entries of one due time always share one slot list; appending
//!   on insert and on cascade keeps that list in insertion order, and a level-0 slot (one due
//!   time) fires straight off its list. The randomised test checks this against a
//!   `BTreeMap<(due, seq), _>` model.
//! - **Slot counts.** Each list keeps its length (a `u32` per list, ~2.8 KiB per wheel),
//!   changed wherever an entry joins or leaves a list. Since occupied slots never lie behind
//!   the cursor, every slot has an absolute time range, and those ranges are disjoint across
//!   levels: [`TimerWheel::due_counts`] answers "how many fall due before each bound" from
//!   the 704 counts, walking only a slot that a bound cuts (and only if it is small).
//! - **Overdue entries.** An entry inserted with a due time already passed goes to a separate
//!   list that fires, stable-sorted by due (insertion order breaks ties), at the start of the next
//!   [`TimerWheel::advance`] — whatever `now` that call passes. That is how a later storage
//!   layer restores pending messages after a restart: insert them (or use
//!   [`TimerWheel::from_entries`]) in publish order, and the overdue ones fire at boot in due
//!   order, before anything still in the future.
//!
//! # Invariants
//!
//! - The wheel does work proportional to entries inserted, cascaded and fired, never to time
//!   elapsed.
//! - Every entry in wheel level `L` has `due >= cursor` and differs from the cursor first in
//!   level `L`'s six bits; hence all of level `L` is due before anything in level `L + 1`.
//! - Entries fire in (due, insertion) order, within one `advance` and across calls.

mod wheel;

pub use wheel::{DueCounts, EXACT_SLOT_LIMIT, LEVELS, SLOTS_PER_LEVEL, TimerId, TimerWheel};
