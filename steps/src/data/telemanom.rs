//! NASA SMAP/MSL telemetry as telemanom publishes it: `train/<chan>.npy`,
//! `test/<chan>.npy` (optionally `.gz`) and `labeled_anomalies.csv`. A dataset is one
//! channel, or a whole spacecraft (`MSL`, `SMAP`) concatenated channel after channel as
//! the OmniAnomaly/MTAD-GAT preprocessing does.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::data::dataset::Dataset;
use crate::data::meta::{Meta, Part};
use crate::data::table::{numbered_columns, Table};
use crate::data::{npy, source, text};

/// File of per-channel labels, at the top of a telemanom directory.
pub const LABELS_FILE: &str = "labeled_anomalies.csv";

/// The reference skips this SMAP channel: it is listed twice in the labels file.
const SKIPPED_CHANNEL: &str = "P-2";

/// Spacecraft names that select every channel of that spacecraft.
const SPACECRAFT: [&str; 2] = ["MSL", "SMAP"];

/// One row of `labeled_anomalies.csv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelLabels {
    pub chan_id: String,
    pub spacecraft: String,
    /// Inclusive `[start, end]` test-row ranges.
    pub anomaly_sequences: Vec<(usize, usize)>,
    pub num_values: usize,
    /// 1-based line in the labels file, for errors.
    pub line: usize,
}

/// The suffix that turns a spacecraft into the group of its channels (`MSL/channels`).
pub const CHANNELS_SUFFIX: &str = "/channels";

/// Loads `dataset` (`MSL`, `SMAP` or a channel id such as `M-6`, in any case) from `dir`.
pub fn load(dir: &Path, dataset: &str) -> Result<Dataset> {
    let labels_path = dir.join(LABELS_FILE);
    let all_labels = read_labels_file(&labels_path)?;
    let present = source::stems_in(&dir.join("train"), ".npy")?;
    if let Some(craft) = channels_group(dataset)? {
        let n_channels = spacecraft_channels(&all_labels, &present, craft, dir)?.len();
        bail!(
            "`{dataset}` names {n_channels} datasets, one per {craft} channel, not one: load them one at a time (`--list-members` lists them) or load `{craft}` concatenated"
        );
    }
    let (name, channels) = select_channels(&all_labels, &present, dataset, dir)?;

    let mut trains = Vec::with_capacity(channels.len());
    let mut tests = Vec::with_capacity(channels.len());
    let mut labels = Vec::new();
    let mut parts = Vec::with_capacity(channels.len());
    for channel in &channels {
        let train_path = channel_file(dir, "train", &channel.chan_id)?;
        let test_path = channel_file(dir, "test", &channel.chan_id)?;
        let train = read_channel(&train_path)?;
        let test = read_channel(&test_path)?;
        for (table, path, use_) in [
            (&train, &train_path, "train on"),
            (&test, &test_path, "score"),
        ] {
            if table.n_rows == 0 {
                bail!(
                    "`{}` has no rows: channel `{}` has nothing to {use_}",
                    path.display(),
                    channel.chan_id
                );
            }
        }
        if test.n_cols() != train.n_cols() {
            bail!(
                "`{}` has {} columns but `{}` has {}",
                test_path.display(),
                test.n_cols(),
                train_path.display(),
                train.n_cols()
            );
        }
        if let Some(first) = trains
            .first()
            .map(|t: &Table| (t.n_cols(), &channels[0].chan_id))
        {
            if train.n_cols() != first.0 {
                bail!(
                    "`{}` has {} columns but channel `{}` has {}: channels of one dataset must have the same features",
                    train_path.display(),
                    train.n_cols(),
                    first.1,
                    first.0
                );
            }
        }
        if channel.num_values != test.n_rows {
            bail!(
                "`{}` line {}: num_values of `{}` is {}, but `{}` has {} rows",
                labels_path.display(),
                channel.line,
                channel.chan_id,
                channel.num_values,
                test_path.display(),
                test.n_rows
            );
        }
        labels.extend(channel_labels(channel, test.n_rows, &labels_path)?);
        parts.push(Part {
            name: channel.chan_id.clone(),
            train_rows: train.n_rows,
            test_rows: test.n_rows,
        });
        trains.push(train);
        tests.push(test);
    }
    let train = Table::concat(&trains)?;
    let test = Table::concat(&tests)?;
    let meta = Meta {
        format_version: Meta::FORMAT_VERSION,
        dataset: name,
        source_format: "telemanom".to_string(),
        columns: numbered_columns(train.n_cols()),
        target_dims: Some(vec![0]),
        parts,
        interpretation: Vec::new(),
    };
    Dataset::new(train, test, labels, meta)
}

