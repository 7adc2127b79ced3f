//! A telemanom directory (labels CSV, then train and test `.npy` of channel `X-1`,
//! separated by `@@` lines) -> `telemanom::load` and `members` for every kind of value.
#![no_main]

use flow_fuzz::data::telemanom;
use flow_fuzz::{split_parts, write_files};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let parts = split_parts(data, 3);
    let dir = write_files(&[
        (telemanom::LABELS_FILE, parts[0]),
        ("train/X-1.npy", parts[1]),
        ("test/X-1.npy", parts[2]),
    ]);
    for dataset in ["X-1", "x-1", "MSL", "smap", "MSL/channels", "X-2"] {
        if let Ok(loaded) = telemanom::load(dir, dataset) {
            assert_eq!(loaded.labels.len(), loaded.test.n_rows);
            assert!(loaded.train.n_rows > 0 && loaded.test.n_rows > 0);
        }
        let _ = telemanom::members(dir, dataset);
    }
});
