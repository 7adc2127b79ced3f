//! CSV request bodies (`Content-Type: text/csv`): comma-separated, optionally quoted fields,
//! an optional header row (a first row that is not all numbers names the columns), empty
//! fields as missing values.

use crate::serve::request::{
    column_positions, quoted_list, ParsedRows, RequestError, StreamFields,
};

/// Parses a CSV body into rows in `columns` order. Errors name the data row (0-based, as in
/// the predictions) and the line (1-based, as in an editor).
pub fn parse_csv(body: &[u8], columns: &[String]) -> Result<ParsedRows, RequestError> {
    let text =
        std::str::from_utf8(body).map_err(|e| RequestError::Csv(format!("not UTF-8 text: {e}")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .peekable();
    let mut positions: Vec<usize> = (0..columns.len()).collect();
    if let Some(&(line_idx, first)) = lines.peek() {
        let fields = split_fields(first, line_idx + 1)?;
        if is_header(&fields) {
            let names: Vec<String> = fields.iter().map(|f| f.trim().to_string()).collect();
            positions = column_positions(&names, columns)?;
            lines.next();
        }
    }
    let width = columns.len();
    let mut values = Vec::new();
    let mut n_rows = 0;
    for (line_idx, line) in lines {
        let row = n_rows;
        let fields = split_fields(line, line_idx + 1)?;
        if fields.len() != positions.len() {
            return Err(RequestError::WrongColumnCount {
                row,
                expected: positions.len(),
                got: fields.len(),
                columns: format!("{}; line {}", quoted_list(columns), line_idx + 1),
            });
        }
        let start = values.len();
        values.resize(start + width, f64::NAN);
        for (field, &col) in fields.iter().zip(&positions) {
            values[start + col] = parse_field(field).ok_or_else(|| RequestError::NonNumeric {
                row,
                column: columns[col].clone(),
                value: field.trim().to_string(),
            })?;
        }
        n_rows += 1;
    }
    Ok(ParsedRows {
        n_rows,
        values,
        threshold: None,
        stream: StreamFields::default(),
    })
}

/// A number, or NaN for an empty field.
fn parse_field(field: &str) -> Option<f64> {
    let field = field.trim();
    if field.is_empty() {
        Some(f64::NAN)
    } else {
        field.parse::<f64>().ok()
    }
}

/// A row is a header when some non-empty field is not a number.
fn is_header(fields: &[String]) -> bool {
    fields.iter().any(|f| parse_field(f).is_none())
}

/// Splits one line on commas, honouring double quotes (`""` inside quotes is a quote).
fn split_fields(line: &str, line_number: usize) -> Result<Vec<String>, RequestError> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => in_quotes = false,
            ('"', false) if field.trim().is_empty() => {
                field.clear();
                in_quotes = true;
            }
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err(RequestError::Csv(format!(
            "line {line_number}: unclosed quote"
        )));
    }
    fields.push(field);
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns() -> Vec<String> {
        vec!["a".to_string(), "b".to_string()]
    }

    #[test]
    fn header_row_reorders_columns() {
        let rows = parse_csv(b"b,a\r\n2,1\r\n4,3\r\n", &columns()).unwrap();
        assert_eq!((rows.n_rows, rows.values), (2, vec![1.0, 2.0, 3.0, 4.0]));
        let quoted = parse_csv(b"\"b\",\"a\"\n2,1\n", &columns()).unwrap();
        assert_eq!(quoted.values, vec![1.0, 2.0]);
    }

    #[test]
    fn without_header_columns_are_positional_and_empty_is_missing() {
        let rows = parse_csv(b"1,2\n3,\n\n", &columns()).unwrap();
        assert_eq!(rows.n_rows, 2);
        assert_eq!(&rows.values[..3], &[1.0, 2.0, 3.0]);
        assert!(rows.values[3].is_nan());
        let exponent = parse_csv(b"1e-3, -2.5\n", &columns()).unwrap();
        assert_eq!(exponent.values, vec![0.001, -2.5]);
    }

    #[test]
    fn bad_csv_names_row_line_and_column() {
        let cases: [(&[u8], &str); 5] = [
            (b"a,b\n1,2\n3,x\n", "row 1, column `b`: `x` is not a number"),
            (b"1,2\n3\n", "row 1 has 1 values; the model expects 2"),
            (b"a,c\n1,2\n", "unknown `c`, missing `b`"),
            (b"\"a,b\n", "line 1: unclosed quote"),
            (b"\xff\xfe", "not UTF-8"),
        ];
        for (body, expected) in cases {
            let message = parse_csv(body, &columns()).unwrap_err().to_string();
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        let message = parse_csv(b"1,2\n3\n", &columns()).unwrap_err().to_string();
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn header_only_body_has_no_rows() {
        let rows = parse_csv(b"a,b\n", &columns()).unwrap();
        assert_eq!(rows.n_rows, 0);
    }
}
