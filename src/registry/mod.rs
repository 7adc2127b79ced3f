//! The model registry: named models whose numbered versions point at the bundle a
//! finished run published, with stages (None, Staging, Production, Archived) and aliases,
//! so `serve` and `predict` can ask for "the Production model" instead of a run id.
//!
//! A version records `(run_id, artifact_path)`; the bundle itself stays where the run
//! published it, content-addressed in the store. Versions are numbered 1, 2, 3, ... per
//! model. The tables (`registered_models`, `model_versions`, `model_aliases`) are
//! created by the store's schema; this module owns the queries over them. Every write is
//! one IMMEDIATE transaction, like the store's own writes, so two processes registering
//! at once get distinct version numbers.

mod bundles;
mod error;
mod uri;

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use crate::store::db::{args, Db, DbResult, OptionalExtension};
use chrono::{DateTime, Utc};

use crate::store::{RunStatus, Store, StoreError};

use bundles::{has_bundle, no_bundle, normalize_artifact_path, validate_name};

pub use error::{RegistryError, Result, ACCEPTED_URIS};
pub use uri::{resolve_uri, ResolvedModel};

/// File that marks a directory as a model bundle (`bundle::BundleManifest` as JSON).
pub const BUNDLE_MANIFEST: &str = "flow-model.json";

/// Where `train` and `evaluate` put the bundle inside their outputs.
pub const DEFAULT_ARTIFACT_PATH: &str = "model";

/// Life-cycle stage of a model version; at most one is usually in Production.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    None,
    Staging,
    Production,
    Archived,
}

/// One version of a registered model, with the aliases that point at it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: u32,
    pub run_id: String,
    /// Bundle directory inside the run's outputs (`model`, or `.` for the outputs' root).
    pub artifact_path: String,
    pub stage: Stage,
    /// Sorted.
    pub aliases: Vec<String>,
    #[serde(serialize_with = "serialize_time")]
    pub created_at: DateTime<Utc>,
}

impl Stage {
    pub const ALL: [Stage; 4] = [
        Stage::None,
        Stage::Staging,
        Stage::Production,
        Stage::Archived,
    ];

    /// The spelling stored in the database and shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::None => "None",
            Stage::Staging => "Staging",
            Stage::Production => "Production",
            Stage::Archived => "Archived",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Stage {
    type Err = RegistryError;

    /// Case-insensitive (`production`, `PRODUCTION`); a near miss or a prefix such as
    /// `prod` is suggested, never silently accepted.
    fn from_str(text: &str) -> Result<Stage> {
        let lower = text.trim().to_ascii_lowercase();
        if let Some(stage) = Stage::ALL
            .into_iter()
            .find(|stage| stage.as_str().eq_ignore_ascii_case(&lower))
        {
            return Ok(stage);
        }
        let lowered: Vec<String> = Stage::ALL
            .iter()
            .map(|stage| stage.as_str().to_ascii_lowercase())
            .collect();
        let by_prefix = (lower.len() >= 3)
            .then(|| {
                Stage::ALL
                    .into_iter()
                    .find(|stage| stage.as_str().to_ascii_lowercase().starts_with(&lower))
            })
            .flatten();
        let by_distance = crate::suggest::closest(&lower, lowered.iter().map(String::as_str))
            .and_then(|close| {
                Stage::ALL
                    .into_iter()
                    .find(|stage| stage.as_str().eq_ignore_ascii_case(close))
            });
        Err(RegistryError::UnknownStage {
            text: text.to_string(),
            suggestion: by_prefix.or(by_distance),
        })
    }
}

impl serde::Serialize for Stage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl ModelVersion {
    /// `models:/NAME/VERSION`: the URI that always means exactly this version.
    pub fn uri(&self) -> String {
        format!("models:/{}/{}", self.name, self.version)
    }
}

/// Registers the bundle at `<artifact_path>/flow-model.json` of a FINISHED run as the
/// next version of `name`, creating the model on first use.
pub fn register(store: &Store, name: &str, run: &str, artifact_path: &str) -> Result<ModelVersion> {
    validate_name("model name", name)?;
    let artifact_path = normalize_artifact_path(artifact_path)?;
    let record = store.get_run(run)?;
    if record.status != RunStatus::Finished {
        return Err(RegistryError::RunNotFinished {
            run: record.run_id,
            entry: record.entry,
            status: record.status.to_string(),
        });
    }
    let artifacts = store.artifacts(&record.run_id)?;
    if !has_bundle(&artifacts, &artifact_path) {
        return Err(no_bundle(
            store,
            &record.run_id,
            &record.entry,
            &artifact_path,
            &artifacts,
        )?);
    }

    let created_at = now_micros();
    let mut conn = store.connection();
    let tx = conn.write_transaction()?;
    // The run may have been deleted between the checks above and this transaction.
    let status: Option<String> = tx
        .prepare_cached("SELECT status FROM runs WHERE run_id = ?1")?
        .query_row([&record.run_id], |row| row.get(0))
        .optional()?;
    if status.as_deref() != Some(RunStatus::Finished.as_str()) {
        return Err(StoreError::NotFound(record.run_id).into());
    }
    tx.prepare_cached("INSERT INTO registered_models (name, created_at) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING")?
        .execute(args![name, created_at.timestamp_micros()])?;
    let version: i64 = tx
        .prepare_cached(
            "UPDATE registered_models SET last_version = last_version + 1 WHERE name = ?1
             RETURNING last_version",
        )?
        .query_row([name], |row| row.get(0))?;
    tx.prepare_cached(
        "INSERT INTO model_versions (name, version, run_id, artifact_path, stage, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(args![
        name,
        version,
        record.run_id,
        artifact_path,
        Stage::None.as_str(),
        created_at.timestamp_micros()
    ])?;
    tx.commit()?;
    Ok(ModelVersion {
        name: name.to_string(),
        version: version_number(version)?,
        run_id: record.run_id,
        artifact_path,
        stage: Stage::None,
        aliases: Vec::new(),
        created_at,
    })
}

