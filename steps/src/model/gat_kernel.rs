//! GATv2's pairwise attention logits for one graph, forward and backward, without the
//! pairwise tensor.
//!
//! GATv2 scores a pair of nodes as e_ij = a^T LeakyReLU(L [v_i || v_j] + b). Since
//! L [v_i || v_j] + b = (L1 v_i + b) + L2 v_j = P_i + Q_j, the per-node projections P and Q
//! are ordinary matmuls, and e_ij = sum_d a_d LeakyReLU(P_id + Q_jd). The naive form
//! materialises [B, N, N, E] (for MSL's feature graph 256*55*55*200 floats, 620 MB, plus its
//! gradient); these kernels work on one graph's [N, E] projections and [N, N] logits.
//!
//! With LeakyReLU(s) = alpha s + (1 - alpha) relu(s) the linear part separates:
//! e_ij = alpha (a.P_i + a.Q_j) + sum_d (1 - alpha) a_d relu(P_id + Q_jd), so the pairwise
//! loop is an add, a max and a multiply-add per lane, for any alpha.
//!
//! Rows of P and Q are `stride` floats apart, `stride` a multiple of 16 whose lanes past the
//! embedding are zero (and `a` zero there too): they add relu(0) * 0 to the logits, and the
//! kernels never run a scalar tail.

use super::simd::{self, multiversion};

/// Lanes the rows are padded to: one AVX-512 register.
pub const LANES: usize = 16;

/// The padded row length for an embedding of `embed` values.
pub fn padded(embed: usize) -> usize {
    embed.next_multiple_of(LANES)
}

multiversion! {
    /// e[i * nodes + j] = sum_d a_d LeakyReLU(p_id + q_jd) for every pair of `nodes` nodes.
    ///
    /// Lanes run over j (Q is transposed first), so each logit is a sum in one lane and
    /// needs no horizontal reduction; tiles of 2 rows x 64, 32 or 16 columns keep their
    /// sums in registers across the whole embedding.
    pub fn logits(p: &[f32], q: &[f32], a: &[f32], alpha: f32, nodes: usize, stride: usize, e: &mut [f32]) {
        let (p, q, a) = (&p[..nodes * stride], &q[..nodes * stride], &a[..stride]);
        let cols = nodes.next_multiple_of(LANES);
        let mut q_t = vec![0f32; stride * cols];
        for (j, row) in q.chunks_exact(stride).enumerate() {
            for (d, v) in row.iter().enumerate() {
                q_t[d * cols + j] = *v;
            }
        }
        let relu_a: Vec<f32> = a.iter().map(|a| (1.0 - alpha) * a).collect();
        let linear = |rows: &[f32], node: usize| alpha * simd::dot(&rows[node * stride..][..stride], a);
        let q_linear: Vec<f32> = (0..nodes).map(|j| linear(q, j)).collect();
        let p_linear: Vec<f32> = (0..nodes).map(|i| linear(p, i)).collect();
        let tiles = ForwardTiles { p, q_t: &q_t, relu_a: &relu_a, stride, cols, nodes, p_linear: &p_linear, q_linear: &q_linear };
        let mut i = 0;
        while i < nodes {
            let rows = (nodes - i).min(2);
            let mut j = 0;
            while j < nodes {
                let width = match cols - j {
                    left if left >= 64 => 64,
                    left if left >= 32 => 32,
                    _ => 16,
                };
                match (rows, width) {
                    (2, 64) => tiles.emit::<2, 64>(i, j, e),
                    (2, 32) => tiles.emit::<2, 32>(i, j, e),
                    (2, _) => tiles.emit::<2, 16>(i, j, e),
                    (_, 64) => tiles.emit::<1, 64>(i, j, e),
                    (_, 32) => tiles.emit::<1, 32>(i, j, e),
                    _ => tiles.emit::<1, 16>(i, j, e),
                }
                j += width;
            }
            i += rows;
        }
    }
}

/// The pairwise part of [`logits`] for rows `i..i + R`, columns `j..j + N`.
struct ForwardTiles<'a> {
    p: &'a [f32],
    /// Q transposed, [stride, cols].
    q_t: &'a [f32],
    /// (1 - alpha) a.
    relu_a: &'a [f32],
    stride: usize,
    cols: usize,
    nodes: usize,
    /// alpha a.P_i and alpha a.Q_j.
    p_linear: &'a [f32],
    q_linear: &'a [f32],
}

