//! A dataset as the readers return it: train and test rows, test labels and the
//! description that becomes `meta.json`.

use anyhow::{bail, Result};

use crate::data::meta::Meta;
use crate::data::table::Table;

/// One loaded dataset, ready to be written by the `load` step.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub train: Table,
    pub test: Table,
    /// One 0/1 label per test row (all zeros when the source has none).
    pub labels: Vec<u8>,
    pub meta: Meta,
}

impl Dataset {
    /// Assembles a dataset after checking that the pieces fit together.
    pub fn new(train: Table, test: Table, labels: Vec<u8>, meta: Meta) -> Result<Dataset> {
        if train.columns != test.columns {
            bail!(
                "train and test columns differ: {:?} vs {:?}",
                train.columns,
                test.columns
            );
        }
        if meta.columns != train.columns {
            bail!(
                "meta columns {:?} differ from the data's {:?}",
                meta.columns,
                train.columns
            );
        }
        if train.n_cols() == 0 {
            bail!("the dataset has no feature columns");
        }
        if let Some(part) = meta
            .parts
            .iter()
            .find(|part| part.train_rows == 0 || part.test_rows == 0)
        {
            bail!(
                "`{}` has {} train and {} test rows: it needs both to train and to score",
                part.name,
                part.train_rows,
                part.test_rows
            );
        }
        if train.n_rows == 0 || test.n_rows == 0 {
            bail!(
                "the dataset has {} train and {} test rows: it needs both to train and to score",
                train.n_rows,
                test.n_rows
            );
        }
        if labels.len() != test.n_rows {
            bail!("{} labels for {} test rows", labels.len(), test.n_rows);
        }
        if let Some(dim) = meta
            .target_dims
            .iter()
            .flatten()
            .find(|&&dim| dim >= train.n_cols())
        {
            bail!(
                "target dimension {dim} is out of range for {} columns",
                train.n_cols()
            );
        }
        let part_rows = |rows: fn(&crate::data::meta::Part) -> usize| {
            meta.parts.iter().map(rows).sum::<usize>()
        };
        if !meta.parts.is_empty()
            && (part_rows(|p| p.train_rows) != train.n_rows
                || part_rows(|p| p.test_rows) != test.n_rows)
        {
            bail!(
                "the parts' row counts do not add up to {} train and {} test rows",
                train.n_rows,
                test.n_rows
            );
        }
        Ok(Dataset {
            train,
            test,
            labels,
            meta,
        })
    }

    /// Share of anomalous test rows (0 when there are none).
    pub fn anomaly_ratio(&self) -> f64 {
        if self.labels.is_empty() {
            return 0.0;
        }
        self.labels.iter().filter(|&&label| label == 1).count() as f64 / self.labels.len() as f64
    }
}
