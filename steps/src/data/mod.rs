//! Reading the published data formats and preparing them for the model.
//!
//! Readers (`telemanom`, `smd`, `generic`, on top of `npy`, `text` and `table`) return a
//! [`dataset::Dataset`]; the `load` step writes it as Parquet plus `meta.json`, and the
//! `process` step scales it with a [`Preprocessor`] fitted on the training rows.

pub mod dataset;
pub mod formats;
pub mod generic;
pub mod load;
pub mod members;
pub mod meta;
pub mod npy;
pub mod parquet;
pub mod preprocessor;
pub mod process;
pub mod smd;
pub mod source;
pub mod table;
pub mod telemanom;
pub mod text;

pub use dataset::Dataset;
pub use formats::read_table;
pub use meta::{Interpretation, Meta, Part};
pub use parquet::{read_labels, read_parquet, write_parquet};
pub use preprocessor::{FeatureStats, Preprocessor, ScalerKind};
pub use table::Table;
