//! Building the spanned tree from the parser's events, with the input bounds enforced as the
//! events arrive: nesting depth, alias expansion, and unique mapping keys.
//!
//! The parser (`saphyr-parser`) produces events lazily, each with the span it covers, so a
//! document nested past [`MAX_NESTING`] is refused as soon as the first level too many opens
//! (its scanner also stops flow collections past 255 levels before looking further, which is
//! reported the same way). An alias is a copy of its anchored node; the copies of a document
//! may hold at most [`MAX_ALIAS_NODES`] nodes in all, so an alias bomb ("billion laughs") is
//! refused instead of expanded.

use crate::yaml::error::{Error, ErrorKind};
use crate::yaml::node::{Entry, Mark, Node, Scalar, Value};
use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use std::collections::{HashMap, HashSet};

/// The deepest nesting of mappings and sequences a document may have.
pub const MAX_NESTING: usize = 128;

/// The most nodes the aliases of one document may copy in all.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// Mappings with more keys than this look up repeated keys in a set, not by a scan.
const SCAN_KEYS_UP_TO: usize = 16;

/// Parses `text` as at most one YAML document: `None` for a text with no document (empty,
/// only comments), an error naming line and column for anything the parser refuses, a
/// repeated key, more than one document, or a bound broken.
pub fn parse(text: &str) -> Result<Option<Node>, Error> {
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| scan_error(&e))?;
        if builder.event(event, span)? == Flow::Done {
            break;
        }
    }
    Ok(builder.document)
}

/// Whether to go on reading events.
#[derive(PartialEq, Eq)]
enum Flow {
    More,
    Done,
}

/// A collection being read.
enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<Entry>,
        /// A key read whose value has not come yet.
        key: Option<(Box<str>, Mark)>,
        /// The keys, once there are more than [`SCAN_KEYS_UP_TO`].
        index: Option<HashSet<Box<str>>>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    alias_nodes: usize,
    documents: usize,
    document: Option<Node>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: Span) -> Result<Flow, Error> {
        let mark = mark_of(&span);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    let message = "more than one YAML document where one was expected";
                    return Err(Error::new(ErrorKind::Syntax, message, Some(mark)));
                }
            }
            Event::StreamEnd => return Ok(Flow::Done),
            Event::Scalar(text, style, anchor, _tag) => {
                let plain = style == ScalarStyle::Plain;
                let node = Node {
                    value: Value::Scalar(Scalar {
                        text: text.as_ref().into(),
                        plain,
                    }),
                    mark,
                };
                self.remember(anchor, &node);
                self.add(node)?;
            }
            Event::Alias(anchor) => {
                let node = self.alias(anchor, mark)?;
                self.add(node)?;
            }
            Event::SequenceStart(anchor, _tag) => self.open(Frame::Seq {
                mark,
                anchor,
                items: Vec::new(),
            })?,
            Event::MappingStart(anchor, _tag) => self.open(Frame::Map {
                mark,
                anchor,
                entries: Vec::new(),
                key: None,
                index: None,
            })?,
            Event::SequenceEnd | Event::MappingEnd => self.close()?,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
        Ok(Flow::More)
    }

    fn open(&mut self, frame: Frame) -> Result<(), Error> {
        if self.stack.len() >= MAX_NESTING {
            let mark = match &frame {
                Frame::Seq { mark, .. } | Frame::Map { mark, .. } => *mark,
            };
            return Err(too_deep(mark));
        }
        if let Some(Frame::Map { key: None, .. }) = self.stack.last() {
            let message = "a mapping key must be a string, not a mapping or sequence";
            let mark = match &frame {
                Frame::Seq { mark, .. } | Frame::Map { mark, .. } => *mark,
            };
            return Err(Error::new(ErrorKind::Syntax, message, Some(mark)));
        }
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self) -> Result<(), Error> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let (node, anchor) = match frame {
            Frame::Seq {
                mark,
                anchor,
                items,
            } => (
                Node {
                    value: Value::Seq(items),
                    mark,
                },
                anchor,
            ),
            Frame::Map {
                mark,
                anchor,
                entries,
                ..
            } => (
                Node {
                    value: Value::Map(entries),
                    mark,
                },
                anchor,
            ),
        };
        self.remember(anchor, &node);
        self.add(node)
    }

    /// Keeps a copy of an anchored node for its aliases.
    fn remember(&mut self, anchor: usize, node: &Node) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
    }

    /// A copy of the node anchored as `anchor`, within the alias budget.
    fn alias(&mut self, anchor: usize, mark: Mark) -> Result<Node, Error> {
        let Some(anchored) = self.anchors.get(&anchor) else {
            let message = "alias to an anchor that is not defined (yet)";
            return Err(Error::new(ErrorKind::Syntax, message, Some(mark)));
        };
        self.alias_nodes = self.alias_nodes.saturating_add(anchored.size());
        if self.alias_nodes > MAX_ALIAS_NODES {
            let message = format!(
                "aliases expand to more than {MAX_ALIAS_NODES} nodes (an alias bomb?); document not read"
            );
            return Err(Error::new(ErrorKind::OverLimit, message, Some(mark)));
        }
        let mut node = anchored.clone();
        node.mark = mark;
        Ok(node)
    }

    /// Adds a finished node to the collection being read, or makes it the document.
    fn add(&mut self, node: Node) -> Result<(), Error> {
        match self.stack.last_mut() {
            None => self.document = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries,
                key,
                index,
                ..
            }) => match key.take() {
                Some((key, key_mark)) => entries.push(Entry {
                    key,
                    key_mark,
                    value: node,
                }),
                None => *key = Some(new_key(node, entries, index)?),
            },
        }
        Ok(())
    }
}

/// The text and mark of a mapping key, refused when the mapping already has it.
fn new_key(
    node: Node,
    entries: &[Entry],
    index: &mut Option<HashSet<Box<str>>>,
) -> Result<(Box<str>, Mark), Error> {
    let Value::Scalar(Scalar { text, .. }) = node.value else {
        let message = "a mapping key must be a string, not a mapping or sequence";
        return Err(Error::new(ErrorKind::Syntax, message, Some(node.mark)));
    };
    let repeated = match index {
        Some(keys) => !keys.insert(text.clone()),
        None => entries.iter().any(|e| e.key == text),
    };
    if repeated {
        let first = entries
            .iter()
            .find(|e| e.key == text)
            .map_or(node.mark, |e| e.key_mark);
        let message = format!(
            "key \"{text}\" is repeated (first at line {} column {})",
            first.line, first.column
        );
        return Err(Error::new(
            ErrorKind::DuplicateKey,
            message,
            Some(node.mark),
        ));
    }
    if index.is_none() && entries.len() >= SCAN_KEYS_UP_TO {
        let mut keys: HashSet<Box<str>> = entries.iter().map(|e| e.key.clone()).collect();
        keys.insert(text.clone());
        *index = Some(keys);
    }
    Ok((text, node.mark))
}

fn mark_of(span: &Span) -> Mark {
    Mark {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

fn too_deep(mark: Mark) -> Error {
    let message = format!("YAML nested deeper than {MAX_NESTING} levels; document not read");
    Error::new(ErrorKind::OverLimit, message, Some(mark))
}

/// The parser's own error; its flow recursion limit is reported as the nesting bound.
fn scan_error(error: &saphyr_parser::ScanError) -> Error {
    let marker = error.marker();
    let mark = Mark {
        line: marker.line(),
        column: marker.col() + 1,
    };
    if error.info() == "recursion limit exceeded" {
        return too_deep(mark);
    }
    Error::new(ErrorKind::Syntax, error.info(), Some(mark))
}
