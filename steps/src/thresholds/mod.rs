//! Anomaly thresholds (POT, epsilon, best-F1) and the detection metrics they are judged by.
//!
//! Pure functions over `f64` score series, no model and no IO, so every figure the
//! `evaluate` step reports can be checked here against hand-computed cases. The
//! algorithms follow ML4ITS/mtad-gat-pytorch (`eval_methods.py`, `spot.py`) so results
//! are comparable with the published MTAD-GAT figures; deviations are documented where
//! they occur.

pub mod epsilon;
pub mod interpretation;
pub mod metrics;
pub mod pot;
pub mod report;
pub mod scores;
pub mod search;

pub use epsilon::find_epsilon;
pub use metrics::{evaluate_threshold, point_adjust, Detection, ThresholdMetrics};
pub use pot::{pot_eval, PotConfig, PotResult};
pub use search::{best_f1_adjusted, best_f1_raw, grid_search_adjusted};

/// A small deterministic generator for test data (splitmix64), shared by the tests.
#[cfg(test)]
pub(crate) mod test_rng {
    pub struct Rng(pub u64);

    impl Rng {
        /// Uniform in [0, 1).
        pub fn next_f64(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }
}
