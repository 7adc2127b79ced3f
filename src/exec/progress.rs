//! Live progress of running steps.
//!
//! A step appends JSON lines to the file `FLOW_PROGRESS` names —
//! `{"label": "epoch 3/10", "done": 120, "total": 400, "unit": "batches"}` — as often as
//! it likes. flow reads what is new a few times a second, draws one bar per running step
//! when stderr is a terminal (several at once under `-j` or a fan-out), prints a line when
//! the label changes otherwise (and once a minute within a long one, so a log shows the
//! step alive), and keeps the latest as the run's `flow.progress` tag (at most once a
//! second) for the dashboard.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

/// The tag holding a RUNNING run's latest progress (JSON).
pub const PROGRESS_TAG: &str = "flow.progress";

/// How often a run's progress tag is rewritten.
const TAG_EVERY: Duration = Duration::from_secs(1);

/// Without a terminal, the least time between two printed lines of one step.
const LINE_EVERY: Duration = Duration::from_secs(10);

/// Without a terminal, how often a line repeats a label that has not changed: a ten-minute
/// epoch would otherwise leave a log (a Slurm job's, a CI's) silent for ten minutes.
const SAME_LABEL_EVERY: Duration = Duration::from_secs(60);

/// stderr, shared by the echo of step output and the progress bars so that neither
/// tears the other.
#[derive(Clone)]
pub struct Console {
    bars: Option<MultiProgress>,
}

