//! Ground truth after the fact: every scored row gets an id unique for the server's life, the
//! server remembers what it predicted for the most recent rows, and `POST /feedback` labels
//! (`{"labels": [{"row_id": id, "label": 0|1}]}`) turn those predictions into precision,
//! recall and F1 for the monitoring window in which the labels arrive.

use std::collections::VecDeque;

use serde::Deserialize;

use crate::serve::request::RequestError;

/// Predictions remembered for feedback: one byte per row, so a million rows cost 1 MB.
pub const LEDGER_CAPACITY: usize = 1_000_000;

/// What happened to one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelOutcome {
    /// Counted; carries the prediction made for the row.
    Accepted { predicted_anomaly: bool },
    /// Never issued, or too old to be remembered.
    Unknown,
    /// The row was labelled before; the first label counts.
    AlreadyLabelled,
}

/// Recent predictions by row id. Ids are handed out in consecutive blocks, so the ledger
/// is a ring indexed by `id - first_id`.
#[derive(Debug, Clone)]
pub struct PredictionLedger {
    capacity: usize,
    /// Id of `entries[0]`.
    first_id: u64,
    /// Bit 0: predicted anomaly; bit 1: already labelled.
    entries: VecDeque<u8>,
}

/// One label from a `/feedback` body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label {
    pub row_id: u64,
    pub anomaly: bool,
}

impl PredictionLedger {
    pub fn new(capacity: usize) -> PredictionLedger {
        PredictionLedger {
            capacity,
            first_id: 0,
            entries: VecDeque::new(),
        }
    }

    /// Records predictions for new rows and returns the id of the first (the rest follow).
    pub fn issue(&mut self, predicted_anomalies: &[bool]) -> u64 {
        let first_new = self.first_id + self.entries.len() as u64;
        self.entries
            .extend(predicted_anomalies.iter().map(|&a| u8::from(a)));
        let excess = self.entries.len().saturating_sub(self.capacity);
        self.entries.drain(..excess);
        self.first_id += excess as u64;
        first_new
    }

    /// Applies one label.
    pub fn label(&mut self, row_id: u64) -> LabelOutcome {
        let Some(offset) = row_id.checked_sub(self.first_id) else {
            return LabelOutcome::Unknown;
        };
        let Some(entry) = usize::try_from(offset)
            .ok()
            .and_then(|i| self.entries.get_mut(i))
        else {
            return LabelOutcome::Unknown;
        };
        if *entry & 2 != 0 {
            return LabelOutcome::AlreadyLabelled;
        }
        *entry |= 2;
        LabelOutcome::Accepted {
            predicted_anomaly: *entry & 1 != 0,
        }
    }
}

/// Parses `{"labels": [{"row_id": 17, "label": 1}, ...]}`.
pub fn parse_feedback(body: &[u8]) -> Result<Vec<Label>, RequestError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        labels: Vec<Entry>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        row_id: u64,
        label: serde_json::Value,
    }
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(RequestError::EmptyBody);
    }
    let parsed: Body = serde_json::from_slice(body).map_err(|e| {
        RequestError::MalformedJson(format!(
            "{e}; expected {{\"labels\": [{{\"row_id\": <id>, \"label\": 0|1}}]}}"
        ))
    })?;
    parsed
        .labels
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let anomaly = match &entry.label {
                serde_json::Value::Bool(b) => *b,
                value => match value.as_u64() {
                    Some(0) => false,
                    Some(1) => true,
                    _ => {
                        return Err(RequestError::Shape(format!(
                            "labels[{i}] (row_id {}): label `{value}` must be 0 or 1",
                            entry.row_id
                        )))
                    }
                },
            };
            Ok(Label {
                row_id: entry.row_id,
                anomaly,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_consecutive_and_remember_predictions() {
        let mut ledger = PredictionLedger::new(100);
        assert_eq!(ledger.issue(&[false, true]), 0);
        assert_eq!(ledger.issue(&[true]), 2);
        assert_eq!(
            ledger.label(1),
            LabelOutcome::Accepted {
                predicted_anomaly: true
            }
        );
        assert_eq!(
            ledger.label(0),
            LabelOutcome::Accepted {
                predicted_anomaly: false
            }
        );
        assert_eq!(ledger.label(1), LabelOutcome::AlreadyLabelled);
        assert_eq!(ledger.label(3), LabelOutcome::Unknown);
    }

    #[test]
    fn old_rows_are_forgotten_beyond_capacity() {
        let mut ledger = PredictionLedger::new(3);
        ledger.issue(&[true, true]);
        assert_eq!(ledger.issue(&[false, false]), 2);
        assert_eq!(ledger.label(0), LabelOutcome::Unknown);
        assert_eq!(
            ledger.label(1),
            LabelOutcome::Accepted {
                predicted_anomaly: true
            }
        );
        assert_eq!(
            ledger.label(3),
            LabelOutcome::Accepted {
                predicted_anomaly: false
            }
        );
        assert_eq!(ledger.label(u64::MAX), LabelOutcome::Unknown);
    }

    #[test]
    fn feedback_bodies() {
        let labels = parse_feedback(
            br#"{"labels": [{"row_id": 4, "label": 1}, {"row_id": 5, "label": false}]}"#,
        );
        assert_eq!(
            labels.unwrap(),
            vec![
                Label {
                    row_id: 4,
                    anomaly: true
                },
                Label {
                    row_id: 5,
                    anomaly: false
                }
            ]
        );
        let bad = parse_feedback(br#"{"labels": [{"row_id": 4, "label": 2}]}"#).unwrap_err();
        assert!(
            bad.to_string()
                .contains("labels[0] (row_id 4): label `2` must be 0 or 1"),
            "{bad}"
        );
        let typo = parse_feedback(br#"{"label": []}"#).unwrap_err();
        assert!(typo.to_string().contains("unknown field `label`"), "{typo}");
        assert_eq!(parse_feedback(b" "), Err(RequestError::EmptyBody));
    }
}
