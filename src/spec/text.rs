//! The spec as text: what is checked before the YAML parser sees it, and the positions
//! that errors found after parsing point at.

use std::collections::HashMap;

/// Deepest nesting of flow collections (`[...]`, `{...}`) a spec may have. The YAML
/// parser's time grows with the square of this depth (100,000 levels took 31 s), so deeper
/// text is refused before parsing; real specs nest two or three levels.
pub const MAX_FLOW_DEPTH: usize = 64;

/// The text without a leading UTF-8 byte-order mark, which some Windows editors write.
pub fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The 1-based line and column of the first flow collection nested deeper than
/// [`MAX_FLOW_DEPTH`], if any. Brackets inside quoted, plain and block scalars and
/// comments do not count.
pub fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut scanner = DepthScanner::default();
    text.lines()
        .enumerate()
        .find_map(|(idx, line)| scanner.line(line).map(|column| (idx + 1, column)))
}

/// The 1-based line and column of a nested mapping key (`["entry_points", "main",
/// "command"]`), found by indentation so that errors found after parsing still point into
/// the file. Keys inside flow mappings (`{type: int}`) are not found.
pub fn locate_key(text: &str, keys: &[&str]) -> Option<(usize, usize)> {
    let mut depth = 0;
    let mut parent_indent: Option<usize> = None;
    for (idx, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if let Some(parent) = parent_indent {
            if indent <= parent {
                return None;
            }
        }
        if mapping_key(trimmed) == Some(*keys.get(depth)?) {
            depth += 1;
            if depth == keys.len() {
                return Some((idx + 1, indent + 1));
            }
            parent_indent = Some(indent);
        }
    }
    None
}

/// The keys directly under the mapping key `parent`, with their 1-based line and column,
/// in one pass (locating each child on its own would read the file once per child).
pub fn child_keys(text: &str, parent: &[&str]) -> HashMap<String, (usize, usize)> {
    let mut found = HashMap::new();
    let Some((parent_line, parent_column)) = locate_key(text, parent) else {
        return found;
    };
    let parent_indent = parent_column - 1;
    let mut child_indent = None;
    for (idx, line) in text.lines().enumerate().skip(parent_line) {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if indent <= parent_indent {
            break;
        }
        if indent == *child_indent.get_or_insert(indent) {
            if let Some(key) = mapping_key(trimmed) {
                found
                    .entry(key.to_string())
                    .or_insert((idx + 1, indent + 1));
            }
        }
    }
    found
}

/// [`locate_key`] of `keys`, or of the longest prefix of them that is found: an error
/// about a field written in flow style points at the line that holds it.
pub fn locate_nearest(text: &str, keys: &[&str]) -> Option<(usize, usize)> {
    (1..=keys.len())
        .rev()
        .find_map(|len| locate_key(text, &keys[..len]))
}

/// The key of a `key: value` line (quoted or plain), if the line starts with one.
fn mapping_key(trimmed: &str) -> Option<&str> {
    let (key, rest) = match trimmed.chars().next()? {
        quote @ ('"' | '\'') => {
            let end = trimmed[1..].find(quote)? + 1;
            (&trimmed[1..end], &trimmed[end + 1..])
        }
        _ => {
            let end = trimmed.find(':')?;
            (trimmed[..end].trim_end(), &trimmed[end..])
        }
    };
    rest.trim_start().starts_with(':').then_some(key)
}

/// Follows flow-collection depth line by line, as far as a YAML lexer would see it.
#[derive(Default)]
struct DepthScanner {
    /// Flow collections open at the end of the last line.
    depth: usize,
    /// The quote of a quoted scalar that continues on the next line.
    quote: Option<char>,
    /// While inside a block scalar (`|`, `>`): the indentation of the line that opened it.
    block_scalar: Option<usize>,
}

