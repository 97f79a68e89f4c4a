//! [`TimerWheel`]: the data structure; see the parent module for why it is shaped this way.

use std::fmt;
use std::mem;
use std::num::NonZeroU16;

/// Bits of due time resolved by one level.
const SLOT_BITS: u32 = 6;
/// Slots in each level of the wheel.
pub const SLOTS_PER_LEVEL: usize = 1 << SLOT_BITS;
/// Levels in the wheel: 11 × 6 bits = 66 bits, so every `u64` due time has a level.
pub const LEVELS: usize = 11;
/// Slot lists of the wheel proper, indexed `level * 64 + slot`.
const WHEEL_LISTS: usize = LEVELS * SLOTS_PER_LEVEL;
/// The list of entries inserted with a due time already passed.
const OVERDUE: usize = WHEEL_LISTS;
/// "No entry" in the intrusive links and the free list.
const NIL: u32 = u32::MAX;
/// A slot straddling a bucket bound of [`TimerWheel::due_counts`] is walked entry by entry
/// when it holds at most this many; a fuller one is split in proportion to time.
pub const EXACT_SLOT_LIMIT: u32 = 10_000;

/// Identifies one pending entry of one [`TimerWheel`].
///
/// An id is a slab index plus a generation; once its entry fires or is cancelled the id is
/// stale forever — it never names a later entry, even one reusing the same slot. Ids are
/// plain data ([`TimerId::to_bits`] / [`TimerId::from_bits`]) for the management API, but they
/// are only meaningful for the wheel instance that issued them: a store that restores pending
/// entries after a restart gets new ids and must keep its own message identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId {
    index: u32,
    generation: u32,
}

impl TimerId {
    /// The id as one integer (generation in the high half, index in the low half).
    pub const fn to_bits(self) -> u64 {
        ((self.generation as u64) << 32) | self.index as u64
    }

    /// The id from [`TimerId::to_bits`]. Any value is accepted; one that no wheel issued
    /// simply names nothing (`get` and `cancel` return `None`).
    pub const fn from_bits(bits: u64) -> Self {
        Self {
            index: bits as u32,
            generation: (bits >> 32) as u32,
        }
    }
}

/// Which list an entry is threaded on, stored as `list + 1` so that the zero niche lets
/// [`Slot`] keep its discriminant inside the entry (a slot stays 32 bytes, not 40).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct ListTag(NonZeroU16);

impl ListTag {
    fn new(list: usize) -> Self {
        debug_assert!(list <= OVERDUE);
        // `OVERDUE + 1` is 705, far below `u16::MAX`.
        match NonZeroU16::new(list as u16 + 1) {
            Some(tag) => Self(tag),
            None => unreachable!("list index + 1 is never zero"),
        }
    }

    fn list(self) -> usize {
        usize::from(self.0.get() - 1)
    }
}

/// One pending entry. With a `u64` (or `Arc`) payload this is 32 bytes, and so is a whole
/// [`Slot`] (`size_of::<Slot<u64>>() == 32` on 64-bit targets; the
/// `entry_with_u64_payload_fits_in_48_bytes` test keeps it there).
///
/// There is no sequence number: insertion order among equal due times is list order (see
/// [`TimerWheel::advance`]).
struct Entry<T> {
    due: u64,
    payload: T,
    prev: u32,
    next: u32,
    generation: u32,
    list: ListTag,
}

/// A slab slot: an entry, or a link in the free list remembering the generation the next
/// occupant will get.
enum Slot<T> {
    Occupied(Entry<T>),
    Vacant { next_free: u32, generation: u32 },
}

/// Head and tail of one intrusive list.
#[derive(Clone, Copy)]
struct Ends {
    head: u32,
    tail: u32,
}

const EMPTY: Ends = Ends {
    head: NIL,
    tail: NIL,
};

