//! Reading whole specs: what is accepted, what is refused and how it is said.

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
    let err = parse(
        "entry_points:\n  load:\n    command: x\n  train:\n    depends_on: [lod]\n    command: y\n",
    )
    .unwrap_err();
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
    let err = parse("entry_points:\n  load:\n    command: x\n    members: ls {dir}\n").unwrap_err();
    assert!(err.message.contains("`{dir}`"), "{err}");
    assert_eq!(err.line, Some(4));
    let err = parse("entry_points:\n  load:\n    members: ls\n    command: x\n").unwrap_err();
    assert!(err.message.contains("no `key`"), "{err}");
    let err = parse("entry_points:\n  a:\n    command: x\n  b:\n    depends_on: [a]\n    gather: seed\n    command: y\n").unwrap_err();
    assert!(err.message.contains("gathers `seed`"), "{err}");
    assert_eq!(err.line, Some(6));
    let err = parse("entry_points:\n  a:\n    command: x\n    resources: {cpus: 0}\n").unwrap_err();
    assert!(err.message.contains("`cpus: 0`"), "{err}");
    let err =
        parse("entry_points:\n  a:\n    command: x\n    resources: {memory: 4Q}\n").unwrap_err();
    assert!(err.message.contains("unknown unit"), "{err}");
    assert_eq!(err.line, Some(4));
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let project = parse("\u{feff}name: bom\nentry_points:\n  main:\n    command: echo\n").unwrap();
    assert_eq!(project.name, "bom");
}

#[test]
fn a_spec_without_entry_points_says_so() {
    for text in ["", "name: x\n", "entry_points:\n", "# only a comment\n"] {
        let err = parse(text).unwrap_err();
        assert!(
            err.message.contains("declares no entry points"),
            "{text:?}: {err}"
        );
    }
    let err = parse("- a\n- b\n").unwrap_err();
    assert!(err.message.contains("the spec is a list"), "{err}");
    let err = parse("entry_points: [a]\n").unwrap_err();
    assert!(err.message.contains("`entry_points` is a list"), "{err}");
}

#[test]
fn a_parameter_type_that_is_not_a_name_is_explained() {
    let err = parse(
        "entry_points:\n  main:\n    parameters:\n      a: {type: 5}\n    command: echo {a}\n",
    )
    .unwrap_err();
    assert_eq!(err.line, Some(4), "{err}");
    assert!(
        err.message
            .contains("parameter `a` has type `5`; expected one of string, int, float"),
        "{err}"
    );
}

#[test]
fn a_huge_integer_default_is_out_of_range_not_a_serde_error() {
    let err = parse("entry_points:\n  main:\n    parameters:\n      a: {type: int, default: 99999999999999999999999}\n    command: echo {a}\n").unwrap_err();
    assert!(err.message.contains("out of range"), "{err}");
    assert!(!err.message.contains("u128"), "{err}");
    let project = parse("entry_points:\n  main:\n    parameters:\n      a: {default: 99999999999999999999999}\n    command: echo {a}\n").unwrap();
    assert_eq!(
        project.entry("main").unwrap().parameters["a"]
            .default
            .as_deref(),
        Some("99999999999999999999999")
    );
}

#[test]
fn unknown_fields_warn_with_a_suggestion_and_never_fail() {
    // Stray keys seen in public MLproject files, which MLflow runs.
    let project = parse("name: x\nEnvironment: conda.yaml\nentry_points:\n  main:\n    data_file: data.csv\n    parameters:\n      a: {type: int, default: 1, description: count}\n    comand: echo\n    command: echo {a}\n    resources: {cpus: 1, partition: gpu}\n").unwrap();
    let warnings: Vec<String> = project.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
            warnings,
            vec![
                "MLproject.yaml:2:1: unknown field `Environment` of the spec is ignored",
                "MLproject.yaml:5:5: unknown field `data_file` of entry point `main` is ignored",
                "MLproject.yaml:7:7: unknown field `description` of parameter `a` of entry point `main` is ignored",
                "MLproject.yaml:8:5: unknown field `comand` of entry point `main` is ignored (did you mean `command`?)",
                "MLproject.yaml:10:5: unknown field `partition` of `resources` of entry point `main` is ignored",
            ]
        );
    assert_eq!(
        project.entry("main").unwrap().command.as_deref(),
        Some("echo {a}")
    );
    let project =
        parse("entry_point:\n  main: {}\nentry_points:\n  main:\n    command: x\n").unwrap();
    assert!(
        project.warnings[0]
            .message
            .contains("did you mean `entry_points`?"),
        "{:?}",
        project.warnings
    );
}