/// Reads `labeled_anomalies.csv`; columns are found by name.
pub fn read_labels_file(path: &Path) -> Result<Vec<ChannelLabels>> {
    let content = source::read_text(path).with_context(|| {
        format!("a telemanom directory needs `{LABELS_FILE}` beside `train/` and `test/`")
    })?;
    parse_labels(&content, path)
}

/// Parses the text of `labeled_anomalies.csv`; `path` only labels errors.
pub fn parse_labels(content: &str, path: &Path) -> Result<Vec<ChannelLabels>> {
    let mut lines = content
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        bail!("`{}` is empty", path.display());
    };
    let header = text::split_record(header);
    let column = |name: &str| {
        header.iter().position(|h| h == name).with_context(|| {
            format!(
                "`{}` header has no `{name}` column (found: {})",
                path.display(),
                header.join(", ")
            )
        })
    };
    let (chan_col, craft_col, seq_col, num_col) = (
        column("chan_id")?,
        column("spacecraft")?,
        column("anomaly_sequences")?,
        column("num_values")?,
    );
    let mut rows = Vec::new();
    for (line_idx, line) in lines {
        let line_no = line_idx + 1;
        let fields = text::split_record(line);
        if fields.len() != header.len() {
            bail!(
                "`{}` line {line_no}: ragged row with {} fields, but the header has {}",
                path.display(),
                fields.len(),
                header.len()
            );
        }
        let num_values = fields[num_col].parse::<usize>().with_context(|| {
            format!(
                "`{}` line {line_no}: num_values `{}` is not a whole number",
                path.display(),
                fields[num_col]
            )
        })?;
        let anomaly_sequences = parse_sequences(&fields[seq_col]).with_context(|| {
            format!("`{}` line {line_no}: bad anomaly_sequences", path.display())
        })?;
        rows.push(ChannelLabels {
            chan_id: fields[chan_col].clone(),
            spacecraft: fields[craft_col].clone(),
            anomaly_sequences,
            num_values,
            line: line_no,
        });
    }
    Ok(rows)
}

/// The 0/1 label of each of the `n_test_rows` test rows of one channel, which must be
/// the channel's `num_values`.
pub fn channel_labels(
    channel: &ChannelLabels,
    n_test_rows: usize,
    labels_path: &Path,
) -> Result<Vec<u8>> {
    if channel.num_values != n_test_rows {
        bail!(
            "`{}` line {}: num_values of `{}` is {}, but its test file has {n_test_rows} rows",
            labels_path.display(),
            channel.line,
            channel.chan_id,
            channel.num_values,
        );
    }
    let mut labels = vec![0u8; n_test_rows];
    for &(start, end) in &channel.anomaly_sequences {
        if end >= channel.num_values {
            bail!(
                "`{}` line {}: anomaly [{start}, {end}] of `{}` ends past its {} test rows",
                labels_path.display(),
                channel.line,
                channel.chan_id,
                channel.num_values
            );
        }
        labels[start..=end].fill(1);
    }
    Ok(labels)
}

/// `[[2149, 2349], [4536, 4844]]` as inclusive `(start, end)` pairs.
fn parse_sequences(text: &str) -> Result<Vec<(usize, usize)>> {
    let trimmed = text.trim();
    if !(trimmed.starts_with('[') && trimmed.ends_with(']')) {
        bail!("`{text}` is not a list of [start, end] pairs");
    }
    let numbers = trimmed
        .split(['[', ']', ','])
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(|token| {
            token
                .parse::<usize>()
                .with_context(|| format!("`{token}` is not a row index"))
        })
        .collect::<Result<Vec<_>>>()?;
    if numbers.len() % 2 != 0 {
        bail!("`{text}` has an odd number of row indices");
    }
    let pairs: Vec<(usize, usize)> = numbers
        .chunks_exact(2)
        .map(|pair| (pair[0], pair[1]))
        .collect();
    if let Some((start, end)) = pairs.iter().find(|(start, end)| start > end) {
        bail!("anomaly [{start}, {end}] starts after it ends");
    }
    Ok(pairs)
}

