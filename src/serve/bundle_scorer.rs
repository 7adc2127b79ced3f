//! A trained model bundle as a [`Scorer`]: the adapter `flow serve` uses to serve
//! `model/flow-model.json` + `weights.safetensors` (and the benchmark with `FLOW_BENCH_BUNDLE`).

use std::path::Path;

use anyhow::Context;
use candle_core::{Device, Tensor};
use flow_steps::bundle::Bundle;
use flow_steps::data::FeatureStats;

use crate::serve::{ScoredRows, Scorer, SeriesContext};

/// Windows per forward pass when a streaming request brings many rows.
const STREAM_BATCH: usize = 128;

/// A loaded bundle with the names of its scored (target) features.
pub struct BundleScorer {
    bundle: Bundle,
    /// Names of the target dims, in the order of `Scores::per_feature`.
    target_names: Vec<String>,
    /// How many top features each scored row carries.
    top_k: usize,
}

impl BundleScorer {
    pub fn new(bundle: Bundle, top_k: usize) -> BundleScorer {
        let columns = &bundle.manifest.preprocessor.columns;
        let target_names = bundle
            .target_dims()
            .iter()
            .map(|&d| columns.get(d).cloned().unwrap_or_else(|| format!("f{d}")))
            .collect();
        BundleScorer {
            bundle,
            target_names,
            top_k,
        }
    }

    /// Loads the bundle directory (the one holding `flow-model.json`).
    pub fn load(dir: &Path, top_k: usize) -> anyhow::Result<BundleScorer> {
        let bundle = Bundle::load(dir)
            .with_context(|| format!("cannot load the model bundle `{}`", dir.display()))?;
        Ok(BundleScorer::new(bundle, top_k))
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }
}

impl Scorer for BundleScorer {
    fn columns(&self) -> &[String] {
        &self.bundle.manifest.preprocessor.columns
    }

    fn window(&self) -> usize {
        self.bundle.manifest.preprocessor.window
    }

    fn threshold(&self) -> Option<f64> {
        self.bundle.manifest.thresholds.active()
    }

    fn train_stats(&self) -> &[FeatureStats] {
        &self.bundle.manifest.preprocessor.train_stats
    }

    fn scale(&self, raw: &[f64]) -> Vec<f32> {
        self.bundle.manifest.preprocessor.transform(raw)
    }

    fn score(&self, raw: &[f64], n_rows: usize) -> anyhow::Result<ScoredRows> {
        let scores = self.bundle.score_raw(raw, n_rows)?;
        let n_target = scores.n_target.max(1);
        Ok(ScoredRows {
            first_row: scores.first_row,
            scores: scores.total.iter().map(|&s| s as f64).collect(),
            top_features: scores
                .per_feature
                .chunks_exact(n_target)
                .map(|row| self.top_features(row))
                .collect(),
        })
    }

