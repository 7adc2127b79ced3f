//! `*_time` parameters: which run_times a pinned step accepts.

use anyhow::{bail, Result};
use chrono::{DateTime, Duration, Local, NaiveDate, NaiveDateTime, TimeZone, Utc};

/// A `*_time` parameter value: which run_times are acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeSelector {
    Latest,
    /// Runs with `from <= run_time < to`; `label` is what the user wrote.
    Window {
        label: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

/// The clock runs are stamped with. Tests set `FLOW_TEST_NOW` (RFC 3339) to make runs
/// on other days, as cargo's `__CARGO_TEST_LAST_USE_NOW` does; users never need it.
pub fn run_clock() -> DateTime<Utc> {
    std::env::var("FLOW_TEST_NOW")
        .ok()
        .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(Utc::now)
}

impl TimeSelector {
    /// Whether a run started now would satisfy the selector (`latest`, or a window such
    /// as today): then a missing run can be made instead of refused.
    pub fn admits_now(&self) -> bool {
        match self {
            TimeSelector::Latest => true,
            TimeSelector::Window { from, to, .. } => {
                let now = run_clock();
                *from <= now && now < *to
            }
        }
    }

    /// The window, when the selector pins one.
    pub fn window(&self) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match self {
            TimeSelector::Window { from, to, .. } => Some((*from, *to)),
            TimeSelector::Latest => None,
        }
    }

    /// What the user wrote, when the selector pins a window.
    pub fn label(&self) -> Option<&str> {
        match self {
            TimeSelector::Window { label, .. } => Some(label),
            TimeSelector::Latest => None,
        }
    }
}

/// Parses a `*_time` value: `latest`, a day `2026-11-22` (local time), or a timestamp.
pub fn parse_selector(text: &str) -> Result<TimeSelector> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("latest") {
        return Ok(TimeSelector::Latest);
    }
    let label = text.to_string();
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let start = day
            .and_hms_opt(0, 0, 0)
            .and_then(|t| Local.from_local_datetime(&t).earliest());
        let end = day
            .succ_opt()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .and_then(|t| Local.from_local_datetime(&t).earliest());
        if let (Some(start), Some(end)) = (start, end) {
            return Ok(TimeSelector::Window {
                label,
                from: start.with_timezone(&Utc),
                to: end.with_timezone(&Utc),
            });
        }
    }
    let precise = text.contains('.');
    let span = if precise {
        Duration::milliseconds(1)
    } else {
        Duration::seconds(1)
    };
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        let from = instant.with_timezone(&Utc);
        return Ok(TimeSelector::Window {
            label,
            from,
            to: from + span,
        });
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            if let Some(local) = Local.from_local_datetime(&naive).earliest() {
                let from = local.with_timezone(&Utc);
                return Ok(TimeSelector::Window {
                    label,
                    from,
                    to: from + span,
                });
            }
        }
    }
    bail!("`{text}` is not a time selector: use `latest`, a day like `2026-11-22`, or a timestamp like `2026-11-22T14:03:00Z`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_parse_days_and_instants() {
        assert_eq!(parse_selector("latest").unwrap(), TimeSelector::Latest);
        let TimeSelector::Window { from, to, .. } = parse_selector("2026-11-22").unwrap() else {
            panic!()
        };
        assert_eq!(to - from, Duration::hours(24));
        let TimeSelector::Window { from, to, .. } = parse_selector("2026-11-22T10:00:00Z").unwrap()
        else {
            panic!()
        };
        assert_eq!(to - from, Duration::seconds(1));
        assert!(parse_selector("yesterday")
            .unwrap_err()
            .to_string()
            .contains("not a time selector"));
    }
}
