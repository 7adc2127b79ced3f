//! Streaming: the rolling state of each series a client sends rows for one at a time.
//!
//! A series keeps its last `window` rows (scaled, as the model reads them) and what the model
//! carries from one call to the next, so a new row costs one window forward instead of the
//! client resending `window` rows of context with every request. The table holds at most
//! `capacity` series; starting one more evicts the series least recently used. A request for a
//! series the table does not hold (never started, evicted, or lost with a restart) is refused,
//! never silently restarted: the client resends the series' last rows with `start`, so no row
//! goes unscored without the client knowing.
//!
//! Memory: `capacity` x `window` x columns x 4 bytes at most (1,000 MSL series of 100 x 55 rows:
//! 22 MB).

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};

use lru::LruCache;

pub use crate::serve::request::MAX_SERIES_ID_BYTES;

/// What a series carries between requests, as a scorer reads and advances it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesContext {
    /// The series' last rows (at most the window), scaled, row-major.
    pub rows: Vec<f32>,
    /// Model-defined values carried to the next call (MTAD-GAT: the forecast of the next row).
    pub carry: Vec<f32>,
}

/// One series as the server keeps it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SeriesState {
    pub context: SeriesContext,
    /// Rows received since the series was started.
    pub rows_seen: u64,
    /// The timestamp of the last row, when the client sends timestamps.
    pub last_timestamp: Option<f64>,
}

/// The live series, least recently used evicted first.
#[derive(Debug)]
pub struct SeriesTable {
    series: Mutex<LruCache<String, Arc<Mutex<SeriesState>>>>,
    evicted: Mutex<u64>,
}

impl SeriesContext {
    /// Rows held, given the row width.
    pub fn n_rows(&self, width: usize) -> usize {
        self.rows.len().checked_div(width).unwrap_or(0)
    }

    /// Index, within `n_new` new rows, of the first one with a full window of rows before it.
    pub fn first_scored(&self, window: usize, width: usize) -> usize {
        window.saturating_sub(self.n_rows(width))
    }

    /// Appends new scaled rows and keeps only the last `window` of the series.
    pub fn push_rows(&mut self, scaled: &[f32], window: usize, width: usize) {
        self.rows.extend_from_slice(scaled);
        let excess = self.rows.len().saturating_sub(window * width);
        self.rows.drain(..excess);
    }
}

impl SeriesTable {
    /// A table of at most `capacity` series (at least one).
    pub fn new(capacity: usize) -> SeriesTable {
        SeriesTable {
            series: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            evicted: Mutex::new(0),
        }
    }

    /// The series named `id`, marked as just used; None if the table does not hold it.
    pub fn get(&self, id: &str) -> Option<Arc<Mutex<SeriesState>>> {
        self.table().get(id).cloned()
    }

    /// Stores `state` as series `id`, replacing any series of that name; evicts the least
    /// recently used series when the table is full.
    pub fn insert(&self, id: &str, state: SeriesState) -> Arc<Mutex<SeriesState>> {
        let state = Arc::new(Mutex::new(state));
        let pushed_out = self.table().push(id.to_string(), Arc::clone(&state));
        if pushed_out.is_some_and(|(old_id, _)| old_id != id) {
            *self.evicted.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        }
        state
    }

    /// Series held now.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most series held at once.
    pub fn capacity(&self) -> usize {
        self.table().cap().get()
    }

    /// Series evicted to make room since the server started.
    pub fn evicted(&self) -> u64 {
        *self.evicted.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn table(&self) -> MutexGuard<'_, LruCache<String, Arc<Mutex<SeriesState>>>> {
        // The table is only ever updated in single calls; a panic elsewhere leaves it whole.
        self.series.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Locks one series' state (a panic while scoring it leaves the state as before the request).
pub fn lock_series(state: &Mutex<SeriesState>) -> MutexGuard<'_, SeriesState> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_last_window_rows() {
        let mut context = SeriesContext::default();
        assert_eq!(context.first_scored(3, 2), 3);
        context.push_rows(&[1.0, 1.0, 2.0, 2.0], 3, 2);
        assert_eq!((context.n_rows(2), context.first_scored(3, 2)), (2, 1));
        context.push_rows(&[3.0, 3.0, 4.0, 4.0], 3, 2);
        assert_eq!(context.rows, [2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
        assert_eq!(context.first_scored(3, 2), 0);
    }

    #[test]
    fn the_least_recently_used_series_is_evicted() {
        let table = SeriesTable::new(2);
        table.insert("a", SeriesState::default());
        table.insert("b", SeriesState::default());
        assert!(table.get("a").is_some(), "a is now the most recently used");
        table.insert("c", SeriesState::default());
        assert!(table.get("b").is_none(), "b was least recently used");
        assert!(table.get("a").is_some() && table.get("c").is_some());
        assert_eq!((table.len(), table.capacity(), table.evicted()), (2, 2, 1));
        // Restarting a held series replaces it and evicts nothing.
        let restarted = SeriesState {
            rows_seen: 7,
            ..SeriesState::default()
        };
        table.insert("a", restarted);
        assert_eq!(lock_series(&table.get("a").unwrap()).rows_seen, 7);
        assert_eq!((table.len(), table.evicted()), (2, 1));
    }
}
