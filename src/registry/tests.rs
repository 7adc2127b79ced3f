//! Registry tests over a real temporary store with published runs.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::*;
use crate::store::test_support::{begin, day, temp_store};
use crate::store::RunId;

/// A run of `entry` that published `files` (logical path -> content) and ended with `status`.
fn run_with(
    store: &Store,
    root: &Path,
    entry: &str,
    files: &[(&str, &str)],
    status: RunStatus,
) -> RunId {
    let run = begin(store, entry, &BTreeMap::new(), &[], day(1));
    let out = root.join(format!("out-{run}"));
    fs::create_dir_all(&out).unwrap();
    for (logical, content) in files {
        let path = out.join(logical);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }
    store.publish(&run, &out).unwrap();
    store.end_run(&run, status).unwrap();
    run
}

/// A FINISHED `train` run whose `model/` bundle says `tag` in its manifest.
fn trained(store: &Store, root: &Path, tag: &str) -> RunId {
    run_with(
        store,
        root,
        "train",
        &[
            ("model/flow-model.json", tag),
            ("model/weights.safetensors", "w"),
        ],
        RunStatus::Finished,
    )
}

/// What the bundle directory a URI resolves to says in its manifest.
fn manifest_at(store: &Store, uri: &str) -> String {
    let resolved = resolve_uri(store, uri).unwrap();
    fs::read_to_string(resolved.dir.join(BUNDLE_MANIFEST)).unwrap()
}

fn stages(store: &Store, name: &str) -> Vec<(u32, Stage)> {
    list(store, Some(name))
        .unwrap()
        .into_iter()
        .map(|version| (version.version, version.stage))
        .collect()
}

#[test]
fn register_twice_numbers_versions() {
    let (dir, store) = temp_store();
    let first = trained(&store, dir.path(), "one");
    let second = trained(&store, dir.path(), "two");

    let v1 = register(&store, "det", &first[..8], DEFAULT_ARTIFACT_PATH).unwrap();
    let v2 = register(&store, "det", &second, "/model/").unwrap();
    assert_eq!(
        (v1.version, v1.run_id.as_str(), v1.stage),
        (1, first.as_str(), Stage::None)
    );
    assert_eq!((v2.version, v2.artifact_path.as_str()), (2, "model"));
    assert_eq!(v2.uri(), "models:/det/2");
    let other = register(&store, "other", &first, "model").unwrap();
    assert_eq!(other.version, 1, "numbering is per model");

    let listed = list(&store, None).unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|v| (v.name.as_str(), v.version))
            .collect::<Vec<_>>(),
        vec![("det", 1), ("det", 2), ("other", 1)]
    );
    assert_eq!(listed[0], v1);
    assert_eq!(model_names(&store).unwrap(), vec!["det", "other"]);
}

#[test]
fn register_refuses_unfinished_runs_and_runs_without_bundles() {
    let (dir, store) = temp_store();
    let bundle = [("model/flow-model.json", "x")];
    let failed = run_with(&store, dir.path(), "train", &bundle, RunStatus::Failed);
    let error = register(&store, "det", &failed, "model").unwrap_err();
    assert!(
        matches!(&error, RegistryError::RunNotFinished { status, .. } if status == "FAILED"),
        "{error}"
    );
    let running = begin(&store, "train", &BTreeMap::new(), &[], day(1));
    assert!(matches!(
        register(&store, "det", &running, "model"),
        Err(RegistryError::RunNotFinished { .. })
    ));

    let loader = run_with(
        &store,
        dir.path(),
        "load",
        &[("train.parquet", "p")],
        RunStatus::Finished,
    );
    let error = register(&store, "det", &loader, "model").unwrap_err();
    let message = error.to_string();
    assert!(message.contains("no `model/flow-model.json`"), "{message}");
    assert!(
        message.contains("hint: no finished run has a bundle yet"),
        "{message}"
    );

    let evaluated = run_with(
        &store,
        dir.path(),
        "evaluate",
        &[("best/flow-model.json", "b")],
        RunStatus::Finished,
    );
    let message = register(&store, "det", &loader, "model")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!(
            "runs with a bundle: {} (evaluate, `best`)",
            &evaluated[..12]
        )),
        "{message}"
    );
    let message = register(&store, "det", &evaluated, "model")
        .unwrap_err()
        .to_string();
    assert!(message.contains("pass `--path best`"), "{message}");
    register(&store, "det", &evaluated, "best").unwrap();

    assert!(matches!(
        register(&store, "det", "ffffffff", "model"),
        Err(RegistryError::Store(StoreError::NotFound(_)))
    ));
    assert!(matches!(
        register(&store, "a/b", &evaluated, "best"),
        Err(RegistryError::InvalidName { .. })
    ));
    assert!(matches!(
        register(&store, "det", &evaluated, "../x"),
        Err(RegistryError::InvalidName { .. })
    ));
    assert_eq!(
        list(&store, Some("det")).unwrap().len(),
        1,
        "refused registrations leave nothing behind"
    );
}

