//! Files a run uploads while it runs (MLflow's `log_artifact` through `flow server`'s
//! artifacts proxy), stored as content-addressed objects like published outputs but
//! recorded apart from them: outputs are published once, when the step ends, and never
//! change; uploads come one file at a time and a path may be uploaded again.
//!
//! An upload is streamed into a staging file under `tmp/` and hashed on the way, holding
//! the objects lock shared so gc waits for it; only then is the object committed and the
//! row written. An upload dropped half-way (a client that hung up) leaves no row, and its
//! staging file is removed (or, after a crash, reclaimed by gc).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::store::db::{args, DbResult, OptionalExtension};

use crate::store::error::{Result, StoreError};
use crate::store::experiments::Lifecycle;
use crate::store::objects::{ContentHash, ObjectsLock};
use crate::store::tracked_runs::run_head;
use crate::store::Store;

/// One uploaded file of a run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LoggedArtifact {
    /// `/`-separated, relative to the run's artifact root.
    pub path: String,
    /// blake3 hex of the content.
    pub hash: String,
    pub size: u64,
}

/// A file on its way into the store; see the module doc.
pub struct ArtifactUpload {
    run_id: String,
    path: String,
    staged: PathBuf,
    file: Option<File>,
    hasher: blake3::Hasher,
    size: u64,
    _lock: ObjectsLock,
}

impl ArtifactUpload {
    /// Appends the next piece of the file.
    pub fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self.file.as_mut().ok_or_else(|| StoreError::Invalid {
            what: "upload",
            value: self.path.clone(),
            reason: "it is already finished".to_string(),
        })?;
        file.write_all(bytes)
            .map_err(StoreError::io(&self.staged))?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }
}

impl Drop for ArtifactUpload {
    fn drop(&mut self) {
        // Finished uploads were renamed away; anything left is a partial file.
        let _ = fs::remove_file(&self.staged);
    }
}

impl Store {
    /// Starts uploading `path` into an active run: checked now, so a bad request fails
    /// before its body is read, and again when it finishes.
    pub fn begin_artifact_upload(&self, run_id: &str, path: &str) -> Result<ArtifactUpload> {
        check_artifact_path(path)?;
        self.check_upload_target(run_id, path)?;
        let objects = self.objects();
        let lock = objects.lock_shared()?;
        let staged = objects.staging_path();
        let file = File::create(&staged).map_err(StoreError::io(&staged))?;
        Ok(ArtifactUpload {
            run_id: run_id.to_string(),
            path: path.to_string(),
            staged,
            file: Some(file),
            hasher: blake3::Hasher::new(),
            size: 0,
            _lock: lock,
        })
    }

    /// Commits the uploaded file as an object and records it under its path, replacing an
    /// earlier upload of the same path.
    pub fn finish_artifact_upload(&self, mut upload: ArtifactUpload) -> Result<LoggedArtifact> {
        if let Some(file) = upload.file.take() {
            drop(file);
        }
        self.check_upload_target(&upload.run_id, &upload.path)?;
        let hash = ContentHash::from_hash(upload.hasher.finalize());
        self.objects().put_file(&upload.staged, &hash, true)?;
        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        let head = run_head(&tx, &upload.run_id)?;
        tx.prepare_cached(
            "INSERT INTO logged_artifacts (run, path, hash, size) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (run, path) DO UPDATE SET hash = excluded.hash, size = excluded.size",
        )?
        .execute(args![
            head.rowid,
            upload.path,
            hash.as_str(),
            i64::try_from(upload.size).unwrap_or(i64::MAX)
        ])?;
        tx.commit()?;
        Ok(LoggedArtifact {
            path: upload.path.clone(),
            hash: hash.as_str().to_string(),
            size: upload.size,
        })
    }

    /// The files a run uploaded, by path.
    pub fn logged_artifacts(&self, run_id: &str) -> Result<Vec<LoggedArtifact>> {
        let conn = self.connection();
        let head = run_head(&conn, run_id)?;
        let artifacts = conn
            .prepare_cached(
                "SELECT path, hash, size FROM logged_artifacts WHERE run = ?1 ORDER BY path",
            )?
            .query_map([head.rowid], |row| {
                Ok(LoggedArtifact {
                    path: row.get(0)?,
                    hash: row.get(1)?,
                    size: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                })
            })?
            .collect::<DbResult<_>>()?;
        Ok(artifacts)
    }

    /// Removes the uploads at `path` or under it (a directory); returns how many. The
    /// objects stay until gc finds them unreferenced.
    pub fn delete_logged_artifacts(&self, run_id: &str, path: &str) -> Result<usize> {
        let conn = self.connection();
        let head = run_head(&conn, run_id)?;
        let under = format!("{}/", path.trim_end_matches('/'));
        let removed = conn
            .prepare_cached(
                "DELETE FROM logged_artifacts WHERE run = ?1
                 AND (path = ?2 OR ?2 = '' OR substr(path, 1, length(?3)) = ?3)",
            )?
            .execute(args![head.rowid, path, under])?;
        Ok(removed)
    }

