//! POT / SPOT thresholds (Siffer et al., "Anomaly Detection in Streams with Extreme
//! Value Theory", KDD 2017), as ML4ITS's `pot_eval` runs them.
//!
//! Calibration: t = the `level` empirical quantile of the initial (training) scores,
//! peaks = scores above t minus t, a Generalized Pareto distribution fitted to the peaks
//! by maximum likelihood (Grimshaw's reduction to one variable), and the alarm threshold
//! z = the quantile of risk `q` under that fit. Static mode (the reference's default,
//! `dynamic_pot=False`) reports z. Dynamic mode streams the test scores as in the paper:
//! a score above z is an alarm and is not learnt from, a score between t and z becomes a
//! peak and z is refitted; the reported threshold is the mean of the running thresholds.
//!
//! Two deliberate differences from the Python reference: the shape-0 (exponential)
//! log-likelihood is -n(1 + ln mean) (the reference drops the sign, which biases the
//! choice of fit); positive roots are searched from 0 rather than from Siffer's lower
//! bound, which excludes the true root of heavy tails; and roots are bracketed by sign
//! changes on a dense grid and bisected instead of polishing 10 L-BFGS-B starts, so only
//! true stationary points compete.

use anyhow::{bail, Result};
use serde::Serialize;

/// Parameters of `pot_eval`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PotConfig {
    /// Probability of the initial threshold t (e.g. 0.99).
    pub level: f64,
    /// Risk: the tail probability of the alarm threshold (e.g. 1e-3).
    pub q: f64,
    /// Stream the test scores and refit (SPOT); otherwise report the calibrated z.
    pub dynamic: bool,
    /// Where the GPD fit looks for positive-shape roots.
    pub roots: RootSearch,
}

/// Where Grimshaw's method looks for the roots of positive shape (heavy tails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum RootSearch {
    /// Siffer's interval [2(mean - min)/(mean min), 2(mean - min)/min^2], as the reference
    /// and the published figures. With a tiny smallest peak it starts far out, so in
    /// practice the fit is bounded or exponential; on min-max normalised scores (bounded
    /// by 1) that is the right call.
    #[default]
    Siffer,
    /// From just above 0: finds heavy-tailed maxima the reference misses, whose extreme
    /// quantile can then lie beyond any score a bounded series can reach (2.35 for
    /// ML4ITS's own normalised MSL scores).
    Wide,
}

/// A Generalized Pareto fit (location 0) of the peaks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct GpdFit {
    /// gamma: 0 is exponential, > 0 heavy-tailed, < 0 bounded.
    pub shape: f64,
    /// sigma > 0.
    pub scale: f64,
    pub log_likelihood: f64,
}

/// What POT found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PotResult {
    /// The threshold to use: z (static) or the mean of the running thresholds (dynamic).
    pub threshold: f64,
    /// t, the `level` quantile of the initial scores.
    pub init_threshold: f64,
    /// z after calibration, before any streaming.
    pub calibrated_threshold: f64,
    /// The level actually used; lower than requested when the requested one left no peaks.
    pub level: f64,
    pub fit: GpdFit,
    pub n_init: usize,
    /// Peaks at calibration.
    pub n_peaks: usize,
    /// Indices of streamed scores above the running threshold (dynamic mode only).
    pub alarms: Vec<usize>,
}

/// Streaming POT state after calibration.
#[derive(Debug, Clone)]
pub struct Spot {
    q: f64,
    roots: RootSearch,
    init_threshold: f64,
    peaks: Vec<f64>,
    /// Number of observations seen (initial ones plus streamed non-alarms).
    n: usize,
    fit: GpdFit,
    threshold: f64,
}

