//! A run's outputs: publishing them as objects plus a manifest, materializing a
//! read-only view of them, and collecting what nothing references any more.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use crate::store::db::{args, DbResult};

use crate::store::error::{Result, StoreError};
use crate::store::objects::{sync_dir, ContentHash};
use crate::store::queries::resolve_run;
use crate::store::Store;

/// One published output file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    /// Logical path inside the run's output directory, `/`-separated.
    pub path: String,
    /// blake3 hex of the content.
    pub hash: String,
    pub size: u64,
}

/// What `gc` reclaimed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    pub objects_removed: usize,
    /// Bytes of removed objects and of staging files left by crashed writers.
    pub bytes_freed: u64,
}

/// The manifest object of a run: its hash is the run's `manifest_hash`, which downstream
/// steps use as their data version, so the encoding is canonical (sorted keys) and
/// versioned.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Manifest {
    format: u32,
    files: BTreeMap<String, ManifestEntry>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ManifestEntry {
    hash: String,
    size: u64,
}

const MANIFEST_FORMAT: u32 = 1;

impl Store {
    /// Stores every file under `out_dir` as an object and records the run's manifest, in
    /// one transaction. Files may be moved out of `out_dir` (same filesystem) rather
    /// than copied: read outputs back through [`Store::run_dir`]. Symlinks are refused.
    pub fn publish(&self, run: &str, out_dir: &Path) -> Result<Vec<Artifact>> {
        let (rowid, run_id) = resolve_run(&self.connection(), run)?;
        let files = walk_outputs(out_dir)?;
        let objects = self.objects();
        let _lock = objects.lock_shared()?;
        let mut manifest = Manifest {
            format: MANIFEST_FORMAT,
            files: BTreeMap::new(),
        };
        for (logical, path) in &files {
            let (hash, size) = hash_file(path)?;
            objects.put_file(path, &hash, true)?;
            manifest.files.insert(
                logical.clone(),
                ManifestEntry {
                    hash: hash.as_str().to_string(),
                    size,
                },
            );
        }
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|error| StoreError::corrupt(format!("cannot encode manifest: {error}")))?;
        let manifest_hash = objects.put_bytes(&bytes)?;

