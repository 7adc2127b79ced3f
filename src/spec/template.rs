//! `{name}` placeholders in commands: which names a template uses, and filling them in.

/// The `{name}` placeholders of a command, in order of appearance.
pub fn placeholders(command: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = command;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        match after.find('}') {
            Some(end) => {
                let name = &after[..end];
                if !name.is_empty() && name.chars().all(is_name_char) {
                    found.push(name);
                }
                rest = &after[end + 1..];
            }
            None => break,
        }
    }
    found
}

/// Replaces `{name}` placeholders with `value(name)`; unknown names stay as they are.
pub fn substitute(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        match after
            .find('}')
            .and_then(|end| value(&after[..end]).map(|v| (end, v)))
        {
            Some((end, replacement)) => {
                out.push_str(&replacement);
                rest = &after[end + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The first `{name` that is never closed (`"echo {x"`), as a byte offset and the name.
/// A `{` followed by a space or by a `}` later on is shell syntax (`{ a; b; }`,
/// `{a,b}`), not a placeholder, and is left alone.
pub fn unclosed_placeholder(template: &str) -> Option<(usize, &str)> {
    let last_close = template.rfind('}');
    let mut offset = 0;
    while let Some(start) = template[offset..].find('{').map(|i| offset + i) {
        let after = &template[start + 1..];
        let name_len = after
            .find(|c: char| !is_name_char(c))
            .unwrap_or(after.len());
        let name_end = start + 1 + name_len;
        if name_len > 0 && last_close.is_none_or(|close| close < name_end) {
            return Some((start, &after[..name_len]));
        }
        offset = start + 1;
    }
    None
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitute_leaves_unknown_braces() {
        let out = substitute("a {x} {y} {", |n| (n == "x").then(|| "1".to_string()));
        assert_eq!(out, "a 1 {y} {");
    }

    #[test]
    fn unclosed_placeholders_are_found_and_shell_braces_are_not() {
        assert_eq!(unclosed_placeholder("echo {x"), Some((5, "x")));
        assert_eq!(
            unclosed_placeholder("echo {a} {data_dir --x"),
            Some((9, "data_dir"))
        );
        for fine in [
            "echo {x}",
            "f() { echo; }",
            "echo {a,b}",
            "echo {",
            "awk '{print $1}'",
            "é{",
        ] {
            assert_eq!(unclosed_placeholder(fine), None, "{fine}");
        }
        assert_eq!(placeholders("echo {a} {b c} {d}"), vec!["a", "d"]);
    }
}
