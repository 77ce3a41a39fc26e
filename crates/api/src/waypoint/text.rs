//! Line-level edits of a manifest's text that keep everything else as written: comments,
//! key order, quoting and the other documents of the file (what `kubectl label` would change
//! on a live object, done to the file instead).
//!
//! Callers find the lines to edit with [`crate::locate::Layout`] on a fresh parse of the text;
//! these functions only splice lines. Line numbers are 1-based file lines.

use std::ops::Range;

/// A manifest's text as lines (without their `\n`).
struct Lines(Vec<String>);

impl Lines {
    fn of(text: &str) -> Self {
        Lines(text.lines().map(str::to_owned).collect())
    }

    fn text(&self) -> String {
        let mut text = self.0.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        text
    }

    /// The line at 1-based `number`.
    fn get(&self, number: usize) -> Result<&str, String> {
        number
            .checked_sub(1)
            .and_then(|index| self.0.get(index))
            .map(String::as_str)
            .ok_or_else(|| format!("line {number} is past the end of the file"))
    }

    /// The first line after `number` that is neither blank nor a comment (1-based).
    fn next_content(&self, number: usize) -> Option<(usize, &str)> {
        (number + 1..=self.0.len())
            .map(|n| (n, self.0[n - 1].as_str()))
            .find(|(_, line)| !is_blank_or_comment(line))
    }