#[test]
fn an_entry_that_does_nothing_is_an_error() {
    for text in [
        "entry_points:\n  main:\n    parameters: {a: int}\n",
        "entry_points:\n  main:\n",
    ] {
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert!(
            err.message.contains("neither a `command` nor `depends_on`"),
            "{err}"
        );
    }
    let project =
        parse("entry_points:\n  a:\n    command: x\n  main:\n    depends_on: a\n").unwrap();
    assert_eq!(project.entry("main").unwrap().depends_on, vec!["a"]);
}

#[test]
fn an_unclosed_placeholder_is_an_error() {
    let err = parse("entry_points:\n  main:\n    parameters: {x: int}\n    command: \"echo {x\"\n")
        .unwrap_err();
    assert_eq!(err.line, Some(4), "{err}");
    assert!(
        err.message
            .contains("unclosed placeholder `{x`; write `{x}`"),
        "{err}"
    );
    parse("entry_points:\n  main:\n    command: \"f() { echo; }; f; echo {a,b}\"\n").unwrap();
}

#[test]
fn an_empty_entry_name_is_an_error() {
    let err = parse("entry_points:\n  \"\":\n    command: echo\n").unwrap_err();
    assert_eq!(err.line, Some(2), "{err}");
    assert!(err.message.contains("empty name"), "{err}");
}

#[test]
fn wrong_shapes_name_the_field_and_what_it_should_be() {
    for (text, line, expected) in [
        (
            "entry_points:\n  main:\n    command: [a, b]\n",
            3,
            "`command` of entry point `main` is a list; it must be a single value",
        ),
        (
            "entry_points:\n  main:\n    command: x\n    depends_on: {a: b}\n",
            4,
            "`depends_on` of entry point `main` is a mapping",
        ),
        (
            "entry_points:\n  main:\n    command: x\n    parameters: [a]\n",
            4,
            "`parameters` of entry point `main` is a list",
        ),
        (
            "entry_points:\n  main: [x]\n",
            2,
            "entry point `main` is a list; it must be a mapping",
        ),
        (
            "name: [x]\nentry_points:\n  main:\n    command: x\n",
            1,
            "`name` is a list",
        ),
        (
            "entry_points:\n  main:\n    command: x\n    gather: {a: 1}\n",
            4,
            "must be `true` or the parameters gathered",
        ),
    ] {
        let err = parse(text).unwrap_err();
        assert_eq!(err.line, Some(line), "{err}");
        assert!(err.message.contains(expected), "{err}");
    }
}

#[test]
fn deep_nesting_is_refused_before_parsing() {
    let depth = 100_000;
    let text = format!("entry_points: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    let started = std::time::Instant::now();
    let err = parse(&text).unwrap_err();
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((err.line, err.column), (Some(1), Some(79)), "{err}");
    assert!(err.message.contains("nested more than 64 levels"), "{err}");
    let text = format!("entry_points:\n{}x\n", "- ".repeat(depth));
    let err = parse(&text).unwrap_err();
    assert!(err.message.contains("recursion limit"), "{err}");
}

#[test]
fn load_says_which_spec_file_wins_and_what_a_directory_is() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("MLproject.yaml")).unwrap();
    let err = Project::load(dir.path()).unwrap_err();
    assert!(
        err.to_string()
            .contains("MLproject.yaml: is a directory, not a file"),
        "{err}"
    );
    std::fs::write(
        dir.path().join("MLproject"),
        "entry_points:\n  main:\n    command: a\n",
    )
    .unwrap();
    let project = Project::load(dir.path()).unwrap();
    assert!(project.path.ends_with("MLproject") && project.warnings.is_empty());
    std::fs::remove_dir(dir.path().join("MLproject.yaml")).unwrap();
    std::fs::write(
        dir.path().join("MLproject.yaml"),
        "entry_points:\n  main:\n    command: b\n",
    )
    .unwrap();
    let project = Project::load(dir.path()).unwrap();
    assert_eq!(project.entry("main").unwrap().command.as_deref(), Some("b"));
    assert_eq!(project.warnings.len(), 1);
    let warning = project.warnings[0].to_string();
    assert!(
            warning.ends_with("MLproject: ignored: `MLproject.yaml` is read when both exist (remove one to silence this)"),
            "{warning}"
        );
    let err = Project::load(&dir.path().join("MLproject")).unwrap_err();
    assert!(err.message.contains("is not a directory"), "{err}");
    let err = Project::load(&dir.path().join("nope")).unwrap_err();
    assert!(err.message.contains("does not exist"), "{err}");
}