impl ForwardTiles<'_> {
    /// Writes the logits of rows `i..i + R`, columns `j..j + N` (those below `nodes`).
    #[inline(always)]
    fn emit<const R: usize, const N: usize>(&self, i: usize, j: usize, e: &mut [f32]) {
        let sums = self.run::<R, N>(i, j);
        let n = self.nodes;
        for (r, sums) in sums.iter().enumerate() {
            let e_row = &mut e[(i + r) * n..][..n];
            for (l, sum) in sums.iter().enumerate().take(n.saturating_sub(j)) {
                e_row[j + l] = self.p_linear[i + r] + self.q_linear[j + l] + sum;
            }
        }
    }

    #[inline(always)]
    fn run<const R: usize, const N: usize>(&self, i: usize, j: usize) -> [[f32; N]; R] {
        let mut acc = [[0f32; N]; R];
        for d in 0..self.stride {
            let a = self.relu_a[d];
            let q: &[f32; N] = self.q_t[d * self.cols + j..][..N].try_into().expect("tile");
            for (r, acc) in acc.iter_mut().enumerate() {
                let p = self.p[(i + r) * self.stride + d];
                for l in 0..N {
                    let s = p + q[l];
                    acc[l] += a * if s > 0.0 { s } else { 0.0 };
                }
            }
        }
        acc
    }
}

multiversion! {
    /// Given g = dLoss/de [nodes, nodes], writes dP and dQ ([nodes, stride], overwritten) and
    /// adds to da ([stride]):
    /// dP_id = a_d sum_j g_ij (alpha + (1 - alpha) [s_ijd > 0]), dQ_jd likewise over i, and
    /// da_d = sum_ij g_ij LeakyReLU(s_ijd), with s_ijd = P_id + Q_jd.
    ///
    /// The pairwise sums run in tiles of 64, 32 or 16 lanes so that node i's dP and da
    /// partial sums stay in registers across all j; only dQ_j goes through memory (L1).
    pub fn logits_backward(
        p: &[f32],
        q: &[f32],
        a: &[f32],
        g: &[f32],
        alpha: f32,
        nodes: usize,
        stride: usize,
        dp: &mut [f32],
        dq: &mut [f32],
        da: &mut [f32],
    ) {
        let (p, q, a, g) = (&p[..nodes * stride], &q[..nodes * stride], &a[..stride], &g[..nodes * nodes]);
        let (dp, dq, da) = (&mut dp[..nodes * stride], &mut dq[..nodes * stride], &mut da[..stride]);
        dp.fill(0.0);
        dq.fill(0.0);
        // sum_ij g_ij relu(s_ijd) lands in da_relu; dp and dq first hold sum g [s > 0].
        let mut da_relu = vec![0f32; stride];
        let mut start = 0;
        while start < stride {
            let width = match stride - start {
                left if left >= 64 => 64,
                left if left >= 32 => 32,
                _ => 16,
            };
            let tile = Tile { nodes, stride, start };
            match width {
                64 => tile.run::<64>(p, q, g, dp, dq, &mut da_relu),
                32 => tile.run::<32>(p, q, g, dp, dq, &mut da_relu),
                _ => tile.run::<16>(p, q, g, dp, dq, &mut da_relu),
            }
            start += width;
        }
        // The linear part: row sums of g for P, column sums for Q.
        let row_sums: Vec<f32> = g.chunks_exact(nodes.max(1)).map(simd::sum).collect();
        let mut col_sums = vec![0f32; nodes];
        for row in g.chunks_exact(nodes.max(1)) {
            col_sums.iter_mut().zip(row).for_each(|(acc, v)| *acc += v);
        }
        for (grads, rows, sums) in [(&mut *dp, p, &row_sums), (&mut *dq, q, &col_sums)] {
            for ((grad, row), &sum) in grads.chunks_exact_mut(stride).zip(rows.chunks_exact(stride)).zip(sums.iter()) {
                for d in 0..stride {
                    da[d] += alpha * sum * row[d];
                    grad[d] = a[d] * (alpha * sum + (1.0 - alpha) * grad[d]);
                }
            }
        }
        for (da, relu) in da.iter_mut().zip(&da_relu) {
            *da += (1.0 - alpha) * relu;
        }
    }
}

/// Lanes `start..start + N` of [`logits_backward`]'s pairwise sums.
struct Tile {
    nodes: usize,
    stride: usize,
    start: usize,
}

