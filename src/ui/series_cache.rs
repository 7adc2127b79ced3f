//! Curves of ended runs kept in memory, so zooming into a million-point metric (each zoom
//! asks for a range again) reads SQLite once, not once per zoom. A run that has ended
//! never logs again, so its points cannot go stale; RUNNING runs are always read afresh.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Points kept at most, over all cached curves (16 bytes each: 64 MiB).
const MAX_POINTS: usize = 4_000_000;

/// One run's metric, by step.
pub type Points = Arc<Vec<(i64, f64)>>;

/// Least recently used first.
#[derive(Default)]
pub struct SeriesCache {
    entries: Mutex<VecDeque<((String, String), Points)>>,
}

impl SeriesCache {
    /// The cached points of `(run_id, key)`, or what `load` reads (then kept).
    pub fn get_or_load<E>(
        &self,
        run_id: &str,
        key: &str,
        load: impl FnOnce() -> Result<Vec<(i64, f64)>, E>,
    ) -> Result<Points, E> {
        let wanted = (run_id.to_string(), key.to_string());
        {
            let mut entries = self.lock();
            if let Some(index) = entries.iter().position(|(name, _)| *name == wanted) {
                let entry = entries.remove(index).expect("index found above");
                let points = Arc::clone(&entry.1);
                entries.push_back(entry);
                return Ok(points);
            }
        }
        // Read without holding the lock; two readers of the same curve both read it once.
        let points: Points = Arc::new(load()?);
        if points.len() <= MAX_POINTS {
            let mut entries = self.lock();
            entries.push_back((wanted, Arc::clone(&points)));
            let mut total: usize = entries.iter().map(|(_, p)| p.len()).sum();
            while total > MAX_POINTS {
                match entries.pop_front() {
                    Some((_, evicted)) => total -= evicted.len(),
                    None => break,
                }
            }
        }
        Ok(points)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<((String, String), Points)>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_curve_is_read_once_and_the_oldest_leaves_first() {
        let cache = SeriesCache::default();
        let mut reads = 0;
        for _ in 0..3 {
            let points = cache
                .get_or_load::<()>("run", "loss", || {
                    reads += 1;
                    Ok(vec![(0, 1.0)])
                })
                .unwrap();
            assert_eq!(*points, vec![(0, 1.0)]);
        }
        assert_eq!(reads, 1);
        let big = vec![(0, 0.0); MAX_POINTS];
        cache
            .get_or_load::<()>("run", "big", || Ok(big.clone()))
            .unwrap();
        let mut reread = false;
        cache
            .get_or_load::<()>("run", "loss", || {
                reread = true;
                Ok(vec![(0, 1.0)])
            })
            .unwrap();
        assert!(reread, "the small curve was evicted to make room");
    }
}
