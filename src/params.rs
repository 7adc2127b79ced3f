//! Binding `-P` arguments to the steps of a closure.
//!
//! `-P k=v` applies to every step of the closure that declares `k`; `-P step.k=v`
//! targets one step. Values are checked against the declared type and canonicalised;
//! defaults fill the rest; a required parameter left unset is an error.

use std::collections::BTreeMap;
use std::fmt;

use crate::spec::{Project, TypeError};

/// Parameter values of one step: canonical, defaults applied.
pub type StepParams = BTreeMap<String, String>;

#[derive(Debug, Clone, PartialEq)]
pub enum ParamError {
    Malformed(String),
    /// A list with an empty item, such as `seed=0,,1`.
    EmptyListItem(String),
    Unknown {
        name: String,
        steps: Vec<String>,
        suggestion: Option<String>,
    },
    NotDeclaredBy {
        step: String,
        name: String,
        declared: Vec<String>,
    },
    StepNotInClosure {
        step: String,
        closure: Vec<String>,
    },
    Type {
        step: String,
        error: TypeError,
    },
    Missing {
        step: String,
        name: String,
        kind: &'static str,
    },
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamError::Malformed(arg) => write!(
                f,
                "`-P {arg}` is not of the form `name=value` or `step.name=value`"
            ),
            ParamError::EmptyListItem(arg) => write!(
                f,
                "`-P {arg}` has an empty item in its list; write a literal comma as `\\,`"
            ),
            ParamError::Unknown {
                name,
                steps,
                suggestion,
            } => {
                write!(
                    f,
                    "unknown parameter `{name}`: no step of {} declares it",
                    list(steps)
                )?;
                if let Some(s) = suggestion {
                    write!(f, " (did you mean `{s}`?)")?;
                }
                Ok(())
            }
            ParamError::NotDeclaredBy {
                step,
                name,
                declared,
            } => {
                write!(f, "step `{step}` declares no parameter `{name}`")?;
                if !declared.is_empty() {
                    write!(f, "; it declares {}", list(declared))?;
                }
                Ok(())
            }
            ParamError::StepNotInClosure { step, closure } => {
                write!(
                    f,
                    "`{step}` is not a step of this run; the steps are {}",
                    list(closure)
                )
            }
            ParamError::Type { step, error } => write!(f, "step `{step}`: {error}"),
            ParamError::Missing { step, name, kind } => {
                write!(
                    f,
                    "missing parameter `{name}` ({kind}) of step `{step}`: pass `-P {name}=...`"
                )
            }
        }
    }
}

impl std::error::Error for ParamError {}

fn list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A request's parameter values before fan-out: which binding each step's parameter
/// reads. One `-P` argument is one binding, shared by every step it reaches (so a list
/// fans them out together); a default is a binding of its step alone.
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub bindings: Vec<Binding>,
    /// Step -> parameter -> index into `bindings`.
    pub steps: BTreeMap<String, BTreeMap<String, usize>>,
}

/// Where values come from, and how many.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The parameter's name, without a step prefix.
    pub param: String,
    /// The `-P` text as given (`seed=0,1`), or `None` for a step's default.
    pub arg: Option<String>,
    /// The values, escapes removed, as given; [`Bound::value`] canonicalises per step.
    pub values: Vec<String>,
    /// Fans out: a list was given, or the value named a group.
    pub axis: bool,
}

impl Binding {
    /// The text a step that gathers this axis receives: the value as requested.
    pub fn requested(&self) -> String {
        match &self.arg {
            Some(arg) => arg
                .split_once('=')
                .map(|(_, value)| value.to_string())
                .unwrap_or_default(),
            None => self.values.join(","),
        }
    }
}

impl Bound {
    /// The canonical value of `param` of `step` for the raw `value` of its binding.
    pub fn value(&self, project: &Project, step: &str, param: &str, value: &str) -> String {
        project.entries[step].parameters[param]
            .canonical(value)
            // Every value was checked against every declaring step's type in `bind`.
            .unwrap_or_else(|_| value.to_string())
    }

    /// The step's values when every binding has a single value (no fan-out).
    pub fn single(&self, project: &Project, step: &str) -> StepParams {
        self.steps[step]
            .iter()
            .map(|(param, &binding)| {
                let raw = self.bindings[binding]
                    .values
                    .first()
                    .cloned()
                    .unwrap_or_default();
                (param.clone(), self.value(project, step, param, &raw))
            })
            .collect()
    }

