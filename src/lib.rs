//! flow: a declarative pipeline runner for machine-learning work.
//!
//! Imports flow one way:
//! `cli -> {exec, lineage, registry, serve, tracking, ui} -> resolve -> {dag, params, store, version} -> {shell, spec}`.
//! See ARCHITECTURE.md for the code map and the invariants.

pub mod cli;
pub mod dag;
pub mod exec;
pub mod lineage;
pub mod listen;
pub mod params;
pub mod pipeline;
pub mod registry;
pub mod resolve;
pub mod serve;
pub mod shell;
pub mod spec;
pub mod store;
pub mod suggest;
pub mod tracking;
pub mod ui;
pub mod version;
