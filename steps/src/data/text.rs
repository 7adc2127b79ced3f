//! Comma-separated numeric text (SMD's `.txt`, generic `.csv`): parsing with errors that
//! name the file, the line and the column, since these files are edited by hand.

use std::path::Path;

use anyhow::{bail, Result};

/// Numeric rows parsed from text, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct NumericRows {
    /// The header's names, when the text has a header row.
    pub header: Option<Vec<String>>,
    pub n_cols: usize,
    pub n_rows: usize,
    pub values: Vec<f64>,
}

/// Parses comma-separated numbers, one row per line; blank lines are skipped, an empty
/// field or `nan` is NaN. With `has_header` the first non-blank line names the columns.
/// `path` only labels errors.
pub fn parse_numeric(text: &str, path: &Path, has_header: bool) -> Result<NumericRows> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty());
    let mut header = None;
    let mut n_cols = None;
    if has_header {
        let Some((_, line)) = lines.next() else {
            bail!("`{}` is empty: expected a header row", path.display());
        };
        let names = split_record(line);
        n_cols = Some(names.len());
        header = Some(names);
    }
    let mut values = Vec::new();
    let mut n_rows = 0;
    let mut first_data_line = 0;
    for (line_idx, line) in lines {
        let line_no = line_idx + 1;
        let expected = *n_cols.get_or_insert_with(|| {
            first_data_line = line_no;
            line.split(',').count()
        });
        let mut found = 0;
        for (col, field) in line.split(',').enumerate() {
            found += 1;
            if col < expected {
                values.push(parse_number(field).ok_or_else(|| {
                    let column = match &header {
                        Some(names) => format!("column {} (`{}`)", col + 1, names[col]),
                        None => format!("column {}", col + 1),
                    };
                    anyhow::anyhow!(
                        "`{}` line {line_no}, {column}: `{}` is not a number",
                        path.display(),
                        field.trim()
                    )
                })?);
            }
        }
        if found != expected {
            let reference = if has_header {
                "the header".to_string()
            } else {
                format!("line {first_data_line}")
            };
            bail!(
                "`{}` line {line_no}: ragged row with {found} values, but {reference} has {expected}",
                path.display()
            );
        }
        n_rows += 1;
    }
    Ok(NumericRows {
        header,
        n_cols: n_cols.unwrap_or(0),
        n_rows,
        values,
    })
}

/// Splits one CSV record on commas outside double quotes; quotes are removed (`""`
/// inside quotes is a literal quote) and fields trimmed.
pub fn split_record(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if in_quotes && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => fields.push(std::mem::take(&mut field).trim().to_string()),
            _ => field.push(c),
        }
    }
    fields.push(field.trim().to_string());
    fields
}

/// A number, or NaN for an empty field or a NaN spelling; `None` if not numeric.
fn parse_number(field: &str) -> Option<f64> {
    let field = field.trim();
    let field = field
        .strip_prefix('"')
        .and_then(|f| f.strip_suffix('"'))
        .unwrap_or(field)
        .trim();
    if field.is_empty() || field.eq_ignore_ascii_case("nan") || field.eq_ignore_ascii_case("na") {
        return Some(f64::NAN);
    }
    field.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("x.csv")
    }

    #[test]
    fn parses_rows_with_header_and_missing_values() {
        let rows = parse_numeric("a,b\n1,2.5\n\n3,\n", path(), true).unwrap();
        assert_eq!(rows.header, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!((rows.n_rows, rows.n_cols), (2, 2));
        assert_eq!(&rows.values[..3], &[1.0, 2.5, 3.0]);
        assert!(rows.values[3].is_nan());
    }

    #[test]
    fn ragged_row_names_file_and_line() {
        let message = parse_numeric("1,2\n3,4\n5\n", path(), false)
            .unwrap_err()
            .to_string();
        assert!(message.contains("`x.csv` line 3"), "{message}");
        assert!(
            message.contains("1 values") && message.contains("line 1 has 2"),
            "{message}"
        );
        let message = parse_numeric("1,2\n3,4,5\n", path(), false)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("line 2") && message.contains("3 values"),
            "{message}"
        );
    }

    #[test]
    fn non_numeric_value_names_line_and_column() {
        let message = parse_numeric("a,b\n1,2\n3,oops\n", path(), true)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("`x.csv` line 3, column 2 (`b`): `oops` is not a number"),
            "{message}"
        );
    }

    #[test]
    fn split_record_honours_quotes() {
        let fields = split_record(r#"P-1,SMAP,"[[1, 2], [3, 4]]","[a, b]",8505"#);
        assert_eq!(
            fields,
            vec!["P-1", "SMAP", "[[1, 2], [3, 4]]", "[a, b]", "8505"]
        );
    }
}