/// A hierarchical timer wheel of millisecond resolution holding payloads of type `T`.
///
/// Time is whatever `u64` millisecond scale the caller uses (e.g. milliseconds since the Unix
/// epoch); the wheel never reads a clock. It has a *cursor*: every entry due before the
/// cursor has fired. [`advance`](Self::advance) to `now` fires everything due at or before
/// `now` and moves the cursor to `now + 1`; the cursor never moves back.
///
/// Complexity: `insert`, `cancel`, `get` O(1); `next_due` O(levels); `advance` O(entries
/// fired + entries cascaded) — each entry cascades at most once per level — plus a sort of
/// the overdue entries if they were inserted out of due order. Memory is the slab's
/// high-water mark (freed slots are reused, not returned).
///
/// A cascade moves a whole slot in one `advance`, so it is the largest single pause: with
/// 1 M entries due at random over 20 s, firing them all cost ~250 ms of CPU in total and the
/// worst single `advance` (a level-2 slot of ~200 k entries moving down) ~9 ms (release
/// build, 2-vCPU AMD EPYC VM, pointer-chasing cache misses across a 32 MB slab). A driver
/// that needs a tighter bound should measure at broker level before reshaping this.
pub struct TimerWheel<T> {
    slots: Vec<Slot<T>>,
    free_head: u32,
    /// `WHEEL_LISTS` slot lists, then the overdue list.
    lists: Box<[Ends]>,
    /// Bit `s` of `occupied[l]` is set iff slot list `l * 64 + s` is non-empty.
    occupied: [u64; LEVELS],
    /// Entries on each list (the slot lists, then the overdue list), kept by `push_back`,
    /// `unlink` and `cascade`: what [`due_counts`](Self::due_counts) reads instead of the
    /// entries.
    counts: Box<[u32]>,
    /// The cursor: every entry with `due < elapsed` has fired or sits in the overdue list.
    elapsed: u64,
    len: usize,
    /// A lower bound of the due times in the overdue list (`u64::MAX` when it is empty).
    overdue_min: u64,
    /// Reused buffer for sorting a list before firing it.
    scratch: Vec<u32>,
}

impl<T> TimerWheel<T> {
    /// An empty wheel whose cursor is at `now`: entries due before `now` count as overdue.
    pub fn new(now: u64) -> Self {
        Self::with_capacity(now, 0)
    }

    /// An empty wheel with room for `capacity` entries before the slab reallocates.
    pub fn with_capacity(now: u64, capacity: usize) -> Self {
        Self {
            slots: Vec::with_capacity(capacity),
            free_head: NIL,
            lists: vec![EMPTY; WHEEL_LISTS + 1].into_boxed_slice(),
            occupied: [0; LEVELS],
            counts: vec![0; WHEEL_LISTS + 1].into_boxed_slice(),
            elapsed: now,
            len: 0,
            overdue_min: u64::MAX,
            scratch: Vec::new(),
        }
    }

    /// A wheel at `now` holding `entries` (due time, payload), inserted in iteration order.
    ///
    /// This is the restore path: pass pending entries in their original publish order and
    /// those already due fire at the next [`advance`](Self::advance), in (due, publish) order,
    /// before anything still in the future. Use [`insert`](Self::insert) one by one instead
    /// when the new ids are needed.
    pub fn from_entries(now: u64, entries: impl IntoIterator<Item = (u64, T)>) -> Self {
        let entries = entries.into_iter();
        let mut wheel = Self::with_capacity(now, entries.size_hint().0);
        for (due, payload) in entries {
            wheel.insert(due, payload);
        }
        wheel
    }

    /// Number of pending entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The cursor: the earliest millisecond not yet processed. Entries inserted with a due
    /// time before it are overdue and fire at the next `advance`.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Schedules `payload` at `due` (ms). O(1), no allocation unless the slab grows.
    ///
    /// A `due` before the cursor is overdue: it fires at the next [`advance`](Self::advance)
    /// whatever `now` that call passes. Entries with equal due times fire in insertion order.
    ///
    /// # Panics
    /// If more than `u32::MAX - 1` slab slots would be needed (over 160 GB of entries).
    pub fn insert(&mut self, due: u64, payload: T) -> TimerId {
        let list = if due < self.elapsed {
            self.overdue_min = self.overdue_min.min(due);
            OVERDUE
        } else {
            wheel_list(self.elapsed, due)
        };
        let entry = Entry {
            due,
            payload,
            prev: NIL,
            next: NIL,
            generation: 0,
            list: ListTag::new(list),
        };
        let id = self.alloc(entry);
        self.push_back(list, id.index);
        self.len += 1;
        id
    }

