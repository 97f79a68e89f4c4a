//! Unit tests for the timer wheel. All time is injected; nothing sleeps or prints.

use super::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

const SECOND: u64 = 1_000;
const TEN_YEARS: u64 = 315_360_000_000;
/// Around 2026 in Unix milliseconds: a realistic epoch for the cursor.
const EPOCH_2026: u64 = 1_780_000_000_000;

/// Advances to `now` and returns (due, payload) in firing order.
fn fire(wheel: &mut TimerWheel<u64>, now: u64) -> Vec<(u64, u64)> {
    let mut fired = Vec::new();
    let count = wheel.advance(now, |_, due, payload| fired.push((due, payload)));
    assert_eq!(count, fired.len());
    fired
}

fn payloads(fired: &[(u64, u64)]) -> Vec<u64> {
    fired.iter().map(|&(_, p)| p).collect()
}

/// Deterministic xorshift64* PRNG.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn entry_with_u64_payload_fits_in_48_bytes() {
    assert!(size_of::<Slot<u64>>() <= 48, "{}", size_of::<Slot<u64>>());
    assert!(size_of::<Slot<Arc<[u8]>>>() <= 48);
    // What the docs state on 64-bit targets.
    #[cfg(target_pointer_width = "64")]
    assert_eq!(size_of::<Slot<u64>>(), 32);
}

#[test]
fn fires_in_due_order_across_levels() {
    let mut wheel = TimerWheel::new(0);
    let dues = [
        5_000_000,
        3,
        70,
        300_000,
        4_100,
        64,
        0,
        1 << 40,
        TEN_YEARS,
        63,
        u64::MAX,
    ];
    let ids: Vec<_> = dues.iter().map(|&d| wheel.insert(d, d)).collect();
    let levels: Vec<_> = ids.iter().map(|&id| wheel.level_of(id).unwrap()).collect();
    assert_eq!(levels, [3, 0, 1, 3, 2, 1, 0, 6, 6, 0, 10]);
    let fired = fire(&mut wheel, u64::MAX);
    let mut expected = dues.to_vec();
    expected.sort_unstable();
    assert_eq!(payloads(&fired), expected);
    assert!(fired.iter().all(|&(due, p)| due == p));
    assert!(wheel.is_empty());
    assert_eq!(wheel.next_due(), None);
}

#[test]
fn equal_due_times_fire_in_insertion_order() {
    let mut wheel = TimerWheel::new(0);
    for payload in 0..10 {
        wheel.insert(1_000 + payload % 2, payload);
        wheel.insert(999, 100 + payload);
    }
    let fired = fire(&mut wheel, 2_000);
    let expected: Vec<u64> = (100..110).chain([0, 2, 4, 6, 8, 1, 3, 5, 7, 9]).collect();
    assert_eq!(payloads(&fired), expected);
}

#[test]
fn equal_due_times_keep_insertion_order_after_cascading_from_high_level() {
    let start = EPOCH_2026;
    let due = start + 30 * 24 * 3_600 * SECOND + 37; // 30 days: level 5 at insertion
    let mut wheel = TimerWheel::new(start);
    let mut expected = Vec::new();
    let mut levels = Vec::new();
    // Insert entries of the same due time as the cursor approaches it, so each batch lands
    // in a lower level than the previous ones, which cascade past it on the way down.
    let mut payload = 0;
    for remaining in [
        due - start,
        20 * 24 * 3_600 * SECOND,
        3_600 * SECOND,
        200_000,
        3_000,
        70,
        5,
        2,
    ] {
        assert!(fire(&mut wheel, due - remaining).is_empty());
        for _ in 0..3 {
            let id = wheel.insert(due, payload);
            levels.push(wheel.level_of(id).unwrap());
            expected.push(payload);
            payload += 1;
        }
        // Neighbours a millisecond earlier and later, inserted in between.
        wheel.insert(due - 1, 1_000 + payload);
        wheel.insert(due + 1, 2_000 + payload);
    }
    assert_eq!(levels.first(), Some(&5));
    assert_eq!(levels.last(), Some(&0));
    assert!(levels.windows(2).all(|w| w[0] >= w[1]));
    let mut distinct = levels.clone();
    distinct.dedup();
    assert!(distinct.len() >= 4, "{levels:?}");
    let fired = fire(&mut wheel, due);
    assert_eq!(fired.len(), 8 + expected.len());
    assert!(fired[..8].iter().all(|&(d, _)| d == due - 1));
    assert_eq!(payloads(&fired[8..]), expected);
    assert!(fired[8..].iter().all(|&(d, _)| d == due));
    assert_eq!(fire(&mut wheel, due + 1).len(), 8);
}

