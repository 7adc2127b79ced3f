//! Params and tags a step logs about itself (`flow log param|tag`): JSON lines
//! `{"kind": "param"|"tag", "key", "value"}` appended to the file `FLOW_ANNOTATIONS` names,
//! in the run's staging directory; the driver records them when the step ends.
//!
//! A step never opens the store. Under Slurm it runs on another node, where SQLite over a
//! network filesystem loses its locking guarantees; everywhere, only the coordinating
//! flow writes the store. Each append is one `write(2)` with `O_APPEND`, as for metrics.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use flow_steps::metrics_file::BadLine;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Param,
    Tag,
}

/// One param or tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    pub kind: Kind,
    pub key: String,
    pub value: String,
}

/// What an annotations file held: the readable lines, and those that were not.
#[derive(Debug, Default)]
pub struct Contents {
    pub annotations: Vec<Annotation>,
    pub bad_lines: Vec<BadLine>,
}

/// Appends one annotation to `path`.
pub fn append(path: &Path, annotation: &Annotation) -> Result<()> {
    let mut line = serde_json::to_string(annotation)?;
    line.push('\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open `{}`", path.display()))?;
    file.write_all(line.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))
}

/// Reads `path`; a missing file holds nothing, a bad line is reported and skipped.
pub fn read(path: &Path) -> Result<Contents> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Contents::default())
        }
        Err(error) => {
            return Err(error).with_context(|| format!("cannot read `{}`", path.display()))
        }
    };
    let mut contents = Contents::default();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Annotation>(line) {
            Ok(annotation) => contents.annotations.push(annotation),
            Err(error) => contents.bad_lines.push(BadLine {
                number: index + 1,
                reason: error.to_string(),
            }),
        }
    }
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_lines_read_back_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("annotations.jsonl");
        assert!(read(&path).unwrap().annotations.is_empty(), "no file yet");
        let param = Annotation {
            kind: Kind::Param,
            key: "lr".into(),
            value: "0.001".into(),
        };
        append(&path, &param).unwrap();
        std::fs::write(
            &path,
            format!(
                "{}oops\n{{\"kind\":\"tag\",\"key\":\"note\",\"value\":\"a \\\"b\\\"\"}}\n",
                std::fs::read_to_string(&path).unwrap()
            ),
        )
        .unwrap();
        let contents = read(&path).unwrap();
        assert_eq!(contents.annotations.len(), 2);
        assert_eq!(contents.annotations[0], param);
        assert_eq!(contents.annotations[1].value, "a \"b\"");
        assert_eq!(contents.bad_lines.len(), 1);
        assert_eq!(contents.bad_lines[0].number, 2);
    }
}
