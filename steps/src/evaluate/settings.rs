//! Threshold settings: the published per-dataset values and `auto` command-line values.

use std::fmt;
use std::str::FromStr;

/// A command-line value that may be `auto` (decided from the dataset or the bundle).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Auto<T> {
    Auto,
    Value(T),
}

impl<T: Copy> Auto<T> {
    /// The given value, else `default`.
    pub fn or(self, default: T) -> T {
        match self {
            Auto::Auto => default,
            Auto::Value(value) => value,
        }
    }
}

impl<T: FromStr> FromStr for Auto<T>
where
    T::Err: fmt::Display,
{
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("auto") {
            return Ok(Auto::Auto);
        }
        text.parse()
            .map(Auto::Value)
            .map_err(|e| format!("expected `auto` or a value ({e})"))
    }
}

impl<T: fmt::Display> fmt::Display for Auto<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auto::Auto => f.write_str("auto"),
            Auto::Value(value) => value.fmt(f),
        }
    }
}

/// Which fitted threshold the bundle applies when serving.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdMethod {
    Epsilon,
    Pot,
    #[value(name = "best_f1")]
    BestF1,
}

impl ThresholdMethod {
    /// The name stored in the bundle's `thresholds.chosen`.
    pub fn as_str(self) -> &'static str {
        match self {
            ThresholdMethod::Epsilon => "epsilon",
            ThresholdMethod::Pot => "pot",
            ThresholdMethod::BestF1 => "best_f1",
        }
    }
}

/// Settings ML4ITS publishes per dataset (predict.py's `level_q_dict`, `reg_level_dict`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Published {
    pub level: f64,
    pub q: f64,
    pub reg_level: u8,
    /// SMAP and MSL concatenate channels whose scores are normalised separately.
    pub normalize_parts: bool,
}

/// The published settings for `dataset` (`SMAP`, `MSL`, `machine-<g>-<i>`), else a
/// general default (level 0.99, q 0.001, reg_level 1).
pub fn published_settings(dataset: &str) -> Published {
    let upper = dataset.to_ascii_uppercase();
    let (level, q, reg_level) = match upper.as_str() {
        "SMAP" => (0.90, 0.005, 0),
        "MSL" => (0.90, 0.001, 0),
        _ if upper.starts_with("MACHINE-1-") => (0.9950, 0.001, 1),
        _ if upper.starts_with("MACHINE-2-") => (0.9925, 0.001, 1),
        _ if upper.starts_with("MACHINE-3-") => (0.9999, 0.001, 1),
        _ => (0.99, 0.001, 1),
    };
    Published {
        level,
        q,
        reg_level,
        normalize_parts: matches!(upper.as_str(), "SMAP" | "MSL"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_settings_by_dataset() {
        assert_eq!(
            published_settings("SMAP"),
            Published {
                level: 0.90,
                q: 0.005,
                reg_level: 0,
                normalize_parts: true
            }
        );
        assert_eq!(published_settings("msl").q, 0.001);
        assert_eq!(published_settings("machine-1-1").level, 0.9950);
        assert_eq!(published_settings("machine-2-1").level, 0.9925);
        assert_eq!(published_settings("machine-3-11").level, 0.9999);
        let other = published_settings("M-6");
        assert_eq!(
            (other.level, other.q, other.reg_level, other.normalize_parts),
            (0.99, 0.001, 1, false)
        );
    }

    #[test]
    fn auto_parses_and_falls_back() {
        assert_eq!("auto".parse::<Auto<f64>>().unwrap().or(0.5), 0.5);
        assert_eq!("AUTO".parse::<Auto<u8>>().unwrap(), Auto::Auto);
        assert_eq!("0.95".parse::<Auto<f64>>().unwrap().or(0.5), 0.95);
        assert_eq!("true".parse::<Auto<bool>>().unwrap(), Auto::Value(true));
        let err = "high".parse::<Auto<f64>>().unwrap_err();
        assert!(err.contains("`auto`"), "{err}");
        assert_eq!(Auto::Value(3u8).to_string(), "3");
    }
}
