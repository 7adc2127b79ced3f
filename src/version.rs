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
    /// The uncommitted changes by path, `.flow/` and the store excluded.
    pub changes: Vec<Change>,
    /// The work tree's root, when in git.
    pub workdir: Option<PathBuf>,
}

/// One uncommitted change to the work tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Relative to the work tree, `/`-separated.
    pub path: String,
    pub kind: ChangeKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Modified,
    Added,
    Deleted,
    Untracked,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            ChangeKind::Modified => "modified",
            ChangeKind::Added => "added",
            ChangeKind::Deleted => "deleted",
            ChangeKind::Untracked => "untracked",
        };
        write!(f, "{} ({kind})", self.path)
    }
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
                    changes: Vec::new(),
                    workdir: None,
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
                changes: Vec::new(),
                workdir: None,
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
        let mut changes = Vec::new();
        for status in statuses.iter() {
            let Ok(path) = status.path() else { continue };
            if path == ".flow"
                || path.starts_with(".flow/")
                || excluded.as_deref().is_some_and(|p| path.starts_with(p))
            {
                continue;
            }
            dirty = true;
            let flags = status.status();
            let kind = if flags.contains(git2::Status::WT_NEW) {
                untracked.push(path.to_string());
                ChangeKind::Untracked
            } else if flags.intersects(git2::Status::WT_DELETED | git2::Status::INDEX_DELETED) {
                ChangeKind::Deleted
            } else if flags.contains(git2::Status::INDEX_NEW) {
                ChangeKind::Added
            } else {
                ChangeKind::Modified
            };
            changes.push(Change {
                path: path.to_string(),
                kind,
            });
        }
        changes.sort_by(|a, b| a.path.cmp(&b.path));
        if !dirty {
            return Ok(CodeVersion {
                commit,
                dirty,
                diff_hash: None,
                changes,
                workdir: Some(workdir),
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
            changes,
            workdir: Some(workdir),
        })
    }

    /// The code version of an entry point that declares what its code is (`code:` globs,
    /// relative to the work tree): `files:` and a blake3 over the matching files — their
    /// committed blob ids, or their content where uncommitted — so a change anywhere else
    /// (an output file, a notebook) is not a new version. Outside git: `none`.
    pub fn of_globs(&self, globs: &[String]) -> Result<String> {
        let Some(workdir) = &self.workdir else {
            return Ok("none".to_string());
        };
        let patterns = compile(globs)?;
        let matches = |path: &str| {
            patterns
                .iter()
                .any(|p| p.matches_with(path, glob_options()))
        };
        let repo = git2::Repository::open(workdir).context("cannot open the git repository")?;
        let mut files: BTreeMap<String, String> = BTreeMap::new();
        if let Some(tree) = repo.head().ok().and_then(|h| h.peel_to_tree().ok()) {
            tree.walk(git2::TreeWalkMode::PreOrder, |root, entry| {
                if entry.kind() == Some(git2::ObjectType::Blob) {
                    let path = format!("{root}{}", entry.name().unwrap_or_default());
                    if matches(&path) {
                        files.insert(path, entry.id().to_string());
                    }
                }
                git2::TreeWalkResult::Ok
            })
            .context("cannot read the committed tree")?;
        }
        for change in &self.changes {
            if !matches(&change.path) {
                continue;
            }
            match change.kind {
                ChangeKind::Deleted => {
                    files.remove(&change.path);
                }
                _ => {
                    let content = fs::read(workdir.join(&change.path)).unwrap_or_default();
                    files.insert(
                        change.path.clone(),
                        blake3::hash(&content).to_hex().to_string(),
                    );
                }
            }
        }
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"flow.code-files.v1\0");
        for (path, id) in &files {
            hasher.update(path.as_bytes());
            hasher.update(&[0]);
            hasher.update(id.as_bytes());
            hasher.update(&[0]);
        }
        Ok(format!("files:{}", &hasher.finalize().to_hex()[..24]))
    }

    /// The files that differ between the code at `old_commit` and this work tree, within
    /// `globs` (all files when empty), as `path (kind)`. Empty when it cannot tell.
    pub fn changed_since(&self, old_commit: &str, globs: &[String]) -> Vec<String> {
        let Some(workdir) = &self.workdir else {
            return Vec::new();
        };
        let Ok(patterns) = compile(globs) else {
            return Vec::new();
        };
        let wanted = |path: &str| {
            !(path == ".flow" || path.starts_with(".flow/"))
                && (patterns.is_empty()
                    || patterns
                        .iter()
                        .any(|p| p.matches_with(path, glob_options())))
        };
        let Ok(repo) = git2::Repository::open(workdir) else {
            return Vec::new();
        };
        let old_tree = git2::Oid::from_str(old_commit)
            .ok()
            .and_then(|oid| repo.find_commit(oid).ok())
            .and_then(|commit| commit.tree().ok());
        let Some(old_tree) = old_tree else {
            return Vec::new();
        };
        let mut options = git2::DiffOptions::new();
        options.include_untracked(true).recurse_untracked_dirs(true);
        let Ok(diff) = repo.diff_tree_to_workdir_with_index(Some(&old_tree), Some(&mut options))
        else {
            return Vec::new();
        };
        let mut files: Vec<String> = diff
            .deltas()
            .filter_map(|delta| {
                let path = delta.new_file().path().or(delta.old_file().path())?;
                let path = path.to_string_lossy().replace('\\', "/");
                let kind = match delta.status() {
                    git2::Delta::Added => "added",
                    git2::Delta::Deleted => "deleted",
                    git2::Delta::Untracked => "untracked",
                    _ => "modified",
                };
                wanted(&path).then(|| format!("{path} ({kind})"))
            })
            .collect();
        files.sort();
        files
    }
}