    /// One window forward per new row: the window ending at row t reconstructs row t (scored
    /// now) and forecasts row t+1, which `context.carry` keeps for the next call. The scores are
    /// [`Bundle::score_scaled`]'s over the whole series (row t: forecast from rows t-W..t-1, the
    /// last reconstructed row of rows t-W+1..t).
    fn score_next(
        &self,
        context: &mut SeriesContext,
        scaled: &[f32],
        n_rows: usize,
    ) -> anyhow::Result<ScoredRows> {
        let manifest = &self.bundle.manifest;
        let (window, width) = (manifest.model.window, manifest.model.n_features);
        anyhow::ensure!(
            scaled.len() == n_rows * width,
            "expected {n_rows} rows x {width} columns = {} values, got {}",
            n_rows * width,
            scaled.len()
        );
        let mode = manifest.model.mode;
        let targets = self.bundle.target_dims();
        let n_target = targets.len();
        let held = context.n_rows(width);
        let series: Vec<f32> = [&context.rows[..], scaled].concat();
        let n_total = held + n_rows;
        // Windows end at every new row that completes one: rows max(held, W-1)..n_total.
        let first_end = held.max(window - 1);
        let ends: Vec<usize> = (first_end..n_total).collect();
        let mut forecasts = Vec::with_capacity(ends.len() * n_target);
        let mut reconstructed = Vec::with_capacity(ends.len() * n_target);
        flow_steps::model::alloc::tune_for_tensors();
        for chunk in ends.chunks(STREAM_BATCH) {
            let mut batch = Vec::with_capacity(chunk.len() * window * width);
            for &end in chunk {
                batch.extend_from_slice(&series[(end + 1 - window) * width..(end + 1) * width]);
            }
            let xs = Tensor::from_vec(batch, (chunk.len(), window, width), &Device::Cpu)?;
            let out = self.bundle.model().forward(&xs, false)?;
            match out.forecast {
                Some(fc) => forecasts.extend(fc.flatten_all()?.to_vec1::<f32>()?),
                None => forecasts.extend(std::iter::repeat_n(f32::NAN, chunk.len() * n_target)),
            }
            match out.reconstruction {
                Some(rec) => reconstructed.extend(
                    rec.narrow(1, window - 1, 1)?
                        .flatten_all()?
                        .to_vec1::<f32>()?,
                ),
                None => reconstructed.extend(std::iter::repeat_n(f32::NAN, chunk.len() * n_target)),
            }
        }
        anyhow::ensure!(
            forecasts.len() == ends.len() * n_target
                && reconstructed.len() == ends.len() * n_target,
            "the model returned outputs of the wrong size"
        );
        // Row t is scored when it has W rows before it: t >= W (and it is new: t >= held).
        let first_scored = held.max(window);
        let gamma = manifest.gamma as f32;
        let mut scores = Vec::with_capacity(n_total.saturating_sub(first_scored));
        let mut top_features = Vec::with_capacity(scores.capacity());
        let mut per_feature = vec![0.0f32; n_target];
        for t in first_scored..n_total {
            // The forecast of row t came from the window ending at t-1: computed now, or, for
            // the first new row of a warm series, carried from the previous call.
            let forecast = if t > first_end {
                &forecasts[(t - 1 - first_end) * n_target..][..n_target]
            } else {
                anyhow::ensure!(
                    !mode.forecasts() || context.carry.len() == n_target,
                    "the series carries no forecast for its next row"
                );
                &context.carry[..n_target.min(context.carry.len())]
            };
            let reconstruction = &reconstructed[(t - first_end) * n_target..][..n_target];
            for (j, &dim) in targets.iter().enumerate() {
                let actual = series[t * width + dim];
                let fc = if mode.forecasts() {
                    (forecast[j] - actual).abs()
                } else {
                    0.0
                };
                let rec = if mode.reconstructs() {
                    gamma * (reconstruction[j] - actual).abs()
                } else {
                    0.0
                };
                per_feature[j] = fc + rec;
            }
            scores.push((per_feature.iter().sum::<f32>() / n_target as f32) as f64);
            top_features.push(self.top_features(&per_feature));
        }
        if let Some(last) = ends.len().checked_sub(1) {
            context.carry = forecasts[last * n_target..][..n_target].to_vec();
        }
        context.push_rows(scaled, window, width);
        Ok(ScoredRows {
            first_row: (first_scored - held).min(n_rows),
            scores,
            top_features,
        })
    }
}

