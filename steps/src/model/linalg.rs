//! A bounds-checked front to the `gemm` crate (the GEMM candle itself uses on CPU), for the
//! fused kernels that multiply inside their own loops, and the slice access they share.

use candle_core::{CpuStorage, Layout, Storage, StorageRef, Tensor};

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

/// The f32 values of a contiguous CPU tensor, read in place; holds the tensor's read lock.
pub struct Values<'a> {
    storage: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl Values<'_> {
    pub fn get(&self) -> &[f32] {
        match &*self.storage {
            Storage::Cpu(CpuStorage::F32(values)) => &values[self.start..self.end],
            _ => unreachable!("checked by `values`"),
        }
    }
}

/// Reads a contiguous f32 CPU tensor (an argument or result of custom op `op`) without
/// copying it; an error names the tensor.
pub fn values<'a>(tensor: &'a Tensor, op: &str, what: &str) -> candle_core::Result<Values<'a>> {
    let (storage, layout) = tensor.storage_and_layout();
    let offsets = layout.contiguous_offsets();
    match (&*storage, offsets) {
        (Storage::Cpu(CpuStorage::F32(_)), Some((start, end))) => Ok(Values {
            storage,
            start,
            end,
        }),
        _ => candle_core::bail!("{op}: `{what}` must be a contiguous f32 CPU tensor"),
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

    /// A row-major view with `row_stride` between rows.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Mat<'a> {
        Mat::new(data, rows, cols, row_stride, 1)
    }

    /// (rows, columns).
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// (row stride, column stride).
    pub fn strides(&self) -> (usize, usize) {
        (self.row_stride, self.col_stride)
    }

    /// The values the view indexes into.
    pub fn data(self) -> &'a [f32] {
        self.data
    }

    /// The transpose, as a view of the same values.
    pub fn t(self) -> Mat<'a> {
        Mat {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }
}

/// A writable strided matrix view, as [`Mat`].
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatMut<'a> {
    /// Panics when the view reaches past `data` (a programming error in a kernel).
    pub fn new(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        row_stride: usize,
        col_stride: usize,
    ) -> MatMut<'a> {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * row_stride + (cols - 1) * col_stride;
            assert!(
                last < data.len(),
                "matrix view {rows}x{cols} past the end of {} values",
                data.len()
            );
        }
        MatMut {
            data,
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }

    /// A row-major view with `row_stride` between rows.
    pub fn rows(data: &'a mut [f32], rows: usize, cols: usize, row_stride: usize) -> MatMut<'a> {
        MatMut::new(data, rows, cols, row_stride, 1)
    }

    /// (rows, columns).
    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// (row stride, column stride).
    pub fn strides(&self) -> (usize, usize) {
        (self.row_stride, self.col_stride)
    }

    /// The values the view indexes into.
    pub fn into_data(self) -> &'a mut [f32] {
        self.data
    }

    /// The same view, borrowed for a shorter time.
    pub fn reborrow(&mut self) -> MatMut<'_> {
        MatMut {
            data: &mut *self.data,
            rows: self.rows,
            cols: self.cols,
            row_stride: self.row_stride,
            col_stride: self.col_stride,
        }
    }

    /// Copies `src` (of the same shape) into the view.
    pub fn copy_from(self, src: Mat<'_>) {
        assert!(
            src.rows == self.rows && src.cols == self.cols,
            "copy of a {}x{} matrix into a {}x{} view",
            src.rows,
            src.cols,
            self.rows,
            self.cols
        );
        for i in 0..self.rows {
            for j in 0..self.cols {
                self.data[i * self.row_stride + j * self.col_stride] =
                    src.data[i * src.row_stride + j * src.col_stride];
            }
        }
    }
}

/// `c = a b` (or `c += a b` when `accumulate`), single threaded: callers parallelise over
/// independent work themselves.
pub fn gemm(a: Mat<'_>, b: Mat<'_>, c: MatMut<'_>, accumulate: bool) {
    assert_eq!(a.cols, b.rows, "gemm: inner dimensions differ");
    assert!(
        c.rows == a.rows && c.cols == b.cols,
        "gemm: output is {}x{}, the product {}x{}",
        c.rows,
        c.cols,
        a.rows,
        b.cols
    );
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c.data[i * c.row_stride + j * c.col_stride] = 0.0;
                }
            }
        }
        return;
    }
    // SAFETY: every index the kernel touches lies inside the views checked by Mat::new and
    // MatMut::new, and `c` is borrowed mutably.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.data.as_mut_ptr(),
            c.col_stride as isize,
            c.row_stride as isize,
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
            MatMut::rows(&mut c, 2, 2, 2),
            false,
        );
        assert_eq!(c, vec![4.0, 5.0, 10.0, 11.0]);
        gemm(
            Mat::new(&a_t, 2, 3, 1, 2),
            Mat::new(&b, 3, 2, 2, 1),
            MatMut::rows(&mut c, 2, 2, 2),
            true,
        );
        assert_eq!(c, vec![8.0, 10.0, 20.0, 22.0]);
        // Written transposed (column-major): c^T.
        gemm(
            Mat::new(&a_t, 2, 3, 1, 2),
            Mat::new(&b, 3, 2, 2, 1),
            MatMut::new(&mut c, 2, 2, 1, 2),
            false,
        );
        assert_eq!(c, vec![4.0, 10.0, 5.0, 11.0]);
    }
}
