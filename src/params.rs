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

/// Binds raw `-P` arguments to each step of `closure` (topological order).
pub fn bind(
    project: &Project,
    closure: &[String],
    args: &[String],
) -> Result<BTreeMap<String, StepParams>, ParamError> {
    // Targeted values win over global ones, whatever the order given.
    let mut global: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut targeted: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for arg in args {
        let (name, value) = arg
            .split_once('=')
            .ok_or_else(|| ParamError::Malformed(arg.clone()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(ParamError::Malformed(arg.clone()));
        }
        let target = name
            .split_once('.')
            .filter(|(step, _)| project.entries.contains_key(*step));
        match target {
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
                targeted
                    .entry(step.to_string())
                    .or_default()
                    .insert(param.to_string(), value.to_string());
            }
            None => {
                let declaring: Vec<&String> = closure
                    .iter()
                    .filter(|step| project.entries[*step].parameters.contains_key(name))
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
                for step in declaring {
                    global
                        .entry(step.clone())
                        .or_default()
                        .insert(name.to_string(), value.to_string());
                }
            }
        }
    }
    let mut given = global;
    for (step, values) in targeted {
        given.entry(step).or_default().extend(values);
    }

    let mut bound = BTreeMap::new();
    for step in closure {
        let entry = &project.entries[step];
        let mut values = StepParams::new();
        for (name, parameter) in &entry.parameters {
            let value = match given.get(step).and_then(|g| g.get(name)) {
                Some(raw) => parameter.canonical(raw).map_err(|error| ParamError::Type {
                    step: step.clone(),
                    error,
                })?,
                None => match &parameter.default {
                    Some(default) => default.clone(),
                    None if parameter.is_time_selector() => "latest".to_string(),
                    None => {
                        return Err(ParamError::Missing {
                            step: step.clone(),
                            name: name.clone(),
                            kind: parameter.kind.name(),
                        })
                    }
                },
            };
            values.insert(name.clone(), value);
        }
        bound.insert(step.clone(), values);
    }
    Ok(bound)
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
        assert_eq!(bound["load"]["dataset"], "SMAP");
        assert_eq!(bound["train"]["dataset"], "M-6");
        assert_eq!(bound["train"]["epochs"], "10");
        assert_eq!(bound["load"]["retrieval_time"], "latest");
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
        assert_eq!(bound["train"]["tag"], "a=b; rm -rf /");
    }
}
