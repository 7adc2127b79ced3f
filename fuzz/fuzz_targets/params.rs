//! `-P` arguments (one per line) -> `params::bind` against the repository's MLproject.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use flow_fuzz::dag::Dag;
use flow_fuzz::params::bind;
use flow_fuzz::spec::Project;
use libfuzzer_sys::fuzz_target;

/// The shipped project and the closure of its `main` entry.
fn project() -> &'static (Project, Vec<String>) {
    static PROJECT: OnceLock<(Project, Vec<String>)> = OnceLock::new();
    PROJECT.get_or_init(|| {
        let text = include_str!("../../MLproject.yaml");
        let project = Project::parse(text, Path::new("MLproject.yaml")).expect("the shipped spec");
        let closure = Dag::new(&project)
            .and_then(|dag| dag.closure("main"))
            .expect("the shipped graph");
        (project, closure)
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = text.lines().map(str::to_string).collect();
    let (project, closure) = project();
    if let Ok(bound) = bind(project, closure, &args) {
        assert_eq!(bound.steps.len(), closure.len());
        for params in bound.steps.values() {
            for &binding in params.values() {
                let binding = &bound.bindings[binding];
                assert!(!binding.values.is_empty());
                assert_eq!(binding.axis || binding.values.len() == 1, true);
            }
        }
    }
});