/// Every version of every model (or of `name` only), by name then version.
pub fn list(store: &Store, name: Option<&str>) -> Result<Vec<ModelVersion>> {
    let conn = store.connection();
    if let Some(name) = name {
        require_model(&conn, name)?;
    }
    read_versions(&conn, name, None)
}

/// Names of the registered models, sorted, including models whose versions were all deleted.
pub fn model_names(store: &Store) -> Result<Vec<String>> {
    model_names_in(&store.connection())
}

/// Moves a version to `stage`. Promoting to Production archives the versions that were
/// in Production, unless `keep_others`. Returns the version itself, then any it archived.
pub fn set_stage(
    store: &Store,
    name: &str,
    version: u32,
    stage: Stage,
    keep_others: bool,
) -> Result<Vec<ModelVersion>> {
    let mut conn = store.connection();
    let tx = conn.write_transaction()?;
    require_version(&tx, name, version)?;
    let mut changed = vec![version];
    if stage == Stage::Production && !keep_others {
        let previous: Vec<i64> = tx
            .prepare_cached(
                "SELECT version FROM model_versions
                 WHERE name = ?1 AND stage = 'Production' AND version != ?2 ORDER BY version",
            )?
            .query_map(args![name, version], |row| row.get(0))?
            .collect::<DbResult<_>>()?;
        for archived in previous {
            tx.prepare_cached(
                "UPDATE model_versions SET stage = 'Archived' WHERE name = ?1 AND version = ?2",
            )?
            .execute(args![name, archived])?;
            changed.push(version_number(archived)?);
        }
    }
    tx.prepare_cached("UPDATE model_versions SET stage = ?3 WHERE name = ?1 AND version = ?2")?
        .execute(args![name, version, stage.as_str()])?;
    let mut versions = read_versions(&tx, Some(name), None)?;
    tx.commit()?;
    versions.retain(|entry| changed.contains(&entry.version));
    versions.sort_by_key(|entry| changed.iter().position(|&number| number == entry.version));
    Ok(versions)
}

/// Points `alias` of model `name` at `version`, moving it if it pointed elsewhere.
pub fn set_alias(store: &Store, name: &str, alias: &str, version: u32) -> Result<()> {
    validate_name("alias", alias)?;
    let mut conn = store.connection();
    let tx = conn.write_transaction()?;
    require_version(&tx, name, version)?;
    tx.prepare_cached(
        "INSERT INTO model_aliases (name, alias, version) VALUES (?1, ?2, ?3)
         ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version",
    )?
    .execute(args![name, alias, version])?;
    tx.commit()?;
    Ok(())
}

/// Removes `alias` from model `name`; returns the version it pointed at.
pub fn remove_alias(store: &Store, name: &str, alias: &str) -> Result<u32> {
    let mut conn = store.connection();
    let tx = conn.write_transaction()?;
    let version = alias_version(&tx, name, alias)?;
    tx.prepare_cached("DELETE FROM model_aliases WHERE name = ?1 AND alias = ?2")?
        .execute(args![name, alias])?;
    tx.commit()?;
    Ok(version)
}

