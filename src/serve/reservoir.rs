//! Bounded uniform sampling of a window's rows (Vitter's Algorithm R), so window statistics
//! stay representative however much traffic arrives, with memory fixed at `capacity` rows.
//! The choices come from `rand`'s small seeded generator, so a window's sample is
//! reproducible in tests (not across rand versions, which nothing here needs).

use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

/// Where the next offered item goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The sample is not full yet: push the item.
    Append,
    /// Overwrite the sampled item at this index.
    Replace(usize),
    /// Drop the item.
    Skip,
}

/// Algorithm R's decisions, separate from storage so rows can live in one flat buffer.
/// After n offers every offered item is in the sample with probability min(1, capacity / n).
#[derive(Debug, Clone)]
pub struct ReservoirSampler {
    capacity: usize,
    seen: u64,
    rng: SmallRng,
}

impl ReservoirSampler {
    pub fn new(capacity: usize, seed: u64) -> ReservoirSampler {
        ReservoirSampler {
            capacity,
            seen: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// Decides the fate of the next item; counts it as seen.
    pub fn next_slot(&mut self) -> Slot {
        let index = self.seen;
        self.seen += 1;
        if self.capacity == 0 {
            return Slot::Skip;
        }
        if index < self.capacity as u64 {
            return Slot::Append;
        }
        let pick = self.rng.random_range(0..=index);
        if pick < self.capacity as u64 {
            Slot::Replace(pick as usize)
        } else {
            Slot::Skip
        }
    }

    /// Items offered so far (exact, unlike the sample size).
    pub fn seen(&self) -> u64 {
        self.seen
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// A reservoir of fixed-width rows of `f64`, stored flat.
#[derive(Debug, Clone)]
pub struct RowReservoir {
    width: usize,
    sampler: ReservoirSampler,
    values: Vec<f64>,
}

impl RowReservoir {
    pub fn new(width: usize, capacity: usize, seed: u64) -> RowReservoir {
        RowReservoir {
            width,
            sampler: ReservoirSampler::new(capacity, seed),
            values: Vec::new(),
        }
    }

    /// Offers one row; `row.len()` must equal the width (other rows are ignored).
    pub fn offer(&mut self, row: &[f64]) {
        if row.len() != self.width {
            return;
        }
        match self.sampler.next_slot() {
            Slot::Append => {
                if self.values.len() == self.values.capacity() {
                    // Double, but never past the full sample: a window's buffer is then at
                    // most `capacity` rows, not the next power of two above it.
                    let full = self.sampler.capacity() * self.width;
                    let more = self.values.len().max(64 * self.width);
                    self.values
                        .reserve_exact(more.min(full.saturating_sub(self.values.len())));
                }
                self.values.extend_from_slice(row)
            }
            Slot::Replace(slot) => {
                self.values[slot * self.width..(slot + 1) * self.width].copy_from_slice(row)
            }
            Slot::Skip => {}
        }
    }

    /// Empties the sample for a new stream (seeded with `seed`), keeping its memory.
    pub fn reset(&mut self, seed: u64) {
        self.values.clear();
        self.sampler = ReservoirSampler::new(self.sampler.capacity(), seed);
    }

    /// Rows currently sampled.
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows offered so far.
    pub fn seen(&self) -> u64 {
        self.sampler.seen()
    }

    /// Column `col` of the sampled rows.
    pub fn column(&self, col: usize) -> Vec<f64> {
        self.values
            .chunks_exact(self.width.max(1))
            .map(|row| row[col])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_sample() {
        let sample = |seed| {
            let mut reservoir = RowReservoir::new(1, 10, seed);
            (0..1000).for_each(|i| reservoir.offer(&[i as f64]));
            reservoir.column(0)
        };
        assert_eq!(sample(42), sample(42));
        assert_ne!(sample(1), sample(2));
    }

    #[test]
    fn reservoir_keeps_at_most_capacity_and_counts_exactly() {
        let mut reservoir = RowReservoir::new(2, 100, 1);
        for i in 0..10_000 {
            reservoir.offer(&[i as f64, -(i as f64)]);
        }
        assert_eq!(reservoir.len(), 100);
        assert_eq!(reservoir.seen(), 10_000);
        assert_eq!(
            reservoir.values.capacity(),
            200,
            "memory is the sample's, exactly"
        );
        // Rows stay intact: the second value is always the negated first.
        let (firsts, seconds) = (reservoir.column(0), reservoir.column(1));
        assert!(firsts.iter().zip(&seconds).all(|(a, b)| *a == -*b));
        let mut small = RowReservoir::new(1, 100, 1);
        (0..10).for_each(|i| small.offer(&[i as f64]));
        assert_eq!(
            small.column(0),
            (0..10).map(|i| i as f64).collect::<Vec<_>>()
        );
    }

    #[test]
    fn reservoir_sample_is_uniform_over_the_stream() {
        // 10 runs of a 100-row sample from 10_000 items; count sampled items per tenth of the
        // stream. Each tenth expects 100 of the 1000 picks; chi-square with 9 degrees of freedom
        // stays below 27.9 (p = 0.001) for a uniform sampler. Algorithm R without the random
        // replacement (keep the first 100) would put all 1000 in the first tenth.
        let mut per_tenth = [0f64; 10];
        for seed in 0..10 {
            let mut reservoir = RowReservoir::new(1, 100, seed);
            (0..10_000).for_each(|i| reservoir.offer(&[i as f64]));
            for value in reservoir.column(0) {
                per_tenth[(value as usize) / 1000] += 1.0;
            }
        }
        let chi_square: f64 = per_tenth
            .iter()
            .map(|&observed| (observed - 100.0).powi(2) / 100.0)
            .sum();
        assert!(
            chi_square < 27.9,
            "chi-square {chi_square}, counts {per_tenth:?}"
        );
    }

    #[test]
    fn reset_samples_anew_in_the_same_memory() {
        let mut reused = RowReservoir::new(2, 50, 1);
        (0..500).for_each(|i| reused.offer(&[i as f64, 0.0]));
        let buffer = reused.values.as_ptr();
        reused.reset(9);
        assert!((reused.is_empty(), reused.seen()) == (true, 0));
        let mut fresh = RowReservoir::new(2, 50, 9);
        for i in 0..300 {
            reused.offer(&[i as f64, 1.0]);
            fresh.offer(&[i as f64, 1.0]);
        }
        assert_eq!(reused.values, fresh.values);
        assert_eq!(reused.values.as_ptr(), buffer, "no new allocation");
    }

    #[test]
    fn zero_capacity_samples_nothing() {
        let mut reservoir = RowReservoir::new(1, 0, 3);
        (0..10).for_each(|i| reservoir.offer(&[i as f64]));
        assert!(reservoir.is_empty());
        assert_eq!(reservoir.seen(), 10);
    }
}
