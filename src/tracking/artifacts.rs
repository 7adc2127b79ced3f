//! The `mlflow-artifacts` proxy: uploads (PUT, streamed into the store), downloads (GET,
//! streamed from the object), listings and deletions, under each run's artifact root
//! `mlflow-artifacts:/<experiment>/<run>/artifacts`; and `artifacts/list` by run id.
//!
//! A run's artifacts are its published outputs (what a flow step wrote to
//! `FLOW_OUTPUT_DIR`, immutable) and the files uploaded into it; an upload never replaces
//! an output.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::store::{check_artifact_path, Store};
use crate::tracking::error::ApiError;
use crate::tracking::{empty, experiment_id, wire, QueryFields, TrackingState};

/// Bytes per chunk of a streamed download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

/// `PUT /api/2.0/mlflow-artifacts/artifacts/<experiment>/<run>/artifacts/<path>`.
pub async fn upload(
    State(state): State<Arc<TrackingState>>,
    Path(path): Path<String>,
    mut body: Body,
) -> Result<Json<Value>, ApiError> {
    let target = RunPath::parse(&path)?;
    if target.relative.is_empty() {
        return Err(ApiError::invalid(format!(
            "`{path}` names the artifact root of a run, not a file"
        )));
    }
    let mut upload = state
        .with_store(move |store| {
            target.check_run(store)?;
            Ok(store.begin_artifact_upload(&target.run_id, &target.relative)?)
        })
        .await?;
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame
            .map_err(|error| ApiError::invalid(format!("the upload was interrupted: {error}")))?;
        if let Ok(chunk) = frame.into_data() {
            upload.write(&chunk)?;
        }
    }
    state
        .with_store(move |store| Ok(store.finish_artifact_upload(upload)?))
        .await?;
    Ok(empty())
}

/// `GET /api/2.0/mlflow-artifacts/artifacts/<experiment>/<run>/artifacts/<path>`.
pub async fn download(
    State(state): State<Arc<TrackingState>>,
    Path(path): Path<String>,
) -> Result<Response, ApiError> {
    let target = RunPath::parse(&path)?;
    let (file, size) = state
        .with_store(move |store| {
            target.check_run(store)?;
            store
                .artifact_object(&target.run_id, &target.relative)?
                .ok_or_else(|| {
                    ApiError::not_found(format!(
                        "run {} has no artifact `{}`",
                        target.run_id, target.relative
                    ))
                })
        })
        .await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_string()),
            (header::CONTENT_LENGTH, size.to_string()),
        ],
        Body::new(FileBody::open(file)),
    )
        .into_response())
}

/// `DELETE /api/2.0/mlflow-artifacts/artifacts/<experiment>/<run>/artifacts/<path>`:
/// removes uploads at or under the path (outputs stay).
pub async fn delete(
    State(state): State<Arc<TrackingState>>,
    Path(path): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let target = RunPath::parse(&path)?;
    state
        .with_store(move |store| {
            target.check_run(store)?;
            Ok(store.delete_logged_artifacts(&target.run_id, &target.relative)?)
        })
        .await?;
    Ok(empty())
}

/// `GET /api/2.0/mlflow-artifacts/artifacts?path=<experiment>/<run>/artifacts[/<dir>]`:
/// the directory's entries by base name.
pub async fn list(
    State(state): State<Arc<TrackingState>>,
    QueryFields(fields): QueryFields,
) -> Result<Json<Value>, ApiError> {
    let path = fields.string("path")?.unwrap_or_default();
    let target = RunPath::parse(&path)?;
    let entries = state
        .with_store(move |store| {
            target.check_run(store)?;
            let files = run_files(store, &target.run_id)?;
            Ok(children(&files, &target.relative))
        })
        .await?;
    let files: Vec<Value> = entries
        .iter()
        .map(|entry| entry.to_json(&entry.name))
        .collect();
    Ok(Json(json!({ "files": files })))
}

/// `GET /api/2.0/mlflow/artifacts/list?run_id=...&path=...`: entries by run-relative path.
pub async fn list_for_run(
    State(state): State<Arc<TrackingState>>,
    QueryFields(fields): QueryFields,
) -> Result<Json<Value>, ApiError> {
    let run_id = fields.run_id()?;
    let dir = fields
        .string("path")?
        .unwrap_or_default()
        .trim_matches('/')
        .to_string();
    if !dir.is_empty() {
        check_artifact_path(&dir).map_err(|error| ApiError::invalid(error.to_string()))?;
    }
    let (run, listed) = (run_id.clone(), dir.clone());
    let (experiment, entries) = state
        .with_store(move |store| {
            let experiment = store.tracked_run(&run)?.experiment_id;
            let files = run_files(store, &run)?;
            Ok((experiment, children(&files, &listed)))
        })
        .await?;
    let files: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let path = if dir.is_empty() {
                entry.name.clone()
            } else {
                format!("{dir}/{}", entry.name)
            };
            entry.to_json(&path)
        })
        .collect();
    Ok(Json(json!({
        "root_uri": wire::artifact_uri(experiment, &run_id),
        "files": files,
    })))
}