#[test]
fn nothing_fires_before_due() {
    for due in [
        1,
        63,
        64,
        65,
        4_095,
        4_096,
        262_144,
        1 << 30,
        EPOCH_2026 + 7,
    ] {
        let mut wheel = TimerWheel::new(0);
        wheel.insert(due, due);
        assert!(fire(&mut wheel, due - 1).is_empty(), "fired before {due}");
        assert_eq!(wheel.len(), 1);
        assert!(wheel.next_due().unwrap() <= due);
        assert!(wheel.next_due().unwrap() > due - 1);
        assert_eq!(fire(&mut wheel, due), [(due, due)]);
    }
}

#[test]
fn jump_ten_years_ahead_in_one_advance() {
    let mut wheel = TimerWheel::new(EPOCH_2026);
    let mut rng = XorShift(7);
    let mut dues = Vec::new();
    for payload in 0..10_000 {
        let due = EPOCH_2026 + rng.below(TEN_YEARS);
        dues.push((due, payload));
        wheel.insert(due, payload);
    }
    let fired = fire(&mut wheel, EPOCH_2026 + TEN_YEARS);
    dues.sort_by_key(|&(due, _)| due); // stable: insertion order among equal dues
    assert_eq!(fired, dues);
    assert!(wheel.is_empty());
    assert_eq!(wheel.elapsed(), EPOCH_2026 + TEN_YEARS + 1);
}

#[test]
fn one_millisecond_steps_across_level_boundaries() {
    let dues = [
        0, 1, 62, 63, 64, 65, 127, 128, 4_095, 4_096, 4_097, 8_191, 8_192, 262_143, 262_144,
        262_145,
    ];
    let mut wheel = TimerWheel::new(0);
    for &due in &dues {
        wheel.insert(due, due);
    }
    let mut fired_at = Vec::new();
    for now in 0..=262_200 {
        for (due, _) in fire(&mut wheel, now) {
            fired_at.push((due, now));
        }
        if let Some(next) = wheel.next_due() {
            assert!(next > now);
        }
    }
    assert_eq!(fired_at, dues.iter().map(|&d| (d, d)).collect::<Vec<_>>());
}

#[test]
fn one_millisecond_steps_across_top_level_boundary() {
    // The cursor crosses 2^60 (a level-10 digit change) one millisecond at a time.
    let base = (1u64 << 60) - 3;
    let mut wheel = TimerWheel::new(base);
    for due in base..base + 6 {
        wheel.insert(due, due);
    }
    for now in base..base + 6 {
        assert_eq!(fire(&mut wheel, now), [(now, now)]);
    }
}

#[test]
fn cancel_before_cascade() {
    let mut wheel = TimerWheel::new(0);
    let a = wheel.insert(10_000, 1);
    let b = wheel.insert(10_000, 2);
    let c = wheel.insert(10_000, 3);
    assert_eq!(wheel.level_of(b), Some(2));
    assert_eq!(wheel.cancel(b), Some(2));
    assert_eq!(wheel.len(), 2);
    assert_eq!(fire(&mut wheel, 9_999), []);
    assert_eq!(wheel.level_of(a), Some(0));
    assert_eq!(fire(&mut wheel, 10_000), [(10_000, 1), (10_000, 3)]);
    assert_eq!(wheel.cancel(c), None);
}

#[test]
fn cancel_after_cascade() {
    let mut wheel = TimerWheel::new(0);
    let ids: Vec<_> = (0..5).map(|p| wheel.insert(10_000, p)).collect();
    wheel.insert(20_000, 99);
    assert_eq!(wheel.level_of(ids[0]), Some(2));
    assert!(fire(&mut wheel, 9_990).is_empty());
    assert_eq!(wheel.level_of(ids[0]), Some(0));
    // Head, middle and tail of the cascaded slot list.
    assert_eq!(wheel.cancel(ids[0]), Some(0));
    assert_eq!(wheel.cancel(ids[2]), Some(2));
    assert_eq!(wheel.cancel(ids[4]), Some(4));
    assert_eq!(fire(&mut wheel, 10_000), [(10_000, 1), (10_000, 3)]);
    // Cancelling everything in a slot clears its occupancy: next is the 20 s entry.
    assert!(wheel.next_due().unwrap() > 10_000);
    assert_eq!(fire(&mut wheel, 20_000), [(20_000, 99)]);
}

