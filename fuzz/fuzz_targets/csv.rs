//! Text -> the generic CSV reader (header, numbers, an optional `label` column).
#![no_main]

use std::path::Path;

use flow_fuzz::data::table::parse_csv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("test.csv");
    let Ok(table) = parse_csv(text, path) else {
        return;
    };
    assert_eq!(table.values.len(), table.n_rows * table.n_cols());
    if let Ok((features, Some(labels))) = table.split_labels(path) {
        assert_eq!(labels.len(), features.n_rows);
    }
});