impl DepthScanner {
    /// Scans one line; returns the 1-based column where the depth limit is passed.
    fn line(&mut self, line: &str) -> Option<usize> {
        let indent = line.len() - line.trim_start().len();
        if let Some(parent) = self.block_scalar {
            if line.trim().is_empty() || indent > parent {
                return None;
            }
            self.block_scalar = None;
        }
        let chars: Vec<char> = line.chars().collect();
        // Whether a node may start here: at a line's start, after `- `, `? ` or `: `, and
        // in a flow collection after `[`, `{` or `,`. Only there is `[` a collection.
        let mut node_start = true;
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let next = chars.get(i + 1).copied();
            if let Some(quote) = self.quote {
                if c == '\\' && quote == '"' || c == '\'' && quote == '\'' && next == Some('\'') {
                    i += 1;
                } else if c == quote {
                    self.quote = None;
                    node_start = false;
                }
                i += 1;
                continue;
            }
            let spaced = next.is_none_or(|n| n == ' ' || n == '\t');
            match c {
                ' ' | '\t' => {}
                '#' if i == 0 || matches!(chars[i - 1], ' ' | '\t') => return None,
                '"' | '\'' if node_start => self.quote = Some(c),
                '[' | '{' if node_start || self.depth > 0 => {
                    self.depth += 1;
                    if self.depth > MAX_FLOW_DEPTH {
                        return Some(i + 1);
                    }
                    node_start = true;
                }
                ']' | '}' if self.depth > 0 => {
                    self.depth -= 1;
                    node_start = false;
                }
                ',' if self.depth > 0 => node_start = true,
                '-' | '?' if node_start && self.depth == 0 && spaced => {}
                ':' if spaced || self.depth > 0 => node_start = true,
                // An anchor or a tag comes before the node it names.
                '&' | '!' if node_start => {
                    while i + 1 < chars.len() && !matches!(chars[i + 1], ' ' | '\t') {
                        i += 1;
                    }
                }
                '|' | '>' if node_start && self.depth == 0 => {
                    self.block_scalar = Some(indent);
                    return None;
                }
                _ => node_start = false,
            }
            i += 1;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_found_where_it_passes_the_limit() {
        let deep = format!(
            "entry_points: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert_eq!(too_deep(&deep), Some((1, 15 + MAX_FLOW_DEPTH)));
        let deep_maps = format!("a:\n  b: {}\n", "{x: ".repeat(MAX_FLOW_DEPTH + 1));
        assert_eq!(too_deep(&deep_maps), Some((2, 6 + 4 * MAX_FLOW_DEPTH)));
        let anchored = format!("a: &x !!seq {}\n", "[".repeat(MAX_FLOW_DEPTH + 1));
        assert!(too_deep(&anchored).is_some());
        let at_limit = format!(
            "a: {}{}\n",
            "[".repeat(MAX_FLOW_DEPTH),
            "]".repeat(MAX_FLOW_DEPTH)
        );
        assert_eq!(too_deep(&at_limit), None);
    }

    #[test]
    fn brackets_in_scalars_and_comments_do_not_count() {
        let many = "[".repeat(MAX_FLOW_DEPTH + 1);
        for text in [
            format!("command: echo {many}\n"),
            format!("command: \"{many}\"\n"),
            format!("command: '{many} it''s'\n"),
            format!("command: |\n  {many}\n  {many}\nname: x\n"),
            format!("name: x # {many}\n"),
            format!("list: [\"{many}\", '{many}', it's]\n"),
            format!("command: \"a\n  {many}\"\n"),
        ] {
            assert_eq!(too_deep(&text), None, "{text}");
        }
    }

    #[test]
    fn child_keys_are_found_in_one_pass() {
        let text =
            "name: x\nentry_points:\n  a:\n    command: y\n  \"b\":\n    command: z\nother: 1\n";
        let children = child_keys(text, &["entry_points"]);
        assert_eq!(children.len(), 2);
        assert_eq!(children["a"], (3, 3));
        assert_eq!(children["b"], (5, 3));
    }

    #[test]
    fn keys_are_located_by_indentation_and_quotes() {
        let text = "name: x\nentry_points:\n  \"é\":\n    command: a\n  main:\n    parameters: {a: int}\n    command: b\n";
        assert_eq!(locate_key(text, &["entry_points", "é"]), Some((3, 3)));
        assert_eq!(
            locate_key(text, &["entry_points", "main", "command"]),
            Some((7, 5))
        );
        assert_eq!(
            locate_key(text, &["entry_points", "main", "parameters", "a"]),
            None
        );
        assert_eq!(
            locate_nearest(text, &["entry_points", "main", "parameters", "a"]),
            Some((6, 5))
        );
        assert_eq!(strip_bom("\u{feff}name: x"), "name: x");
    }
}
