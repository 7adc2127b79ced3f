//! Groups: a step's `members` command says what its key value stands for, so
//! `dataset=SMD` becomes one member per machine and `dataset=m-3` the canonical `M-3`.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::params::Bound;
use crate::shell;
use crate::spec::Project;

/// How long a `members` or `inputs_from` listing may take; it runs on every plan.
pub(crate) const LISTING_TIMEOUT: Duration = Duration::from_secs(60);

/// Asks each step with a `members` command what its key value stands for, and replaces
/// the key binding's values: a group becomes an axis of its members (in the order
/// listed), a single name its canonical spelling. A list is expanded item by item.
pub fn expand_groups(project: &Project, closure: &[String], bound: &mut Bound) -> Result<()> {
    let mut expanded_bindings = BTreeSet::new();
    for step in closure {
        let entry = &project.entries[step];
        let (Some(template), Some(key)) = (&entry.members, &entry.key) else {
            continue;
        };
        let binding = bound.steps[step][key];
        if !expanded_bindings.insert(binding) {
            continue;
        }
        let mut members: Vec<String> = Vec::new();
        let mut group = false;
        for value in bound.bindings[binding].values.clone() {
            let mut values = bound.single(project, step);
            values.insert(key.clone(), bound.value(project, step, key, &value));
            let command = shell::render(template, &values);
            let listed =
                shell::capture(&command, &project.dir, LISTING_TIMEOUT).with_context(|| {
                    format!("step `{step}`: cannot list what `{key}={value}` stands for")
                })?;
            let listed: Vec<String> = listed
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_string)
                .collect();
            match listed.as_slice() {
                [] => bail!("step `{step}`: `{key}={value}` names a group without members (its `members` command printed nothing)"),
                [one] if one.eq_ignore_ascii_case(&value) => members.push(one.clone()),
                _ => {
                    group = true;
                    members.extend(listed);
                }
            }
        }
        let mut seen = BTreeSet::new();
        members.retain(|member| seen.insert(member.clone()));
        bound
            .set_values(project, binding, members, group)
            .with_context(|| format!("step `{step}`: the members of `{key}`"))?;
    }
    Ok(())
}