#[test]
fn production_archives_the_previous_one_unless_kept() {
    let (dir, store) = temp_store();
    for tag in ["1", "2", "3"] {
        let run = trained(&store, dir.path(), tag);
        register(&store, "det", &run, "model").unwrap();
    }
    let changed = set_stage(&store, "det", 1, Stage::Production, false).unwrap();
    assert_eq!(
        changed
            .iter()
            .map(|v| (v.version, v.stage))
            .collect::<Vec<_>>(),
        vec![(1, Stage::Production)]
    );

    let changed = set_stage(&store, "det", 2, Stage::Production, false).unwrap();
    assert_eq!(
        changed
            .iter()
            .map(|v| (v.version, v.stage))
            .collect::<Vec<_>>(),
        vec![(2, Stage::Production), (1, Stage::Archived)]
    );
    set_stage(&store, "det", 3, Stage::Production, true).unwrap();
    assert_eq!(
        stages(&store, "det"),
        vec![
            (1, Stage::Archived),
            (2, Stage::Production),
            (3, Stage::Production)
        ]
    );
    // Staging never archives anything.
    set_stage(&store, "det", 1, Stage::Staging, false).unwrap();
    assert_eq!(
        stages(&store, "det"),
        vec![
            (1, Stage::Staging),
            (2, Stage::Production),
            (3, Stage::Production)
        ]
    );
    // The newest Production version wins the stage URI.
    assert_eq!(manifest_at(&store, "models:/det/Production"), "3");
    set_stage(&store, "det", 1, Stage::Production, false).unwrap();
    assert_eq!(
        stages(&store, "det"),
        vec![
            (1, Stage::Production),
            (2, Stage::Archived),
            (3, Stage::Archived)
        ]
    );
    assert!(matches!(
        set_stage(&store, "det", 9, Stage::Staging, false),
        Err(RegistryError::UnknownVersion { versions, .. }) if versions == vec![1, 2, 3]
    ));
}

#[test]
fn alias_moves_and_resolves() {
    let (dir, store) = temp_store();
    for tag in ["1", "2"] {
        let run = trained(&store, dir.path(), tag);
        register(&store, "det", &run, "model").unwrap();
    }
    set_alias(&store, "det", "champion", 1).unwrap();
    set_alias(&store, "det", "canary", 1).unwrap();
    assert_eq!(
        list(&store, Some("det")).unwrap()[0].aliases,
        vec!["canary", "champion"]
    );
    assert_eq!(manifest_at(&store, "models:/det@champion"), "1");

    set_alias(&store, "det", "champion", 2).unwrap();
    let versions = list(&store, Some("det")).unwrap();
    assert_eq!(versions[0].aliases, vec!["canary"]);
    assert_eq!(versions[1].aliases, vec!["champion"]);
    let resolved = resolve_uri(&store, "models:/det@champion").unwrap();
    assert_eq!(
        (resolved.name.as_deref(), resolved.version),
        (Some("det"), Some(2))
    );

    assert_eq!(remove_alias(&store, "det", "canary").unwrap(), 1);
    assert!(matches!(
        set_alias(&store, "det", "x", 7),
        Err(RegistryError::UnknownVersion { .. })
    ));
    assert!(matches!(
        set_alias(&store, "det", "bad@name", 1),
        Err(RegistryError::InvalidName { .. })
    ));
    let message = resolve_uri(&store, "models:/det@champoin")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("no alias `champoin`; did you mean `champion`?"),
        "{message}"
    );
    let message = resolve_uri(&store, "models:/det@zzz")
        .unwrap_err()
        .to_string();
    assert!(message.contains("its aliases are `champion`"), "{message}");
}

