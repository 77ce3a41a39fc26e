//! Finding the line of a field in a manifest's text, so that a finding about
//! `spec.rules[1].backendRefs[0].weight` points at that `weight:` line and not at the
//! document's first line.
//!
//! serde_yaml keeps no positions for values, so this reads the block structure of the text
//! itself: a mapping's keys share one column, a block sequence's items start with `- ` at one
//! column, and a node's children are the lines indented below it. When the text is in flow
//! style (`{a: 1}`) or JSON, the walk stops at the deepest line it could place (often the
//! right one, since flow values sit on their key's line); when it cannot place even the first
//! key, it falls back to following each key in order, each found below the previous one.

use crate::suggest::Segment;
use std::sync::Arc;

/// The text of one object and where it sits in its file, to place findings on field lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The YAML document holding the object.
    text: Arc<str>,
    /// 1-based line of the document's first line in its file.
    first_line: usize,
    /// Path of the object inside the document (`items[i]` for a `kind: List` item).
    prefix: Vec<Segment>,
}

impl Layout {
    /// A layout for an object that is the whole document (`prefix` empty) or part of it.
    #[must_use]
    pub fn new(text: Arc<str>, first_line: usize, prefix: Vec<Segment>) -> Self {
        Layout {
            text,
            first_line,
            prefix,
        }
    }

    /// 1-based line in the file of the field at `path` (relative to the object; empty: the
    /// object's first line), if found.
    #[must_use]
    pub fn line_of(&self, path: &[Segment]) -> Option<usize> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(path);
        line_in_document(&self.text, &full).map(|line| self.file_line(line))
    }

    /// The file line of a 1-based line of the document.
    #[must_use]
    pub fn file_line(&self, line_in_document: usize) -> usize {
        self.first_line + line_in_document.max(1) - 1
    }
}

/// One layout per item of the block sequence under the top-level `key` of `text` (a
/// `kind: List`'s `items`), each over its own lines, so that placing a field of one item
/// reads only that item and a list of many items costs time in proportion to its size.
/// `None` when the items are not a block sequence (flow style, JSON).
#[must_use]
pub fn item_layouts(text: &str, first_line: usize, key: &str) -> Option<Vec<Layout>> {
    let lines: Vec<Line<'_>> = text
        .lines()
        .enumerate()
        .filter_map(|(number, raw)| Line::parse(number + 1, raw))
        .collect();
    let (_, value) = find_key(&lines, 0..lines.len(), key)?;
    let column = lines.get(value.start).filter(|l| l.is_item)?.indent;
    let mut starts: Vec<usize> = value
        .clone()
        .filter(|&i| lines[i].is_item && lines[i].indent == column)
        .map(|i| lines[i].number)
        .collect();
    // byte offset of the start of each 1-based line, and of the end of the text
    let mut offsets = vec![0];
    offsets.extend(text.split_inclusive('\n').scan(0, |end, line| {
        *end += line.len();
        Some(*end)
    }));
    let end_line = lines.get(value.end).map_or(offsets.len(), |l| l.number);
    starts.push(end_line);
    let layouts = starts
        .windows(2)
        .map(|pair| {
            let item = &text[offsets[pair[0] - 1]..offsets[pair[1] - 1]];
            Layout::new(
                item.into(),
                first_line + pair[0] - 1,
                vec![Segment::Index(0)],
            )
        })
        .collect();
    Some(layouts)
}

/// 1-based line (within `text`) of the node at `path`.
#[must_use]
pub fn line_in_document(text: &str, path: &[Segment]) -> Option<usize> {
    let lines: Vec<Line<'_>> = text
        .lines()
        .enumerate()
        .filter_map(|(number, raw)| Line::parse(number + 1, raw))
        .collect();
    if path.is_empty() {
        return lines.first().map(|line| line.number);
    }
    match walk_blocks(&lines, path) {
        Some(line) => Some(line),
        None => follow_keys(text, path),
    }
}

/// One non-blank, non-comment line.
struct Line<'a> {
    /// 1-based line number.
    number: usize,
    /// Column of the first character.
    indent: usize,
    /// Whether the line starts a block sequence item (`- ` or a lone `-`).
    is_item: bool,
    /// The mapping key on this line (after any `- `) and its column.
    key: Option<(usize, &'a str)>,
}

impl<'a> Line<'a> {
    fn parse(number: usize, raw: &'a str) -> Option<Self> {
        let body = raw.trim_start();
        if body.is_empty() || body.starts_with('#') {
            return None;
        }
        let indent = raw.len() - body.len();
        let is_item = body == "-" || body.starts_with("- ");
        let mut column = indent;
        let mut rest = body;
        while let Some(after) = rest.strip_prefix("- ") {
            let trimmed = after.trim_start();
            column += rest.len() - trimmed.len();
            rest = trimmed;
        }
        Some(Line {
            number,
            indent,
            is_item,
            key: split_key(rest).map(|key| (column, key)),
        })
    }
}

/// The key of a `key: value` (or `key:`) line, unquoted.
fn split_key(body: &str) -> Option<&str> {
    let (key, after) = match body.chars().next()? {
        quote @ ('"' | '\'') => {
            let end = body[1..].find(quote)? + 1;
            (&body[1..end], &body[end + 1..])
        }
        _ => {
            let end = body
                .match_indices(':')
                .map(|(i, _)| i)
                .find(|&i| body[i + 1..].is_empty() || body[i + 1..].starts_with([' ', '\t']))?;
            (body[..end].trim_end(), &body[end..])
        }
    };
    let after = after.trim_start();
    (after == ":" || after.starts_with(": ") || after.starts_with(":\t")).then_some(key)
}

