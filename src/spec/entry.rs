//! One entry point of the spec, read from its YAML node and checked on its own.

use std::collections::BTreeMap;

use crate::spec::node::Node;
use crate::spec::param::{Parameter, PARAMETER_FIELDS};
use crate::spec::resources::{Resources, RESOURCE_FIELDS};
use crate::spec::template::{placeholders, unclosed_placeholder};
use crate::spec::{entry_field, Document, SpecError};

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
    /// A command that prints, one per line, more input files (relative to the project, or
    /// absolute): the step itself says what it reads (`flow step load --list-inputs`), so
    /// one member's data version covers only that member's files.
    pub inputs_from: Option<String>,
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

/// The fields of an entry point: MLflow's (`parameters`, `command`) and flow's.
pub const ENTRY_FIELDS: [&str; 10] = [
    "parameters",
    "command",
    "depends_on",
    "key",
    "inputs",
    "inputs_from",
    "members",
    "gather",
    "resources",
    "code",
];

impl Entry {
    /// Reads the entry `name` from its node. Unknown fields become warnings on `doc`;
    /// what this entry alone gets wrong is an error. References to other entries are
    /// checked by the caller, once all are read.
    pub(crate) fn read(name: &str, node: &Node, doc: &mut Document) -> Result<Entry, SpecError> {
        if name.trim().is_empty() {
            return Err(doc.error(
                &["entry_points", name],
                "an entry point has an empty name; name it (e.g. `main`)".to_string(),
            ));
        }
        let fields: &[(String, Node)] = match node {
            Node::Null => &[],
            Node::Map(fields) => fields,
            other => {
                return Err(doc.error(
                    &["entry_points", name],
                    format!(
                        "entry point `{name}` is {}; it must be a mapping with a `command` (and `parameters`, `depends_on`)",
                        other.kind()
                    ),
                ))
            }
        };
        let mut entry = Entry {
            name: name.to_string(),
            parameters: BTreeMap::new(),
            command: None,
            depends_on: Vec::new(),
            key: None,
            inputs: Vec::new(),
            inputs_from: None,
            members: None,
            gather: Gather::None,
            resources: Resources::default(),
            code: Vec::new(),
            line: doc.entry_line(name).unwrap_or(0),
        };
        for (field, value) in fields {
            let wrong = |doc: &Document, message: String| {
                doc.error(
                    &entry_field(name, field),
                    format!("`{field}` of entry point `{name}` {message}"),
                )
            };
            match field.as_str() {
                "parameters" => entry.read_parameters(value, doc)?,
                "command" => entry.command = text_field(value).map_err(|m| wrong(doc, m))?,
                "depends_on" => entry.depends_on = list_field(value).map_err(|m| wrong(doc, m))?,
                "key" => entry.key = text_field(value).map_err(|m| wrong(doc, m))?,
                "inputs" => entry.inputs = list_field(value).map_err(|m| wrong(doc, m))?,
                "members" => entry.members = text_field(value).map_err(|m| wrong(doc, m))?,
                "inputs_from" => {
                    entry.inputs_from = text_field(value).map_err(|m| wrong(doc, m))?
                }
                "gather" => entry.gather = gather_field(value).map_err(|m| wrong(doc, m))?,
                "code" => entry.code = list_field(value).map_err(|m| wrong(doc, m))?,
                "resources" => {
                    let (resources, ignored) = Resources::read(value).map_err(|message| {
                        doc.error(
                            &entry_field(name, field),
                            format!("`resources` of entry point `{name}`: {message}"),
                        )
                    })?;
                    entry.resources = resources;
                    for key in ignored {
                        doc.warn_unknown(
                            &[&entry_field(name, field)[..], &[key.as_str()]].concat(),
                            &format!("`resources` of entry point `{name}`"),
                            &RESOURCE_FIELDS,
                        );
                    }
                }
                unknown => doc.warn_unknown(
                    &entry_field(name, unknown),
                    &format!("entry point `{name}`"),
                    &ENTRY_FIELDS,
                ),
            }
        }
        entry.check(doc)?;
        Ok(entry)
    }

