//! One `POST /invocations` request, start to end: parse the body, score its rows (a stateless
//! batch, or the streaming form that continues a series), feed the monitoring window and the
//! feedback ledger, encode the predictions. Blocking and CPU-bound: the server runs it on a
//! scoring worker.

use serde::{Deserialize, Serialize};

use crate::serve::api_error::ApiError;
use crate::serve::request::{body_format, parse_invocation, ParsedRows, RequestError};
use crate::serve::series::{lock_series, SeriesState};
use crate::serve::{ScoredRows, ServeState};

/// The query string of `/invocations`: `?threshold=t&series=id&start=true`. A `threshold` in
/// the JSON body wins over the query's; both win over the bundle's. `series` and `start` are
/// how a CSV body streams; a JSON body may carry them itself.
#[derive(Debug, Default, Deserialize)]
pub struct InvocationQuery {
    pub threshold: Option<f64>,
    pub series: Option<String>,
    #[serde(default)]
    pub start: bool,
}

impl ServeState {
    /// Parses, scores, monitors and encodes one request.
    pub(super) fn score_request(
        &self,
        content_type: Option<&str>,
        body: &[u8],
        query: &InvocationQuery,
    ) -> Result<Vec<u8>, ApiError> {
        let columns = self.scorer.columns();
        let mut rows = parse_invocation(body_format(content_type, body)?, body, columns)?;
        rows.merge_query(query.series.as_deref(), query.start)?;
        rows.check_rows(self.scorer.window())?;
        let threshold = rows
            .threshold
            .or(query.threshold)
            .or_else(|| self.scorer.threshold());
        let (scored, scaled, series) = match &rows.stream.series {
            None => {
                let scored = self
                    .scorer
                    .score(&rows.values, rows.n_rows)
                    .map_err(scoring_failed)?;
                check_scored(&scored, rows.n_rows)?;
                let scaled = self
                    .scorer
                    .scale(&rows.values[scored.first_row * columns.len()..]);
                (scored, scaled, None)
            }
            Some(id) => {
                let (scored, scaled, rows_seen) = self.score_series(id, &rows)?;
                let report = SeriesReport { id, rows_seen };
                let scored_rows = scaled[scored.first_row * columns.len()..].to_vec();
                (scored, scored_rows, Some(report))
            }
        };
        let n_scored = scored.scores.len();
        let anomalies: Vec<bool> = scored
            .scores
            .iter()
            .map(|&s| threshold.is_some_and(|t| s > t))
            .collect();
        let first_id = self
            .ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .issue(&anomalies);
        self.watcher.record(&scored.scores, &anomalies, &scaled);
        let n_anomalies = anomalies.iter().filter(|&&a| a).count();
        self.metrics.add_scored(n_scored as u64, n_anomalies as u64);

        let no_features = Vec::new();
        let predictions = (0..n_scored)
            .map(|i| Prediction {
                row: scored.first_row + i,
                row_id: first_id + i as u64,
                score: scored.scores[i],
                anomaly: anomalies[i],
                top_features: scored
                    .top_features
                    .get(i)
                    .unwrap_or(&no_features)
                    .iter()
                    .take(self.config.top_k)
                    .map(|(feature, score)| TopFeature {
                        feature,
                        score: *score,
                    })
                    .collect(),
            })
            .collect();
        let response = InvocationResponse {
            predictions,
            threshold,
            first_row: scored.first_row,
            series,
        };
        serde_json::to_vec(&response)
            .map_err(|e| ApiError::internal(format!("cannot encode the response: {e}")))
    }

    /// The streaming form: scores the rows as the continuation of series `id` (or as its start)
    /// and advances the series. Returns the scores, every new row scaled, and the rows the
    /// series has received. A refused or failed request leaves the series as it was.
    fn score_series(
        &self,
        id: &str,
        rows: &ParsedRows,
    ) -> Result<(ScoredRows, Vec<f32>, u64), ApiError> {
        let scaled = self.scorer.scale(&rows.values);
        let last_timestamp = rows
            .stream
            .timestamps
            .as_ref()
            .and_then(|t| t.last().copied());
        if rows.stream.start {
            let mut state = SeriesState::default();
            let scored = self
                .scorer
                .score_next(&mut state.context, &scaled, rows.n_rows)
                .map_err(scoring_failed)?;
            check_scored(&scored, rows.n_rows)?;
            state.rows_seen = rows.n_rows as u64;
            state.last_timestamp = last_timestamp;
            self.series.insert(id, state);
            return Ok((scored, scaled, rows.n_rows as u64));
        }
        let Some(entry) = self.series.get(id) else {
            return Err(RequestError::UnknownSeries {
                series: id.to_string(),
                capacity: self.series.capacity(),
                window: self.scorer.window(),
            }
            .into());
        };
        let mut state = lock_series(&entry);
        if let (Some(last), Some(first)) = (
            state.last_timestamp,
            rows.stream.timestamps.as_ref().and_then(|t| t.first()),
        ) {
            if *first <= last {
                return Err(RequestError::Timestamps(format!(
                    "row 0's timestamp {first} is not after the last row series `{id}` received ({last}); rows must come in time order, and a retried request that already succeeded must not be sent again"
                ))
                .into());
            }
        }
        let before = state.context.clone();
        let scored = self
            .scorer
            .score_next(&mut state.context, &scaled, rows.n_rows)
            .map_err(scoring_failed)?;
        if let Err(error) = check_scored(&scored, rows.n_rows) {
            state.context = before;
            return Err(error);
        }
        state.rows_seen += rows.n_rows as u64;
        state.last_timestamp = last_timestamp.or(state.last_timestamp);
        Ok((scored, scaled, state.rows_seen))
    }
}

#[derive(Serialize)]
struct InvocationResponse<'a> {
    predictions: Vec<Prediction<'a>>,
    threshold: Option<f64>,
    first_row: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    series: Option<SeriesReport<'a>>,
}

#[derive(Serialize)]
struct Prediction<'a> {
    row: usize,
    row_id: u64,
    score: f64,
    anomaly: bool,
    top_features: Vec<TopFeature<'a>>,
}

#[derive(Serialize)]
struct TopFeature<'a> {
    feature: &'a str,
    score: f64,
}

/// The series a streaming request continued, and how many rows it has received in all.
#[derive(Serialize)]
struct SeriesReport<'a> {
    id: &'a str,
    rows_seen: u64,
}

fn scoring_failed(error: anyhow::Error) -> ApiError {
    ApiError::internal(format!("scoring failed: {error:#}"))
}

/// The scorer's answer fits the request: scores from `first_row` to the last row.
fn check_scored(scored: &ScoredRows, n_rows: usize) -> Result<(), ApiError> {
    let n_scored = n_rows.saturating_sub(scored.first_row);
    if scored.first_row > n_rows
        || scored.scores.len() != n_scored
        || !(scored.top_features.is_empty() || scored.top_features.len() == n_scored)
    {
        return Err(ApiError::internal(format!(
            "the model returned {} scores from row {} for {} rows",
            scored.scores.len(),
            scored.first_row,
            n_rows
        )));
    }
    Ok(())
}
