//! `--slurm-config FILE`: sbatch options for every job of a run, one per line, as a
//! batch script's header has them (`--qos=high`, or `#SBATCH --qos=high`).

use std::path::Path;

use anyhow::{Context, Result};

/// Options flow sets itself; changing them would lose the job's log or working directory.
const RESERVED_LONG: &[&str] = &["output", "error", "chdir", "wrap", "parsable", "open-mode"];
const RESERVED_SHORT: &[char] = &['o', 'e', 'D'];

/// Reads the options in `path`: one per line, blank lines and `#` comments skipped, a
/// leading `#SBATCH` dropped. A line keeps its spaces (`--comment=nightly SMD`).
pub fn read_sbatch_options(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the Slurm config `{}`", path.display()))?;
    parse(&text).map_err(|(line, message)| anyhow::anyhow!("{}:{line}: {message}", path.display()))
}

fn parse(text: &str) -> std::result::Result<Vec<String>, (usize, String)> {
    let mut options = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let line = line.strip_prefix("#SBATCH").map(str::trim).unwrap_or(line);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let number = index + 1;
        if !line.starts_with('-') {
            return Err((
                number,
                format!("`{line}` is not an sbatch option; write one option per line, like `--qos=high`"),
            ));
        }
        if let Some(option) = reserved(line) {
            return Err((
                number,
                format!("`{option}` is set by flow for every job (the run's log and project directory); remove it"),
            ));
        }
        options.push(line.to_string());
    }
    Ok(options)
}

/// The reserved option `line` sets, if any: `--output=x`, `--output x`, `-o x`, `-ox`.
fn reserved(line: &str) -> Option<String> {
    match line.strip_prefix("--") {
        Some(long) => {
            let name = long.split(['=', ' ']).next().unwrap_or(long);
            RESERVED_LONG.contains(&name).then(|| format!("--{name}"))
        }
        None => {
            let flag = line.chars().nth(1)?;
            RESERVED_SHORT.contains(&flag).then(|| format!("-{flag}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_one_per_line_with_comments_and_sbatch_prefix() {
        let options = parse(
            "# site defaults\n--qos=high\n\n#SBATCH --constraint=skylake\n  --comment=nightly SMD  \n",
        )
        .unwrap();
        assert_eq!(
            options,
            [
                "--qos=high",
                "--constraint=skylake",
                "--comment=nightly SMD"
            ]
        );
    }

    #[test]
    fn reserved_and_malformed_lines_are_named() {
        let error = parse("--qos=high\n--output=x.log\n").unwrap_err();
        assert_eq!(error.0, 2);
        assert!(error.1.contains("`--output` is set by flow"), "{}", error.1);
        assert_eq!(parse("-o x.log\n").unwrap_err().0, 1);
        assert_eq!(parse("-ox.log\n").unwrap_err().0, 1);
        let error = parse("qos=high\n").unwrap_err();
        assert!(error.1.contains("not an sbatch option"), "{}", error.1);
        // A long option that merely starts like a short reserved one is fine.
        assert!(parse("--exclusive\n--dependency=singleton\n").is_ok());
    }
}
