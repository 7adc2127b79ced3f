//! Content-addressed blobs under `objects/`, named by their blake3 hex and sharded by
//! its first two characters (`objects/ab/cdef…`), after moon's `content_hash.rs`.
//!
//! An object is complete or absent: it is staged under `tmp/`, made read-only, fsynced
//! and renamed into place, then its directory is fsynced. Writers hold a shared lock on
//! `objects.lock`; gc holds it exclusively.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::store::digest::new_tmp_name;
use crate::store::error::{Result, StoreError};

/// A validated blake3 hex digest: 64 lower-case hex chars.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContentHash(String);

impl ContentHash {
    /// Accepts only what `from_hash` produces, so a corrupt row can never name a path
    /// outside `objects/`.
    pub fn parse(text: &str) -> Result<ContentHash> {
        if text.len() == 64
            && text
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
        {
            Ok(ContentHash(text.to_string()))
        } else {
            Err(StoreError::corrupt(format!(
                "`{text}` is not a blake3 hex digest"
            )))
        }
    }

    pub fn from_hash(hash: blake3::Hash) -> ContentHash {
        ContentHash(hash.to_hex().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Shard directory name: the first two hex chars.
    pub fn shard(&self) -> &str {
        &self.0[..2]
    }

    /// File name inside the shard: the remaining 62 chars.
    pub fn file_name(&self) -> &str {
        &self.0[2..]
    }
}

/// The object directory of one store.
pub(crate) struct Objects {
    root: PathBuf,
    tmp: PathBuf,
    lock_path: PathBuf,
}

/// Held while objects may be written (shared) or deleted (exclusive); released on drop.
pub(crate) struct ObjectsLock {
    _file: File,
}

impl Objects {
    pub(crate) fn new(store_dir: &Path) -> Objects {
        Objects {
            root: store_dir.join("objects"),
            tmp: store_dir.join("tmp"),
            lock_path: store_dir.join("objects.lock"),
        }
    }

    pub(crate) fn path(&self, hash: &ContentHash) -> PathBuf {
        self.root.join(hash.shard()).join(hash.file_name())
    }

    /// A fresh path under `tmp/` for staging; gc reclaims leftovers by their prefix.
    pub(crate) fn staging_path(&self) -> PathBuf {
        self.tmp.join(new_tmp_name())
    }

    /// Blocks until writers may proceed (no gc is running).
    pub(crate) fn lock_shared(&self) -> Result<ObjectsLock> {
        self.lock(libc::LOCK_SH)
    }

    /// Blocks until no writer holds the lock.
    pub(crate) fn lock_exclusive(&self) -> Result<ObjectsLock> {
        self.lock(libc::LOCK_EX)
    }

    /// Stores the file at `source` under `hash` unless that object exists (dedup).
    /// With `may_move`, a file with a single link is renamed rather than copied, which
    /// removes it from `source`; a hard-linked file is copied so its other names keep
    /// their permissions. Returns whether a new object was written.
    pub(crate) fn put_file(
        &self,
        source: &Path,
        hash: &ContentHash,
        may_move: bool,
    ) -> Result<bool> {
        let target = self.path(hash);
        if target.exists() {
            return Ok(false);
        }
        let staged = self.staging_path();
        let single_link = fs::metadata(source)
            .map_err(StoreError::io(source))?
            .nlink()
            == 1;
        let moved = may_move && single_link && fs::rename(source, &staged).is_ok();
        if !moved {
            fs::copy(source, &staged).map_err(StoreError::io(source))?;
        }
        self.commit_staged(&staged, &target)?;
        Ok(true)
    }

    /// Stores bytes (a manifest) and returns their hash.
    pub(crate) fn put_bytes(&self, bytes: &[u8]) -> Result<ContentHash> {
        let hash = ContentHash::from_hash(blake3::hash(bytes));
        let target = self.path(&hash);
        if target.exists() {
            return Ok(hash);
        }
        let staged = self.staging_path();
        let mut file = File::create(&staged).map_err(StoreError::io(&staged))?;
        file.write_all(bytes).map_err(StoreError::io(&staged))?;
        drop(file);
        self.commit_staged(&staged, &target)?;
        Ok(hash)
    }

    pub(crate) fn read(&self, hash: &ContentHash) -> Result<Vec<u8>> {
        let path = self.path(hash);
        fs::read(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => {
                StoreError::corrupt(format!("object {} is missing", hash.as_str()))
            }
            _ => StoreError::Io { path, source },
        })
    }

    /// Every object on disk with its size; stray names that are not digests are skipped.
    pub(crate) fn list(&self) -> Result<Vec<(ContentHash, u64)>> {
        let mut found = Vec::new();
        for shard in fs::read_dir(&self.root).map_err(StoreError::io(&self.root))? {
            let shard = shard.map_err(StoreError::io(&self.root))?;
            let shard_name = shard.file_name().to_string_lossy().into_owned();
            if !shard.path().is_dir() {
                continue;
            }
            for object in fs::read_dir(shard.path()).map_err(StoreError::io(&shard.path()))? {
                let object = object.map_err(StoreError::io(&shard.path()))?;
                let name = format!("{shard_name}{}", object.file_name().to_string_lossy());
                let Ok(hash) = ContentHash::parse(&name) else {
                    continue;
                };
                let size = object
                    .metadata()
                    .map_err(StoreError::io(&object.path()))?
                    .len();
                found.push((hash, size));
            }
        }
        Ok(found)
    }

    /// Deletes one object; returns the bytes freed.
    pub(crate) fn remove(&self, hash: &ContentHash, size: u64) -> Result<u64> {
        let path = self.path(hash);
        match fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Deletes shard directories left empty by [`Objects::remove`]. Only safe under the
    /// exclusive lock: a writer creates its shard just before it commits into it.
    pub(crate) fn remove_empty_shards(&self) -> Result<()> {
        for shard in fs::read_dir(&self.root).map_err(StoreError::io(&self.root))? {
            let path = shard.map_err(StoreError::io(&self.root))?.path();
            let empty = path.is_dir()
                && fs::read_dir(&path)
                    .map_err(StoreError::io(&path))?
                    .next()
                    .is_none();
            if empty {
                fs::remove_dir(&path).map_err(StoreError::io(&path))?;
            }
        }
        Ok(())
    }

    /// Staging files left by crashed writers: `(path, bytes)`. Only safe to delete under
    /// the exclusive lock.
    pub(crate) fn stale_staging(&self) -> Result<Vec<(PathBuf, u64)>> {
        let mut stale = Vec::new();
        for entry in fs::read_dir(&self.tmp).map_err(StoreError::io(&self.tmp))? {
            let entry = entry.map_err(StoreError::io(&self.tmp))?;
            if entry.file_name().to_string_lossy().starts_with("store-") {
                let path = entry.path();
                stale.push((path.clone(), disk_usage(&path)));
            }
        }
        Ok(stale)
    }

    /// Read-only, durable, then visible under its final name.
    fn commit_staged(&self, staged: &Path, target: &Path) -> Result<()> {
        fs::set_permissions(staged, fs::Permissions::from_mode(0o444))
            .map_err(StoreError::io(staged))?;
        File::open(staged)
            .and_then(|file| file.sync_all())
            .map_err(StoreError::io(staged))?;
        let shard = target.parent().unwrap_or(&self.root);
        fs::create_dir_all(shard).map_err(StoreError::io(shard))?;
        fs::rename(staged, target).map_err(StoreError::io(target))?;
        sync_dir(shard)
    }

    fn lock(&self, operation: libc::c_int) -> Result<ObjectsLock> {
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(StoreError::io(&self.lock_path))?;
        loop {
            // SAFETY: the descriptor is open for the duration of the call.
            let rc = unsafe { libc::flock(file.as_raw_fd(), operation) };
            if rc == 0 {
                return Ok(ObjectsLock { _file: file });
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(StoreError::Io {
                    path: self.lock_path.clone(),
                    source: error,
                });
            }
        }
    }
}

/// Makes a rename inside `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(StoreError::io(dir))
}

/// Bytes under `path` (a file or a directory tree); unreadable entries count as zero.
fn disk_usage(path: &Path) -> u64 {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !metadata.is_dir() {
        return metadata.len();
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| disk_usage(&entry.path()))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_rejects_paths_and_short_names() {
        assert!(ContentHash::parse("../../etc/passwd").is_err());
        assert!(ContentHash::parse(&"A".repeat(64)).is_err());
        let hash = ContentHash::parse(&"ab".repeat(32)).unwrap();
        assert_eq!(hash.shard(), "ab");
        assert_eq!(hash.file_name().len(), 62);
    }

    #[test]
    fn put_bytes_is_read_only_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("objects")).unwrap();
        fs::create_dir_all(dir.path().join("tmp")).unwrap();
        let objects = Objects::new(dir.path());
        let first = objects.put_bytes(b"hello").unwrap();
        let second = objects.put_bytes(b"hello").unwrap();
        assert_eq!(first, second);
        assert_eq!(objects.read(&first).unwrap(), b"hello");
        let mode = fs::metadata(objects.path(&first))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o222, 0, "objects are read-only");
        assert_eq!(objects.list().unwrap(), vec![(first, 5)]);
        assert!(objects.stale_staging().unwrap().is_empty());
    }
}
