//! Model URIs: one string that names a bundle, however it is known.
//!
//! ```text
//! runs:/<run>[/<path>]        the bundle a run published (path defaults to `model`)
//! models:/NAME/<version>      exactly that version
//! models:/NAME/<stage>        the newest version in that stage (case-insensitive)
//! models:/NAME/latest         the newest version
//! models:/NAME@<alias>        the version the alias points at
//! <directory>                 a bundle on disk (a directory holding flow-model.json)
//! ```

use std::path::{Path, PathBuf};

use crate::store::db::Db;

use crate::registry::bundles::{has_bundle, manifest_key, no_bundle, normalize_artifact_path};
use crate::registry::{
    alias_version, read_versions, require_model, require_version, ModelVersion, RegistryError,
    Result, Stage, BUNDLE_MANIFEST, DEFAULT_ARTIFACT_PATH,
};
use crate::store::{Store, StoreError};

/// A model URI resolved to the bundle directory on disk, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedModel {
    /// Directory holding `flow-model.json` and `weights.safetensors` (read-only for store bundles).
    pub dir: PathBuf,
    /// The run that published the bundle; `None` for a plain directory.
    pub run_id: Option<String>,
    /// Registered model name, for `models:/` URIs.
    pub name: Option<String>,
    /// Registered version, for `models:/` URIs (the one a stage or alias stood for).
    pub version: Option<u32>,
    /// The URI as given (trimmed).
    pub uri: String,
}

/// Resolves any accepted model URI (see the module doc) to its bundle directory.
pub fn resolve_uri(store: &Store, uri: &str) -> Result<ResolvedModel> {
    let uri = uri.trim();
    match parse(uri)? {
        ModelUri::Run { run, path } => {
            let record = store.get_run(run)?;
            let artifacts = store.artifacts(&record.run_id)?;
            if !has_bundle(&artifacts, &path) {
                return Err(no_bundle(
                    store,
                    &record.run_id,
                    &record.entry,
                    &path,
                    &artifacts,
                )?);
            }
            let dir = absolute(store.run_dir(&record.run_id)?.join(&path))?;
            Ok(ResolvedModel {
                dir,
                run_id: Some(record.run_id),
                name: None,
                version: None,
                uri: uri.to_string(),
            })
        }
        ModelUri::Directory(path) => resolve_directory(&path, uri),
        registered => {
            let version = {
                let conn = store.connection();
                registered_version(&conn, &registered)?
            };
            version_bundle(store, &version, uri)
        }
    }
}

