//! Finding the line of a field in a manifest, so that a finding about
//! `spec.rules[1].backendRefs[0].weight` points at that `weight:` line and not at the
//! document's first line.
//!
//! A [`Layout`] keeps the parsed document ([`crate::yaml::Node`], every node with the line
//! and column the parser reported) and walks it: the line of a mapping field is its key's,
//! the line of a sequence element is the element's. This holds for block style, flow style
//! (`{a: 1, b: {c: x}}`), JSON and `kind: List` items alike, since nothing is searched in
//! the text.

use crate::suggest::Segment;
use crate::yaml::{Mark, Node};
use std::sync::Arc;

/// The parsed document of one object and where it sits in its file, to place findings on
/// field lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The YAML document holding the object (shared by the items of a `kind: List`).
    document: Arc<Node>,
    /// 1-based line of the document's first line in its file.
    first_line: usize,
    /// Path of the object inside the document (`items[i]` for a `kind: List` item).
    prefix: Vec<Segment>,
}

impl Layout {
    /// A layout for an object that is the whole document (`prefix` empty) or part of it.
    #[must_use]
    pub fn new(document: Arc<Node>, first_line: usize, prefix: Vec<Segment>) -> Self {
        Layout {
            document,
            first_line,
            prefix,
        }
    }

    /// 1-based line in the file of the field at `path` (relative to the object; empty: the
    /// object's first line), if the object has that field.
    #[must_use]
    pub fn line_of(&self, path: &[Segment]) -> Option<usize> {
        let full = self.full_path(path);
        self.document
            .at(&full)
            .map(|_| self.file_line(self.document.mark_of(&full).line))
    }

    /// Where in the file the field at `path` is written, or the deepest part of the path
    /// the object has (a missing field is reported where its parent is written).
    #[must_use]
    pub fn nearest(&self, path: &[Segment]) -> Mark {
        let mark = self.document.mark_of(&self.full_path(path));
        mark.shifted(self.first_line - 1)
    }

    /// The file line of a 1-based line of the document.
    #[must_use]
    pub fn file_line(&self, line_in_document: usize) -> usize {
        self.first_line + line_in_document.max(1) - 1
    }

    fn full_path(&self, path: &[Segment]) -> Vec<Segment> {
        let mut full = self.prefix.clone();
        full.extend_from_slice(path);
        full
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_owned())
    }

    fn layout(text: &str, first_line: usize, prefix: Vec<Segment>) -> Layout {
        let document = crate::yaml::parse(text).unwrap().unwrap();
        Layout::new(Arc::new(document), first_line, prefix)
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
  - matches: [{path: {value: /}}, {path: {type: Exact,
      value: /x}}]
    backendRefs:
    - name: x
      weight: 1
  - backendRefs:
    - name: y
    -   name: z
        weight: -1
";

    #[test]
    fn places_keys_items_and_flow_fields_at_their_own_lines() {
        let at = |path: &[Segment]| layout(ROUTE, 1, Vec::new()).line_of(path);
        let parent = |i| [key("spec"), key("parentRefs"), Segment::Index(i)];
        assert_eq!((at(&parent(0)), at(&parent(1))), (Some(5), Some(6)));
        let port = [parent(1).as_slice(), &[key("port")]].concat();
        assert_eq!(at(&port), Some(8));
        let weight = [
            key("spec"),
            key("rules"),
            Segment::Index(1),
            key("backendRefs"),
            Segment::Index(1),
            key("weight"),
        ];
        assert_eq!(at(&weight), Some(18));
        let flow_value = [
            key("spec"),
            key("rules"),
            Segment::Index(0),
            key("matches"),
            Segment::Index(1),
            key("path"),
            key("value"),
        ];
        assert_eq!(at(&flow_value), Some(11));
        assert_eq!(at(&[key("spec"), key("nothing")]), None);
    }

    #[test]
    fn a_missing_field_is_placed_at_its_deepest_parent() {
        let layout = layout(ROUTE, 10, Vec::new());
        let missing = [key("spec"), key("rules"), Segment::Index(1), key("filters")];
        assert_eq!(layout.nearest(&missing).line, 24);
    }

    #[test]
    fn json_fields_are_placed_at_their_keys() {
        let json = "{\n  \"spec\": {\n    \"hosts\": [\"a\"]\n  }\n}\n";
        assert_eq!(
            layout(json, 1, Vec::new()).line_of(&[key("spec"), key("hosts")]),
            Some(3)
        );
    }

    #[test]
    fn a_layout_adds_the_document_line_and_list_prefix() {
        let text = "kind: List\nitems:\n- kind: Service\n  spec:\n    type: Bad\n";
        let layout = layout(text, 10, vec![key("items"), Segment::Index(0)]);
        assert_eq!(layout.line_of(&[key("spec"), key("type")]), Some(14));
        assert_eq!(layout.line_of(&[]), Some(12));
    }
}