#[test]
fn cancelling_every_entry_leaves_nothing_due() {
    let mut wheel = TimerWheel::new(0);
    let ids: Vec<_> = [5, 500, 50_000, 5_000_000, 5, 0]
        .iter()
        .map(|&d| wheel.insert(d, d))
        .collect();
    for id in ids {
        assert!(wheel.cancel(id).is_some());
    }
    assert_eq!(wheel.next_due(), None);
    assert!(wheel.is_empty());
    assert_eq!(fire(&mut wheel, u64::MAX), []);
}

#[test]
fn stale_id_cancel_returns_none() {
    let mut wheel = TimerWheel::new(0);
    let fired_id = wheel.insert(5, 1);
    let cancelled_id = wheel.insert(50, 2);
    assert_eq!(fire(&mut wheel, 5), [(5, 1)]);
    assert_eq!(wheel.cancel(cancelled_id), Some(2));
    // Both slots are reused by new entries; the old ids must not reach them.
    let new_a = wheel.insert(100, 3);
    let new_b = wheel.insert(100, 4);
    assert_eq!(new_a.index.min(new_b.index), 0);
    assert_eq!(new_a.index.max(new_b.index), 1);
    for stale in [fired_id, cancelled_id] {
        assert_eq!(wheel.cancel(stale), None);
        assert_eq!(wheel.get(stale), None);
        assert_eq!(wheel.due(stale), None);
    }
    assert_eq!(wheel.cancel(cancelled_id), None);
    assert_eq!(wheel.cancel(TimerId::from_bits(u64::MAX)), None);
    assert_eq!(wheel.len(), 2);
    assert_eq!(fire(&mut wheel, 100), [(100, 3), (100, 4)]);
}

#[test]
fn slot_with_exhausted_generation_is_retired() {
    let mut wheel = TimerWheel::new(0);
    let id = wheel.insert(1, 1);
    // Pretend the slot has been reused 2^32 - 1 times.
    if let Slot::Occupied(e) = &mut wheel.slots[id.index as usize] {
        e.generation = u32::MAX;
    }
    let last = TimerId {
        index: id.index,
        generation: u32::MAX,
    };
    assert_eq!(wheel.cancel(last), Some(1));
    let next = wheel.insert(1, 2);
    assert_ne!(next.index, last.index, "a retired slot is never reused");
    assert_eq!(wheel.cancel(last), None);
}

#[test]
fn timer_id_bits_round_trip() {
    let mut wheel = TimerWheel::new(0);
    wheel.insert(1, 0);
    let id = wheel.insert(1, 7);
    let bits = id.to_bits();
    assert_eq!(TimerId::from_bits(bits), id);
    assert_eq!(wheel.get(TimerId::from_bits(bits)), Some(&7));
}

#[test]
fn ten_year_delay_is_honoured() {
    let mut wheel = TimerWheel::new(EPOCH_2026);
    let due = EPOCH_2026 + TEN_YEARS;
    let id = wheel.insert(due, 1);
    let beyond = wheel.insert(u64::MAX, 2);
    assert_eq!(wheel.due(id), Some(due));
    // Walk there the way a driver would: sleep until next_due, advance, repeat.
    let mut wakeups = 0;
    let mut fired = Vec::new();
    while let Some(next) = wheel.next_due() {
        if next > due {
            break;
        }
        wakeups += 1;
        fired.extend(fire(&mut wheel, next));
    }
    assert_eq!(fired, [(due, 1)]);
    assert!(wakeups <= LEVELS, "{wakeups} wake-ups");
    assert_eq!(wheel.get(beyond), Some(&2));
    assert_eq!(fire(&mut wheel, u64::MAX - 1), []);
    assert_eq!(fire(&mut wheel, u64::MAX), [(u64::MAX, 2)]);
}