#[test]
fn every_uri_form_resolves_to_its_bundle() {
    let (dir, store) = temp_store();
    let first = trained(&store, dir.path(), "one");
    let second = trained(&store, dir.path(), "two");
    let nested = run_with(
        &store,
        dir.path(),
        "evaluate",
        &[
            ("out/best/flow-model.json", "nested"),
            ("model/flow-model.json", "evaluated"),
        ],
        RunStatus::Finished,
    );
    register(&store, "det", &first, "model").unwrap();
    register(&store, "det", &second, "model").unwrap();
    register(&store, "det", &nested, "out/best").unwrap();
    set_stage(&store, "det", 2, Stage::Staging, false).unwrap();
    set_alias(&store, "det", "champion", 1).unwrap();

    assert_eq!(manifest_at(&store, &format!("runs:/{first}")), "one");
    assert_eq!(
        manifest_at(&store, &format!("runs:/{}/model", &second[..10])),
        "two"
    );
    assert_eq!(
        manifest_at(&store, &format!("runs:/{nested}/out/best")),
        "nested"
    );
    assert_eq!(manifest_at(&store, "models:/det/1"), "one");
    assert_eq!(manifest_at(&store, "models:/det/staging"), "two");
    assert_eq!(manifest_at(&store, "models:/det/None"), "nested");
    assert_eq!(manifest_at(&store, "models:/det/latest"), "nested");
    assert_eq!(manifest_at(&store, "  models:/det@champion "), "one");

    let resolved = resolve_uri(&store, "models:/det/Staging").unwrap();
    let expected = fs::canonicalize(store.run_dir(&second).unwrap().join("model")).unwrap();
    assert_eq!(resolved.dir, expected);
    assert!(resolved.dir.is_absolute());
    assert_eq!(resolved.run_id.as_deref(), Some(second.as_str()));
    assert_eq!(
        (resolved.name.as_deref(), resolved.version),
        (Some("det"), Some(2))
    );
    assert_eq!(resolved.uri, "models:/det/Staging");

    // A plain directory, or its manifest file, on disk.
    let local = dir.path().join("local-bundle");
    fs::create_dir_all(&local).unwrap();
    fs::write(local.join(BUNDLE_MANIFEST), "local").unwrap();
    let resolved = resolve_uri(&store, local.to_str().unwrap()).unwrap();
    assert_eq!(resolved.dir, fs::canonicalize(&local).unwrap());
    assert_eq!(
        (resolved.run_id, resolved.name, resolved.version),
        (None, None, None)
    );
    assert_eq!(
        manifest_at(&store, local.join(BUNDLE_MANIFEST).to_str().unwrap()),
        "local"
    );
    let message = resolve_uri(&store, dir.path().to_str().unwrap())
        .unwrap_err()
        .to_string();
    assert!(message.contains("is not a model bundle"), "{message}");
    let message = resolve_uri(&store, &format!("runs:/{first}/elsewhere"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("no `elsewhere/flow-model.json`"),
        "{message}"
    );
}

#[test]
fn lookup_errors_name_what_exists() {
    let (dir, store) = temp_store();
    let message = resolve_uri(&store, "models:/det/1")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("no registered model `det` (no model is registered yet)"),
        "{message}"
    );

    let run = trained(&store, dir.path(), "one");
    register(&store, "smd-detector", &run, "model").unwrap();
    register(&store, "smd-detector", &run, "model").unwrap();
    set_stage(&store, "smd-detector", 2, Stage::Staging, false).unwrap();

    let error = resolve_uri(&store, "models:/smd-detectr/1").unwrap_err();
    assert!(
        matches!(&error, RegistryError::UnknownModel { suggestion: Some(close), .. } if close == "smd-detector"),
        "{error}"
    );
    assert!(error.to_string().contains("did you mean `smd-detector`?"));
    let message = list(&store, Some("zzz")).unwrap_err().to_string();
    assert!(message.contains("hint: `flow models list`"), "{message}");

    let message = resolve_uri(&store, "models:/smd-detector/5")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("has no version 5; its versions are 1, 2"),
        "{message}"
    );
    let message = resolve_uri(&store, "models:/smd-detector/Production")
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("no version in stage Production; stages in use: None (1), Staging (2)"),
        "{message}"
    );
    let message = resolve_uri(&store, "models:/smd-detector@best")
        .unwrap_err()
        .to_string();
    assert!(message.contains("it has no aliases"), "{message}");
    let message = "prod".parse::<Stage>().unwrap_err().to_string();
    assert!(
        message.contains("unknown stage `prod`; did you mean `Production`?"),
        "{message}"
    );
    assert_eq!("ARCHIVED".parse::<Stage>().unwrap(), Stage::Archived);
    for stage in Stage::ALL {
        assert_eq!(stage.to_string().parse::<Stage>().unwrap(), stage);
    }
}