        let mut conn = self.connection();
        let tx = conn.write_transaction()?;
        let claimed = tx.execute(
            "UPDATE runs SET manifest_hash = ?1 WHERE id = ?2 AND manifest_hash IS NULL",
            args![manifest_hash.as_str(), rowid],
        )?;
        if claimed != 1 {
            return Err(StoreError::AlreadyPublished { run: run_id });
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO artifacts (run, path, hash, size) VALUES (?1, ?2, ?3, ?4)",
            )?;
            for (path, entry) in &manifest.files {
                insert.execute(args![rowid, path, entry.hash, size_column(entry.size)])?;
            }
        }
        tx.commit()?;
        Ok(manifest
            .files
            .into_iter()
            .map(|(path, entry)| Artifact {
                path,
                hash: entry.hash,
                size: entry.size,
            })
            .collect())
    }

    /// The run's published files, by path.
    pub fn artifacts(&self, run: &str) -> Result<Vec<Artifact>> {
        let conn = self.connection();
        let (rowid, _) = resolve_run(&conn, run)?;
        let artifacts = conn
            .prepare_cached("SELECT path, hash, size FROM artifacts WHERE run = ?1 ORDER BY path")?
            .query_map([rowid], |row| {
                Ok(Artifact {
                    path: row.get(0)?,
                    hash: row.get(1)?,
                    size: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                })
            })?
            .collect::<DbResult<_>>()?;
        Ok(artifacts)
    }

    /// `runs/<run_id>/`: a read-only directory of the run's outputs (what a downstream
    /// step gets as `FLOW_INPUT_<STEP>`). Built from the manifest by hard links (copies
    /// across filesystems) in `tmp/` and renamed into place, so it is complete or absent;
    /// rebuilt when missing.
    pub fn run_dir(&self, run: &str) -> Result<PathBuf> {
        let record = self.get_run(run)?;
        let view = self.dir.join("runs").join(&record.run_id);
        if view.is_dir() {
            return Ok(view);
        }
        let manifest_hash = record
            .manifest_hash
            .ok_or_else(|| StoreError::NotPublished {
                run: record.run_id.clone(),
            })?;
        let objects = self.objects();
        let _lock = objects.lock_shared()?;
        let manifest = read_manifest(&objects, &ContentHash::parse(&manifest_hash)?)?;
        let staged = objects.staging_path();
        fs::create_dir_all(&staged).map_err(StoreError::io(&staged))?;
        for (logical, entry) in &manifest.files {
            let target = staged.join(checked_logical_path(logical)?);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(StoreError::io(parent))?;
            }
            let object = objects.path(&ContentHash::parse(&entry.hash)?);
            if !object.is_file() {
                return Err(StoreError::corrupt(format!(
                    "object {} of `{logical}` in run {} is missing",
                    entry.hash, record.run_id
                )));
            }
            if fs::hard_link(&object, &target).is_err() {
                fs::copy(&object, &target).map_err(StoreError::io(&target))?;
                fs::set_permissions(&target, fs::Permissions::from_mode(0o444))
                    .map_err(StoreError::io(&target))?;
                File::open(&target)
                    .and_then(|file| file.sync_all())
                    .map_err(StoreError::io(&target))?;
            }
        }
        if let Err(source) = fs::rename(&staged, &view) {
            // Another process materialized the same view first: theirs is as good.
            let _ = fs::remove_dir_all(&staged);
            if !view.is_dir() {
                return Err(StoreError::Io { path: view, source });
            }
        }
        sync_dir(&self.dir.join("runs"))?;
        Ok(view)
    }

    /// Deletes objects no run references, views of deleted runs, and staging files left
    /// by crashed writers. Waits for in-flight publishes to finish first.
    pub fn gc(&self) -> Result<GcReport> {
        let objects = self.objects();
        let _lock = objects.lock_exclusive()?;
        let (referenced, live_runs) = {
            let conn = self.connection();
            let referenced: HashSet<String> = conn
                .prepare(
                    "SELECT hash FROM artifacts
                     UNION SELECT hash FROM logged_artifacts
                     UNION SELECT manifest_hash FROM runs WHERE manifest_hash IS NOT NULL",
                )?
                .query_map((), |row| row.get(0))?
                .collect::<DbResult<_>>()?;
            let live_runs: HashSet<String> = conn
                .prepare("SELECT run_id FROM runs")?
                .query_map((), |row| row.get(0))?
                .collect::<DbResult<_>>()?;
            (referenced, live_runs)
        };
        let mut report = GcReport::default();
        for (hash, size) in objects.list()? {
            if !referenced.contains(hash.as_str()) {
                report.bytes_freed += objects.remove(&hash, size)?;
                report.objects_removed += 1;
            }
        }
        objects.remove_empty_shards()?;
        let views = self.dir.join("runs");
        for view in fs::read_dir(&views).map_err(StoreError::io(&views))? {
            let view = view.map_err(StoreError::io(&views))?;
            if !live_runs.contains(view.file_name().to_string_lossy().as_ref()) {
                fs::remove_dir_all(view.path()).map_err(StoreError::io(&view.path()))?;
            }
        }
        // Staging of runs that ended without cleaning up (a flow killed mid-step).
        report.bytes_freed += self.remove_orphan_staging()?;
        for (path, size) in objects.stale_staging()? {
            let removed = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.map_err(StoreError::io(&path))?;
            report.bytes_freed += size;
        }
        Ok(report)
    }
}

