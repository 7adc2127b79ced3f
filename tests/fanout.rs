//! Fan-out and fan-in, named pipelines, declared code and resources, through the real
//! binary in temporary git repositories.

mod common;

use std::path::Path;

use common::TestProject;

/// A source step whose `members` command expands `ALL` into every file under data/.
const FANNED: &str = r#"name: fanned
entry_points:
  load:
    key: dataset
    parameters:
      dataset: {type: string, default: a}
      retrieval_time: {type: string, default: latest}
    members: "if [ {dataset} = ALL ]; then ls data | sed 's/[.]txt$//'; else echo {dataset}; fi"
    inputs: ["data/{dataset}.txt"]
    code: [MLproject.yaml]
    command: "cat data/{dataset}.txt > $FLOW_OUTPUT_DIR/rows.txt"
  train:
    key: algorithm
    depends_on: [load]
    parameters:
      algorithm: {type: string, default: count}
      seed: {type: int, default: 0}
    code: [MLproject.yaml]
    resources: {cpus: 1}
    command: "echo {seed} $(wc -l < $FLOW_INPUT_LOAD/rows.txt) $FLOW_CPUS > $FLOW_OUTPUT_DIR/model.txt"
  summarize:
    depends_on: [train]
    gather: true
    code: [MLproject.yaml]
    command: "cp $FLOW_INPUT_TRAIN/members.json $FLOW_OUTPUT_DIR/ && cat $FLOW_INPUT_TRAIN/*/model.txt > $FLOW_OUTPUT_DIR/all.txt"
  ensemble:
    depends_on: [train]
    gather: seed
    code: [MLproject.yaml]
    command: "ls $FLOW_INPUT_TRAIN > $FLOW_OUTPUT_DIR/members.txt && cat $FLOW_INPUT_LOAD/rows.txt > $FLOW_OUTPUT_DIR/rows.txt"
"#;

fn fanned() -> TestProject {
    TestProject::new(&[
        ("MLproject.yaml", FANNED),
        ("data/a.txt", "x\ny\n"),
        ("data/b.txt", "z\n"),
        (".gitignore", ".flow/\n"),
    ])
}

fn executed(out: &common::Outcome) -> Vec<String> {
    out.executed_nodes()
}

fn output(p: &TestProject, run: &str, file: &str) -> String {
    std::fs::read_to_string(p.path().join(".flow/runs").join(run).join(file))
        .unwrap_or_else(|e| panic!("{file} of {run}: {e}"))
}

fn run_id(out: &common::Outcome, entry: &str, member: &str) -> String {
    out.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["entry"] == entry && s["member"].as_str().unwrap_or_default() == member)
        .and_then(|s| s["run_id"].as_str())
        .unwrap_or_else(|| panic!("no {entry} [{member}] in {}", out.stdout))
        .to_string()
}

/// A list fans every step reading the parameter out into one chain per member; a second
/// call reuses every member.
#[test]
fn a_list_runs_one_chain_per_member_and_reuses_each() {
    let p = fanned();
    let first = p.run_ok(&["-e", "train", "-P", "dataset=a,b"]);
    assert_eq!(executed(&first), ["load a", "load b", "train a", "train b"]);
    assert_eq!(
        output(&p, &run_id(&first, "train", "b"), "model.txt"),
        "0 1 1\n"
    );
    let second = p.run_ok(&["-e", "train", "-P", "dataset=a,b"]);
    assert!(executed(&second).is_empty(), "{}", second.stdout);
    // A member alone is the same key as inside the fan-out.
    let alone = p.run_ok(&["-e", "train", "-P", "dataset=b"]);
    assert!(executed(&alone).is_empty());
    assert_eq!(run_id(&alone, "train", ""), run_id(&first, "train", "b"));
}

/// A group named by the key is expanded by the step's `members` command; adding one
/// member's data runs that member's chain only.
#[test]
fn a_group_expands_and_new_data_reruns_one_member() {
    let p = fanned();
    let first = p.run_ok(&["-e", "train", "-P", "dataset=ALL"]);
    assert_eq!(executed(&first), ["load a", "load b", "train a", "train b"]);
    p.write("data/c.txt", "1\n2\n3\n");
    let second = p.run_ok(&["-e", "train", "-P", "dataset=ALL", "--reuse", "any"]);
    assert_eq!(executed(&second), ["load c", "train c"]);
    let plan = p.flow(&["plan", "-e", "train", "-P", "dataset=ALL", "--reuse", "any"]);
    assert!(
        plan.stdout
            .contains("fan-out over `dataset`: 3 members (a, b, c)"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("load: 3 members: 3 reused"),
        "{}",
        plan.stdout
    );
    p.write("data/b.txt", "changed\n");
    let plan = p.flow(&["plan", "-e", "train", "-P", "dataset=ALL", "--reuse", "any"]);
    assert!(
        plan.stdout
            .contains("load: 3 members: 2 reused, 1 execute (data changed: b)"),
        "{}",
        plan.stdout
    );
}

/// A gathering step runs once and sees every member's outputs as a directory of member
/// directories with `members.json`; `gather: seed` keeps the other axes.
#[test]
fn fan_in_receives_every_member() {
    let p = fanned();
    let out = p.run_ok(&["-e", "summarize", "-P", "dataset=a,b", "-P", "seed=0,1"]);
    let summary = run_id(&out, "summarize", "");
    let all = output(&p, &summary, "all.txt");
    assert_eq!(all.lines().count(), 4, "{all}");
    let members: serde_json::Value =
        serde_json::from_str(&output(&p, &summary, "members.json")).unwrap();
    let labels: Vec<&str> = members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["a seed=0", "a seed=1", "b seed=0", "b seed=1"]);
    let lineage = p.flow(&["lineage", &summary, "--format", "json"]);
    assert_eq!(lineage.code, 0, "{}", lineage.stderr);
    assert_eq!(
        lineage.stdout.matches("\"entry\": \"train\"").count(),
        4,
        "{}",
        lineage.stdout
    );

    let out = p.run_ok(&["-e", "ensemble", "-P", "dataset=a,b", "-P", "seed=0,1"]);
    let a = run_id(&out, "ensemble", "a");
    assert_eq!(
        output(&p, &a, "members.txt"),
        "members.json\nseed=0\nseed=1\n"
    );
    assert_eq!(
        output(&p, &a, "rows.txt"),
        "x\ny\n",
        "a plain directory for load"
    );
}

