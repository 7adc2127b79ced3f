//! The project spec: `MLproject.yaml` (or MLflow's `MLproject`) parsed and validated.
//!
//! MLflow's schema (`name`, `entry_points` with `parameters` and `command`) plus flow's
//! extensions: `depends_on`, `key`, `inputs`, `members`, `gather`, `resources`, `code`.
//! As MLflow does, fields flow does not know are ignored — with a warning that suggests
//! the known field a typo was meant to be — and the environment sections (`conda_env`,
//! `python_env`, `docker_env`) are accepted and ignored. Every error and warning points
//! into the file: path, line and column.
//!
//! The text is read into a plain YAML tree ([`node`]) and interpreted by hand, so that
//! each wrong shape gets a message naming the field and what it should be. Flow
//! collections nested deeper than [`text::MAX_FLOW_DEPTH`] are refused before parsing.

mod entry;
mod error;
mod node;
mod param;
mod resources;
mod template;
mod text;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use entry::{Entry, Gather, ENTRY_FIELDS};
pub use error::{SpecError, SpecWarning};
pub use param::{ParamType, Parameter, TypeError};
pub use resources::{parse_duration, parse_memory, Resources};
pub use template::{placeholders, substitute, unclosed_placeholder};

use node::Node;
pub(crate) use text::locate_key;

/// A parsed, validated project.
#[derive(Debug, Clone)]
pub struct Project {
    /// Directory holding the spec; steps run here.
    pub dir: PathBuf,
    /// The spec file itself.
    pub path: PathBuf,
    pub name: String,
    /// Entry points by name, in file order of names (BTreeMap for a stable order).
    pub entries: BTreeMap<String, Entry>,
    /// Environment sections found and ignored (`conda_env`, `python_env`, `docker_env`).
    pub ignored_sections: Vec<String>,
    /// What was accepted but deserves a word: ignored fields, an ignored second spec file.
    pub warnings: Vec<SpecWarning>,
}

/// The spec file names flow looks for, in order of preference; MLflow reads `MLproject`.
pub const SPEC_FILE_NAMES: [&str; 3] = ["MLproject.yaml", "MLproject.yml", "MLproject"];

/// The top-level fields of a spec; the environment sections are accepted and ignored.
pub const TOP_LEVEL_FIELDS: [&str; 5] = [
    "name",
    "entry_points",
    "conda_env",
    "python_env",
    "docker_env",
];

