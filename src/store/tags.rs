//! Annotations a run adds about itself: tags and self-logged params. Neither takes part
//! in reuse, which compares only the params the runner passed in.

use std::collections::BTreeMap;

use crate::store::db::{args, DbResult};

use crate::store::error::Result;
use crate::store::queries::resolve_run;
use crate::store::Store;

impl Store {
    /// Records a param the step logged itself (`flow log param`); the last value wins.
    pub fn log_param(&self, run: &str, key: &str, value: &str) -> Result<()> {
        self.upsert("logged_params", run, key, value)
    }

    /// Params the step logged itself.
    pub fn logged_params(&self, run: &str) -> Result<BTreeMap<String, String>> {
        self.read_pairs("logged_params", run)
    }

    /// Sets a tag; the last value wins.
    pub fn set_tag(&self, run: &str, key: &str, value: &str) -> Result<()> {
        self.upsert("tags", run, key, value)
    }

    /// Removes a tag; nothing happens when the run has none of that key.
    pub fn remove_tag(&self, run: &str, key: &str) -> Result<()> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        conn.prepare_cached("DELETE FROM tags WHERE run = ?1 AND key = ?2")?
            .execute(args![rowid, key])?;
        Ok(())
    }

    /// All tags of the run.
    pub fn tags(&self, run: &str) -> Result<BTreeMap<String, String>> {
        self.read_pairs("tags", run)
    }

    /// `table` is one of our two fixed names, never user input.
    fn upsert(&self, table: &'static str, run: &str, key: &str, value: &str) -> Result<()> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        conn.prepare_cached(&format!(
            "INSERT INTO {table} (run, key, value) VALUES (?1, ?2, ?3)
             ON CONFLICT (run, key) DO UPDATE SET value = excluded.value"
        ))?
        .execute(args![rowid, key, value])?;
        Ok(())
    }

    fn read_pairs(&self, table: &'static str, run: &str) -> Result<BTreeMap<String, String>> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        let pairs = conn
            .prepare_cached(&format!("SELECT key, value FROM {table} WHERE run = ?1"))?
            .query_map([rowid], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<DbResult<_>>()?;
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::store::test_support::{begin, day, temp_store};

    #[test]
    fn tags_and_logged_params_are_kept_apart_from_key_params() {
        let (_dir, store) = temp_store();
        let params = BTreeMap::from([("epochs".to_string(), "3".to_string())]);
        let run = begin(&store, "train", &params, &[], day(1));
        store.set_tag(&run, "owner", "ana").unwrap();
        store.set_tag(&run, "owner", "bo").unwrap();
        store.log_param(&run, "n_features", "38").unwrap();

        assert_eq!(
            store.tags(&run).unwrap(),
            BTreeMap::from([("owner".to_string(), "bo".to_string())])
        );
        assert_eq!(
            store.logged_params(&run).unwrap(),
            BTreeMap::from([("n_features".to_string(), "38".to_string())])
        );
        assert_eq!(store.get_run(&run).unwrap().params, params);
    }
}
