//! Reading runs back: prefix resolution, the resolver's reuse query, listings, lineage.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};

use crate::store::db::Value;
use crate::store::db::{args, params_vec, Db, DbResult, OptionalExtension, Row};

use crate::store::digest::{inputs_hash, params_hash};
use crate::store::error::{Result, StoreError};
use crate::store::runs::{ReuseQuery, RunFilter, RunId, RunRecord, RunStatus};
use crate::store::timestamps::{from_micros, to_micros};
use crate::store::Store;

/// How many candidates an ambiguous prefix reports.
const MAX_CANDIDATES: usize = 10;

/// Columns of [`RunRecord`] in the order `record_from_row` reads them.
const RUN_COLUMNS: &str = "r.id, r.run_id, e.name, r.entry, r.key_value, r.run_time, r.start_time,
    r.end_time, r.status, r.data_version, r.code_version, r.code_dirty, r.command, r.pid,
    r.manifest_hash, r.member";

impl Store {
    /// The newest FINISHED run whose key equals the query in every field.
    pub fn find_reusable(&self, query: &ReuseQuery) -> Result<Option<RunRecord>> {
        let conn = self.connection();
        find_by_key(&conn, query, RunStatus::Finished)
    }

    /// Runs of one step with this key value, any status, newest run_time first: the
    /// candidates `flow plan` explains.
    pub fn recent_runs(
        &self,
        entry: &str,
        key_value: Option<&str>,
        limit: usize,
    ) -> Result<Vec<RunRecord>> {
        self.recent_runs_after(entry, key_value, None, limit)
    }

    /// [`Store::recent_runs`] newer than `after` (run_time): the runs a plan explains above
    /// the one it reuses, usually none.
    pub fn recent_runs_after(
        &self,
        entry: &str,
        key_value: Option<&str>,
        after: Option<DateTime<Utc>>,
        limit: usize,
    ) -> Result<Vec<RunRecord>> {
        let conn = self.connection();
        let after = after.map_or(i64::MIN, to_micros);
        let partials = conn
            .prepare_cached(&recent_sql(key_value.is_some()))?
            .query_map(
                args![entry, key_value, limit_value(Some(limit)), after],
                record_from_row,
            )?
            .collect::<DbResult<Vec<_>>>()?;
        complete_all(&conn, partials)
    }

    /// One run by full id or unique prefix.
    pub fn get_run(&self, id_or_prefix: &str) -> Result<RunRecord> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, id_or_prefix)?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id WHERE r.id = ?1"
        );
        let partial = conn
            .prepare_cached(&sql)?
            .query_row([rowid], record_from_row)?;
        complete(&conn, partial)
    }

    /// Runs matching the filter, most recently started first, or in the filter's order.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let mut conditions = Vec::new();
        let mut values = Vec::new();
        let direction = if filter.ascending { "ASC" } else { "DESC" };
        let (metric_join, order) = match &filter.metric {
            Some(key) => {
                values.push(Value::Text(key.clone()));
                (
                    format!(
                        "JOIN latest_metrics m ON m.run = r.id AND m.key = ?{}",
                        values.len()
                    ),
                    format!("m.value IS NULL, m.value {direction}, r.id DESC"),
                )
            }
            None => (String::new(), format!("r.id {direction}")),
        };
        if let Some(entry) = &filter.entry {
            values.push(Value::Text(entry.clone()));
            conditions.push(format!("r.entry = ?{}", values.len()));
        }
        if let Some(status) = filter.status {
            values.push(Value::Text(status.as_str().to_string()));
            conditions.push(format!("r.status = ?{}", values.len()));
        }
        if let Some(member) = &filter.member {
            values.push(Value::Text(member.clone()));
            conditions.push(format!("r.member = ?{}", values.len()));
        }
        if let Some(experiment) = &filter.experiment {
            values.push(Value::Text(experiment.clone()));
            conditions.push(format!("e.name = ?{}", values.len()));
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        values.push(Value::Integer(limit_value(filter.limit)));
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id
             {metric_join} {where_clause} ORDER BY {order} LIMIT ?{}",
            values.len()
        );
        let conn = self.connection();
        let partials = conn
            .prepare_cached(&sql)?
            .query_map(params_vec(values), record_from_row)?
            .collect::<DbResult<Vec<_>>>()?;
        complete_all(&conn, partials)
    }

    /// Runs that recorded `run` as an upstream input, oldest first.
    pub fn downstream(&self, run: &str) -> Result<Vec<RunId>> {
        let conn = self.connection();
        let (_, run_id) = resolve_run(&conn, run)?;
        downstream_of(&conn, &run_id)
    }
}

