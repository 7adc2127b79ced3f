//! The project spec: `MLproject.yaml` (or MLflow's `MLproject`) parsed and validated.
//!
//! MLflow's schema (`name`, `entry_points` with `parameters` and `command`, environment
//! sections accepted and ignored) plus flow's extensions: `depends_on`, `key` and
//! `inputs`. Every error points into the file: path, line and column.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

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
}

/// One entry point: a step of the pipeline.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub parameters: BTreeMap<String, Parameter>,
    /// Shell command with `{param}` placeholders; `None` for a pure target like `main`.
    pub command: Option<String>,
    pub depends_on: Vec<String>,
    /// The parameter naming the step's type (dataset, logic, algorithm).
    pub key: Option<String>,
    /// Globs (relative to the project, `{param}` allowed) whose content is the data version.
    pub inputs: Vec<String>,
    /// A command that prints, one per line, the members of the group the key parameter's
    /// value names (`dataset=SMD` -> every machine); flow runs it to fan a request out.
    pub members: Option<String>,
    /// Fan-in: the fan-out axes this step gathers into one run.
    pub gather: Gather,
    /// What one run of the step needs; executors schedule by it.
    pub resources: Resources,
    /// Globs naming the files that are this step's code; empty means the whole repository.
    pub code: Vec<String>,
    /// 1-based line of the entry's name in the spec, for error messages.
    pub line: usize,
}

/// Which fan-out axes a step gathers: its upstream members all arrive in one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Gather {
    /// An ordinary step: one run per member of every axis above it.
    #[default]
    None,
    /// `gather: true`: one run over every member of every axis.
    All,
    /// `gather: [seed]`: one run per member of the other axes, over every member of these.
    Params(Vec<String>),
}

/// What one run of a step needs (`resources:` in MLproject.yaml); `None` = the default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU cores; the step sees the number as `FLOW_CPUS`.
    pub cpus: Option<u32>,
    /// Memory in bytes.
    pub memory: Option<u64>,
    /// Wall-time limit in seconds.
    pub time: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub name: String,
    pub kind: ParamType,
    /// Canonical default value; `None` means the parameter is required.
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    String,
    Int,
    Float,
    Path,
    Uri,
    Bool,
}

/// A spec problem, with enough position to point at it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(
                f,
                "{}:{line}:{column}: {}",
                self.path.display(),
                self.message
            ),
            (Some(line), None) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            _ => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for SpecError {}

/// A parameter value that does not fit its declared type.
#[derive(Debug, Clone, PartialEq)]
pub struct TypeError {
    pub param: String,
    pub expected: ParamType,
    pub value: String,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parameter `{}` expects {} but got `{}`",
            self.param,
            self.expected.describe(),
            self.value
        )
    }
}

impl ParamType {
    fn parse(text: &str) -> Option<ParamType> {
        Some(match text {
            "string" | "str" => ParamType::String,
            "int" | "integer" => ParamType::Int,
            "float" | "double" | "number" => ParamType::Float,
            "path" => ParamType::Path,
            "uri" => ParamType::Uri,
            "bool" | "boolean" => ParamType::Bool,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            ParamType::String => "string",
            ParamType::Int => "int",
            ParamType::Float => "float",
            ParamType::Path => "path",
            ParamType::Uri => "uri",
            ParamType::Bool => "bool",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            ParamType::String => "a string",
            ParamType::Int => "an integer (`int`)",
            ParamType::Float => "a number (`float`)",
            ParamType::Path => "a path",
            ParamType::Uri => "a URI",
            ParamType::Bool => "`true` or `false` (`bool`)",
        }
    }
}

impl Parameter {
    /// Validates `value` against the type and returns its canonical text, so that
    /// `1e-3` and `0.001` (or `010` and `10`) are the same parameter value.
    pub fn canonical(&self, value: &str) -> Result<String, TypeError> {
        let bad = || TypeError {
            param: self.name.clone(),
            expected: self.kind,
            value: value.to_string(),
        };
        let trimmed = value.trim();
        match self.kind {
            ParamType::Int => trimmed
                .parse::<i64>()
                .map(|v| v.to_string())
                .map_err(|_| bad()),
            ParamType::Float => match trimmed.parse::<f64>() {
                Ok(v) if v.is_finite() => Ok(format_float(v)),
                _ => Err(bad()),
            },
            ParamType::Bool => match trimmed.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => Ok("true".to_string()),
                "false" | "0" | "no" => Ok("false".to_string()),
                _ => Err(bad()),
            },
            ParamType::String | ParamType::Path | ParamType::Uri => Ok(value.to_string()),
        }
    }

