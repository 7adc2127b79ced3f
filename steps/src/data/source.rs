//! Opening data files: `.gz` is decompressed transparently, and a file may be found
//! under its plain or its gzip name (`M-6.npy` or `M-6.npy.gz`).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use flate2::read::MultiGzDecoder;

/// The whole content of `path`, gunzipped when the name ends in `.gz`.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    if !is_gzip_name(path) {
        return Ok(raw);
    }
    let mut bytes = Vec::with_capacity(raw.len() * 4);
    MultiGzDecoder::new(raw.as_slice())
        .read_to_end(&mut bytes)
        .with_context(|| format!("`{}` is not a valid gzip file", path.display()))?;
    Ok(bytes)
}

/// The content of a text file (`.gz` transparently), checked to be UTF-8.
pub fn read_text(path: &Path) -> Result<String> {
    String::from_utf8(read_bytes(path)?)
        .with_context(|| format!("`{}` is not UTF-8 text", path.display()))
}

/// `dir/name` or `dir/name.gz`, whichever exists; when both do, the plain file is read
/// and a note on stderr says so, since the two may differ.
pub fn find_maybe_gz(dir: &Path, name: &str) -> Option<PathBuf> {
    let (found, note) = choose_maybe_gz(dir, name);
    if let Some(note) = note {
        eprintln!("note: {note}");
    }
    found
}

/// The file [`find_maybe_gz`] reads, and what it says when both spellings exist.
pub fn choose_maybe_gz(dir: &Path, name: &str) -> (Option<PathBuf>, Option<String>) {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    match (plain.is_file(), gz.is_file()) {
        (true, true) => {
            let note = format!(
                "both `{name}` and `{name}.gz` are in `{}`; reading `{name}` (remove one to silence this)",
                dir.display()
            );
            (Some(plain), Some(note))
        }
        (true, false) => (Some(plain), None),
        (false, true) => (Some(gz), None),
        (false, false) => (None, None),
    }
}

/// The file name without a trailing `.gz`, lower-cased: what decides the format.
pub fn format_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    name.strip_suffix(".gz").map(str::to_string).unwrap_or(name)
}

/// Names of the files in `dir` that end in `suffix` or `suffix.gz`, with that ending
/// removed, sorted and deduplicated (`M-6.npy.gz` -> `M-6`).
pub fn stems_in(dir: &Path, suffix: &str) -> Result<Vec<String>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list `{}`", dir.display()))?;
    let mut stems = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list `{}`", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        if let Some(stem) = name.strip_suffix(suffix) {
            stems.push(stem.to_string());
        }
    }
    stems.sort();
    stems.dedup();
    Ok(stems)
}

fn is_gzip_name(path: &Path) -> bool {
    path.extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("gz"))
}

/// The known name closest to `wanted` by edit distance, if it is close enough to be a
/// likely typo (at most a third of the longer name).
pub fn closest<'a>(wanted: &str, known: &'a [String]) -> Option<&'a str> {
    let wanted_lower = wanted.to_ascii_lowercase();
    known
        .iter()
        .map(|name| {
            (
                edit_distance(&wanted_lower, &name.to_ascii_lowercase()),
                name,
            )
        })
        .filter(|(distance, name)| *distance * 3 <= wanted.len().max(name.len()))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name.as_str())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gz_is_read_transparently_and_found_by_plain_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.txt.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            Default::default(),
        );
        encoder.write_all(b"1,2\n").unwrap();
        encoder.finish().unwrap();
        assert_eq!(find_maybe_gz(dir.path(), "a.txt"), Some(path.clone()));
        assert_eq!(read_text(&path).unwrap(), "1,2\n");
        assert_eq!(format_name(&path), "a.txt");
        assert_eq!(stems_in(dir.path(), ".txt").unwrap(), vec!["a".to_string()]);
    }

    #[test]
    fn a_plain_file_beside_its_gzip_wins_with_a_note() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("M-3.npy"), b"plain").unwrap();
        assert_eq!(
            choose_maybe_gz(dir.path(), "M-3.npy"),
            (Some(dir.path().join("M-3.npy")), None)
        );
        std::fs::write(dir.path().join("M-3.npy.gz"), b"gz").unwrap();
        let (found, note) = choose_maybe_gz(dir.path(), "M-3.npy");
        assert_eq!(found, Some(dir.path().join("M-3.npy")));
        let note = note.unwrap();
        assert!(
            note.starts_with("both `M-3.npy` and `M-3.npy.gz` are in `")
                && note.ends_with("reading `M-3.npy` (remove one to silence this)"),
            "{note}"
        );
    }

    #[test]
    fn corrupt_gzip_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.npy.gz");
        std::fs::write(&path, b"not gzip").unwrap();
        let message = format!("{:#}", read_bytes(&path).unwrap_err());
        assert!(message.contains("bad.npy.gz"), "{message}");
    }

    #[test]
    fn closest_suggests_typos_only() {
        let known = vec![
            "M-6".to_string(),
            "M-7".to_string(),
            "machine-2-1".to_string(),
        ];
        assert_eq!(closest("m-6", &known), Some("M-6"));
        assert_eq!(closest("machine-2-2", &known), Some("machine-2-1"));
        assert_eq!(closest("P-11", &known), None);
    }
}
