//! The modules under fuzzing, compiled from flow's own source files.
//!
//! Depending on the `flow` and `flow-steps` crates would make every fuzz build compile and
//! instrument polars, candle, SQLite and libgit2 as well (release, one codegen unit), for
//! code the targets never reach. Instead each fuzzed module's file is included here under
//! the same module path it has in its crate, so its `crate::...` imports resolve and the
//! code fuzzed is the code shipped. A module that starts importing something heavy breaks
//! this build, in CI, which is the moment to decide how to fuzz it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[path = "../../src/dag.rs"]
pub mod dag;
#[path = "../../src/params.rs"]
pub mod params;
#[path = "../../src/spec/mod.rs"]
pub mod spec;
#[path = "../../src/suggest.rs"]
pub mod suggest;

/// The request decoders of `flow serve`.
#[path = "../../src/serve"]
pub mod serve {
    pub mod csv_body;
    pub mod feedback;
    pub mod json_body;
    pub mod request;
    pub mod strict_json;
}

/// The readers of the `load` step (`flow-steps`), all but Parquet.
#[path = "../../steps/src/data"]
pub mod data {
    pub mod dataset;
    pub mod meta;
    pub mod npy;
    pub mod smd;
    pub mod source;
    pub mod table;
    pub mod telemanom;
    pub mod text;
}

/// The separator between the files of one multi-file input (a line `@@`).
pub const PART_SEPARATOR: &[u8] = b"\n@@\n";

/// Splits an input into exactly `n` files at [`PART_SEPARATOR`]; missing ones are empty,
/// the last takes the rest.
pub fn split_parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut parts = Vec::with_capacity(n);
    let mut rest = data;
    while parts.len() + 1 < n {
        match rest
            .windows(PART_SEPARATOR.len())
            .position(|window| window == PART_SEPARATOR)
        {
            Some(at) => {
                parts.push(&rest[..at]);
                rest = &rest[at + PART_SEPARATOR.len()..];
            }
            None => break,
        }
    }
    parts.push(rest);
    parts.resize(n, &[]);
    parts
}

/// A directory of this process's own, reused by every run of a target that reads files.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("flow-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory in the temp dir");
        dir
    })
}

/// Writes `files` (relative path, content) under the scratch directory, creating folders.
pub fn write_files(files: &[(&str, &[u8])]) -> &'static Path {
    let dir = scratch_dir();
    for (name, content) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("a folder in the scratch directory");
        }
        std::fs::write(&path, content).expect("a file in the scratch directory");
    }
    dir
}
