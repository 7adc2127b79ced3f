//! The tables of `flow runs list` and `flow compare`: columns line up whatever the
//! lengths of what is in them, integers print as integers, and a comparison shows what
//! the runs were computed from.

mod common;

use common::pipeline;

/// The column where `header` starts in the first line, and the same offset in `line`.
fn column_of(text: &str, header: &str) -> usize {
    text.lines()
        .next()
        .unwrap()
        .find(header)
        .unwrap_or_else(|| panic!("no `{header}` in {text}"))
}

/// `runs list`: a long key value does not push the columns after it out of line, and a
/// metric that is an integer prints as one.
#[test]
fn runs_list_columns_line_up() {
    let p = pipeline();
    p.write("data/a-very-long-dataset-name.txt", "x\n");
    p.commit("data");
    p.run_ok(&["-P", "dataset=a-very-long-dataset-name", "-P", "epochs=198"]);
    p.run_ok(&[]);
    let out = p.flow(&["runs", "list"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let status = column_of(&out.stdout, "STATUS");
    for line in out.stdout.lines().skip(1) {
        assert_eq!(&line[status..status + 8], "FINISHED", "{}", out.stdout);
    }
    assert!(out.stdout.contains("epochs_seen=198 "), "{}", out.stdout);
    assert!(!out.stdout.contains("198.0"), "{}", out.stdout);
}

/// `compare`: names longer than 24 characters keep the values in line, differences are
/// marked, and two runs of different datasets say so through their upstream params.
#[test]
fn compare_lines_up_and_shows_the_upstream_difference() {
    let p = pipeline();
    let a = p
        .run_ok(&["-P", "train.note=a-note-whose-value-is-rather-long"])
        .run_id("train");
    let b = p.run_ok(&["-P", "dataset=b"]).run_id("train");
    let out = p.flow(&["compare", &a, &b]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let first = column_of(&out.stdout, &a[..12]);
    for line in out.stdout.lines().skip(1) {
        assert!(
            line.len() > first && line.as_bytes()[first - 1] == b' ',
            "values out of line:\n{}",
            out.stdout
        );
    }
    let dataset = out
        .stdout
        .lines()
        .find(|line| line.contains("param.load.dataset"))
        .unwrap_or_else(|| panic!("no upstream params:\n{}", out.stdout));
    assert!(dataset.starts_with('*'), "{dataset}");
    assert!(
        dataset.contains(" a ") && dataset.trim_end().ends_with('b'),
        "{dataset}"
    );
    let epochs = out
        .stdout
        .lines()
        .find(|line| line.contains("metric.epochs_seen"))
        .unwrap();
    assert_eq!(
        epochs
            .split_whitespace()
            .filter(|word| *word == "2")
            .count(),
        2,
        "{epochs}"
    );
}