impl Project {
    /// Finds and loads the spec in `dir`: the first of [`SPEC_FILE_NAMES`] that is a file.
    /// When more than one exists, the project warns which one it ignored.
    pub fn load(dir: &Path) -> Result<Project, SpecError> {
        let unlocated = |path: PathBuf, message: String| SpecError {
            path,
            line: None,
            column: None,
            message,
        };
        if !dir.is_dir() {
            let message = if dir.exists() {
                "is not a directory; pass `--project DIR` with the directory holding `MLproject.yaml`"
            } else {
                "project directory does not exist; pass `--project DIR` to point at one"
            };
            return Err(unlocated(dir.to_path_buf(), message.to_string()));
        }
        let present: Vec<PathBuf> = SPEC_FILE_NAMES
            .iter()
            .map(|name| dir.join(name))
            .filter(|path| path.exists())
            .collect();
        let Some(path) = present.iter().find(|path| path.is_file()) else {
            return Err(match present.first() {
                Some(path) => unlocated(path.clone(), "is a directory, not a file; the spec must be a YAML file".into()),
                None => unlocated(
                    dir.join(SPEC_FILE_NAMES[0]),
                    "no `MLproject.yaml` (or `MLproject`) in this directory; pass `--project DIR` to point at one".into(),
                ),
            });
        };
        let bytes = std::fs::read(path)
            .map_err(|e| unlocated(path.clone(), format!("cannot read: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| unlocated(path.clone(), format!("is not UTF-8 text ({e})")))?;
        let mut project = Project::parse(&text, path)?;
        for ignored in present
            .iter()
            .filter(|other| *other != path && other.is_file())
        {
            project.warnings.push(SpecWarning {
                path: ignored.clone(),
                line: None,
                column: None,
                message: format!(
                    "ignored: `{}` is read when both exist (remove one to silence this)",
                    file_name(path)
                ),
            });
        }
        Ok(project)
    }

    /// Parses spec text; `path` is used for messages and as the project directory's anchor.
    pub fn parse(text: &str, path: &Path) -> Result<Project, SpecError> {
        let text = text::strip_bom(text);
        let mut doc = Document {
            text,
            path,
            warnings: Vec::new(),
            entry_lines: std::cell::OnceCell::new(),
        };
        if let Some((line, column)) = text::too_deep(text) {
            return Err(doc.error_at(
                Some((line, column)),
                format!(
                    "collections nested more than {} levels deep; a spec nests a few",
                    text::MAX_FLOW_DEPTH
                ),
            ));
        }
        let root: Node = serde_yaml::from_str(text).map_err(|e| yaml_error(&doc, &e))?;
        let fields: &[(String, Node)] = match &root {
            Node::Null => &[],
            Node::Map(fields) => fields,
            other => {
                return Err(doc.error_at(
                    Some((1, 1)),
                    format!(
                        "the spec is {}; it must be a mapping with `name` and `entry_points`",
                        other.kind()
                    ),
                ))
            }
        };
        let mut name = String::new();
        let mut entry_nodes: &[(String, Node)] = &[];
        let mut ignored_sections = Vec::new();
        for (field, value) in fields {
            match (field.as_str(), value) {
                ("name", Node::Scalar(text)) => name = text.clone(),
                ("name", Node::Null) => {}
                ("entry_points", Node::Map(entries)) => entry_nodes = entries,
                ("entry_points", Node::Null) => {}
                ("name" | "entry_points", other) => {
                    let expected = if field == "name" {
                        "a single value"
                    } else {
                        "a mapping of entry point names to their `command` and `parameters`"
                    };
                    return Err(doc.error(
                        &[field],
                        format!("`{field}` is {}; it must be {expected}", other.kind()),
                    ));
                }
                ("conda_env" | "python_env" | "docker_env", _) => {
                    ignored_sections.push(field.clone())
                }
                (unknown, _) => doc.warn_unknown(&[unknown], "the spec", &TOP_LEVEL_FIELDS),
            }
        }
        if entry_nodes.is_empty() {
            return Err(doc.error(
                &["entry_points"],
                "the spec declares no entry points; add `entry_points:` with at least one, e.g. `main: {command: ...}`".to_string(),
            ));
        }
        let mut entries = BTreeMap::new();
        for (entry_name, node) in entry_nodes {
            entries.insert(entry_name.clone(), Entry::read(entry_name, node, &mut doc)?);
        }
        check_references(&entries, &doc)?;
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        Ok(Project {
            dir,
            path: path.to_path_buf(),
            name,
            entries,
            ignored_sections,
            warnings: doc.warnings,
        })
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }
}

/// The spec text being read, and the warnings found so far.
pub(crate) struct Document<'a> {
    text: &'a str,
    path: &'a Path,
    warnings: Vec<SpecWarning>,
    /// Where each entry point's name stands, found once for all of them.
    entry_lines: std::cell::OnceCell<std::collections::HashMap<String, (usize, usize)>>,
}

impl Document<'_> {
    /// The 1-based line of entry point `name`'s key.
    fn entry_line(&self, name: &str) -> Option<usize> {
        self.entry_lines
            .get_or_init(|| text::child_keys(self.text, &["entry_points"]))
            .get(name)
            .map(|(line, _)| *line)
    }

    /// The line and column of a key path, or of its nearest located parent.
    fn locate(&self, keys: &[&str]) -> Option<(usize, usize)> {
        text::locate_nearest(self.text, keys)
    }

    /// An error at a key path.
    fn error(&self, keys: &[&str], message: String) -> SpecError {
        self.error_at(self.locate(keys), message)
    }

    fn error_at(&self, position: Option<(usize, usize)>, message: String) -> SpecError {
        let (line, column) = position.unzip();
        SpecError {
            path: self.path.to_path_buf(),
            line,
            column,
            message,
        }
    }

    /// Warns that the field the key path ends in is ignored, suggesting the known field
    /// it is closest to; `owner` says whose field it is ("entry point `main`").
    fn warn_unknown(&mut self, keys: &[&str], owner: &str, known: &[&str]) {
        let field = keys.last().copied().unwrap_or_default();
        let suggestion = crate::suggest::closest(field, known.iter().copied())
            .map(|close| format!(" (did you mean `{close}`?)"))
            .unwrap_or_default();
        let (line, column) = self.locate(keys).unzip();
        self.warnings.push(SpecWarning {
            path: self.path.to_path_buf(),
            line,
            column,
            message: format!("unknown field `{field}` of {owner} is ignored{suggestion}"),
        });
    }
}

/// Checks what entries say about each other: dependencies exist, gathered parameters are
/// declared somewhere, a gathering step has something upstream to gather.
fn check_references(entries: &BTreeMap<String, Entry>, doc: &Document) -> Result<(), SpecError> {
    for entry in entries.values() {
        for dep in &entry.depends_on {
            if !entries.contains_key(dep) {
                let hint = crate::suggest::closest(dep, entries.keys().map(String::as_str))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(doc.error(
                    &entry_field(&entry.name, "depends_on"),
                    format!(
                        "entry point `{}` depends on `{dep}`, which is not an entry point{hint}",
                        entry.name
                    ),
                ));
            }
        }
        if let Gather::Params(gathered) = &entry.gather {
            for param in gathered {
                if !entries.values().any(|e| e.parameters.contains_key(param)) {
                    return Err(doc.error(&entry_field(&entry.name, "gather"), format!(
                        "entry point `{}` gathers `{param}`, which no entry point declares as a parameter",
                        entry.name
                    )));
                }
            }
        }
        if entry.gather != Gather::None && entry.depends_on.is_empty() {
            return Err(doc.error(
                &entry_field(&entry.name, "gather"),
                format!(
                    "entry point `{}` gathers its upstream members but has no `depends_on`",
                    entry.name
                ),
            ));
        }
    }
    Ok(())
}

/// The key path of an entry point's field, to locate it.
fn entry_field<'a>(entry: &'a str, field: &'a str) -> [&'a str; 3] {
    ["entry_points", entry, field]
}

/// A YAML syntax error at serde_yaml's position, with its reason only.
fn yaml_error(doc: &Document, error: &serde_yaml::Error) -> SpecError {
    let position = error.location().map(|l| (l.line(), l.column()));
    // serde_yaml appends " at line L column C" itself; keep only the reason.
    let message = error.to_string();
    let message = match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    doc.error_at(position, message)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
