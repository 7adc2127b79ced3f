//! `c += a b` against a right-hand side packed once. The GRU recurrence multiplies by the
//! same W_hh (transposed forward, as is backward) at each of its W steps; the general `gemm`
//! crate repacks that matrix on every call and runs small products below its large-matrix
//! rate. Packed once into column panels that an AVX-512 register block streams from L1, the
//! step's product runs near the core's FMA peak. Without AVX-512 it is the plain [`gemm`].

use super::linalg::{gemm, Mat, MatMut};

/// Columns per packed panel: two 16-lane registers.
const PANEL: usize = 32;
/// Rows of `a` per register block: 8 x 2 accumulators, within AVX-512's 32 registers.
const BLOCK_ROWS: usize = 8;

/// `b` [k, n] stored as ceil(n / 32) panels of [k, 32], zero-padded past column n, plus the
/// row-major original for CPUs without AVX-512.
pub struct PackedRhs {
    k: usize,
    n: usize,
    panels: Vec<f32>,
    plain: Vec<f32>,
}

impl PackedRhs {
    pub fn new(b: Mat<'_>) -> PackedRhs {
        let (k, n) = b.shape();
        let mut plain = vec![0f32; k * n];
        MatMut::rows(&mut plain, k, n, n).copy_from(b);
        let mut panels = vec![0f32; n.div_ceil(PANEL) * k * PANEL];
        for (p, panel) in panels.chunks_exact_mut(k * PANEL).enumerate() {
            for (kk, row) in panel.chunks_exact_mut(PANEL).enumerate() {
                let cols = &plain[kk * n..][..n];
                let j0 = p * PANEL;
                let width = (n - j0).min(PANEL);
                row[..width].copy_from_slice(&cols[j0..j0 + width]);
            }
        }
        PackedRhs {
            k,
            n,
            panels,
            plain,
        }
    }
}

/// `c += a b`, single threaded; `a` and `c` row-major (unit column stride).
pub fn gemm_packed(a: Mat<'_>, b: &PackedRhs, c: MatMut<'_>) {
    let ((m, k), (c_rows, c_cols)) = (a.shape(), c.shape());
    assert_eq!(k, b.k, "gemm_packed: inner dimensions differ");
    assert!(
        c_rows == m && c_cols == b.n,
        "gemm_packed: output is {c_rows}x{c_cols}, the product {m}x{}",
        b.n
    );
    #[cfg(target_arch = "x86_64")]
    if super::simd::level() == super::simd::Level::Avx512
        && a.strides().1 == 1
        && c.strides().1 == 1
    {
        let (lda, ldc, n) = (a.strides().0, c.strides().0, b.n);
        let (a, c) = (a.data(), c.into_data());
        // SAFETY: the CPU has AVX-512F; `avx512::gemm` reads a[i * lda + kk] for i < m,
        // kk < k and writes c[i * ldc + j] for j < n only, inside the views Mat::new and
        // MatMut::new checked, and the panels hold ceil(n / 32) * k * 32 values.
        unsafe { avx512::gemm(m, k, n, a, lda, &b.panels, c, ldc) };
        return;
    }
    gemm(a, Mat::rows(&b.plain, b.k, b.n, b.n), c, true);
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{BLOCK_ROWS, PANEL};
    use std::arch::x86_64::*;

    /// Rows of `a` per pass over the panels: [256, k] stays in L2 while the panels go by.
    const CHUNK_ROWS: usize = 256;

    /// Row chunks, then panels (one [k, 32] panel stays in L1 while the chunk's row blocks
    /// pass over it), then row blocks.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        m: usize,
        k: usize,
        n: usize,
        a: &[f32],
        lda: usize,
        panels: &[f32],
        c: &mut [f32],
        ldc: usize,
    ) {
        for chunk in (0..m).step_by(CHUNK_ROWS) {
            let chunk_end = (chunk + CHUNK_ROWS).min(m);
            for p in 0..n.div_ceil(PANEL) {
                // SAFETY: as the caller's.
                unsafe { panel_pass(chunk, chunk_end, p, k, n, a, lda, panels, c, ldc) };
            }
        }
    }

    /// Rows `i0..m` of `c`'s columns in panel `p`.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn panel_pass(
        i0: usize,
        m: usize,
        p: usize,
        k: usize,
        n: usize,
        a: &[f32],
        lda: usize,
        panels: &[f32],
        c: &mut [f32],
        ldc: usize,
    ) {
        {
            let j0 = p * PANEL;
            let width = (n - j0).min(PANEL);
            let masks = (lanes(width.min(16)), lanes(width.saturating_sub(16)));
            let panel = panels[p * k * PANEL..].as_ptr();
            let mut i = i0;
            while i < m {
                let a = a[i * lda..].as_ptr();
                let c = c[i * ldc + j0..].as_mut_ptr();
                // SAFETY: as the caller's; rows i..i + block of a and c lie in the views.
                unsafe {
                    match (m - i).min(BLOCK_ROWS) {
                        8 => block::<8>(a, lda, k, panel, c, ldc, masks),
                        7 => block::<7>(a, lda, k, panel, c, ldc, masks),
                        6 => block::<6>(a, lda, k, panel, c, ldc, masks),
                        5 => block::<5>(a, lda, k, panel, c, ldc, masks),
                        4 => block::<4>(a, lda, k, panel, c, ldc, masks),
                        3 => block::<3>(a, lda, k, panel, c, ldc, masks),
                        2 => block::<2>(a, lda, k, panel, c, ldc, masks),
                        _ => block::<1>(a, lda, k, panel, c, ldc, masks),
                    }
                }
                i += BLOCK_ROWS;
            }
        }
    }

    /// The first `width` of 16 lanes.
    fn lanes(width: usize) -> __mmask16 {
        ((1u32 << width) - 1) as __mmask16
    }

    /// `c[..M, ..32] += a[..M, ..k] panel`, the columns past the masks left untouched.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn block<const M: usize>(
        a: *const f32,
        lda: usize,
        k: usize,
        panel: *const f32,
        c: *mut f32,
        ldc: usize,
        (mask0, mask1): (__mmask16, __mmask16),
    ) {
        let mut lo = [_mm512_setzero_ps(); M];
        let mut hi = [_mm512_setzero_ps(); M];
        for kk in 0..k {
            // SAFETY: kk < k, i < M: inside the panel and a's rows (the caller's bounds).
            unsafe {
                let b0 = _mm512_loadu_ps(panel.add(kk * PANEL));
                let b1 = _mm512_loadu_ps(panel.add(kk * PANEL + 16));
                for i in 0..M {
                    let ai = _mm512_set1_ps(*a.add(i * lda + kk));
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
        ] {
            let lda = k + 3;
            let ldc = n + 5;
            let a: Vec<f32> = (0..m * lda)
                .map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.1)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 19) as f32 - 9.0) * 0.1)
                .collect();
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
