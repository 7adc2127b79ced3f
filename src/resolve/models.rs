//! Model URIs in `uri` parameters (`models:/NAME/Production`, `runs:/ID/model`): the
//! command gets the bundle's directory, the key gets the run that published it.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::params::StepParams;
use crate::spec::{self, Entry, ParamType};

/// Resolves model URIs found in `uri` parameters. The caller provides it: the registry
/// sits above resolve in the import order.
pub trait ModelUris {
    /// The bundle a URI names, or `None` when the model, version, stage or alias does
    /// not exist (yet); other problems are errors.
    fn resolve(&self, uri: &str) -> Result<Option<ResolvedUri>>;
}

/// A model URI resolved to the run that published the bundle.
#[derive(Debug, Clone)]
pub struct ResolvedUri {
    pub run_id: String,
    pub dir: PathBuf,
}

/// No model URIs resolve (for callers without a registry).
pub struct NoModels;

impl ModelUris for NoModels {
    fn resolve(&self, _uri: &str) -> Result<Option<ResolvedUri>> {
        Ok(None)
    }
}

/// What resolving a step's model URIs gives: lineage edges and the values reuse compares.
pub struct ResolvedModels {
    /// `("model", run)` for every URI that named a bundle.
    pub inputs: Vec<(String, String)>,
    /// The compared value of each resolved parameter: the URI and the run it named, so
    /// promoting another version re-executes.
    pub compared: StepParams,
}

/// Replaces model URIs in `uri` parameters of `values`: the command gets the bundle
/// directory. `{name}` placeholders in a URI (`models:/anomaly-{dataset}/Production`) are
/// filled by `lookup` first, so each fan-out member names its own model. A *default* URI
/// that does not resolve yet becomes `auto`, leaving the choice to the step.
pub fn resolve_model_params(
    entry: &Entry,
    values: &mut StepParams,
    lookup: &dyn Fn(&str) -> Option<String>,
    models: &dyn ModelUris,
) -> Result<ResolvedModels> {
    let mut resolved = ResolvedModels {
        inputs: Vec::new(),
        compared: StepParams::new(),
    };
    for (name, parameter) in &entry.parameters {
        let Some(template) = values.get(name).cloned() else {
            continue;
        };
        if parameter.kind != ParamType::Uri
            || !(template.starts_with("models:/") || template.starts_with("runs:/"))
        {
            continue;
        }
        let uri = spec::substitute(&template, lookup);
        if let Some(missing) = spec::placeholders(&uri).first() {
            bail!(
                "step `{}`: parameter `{name}`: `{template}` uses `{{{missing}}}`, which neither this step nor its upstream steps declare",
                entry.name
            );
        }
        match models.resolve(&uri)? {
            Some(found) => {
                values.insert(name.clone(), found.dir.to_string_lossy().to_string());
                resolved
                    .compared
                    .insert(name.clone(), format!("{uri} ({})", found.run_id));
                resolved.inputs.push(("model".to_string(), found.run_id));
            }
            None if parameter.default.as_deref() == Some(template.as_str()) => {
                values.insert(name.clone(), "auto".to_string());
            }
            None => bail!(
                "step `{}`: parameter `{name}`: `{uri}` names no model bundle\nhint: see `flow models list`",
                entry.name
            ),
        }
    }
    Ok(resolved)
}