#[test]
fn overdue_at_insert_fires_on_the_next_advance() {
    let mut wheel = TimerWheel::new(0);
    wheel.insert(1_000, 100);
    assert!(fire(&mut wheel, 500).is_empty());
    // Already past (the cursor is at 501), inserted in no particular order.
    wheel.insert(300, 1);
    wheel.insert(10, 2);
    wheel.insert(300, 3);
    wheel.insert(500, 4);
    // next_due says "now".
    assert!(wheel.next_due().unwrap() <= 10);
    // Even an advance that does not move time (same `now`, or earlier) fires them.
    assert_eq!(
        fire(&mut wheel, 400),
        [(10, 2), (300, 1), (300, 3), (500, 4)]
    );
    assert_eq!(wheel.elapsed(), 501);
    let next = wheel.next_due().unwrap();
    assert!(next > 500 && next <= 1_000, "{next}");
    // Due exactly at the cursor is not overdue: it fires when time reaches it.
    wheel.insert(501, 5);
    assert!(fire(&mut wheel, 500).is_empty());
    assert_eq!(fire(&mut wheel, 501), [(501, 5)]);
}

#[test]
fn overdue_entries_fire_before_later_ones_in_the_same_advance() {
    let mut wheel = TimerWheel::new(0);
    fire(&mut wheel, 1_000);
    wheel.insert(1_001, 10);
    wheel.insert(999, 1);
    wheel.insert(1_005, 11);
    wheel.insert(3, 0);
    assert_eq!(payloads(&fire(&mut wheel, 2_000)), [0, 1, 10, 11]);
}

#[test]
fn restored_entries_fire_at_boot_in_due_order() {
    // What a store would hand back after a restart: pending entries in publish order, some
    // now overdue, some still in the future, with ties in due time.
    let boot = EPOCH_2026;
    let stored: Vec<(u64, u64)> = vec![
        (boot - 5_000, 0),
        (boot + 2_000, 1),
        (boot - 60_000, 2),
        (boot - 5_000, 3),
        (boot, 4),
        (boot - 1, 5),
        (boot + 2_000, 6),
        (boot - 86_400_000, 7),
        (boot + 90_000_000, 8),
    ];
    let mut wheel = TimerWheel::from_entries(boot, stored.iter().copied());
    assert_eq!(wheel.len(), stored.len());
    assert!(wheel.next_due().unwrap() < boot);
    assert_eq!(payloads(&fire(&mut wheel, boot)), [7, 2, 0, 3, 5, 4]);
    assert_eq!(payloads(&fire(&mut wheel, boot + 2_000)), [1, 6]);
    assert_eq!(payloads(&fire(&mut wheel, boot + 90_000_000)), [8]);

    // Inserting one by one onto a fresh wheel, the way a caller that needs the new ids
    // would, behaves the same.
    let mut wheel = TimerWheel::new(boot);
    for &(due, payload) in &stored {
        wheel.insert(due, payload);
    }
    assert_eq!(
        payloads(&fire(&mut wheel, u64::MAX)),
        [7, 2, 0, 3, 5, 4, 1, 6, 8]
    );
}

#[test]
fn next_due_is_exact_near_and_a_lower_bound_far() {
    let mut wheel = TimerWheel::new(0);
    wheel.insert(40, 1);
    assert_eq!(wheel.next_due(), Some(40));
    let mut wheel = TimerWheel::new(0);
    wheel.insert(10_000, 1);
    let bound = wheel.next_due().unwrap();
    assert!(bound <= 10_000 && bound > 0, "{bound}");
    // Advancing to the bound tightens it until it is exact.
    let mut now = bound;
    while wheel.next_due() != Some(10_000) {
        assert!(fire(&mut wheel, now).is_empty());
        let next = wheel.next_due().unwrap();
        assert!(next > now && next <= 10_000);
        now = next;
    }
    assert_eq!(fire(&mut wheel, 10_000), [(10_000, 1)]);
}

#[test]
fn get_and_iter_report_pending_entries() {
    let mut wheel = TimerWheel::new(0);
    let a = wheel.insert(100, 1);
    let b = wheel.insert(100_000, 2);
    let c = wheel.insert(7, 3);
    assert_eq!(wheel.get(a), Some(&1));
    assert_eq!(wheel.due(b), Some(100_000));
    *wheel.get_mut(c).unwrap() = 30;
    wheel.cancel(a);
    let mut listed: Vec<_> = wheel.iter().map(|(id, due, &p)| (id, due, p)).collect();
    listed.sort_by_key(|&(_, due, _)| due);
    assert_eq!(listed, [(c, 7, 30), (b, 100_000, 2)]);
    assert_eq!(fire(&mut wheel, 10), [(7, 30)]);
    assert_eq!(wheel.iter().count(), 1);
}