/// ML4ITS `pot_eval` on `init_scores` (training) and `scores` (test). When the requested
/// level leaves no score above t, the level is lowered by 0.1% steps until one does (the
/// retry loop of TranAD's `pot_eval`; the Python SPOT would crash on the empty peak set).
pub fn pot_eval(init_scores: &[f64], scores: &[f64], config: PotConfig) -> Result<PotResult> {
    if !(0.0..1.0).contains(&config.level) {
        bail!("POT `level` must be in [0, 1), got {}", config.level);
    }
    if !(config.q > 0.0 && config.q < 1.0) {
        bail!("POT risk `q` must be in (0, 1), got {}", config.q);
    }
    if init_scores.is_empty() {
        bail!("POT needs initial (training) scores, got none");
    }
    if let Some(bad) = init_scores.iter().chain(scores).find(|v| !v.is_finite()) {
        bail!("POT needs finite scores, found {bad}");
    }
    let mut sorted = init_scores.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut level = config.level;
    let init_threshold = loop {
        let t = sorted[(level * sorted.len() as f64) as usize];
        if sorted.last().is_some_and(|&max| max > t) {
            break t;
        }
        if (level * sorted.len() as f64) as usize == 0 {
            bail!(
                "POT cannot start: all {} training scores are equal ({t})",
                sorted.len()
            );
        }
        level *= 0.999;
    };
    let mut spot = Spot::calibrate(init_scores, init_threshold, config.q, config.roots)?;
    let calibrated_threshold = spot.threshold();
    let calibration_fit = spot.fit;
    let n_peaks = spot.peaks.len();
    let mut alarms = Vec::new();
    let threshold = if config.dynamic && !scores.is_empty() {
        let mut sum = 0.0;
        for (i, &score) in scores.iter().enumerate() {
            if spot.step(score) {
                alarms.push(i);
            }
            sum += spot.threshold();
        }
        sum / scores.len() as f64
    } else {
        calibrated_threshold
    };
    Ok(PotResult {
        threshold,
        init_threshold,
        calibrated_threshold,
        level,
        fit: calibration_fit,
        n_init: init_scores.len(),
        n_peaks,
        alarms,
    })
}

impl Spot {
    /// Fits the tail of `init_scores` above `init_threshold`.
    pub fn calibrate(
        init_scores: &[f64],
        init_threshold: f64,
        q: f64,
        roots: RootSearch,
    ) -> Result<Spot> {
        let peaks: Vec<f64> = init_scores
            .iter()
            .filter(|&&s| s > init_threshold)
            .map(|&s| s - init_threshold)
            .collect();
        if peaks.is_empty() {
            bail!("POT found no training score above the initial threshold {init_threshold}");
        }
        let fit = fit_gpd(&peaks, roots);
        let threshold = extreme_quantile(init_threshold, fit, q, init_scores.len(), peaks.len());
        if !threshold.is_finite() {
            bail!(
                "POT threshold is not finite (GPD shape {}, scale {})",
                fit.shape,
                fit.scale
            );
        }
        Ok(Spot {
            q,
            roots,
            init_threshold,
            peaks,
            n: init_scores.len(),
            fit,
            threshold,
        })
    }

    /// The current alarm threshold z.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn fit(&self) -> GpdFit {
        self.fit
    }

    /// Observes one score; returns whether it is an alarm (above z, not learnt from).
    pub fn step(&mut self, score: f64) -> bool {
        if score > self.threshold {
            return true;
        }
        self.n += 1;
        if score > self.init_threshold {
            self.peaks.push(score - self.init_threshold);
            self.fit = fit_gpd(&self.peaks, self.roots);
            let z = extreme_quantile(
                self.init_threshold,
                self.fit,
                self.q,
                self.n,
                self.peaks.len(),
            );
            if z.is_finite() {
                self.threshold = z;
            }
        }
        false
    }
}

/// The quantile of tail probability `q`: t + sigma/gamma ((q n / N_t)^-gamma - 1), or
/// t - sigma ln(q n / N_t) for gamma = 0.
pub fn extreme_quantile(init_threshold: f64, fit: GpdFit, q: f64, n: usize, n_peaks: usize) -> f64 {
    let r = n as f64 * q / n_peaks as f64;
    if fit.shape != 0.0 {
        init_threshold + fit.scale / fit.shape * (r.powf(-fit.shape) - 1.0)
    } else {
        init_threshold - fit.scale * r.ln()
    }
}

/// Log-likelihood of positive `peaks` under GPD(shape, scale); -inf outside the support.
pub fn gpd_log_likelihood(peaks: &[f64], shape: f64, scale: f64) -> f64 {
    let n = peaks.len() as f64;
    if scale <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if shape == 0.0 {
        return -n * scale.ln() - peaks.iter().sum::<f64>() / scale;
    }
    let tau = shape / scale;
    let mut sum_log = 0.0;
    for &y in peaks {
        let s = 1.0 + tau * y;
        if s <= 0.0 {
            return f64::NEG_INFINITY;
        }
        sum_log += s.ln();
    }
    -n * scale.ln() - (1.0 + 1.0 / shape) * sum_log
}