    /// A `*_time` parameter selects a run by its run_time; it is never compared for reuse.
    pub fn is_time_selector(&self) -> bool {
        self.name.ends_with("_time")
    }
}

fn format_float(v: f64) -> String {
    let text = format!("{v}");
    if v.fract() == 0.0 && !text.contains('e') && !text.contains('.') {
        format!("{text}.0")
    } else {
        text
    }
}

impl Project {
    /// Finds and loads the spec in `dir`: `MLproject.yaml`, `MLproject.yml` or `MLproject`.
    pub fn load(dir: &Path) -> Result<Project, SpecError> {
        let candidates = ["MLproject.yaml", "MLproject.yml", "MLproject"];
        let Some(path) = candidates
            .iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file())
        else {
            return Err(SpecError {
                path: dir.join("MLproject.yaml"),
                line: None,
                column: None,
                message: "no `MLproject.yaml` (or `MLproject`) in this directory; pass `--project DIR` to point at one".into(),
            });
        };
        let text = std::fs::read_to_string(&path).map_err(|e| SpecError {
            path: path.clone(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        })?;
        Project::parse(&text, &path)
    }

    /// Parses spec text; `path` is used for messages and as the project directory's anchor.
    pub fn parse(text: &str, path: &Path) -> Result<Project, SpecError> {
        let err_at = |line: Option<usize>, column: Option<usize>, message: String| SpecError {
            path: path.to_path_buf(),
            line,
            column,
            message,
        };
        let raw: RawProject = serde_yaml::from_str(text).map_err(|e| {
            let location = e.location();
            // serde_yaml appends " at line L column C" itself; keep only the reason.
            let message = e.to_string();
            let message = match message.find(" at line ") {
                Some(i) => message[..i].to_string(),
                None => message,
            };
            err_at(
                location.as_ref().map(|l| l.line()),
                location.as_ref().map(|l| l.column()),
                message,
            )
        })?;
        let locate = |keys: &[&str]| locate_key(text, keys);

        let mut ignored_sections = Vec::new();
        for section in ["conda_env", "python_env", "docker_env"] {
            if raw.extra.contains_key(section) {
                ignored_sections.push(section.to_string());
            }
        }
        if let Some((unknown, _)) = raw
            .extra
            .iter()
            .find(|(k, _)| !ignored_sections.contains(k))
        {
            let (line, column) = locate(&[unknown.as_str()]).unzip();
            return Err(err_at(line, column, format!("unknown top-level field `{unknown}`; expected `name`, `entry_points`, `conda_env`, `python_env` or `docker_env`")));
        }

        let mut entries = BTreeMap::new();
        for (name, raw_entry) in raw.entry_points.unwrap_or_default() {
            let (line, column) = locate(&["entry_points", &name]).unzip();
            let mut parameters = BTreeMap::new();
            for (param_name, raw_param) in raw_entry.parameters.unwrap_or_default() {
                let param_pos = locate(&["entry_points", &name, "parameters", &param_name]);
                let (pline, pcol) = param_pos.unzip();
                let (type_text, default) = match raw_param {
                    RawParameter::Type(t) => (Some(t), None),
                    RawParameter::Full { kind, default } => (kind, default.map(yaml_scalar_text)),
                };
                let kind = match type_text.as_deref() {
                    None => ParamType::String,
                    Some(t) => ParamType::parse(t).ok_or_else(|| {
                        err_at(pline, pcol, format!(
                            "parameter `{param_name}` of entry point `{name}` has unknown type `{t}`; expected one of string, int, float, path, uri, bool"
                        ))
                    })?,
                };
                let mut parameter = Parameter {
                    name: param_name.clone(),
                    kind,
                    default: None,
                };
                if let Some(Some(default)) = default {
                    let canonical = parameter.canonical(&default).map_err(|e| {
                        err_at(pline, pcol, format!("default of entry point `{name}`: {e}"))
                    })?;
                    parameter.default = Some(canonical);
                }
                parameters.insert(param_name, parameter);
            }
            if let Some(key) = &raw_entry.key {
                if !parameters.contains_key(key) {
                    let (kline, kcol) = locate(&["entry_points", &name, "key"]).unzip();
                    return Err(err_at(
                        kline,
                        kcol,
                        format!(
                        "entry point `{name}` has `key: {key}` but declares no parameter `{key}`"
                    ),
                    ));
                }
            }
            for (field, template) in [
                ("command", &raw_entry.command),
                ("members", &raw_entry.members),
            ] {
                let Some(template) = template else { continue };
                for placeholder in placeholders(template) {
                    if !parameters.contains_key(placeholder) {
                        let (cline, ccol) = locate(&["entry_points", &name, field]).unzip();
                        return Err(err_at(cline, ccol, format!(
                            "the {field} of entry point `{name}` uses `{{{placeholder}}}`, which is not a declared parameter"
                        )));
                    }
                }
            }
            if raw_entry.members.is_some() && raw_entry.key.is_none() {
                let (mline, mcol) = locate(&["entry_points", &name, "members"]).unzip();
                return Err(err_at(mline, mcol, format!(
                    "entry point `{name}` declares `members` but no `key`: members expand the key parameter's value"
                )));
            }
            let gather = match raw_entry.gather {
                None | Some(RawGather::Flag(false)) => Gather::None,
                Some(RawGather::Flag(true)) => Gather::All,
                Some(RawGather::One(param)) => Gather::Params(vec![param]),
                Some(RawGather::Many(params)) => Gather::Params(params),
            };
            let resources = match raw_entry.resources {
                None => Resources::default(),
                Some(raw) => {
                    let (rline, rcol) = locate(&["entry_points", &name, "resources"]).unzip();
                    raw.parse().map_err(|message| {
                        err_at(
                            rline,
                            rcol,
                            format!("`resources` of entry point `{name}`: {message}"),
                        )
                    })?
                }
            };
            entries.insert(
                name.clone(),
                Entry {
                    name: name.clone(),
                    parameters,
                    command: raw_entry.command,
                    depends_on: raw_entry.depends_on.unwrap_or_default(),
                    key: raw_entry.key,
                    inputs: raw_entry.inputs.unwrap_or_default(),
                    members: raw_entry.members,
                    gather,
                    resources,
                    code: raw_entry.code.unwrap_or_default(),
                    line: line.unwrap_or(0),
                },
            );
            let _ = column;
        }
        for entry in entries.values() {
            for dep in &entry.depends_on {
                if !entries.contains_key(dep) {
                    let (line, column) =
                        locate(&["entry_points", &entry.name, "depends_on"]).unzip();
                    let hint = crate::suggest::closest(dep, entries.keys().map(String::as_str))
                        .map(|s| format!(" (did you mean `{s}`?)"))
                        .unwrap_or_default();
                    return Err(err_at(
                        line,
                        column,
                        format!(
                        "entry point `{}` depends on `{dep}`, which is not an entry point{hint}",
                        entry.name
                    ),
                    ));
                }
            }
        }
        for entry in entries.values() {
            if let Gather::Params(gathered) = &entry.gather {
                for param in gathered {
                    if !entries.values().any(|e| e.parameters.contains_key(param)) {
                        let (line, column) =
                            locate(&["entry_points", &entry.name, "gather"]).unzip();
                        return Err(err_at(line, column, format!(
                            "entry point `{}` gathers `{param}`, which no entry point declares as a parameter",
                            entry.name
                        )));
                    }
                }
            }
            if entry.gather != Gather::None && entry.depends_on.is_empty() {
                let (line, column) = locate(&["entry_points", &entry.name, "gather"]).unzip();
                return Err(err_at(
                    line,
                    column,
                    format!(
                        "entry point `{}` gathers its upstream members but has no `depends_on`",
                        entry.name
                    ),
                ));
            }
        }
        let dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Project {
            dir: if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir
            },
            path: path.to_path_buf(),
            name: raw.name.unwrap_or_default(),
            entries,
            ignored_sections,
        })
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }
}