    /// Removes a pending entry and returns its payload; `None` if the id is stale (fired,
    /// cancelled) or was never issued by this wheel. O(1).
    pub fn cancel(&mut self, id: TimerId) -> Option<T> {
        self.lookup(id)?;
        self.unlink(id.index);
        let (_, _, payload) = self.release(id.index);
        Some(payload)
    }

    /// The payload of a pending entry.
    pub fn get(&self, id: TimerId) -> Option<&T> {
        self.lookup(id).map(|e| &e.payload)
    }

    /// The payload of a pending entry, mutably (its due time cannot change; cancel and
    /// re-insert to reschedule).
    pub fn get_mut(&mut self, id: TimerId) -> Option<&mut T> {
        match self.slots.get_mut(id.index as usize) {
            Some(Slot::Occupied(e)) if e.generation == id.generation => Some(&mut e.payload),
            _ => None,
        }
    }

    /// The due time of a pending entry.
    pub fn due(&self, id: TimerId) -> Option<u64> {
        self.lookup(id).map(|e| e.due)
    }

    /// Every pending entry as (id, due, payload), in slab order — no particular time or
    /// insertion order (slots are reused); a listing sorts by due, breaking ties with its own
    /// sequence if it needs publish order. O(slab size).
    pub fn iter(&self) -> impl Iterator<Item = (TimerId, u64, &T)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(index, slot)| match slot {
                Slot::Occupied(e) => Some((
                    TimerId {
                        index: index as u32,
                        generation: e.generation,
                    },
                    e.due,
                    &e.payload,
                )),
                Slot::Vacant { .. } => None,
            })
    }

    /// The pending entries among slab slots `start..start + count`, as [`iter`](Self::iter)
    /// gives them, and the slot to continue from (`None` past the end): a long scan done a
    /// chunk at a time, so whoever holds the wheel's lock lets go between chunks.
    pub fn iter_chunk(
        &self,
        start: usize,
        count: usize,
    ) -> (impl Iterator<Item = (TimerId, u64, &T)> + '_, Option<usize>) {
        let end = start.saturating_add(count).min(self.slots.len());
        let start = start.min(end);
        let next = (end < self.slots.len()).then_some(end);
        let entries = self.slots[start..end].iter().enumerate().filter_map(
            move |(offset, slot)| match slot {
                Slot::Occupied(e) => Some((
                    TimerId {
                        index: (start + offset) as u32,
                        generation: e.generation,
                    },
                    e.due,
                    &e.payload,
                )),
                Slot::Vacant { .. } => None,
            },
        );
        (entries, next)
    }

    /// When the driver should next call [`advance`](Self::advance), or `None` if nothing is
    /// pending. O(levels), no scanning of entries.
    ///
    /// A **safe lower bound**, never later than the earliest pending due time. It is exact
    /// when the earliest entry is within the cursor's current 64 ms block; otherwise it is
    /// the start of the earliest occupied slot of a higher level (at most `64^level` ms
    /// early), and an `advance` to that time cascades the slot so the next answer is tighter.
    /// A driver looping `sleep_until(next_due); advance(now)` therefore wakes early at most
    /// once per level on the way to each due time. With overdue entries pending it returns a
    /// time before the cursor, i.e. "advance now". After `advance(now)` with nothing overdue,
    /// the answer is always greater than `now`.
    pub fn next_due(&self) -> Option<u64> {
        if self.lists[OVERDUE].head != NIL {
            return Some(self.overdue_min);
        }
        self.next_slot().map(|(_, _, start)| start)
    }

    /// The earliest pending due time, or `None` if nothing is pending: exact, except that
    /// when the earliest occupied slot holds more than [`EXACT_SLOT_LIMIT`] entries it is
    /// that slot's start (never later than the true answer), and that with overdue entries
    /// pending it is a time already passed. Walks at most one slot; O(levels) otherwise.
    pub fn earliest_due(&self) -> Option<u64> {
        if self.lists[OVERDUE].head != NIL {
            return Some(self.overdue_min);
        }
        let (level, slot, start) = self.next_slot()?;
        let list = level * SLOTS_PER_LEVEL + slot;
        if level == 0 || self.counts[list] > EXACT_SLOT_LIMIT {
            return Some(start);
        }
        let mut earliest = u64::MAX;
        let mut index = self.lists[list].head;
        while index != NIL {
            let entry = self.entry(index);
            earliest = earliest.min(entry.due);
            index = entry.next;
        }
        Some(earliest)
    }

    /// How many pending entries fall due in each bucket that ascending `bounds` cut time
    /// into: bucket `0` is due before `bounds[0]`, bucket `i` in `bounds[i - 1]..bounds[i]`,
    /// the last at or after the last bound (`bounds.len() + 1` buckets). Entries due at or
    /// before `now` but not yet fired (overdue, or waiting for the next `advance`) count in
    /// bucket `0` whatever the bounds.
    ///
    /// Cost: a walk of the 704 slot counts with each slot's absolute time range, never of
    /// the entries — except a slot whose range straddles a bucket edge, whose list is walked
    /// when it holds at most [`EXACT_SLOT_LIMIT`] entries. Occupied slots of all levels
    /// cover disjoint time ranges, so each edge falls in at most one slot, and at most
    /// `bounds.len() + 1` lists are walked.
    ///
    /// Precision: exact (`exact: true`) unless some straddling slot holds more than
    /// [`EXACT_SLOT_LIMIT`]; such a slot's entries are split between the buckets it overlaps
    /// in proportion to the milliseconds of overlap (as if spread evenly over the slot), so
    /// each bucket is off by at most the entries of the (at most two) full slots on its
    /// edges. Slots are `64^level` ms wide: a bound an hour away falls in a slot of at most
    /// ~4.7 h, a day away in one of at most ~12 days. The counts always sum to
    /// [`len`](Self::len).
    pub fn due_counts(&self, now: u64, bounds: &[u64]) -> DueCounts {
        debug_assert!(bounds.windows(2).all(|w| w[0] <= w[1]), "bounds ascending");
        let bucket = |due: u64| {
            if due <= now {
                0
            } else {
                bounds.partition_point(|&bound| bound <= due)
            }
        };
        let mut counts = vec![0u64; bounds.len() + 1];
        let mut exact = true;
        counts[0] += u64::from(self.counts[OVERDUE]);
        for level in 0..LEVELS {
            let mut bits = self.occupied[level];
            while bits != 0 {
                let slot = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let list = level * SLOTS_PER_LEVEL + slot;
                let n = self.counts[list];
                let (first, last) = self.slot_range(level, slot);
                let (low, high) = (bucket(first), bucket(last));
                if low == high {
                    counts[low] += u64::from(n);
                } else if n <= EXACT_SLOT_LIMIT {
                    let mut index = self.lists[list].head;
                    while index != NIL {
                        let entry = self.entry(index);
                        counts[bucket(entry.due)] += 1;
                        index = entry.next;
                    }
                } else {
                    exact = false;
                    spread(&mut counts, first, last, u64::from(n), now, bounds, bucket);
                }
            }
        }
        DueCounts { counts, exact }
    }

    /// The due times slot `slot` of level `level` can hold, `(first, last)` inclusive: the
    /// cursor's digits above the level, the slot's digit, anything below. Valid for occupied
    /// slots, which are never behind the cursor.
    fn slot_range(&self, level: usize, slot: usize) -> (u64, u64) {
        let shift = SLOT_BITS * level as u32;
        let above = shift + SLOT_BITS;
        let base = if above >= u64::BITS {
            0
        } else {
            self.elapsed >> above << above
        };
        let first = base | ((slot as u64) << shift);
        // Level 10's digit is at most 15 (`u64` has 64 bits), so this cannot overflow.
        (first, first + ((1u64 << shift) - 1))
    }

    /// Fires every entry due at or before `now`, and every overdue entry, in (due, insertion)
    /// order: `fire(id, due, payload)` is called once per entry, after the entry has left the
    /// wheel. Returns the number fired. Moves the cursor to `now + 1` (never backwards: an
    /// earlier `now` than a previous call only fires overdue entries).
    ///
    /// Work is proportional to the entries fired or cascaded; jumping years ahead costs no
    /// more than the occupied slots in between.
    ///
    /// Why equal due times need no sorting: the list an entry is filed in depends only on
    /// (cursor, due), and a slot is cascaded the moment the cursor reaches it. So at any
    /// moment all pending entries of one due time sit in the same slot list — an older entry
    /// of that due time has always been cascaded down before a newer one can be filed at the
    /// lower level — and appending (on insert and on cascade) keeps that list in insertion
    /// order. Overdue entries are the exception (they arrive in any due order) and are
    /// stable-sorted by due when they fire.
    pub fn advance<F>(&mut self, now: u64, mut fire: F) -> usize
    where
        F: FnMut(TimerId, u64, T),
    {
        let mut fired = 0;
        if self.lists[OVERDUE].head != NIL {
            fired += self.fire_overdue(&mut fire);
        }
        while let Some((level, slot, start)) = self.next_slot() {
            if level == 0 {
                // Level-0 slots hold exactly one due time: `start`.
                if start > now {
                    break;
                }
                self.elapsed = start;
                fired += self.fire_slot(slot, &mut fire);
            } else {
                // A higher slot must be cascaded as soon as the cursor reaches its start,
                // which is `now + 1` at the end of this call. `start >= 64` here, so `- 1`
                // cannot underflow (and `now + 1` could overflow).
                if start - 1 > now {
                    break;
                }
                self.elapsed = start;
                self.cascade(level * SLOTS_PER_LEVEL + slot);
            }
        }
        self.elapsed = self.elapsed.max(now.saturating_add(1));
        fired
    }

    /// The earliest occupied slot: (level, slot, start time). All of level `l` is due before
    /// level `l + 1`, and occupied slots are never behind the cursor, so this is the first
    /// set bit of the lowest non-empty level.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&bits| bits != 0)?;
        let slot = self.occupied[level].trailing_zeros() as usize;
        let shift = SLOT_BITS * level as u32;
        let above = shift + SLOT_BITS;
        let base = if above >= u64::BITS {
            0
        } else {
            self.elapsed >> above << above
        };
        let start = base | ((slot as u64) << shift);
        debug_assert!(
            if level == 0 {
                start >= self.elapsed
            } else {
                start > self.elapsed
            },
            "occupied slot behind the cursor"
        );
        Some((level, slot, start))
    }

    /// Re-files every entry of a higher-level slot whose start the cursor has reached. Each
    /// lands in a strictly lower level; list order is kept, so equal due times that arrive
    /// together stay in insertion order.
    fn cascade(&mut self, list: usize) {
        let Ends { head, .. } = mem::replace(&mut self.lists[list], EMPTY);
        self.counts[list] = 0;
        self.occupied[list / SLOTS_PER_LEVEL] &= !(1 << (list % SLOTS_PER_LEVEL));
        let mut index = head;
        while index != NIL {
            let entry = self.entry(index);
            let next = entry.next;
            let target = wheel_list(self.elapsed, entry.due);
            debug_assert!(target / SLOTS_PER_LEVEL < list / SLOTS_PER_LEVEL);
            self.push_back(target, index);
            index = next;
        }
    }

    /// Fires a level-0 slot: one due time, already in insertion order. Each entry is
    /// unlinked and freed before its callback runs, so a panicking callback leaves the wheel
    /// consistent.
    fn fire_slot<F>(&mut self, list: usize, fire: &mut F) -> usize
    where
        F: FnMut(TimerId, u64, T),
    {
        let mut count = 0;
        loop {
            let index = self.lists[list].head;
            if index == NIL {
                return count;
            }
            self.unlink(index);
            let (id, due, payload) = self.release(index);
            debug_assert_eq!(due, self.elapsed, "level-0 slot holds one due time");
            fire(id, due, payload);
            count += 1;
        }
    }

    /// Fires the overdue list in (due, insertion) order: a stable sort by due of the list,
    /// which is in insertion order — skipped when it is already in due order.
    fn fire_overdue<F>(&mut self, fire: &mut F) -> usize
    where
        F: FnMut(TimerId, u64, T),
    {
        let mut order = mem::take(&mut self.scratch);
        order.clear();
        let mut sorted = true;
        let mut last_due = 0;
        let mut index = self.lists[OVERDUE].head;
        while index != NIL {
            let entry = self.entry(index);
            sorted &= entry.due >= last_due;
            last_due = entry.due;
            order.push(index);
            index = entry.next;
        }
        if !sorted {
            order.sort_by_key(|&i| self.entry(i).due);
        }
        for &index in &order {
            self.unlink(index);
            let (id, due, payload) = self.release(index);
            fire(id, due, payload);
        }
        let count = order.len();
        order.clear();
        self.scratch = order;
        count
    }

    fn lookup(&self, id: TimerId) -> Option<&Entry<T>> {
        match self.slots.get(id.index as usize) {
            Some(Slot::Occupied(e)) if e.generation == id.generation => Some(e),
            _ => None,
        }
    }

    /// The entry at a linked index; a vacant slot there is a broken internal invariant.
    fn entry(&self, index: u32) -> &Entry<T> {
        match &self.slots[index as usize] {
            Slot::Occupied(e) => e,
            Slot::Vacant { .. } => unreachable!("timer wheel: linked slot {index} is vacant"),
        }
    }

    fn entry_mut(&mut self, index: u32) -> &mut Entry<T> {
        match &mut self.slots[index as usize] {
            Slot::Occupied(e) => e,
            Slot::Vacant { .. } => unreachable!("timer wheel: linked slot {index} is vacant"),
        }
    }

    /// Puts an entry in the slab (reusing a free slot if any) and returns its id.
    fn alloc(&mut self, mut entry: Entry<T>) -> TimerId {
        if self.free_head != NIL {
            let index = self.free_head;
            let slot = &mut self.slots[index as usize];
            let Slot::Vacant {
                next_free,
                generation,
            } = *slot
            else {
                unreachable!("timer wheel: free list names an occupied slot {index}");
            };
            self.free_head = next_free;
            entry.generation = generation;
            *slot = Slot::Occupied(entry);
            TimerId { index, generation }
        } else {
            let index = self.slots.len();
            assert!(
                index < NIL as usize,
                "timer wheel: more than 2^32 - 1 entries"
            );
            self.slots.push(Slot::Occupied(entry));
            TimerId {
                index: index as u32,
                generation: 0,
            }
        }
    }

    /// Frees an unlinked entry's slot and returns its id, due time and payload. The slot's
    /// generation moves on so the id goes stale; a slot that has used every generation is
    /// retired (never reused) so that no id ever comes back to life.
    fn release(&mut self, index: u32) -> (TimerId, u64, T) {
        let slot = mem::replace(
            &mut self.slots[index as usize],
            Slot::Vacant {
                next_free: NIL,
                generation: u32::MAX,
            },
        );
        let Slot::Occupied(entry) = slot else {
            unreachable!("timer wheel: releasing vacant slot {index}");
        };
        if let Some(generation) = entry.generation.checked_add(1) {
            self.slots[index as usize] = Slot::Vacant {
                next_free: self.free_head,
                generation,
            };
            self.free_head = index;
        }
        self.len -= 1;
        let id = TimerId {
            index,
            generation: entry.generation,
        };
        (id, entry.due, entry.payload)
    }

    fn push_back(&mut self, list: usize, index: u32) {
        let tail = self.lists[list].tail;
        {
            let entry = self.entry_mut(index);
            entry.list = ListTag::new(list);
            entry.prev = tail;
            entry.next = NIL;
        }
        if tail == NIL {
            self.lists[list].head = index;
            if list < WHEEL_LISTS {
                self.occupied[list / SLOTS_PER_LEVEL] |= 1 << (list % SLOTS_PER_LEVEL);
            }
        } else {
            self.entry_mut(tail).next = index;
        }
        self.lists[list].tail = index;
        self.counts[list] += 1;
    }

    fn unlink(&mut self, index: u32) {
        let (prev, next, list) = {
            let entry = self.entry(index);
            (entry.prev, entry.next, entry.list.list())
        };
        if prev == NIL {
            self.lists[list].head = next;
        } else {
            self.entry_mut(prev).next = next;
        }
        if next == NIL {
            self.lists[list].tail = prev;
        } else {
            self.entry_mut(next).prev = prev;
        }
        self.counts[list] -= 1;
        if self.lists[list].head == NIL {
            if list < WHEEL_LISTS {
                self.occupied[list / SLOTS_PER_LEVEL] &= !(1 << (list % SLOTS_PER_LEVEL));
            } else {
                self.overdue_min = u64::MAX;
            }
        }
    }

    /// Test-only: the level an entry is filed in (`LEVELS` for the overdue list).
    #[cfg(test)]
    fn level_of(&self, id: TimerId) -> Option<usize> {
        self.lookup(id).map(|e| e.list.list() / SLOTS_PER_LEVEL)
    }
}