#[test]
fn delete_a_version_then_the_model() {
    let (dir, store) = temp_store();
    let run = trained(&store, dir.path(), "one");
    for _ in 0..3 {
        register(&store, "det", &run, "model").unwrap();
    }
    set_alias(&store, "det", "champion", 2).unwrap();
    delete(&store, "det", Some(2)).unwrap();
    assert_eq!(
        list(&store, Some("det"))
            .unwrap()
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        vec![1, 3]
    );
    assert!(
        matches!(
            resolve_uri(&store, "models:/det@champion"),
            Err(RegistryError::UnknownAlias { .. })
        ),
        "the alias went with its version"
    );
    assert!(matches!(
        delete(&store, "det", Some(2)),
        Err(RegistryError::UnknownVersion { .. })
    ));
    // The run is still used by versions 1 and 3.
    assert!(matches!(
        store.delete_run(&run, false),
        Err(StoreError::HasDependants { .. })
    ));

    // Deleting the newest version does not free its number: models:/det/3 keeps meaning
    // the bundle it meant, and the next registration is 4.
    delete(&store, "det", Some(3)).unwrap();
    assert_eq!(register(&store, "det", &run, "model").unwrap().version, 4);

    delete(&store, "det", None).unwrap();
    assert!(list(&store, None).unwrap().is_empty());
    assert!(model_names(&store).unwrap().is_empty());
    assert!(matches!(
        delete(&store, "det", None),
        Err(RegistryError::UnknownModel { .. })
    ));
    let aliases: i64 = store
        .connection()
        .query_row("SELECT count(*) FROM model_aliases", (), |row| row.get(0))
        .unwrap();
    assert_eq!(aliases, 0);
    store.delete_run(&run, false).unwrap();
}

#[test]
fn deleting_every_version_keeps_the_model() {
    let (dir, store) = temp_store();
    let run = trained(&store, dir.path(), "one");
    register(&store, "det", &run, "model").unwrap();
    delete(&store, "det", Some(1)).unwrap();
    assert_eq!(model_names(&store).unwrap(), vec!["det"]);
    assert!(matches!(
        resolve_uri(&store, "models:/det/latest"),
        Err(RegistryError::NoVersions { .. })
    ));
}

#[test]
fn version_of_a_force_deleted_run_is_reported() {
    let (dir, store) = temp_store();
    let run = trained(&store, dir.path(), "one");
    register(&store, "det", &run, "model").unwrap();
    store.delete_run(&run, true).unwrap();
    let error = resolve_uri(&store, "models:/det/1").unwrap_err();
    assert!(
        matches!(error, RegistryError::MissingRun { version: 1, .. }),
        "{error}"
    );
}

#[test]
fn json_shape_of_a_version() {
    let (dir, store) = temp_store();
    let run = trained(&store, dir.path(), "one");
    let version = register(&store, "det", &run, "model").unwrap();
    let value = serde_json::to_value(&version).unwrap();
    assert_eq!(value["stage"], "None");
    assert_eq!(value["version"], 1);
    assert_eq!(value["run_id"], run.as_str());
    assert!(value["created_at"].as_str().unwrap().ends_with('Z'));
}
