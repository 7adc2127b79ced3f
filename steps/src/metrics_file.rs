//! The metrics file a step appends to (`FLOW_METRICS`): JSON lines
//! `{"key", "value", "step", "timestamp"}`. One writer and one reader for both sides —
//! steps (and `flow log metric`) write, the runner reads — so they cannot disagree.
//!
//! Non-finite values are written as strings (`"NaN"`, `"inf"`, `"-inf"`), which JSON
//! numbers cannot hold. Each append is one `write(2)` on a file opened with `O_APPEND`,
//! so lines from concurrent writers (a step's parallel workers) never interleave.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// One metric point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub key: String,
    pub value: f64,
    pub step: i64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// A line that could not be read, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 1-based.
    pub number: usize,
    pub reason: String,
}

/// What a metrics file held: the readable points, and the lines that were not.
#[derive(Debug, Default)]
pub struct Contents {
    pub points: Vec<Point>,
    pub bad_lines: Vec<BadLine>,
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The line for one point, newline included.
pub fn line(key: &str, value: f64, step: i64, timestamp_ms: i64) -> String {
    let value = if value.is_finite() {
        serde_json::json!(value)
    } else {
        serde_json::json!(value.to_string())
    };
    let mut text = serde_json::json!({
        "key": key,
        "value": value,
        "step": step,
        "timestamp": timestamp_ms,
    })
    .to_string();
    text.push('\n');
    text
}

/// Appends `lines` (whole lines, from [`line`]) in one write.
pub fn append(path: &Path, lines: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open metrics file `{}`", path.display()))?;
    file.write_all(lines.as_bytes())
        .with_context(|| format!("cannot write metrics file `{}`", path.display()))
}

/// Reads a metrics file; a missing file holds nothing. A line that is not a metric is
/// reported in `bad_lines` and skipped: one bad line never costs the others.
pub fn read(path: &Path) -> Result<Contents> {
    let text = match std::fs::read(path) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::default()),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read metrics file `{}`", path.display()))
        }
    };
    let now = now_ms();
    let mut contents = Contents::default();
    for (index, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        match parse_line(text, now) {
            Ok(point) => contents.points.push(point),
            Err(reason) => contents.bad_lines.push(BadLine {
                number: index + 1,
                reason,
            }),
        }
    }
    Ok(contents)
}

fn parse_line(text: &str, now_ms: i64) -> std::result::Result<Point, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let key = value["key"]
        .as_str()
        .filter(|k| !k.is_empty())
        .ok_or("no string `key`")?;
    let number = match &value["value"] {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or("`value` is not a number")?;
    let step = match &value["step"] {
        serde_json::Value::Null => 0,
        other => other.as_i64().ok_or("`step` is not an integer")?,
    };
    Ok(Point {
        key: key.to_string(),
        value: number,
        step,
        timestamp_ms: value["timestamp"].as_i64().unwrap_or(now_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back_non_finite_values_included() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut lines = String::new();
        for (key, value) in [
            ("loss", 0.5),
            ("f1", f64::NAN),
            ("up", f64::INFINITY),
            ("down", f64::NEG_INFINITY),
        ] {
            lines.push_str(&line(key, value, 3, 7));
        }
        append(&path, &lines).unwrap();
        let contents = read(&path).unwrap();
        assert!(contents.bad_lines.is_empty(), "{:?}", contents.bad_lines);
        let values: Vec<f64> = contents.points.iter().map(|p| p.value).collect();
        assert_eq!(values[0], 0.5);
        assert!(values[1].is_nan());
        assert_eq!(values[2], f64::INFINITY);
        assert_eq!(values[3], f64::NEG_INFINITY);
        assert_eq!(
            (contents.points[0].step, contents.points[0].timestamp_ms),
            (3, 7)
        );
    }

    #[test]
    fn a_bad_line_is_named_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        std::fs::write(
            &path,
            "{\"key\":\"loss\",\"value\":0.5,\"step\":3}\n{\"key\":\"lo{\"key\n\n{\"key\":\"f1\",\"value\":[1]}\n{\"key\":\"f1\",\"value\":\"NaN\"}\n",
        )
        .unwrap();
        let contents = read(&path).unwrap();
        assert_eq!(contents.points.len(), 2);
        let numbers: Vec<usize> = contents.bad_lines.iter().map(|b| b.number).collect();
        assert_eq!(numbers, vec![2, 4]);
        assert!(contents.bad_lines[1].reason.contains("`value`"));
    }

    /// Many writers appending at once never interleave inside a line.
    #[test]
    fn concurrent_appends_stay_whole_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for step in 0..500 {
                        append(
                            &path,
                            &line(&format!("worker_{writer}_metric"), 0.25, step, 1),
                        )
                        .unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let contents = read(&path).unwrap();
        assert!(contents.bad_lines.is_empty());
        assert_eq!(contents.points.len(), 8 * 500);
    }
}