#[test]
fn payloads_are_moved_never_cloned_and_dropped_with_the_wheel() {
    let body: Arc<[u8]> = Arc::from(&b"hello"[..]);
    let mut wheel = TimerWheel::new(0);
    let id = wheel.insert(10, Arc::clone(&body));
    wheel.insert(20, Arc::clone(&body));
    wheel.insert(30, Arc::clone(&body));
    assert_eq!(Arc::strong_count(&body), 4);
    drop(wheel.cancel(id));
    assert_eq!(Arc::strong_count(&body), 3);
    let mut fired = Vec::new();
    wheel.advance(20, |_, _, p| fired.push(p));
    assert_eq!(Arc::strong_count(&body), 3);
    drop(fired);
    assert_eq!(Arc::strong_count(&body), 2);
    drop(wheel);
    assert_eq!(Arc::strong_count(&body), 1);
}

#[test]
fn one_million_entries_over_twenty_seconds_fire_in_order() {
    let start = EPOCH_2026;
    let mut wheel = TimerWheel::with_capacity(start, 1_000_000);
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for payload in 0..1_000_000 {
        wheel.insert(start + rng.below(20 * SECOND), payload);
    }
    // Drive it the way the server will: sleep until next_due, advance to the clock.
    // Payloads were inserted in increasing order, so (due, payload) must strictly increase.
    let mut last = None;
    let mut count = 0;
    let mut wakeups = 0;
    while let Some(next) = wheel.next_due() {
        wakeups += 1;
        wheel.advance(next, |_, due, payload| {
            assert!(
                Some((due, payload)) > last,
                "{:?} after {last:?}",
                (due, payload)
            );
            last = Some((due, payload));
            count += 1;
        });
    }
    assert_eq!(count, 1_000_000);
    // One wake-up per distinct due millisecond, plus a few for cascades.
    assert!(wakeups <= 20_000 + 400, "{wakeups} wake-ups");
}

/// The reference model: what should fire, keyed by (due, insertion sequence).
struct Model {
    pending: BTreeMap<(u64, u64), (TimerId, u64)>,
    keys: HashMap<TimerId, (u64, u64)>,
    /// Everything due at or before this has fired (the wheel's cursor minus one).
    high_water: u64,
    seq: u64,
}

impl Model {
    fn insert(&mut self, id: TimerId, due: u64, payload: u64) {
        let key = (due, self.seq);
        self.seq += 1;
        self.pending.insert(key, (id, payload));
        self.keys.insert(id, key);
    }

    fn cancel(&mut self, id: TimerId) -> Option<u64> {
        let key = self.keys.remove(&id)?;
        self.pending.remove(&key).map(|(_, p)| p)
    }

    fn advance(&mut self, now: u64) -> Vec<(TimerId, u64, u64)> {
        self.high_water = self.high_water.max(now);
        let mut fired = Vec::new();
        while let Some(entry) = self.pending.first_entry() {
            if entry.key().0 > self.high_water {
                break;
            }
            let ((due, _), (id, payload)) = entry.remove_entry();
            self.keys.remove(&id);
            fired.push((id, due, payload));
        }
        fired
    }
}

