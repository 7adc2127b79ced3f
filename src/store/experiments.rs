//! Experiments as MLflow's tracking API sees them: named groups of runs with an id that
//! clients address them by, tags, and soft deletion. `flow run --experiment NAME` creates
//! them on demand (runs.rs); `flow server` creates, renames, tags, deletes and restores.

use std::collections::BTreeMap;

use crate::store::db::Value;
use crate::store::db::{args, Db, DbResult, OptionalExtension};
use chrono::{DateTime, Utc};

use crate::store::error::{Result, StoreError};
use crate::store::search::{page_of_ids, Comparison, Op, ViewType};
use crate::store::timestamps::{from_micros, now, to_micros};
use crate::store::Store;

/// The experiment MLflow clients log into unless told otherwise: flow's `Default`.
pub const DEFAULT_EXPERIMENT_ID: i64 = 0;

/// Whether an experiment or run is live or soft-deleted (restorable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifecycle {
    Active,
    Deleted,
}

/// One experiment with its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub id: i64,
    pub name: String,
    pub lifecycle: Lifecycle,
    pub created_at: DateTime<Utc>,
    /// The last rename, deletion or restore; the creation time before any.
    pub last_update_time: DateTime<Utc>,
    pub tags: BTreeMap<String, String>,
}

/// A page of experiments matching every filter.
#[derive(Debug, Clone, Default)]
pub struct ExperimentSearch {
    pub view: ViewType,
    pub filters: Vec<ExperimentFilter>,
    /// Earlier keys first; `creation_time` descending when empty, `id` breaks ties.
    pub order: Vec<(ExperimentField, bool)>,
    pub offset: usize,
    pub limit: usize,
}

/// What an experiment filter compares.
#[derive(Debug, Clone, PartialEq)]
pub enum ExperimentSubject {
    Field(ExperimentField),
    Tag(String),
}

/// One `subject op operand` of an experiment search.
#[derive(Debug, Clone, PartialEq)]
pub struct ExperimentFilter {
    pub subject: ExperimentSubject,
    pub comparison: Comparison,
}

/// Experiment attributes a search filters or orders on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExperimentField {
    Id,
    Name,
    /// Milliseconds since the epoch, as MLflow compares them.
    CreationTime,
    LastUpdateTime,
}

impl Lifecycle {
    /// The spelling stored and shown (MLflow's).
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Active => "active",
            Lifecycle::Deleted => "deleted",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Lifecycle> {
        match text {
            "active" => Ok(Lifecycle::Active),
            "deleted" => Ok(Lifecycle::Deleted),
            other => Err(StoreError::corrupt(format!(
                "unknown lifecycle stage `{other}`"
            ))),
        }
    }
}

impl Store {
    /// Creates an empty experiment; its name must be new (deleted ones count).
    pub fn create_experiment(&self, name: &str, tags: &BTreeMap<String, String>) -> Result<i64> {
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        if experiment_id_by_name(&tx, name)?.is_some() {
            return Err(StoreError::AlreadyExists {
                what: "experiment",
                name: name.to_string(),
            });
        }
        let id: i64 = tx.query_row(
            "INSERT INTO experiments (name, created_at) VALUES (?1, ?2) RETURNING id",
            args![name, to_micros(now())],
            |row| row.get(0),
        )?;
        for (key, value) in tags {
            upsert_tag(&tx, id, key, value)?;
        }
        tx.commit()?;
        Ok(id)
    }

    /// One experiment by id, deleted or not.
    pub fn experiment(&self, id: i64) -> Result<Experiment> {
        let conn = self.connection();
        read_experiment(&conn, id)?.ok_or_else(|| StoreError::ExperimentNotFound(id.to_string()))
    }