impl Console {
    /// Bars when stderr is a terminal that can draw them.
    pub fn new() -> Console {
        let terminal = std::io::stderr().is_terminal()
            && std::env::var("TERM").map(|t| t != "dumb").unwrap_or(true);
        Console {
            bars: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// Prints one line above the bars.
    pub fn line(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

/// One progress line as steps write it.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
pub struct Update {
    #[serde(default)]
    pub label: String,
    #[serde(default)]
    pub done: u64,
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub unit: Option<String>,
}

/// The progress files of running steps.
pub struct Progress {
    console: Console,
    watched: BTreeMap<usize, Watched>,
}

struct Watched {
    run_id: String,
    step: String,
    path: PathBuf,
    offset: u64,
    partial: String,
    bar: Option<ProgressBar>,
    latest: Option<Update>,
    tag_written: Option<Instant>,
    tag_due: bool,
    printed: Option<(Instant, String)>,
}

impl Progress {
    pub fn new(console: Console) -> Progress {
        Progress {
            console,
            watched: BTreeMap::new(),
        }
    }

    /// Follows the progress file of node `node` while its step runs.
    pub fn watch(&mut self, node: usize, run_id: &str, step: &str, path: PathBuf) {
        self.watched.insert(
            node,
            Watched {
                run_id: run_id.to_string(),
                step: step.to_string(),
                path,
                offset: 0,
                partial: String::new(),
                bar: None,
                latest: None,
                tag_written: None,
                tag_due: false,
                printed: None,
            },
        );
    }

    /// Stops following node `node`; its bar disappears.
    pub fn unwatch(&mut self, node: usize) {
        if let Some(watched) = self.watched.remove(&node) {
            if let Some(bar) = watched.bar {
                bar.finish_and_clear();
            }
        }
    }

    /// Reads what is new, draws it, and returns `(run, progress JSON)` for every run
    /// whose tag is due.
    pub fn poll(&mut self) -> Vec<(String, String)> {
        let mut tags = Vec::new();
        for watched in self.watched.values_mut() {
            if let Some(update) = watched.read_new() {
                watched.show(&self.console, &update);
                watched.latest = Some(update);
                watched.tag_due = true;
            }
            let tag_time = watched
                .tag_written
                .is_none_or(|written| written.elapsed() >= TAG_EVERY);
            if watched.tag_due && tag_time {
                if let Some(latest) = &watched.latest {
                    let mut value = serde_json::to_value(latest).unwrap_or_default();
                    value["updated"] = serde_json::json!(
                        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    tags.push((watched.run_id.clone(), value.to_string()));
                }
                watched.tag_written = Some(Instant::now());
                watched.tag_due = false;
            }
        }
        tags
    }
}

impl Watched {
    /// The last complete line appended since the previous read.
    fn read_new(&mut self) -> Option<Update> {
        let mut file = File::open(&self.path).ok()?;
        let length = file.metadata().ok()?.len();
        if length <= self.offset {
            return None;
        }
        file.seek(SeekFrom::Start(self.offset)).ok()?;
        let mut text = String::new();
        file.take(length - self.offset)
            .read_to_string(&mut text)
            .ok()?;
        self.offset = length;
        self.partial.push_str(&text);
        let complete_end = self.partial.rfind('\n')?;
        let complete: String = self.partial.drain(..=complete_end).collect();
        complete
            .lines()
            .rev()
            .find_map(|line| serde_json::from_str::<Update>(line).ok())
    }

    fn show(&mut self, console: &Console, update: &Update) {
        match &console.bars {
            Some(bars) => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new(update.total.unwrap_or(0)));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:.bold} {msg} [{bar:30}] {pos}/{len} {elapsed_precise} eta {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    bar.set_prefix(self.step.clone());
                    bar
                });
                if let Some(total) = update.total {
                    bar.set_length(total);
                }
                bar.set_position(update.done);
                let unit = update.unit.as_deref().unwrap_or("");
                bar.set_message(format!("{} {unit}", update.label).trim().to_string());
            }
            None => {
                let printed = self
                    .printed
                    .as_ref()
                    .map(|(when, label)| (when.elapsed(), label.as_str()));
                if line_due(printed, &update.label) {
                    console.line(&format!("[{}] {}", self.step, describe(update)));
                    self.printed = Some((Instant::now(), update.label.clone()));
                }
            }
        }
    }
}

/// Whether a step's new progress gets a line, given how long ago its last line was printed
/// and with which label: at a new label after [`LINE_EVERY`], within one after
/// [`SAME_LABEL_EVERY`].
fn line_due(printed: Option<(Duration, &str)>, label: &str) -> bool {
    match printed {
        None => true,
        Some((since, last)) if last != label => since >= LINE_EVERY,
        Some((since, _)) => since >= SAME_LABEL_EVERY,
    }
}

/// `epoch 3/10: 120/400 batches (30%)`.
pub fn describe(update: &Update) -> String {
    let unit = update
        .unit
        .as_deref()
        .map(|u| format!(" {u}"))
        .unwrap_or_default();
    match update.total {
        Some(total) if total > 0 => format!(
            "{}: {}/{total}{unit} ({}%)",
            update.label,
            update.done,
            update.done * 100 / total
        ),
        _ => format!("{}: {}{unit}", update.label, update.done),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_new_lines_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("progress.jsonl");
        let mut progress = Progress::new(Console { bars: None });
        progress.watch(0, "run", "train", path.clone());
        assert!(progress.poll().is_empty(), "no file yet");
        std::fs::write(
            &path,
            "{\"label\":\"epoch 1/2\",\"done\":5,\"total\":10}\n{\"label\":\"ep",
        )
        .unwrap();
        let tags = progress.poll();
        assert_eq!(tags.len(), 1);
        assert!(tags[0].1.contains("\"done\":5"), "{tags:?}");
        // The torn line completes later; the tag waits for its second.
        std::fs::write(
            &path,
            "{\"label\":\"epoch 1/2\",\"done\":5,\"total\":10}\n{\"label\":\"epoch 2/2\",\"done\":7,\"total\":10}\n",
        )
        .unwrap();
        assert!(progress.poll().is_empty());
        let latest = progress.watched[&0].latest.clone().unwrap();
        assert_eq!((latest.label.as_str(), latest.done), ("epoch 2/2", 7));
    }

    #[test]
    fn without_a_terminal_lines_come_per_label_and_once_a_minute_within_one() {
        let secs = Duration::from_secs;
        assert!(line_due(None, "epoch 1/10"), "the first report is printed");
        assert!(line_due(Some((secs(11), "epoch 1/10")), "epoch 2/10"));
        assert!(
            !line_due(Some((secs(3), "epoch 1/10")), "epoch 2/10"),
            "labels changing faster than every 10 s are thinned"
        );
        assert!(!line_due(Some((secs(30), "epoch 1/10")), "epoch 1/10"));
        assert!(
            line_due(Some((secs(61), "epoch 1/10")), "epoch 1/10"),
            "a long epoch still shows in the log"
        );
    }

    #[test]
    fn described_with_share() {
        let update = Update {
            label: "epoch 3/10".into(),
            done: 120,
            total: Some(400),
            unit: Some("batches".into()),
        };
        assert_eq!(describe(&update), "epoch 3/10: 120/400 batches (30%)");
    }
}