fn run_against_model(seed: u64, ops: usize, start: u64) {
    let mut rng = XorShift(seed);
    let mut wheel = TimerWheel::new(start);
    let mut model = Model {
        pending: BTreeMap::new(),
        keys: HashMap::new(),
        high_water: start - 1,
        seq: 0,
    };
    // The last time passed to advance, as far as the wheel is concerned: its cursor - 1.
    let mut now = start - 1;
    let mut issued: Vec<TimerId> = Vec::new();
    let mut payload = 0u64;
    // A few shared due times so that equal dues meet across levels and cascades.
    let mut anchors: Vec<u64> = (0..4).map(|i| start + (i + 1) * 100_000).collect();
    for op in 0..ops {
        match rng.below(100) {
            0..=44 => {
                let due = match rng.below(20) {
                    0..=1 => now.saturating_sub(rng.below(5_000)),
                    2..=7 => now + rng.below(128),
                    8..=11 => now + rng.below(20_000),
                    12..=13 => now + rng.below(1 << 28),
                    14 => now + rng.below(1 << 44),
                    15 => u64::MAX - rng.below(3),
                    _ => anchors[rng.below(anchors.len() as u64) as usize],
                };
                let id = wheel.insert(due, payload);
                model.insert(id, due, payload);
                issued.push(id);
                payload += 1;
            }
            45..=64 => {
                if !issued.is_empty() {
                    let id = issued[rng.below(issued.len() as u64) as usize];
                    assert_eq!(wheel.cancel(id), model.cancel(id), "op {op}: cancel {id:?}");
                }
            }
            65..=69 => {
                if !issued.is_empty() {
                    let id = issued[rng.below(issued.len() as u64) as usize];
                    let expected = model.keys.get(&id).map(|k| k.0);
                    assert_eq!(wheel.due(id), expected, "op {op}: due {id:?}");
                }
            }
            _ => {
                let target = match rng.below(20) {
                    0 => now.saturating_sub(rng.below(100)), // time standing still or behind
                    1..=6 => now + 1,
                    7..=11 => now + rng.below(64),
                    12..=15 => now + rng.below(5_000),
                    16..=17 => now + rng.below(300_000),
                    18 => now + rng.below(1 << 30),
                    _ => wheel.next_due().unwrap_or(now).max(now),
                };
                let mut fired = Vec::new();
                wheel.advance(target, |id, due, p| fired.push((id, due, p)));
                assert_eq!(fired, model.advance(target), "op {op}: advance to {target}");
                now = now.max(target);
                if let Some(next) = wheel.next_due() {
                    assert!(next > now, "op {op}: next_due {next} not after {now}");
                    let earliest = model.pending.keys().next().map(|k| k.0);
                    assert!(
                        Some(next) <= earliest,
                        "op {op}: next_due {next} after {earliest:?}"
                    );
                } else {
                    assert!(model.pending.is_empty());
                }
                // Move the anchors forward now and then so they keep meeting live entries.
                if rng.below(50) == 0 {
                    let i = rng.below(anchors.len() as u64) as usize;
                    anchors[i] = now + 1 + rng.below(1 << 22);
                }
            }
        }
        assert_eq!(wheel.len(), model.pending.len(), "op {op}: len");
        if op % 1_000 == 0 {
            let bounds = random_bounds(&mut rng, now);
            let found = wheel.due_counts(now, &bounds);
            let dues = model.pending.keys().map(|k| k.0);
            assert_eq!(
                found.counts,
                brute_force(dues, now, &bounds),
                "op {op}: due_counts"
            );
            assert!(found.exact, "op {op}: fewer entries than the walk limit");
        }
        if issued.len() > 4_096 {
            // Keep a mix of live and stale ids without unbounded growth.
            issued.drain(..2_048);
        }
    }
    let mut fired = Vec::new();
    wheel.advance(u64::MAX, |id, due, p| fired.push((id, due, p)));
    assert_eq!(fired, model.advance(u64::MAX));
    assert!(wheel.is_empty());
    assert_eq!(wheel.iter().count(), 0);
}

#[test]
fn randomised_operations_match_a_btreemap_model() {
    for (seed, start) in [
        (1, 1),
        (0xDEAD_BEEF, 1_000),
        (42, EPOCH_2026),
        (7, (1 << 42) - 50_000),
    ] {
        run_against_model(seed, 150_000, start);
    }
}

#[test]
fn many_overdue_entries_with_equal_dues_fire_in_insertion_order() {
    let boot = EPOCH_2026;
    let mut rng = XorShift(3);
    let stored: Vec<(u64, u64)> = (0..5_000).map(|p| (boot - 1 - rng.below(20), p)).collect();
    let mut wheel = TimerWheel::from_entries(boot, stored.iter().copied());
    let mut expected = stored.clone();
    expected.sort_by_key(|&(due, _)| due); // stable
    assert_eq!(fire(&mut wheel, boot), expected);
}

/// What `due_counts` must answer, counted entry by entry.
fn brute_force(dues: impl Iterator<Item = u64>, now: u64, bounds: &[u64]) -> Vec<u64> {
    let mut counts = vec![0; bounds.len() + 1];
    for due in dues {
        let bucket = if due <= now {
            0
        } else {
            bounds.iter().filter(|&&b| b <= due).count()
        };
        counts[bucket] += 1;
    }
    counts
}

/// One to four ascending bounds after `now`, from a millisecond to years away.
fn random_bounds(rng: &mut XorShift, now: u64) -> Vec<u64> {
    let mut bounds: Vec<u64> = (0..1 + rng.below(4))
        .map(|_| {
            let bits = 4 + rng.below(36);
            now.saturating_add(1 + rng.below(1 << bits))
        })
        .collect();
    bounds.sort_unstable();
    bounds
}

