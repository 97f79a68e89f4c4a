//! Picks each delayed message's `x-delay`: uniform over the configured range.
//!
//! A tiny seeded generator (SplitMix64) rather than a `rand` dependency: the spread only has
//! to be even, and seeding by producer index makes runs repeatable.

/// Uniform delays in `min_ms..=max_ms`.
pub struct DelayPicker {
    min_ms: u64,
    span: u64,
    state: u64,
}

impl DelayPicker {
    pub fn new(min_ms: u64, max_ms: u64, seed: u64) -> Self {
        Self {
            min_ms,
            span: max_ms - min_ms + 1,
            state: seed,
        }
    }

    pub fn next_ms(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // Multiply-shift maps to the span without the bias of `%`.
        self.min_ms + ((u128::from(z) * u128::from(self.span)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_in_range_and_cover_it() {
        let mut picker = DelayPicker::new(20_000, 40_000, 7);
        let picks: Vec<u64> = (0..10_000).map(|_| picker.next_ms()).collect();
        assert!(picks.iter().all(|d| (20_000..=40_000).contains(d)));
        assert!(picks.iter().any(|&d| d < 21_000));
        assert!(picks.iter().any(|&d| d > 39_000));
    }

    #[test]
    fn an_empty_range_is_a_fixed_delay() {
        let mut picker = DelayPicker::new(500, 500, 1);
        assert!((0..100).all(|_| picker.next_ms() == 500));
    }
}