impl BundleScorer {
    /// The `top_k` highest per-feature scores of one row, named.
    fn top_features(&self, per_feature: &[f32]) -> Vec<(String, f64)> {
        let mut ranked: Vec<usize> = (0..per_feature.len()).collect();
        ranked.sort_by(|&a, &b| per_feature[b].total_cmp(&per_feature[a]));
        ranked
            .into_iter()
            .take(self.top_k)
            .map(|i| {
                (
                    self.target_names.get(i).cloned().unwrap_or_default(),
                    per_feature[i] as f64,
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use flow_steps::bundle::Thresholds;
    use flow_steps::data::{Preprocessor, ScalerKind};
    use flow_steps::model::{Config, Mode};

    use super::*;

    const WINDOW: usize = 4;

    /// An untrained 3-feature MTAD-GAT that scores only columns `b` and `c`.
    fn tiny_bundle() -> Bundle {
        tiny_bundle_in(Mode::Both)
    }

    fn tiny_bundle_in(mode: Mode) -> Bundle {
        let columns = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let train: Vec<f64> = (0..30 * 3).map(|i| (i % 7) as f64).collect();
        let preprocessor =
            Preprocessor::fit(&train, columns, ScalerKind::Minmax, 0.0, vec![1, 2], WINDOW);
        let config = Config {
            gru_hidden: 4,
            forecast_hidden: 4,
            recon_hidden: 4,
            kernel_size: 3,
            dropout: 0.0,
            mode,
            ..Config::paper(3, WINDOW, 2)
        };
        let mut bundle = Bundle::untrained(preprocessor, config, 5).unwrap();
        bundle.manifest.thresholds = Thresholds {
            epsilon: Some(0.25),
            chosen: Some("epsilon".into()),
            ..Thresholds::default()
        };
        bundle
    }

    #[test]
    fn adapts_a_bundle_to_the_scorer_interface() {
        let scorer = BundleScorer::new(tiny_bundle(), 1);
        assert_eq!(scorer.columns(), ["a", "b", "c"]);
        assert_eq!((scorer.window(), scorer.threshold()), (WINDOW, Some(0.25)));
        assert_eq!(scorer.train_stats().len(), 3);
        let raw: Vec<f64> = (0..10 * 3).map(|i| ((i * 5) % 7) as f64).collect();
        assert_eq!(
            scorer.scale(&raw),
            scorer.bundle().manifest.preprocessor.transform(&raw)
        );
        let scored = scorer.score(&raw, 10).unwrap();
        let expected = scorer.bundle().score_raw(&raw, 10).unwrap();
        assert_eq!(scored.first_row, WINDOW);
        assert_eq!(
            scored.scores,
            expected.total.iter().map(|&s| s as f64).collect::<Vec<_>>()
        );
        // One top feature per row, named from the target dims, the larger per-feature score.
        for (row, top) in scored.top_features.iter().enumerate() {
            let (b, c) = (
                expected.per_feature[row * 2],
                expected.per_feature[row * 2 + 1],
            );
            let (name, value) = if b >= c { ("b", b) } else { ("c", c) };
            assert_eq!(top, &vec![(name.to_string(), value as f64)]);
        }
        let too_short = scorer.score(&raw[..WINDOW * 3], WINDOW).unwrap_err();
        assert!(format!("{too_short:#}").contains("window"), "{too_short:#}");
    }

    /// Rows sent one at a time, in uneven chunks or all at once score as the whole series does
    /// in one batch request, in every model mode; a failed call leaves the series as it was.
    #[test]
    fn streaming_scores_equal_batch_scores_of_the_whole_series() {
        let n_rows = 23;
        let raw: Vec<f64> = (0..n_rows * 3)
            .map(|i| ((i * 5) % 11) as f64 * 0.7)
            .collect();
        for mode in [Mode::Both, Mode::Forecast, Mode::Reconstruct] {
            let scorer = BundleScorer::new(tiny_bundle_in(mode), 2);
            let batch = scorer.score(&raw, n_rows).unwrap();
            for chunks in [vec![1; n_rows], vec![3, 1, 7, 2, 10], vec![n_rows]] {
                let mut context = SeriesContext::default();
                let (mut scores, mut top) = (Vec::new(), Vec::new());
                let mut offset = 0;
                for n in chunks.iter().copied() {
                    let scaled = scorer.scale(&raw[offset * 3..(offset + n) * 3]);
                    let out = scorer.score_next(&mut context, &scaled, n).unwrap();
                    assert_eq!(out.first_row, WINDOW.saturating_sub(offset).min(n));
                    assert_eq!(out.scores.len(), n - out.first_row);
                    scores.extend(out.scores);
                    top.extend(out.top_features);
                    offset += n;
                }
                assert_eq!(scores.len(), batch.scores.len(), "{mode:?} {chunks:?}");
                for (row, (got, want)) in scores.iter().zip(&batch.scores).enumerate() {
                    assert!(
                        (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "{mode:?} {chunks:?} row {row}: streamed {got} vs batch {want}"
                    );
                }
                let names = |rows: &[Vec<(String, f64)>]| -> Vec<String> {
                    rows.iter().map(|r| r[0].0.clone()).collect()
                };
                assert_eq!(names(&top), names(&batch.top_features), "{mode:?}");
                assert_eq!(context.n_rows(3), WINDOW);
            }
        }
        let scorer = BundleScorer::new(tiny_bundle(), 1);
        let mut context = SeriesContext::default();
        let scaled = scorer.scale(&raw[..6 * 3]);
        scorer.score_next(&mut context, &scaled, 6).unwrap();
        let before = context.clone();
        assert!(scorer.score_next(&mut context, &scaled[..4], 2).is_err());
        assert_eq!(context, before);
    }
}
