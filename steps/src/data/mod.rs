//! Reading the published data formats and preparing them for the model.
//!
//! Readers (`telemanom`, `smd`, `generic`, on top of `npy`, `text` and `table`) return a
//! [`dataset::Dataset`]; the `load` step writes it as Parquet plus `meta.json`, and the
//! `process` step scales it with a [`Preprocessor`] fitted on the training rows.

pub mod dataset;
pub mod generic;
pub mod load;
pub mod meta;
pub mod npy;
pub mod preprocessor;
pub mod process;
pub mod smd;
pub mod source;
pub mod table;
pub mod telemanom;
pub mod text;

pub use dataset::Dataset;
pub use meta::{Interpretation, Meta, Part};
pub use preprocessor::{FeatureStats, Preprocessor, ScalerKind};
pub use table::{read_labels, read_parquet, read_table, write_parquet, Table};
