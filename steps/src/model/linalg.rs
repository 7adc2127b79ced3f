//! A bounds-checked front to the `gemm` crate (the GEMM candle itself uses on CPU), for the
//! fused kernels that multiply inside their own loops, and the slice access they share.

use candle_core::{CpuStorage, Layout};

/// The f32 values of a contiguous argument of custom op `op`; an error names the argument.
pub fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("{op}: `{what}` must be contiguous"),
    }
}

/// Largest absolute difference of two tensors: how the fused ops' tests compare them
/// with plain candle.
#[cfg(test)]
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.flatten_all())
        .and_then(|d| d.max(0))
        .and_then(|d| d.to_scalar())
        .expect("comparable tensors")
}

/// A read-only strided matrix view: element (i, j) is `data[i * row_stride + j * col_stride]`.
#[derive(Clone, Copy)]
pub struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Mat<'a> {
    /// Panics when the view reaches past `data` (a programming error in a kernel).
    pub fn new(
        data: &'a [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> Mat<'a> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
            assert!(
                last < data.len(),
                "matrix view {rows}x{cols} past the end of {} values",
                data.len()
            );
        }
        Mat {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }
}

/// `c = a b` (or `c += a b` when `accumulate`), `c` row-major with `c_row_stride`, single
/// threaded: callers parallelise over independent work themselves.
pub fn gemm(a: Mat<'_>, b: Mat<'_>, c: &mut [f32], c_row_stride: usize, accumulate: bool) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * c_row_stride + n <= c.len(),
        "gemm: output view past the end"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[i * c_row_stride..][..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: every index the kernel touches lies inside the views checked above
    // (Mat::new for the inputs, the assertion for `c`), and `c` is borrowed mutably.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            c_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_products_match_the_definition() {
        // a = [[1,2,3],[4,5,6]] stored transposed (column-major), b = [[1,0],[0,1],[1,1]].
        let a_t = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0];
        let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
        let mut c = vec![10.0; 4];
        gemm(
            Mat::new(&a_t, 2, 3, 1, 2),
            Mat::new(&b, 3, 2, 2, 1),
            &mut c,
            2,
            false,
        );
        assert_eq!(c, vec![4.0, 5.0, 10.0, 11.0]);
        gemm(
            Mat::new(&a_t, 2, 3, 1, 2),
            Mat::new(&b, 3, 2, 2, 1),
            &mut c,
            2,
            true,
        );
        assert_eq!(c, vec![8.0, 10.0, 20.0, 22.0]);
    }
}