    /// One experiment by its exact name, deleted or not.
    pub fn experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        let conn = self.connection();
        match experiment_id_by_name(&conn, name)? {
            Some(id) => read_experiment(&conn, id),
            None => Ok(None),
        }
    }

    /// A page of experiments, plus whether more follow it.
    pub fn search_experiments(&self, search: &ExperimentSearch) -> Result<(Vec<Experiment>, bool)> {
        let mut values = Vec::new();
        let mut conditions = vec![search.view.condition("e.lifecycle_stage")];
        for filter in &search.filters {
            conditions.push(filter_sql(filter, &mut values));
        }
        let mut order: Vec<String> = search
            .order
            .iter()
            .map(|(field, ascending)| {
                format!(
                    "{} {}",
                    field_sql(*field),
                    if *ascending { "ASC" } else { "DESC" }
                )
            })
            .collect();
        if order.is_empty() {
            order.push("e.created_at DESC".to_string());
        }
        order.push("e.id ASC".to_string());
        let conn = self.connection();
        let (ids, more) = page_of_ids(
            &conn,
            "SELECT e.id FROM experiments e",
            &conditions,
            &order,
            values,
            search.offset,
            search.limit,
        )?;
        let mut experiments = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(experiment) = read_experiment(&conn, id)? {
                experiments.push(experiment);
            }
        }
        Ok((experiments, more))
    }

    /// Renames an experiment; the new name must be free.
    pub fn rename_experiment(&self, id: i64, new_name: &str) -> Result<()> {
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        require_experiment(&tx, id)?;
        match experiment_id_by_name(&tx, new_name)? {
            Some(other) if other != id => {
                return Err(StoreError::AlreadyExists {
                    what: "experiment",
                    name: new_name.to_string(),
                })
            }
            _ => {}
        }
        tx.prepare_cached("UPDATE experiments SET name = ?1, last_update_time = ?2 WHERE id = ?3")?
            .execute(args![new_name, to_micros(now()), id])?;
        tx.commit()?;
        Ok(())
    }

    /// Soft-deletes or restores an experiment together with its runs, as MLflow does.
    pub fn set_experiment_lifecycle(&self, id: i64, lifecycle: Lifecycle) -> Result<()> {
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        require_experiment(&tx, id)?;
        tx.prepare_cached(
            "UPDATE experiments SET lifecycle_stage = ?1, last_update_time = ?2 WHERE id = ?3",
        )?
        .execute(args![lifecycle.as_str(), to_micros(now()), id])?;
        tx.prepare_cached("UPDATE runs SET lifecycle_stage = ?1 WHERE experiment_id = ?2")?
            .execute(args![lifecycle.as_str(), id])?;
        tx.commit()?;
        Ok(())
    }

    /// Sets an experiment tag; the last value wins.
    pub fn set_experiment_tag(&self, id: i64, key: &str, value: &str) -> Result<()> {
        let conn = self.connection();
        require_experiment(&conn, id)?;
        upsert_tag(&conn, id, key, value)
    }

    /// Removes an experiment tag; a missing tag is not an error.
    pub fn delete_experiment_tag(&self, id: i64, key: &str) -> Result<()> {
        let conn = self.connection();
        require_experiment(&conn, id)?;
        conn.prepare_cached("DELETE FROM experiment_tags WHERE experiment = ?1 AND key = ?2")?
            .execute(args![id, key])?;
        Ok(())
    }
}

/// The experiment's name and lifecycle, or ExperimentNotFound.
pub(crate) fn require_experiment(conn: &Db, id: i64) -> Result<(String, Lifecycle)> {
    let found: Option<(String, String)> = conn
        .prepare_cached("SELECT name, lifecycle_stage FROM experiments WHERE id = ?1")?
        .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    let (name, lifecycle) = found.ok_or_else(|| StoreError::ExperimentNotFound(id.to_string()))?;
    Ok((name, Lifecycle::parse(&lifecycle)?))
}

fn experiment_id_by_name(conn: &Db, name: &str) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM experiments WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?)
}

fn read_experiment(conn: &Db, id: i64) -> Result<Option<Experiment>> {
    let row: Option<(String, String, i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT name, lifecycle_stage, created_at, last_update_time FROM experiments
             WHERE id = ?1",
        )?
        .query_row([id], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
        })
        .optional()?;
    let Some((name, lifecycle, created_at, last_update_time)) = row else {
        return Ok(None);
    };
    let tags = conn
        .prepare_cached("SELECT key, value FROM experiment_tags WHERE experiment = ?1")?
        .query_map([id], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<DbResult<_>>()?;
    Ok(Some(Experiment {
        id,
        name,
        lifecycle: Lifecycle::parse(&lifecycle)?,
        created_at: from_micros(created_at)?,
        last_update_time: from_micros(last_update_time.unwrap_or(created_at))?,
        tags,
    }))
}

