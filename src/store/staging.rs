//! Staging: where a RUNNING run's outputs, metrics file and inputs live until it ends
//! (`<store>/tmp/<run id>/`), and the sweep that removes the staging of runs that ended
//! without removing it themselves (a flow killed between ending a run and cleaning up).

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::store::db::DbResult;
use crate::store::error::{Result, StoreError};
use crate::store::Store;

impl Store {
    /// Where a RUNNING run's outputs, metrics file and inputs are staged until it ends.
    pub fn staging_dir(&self, run_id: &str) -> PathBuf {
        self.dir.join("tmp").join(run_id)
    }

    /// Removes every staging directory whose run is not RUNNING; returns the bytes freed.
    ///
    /// The directory is listed *before* the RUNNING runs are read: a run is claimed
    /// (RUNNING) before its staging is created, so any staging seen in the listing whose
    /// run is not RUNNING afterwards belongs to a run that has ended. Reading in the other
    /// order would delete the staging of a run claimed in between.
    pub fn remove_orphan_staging(&self) -> Result<u64> {
        let tmp = self.dir.join("tmp");
        let staged = staged_runs(&tmp)?;
        if staged.is_empty() {
            return Ok(0);
        }
        let running: HashSet<String> = self
            .connection()
            .prepare_cached("SELECT run_id FROM runs WHERE status = 'RUNNING'")?
            .query_map((), |row| row.get(0))?
            .collect::<DbResult<_>>()?;
        let mut freed = 0;
        for (name, path) in staged {
            if running.contains(&name) {
                continue;
            }
            freed += tree_size(&path);
            match fs::remove_dir_all(&path) {
                Ok(()) => {}
                // Its own flow removed it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        Ok(freed)
    }
}

/// The entries of `tmp` named like a run id, with their paths.
fn staged_runs(tmp: &Path) -> Result<Vec<(String, PathBuf)>> {
    let entries = match fs::read_dir(tmp) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(StoreError::Io {
                path: tmp.to_path_buf(),
                source,
            })
        }
    };
    let mut staged = Vec::new();
    for entry in entries {
        let entry = entry.map_err(StoreError::io(tmp))?;
        let name = entry.file_name().to_string_lossy().to_string();
        if name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            staged.push((name, entry.path()));
        }
    }
    Ok(staged)
}

/// Bytes under `path`, best effort.
pub(crate) fn tree_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| tree_size(&e.path())).sum())
        .unwrap_or(0)
}