/// Maximum-likelihood GPD fit by Grimshaw's method: with t = gamma / sigma the likelihood
/// equations reduce to w(t) = u(t) v(t) - 1 = 0, u = 1 + mean ln(1 + tY),
/// v = mean 1/(1 + tY); every root gives gamma = u - 1, sigma = gamma / t, and the best
/// log-likelihood among the roots and the exponential fit (gamma = 0) wins. `peaks` must
/// be positive.
pub fn fit_gpd(peaks: &[f64], roots: RootSearch) -> GpdFit {
    const N_POINTS: f64 = 10.0;
    let min = peaks.iter().copied().fold(f64::INFINITY, f64::min);
    let max = peaks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = peaks.iter().sum::<f64>() / peaks.len() as f64;
    let mut best = GpdFit {
        shape: 0.0,
        scale: mean,
        log_likelihood: -(peaks.len() as f64) * (1.0 + mean.ln()),
    };
    // The search intervals of the reference: (-1/max, 0) and (b, c) hold all roots.
    let mut epsilon = 1e-8;
    let mut a = -1.0 / max;
    if a.abs() < 2.0 * epsilon {
        epsilon = a.abs() / N_POINTS;
    }
    a += epsilon;
    // Positive roots lie below c (Grimshaw). Siffer starts that search at
    // b = 2(mean - min)/(mean min); `Wide` from just above 0 (see [`RootSearch`]). Within
    // |t| mean < 1e-6 of 0, w is rounding noise and the fit is the exponential one.
    let near_zero = 1e-6 / mean;
    let c = 2.0 * (mean - min) / (min * min);
    let positive_from = match roots {
        RootSearch::Siffer => (2.0 * (mean - min) / (mean * min)).max(near_zero),
        RootSearch::Wide => near_zero,
    };
    let w = |t: f64| {
        let (mut sum_log, mut sum_inv) = (0.0, 0.0);
        for &y in peaks {
            let s = 1.0 + t * y;
            sum_log += s.ln();
            sum_inv += 1.0 / s;
        }
        let n = peaks.len() as f64;
        (1.0 + sum_log / n) * (sum_inv / n) - 1.0
    };
    let mut roots_found = find_roots(w, a + epsilon, -epsilon.max(near_zero));
    roots_found.extend(find_roots(w, positive_from, c));
    for t in roots_found {
        let shape = peaks.iter().map(|&y| (1.0 + t * y).ln()).sum::<f64>() / peaks.len() as f64;
        if t == 0.0 || shape == 0.0 {
            continue;
        }
        let scale = shape / t;
        let log_likelihood = gpd_log_likelihood(peaks, shape, scale);
        // Near t = 0, w is rounding noise; only a real gain in likelihood counts.
        let gain = log_likelihood - best.log_likelihood;
        if log_likelihood.is_finite() && gain > 1e-9 * best.log_likelihood.abs().max(1.0) {
            best = GpdFit {
                shape,
                scale,
                log_likelihood,
            };
        }
    }
    best
}