/// The `{name}` placeholders of a command, in order of appearance.
pub fn placeholders(command: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = command;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
                {
                    found.push(name);
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    found
}

/// Replaces `{name}` placeholders with `value(name)`; unknown names stay as they are.
pub fn substitute(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after
            .find('}')
            .and_then(|end| value(&after[..end]).map(|v| (end, v)))
        {
            Some((end, replacement)) => {
                out.push_str(&replacement);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Finds the 1-based line and column of a nested mapping key by indentation, so that
/// semantic errors (found after parsing) can still point into the file.
pub(crate) fn locate_key(text: &str, keys: &[&str]) -> Option<(usize, usize)> {
    let mut depth = 0;
    let mut min_indent = 0usize;
    let mut parent_indent: Option<usize> = None;
    for (idx, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(parent) = parent_indent {
            if indent <= parent {
                return None;
            }
        }
        if indent < min_indent {
            continue;
        }
        let key = trimmed
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(|c| c == '"' || c == '\'');
        if key == keys[depth]
            && trimmed[key.len()..]
                .trim_start_matches(['"', '\''])
                .starts_with(':')
        {
            depth += 1;
            if depth == keys.len() {
                return Some((idx + 1, indent + 1));
            }
            parent_indent = Some(indent);
            min_indent = indent + 1;
        }
    }
    None
}

impl RawResources {
    fn parse(self) -> Result<Resources, String> {
        let text = |value: serde_yaml::Value| yaml_scalar_text(value).unwrap_or_default();
        let cpus = match self.cpus.map(text) {
            None => None,
            Some(value) => match value.trim().parse::<u32>() {
                Ok(cpus) if cpus > 0 => Some(cpus),
                _ => {
                    return Err(format!(
                        "`cpus: {value}` is not a whole number of cores (1 or more)"
                    ))
                }
            },
        };
        let memory = self
            .memory
            .map(text)
            .map(|value| parse_memory(&value))
            .transpose()?;
        let time = self
            .time
            .map(text)
            .map(|value| parse_duration(&value))
            .transpose()?;
        Ok(Resources { cpus, memory, time })
    }
}

/// `4G`, `512M`, `2GiB`, `1.5G` or a plain number of bytes.
pub fn parse_memory(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => {
            return Err(format!(
                "`memory: {text}`: unknown unit `{unit}`; use K, M, G or T"
            ))
        }
    };
    match number.parse::<f64>() {
        Ok(value) if value > 0.0 && (value * scale as f64) < u64::MAX as f64 => {
            Ok((value * scale as f64).round() as u64)
        }
        _ => Err(format!(
            "`memory: {text}` is not an amount of memory like `4G` or `512M`"
        )),
    }
}

/// `90s`, `30m`, `2h`, `1d`, combinations like `1h30m`, Slurm's `HH:MM:SS`, or seconds.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let bad = || format!("`time: {text}` is not a duration like `2h`, `1h30m` or `02:00:00`");
    if trimmed.contains(':') {
        let fields: Vec<&str> = trimmed.split(':').collect();
        if fields.len() > 3 {
            return Err(bad());
        }
        let mut seconds = 0u64;
        for field in fields {
            let value: u64 = field.parse().map_err(|_| bad())?;
            seconds = seconds
                .checked_mul(60)
                .and_then(|s| s.checked_add(value))
                .ok_or_else(bad)?;
        }
        return if seconds > 0 { Ok(seconds) } else { Err(bad()) };
    }
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return if seconds > 0 { Ok(seconds) } else { Err(bad()) };
    }
    let mut seconds = 0u64;
    let mut number = String::new();
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        let value: u64 = number.parse().map_err(|_| bad())?;
        seconds = value
            .checked_mul(unit)
            .and_then(|v| v.checked_add(seconds))
            .ok_or_else(bad)?;
        number.clear();
    }
    if !number.is_empty() || seconds == 0 {
        return Err(bad());
    }
    Ok(seconds)
}