/// A parsed model URI; borrowed from the input string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ModelUri<'a> {
    Run { run: &'a str, path: String },
    Version { name: &'a str, version: u32 },
    Stage { name: &'a str, stage: Stage },
    Latest { name: &'a str },
    Alias { name: &'a str, alias: &'a str },
    Directory(PathBuf),
}

/// Splits a URI into its form without touching the store; only a plain path is checked
/// on disk (an existing directory wins over an odd-looking name).
fn parse(uri: &str) -> Result<ModelUri<'_>> {
    let malformed = |reason: String| RegistryError::MalformedUri {
        uri: uri.to_string(),
        reason,
    };
    if let Some(rest) = uri.strip_prefix("models:") {
        let body = rest
            .strip_prefix('/')
            .filter(|body| !body.starts_with('/'))
            .ok_or_else(|| malformed("`models:` is followed by exactly one `/`".to_string()))?;
        return parse_models(body).map_err(malformed);
    }
    if let Some(rest) = uri.strip_prefix("runs:") {
        let body = rest
            .strip_prefix('/')
            .filter(|body| !body.starts_with('/'))
            .ok_or_else(|| malformed("`runs:` is followed by exactly one `/`".to_string()))?;
        let (run, path) = body.split_once('/').unwrap_or((body, ""));
        if run.is_empty() {
            return Err(malformed("the run id is missing".to_string()));
        }
        let path = if path.trim_matches('/').is_empty() {
            DEFAULT_ARTIFACT_PATH.to_string()
        } else {
            normalize_artifact_path(path)?
        };
        return Ok(ModelUri::Run { run, path });
    }
    let path = Path::new(uri);
    if uri.is_empty() {
        return Err(malformed("it is empty".to_string()));
    }
    if !path.exists() {
        if let Some(scheme) = scheme_of(uri) {
            return Err(malformed(format!("unknown scheme `{scheme}:`")));
        }
    }
    Ok(ModelUri::Directory(path.to_path_buf()))
}

/// The part after `models:/`: `NAME@ALIAS` or `NAME/SELECTOR`.
fn parse_models(body: &str) -> std::result::Result<ModelUri<'_>, String> {
    if let Some((name, alias)) = body.split_once('@') {
        check_segment("model name", name)?;
        check_segment("alias", alias)?;
        if alias.contains('@') {
            return Err("an alias cannot contain `@`".to_string());
        }
        return Ok(ModelUri::Alias { name, alias });
    }
    let Some((name, selector)) = body.split_once('/') else {
        return Err(format!(
            "`{body}` needs a `/VERSION`, `/STAGE`, `/latest` or `@ALIAS` after the model name"
        ));
    };
    check_segment("model name", name)?;
    check_segment("version, stage or `latest`", selector)?;
    if selector.bytes().all(|byte| byte.is_ascii_digit()) {
        return match selector.parse::<u32>() {
            Ok(0) => Err("versions are numbered from 1".to_string()),
            Ok(version) => Ok(ModelUri::Version { name, version }),
            Err(_) => Err(format!("version `{selector}` is too large")),
        };
    }
    if selector.eq_ignore_ascii_case("latest") {
        return Ok(ModelUri::Latest { name });
    }
    match selector.parse::<Stage>() {
        Ok(stage) => Ok(ModelUri::Stage { name, stage }),
        Err(RegistryError::UnknownStage { suggestion: Some(stage), .. }) => Err(format!(
            "`{selector}` is neither a version number, a stage nor `latest`; did you mean `{stage}`?"
        )),
        Err(_) => Err(format!("`{selector}` is neither a version number, a stage nor `latest`")),
    }
}

/// A non-empty URI segment without `/`.
fn check_segment(what: &str, segment: &str) -> std::result::Result<(), String> {
    if segment.is_empty() {
        Err(format!("the {what} is missing"))
    } else if segment.contains('/') {
        Err(format!("the {what} `{segment}` cannot contain `/`"))
    } else {
        Ok(())
    }
}

/// `s3` in `s3://bucket`, `model` in `model:/x`: a URI scheme rather than a file name.
fn scheme_of(text: &str) -> Option<&str> {
    let (scheme, rest) = text.split_once(':')?;
    let looks_like_scheme = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (looks_like_scheme && rest.starts_with('/')).then_some(scheme)
}

/// A bundle on disk; `.../flow-model.json` itself is accepted for its directory.
fn resolve_directory(path: &Path, uri: &str) -> Result<ResolvedModel> {
    let dir = if path.file_name().is_some_and(|name| name == BUNDLE_MANIFEST) && path.is_file() {
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    } else {
        path.to_path_buf()
    };
    if !dir.join(BUNDLE_MANIFEST).is_file() {
        return Err(RegistryError::NotABundle {
            path: path.to_path_buf(),
        });
    }
    Ok(ResolvedModel {
        dir: absolute(dir)?,
        run_id: None,
        name: None,
        version: None,
        uri: uri.to_string(),
    })
}

/// The version a `models:/` URI stands for.
fn registered_version(conn: &Db, uri: &ModelUri) -> Result<ModelVersion> {
    let (name, number) = match *uri {
        ModelUri::Version { name, version } => return require_version(conn, name, version),
        ModelUri::Alias { name, alias } => (name, alias_version(conn, name, alias)?),
        ModelUri::Stage { name, stage } => {
            require_model(conn, name)?;
            let versions = read_versions(conn, Some(name), None)?;
            return match versions.iter().rev().find(|version| version.stage == stage) {
                Some(newest) => Ok(newest.clone()),
                None => Err(RegistryError::NoVersionInStage {
                    name: name.to_string(),
                    stage,
                    stages: stages_in_use(&versions),
                }),
            };
        }
        ModelUri::Latest { name } => {
            require_model(conn, name)?;
            return read_versions(conn, Some(name), None)?.pop().ok_or_else(|| {
                RegistryError::NoVersions {
                    name: name.to_string(),
                }
            });
        }
        ModelUri::Run { .. } | ModelUri::Directory(_) => {
            unreachable!("resolve_uri handles run and directory URIs before looking up versions")
        }
    };
    require_version(conn, name, number)
}

/// `(stage, versions)` for every stage some version is in, in stage order.
fn stages_in_use(versions: &[ModelVersion]) -> Vec<(Stage, Vec<u32>)> {
    Stage::ALL
        .into_iter()
        .map(|stage| {
            let numbers: Vec<u32> = versions
                .iter()
                .filter(|version| version.stage == stage)
                .map(|version| version.version)
                .collect();
            (stage, numbers)
        })
        .filter(|(_, numbers)| !numbers.is_empty())
        .collect()
}

/// The bundle directory of a registered version, materialized from the store.
fn version_bundle(store: &Store, version: &ModelVersion, uri: &str) -> Result<ResolvedModel> {
    let view = match store.run_dir(&version.run_id) {
        Ok(view) => view,
        Err(StoreError::NotFound(_)) => {
            return Err(RegistryError::MissingRun {
                name: version.name.clone(),
                version: version.version,
                run: version.run_id.clone(),
            })
        }
        Err(error) => return Err(error.into()),
    };
    let dir = view.join(&version.artifact_path);
    if !dir.join(BUNDLE_MANIFEST).is_file() {
        return Err(StoreError::corrupt(format!(
            "version {} of model `{}` points at `{}` of run {}, which is not among its outputs",
            version.version,
            version.name,
            manifest_key(&version.artifact_path),
            version.run_id
        ))
        .into());
    }
    Ok(ResolvedModel {
        dir: absolute(dir)?,
        run_id: Some(version.run_id.clone()),
        name: Some(version.name.clone()),
        version: Some(version.version),
        uri: uri.to_string(),
    })
}

/// The bundle directory as an absolute path, so it still holds after a `cd` (scripts,
/// `serve` workers) whatever the store path was relative to.
fn absolute(dir: PathBuf) -> Result<PathBuf> {
    std::fs::canonicalize(&dir).map_err(|source| StoreError::Io { path: dir, source }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(
            parse("models:/det/3").unwrap(),
            ModelUri::Version {
                name: "det",
                version: 3
            }
        );
        assert_eq!(
            parse("models:/det/production").unwrap(),
            ModelUri::Stage {
                name: "det",
                stage: Stage::Production
            }
        );
        assert_eq!(
            parse("models:/det/None").unwrap(),
            ModelUri::Stage {
                name: "det",
                stage: Stage::None
            }
        );
        assert_eq!(
            parse("models:/det/latest").unwrap(),
            ModelUri::Latest { name: "det" }
        );
        assert_eq!(
            parse("models:/det@champion").unwrap(),
            ModelUri::Alias {
                name: "det",
                alias: "champion"
            }
        );
        assert_eq!(
            parse("runs:/ab12").unwrap(),
            ModelUri::Run {
                run: "ab12",
                path: "model".into()
            }
        );
        assert_eq!(
            parse("runs:/ab12/").unwrap(),
            ModelUri::Run {
                run: "ab12",
                path: "model".into()
            }
        );
        assert_eq!(
            parse("runs:/ab12/out/model/").unwrap(),
            ModelUri::Run {
                run: "ab12",
                path: "out/model".into()
            }
        );
        assert_eq!(
            parse("some/dir").unwrap(),
            ModelUri::Directory(PathBuf::from("some/dir"))
        );
    }

    #[test]
    fn malformed_uris_say_why_and_list_the_forms() {
        for (uri, reason) in [
            ("models:/det", "needs a `/VERSION`"),
            ("models:det/1", "exactly one `/`"),
            ("models://det/1", "exactly one `/`"),
            ("models:/det/0", "numbered from 1"),
            ("models:/det/99999999999", "too large"),
            ("models:/det/prod", "did you mean `Production`?"),
            ("models:/det/best", "neither a version number"),
            ("models:/det/1/extra", "cannot contain `/`"),
            ("models:/@x", "model name is missing"),
            ("models:/det@", "alias is missing"),
            ("runs:/", "run id is missing"),
            ("runs:/ab/../etc", "no `..`"),
            ("s3://bucket/model", "unknown scheme `s3:`"),
            ("", "it is empty"),
        ] {
            let message = parse(uri).unwrap_err().to_string();
            assert!(message.contains(reason), "{uri}: {message}");
            if !matches!(parse(uri), Err(RegistryError::InvalidName { .. })) {
                assert!(
                    message.contains("hint: accepted forms:"),
                    "{uri}: {message}"
                );
            }
        }
    }
}
