//! The registry's error type: one variant per mistake a user can make, each carrying what
//! the message needs to say how to fix it (a close name, the versions or stages that
//! exist, the runs that do have a bundle).

use std::fmt;
use std::path::PathBuf;

use crate::registry::bundles::manifest_key;
use crate::registry::Stage;
use crate::store::StoreError;

/// Result of every registry operation.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// The model URI forms `resolve_uri` accepts, for messages about malformed ones.
pub const ACCEPTED_URIS: &str = "`models:/NAME/VERSION`, `models:/NAME/STAGE` (None, Staging, Production, \
     Archived), `models:/NAME/latest`, `models:/NAME@ALIAS`, `runs:/RUN[/PATH]` (PATH defaults to `model`), \
     or a directory containing `flow-model.json`";

/// Everything that can go wrong in the registry. `Display` gives one sentence, followed
/// by `hint:` lines that the CLI prints after a blank line.
#[derive(Debug)]
pub enum RegistryError {
    /// No registered model has this name.
    UnknownModel {
        name: String,
        /// The closest registered name, when it looks like a typo.
        suggestion: Option<String>,
        n_models: usize,
    },
    /// The model exists but not this version.
    UnknownVersion {
        name: String,
        version: u32,
        versions: Vec<u32>,
    },
    /// The model has no version at all (every version was deleted).
    NoVersions { name: String },
    /// No version of the model is in the requested stage.
    NoVersionInStage {
        name: String,
        stage: Stage,
        /// The stages that are in use, with their versions.
        stages: Vec<(Stage, Vec<u32>)>,
    },
    /// The model has no such alias.
    UnknownAlias {
        name: String,
        alias: String,
        aliases: Vec<String>,
        suggestion: Option<String>,
    },
    /// A stage name that is none of the four.
    UnknownStage {
        text: String,
        suggestion: Option<Stage>,
    },
    /// A model name, alias or artifact path that cannot be stored or written in a URI.
    InvalidName {
        what: &'static str,
        value: String,
        reason: String,
    },
    /// A string that is not one of the accepted model URI forms.
    MalformedUri { uri: String, reason: String },
    /// Only FINISHED runs can back a model version.
    RunNotFinished {
        run: String,
        entry: String,
        status: String,
    },
    /// The run published no `<artifact_path>/flow-model.json`.
    NoBundle {
        run: String,
        entry: String,
        artifact_path: String,
        /// Other bundle directories of the same run, as artifact paths.
        elsewhere_in_run: Vec<String>,
        /// Newest finished runs with a bundle: `(run id, entry, artifact path)`.
        runs_with_bundles: Vec<(String, String, String)>,
    },
    /// A directory given as a model URI that holds no bundle.
    NotABundle { path: PathBuf },
    /// A model version whose run was deleted with `--force`.
    MissingRun {
        name: String,
        version: u32,
        run: String,
    },
    /// The store failed (database, files, or an unknown run prefix).
    Store(StoreError),
}

impl From<StoreError> for RegistryError {
    fn from(error: StoreError) -> RegistryError {
        RegistryError::Store(error)
    }
}

impl From<crate::store::DbError> for RegistryError {
    fn from(error: crate::store::DbError) -> RegistryError {
        RegistryError::Store(StoreError::Db(error))
    }
}