fn yaml_scalar_text(value: serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::Null => None,
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::String(s) => Some(s),
        other => Some(
            serde_yaml::to_string(&other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
    }
}

#[derive(Deserialize)]
struct RawProject {
    name: Option<String>,
    entry_points: Option<indexmap_free::OrderedMap<RawEntry>>,
    #[serde(flatten)]
    extra: BTreeMap<String, serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    parameters: Option<indexmap_free::OrderedMap<RawParameter>>,
    command: Option<String>,
    depends_on: Option<Vec<String>>,
    key: Option<String>,
    inputs: Option<Vec<String>>,
    members: Option<String>,
    gather: Option<RawGather>,
    resources: Option<RawResources>,
    code: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGather {
    Flag(bool),
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    cpus: Option<serde_yaml::Value>,
    memory: Option<serde_yaml::Value>,
    time: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawParameter {
    Type(String),
    Full {
        #[serde(rename = "type")]
        kind: Option<String>,
        default: Option<serde_yaml::Value>,
    },
}

/// A YAML mapping read into a Vec of pairs, keeping file order without another crate.
mod indexmap_free {
    use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    pub struct OrderedMap<V>(pub Vec<(String, V)>);

    impl<V> Default for OrderedMap<V> {
        fn default() -> Self {
            OrderedMap(Vec::new())
        }
    }

    impl<V> IntoIterator for OrderedMap<V> {
        type Item = (String, V);
        type IntoIter = std::vec::IntoIter<(String, V)>;
        fn into_iter(self) -> Self::IntoIter {
            self.0.into_iter()
        }
    }

    impl<'de, V: Deserialize<'de>> Deserialize<'de> for OrderedMap<V> {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct MapVisitor<V>(PhantomData<V>);
            impl<'de, V: Deserialize<'de>> Visitor<'de> for MapVisitor<V> {
                type Value = OrderedMap<V>;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a mapping")
                }
                fn visit_unit<E>(self) -> Result<Self::Value, E> {
                    Ok(OrderedMap(Vec::new()))
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                    let mut pairs: Vec<(String, V)> = Vec::new();
                    while let Some((key, value)) = map.next_entry::<String, V>()? {
                        if pairs.iter().any(|(k, _)| *k == key) {
                            return Err(serde::de::Error::custom(format!("duplicate key `{key}`")));
                        }
                        pairs.push((key, value));
                    }
                    Ok(OrderedMap(pairs))
                }
            }
            deserializer.deserialize_any(MapVisitor(PhantomData))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Project, SpecError> {
        Project::parse(text, Path::new("MLproject.yaml"))
    }

    #[test]
    fn parses_an_unmodified_mlflow_project() {
        let project = parse(
            "name: tutorial\npython_env: python_env.yaml\nentry_points:\n  main:\n    parameters:\n      alpha: {type: float, default: 0.5}\n      l1_ratio: {type: float, default: 0.1}\n      data: path\n    command: \"python train.py {alpha} {l1_ratio} {data}\"\n",
        )
        .unwrap();
        let main = project.entry("main").unwrap();
        assert_eq!(main.parameters["alpha"].default.as_deref(), Some("0.5"));
        assert_eq!(main.parameters["data"].kind, ParamType::Path);
        assert_eq!(main.parameters["data"].default, None);
        assert_eq!(project.ignored_sections, vec!["python_env"]);
    }

    #[test]
    fn malformed_yaml_names_line_and_column() {
        let err = parse("entry_points:\n  main:\n    command: [unclosed\n").unwrap_err();
        assert_eq!(err.path, Path::new("MLproject.yaml"));
        assert!(err.line.is_some() && err.column.is_some(), "{err}");
        assert!(err.to_string().starts_with("MLproject.yaml:"), "{err}");
    }

    #[test]
    fn unknown_dependency_points_at_its_line_and_suggests() {
        let err = parse("entry_points:\n  load:\n    command: x\n  train:\n    depends_on: [lod]\n    command: y\n").unwrap_err();
        assert_eq!(err.line, Some(5), "{err}");
        assert!(err.message.contains("did you mean `load`"), "{err}");
    }

    #[test]
    fn bad_default_names_parameter_and_type() {
        let err = parse("entry_points:\n  main:\n    parameters:\n      epochs: {type: int, default: ten}\n    command: x\n").unwrap_err();
        assert_eq!(err.line, Some(4));
        assert!(err.message.contains("`epochs` expects an integer"), "{err}");
    }

    #[test]
    fn command_placeholder_must_be_declared() {
        let err = parse("entry_points:\n  main:\n    command: echo {nope}\n").unwrap_err();
        assert!(err.message.contains("`{nope}`"), "{err}");
    }

    #[test]
    fn canonical_values_make_equal_numbers_equal() {
        let p = Parameter {
            name: "lr".into(),
            kind: ParamType::Float,
            default: None,
        };
        assert_eq!(p.canonical("1e-3").unwrap(), p.canonical("0.001").unwrap());
        assert_eq!(p.canonical("2").unwrap(), "2.0");
        let i = Parameter {
            name: "n".into(),
            kind: ParamType::Int,
            default: None,
        };
        assert_eq!(i.canonical("010").unwrap(), "10");
        assert!(i
            .canonical("1.5")
            .unwrap_err()
            .to_string()
            .contains("`n` expects an integer"));
    }

    #[test]
    fn fan_out_fields_parse() {
        let project = parse("entry_points:\n  load:\n    key: dataset\n    parameters:\n      dataset: {type: string, default: SMD}\n    members: flow step load --list-members --dataset {dataset}\n    command: x\n    resources: {cpus: 2, memory: 4G, time: 1h30m}\n    code: [src/**]\n  summarize:\n    depends_on: [load]\n    gather: true\n    command: y\n  ensemble:\n    depends_on: [load]\n    gather: dataset\n    command: z\n").unwrap();
        let load = project.entry("load").unwrap();
        assert!(load.members.as_deref().unwrap().contains("{dataset}"));
        assert_eq!(
            load.resources,
            Resources {
                cpus: Some(2),
                memory: Some(4 << 30),
                time: Some(5400)
            }
        );
        assert_eq!(load.code, vec!["src/**"]);
        assert_eq!(project.entry("summarize").unwrap().gather, Gather::All);
        assert_eq!(
            project.entry("ensemble").unwrap().gather,
            Gather::Params(vec!["dataset".into()])
        );
    }

    #[test]
    fn fan_out_fields_are_validated_where_they_stand() {
        let err =
            parse("entry_points:\n  load:\n    command: x\n    members: ls {dir}\n").unwrap_err();
        assert!(err.message.contains("`{dir}`"), "{err}");
        assert_eq!(err.line, Some(4));
        let err = parse("entry_points:\n  load:\n    members: ls\n    command: x\n").unwrap_err();
        assert!(err.message.contains("no `key`"), "{err}");
        let err = parse("entry_points:\n  a:\n    command: x\n  b:\n    depends_on: [a]\n    gather: seed\n    command: y\n").unwrap_err();
        assert!(err.message.contains("gathers `seed`"), "{err}");
        assert_eq!(err.line, Some(6));
        let err =
            parse("entry_points:\n  a:\n    command: x\n    resources: {cpus: 0}\n").unwrap_err();
        assert!(err.message.contains("`cpus: 0`"), "{err}");
        let err = parse("entry_points:\n  a:\n    command: x\n    resources: {memory: 4Q}\n")
            .unwrap_err();
        assert!(err.message.contains("unknown unit"), "{err}");
        assert_eq!(err.line, Some(4));
    }

    #[test]
    fn durations_and_memory_read_like_slurm() {
        assert_eq!(parse_duration("02:00:00"), Ok(7200));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("1d2h"), Ok(93_600));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("0").is_err());
        assert_eq!(parse_memory("512M"), Ok(512 << 20));
        assert_eq!(parse_memory("1.5GiB"), Ok(3 << 29));
        assert!(parse_memory("-1G").is_err());
    }

    #[test]
    fn substitute_leaves_unknown_braces() {
        let out = substitute("a {x} {y} {", |n| (n == "x").then(|| "1".to_string()));
        assert_eq!(out, "a 1 {y} {");
    }
}
