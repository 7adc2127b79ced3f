//! MLproject text -> `Project::parse`, then the graph of whatever parsed: no panic, and
//! every closure ends with its entry and lists each step after its dependencies.
#![no_main]

use std::path::Path;

use flow_fuzz::dag::Dag;
use flow_fuzz::spec::{placeholders, substitute, Project};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(project) = Project::parse(text, Path::new("MLproject.yaml")) else {
        return;
    };
    for warning in &project.warnings {
        let _ = warning.to_string();
    }
    let Ok(dag) = Dag::new(&project) else {
        return;
    };
    for (name, entry) in &project.entries {
        let closure = dag.closure(name).expect("a parsed entry is in the graph");
        assert_eq!(closure.last(), Some(name));
        for (position, step) in closure.iter().enumerate() {
            for dependency in &project.entries[step].depends_on {
                let before = closure.iter().position(|s| s == dependency);
                assert!(
                    before.is_some_and(|b| b < position),
                    "{dependency} before {step}"
                );
            }
        }
        let _ = dag.downstream(name);
        if let Some(command) = &entry.command {
            for placeholder in placeholders(command) {
                assert!(entry.parameters.contains_key(placeholder));
            }
            let _ = substitute(command, |p| entry.parameters.get(p).map(|_| "'v'".into()));
        }
    }
});