/// The newest run with `status` whose key equals the query in every field.
pub(crate) fn find_by_key(
    conn: &Db,
    query: &ReuseQuery,
    status: RunStatus,
) -> Result<Option<RunRecord>> {
    let (from, until) = match query.run_time {
        Some((from, until)) => (to_micros(from), to_micros(until)),
        None => (i64::MIN, i64::MAX),
    };
    let key = query.key;
    let found = conn
        .prepare_cached(&reuse_sql(
            query.match_data,
            key.key_value.is_some(),
            conn.is_postgres(),
        ))?
        .query_row(
            args![
                key.entry,
                key.key_value,
                params_hash(&key.params),
                inputs_hash(&key.upstream),
                query.match_data.then_some(key.data_version.as_str()),
                from,
                until,
                query.match_code.then_some(key.code_version.as_str()),
                status.as_str(),
            ],
            record_from_row,
        )
        .optional()?;
    found.map(|partial| complete(conn, partial)).transpose()
}

/// Resolves a full id or a unique prefix to `(rowid, run_id)`.
pub(crate) fn resolve_run(conn: &Db, id_or_prefix: &str) -> Result<(i64, RunId)> {
    let prefix = id_or_prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(StoreError::NotFound(id_or_prefix.to_string()));
    }
    let exact = conn
        .prepare_cached("SELECT id, run_id FROM runs WHERE run_id = ?1")?
        .query_row([&prefix], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    if let Some(found) = exact {
        return Ok(found);
    }
    // Every id is ASCII hex, so `prefix || 'g'` bounds the range of ids that start with it.
    let mut matches: Vec<(i64, RunId)> = conn
        .prepare_cached(
            "SELECT id, run_id FROM runs WHERE run_id >= ?1 AND run_id < ?2 ORDER BY run_id LIMIT ?3",
        )?
        .query_map(
            args![prefix, format!("{prefix}g"), (MAX_CANDIDATES + 1) as i64],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?
        .collect::<DbResult<_>>()?;
    match matches.len() {
        0 => Err(StoreError::NotFound(id_or_prefix.to_string())),
        1 => Ok(matches.remove(0)),
        _ => Err(StoreError::Ambiguous {
            prefix: id_or_prefix.to_string(),
            candidates: matches
                .into_iter()
                .take(MAX_CANDIDATES)
                .map(|(_, id)| id)
                .collect(),
        }),
    }
}

/// Ids of the runs that list `run_id` among their inputs.
pub(crate) fn downstream_of(conn: &Db, run_id: &str) -> Result<Vec<RunId>> {
    let ids = conn
        .prepare_cached(
            "SELECT DISTINCT r.run_id, r.id FROM run_inputs i JOIN runs r ON r.id = i.run
             WHERE i.upstream_run_id = ?1 ORDER BY r.id",
        )?
        .query_map([run_id], |row| row.get(0))?
        .collect::<DbResult<_>>()?;
    Ok(ids)
}

/// A run row before its params and upstream edges are attached.
struct PartialRecord {
    rowid: i64,
    record: RunRecord,
}

/// Reads one row of `RUN_COLUMNS`; params and upstream are filled by [`complete`].
fn record_from_row(row: &Row) -> DbResult<Result<PartialRecord>> {
    let status: String = row.get(8)?;
    let run_time: i64 = row.get(5)?;
    let start_time: i64 = row.get(6)?;
    let end_time: Option<i64> = row.get(7)?;
    let build = || -> Result<PartialRecord> {
        Ok(PartialRecord {
            rowid: row.get(0)?,
            record: RunRecord {
                run_id: row.get(1)?,
                experiment: row.get(2)?,
                entry: row.get(3)?,
                key_value: row.get(4)?,
                member: row.get(15)?,
                run_time: from_micros(run_time)?,
                start_time: from_micros(start_time)?,
                end_time: end_time.map(from_micros).transpose()?,
                status: status
                    .parse::<RunStatus>()
                    .map_err(|_| StoreError::corrupt(format!("unknown run status `{status}`")))?,
                params: Default::default(),
                upstream: Vec::new(),
                data_version: row.get(9)?,
                code_version: row.get(10)?,
                code_dirty: row.get(11)?,
                command: row.get(12)?,
                pid: row.get(13)?,
                manifest_hash: row.get(14)?,
            },
        })
    };
    Ok(build())
}

/// Attaches params and upstream edges to a row read by `record_from_row`.
fn complete(conn: &Db, partial: Result<PartialRecord>) -> Result<RunRecord> {
    let mut records = complete_all(conn, vec![partial])?;
    records
        .pop()
        .ok_or_else(|| StoreError::corrupt("a run vanished while it was read"))
}

/// Runs per batch of [`complete_all`]'s `IN (...)` lists.
const COMPLETE_CHUNK: usize = 500;

/// [`complete`] for many records with two statements per chunk instead of two per record:
/// against PostgreSQL each statement is a round trip.
fn complete_all(conn: &Db, partials: Vec<Result<PartialRecord>>) -> Result<Vec<RunRecord>> {
    let partials = partials.into_iter().collect::<Result<Vec<_>>>()?;
    let mut params: HashMap<i64, BTreeMap<String, String>> = HashMap::new();
    let mut upstream: HashMap<i64, Vec<(String, RunId)>> = HashMap::new();
    for chunk in partials.chunks(COMPLETE_CHUNK) {
        let ids: Vec<i64> = chunk.iter().map(|partial| partial.rowid).collect();
        let placeholders = vec!["?"; ids.len()].join(", ");
        // Params and edges in one statement: against PostgreSQL each is a round trip.
        let rows = conn
            .prepare_cached(&format!(
                "SELECT 0, run, key, value FROM params WHERE run IN ({placeholders})
                 UNION ALL
                 SELECT 1, run, upstream_entry, upstream_run_id FROM run_inputs
                 WHERE run IN ({placeholders})
                 ORDER BY 1, 2, 3, 4"
            ))?
            .query_map(params_vec(ids.iter().chain(&ids)), |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get(2)?,
                    row.get(3)?,
                ))
            })?
            .collect::<DbResult<Vec<(i64, i64, String, String)>>>()?;
        for (table, run, first, second) in rows {
            if table == 0 {
                params.entry(run).or_default().insert(first, second);
            } else {
                upstream.entry(run).or_default().push((first, second));
            }
        }
    }
    Ok(partials
        .into_iter()
        .map(|PartialRecord { rowid, mut record }| {
            record.params = params.remove(&rowid).unwrap_or_default();
            record.upstream = upstream.remove(&rowid).unwrap_or_default();
            record
        })
        .collect())
}

