//! Bytes -> the `.npy` reader, plain and as a gzip stream: no panic, and memory bounded by
//! the data present (libFuzzer's -malloc_limit_mb catches a header-sized allocation).
#![no_main]

use flow_fuzz::data::npy::read_npy_from;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(array) = read_npy_from(data) {
        assert_eq!(array.values.len(), array.n_rows * array.n_cols);
    }
    let _ = read_npy_from(flate2::read::MultiGzDecoder::new(data));
});
