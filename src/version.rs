//! Code and data versions: what a run was computed from.
//!
//! Code version = the git commit of the project (git2), plus a dirty flag and a hash of
//! the uncommitted changes; `.flow/` never counts. Data version = blake3 over the
//! declared input files of a source step, or over the output manifests of its upstream
//! runs. File hashes are cached by (path, size, mtime), so an unchanged large input
//! costs a `stat`, not a read.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Bump when the meaning of a data version changes, so old runs stop matching.
const DATA_VERSION_SCHEMA: &str = "flow-data-v1";

/// The code a run executes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeVersion {
    /// HEAD commit hex; `none` outside a git repository or before the first commit.
    pub commit: String,
    pub dirty: bool,
    /// blake3 of the uncommitted changes (diff to HEAD plus untracked files), when dirty.
    pub diff_hash: Option<String>,
}

impl CodeVersion {
    /// The text runs are compared by: the commit, suffixed by the diff hash when dirty,
    /// so a dirty tree only matches the same uncommitted changes.
    pub fn id(&self) -> String {
        match &self.diff_hash {
            Some(hash) if self.dirty => format!("{}+dirty.{}", self.commit, &hash[..16]),
            _ => self.commit.clone(),
        }
    }

    /// Reads the version of the git repository containing `project_dir`, if any.
    pub fn of(project_dir: &Path, store_dir: &Path) -> Result<CodeVersion> {
        let repo = match git2::Repository::discover(project_dir) {
            Ok(repo) => repo,
            Err(_) => {
                return Ok(CodeVersion {
                    commit: "none".into(),
                    dirty: false,
                    diff_hash: None,
                });
            }
        };
        let commit = match repo.head().ok().and_then(|h| h.peel_to_commit().ok()) {
            Some(commit) => commit.id().to_string(),
            None => "none".to_string(),
        };
        let Some(workdir) = repo.workdir().map(Path::to_path_buf) else {
            return Ok(CodeVersion {
                commit,
                dirty: false,
                diff_hash: None,
            });
        };
        let excluded = excluded_prefix(&workdir, store_dir);
        let mut options = git2::StatusOptions::new();
        options
            .include_untracked(true)
            .recurse_untracked_dirs(true)
            .include_ignored(false);
        let statuses = repo
            .statuses(Some(&mut options))
            .context("cannot read git status")?;
        let mut hasher = blake3::Hasher::new();
        let mut dirty = false;
        let mut untracked: Vec<String> = Vec::new();
        for status in statuses.iter() {
            let Ok(path) = status.path() else { continue };
            if path == ".flow"
                || path.starts_with(".flow/")
                || excluded.as_deref().is_some_and(|p| path.starts_with(p))
            {
                continue;
            }
            dirty = true;
            if status.status().contains(git2::Status::WT_NEW) {
                untracked.push(path.to_string());
            }
        }
        if !dirty {
            return Ok(CodeVersion {
                commit,
                dirty,
                diff_hash: None,
            });
        }
        // The diff of tracked files, then the content of untracked ones.
        let head_tree = repo.head().ok().and_then(|h| h.peel_to_tree().ok());
        let mut diff_options = git2::DiffOptions::new();
        diff_options.pathspec("!.flow").pathspec("!.flow/**");
        if let Ok(diff) =
            repo.diff_tree_to_workdir_with_index(head_tree.as_ref(), Some(&mut diff_options))
        {
            let _ = diff.print(git2::DiffFormat::Patch, |_, _, line| {
                hasher.update(&[line.origin() as u8]);
                hasher.update(line.content());
                true
            });
        }
        untracked.sort();
        for path in untracked {
            hasher.update(path.as_bytes());
            if let Ok(bytes) = fs::read(workdir.join(&path)) {
                hasher.update(blake3::hash(&bytes).as_bytes());
            }
        }
        Ok(CodeVersion {
            commit,
            dirty,
            diff_hash: Some(hasher.finalize().to_hex().to_string()),
        })
    }
}

/// The store's path relative to the work tree, when it lives inside it.
fn excluded_prefix(workdir: &Path, store_dir: &Path) -> Option<String> {
    let workdir = workdir.canonicalize().ok()?;
    let store = store_dir.canonicalize().ok()?;
    let relative = store.strip_prefix(&workdir).ok()?;
    let text = relative.to_str()?.to_string();
    (!text.is_empty()).then_some(text)
}