fn upsert_tag(conn: &Db, id: i64, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO experiment_tags (experiment, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (experiment, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(args![id, key, value])?;
    Ok(())
}

fn field_sql(field: ExperimentField) -> &'static str {
    match field {
        ExperimentField::Id => "e.id",
        ExperimentField::Name => "e.name",
        ExperimentField::CreationTime => "(e.created_at / 1000)",
        ExperimentField::LastUpdateTime => "(COALESCE(e.last_update_time, e.created_at) / 1000)",
    }
}

fn filter_sql(filter: &ExperimentFilter, values: &mut Vec<Value>) -> String {
    match &filter.subject {
        ExperimentSubject::Field(field) => filter.comparison.sql(field_sql(*field), values),
        ExperimentSubject::Tag(key) => {
            values.push(Value::Text(key.clone()));
            let key_param = values.len();
            let tagged = format!(
                "SELECT 1 FROM experiment_tags t WHERE t.experiment = e.id AND t.key = ?{key_param}"
            );
            match filter.comparison.op {
                Op::IsNull => format!("NOT EXISTS ({tagged})"),
                Op::IsNotNull => format!("EXISTS ({tagged})"),
                _ => format!(
                    "EXISTS ({tagged} AND {})",
                    filter.comparison.sql("t.value", values)
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::search::Operand;
    use crate::store::test_support::temp_store;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn create_get_rename_and_refuse_duplicates() {
        let (_dir, store) = temp_store();
        let default = store.experiment(DEFAULT_EXPERIMENT_ID).unwrap();
        assert_eq!(default.name, "Default");
        let id = store
            .create_experiment("smd", &tags(&[("team", "ops")]))
            .unwrap();
        assert_ne!(id, DEFAULT_EXPERIMENT_ID);
        let created = store.experiment(id).unwrap();
        assert_eq!(created.name, "smd");
        assert_eq!(created.tags, tags(&[("team", "ops")]));
        assert_eq!(created.lifecycle, Lifecycle::Active);
        assert!(matches!(
            store.create_experiment("smd", &BTreeMap::new()),
            Err(StoreError::AlreadyExists { .. })
        ));
        assert!(matches!(
            store.rename_experiment(id, "Default"),
            Err(StoreError::AlreadyExists { .. })
        ));
        store.rename_experiment(id, "smd-2").unwrap();
        assert_eq!(store.experiment_by_name("smd-2").unwrap().unwrap().id, id);
        assert!(store.experiment_by_name("smd").unwrap().is_none());
        assert!(matches!(
            store.experiment(9999),
            Err(StoreError::ExperimentNotFound(_))
        ));
    }

    #[test]
    fn deletion_hides_from_the_default_view_and_restores() {
        let (_dir, store) = temp_store();
        let id = store.create_experiment("gone", &BTreeMap::new()).unwrap();
        store
            .set_experiment_lifecycle(id, Lifecycle::Deleted)
            .unwrap();
        let names = |view| -> Vec<String> {
            let search = ExperimentSearch {
                view,
                limit: 100,
                ..ExperimentSearch::default()
            };
            let (found, more) = store.search_experiments(&search).unwrap();
            assert!(!more);
            found.into_iter().map(|e| e.name).collect()
        };
        assert_eq!(names(ViewType::ActiveOnly), vec!["Default"]);
        assert_eq!(names(ViewType::DeletedOnly), vec!["gone"]);
        store
            .set_experiment_lifecycle(id, Lifecycle::Active)
            .unwrap();
        assert_eq!(names(ViewType::All).len(), 2);
    }

    #[test]
    fn search_filters_on_names_and_tags_and_pages() {
        let (_dir, store) = temp_store();
        for (name, team) in [("smd-a", "ops"), ("smd-b", "ml"), ("msl", "ops")] {
            store
                .create_experiment(name, &tags(&[("team", team)]))
                .unwrap();
        }
        let search = |filters: Vec<ExperimentFilter>, offset, limit| {
            let search = ExperimentSearch {
                filters,
                order: vec![(ExperimentField::Name, true)],
                offset,
                limit,
                ..ExperimentSearch::default()
            };
            let (found, more) = store.search_experiments(&search).unwrap();
            (found.into_iter().map(|e| e.name).collect::<Vec<_>>(), more)
        };
        let name_like = ExperimentFilter {
            subject: ExperimentSubject::Field(ExperimentField::Name),
            comparison: Comparison {
                op: Op::Like,
                operand: Operand::Text("smd-%".into()),
            },
        };
        let ops = ExperimentFilter {
            subject: ExperimentSubject::Tag("team".into()),
            comparison: Comparison {
                op: Op::Eq,
                operand: Operand::Text("ops".into()),
            },
        };
        assert_eq!(
            search(vec![name_like.clone()], 0, 10),
            (vec!["smd-a".into(), "smd-b".into()], false)
        );
        assert_eq!(
            search(vec![name_like, ops.clone()], 0, 10),
            (vec!["smd-a".into()], false)
        );
        assert_eq!(search(vec![ops.clone()], 0, 1), (vec!["msl".into()], true));
        assert_eq!(search(vec![ops], 1, 1), (vec!["smd-a".into()], false));
    }
}