/// Output files as `(logical path, real path)`, sorted; refuses symlinks and special
/// files, which could not be reproduced from content alone.
fn walk_outputs(out_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut files = Vec::new();
    let mut pending = vec![out_dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).map_err(StoreError::io(&dir))? {
            let entry = entry.map_err(StoreError::io(&dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(StoreError::io(&path))?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                files.push((logical_path(out_dir, &path)?, path));
            } else {
                return Err(StoreError::Invalid {
                    what: "output",
                    value: path.display().to_string(),
                    reason: "only regular files and directories can be published (no symlinks)"
                        .to_string(),
                });
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `a/b/c.parquet` relative to `out_dir`; names must be UTF-8 to be stored as text.
fn logical_path(out_dir: &Path, path: &Path) -> Result<String> {
    let relative = path.strip_prefix(out_dir).unwrap_or(path);
    let parts: Option<Vec<&str>> = relative
        .components()
        .map(|part| part.as_os_str().to_str())
        .collect();
    parts
        .map(|parts| parts.join("/"))
        .ok_or_else(|| StoreError::Invalid {
            what: "output file name",
            value: path.display().to_string(),
            reason: "file names must be valid UTF-8".to_string(),
        })
}

/// A manifest path as a relative path that cannot leave the view directory.
fn checked_logical_path(logical: &str) -> Result<PathBuf> {
    let path = PathBuf::from(logical);
    let plain = !logical.is_empty()
        && path
            .components()
            .all(|part| matches!(part, Component::Normal(_)));
    if plain {
        Ok(path)
    } else {
        Err(StoreError::corrupt(format!(
            "manifest names an unsafe path `{logical}`"
        )))
    }
}

fn hash_file(path: &Path) -> Result<(ContentHash, u64)> {
    let mut hasher = blake3::Hasher::new();
    let file = File::open(path).map_err(StoreError::io(path))?;
    hasher.update_reader(file).map_err(StoreError::io(path))?;
    let size = fs::metadata(path).map_err(StoreError::io(path))?.len();
    Ok((ContentHash::from_hash(hasher.finalize()), size))
}

/// Stores the manifest of a run without outputs (used by synthetic runs).
pub(crate) fn empty_manifest(objects: &crate::store::objects::Objects) -> Result<ContentHash> {
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        files: BTreeMap::new(),
    };
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|error| StoreError::corrupt(format!("cannot encode manifest: {error}")))?;
    objects.put_bytes(&bytes)
}

fn read_manifest(objects: &crate::store::objects::Objects, hash: &ContentHash) -> Result<Manifest> {
    let bytes = objects.read(hash)?;
    serde_json::from_slice(&bytes).map_err(|error| {
        StoreError::corrupt(format!("manifest {} is unreadable: {error}", hash.as_str()))
    })
}

/// Sizes are INTEGER (i64) columns; no real file reaches the limit.
fn size_column(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::store::test_support::{begin, day, temp_store};
    use crate::store::{RunId, RunStatus};

    /// Writes `files` (logical path -> content) into a fresh output directory.
    fn outputs(root: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = root.join(name);
        for (logical, content) in files {
            let path = dir.join(logical);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        dir
    }

    fn published(store: &Store, root: &Path, name: &str, files: &[(&str, &[u8])]) -> RunId {
        let run = begin(store, name, &BTreeMap::new(), &[], day(1));
        store.publish(&run, &outputs(root, name, files)).unwrap();
        store.end_run(&run, RunStatus::Finished).unwrap();
        run
    }

    fn object_count(store: &Store) -> usize {
        store.objects().list().unwrap().len()
    }

    #[test]
    fn publish_then_run_dir_is_a_read_only_copy() {
        let (dir, store) = temp_store();
        let run = begin(&store, "load", &BTreeMap::new(), &[], day(1));
        let out = outputs(
            dir.path(),
            "out",
            &[("data.csv", b"a,b\n1,2\n"), ("plots/f1.txt", b"0.9")],
        );
        let artifacts = store.publish(&run, &out).unwrap();
        assert_eq!(
            artifacts
                .iter()
                .map(|artifact| (artifact.path.as_str(), artifact.size))
                .collect::<Vec<_>>(),
            vec![("data.csv", 8), ("plots/f1.txt", 3)]
        );
        assert_eq!(
            artifacts[0].hash,
            blake3::hash(b"a,b\n1,2\n").to_hex().to_string()
        );
        assert_eq!(store.artifacts(&run).unwrap(), artifacts);
        assert!(store.get_run(&run).unwrap().manifest_hash.is_some());

        let view = store.run_dir(&run).unwrap();
        assert_eq!(view, store.dir().join("runs").join(&run));
        assert_eq!(fs::read(view.join("data.csv")).unwrap(), b"a,b\n1,2\n");
        assert_eq!(fs::read(view.join("plots/f1.txt")).unwrap(), b"0.9");
        let mode = fs::metadata(view.join("data.csv"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "outputs are read-only");

        fs::remove_dir_all(&view).unwrap();
        assert_eq!(
            fs::read(store.run_dir(&run).unwrap().join("plots/f1.txt")).unwrap(),
            b"0.9"
        );
        assert!(matches!(
            store.publish(&run, &out),
            Err(StoreError::AlreadyPublished { .. })
        ));
    }

    #[test]
    fn unpublished_run_has_no_view_and_symlinks_are_refused() {
        let (dir, store) = temp_store();
        let run = begin(&store, "load", &BTreeMap::new(), &[], day(1));
        assert!(matches!(
            store.run_dir(&run),
            Err(StoreError::NotPublished { .. })
        ));
        let out = outputs(dir.path(), "out", &[("real.txt", b"x")]);
        std::os::unix::fs::symlink(out.join("real.txt"), out.join("link.txt")).unwrap();
        assert!(matches!(
            store.publish(&run, &out),
            Err(StoreError::Invalid { .. })
        ));
        assert!(store.artifacts(&run).unwrap().is_empty());
        assert!(store.get_run(&run).unwrap().manifest_hash.is_none());
    }

    #[test]
    fn identical_files_are_stored_once() {
        let (dir, store) = temp_store();
        published(
            &store,
            dir.path(),
            "first",
            &[("model.bin", b"weights"), ("a.txt", b"1")],
        );
        published(
            &store,
            dir.path(),
            "second",
            &[("copy/model.bin", b"weights"), ("b.txt", b"2")],
        );
        // weights, 1, 2 and two manifests.
        assert_eq!(object_count(&store), 5);
    }

    #[test]
    fn gc_frees_exactly_the_unreferenced_bytes() {
        let (dir, store) = temp_store();
        let shared = b"shared bytes";
        let kept = published(&store, dir.path(), "kept", &[("shared.bin", shared)]);
        let doomed = published(
            &store,
            dir.path(),
            "doomed",
            &[("shared.bin", shared), ("only.bin", b"0123456789")],
        );
        let doomed_manifest = store.get_run(&doomed).unwrap().manifest_hash.unwrap();
        let manifest_size = fs::metadata(
            store
                .objects()
                .path(&ContentHash::parse(&doomed_manifest).unwrap()),
        )
        .unwrap()
        .len();
        store.run_dir(&doomed).unwrap();

        assert_eq!(
            store.gc().unwrap(),
            GcReport::default(),
            "everything is referenced"
        );
        store.delete_run(&doomed, false).unwrap();
        assert!(!store.dir().join("runs").join(&doomed).exists());
        let report = store.gc().unwrap();
        assert_eq!(report.objects_removed, 2, "only.bin and the manifest");
        assert_eq!(report.bytes_freed, 10 + manifest_size);
        assert_eq!(
            fs::read(store.run_dir(&kept).unwrap().join("shared.bin")).unwrap(),
            shared
        );
        assert_eq!(store.gc().unwrap(), GcReport::default());
        let objects_dir = store.dir().join("objects");
        for shard in fs::read_dir(&objects_dir).unwrap() {
            let shard = shard.unwrap().path();
            assert!(
                fs::read_dir(&shard).unwrap().next().is_some(),
                "empty shard `{}` left behind",
                shard.display()
            );
        }
        store.delete_run(&kept, false).unwrap();
        store.gc().unwrap();
        assert_eq!(
            fs::read_dir(&objects_dir).unwrap().count(),
            0,
            "no shards left"
        );
    }

    #[test]
    fn gc_reclaims_crash_leftovers_only() {
        let (dir, store) = temp_store();
        let objects = store.objects();
        // An object written by a publish that crashed before its transaction.
        let orphan = objects.put_bytes(b"orphan").unwrap();
        fs::write(objects.staging_path(), b"half").unwrap();
        let output_dir = store.dir().join("tmp").join("out-running-step");
        fs::create_dir_all(&output_dir).unwrap();
        let report = store.gc().unwrap();
        assert_eq!(
            report,
            GcReport {
                objects_removed: 1,
                bytes_freed: 6 + 4
            }
        );
        assert!(!objects.path(&orphan).exists());
        assert!(output_dir.exists(), "gc leaves other users of tmp/ alone");
        drop(dir);
    }
}
