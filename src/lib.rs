//! flow: a declarative pipeline runner for machine-learning work.
//!
//! Imports flow one way:
//! `cli -> {exec, lineage, registry, serve, ui} -> resolve -> {dag, params, store, version} -> spec`.
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod cli;
pub mod dag;
pub mod exec;
pub mod lineage;
pub mod params;
pub mod registry;
pub mod resolve;
pub mod serve;
pub mod spec;
pub mod store;
pub mod suggest;
pub mod ui;
pub mod version;
