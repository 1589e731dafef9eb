//! corosync.conf syntax, read line by line exactly as corosync's parse_section
//! (exec/coroparse.c) reads it:
//! - a line whose first non-blank character is `#` is a comment, and only such a
//!   line: `key: value # note` has the value `value # note`;
//! - a line containing `{` opens a section named by what precedes it (a trailing
//!   `:` is dropped) and must have nothing after the brace;
//! - otherwise a line containing `:` is `key: value`, split at the first colon, the
//!   value taken verbatim after surrounding blanks (quotes are not special);
//! - otherwise the line must be a lone `}`.

use super::{ConfigError, ConfigErrorKind};

/// corosync reads lines into a 512-byte buffer, newline included.
pub const MAX_LINE_LEN: usize = 510;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub name: String,
    /// Line of the opening brace (0 for the file itself).
    pub line: usize,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Key {
        key: String,
        value: String,
        line: usize,
    },
    Section(Section),
}

fn syntax(line: usize, msg: &'static str) -> ConfigError {
    ConfigError {
        line,
        kind: ConfigErrorKind::Syntax(msg),
    }
}

fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Parses the whole file into its top-level section (named "").
pub fn parse(text: &str) -> Result<Section, ConfigError> {
    let mut root = Section {
        name: String::new(),
        line: 0,
        items: Vec::new(),
    };
    // Sections opened and not yet closed, innermost last.
    let mut open: Vec<Section> = Vec::new();
    let mut last_line = 0;
    for (idx, raw) in text.lines().enumerate() {
        let n = idx + 1;
        last_line = n;
        if raw.len() > MAX_LINE_LEN {
            return Err(syntax(n, "Line too long"));
        }
        let line = raw.trim_end_matches(is_blank).trim_end_matches('\r');
        let content = line.trim_start_matches(is_blank);
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        if let Some((before, after)) = line.split_once('{') {
            open.push(open_section(before, after, n)?);
        } else if let Some((key, value)) = line.split_once(':') {
            let key = key.trim_matches(is_blank);
            if key.is_empty() {
                return Err(syntax(n, "Missing key name before ':'"));
            }
            let item = Item::Key {
                key: key.to_string(),
                value: value.trim_matches(is_blank).to_string(),
                line: n,
            };
            open.last_mut().unwrap_or(&mut root).items.push(item);
        } else if line.contains('}') {
            if content != "}" {
                return Err(syntax(
                    n,
                    "Extra characters before or after closing bracket '}'",
                ));
            }
            let done = open.pop().ok_or(syntax(n, "Unexpected closing brace"))?;
            let parent = open.last_mut().unwrap_or(&mut root);
            parent.items.push(Item::Section(done));
        } else {
            return Err(syntax(
                n,
                "Line is not opening or closing section or key value",
            ));
        }
    }
    if !open.is_empty() {
        return Err(syntax(last_line, "Missing closing brace"));
    }
    Ok(root)
}

fn open_section(before: &str, after: &str, line: usize) -> Result<Section, ConfigError> {
    let name = before
        .trim_matches(is_blank)
        .trim_end_matches([':', '{'])
        .trim_end_matches(is_blank);
    if name.is_empty() {
        return Err(syntax(
            line,
            "Missing section name before opening bracket '{'",
        ));
    }
    if !after.trim_matches(is_blank).is_empty() {
        return Err(syntax(line, "Extra characters after opening bracket '{'"));
    }
    Ok(Section {
        name: name.to_string(),
        line,
        items: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: &str, value: &str, line: usize) -> Item {
        Item::Key {
            key: key.into(),
            value: value.into(),
            line,
        }
    }

    #[test]
    fn nested_sections_comments_and_verbatim_values() {
        let text = "# top\ntotem {\n\tcluster_name: \"my lab\"  \n  # inner\n\taddr: fe80::1 # no comment\n}\n\nnodelist{\nnode: {\nnodeid:1\n}\n}\n";
        let root = parse(text).unwrap();
        assert_eq!(root.items.len(), 2);
        let Item::Section(totem) = &root.items[0] else {
            panic!()
        };
        assert_eq!((totem.name.as_str(), totem.line), ("totem", 2));
        assert_eq!(
            totem.items,
            vec![
                key("cluster_name", "\"my lab\"", 3),
                key("addr", "fe80::1 # no comment", 5)
            ]
        );
        let Item::Section(nodelist) = &root.items[1] else {
            panic!()
        };
        let Item::Section(node) = &nodelist.items[0] else {
            panic!()
        };
        assert_eq!(node.name, "node");
        assert_eq!(node.items, vec![key("nodeid", "1", 10)]);
    }

    #[test]
    fn syntax_errors_carry_line_numbers() {
        let cases = [
            ("totem {\n", 1, "Missing closing brace"),
            ("}\n", 1, "Unexpected closing brace"),
            (
                "a {\n} x\n",
                2,
                "Extra characters before or after closing bracket '}'",
            ),
            (
                "a { b\n}\n",
                1,
                "Extra characters after opening bracket '{'",
            ),
            (
                " {\n}\n",
                1,
                "Missing section name before opening bracket '{'",
            ),
            (
                "\n\njunk\n",
                3,
                "Line is not opening or closing section or key value",
            ),
        ];
        for (text, line, msg) in cases {
            assert_eq!(parse(text), Err(syntax(line, msg)), "{text:?}");
        }
        let long = format!("k: {}\n", "v".repeat(600));
        assert_eq!(parse(&long), Err(syntax(1, "Line too long")));
    }
}