/// The members `dataset` stands for: a spacecraft's channels for `MSL/channels`, else
/// the one canonical name (`msl` -> `MSL`, `m-3` -> `M-3`). Reads only the labels file
/// and the listing of `train/`.
pub fn members(dir: &Path, dataset: &str) -> Result<Vec<String>> {
    let all_labels = read_labels_file(&dir.join(LABELS_FILE))?;
    let present = source::stems_in(&dir.join("train"), ".npy")?;
    if let Some(craft) = channels_group(dataset)? {
        let channels = spacecraft_channels(&all_labels, &present, craft, dir)?;
        return Ok(channels.into_iter().map(|c| c.chan_id).collect());
    }
    let (name, _) = select_channels(&all_labels, &present, dataset, dir)?;
    Ok(vec![name])
}

/// The files loading `dataset` reads (a group: every member's): the labels file and each
/// channel's train and test file. What its data version covers, listed without reading
/// the data.
pub fn inputs(dir: &Path, dataset: &str) -> Result<Vec<PathBuf>> {
    let labels_path = dir.join(LABELS_FILE);
    let all_labels = read_labels_file(&labels_path)?;
    let present = source::stems_in(&dir.join("train"), ".npy")?;
    let channels = match channels_group(dataset)? {
        Some(craft) => spacecraft_channels(&all_labels, &present, craft, dir)?,
        None => select_channels(&all_labels, &present, dataset, dir)?.1,
    };
    let mut files = vec![labels_path];
    for channel in &channels {
        files.push(channel_file(dir, "train", &channel.chan_id)?);
        files.push(channel_file(dir, "test", &channel.chan_id)?);
    }
    Ok(files)
}

/// For `MSL/channels` (any case), the spacecraft whose channels it groups.
fn channels_group(dataset: &str) -> Result<Option<&'static str>> {
    let lower = dataset.to_ascii_lowercase();
    let Some(craft) = lower.strip_suffix(CHANNELS_SUFFIX) else {
        return Ok(None);
    };
    match SPACECRAFT
        .iter()
        .find(|known| known.eq_ignore_ascii_case(craft))
    {
        Some(known) => Ok(Some(known)),
        None => bail!("unknown group `{dataset}`: expected `MSL/channels` or `SMAP/channels`"),
    }
}

/// The canonical name of `dataset` and the channels it loads (sorted by id, as the
/// reference concatenates them).
fn select_channels(
    all: &[ChannelLabels],
    present: &[String],
    dataset: &str,
    dir: &Path,
) -> Result<(String, Vec<ChannelLabels>)> {
    if let Some(craft) = SPACECRAFT
        .iter()
        .find(|craft| craft.eq_ignore_ascii_case(dataset))
    {
        return Ok((
            craft.to_string(),
            spacecraft_channels(all, present, craft, dir)?,
        ));
    }
    let exact = present.iter().find(|p| *p == dataset);
    let chan_id = exact.or_else(|| present.iter().find(|p| p.eq_ignore_ascii_case(dataset)));
    let Some(chan_id) = chan_id else {
        let mut message = format!(
            "unknown channel `{dataset}`: no `{dataset}.npy` in `{}`; available: MSL, SMAP, MSL/channels, SMAP/channels, {}",
            dir.join("train").display(),
            list_or_none(present)
        );
        if let Some(suggestion) = source::closest(dataset, present) {
            message.push_str(&format!("; did you mean `{suggestion}`?"));
        }
        if dataset.starts_with("machine-") || dataset.eq_ignore_ascii_case("SMD") {
            message.push_str(&format!(
                "; `{dataset}` looks like SMD: pass `--data-dir` of the SMD data"
            ));
        }
        bail!(message);
    };
    let channel = all
        .iter()
        .find(|c| &c.chan_id == chan_id)
        .with_context(|| {
            format!(
                "channel `{chan_id}` has data but no row in `{}`",
                dir.join(LABELS_FILE).display()
            )
        })?;
    Ok((chan_id.clone(), vec![channel.clone()]))
}

/// Every channel of `craft` that has labels and data, sorted by id, deduplicated.
fn spacecraft_channels(
    all: &[ChannelLabels],
    present: &[String],
    craft: &str,
    dir: &Path,
) -> Result<Vec<ChannelLabels>> {
    let mut channels: Vec<ChannelLabels> = all
        .iter()
        .filter(|c| {
            c.spacecraft == craft && c.chan_id != SKIPPED_CHANNEL && present.contains(&c.chan_id)
        })
        .cloned()
        .collect();
    if channels.is_empty() {
        bail!(
            "no `{craft}` channel of `{}` is present in `{}` (channels there: {})",
            LABELS_FILE,
            dir.join("train").display(),
            list_or_none(present)
        );
    }
    channels.sort_by(|a, b| a.chan_id.cmp(&b.chan_id));
    channels.dedup_by(|a, b| a.chan_id == b.chan_id);
    Ok(channels)
}

