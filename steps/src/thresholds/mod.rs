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