/// Deletes one version (and the aliases pointing at it), or the whole model with all its
/// versions and aliases. The runs and their bundles stay.
pub fn delete(store: &Store, name: &str, version: Option<u32>) -> Result<()> {
    let mut conn = store.connection();
    let tx = conn.write_transaction()?;
    match version {
        Some(version) => {
            require_version(&tx, name, version)?;
            tx.prepare_cached("DELETE FROM model_versions WHERE name = ?1 AND version = ?2")?
                .execute(args![name, version])?;
        }
        None => {
            require_model(&tx, name)?;
            tx.prepare_cached("DELETE FROM registered_models WHERE name = ?1")?
                .execute([name])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Errors unless `name` is registered, suggesting the closest registered name.
fn require_model(conn: &Db, name: &str) -> Result<()> {
    let known = conn
        .prepare_cached("SELECT 1 FROM registered_models WHERE name = ?1")?
        .query_row([name], |_| Ok(()))
        .optional()?;
    if known.is_some() {
        return Ok(());
    }
    let names = model_names_in(conn)?;
    Err(RegistryError::UnknownModel {
        name: name.to_string(),
        suggestion: crate::suggest::closest(name, names.iter().map(String::as_str))
            .map(str::to_string),
        n_models: names.len(),
    })
}

/// The version, or an error naming the versions that do exist.
fn require_version(conn: &Db, name: &str, version: u32) -> Result<ModelVersion> {
    require_model(conn, name)?;
    if let Some(found) = read_versions(conn, Some(name), Some(version))?.pop() {
        return Ok(found);
    }
    let versions = read_versions(conn, Some(name), None)?;
    Err(RegistryError::UnknownVersion {
        name: name.to_string(),
        version,
        versions: versions.iter().map(|entry| entry.version).collect(),
    })
}

/// The version an alias points at, or an error listing the model's aliases.
fn alias_version(conn: &Db, name: &str, alias: &str) -> Result<u32> {
    require_model(conn, name)?;
    let found: Option<i64> = conn
        .prepare_cached("SELECT version FROM model_aliases WHERE name = ?1 AND alias = ?2")?
        .query_row(args![name, alias], |row| row.get(0))
        .optional()?;
    if let Some(version) = found {
        return version_number(version);
    }
    let aliases: Vec<String> = conn
        .prepare_cached("SELECT alias FROM model_aliases WHERE name = ?1 ORDER BY alias")?
        .query_map([name], |row| row.get(0))?
        .collect::<DbResult<_>>()?;
    let suggestion =
        crate::suggest::closest(alias, aliases.iter().map(String::as_str)).map(str::to_string);
    Err(RegistryError::UnknownAlias {
        name: name.to_string(),
        alias: alias.to_string(),
        aliases,
        suggestion,
    })
}

fn model_names_in(conn: &Db) -> Result<Vec<String>> {
    let names = conn
        .prepare_cached("SELECT name FROM registered_models ORDER BY name")?
        .query_map((), |row| row.get(0))?
        .collect::<DbResult<_>>()?;
    Ok(names)
}

/// Versions of all models or one, optionally one version, with their aliases attached.
fn read_versions(conn: &Db, name: Option<&str>, version: Option<u32>) -> Result<Vec<ModelVersion>> {
    let mut aliases: HashMap<(String, i64), Vec<String>> = HashMap::new();
    let alias_rows = conn
        .prepare_cached(
            "SELECT name, version, alias FROM model_aliases
             WHERE (CAST(?1 AS TEXT) IS NULL OR name = ?1)
               AND (CAST(?2 AS BIGINT) IS NULL OR version = ?2) ORDER BY alias",
        )?
        .query_map(args![name, version], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })?
        .collect::<DbResult<Vec<(String, i64, String)>>>()?;
    for (model, number, alias) in alias_rows {
        aliases.entry((model, number)).or_default().push(alias);
    }
    let rows = conn
        .prepare_cached(
            "SELECT name, version, run_id, artifact_path, stage, created_at FROM model_versions
             WHERE (CAST(?1 AS TEXT) IS NULL OR name = ?1)
               AND (CAST(?2 AS BIGINT) IS NULL OR version = ?2) ORDER BY name, version",
        )?
        .query_map(args![name, version], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, i64>(5)?,
            ))
        })?
        .collect::<DbResult<Vec<_>>>()?;
    rows.into_iter()
        .map(|(name, number, run_id, artifact_path, stage, created_at)| {
            let aliases = aliases.remove(&(name.clone(), number)).unwrap_or_default();
            Ok(ModelVersion {
                version: version_number(number)?,
                stage: stage.parse().map_err(|_| {
                    StoreError::corrupt(format!("model `{name}` has an unknown stage `{stage}`"))
                })?,
                created_at: DateTime::from_timestamp_micros(created_at).ok_or_else(|| {
                    StoreError::corrupt(format!("timestamp {created_at} µs is out of range"))
                })?,
                name,
                run_id,
                artifact_path,
                aliases,
            })
        })
        .collect()
}

/// The wall clock at the microsecond precision the tables store, so a returned version
/// equals the same version read back.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn version_number(stored: i64) -> Result<u32> {
    u32::try_from(stored)
        .map_err(|_| StoreError::corrupt(format!("model version {stored} is out of range")).into())
}

fn serialize_time<S: serde::Serializer>(
    time: &DateTime<Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests;
