//! `predict` with a tiny untrained bundle on a CSV whose columns are shuffled.

use super::*;
use crate::bundle::Thresholds;
use crate::evaluate::tests::{tiny_bundle, N_FEATURES, WINDOW};

/// A CSV with columns in the order c2, label, c0, c1; row `spike` has c1 far out of range.
fn write_csv(path: &Path, n_rows: usize, spike: usize) {
    let mut text = String::from("c2,label,c0,c1\n");
    for row in 0..n_rows {
        let c1 = if row == spike {
            500.0
        } else {
            (row % 7) as f64
        };
        writeln!(
            text,
            "{},{},{},{c1}",
            (row % 5) as f64,
            u8::from(row == spike),
            (row % 3) as f64
        )
        .unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn setup(dir: &Path, threshold: Option<f64>) -> (StepContext, PredictArgs) {
    let model = dir.join("model");
    tiny_bundle()
        .with_thresholds(Thresholds {
            epsilon: threshold,
            chosen: Some("epsilon".into()),
            ..Thresholds::default()
        })
        .save(&model)
        .unwrap();
    write_csv(&dir.join("rows.csv"), 40, 30);
    let mut ctx = StepContext::for_dirs(dir.join("out"), &[]);
    ctx.metrics_path = Some(dir.join("metrics.jsonl"));
    let args = PredictArgs {
        model: Some(model),
        data: Some(dir.join("rows.csv")),
        threshold: None,
        top_k: 2,
        allow_other_dataset: false,
    };
    (ctx, args)
}

#[test]
fn predicts_anomalies_and_names_top_features() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, args) = setup(dir.path(), Some(5.0));
    run(&ctx, &args).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("out/predictions.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "row,score,anomaly,top_features");
    assert_eq!(lines.len() - 1, 40 - WINDOW);
    let spike = lines.iter().find(|l| l.starts_with("30,")).unwrap();
    let fields: Vec<&str> = spike.split(',').collect();
    assert_eq!(fields[2], "1", "{spike}");
    assert!(fields[3].starts_with("c1;"), "{spike}");
    let flagged = lines[1..]
        .iter()
        .filter(|l| l.split(',').nth(2) == Some("1"))
        .count();
    let metrics = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    assert!(metrics.contains(r#""key":"n_anomalies""#));
    assert!(
        metrics.contains(&format!(r#""value":{flagged}.0"#))
            || metrics.contains(&format!(r#""value":{flagged},"#))
    );
}

#[test]
fn a_threshold_flag_overrides_the_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, mut args) = setup(dir.path(), Some(5.0));
    args.threshold = Some(-1.0);
    run(&ctx, &args).unwrap();
    let csv = std::fs::read_to_string(dir.path().join("out/predictions.csv")).unwrap();
    assert!(csv
        .lines()
        .skip(1)
        .all(|l| l.split(',').nth(2) == Some("1")));
}

#[test]
fn a_bundle_without_threshold_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, args) = setup(dir.path(), None);
    let err = run(&ctx, &args).unwrap_err().to_string();
    assert!(
        err.contains("no threshold") && err.contains("--threshold"),
        "{err}"
    );
}

#[test]
fn column_mismatch_names_the_expected_columns() {
    let expected: Vec<String> = (0..N_FEATURES).map(|i| format!("c{i}")).collect();
    let table = Table::new(vec!["x".into(), "y".into()], 1, vec![1.0, 2.0]).unwrap();
    let err = align_columns(&table, &expected, Path::new("rows.csv"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`rows.csv` has 2 columns (x, y)") && err.contains("expects 3: c0, c1, c2"),
        "{err}"
    );
}

#[test]
fn columns_are_matched_by_name_then_by_position() {
    let expected = vec!["a".to_string(), "b".to_string()];
    let named = Table::new(
        vec!["b".into(), "extra".into(), "a".into()],
        2,
        vec![1.0, 9.0, 2.0, 3.0, 9.0, 4.0],
    )
    .unwrap();
    assert_eq!(
        align_columns(&named, &expected, Path::new("x")).unwrap(),
        vec![2.0, 1.0, 4.0, 3.0]
    );
    let positional = Table::new(vec!["f0".into(), "f1".into()], 1, vec![5.0, 6.0]).unwrap();
    assert_eq!(
        align_columns(&positional, &expected, Path::new("x")).unwrap(),
        vec![5.0, 6.0]
    );
}

#[test]
fn csv_fields_are_quoted_when_needed() {
    assert_eq!(csv_field("a;b"), "a;b");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
}

/// A `load` run of `dataset` (meta.json + test.parquet) and a bundle trained on `trained_on`.
fn setup_member(dir: &Path, dataset: &str, trained_on: &str) -> (StepContext, PredictArgs) {
    use crate::bundle::TrainedOn;
    use crate::data::meta::Part;

    let load = dir.join("load");
    std::fs::create_dir_all(&load).unwrap();
    let columns: Vec<String> = (0..N_FEATURES).map(|i| format!("c{i}")).collect();
    let values: Vec<f64> = (0..30 * N_FEATURES).map(|i| (i % 5) as f64).collect();
    let table = Table::new(columns.clone(), 30, values).unwrap();
    crate::data::parquet::write_parquet(&load.join("test.parquet"), &table).unwrap();
    Meta {
        format_version: Meta::FORMAT_VERSION,
        dataset: dataset.into(),
        source_format: "smd".into(),
        columns,
        target_dims: None,
        parts: vec![Part {
            name: dataset.into(),
            train_rows: 30,
            test_rows: 30,
        }],
        interpretation: Vec::new(),
    }
    .write(&load.join("meta.json"))
    .unwrap();
    let mut bundle = tiny_bundle().with_thresholds(Thresholds {
        epsilon: Some(5.0),
        chosen: Some("epsilon".into()),
        ..Thresholds::default()
    });
    bundle.manifest.dataset = TrainedOn {
        name: trained_on.into(),
        parts: vec![trained_on.into()],
    };
    bundle.save(&dir.join("model")).unwrap();
    let ctx = StepContext::for_dirs(dir.join("out"), &[("load", &load)]);
    let args = PredictArgs {
        model: Some(dir.join("model")),
        data: None,
        threshold: None,
        top_k: 1,
        allow_other_dataset: false,
    };
    (ctx, args)
}

#[test]
fn another_members_model_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, mut args) = setup_member(dir.path(), "machine-1-6", "machine-2-1");
    let err = run(&ctx, &args).unwrap_err().to_string();
    assert!(
        err.contains("trained on dataset `machine-2-1`")
            && err.contains("scores `machine-1-6`")
            && err.contains("--allow-other-dataset"),
        "{err}"
    );
    assert!(!dir.path().join("out/predictions.csv").exists());
    args.allow_other_dataset = true;
    run(&ctx, &args).unwrap();
    assert!(dir.path().join("out/predictions.csv").exists());
}

#[test]
fn the_members_own_model_or_an_unrecorded_one_scores() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, args) = setup_member(dir.path(), "machine-1-6", "machine-1-6");
    run(&ctx, &args).unwrap();
    // A bundle written before the dataset was recorded is not refused.
    let dir = tempfile::tempdir().unwrap();
    let (ctx, args) = setup_member(dir.path(), "machine-1-6", "");
    run(&ctx, &args).unwrap();
}