    /// The indentation children of the key on line `number` use (or would use).
    fn child_indent(&self, number: usize) -> Result<usize, String> {
        let column = key_column(self.get(number)?);
        Ok(self
            .next_content(number)
            .map(|(_, line)| indent(line))
            .filter(|&child| child > column)
            .unwrap_or(column + 2))
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let body = line.trim_start();
    body.is_empty() || body.starts_with('#')
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Column of the mapping key on a line, after any `- ` sequence markers.
fn key_column(line: &str) -> usize {
    line.len() - line.trim_start_matches([' ', '-']).len()
}

/// Whether a line separates documents (`---`, `--- ...`) or ends one (`...`).
fn is_separator(line: &str) -> bool {
    let trimmed = line.trim_end();
    trimmed == "---" || trimmed.starts_with("--- ") || trimmed == "..."
}

/// 0-based line ranges of the documents of a file, separators excluded.
fn document_ranges(lines: &[String]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for (index, line) in lines.iter().enumerate() {
        if is_separator(line) {
            ranges.push(start..index);
            start = index + 1;
        }
    }
    ranges.push(start..lines.len());
    ranges
}

/// The text of the document holding 1-based `line`.
#[must_use]
pub fn document_at(text: &str, line: usize) -> Option<String> {
    let lines = Lines::of(text);
    let range = document_ranges(&lines.0)
        .into_iter()
        .find(|r| r.contains(&(line.saturating_sub(1))))?;
    Some(lines.0[range].join("\n"))
}

/// Replaces the document holding 1-based `line` with `new` (its whole text), or removes it
/// and one separator next to it when `new` is `None`.
pub fn replace_document(text: &str, line: usize, new: Option<&str>) -> Result<String, String> {
    let mut lines = Lines::of(text);
    let ranges = document_ranges(&lines.0);
    let index = ranges
        .iter()
        .position(|r| r.contains(&(line.saturating_sub(1))))
        .ok_or_else(|| format!("no document at line {line}"))?;
    let range = ranges[index].clone();
    match new {
        Some(new) => {
            lines
                .0
                .splice(range, new.lines().map(str::to_owned))
                .for_each(drop);
        }
        None => {
            let with_separator = if index > 0 {
                range.start - 1..range.end
            } else if ranges.len() > 1 {
                range.start..range.end + 1
            } else {
                range
            };
            lines.0.drain(with_separator);
        }
    }
    Ok(lines.text())
}

/// Whether a text holds nothing but blank lines, comments and separators.
#[must_use]
pub fn is_empty_manifest(text: &str) -> bool {
    text.lines()
        .all(|line| is_blank_or_comment(line) || is_separator(line))
}

/// Where an object's labels sit (1-based file lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelSite {
    /// The `metadata:` line.
    pub metadata: usize,
    /// The `labels:` line, if the object has one.
    pub labels: Option<usize>,
    /// The line of the label being edited, if the object has it.
    pub key: Option<usize>,
}

/// A label value as a YAML scalar (quoted when it would otherwise read as a number etc.).
fn scalar(value: &str) -> String {
    crate::yaml::to_string(&value)
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_else(|_| format!("{value:?}"))
}

/// The value part of a `key: value  # comment` line, split as (before value, comment).
fn split_value(line: &str) -> Option<(&str, &str)> {
    let colon = line.find(": ").or_else(|| {
        line.trim_end()
            .ends_with(':')
            .then(|| line.trim_end().len() - 1)
    })?;
    let rest = &line[colon + 1..];
    let comment = rest.find(" #").map_or("", |i| &rest[i..]);
    Some((&line[..=colon], comment))
}

/// Whether the `key:` on this line has a value on the same line (flow style, `{}`...).
fn inline_value(line: &str) -> Option<&str> {
    let (head, comment) = split_value(line)?;
    let value = line[head.len()..line.len() - comment.len()].trim();
    (!value.is_empty()).then_some(value)
}

/// Sets label `key` to `value` at `site`, keeping every other line as it is.
pub fn set_label(text: &str, site: LabelSite, key: &str, value: &str) -> Result<String, String> {
    let mut lines = Lines::of(text);
    let value = scalar(value);
    if let Some(number) = site.key {
        let line = lines.get(number)?;
        let (head, comment) = split_value(line)
            .ok_or_else(|| format!("line {number} is not a `{key}: value` line"))?;
        let edited = format!("{head} {value}{comment}");
        lines.0[number - 1] = edited;
        return Ok(lines.text());
    }
    let (parent, new_parent) = match site.labels {
        Some(labels) => (labels, None),
        None => (site.metadata, Some("labels:")),
    };
    let parent_line = lines.get(parent)?.to_owned();
    match inline_value(&parent_line) {
        None => {}
        Some("{}") if new_parent.is_none() => {
            let (head, comment) = split_value(&parent_line).unwrap_or((&parent_line, ""));
            lines.0[parent - 1] = format!("{head}{comment}");
        }
        Some(other) => {
            return Err(format!(
                "line {parent} holds `{other}` in flow style; add the label `{key}: {value}` by hand"
            ));
        }
    }
    let child = lines.child_indent(parent)?;
    let mut insert = Vec::new();
    if let Some(labels) = new_parent {
        insert.push(format!("{}{labels}", " ".repeat(child)));
        insert.push(format!("{}{key}: {value}", " ".repeat(child + 2)));
    } else {
        insert.push(format!("{}{key}: {value}", " ".repeat(child)));
    }
    lines.0.splice(parent..parent, insert).for_each(drop);
    Ok(lines.text())
}

/// Removes the label lines `keys` (1-based, all under the `labels:` line `labels`), and the
/// `labels:` line too when no label is left under it.
pub fn remove_labels(text: &str, labels: usize, keys: &[usize]) -> Result<String, String> {
    let mut lines = Lines::of(text);
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    keys.dedup();
    for &number in keys.iter().rev() {
        lines.get(number)?;
        lines.0.remove(number - 1);
    }
    let column = key_column(lines.get(labels)?);
    let has_children = lines
        .next_content(labels)
        .is_some_and(|(_, line)| indent(line) > column && !line.trim_start().starts_with("- "));
    if !has_children && inline_value(lines.get(labels)?).is_none() {
        lines.0.remove(labels - 1);
    }
    Ok(lines.text())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMESPACE: &str = "\
# shop team
apiVersion: v1
kind: Namespace
metadata:
  name: shop   # owned by shop
  labels:
    istio.io/dataplane-mode: ambient # enrolled
---
apiVersion: v1
kind: Namespace
metadata: {name: flow}
";

    #[test]
    fn adds_a_label_under_existing_labels() {
        let site = LabelSite {
            metadata: 4,
            labels: Some(6),
            key: None,
        };
        let edited = set_label(NAMESPACE, site, "istio.io/use-waypoint", "waypoint").unwrap();
        assert!(edited.contains(
            "  labels:\n    istio.io/use-waypoint: waypoint\n    istio.io/dataplane-mode: ambient # enrolled\n"
        ));
        assert!(edited.starts_with("# shop team\n"));
        assert!(edited.ends_with("metadata: {name: flow}\n"));
    }

    #[test]
    fn adds_labels_under_metadata_and_quotes_numbers() {
        let text = "kind: Namespace\nmetadata:\n    name: a\n";
        let site = LabelSite {
            metadata: 2,
            labels: None,
            key: None,
        };
        let edited = set_label(text, site, "k", "123").unwrap();
        assert_eq!(
            edited,
            "kind: Namespace\nmetadata:\n    labels:\n      k: \"123\"\n    name: a\n"
        );
    }

    #[test]
    fn replaces_a_value_and_keeps_its_comment() {
        let site = LabelSite {
            metadata: 4,
            labels: Some(6),
            key: Some(7),
        };
        let edited = set_label(NAMESPACE, site, "istio.io/dataplane-mode", "none").unwrap();
        assert!(edited.contains("    istio.io/dataplane-mode: none # enrolled\n"));
    }

    #[test]
    fn refuses_flow_style() {
        let site = LabelSite {
            metadata: 11,
            labels: None,
            key: None,
        };
        let error = set_label(NAMESPACE, site, "k", "v").unwrap_err();
        assert!(error.contains("flow style"), "{error}");
    }

    #[test]
    fn removing_the_last_label_removes_labels() {
        let edited = remove_labels(NAMESPACE, 6, &[7]).unwrap();
        assert!(
            edited.contains("  name: shop   # owned by shop\n---\n"),
            "{edited}"
        );
    }

    #[test]
    fn replaces_and_removes_documents() {
        let removed = replace_document(NAMESPACE, 10, None).unwrap();
        assert!(removed.ends_with("# enrolled\n"), "{removed}");
        let first_removed = replace_document(NAMESPACE, 2, None).unwrap();
        assert!(
            first_removed.starts_with("apiVersion: v1\n"),
            "{first_removed}"
        );
        let replaced = replace_document(NAMESPACE, 1, Some("kind: X\n")).unwrap();
        assert!(replaced.starts_with("kind: X\n---\n"), "{replaced}");
        assert_eq!(document_at(NAMESPACE, 11).unwrap().lines().count(), 3);
        assert!(is_empty_manifest("# a\n---\n\n"));
    }
}
