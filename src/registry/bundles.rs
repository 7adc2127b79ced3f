//! Where a bundle sits among a run's artifacts, and the names that address it: model
//! names and aliases (which appear in URIs) and artifact paths (which must stay inside
//! the run's outputs).

use crate::store::db::{args, DbResult};

use crate::registry::{RegistryError, Result, BUNDLE_MANIFEST};
use crate::store::{Artifact, Store};

/// How many runs a "no bundle here" error lists as alternatives.
const MAX_BUNDLE_HINTS: usize = 5;

/// Where a bundle's manifest sits among a run's artifacts, for an artifact path.
pub(super) fn manifest_key(artifact_path: &str) -> String {
    if artifact_path == "." {
        BUNDLE_MANIFEST.to_string()
    } else {
        format!("{artifact_path}/{BUNDLE_MANIFEST}")
    }
}

/// Whether the run's artifacts include `<artifact_path>/flow-model.json`.
pub(super) fn has_bundle(artifacts: &[Artifact], artifact_path: &str) -> bool {
    let key = manifest_key(artifact_path);
    artifacts.iter().any(|artifact| artifact.path == key)
}

/// The bundle directory (as an artifact path) that an artifact's path is the manifest of.
fn bundle_dir_of(artifact_path: &str) -> Option<&str> {
    if artifact_path == BUNDLE_MANIFEST {
        Some(".")
    } else {
        artifact_path
            .strip_suffix(BUNDLE_MANIFEST)?
            .strip_suffix('/')
    }
}

/// The "no bundle here" error, with the run's other bundles and the newest runs that have one.
pub(super) fn no_bundle(
    store: &Store,
    run_id: &str,
    entry: &str,
    artifact_path: &str,
    artifacts: &[Artifact],
) -> Result<RegistryError> {
    let elsewhere_in_run = artifacts
        .iter()
        .filter_map(|artifact| bundle_dir_of(&artifact.path))
        .map(str::to_string)
        .collect();
    let conn = store.connection();
    let runs_with_bundles = conn
        .prepare_cached(
            "SELECT r.run_id, r.entry, a.path FROM artifacts a JOIN runs r ON r.id = a.run
             WHERE r.status = 'FINISHED' AND (a.path = ?1 OR a.path LIKE ?2)
             ORDER BY r.run_time DESC, r.id DESC LIMIT ?3",
        )?
        .query_map(
            args![
                BUNDLE_MANIFEST,
                format!("%/{BUNDLE_MANIFEST}"),
                MAX_BUNDLE_HINTS as i64
            ],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            },
        )?
        .collect::<DbResult<Vec<_>>>()?
        .into_iter()
        .filter_map(|(run, entry, path)| Some((run, entry, bundle_dir_of(&path)?.to_string())))
        .collect();
    Ok(RegistryError::NoBundle {
        run: run_id.to_string(),
        entry: entry.to_string(),
        artifact_path: artifact_path.to_string(),
        elsewhere_in_run,
        runs_with_bundles,
    })
}

/// Model names and aliases appear in URIs (`models:/NAME@ALIAS`), so they are kept to
/// characters that need no quoting and cannot be confused with the separators.
pub(super) fn validate_name(what: &'static str, value: &str) -> Result<()> {
    let invalid = |reason: &str| RegistryError::InvalidName {
        what,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let Some(first) = value.chars().next() else {
        return Err(invalid("it is empty"));
    };
    if !first.is_ascii_alphanumeric() {
        return Err(invalid("it must start with a letter or digit"));
    }
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(invalid(&format!(
            "`{bad}` is not allowed; use letters, digits, `-`, `_` and `.`"
        )));
    }
    Ok(())
}

/// A relative `/`-separated path inside a run's outputs; `""` and `.` mean the outputs' root.
pub(super) fn normalize_artifact_path(path: &str) -> Result<String> {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return Ok(".".to_string());
    }
    let parts: Vec<&str> = trimmed
        .split('/')
        .filter(|part| !part.is_empty() && *part != ".")
        .collect();
    if parts.is_empty() {
        return Ok(".".to_string());
    }
    if parts
        .iter()
        .any(|part| *part == ".." || part.contains('\\'))
    {
        return Err(RegistryError::InvalidName {
            what: "artifact path",
            value: path.to_string(),
            reason: "it must stay inside the run's outputs (no `..`)".to_string(),
        });
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_are_normalized_and_confined() {
        assert_eq!(normalize_artifact_path("model").unwrap(), "model");
        assert_eq!(
            normalize_artifact_path(" /out//best/ ").unwrap(),
            "out/best"
        );
        assert_eq!(normalize_artifact_path("./model/.").unwrap(), "model");
        for root in ["", ".", "/", "./."] {
            assert_eq!(normalize_artifact_path(root).unwrap(), ".", "{root:?}");
        }
        for escaping in ["..", "model/../../x", "a\\b"] {
            assert!(normalize_artifact_path(escaping).is_err(), "{escaping}");
        }
        assert_eq!(manifest_key("."), "flow-model.json");
        assert_eq!(manifest_key("out/best"), "out/best/flow-model.json");
        assert_eq!(bundle_dir_of("flow-model.json"), Some("."));
        assert_eq!(bundle_dir_of("out/best/flow-model.json"), Some("out/best"));
        assert_eq!(bundle_dir_of("model/not-flow-model.json"), None);
    }

    #[test]
    fn names_fit_in_uris() {
        for good in ["smd-detector", "det_2", "v1.0", "7"] {
            assert!(validate_name("model name", good).is_ok(), "{good}");
        }
        for (bad, reason) in [
            ("", "empty"),
            ("-x", "start with"),
            ("a/b", "`/`"),
            ("a@b", "`@`"),
            ("a b", "` `"),
        ] {
            let message = validate_name("alias", bad).unwrap_err().to_string();
            assert!(message.contains(reason), "{bad}: {message}");
        }
    }
}
