//! Named pipelines (`pipelines/<name>.yaml`): an entry point with parameter presets and
//! fan-out, so `flow run -p smd` is every SMD machine with the published settings.
//!
//! ```yaml
//! description: Every SMD machine, one model each, published settings.
//! entry: main
//! params:
//!   dataset: SMD            # a scalar is one literal value (commas included)
//!   seed: [0, 1, 2, 3]      # a list fans out
//!   train.epochs: 10        # `step.param` targets one step
//! ```
//!
//! A pipeline only supplies `-P` arguments (before the user's own, which win); every
//! check of the request is the runner's. Errors point into the file.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::spec::{locate_key, Project, SpecError};

/// The folder pipelines live in, beside MLproject.yaml.
pub const PIPELINES_DIR: &str = "pipelines";

/// A parsed pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub name: String,
    pub path: PathBuf,
    pub description: String,
    pub entry: String,
    /// `-P` arguments, in file order.
    pub args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    #[serde(default)]
    description: String,
    entry: Option<String>,
}

impl Pipeline {
    /// Finds `name` (a name under `pipelines/`, or a path to a `.yaml` file) and checks it
    /// against `project`.
    pub fn load(project: &Project, name: &str) -> Result<Pipeline, SpecError> {
        let path = Pipeline::path_of(&project.dir, name);
        let text = std::fs::read_to_string(&path).map_err(|e| SpecError {
            path: path.clone(),
            line: None,
            column: None,
            message: if e.kind() == std::io::ErrorKind::NotFound {
                let available = Pipeline::names(&project.dir);
                format!(
                    "no pipeline `{name}`; {}",
                    if available.is_empty() {
                        format!("`{PIPELINES_DIR}/` holds none")
                    } else {
                        format!("available: {}", available.join(", "))
                    }
                )
            } else {
                format!("cannot read: {e}")
            },
        })?;
        Pipeline::parse(project, &text, &path)
    }

    /// Parses pipeline text; `path` names it in errors.
    pub fn parse(project: &Project, text: &str, path: &Path) -> Result<Pipeline, SpecError> {
        let err_at = |at: Option<(usize, usize)>, message: String| SpecError {
            path: path.to_path_buf(),
            line: at.map(|(l, _)| l),
            column: at.map(|(_, c)| c),
            message,
        };
        let (raw, params): (RawPipeline, _) = match serde_yaml::from_str::<serde_yaml::Value>(text)
        {
            Ok(value) => {
                let params =
                    read_params(value.get("params").cloned()).map_err(|(key, message)| {
                        err_at(locate_key(text, &["params", &key]), message)
                    })?;
                let raw = serde_yaml::from_value(strip_params(value)).map_err(|e| {
                    let message = clean(e.to_string());
                    let field = message
                        .strip_prefix("unknown field `")
                        .and_then(|rest| rest.split('`').next())
                        .map(str::to_string);
                    err_at(field.and_then(|f| locate_key(text, &[&f])), message)
                })?;
                (raw, params)
            }
            Err(e) => {
                let at = e.location().map(|l| (l.line(), l.column()));
                return Err(err_at(at, clean(e.to_string())));
            }
        };
        let Some(entry) = raw.entry else {
            return Err(err_at(
                None,
                "a pipeline needs `entry: <entry point>`".into(),
            ));
        };
        if !project.entries.contains_key(&entry) {
            let hint = crate::suggest::closest(&entry, project.entries.keys().map(String::as_str))
                .map(|s| format!(" (did you mean `{s}`?)"))
                .unwrap_or_default();
            return Err(err_at(
                locate_key(text, &["entry"]),
                format!(
                    "`entry: {entry}` is not an entry point of {}{hint}",
                    project.path.display()
                ),
            ));
        }
        let mut args = Vec::new();
        for (name, value) in params {
            let declared = match name.split_once('.') {
                Some((step, param)) if project.entries.contains_key(step) => {
                    project.entries[step].parameters.contains_key(param)
                }
                _ => project
                    .entries
                    .values()
                    .any(|e| e.parameters.contains_key(&name)),
            };
            if !declared {
                let all = project
                    .entries
                    .values()
                    .flat_map(|e| e.parameters.keys().map(String::as_str));
                let hint = crate::suggest::closest(&name, all)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(err_at(
                    locate_key(text, &["params", &name]),
                    format!("no entry point declares a parameter `{name}`{hint}"),
                ));
            }
            let escape = |v: &str| v.replace('\\', "\\\\").replace(',', "\\,");
            let text = match value {
                Values::One(v) => escape(&v),
                Values::List(items) => items
                    .iter()
                    .map(|v| escape(v))
                    .collect::<Vec<_>>()
                    .join(","),
            };
            args.push(format!("{name}={text}"));
        }
        Ok(Pipeline {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default(),
            path: path.to_path_buf(),
            description: raw.description,
            entry,
            args,
        })
    }

