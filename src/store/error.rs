//! The one error type of the store, with variants the CLI matches on and renders.

use std::path::{Path, PathBuf};

use crate::store::RunId;

/// Result of every store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything that can go wrong in the store; the data in each variant is what a user
/// needs to act on it (the prefix they typed, the runs in the way, the file at fault).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No run id starts with the given prefix.
    #[error("no run matches `{0}`")]
    NotFound(String),
    /// No experiment has this id or name.
    #[error("no experiment `{0}`")]
    ExperimentNotFound(String),
    /// A name that must be unique (an experiment's) is taken.
    #[error("{what} `{name}` already exists")]
    AlreadyExists { what: &'static str, name: String },
    /// Several run ids start with the given prefix (at most ten are listed).
    #[error("run prefix `{prefix}` is ambiguous, it matches: {}", candidates.join(", "))]
    Ambiguous {
        prefix: String,
        candidates: Vec<RunId>,
    },
    /// Deleting the run would orphan runs (or model versions) that recorded it as input.
    #[error(
        "run `{run}` is used by {}; delete those first or force the deletion",
        dependants.join(", ")
    )]
    HasDependants { run: RunId, dependants: Vec<String> },
    /// The run has no output manifest yet: it never reached `publish`.
    #[error("run `{run}` has no published outputs")]
    NotPublished { run: RunId },
    /// Outputs of a run are immutable: a second `publish` is refused.
    #[error("run `{run}` already published its outputs")]
    AlreadyPublished { run: RunId },
    /// A caller-supplied value the store cannot accept (a symlink among outputs, a bad status name, ...).
    #[error("invalid {what} `{value}`: {reason}")]
    Invalid {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// The database refused an operation.
    #[error("store database error: {0}")]
    Db(#[from] crate::store::db::DbError),
    /// A file or directory of the store (or of an output directory) could not be used.
    #[error("cannot access `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The database has schema steps this binary does not know: an older flow writing to it
    /// would skip the bookkeeping of tables it has never heard of.
    #[error(
        "the database was migrated by a newer flow (schema version {found}; this flow knows {known}): run that flow or a newer one"
    )]
    NewerSchema { found: i64, known: usize },
    /// Stored data contradicts itself (a missing object, an unreadable manifest, a bad timestamp).
    #[error("store is corrupt: {detail}")]
    Corrupt { detail: String },
}

impl StoreError {
    /// Shorthand for `map_err(StoreError::io(path))` at every filesystem call.
    pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            detail: detail.into(),
        }
    }
}
