//! The live monitoring state shared by the request handlers (which add rows and labels) and
//! the task that closes a window every `monitor_every`. Holds the lock only to add rows or to
//! swap in a fresh window; statistics are computed outside it.

use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use flow_steps::data::FeatureStats;

use crate::serve::monitor::{WindowAccumulator, WindowStats};

/// Seed of the first window's reservoir; later windows mix in their index.
const BASE_SEED: u64 = 0x6D6F_6E69_746F_7221;

#[derive(Debug)]
pub struct Watcher {
    columns: Vec<String>,
    train_stats: Vec<FeatureStats>,
    max_buffer: usize,
    current: Mutex<OpenWindow>,
    latest: Mutex<Option<Arc<WindowStats>>>,
    /// The last closed window, kept to be reopened as the next one: its sample's memory is
    /// reused, so windows do not allocate (and fragment) a fresh buffer every interval.
    spare: Mutex<Option<WindowAccumulator>>,
}

#[derive(Debug)]
struct OpenWindow {
    /// Index the open window gets if it is recorded.
    index: u64,
    accumulator: WindowAccumulator,
}

impl Watcher {
    pub fn new(
        columns: Vec<String>,
        train_stats: Vec<FeatureStats>,
        max_buffer: usize,
        now: DateTime<Utc>,
    ) -> Watcher {
        let accumulator = WindowAccumulator::new(now, columns.len(), max_buffer, seed(0));
        Watcher {
            columns,
            train_stats,
            max_buffer,
            current: Mutex::new(OpenWindow {
                index: 0,
                accumulator,
            }),
            latest: Mutex::new(None),
            spare: Mutex::new(None),
        }
    }

    /// Adds scored rows to the open window (see [`WindowAccumulator::record`]).
    pub fn record(&self, scores: &[f64], anomalies: &[bool], scaled: &[f32]) {
        self.open().accumulator.record(scores, anomalies, scaled);
    }

    /// Adds feedback labels, as (predicted, labelled) pairs, to the open window.
    pub fn record_labels(&self, pairs: &[(bool, bool)]) {
        let mut open = self.open();
        for &(predicted, labelled) in pairs {
            open.accumulator.record_label(predicted, labelled);
        }
    }

    /// Closes the open window at `now` and opens the next. An empty window (nothing scored
    /// or labelled) is not worth recording: it stays open and None is returned.
    pub fn close(&self, now: DateTime<Utc>) -> Option<Arc<WindowStats>> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        let (index, closed) = {
            let mut open = self.open();
            if open.accumulator.is_empty() {
                *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = spare;
                return None;
            }
            let index = open.index;
            let next = match spare {
                Some(mut window) => {
                    window.reopen(now, seed(index + 1));
                    window
                }
                None => WindowAccumulator::new(
                    now,
                    self.columns.len(),
                    self.max_buffer,
                    seed(index + 1),
                ),
            };
            open.index += 1;
            (index, std::mem::replace(&mut open.accumulator, next))
        };
        let stats = Arc::new(closed.close(index, now, &self.columns, &self.train_stats));
        *self.spare.lock().unwrap_or_else(|p| p.into_inner()) = Some(closed);
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Two closes can race; keep the newer window.
        if latest.as_ref().is_none_or(|l| l.index < stats.index) {
            *latest = Some(Arc::clone(&stats));
        }
        Some(stats)
    }

    /// The most recently closed window, for `/metrics`.
    pub fn latest(&self) -> Option<Arc<WindowStats>> {
        self.latest
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Rows in the open window so far.
    pub fn open_count(&self) -> u64 {
        self.open().accumulator.count()
    }

    fn open(&self) -> MutexGuard<'_, OpenWindow> {
        // A panic elsewhere while holding the lock leaves consistent counters; keep serving.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn seed(index: u64) -> u64 {
    BASE_SEED ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_close_in_order_and_empty_ones_are_skipped() {
        let start = DateTime::UNIX_EPOCH;
        let watcher = Watcher::new(vec!["a".into()], vec![], 100, start);
        assert!(watcher.close(start).is_none());
        watcher.record(&[1.0, 2.0], &[false, true], &[0.1, 0.2]);
        assert_eq!(watcher.open_count(), 2);
        let later = start + chrono::Duration::seconds(60);
        let first = watcher.close(later).unwrap();
        assert_eq!(
            (first.index, first.count, first.start, first.end),
            (0, 2, start, later)
        );
        assert_eq!(watcher.open_count(), 0);
        assert!(watcher.close(later).is_none());
        watcher.record_labels(&[(true, true)]);
        let second = watcher
            .close(later + chrono::Duration::seconds(60))
            .unwrap();
        assert_eq!(
            (second.index, second.count, second.labels, second.start),
            (1, 0, 1, later)
        );
        assert_eq!(watcher.latest().map(|w| w.index), Some(1));
    }
}