#[test]
fn due_counts_match_a_brute_force_count_over_random_due_times() {
    let mut rng = XorShift(0x5EED);
    let now = EPOCH_2026;
    let mut wheel = TimerWheel::new(now);
    let mut dues = Vec::new();
    for _ in 0..5_000 {
        let bits = 1 + rng.below(40);
        let due = now + rng.below(1 << bits);
        wheel.insert(due, 0u64);
        dues.push(due);
    }
    for _ in 0..200 {
        let bounds = random_bounds(&mut rng, now);
        let found = wheel.due_counts(now, &bounds);
        assert_eq!(
            found.counts,
            brute_force(dues.iter().copied(), now, &bounds)
        );
        assert!(found.exact);
        assert_eq!(found.counts.iter().sum::<u64>(), 5_000);
    }
}

#[test]
fn due_counts_follow_entries_through_cascade_cancel_and_fire() {
    let now = EPOCH_2026;
    let minute = 60 * SECOND;
    let mut wheel = TimerWheel::new(now);
    let soon = wheel.insert(now + 10 * SECOND, 1u64);
    let half_hour = wheel.insert(now + 30 * minute, 2);
    wheel.insert(now + 5 * 60 * minute, 3);
    wheel.insert(now + 3 * 24 * 60 * minute, 4);
    let buckets = |w: &TimerWheel<u64>, at: u64| {
        w.due_counts(at, &[at + minute, at + 60 * minute, at + 24 * 60 * minute])
    };
    assert_eq!(buckets(&wheel, now).counts, [1, 1, 1, 1]);
    // Twenty-nine and a half minutes on: the half-hour entry has been cascaded down to
    // a low level and is now within the next minute; the ten-second one has fired.
    let later = now + 29 * minute + 30 * SECOND;
    let fired = fire(&mut wheel, later);
    assert_eq!(payloads(&fired), [1]);
    assert_eq!(wheel.due(soon), None);
    assert!(wheel.level_of(half_hour).is_some_and(|l| l <= 3));
    let at_later = buckets(&wheel, later);
    assert_eq!(at_later.counts, [1, 0, 1, 1]);
    assert!(at_later.exact);
    // Asked about a later moment without advancing: the entry due by then counts as due now.
    assert_eq!(buckets(&wheel, now + 31 * minute).counts, [1, 0, 1, 1]);
    assert_eq!(wheel.cancel(half_hour), Some(2));
    assert_eq!(buckets(&wheel, later).counts, [0, 0, 1, 1]);
    // An entry inserted already overdue counts in the first bucket.
    wheel.insert(now, 5);
    assert_eq!(buckets(&wheel, later).counts, [1, 0, 1, 1]);
    fire(&mut wheel, later);
    assert_eq!(buckets(&wheel, later).counts, [0, 0, 1, 1]);
}

#[test]
fn a_full_slot_straddling_a_bound_is_split_by_time_and_says_so() {
    // Cursor at 0; 20 000 entries due evenly over level 3's slot 1, 262 144..524 288 ms.
    let mut wheel = TimerWheel::new(0);
    let (first, width) = (1u64 << 18, 1u64 << 18);
    let n = 20_000u64;
    for i in 0..n {
        wheel.insert(first + i * width / n, i);
    }
    let quarter = first + width / 4;
    let found = wheel.due_counts(0, &[quarter]);
    assert!(!found.exact);
    assert_eq!(found.counts, [5_000, 15_000]);
    let exact = brute_force((0..n).map(|i| first + i * width / n), 0, &[quarter]);
    assert_eq!(exact, [5_000, 15_000]);
    // A bound that does not cut the slot needs no estimate.
    assert_eq!(
        wheel.due_counts(0, &[first]),
        DueCounts {
            counts: vec![0, n],
            exact: true
        }
    );
    // Skewed entries: the estimate still adds up, and only the full slot is estimated.
    let mut skewed = TimerWheel::new(0);
    for i in 0..n {
        skewed.insert(first + i % 7, i);
    }
    skewed.insert(5, n);
    let found = skewed.due_counts(0, &[10, quarter, first + 3 * width / 4]);
    assert!(!found.exact);
    // (Entry by entry it would be [1, n, 0, 0]: the estimate assumes an even spread.)
    assert_eq!(found.counts, [1, n / 4, n / 2, n / 4]);
    assert_eq!(found.counts.iter().sum::<u64>(), n + 1);
}
