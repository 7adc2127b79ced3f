//! Curves small enough to draw: a metric of a million points becomes at most a few
//! thousand, chosen so the drawn line looks the same.
//!
//! The x range is cut into `buckets` equal steps; each bucket keeps its first and last
//! point and its lowest and highest value (the M4 reduction of Jugel et al., VLDB 2014),
//! so no spike, dip or extreme disappears, and a line through the kept points covers the
//! same pixels as the full one at that width. NaN values are kept as gaps (one per bucket).

/// Points kept from a series, and what was there before.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Downsampled {
    /// `(step, value)`, by step; a `None` value is a NaN (drawn as a gap).
    pub points: Vec<(i64, Option<f64>)>,
    /// Points in the requested range before reduction.
    pub total_points: usize,
    /// The series' lowest and highest finite value in the range.
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// Reduces `points` (sorted by step) within `range` (inclusive, `None` = all) to at most
/// about `4 * buckets` points.
pub fn downsample(points: &[(i64, f64)], range: Option<(i64, i64)>, buckets: usize) -> Downsampled {
    let slice = match range {
        Some((from, to)) => {
            let start = points.partition_point(|&(step, _)| step < from);
            let end = points.partition_point(|&(step, _)| step <= to);
            &points[start..end.max(start)]
        }
        None => points,
    };
    let (mut min, mut max) = (None::<f64>, None::<f64>);
    for &(_, value) in slice {
        if value.is_finite() {
            min = Some(min.map_or(value, |m| m.min(value)));
            max = Some(max.map_or(value, |m| m.max(value)));
        }
    }
    let buckets = buckets.max(1);
    let kept = if slice.len() <= 4 * buckets {
        slice
            .iter()
            .map(|&(step, value)| (step, finite(value)))
            .collect()
    } else {
        m4(slice, buckets)
    };
    Downsampled {
        points: kept,
        total_points: slice.len(),
        min,
        max,
    }
}

fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

/// First, lowest, highest and last point of each of `buckets` equal x ranges, in step order.
fn m4(points: &[(i64, f64)], buckets: usize) -> Vec<(i64, Option<f64>)> {
    let first_step = points[0].0 as f64;
    let last_step = points[points.len() - 1].0 as f64;
    let width = ((last_step - first_step) / buckets as f64).max(f64::MIN_POSITIVE);
    let bucket_of = |step: i64| (((step as f64 - first_step) / width) as usize).min(buckets - 1);
    let mut out = Vec::with_capacity(4 * buckets);
    let mut start = 0;
    while start < points.len() {
        let bucket = bucket_of(points[start].0);
        let mut end = start + 1;
        while end < points.len() && bucket_of(points[end].0) == bucket {
            end += 1;
        }
        let members = &points[start..end];
        let mut picks: Vec<usize> = vec![0, members.len() - 1];
        let mut lowest: Option<usize> = None;
        let mut highest: Option<usize> = None;
        let mut gap: Option<usize> = None;
        for (index, &(_, value)) in members.iter().enumerate() {
            if !value.is_finite() {
                gap.get_or_insert(index);
                continue;
            }
            if lowest.is_none_or(|low| value < members[low].1) {
                lowest = Some(index);
            }
            if highest.is_none_or(|high| value > members[high].1) {
                highest = Some(index);
            }
        }
        picks.extend(lowest);
        picks.extend(highest);
        picks.extend(gap);
        picks.sort_unstable();
        picks.dedup();
        out.extend(
            picks
                .into_iter()
                .map(|index| (members[index].0, finite(members[index].1))),
        );
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_series_pass_through() {
        let points = vec![(0, 1.0), (1, f64::NAN), (2, 3.0)];
        let result = downsample(&points, None, 100);
        assert_eq!(
            result.points,
            vec![(0, Some(1.0)), (1, None), (2, Some(3.0))]
        );
        assert_eq!((result.min, result.max), (Some(1.0), Some(3.0)));
    }

    #[test]
    fn a_million_points_keep_every_extreme() {
        let mut points: Vec<(i64, f64)> = (0..1_000_000)
            .map(|step| (step, (step as f64 * 0.001).sin()))
            .collect();
        points[123_457].1 = 50.0;
        points[876_543].1 = -50.0;
        let result = downsample(&points, None, 1000);
        assert!(result.points.len() <= 4000, "{}", result.points.len());
        assert_eq!(result.total_points, 1_000_000);
        assert!(result.points.contains(&(123_457, Some(50.0))));
        assert!(result.points.contains(&(876_543, Some(-50.0))));
        assert_eq!(result.points.first(), Some(&(0, Some(0.0))));
        assert_eq!(result.points.last().map(|p| p.0), Some(999_999));
        assert!(result.points.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn a_range_zooms_in_with_full_detail() {
        let points: Vec<(i64, f64)> = (0..100_000).map(|step| (step, step as f64)).collect();
        let result = downsample(&points, Some((500, 600)), 1000);
        assert_eq!(result.total_points, 101);
        assert_eq!(result.points.len(), 101);
        assert_eq!(result.points[0], (500, Some(500.0)));
    }
}
