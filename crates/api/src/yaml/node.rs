//! The spanned YAML tree: every mapping, sequence and scalar with the line and column where
//! it starts, so that a finding about a field can name the line the parser saw.

use crate::suggest::Segment;
use std::fmt;

/// Where a node starts: 1-based line and 1-based column (in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mark {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Mark {
    /// The same position `lines` lines further down (a document's lines within its file).
    #[must_use]
    pub fn shifted(self, lines: usize) -> Mark {
        Mark {
            line: self.line + lines,
            column: self.column,
        }
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One node of a document and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// What the node holds.
    pub value: Value,
    /// Where the node starts (for a mapping value: the value, not its key).
    pub mark: Mark,
}

/// The three kinds of YAML node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A scalar as written, typed only when read (see [`crate::yaml::scalar`]).
    Scalar(Scalar),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order; keys are unique (a repeated key is a parse error).
    Map(Vec<Entry>),
}

/// One key of a mapping and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key's text.
    pub key: Box<str>,
    /// Where the key starts.
    pub key_mark: Mark,
    /// The value.
    pub value: Node,
}

/// A scalar's text and whether it was written plain (unquoted, not a block scalar): only a
/// plain scalar can mean null, a boolean or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    /// The scalar's value after YAML's folding and escapes.
    pub text: Box<str>,
    /// Written without quotes or block indicator.
    pub plain: bool,
}

impl Node {
    /// The value of `key` when this node is a mapping that has it.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|entry| &entry.value)
    }

    /// The entry of `key` when this node is a mapping that has it.
    #[must_use]
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| &*e.key == key),
            _ => None,
        }
    }

    /// The text of a scalar that is not null, a boolean or a number.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self.typed()? {
            crate::yaml::scalar::Typed::Str(text) => Some(text),
            _ => None,
        }
    }

    /// A scalar's text, whatever it means (what a string field would read).
    #[must_use]
    pub fn scalar_text(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(scalar) => Some(&scalar.text),
            _ => None,
        }
    }

    /// A non-negative integer scalar.
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match self.typed()? {
            crate::yaml::scalar::Typed::Int(n) => u64::try_from(n).ok(),
            _ => None,
        }
    }

    /// An integer scalar, whatever its sign or size.
    #[must_use]
    pub fn as_int(&self) -> Option<i128> {
        match self.typed()? {
            crate::yaml::scalar::Typed::Int(n) => Some(n),
            _ => None,
        }
    }

    /// The items of a sequence.
    #[must_use]
    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Seq(items) => Some(items),
            _ => None,
        }
    }

    /// Whether this is a null scalar (`~`, `null`, or nothing).
    #[must_use]
    pub fn is_null(&self) -> bool {
        matches!(self.typed(), Some(crate::yaml::scalar::Typed::Null))
    }

    /// A scalar's meaning under YAML 1.2's core schema.
    #[must_use]
    pub fn typed(&self) -> Option<crate::yaml::scalar::Typed<'_>> {
        match &self.value {
            Value::Scalar(scalar) => Some(crate::yaml::scalar::resolve(scalar)),
            _ => None,
        }
    }

    /// The node at `path` below this one.
    #[must_use]
    pub fn at(&self, path: &[Segment]) -> Option<&Node> {
        self.walk(path).ok().map(|(node, _)| node)
    }

    /// Where the field at `path` is written: the key's position for a mapping field, the
    /// item's for a sequence element, this node's for an empty path; when the path leaves
    /// the document, the deepest position it reached.
    #[must_use]
    pub fn mark_of(&self, path: &[Segment]) -> Mark {
        match self.walk(path) {
            Ok((_, mark)) | Err(mark) => mark,
        }
    }

    /// Follows `path` to a node and the mark of its last step; when a step is missing, the
    /// mark of the deepest step that was found.
    fn walk(&self, path: &[Segment]) -> Result<(&Node, Mark), Mark> {
        let mut node = self;
        let mut reached = self.mark;
        for segment in path {
            let step = match (segment, &node.value) {
                (Segment::Key(key), Value::Map(_)) => {
                    node.entry(key).map(|e| (e.key_mark, &e.value))
                }
                (Segment::Index(index), Value::Seq(items)) => {
                    items.get(*index).map(|item| (item.mark, item))
                }
                _ => None,
            };
            let Some((mark, next)) = step else {
                return Err(reached);
            };
            reached = mark;
            node = next;
        }
        Ok((node, reached))
    }

    /// How many nodes this one holds, itself included (what copying it costs).
    #[must_use]
    pub fn size(&self) -> usize {
        match &self.value {
            Value::Scalar(_) => 1,
            Value::Seq(items) => 1 + items.iter().map(Node::size).sum::<usize>(),
            Value::Map(entries) => 1 + entries.iter().map(|e| 1 + e.value.size()).sum::<usize>(),
        }
    }
}