/// What [`TimerWheel::due_counts`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueCounts {
    /// Entries per bucket (`bounds.len() + 1` of them), summing to the wheel's length.
    pub counts: Vec<u64>,
    /// False when a slot straddling a bound was too full to walk and was split by time.
    pub exact: bool,
}

/// Adds a too-full slot's `n` entries, due somewhere in `first..=last`, to the buckets that
/// range overlaps, in proportion to the milliseconds of overlap. Rounding is cumulative
/// (each piece gets `n * end / len - n * start / len`), so the pieces add up to `n`.
fn spread(
    counts: &mut [u64],
    first: u64,
    last: u64,
    n: u64,
    now: u64,
    bounds: &[u64],
    bucket: impl Fn(u64) -> usize,
) {
    let len = u128::from(last - first) + 1;
    let share = |upto: u64| (u128::from(n) * (u128::from(upto - first) + 1) / len) as u64;
    let mut start = first;
    let mut given = 0;
    loop {
        // Where the bucket of `start` ends: just before the next edge (`now + 1`, or a bound).
        let edge = bounds
            .iter()
            .copied()
            .chain(std::iter::once(now.saturating_add(1)))
            .filter(|&edge| edge > start)
            .min();
        let end = match edge {
            Some(edge) if edge - 1 < last => edge - 1,
            _ => last,
        };
        let upto = share(end);
        counts[bucket(start)] += upto - given;
        given = upto;
        if end == last {
            return;
        }
        start = end + 1;
    }
}

/// The slot list for an entry due at `due >= elapsed`: the level is where `due` first differs
/// from the cursor (in 6-bit digits), the slot is `due`'s digit at that level.
fn wheel_list(elapsed: u64, due: u64) -> usize {
    debug_assert!(due >= elapsed);
    let highest_differing_bit = u64::BITS - 1 - ((elapsed ^ due) | 63).leading_zeros();
    let level = highest_differing_bit / SLOT_BITS;
    let slot = (due >> (level * SLOT_BITS)) as usize & (SLOTS_PER_LEVEL - 1);
    level as usize * SLOTS_PER_LEVEL + slot
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.len)
            .field("elapsed", &self.elapsed)
            .field("next_due", &self.next_due())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