/// find_by_key's SQL (`?9` is the status). With a data version every key column is an equality on the
/// `runs_reuse` index, which then also yields the newest run first without a sort; an
/// `(?5 IS NULL OR ...)` disjunction would forfeit both, hence two statements, and for
/// the same reason a missing key value is `IS NULL` rather than SQLite's `IS ?2`, which
/// PostgreSQL's indexes do not serve. Without one, the index prefix still narrows to the runs
/// of one params/upstream key. Without ANALYZE statistics SQLite's planner prefers
/// `runs_recent` (it yields the order), which would walk every run of the step on a miss;
/// INDEXED BY pins the right index there (PostgreSQL has statistics and no such clause).
fn reuse_sql(with_data_version: bool, with_key: bool, postgres: bool) -> String {
    let data_version = if with_data_version {
        "AND r.data_version = ?5"
    } else {
        "AND CAST(?5 AS TEXT) IS NULL"
    };
    let index = if postgres {
        ""
    } else {
        "INDEXED BY runs_reuse"
    };
    let key = key_condition(with_key);
    format!(
        "SELECT {RUN_COLUMNS} FROM runs r {index}
             JOIN experiments e ON e.id = r.experiment_id
         WHERE r.entry = ?1 AND {key} AND r.params_hash = ?3
           AND r.inputs_hash = ?4 {data_version} AND r.status = ?9
           AND r.lifecycle_stage = 'active'
           AND r.run_time >= ?6 AND r.run_time < ?7
           AND (CAST(?8 AS TEXT) IS NULL OR r.code_version = ?8)
         ORDER BY r.run_time DESC, r.id DESC LIMIT 1"
    )
}

/// `?2` is the key value: an equality, or (bound to NULL) `IS NULL`.
fn key_condition(with_key: bool) -> &'static str {
    if with_key {
        "r.key_value = ?2"
    } else {
        "r.key_value IS NULL AND CAST(?2 AS TEXT) IS NULL"
    }
}

/// recent_runs' SQL, served by the `runs_recent` index in order.
fn recent_sql(with_key: bool) -> String {
    let key = key_condition(with_key);
    format!(
        "SELECT {RUN_COLUMNS} FROM runs r JOIN experiments e ON e.id = r.experiment_id
         WHERE r.entry = ?1 AND {key} AND r.run_time > ?4
         ORDER BY r.run_time DESC, r.id DESC LIMIT ?3"
    )
}

/// A LIMIT both engines read: no limit is the largest one.
fn limit_value(limit: Option<usize>) -> i64 {
    limit.map_or(i64::MAX, |limit| i64::try_from(limit).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests;