/// blake3 over declared input globs (relative to `project_dir`), by path and content.
/// Returns the version and the number of files it covers.
pub fn data_version_of_inputs(
    project_dir: &Path,
    globs: &[String],
    cache: &mut HashCache,
) -> Result<(String, usize)> {
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in globs {
        let absolute = project_dir.join(pattern);
        let absolute = absolute.to_string_lossy().to_string();
        let mut matched = false;
        for entry in glob::glob(&absolute).with_context(|| format!("bad input glob `{pattern}`"))? {
            let path =
                entry.with_context(|| format!("cannot read a match of input glob `{pattern}`"))?;
            matched = true;
            if path.is_dir() {
                collect_files(&path, &mut files)?;
            } else {
                files.push(path);
            }
        }
        if !matched {
            anyhow::bail!(
                "declared input `{pattern}` matches no file (looked in `{}`)",
                project_dir.display()
            );
        }
    }
    files.sort();
    files.dedup();
    let mut hasher = blake3::Hasher::new();
    hasher.update(DATA_VERSION_SCHEMA.as_bytes());
    for path in &files {
        let relative = path.strip_prefix(project_dir).unwrap_or(path);
        hasher.update(relative.to_string_lossy().as_bytes());
        hasher.update(&[0]);
        hasher.update(cache.hash_file(path)?.as_bytes());
    }
    Ok((hasher.finalize().to_hex().to_string(), files.len()))
}

/// blake3 over the output manifests of upstream runs, given as (entry, manifest hash).
pub fn data_version_of_upstream(manifests: &[(String, String)]) -> String {
    let mut sorted = manifests.to_vec();
    sorted.sort();
    let mut hasher = blake3::Hasher::new();
    hasher.update(DATA_VERSION_SCHEMA.as_bytes());
    for (entry, manifest) in sorted {
        hasher.update(entry.as_bytes());
        hasher.update(&[0]);
        hasher.update(manifest.as_bytes());
        hasher.update(&[0]);
    }
    hasher.finalize().to_hex().to_string()
}

fn collect_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list `{}`", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else {
            files.push(path);
        }
    }
    Ok(())
}

/// File hashes remembered by (path, size, mtime) in `.flow/hash-cache.json`.
#[derive(Debug, Default)]
pub struct HashCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, CachedHash>,
    changed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct CachedHash {
    size: u64,
    mtime_ns: u128,
    hash: String,
}

impl HashCache {
    /// Loads the cache file if present; a missing or unreadable cache is simply empty.
    pub fn open(path: PathBuf) -> HashCache {
        let entries = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        HashCache {
            path: Some(path),
            entries,
            changed: false,
        }
    }

    pub fn hash_file(&mut self, path: &Path) -> Result<String> {
        let meta = fs::metadata(path)
            .with_context(|| format!("cannot read input `{}`", path.display()))?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let key = path.to_string_lossy().to_string();
        if let Some(cached) = self.entries.get(&key) {
            if cached.size == meta.len() && cached.mtime_ns == mtime_ns {
                return Ok(cached.hash.clone());
            }
        }
        let mut file = fs::File::open(path)
            .with_context(|| format!("cannot open input `{}`", path.display()))?;
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0u8; 1 << 16];
        loop {
            let n = file
                .read(&mut buffer)
                .with_context(|| format!("cannot read input `{}`", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        let hash = hasher.finalize().to_hex().to_string();
        self.entries.insert(
            key,
            CachedHash {
                size: meta.len(),
                mtime_ns,
                hash: hash.clone(),
            },
        );
        self.changed = true;
        Ok(hash)
    }

    /// Writes the cache back (temp file + rename) if anything changed; failures only cost speed.
    pub fn save(&mut self) {
        let Some(path) = &self.path else { return };
        if !self.changed {
            return;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        if let Ok(bytes) = serde_json::to_vec(&self.entries) {
            if fs::write(&tmp, bytes).is_ok() && fs::rename(&tmp, path).is_ok() {
                self.changed = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_version_follows_content_not_mtime() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("data")).unwrap();
        fs::write(dir.path().join("data/a.txt"), "one").unwrap();
        let mut cache = HashCache::default();
        let globs = vec!["data".to_string()];
        let (v1, n) = data_version_of_inputs(dir.path(), &globs, &mut cache).unwrap();
        assert_eq!(n, 1);
        fs::write(dir.path().join("data/a.txt"), "two").unwrap();
        let (v2, _) = data_version_of_inputs(dir.path(), &globs, &mut cache).unwrap();
        assert_ne!(v1, v2);
        fs::write(dir.path().join("data/a.txt"), "one").unwrap();
        let (v3, _) = data_version_of_inputs(dir.path(), &globs, &mut cache).unwrap();
        assert_eq!(v1, v3);
    }

    #[test]
    fn missing_input_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = data_version_of_inputs(
            dir.path(),
            &["nope/*.csv".into()],
            &mut HashCache::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("`nope/*.csv` matches no file"),
            "{err}"
        );
    }

    #[test]
    fn no_repository_is_recorded_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let version = CodeVersion::of(dir.path(), &dir.path().join(".flow")).unwrap();
        assert_eq!(version.id(), "none");
    }
}