fn compile(globs: &[String]) -> Result<Vec<glob::Pattern>> {
    globs
        .iter()
        .map(|g| glob::Pattern::new(g).with_context(|| format!("bad `code` glob `{g}`")))
        .collect()
}

/// `*` stays within a directory, `**` crosses them, as in `.gitignore`.
fn glob_options() -> glob::MatchOptions {
    glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
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

    fn git(dir: &Path, args: &[&str]) {
        let ok = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .status()
            .unwrap()
            .success();
        assert!(ok, "git {args:?}");
    }

    /// A step's declared code keeps its version while other files change; the files
    /// that make a difference are named.
    #[test]
    fn declared_code_ignores_other_files_and_names_changes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        git(root, &["init", "-q"]);
        fs::create_dir_all(root.join("src")).unwrap();
        fs::write(root.join("src/step.py"), "print(1)\n").unwrap();
        fs::write(root.join("README.md"), "docs\n").unwrap();
        git(root, &["add", "-A"]);
        git(root, &["commit", "-qm", "one"]);
        let code = vec!["src/**".to_string()];
        let clean = CodeVersion::of(root, &root.join(".flow")).unwrap();
        let first = clean.of_globs(&code).unwrap();
        assert!(first.starts_with("files:"), "{first}");

        fs::write(root.join("result.json"), "{}").unwrap();
        fs::write(root.join("README.md"), "more docs\n").unwrap();
        let dirty = CodeVersion::of(root, &root.join(".flow")).unwrap();
        assert_ne!(dirty.id(), clean.id(), "the whole tree is dirty");
        assert_eq!(
            dirty.of_globs(&code).unwrap(),
            first,
            "the step's code is not"
        );
        let changes: Vec<String> = dirty.changes.iter().map(ToString::to_string).collect();
        assert_eq!(changes, ["README.md (modified)", "result.json (untracked)"]);

        fs::write(root.join("src/step.py"), "print(2)\n").unwrap();
        let edited = CodeVersion::of(root, &root.join(".flow")).unwrap();
        assert_ne!(edited.of_globs(&code).unwrap(), first);
        assert_eq!(
            edited.changed_since(&clean.commit, &code),
            ["src/step.py (modified)"]
        );
        assert_eq!(edited.changed_since(&clean.commit, &[]).len(), 3);
    }

    #[test]
    fn no_repository_is_recorded_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let version = CodeVersion::of(dir.path(), &dir.path().join(".flow")).unwrap();
        assert_eq!(version.id(), "none");
    }
}