/// Roots of `f` in [lo, hi] (same sign, or one of them 0): sign changes on a grid that is
/// both linear and geometric (roots can sit near either end), each bisected to full
/// precision.
fn find_roots(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> Vec<f64> {
    const N_GRID: usize = 100;
    if !lo.is_finite() || !hi.is_finite() || lo >= hi {
        return Vec::new();
    }
    let mut grid: Vec<f64> = (0..=N_GRID)
        .map(|k| lo + (hi - lo) * k as f64 / N_GRID as f64)
        .collect();
    if lo * hi > 0.0 {
        let (log_lo, log_hi) = (lo.abs().ln(), hi.abs().ln());
        let sign = lo.signum();
        grid.extend(
            (1..N_GRID)
                .map(|k| sign * (log_lo + (log_hi - log_lo) * k as f64 / N_GRID as f64).exp()),
        );
    }
    grid.retain(|x| (lo..=hi).contains(x));
    grid.sort_by(f64::total_cmp);
    grid.dedup();
    let values: Vec<f64> = grid.iter().map(|&x| f(x)).collect();
    let mut roots = Vec::new();
    for i in 0..grid.len() {
        if values[i] == 0.0 {
            roots.push(grid[i]);
        }
        if i + 1 < grid.len() && values[i] * values[i + 1] < 0.0 {
            roots.push(bisect(&f, grid[i], grid[i + 1], values[i]));
        }
    }
    roots
}

fn bisect(f: impl Fn(f64) -> f64, mut lo: f64, mut hi: f64, mut f_lo: f64) -> f64 {
    for _ in 0..200 {
        let mid = lo + (hi - lo) / 2.0;
        if mid <= lo || mid >= hi {
            break;
        }
        let f_mid = f(mid);
        if f_mid == 0.0 {
            return mid;
        }
        if (f_mid < 0.0) == (f_lo < 0.0) {
            lo = mid;
            f_lo = f_mid;
        } else {
            hi = mid;
        }
    }
    lo + (hi - lo) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::init::SplitMix64 as Rng;

    /// n draws from GPD(shape, scale) by the inverse CDF.
    fn gpd_sample(seed: u64, n: usize, shape: f64, scale: f64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        (0..n)
            .map(|_| {
                let u = rng.next_f64();
                if shape == 0.0 {
                    -scale * (1.0 - u).ln()
                } else {
                    scale / shape * ((1.0 - u).powf(-shape) - 1.0)
                }
            })
            .collect()
    }

    /// The fit must be a local maximum of the likelihood, whatever the sampling noise.
    fn assert_local_maximum(peaks: &[f64], fit: GpdFit) {
        let ll = gpd_log_likelihood(peaks, fit.shape, fit.scale);
        assert!((ll - fit.log_likelihood).abs() < 1e-6 * ll.abs().max(1.0));
        for (ds, dg) in [
            (1.0, 0.0),
            (-1.0, 0.0),
            (0.0, 1.0),
            (0.0, -1.0),
            (1.0, 1.0),
            (-1.0, -1.0),
        ] {
            let shape = fit.shape + 1e-3 * dg;
            let scale = fit.scale * (1.0 + 1e-3 * ds);
            assert!(
                gpd_log_likelihood(peaks, shape, scale) <= ll + 1e-9,
                "not a maximum at {fit:?}"
            );
        }
    }

    #[test]
    fn fits_a_heavy_tailed_gpd_sample() {
        let peaks = gpd_sample(1, 5000, 0.2, 1.0);
        let fit = fit_gpd(&peaks, RootSearch::Wide);
        assert!((fit.shape - 0.2).abs() < 0.05, "{fit:?}");
        assert!((fit.scale - 1.0).abs() < 0.06, "{fit:?}");
        assert_local_maximum(&peaks, fit);
        // Siffer's interval starts beyond this root (the smallest of 5,000 peaks is tiny):
        // the reference settles for a fit no heavier than exponential.
        let siffer = fit_gpd(&peaks, RootSearch::Siffer);
        assert!(siffer.shape <= 0.0, "{siffer:?}");
        assert!(siffer.log_likelihood < fit.log_likelihood);
    }

    #[test]
    fn fits_a_bounded_gpd_sample() {
        let peaks = gpd_sample(2, 5000, -0.25, 2.0);
        let fit = fit_gpd(&peaks, RootSearch::Siffer);
        assert!((fit.shape + 0.25).abs() < 0.05, "{fit:?}");
        assert!((fit.scale - 2.0).abs() < 0.12, "{fit:?}");
        assert_local_maximum(&peaks, fit);
    }

    #[test]
    fn fits_an_exponential_sample_near_shape_zero() {
        let peaks = gpd_sample(3, 5000, 0.0, 0.5);
        let fit = fit_gpd(&peaks, RootSearch::Siffer);
        assert!(fit.shape.abs() < 0.04, "{fit:?}");
        assert!((fit.scale - 0.5).abs() < 0.03, "{fit:?}");
        let exponential = gpd_log_likelihood(&peaks, 0.0, peaks.iter().sum::<f64>() / 5000.0);
        assert!(fit.log_likelihood >= exponential - 1e-9);
    }

    #[test]
    fn equal_peaks_fall_back_to_the_exponential_fit() {
        let fit = fit_gpd(&[0.5, 0.5, 0.5], RootSearch::Siffer);
        assert_eq!(fit.shape, 0.0);
        assert_eq!(fit.scale, 0.5);
        assert!((fit.log_likelihood - -3.0 * (1.0 + 0.5f64.ln())).abs() < 1e-12);
    }

    #[test]
    fn extreme_quantile_formula() {
        let fit = GpdFit {
            shape: 0.5,
            scale: 2.0,
            log_likelihood: 0.0,
        };
        // r = 1000 * 0.01 / 50 = 0.2; z = 1 + 2/0.5 * (0.2^-0.5 - 1).
        let z = extreme_quantile(1.0, fit, 0.01, 1000, 50);
        assert!((z - (1.0 + 4.0 * (5f64.sqrt() - 1.0))).abs() < 1e-12);
        let exponential = GpdFit { shape: 0.0, ..fit };
        assert!(
            (extreme_quantile(1.0, exponential, 0.01, 1000, 50) - (1.0 - 2.0 * 0.2f64.ln())).abs()
                < 1e-12
        );
    }

    #[test]
    fn initial_threshold_is_the_reference_quantile_index() {
        // S[int(0.98 * 1000)] = S[980] = 0.981; peaks are the 19 values above it.
        let init: Vec<f64> = (1..=1000).map(|i| i as f64 / 1000.0).collect();
        let result = pot_eval(
            &init,
            &[],
            PotConfig {
                level: 0.98,
                q: 1e-3,
                dynamic: false,
                roots: RootSearch::Wide,
            },
        )
        .unwrap();
        assert_eq!(result.init_threshold, 0.981);
        assert_eq!(result.n_peaks, 19);
        let z = extreme_quantile(0.981, result.fit, 1e-3, 1000, 19);
        assert_eq!(result.threshold, z);
        assert_eq!(result.calibrated_threshold, z);
    }

    #[test]
    fn static_threshold_estimates_the_true_tail_quantile() {
        // Exponential(1): the 1 - 1e-3 quantile is ln(1000) = 6.91.
        let init = gpd_sample(4, 20_000, 0.0, 1.0);
        let result = pot_eval(
            &init,
            &[0.0; 10],
            PotConfig {
                level: 0.98,
                q: 1e-3,
                dynamic: false,
                roots: RootSearch::Wide,
            },
        )
        .unwrap();
        assert!((result.threshold - 1000f64.ln()).abs() < 0.4, "{result:?}");
        assert!(result.alarms.is_empty());
    }

    #[test]
    fn dynamic_mode_alarms_without_learning_and_learns_moderate_peaks() {
        let init = gpd_sample(5, 2000, 0.0, 1.0);
        let config = PotConfig {
            level: 0.95,
            q: 1e-3,
            dynamic: true,
            roots: RootSearch::Wide,
        };
        let calibrated = pot_eval(&init, &[], config).unwrap();
        let t = calibrated.init_threshold;
        let z = calibrated.calibrated_threshold;
        let stream = [0.1, z + 10.0, (t + z) / 2.0, 0.2];
        let mut spot = Spot::calibrate(&init, t, 1e-3, RootSearch::Wide).unwrap();
        let n_peaks = spot.peaks.len();
        assert!(!spot.step(stream[0]));
        assert!(spot.step(stream[1]));
        assert_eq!(spot.peaks.len(), n_peaks, "an alarm must not become a peak");
        let before = spot.threshold();
        assert!(!spot.step(stream[2]));
        assert_eq!(spot.peaks.len(), n_peaks + 1);
        assert_ne!(spot.threshold(), before, "a new peak refits the threshold");
        let result = pot_eval(&init, &stream, config).unwrap();
        assert_eq!(result.alarms, vec![1]);
        // Mean of the running thresholds: z, z, z', z'.
        let expected = (2.0 * z + 2.0 * spot.threshold()) / 4.0;
        assert!((result.threshold - expected).abs() < 1e-12);
    }

    #[test]
    fn level_is_lowered_until_there_are_peaks() {
        let mut init = vec![0.0; 90];
        init.extend([1.0; 10]);
        let result = pot_eval(
            &init,
            &[],
            PotConfig {
                level: 0.95,
                q: 1e-3,
                dynamic: false,
                roots: RootSearch::Wide,
            },
        )
        .unwrap();
        assert!(
            result.level < 0.9 && result.level > 0.89,
            "{}",
            result.level
        );
        assert_eq!(result.init_threshold, 0.0);
        assert_eq!(result.n_peaks, 10);
    }

    #[test]
    fn bad_input_is_rejected_with_the_parameter_named() {
        let config = PotConfig {
            level: 0.99,
            q: 1e-3,
            dynamic: false,
            roots: RootSearch::Wide,
        };
        let err = pot_eval(&[1.0; 50], &[], config).unwrap_err().to_string();
        assert!(err.contains("all 50 training scores are equal"), "{err}");
        let err = pot_eval(
            &[1.0, 2.0],
            &[],
            PotConfig {
                level: 1.5,
                ..config
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("`level`"), "{err}");
        let err = pot_eval(&[1.0, 2.0], &[], PotConfig { q: 0.0, ..config })
            .unwrap_err()
            .to_string();
        assert!(err.contains("`q`"), "{err}");
        let err = pot_eval(&[1.0, f64::NAN], &[], config)
            .unwrap_err()
            .to_string();
        assert!(err.contains("finite"), "{err}");
    }
}