/// Walks the block structure. `None` only when not even the first segment was placed.
fn walk_blocks(lines: &[Line<'_>], path: &[Segment]) -> Option<usize> {
    let mut range = 0..lines.len();
    let mut found = None;
    for segment in path {
        let step = match segment {
            Segment::Key(key) => find_key(lines, range.clone(), key),
            Segment::Index(index) => find_item(lines, range.clone(), *index),
        };
        let Some((line, next)) = step else { break };
        found = Some(lines[line].number);
        range = next;
    }
    found
}

/// The line of `key` in the mapping filling `range`, and the range of its value's block.
fn find_key(
    lines: &[Line<'_>],
    range: std::ops::Range<usize>,
    key: &str,
) -> Option<(usize, std::ops::Range<usize>)> {
    let (column, _) = lines[first_of(&range)?].key?;
    let at = range
        .clone()
        .find(|&i| lines[i].key == Some((column, key)))?;
    let end = (at + 1..range.end)
        .find(|&i| {
            let line = &lines[i];
            line.indent < column || (line.indent == column && !line.is_item)
        })
        .unwrap_or(range.end);
    Some((at, at + 1..end))
}

/// The line of item `index` of the block sequence filling `range`, and the item's range
/// (starting at its own line, which may hold the item's first key).
fn find_item(
    lines: &[Line<'_>],
    range: std::ops::Range<usize>,
    index: usize,
) -> Option<(usize, std::ops::Range<usize>)> {
    let first = Some(&lines[first_of(&range)?]).filter(|l| l.is_item)?;
    let column = first.indent;
    let items: Vec<usize> = range
        .clone()
        .filter(|&i| lines[i].is_item && lines[i].indent == column)
        .collect();
    let at = *items.get(index)?;
    let end = items.get(index + 1).copied().unwrap_or(range.end);
    Some((at, at..end))
}

/// The first line of a non-empty range.
fn first_of(range: &std::ops::Range<usize>) -> Option<usize> {
    range.clone().next()
}

/// Fallback: each key of `path` on a line below the previous one (indexes ignored).
fn follow_keys(text: &str, path: &[Segment]) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0;
    let mut found = None;
    for segment in path {
        let Segment::Key(key) = segment else { continue };
        let index = (from..lines.len()).find(|&i| line_has_key(lines[i], key))?;
        found = Some(index + 1);
        from = index + 1;
    }
    found
}

fn line_has_key(line: &str, key: &str) -> bool {
    let body = line.trim_start().trim_start_matches("- ").trim_start();
    let body = body.trim_start_matches(['"', '\'']);
    body.strip_prefix(key).is_some_and(|rest| {
        rest.trim_start_matches(['"', '\''])
            .trim_start()
            .starts_with(':')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_owned())
    }

    const ROUTE: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
spec:
  parentRefs:
  - name: a
  - name: b
    # a comment
    port: 80
  rules:
  - matches: [{path: {value: /}}]
    backendRefs:
    - name: x
      weight: 1
  - backendRefs:
    - name: y
    -   name: z
        weight: -1
";

    #[test]
    fn places_keys_and_items_at_their_own_lines() {
        let at = |path: &[Segment]| line_in_document(ROUTE, path);
        assert_eq!(
            at(&[key("spec"), key("parentRefs"), Segment::Index(0)]),
            Some(5)
        );
        assert_eq!(
            at(&[key("spec"), key("parentRefs"), Segment::Index(1)]),
            Some(6)
        );
        let port = [
            key("spec"),
            key("parentRefs"),
            Segment::Index(1),
            key("port"),
        ];
        assert_eq!(at(&port), Some(8));
        let weight = [
            key("spec"),
            key("rules"),
            Segment::Index(1),
            key("backendRefs"),
            Segment::Index(1),
            key("weight"),
        ];
        assert_eq!(at(&weight), Some(17));
    }

    #[test]
    fn flow_style_stops_at_the_deepest_line_found() {
        let path = [
            key("spec"),
            key("rules"),
            Segment::Index(0),
            key("matches"),
            Segment::Index(0),
        ];
        assert_eq!(line_in_document(ROUTE, &path), Some(10));
    }

    #[test]
    fn json_falls_back_to_following_keys() {
        let json = "{\n  \"spec\": {\n    \"hosts\": [\"a\"]\n  }\n}\n";
        assert_eq!(
            line_in_document(json, &[key("spec"), key("hosts")]),
            Some(3)
        );
    }

    #[test]
    fn a_layout_adds_the_document_line_and_list_prefix() {
        let text = "kind: List\nitems:\n- kind: Service\n  spec:\n    type: Bad\n";
        let layout = Layout::new(text.into(), 10, vec![key("items"), Segment::Index(0)]);
        assert_eq!(layout.line_of(&[key("spec"), key("type")]), Some(14));
    }

    #[test]
    fn list_items_get_layouts_over_their_own_lines() {
        let text = "kind: List\nitems:\n- kind: A\n  spec:\n    x: 1\n# note\n\n- kind: B\n  spec:\n    y: 2\nmetadata: {}\n";
        let layouts = item_layouts(text, 10, "items").unwrap();
        assert_eq!(layouts.len(), 2);
        let at = |i: usize, field: &str| layouts[i].line_of(&[key("spec"), key(field)]);
        assert_eq!((at(0, "x"), at(1, "y")), (Some(14), Some(19)));
        assert_eq!(layouts[1].line_of(&[]), Some(17));
        assert!(item_layouts("kind: List\nitems: [{kind: A}]\n", 1, "items").is_none());
    }
}
