//! A `POST /invocations` body (first byte: which Content-Type) -> the JSON and CSV
//! decoders, and the same bytes as a `POST /feedback` body: an error or rows of the
//! model's width, never a panic.
#![no_main]

use flow_fuzz::serve::feedback::parse_feedback;
use flow_fuzz::serve::request::{body_format, parse_invocation};
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/json"),
    Some("text/csv"),
    Some("application/json; format=pandas-split"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let columns: Vec<String> = ["f0", "f1", "f2"].map(String::from).to_vec();
    let content_type = CONTENT_TYPES[usize::from(selector) % CONTENT_TYPES.len()];
    if let Ok(format) = body_format(content_type, body) {
        if let Ok(rows) = parse_invocation(format, body, &columns) {
            assert_eq!(rows.values.len(), rows.n_rows * columns.len());
            if rows.check_rows(1).is_ok() && rows.stream.series.is_none() {
                assert!(rows.n_rows > 1);
            }
        }
    }
    let _ = parse_feedback(body);
});