    /// The file `name` stands for: a path as given, or `pipelines/<name>.yaml`.
    pub fn path_of(project_dir: &Path, name: &str) -> PathBuf {
        if name.contains('/') || name.ends_with(".yaml") || name.ends_with(".yml") {
            PathBuf::from(name)
        } else {
            project_dir.join(PIPELINES_DIR).join(format!("{name}.yaml"))
        }
    }

    /// The pipelines under `pipelines/`, by name.
    pub fn names(project_dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(project_dir.join(PIPELINES_DIR))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().to_string();
                        name.strip_suffix(".yaml").map(str::to_string)
                    })
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// A pipeline's value of one parameter.
enum Values {
    One(String),
    List(Vec<String>),
}

/// `params:` as an ordered list of (name, values), each value a scalar's text.
fn read_params(
    value: Option<serde_yaml::Value>,
) -> Result<Vec<(String, Values)>, (String, String)> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let serde_yaml::Value::Mapping(map) = value else {
        return Err((
            "params".into(),
            "`params` must be a mapping of parameter names to values".into(),
        ));
    };
    let mut params = Vec::new();
    for (key, value) in map {
        let Some(name) = key.as_str().map(str::to_string) else {
            return Err((String::new(), "parameter names must be text".into()));
        };
        let scalar = |v: &serde_yaml::Value| -> Option<String> {
            match v {
                serde_yaml::Value::String(s) => Some(s.clone()),
                serde_yaml::Value::Number(n) => Some(n.to_string()),
                serde_yaml::Value::Bool(b) => Some(b.to_string()),
                _ => None,
            }
        };
        let values = match &value {
            serde_yaml::Value::Sequence(items) => {
                let texts: Option<Vec<String>> = items.iter().map(scalar).collect();
                match texts {
                    Some(texts) if !texts.is_empty() => Values::List(texts),
                    _ => {
                        return Err((
                            name.clone(),
                            format!("`{name}`: a list of plain values is expected"),
                        ))
                    }
                }
            }
            other => match scalar(other) {
                Some(text) => Values::One(text),
                None => {
                    return Err((
                        name.clone(),
                        format!("`{name}`: a value or a list of values is expected"),
                    ))
                }
            },
        };
        params.push((name, values));
    }
    Ok(params)
}

/// The document without `params`, which [`read_params`] reads in file order.
fn strip_params(mut value: serde_yaml::Value) -> serde_yaml::Value {
    if let serde_yaml::Value::Mapping(map) = &mut value {
        map.remove("params");
    }
    value
}

/// serde_yaml's message without its own " at line L column C" suffix.
fn clean(message: String) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project() -> Project {
        Project::parse(
            "entry_points:\n  load:\n    key: dataset\n    parameters:\n      dataset: {type: string, default: a}\n    command: x\n  train:\n    depends_on: [load]\n    parameters:\n      seed: {type: int, default: 0}\n      note: {type: string, default: n}\n    command: y\n",
            Path::new("MLproject.yaml"),
        )
        .unwrap()
    }

    #[test]
    fn params_become_arguments_lists_fan_out_scalars_stay_literal() {
        let pipeline = Pipeline::parse(
            &project(),
            "description: seeds\nentry: train\nparams:\n  dataset: SMD\n  seed: [0, 1, 2]\n  train.note: \"a, b\"\n",
            Path::new("pipelines/seeds.yaml"),
        )
        .unwrap();
        assert_eq!(pipeline.name, "seeds");
        assert_eq!(pipeline.entry, "train");
        assert_eq!(
            pipeline.args,
            vec!["dataset=SMD", "seed=0,1,2", "train.note=a\\, b"]
        );
    }

    #[test]
    fn errors_point_into_the_file() {
        let err = Pipeline::parse(
            &project(),
            "entry: train\nparams:\n  sed: [0, 1]\n",
            Path::new("p.yaml"),
        )
        .unwrap_err();
        assert_eq!((err.line, err.column), (Some(3), Some(3)), "{err}");
        assert!(err.message.contains("did you mean `seed`"), "{err}");
        let err = Pipeline::parse(&project(), "entry: trian\n", Path::new("p.yaml")).unwrap_err();
        assert!(err.to_string().starts_with("p.yaml:1:1:"), "{err}");
        assert!(err.message.contains("did you mean `train`"), "{err}");
        let err = Pipeline::parse(&project(), "entry: [train\n", Path::new("p.yaml")).unwrap_err();
        assert!(err.line.is_some(), "{err}");
        let err = Pipeline::parse(&project(), "entry: train\nextra: 1\n", Path::new("p.yaml"))
            .unwrap_err();
        assert!(err.message.contains("unknown field `extra`"), "{err}");
    }
}
