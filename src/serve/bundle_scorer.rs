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
