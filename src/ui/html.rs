//! Small pieces every page is built from: escaping, the page shell, and how numbers,
//! times and ids read.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use crate::store::RunRecord;

/// Escapes text for an HTML element body or a double-quoted attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// Percent-encodes a query-string or path component.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => {
                let _ = write!(out, "%{byte:02X}");
            }
        }
    }
    out
}

/// Decodes a percent-encoded query component (`+` is a space); bad escapes stay as they are.
pub fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let hex = |byte: u8| (byte as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// At most `max_chars` characters, an ellipsis marking a cut.
pub fn abbreviate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The page shell: head (embedded CSS and scripts), navigation and `body`.
/// `csrf` is the token scripts send back with every POST (empty on read-only pages).
pub fn layout(title: &str, csrf: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"flow-csrf\" content=\"{csrf}\"><link rel=\"icon\" href=\"data:,\">\
         <title>{title} · flow</title>\
         <link rel=\"stylesheet\" href=\"/static/style.css\">\
         <script src=\"/static/chart.js\" defer></script>\
         <script src=\"/static/app.js\" defer></script></head>\
         <body><header><a class=\"brand\" href=\"/\">flow</a><nav>\
         <a href=\"/\">Runs</a><a href=\"/models\">Models</a><a href=\"/plan\">Plan</a>\
         </nav></header><main>{body}</main></body></html>\n",
        csrf = escape(csrf),
        title = escape(title),
    )
}

/// First 8 characters of a run id, the short form pages show.
pub fn short_id(run_id: &str) -> &str {
    &run_id[..run_id.len().min(8)]
}

/// A link to a run's page, showing its short id.
pub fn run_link(run_id: &str) -> String {
    format!(
        "<a class=\"run-id\" href=\"/runs/{id}\" title=\"{id}\">{short}</a>",
        id = escape(run_id),
        short = escape(short_id(run_id))
    )
}

/// A metric value as a person reads it: integers without decimals, others with up to
/// six significant digits, NaN and infinities spelled out.
pub fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    if value.fract() == 0.0 && value.abs() < 1e15 {
        return format!("{value:.0}");
    }
    let magnitude = value.abs();
    if !(1e-4..1e6).contains(&magnitude) {
        return format!("{value:.4e}");
    }
    let digits = (5 - magnitude.log10().floor() as i32).clamp(0, 9) as usize;
    let text = format!("{value:.digits$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// A size as a person reads it: `512 B`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `2026-11-22 14:03:07` (UTC), the time pages show.
pub fn time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S").to_string()
}

/// How long a run took, or has been running.
pub fn duration(run: &RunRecord) -> String {
    let end = run.end_time.unwrap_or_else(Utc::now);
    let seconds = (end - run.start_time).num_milliseconds() as f64 / 1000.0;
    seconds_text(seconds)
}

/// `0.4 s`, `12 s`, `3 min 20 s`, `2 h 05 min`.
pub fn seconds_text(seconds: f64) -> String {
    if seconds < 10.0 {
        format!("{seconds:.1} s")
    } else if seconds < 60.0 {
        format!("{seconds:.0} s")
    } else if seconds < 3600.0 {
        format!(
            "{} min {:02} s",
            (seconds / 60.0) as u64,
            (seconds % 60.0) as u64
        )
    } else {
        format!(
            "{} h {:02} min",
            (seconds / 3600.0) as u64,
            ((seconds % 3600.0) / 60.0) as u64
        )
    }
}

/// A status as a coloured badge; RUNNING badges are refreshed by the page's script.
pub fn status_badge(run: &RunRecord) -> String {
    let status = run.status.as_str();
    format!(
        "<span class=\"status status-{lower}\" data-run=\"{id}\" data-status=\"{status}\">{status}</span>",
        lower = status.to_ascii_lowercase(),
        id = escape(&run.run_id)
    )
}

/// A two-column table of `(name, value)` rows, values already HTML; empty -> a note.
pub fn key_value_table(id: &str, rows: &[(String, String)]) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\" id=\"{id}\">none</p>");
    }
    let mut out = format!("<table class=\"kv\" id=\"{id}\"><tbody>");
    for (name, value) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{value}</td></tr>", escape(name));
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_like_numbers() {
        assert_eq!(number(198.0), "198");
        assert_eq!(number(0.123456789), "0.123457");
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(1.5e-7), "1.5000e-7");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(-3.0), "-3");
    }

    #[test]
    fn escaping_covers_attributes_and_bodies() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(url_encode("a b/c&d"), "a%20b%2Fc%26d");
        assert_eq!(url_decode("a%20b%2Fc+d%zz"), "a b/c d%zz");
    }
}
