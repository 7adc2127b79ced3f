//! A trained model bundle as a [`Scorer`]: the adapter `flow serve` uses to serve
//! `model/flow-model.json` + `weights.safetensors` (and the benchmark with `FLOW_BENCH_BUNDLE`).

use std::path::Path;

use anyhow::Context;
use flow_steps::bundle::Bundle;
use flow_steps::data::FeatureStats;

use crate::serve::{ScoredRows, Scorer};

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
        let top_features = scores
            .per_feature
            .chunks_exact(n_target)
            .map(|row| {
                let mut ranked: Vec<usize> = (0..row.len()).collect();
                ranked.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
                ranked
                    .into_iter()
                    .take(self.top_k)
                    .map(|i| {
                        (
                            self.target_names.get(i).cloned().unwrap_or_default(),
                            row[i] as f64,
                        )
                    })
                    .collect()
            })
            .collect();
        Ok(ScoredRows {
            first_row: scores.first_row,
            scores: scores.total.iter().map(|&s| s as f64).collect(),
            top_features,
        })
    }
}

#[cfg(test)]
mod tests {
    use flow_steps::bundle::Thresholds;
    use flow_steps::data::{Preprocessor, ScalerKind};
    use flow_steps::model::Config;

    use super::*;

    const WINDOW: usize = 4;

    /// An untrained 3-feature MTAD-GAT that scores only columns `b` and `c`.
    fn tiny_bundle() -> Bundle {
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
}