impl std::error::Error for RegistryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RegistryError::Store(error) => error.source(),
            _ => None,
        }
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegistryError::UnknownModel { name, suggestion, n_models } => {
                write!(f, "no registered model `{name}`")?;
                match (suggestion, n_models) {
                    (Some(close), _) => write!(f, "; did you mean `{close}`?"),
                    (None, 0) => write!(
                        f,
                        " (no model is registered yet)\nhint: register a run's bundle with `flow models register {name} <run>`"
                    ),
                    (None, _) => write!(f, "\nhint: `flow models list` shows the registered models"),
                }
            }
            RegistryError::UnknownVersion { name, version, versions } => {
                write!(f, "model `{name}` has no version {version}")?;
                if versions.is_empty() {
                    write!(f, "; it has no versions")
                } else {
                    write!(f, "; its versions are {}", join_numbers(versions))
                }
            }
            RegistryError::NoVersions { name } => write!(
                f,
                "model `{name}` has no versions\nhint: register one with `flow models register {name} <run>`"
            ),
            RegistryError::NoVersionInStage { name, stage, stages } => {
                write!(f, "model `{name}` has no version in stage {stage}")?;
                if stages.is_empty() {
                    write!(f, "; it has no versions")?;
                } else {
                    let in_use: Vec<String> = stages
                        .iter()
                        .map(|(stage, versions)| format!("{stage} ({})", join_numbers(versions)))
                        .collect();
                    write!(f, "; stages in use: {}", in_use.join(", "))?;
                }
                write!(f, "\nhint: move a version there with `flow models stage {name} <version> {stage}`")
            }
            RegistryError::UnknownAlias { name, alias, aliases, suggestion } => {
                write!(f, "model `{name}` has no alias `{alias}`")?;
                if let Some(close) = suggestion {
                    write!(f, "; did you mean `{close}`?")
                } else if aliases.is_empty() {
                    write!(f, "; it has no aliases\nhint: set one with `flow models alias {name} {alias} <version>`")
                } else {
                    write!(f, "; its aliases are {}", backticked(aliases))
                }
            }
            RegistryError::UnknownStage { text, suggestion } => {
                write!(f, "unknown stage `{text}`")?;
                if let Some(stage) = suggestion {
                    write!(f, "; did you mean `{stage}`?")?;
                }
                write!(f, "\nhint: the stages are None, Staging, Production and Archived")
            }
            RegistryError::InvalidName { what, value, reason } => write!(f, "invalid {what} `{value}`: {reason}"),
            RegistryError::MalformedUri { uri, reason } => {
                write!(f, "malformed model URI `{uri}`: {reason}\nhint: accepted forms: {ACCEPTED_URIS}")
            }
            RegistryError::RunNotFinished { run, entry, status } => write!(
                f,
                "run `{}` ({entry}) is {status}: only FINISHED runs can be registered",
                short(run)
            ),
            RegistryError::NoBundle { run, entry, artifact_path, elsewhere_in_run, runs_with_bundles } => {
                write!(
                    f,
                    "run `{}` ({entry}) has no model bundle: no `{}` among its outputs",
                    short(run),
                    manifest_key(artifact_path)
                )?;
                if let Some(path) = elsewhere_in_run.first() {
                    write!(f, "\nhint: this run has a bundle at `{path}`; pass `--path {path}`")
                } else if runs_with_bundles.is_empty() {
                    write!(f, "\nhint: no finished run has a bundle yet; `flow run -e train` makes one")
                } else {
                    let runs: Vec<String> = runs_with_bundles
                        .iter()
                        .map(|(run, entry, path)| format!("{} ({entry}, `{path}`)", short(run)))
                        .collect();
                    write!(f, "\nhint: runs with a bundle: {}", runs.join(", "))
                }
            }
            RegistryError::NotABundle { path } => write!(
                f,
                "`{}` is not a model bundle: it has no `flow-model.json`\nhint: accepted forms: {ACCEPTED_URIS}",
                path.display()
            ),
            RegistryError::MissingRun { name, version, run } => write!(
                f,
                "version {version} of model `{name}` points at run `{}`, which no longer exists\n\
                 hint: delete the version with `flow models delete {name} {version}`",
                short(run)
            ),
            RegistryError::Store(error) => write!(f, "{error}"),
        }
    }
}

/// The first 12 characters of a run id, as every listing shows them.
pub(crate) fn short(run: &str) -> &str {
    &run[..run.len().min(12)]
}

fn join_numbers(numbers: &[u32]) -> String {
    numbers
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn backticked(names: &[String]) -> String {
    names
        .iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