/// A pinned day missing for several members names all of them.
#[test]
fn pinned_members_without_a_run_are_all_named() {
    let p = fanned();
    p.run_ok(&["-e", "load", "-P", "dataset=a"]);
    let out = p.flow(&[
        "run",
        "-e",
        "train",
        "-P",
        "dataset=a,b,c",
        "-P",
        "retrieval_time=2020-01-01",
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("for 3 of 3 members: a, b, c"),
        "{}",
        out.stderr
    );
}

/// Named pipelines supply an entry point and parameters; `-P` wins over them.
#[test]
fn pipelines_preset_entry_and_params() {
    let p = fanned();
    p.write(
        "pipelines/both.yaml",
        "description: both files, two seeds\nentry: train\nparams:\n  dataset: [a, b]\n  seed: [0, 1]\n",
    );
    p.commit("pipeline");
    let list = p.flow(&["pipelines", "list"]);
    assert!(
        list.stdout.contains("both") && list.stdout.contains("-P seed=0,1"),
        "{}",
        list.stdout
    );
    let out = p.run_ok(&["-p", "both"]);
    assert_eq!(executed(&out).len(), 2 + 4);
    let out = p.run_ok(&["-p", "both", "-P", "seed=0"]);
    assert!(executed(&out).is_empty(), "seed 0 of both datasets exists");
    p.write(
        "pipelines/bad.yaml",
        "entry: train\nparams:\n  sed: [0, 1]\n",
    );
    let out = p.flow(&["run", "-p", "bad"]);
    assert!(
        out.stderr.contains("pipelines/bad.yaml:3:3"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("did you mean `seed`"), "{}", out.stderr);
}

/// A step declaring its code is not re-executed for an untracked output file, and a change
/// to its code is explained by the file that changed.
#[test]
fn declared_code_ignores_outputs_and_names_the_change() {
    let p = fanned();
    p.run_ok(&["-e", "train"]);
    p.write("result.json", "{}");
    let out = p.run_ok(&["-e", "train"]);
    assert!(
        executed(&out).is_empty(),
        "an untracked output file is not code"
    );
    p.write("MLproject.yaml", &format!("{FANNED}\n# edited\n"));
    let plan = p.flow(&["plan", "-e", "train"]);
    assert!(
        plan.stdout.contains("commit differs") && plan.stdout.contains("MLproject.yaml (modified)"),
        "{}",
        plan.stdout
    );
}

/// `FLOW_CPUS` follows the declared resources and `--resources` overrides them.
#[test]
fn steps_get_their_cores() {
    let p = fanned();
    let out = p.run_ok(&["-e", "train", "--resources", "train.cpus=2", "-P", "seed=5"]);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(2);
    assert_eq!(
        output(&p, &run_id(&out, "train", ""), "model.txt"),
        format!("5 2 {cores}\n")
    );
    let bad = p.flow(&["run", "-e", "train", "--resources", "train.gpus=1"]);
    assert!(
        bad.stderr.contains("unknown resource `gpus`"),
        "{}",
        bad.stderr
    );
}

/// The shipped loader lists the files a dataset reads (`inputs_from`), so a new SMD machine
/// executes its own `load` and reuses the others'; a changed machine re-runs alone.
#[test]
fn the_shipped_loader_reruns_only_the_machine_whose_files_changed() {
    let p = common::shipped_project();
    let smd = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/smd");
    assert!(
        smd.join("train/machine-2-1.txt.gz").is_file(),
        "this test reads the SMD machines in {}",
        smd.display()
    );
    let copy = p.path().join("smd");
    for split in ["train", "test", "test_label"] {
        std::fs::create_dir_all(copy.join(split)).unwrap();
        for machine in ["machine-1-6", "machine-2-1"] {
            let name = format!("{split}/{machine}.txt.gz");
            std::fs::copy(smd.join(&name), copy.join(&name)).unwrap();
        }
    }
    let args = ["-e", "load", "-P", "dataset=SMD", "-P", "data_dir=smd"];
    let first = p.run_ok(&args);
    assert_eq!(executed(&first), ["load machine-1-6", "load machine-2-1"]);
    for split in ["train", "test", "test_label"] {
        std::fs::copy(
            copy.join(format!("{split}/machine-2-1.txt.gz")),
            copy.join(format!("{split}/machine-9-9.txt.gz")),
        )
        .unwrap();
    }
    let second = p.run_ok(&args);
    assert_eq!(executed(&second), ["load machine-9-9"]);
    std::fs::copy(
        copy.join("test_label/machine-1-6.txt.gz"),
        copy.join("test_label/machine-2-1.txt.gz"),
    )
    .unwrap();
    let plan = p.flow(&[
        "plan",
        "-e",
        "load",
        "-P",
        "dataset=SMD",
        "-P",
        "data_dir=smd",
    ]);
    assert!(
        plan.stdout
            .contains("load: 3 members: 2 reused, 1 execute (data changed: machine-2-1)"),
        "{}",
        plan.stdout
    );
}