    /// Replaces a binding's values (a group expanded, or a name canonicalised), checking
    /// them against every step that reads the binding.
    pub fn set_values(
        &mut self,
        project: &Project,
        binding: usize,
        values: Vec<String>,
        axis: bool,
    ) -> Result<(), ParamError> {
        check_types(
            project,
            &self.steps,
            binding,
            &self.bindings[binding].param,
            &values,
        )?;
        let target = &mut self.bindings[binding];
        target.values = values;
        target.axis = target.axis || axis;
        Ok(())
    }
}

/// Splits a `-P` value into list items at unescaped commas: `0,1,2` is three values;
/// `\,` is a literal comma and `\\` a backslash. One item means no list.
pub fn split_list(value: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if matches!(chars.peek(), Some(',') | Some('\\')) => {
                if let (Some(item), Some(next)) = (items.last_mut(), chars.next()) {
                    item.push(next);
                }
            }
            ',' => items.push(String::new()),
            _ => {
                if let Some(item) = items.last_mut() {
                    item.push(c);
                }
            }
        }
    }
    items
}

/// Binds raw `-P` arguments to each step of `closure` (topological order).
pub fn bind(project: &Project, closure: &[String], args: &[String]) -> Result<Bound, ParamError> {
    let mut bound = Bound::default();
    // Targeted values win over global ones, whatever the order given.
    let mut global: BTreeMap<(String, String), usize> = BTreeMap::new();
    let mut targeted: BTreeMap<(String, String), usize> = BTreeMap::new();
    for arg in args {
        let (name, value) = arg
            .split_once('=')
            .ok_or_else(|| ParamError::Malformed(arg.clone()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(ParamError::Malformed(arg.clone()));
        }
        let values = split_list(value);
        if values.len() > 1 && values.iter().any(|v| v.trim().is_empty()) {
            return Err(ParamError::EmptyListItem(arg.clone()));
        }
        let target = name
            .split_once('.')
            .filter(|(step, _)| project.entries.contains_key(*step));
        let (param, steps): (&str, Vec<String>) = match target {
            Some((step, param)) => {
                if !closure.iter().any(|s| s == step) {
                    return Err(ParamError::StepNotInClosure {
                        step: step.to_string(),
                        closure: closure.to_vec(),
                    });
                }
                let entry = &project.entries[step];
                if !entry.parameters.contains_key(param) {
                    return Err(ParamError::NotDeclaredBy {
                        step: step.to_string(),
                        name: param.to_string(),
                        declared: entry.parameters.keys().cloned().collect(),
                    });
                }
                (param, vec![step.to_string()])
            }
            None => {
                let declaring: Vec<String> = closure
                    .iter()
                    .filter(|step| project.entries[*step].parameters.contains_key(name))
                    .cloned()
                    .collect();
                if declaring.is_empty() {
                    let all: Vec<&str> = closure
                        .iter()
                        .flat_map(|s| project.entries[s].parameters.keys().map(String::as_str))
                        .collect();
                    return Err(ParamError::Unknown {
                        name: name.to_string(),
                        steps: closure.to_vec(),
                        suggestion: crate::suggest::closest(name, all).map(str::to_string),
                    });
                }
                (name, declaring)
            }
        };
        let index = bound.bindings.len();
        bound.bindings.push(Binding {
            param: param.to_string(),
            arg: Some(arg.clone()),
            axis: values.len() > 1,
            values,
        });
        let slots = if target.is_some() {
            &mut targeted
        } else {
            &mut global
        };
        for step in steps {
            slots.insert((step, param.to_string()), index);
        }
    }
    global.extend(targeted);

    for step in closure {
        let entry = &project.entries[step];
        let mut params = BTreeMap::new();
        for (name, parameter) in &entry.parameters {
            let index = match global.get(&(step.clone(), name.clone())) {
                Some(&index) => index,
                None => {
                    let value = match &parameter.default {
                        Some(default) => default.clone(),
                        None if parameter.is_time_selector() => "latest".to_string(),
                        None => {
                            return Err(ParamError::Missing {
                                step: step.clone(),
                                name: name.clone(),
                                kind: parameter.kind.name(),
                            })
                        }
                    };
                    bound.bindings.push(Binding {
                        param: name.clone(),
                        arg: None,
                        values: vec![value],
                        axis: false,
                    });
                    bound.bindings.len() - 1
                }
            };
            params.insert(name.clone(), index);
        }
        bound.steps.insert(step.clone(), params);
    }
    // Every value must fit the type of every step reading it: one pass over the steps
    // (a plan may hold 10,000 steps, each with its own default bindings).
    for (step, params) in &bound.steps {
        for (param, &index) in params {
            check_type(project, step, param, &bound.bindings[index].values)?;
        }
    }
    Ok(bound)
}

/// Every value of binding `index` must fit the type of every step parameter reading it.
fn check_types(
    project: &Project,
    steps: &BTreeMap<String, BTreeMap<String, usize>>,
    index: usize,
    param: &str,
    values: &[String],
) -> Result<(), ParamError> {
    for (step, params) in steps {
        if params.get(param) == Some(&index) {
            check_type(project, step, param, values)?;
        }
    }
    Ok(())
}

/// Every value must fit the type `step` declares for `param`.
fn check_type(
    project: &Project,
    step: &str,
    param: &str,
    values: &[String],
) -> Result<(), ParamError> {
    let parameter = &project.entries[step].parameters[param];
    for value in values {
        parameter
            .canonical(value)
            .map_err(|error| ParamError::Type {
                step: step.to_string(),
                error,
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn project() -> Project {
        Project::parse(
            "entry_points:\n  load:\n    parameters:\n      dataset: {type: string, default: MSL}\n      retrieval_time: {type: string, default: latest}\n    command: \"true\"\n  train:\n    depends_on: [load]\n    parameters:\n      dataset: {type: string, default: MSL}\n      epochs: {type: int, default: 10}\n      lr: {type: float, default: 0.001}\n      tag: string\n    command: \"true\"\n",
            Path::new("MLproject.yaml"),
        )
        .unwrap()
    }

    fn closure() -> Vec<String> {
        vec!["load".into(), "train".into()]
    }

    #[test]
    fn global_param_reaches_every_declaring_step_and_targeted_wins() {
        let bound = bind(
            &project(),
            &closure(),
            &[
                "dataset=SMAP".into(),
                "tag=x".into(),
                "train.dataset=M-6".into(),
            ],
        )
        .unwrap();
        let p = project();
        assert_eq!(bound.single(&p, "load")["dataset"], "SMAP");
        assert_eq!(bound.single(&p, "train")["dataset"], "M-6");
        assert_eq!(bound.single(&p, "train")["epochs"], "10");
        assert_eq!(bound.single(&p, "load")["retrieval_time"], "latest");
    }

    #[test]
    fn unknown_param_names_closure_and_suggests() {
        let err = bind(&project(), &closure(), &["epoch=3".into(), "tag=x".into()]).unwrap_err();
        assert_eq!(err.to_string(), "unknown parameter `epoch`: no step of `load`, `train` declares it (did you mean `epochs`?)");
    }

    #[test]
    fn mistyped_param_names_param_and_type() {
        let err = bind(
            &project(),
            &closure(),
            &["epochs=many".into(), "tag=x".into()],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "step `train`: parameter `epochs` expects an integer (`int`) but got `many`"
        );
    }

    #[test]
    fn missing_required_param_is_named() {
        let err = bind(&project(), &closure(), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "missing parameter `tag` (string) of step `train`: pass `-P tag=...`"
        );
    }

    #[test]
    fn value_may_contain_equals_and_shell_text() {
        let bound = bind(&project(), &closure(), &["tag=a=b; rm -rf /".into()]).unwrap();
        assert_eq!(bound.single(&project(), "train")["tag"], "a=b; rm -rf /");
    }

    #[test]
    fn lists_split_at_unescaped_commas() {
        assert_eq!(split_list("0,1,2"), ["0", "1", "2"]);
        assert_eq!(split_list("a\\,b"), ["a,b"]);
        assert_eq!(split_list("a\\\\,b"), ["a\\", "b"]);
        assert_eq!(split_list("x\\y"), ["x\\y"]);
        assert_eq!(split_list(""), [""]);
    }

    #[test]
    fn a_list_is_one_axis_shared_by_every_declaring_step() {
        let p = project();
        let bound = bind(&p, &closure(), &["dataset=a,b".into(), "tag=x".into()]).unwrap();
        let load = bound.steps["load"]["dataset"];
        assert_eq!(load, bound.steps["train"]["dataset"]);
        assert!(bound.bindings[load].axis);
        assert_eq!(bound.bindings[load].values, ["a", "b"]);
        assert_eq!(bound.bindings[load].requested(), "a,b");
        assert!(!bound.bindings[bound.steps["train"]["tag"]].axis);
        let err = bind(&p, &closure(), &["epochs=1,x".into(), "tag=x".into()]).unwrap_err();
        assert!(
            err.to_string().contains("`epochs` expects an integer"),
            "{err}"
        );
        let err = bind(&p, &closure(), &["epochs=1,,2".into(), "tag=x".into()]).unwrap_err();
        assert!(err.to_string().contains("empty item"), "{err}");
    }
}