    fn read_parameters(&mut self, node: &Node, doc: &mut Document) -> Result<(), SpecError> {
        let name = self.name.clone();
        let declarations = match node {
            Node::Null => return Ok(()),
            Node::Map(declarations) => declarations,
            other => {
                return Err(doc.error(
                    &["entry_points", &name, "parameters"],
                    format!(
                        "`parameters` of entry point `{name}` is {}; it must map names to types (`alpha: float`)",
                        other.kind()
                    ),
                ))
            }
        };
        for (param_name, declaration) in declarations {
            let keys = [
                "entry_points",
                name.as_str(),
                "parameters",
                param_name.as_str(),
            ];
            let (parameter, ignored) = Parameter::read(param_name, declaration)
                .map_err(|message| doc.error(&keys, format!("entry point `{name}`: {message}")))?;
            for field in ignored {
                doc.warn_unknown(
                    &[&keys[..], &[field.as_str()]].concat(),
                    &format!("parameter `{param_name}` of entry point `{name}`"),
                    &PARAMETER_FIELDS,
                );
            }
            self.parameters.insert(param_name.clone(), parameter);
        }
        Ok(())
    }

    /// What the entry gets wrong on its own: an undeclared key or placeholder, an unclosed
    /// placeholder, `members` without a key, nothing to do.
    fn check(&self, doc: &Document) -> Result<(), SpecError> {
        let name = &self.name;
        if let Some(key) = &self.key {
            if !self.parameters.contains_key(key) {
                return Err(doc.error(
                    &entry_field(name, "key"),
                    format!(
                        "entry point `{name}` has `key: {key}` but declares no parameter `{key}`"
                    ),
                ));
            }
        }
        for (field, template) in [
            ("command", &self.command),
            ("members", &self.members),
            ("inputs_from", &self.inputs_from),
        ] {
            let Some(template) = template else { continue };
            if let Some((_, placeholder)) = unclosed_placeholder(template) {
                return Err(doc.error(&entry_field(name, field), format!(
                    "the {field} of entry point `{name}` has an unclosed placeholder `{{{placeholder}`; write `{{{placeholder}}}`"
                )));
            }
            for placeholder in placeholders(template) {
                if !self.parameters.contains_key(placeholder) {
                    return Err(doc.error(&entry_field(name, field), format!(
                        "the {field} of entry point `{name}` uses `{{{placeholder}}}`, which is not a declared parameter"
                    )));
                }
            }
        }
        if self.members.is_some() && self.key.is_none() {
            return Err(doc.error(&entry_field(name, "members"), format!(
                "entry point `{name}` declares `members` but no `key`: members expand the key parameter's value"
            )));
        }
        if self.command.is_none() && self.depends_on.is_empty() {
            return Err(doc.error(&["entry_points", name.as_str()], format!(
                "entry point `{name}` has neither a `command` nor `depends_on`, so it would do nothing; give it a `command`"
            )));
        }
        Ok(())
    }
}

/// A single value as text; null is absent.
fn text_field(node: &Node) -> Result<Option<String>, String> {
    match node {
        Node::Null => Ok(None),
        Node::Scalar(text) => Ok(Some(text.clone())),
        other => Err(format!("is {}; it must be a single value", other.kind())),
    }
}

/// A list of names; a single name is a list of one, null an empty list.
fn list_field(node: &Node) -> Result<Vec<String>, String> {
    match node {
        Node::Null => Ok(Vec::new()),
        Node::Scalar(text) => Ok(vec![text.clone()]),
        Node::Seq(items) => items
            .iter()
            .map(|item| {
                item.text().map(str::to_string).ok_or_else(|| {
                    format!(
                        "has an item that is {}; it must be a list of names",
                        item.kind()
                    )
                })
            })
            .collect(),
        Node::Map(_) => Err("is a mapping; it must be a list of names".to_string()),
    }
}

/// `true`/`false`, one parameter name or a list of them.
fn gather_field(node: &Node) -> Result<Gather, String> {
    Ok(match node {
        Node::Null => Gather::None,
        Node::Scalar(text) if text == "false" => Gather::None,
        Node::Scalar(text) if text == "true" => Gather::All,
        other => Gather::Params(
            list_field(other)
                .map_err(|_| "must be `true` or the parameters gathered (`[seed]`)".to_string())?,
        ),
    })
}