/// A path in the proxy's namespace: `<experiment>/<run>/artifacts[/<relative>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunPath {
    experiment_id: i64,
    run_id: String,
    /// `/`-separated, empty for the run's artifact root.
    relative: String,
}

impl RunPath {
    fn parse(path: &str) -> Result<RunPath, ApiError> {
        let trimmed = path.trim_matches('/');
        let mut parts = trimmed.splitn(4, '/');
        let (Some(experiment), Some(run_id), Some("artifacts")) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(ApiError::not_found(format!(
                "no artifact location `{path}`: flow server keeps artifacts per run, under \
                 `<experiment id>/<run id>/artifacts/...`"
            )));
        };
        let relative = parts.next().unwrap_or("").trim_end_matches('/').to_string();
        if !relative.is_empty() {
            check_artifact_path(&relative).map_err(|error| ApiError::invalid(error.to_string()))?;
        }
        Ok(RunPath {
            experiment_id: experiment_id(experiment)?,
            run_id: run_id.to_string(),
            relative,
        })
    }

    /// The run exists and belongs to the experiment the path names.
    fn check_run(&self, store: &Store) -> Result<(), ApiError> {
        let run = store.tracked_run(&self.run_id)?;
        if run.experiment_id != self.experiment_id {
            return Err(ApiError::not_found(format!(
                "run {} is not in experiment {}",
                self.run_id, self.experiment_id
            )));
        }
        Ok(())
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    /// None for directories.
    size: Option<u64>,
}

impl Entry {
    fn to_json(&self, path: &str) -> Value {
        match self.size {
            Some(size) => json!({ "path": path, "is_dir": false, "file_size": size }),
            None => json!({ "path": path, "is_dir": true }),
        }
    }
}

/// Every file of a run, by path: published outputs, then uploads they do not shadow.
fn run_files(store: &Store, run_id: &str) -> Result<BTreeMap<String, u64>, ApiError> {
    let mut files: BTreeMap<String, u64> = store
        .logged_artifacts(run_id)?
        .into_iter()
        .map(|artifact| (artifact.path, artifact.size))
        .collect();
    for output in store.artifacts(run_id)? {
        files.insert(output.path, output.size);
    }
    Ok(files)
}

/// The entries directly inside `dir` (empty: the root), directories first by name order.
fn children(files: &BTreeMap<String, u64>, dir: &str) -> Vec<Entry> {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut entries: BTreeMap<String, Option<u64>> = BTreeMap::new();
    for (path, size) in files {
        let Some(rest) = path.strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            Some((subdir, _)) => {
                entries.insert(subdir.to_string(), None);
            }
            None => {
                entries.insert(rest.to_string(), Some(*size));
            }
        }
    }
    entries
        .into_iter()
        .map(|(name, size)| Entry { name, size })
        .collect()
}

/// A file streamed in chunks read on the blocking pool.
struct FileBody {
    chunks: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
}

impl FileBody {
    fn open(path: PathBuf) -> FileBody {
        let (sender, chunks) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            };
            loop {
                let mut buffer = vec![0; DOWNLOAD_CHUNK];
                match file.read(&mut buffer) {
                    Ok(0) => return,
                    Ok(read) => {
                        buffer.truncate(read);
                        if sender.blocking_send(Ok(Bytes::from(buffer))).is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        let _ = sender.blocking_send(Err(error));
                        return;
                    }
                }
            }
        });
        FileBody { chunks }
    }
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.chunks
            .poll_recv(cx)
            .map(|chunk| chunk.map(|read| read.map(http_body::Frame::data)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_paths_name_a_run_and_a_file() {
        let parsed = RunPath::parse("3/abc/artifacts/model/weights.bin").unwrap();
        assert_eq!(
            parsed,
            RunPath {
                experiment_id: 3,
                run_id: "abc".into(),
                relative: "model/weights.bin".into()
            }
        );
        assert_eq!(RunPath::parse("0/abc/artifacts").unwrap().relative, "");
        assert_eq!(RunPath::parse("0/abc/artifacts/").unwrap().relative, "");
        assert_eq!(
            RunPath::parse("0/abc").unwrap_err().code,
            "RESOURCE_DOES_NOT_EXIST"
        );
        assert_eq!(
            RunPath::parse("0/abc/artifacts/../../x").unwrap_err().code,
            "INVALID_PARAMETER_VALUE"
        );
        assert_eq!(
            RunPath::parse("x/abc/artifacts/f").unwrap_err().code,
            "INVALID_PARAMETER_VALUE"
        );
    }

    #[test]
    fn listings_show_one_level() {
        let files = BTreeMap::from([
            ("model/a.bin".to_string(), 3),
            ("model/sub/b.bin".to_string(), 4),
            ("notes.txt".to_string(), 5),
        ]);
        let names = |dir: &str| -> Vec<(String, Option<u64>)> {
            children(&files, dir)
                .into_iter()
                .map(|entry| (entry.name, entry.size))
                .collect()
        };
        assert_eq!(
            names(""),
            vec![("model".into(), None), ("notes.txt".into(), Some(5))]
        );
        assert_eq!(
            names("model"),
            vec![("a.bin".into(), Some(3)), ("sub".into(), None)]
        );
        assert_eq!(names("notes.txt"), vec![]);
        assert_eq!(names("absent"), vec![]);
    }
}