impl Tile {
    #[inline(always)]
    fn run<const N: usize>(
        &self,
        p: &[f32],
        q: &[f32],
        g: &[f32],
        dp: &mut [f32],
        dq: &mut [f32],
        da_relu: &mut [f32],
    ) {
        let (nodes, stride, start) = (self.nodes, self.stride, self.start);
        let mut da_acc = [0f32; N];
        for i in 0..nodes {
            let p_i: &[f32; N] = p[i * stride + start..][..N].try_into().expect("tile");
            let mut dp_acc = [0f32; N];
            for j in 0..nodes {
                let g_ij = g[i * nodes + j];
                let q_j: &[f32; N] = q[j * stride + start..][..N].try_into().expect("tile");
                let dq_j: &mut [f32; N] = (&mut dq[j * stride + start..][..N])
                    .try_into()
                    .expect("tile");
                for d in 0..N {
                    let s = p_i[d] + q_j[d];
                    let t = if s > 0.0 { g_ij } else { 0.0 };
                    dp_acc[d] += t;
                    dq_j[d] += t;
                    da_acc[d] += g_ij * if s > 0.0 { s } else { 0.0 };
                }
            }
            dp[i * stride + start..][..N]
                .iter_mut()
                .zip(dp_acc)
                .for_each(|(v, acc)| *v += acc);
        }
        da_relu[start..][..N]
            .iter_mut()
            .zip(da_acc)
            .for_each(|(v, acc)| *v += acc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, pair by pair, in f64.
    fn reference(p: &[f32], q: &[f32], a: &[f32], alpha: f32, n: usize, s: usize) -> Vec<f64> {
        let leaky = |x: f64| if x > 0.0 { x } else { alpha as f64 * x };
        let mut e = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                e[i * n + j] = (0..s)
                    .map(|d| a[d] as f64 * leaky(p[i * s + d] as f64 + q[j * s + d] as f64))
                    .sum();
            }
        }
        e
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::model::init::SplitMix64::new(seed);
        (0..n).map(|_| rng.next_f32() * 2.0 - 1.0).collect()
    }

    #[test]
    fn logits_and_their_gradients_match_the_definition() {
        // Embeddings padded to 64 lanes, or split into 64-, 32- and 16-lane tiles (backward);
        // 100 nodes: column tiles of 64, 32 and 16 and pairs of rows (forward).
        for (nodes, embed) in [(5, 51), (7, 112), (3, 16), (100, 110), (41, 30)] {
            let stride = padded(embed);
            let pad = |v: Vec<f32>| -> Vec<f32> {
                v.chunks_exact(embed)
                    .flat_map(|row| {
                        row.iter()
                            .copied()
                            .chain(std::iter::repeat_n(0.0, stride - embed))
                    })
                    .collect()
            };
            let (p, q, a) = (
                pad(values(nodes * embed, 1)),
                pad(values(nodes * embed, 2)),
                pad(values(embed, 3)),
            );
            let alpha = 0.2;
            let mut e = vec![0f32; nodes * nodes];
            logits(&p, &q, &a, alpha, nodes, stride, &mut e);
            let want = reference(&p, &q, &a, alpha, nodes, stride);
            for (got, want) in e.iter().zip(&want) {
                assert!(
                    (*got as f64 - want).abs() < 1e-5 * want.abs().max(1.0),
                    "logit {got} vs {want}"
                );
            }

            // The gradients of sum_ij g_ij e_ij, pair by pair in f64.
            let g = values(nodes * nodes, 4);
            let (mut dp, mut dq, mut da) =
                (vec![0f32; p.len()], vec![0f32; q.len()], vec![0f32; stride]);
            logits_backward(
                &p, &q, &a, &g, alpha, nodes, stride, &mut dp, &mut dq, &mut da,
            );
            let (mut want_dp, mut want_dq, mut want_da) =
                (vec![0f64; p.len()], vec![0f64; q.len()], vec![0f64; stride]);
            for i in 0..nodes {
                for j in 0..nodes {
                    let g_ij = g[i * nodes + j] as f64;
                    for d in 0..stride {
                        let s = p[i * stride + d] as f64 + q[j * stride + d] as f64;
                        let slope = if s > 0.0 { 1.0 } else { alpha as f64 };
                        want_dp[i * stride + d] += g_ij * a[d] as f64 * slope;
                        want_dq[j * stride + d] += g_ij * a[d] as f64 * slope;
                        want_da[d] += g_ij * s * slope;
                    }
                }
            }
            for (name, got, want) in [
                ("dp", &dp, &want_dp),
                ("dq", &dq, &want_dq),
                ("da", &da, &want_da),
            ] {
                for (k, (got, want)) in got.iter().zip(want).enumerate() {
                    // f32 sums of up to 100 x 100 terms: relative to the value.
                    assert!(
                        (*got as f64 - want).abs() < 1e-5 * want.abs().max(10.0),
                        "{name}[{k}]: {got} vs {want}"
                    );
                }
            }
        }
    }
}
