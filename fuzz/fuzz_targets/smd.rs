//! An SMD machine (train, test, test_label and interpretation_label text of `m-1`,
//! separated by `@@` lines) -> `smd::load` and `members`.
#![no_main]

use flow_fuzz::data::smd;
use flow_fuzz::{split_parts, write_files};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts = split_parts(data, 4);
    let dir = write_files(&[
        ("train/m-1.txt", parts[0]),
        ("test/m-1.txt", parts[1]),
        ("test_label/m-1.txt", parts[2]),
        ("interpretation_label/m-1.txt", parts[3]),
    ]);
    if let Ok(loaded) = smd::load(dir, "M-1") {
        assert_eq!(loaded.labels.len(), loaded.test.n_rows);
        let n_cols = loaded.test.n_cols();
        for segment in &loaded.meta.interpretation {
            assert!(segment.start < segment.end && segment.end <= loaded.test.n_rows);
            assert!(segment.dims.iter().all(|&dim| dim < n_cols));
        }
    }
    let _ = smd::members(dir, "SMD");
});
