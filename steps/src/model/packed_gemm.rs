//! `c += a b` against a right-hand side packed into column panels. The GRU recurrence
//! multiplies by the same W_hh (transposed forward, as is backward) at each of its W steps;
//! the general `gemm` crate repacks that matrix on every call and runs these small products
//! well below the core's FMA rate. Packed once into panels that an AVX-512 register block
//! streams from L1, the step's product runs near it. The same kernel takes the weight
//! gradients (`a` a transposed view, `b` the activations packed per call). Without AVX-512 it
//! is the plain [`gemm`].

use super::linalg::{gemm, Mat, MatMut};
use super::simd::{level, Level};

/// Columns per packed panel: two 16-lane registers.
const PANEL: usize = 32;
/// Rows of `a` per register block: 8 x 2 accumulators, within AVX-512's 32 registers.
const BLOCK_ROWS: usize = 8;

/// `b` [k, n] as ceil(n / 32) panels of [k, 32], zero-padded past column n; on CPUs without
/// AVX-512, the row-major values instead.
pub struct PackedRhs {
    k: usize,
    n: usize,
    panels: Vec<f32>,
    plain: Vec<f32>,
}

impl PackedRhs {
    pub fn new(b: Mat<'_>) -> PackedRhs {
        let (k, n) = b.shape();
        let (mut panels, mut plain) = (Vec::new(), Vec::new());
        if level() == Level::Avx512 {
            let (rs, cs) = b.strides();
            let values = b.data();
            panels = vec![0f32; n.div_ceil(PANEL) * k * PANEL];
            for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
                let j0 = p * PANEL;
                let width = (n - j0).min(PANEL);
                for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                    let first = kk * rs + j0 * cs;
                    if cs == 1 {
                        row[..width].copy_from_slice(&values[first..first + width]);
                    } else {
                        for (jj, v) in row[..width].iter_mut().enumerate() {
                            *v = values[first + jj * cs];
                        }
                    }
                }
            }
        } else {
            plain = vec![0f32; k * n];
            MatMut::rows(&mut plain, k, n, n).copy_from(b);
        }
        PackedRhs {
            k,
            n,
            panels,
            plain,
        }
    }
}