    /// Where the object behind one of a run's files lies on disk: a published output or,
    /// failing that, an upload. None when the run has no file at `path`.
    pub fn artifact_object(&self, run_id: &str, path: &str) -> Result<Option<(PathBuf, u64)>> {
        let conn = self.connection();
        let head = run_head(&conn, run_id)?;
        let found: Option<(String, i64)> = conn
            .prepare_cached(
                "SELECT hash, size FROM artifacts WHERE run = ?1 AND path = ?2
                 UNION ALL SELECT hash, size FROM logged_artifacts WHERE run = ?1 AND path = ?2
                 LIMIT 1",
            )?
            .query_row(args![head.rowid, path], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        match found {
            Some((hash, size)) => Ok(Some((
                self.objects().path(&ContentHash::parse(&hash)?),
                u64::try_from(size).unwrap_or(0),
            ))),
            None => Ok(None),
        }
    }

    /// The run exists, is active, and `path` is not one of its published outputs.
    fn check_upload_target(&self, run_id: &str, path: &str) -> Result<()> {
        let conn = self.connection();
        let head = run_head(&conn, run_id)?;
        if head.lifecycle == Lifecycle::Deleted {
            return Err(StoreError::Invalid {
                what: "run",
                value: run_id.to_string(),
                reason: "it is deleted; restore it before logging into it".to_string(),
            });
        }
        let published: i64 = conn
            .prepare_cached("SELECT count(*) FROM artifacts WHERE run = ?1 AND path = ?2")?
            .query_row(args![head.rowid, path], |row| row.get(0))?;
        if published > 0 {
            return Err(StoreError::Invalid {
                what: "artifact path",
                value: path.to_string(),
                reason: "it is a published output of the run, which never changes".to_string(),
            });
        }
        Ok(())
    }
}

/// A relative, `/`-separated path whose every segment is a plain name.
pub fn check_artifact_path(path: &str) -> Result<()> {
    let plain = !path.is_empty()
        && !path.contains('\\')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|segment| !segment.is_empty() && segment != "." && segment != "..");
    if plain && Path::new(path).is_relative() {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            what: "artifact path",
            value: path.to_string(),
            reason:
                "expected a relative path of plain names (no `..`, `.`, empty or absolute parts)"
                    .to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::test_support::{begin, day, temp_store};

    fn upload(store: &Store, run_id: &str, path: &str, chunks: &[&[u8]]) -> LoggedArtifact {
        let mut upload = store.begin_artifact_upload(run_id, path).unwrap();
        for chunk in chunks {
            upload.write(chunk).unwrap();
        }
        store.finish_artifact_upload(upload).unwrap()
    }

    #[test]
    fn uploads_are_objects_that_gc_keeps_and_a_path_can_be_replaced() {
        let (_dir, store) = temp_store();
        let run_id = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        let first = upload(&store, &run_id, "model/weights.bin", &[b"abc", b"def"]);
        assert_eq!(first.size, 6);
        assert_eq!(first.hash, blake3::hash(b"abcdef").to_hex().to_string());
        let (file, size) = store
            .artifact_object(&run_id, "model/weights.bin")
            .unwrap()
            .unwrap();
        assert_eq!((fs::read(&file).unwrap(), size), (b"abcdef".to_vec(), 6));
        assert_eq!(store.gc().unwrap().objects_removed, 0, "gc keeps uploads");

        upload(&store, &run_id, "model/weights.bin", &[b"v2"]);
        assert_eq!(store.logged_artifacts(&run_id).unwrap().len(), 1);
        assert_eq!(
            store.gc().unwrap().objects_removed,
            1,
            "the replaced content goes"
        );
        assert_eq!(store.delete_logged_artifacts(&run_id, "model").unwrap(), 1);
        assert!(store
            .artifact_object(&run_id, "model/weights.bin")
            .unwrap()
            .is_none());
    }

    #[test]
    fn an_abandoned_upload_leaves_nothing() {
        let (dir, store) = temp_store();
        let run_id = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        let mut partial = store.begin_artifact_upload(&run_id, "big.bin").unwrap();
        partial.write(b"half of it").unwrap();
        drop(partial);
        assert!(store.logged_artifacts(&run_id).unwrap().is_empty());
        let staging: Vec<_> = fs::read_dir(dir.path().join(".flow/tmp"))
            .unwrap()
            .collect();
        assert!(staging.is_empty(), "{staging:?}");
    }

    #[test]
    fn uploads_never_replace_published_outputs_or_leave_the_run() {
        let (dir, store) = temp_store();
        let run_id = begin(&store, "train", &BTreeMap::new(), &[], day(1));
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        fs::write(out.join("model.txt"), b"published").unwrap();
        store.publish(&run_id, &out).unwrap();
        assert!(matches!(
            store.begin_artifact_upload(&run_id, "model.txt"),
            Err(StoreError::Invalid { .. })
        ));
        for bad in ["../escape", "/abs", "a//b", "./a", ""] {
            assert!(
                matches!(
                    store.begin_artifact_upload(&run_id, bad),
                    Err(StoreError::Invalid { .. })
                ),
                "{bad}"
            );
        }
        let (file, _) = store
            .artifact_object(&run_id, "model.txt")
            .unwrap()
            .unwrap();
        assert_eq!(fs::read(file).unwrap(), b"published");
    }
}