/// One channel's `.npy` (or `.npy.gz`) as a table with columns `f0..`.
fn read_channel(path: &Path) -> Result<Table> {
    let array = npy::read_npy(path)?;
    Table::new(numbered_columns(array.n_cols), array.n_rows, array.values)
}

/// `dir/<split>/<chan>.npy` or `.npy.gz`.
fn channel_file(dir: &Path, split: &str, chan_id: &str) -> Result<PathBuf> {
    let split_dir = dir.join(split);
    source::find_maybe_gz(&split_dir, &format!("{chan_id}.npy")).with_context(|| {
        format!(
            "missing `{chan_id}.npy` (or `.npy.gz`) in `{}`",
            split_dir.display()
        )
    })
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::npy::write_npy;

    /// The sample bundled with the repository (three MSL channels).
    fn sample_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/telemanom")
    }

    #[test]
    fn msl_concatenates_present_channels_sorted_with_labels() {
        let dir = sample_dir();
        let dataset = load(&dir, "MSL").unwrap();
        let names: Vec<&str> = dataset.meta.parts.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["F-4", "M-3", "T-13"]);
        let mut train_rows = 0;
        let mut test_rows = 0;
        let mut offset = 0;
        let all_labels = read_labels_file(&dir.join(LABELS_FILE)).unwrap();
        for part in &dataset.meta.parts {
            let train = read_channel(&channel_file(&dir, "train", &part.name).unwrap()).unwrap();
            let test = read_channel(&channel_file(&dir, "test", &part.name).unwrap()).unwrap();
            assert_eq!(
                (part.train_rows, part.test_rows),
                (train.n_rows, test.n_rows)
            );
            // The channel's first test row sits at its offset in the concatenation.
            assert_eq!(dataset.test.row(offset), test.row(0));
            let channel = all_labels.iter().find(|c| c.chan_id == part.name).unwrap();
            for (row, &label) in dataset.labels[offset..offset + test.n_rows]
                .iter()
                .enumerate()
            {
                let inside = channel
                    .anomaly_sequences
                    .iter()
                    .any(|&(s, e)| s <= row && row <= e);
                assert_eq!(label == 1, inside, "{} row {row}", part.name);
            }
            train_rows += train.n_rows;
            test_rows += test.n_rows;
            offset += test.n_rows;
        }
        assert_eq!(
            (dataset.train.n_rows, dataset.test.n_rows),
            (train_rows, test_rows)
        );
        assert_eq!((train_rows, test_rows), (5426, 7979));
        assert_eq!(
            dataset.labels.iter().filter(|&&l| l == 1).count(),
            71 + 251 + 101 + 151
        );
        assert_eq!(dataset.train.n_cols(), 55);
        assert_eq!(dataset.meta.columns[0], "f0");
        assert_eq!(dataset.meta.target_dims, Some(vec![0]));
    }

    #[test]
    fn one_channel_case_insensitively() {
        let dataset = load(&sample_dir(), "m-3").unwrap();
        assert_eq!((dataset.train.n_rows, dataset.test.n_rows), (2037, 2127));
        assert_eq!(
            dataset.labels.iter().filter(|&&l| l == 1).count(),
            1500 - 1250 + 1
        );
        assert_eq!(
            (
                dataset.labels[1249],
                dataset.labels[1250],
                dataset.labels[1500]
            ),
            (0, 1, 1)
        );
        assert_eq!(dataset.labels[1501], 0);
        // `m-3` and `M-3` are one dataset: the snapshot names it canonically.
        assert_eq!(dataset.meta.dataset, "M-3");
        assert_eq!(dataset.meta.parts[0].name, "M-3");
    }

    #[test]
    fn unknown_channel_lists_available_and_suggests() {
        let message = format!("{:#}", load(&sample_dir(), "M-8").unwrap_err());
        assert!(message.contains("unknown channel `M-8`"), "{message}");
        assert!(message.contains("F-4, M-3, T-13"), "{message}");
        assert!(message.contains("did you mean `M-3`?"), "{message}");
        assert!(message.contains("train"), "{message}");
    }

    /// A one-channel telemanom directory with 4 test rows and the given labels line.
    fn tiny_dir(labels_row: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("train")).unwrap();
        std::fs::create_dir_all(dir.path().join("test")).unwrap();
        write_npy(&dir.path().join("train/X-1.npy"), 3, 2, &[0.0; 6]).unwrap();
        write_npy(&dir.path().join("test/X-1.npy.gz"), 4, 2, &[0.0; 8]).unwrap();
        let csv = format!("chan_id,spacecraft,anomaly_sequences,class,num_values\n{labels_row}\n");
        std::fs::write(dir.path().join(LABELS_FILE), csv).unwrap();
        dir
    }

    #[test]
    fn num_values_must_match_test_rows() {
        let dir = tiny_dir(r#"X-1,MSL,"[[1, 2]]",[point],5"#);
        let message = format!("{:#}", load(dir.path(), "X-1").unwrap_err());
        assert!(
            message.contains("labeled_anomalies.csv` line 2"),
            "{message}"
        );
        assert!(
            message.contains("num_values of `X-1` is 5")
                && message.contains("X-1.npy.gz` has 4 rows"),
            "{message}"
        );
    }

    #[test]
    fn bad_anomaly_sequences_name_the_line() {
        let dir = tiny_dir(r#"X-1,MSL,"[[1, 9]]",[point],4"#);
        let message = format!("{:#}", load(dir.path(), "MSL").unwrap_err());
        assert!(
            message.contains("line 2") && message.contains("[1, 9]"),
            "{message}"
        );
        let dir = tiny_dir(r#"X-1,MSL,"[[3, 1]]",[point],4"#);
        let message = format!("{:#}", load(dir.path(), "X-1").unwrap_err());
        assert!(
            message.contains("line 2") && message.contains("starts after it ends"),
            "{message}"
        );
        let dir = tiny_dir(r#"X-1,MSL,"[[1, x]]",[point],4"#);
        let message = format!("{:#}", load(dir.path(), "X-1").unwrap_err());
        assert!(
            message.contains("line 2") && message.contains("`x` is not a row index"),
            "{message}"
        );
    }

    #[test]
    fn spacecraft_without_present_channels_is_an_error() {
        let dir = tiny_dir(r#"X-1,MSL,"[[1, 2]]",[point],4"#);
        let message = format!("{:#}", load(dir.path(), "SMAP").unwrap_err());
        assert!(
            message.contains("no `SMAP` channel") && message.contains("X-1"),
            "{message}"
        );
        let dataset = load(dir.path(), "msl").unwrap();
        assert_eq!(dataset.labels, vec![0, 1, 1, 0]);
    }

    #[test]
    fn a_channel_without_rows_is_refused_by_name() {
        let dir = tiny_dir(r#"X-1,MSL,"[[1, 2]]",[point],4"#);
        write_npy(&dir.path().join("train/X-1.npy"), 0, 2, &[]).unwrap();
        let message = format!("{:#}", load(dir.path(), "MSL").unwrap_err());
        assert!(
            message.contains("X-1.npy` has no rows: channel `X-1` has nothing to train on"),
            "{message}"
        );
    }

    #[test]
    fn names_are_canonical_and_a_group_of_channels_is_not_one_dataset() {
        let dir = tiny_dir(r#"X-1,MSL,"[[1, 2]]",[point],4"#);
        assert_eq!(load(dir.path(), "msl").unwrap().meta.dataset, "MSL");
        assert_eq!(load(dir.path(), "x-1").unwrap().meta.dataset, "X-1");
        let message = format!("{:#}", load(dir.path(), "MSL/channels").unwrap_err());
        assert!(
            message.contains("`MSL/channels` names 1 datasets, one per MSL channel")
                && message.contains("--list-members"),
            "{message}"
        );
    }

    #[test]
    fn skips_p2_like_the_reference() {
        let dir = tiny_dir(r#"X-1,SMAP,"[[1, 2]]",[point],4"#);
        write_npy(&dir.path().join("train/P-2.npy"), 3, 2, &[0.0; 6]).unwrap();
        write_npy(&dir.path().join("test/P-2.npy"), 4, 2, &[0.0; 8]).unwrap();
        let csv_path = dir.path().join(LABELS_FILE);
        let mut csv = std::fs::read_to_string(&csv_path).unwrap();
        csv.push_str("P-2,SMAP,\"[[0, 0]]\",[point],4\n");
        std::fs::write(&csv_path, csv).unwrap();
        let dataset = load(dir.path(), "SMAP").unwrap();
        assert_eq!(dataset.meta.parts.len(), 1);
        assert_eq!(dataset.meta.parts[0].name, "X-1");
    }
}