/// `c += a b`, single threaded; `c` row-major (unit column stride), `a` any view.
pub fn gemm_packed(a: Mat<'_>, b: &PackedRhs, c: MatMut<'_>) {
    let ((m, k), (c_rows, c_cols)) = (a.shape(), c.shape());
    assert_eq!(k, b.k, "gemm_packed: inner dimensions differ");
    assert!(
        c_rows == m && c_cols == b.n,
        "gemm_packed: output is {c_rows}x{c_cols}, the product {m}x{}",
        b.n
    );
    if m == 0 || k == 0 || b.n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if b.plain.is_empty() {
        assert_eq!(
            c.strides().1,
            1,
            "gemm_packed: `c` must have unit column stride"
        );
        let (a_strides, ldc, n) = (a.strides(), c.strides().0, b.n);
        let (a, c) = (a.data(), c.into_data());
        // SAFETY: panels exist only where the CPU has AVX-512F (`PackedRhs::new`);
        // `avx512::gemm` reads a[i * rs + kk * cs] for i < m, kk < k and writes
        // c[i * ldc + j] for j < n only, inside the views Mat::new and MatMut::new checked,
        // and the panels hold ceil(n / 32) * k * 32 values.
        unsafe { avx512::gemm(m, k, n, a, a_strides, &b.panels, c, ldc) };
        return;
    }
    gemm(a, Mat::rows(&b.plain, b.k, b.n, b.n), c, true);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{BLOCK_ROWS, PANEL};
    use std::arch::x86_64::*;

    /// Depth per pass: a [256, 32] panel slice (32 KB) stays in L1.
    const DEPTH: usize = 256;
    /// Rows of `a` per pass over the panels: their [256, 256] slice stays in L2.
    const CHUNK_ROWS: usize = 256;

    /// Depth slices, row chunks, panels, then register blocks of rows, each block adding its
    /// [8, 32] product over the slice into `c`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        (rs, cs): (usize, usize),
        panels: &[f32],
        c: &mut [f32],
        ldc: usize,
    ) {
        for k0 in (0..k).step_by(DEPTH) {
            let depth = (k - k0).min(DEPTH);
            for i0 in (0..m).step_by(CHUNK_ROWS) {
                let rows_end = (i0 + CHUNK_ROWS).min(m);
                for p in 0..n.div_ceil(PANEL) {
                    let j0 = p * PANEL;
                    let width = (n - j0).min(PANEL);
                    let masks = (lanes(width.min(16)), lanes(width.saturating_sub(16)));
                    let panel = panels[(p * k + k0) * PANEL..].as_ptr();
                    for i in (i0..rows_end).step_by(BLOCK_ROWS) {
                        let a = a[i * rs + k0 * cs..].as_ptr();
                        let c = c[i * ldc + j0..].as_mut_ptr();
                        let strides = (rs, cs, ldc);
                        // SAFETY: as the caller's; rows i..i + block, depth k0..k0 + depth.
                        unsafe {
                            match (rows_end - i).min(BLOCK_ROWS) {
                                8 => block::<8>(a, depth, panel, c, strides, masks),
                                7 => block::<7>(a, depth, panel, c, strides, masks),
                                6 => block::<6>(a, depth, panel, c, strides, masks),
                                5 => block::<5>(a, depth, panel, c, strides, masks),
                                4 => block::<4>(a, depth, panel, c, strides, masks),
                                3 => block::<3>(a, depth, panel, c, strides, masks),
                                2 => block::<2>(a, depth, panel, c, strides, masks),
                                _ => block::<1>(a, depth, panel, c, strides, masks),
                            }
                        }
                    }
                }
            }
        }
    }

    /// The first `width` of 16 lanes.
    fn lanes(width: usize) -> __mmask16 {
        ((1u32 << width) - 1) as __mmask16
    }

    /// `c[..M, ..32] += a[..M, ..depth] panel[..depth]`, the columns past the masks left
    /// untouched. `a`'s element (i, kk) is at `i * rs + kk * cs`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const M: usize>(
        a: *const f32,
        depth: usize,
        panel: *const f32,
        c: *mut f32,
        (rs, cs, ldc): (usize, usize, usize),
        (mask0, mask1): (__mmask16, __mmask16),
    ) {
        let mut lo = [_mm512_setzero_ps(); M];
        let mut hi = [_mm512_setzero_ps(); M];
        for kk in 0..depth {
            // SAFETY: kk < depth, i < M: inside the panel and a's view (the caller's bounds).
            unsafe {
                let b0 = _mm512_loadu_ps(panel.add(kk * PANEL));
                let b1 = _mm512_loadu_ps(panel.add(kk * PANEL + 16));
                let a = a.add(kk * cs);
                for i in 0..M {
                    let ai = _mm512_set1_ps(*a.add(i * rs));
                    lo[i] = _mm512_fmadd_ps(ai, b0, lo[i]);
                    hi[i] = _mm512_fmadd_ps(ai, b1, hi[i]);
                }
            }
        }
        for i in 0..M {
            // SAFETY: masked lanes are neither read nor written (no fault past the row).
            unsafe {
                let row = c.add(i * ldc);
                let v0 = _mm512_maskz_loadu_ps(mask0, row);
                _mm512_mask_storeu_ps(row, mask0, _mm512_add_ps(v0, lo[i]));
                if mask1 != 0 {
                    let v1 = _mm512_maskz_loadu_ps(mask1, row.add(16));
                    _mm512_mask_storeu_ps(row.add(16), mask1, _mm512_add_ps(v1, hi[i]));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `len` values cycling through `modulo` levels around zero, `scale` apart.
    fn pattern(len: usize, step: usize, modulo: usize, scale: f32) -> Vec<f32> {
        let centre = (modulo / 2) as f32;
        (0..len)
            .map(|i| ((i * step % modulo) as f32 - centre) * scale)
            .collect()
    }

    /// Every shape class: full and partial row blocks, full and partial panels (one or
    /// both halves), strided rows in `a` and `c`; against the general GEMM.
    #[test]
    fn packed_products_match_the_general_gemm() {
        for (m, k, n) in [
            (16, 150, 450),
            (13, 150, 450),
            (5, 450, 150),
            (1, 7, 3),
            (9, 20, 17),
            (8, 1, 32),
            (3, 600, 40),
        ] {
            let lda = k + 3;
            let ldc = n + 5;
            let a = pattern(m * lda, 7, 23, 0.1);
            let b = pattern(k * n, 5, 19, 0.1);
            let start: Vec<f32> = (0..m * ldc).map(|i| (i % 5) as f32).collect();
            let mut expected = start.clone();
            gemm(
                Mat::rows(&a, m, k, lda),
                Mat::rows(&b, k, n, n),
                MatMut::rows(&mut expected, m, n, ldc),
                true,
            );
            let packed = PackedRhs::new(Mat::rows(&b, k, n, n));
            let mut got = start.clone();
            gemm_packed(
                Mat::rows(&a, m, k, lda),
                &packed,
                MatMut::rows(&mut got, m, n, ldc),
            );
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                let (row, col) = (i / ldc, i % ldc);
                if col >= n {
                    assert_eq!(
                        *g, start[i],
                        "padding ({row}, {col}) of {m}x{k}x{n} written"
                    );
                } else {
                    assert!(
                        (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                        "({row}, {col}) of {m}x{k}x{n}: {g} vs {e}"
                    );
                }
            }
        }
    }

    /// A weight gradient's shape: `a` a transposed view ([450, n] over [n, 450] values),
    /// depth n past one slice, `b` activations packed per call.
    #[test]
    fn a_transposed_left_side_over_a_long_depth_matches_the_general_gemm() {
        let (n, rows, cols) = (700, 45, 15);
        let g = pattern(n * rows, 7, 23, 0.01);
        let x = pattern(n * cols, 5, 19, 0.01);
        let a = Mat::rows(&g, n, rows, rows).t();
        let mut expected = vec![0f32; rows * cols];
        gemm(
            a,
            Mat::rows(&x, n, cols, cols),
            MatMut::rows(&mut expected, rows, cols, cols),
            false,
        );
        let mut got = vec![0f32; rows * cols];
        gemm_packed(
            a,
            &PackedRhs::new(Mat::rows(&x, n, cols, cols)),
            MatMut::rows(&mut got, rows, cols, cols),
        );
        for (g, e) in got.iter().zip(&expected) {
            assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{g} vs {e}");
        }
    }

    /// A transposed view (W_hh^T as the recurrence uses it) packs as its values.
    #[test]
    fn a_transposed_view_packs_its_values() {
        let w: Vec<f32> = (0..6).map(|i| i as f32).collect(); // [[0,1],[2,3],[4,5]]
        let packed = PackedRhs::new(Mat::rows(&w, 3, 2, 2).t()); // [[0,2,4],[1,3,5]]
        let mut c = vec![0f32; 3];
        gemm_packed(
            Mat::rows(&[1.0, 10.0], 1, 2, 2),
            &packed,
            MatMut::rows(&mut c, 1, 3, 3),
        );
        assert_eq!(c, vec![10.0, 32.0, 54.0]);
    }
}
